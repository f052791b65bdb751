"""The real clients against a hostile server on loopback (``hostile.py``), class by class.

Bounds (a body that trickles, headers that trickle, an endless body, a gzip bomb, a huge
``Retry-After``, deep JSON, endless pagination), redirects and the credential, the
shared 401 verdict across threads and sessions, secret echoes, and exact request counts.
Every misbehaviour is bounded on the server side too (``hostile.MAX_HOLD``), so a client
without the bound under test gets a full answer and the test fails instead of hanging.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any
from urllib.parse import quote, unquote

import pytest

from podcast_pipeline import alerts
from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.credentials import check
from podcast_pipeline.errors import (
    ApiError,
    CredentialsExpired,
    LimitExceeded,
    MalformedResponse,
    RateLimited,
    UnauthorizedAfterRedirect,
)
from podcast_pipeline.http import (
    DEADLINE_ENV,
    MAX_BODY_ENV,
    MAX_EPISODES_ENV,
    MAX_JSON_DEPTH_ENV,
    MAX_RETRY_WAIT_ENV,
    MAX_ROWS_PER_DAY_ENV,
    ApiSession,
    CredentialVerdict,
    Limits,
    RawResponse,
    RetryPolicy,
)
from podcast_pipeline.op3.client import DOWNLOAD_COLUMNS, Op3Client
from podcast_pipeline.settings import AnchorSettings, Op3Settings
from podcast_pipeline_tests.hostile import (
    Gate,
    Hostile,
    Request,
    endless_chunks,
    gzip_bomb,
    head_bytes,
    redirect,
    reply,
    send,
    sequence,
    trickle,
)

COOKIE = "s%3Ahostile-test-cookie.Sig%2Bnature"
TOKEN = "hostile-op3-token-0123456789"
WEBSTATION = "abc123"
SHOW = "0123456789abcdef0123456789abcdef"
ANCHOR_PREFIX = "/pod/api/proxy/v3"
OP3_PREFIX = "/api/1"
BOOT = r"/stations/webStationId:abc123/episodePage"
DAY = date(2025, 5, 30)


def policy(**limits: Any) -> RetryPolicy:
    return RetryPolicy(total=2, backoff_factor=0.0, backoff_jitter=0.0, malformed_retries=2,
                       connect_timeout=2.0, read_timeout=10.0, limits=Limits(**limits))


@pytest.fixture
def srv() -> Iterator[Hostile]:
    with Hostile() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[Hostile]:
    """Another host (``localhost`` is not ``127.0.0.1`` to an origin check)."""
    with Hostile(host="localhost") as server:
        yield server


def anchor(srv: Hostile, **kw: Any) -> AnchorClient:
    settings = AnchorSettings(webstation_id=WEBSTATION, cookie=COOKIE,
                              base_url=srv.url + ANCHOR_PREFIX)
    return AnchorClient(settings, retry=kw.pop("retry", policy()), **kw)


def op3(srv: Hostile, **kw: Any) -> Op3Client:
    settings = Op3Settings(token=TOKEN, show_uuid=SHOW, base_url=srv.url + OP3_PREFIX)
    return Op3Client(settings, retry=kw.pop("retry", policy()), **kw)


def session(srv: Hostile, **limits: Any) -> ApiSession:
    return ApiSession("op3", srv.url, credential={"Authorization": f"Bearer {TOKEN}"},
                      retry=policy(**limits))


def station(srv: Hostile) -> None:
    srv.route(BOOT, reply(body={"stationId": 42, "items": [], "next": None}))


def envelope(rows: list[list[Any]], headers: list[str]) -> dict[str, Any]:
    return {"data": {"rows": rows, "columnHeaders": [{"name": h} for h in headers]}}


# ================================================================ 3. everything bounded
def test_a_body_trickling_forever_hits_the_total_deadline(srv: Hostile) -> None:
    body = json.dumps({"x": "y" * 400}).encode()
    srv.route("/slow", trickle(body, 0.05, head=head_bytes(200, {}, len(body))))
    with pytest.raises(LimitExceeded, match=f"within 1 s.*{DEADLINE_ENV}") as info:
        session(srv, deadline=1.0).get_json("shows", "/slow")
    assert info.value.kind == "limit_exceeded" and len(srv.hits("/slow")) == 1  # not re-fetched


def test_headers_trickling_hit_the_total_deadline(srv: Hostile) -> None:
    srv.route("/slow", trickle(head_bytes(200, {"X-Pad": "p" * 300}, 2) + b"{}", 0.05))
    with pytest.raises(LimitExceeded, match=DEADLINE_ENV):
        session(srv, deadline=1.0).get_json("shows", "/slow")


def test_a_body_that_never_ends_hits_the_size_limit(srv: Hostile) -> None:
    srv.route("/big", endless_chunks())
    with pytest.raises(LimitExceeded, match=f"larger than 1 MiB.*{MAX_BODY_ENV}"):
        session(srv, max_body_bytes=2**20).get_json("shows", "/big")


def test_a_declared_huge_body_is_refused_while_reading(srv: Hostile) -> None:
    srv.route("/big", lambda req, conn: (conn.sendall(head_bytes(200, {}, 10**12)),
                                         [conn.sendall(b"1" * 65536) for _ in range(64)]))
    with pytest.raises(LimitExceeded, match="larger than 2 MiB"):
        session(srv, max_body_bytes=2 * 2**20).get_json("shows", "/big")


def test_a_gzip_bomb_is_counted_inflated_and_refused(srv: Hostile) -> None:
    bomb = gzip_bomb(1024)  # ~1 MB on the wire, 1 GiB inflated
    assert len(bomb) < 2 * 2**20
    srv.route("/bomb", reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(LimitExceeded, match="larger than 8 MiB \\(decompressed\\)"):
        session(srv, max_body_bytes=8 * 2**20).get_json("shows", "/bomb")
    # A modest gzip body is read normally (the limit counts what it inflates to).
    srv.route("/ok", reply(body=gzip.compress(json.dumps({"showUuid": "x"}).encode()),
                           headers={"Content-Encoding": "gzip"}))
    assert session(srv).get_json("shows", "/ok") == {"showUuid": "x"}


@pytest.mark.parametrize("asked", ["100000", "Fri, 31 Dec 2099 23:59:59 GMT"],
                         ids=["seconds", "http-date"])
def test_retry_after_is_capped(srv: Hostile, asked: str, caplog: pytest.LogCaptureFixture) -> None:
    srv.route("/busy", sequence(reply(429, {"error": "slow down"}, {"Retry-After": asked}),
                                reply(body={"showUuid": "x"})))
    caplog.set_level(logging.WARNING, logger="podcast_pipeline.http")
    s = session(srv, max_retry_wait=0.1)
    assert s.get_json("shows", "/busy") == {"showUuid": "x"}
    assert len(srv.hits("/busy")) == 2 and s.stats.retries == 1
    assert f"the most {MAX_RETRY_WAIT_ENV} allows" in caplog.text


def test_retry_after_beyond_the_cap_then_still_429_names_the_setting(srv: Hostile) -> None:
    srv.route("/busy", reply(429, "slow down", {"Retry-After": "86400",
                                                 "Content-Type": "text/plain"}))
    with pytest.raises(RateLimited, match=f"asked to wait 86400 s, more than {MAX_RETRY_WAIT_ENV}"):
        session(srv, max_retry_wait=0.05).get_json("shows", "/busy")
    assert len(srv.hits("/busy")) == 3  # 1 + 2 retries, each wait cut to 0.05 s


@pytest.mark.parametrize("depth", [100_000, 65])
def test_deep_json_is_a_limit_error_not_a_recursion_error(srv: Hostile, depth: int) -> None:
    srv.route("/deep", reply(body=("[" * depth + "]" * depth).encode()))
    with pytest.raises(LimitExceeded, match=f"nests {depth} levels.*{MAX_JSON_DEPTH_ENV}") as info:
        session(srv).get_json("shows", "/deep")
    assert info.value.endpoint == "shows" and len(srv.hits("/deep")) == 1


def test_brackets_inside_strings_do_not_count_as_nesting(srv: Hostile) -> None:
    body = {"title": "[" * 500 + "{" * 500 + '\\"]', "rows": [[1, 2]]}
    srv.route("/ok", reply(body=body))
    assert session(srv).get_json("shows", "/ok") == body


def _tsv(*times: str) -> bytes:
    rows = ["\t".join([t, "https://op3.dev/e/x.mp3", "a" * 64, SHOW] + [""] * 15) for t in times]
    return ("\t".join(DOWNLOAD_COLUMNS) + "\n" + "".join(r + "\n" for r in rows)).encode()


def test_downloads_continuation_that_never_ends_stops_at_the_page_budget(srv: Hostile) -> None:
    count = iter(range(10**6))

    def endless(req: Request, conn: Any) -> None:
        n = next(count)  # always two new, later downloads and a new token
        send(conn, 200, {"Content-Type": "text/tab-separated-values",
                         "x-continuation-token": f"tok{n}"},
             _tsv(f"2025-05-30T00:{n // 60:02d}:{n % 60:02d}.000Z",
                  f"2025-05-30T00:{n // 60:02d}:{n % 60:02d}.500Z"))
    srv.route("/downloads/", endless)
    client = op3(srv, retry=policy(max_rows_per_day=10))
    with pytest.raises(LimitExceeded, match=f"more than 6 pages.*{MAX_ROWS_PER_DAY_ENV}"):
        client.downloads(DAY, DAY, limit=2)
    assert len(srv.hits("/downloads/")) == 6  # ceil(1 day × 10 / 2) + 1 empty last page


def test_empty_pages_with_fresh_tokens_stop_at_the_page_budget(srv: Hostile) -> None:
    count = iter(range(10**6))
    srv.route("/downloads/", lambda req, conn: send(
        conn, 200, {"x-continuation-token": f"t{next(count)}"}, _tsv()))
    with pytest.raises(LimitExceeded, match="more than 6 pages"):
        op3(srv, retry=policy(max_rows_per_day=10)).downloads(DAY, DAY, limit=2)


def test_downloads_pages_going_back_in_time_are_a_loop(srv: Hostile) -> None:
    count = iter(range(10**6))
    srv.route("/downloads/", lambda req, conn: send(
        conn, 200, {"x-continuation-token": f"t{next(count)}"},
        _tsv("2025-05-30T01:00:00.000Z", "2025-05-30T02:00:00.000Z")))
    with pytest.raises(MalformedResponse, match="not moving forward"):
        op3(srv).downloads(DAY, DAY, limit=2)
    assert len(srv.hits("/downloads/")) == 2


def test_redirect_logs_ignoring_the_cursor_are_a_loop(srv: Hostile) -> None:
    rows = [{"uuid": f"u{i}", "time": "2025-05-30T01:00:00.000Z"} for i in range(3)]
    srv.route("/redirect-logs", reply(body={"rows": rows}))
    with pytest.raises(MalformedResponse, match="came back twice"):
        op3(srv).redirect_logs(DAY, DAY, limit=3)
    assert len(srv.hits("/redirect-logs")) == 3  # start, startAfter, the same startAfter


def test_episode_pages_that_never_end_stop_at_the_episode_budget(srv: Hostile) -> None:
    count = iter(range(10**6))

    def endless(req: Request, conn: Any) -> None:
        n = next(count)
        items = [{"episodeId": n * 5 + i} for i in range(5)]
        send(conn, body=json.dumps({"stationId": 42, "items": items,
                                    "next": f"/v3/stations/42/episodePage?pageToken=p{n}"}).encode())
    srv.route(BOOT, endless)
    with pytest.raises(LimitExceeded, match=f"more than 3 pages.*{MAX_EPISODES_ENV}"):
        anchor(srv, retry=policy(max_episodes=10)).episodes(limit=5)


# ================================================================ 4. redirects, credential
def test_a_same_host_redirect_keeps_the_cookie(srv: Hostile) -> None:
    def plays(req: Request, conn: Any) -> None:
        ok = req.headers.get("cookie") == f"anchorpw_s={COOKIE}"
        send(conn, 200 if ok else 401, body=json.dumps(
            envelope([[1748563200, 7]], ["Time (UTC)", "Plays"]) if ok else {}).encode())
    station(srv)
    srv.route(r"/analytics/station/42/plays\?", redirect(302, ANCHOR_PREFIX + "/moved/plays"))
    srv.route(r"/moved/plays", plays)
    df = anchor(srv).plays(DAY, DAY)
    assert df["plays"].tolist() == [7]
    assert srv.hits("/moved/plays")[0].headers["cookie"] == f"anchorpw_s={COOKIE}"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_never_carries_the_cookie_and_its_401_is_named(
        srv: Hostile, elsewhere: Hostile, status: int) -> None:
    station(srv)
    srv.route(r"/analytics/station/42/plays\?", redirect(status, elsewhere.url + "/v3/plays"))
    elsewhere.route("/v3/plays", reply(401, {"error": "unauthorized"}))
    client = anchor(srv)
    with pytest.raises(UnauthorizedAfterRedirect, match="another host.*ANCHOR_BASE_URL") as info:
        client.plays(DAY, DAY)
    assert not isinstance(info.value, CredentialsExpired)
    assert info.value.kind != "credentials_expired"
    (hop,) = elsewhere.requests
    assert "cookie" not in hop.headers and "authorization" not in hop.headers
    # Not a verdict on the cookie: the next call still goes out.
    with pytest.raises(UnauthorizedAfterRedirect):
        client.plays(DAY, DAY)
    assert len(elsewhere.requests) == 2


def test_op3_bearer_token_stays_on_its_origin(srv: Hostile, elsewhere: Hostile) -> None:
    srv.route(f"/shows/{SHOW}", redirect(308, elsewhere.url + f"/api/1/shows/{SHOW}"))
    elsewhere.route("/shows/", reply(body={"showUuid": SHOW}))
    assert op3(srv).show(episodes=False)["show_uuid"].tolist() == [SHOW]
    assert "authorization" not in elsewhere.requests[0].headers
    assert srv.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_redirect_loops_and_odd_targets_are_refused(srv: Hostile) -> None:
    srv.route("/loop", redirect(302, "/loop"))
    with pytest.raises(ApiError, match="more than 5 redirects"):
        session(srv).get_json("shows", "/loop")
    assert len(srv.hits("/loop")) == 6
    srv.route("/file", redirect(302, "file:///etc/passwd"))
    with pytest.raises(ApiError, match="file:// URL, which is not followed"):
        session(srv).get_json("shows", "/file")


def test_check_credentials_does_not_call_a_redirected_401_expired(
        srv: Hostile, elsewhere: Hostile) -> None:
    srv.route(BOOT, redirect(302, elsewhere.url + "/login"))
    elsewhere.route("/login", reply(401, {"error": "unauthorized"}))
    settings = AnchorSettings(webstation_id=WEBSTATION, cookie=COOKIE,
                              base_url=srv.url + ANCHOR_PREFIX)
    verdict = check("anchor", lambda: settings, policy())
    assert verdict.status != "expired" and "not reported as an expired credential" in verdict.line()


# ================================================================ 5. one 401 per run
def test_threads_stop_at_the_first_401(srv: Hostile) -> None:
    """Four threads share one client; their first requests are all in flight when the
    401s come back. No thread sends anything after that."""
    gate, arrived = Gate(), threading.Semaphore(0)

    def held_401(req: Request, conn: Any) -> None:
        arrived.release()
        gate.wait()
        send(conn, 401, body=b'{"error":"expired"}')
    srv.route("/queries/top-apps", held_401)
    client = op3(srv)
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(5):
            try:
                client.top_apps()
            except CredentialsExpired as exc:
                errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(4):
        assert arrived.acquire(timeout=20)
    gate.open()
    for t in threads:
        t.join(30)
    assert len(errors) == 20 and len(srv.hits("/queries/top-apps")) == 4


def test_sessions_sharing_a_verdict_stop_together(srv: Hostile) -> None:
    srv.route("/queries/top-apps", reply(401, {"error": "expired"}))
    srv.route("/shows/", reply(body={"showUuid": SHOW}))
    verdict = CredentialVerdict()
    first, second = op3(srv, verdict=verdict), op3(srv, verdict=verdict)
    with pytest.raises(CredentialsExpired):
        first.top_apps()
    with pytest.raises(CredentialsExpired, match="earlier call of this run got 401"):
        second.show()
    assert not srv.hits("/shows/")


def test_a_verdict_loaded_from_elsewhere_stops_the_first_request(srv: Hostile) -> None:
    published: list[str] = []
    dead = CredentialVerdict(load=lambda api: api == "op3", publish=published.append)
    with pytest.raises(CredentialsExpired):
        op3(srv, verdict=dead).show()
    assert srv.requests == []
    srv.route("/shows/", reply(401, {"error": "expired"}))
    fresh = CredentialVerdict(load=lambda api: False, publish=published.append)
    with pytest.raises(CredentialsExpired):
        op3(srv, verdict=fresh).show()
    assert published == ["op3"]  # what another process's load() would see


# ================================================================ 6. no leaks
def secret_forms(secret: str) -> list[str]:
    forms = []
    for text in {secret, quote(secret, safe=""), unquote(secret)}:
        forms += [text, base64.b64encode(text.encode()).decode(),
                  base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")]
    return forms


@pytest.mark.parametrize("prefix", ["", "x", "xy"], ids=["aligned", "offset-1", "offset-2"])
def test_a_body_echoing_the_cookie_in_any_encoding_is_stored_masked(srv: Hostile,
                                                                    prefix: str) -> None:
    echoes = [f"{prefix}anchorpw_s={COOKIE}", f"{prefix}{unquote(COOKIE)}"]
    encoded = [base64.b64encode(e.encode()).decode() for e in echoes]
    body = envelope([[1748563200, 7]], ["Time (UTC)", "Plays"])
    body["echo"] = {"raw": COOKIE, "quoted": quote(COOKIE, safe=""), "b64": encoded,
                    "b64url": [base64.urlsafe_b64encode(e.encode()).decode() for e in echoes]}
    station(srv)
    srv.route(r"/plays\?", reply(body=body))
    kept: list[RawResponse] = []
    anchor(srv, recorder=kept.append).plays(DAY, DAY)
    stored = "\n".join(r.body + r.path for r in kept)
    assert "***" in stored
    leaked = [f for f in secret_forms(COOKIE) if f in stored]
    assert not leaked
    for e in encoded:  # nothing long enough to decode back to the secret is left
        assert e not in stored and e[8:-8] not in stored


def test_an_error_excerpt_never_carries_an_echoed_secret(srv: Hostile) -> None:
    echoed = base64.b64encode(f"Bearer {TOKEN}".encode()).decode()
    srv.route("/shows/", reply(body=f"<html>you sent {TOKEN} = {echoed}</html>".encode(),
                               headers={"Content-Type": "text/html"}))
    with pytest.raises(MalformedResponse) as info:
        op3(srv).show()
    assert TOKEN not in str(info.value) and echoed[8:-8] not in str(info.value)


def test_a_failing_webhook_is_reported_without_its_url(srv: Hostile,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    secret_path = "/hooks/catch/1234567/zx9q8w7e6r/"
    srv.route("/hooks/", reply(500, "boom", {"Content-Type": "text/plain"}))
    with socket_closed_port() as port:
        dead = alerts.WebhookChannel(f"http://127.0.0.1:{port}{secret_path}")
        failing = alerts.WebhookChannel(srv.url + secret_path)
        alert = alerts.expired_alert("op3", "show x", first_partition=None, run_id=None,
                                     detected_by="test")
        caplog.set_level(logging.INFO)
        sent = alerts.send(alert, logging.getLogger("test"), [dead, failing])
    assert sent == ["log"]
    assert caplog.text.count("could not deliver the alert to webhook") == 2
    assert "zx9q8w7e6r" not in caplog.text and "1234567" not in caplog.text
    assert "HTTP 500" in caplog.text


class socket_closed_port:  # noqa: N801
    """A loopback port nobody listens on."""

    def __enter__(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


# ================================================================ 8. exact counts
@pytest.mark.parametrize(("answers", "requests", "retries", "refetches"), [
    ([reply(500, {"error": "x"}), reply(body={"showUuid": "x"})], 2, 1, 0),
    ([reply(body=b'{"showUuid": '), reply(body={"showUuid": "x"})], 2, 0, 1),
    ([reply(body={"showUuid": "x"})], 1, 0, 0),
], ids=["one-5xx", "one-truncated", "clean"])
def test_request_and_retry_counts_are_exact(srv: Hostile, answers: list[Callable[..., None]],
                                            requests: int, retries: int, refetches: int) -> None:
    srv.route("/shows/", sequence(*answers))
    client = op3(srv)
    client.show(episodes=False)
    stats = client.session.stats
    assert (stats.requests, stats.retries, stats.malformed_retries) == (
        requests, retries, refetches) and len(srv.requests) == requests


def test_counts_are_exact_for_failures_before_any_retry(srv: Hostile) -> None:
    srv.route("/shows/", reply(401, {"error": "expired"}))
    client = op3(srv)
    with pytest.raises(CredentialsExpired):
        client.show()
    assert (client.session.stats.requests, client.session.stats.retries) == (1, 0)
    with socket_closed_port() as port:
        s = ApiSession("op3", f"http://127.0.0.1:{port}", retry=policy())
        with pytest.raises(ApiError, match="could not reach the API .* in 3 tries"):
            s.get_json("shows", "/x")
    assert (s.stats.requests, s.stats.retries) == (3, 2)
