"""Concurrent writers on one DuckDB file, in real processes.

Several ``dagster asset materialize`` runs (each with the multiprocess executor running
two steps at once) fetch in parallel and then queue on the warehouse's file lock instead
of failing on DuckDB's single-writer lock; a user holding the file open makes runs wait
with a log line and fail after the configured time, naming the holder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import duckdb
import pytest
import yaml

from podcast_pipeline import warehouse
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults, anchor_api, op3_api
from podcast_pipeline_tests.procs import (
    PROJECT,
    Materialize,
    dagster_home,
    materialize_in_process,
    pipeline_env,
    table_checksums,
)
from podcast_pipeline_tests.tamper import Exchange, Tamper

TODAY = date(2025, 6, 1)
ASSETS = ["op3/downloads", "anchor/plays"]
LOCK_ERRORS = ("Could not set lock", "Conflicting lock", "WarehouseBusy", "stayed locked")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as emu:
        yield emu


def test_parallel_runs_and_steps_queue_on_the_file_lock(emu, tmp_path):
    db, reference = str(tmp_path / "common.duckdb"), str(tmp_path / "reference.duckdb")
    # Two steps per credential pool (the shipped limit is 1, politeness's; see
    # test_pools_bound_...): what is tested here is the writers' file lock, so every run's
    # steps must be able to fetch at once and then meet at the lock.
    env = pipeline_env(emu, db, dagster_home(tmp_path, pool_limit=2))
    days = ["2025-05-29", "2025-05-30"]
    # Hold the writers' lock until every step of every run has fetched and is waiting: this
    # proves the API calls overlapped, and then all four writers contend for the file at once.
    with warehouse.write_lock(db, timeout=5):
        runs = [Materialize(env, ASSETS, partition=day) for day in days]
        try:
            for run in runs:
                run.wait_for("waiting for another writer", times=len(ASSETS))
        except AssertionError:
            for run in runs:
                run.kill()
            raise
    codes = [run.finish() for run in runs]
    for run, code in zip(runs, codes, strict=True):
        assert code == 0, run.log[-4000:]
        assert run.count("Executing steps using multiprocess executor") == 1
        assert not any(err in run.log for err in LOCK_ERRORS), run.log[-4000:]

    for day in days:  # the same partitions, one after another in this process
        materialize_in_process(emu, reference, ASSETS, partition=day)
    got, want = table_checksums(db), table_checksums(reference)
    for key in ("op3.downloads", "anchor.plays"):
        assert got[key] == want[key] and got[key][0] > 0, key


def test_a_user_holding_the_file_makes_runs_wait_then_fail_naming_it(emu, tmp_path):
    db = str(tmp_path / "held.duckdb")
    home = dagster_home(tmp_path)
    user = duckdb.connect(db)  # a user's SQL shell on the file, in another process than the runs
    try:
        patient = Materialize(pipeline_env(emu, db, home, PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS="120"),
                              ["anchor/plays"], partition="2025-05-29")
        # Another credential's pool: an Anchor step would queue behind the patient one's
        # slot (limit 1) and start only after it gave up.
        hasty = Materialize(pipeline_env(emu, db, home, PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS="3"),
                            ["op3/downloads"], partition="2025-05-30")
        assert hasty.finish() != 0
        # Whichever run got the writers' lock first, the failure names the process holding
        # the database file (this one) and what to do; it is not retried.
        assert "waiting" in hasty.log and f"(PID {os.getpid()})" in hasty.log, hasty.log[-4000:]
        assert "STEP_UP_FOR_RETRY" not in hasty.log  # it waited its time already
        patient.wait_for("is held by another process, waiting up to")
    finally:
        user.close()
    assert patient.finish() == 0, patient.log[-4000:]
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM anchor.plays").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM anchor.impressions").fetchone()[0] == 0


# ---------------------------------------------------------------------- pools
# Anchor steps that each make one request per day, one after the other, plus OP3's two.
POOLED = ["anchor/plays_by_age_range", "anchor/plays_by_app", "anchor/plays_by_device",
          "op3/downloads"]
# Four steps at once per run: without the pools, two runs would call Anchor 6 at a time.
MAX_STEPS_PER_RUN = {"execution": {"config": {"multiprocess": {"max_concurrent": 4}}}}


def max_in_flight(exchanges: list[Exchange]) -> int:
    """The most requests that were open at the same moment."""
    edges = sorted([(e.started, 1) for e in exchanges] + [(e.ended, -1) for e in exchanges])
    peak = open_ = 0
    for _, step in edges:  # at equal times an end sorts before a start: not an overlap
        open_ += step
        peak = max(peak, open_)
    return peak


def test_pools_bound_the_calls_each_api_gets_across_parallel_runs(tmp_path):
    """Two CLI runs, each running four steps at once, against an emulator answering after
    500 ms: the pools (one per credential, limit 1 from the shipped dagster.yaml) keep the
    requests each API sees at once at the limit, measured by a proxy in front of it. (With
    ``pool=None`` on the assets the same runs had 6 Anchor requests in flight at once.)"""
    limit = yaml.safe_load((PROJECT / "dagster.yaml").read_text())["concurrency"]["pools"][
        "default_limit"]
    with Emulator(EmulatorConfig(seed=7, today=TODAY), faults=Faults(latency_ms=500)) as emu, \
            Tamper(emu.url) as proxy:
        # One request in flight per step, so what is measured is the bound on steps (a
        # credential sees at most pool limit x its PODCAST_PIPELINE_*_CONCURRENCY at once).
        env = pipeline_env(emu, str(tmp_path / "pooled.duckdb"), dagster_home(tmp_path),
                           PODCAST_PIPELINE_SPOTIFY_CONCURRENCY="1",
                           PODCAST_PIPELINE_OP3_CONCURRENCY="1",
                           **{k: v for k, v in proxy.env(emu.env).items() if k.endswith("BASE_URL")})
        runs = [Materialize(env, POOLED, partition_range=span, run_config=MAX_STEPS_PER_RUN)
                for span in (("2025-05-25", "2025-05-27"), ("2025-05-28", "2025-05-30"))]
        codes = [run.finish(timeout=400) for run in runs]
        exchanges = proxy.exchanges
    for run, code in zip(runs, codes, strict=True):
        assert code == 0, run.log[-4000:]
    by_api = {api: [e for e in exchanges if e.path.startswith(prefix)]
              for api, prefix in (("anchor", anchor_api.PREFIX), ("op3", op3_api.PREFIX))}
    assert len(by_api["anchor"]) >= 2 * 3 * 3  # every day of every per-day asset, both runs
    # The limit held for both APIs, and bound Anchor: its steps queued for the pool's slots.
    assert max_in_flight(by_api["anchor"]) == limit
    assert 1 <= max_in_flight(by_api["op3"]) <= limit
    assert any("Step blocked by limit for pool spotify_default" in run.log for run in runs)


def test_lock_timeout_setting_is_validated(monkeypatch):
    from podcast_pipeline.errors import ConfigError
    from podcast_pipeline.resources import WarehouseResource
    from podcast_pipeline.settings import LOCK_TIMEOUT_ENV, Settings

    for bad in ("soon", "0", "-3", "inf"):
        with pytest.raises(ConfigError, match=f"{LOCK_TIMEOUT_ENV} is {bad!r}"):
            Settings.from_env({LOCK_TIMEOUT_ENV: bad})
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "2.5")
    assert WarehouseResource.from_settings(Settings.load()).lock_timeout_seconds == 2.5
