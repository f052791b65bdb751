"""The processes of test_ducklake's concurrent-writers test: two writers and a reader of one
DuckLake table. A module of its own so that a spawned process imports only the warehouse
(not Dagster, which the test module needs)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd

from podcast_pipeline import warehouse
from podcast_pipeline.http import RawResponse
from podcast_pipeline.settings import LakeSettings
from podcast_pipeline.tables import TABLES_BY_KEY

PLAYS = TABLES_BY_KEY["anchor.plays"]
DAY0 = date(2026, 1, 1)
WINDOW = 3  # days per write; each write slides one day, so it replaces 2 days it wrote before
WRITES = 3  # per writer
SHOWS = ("show-a", "show-b")


def window(show: str, write: int) -> tuple[date, date, pd.DataFrame, list[RawResponse], datetime]:
    """Write ``write`` of ``show``: days write..write+WINDOW-1, each day's plays naming the
    write (so a reader can tell which write each stored day came from)."""
    start = DAY0 + timedelta(write)
    days = [start + timedelta(d) for d in range(WINDOW)]
    base = 1000 * (SHOWS.index(show) + 1)
    frame = pd.DataFrame({"date": days, "plays": [base + write] * WINDOW, "partition_date": days})
    at = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(minutes=write)
    raw = [RawResponse("anchor", "plays", f"/plays?show={show}&write={write}", 200,
                       f'{{"write": {write}}}', at)]
    return start, days[-1], frame, raw, at


def expected_state(show: str, write: int) -> dict[date, int]:
    """After writes 0..``write`` of ``show``: each day's plays (the last write covering it)."""
    base = 1000 * (SHOWS.index(show) + 1)
    return {DAY0 + timedelta(d): base + min(d, write) for d in range(write + WINDOW)}


def writer(lake: LakeSettings, show: str, reads, commits, out) -> None:
    try:
        with warehouse.connect(lake) as con:
            warehouse.ensure_schema(con)
            for write in range(WRITES):
                start, end, frame, raw, at = window(show, write)
                warehouse.replace_window(con, PLAYS, show, start, end, frame, raw, at)
                with commits.get_lock():
                    commits.value += 1
                # Let the reader read at least once before the next write, so reads
                # interleave with the commits (bounded: the reader reads without pause).
                seen = reads.value
                for _ in range(2000):
                    if reads.value > seen:
                        break
                    time.sleep(0.005)
        out.put((show, "ok"))
    except BaseException as exc:  # the test reports it
        out.put((show, f"{type(exc).__name__}: {exc}"))


def reader(lake: LakeSettings, stop, reads, out) -> None:
    """Read each show's plays and raw-body coverage in one snapshot, over and over."""
    bad, errors, states = [], [], set()
    try:
        with warehouse.reader(lake) as con:
            while not stop.is_set():
                try:
                    con.execute("BEGIN TRANSACTION")  # one snapshot for both queries
                    plays = con.execute("SELECT show_id, partition_date, plays FROM anchor.plays"
                                        ).fetchall()
                    covers = con.execute(
                        "SELECT show_id, path, covers_start, covers_end FROM raw.responses"
                    ).fetchall()
                    con.execute("COMMIT")
                except duckdb.Error as exc:
                    errors.append(str(exc)[:300])
                    continue
                for show in SHOWS:
                    got = {d: p for s, d, p in plays if s == show}
                    by_raw = {}
                    for s, path, lo, hi in covers:
                        if s == show:
                            w = int(path.rsplit("=", 1)[1])
                            for i in range((hi - lo).days + 1):
                                by_raw[lo + timedelta(i)] = by_raw.get(lo + timedelta(i), ()) + (w,)
                    if not got:
                        if by_raw:
                            bad.append((show, "raw without rows"))
                        continue
                    write = max(got.values()) % 1000
                    ok = got == expected_state(show, write) and by_raw == {
                        d: (p % 1000,) for d, p in got.items()}
                    if not ok:
                        bad.append((show, sorted(got.items())[:10], sorted(by_raw.items())[:10]))
                    states.add((show, write))
                with reads.get_lock():
                    reads.value += 1
    except BaseException as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    out.put(("reader", {"reads": reads.value, "bad": bad[:3], "errors": errors[:3],
                        "states": sorted(states)}))
