"""Crash atomicity: SIGKILL a real run while DuckDB is writing a big partition window.

An OP3 downloads window of 20 days (~35k rows plus ~15 MB of raw TSV pages) is first
written with one dataset ("old"); a ``dagster asset materialize`` process then replaces
it with another ("new") and is killed — the CLI and its step worker, as a power cut
would — at the moment the database file starts to grow while the writer holds the
warehouse lock, i.e. in the middle of the commit. No production hook is needed.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb

from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline_tests.procs import (
    Materialize,
    dagster_home,
    materialize_in_process,
    partition_checksums,
    pipeline_env,
    table_checksums,
)

TODAY = date(2025, 6, 1)
WINDOW = ("2025-05-12", "2025-05-31")
OLD_PER_DAY, NEW_PER_DAY = 1500, 2000
TABLE = "op3.downloads"


def config(per_day: int) -> EmulatorConfig:
    return EmulatorConfig(seed=7, today=TODAY, downloads_per_day=per_day)


def raw_checksum(db: str) -> tuple[int, int]:
    with duckdb.connect(db, read_only=True) as con:
        n, h = con.execute("SELECT count(*), coalesce(sum(hash(body)), 0) FROM raw.responses "
                           "WHERE asset = ?", [TABLE]).fetchone()
    return int(n), int(h)


def lock_holders(lock_file: str) -> set[int]:
    """PIDs holding a flock on ``lock_file`` (from /proc/locks; waiters are not holders)."""
    inode = os.stat(lock_file).st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" not in parts and len(parts) > 5 and parts[1] == "FLOCK" \
                and parts[5].rsplit(":", 1)[-1] == str(inode):
            pids.add(int(parts[4]))
    return pids


def size(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + ".wal") if os.path.exists(p))


def kill_mid_write(run: Materialize, db: str, timeout: float = 120.0) -> None:
    """SIGKILL the run's process group once its writer holds the lock and the file grows."""
    baseline = size(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, f"the run ended before it was killed:\n{run.log[-3000:]}"
        if lock_holders(db + ".lock") and size(db) != baseline:
            run.kill()
            return
        time.sleep(0.001)
    run.kill()
    raise AssertionError(f"the run never started writing:\n{run.log[-3000:]}")


def test_sigkill_mid_write_leaves_whole_partitions_and_a_rerun_heals(tmp_path):
    db, reference = str(tmp_path / "crash.duckdb"), str(tmp_path / "reference.duckdb")
    with Emulator(config(OLD_PER_DAY)) as old_emu:
        materialize_in_process(old_emu, db, ["op3/downloads"], partition_range=WINDOW)
    old, old_raw = partition_checksums(db, TABLE), raw_checksum(db)

    with Emulator(config(NEW_PER_DAY)) as emu:
        materialize_in_process(emu, reference, ["op3/downloads"], partition_range=WINDOW)
        new, new_raw = partition_checksums(reference, TABLE), raw_checksum(reference)
        assert len(old) == len(new) == 20 and all(old[d] != new[d] for d in old)

        env = pipeline_env(emu, db, dagster_home(tmp_path))
        crashed = Materialize(env, ["op3/downloads"], partition_range=WINDOW)
        kill_mid_write(crashed, db)
        assert crashed.proc.returncode == -signal.SIGKILL
        assert f"{TABLE}: replaced" not in crashed.log  # killed before its write was done

        # The file opens, and the one transaction either happened or did not: every
        # partition (and the raw pages with them) is all old or all new, never a mix.
        after = partition_checksums(db, TABLE)
        assert after in (old, new), {d: (after.get(d) == old[d], after.get(d) == new[d]) for d in old}
        assert raw_checksum(db) == (old_raw if after == old else new_raw)

        # The killed run stays STARTED and keeps its pool slot (the pool's limit is 1): what a
        # user does after a crash (terminate it in the UI: canceled) and what the daemon then
        # does (run_monitoring.free_slots_after_run_end_seconds in dagster.yaml) free it.
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for record in instance.get_run_records(
                    dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                instance.report_run_canceled(record.dagster_run, message="killed")
                instance.event_log_storage.free_concurrency_slots_for_run(
                    record.dagster_run.run_id)
        rerun = Materialize(env, ["op3/downloads"], partition_range=WINDOW)
        assert rerun.finish() == 0, rerun.log[-4000:]
    assert partition_checksums(db, TABLE) == new
    assert table_checksums(db) == table_checksums(reference)
