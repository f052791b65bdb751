"""Chaos equality: faults cost retries and re-runs, never data.

The demo runs against an emulator injecting 5xx, 429, latency and truncated bodies,
then a fault-free run of the same seed fills a second database; every table's checksum
must match. Fewer days than the CLI's 30 keep this quick.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import replace

import dagster as dg
import duckdb

from podcast_pipeline.chaos import ChaosOptions, compare, run_chaos
from podcast_pipeline.emulator import Faults
from podcast_pipeline.emulator.faults import FaultEngine
from podcast_pipeline.tables import ALL_TABLES


def figure(text: str, pattern: str) -> tuple[int, ...]:
    match = re.search(pattern, text)
    assert match, f"no {pattern!r} in:\n{text}"
    return tuple(int(g) for g in match.groups())


def test_chaos_command_ends_with_tables_equal_to_a_fault_free_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    proc = subprocess.run(
        [sys.executable, "-m", "podcast_pipeline.cli", "chaos", "--days", "3",
         "--database", str(tmp_path / "chaos.duckdb"), "--error-rate", "0.2",
         "--rate-limit-rate", "0.1", "--truncated-rate", "0.1", "--jitter-ms", "5"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-4000:]
    (requests,) = figure(out, r"requests made\s+(\d+)")
    (reference_requests,) = figure(out, r"reference run (\d+)")
    errors, limits, truncated = figure(out, r"faults injected\s+5xx (\d+), 429 (\d+), "
                                            r"truncated/malformed (\d+)")
    retries, refetches = figure(out, r"client retries\s+(\d+) \(429/5xx\) \+ (\d+) malformed")
    assert errors > 0 and limits > 0 and truncated > 0
    assert retries > 0 and refetches > 0
    assert requests >= reference_requests + errors + limits
    assert out.count("equal: yes") == len(ALL_TABLES) and "equal: NO" not in out
    assert (tmp_path / "chaos.reference.duckdb").exists()


def test_a_step_that_keeps_failing_is_rerun_and_the_tables_still_match(tmp_path):
    # Only anchor.plays gets faults, no client retries: with this fault seed its first three
    # requests (one attempt plus two Dagster step retries) get 5xx and the fourth succeeds,
    # so the run fails and only the chaos re-run of that asset heals it.
    faults = Faults(error_rate=0.5, apply_to=frozenset({"plays"}))
    seed = next(s for s in range(10_000) if _errors(replace(faults, seed=s), 4) == [1, 1, 1, 0])
    out = io.StringIO()
    report = run_chaos(ChaosOptions(days=2, database=str(tmp_path / "chaos.duckdb"),
                                    faults=replace(faults, seed=seed), max_retries=0,
                                    backend="rest"), out=out)  # "plays": REST's endpoint name
    assert report.ok, out.getvalue()
    failed = [o for o in report.faulted.outcomes if not o.success]
    assert [o.failed_assets for o in failed] == [[dg.AssetKey(["anchor", "plays"])]]
    assert [(f.run_id, n.success) for f, n in report.faulted.reruns] == [(failed[0].run_id, True)]
    assert report.faulted.total("step_retries") == 2
    assert report.faulted.emulator_stats["faults"] == {"error": 3}
    assert "re-runs                  1" in out.getvalue()

    # The comparison is what makes the verdict: one changed value is caught.
    with duckdb.connect(str(tmp_path / "chaos.duckdb")) as con:
        con.execute("UPDATE anchor.plays SET plays = plays + 1 WHERE partition_date = "
                    "(SELECT max(partition_date) FROM anchor.plays)")
    diff = [t.table for t in compare(str(tmp_path / "chaos.duckdb"),
                                     str(tmp_path / "chaos.reference.duckdb")) if not t.equal]
    assert diff == ["anchor.plays"]


def _errors(faults: Faults, n: int) -> list[int]:
    engine = FaultEngine(faults)
    return [int(engine.draw().error_status is not None) for _ in range(n)]
