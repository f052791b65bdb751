"""Both clients over real HTTP against the emulator, plus independent third-party clients.

Every client method is checked against ``emu.dataset``; faults (5xx, 429 with and without
``Retry-After``, expiry, malformed bodies) are injected by the emulator and observed in its
request log. The third-party checks use no project client code: ``anchorconnector`` (the
reference Anchor client, from the dev extra) and a stdlib ``urllib`` script that follows
op3.dev's documented usage. Budget: ~10 s (one test sleeps a 1 s ``Retry-After``).
"""

from __future__ import annotations

import base64
import json
import math
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd
import pytest
import requests

from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults, RequestRecord
from podcast_pipeline.emulator.data import AGE_RANGES, Dataset, epoch_day
from podcast_pipeline.emulator.faults import FaultEngine
from podcast_pipeline.errors import (
    ApiError,
    CredentialsExpired,
    MalformedResponse,
    RateLimited,
)
from podcast_pipeline.http import RawResponse, RetryPolicy
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.settings import AnchorSettings, Op3Settings

TODAY = date(2025, 6, 1)
Y = TODAY - timedelta(days=1)  # the last day with data
S = Y - timedelta(days=2)  # a three-day window S..Y
FAST = RetryPolicy(total=6, backoff_factor=0.001, backoff_max=0.01, backoff_jitter=0.0,
                   malformed_retries=2, connect_timeout=5.0, read_timeout=20.0)


# ---- fixtures and helpers ------------------------------------------------------------

class Pair:
    """Both project clients pointed at one emulator, recording every raw response."""

    def __init__(self, emu: Emulator, retry: RetryPolicy = FAST) -> None:
        self.raws: list[RawResponse] = []
        self.anchor = AnchorClient(AnchorSettings.from_env(emu.env), retry=retry,
                                   recorder=self.raws.append)
        self.op3 = Op3Client(Op3Settings.from_env(emu.env), retry=retry,
                             recorder=self.raws.append)

    def close(self) -> None:
        self.anchor.close()
        self.op3.close()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as e:
        yield e


@pytest.fixture
def pair(emu: Emulator) -> Iterator[Pair]:
    p = Pair(emu)
    yield p
    p.close()


def records(emu: Emulator, endpoint: str) -> list[RequestRecord]:
    return [r for r in emu.requests if r.endpoint == endpoint]


def query(rec: RequestRecord) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(rec.path_with_query).query, keep_blank_values=True))


def tuples(df: pd.DataFrame, cols: list[str]) -> list[tuple[Any, ...]]:
    """Rows as plain tuples with every missing value as None."""
    sub = df[cols].astype(object)
    return list(sub.where(sub.notna(), None).itertuples(index=False, name=None))


def outcome(engine: FaultEngine) -> str:
    d = engine.draw()
    return ("rate_limit" if d.rate_limit else "error" if d.error_status else
            "malformed" if d.malformed else "ok")


def faults_where(pattern: list[str], **kw: Any) -> Faults:
    """Faults whose first draws are exactly ``pattern`` (replayed, so deterministic)."""
    for seed in range(1000):
        faults = Faults(seed=seed, **kw)
        engine = FaultEngine(faults)
        if [outcome(engine) for _ in pattern] == pattern:
            return faults
    raise AssertionError(f"no seed gives {pattern}")


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days + 1)]


def expected_downloads(ds: Dataset, start: date, end: date, bots: bool = False) -> list[Any]:
    return [r for d in days(start, end) for r in ds.op3_day(d).downloads if bots or not r[12]]


def fractions(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items() if v}


def assert_no_secret_reached_a_url(emu: Emulator, pair: Pair) -> None:
    ds = emu.dataset
    assert emu.requests
    for rec in emu.requests:
        # The emulator masks credentials it sees in a URL as ***, so look for the names too.
        assert "token" not in rec.path_with_query.lower(), rec.path_with_query
        assert "anchorpw_s" not in rec.path_with_query.lower(), rec.path_with_query
        if rec.api == "op3":
            assert rec.headers.get("Authorization") == "Bearer ***"
        if rec.api == "anchor":
            assert rec.headers.get("Cookie") == "anchorpw_s=***"
    for raw in pair.raws:
        assert ds.op3_token not in raw.path + raw.body and ds.cookie not in raw.path + raw.body


# ---- every method against the dataset -------------------------------------------------

