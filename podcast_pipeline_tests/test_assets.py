"""Every asset through Dagster's real execution, against the emulator, into DuckDB files.

Expected values come from the emulator's dataset (``emu.dataset``), never from numbers
written into the test: the same per-day data the emulated APIs serve.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.assets import NO_ROWS_HINT
from podcast_pipeline.emulator import Dataset, Emulator, EmulatorConfig
from podcast_pipeline.op3.assets import _spans, op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.schedules import SNAPSHOT_KEYS as _SNAPSHOT_KEYS
from podcast_pipeline.schedules import WINDOWED_KEYS as _WINDOWED_KEYS
from podcast_pipeline.settings import Settings
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
EPISODES = dg.AssetKey(["anchor", "episodes"])
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
    day: date  # the partition of the windowed assets
    snapshot_day: date  # the UTC day the snapshots were taken, which they are stored under
    result: dg.ExecuteInProcessResult
    by_endpoint: dict[str, int]


@pytest.fixture(scope="module")
def yesterday(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """All 25 assets: the windowed ones for the latest partition (yesterday, UTC), the
    snapshots once."""
    db = tmp_path_factory.mktemp("assets") / "podcast.duckdb"
    day = emu.dataset.yesterday
    emu.reset_stats()
    result = dg.materialize(ALL_ASSETS, resources=resources_for(emu, db),
                            partition_key=day.isoformat(), raise_on_error=False)
    assert result.success, failures(result)
    taken = materializations(result)["anchor.episodes"].metadata["snapshot_date"].value
    return Run(db, day, date.fromisoformat(taken), result, emu.stats()["by_endpoint"])


def day_of(run: Run, table: str) -> date:
    """The day ``table``'s rows of this run are stored under."""
    return run.snapshot_day if TABLES_BY_KEY[table].kind == "snapshot" else run.day


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
        "WHERE partition_date = ?", run.snapshot_day)}
    assert got == {e.episode_id: (e.title, e.publish_ts) for e in ds.episodes}  # drafts too


def check_total_plays_by_episode(run: Run, ds: Dataset, table: str) -> None:
    got = dict(query(run.db, f"SELECT episode_id, plays FROM {table}"))
    assert got == ds.total_plays_by_episode()


def _single(column: str, expected: Callable[[Dataset], int]) -> Callable[[Run, Dataset, str], None]:
    def check(run: Run, ds: Dataset, table: str) -> None:
        assert query(run.db, f"SELECT partition_date, {column} FROM {table}") == [
            (run.snapshot_day, expected(ds))]
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
    assert partitions == ([day_of(yesterday, table)],)
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
        snapshot = table.kind == "snapshot"
        assert mat.partition == (None if snapshot else yesterday.day.isoformat()), name
        (rows,) = query(yesterday.db, f"SELECT count(*) FROM {name}")[0]
        assert meta["dagster/row_count"].value == rows > 0, name
        if snapshot:
            assert meta["snapshot_date"].value == yesterday.snapshot_day.isoformat()
        else:
            assert meta["window"].value == f"{yesterday.day}..{yesterday.day}"
            assert meta["window_rows"].value == rows and meta["requests"].value >= 1
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
        (raw_rows,) = con.execute(f"SELECT count(*) FROM ({warehouse.WHOLE_BODIES})").fetchone()
    events = "\n".join(str(e) for e in yesterday.result.all_events)
    assert not any(secret in events for secret in secrets)
    # One raw body per successful request (a 308 and its target are one exchange).
    assert raw_rows == sum(yesterday.by_endpoint.values()) - yesterday.by_endpoint["redirectLogs"]


