"""Test helpers: the recorded reference responses and a tiny local HTTP server.

The server lets the real clients (requests, urllib3 retries, redirects) run against
recorded bodies without the emulator or the network.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from podcast_pipeline.http import RetryPolicy

RECORDED = Path(__file__).with_name("recorded")  # copies of real responses; see its README.md
FAST_RETRY = RetryPolicy(total=3, backoff_factor=0.01, backoff_jitter=0, backoff_max=0.05,
                         malformed_retries=1, connect_timeout=2, read_timeout=5)

Reply = tuple[int, dict[str, str], str | bytes]
Route = Reply | list[Reply] | Callable[["Request"], Reply]


def anchor_body(name: str) -> Any:
    """The raw API body of ``recorded/anchor/<name>.json`` (its ``data`` key)."""
    return json.loads((RECORDED / "anchor" / f"{name}.json").read_text())["data"]


def op3_body(name: str) -> Any:
    """The raw API body of ``recorded/op3/<name>.json``."""
    return json.loads((RECORDED / "op3" / f"{name}.json").read_text())


def op3_swagger(version: str) -> Any:
    """The Swagger document OP3's server serves for API ``version`` (as served, unpatched)."""
    return json.loads((RECORDED / "op3" / f"swagger-v{version}.json").read_text())


def ok(body: Any, headers: dict[str, str] | None = None) -> Reply:
    text = body if isinstance(body, str) else json.dumps(body)
    ctype = "application/json" if not isinstance(body, str) else "text/plain"
    return 200, {"Content-Type": ctype, **(headers or {})}, text


@dataclass
class Request:
    path: str  # without query
    target: str  # path + query as sent
    query: list[tuple[str, str]]
    headers: dict[str, str]
    at: float

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)


@dataclass
class FakeServer:
    """``routes`` maps a path to a reply, a list of replies (consumed in order, the last
    repeats) or a callable; unknown paths answer 404."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                req = Request(parts.path, self.path, parse_qsl(parts.query, keep_blank_values=True),
                              {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
                server.requests.append(req)
                status, headers, body = server.reply(req)
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reply(self, req: Request) -> Reply:
        route = self.routes.get(req.path)
        if route is None:
            return 404, {"Content-Type": "application/json"}, '{"error":"not found"}'
        if callable(route):
            return route(req)
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
