"""Wall time of the demo (every asset, N days) against the emulator, and of a chaos run.

    .venv/bin/python benchmarks/bench_demo.py [--days 30] [--repeat 3] [--chaos]

Prints seconds per pass, the emulator's request count and the requests per second the
pipeline achieved. ``--chaos`` times the default chaos run instead (faulted pass plus
reference pass). Not part of the test suite; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from podcast_pipeline.chaos import ChaosOptions, run_chaos, run_pass
from podcast_pipeline.emulator import Faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chaos", action="store_true", help="time the default chaos run")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    times = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "bench.duckdb")
            options = ChaosOptions(days=args.days, database=db)
            if args.chaos:
                report = run_chaos(options, out=io.StringIO())
                passes = [("faulted", report.faulted), ("reference", report.reference)]
            else:
                passes = [("demo", run_pass(options, now, db, Faults(), 0,
                                            dg.DagsterInstance.ephemeral(), io.StringIO()))]
        for name, p in passes:
            n = p.emulator_stats.get("requests", 0)
            print(f"run {i + 1} {name:<9} {p.seconds:7.1f} s  {n:6d} requests  "
                  f"{n / p.seconds:6.1f} requests/s", flush=True)
        times.append(sum(p.seconds for _, p in passes))
    print(f"median {statistics.median(times):.1f} s over {len(times)} run(s) of {args.days} days")


if __name__ == "__main__":
    main()
