"""A loopback proxy in front of the emulator that can rewrite one endpoint's answers.

Tests point the clients at it. Every request is forwarded unchanged to the emulator
(so its faults, expiry and request log still apply) and recorded exactly as the client
sent it — path, query and headers, secrets included — so a test can check where the
credentials travel. A rule rewrites the emulator's answer on matching paths, which is
how a test serves a crafted body on an endpoint's real path.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def with_header(self, name: str, value: str) -> Answer:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=[*kept, (name, value)])

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, obj: Any) -> Answer:
        return replace(self, body=json.dumps(obj).encode())


@dataclass(frozen=True)
class Exchange:
    """One request as the client sent it (nothing masked) and the status it got."""

    method: str
    path: str  # path and query string
    headers: dict[str, str]
    status: int
    started: float = 0.0  # time.monotonic() when the request arrived ...
    ended: float = 0.0  # ... and when the emulator's answer was in


Rule = Callable[[str, Answer], Answer]  # (path with query, the emulator's answer) -> answer


@dataclass
class _Rules:
    items: list[tuple[re.Pattern[str], Rule]] = field(default_factory=list)

    def find(self, path: str) -> Rule | None:
        return next((rule for pattern, rule in self.items if pattern.search(path)), None)


class Tamper:
    """Context manager: ``with Tamper(emulator.url) as proxy: proxy.rewrite(r"/plays\\?", fn)``."""

    def __init__(self, upstream_url: str) -> None:
        up = urlsplit(upstream_url)
        self._upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self._rules = _Rules()
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self.rewritten = 0  # answers a rule changed since the last clear()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Tamper:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use Tamper as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self, emulator_env: dict[str, str]) -> dict[str, str]:
        """The emulator's env with every base URL pointing at this proxy."""
        env = dict(emulator_env)
        for key in ("ANCHOR_BASE_URL", "OP3_BASE_URL", "SPOTIFY_ACCOUNTS_URL",
                    "SPOTIFY_GRAPHQL_URL", "SPOTIFY_LEGACY_API_URL"):
            if key in env:
                env[key] = self.url + urlsplit(env[key]).path
        return env

    # ---- controls ----------------------------------------------------------------------
    def rewrite(self, path_pattern: str, rule: Rule) -> None:
        """Rewrite the answers of requests whose path+query matches ``path_pattern``."""
        with self._lock:
            self._rules.items.append((re.compile(path_pattern), rule))

    def clear(self) -> None:
        with self._lock:
            self._rules.items.clear()
            self._exchanges.clear()
            self.rewritten = 0

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    # ---- forwarding --------------------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        started = time.monotonic()
        conn = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, path, body=body or None, headers=sent)
            resp = conn.getresponse()
            answer = Answer(resp.status, [(k, v) for k, v in resp.getheaders()
                                          if k.lower() not in HOP_BY_HOP], resp.read())
        finally:
            conn.close()
        with self._lock:
            rule = self._rules.find(path)
        if rule is not None and answer.status == 200:
            answer = rule(path, answer)
            with self._lock:
                self.rewritten += 1
        with self._lock:
            self._exchanges.append(Exchange(method, path, dict(headers), answer.status,
                                            started, time.monotonic()))
        return answer


def _handler(proxy: Tamper) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(answer.status)
            for k, v in answer.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        do_GET = do_POST = do_HEAD = do_OPTIONS = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