def test_every_anchor_method_matches_the_dataset(emu: Emulator, pair: Pair) -> None:
    ds, a = emu.dataset, pair.anchor
    assert a.station_id() == ds.station_id

    eps = a.episodes()
    totals = ds.total_plays_by_episode()
    assert sorted(eps["episode_id"]) == sorted(e.episode_id for e in ds.episodes)
    by_id = {e.episode_id: e for e in ds.episodes}
    for eid, title, publish_on, plays, ms in tuples(
            eps, ["episode_id", "title", "publish_on", "total_plays", "duration_ms"]):
        ep = by_id[eid]
        assert title == ep.title and plays == totals.get(eid, 0) and ms // 1000 == ep.duration_s
        assert (publish_on is None) == ep.is_draft
        if publish_on is not None:
            assert publish_on.timestamp() == ep.publish_ts
    assert eps["title"].isna().sum() == len(ds.drafts) + 1  # drafts and one untitled episode

    assert a.total_plays()["plays"].tolist() == [ds.total_plays()]
    assert a.unique_listeners()["unique_listeners"].tolist() == [ds.unique_listeners()]
    assert a.audience_size()["audience_size"].tolist() == [ds.audience_size()]
    tpbe = a.total_plays_by_episode()
    assert dict(zip(tpbe["episode_id"], tpbe["plays"], strict=True)) == totals
    assert tpbe["rank"].tolist() == list(range(1, len(ds.published) + 1))
    assert tpbe["plays"].is_monotonic_decreasing

    # Ranged: both ends inclusive, one row per UTC day.
    assert tuples(a.plays(S, Y), ["date", "plays"]) == [(d, ds.station_plays(d)) for d in days(S, Y)]
    assert sum(ds.episode_plays(e.episode_id, d) for e in ds.published for d in days(S, Y)) == \
        a.plays(S, Y)["plays"].sum()  # station plays = sum of episode plays
    for method, kind, col in (("plays_by_age_range", "age", "age_range"),
                              ("plays_by_app", "app", "app"),
                              ("plays_by_device", "device", "device"),
                              ("plays_by_gender", "gender", "gender")):
        df = getattr(a, method)(S, Y)
        want = fractions(ds.category_counts(kind, S, Y))
        got = {k: v for k, v in zip(df[col], df["fraction"], strict=True) if v}
        assert got == pytest.approx(want), method
        assert df["fraction"].sum() == pytest.approx(1.0)
    assert a.plays_by_age_range(S, Y)["age_range"].tolist() == list(AGE_RANGES)

    pbe = a.plays_by_episode(S, Y, limit=3)
    want_pbe = []
    for d in days(S, Y):
        top = sorted(ds.anchor_day(d).plays.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        want_pbe += [(d, by_id[eid].title, n) for eid, n in top]
    assert tuples(pbe, ["date", "episode_title", "plays"]) == want_pbe

    geo = a.plays_by_geo()
    want_geo = fractions(ds.category_counts("geo", ds.first_day, Y))
    assert dict(zip(geo["geo"], geo["fraction"], strict=True)) == pytest.approx(
        {k: round(v, 2) if v >= 0.01 else v for k, v in want_geo.items()})
    city = a.plays_by_geo_city("Germany")
    want_city = fractions(ds.category_counts("city", ds.first_day, Y, "Germany"))
    assert set(city["country"]) == {"Germany"}
    assert dict(zip(city["geo"], city["fraction"], strict=True)) == pytest.approx(
        {k: round(v, 2) if v >= 0.01 else v for k, v in want_city.items()})
    top_cities = a.plays_by_geo_city()  # default: the top countries by plays
    assert set(top_cities["country"]) <= set(geo["geo"].head(5)) and "Germany" in set(
        top_cities["country"])

    impressions = a.impressions(S, Y)
    assert tuples(impressions, ["date", "impressions"]) == [
        (d, sum(ds.anchor_day(d).impressions.values())) for d in days(S, Y)]
    a.impressions()  # default window: 29 days, hour-rounded, ending now − 2 days
    sent = json.loads(base64.b64decode(query(records(emu, "impressions")[-1])["query"]))
    window = sent["options"]["impressions"]
    assert set(sent["options"]) == set(sent["include"]) == {
        "impressions", "dailyImpressions", "impressionsBySource"}
    assert window["endTime"] - window["startTime"] == 29 * 86400 and window["endTime"] % 3600 == 0

    ep = ds.published[-2]  # the newest episode with complete days of data
    assert tuples(a.episode_plays(ep.episode_id, S, Y), ["episode_id", "date", "plays"]) == [
        (ep.episode_id, d, ds.episode_plays(ep.episode_id, d)) for d in days(S, Y)]
    perf = a.episode_performance(ep.episode_id)
    assert perf["listeners"].tolist() == ds.performance(ep.episode_id)
    assert perf["sample_second"].tolist() == list(range(len(perf)))
    for e in (ep, ds.published[-1]):  # the newest has no plays yet: averageListenSeconds null
        agg = a.episode_aggregated_performance(e.episode_id)
        want_agg = [(m, None if v is None else float(v))
                    for m, v in ds.aggregated_performance(e.episode_id)]
        assert tuples(agg, ["metric", "value"]) == want_agg
    assert agg["value"].isna().tolist() == [False] * 4 + [True]

    meta = a.episode_metadata(ep.episode_id)
    (row,) = tuples(meta, ["episode_id", "web_episode_id", "title", "is_published", "publish_on"])
    assert row[:4] == (ep.episode_id, ep.web_episode_id, ep.title, True)
    assert row[4].timestamp() == ep.publish_ts
    draft = a.episode_metadata(ds.drafts[0].episode_id)  # listed by episodes(): must answer
    assert tuples(draft, ["is_published", "publish_on"]) == [(False, None)]

    with pytest.raises(ValueError, match="naive"):
        a.plays(datetime(2025, 5, 1), Y)  # noqa: DTZ001 — refused before any request
    assert {r.endpoint for r in emu.requests} >= {
        "episodePage", "totalPlays", "totalPlaysByEpisode", "uniqueListeners", "audienceSize",
        "plays", "playsByAgeRange", "playsByApp", "playsByDevice", "playsByEpisode",
        "playsByGender", "playsByGeo", "playsByGeoCity", "impressions", "episodePlays",
        "episodePerformance", "episodeAggregatedPerformance", "episodeOverview"}
    assert {r.status for r in emu.requests} == {200}
    assert_no_secret_reached_a_url(emu, pair)


def test_every_op3_method_matches_the_dataset(emu: Emulator, pair: Pair) -> None:
    ds, o = emu.dataset, pair.op3

    rows = expected_downloads(ds, S, Y)
    dl = o.downloads(S, Y)
    assert len(dl) == len(rows) > 100
    assert dl["audience_id"].tolist() == [r[2] for r in rows]
    assert dl["time"].tolist() == pd.to_datetime([r[0] for r in rows], utc=True).tolist()
    assert dl["date"].tolist() == [date.fromisoformat(r[0][:10]) for r in rows]
    # OP3's TSV declares no charset: UTF-8 region names must not turn into mojibake.
    assert set(dl["region_name"]) == {r[16] for r in rows} and "Île-de-France" in set(
        dl["region_name"])
    assert dl["bot_type"].isna().all()
    assert len(o.downloads(S, Y, bots="include")) == len(expected_downloads(ds, S, Y, bots=True))
    ep = ds.published[-2]
    one = o.downloads(S, Y, episode_id=ep.op3_episode_id)
    assert len(one) == sum(ds.download_count(d, ep.op3_episode_id) for d in days(S, Y)) > 0
    assert set(one["episode_id"]) == {ep.op3_episode_id}

    logs = o.redirect_logs(S, Y)
    hits = [h for d in days(S, Y) for h in ds.op3_day(d).hits]
    assert sorted(logs["uuid"]) == sorted(h[1] for h in hits)
    assert logs["url"].str.startswith(ds.url_prefix).all()

    newest_first = sorted(ds.published, key=lambda e: -(e.publish_ts or 0))
    show = o.show()
    assert tuples(show, ["episode_id", "episode_title", "item_guid"]) == [
        (e.op3_episode_id, e.title, e.guid) for e in newest_first]
    assert set(show["show_uuid"]) == {ds.show_uuid} and set(show["podcast_guid"]) == {
        ds.podcast_guid}
    bare = o.show(episodes=False)
    assert len(bare) == 1 and bare["episode_id"].isna().all()

    recent = o.recent_episodes_with_transcripts()
    got = {(g, d): n for g, d, n in tuples(recent, ["episode_item_guid", "date", "downloads"])}
    want: dict[tuple[str, Any], Any] = {}
    for e in (e for e in newest_first if e.has_transcript):
        first = max(e.publish_day or ds.first_day, Y - timedelta(days=29))
        daily = {d: n for d in ds.data_days(first) if (n := ds.download_count(d, e.op3_episode_id))}
        want.update({(e.guid, d): n for d, n in daily.items()} or {(e.guid, None): None})
    assert got == want and recent["has_transcripts"].all()

    apps = o.top_apps_for_show()
    want_apps = ds.app_downloads(ds.data_days(date(2025, 4, 1)))  # this and the 2 previous months
    assert dict(zip(apps["app"], apps["downloads"], strict=True)) == dict(want_apps)
    assert apps["rank"].tolist() == list(range(1, len(apps) + 1))
    assert apps["downloads"].is_monotonic_decreasing

    shares = o.top_apps()
    want_shares = fractions(ds.app_downloads(days(Y - timedelta(days=29), Y)))
    assert dict(zip(shares["app"], shares["fraction"], strict=True)) == pytest.approx(
        want_shares, abs=1e-8)
    assert set(o.top_apps("Apple iPhone")["device_name"]) == {"Apple iPhone"}

    other = "0123456789abcdef0123456789abcdef"
    counts = o.show_download_counts([ds.show_uuid, other])  # unknown shows are omitted
    last30 = days(Y - timedelta(days=29), Y)
    assert counts["show_uuid"].tolist() == [ds.show_uuid]
    assert counts["monthly_downloads"].tolist() == [sum(ds.download_count(d) for d in last30)]
    assert str(counts["computed_at"].iloc[0])[:10] == Y.isoformat()
    assert counts["days"].iloc[0] == "1" * 30

    assert {r.endpoint for r in emu.requests} >= {
        "downloads", "hits", "redirectLogs", "shows", "recentEpisodesWithTranscripts",
        "topAppsForShow", "topApps", "showDownloadCounts"}
    assert_no_secret_reached_a_url(emu, pair)


# ---- retries ----------------------------------------------------------------------------

def _workload(p: Pair, ds: Dataset) -> list[pd.DataFrame]:
    a, o = p.anchor, p.op3
    return [a.episodes(limit=5), a.plays(S, Y), a.total_plays_by_episode(),
            a.plays_by_app(S, Y), a.episode_plays(ds.published[-2].episode_id, S, Y),
            o.downloads(S, Y, limit=150), o.show(), o.show_download_counts(), o.top_apps()]


def test_5xx_and_429_are_retried_to_the_correct_data(emu: Emulator) -> None:
    clean = Pair(emu)
    baseline = _workload(clean, emu.dataset)
    clean.close()
    emu.set_faults(Faults(error_rate=0.25, rate_limit_rate=0.15, seed=1))
    emu.reset_stats()
    flaky = Pair(emu)
    for got, want in zip(_workload(flaky, emu.dataset), baseline, strict=True):
        pd.testing.assert_frame_equal(got, want)
    flaky.close()
    faults = emu.stats()["faults"]
    assert faults.get("error", 0) >= 3 and faults.get("rate_limit", 0) >= 3
    assert {r.status for r in emu.requests} >= {429, 200} and {500, 502, 503} & {
        r.status for r in emu.requests}
    # Every injected fault cost exactly one retry, and no more requests than that were made.
    retried = flaky.anchor.session.stats.retries + flaky.op3.session.stats.retries
    assert retried == faults["error"] + faults["rate_limit"]
    assert emu.stats()["requests"] == (flaky.anchor.session.stats.requests
                                       + flaky.op3.session.stats.requests)


def test_retry_after_is_honoured_on_anchor_429(emu: Emulator, pair: Pair) -> None:
    pair.anchor.station_id()  # bootstrap first: faults below only hit totalPlays
    emu.set_faults(faults_where(["rate_limit", "ok"], rate_limit_rate=0.5, retry_after=1,
                                apply_to=frozenset({"totalPlays"})))
    assert pair.anchor.total_plays()["plays"].tolist() == [emu.dataset.total_plays()]
    first, second = records(emu, "totalPlays")
    assert (first.status, first.fault, second.status) == (429, "rate_limit", 200)
    # Without Retry-After the first retry would follow at once (backoff 0, then ~1 ms).
    assert second.time - first.time >= timedelta(seconds=0.9)
    assert pair.anchor.session.stats.retries == 1


def test_persistent_429_and_5xx_raise_typed_errors(emu: Emulator) -> None:
    p = Pair(emu, RetryPolicy(total=2, backoff_factor=0.001, backoff_jitter=0.0))
    emu.set_faults(Faults(rate_limit_rate=1.0, apply_to=frozenset({"topApps"})))
    with pytest.raises(RateLimited) as exc:
        p.op3.top_apps()
    assert exc.value.status == 429 and exc.value.endpoint == "top_apps"
    assert [r.status for r in records(emu, "topApps")] == [429] * 3  # 1 + 2 retries, no Retry-After
    emu.set_faults(Faults(error_rate=1.0, apply_to=frozenset({"shows"})))
    with pytest.raises(ApiError) as err:
        p.op3.show()
    assert err.value.status in (500, 502, 503) and err.value.endpoint == "show"
    assert len(records(emu, "shows")) == 3
    p.close()


def test_unreachable_api_is_an_api_error_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"OP3_BASE_URL": f"http://127.0.0.1:{port}/api/1", "OP3_TOKEN": "emulator-x",
           "OP3_SHOW_UUID": "0123456789abcdef0123456789abcdef"}
    with Op3Client(Op3Settings.from_env(env), retry=RetryPolicy(total=1, backoff_factor=0.001,
                                                                backoff_jitter=0.0)) as o:
        with pytest.raises(ApiError, match="could not reach"):
            o.top_apps()