# ---------------------------------------------------------------------- idempotence
def test_rematerializing_is_idempotent(yesterday: Run, emu: Emulator):
    before = checksums(yesterday.db)
    (raw_before,) = query(yesterday.db, f"SELECT count(*) FROM ({warehouse.WHOLE_BODIES})")
    again = dg.materialize(ALL_ASSETS, resources=resources_for(emu, yesterday.db),
                           partition_key=yesterday.day.isoformat(), raise_on_error=False)
    assert again.success, failures(again)
    assert checksums(yesterday.db) == before
    assert all(n > 0 for n, _ in before.values())
    assert query(yesterday.db, f"SELECT count(*) FROM ({warehouse.WHOLE_BODIES})") == [raw_before]


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


def per_partition_metadata(instance: dg.DagsterInstance, table: str) -> dict[str, dict[str, Any]]:
    """The latest materialization's metadata of each partition, read back from the instance."""
    key = dg.AssetKey(table.split("."))
    found: dict[str, dict[str, Any]] = {}
    for record in instance.fetch_materializations(key, limit=10_000).records:  # newest first
        mat = record.asset_materialization
        assert mat is not None and mat.partition is not None
        found.setdefault(mat.partition, {k: v.value for k, v in mat.metadata.items()})
    return found


def warehouse_per_day(db: Path, table: str, headline: str | None) -> dict[str, tuple[int, int]]:
    """partition -> (rows, headline number) as stored."""
    value = f"sum({headline})" if headline and headline in dict(TABLES_BY_KEY[table].columns) \
        else "count(*)"
    return {d.isoformat(): (int(n), int(v or 0)) for d, n, v in query(
        db, f"SELECT partition_date, count(*), {value} FROM {table} GROUP BY 1")}


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
    # The windowed assets and the episode list the per-episode one reads, as the schedule runs them.
    selection = [*WINDOWED_KEYS, EPISODES]
    instance = dg.DagsterInstance.ephemeral()
    emu.reset_stats()
    result = job.execute_in_process(asset_selection=selection, tags=range_tags(start, end),
                                    instance=instance, raise_on_error=False)
    assert result.success, failures(result)
    steps = [e.step_key for e in result.all_events if e.is_step_start]
    checks = [s for s in steps if s.endswith("_checks")]  # analytics/checks.py: one per asset
    assert sorted(set(steps) - set(checks)) == sorted("__".join(k.path) for k in selection)
    assert len(steps) == len(set(steps))  # one step each

    requests = emu.requests
    anchor = [r for r in requests if r.api == "anchor"]
    bootstraps = [r for r in anchor if r.endpoint == "episodePage" and "orderBy" not in r.path_with_query]
    # The episode list carries the station id: a run bootstraps it only when a station
    # endpoint is asked before the list, and then once for every step of the run.
    first_is_list = anchor[0].endpoint == "episodePage" and "orderBy" in anchor[0].path_with_query
    expected_bootstraps = 0 if first_is_list else 1
    downloads = sum(ds.download_count(d) for d in days)
    # Redirect logs are paged in runs of days side by side, each ending on a short page.
    spans = _spans(start, end, Settings.load().op3_concurrency)
    pages = sum(redirect_log_pages(_hits(ds, emu.env["OP3_URL_PREFIX"], ds.data_days(*span)))
                for span in spans)
    per_day = len(days)
    assert emu.stats()["by_endpoint"] == {
        "plays": 1, "playsByEpisode": 1, "impressions": 1,
        "playsByAgeRange": per_day, "playsByApp": per_day, "playsByDevice": per_day,
        "playsByGender": per_day,
        # One per published episode; the ids come from anchor.episodes, listed once.
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

    # Each partition of the one run carries its own numbers (what the Partitions-mode plots
    # draw), read back from the instance: the warehouse's per-day rows and headline.
    keys = [d.isoformat() for d in days]
    expected_requests = {"anchor.plays": 1, "anchor.plays_by_app": 1, "op3.downloads": None,
                         "anchor.episode_plays": len(ds.published)}
    for name, requests_per_day in expected_requests.items():
        table = TABLES_BY_KEY[name]
        meta = per_partition_metadata(instance, name)
        assert sorted(meta) == keys, name
        stored = warehouse_per_day(db, name, table.headline)
        for key in keys:
            assert meta[key]["dagster/row_count"] == stored[key][0] > 0, (name, key)
            if table.headline:
                assert meta[key][table.headline] == stored[key][1], (name, key)
            if requests_per_day is not None:
                assert meta[key]["requests"] == requests_per_day, (name, key)
            assert meta[key]["window"] == f"{start}..{end}"
            assert meta[key]["window_rows"] == sum(n for n, _ in stored.values())
            assert "note" not in meta[key]
    plays, downloads = (per_partition_metadata(instance, n) for n in ("anchor.plays", "op3.downloads"))
    assert {k: m["plays"] for k, m in plays.items()} == {d.isoformat(): ds.station_plays(d) for d in days}
    assert {k: m["downloads"] for k, m in downloads.items()} == {
        d.isoformat(): ds.download_count(d) for d in days}
    assert len({m["plays"] for m in plays.values()}) > 1  # a daily series, not a window total

    # Re-running one day inside the range replaces that day only: nothing changes.
    before = checksums(db)
    emu.reset_stats()
    day = days[10].isoformat()
    rerun = job.execute_in_process(asset_selection=WINDOWED_KEYS, partition_key=day,
                                   instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert rerun.success, failures(rerun)
    assert checksums(db) == before


def test_days_without_data_are_named_in_the_log_and_on_each_partition(
        emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A window reaching before the emulated show's first day writes 0 rows there: said so."""
    ds = emu.dataset
    start, end = ds.first_day - timedelta(days=3), ds.first_day + timedelta(days=1)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([a for a in ALL_ASSETS if a.key == dg.AssetKey(["anchor", "plays"])],
                            resources=resources_for(emu, tmp_path / "w.duckdb"),
                            tags=range_tags(start, end), instance=instance, raise_on_error=False)
    assert result.success, failures(result)
    empty = [start + timedelta(days=k) for k in range(3)]
    warned = [r.user_message for r in instance.all_logs(result.run_id)
              if r.level == logging.WARNING and "returned no rows" in r.user_message]
    assert warned == [f"anchor.plays: the API returned no rows for 3 of 5 days "
                      f"({empty[0]}..{empty[-1]}); they are stored empty. " + NO_ROWS_HINT]
    meta = per_partition_metadata(instance, "anchor.plays")
    for day in empty:
        assert meta[day.isoformat()]["dagster/row_count"] == 0
        assert "returned no rows for this day" in meta[day.isoformat()]["note"]
    for day in (ds.first_day, end):
        assert meta[day.isoformat()]["dagster/row_count"] == 1 and "note" not in meta[day.isoformat()]


# ---------------------------------------------------------------------- snapshots
def test_snapshots_are_unpartitioned_and_stored_under_the_day_they_were_taken(yesterday: Run):
    mats = materializations(yesterday.result)
    for key in SNAPSHOT_KEYS:
        name = ".".join(key.path)
        assert mats[name].partition is None, name
        assert query(yesterday.db, f"SELECT DISTINCT partition_date, "
                     f"(as_of AT TIME ZONE 'UTC')::DATE FROM {name}") == [
            (yesterday.snapshot_day, yesterday.snapshot_day)], name
    assert yesterday.snapshot_day == yesterday.day + timedelta(days=1)  # taken today, UTC


def test_a_range_backfill_of_every_asset_stores_snapshots_only_under_today(
        emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Selecting everything for past days: the windowed assets fill those days, each snapshot
    is taken once and stored under today, never as the history of a day it was not taken."""
    from podcast_pipeline.definitions import build_definitions

    ds = emu.dataset
    end = ds.yesterday - timedelta(days=20)
    start = end - timedelta(days=2)
    db = tmp_path / "all.duckdb"
    point_env_at(monkeypatch, emu, db)
    # The REST backend here: spotify.* (GraphQL only) is left out, as the schedule does.
    result = build_definitions().resolve_job_def("daily_refresh").execute_in_process(
        tags=range_tags(start, end), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        asset_selection=[dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES])
    assert result.success, failures(result)
    today = ds.yesterday + timedelta(days=1)
    for table in ALL_TABLES:
        stored = {d for (d,) in query(db, f"SELECT DISTINCT partition_date FROM {table.qualified}")}
        if table.kind == "snapshot":
            assert stored == {today}, table.qualified
        else:
            assert stored == set(ds.data_days(start, end)), table.qualified


def test_per_episode_assets_need_the_episode_list_first(emu: Emulator, tmp_path: Path):
    per_episode = [a for a in ALL_ASSETS if TABLES_BY_KEY[a.key.to_user_string().replace("/", ".")]
                   .episode_level]
    assert len(per_episode) == 4
    emu.reset_stats()
    result = dg.materialize(per_episode, resources=resources_for(emu, tmp_path / "empty.duckdb"),
                            partition_key=emu.dataset.yesterday.isoformat(), raise_on_error=False)
    assert set(failures(result)) == {"__".join(a.key.path) for a in per_episode}
    for message in failures(result).values():
        assert "needs the episode list" in message and "materialize anchor/episodes first" in message
    assert emu.stats()["requests"] == 0


def test_per_episode_assets_take_the_ids_of_the_stored_episode_list(
        yesterday: Run, emu: Emulator, tmp_path: Path):
    """One listing a day: the per-episode assets read the published ids of the latest
    anchor.episodes snapshot instead of listing the show again."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(yesterday.db, db)
    published = sorted(e.episode_id for e in emu.dataset.published)
    dropped = published[0]
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM anchor.episodes WHERE episode_id = ?", [dropped])
    per_episode = [a for a in ALL_ASSETS if TABLES_BY_KEY[a.key.to_user_string().replace("/", ".")]
                   .episode_level]
    emu.reset_stats()
    result = dg.materialize(per_episode, resources=resources_for(emu, db),
                            partition_key=yesterday.day.isoformat(), raise_on_error=False)
    assert result.success, failures(result)
    listings = [r for r in emu.requests if r.endpoint == "episodePage" and "orderBy" in r.path_with_query]
    assert listings == []
    asked = {int(r.path_with_query.split("/episodes/")[1].split("/")[0]) for r in emu.requests
             if r.endpoint == "episodeOverview"}
    assert asked == set(published) - {dropped}
    for name in ("anchor.episode_plays", "anchor.episode_metadata"):
        assert {e for (e,) in query(db, f"SELECT DISTINCT episode_id FROM {name}")} == asked


def test_each_snapshot_day_keeps_its_own_snapshot(yesterday: Run, emu: Emulator, tmp_path: Path):
    """A snapshot taken on an earlier day stays; today's run replaces only today's."""
    db = tmp_path / "history.duckdb"
    shutil.copy(yesterday.db, db)
    name = "anchor.total_plays"
    earlier = yesterday.snapshot_day - timedelta(days=1)
    with duckdb.connect(str(db)) as con:  # make the stored snapshot one taken a day earlier
        con.execute(f"UPDATE {name} SET partition_date = ?, plays = plays - 7, "
                    "as_of = as_of - INTERVAL 1 DAY", [earlier])
    (before,) = query(db, f"SELECT * FROM {name}")
    asset = next(a for a in ALL_ASSETS if a.key == dg.AssetKey(["anchor", "total_plays"]))
    for _ in range(2):  # the day's last run wins; the earlier day is never touched
        result = dg.materialize([asset], resources=resources_for(emu, db), raise_on_error=False)
        assert result.success, failures(result)
    rows = query(db, f"SELECT * FROM {name} ORDER BY partition_date")
    assert rows[0] == before and len(rows) == 2
    assert query(db, f"SELECT partition_date, plays FROM {name} ORDER BY 1") == [
        (earlier, emu.dataset.total_plays() - 7), (yesterday.snapshot_day, emu.dataset.total_plays())]
