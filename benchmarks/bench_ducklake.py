"""DuckLake on a PostgreSQL catalog: the project's replace-window transaction from several
writer processes at once (one show each) while a reader queries.

Not part of the tests (test_ducklake.py and test_distributed.py check the same, smaller); needs
the ``[network]`` extra (the DuckLake and postgres scanner wheels of the pinned duckdb 1.5.5).
It opens the lake as the pipeline does (``warehouse.connect``), so a conflicting commit is
retried inside ``replace_window``; the script counts those retries. Usage::

    python -m benchmarks.bench_ducklake --dsn "dbname=lake host=127.0.0.1 port=5432 user=postgres" \
        --data-path /shared/lake --writers 4 --writes 30

Each writer replaces a 7-day window that slides one day per write, so every write deletes
six days it wrote before and inserts seven (plus the raw-body coverage updates). The reader
checks in every snapshot it reads that each show has exactly one row per day it has: a
half-applied replace would show a day missing or doubled.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from podcast_pipeline import warehouse
from podcast_pipeline.http import RawResponse
from podcast_pipeline.settings import LakeSettings
from podcast_pipeline.tables import TABLES_BY_KEY

PLAYS = TABLES_BY_KEY["anchor.plays"]
DAY0 = date(2026, 1, 1)
WINDOW = 7


@contextmanager
def lake(dsn: str, data_path: str, inline: int | None = None
         ) -> Iterator[duckdb.DuckDBPyConnection]:
    """The pipeline's DuckLake connection; ``inline``: DuckLake's DATA_INLINING_ROW_LIMIT
    (inserts this small go into the catalog, not a Parquet file), set on the catalog."""
    with warehouse.connect(LakeSettings(catalog=dsn, data_path=data_path)) as con:
        if inline is not None:
            con.execute(f"CALL {warehouse.LAKE}.set_option('data_inlining_row_limit', "
                        f"{int(inline)})")
        yield con


def frame(show: int, write: int) -> pd.DataFrame:
    days = [DAY0 + timedelta(write + d) for d in range(WINDOW)]
    return pd.DataFrame({"date": days, "plays": [show * 1000 + (d - DAY0).days for d in days],
                         "partition_date": days})


def writer(dsn: str, data_path: str, inline: int | None, show: int, writes: int,
           out: multiprocessing.Queue) -> None:
    stack = ExitStack()
    con = stack.enter_context(lake(dsn, data_path, inline))
    times, retries, failures = [], 0, []
    for w in range(writes):
        start = DAY0 + timedelta(w)
        end = start + timedelta(WINDOW - 1)
        now = datetime.now(UTC)
        raw = [RawResponse("anchor", "plays", f"/plays?show={show}&w={w}", 200, "{}", now)]
        counted: list[str] = []
        t0 = time.perf_counter()
        try:
            warehouse.replace_window(con, PLAYS, f"show-{show}", start, end, frame(show, w), raw,
                                     now, on_retry=counted.append)
            times.append(time.perf_counter() - t0)
        except warehouse.WarehouseConflict as exc:
            failures.append(str(exc)[:300])
        retries += len(counted)
    stack.close()
    out.put({"show": show, "times": times, "retries": retries, "messages": failures})


def reader(dsn: str, data_path: str, stop, out: multiprocessing.Queue) -> None:
    stack = ExitStack()
    con = stack.enter_context(lake(dsn, data_path))
    reads, bad, latencies, errors = 0, 0, [], []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            rows = con.execute(
                "SELECT show_id, count(*), count(DISTINCT partition_date), "
                "max(partition_date) - min(partition_date) + 1 FROM anchor.plays GROUP BY 1"
            ).fetchall()
        except duckdb.Error as exc:
            errors.append(str(exc)[:200])
            continue
        latencies.append(time.perf_counter() - t0)
        reads += 1
        bad += sum(1 for _, n, distinct, span in rows if not n == distinct == span)
        time.sleep(0.02)
    stack.close()
    out.put({"reads": reads, "inconsistent": bad, "latencies": latencies, "errors": errors[:3]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq string of the catalog database")
    parser.add_argument("--data-path", required=True, help="folder shared by all writers")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--inline-rows", type=int, default=None,
                        help="DuckLake's DATA_INLINING_ROW_LIMIT (0: every insert a Parquet file)")
    args = parser.parse_args()
    Path(args.data_path).mkdir(parents=True, exist_ok=True)
    stack = ExitStack()
    con = stack.enter_context(lake(args.dsn, args.data_path, args.inline_rows))
    warehouse.ensure_schema(con)
    stack.close()
    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    read_proc = ctx.Process(target=reader, args=(args.dsn, args.data_path, stop, out))
    read_proc.start()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=writer, args=(args.dsn, args.data_path, args.inline_rows, s, args.writes, out))
             for s in range(args.writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    wall = time.perf_counter() - t0
    stop.set()
    read_result = out.get(timeout=60)
    for p in [*procs, read_proc]:
        p.join(timeout=60)
    stack = ExitStack()
    con = stack.enter_context(lake(args.dsn, args.data_path))
    final = con.execute("SELECT show_id, count(*), sum(plays) FROM anchor.plays GROUP BY 1 "
                        "ORDER BY 1").fetchall()
    days = args.writes - 1 + WINDOW
    expected = [(f"show-{s}", days, sum(s * 1000 + d for d in range(days)))
                for s in range(args.writers)]
    raw_cover = con.execute(
        f"SELECT show_id, sum(covers_end - covers_start + 1) FROM ({warehouse.WHOLE_BODIES}) "
        "GROUP BY 1 ORDER BY 1").fetchall()
    snapshots = con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0]
    files = sum(1 for _ in Path(args.data_path).rglob("*.parquet"))
    times = [t for r in results for t in r["times"]]
    print(json.dumps({
        "duckdb": duckdb.__version__, "inline_rows": args.inline_rows, "writers": args.writers, "writes_each": args.writes,
        "wall_s": round(wall, 2), "commits": len(times),
        "commit_s_median": round(statistics.median(times), 3),
        "commit_s_max": round(max(times), 3),
        "retries": sum(r["retries"] for r in results),
        "messages": [m for r in results for m in r["messages"]][:4],
        "reads": read_result["reads"], "inconsistent_reads": read_result["inconsistent"],
        "read_s_max": round(max(read_result["latencies"], default=0), 3),
        "read_errors": read_result["errors"],
        "final_equals_expected": final == expected,
        "raw_days_covered": [int(n) for _, n in raw_cover], "raw_days_expected": days,
        "snapshots": snapshots, "parquet_files": files,
    }, indent=1))


if __name__ == "__main__":
    main()