# ---- the 401 stop -----------------------------------------------------------------------

def test_first_401_stops_every_further_request(emu: Emulator, pair: Pair) -> None:
    ds, a, o = emu.dataset, pair.anchor, pair.op3
    emu.set_faults(Faults(expire_after_requests=2))  # counted per API
    a.station_id()
    a.total_plays()
    with pytest.raises(CredentialsExpired) as exc:
        a.plays(S, Y)
    seen = len(emu.requests)
    for call in (a.total_plays, a.episodes, lambda: a.episode_metadata(ds.published[0].episode_id),
                 lambda: a.plays(S, Y)):
        with pytest.raises(CredentialsExpired):
            call()
    assert len(emu.requests) == seen  # nothing more reached the emulator
    assert [r.status for r in emu.requests if r.api == "anchor"] == [200, 200, 401]  # no retry
    text = str(exc.value)
    assert "ANCHOR_PW_S" in text and ds.cookie not in text and exc.value.endpoint == "plays"

    o.show()
    o.top_apps()
    with pytest.raises(CredentialsExpired) as op3_exc:
        o.downloads(S, Y)
    assert "expired" in str(op3_exc.value) and ds.op3_token not in str(op3_exc.value)
    seen = len(emu.requests)
    for op3_call in (o.show, o.top_apps, lambda: o.redirect_logs(S, Y)):
        with pytest.raises(CredentialsExpired):
            op3_call()
    assert len(emu.requests) == seen
    assert [r.status for r in emu.requests if r.api == "op3"] == [200, 200, 401]


