"""The network mode across processes, as deploy/ configures it: Dagster's storage in
PostgreSQL, steps on two dagster-celery workers over Redis, the warehouse a DuckLake with its
catalog in the same PostgreSQL, the emulator serving a network of 4 shows on 2 accounts. A
backfill and then the daily run of every show (one run per show, all at once) must leave
every table equal to the same runs on one machine, while a reader queries the lake.

PostgreSQL and Redis are Debian's, started on loopback by the fixtures (installed with
apt-get when missing) and stopped after; the test is skipped only where neither they nor
apt-get are available.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.demo import execute
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.locations import show_locations
from podcast_pipeline.network import load_network
from podcast_pipeline.politeness import pool_limits
from podcast_pipeline.sensors import apply_pool_limits
from podcast_pipeline.settings import (
    DUCKLAKE_CATALOG_ENV,
    DUCKLAKE_DATA_PATH_ENV,
    WAREHOUSE_ENV,
    LakeSettings,
    Settings,
)
from podcast_pipeline_tests import services
from podcast_pipeline_tests.procs import PROJECT, Materialize, dagster_home, table_checksums

pytest.importorskip("dagster_celery", reason="needs the [network] extra: "
                                               "pip install -e '.[dev,network]'")
pytest.importorskip("dagster_postgres", reason="needs the [network] extra")

BIN = Path(sys.executable).parent
EMU_TODAY = datetime(2025, 6, 1, 6, tzinfo=UTC)
CLEARED = ("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_", "DAGSTER_")
BACKFILL_DAYS = 5
# Per show, the assets of the runs this test runs (the whole daily run is 38 steps per show).
SUBSET = {("anchor", "episodes"), ("anchor", "plays"), ("anchor", "episode_plays"),
          ("op3", "downloads")}


@pytest.fixture(scope="module")
def pg() -> Iterator[services.Postgres]:
    """A throw-away PostgreSQL cluster on loopback, with a database ``dagster``."""
    try:
        with services.postgres() as server:
            yield server
    except services.ServiceMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def redis() -> Iterator[str]:
    try:
        with services.redis() as url:
            yield url
    except services.ServiceMissing as exc:
        pytest.skip(str(exc))


Run = tuple[list[str], tuple[str, str]]  # (asset keys, partition range)


def _runs(env: dict[str, str], home: str) -> tuple[list[Run], list[Run]]:
    """Per show (narrowed to SUBSET): a backfill of the BACKFILL_DAYS before the daily
    window, then the schedule's own daily run (the snapshots in both, as a backfill of
    all assets takes them)."""
    settings = Settings.from_env(env)
    defs, net = build_definitions(settings), load_network(settings)
    with dg.DagsterInstance.from_config(home) as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=EMU_TODAY)
        requests = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(
            context).run_requests or []
    backfill, daily = [], []
    for request in requests:
        if request.tags.get("podcast_pipeline/show") is None:
            continue  # the network.shows run: no API call
        keys = ["/".join(k.path) for k in request.asset_selection or []
                if tuple(k.path[1:]) in SUBSET]
        start = date.fromisoformat(request.tags["dagster/asset_partition_range_start"])
        daily.append((keys, (start.isoformat(), request.tags["dagster/asset_partition_range_end"])))
        backfill.append((keys,
                         ((start - timedelta(BACKFILL_DAYS)).isoformat(),
                          (start - timedelta(1)).isoformat())))
    assert len(daily) == len(net.shows) == 4
    return backfill, daily


def _in_process(runs: list[Run]) -> None:
    """The same runs on one machine: one after another in this process (the environment is
    the test's)."""
    defs = build_definitions()
    for keys, (first, last) in runs:
        request = dg.RunRequest(asset_selection=[dg.AssetKey(k.split("/")) for k in keys],
                                tags={"dagster/asset_partition_range_start": first,
                                      "dagster/asset_partition_range_end": last})
        outcome = execute(defs, request, dg.DagsterInstance.ephemeral(), log_level="WARNING")
        assert outcome.success, outcome.failed_steps


def _run_all(env: dict[str, str], runs: list[tuple[Run, str | None]]) -> None:
    """Every run at once, each ``dagster asset materialize`` (its steps go to Celery), from
    its code location: an attribute of ``locations.py``, or None for the one location."""
    procs = [Materialize(env, keys, partition_range=window, location=location)
             for (keys, window), location in runs]
    try:
        for proc in procs:
            assert proc.finish(timeout=600) == 0, proc.log[-4000:]
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                proc.kill()


class LakeReader(threading.Thread):
    """A reader (a BI tool, a notebook) counting anchor.plays in the lake every 0.3 s while
    the workers write. Before the first commit there is no table yet; after it, every read
    must succeed and no count may drop (a reader never sees half of a window's replace)."""

    def __init__(self, lake: LakeSettings) -> None:
        super().__init__(daemon=True)
        self.lake, self.halt = lake, threading.Event()
        self.counts: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(0.3):
            try:
                with warehouse.reader(self.lake) as con:
                    self.counts.append(con.sql("SELECT count(*) FROM anchor.plays").fetchone()[0])
            except Exception as exc:  # noqa: BLE001 - recorded, judged by the test
                self.errors.append(f"after {len(self.counts)} reads: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.halt.set()
        self.join(60)


@pytest.mark.timeout(600)  # two workers, PostgreSQL and 16 runs on a 2-core machine
def test_backfill_and_daily_run_on_two_celery_workers_equal_one_machine(
        tmp_path: Path, pg: services.Postgres, redis: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's check on loopback: a backfill, then the daily run, of every show, each
    show's runs launched together, their steps on two Celery workers writing one DuckLake
    (catalog in PostgreSQL) while a reader queries it. Every table equals the same runs on
    one machine (the DuckDB file); per account, the emulator never saw more calls at once
    than the setting allows."""
    for key in [k for k in os.environ if k.startswith(CLEARED)]:
        monkeypatch.delenv(key)
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY.date()), shows=4, accounts=2) as emu:
        base = {k: v for k, v in {**emu.env, **emu.graphql_env}.items()
                if k.endswith("_URL") or k == "OP3_TOKEN"}
        base.update(emu.network_env(tmp_path / "network.yaml"))

        # One machine: the DuckDB file, every run in this process.
        local = {**base, "DUCKDB_PATH": str(tmp_path / "local.duckdb")}
        for key, value in local.items():
            monkeypatch.setenv(key, value)
        backfill, daily = _runs(local, dagster_home(tmp_path))
        started = time.monotonic()
        _in_process(backfill + daily)
        local_s = time.monotonic() - started
        local_stats = emu.stats()

        # The network mode: deploy/dagster.yaml (PostgreSQL), DuckLake, two Celery workers.
        postgres = pg.dagster_env()
        for key, value in postgres.items():  # this process reads deploy/dagster.yaml too
            monkeypatch.setenv(key, value)
        home = tmp_path / "network_home"
        home.mkdir()
        shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        pg.createdb("lake")
        lake = LakeSettings(catalog=pg.libpq("lake"), data_path=str(tmp_path / "lake"))
        net = {**{k: v for k, v in os.environ.items() if not k.startswith(CLEARED)},
               **base, **postgres, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # workers call celery
               "DUCKDB_PATH": str(tmp_path / "locks.duckdb"),  # only its lock files: the lake
               WAREHOUSE_ENV: "ducklake", DUCKLAKE_CATALOG_ENV: lake.catalog,
               DUCKLAKE_DATA_PATH_ENV: lake.data_path,
               "PODCAST_PIPELINE_CELERY_BROKER": f"{redis}/0",
               "PODCAST_PIPELINE_CELERY_BACKEND": f"{redis}/1"}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # What the daemon's pool_limits sensor does before the first runs. Without it,
            # runs that start together race to create a pool's row in PostgreSQL, and all
            # but one fail on its unique key (dagster 1.13.27).
            apply_pool_limits(instance, pool_limits(load_network(Settings.from_env(net))))
        workers = [services.Worker(f"w{i}", net) for i in (1, 2)]
        reader = LakeReader(lake)
        emu.reset_stats()
        try:
            for worker in workers:
                worker.wait_ready()
            reader.start()
            started = time.monotonic()
            # Disjoint windows: all at once. The backfill from the one location, the daily
            # runs from a location per account: a task loads its run's location only.
            where = show_locations(load_network(Settings.from_env(net)))
            _run_all(net, [(r, None) for r in backfill] +
                     [(r, where[r[0][0].split("/")[0]]) for r in daily])
            network_s = time.monotonic() - started
        finally:
            reader.stop()
            for worker in workers:
                worker.stop()
        stats = emu.stats()

        # Every step (an asset's, and its checks') ran as a Celery task; both workers took some.
        done = [w.tasks_done for w in workers]
        steps = sum(len(keys) for keys, _ in backfill + daily)
        more = {e: n - local_stats["by_endpoint"].get(e, 0)
                for e, n in stats["by_endpoint"].items() if n != local_stats["by_endpoint"].get(e)}
        print(f"{len(backfill + daily)} runs, {steps} assets, {stats['requests']} requests "
              f"(one machine {local_stats['requests']}; more per endpoint: {more}): one "
              f"machine in process {local_s:.0f} s; two Celery workers {network_s:.0f} s, "
              f"tasks per worker {done}; per-account peaks "
              f"{stats['max_concurrent_by_account']}; reader: {len(reader.counts)} reads")
        assert sum(done) >= steps and min(done) > 0, (done, steps, workers[0].log[-2000:])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records()
            assert len(records) == len(backfill + daily)
            assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)

    # Politeness across hosts: per Spotify account one call at a time (the default), per OP3
    # token at most its 4; and both accounts were called.
    peaks = stats["max_concurrent_by_account"]
    assert {a for a in peaks if not a.startswith("op3:")} == {"acct01", "acct02"}, peaks
    assert all(n <= (4 if a.startswith("op3:") else 1) for a, n in peaks.items()), peaks

    # The reader queried throughout: after the first commit, never an error, never a drop.
    assert [e for e in reader.errors if not e.startswith("after 0 reads")] == [], reader.errors
    assert len(set(reader.counts)) >= 2, reader.counts  # it saw the writes land
    assert reader.counts == sorted(reader.counts), reader.counts

    local_tables = table_checksums(local["DUCKDB_PATH"])
    assert sum(n for n, _ in local_tables.values()) > 0
    assert table_checksums(lake) == local_tables


def test_ducklake_with_its_catalog_in_postgresql(pg, tmp_path, monkeypatch):
    """The DuckLake warehouse as deploy/ would run it: its catalog a database of the same
    PostgreSQL; two writer processes and a reader, as test_ducklake.py does on SQLite; and a
    commit conflict retried, then (when it never wins) named."""
    from podcast_pipeline_tests import ducklake_procs

    pytest.importorskip("duckdb_extension_postgres_scanner", reason="needs the [network] extra")
    pg.createdb("ducklake")
    lake = LakeSettings(catalog=pg.libpq("ducklake"), data_path=str(tmp_path / "lake"))
    ducklake_procs.writers_and_reader(lake, tmp_path)
    ducklake_procs.conflict_retried_then_named(lake, monkeypatch)


def test_writers_that_create_a_fresh_lake_together_all_open_it(pg, tmp_path):
    """The first steps of a deployment open a catalog nobody initialised yet, at once: each
    tries to create DuckLake's tables in PostgreSQL and all but one lose on a unique key
    (seen from the README's by-hand run). The losers retry and open the lake the winner made."""
    pytest.importorskip("duckdb_extension_postgres_scanner", reason="needs the [network] extra")
    pg.createdb("fresh")
    lake = LakeSettings(catalog=pg.libpq("fresh"), data_path=str(tmp_path / "lake"))
    start, errors, opened = threading.Barrier(6), [], []

    def writer() -> None:
        start.wait()
        try:
            with warehouse.connect(lake, timeout=60) as con:
                opened.append(con.sql("SELECT 1").fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - the assertion shows them
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and opened == [1] * 6, errors
