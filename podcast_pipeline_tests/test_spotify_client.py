"""The GraphQL client against the emulator over real HTTP: login, renewal, expiry, paging,
errors, retries, and where each credential may travel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.errors import (
    ApiError,
    CredentialsExpired,
    FieldUnavailable,
    GraphQLError,
)
from podcast_pipeline.http import RetryPolicy
from podcast_pipeline.settings import SpotifySettings
from podcast_pipeline.spotify import operations
from podcast_pipeline.spotify.client import SpotifyGraphQLClient

TODAY = date(2025, 6, 1)
FAST = RetryPolicy(total=6, backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(emu: Emulator, **kw) -> SpotifyGraphQLClient:
    return SpotifyGraphQLClient(SpotifySettings.from_env(emu.graphql_env), retry=FAST, **kw)


def statuses(emu: Emulator) -> dict[int, int]:
    return emu.stats()["by_status"]


def test_login_then_queries_with_one_bearer(emulator: Emulator) -> None:
    ds = emulator.dataset
    with client(emulator) as c:
        assert c.show_uri() == ds.spotify_show_uri  # the only hosted show of two
        plays = c.plays(ds.yesterday - timedelta(days=6), ds.yesterday)
        top = c.top_episodes()
    assert list(plays["plays"]) == [ds.station_plays(d) for d in
                                    ds.data_days(ds.yesterday - timedelta(days=6), ds.yesterday)]
    assert len(top) == len(ds.published)
    by = emulator.stats()["by_endpoint"]
    assert (by["auth"], by["token"], by["getShowsForUser"]) == (1, 1, 1)
    assert statuses(emulator).get(401, 0) == 0


def test_each_credential_goes_only_to_its_host(emulator: Emulator) -> None:
    ds = emulator.dataset
    with client(emulator) as c:
        eid = int(c.episodes().dropna(subset=["publish_on"])["episode_id"].iloc[-1])
        c.episode_metadata(eid)  # the legacy host
        c.plays_by_app(ds.yesterday, ds.yesterday)
    seen = {"accounts": 0, "graph": 0, "legacy": 0}
    for r in emulator.requests:
        headers = {k.lower() for k in r.headers}
        host = r.path_with_query.split("/")[2]
        seen[host] += 1
        assert ds.sp_dc not in r.path_with_query and "BQD" not in r.path_with_query
        if host == "accounts":
            assert "authorization" not in headers
            assert ("cookie" in headers) == r.endpoint.startswith("auth")
        else:
            assert "cookie" not in headers and "authorization" in headers
    assert seen == {"accounts": 2, "graph": seen["graph"], "legacy": 1} and seen["graph"] >= 3


def test_bearer_is_renewed_before_it_expires(emulator: Emulator) -> None:
    clock = Clock()
    with client(emulator, clock=clock) as c:
        c.shows()
        clock.now += 3600 - 300 + 1  # inside the reference client's 300 s margin
        c.top_episodes()
        assert c.auth.logins == 2
    assert statuses(emulator).get(401, 0) == 0


def test_unknown_bearer_means_one_silent_login(emulator: Emulator) -> None:
    with client(emulator) as c:
        c.shows()
        emulator.revoke_bearers()
        assert len(c.top_episodes()) == len(emulator.dataset.published)
        assert c.auth.logins == 2
    assert statuses(emulator)[401] == 1


def test_401_right_after_a_fresh_login_is_expired(emulator: Emulator) -> None:
    emulator.set_faults(Faults(bearer_ttl=1e-6))  # every bearer is dead on arrival
    with client(emulator) as c, pytest.raises(CredentialsExpired) as err:
        c.shows()
    assert "right after a fresh login" in str(err.value)
    assert statuses(emulator)[401] == 1 and emulator.stats()["by_endpoint"]["auth"] == 1


def test_dead_cookie_is_credentials_expired_with_the_fix(emulator: Emulator) -> None:
    emulator.expire("spotify")
    with client(emulator) as c:
        with pytest.raises(CredentialsExpired) as err:
            c.shows()
        before = emulator.stats()["requests"]
        with pytest.raises(CredentialsExpired):
            c.plays(TODAY - timedelta(days=2), TODAY - timedelta(days=1))
        assert emulator.stats()["requests"] == before  # no call after the verdict
    text = str(err.value)
    assert "login_required" in text and "SPOTIFY_SP_DC" in text and "sp_key" in text
    assert emulator.dataset.sp_dc not in text
    assert emulator.stats()["by_endpoint"] == {"auth": 1}  # not retried


def test_cookie_dying_mid_session(emulator: Emulator) -> None:
    with client(emulator) as c:
        c.shows()
        emulator.expire("spotify")
        with pytest.raises(CredentialsExpired, match="login_required"):
            c.top_episodes()
    by = emulator.stats()["by_endpoint"]
    assert by["auth"] == 2 and statuses(emulator)[401] == 1


def test_episode_list_pages_until_pagination_ends() -> None:
    with Emulator(EmulatorConfig(seed=3, episodes=120, drafts=1, today=TODAY)) as emu:
        with client(emu) as c:
            episodes = c.episodes()
        assert len(episodes) == 121 and episodes["episode_id"].is_unique
        assert emu.stats()["by_endpoint"]["WebGetIndexedEpisodeList"] == 3  # 50 + 50 + 21


def test_unknown_hash_is_a_graphql_error_naming_the_operation(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    op = operations.OPERATIONS["getShowTopEpisodes"]
    monkeypatch.setitem(operations.OPERATIONS, "getShowTopEpisodes", op._replace(sha256="0" * 64))
    with client(emulator) as c, pytest.raises(GraphQLError) as err:
        c.top_episodes()
    assert err.value.operation == "getShowTopEpisodes"
    assert "PersistedQueryNotFound" in str(err.value) and "DevTools" in str(err.value)


def test_a_field_nulled_by_data_fetching_exception_is_reported_not_zero(
        emulator: Emulator) -> None:
    emulator.set_faults(Faults(data_fetching_rate=1.0))
    with client(emulator) as c:
        assert len(c.plays_by_geo()) > 0  # countries never fail
        with pytest.raises(FieldUnavailable) as err:
            c.plays_by_geo_city()
    assert "showPlaysAndDownloadsByGeo" in str(err.value)
    assert "DataFetchingException" in str(err.value)
    # fetched again (malformed_retries) before giving up
    assert emulator.stats()["faults"]["data_fetching"] == FAST.malformed_retries + 1


def test_429_and_5xx_are_retried_to_the_same_answer(emulator: Emulator) -> None:
    ds = emulator.dataset
    start, end = ds.yesterday - timedelta(days=13), ds.yesterday
    with client(emulator) as c:
        clean = [c.plays(start, end), c.plays_by_device(end, end), c.impressions(start, end)]
    emulator.set_faults(Faults(error_rate=0.3, rate_limit_rate=0.2, seed=4,
                               apply_to=frozenset({"spotify"})))
    with client(emulator) as c:
        faulty = [c.plays(start, end), c.plays_by_device(end, end), c.impressions(start, end)]
    for a, b in zip(clean, faulty, strict=True):
        assert a.equals(b)
    assert emulator.stats()["faults"].get("error", 0) + emulator.stats()["faults"].get(
        "rate_limit", 0) > 0


class _Redirector(BaseHTTPRequestHandler):
    target = ""
    hits: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        self.hits.append(dict(self.headers.items()))
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[str, str, list, list]]:
    class Far(_Redirector):
        hits: list[dict[str, str]] = []

    class Near(_Redirector):
        hits: list[dict[str, str]] = []

    far = ThreadingHTTPServer(("127.0.0.2", 0), Far)
    near = ThreadingHTTPServer(("127.0.0.1", 0), Near)
    Near.target = f"http://127.0.0.2:{far.server_address[1]}/graph"
    for s in (far, near):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield (f"http://127.0.0.1:{near.server_address[1]}/graph", Near.target, Near.hits,
               Far.hits)
    finally:
        for s in (far, near):
            s.shutdown()
            s.server_close()


def test_the_bearer_never_follows_a_redirect(emulator: Emulator, servers) -> None:
    near_url, far_url, near_hits, far_hits = servers
    env = {**emulator.graphql_env, "SPOTIFY_GRAPHQL_URL": near_url}
    with SpotifyGraphQLClient(SpotifySettings.from_env(env), retry=FAST) as c, \
            pytest.raises(ApiError, match="not following it"):
        c.shows()
    assert len(near_hits) == 1 and far_hits == []


def test_authorization_page_outcomes() -> None:
    from podcast_pipeline.errors import MalformedResponse
    from podcast_pipeline.spotify.auth import parse_authorization_page, pkce_pair

    page = '<script>const authorizationResponse = {type: "authorization_response", ' \
           'response: {code: "AQDcode", state: "s1"}};</script>'
    assert parse_authorization_page(page, "s1") == "AQDcode"  # unquoted keys, as C reads them
    with pytest.raises(CredentialsExpired, match="login_required"):
        parse_authorization_page('{"response":{"error":"login_required"}}', "s1")
    for bad, why in ((page, "another state"), ("<html></html>", "no 'const"),
                     (page.replace('code: "AQDcode", ', ""), "no code")):
        with pytest.raises(MalformedResponse, match=why):
            parse_authorization_page(bad, "s2" if why == "another state" else "s1")
    verifier, challenge = pkce_pair()
    assert len(verifier) == 86 and "=" not in challenge and len(challenge) == 43


def _fake_graphql(pages: list[dict]) -> tuple[ThreadingHTTPServer, str]:
    """A loopback GraphQL endpoint answering getShowsForUser, then ``pages`` in turn (the last
    one for ever): pagination that lies."""
    import json

    served = iter(pages)
    last: list[dict] = []

    class Fake(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["operationName"] == "getShowsForUser":
                data = {"showsForUser": {"shows": [{"uri": "spotify:show:" + "A" * 22,
                                                    "hostingProvider": "S4P"}]}}
            else:
                page = next(served, None)
                if page is not None:
                    last[:] = [page]
                data = {"showByShowUri": {"episodesV2": last[0]}}
            out = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/graph"


def _items(start: int, n: int) -> list[dict]:
    return [{"episodeId": 1000 + i, "uri": f"spotify:episode:{i:022d}", "title": f"E{i}"}
            for i in range(start, start + n)]


@pytest.mark.parametrize("pages, problem", [
    # the same full page again and again: stops at once instead of looping
    ([{"items": _items(0, 50), "pagination": {"totalItems": 500, "totalPages": 10}}],
     "repeats episodes"),
    # a short page before the announced total: a partial list is refused
    ([{"items": _items(0, 50), "pagination": {"totalItems": 80, "totalPages": 2}},
      {"items": _items(50, 10), "pagination": {"totalItems": 80, "totalPages": 2}}],
     "pagination says 80 episodes but the pages held 60"),
])
def test_episode_paging_that_never_ends_or_comes_up_short_fails(
        emulator: Emulator, pages: list[dict], problem: str) -> None:
    from podcast_pipeline.errors import MalformedResponse

    server, url = _fake_graphql(pages)
    try:
        env = {**emulator.graphql_env, "SPOTIFY_GRAPHQL_URL": url}
        with SpotifyGraphQLClient(SpotifySettings.from_env(env), retry=FAST) as c, \
                pytest.raises(MalformedResponse, match=problem):
            c.episodes()
    finally:
        server.shutdown()
        server.server_close()