# ---- pagination -------------------------------------------------------------------------

def test_episodes_follow_next_to_the_end(emu: Emulator, pair: Pair) -> None:
    ds = emu.dataset
    eps = pair.anchor.episodes(limit=4)
    assert eps["episode_id"].tolist() == [e.episode_id for e in ds.drafts] + [
        e.episode_id for e in sorted(ds.published, key=lambda e: -(e.publish_ts or 0))]
    pages = records(emu, "episodePage")
    assert len(pages) == math.ceil(len(ds.episodes) / 4) == 4
    tokens = [query(r).get("pageToken") for r in pages]
    assert tokens[0] is None and len(set(tokens[1:])) == 3 and None not in tokens[1:]
    assert all(query(r)["limit"] == "4" and query(r)["isMumsCompatible"] == "true" for r in pages)


@pytest.mark.parametrize("page", ["exact", "small"])
def test_downloads_follow_continuation_tokens_to_the_end(emu: Emulator, pair: Pair,
                                                         page: str) -> None:
    rows = expected_downloads(emu.dataset, S, Y)
    # "exact": the first page is full, so a token comes back and the last page is empty.
    limit = len(rows) if page == "exact" else 97
    df = pair.op3.downloads(S, Y, limit=limit)
    assert df["audience_id"].tolist() == [r[2] for r in rows]
    sent = [query(r) for r in records(emu, "downloads")]
    assert len(sent) == (2 if page == "exact" else math.ceil(len(rows) / limit) + (
        len(rows) % limit == 0))
    tokens = [q.pop("continuationToken", None) for q in sent]
    assert tokens[0] is None and len(set(tokens[1:])) == len(tokens) - 1
    assert all(q == sent[0] for q in sent)  # the same filters resent with every token
    assert sent[0]["start"] == S.isoformat() and sent[0]["end"] == TODAY.isoformat()


