"""Every asset through Dagster's real execution, against the emulator, into DuckDB files.

Expected values come from the emulator's dataset (``emu.dataset``), never from numbers
written into the test: the same per-day data the emulated APIs serve.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.emulator import Dataset, Emulator, EmulatorConfig
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.schedules import SNAPSHOT_KEYS as _SNAPSHOT_KEYS
from podcast_pipeline.schedules import WINDOWED_KEYS as _WINDOWED_KEYS
from podcast_pipeline.tables import ALL_TABLES as _ALL_TABLES

# The REST backend and OP3; the GraphQL-only spotify.* tables are checked in
# test_backends_compare.py against the same dataset.
ALL_TABLES = tuple(t for t in _ALL_TABLES if t.schema != "spotify")
TABLES_BY_KEY = {t.qualified: t for t in ALL_TABLES}
SNAPSHOT_KEYS = [k for k in _SNAPSHOT_KEYS if k.path[0] != "spotify"]
WINDOWED_KEYS = [k for k in _WINDOWED_KEYS if k.path[0] != "spotify"]

SEED = 11
ALL_ASSETS = [*anchor_assets, *op3_assets]
ENV_KEYS = ("ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL",
            "OP3_TOKEN", "OP3_SHOW_UUID", "OP3_URL_PREFIX", "DUCKDB_PATH")
OP3_PAGE = 20000  # the client's downloads page size
HITS_PAGE = 1000  # the client's redirect-logs page size


# ---------------------------------------------------------------------- common fixtures
@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """The emulator on the real UTC today, so yesterday is the latest partition."""
    with Emulator(EmulatorConfig(seed=SEED)) as e:
        yield e


def resources_for(emu: Emulator, db: Path | str) -> dict[str, dg.ConfigurableResource]:
    env = emu.env
    return {
        "anchor": AnchorResource(base_url=env["ANCHOR_BASE_URL"],
                                 webstation_id=env["ANCHOR_WEBSTATION_ID"],
                                 cookie=env["ANCHOR_PW_S"]),
        "op3": Op3Resource(base_url=env["OP3_BASE_URL"], token=env["OP3_TOKEN"],
                           show_uuid=env["OP3_SHOW_UUID"], url_prefix=env["OP3_URL_PREFIX"]),
        "warehouse": WarehouseResource(database=str(db)),
    }


def point_env_at(monkeypatch: pytest.MonkeyPatch, emu: Emulator, db: Path | str) -> None:
    """The environment a user would set, pointing at the emulator and ``db``."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in emu.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DUCKDB_PATH", str(db))


