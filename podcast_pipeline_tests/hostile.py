"""A misbehaving HTTP server on loopback, written at the socket level.

Each route is a function that gets the parsed request and the raw connection and may do
anything an adversarial server can: trickle bytes, never finish a body, lie in
``Content-Length``, send a gzip bomb, redirect anywhere. Every connection serves one
request (``Connection: close``). Every wait is bounded: the server never holds a
connection longer than ``MAX_HOLD`` seconds, so a client that is not bounded itself
gets a complete answer instead (and the test that expected an error fails) rather
than hanging the suite.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_HOLD = 30.0  # seconds any one connection is served at most


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]  # lower-case names
    at: float

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))


Handler = Callable[[Request, socket.socket], None]


class Hostile:
    """``with Hostile() as srv: srv.route(r"^/x", handler)``; ``srv.url`` is its base."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[Request] = []
        self._routes: list[tuple[re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Hostile:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(MAX_HOLD + 5)
        if self._sock is not None:
            self._sock.close()

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def route(self, pattern: str, handler: Handler) -> None:
        with self._lock:
            self._routes.insert(0, (re.compile(pattern), handler))

    def hits(self, pattern: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if re.search(pattern, r.target)]

    # ---- serving ------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            request = _read_request(conn)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
                handler = next((h for p, h in self._routes if p.search(request.target)), None)
            if handler is None:
                send(conn, 404, body=b'{"error":"not found"}')
            else:
                handler(request, conn)
        except OSError:
            pass  # the client hung up: that is often the point
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _ = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, target, headers, time.monotonic())


# ---- answers --------------------------------------------------------------------------------
def head_bytes(status: int, headers: dict[str, str] | None = None,
               length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send(conn: socket.socket, status: int = 200, headers: dict[str, str] | None = None,
         body: bytes = b"") -> None:
    headers = {"Content-Type": "application/json", **(headers or {})}
    conn.sendall(head_bytes(status, headers, len(body)) + body)


def reply(status: int = 200, body: Any = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler sending one fixed answer (``body``: bytes, str, or an object as JSON)."""
    data = body if isinstance(body, bytes) else (
        body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return lambda req, conn: send(conn, status, headers, data)


def sequence(*handlers: Handler) -> Handler:
    """The n-th request gets the n-th handler (the last one repeats)."""
    count = iter(range(1 << 30))
    lock = threading.Lock()

    def handle(req: Request, conn: socket.socket) -> None:
        with lock:
            n = next(count)
        handlers[min(n, len(handlers) - 1)](req, conn)
    return handle


def trickle(data: bytes, every: float, *, head: bytes = b"") -> Handler:
    """Send ``head`` at once, then ``data`` one byte per ``every`` seconds (bounded)."""
    def handle(req: Request, conn: socket.socket) -> None:
        conn.sendall(head)
        end = time.monotonic() + MAX_HOLD
        for i in range(len(data)):
            if time.monotonic() > end:
                return
            conn.sendall(data[i:i + 1])
            time.sleep(every)
    return handle


def endless_chunks(chunk: bytes = b"x" * 65536) -> Handler:
    """A chunked body that never ends (until MAX_HOLD or the client hangs up)."""
    def handle(req: Request, conn: socket.socket) -> None:
        conn.sendall(head_bytes(200, {"Content-Type": "application/json",
                                      "Transfer-Encoding": "chunked"}) + b"5\r\n[1,2,\r\n")
        end = time.monotonic() + MAX_HOLD
        while time.monotonic() < end:
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    return handle


def gzip_bomb(inflated_mb: int) -> bytes:
    """About 1 KiB of gzip per MiB it inflates to: one compressed MiB repeated as gzip
    members (a stream may hold many, and decoders inflate them all)."""
    return gzip.compress(b"0," * 2**19, compresslevel=9) * inflated_mb


def redirect(status: int, location: str) -> Handler:
    return lambda req, conn: send(conn, status, {"Location": location})


@dataclass
class Gate:
    """Holds requests until released (bounded): lets a test decide what is in flight."""

    event: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> None:
        self.event.wait(MAX_HOLD)

    def open(self) -> None:
        self.event.set()