@pytest.mark.parametrize("direct", [False, True], ids=["via-308-to-hits", "direct"])
def test_redirect_logs_both_ways(direct: bool) -> None:
    with Emulator(EmulatorConfig(seed=7, today=TODAY, redirect_logs_direct=direct)) as emu:
        p = Pair(emu)
        logs = p.op3.redirect_logs(S, Y, limit=150)  # several pages, paged by time
        p.close()
        hits = [h for d in days(S, Y) for h in emu.dataset.op3_day(d).hits]
        assert logs["uuid"].is_unique
        assert sorted(logs["uuid"]) == sorted(h[1] for h in hits)
        assert logs["time"].is_monotonic_increasing
        legacy = records(emu, "redirectLogs")
        if direct:
            assert len(legacy) >= math.ceil(len(hits) / 150)
            assert {r.status for r in legacy} == {200} and not records(emu, "hits")
        else:
            # The 308 is permanent: followed once, then every later page asks /hits itself.
            assert [r.status for r in legacy] == [308]
            follow = records(emu, "hits")
            assert len(follow) >= math.ceil(len(hits) / 150)
            assert {r.status for r in follow} == {200}
            # The bearer token survived the redirect (same origin) and never hit the URL.
            assert all(r.headers.get("Authorization") == "Bearer ***" for r in follow)
            assert query(follow[0]) == query(legacy[0])
        assert_no_secret_reached_a_url(emu, p)


