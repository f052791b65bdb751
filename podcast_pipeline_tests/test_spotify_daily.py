"""The GraphQL-only daily tables against the emulator over real HTTP: the show's all-platform
totals per day, the show's audience size per day, each episode's consumption per day, and
the geography drill-down (country → region → city by navigationName), the last also as a
Dagster asset."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults, spotify_api
from podcast_pipeline.errors import FieldUnavailable, MalformedResponse
from podcast_pipeline.http import RetryPolicy
from podcast_pipeline.resources import AnchorResource, WarehouseResource
from podcast_pipeline.settings import SpotifySettings
from podcast_pipeline.spotify.assets import spotify_assets
from podcast_pipeline.spotify.client import PAGE_SIZE, SpotifyGraphQLClient

FAST = RetryPolicy(total=6, backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.0)


def client(emu: Emulator) -> SpotifyGraphQLClient:
    return SpotifyGraphQLClient(SpotifySettings.from_env(emu.graphql_env), retry=FAST)


def test_show_daily_totals_are_the_sum_over_every_page_of_episodes() -> None:
    # More episodes than one page holds: the show's day must count the second page too.
    with Emulator(EmulatorConfig(seed=5, episodes=PAGE_SIZE + 12, drafts=1,
                                 today=date(2025, 6, 1))) as emu:
        ds = emu.dataset
        with client(emu) as c:
            for day in (ds.yesterday, ds.yesterday - timedelta(days=20)):
                show = c.show_daily_totals(day)
                episodes = c.episode_daily_totals(day)
                plays = c.plays(day, day)
                assert len(show) == 1
                row = show.iloc[0]
                # The dataset's own per-episode counts, independent of the client.
                truth = ds.spotify_day(day).values()
                assert row.plays_and_downloads == sum(p + dl for p, _, dl in truth) > 0
                assert row.streams_and_downloads == sum(s + dl for _, s, dl in truth)
                for col in ("plays_and_downloads", "streams_and_downloads", "starts"):
                    assert row[col] == episodes[col].sum(), col
                assert row.starts == plays["plays"].sum()  # Spotify-only starts = anchor.plays
                assert row.episode_count == len(episodes) == PAGE_SIZE + 13
        # Two pages per day asked, for each of the two tables.
        assert emu.stats()["by_endpoint"]["WebGetIndexedEpisodeList"] == 2 * 2 * 2


def test_audience_size_daily_is_asked_with_include_audience_size(emulator: Emulator) -> None:
    ds = emulator.dataset
    start, end = ds.yesterday - timedelta(days=9), ds.yesterday
    with client(emulator) as c:
        got = c.audience_size_daily(start, end)
    # What the emulator's resolver serves for the same variables is the truth here.
    served = spotify_api.RESOLVERS["getShowOnSpotifyStats"](
        spotify_api.SpotifyBackend(ds), {
            "showUri": ds.spotify_show_uri, "dateRangeWindow": "WINDOW_CUSTOM",
            "customDateRange": {"startDate": start.isoformat(), "endDate": end.isoformat()},
            "includeAudienceSize": True}, lambda: False)
    points = served["showByShowUri"]["audienceSizeDaily"]["analyticsValue"]["analyticsValue"][
        "points"]
    assert [(d.isoformat(), n) for d, n in zip(got["date"], got["audience_size"], strict=True)] \
        == [(p["date"], p["value"]["value"]) for p in points]
    assert list(got["date"]) == ds.data_days(start, end)


def test_audience_size_missing_is_reported_not_zero(emulator: Emulator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that ignores includeAudienceSize (or nulls it) must not give a table of zeros.
    def without(b: Any, v: dict[str, Any], g: Any) -> Any:
        out = spotify_api._on_spotify(b, {**v, "includeAudienceSize": False}, g)
        out["showByShowUri"]["audienceSizeDaily"] = None
        return out

    monkeypatch.setitem(spotify_api.RESOLVERS, "getShowOnSpotifyStats", without)
    d = emulator.dataset.yesterday
    with client(emulator) as c, pytest.raises(FieldUnavailable, match="audienceSizeDaily"):
        c.audience_size_daily(d, d)


def test_episode_consumption_daily_adds_up_to_the_all_time_snapshot(
        emulator: Emulator) -> None:
    ds = emulator.dataset
    first, last = ds.data_days()[0], ds.data_days()[-1]
    with client(emulator) as c:
        eid = int(c.episodes().sort_values("total_plays").iloc[-1].episode_id)
        daily = c.episode_consumption_daily(eid, first, last)
        week = c.episode_consumption_daily(eid, last - timedelta(days=6), last)
        all_time = c.episode_consumption(eid).iloc[0]
    assert list(daily["date"]) == ds.data_days() and set(daily["episode_id"]) == {eid}
    assert daily["ms_played"].sum() > 0
    # Each day is rounded to the millisecond: the days add up to all time within that.
    assert abs(int(daily["ms_played"].sum()) - int(all_time.ms_played)) <= len(daily)
    assert (daily["foreground_ms_played"] <= daily["ms_played"]).all()
    assert daily["foreground_fraction"].between(0, 1).all()
    # The same day asked in another window is the same number.
    tail = daily[daily["date"] >= last - timedelta(days=6)].reset_index(drop=True)
    assert tail.astype(str).equals(week.astype(str))


def test_a_consumption_day_of_another_shape_fails_instead_of_storing(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    def reshaped(b: Any, v: dict[str, Any], g: Any) -> Any:
        out = spotify_api._consumption(b, v, g)
        series = out["episodeByUri"]["episodeConsumptionDaily"]["analyticsValue"][
            "analyticsValue"]
        for p in series["points"]:  # a plain count where the ConsumptionValue was
            p["value"] = {"value": p["value"]["totalMsPlayed"]}
        return out

    monkeypatch.setitem(spotify_api.RESOLVERS, "getEpisodeConsumption", reshaped)
    d = emulator.dataset.yesterday
    with client(emulator) as c:
        eid = int(c.episodes().iloc[0].episode_id)
        with pytest.raises(MalformedResponse, match="totalConsumptionHours"):
            c.episode_consumption_daily(eid, d - timedelta(days=2), d)


def test_geo_drills_down_by_navigation_name(emulator: Emulator) -> None:
    with client(emulator) as c:
        geo = c.geo()
    countries = geo[geo.level == "country"]
    regions = geo[geo.level == "region"]
    cities = geo[geo.level == "city"]
    assert len(countries) and len(regions) and len(cities)
    # Regions were asked with the country's code (the emulator answers a display name with
    # nothing), cities with the region's code.
    assert set(regions["country"]) <= set(countries["navigation_name"])
    assert set(regions["country"]) - set(countries["name"]) == set(regions["country"])
    for (country, region), _ in cities.groupby(["country", "region"]):
        parents = regions[(regions.country == country)]
        assert region in set(parents["navigation_name"]), (country, region)


def test_geo_with_region_nulled_by_data_fetching_exception_stores_nothing(
        emulator: Emulator) -> None:
    emulator.set_faults(Faults(data_fetching_rate=1.0))
    with client(emulator) as c, pytest.raises(FieldUnavailable) as err:
        c.geo()
    assert "showPlaysAndDownloadsByGeo" in str(err.value)
    assert "DataFetchingException" in str(err.value) and "nothing was stored" in str(err.value)
    # the first region was asked 1 + malformed_retries times, then the snapshot gave up
    assert emulator.stats()["faults"]["data_fetching"] == FAST.malformed_retries + 1


def test_geo_asset_keeps_its_last_snapshot_when_a_region_is_nulled(tmp_path: Path) -> None:
    db = tmp_path / "podcast.duckdb"
    geo = [a for a in spotify_assets if a.key == dg.AssetKey(["spotify", "geo"])]
    with Emulator(EmulatorConfig(seed=11)) as emu:
        g = emu.graphql_env
        resources = {
            "anchor": AnchorResource(
                backend="graphql", webstation_id=emu.env["ANCHOR_WEBSTATION_ID"],
                sp_dc=g["SPOTIFY_SP_DC"], sp_key=g["SPOTIFY_SP_KEY"],
                accounts_url=g["SPOTIFY_ACCOUNTS_URL"], graphql_url=g["SPOTIFY_GRAPHQL_URL"],
                legacy_api_url=g["SPOTIFY_LEGACY_API_URL"], backoff_factor=0.01),
            "warehouse": WarehouseResource(database=str(db))}
        assert dg.materialize(geo, resources=resources).success

        def stored() -> list[tuple]:
            with duckdb.connect(str(db), read_only=True) as con:
                return con.execute("SELECT level, country, region, name, navigation_name, "
                                   "fraction FROM spotify.geo ORDER BY ALL").fetchall()

        before = stored()
        assert {r[0] for r in before} == {"country", "region", "city"}
        emu.set_faults(Faults(data_fetching_rate=1.0))
        result = dg.materialize(geo, resources=resources, raise_on_error=False)
    assert not result.success
    # Each try (Dagster retries the step: a nulled field is often transient) names the cause.
    messages = []
    for e in result.all_events:
        err = getattr(e.event_specific_data, "error", None)
        while err is not None:  # Dagster wraps the step's own error as the cause
            messages.append(str(err.message))
            err = err.cause or err.context
    assert any("DataFetchingException" in m and "nothing was stored" in m for m in messages), \
        messages
    assert stored() == before  # the day's complete snapshot stays; no zeros, no holes
