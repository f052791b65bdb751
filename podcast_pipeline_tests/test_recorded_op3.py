"""Op3Client against recorded OP3 responses served over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from podcast_pipeline.errors import ApiError, CredentialsExpired, MalformedResponse, NotFound
from podcast_pipeline.op3 import Op3Client
from podcast_pipeline.settings import Op3Settings
from podcast_pipeline.tables import TABLES_BY_KEY
from podcast_pipeline_tests.recorded import FAST_RETRY, FakeServer, Request, ok, op3_body

API = "/api/1"
SHOW = "c008c9c7cfe847dda55cfdde54a22154"
TOKEN = "secret-op3-token-123"
HEADER = "\t".join([
    "time", "url", "audienceId", "showUuid", "episodeId", "hashedIpAddress", "agentType",
    "agentName", "deviceType", "deviceName", "referrerType", "referrerName", "botType",
    "countryCode", "continentCode", "regionCode", "regionName", "timezone", "metroCode"])


def tsv_row(time: str, n: int = 0) -> str:
    return "\t".join([time, f"https://op3.dev/e/ex.com/{n}.mp3", "a" * 64, SHOW, "e" * 64,
                      "f" * 40, "app", "Apple Podcasts", "mobile", "Apple iPhone", "", "", "",
                      "US", "NA", "CA", "California", "America/Los_Angeles", "807"])


def tsv(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def tsv_reply(text: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "text/tab-separated-values"}
    if token:
        headers["x-continuation-token"] = token
    return 200, headers, text


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


@pytest.fixture
def client(server: FakeServer) -> Iterator[Op3Client]:
    settings = Op3Settings(token=TOKEN, show_uuid=SHOW, base_url=server.url + API,
                           url_prefix="https://op3.dev/e/example.com/*")
    with Op3Client(settings, retry=FAST_RETRY) as c:
        yield c


def contract(name: str) -> list[str]:
    return [c for c, _ in TABLES_BY_KEY[f"op3.{name}"].columns]


def assert_token_only_in_header(server: FakeServer) -> None:
    assert server.requests
    for r in server.requests:
        assert TOKEN not in r.target and "token" not in r.params
        assert r.headers["authorization"] == f"Bearer {TOKEN}"


def test_downloads_pages_with_continuation_token(server: FakeServer, client: Op3Client) -> None:
    path = f"{API}/downloads/show/{SHOW}"
    pages = {None: tsv_reply(tsv(tsv_row("2023-02-01T00:00:14.123Z", 1),
                                 tsv_row("2023-02-01T23:59:59.999Z", 2)), "tokA"),
             "tokA": tsv_reply(tsv(tsv_row("2023-02-02T10:00:00.000Z", 3)), "tokB"),
             "tokB": tsv_reply(tsv())}  # the last page may be empty
    server.routes[path] = lambda req: pages[req.params.get("continuationToken")]
    df = client.downloads(date(2023, 2, 1), date(2023, 2, 2), limit=2)
    assert list(df.columns) == contract("downloads")
    assert len(df) == 3
    assert df["date"].tolist() == [date(2023, 2, 1), date(2023, 2, 1), date(2023, 2, 2)]
    assert df["time"].iloc[0] == pd.Timestamp("2023-02-01T00:00:14.123Z")
    assert str(df["time"].dtype).startswith("datetime64") and str(df["time"].dt.tz) == "UTC"
    assert df["device_name"].iloc[0] == "Apple iPhone"
    assert pd.isna(df["referrer_type"].iloc[0])  # TSV blank → null
    reqs = server.hits(path)
    assert [r.params.get("continuationToken") for r in reqs] == [None, "tokA", "tokB"]
    for r in reqs:  # same window every page; OP3's end is exclusive
        assert (r.params["start"], r.params["end"], r.params["bots"], r.params["format"]) == (
            "2023-02-01", "2023-02-03", "exclude", "tsv")
    assert_token_only_in_header(server)


def test_downloads_keeps_unknown_columns(server: FakeServer, client: Op3Client) -> None:
    text = HEADER + "\tnewThing\n" + tsv_row("2023-02-01T00:00:14.123Z") + "\tx\n"
    server.routes[f"{API}/downloads/show/{SHOW}"] = tsv_reply(text)
    df = client.downloads(date(2023, 2, 1), date(2023, 2, 1))
    assert list(df.columns) == contract("downloads") + ["new_thing"]
    assert df["new_thing"].tolist() == ["x"]


def test_downloads_repeated_token_is_an_error(server: FakeServer, client: Op3Client) -> None:
    path = f"{API}/downloads/show/{SHOW}"
    server.routes[path] = tsv_reply(tsv(tsv_row("2023-02-01T00:00:14.123Z")), "SAME")
    with pytest.raises(MalformedResponse, match="downloads.*twice"):
        client.downloads(date(2023, 2, 1), date(2023, 2, 1), limit=1)
    assert len(server.hits(path)) == 2


@pytest.mark.parametrize("text", [
    tsv(tsv_row("2023-02-01T00:00:14.123Z").rsplit("\t", 2)[0]),  # a line missing fields
    tsv(tsv_row("2023-02-01T00:00:14.123Z") + "\textra"),  # a line with one field too many
    tsv(tsv_row("2023-02-01T00:00:14.123Z"))[:-30],  # truncated
    "<html>login</html>",
])
def test_downloads_malformed_tsv(server: FakeServer, client: Op3Client, text: str) -> None:
    server.routes[f"{API}/downloads/show/{SHOW}"] = tsv_reply(text)
    with pytest.raises(MalformedResponse, match="'downloads'"):
        client.downloads(date(2023, 2, 1), date(2023, 2, 1))


def test_downloads_argument_checks_before_any_request(server: FakeServer,
                                                      client: Op3Client) -> None:
    with pytest.raises(ValueError, match="naive"):
        client.downloads(datetime(2023, 2, 1), date(2023, 2, 1))
    with pytest.raises(ValueError):
        client.downloads(date(2023, 2, 1), date(2023, 2, 1), bots="true")
    assert client.downloads.__name__ and not server.requests
    server.routes[f"{API}/downloads/show/{SHOW}"] = tsv_reply(tsv())
    assert len(client.downloads(datetime(2023, 2, 1, 23, tzinfo=UTC), date(2023, 2, 1))) == 0


def _hits_route(rows: list[dict], *, redirect: bool) -> dict[str, object]:
    def hits(req: Request) -> tuple[int, dict[str, str], str]:
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"Content-Type": "application/json"}, '{"error":"unauthorized"}'
        limit = int(req.params["limit"])
        p = req.params
        chosen = [r for r in rows if ("start" not in p or r["time"] >= p["start"])
                  and ("startAfter" not in p or r["time"] > p["startAfter"])]
        chosen.sort(key=lambda r: (r["time"], r["uuid"]))
        return ok({"rows": chosen[:limit], "count": len(chosen[:limit]), "queryTime": 1})

    routes: dict[str, object] = {f"{API}/hits": hits}
    if redirect:
        routes[f"{API}/redirect-logs"] = lambda req: (
            308, {"Location": f"{API}/hits?{req.target.split('?', 1)[1]}"}, "")
    else:
        routes[f"{API}/redirect-logs"] = hits
    return routes


@pytest.mark.parametrize("redirect", [True, False])
def test_redirect_logs_paging_dedupe_and_redirect(server: FakeServer, client: Op3Client,
                                                  redirect: bool) -> None:
    recorded = op3_body("hits_url-filter")["rows"]
    same_ms = dict(recorded[0], uuid="0" * 32)  # shares a millisecond with a page boundary
    rows = recorded + [same_ms]
    server.routes.update(_hits_route(rows, redirect=redirect))  # type: ignore[arg-type]
    df = client.redirect_logs(date(2024, 5, 25), date(2024, 5, 25), limit=2)
    assert list(df.columns) == contract("redirect_logs")
    assert sorted(df["uuid"]) == sorted(r["uuid"] for r in rows)  # nothing lost, no dupes
    assert df["date"].unique().tolist() == [date(2024, 5, 25)]
    assert pd.isna(df.set_index("uuid").loc["a11378c4cf54489c86d852c713ed0ef7", "range"])
    first = server.requests[0]
    assert first.path == f"{API}/redirect-logs"
    assert first.params["url"] == "https://op3.dev/e/example.com/*"
    assert first.params["start"] == "2024-05-25" and first.params["end"] == "2024-05-26"
    assert first.params["format"] == "json"
    if redirect:
        # A permanent redirect is followed once; later pages ask /hits directly.
        assert len(server.hits(f"{API}/redirect-logs")) == 1
        assert len(server.hits(f"{API}/hits")) > 1
    assert_token_only_in_header(server)


def test_redirect_logs_filters(server: FakeServer, client: Op3Client) -> None:
    with pytest.raises(ValueError, match="at most one filter"):
        client.redirect_logs(date(2024, 5, 25), date(2024, 5, 25), url="https://x/*",
                             userAgent="y")
    with pytest.raises(ValueError, match="unknown"):
        client.redirect_logs(date(2024, 5, 25), date(2024, 5, 25), colour="red")
    assert not server.requests
    server.routes.update(_hits_route(op3_body("hits_time-window")["rows"],  # type: ignore[arg-type]
                                     redirect=False))
    df = client.redirect_logs(date(2024, 5, 25), date(2024, 5, 25), hashedIpAddress="current")
    assert len(df) == 1 and df["user_agent"].iloc[0].startswith("Spotify/")
    assert server.requests[0].params["hashedIpAddress"] == "current"
    assert "url" not in server.requests[0].params


def test_show_with_and_without_episodes(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/shows/{SHOW}"] = ok(op3_body(f"shows_{SHOW}"))
    df = client.show()
    assert list(df.columns) == contract("show")
    assert len(df) == 1 and df["show_title"].iloc[0] == "R Weekly Highlights"
    assert pd.isna(df["episode_id"].iloc[0])
    assert server.requests[0].params["episodes"] == "include"
    body = dict(op3_body(f"shows_{SHOW}"), episodes=[
        {"id": "e1", "title": "One", "pubdate": "2024-05-01T00:00:00.000Z", "itemGuid": "g1"},
        {"id": "e2", "title": "Two", "explicit": True}])
    server.routes[f"{API}/shows/{SHOW}"] = ok(body)
    df = client.show()
    assert df["episode_id"].tolist() == ["e1", "e2"]
    assert df["pubdate"].iloc[0] == pd.Timestamp("2024-05-01T00:00:00Z")
    assert df.columns[-1] == "episode_explicit"


def test_show_unknown_is_not_found(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/shows/{SHOW}"] = (404, {"Content-Type": "application/json"},
                                            '{"message":"not found"}')
    with pytest.raises(NotFound):
        client.show()


@pytest.mark.parametrize("wrapped", [True, False])
def test_recent_episodes_with_transcripts(server: FakeServer, client: Op3Client,
                                          wrapped: bool) -> None:
    body = op3_body("queries_recent-episodes-with-transcripts")
    server.routes[f"{API}/queries/recent-episodes-with-transcripts"] = ok(
        body if wrapped else body["rt"])
    df = client.recent_episodes_with_transcripts()
    assert list(df.columns) == contract("recent_episodes_with_transcripts")
    assert len(df) == 5
    assert df["downloads"].tolist() == [14, 15889, 7, 14, 9]
    assert df["date"].iloc[0] == date(2024, 5, 19)
    assert df["computed_at"].iloc[0] == pd.Timestamp("2024-05-20T00:00:00Z")  # OP3's "asof"
    assert df["has_transcripts"].all()
    assert server.requests[0].params["limit"] == "100"


def test_top_apps_for_show(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps-for-show"] = ok(op3_body("queries_top-apps-for-show"))
    df = client.top_apps_for_show()
    assert list(df.columns) == contract("top_apps_for_show")
    assert df.iloc[0].to_dict() == {"show_uuid": SHOW, "app": "Apple Podcasts",
                                    "downloads": 759, "rank": 1}
    assert df["rank"].tolist() == list(range(1, len(df) + 1))
    assert server.requests[0].params["showUuid"] == SHOW


def test_top_apps_fractions(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = ok(op3_body("queries_top-apps"))
    df = client.top_apps()
    assert list(df.columns) == contract("top_apps")
    spotify = df.set_index("app").loc["Spotify"]
    assert spotify["fraction"] == pytest.approx(0.51017573)
    assert spotify["min_date"] == date(2024, 4, 20) and spotify["max_date"] == date(2024, 5, 19)
    assert df["fraction"].sum() == pytest.approx(1.0, abs=1e-3)


def test_top_apps_unknown_device(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = (400, {"Content-Type": "application/json"},
                                                '{"error":"unknown device"}')
    with pytest.raises(ApiError, match="unknown device"):
        client.top_apps(device_name="Toaster")
    assert server.requests[0].params == {"deviceName": "Toaster"}


def test_show_download_counts(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/show-download-counts"] = ok(
        op3_body("queries_show-download-counts"))
    df = client.show_download_counts([SHOW, "f" * 32])
    assert list(df.columns) == contract("show_download_counts")
    row = df.iloc[0]
    assert row["weekly_downloads"] == [411, 640, 628, 471]
    assert row["monthly_downloads"] == 2183 and row["num_weeks"] == 4
    assert row["computed_at"] == pd.Timestamp("2024-05-19T00:00:00Z") and row["days"] == "1" * 30
    assert server.requests[0].query == [("showUuid", SHOW), ("showUuid", "f" * 32)]


def test_expired_token(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = (401, {"Content-Type": "application/json"},
                                                json.dumps({"error": "expired"}))
    with pytest.raises(CredentialsExpired) as info:
        client.top_apps()
    assert info.value.reason == "expired"
    assert TOKEN not in str(info.value)
    with pytest.raises(CredentialsExpired):
        client.show()
    assert len(server.requests) == 1


def test_rate_limit_without_retry_after_is_retried(server: FakeServer,
                                                   client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = [
        (429, {"Content-Type": "text/plain"}, "slow down"), ok(op3_body("queries_top-apps"))]
    assert len(client.top_apps()) > 100
    assert len(server.requests) == 2


def test_retry_after_on_503(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = [
        (503, {"Retry-After": "1"}, "busy"), ok(op3_body("queries_top-apps"))]
    client.top_apps()
    first, second = server.requests
    assert second.at - first.at >= 0.95


def test_missing_key_is_malformed(server: FakeServer, client: Op3Client) -> None:
    server.routes[f"{API}/queries/top-apps"] = ok({"queryTime": 3})
    with pytest.raises(MalformedResponse, match="'top_apps'.*appShares"):
        client.top_apps()