# ---- malformed bodies -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["truncated", "html"])
def test_malformed_anchor_body_retried_then_raised(emu: Emulator, pair: Pair, kind: str) -> None:
    a = pair.anchor
    a.station_id()
    emu.set_faults(faults_where(["malformed", "ok"], malformed_rate=0.5, malformed_kind=kind,
                                apply_to=frozenset({"totalPlaysByEpisode"})))
    tpbe = a.total_plays_by_episode()  # transient: fetched again, right data
    assert dict(zip(tpbe["episode_id"], tpbe["plays"], strict=True)) == \
        emu.dataset.total_plays_by_episode()
    assert a.session.stats.malformed_retries == 1
    emu.set_faults(Faults(malformed_rate=1.0, malformed_kind=kind,
                          apply_to=frozenset({"totalPlays"})))
    with pytest.raises(MalformedResponse) as exc:
        a.total_plays()
    assert exc.value.endpoint == "total_plays" and "'total_plays'" in str(exc.value)
    assert ("HTML" in str(exc.value)) == (kind == "html")
    assert [r.fault for r in records(emu, "totalPlays")] == ["malformed"] * 3  # 1 + 2 retries


@pytest.mark.parametrize("kind", ["truncated", "html"])
def test_malformed_op3_bodies_retried_then_raised(emu: Emulator, pair: Pair, kind: str) -> None:
    o, ds = pair.op3, emu.dataset
    emu.set_faults(faults_where(["malformed", "ok"], malformed_rate=0.5, malformed_kind=kind,
                                apply_to=frozenset({"downloads"})))
    assert len(o.downloads(S, Y)) == len(expected_downloads(ds, S, Y))
    assert o.session.stats.malformed_retries == 1
    emu.set_faults(Faults(malformed_rate=1.0, malformed_kind=kind,
                          apply_to=frozenset({"downloads", "shows"})))
    calls: dict[str, Callable[[], Any]] = {"downloads": lambda: o.downloads(S, Y),
                                           "show": o.show}
    for endpoint, call in calls.items():
        with pytest.raises(MalformedResponse) as exc:
            call()
        assert exc.value.endpoint == endpoint and f"'{endpoint}'" in str(exc.value)
    assert len(records(emu, "downloads")) == 2 + 3 and len(records(emu, "shows")) == 3


