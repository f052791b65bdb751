"""The warehouse against real DuckDB files: one-transaction replace, idempotence, locking."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import duckdb
import pandas as pd
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.errors import ConfigError, MalformedResponse
from podcast_pipeline.http import RawResponse
from podcast_pipeline.tables import TABLES_BY_KEY

PLAYS = TABLES_BY_KEY["anchor.plays"]
NOW = datetime(2026, 11, 20, 6, tzinfo=UTC)


def plays_frame(values: dict[date, int]) -> pd.DataFrame:
    return pd.DataFrame({"date": list(values), "plays": list(values.values()),
                         "partition_date": list(values)})


def raw(n: int = 1) -> list[RawResponse]:
    return [RawResponse("anchor", "plays", f"/analytics/station/1/plays?x={i}", 200, "{}", NOW)
            for i in range(n)]


def write(path: str, frame: pd.DataFrame, start: date, end: date) -> warehouse.WriteResult:
    with warehouse.connect(path) as con:
        warehouse.ensure_schema(con)
        return warehouse.replace_window(con, PLAYS, "abc123", start, end, frame, raw(), NOW)


def read(path: str) -> list[tuple]:
    with duckdb.connect(path, read_only=True) as con:
        return con.execute("SELECT partition_date, date, plays FROM anchor.plays ORDER BY 1").fetchall()


def test_replace_is_idempotent_and_scoped_to_window(tmp_path):
    db = str(tmp_path / "w.duckdb")
    days = {date(2026, 11, d): d * 10 for d in range(1, 6)}
    write(db, plays_frame(days), date(2026, 11, 1), date(2026, 11, 5))
    first = read(db)
    write(db, plays_frame(days), date(2026, 11, 1), date(2026, 11, 5))
    assert read(db) == first and len(first) == 5
    # Restating day 3 only touches day 3.
    write(db, plays_frame({date(2026, 11, 3): 999}), date(2026, 11, 3), date(2026, 11, 3))
    assert [r[2] for r in read(db)] == [10, 20, 999, 40, 50]


def test_rows_outside_window_refuse_the_whole_answer(tmp_path):
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    with pytest.raises(MalformedResponse, match="1 of 2 rows lie outside the requested"):
        write(db, plays_frame({date(2026, 11, 1): 1, date(2026, 11, 9): 9}),
              date(2026, 11, 1), date(2026, 11, 1))
    assert [r[2] for r in read(db)] == [5]


def test_empty_answer_replaces_window_with_nothing(tmp_path):
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    result = write(db, plays_frame({}), date(2026, 11, 1), date(2026, 11, 1))
    assert result.rows == 0 and read(db) == []


def test_failed_insert_rolls_back_the_delete(tmp_path):
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    bad = plays_frame({date(2026, 11, 1): 5})
    bad["plays"] = ["not a number"]
    with pytest.raises(warehouse.WarehouseWriteError, match="rolled back"):
        write(db, bad, date(2026, 11, 1), date(2026, 11, 1))
    assert [r[2] for r in read(db)] == [5]


def test_raw_bodies_are_kept_per_window(tmp_path):
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute("SELECT asset, path FROM raw.responses").fetchall()
    assert rows == [("anchor.plays", "/analytics/station/1/plays?x=0")]


def test_checksum_ignores_fetch_time_but_sees_values(tmp_path):
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({date(2026, 11, 1): 5}), date(2026, 11, 1), date(2026, 11, 1))
    with warehouse.connect(db) as con:
        a = warehouse.checksum(con, PLAYS)
        con.execute("UPDATE anchor.plays SET fetched_at = now()")
        assert warehouse.checksum(con, PLAYS) == a
        con.execute("UPDATE anchor.plays SET plays = 6")
        assert warehouse.checksum(con, PLAYS) != a


def test_unwritable_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="DUCKDB_PATH"):
        warehouse.check_writable(str(blocker / "sub" / "db.duckdb"))


def _hold_open(path: str, seconds: float, ready) -> None:
    con = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


@contextmanager
def held_by_another_process(tmp_path, seconds: float) -> Iterator[str]:
    """A database file another real process keeps open for ``seconds``."""
    db = str(tmp_path / "w.duckdb")
    write(db, plays_frame({}), date(2026, 11, 1), date(2026, 11, 1))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_open, args=(db, seconds, ready))
    holder.start()
    ready.wait(30)
    try:
        yield db
    finally:
        holder.join()


def test_writer_waits_for_another_process_then_proceeds(tmp_path):
    waits: list[str] = []
    with held_by_another_process(tmp_path, 3.0) as db:
        with warehouse.connect(db, timeout=60, on_wait=waits.append) as con:
            con.execute("SELECT 1")
    assert waits and "held by another process" in waits[0]


def test_writer_gives_up_with_a_clear_message(tmp_path):
    with held_by_another_process(tmp_path, 6.0) as db:
        with pytest.raises(warehouse.WarehouseBusy, match="Close the other program"):
            with warehouse.connect(db, timeout=1.5):
                pass


def test_a_window_whose_raw_bodies_outgrow_the_memory_limit_commits(tmp_path, monkeypatch):
    """DuckDB pins a commit's long strings of an unfinished row group all at once: at its
    128 MB limit a year of OP3 redirect-log pages (730 × 600 KB) stored whole failed with
    Out of Memory. Stored in parts they commit. The same at a quarter of the scale: 60 MB
    of bodies under a 32 MB limit, which bodies stored whole do not survive."""
    monkeypatch.setattr(warehouse, "DUCKDB_MEMORY_LIMIT", "32MB")
    bodies = [RawResponse("anchor", "plays", f"/analytics/station/1/plays?page={i}", 200,
                          os.urandom(300_000).hex(), NOW) for i in range(100)]  # 60 MB
    days = {date(2026, 11, d): d for d in range(1, 31)}

    def write(db: str) -> None:
        with warehouse.connect(db) as con:
            warehouse.ensure_schema(con)
            warehouse.replace_window(con, PLAYS, "abc123", date(2026, 11, 1),
                                     date(2026, 11, 30), plays_frame(days), bodies, NOW)

    db = str(tmp_path / "big.duckdb")
    write(db)
    with duckdb.connect(db, read_only=True) as con:
        stored = con.execute("SELECT path, string_agg(body, '' ORDER BY part) FROM raw.responses "
                             "GROUP BY ALL").fetchall()
        (longest,) = con.execute("SELECT max(length(body)) FROM raw.responses").fetchone()
    assert sorted(stored) == sorted((b.path, b.body) for b in bodies)
    assert longest == warehouse.BODY_PART  # stored in parts, each short enough to stay inline
    assert len(read(db)) == 30

    monkeypatch.setattr(warehouse, "BODY_PART", 10**9)  # whole bodies: what this replaced
    with pytest.raises(warehouse.WarehouseWriteError, match="Out of Memory"):
        write(str(tmp_path / "whole.duckdb"))


def test_bodies_are_stored_in_parts_that_join_back_exactly():
    part = warehouse.BODY_PART
    text = "é" * (2 * part + 10) + "x"  # parts count characters, not bytes
    assert "".join(warehouse.body_parts(text)) == text
    assert [len(p) for p in warehouse.body_parts(text)] == [part, part, 11]
    assert warehouse.body_parts("") == [""]
