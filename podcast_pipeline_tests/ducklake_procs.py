"""The concurrent-writers test of DuckLake, for any catalog (test_ducklake: SQLite;
test_distributed: PostgreSQL): two writer processes and a reader of one table. A module of
its own so that a spawned process imports only the warehouse, not Dagster."""

from __future__ import annotations

import multiprocessing
import queue
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.http import RawResponse
from podcast_pipeline.settings import LakeSettings
from podcast_pipeline.tables import TABLES_BY_KEY

PLAYS = TABLES_BY_KEY["anchor.plays"]
DAY0 = date(2026, 1, 1)
WINDOW = 3  # days per write; each write slides one day, so it replaces 2 days it wrote before
WRITES = 2  # per writer
SHOWS = ("show-a", "show-b")
RAW_COMPARED = ("asset", "show_id", "window_start", "window_end", "request_seq", "path",
                "status", "fetched_at", "body", "covers_start", "covers_end")


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
                # Let the reader finish a read begun after this commit (the second one from
                # now) before the next write, so reads interleave with the commits (bounded:
                # the reader reads without pause).
                seen = reads.value
                for _ in range(4000):
                    if reads.value >= seen + 2:
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


def writers_and_reader(lake: LakeSettings, tmp_path: Path) -> None:
    """The test: two writer processes (one show each) and a reader process on ``lake``; then
    the same writes, one after another, into a DuckDB file must give the same tables."""
    with warehouse.connect(lake) as con:
        warehouse.ensure_schema(con)  # what the deployment's first run does
    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    reads, commits = ctx.Value("i", 0), ctx.Value("i", 0)
    read_proc = ctx.Process(target=reader, args=(lake, stop, reads, out))
    writers = [ctx.Process(target=writer, args=(lake, show, reads, commits, out))
               for show in SHOWS]
    started = [read_proc, *writers]
    try:
        read_proc.start()
        for w in writers:
            w.start()
        results = dict(out.get(timeout=240) for _ in writers)
        stop.set()
        read = out.get(timeout=60)[1]
    except queue.Empty:
        pytest.fail("a writer or the reader did not finish in time")
    finally:
        stop.set()
        for p in started:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert results == {show: "ok" for show in SHOWS}
    assert commits.value == len(SHOWS) * WRITES
    assert read["errors"] == []  # the reader was never locked out
    assert read["bad"] == []  # nor saw half a window
    # It read between the writes (each writer waited for a read after every commit) and so
    # saw each show's windows being replaced, every one whole.
    assert read["reads"] >= WRITES
    assert read["states"] == [(show, w) for show in SHOWS for w in range(WRITES)]
    # The same writes, one after another, into a DuckDB file: the same tables.
    file_db = str(tmp_path / "reference.duckdb")
    with warehouse.connect(file_db) as con:
        warehouse.ensure_schema(con)
        for write in range(WRITES):
            for show in SHOWS:
                start, end, frame, raw, at = window(show, write)
                warehouse.replace_window(con, PLAYS, show, start, end, frame, raw, at)
    raw_sql = (f"SELECT {', '.join(RAW_COMPARED)} FROM ({warehouse.WHOLE_BODIES}) "
               "ORDER BY show_id, covers_start")
    plays_sql = "SELECT * FROM anchor.plays ORDER BY show_id, partition_date"
    with warehouse.reader(file_db) as ref, warehouse.reader(lake) as got:
        assert got.execute(plays_sql).fetchall() == ref.execute(plays_sql).fetchall()
        assert got.execute(raw_sql).fetchall() == ref.execute(raw_sql).fetchall()
    for show in SHOWS:
        with warehouse.reader(lake) as con:
            stored = dict(con.execute("SELECT partition_date, plays FROM anchor.plays "
                                      "WHERE show_id = ?", [show]).fetchall())
        assert stored == expected_state(show, WRITES - 1)


def conflict_retried_then_named(lake: LakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two connections (as two hosts) on one lake: a transaction that loses its commit to the
    other writer's runs again and lands; one that loses every time fails, bounded, saying
    what to do, and leaves the table as the other writer left it. (On an SQLite catalog
    the other writer would wait for the first's open transaction instead: use PostgreSQL.)"""
    with warehouse.connect(lake) as con, warehouse.connect(lake) as other:
        con.execute("CREATE TABLE t AS SELECT 'a' AS show_id, 0 AS n")
        attempts = []

        def replace(lose: int) -> None:
            attempts.append(1)
            con.execute("BEGIN TRANSACTION")
            con.execute("SELECT count(*) FROM t WHERE show_id = 'a'").fetchall()  # as replace_window
            if len(attempts) <= lose:  # the other writer commits to the same table meanwhile
                other.execute("INSERT INTO t VALUES ('b', ?)", [len(attempts)])
            con.execute("DELETE FROM t WHERE show_id = 'a'")
            con.execute("INSERT INTO t VALUES ('a', ?)", [len(attempts)])
            con.execute("COMMIT")

        warehouse.retry_conflicts(con, "writing t", lambda: replace(1))
        assert len(attempts) == 2
        assert con.execute("SELECT * FROM t ORDER BY 1").fetchall() == [("a", 2), ("b", 1)]
        monkeypatch.setattr(warehouse, "CONFLICT_ATTEMPTS", 3)
        attempts.clear()
        with pytest.raises(warehouse.WarehouseConflict, match="gave up after 3 attempts.*"
                           "Nothing was written: re-run those partitions"):
            warehouse.retry_conflicts(con, "writing t", lambda: replace(99))
        assert len(attempts) == 3
        assert con.execute("SELECT * FROM t WHERE show_id = 'a'").fetchall() == [("a", 2)]