# ---- independent third-party clients ------------------------------------------------------

def test_third_party_anchorconnector(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference client (``anchorconnector==0.6.3``, in the dev extra), unchanged: only the
    base URL, web station id and cookie from ``emu.env`` are passed, as its own CLI reads them."""
    import anchorconnector as ac
    ds, env = emu.dataset, emu.env
    c = ac.AnchorConnector(env["ANCHOR_BASE_URL"], env["ANCHOR_WEBSTATION_ID"], env["ANCHOR_PW_S"])
    # Its datetimes are naive local time: compare every row by its own UTC bucket instead.
    start, end = datetime(2025, 5, 20), datetime(2025, 5, 31)  # noqa: DTZ001

    def rows(body: dict[str, Any]) -> list[Any]:
        return body["data"]["rows"]

    eps = c.episodes()
    assert c.station_id == ds.station_id
    assert sorted(e["episodeId"] for e in eps) == sorted(e.episode_id for e in ds.episodes)
    assert [e["episodeId"] for e in c.episodes(limit=5)] == [e["episodeId"] for e in eps]
    assert len(c.podcast_episode(page_size=4)) == len(ds.episodes)
    assert c._ensure_station_id() == ds.station_id
    assert rows(c.total_plays(True)) == [ds.total_plays()]
    assert rows(c.unique_listeners()) == [ds.unique_listeners()]
    assert rows(c.audience_size()) == [ds.audience_size()]
    assert {r[1]: r[2] for r in rows(c.total_plays_by_episode())} == ds.total_plays_by_episode()
    for ts, n in rows(c.plays(start, end)):
        assert n == ds.station_plays(epoch_day(ts))
    for ts, n in rows(c.plays(start, end, time_interval=604800)):
        assert ts % 86400 == 0 and n > 0
    for method in ("plays_by_age_range", "plays_by_app", "plays_by_device", "plays_by_gender"):
        body = getattr(c, method)(start, end)
        assert sum(r[1] for r in rows(body)) == pytest.approx(1.0), method
    labels = c.plays_by_episode(start, end, limit=2)["data"]["labels"]["EpisodeTitle"]
    assert set(labels.values()) <= {e.title for e in ds.published}
    geo = c.plays_by_geo()
    assert rows(geo)[0][0] == "Germany"
    assert rows(c.plays_by_geo_city(rows(geo)[0][0]))[0][0] == "Land Berlin"
    daily = c.impressions(datetime(2025, 5, 30))["dailyImpressions"]["counts"]  # noqa: DTZ001
    assert daily and all(x["count"] == sum(ds.anchor_day(date.fromisoformat(x["date"]))
                                           .impressions.values()) for x in daily)
    for e in ds.episodes:  # drafts included, as its CLI does
        for interval in ("daily", "weekly", "monthly"):
            c.episode_plays(e.episode_id, start, end, interval)
        for ts, n in rows(c.episode_plays(e.episode_id, start, end)):
            assert n == ds.episode_plays(e.episode_id, epoch_day(ts))
        assert [int(r[1]) for r in rows(c.episode_performance(e.episode_id))] == \
            ds.performance(e.episode_id)
        assert [tuple(r) for r in rows(c.episode_aggregated_performance(e.episode_id))] == \
            ds.aggregated_performance(e.episode_id)
        meta = c.episode_metadata(e.episode_id)
        assert (meta["webEpisodeId"], meta["isPublished"]) == (e.web_episode_id, not e.is_draft)
    with pytest.raises(requests.HTTPError) as exc:  # the live service's recorded 400
        c.episode_all_time_video_data(ds.published[0].episode_id)
    assert exc.value.response.status_code == 400

    # Its own CLI end to end, configured only through the env the emulator prints.
    from anchorconnector.__main__ import main

    for k in ("ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S"):
        monkeypatch.setenv(k, env[k])
    main()
    assert {r.status for r in emu.requests} == {200, 400}


def _urllib_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # follows the 308 too
            return resp.status, resp.headers, resp.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode("utf-8")


def test_third_party_op3_script_as_documented(emu: Emulator) -> None:
    """op3.dev's documented usage with the stdlib only: ``?token=`` and Bearer, tsv / json /
    json-a, continuation tokens, the documented example URLs."""
    ds, env = emu.dataset, emu.env
    base, token, show = env["OP3_BASE_URL"], env["OP3_TOKEN"], env["OP3_SHOW_UUID"]
    bearer = {"Authorization": f"Bearer {token}"}

    def get(path: str, params: dict[str, Any], auth: str = "query") -> tuple[int, Any, str]:
        if auth == "query":
            params = {**params, "token": token}
        return _urllib_get(f"{base}{path}?{urlencode(params)}", bearer if auth == "bearer" else None)

    may = [r for d in days(date(2025, 5, 1), date(2025, 5, 31)) for r in ds.op3_day(d).downloads
           if not r[12]]
    # The documented example: a month of downloads in json, token as a query parameter.
    status, _, text = get(f"/downloads/show/{show}", {"start": "2025-05", "end": "2025-06",
                                                      "limit": 10, "format": "json"})
    first = json.loads(text)
    assert status == 200 and first["count"] == 10 and first["continuationToken"]
    assert [r["time"] for r in first["rows"]] == [r[0] for r in may[:10]]
    # limit == len(may): the one full page brings a token, the last page is empty.
    for fmt, auth, limit in (("json", "query", 1000), ("tsv", "bearer", 1000),
                             ("json-a", "bearer", 1000), ("tsv", "query", len(may)),
                             ("json", "bearer", len(may))):
        times: list[str] = []
        cont: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"start": "2025-05", "end": "2025-06", "limit": limit,
                                      "format": fmt}
            if cont:
                params["continuationToken"] = cont
            status, headers, text = get(f"/downloads/show/{show}", params, auth)
            assert status == 200
            pages += 1
            if fmt == "tsv":
                lines = text.split("\n")
                assert lines[0].split("\t")[0] == "time" and lines[-1] == ""
                times += [line.split("\t")[0] for line in lines[1:-1]]
                cont = headers.get("x-continuation-token")
            else:
                body = json.loads(text)
                head = body.get("headers")
                times += [r[head.index("time")] if head else r["time"] for r in body["rows"]]
                assert body["count"] == len(body["rows"])
                cont = body.get("continuationToken")
            if not cont:
                break
        assert times == [r[0] for r in may], fmt
        assert pages == math.ceil(len(may) / limit) + (len(may) % limit == 0)

    # The documented redirect-logs example (answered with a 308 to /hits, which urllib follows).
    status, _, text = get("/redirect-logs", {"start": "-48h", "format": "json"})
    logs = json.loads(text)
    assert status == 200 and logs["count"] == len(logs["rows"]) > 0
    assert {r["uuid"] for r in logs["rows"]} <= {h[1] for h in ds.op3_day(Y).hits} | {
        h[1] for h in ds.op3_day(Y - timedelta(days=1)).hits}

    status, _, text = get(f"/shows/{show}", {})
    assert status == 200 and json.loads(text)["showUuid"] == show
    status, _, text = get(f"/shows/{ds.podcast_guid}", {"episodes": "include"}, "bearer")
    assert [e["id"] for e in json.loads(text)["episodes"]] == [
        e.op3_episode_id for e in sorted(ds.published, key=lambda e: -(e.publish_ts or 0))]
    status, _, text = get("/queries/recent-episodes-with-transcripts", {"limit": 5})
    assert status == 200 and len(json.loads(text)["rt"]["episodes"]) <= 5
    feed = base64.urlsafe_b64encode(ds.feed_url.encode()).decode().rstrip("=")
    apps = [json.loads(get("/queries/top-apps-for-show", {k: v})[2])["appDownloads"]
            for k, v in (("showUuid", show), ("podcastGuid", ds.podcast_guid),
                         ("feedUrlBase64", feed))]
    assert apps[0] == apps[1] == apps[2] and apps[0]
    status, _, text = get("/queries/top-apps", {})
    assert sum(json.loads(text)["appShares"].values()) == pytest.approx(100, abs=1e-3)
    status, _, text = get("/queries/show-download-counts", {"showUuid": show})
    assert json.loads(text)["showDownloadCounts"][show]["monthlyDownloads"] == sum(
        ds.download_count(d) for d in days(Y - timedelta(days=29), Y))

    assert get("/queries/top-apps", {}, auth="none")[0] == 401
    status, _, text = _urllib_get(f"{base}/queries/top-apps?token=wrong")
    assert (status, json.loads(text)) == (403, {"error": "forbidden"})