def range_tags(start: date, end: date) -> dict[str, str]:
    """What a single-run backfill (and the schedule's look-back run) puts on its run."""
    return {"dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat()}


def query(db: Path | str, sql: str, *params: object) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def checksums(db: Path | str) -> dict[str, tuple[int, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t.qualified: warehouse.checksum(con, t) for t in ALL_TABLES}


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> failure message."""
    return {e.step_key: e.step_failure_data.error.message for e in result.all_events
            if e.is_step_failure and e.step_key}


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string().replace("/", "."): e.materialization
            for e in result.all_events if e.is_step_materialization}


@dataclass(frozen=True)
class Run:
    db: Path
    day: date
    result: dg.ExecuteInProcessResult
    by_endpoint: dict[str, int]


@pytest.fixture(scope="module")
def yesterday(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """All 25 assets materialized for the latest partition (yesterday, UTC)."""
    db = tmp_path_factory.mktemp("assets") / "podcast.duckdb"
    day = emu.dataset.yesterday
    emu.reset_stats()
    result = dg.materialize(ALL_ASSETS, resources=resources_for(emu, db),
                            partition_key=day.isoformat(), raise_on_error=False)
    assert result.success, failures(result)
    return Run(db, day, result, emu.stats()["by_endpoint"])


# ---------------------------------------------------------------------- expectations
def _fractions_of(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: n / total for k, n in counts.items() if n}


def _share_check(kind: str, column: str) -> Callable[[Run, Dataset, str], None]:
    def check(run: Run, ds: Dataset, table: str) -> None:
        got = dict(query(run.db, f"SELECT {column}, fraction FROM {table} "
                         "WHERE partition_date = ?", run.day))
        assert sum(got.values()) == pytest.approx(1.0)
        expected = _fractions_of(ds.anchor_day(run.day).categories[kind])
        assert {k: v for k, v in got.items() if v} == pytest.approx(expected)
    return check


def _top_countries(ds: Dataset, n: int = 5) -> list[str]:
    counts = ds.category_counts("geo", ds.first_day, ds.yesterday)
    return sorted((k for k in counts if counts[k]), key=lambda k: (-counts[k], k))[:n]


def check_episodes(run: Run, ds: Dataset, table: str) -> None:
    got = {eid: (title, ts) for eid, title, ts in query(
        run.db, f"SELECT episode_id, title, epoch(publish_on) FROM {table} "
        "WHERE partition_date = ?", run.day)}
    assert got == {e.episode_id: (e.title, e.publish_ts) for e in ds.episodes}  # drafts too


def check_total_plays_by_episode(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT episode_id, plays FROM {table}"))
    assert got == ds.total_plays_by_episode()


def _single(column: str, expected: Callable[[Dataset], int]) -> Callable[[Run, Dataset, str], None]:
    def check(run: Run, ds: Dataset, table: str) -> None:
        assert query(run.db, f"SELECT partition_date, {column} FROM {table}") == [
            (run.day, expected(ds))]
    return check


def check_plays(run: Run, ds: Dataset, table: str) -> None:
    assert query(run.db, f"SELECT date, plays FROM {table}") == [
        (run.day, ds.station_plays(run.day))]


def check_plays_by_episode(run: Run, ds: Dataset, table: str) -> None:
    got = Counter(query(run.db, f"SELECT episode_title, plays FROM {table} WHERE date = ?",
                        run.day))
    plays = ds.anchor_day(run.day).plays
    top = sorted((e for e in plays.items() if e[1]), key=lambda e: (-e[1], e[0]))[:5]
    assert got == Counter((ds.episode(eid).title, n) for eid, n in top)


def check_plays_by_geo(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT geo, fraction FROM {table}"))
    exact = _fractions_of(ds.category_counts("geo", ds.first_day, ds.yesterday))
    assert got.keys() == exact.keys()
    assert got == pytest.approx(exact, abs=0.005)  # Spotify rounds ≥ 1 % to two decimals


def check_plays_by_geo_city(run: Run, ds: Dataset, table: str) -> None:
    got = {(c, g): f for c, g, f in query(run.db, f"SELECT country, geo, fraction FROM {table}")}
    expected = {}
    for country in _top_countries(ds):
        counts = ds.category_counts("city", ds.first_day, ds.yesterday, country)
        expected |= {(country, g): f for g, f in _fractions_of(counts).items()} if counts else {}
    assert got.keys() == expected.keys() and expected
    assert got == pytest.approx(expected, abs=0.005)


def check_impressions(run: Run, ds: Dataset, table: str) -> None:
    assert query(run.db, f"SELECT date, impressions FROM {table}") == [
        (run.day, sum(ds.anchor_day(run.day).impressions.values()))]


def check_episode_plays(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT episode_id, plays FROM {table} WHERE date = ?", run.day))
    # Every published episode, including those without a play (e.g. published today).
    assert got == {e.episode_id: ds.episode_plays(e.episode_id, run.day) for e in ds.published}
    assert 0 in got.values()


def check_episode_performance(run: Run, ds: Dataset, table: str) -> None:
    got = {eid: (n, total, last) for eid, n, total, last in query(
        run.db, f"SELECT episode_id, count(*), sum(listeners), max(sample_second) FROM {table} "
        "GROUP BY 1")}
    curves = {e.episode_id: ds.performance(e.episode_id) for e in ds.published}
    assert got == {eid: (len(c), sum(c), len(c) - 1) for eid, c in curves.items() if c}


def check_episode_aggregated_performance(run: Run, ds: Dataset, table: str) -> None:
    got = {(eid, m): v for eid, m, v in query(
        run.db, f"SELECT episode_id, metric, value FROM {table}")}
    expected = {(e.episode_id, m): (None if v is None else float(v))
                for e in ds.published for m, v in ds.aggregated_performance(e.episode_id)}
    assert got == expected


def check_episode_metadata(run: Run, ds: Dataset, table: str) -> None:
    got = {eid: (title, published) for eid, title, published in query(
        run.db, f"SELECT episode_id, title, is_published FROM {table}")}
    assert got == {e.episode_id: (e.title, True) for e in ds.published}


def check_downloads(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT episode_id, count(*) FROM {table} WHERE date = ? "
                     "GROUP BY 1", run.day))
    expected = {e.op3_episode_id: ds.download_count(run.day, e.op3_episode_id)
                for e in ds.published}
    assert got == {k: n for k, n in expected.items() if n}
    assert sum(got.values()) == ds.download_count(run.day)


def _hits(ds: Dataset, prefix: str, days: list[date]) -> list[tuple[str, str]]:
    """(time, uuid) of every hit on the show's prefixed URLs (``prefix`` ends in ``*``)."""
    return sorted((h["time"], h["uuid"]) for d in days for h in ds.hits(d)
                  if h["url"].startswith(prefix.removesuffix("*")))


def check_redirect_logs(run: Run, ds: Dataset, table: str) -> None:
    got = query(run.db, f"SELECT epoch_ms(time), uuid FROM {table} ORDER BY 1, 2")
    expected = [(int(datetime.fromisoformat(t).timestamp() * 1000), uuid)
                for t, uuid in _hits(ds, ds.url_prefix + "*", [run.day])]
    assert expected and got == expected


def check_show(run: Run, ds: Dataset, table: str) -> None:
    got = {eid: (title, guid) for eid, title, guid in query(
        run.db, f"SELECT episode_id, episode_title, item_guid FROM {table} "
        "WHERE show_uuid = ?", ds.show_uuid)}
    assert got == {e.op3_episode_id: (e.title, e.guid) for e in ds.published}


def check_recent_episodes_with_transcripts(run: Run, ds: Dataset, table: str) -> None:
    got = set(query(run.db, f"SELECT episode_item_guid, date, downloads FROM {table}"))
    expected = set()
    for e in ds.published:
        if e.has_transcript:
            first = max(e.publish_day, ds.yesterday - timedelta(days=29))
            daily = {(e.guid, d, n) for d in ds.data_days(first)
                     if (n := ds.download_count(d, e.op3_episode_id))}
            expected |= daily or {(e.guid, None, None)}
    assert got == expected


def check_top_apps_for_show(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT app, downloads FROM {table}"))
    month = ds.today.month - 3  # the current and the previous two calendar months
    first = date(ds.today.year + month // 12, month % 12 + 1, 1)
    assert got == dict(ds.app_downloads(ds.data_days(first)))


def check_top_apps(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT app, fraction FROM {table}"))
    last30 = ds.data_days(ds.yesterday - timedelta(days=29))
    assert got == pytest.approx(_fractions_of(ds.app_downloads(last30)), abs=1e-6)


def check_show_download_counts(run: Run, ds: Dataset, table: str) -> None:
    (monthly, weekly), = query(run.db, f"SELECT monthly_downloads, weekly_downloads FROM {table}")
    last30 = [ds.yesterday - timedelta(days=k) for k in range(30)]
    assert monthly == sum(ds.download_count(d) for d in last30) and len(weekly) == 4


EXPECTED: dict[str, Callable[[Run, Dataset, str], None]] = {
    "anchor.episodes": check_episodes,
    "anchor.total_plays": _single("plays", Dataset.total_plays),
    "anchor.total_plays_by_episode": check_total_plays_by_episode,
    "anchor.unique_listeners": _single("unique_listeners", Dataset.unique_listeners),
    "anchor.audience_size": _single("audience_size", Dataset.audience_size),
    "anchor.plays": check_plays,
    "anchor.plays_by_age_range": _share_check("age", "age_range"),
    "anchor.plays_by_app": _share_check("app", "app"),
    "anchor.plays_by_device": _share_check("device", "device"),
    "anchor.plays_by_episode": check_plays_by_episode,
    "anchor.plays_by_gender": _share_check("gender", "gender"),
    "anchor.plays_by_geo": check_plays_by_geo,
    "anchor.plays_by_geo_city": check_plays_by_geo_city,
    "anchor.impressions": check_impressions,
    "anchor.episode_plays": check_episode_plays,
    "anchor.episode_performance": check_episode_performance,
    "anchor.episode_aggregated_performance": check_episode_aggregated_performance,
    "anchor.episode_metadata": check_episode_metadata,
    "op3.downloads": check_downloads,
    "op3.redirect_logs": check_redirect_logs,
    "op3.show": check_show,
    "op3.recent_episodes_with_transcripts": check_recent_episodes_with_transcripts,
    "op3.top_apps_for_show": check_top_apps_for_show,
    "op3.top_apps": check_top_apps,
    "op3.show_download_counts": check_show_download_counts,
}


def test_every_table_has_an_expectation():
    assert set(EXPECTED) == set(TABLES_BY_KEY) and len(ALL_ASSETS) == 25


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_asset_materializes_expected_rows(yesterday: Run, emu: Emulator, table: str):
    (partitions,) = query(yesterday.db, f"SELECT list(DISTINCT partition_date) FROM {table}")
    assert partitions == ([yesterday.day],)
    EXPECTED[table](yesterday, emu.dataset, table)


# ---------------------------------------------------------------------- metadata
def _headline_expected(ds: Dataset, day: date) -> dict[str, int]:
    return {"anchor.plays": ds.station_plays(day), "op3.downloads": ds.download_count(day),
            "anchor.total_plays": ds.total_plays(),
            "op3.redirect_logs": len(_hits(ds, ds.url_prefix + "*", [day]))}


def test_materialization_metadata_for_the_ui(yesterday: Run, emu: Emulator):
    mats = materializations(yesterday.result)
    assert set(mats) == set(TABLES_BY_KEY)
    headlines = _headline_expected(emu.dataset, yesterday.day)
    for name, mat in mats.items():
        table = TABLES_BY_KEY[name]
        meta = mat.metadata
        assert mat.partition == yesterday.day.isoformat()
        (rows,) = query(yesterday.db, f"SELECT count(*) FROM {name}")[0]
        assert meta["dagster/row_count"].value == rows > 0, name
        assert meta["dagster/table_name"].value == name
        columns = [c.name for c in meta["dagster/column_schema"].schema.columns]
        assert columns == [c for c, _ in warehouse.table_columns(table)]
        assert meta["preview"].value.startswith(f"| {table.columns[0][0]} |"), name
        if table.headline:
            assert isinstance(meta[table.headline], dg.IntMetadataValue), name
        if name in headlines:
            assert meta[table.headline].value == headlines[name], name
    checks = yesterday.result.get_asset_check_evaluations()
    assert len(checks) == 25 and all(c.passed for c in checks)


def test_no_secret_reaches_duckdb_or_the_event_log(yesterday: Run, emu: Emulator):
    ds = emu.dataset
    secrets = [ds.cookie, unquote(ds.cookie), ds.op3_token]
    with duckdb.connect(str(yesterday.db), read_only=True) as con:
        for name in [t.qualified for t in ALL_TABLES] + [warehouse.RAW_TABLE]:
            for secret in secrets:
                (hits,) = con.execute(f"SELECT count(*) FROM {name} t "
                                      "WHERE contains(t::VARCHAR, ?)", [secret]).fetchone()
                assert hits == 0, name
        (raw_rows,) = con.execute(f"SELECT count(*) FROM {warehouse.RAW_TABLE}").fetchone()
    events = "\n".join(str(e) for e in yesterday.result.all_events)
    assert not any(secret in events for secret in secrets)
    # One raw body per successful request (a 308 and its target are one exchange).
    assert raw_rows == sum(yesterday.by_endpoint.values()) - yesterday.by_endpoint["redirectLogs"]


# ---------------------------------------------------------------------- idempotence
def test_rematerializing_is_idempotent(yesterday: Run, emu: Emulator):
    before = checksums(yesterday.db)
    (raw_before,) = query(yesterday.db, f"SELECT count(*) FROM {warehouse.RAW_TABLE}")
    again = dg.materialize(ALL_ASSETS, resources=resources_for(emu, yesterday.db),
                           partition_key=yesterday.day.isoformat(), raise_on_error=False)
    assert again.success, failures(again)
    assert checksums(yesterday.db) == before
    assert all(n > 0 for n, _ in before.values())
    assert query(yesterday.db, f"SELECT count(*) FROM {warehouse.RAW_TABLE}") == [raw_before]


# ---------------------------------------------------------------------- backfill
def redirect_log_pages(hits: list[tuple[str, str]], limit: int = HITS_PAGE) -> int:
    """Pages the client needs: each page restarts at the previous page's last time
    (inclusive, deduplicated on uuid), so rows sharing a millisecond are not skipped."""
    pages, lo, after, seen = 0, "", False, set()
    while True:
        pages += 1
        page = [h for h in hits if (h[0] > lo if after else h[0] >= lo)][:limit]
        new = {u for _, u in page} - seen
        seen |= new
        if len(page) < limit:
            return pages
        last = page[-1][0]
        after = not new or (not after and lo == last)
        lo = last


def test_single_run_backfill_of_30_days_makes_minimal_requests(
        emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from podcast_pipeline.definitions import build_definitions

    ds = emu.dataset
    end = ds.yesterday
    start = end - timedelta(days=29)
    days = ds.data_days(start, end)
    assert len(days) == 30
    db = tmp_path / "backfill.duckdb"
    point_env_at(monkeypatch, emu, db)
    job = build_definitions().resolve_job_def("daily_refresh")
    emu.reset_stats()
    result = job.execute_in_process(asset_selection=WINDOWED_KEYS, tags=range_tags(start, end),
                                    instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success, failures(result)
    steps = [e.step_key for e in result.all_events if e.is_step_start]
    assert sorted(steps) == sorted("__".join(k.path) for k in WINDOWED_KEYS)  # one step each

    requests = emu.requests
    anchor = [r for r in requests if r.api == "anchor"]
    bootstraps = [r for r in anchor if r.endpoint == "episodePage" and "orderBy" not in r.path_with_query]
    # The episode list carries the station id: a run bootstraps it only when a station
    # endpoint is asked before the list, and then once for every step of the run.
    first_is_list = anchor[0].endpoint == "episodePage" and "orderBy" in anchor[0].path_with_query
    expected_bootstraps = 0 if first_is_list else 1
    downloads = sum(ds.download_count(d) for d in days)
    pages = redirect_log_pages(_hits(ds, emu.env["OP3_URL_PREFIX"], days))
    per_day = len(days)
    assert emu.stats()["by_endpoint"] == {
        "plays": 1, "playsByEpisode": 1, "impressions": 1,
        "playsByAgeRange": per_day, "playsByApp": per_day, "playsByDevice": per_day,
        "playsByGender": per_day,
        # One per published episode, plus the episode list.
        "episodePlays": len(ds.published),
        "episodePage": math.ceil(len(ds.episodes) / 50) + expected_bootstraps,
        # A full page always carries a continuation token, so the last page may be empty.
        "downloads": downloads // OP3_PAGE + 1,
        # /redirect-logs answers 308 to /hits, as the live service does; the client follows
        # the permanent redirect once, then asks /hits directly for the later pages.
        "redirectLogs": 1, "hits": pages,
    }
    assert len(bootstraps) == expected_bootstraps
    assert set(emu.stats()["by_status"]) <= {200, 308}

    # Every day of the window landed, split into its own partition.
    assert query(db, "SELECT date, plays FROM anchor.plays ORDER BY 1") == [
        (d, ds.station_plays(d)) for d in days]
    assert query(db, "SELECT partition_date, count(*) FROM op3.downloads GROUP BY 1 ORDER BY 1") == [
        (d, ds.download_count(d)) for d in days]
    for name in ("anchor.plays_by_age_range", "anchor.plays_by_gender"):
        sums = query(db, f"SELECT partition_date, sum(fraction) FROM {name} GROUP BY 1 ORDER BY 1")
        assert [d for d, _ in sums] == days and all(s == pytest.approx(1) for _, s in sums)

    # The UI's per-partition plot: one observation per day of the headline number.
    observed: dict[str, dict[str, int]] = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_OBSERVATION":
            obs = e.event_specific_data.asset_observation
            name = obs.asset_key.to_user_string().replace("/", ".")
            headline = TABLES_BY_KEY[name].headline
            if headline:
                observed.setdefault(name, {})[obs.partition] = obs.metadata[headline].value
    assert observed["anchor.plays"] == {d.isoformat(): ds.station_plays(d) for d in days}
    assert observed["op3.downloads"] == {d.isoformat(): ds.download_count(d) for d in days}
    # A window's totals are not stated under per-day names, which Dagster would copy onto
    # every partition of the window.
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            meta = e.event_specific_data.materialization.metadata
            assert "dagster/row_count" not in meta and "rows_in_window" in meta
            assert "plays" not in meta and "downloads" not in meta

    # Re-running one day inside the range replaces that day only: nothing changes.
    before = checksums(db)
    emu.reset_stats()
    day = days[10].isoformat()
    rerun = job.execute_in_process(asset_selection=WINDOWED_KEYS, partition_key=day,
                                   instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert rerun.success, failures(rerun)
    assert checksums(db) == before


# ---------------------------------------------------------------------- snapshots
def test_old_snapshot_partitions_refuse_and_write_nothing(yesterday: Run, emu: Emulator):
    snapshot_assets = [a for a in ALL_ASSETS if a.key in SNAPSHOT_KEYS]
    before = checksums(yesterday.db)
    old = (yesterday.day - timedelta(days=3)).isoformat()
    emu.reset_stats()
    result = dg.materialize(snapshot_assets, resources=resources_for(emu, yesterday.db),
                            partition_key=old, raise_on_error=False)
    failed = failures(result)
    assert len(failed) == len(SNAPSHOT_KEYS) == 15
    for message in failed.values():
        assert "the API only returns current values" in message
        assert f"only the latest partition ({yesterday.day})" in message and old in message
    assert emu.stats()["requests"] == 0  # refused before asking the API
    assert checksums(yesterday.db) == before


def test_snapshot_range_reaching_back_refuses(yesterday: Run, emu: Emulator):
    """A backfill that ends on the latest day but starts earlier must not store
    today's numbers under the earlier days either."""
    from podcast_pipeline.schedules import daily_refresh_job

    before = checksums(yesterday.db)
    from podcast_pipeline.spotify.assets import spotify_assets

    job = dg.Definitions(assets=[*ALL_ASSETS, *spotify_assets], jobs=[daily_refresh_job],
                         resources=resources_for(emu, yesterday.db)).resolve_job_def(
        "daily_refresh")
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(["anchor", "total_plays"])],
        tags=range_tags(yesterday.day - timedelta(days=1), yesterday.day),
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    (message,) = failures(result).values()
    assert "the API only returns current values" in message
    assert checksums(yesterday.db) == before


def test_snapshot_for_latest_partition_works(yesterday: Run, emu: Emulator):
    mats = materializations(yesterday.result)
    for key in SNAPSHOT_KEYS:
        name = ".".join(key.path)
        assert mats[name].partition == yesterday.day.isoformat()
        (as_of,) = query(yesterday.db, f"SELECT DISTINCT as_of IS NOT NULL FROM {name}")
        assert as_of == (True,)
