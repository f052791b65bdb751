"""The common HTTP layer against a raw socket server that misbehaves below HTTP's level."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from podcast_pipeline.errors import MalformedResponse
from podcast_pipeline.http import ApiSession, RetryPolicy


@pytest.fixture
def cut_off_server() -> Iterator[tuple[int, list[int]]]:
    """Promises 100 body bytes, sends 5, hangs up: a connection dropped mid-transfer."""
    hits: list[int] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            hits.append(1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"a\":")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], hits
    stop.set()
    thread.join()
    srv.close()


def test_body_cut_off_mid_transfer_is_fetched_again_then_named(cut_off_server):
    port, hits = cut_off_server
    session = ApiSession("op3", f"http://127.0.0.1:{port}", headers={},
                         retry=RetryPolicy(backoff_factor=0.01, malformed_retries=2))
    with pytest.raises(MalformedResponse, match="connection dropped before the whole response"):
        session.get_json("shows", "/shows/x")
    assert len(hits) == 3  # the first try and two more, then a clear error
    assert session.stats.malformed_retries == 2
