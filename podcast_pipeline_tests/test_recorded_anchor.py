"""AnchorClient against recorded Spotify for Creators responses served over real HTTP."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from podcast_pipeline.anchor import AnchorClient
from podcast_pipeline.errors import ApiError, CredentialsExpired, MalformedResponse
from podcast_pipeline.settings import AnchorSettings
from podcast_pipeline.tables import TABLES_BY_KEY
from podcast_pipeline_tests.recorded import FAST_RETRY, FakeServer, Reply, Request, anchor_body, ok

BASE = "/pod/api/proxy/v3"
S = 98765432
BOOT = f"{BASE}/stations/webStationId:abc123/episodePage"
COOKIE = "s%3Atest-cookie.signature"


def station(suffix: str) -> str:
    return f"{BASE}/analytics/station/{S}{suffix}"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer({BOOT: ok({"stationId": S, "items": [], "next": None})})
    yield srv
    srv.close()


@pytest.fixture
def client(server: FakeServer) -> Iterator[AnchorClient]:
    settings = AnchorSettings(webstation_id="abc123", cookie=COOKIE, base_url=server.url + BASE)
    with AnchorClient(settings, retry=FAST_RETRY) as c:
        yield c


def contract(name: str) -> list[str]:
    return [c for c, _ in TABLES_BY_KEY[f"anchor.{name}"].columns]


def test_plays_sends_utc_inclusive_range_and_parses(server: FakeServer,
                                                    client: AnchorClient) -> None:
    server.routes[station("/plays")] = ok(anchor_body("anchorPlays"))
    df = client.plays(date(2023, 5, 1), date(2023, 5, 4))
    assert list(df.columns) == contract("plays")
    assert df["date"].tolist() == [date(2023, 5, d) for d in (1, 2, 3, 4)]
    assert df["plays"].tolist() == [9, 10, 13, 11]
    assert str(df["plays"].dtype) == "Int64"
    req = server.hits(station("/plays"))[0]
    assert req.params == {"timeRangeStart": "1682899200", "timeRangeEnd": "1683158400",
                          "timeInterval": "86400", "isMumsCompatible": "true"}
    assert req.headers["cookie"] == f"anchorpw_s={COOKIE}"
    # the station id is bootstrapped once, with isMumsCompatible too
    client.plays(datetime(2023, 5, 1, tzinfo=UTC), date(2023, 5, 4))
    assert len(server.hits(BOOT)) == 1
    assert server.hits(BOOT)[0].params == {"limit": "1", "isMumsCompatible": "true"}


def test_naive_datetime_refused_before_any_request(server: FakeServer,
                                                   client: AnchorClient) -> None:
    with pytest.raises(ValueError, match="naive"):
        client.plays(datetime(2023, 5, 1), date(2023, 5, 4))
    with pytest.raises(ValueError, match="after"):
        client.plays(date(2023, 5, 4), date(2023, 5, 1))
    assert not [r for r in server.requests if r.path != BOOT]


@pytest.mark.parametrize(("method", "suffix", "name", "column", "first"), [
    ("plays_by_age_range", "/playsByAgeRange", "anchorPlaysByAgeRange", "age_range", "0-17"),
    ("plays_by_app", "/playsByApp", "anchorPlaysByApp", "app", "Spotify"),
    ("plays_by_device", "/playsByDevice", "anchorPlaysByDevice", "device", "iPhone"),
    ("plays_by_gender", "/playsByGender", "anchorPlaysByGender", "gender", "Male"),
])
def test_percent_breakdowns(server: FakeServer, client: AnchorClient, method: str, suffix: str,
                            name: str, column: str, first: str) -> None:
    server.routes[station(suffix)] = ok(anchor_body(name))
    df = getattr(client, method)(date(2023, 5, 1), date(2023, 5, 1))
    assert list(df.columns) == [column, "fraction"]
    assert df[column].iloc[0] == first
    assert df["fraction"].dtype == "float64"
    assert 0.97 < df["fraction"].sum() <= 1.0 + 1e-9
    params = server.hits(station(suffix))[0].params
    assert params["timeRangeStart"] == params["timeRangeEnd"] == "1682899200"
    assert "timeInterval" not in params


def test_age_range_value(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/playsByAgeRange")] = ok(anchor_body("anchorPlaysByAgeRange"))
    df = client.plays_by_age_range(date(2023, 5, 1), date(2023, 5, 4))
    row = df[df["age_range"] == "28-34"]
    assert row["fraction"].iloc[0] == pytest.approx(0.5925925925925926)


def test_gender_empty_gives_zero_rows_with_contract_columns(server: FakeServer,
                                                            client: AnchorClient) -> None:
    server.routes[station("/playsByGender")] = ok(anchor_body("anchorPlaysByGenderEmpty"))
    df = client.plays_by_gender(date(2023, 5, 1), date(2023, 5, 4))
    assert len(df) == 0
    assert list(df.columns) == contract("plays_by_gender")


def test_flat_snapshots(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlays")] = ok(anchor_body("anchorTotalPlays"))
    server.routes[station("/uniqueListeners")] = ok(anchor_body("anchorUniqueListeners"))
    server.routes[station("/audienceSize")] = ok(anchor_body("anchorAudienceSize"))
    assert client.total_plays()["plays"].tolist() == [1234]
    assert client.unique_listeners()["unique_listeners"].tolist() == [65]
    assert client.audience_size().to_dict("list") == {"audience_size": [123]}


def test_total_plays_by_episode_six_columns(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlaysByEpisode")] = ok(anchor_body("anchorTotalPlaysByEpisode"))
    df = client.total_plays_by_episode()
    assert list(df.columns) == contract("total_plays_by_episode")
    assert len(df.columns) == 6
    first = df.iloc[0]
    assert first["episode_id"] == 12345678 and first["episode_title"] == "Some title"
    assert first["plays"] == 111 and first["rank"] == 1
    assert first["episode_uri"] == "spotify:episode:1cPUh123example"
    assert first["publish_time"] == pd.Timestamp(1654237852, unit="s", tz="UTC")


def test_unknown_column_kept_and_reordered_by_name(server: FakeServer,
                                                   client: AnchorClient) -> None:
    body = anchor_body("anchorTotalPlaysByEpisode")
    data = body["data"]
    # reverse the column order and add a new column: mapping must be by name
    data["columnHeaders"] = data["columnHeaders"][::-1] + [{"name": "Avg Listen (s)",
                                                           "type": "integer"}]
    data["rows"] = [row[::-1] + ["42"] for row in data["rows"]]
    server.routes[station("/totalPlaysByEpisode")] = ok(body)
    df = client.total_plays_by_episode()
    assert list(df.columns) == contract("total_plays_by_episode") + ["avg_listen_s"]
    assert df["episode_id"].tolist() == [12345678, 98765432]
    assert df["avg_listen_s"].tolist() == [42, 42]


def test_plays_by_episode_resolves_labels(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/playsByEpisode")] = ok(anchor_body("anchorPlaysByEpisode"))
    df = client.plays_by_episode(date(2023, 5, 1), date(2023, 5, 4), limit=3)
    assert list(df.columns) == contract("plays_by_episode")
    assert len(df) == 12
    assert df.iloc[3].to_dict() == {"date": date(2023, 5, 2), "episode_title": "Title 3",
                                    "plays": 3}
    assert server.hits(station("/playsByEpisode"))[0].params["limit"] == "3"


def test_geo_and_geo_city(server: FakeServer, client: AnchorClient) -> None:
    def geo(req: Request) -> Reply:
        if req.params.get("resultGeo") != "geo3":
            return ok(anchor_body("anchorPlaysByGeo"))
        # That file was hand-edited by its authors (and its station id left anonymised
        # differently): the station it is served for is ours, which the client checks.
        return ok({**anchor_body("anchorPlaysByGeoCity"), "stationId": S})
    server.routes[station("/playsByGeo")] = geo
    geo = client.plays_by_geo()
    assert geo["geo"].iloc[0] == "Germany" and geo["fraction"].iloc[0] == 0.33
    cities = client.plays_by_geo_city()
    assert list(cities.columns) == contract("plays_by_geo_city")
    city_reqs = [r for r in server.hits(station("/playsByGeo"))
                 if r.params["resultGeo"] == "geo3"]
    assert [r.params["geo2"] for r in city_reqs] == ["Germany", "United States",
                                                     "United Kingdom", "France", "Netherlands"]
    de = cities[cities["country"] == "Germany"]
    assert de["geo"].iloc[0] == "Land Berlin" and de["fraction"].iloc[0] == 0.38
    one = client.plays_by_geo_city("Germany", limit=10)
    assert set(one["country"]) == {"Germany"}


def test_episode_endpoints(server: FakeServer, client: AnchorClient) -> None:
    e = 123456789
    server.routes[f"{BASE}/analytics/episode/{e}/plays"] = ok(anchor_body("anchorEpisodePlays"))
    server.routes[f"{BASE}/analytics/episode/{e}/performance"] = ok(
        anchor_body("anchorEpisodePerformance"))
    server.routes[f"{BASE}/analytics/episode/{e}/aggregatedPerformance"] = ok(
        anchor_body("anchorEpisodeAggregatedPerformance"))
    plays = client.episode_plays(e, date(2023, 4, 21), date(2023, 5, 4))
    assert list(plays.columns) == contract("episode_plays")
    assert plays["episode_id"].unique().tolist() == [e]
    assert plays.iloc[0]["date"] == date(2023, 4, 21) and plays.iloc[0]["plays"] == 43
    perf = client.episode_performance(e)
    assert list(perf.columns) == contract("episode_performance")
    assert str(perf["listeners"].dtype) == "Int64"
    assert perf["listeners"].iloc[4] == 14 and perf["sample_second"].iloc[4] == 4
    agg = client.episode_aggregated_performance(e)
    assert list(agg.columns) == contract("episode_aggregated_performance")
    values = dict(zip(agg["metric"], agg["value"], strict=True))
    assert values["percentile25"] == 57.0
    assert values["averageListenSeconds"] == 1254.0


def test_aggregated_performance_null_value(server: FakeServer, client: AnchorClient) -> None:
    server.routes[f"{BASE}/analytics/episode/12345678/aggregatedPerformance"] = ok(
        anchor_body("anchorEpisodeAggregatedPerformanceNullValue"))
    agg = client.episode_aggregated_performance(12345678)
    assert math.isnan(agg.set_index("metric")["value"]["averageListenSeconds"])
    assert agg["value"].dtype == "float64"


def test_episodes_paginates_and_keeps_null_title(server: FakeServer,
                                                 client: AnchorClient) -> None:
    items = anchor_body("anchorEpisodesPage")
    pages = {
        None: {"stationId": S, "items": items[:1],
               "next": f"/v3/stations/{S}/episodePage?orderBy=publishOn&limit=1&pageToken=T2"},
        "T2": {"stationId": S, "items": items[1:], "next": None},
    }
    server.routes[BOOT] = lambda req: ok(pages[req.params.get("pageToken")])
    df = client.episodes(limit=1)
    assert list(df.columns)[:14] == contract("episodes")
    assert df["episode_id"].tolist() == [68984665, 67347583]
    assert df["title"].iloc[0] == "A nice long title for this episode"
    assert pd.isna(df["title"].iloc[1])
    assert df["duration_ms"].iloc[0] == 2539933
    assert df["publish_on"].iloc[0] == pd.Timestamp(1682051448, unit="s", tz="UTC")
    assert df["is_video_episode"].dtype == "boolean"
    assert "share_link_embed_path" in df.columns and "audio_count" in df.columns  # extras kept
    assert [r.params.get("pageToken") for r in server.hits(BOOT)] == [None, "T2"]
    assert client.station_id() == S
    assert len(server.hits(BOOT)) == 2  # the station id came from the episodes page


def test_episodes_repeated_token_is_an_error_not_a_loop(server: FakeServer,
                                                        client: AnchorClient) -> None:
    # A page with no episode it has not listed before cannot be progress: the first such
    # page stops it, before its token could even come back.
    server.routes[BOOT] = ok({"stationId": S, "items": [],
                              "next": "/v3/stations/1/episodePage?limit=50&pageToken=SAME"})
    with pytest.raises(MalformedResponse, match="episodes.*stopping instead of looping"):
        client.episodes()
    assert len(server.hits(BOOT)) == 1


def test_episode_metadata(server: FakeServer, client: AnchorClient) -> None:
    overview = {"created": "2023-04-20T15:10:12.000Z", "createdUnixTimestamp": 1682003412,
                "description": "<p>Test</p>", "totalDuration": 2539885, "hourOffset": -2,
                "isDeleted": False, "isPublished": True, "webEpisodeId": "e215pm4",
                "webStationId": "abc123", "publishOn": "2023-04-21T04:30:48.000Z",
                "publishOnUnixTimestamp": 1682051448, "title": "Title 0",
                "episodeAudios": [{"url": "https://example.com/a.mp3"}],
                "spotifyUrl": "https://open.spotify.com/episode/x", "episodeImage": None,
                "shareLinkPath": "/x/episodes/y", "shareLinkEmbedPath": "/x/embed/y"}
    server.routes[f"{BASE}/episodes/67347583/overview"] = ok(overview)
    df = client.episode_metadata(67347583)
    assert len(df) == 1
    assert list(df.columns)[:13] == contract("episode_metadata")
    row = df.iloc[0]
    assert row["episode_id"] == 67347583 and row["audio_url"] == "https://example.com/a.mp3"
    assert row["publish_on"] == pd.Timestamp("2023-04-21T04:30:48Z")
    assert row["hour_offset"] == -2 and bool(row["is_published"]) is True
    assert {"web_station_id", "share_link_embed_path", "episode_image"} <= set(df.columns)
    assert server.hits(f"{BASE}/episodes/67347583/overview")[0].params["returnWebIds"] == "true"


def test_impressions_query_and_parse(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("")] = ok({"impressions": {"count": 30}, "dailyImpressions": {
        "counts": [{"date": "2023-05-01", "count": 10}, {"date": "2023-05-02", "count": 20}]}})
    df = client.impressions(date(2023, 5, 1), date(2023, 5, 2))
    assert df.to_dict("list") == {"date": [date(2023, 5, 1), date(2023, 5, 2)],
                                  "impressions": [10, 20]}
    query = json.loads(base64.b64decode(server.hits(station(""))[0].params["query"]))
    window = {"version": "1.0", "startTime": 1682899200.0, "endTime": 1683072000.0}
    assert query == {"include": ["impressions", "dailyImpressions", "impressionsBySource"],
                     "options": {"impressions": window, "dailyImpressions": window,
                                 "impressionsBySource": window}}
    client.impressions()  # default window: 29 days, hour-rounded
    q = json.loads(base64.b64decode(server.hits(station(""))[1].params["query"]))
    t0, t1 = q["options"]["impressions"]["startTime"], q["options"]["impressions"]["endTime"]
    assert t1 - t0 == 29 * 86400 and t1 % 3600 == 0


@pytest.mark.parametrize(("body", "ctype"), [
    ("<html><body>Log in</body></html>", "text/html"),
    ('{"stationId": 1, "data": {"rows": [[1682899200, 9', "application/json"),
    ('{"stationId": 98765432, "kind": "plays"}', "application/json"),
])
def test_malformed_bodies_name_the_endpoint(server: FakeServer, client: AnchorClient, body: str,
                                            ctype: str) -> None:
    server.routes[station("/plays")] = (200, {"Content-Type": ctype}, body)
    with pytest.raises(MalformedResponse, match="'plays'") as info:
        client.plays(date(2023, 5, 1), date(2023, 5, 4))
    assert info.value.endpoint == "plays"
    assert len(server.hits(station("/plays"))) == 1 + FAST_RETRY.malformed_retries


def test_wrong_cell_count_is_malformed(server: FakeServer, client: AnchorClient) -> None:
    body = anchor_body("anchorPlays")
    body["data"]["rows"][1] = [1682985600]
    server.routes[station("/plays")] = ok(body)
    with pytest.raises(MalformedResponse, match="plays.*row 1 has 1 cells"):
        client.plays(date(2023, 5, 1), date(2023, 5, 4))


def test_renamed_known_column_is_malformed(server: FakeServer, client: AnchorClient) -> None:
    body = anchor_body("anchorPlays")
    body["data"]["columnHeaders"][1]["name"] = "Streams"
    server.routes[station("/plays")] = ok(body)
    with pytest.raises(MalformedResponse, match="Plays"):
        client.plays(date(2023, 5, 1), date(2023, 5, 4))


def test_5xx_retried_then_success(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlays")] = [
        (503, {}, "busy"), (502, {}, "bad gateway"), ok(anchor_body("anchorTotalPlays"))]
    assert client.total_plays()["plays"].tolist() == [1234]
    assert len(server.hits(station("/totalPlays"))) == 3
    assert client.session.stats.retries == 2


def test_retry_after_honoured(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlays")] = [
        (429, {"Retry-After": "1"}, "slow down"), ok(anchor_body("anchorTotalPlays"))]
    client.total_plays()
    first, second = server.hits(station("/totalPlays"))
    assert second.at - first.at >= 0.95


def test_401_never_retried_and_session_stops(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlays")] = (401, {"Content-Type": "application/json"},
                                             '{"error":"unauthorized"}')
    with pytest.raises(CredentialsExpired):
        client.total_plays()
    assert len(server.hits(station("/totalPlays"))) == 1
    before = len(server.requests)
    with pytest.raises(CredentialsExpired, match="earlier call"):
        client.unique_listeners()
    assert len(server.requests) == before


def test_403_is_an_api_error_without_retry(server: FakeServer, client: AnchorClient) -> None:
    server.routes[station("/totalPlays")] = (403, {}, "User does not own station")
    with pytest.raises(ApiError, match="access denied"):
        client.total_plays()
    assert len(server.hits(station("/totalPlays"))) == 1
