"""DuckDB: table DDL from the contract in ``tables.py``, and the one-transaction
partition-window replace every asset uses.

Writes are serialised across processes by a file lock beside the database
(``<db>.lock``) so that parallel steps and runs wait rather than fail on DuckDB's
single-writer lock; API calls happen before the lock is taken. SQL text only ever
contains identifiers from our own code; every value is a bound parameter or comes
from a registered DataFrame.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from podcast_pipeline import completeness, validate
from podcast_pipeline.errors import PodcastPipelineError
from podcast_pipeline.http import RawResponse
from podcast_pipeline.redact import redact, scrub_frame
from podcast_pipeline.tables import ALL_TABLES, Table

log = logging.getLogger(__name__)

# Columns that change on every fetch and so are left out of content checksums.
VOLATILE_COLUMNS = frozenset({"fetched_at", "as_of"})

RAW_TABLE = "raw.responses"
RAW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("asset", "VARCHAR"),
    ("api", "VARCHAR"),
    ("endpoint", "VARCHAR"),
    ("show_id", "VARCHAR"),
    ("window_start", "DATE"),
    ("window_end", "DATE"),
    ("request_seq", "INTEGER"),
    ("path", "VARCHAR"),
    ("status", "INTEGER"),
    ("fetched_at", "TIMESTAMPTZ"),
    ("body", "VARCHAR"),
    # The days this body is the stored truth for. Windows of different writes overlap; a
    # later write trims the older bodies' coverage (splitting it when it lands inside),
    # so every stored day is covered by exactly one write's bodies and re-parsing the
    # bodies of each day's coverage gives back the tables exactly.
    ("covers_start", "DATE"),
    ("covers_end", "DATE"),
)


class WarehouseBusy(PodcastPipelineError):
    """The database stayed locked by another process for longer than we wait."""


class WarehouseWriteError(PodcastPipelineError):
    """DuckDB could not write (disk full, file too large, I/O error); nothing was written."""


def table_columns(table: Table) -> tuple[tuple[str, str], ...]:
    """Key columns, then ``as_of`` for snapshots, then the endpoint's own columns."""
    extra = (("as_of", "TIMESTAMPTZ"),) if table.kind == "snapshot" else ()
    stamp = (("backend", "VARCHAR"),) if table.has_backend else ()
    return table.all_columns[:3] + extra + table.columns + stamp


def ddl(table: Table) -> str:
    cols = ", ".join(f'"{name}" {type_}' for name, type_ in table_columns(table))
    return f"CREATE TABLE IF NOT EXISTS {table.qualified} ({cols})"


def add_column(qualified: str, column: str, type_: str) -> str:
    """SQL adding a contract column (identifiers from tables.py / RAW_COLUMNS only)."""
    return f'ALTER TABLE {qualified} ADD COLUMN "{column}" {type_}'


def ensure_schema(con: duckdb.DuckDBPyConnection, tables: Sequence[Table] = ALL_TABLES) -> None:
    """Create what is missing; a database from an earlier version gains the columns added
    to the contract since (nullable; a column the contract dropped stays, unused)."""
    for schema in sorted({t.schema for t in tables} | {"raw"}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in tables:
        con.execute(ddl(table))
    raw_cols = ", ".join(f"{n} {t}" for n, t in RAW_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} ({raw_cols})")
    have: dict[str, set[str]] = {}
    for schema, name, column in con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
    ).fetchall():
        have.setdefault(f"{schema}.{name}", set()).add(column)
    wanted = [(t.qualified, table_columns(t)) for t in tables] + [(RAW_TABLE, RAW_COLUMNS)]
    for qualified, columns in wanted:
        for column, type_ in columns:
            if column not in have.get(qualified, set()):
                con.execute(add_column(qualified, column, type_))
    if "covers_start" not in have.get(RAW_TABLE, set()):  # bodies from before coverage
        con.execute(f"UPDATE {RAW_TABLE} SET covers_start = window_start, "
                    "covers_end = window_end")


def check_writable(path: str) -> None:
    """Fail early, naming the setting, when ``path`` cannot hold the warehouse."""
    validate.duckdb_path("DUCKDB_PATH", path)


@contextmanager
def write_lock(path: str, timeout: float = 600.0, on_wait=None) -> Iterator[None]:
    """Hold ``<db>.lock`` for the duration of a write; call ``on_wait`` once if we must wait."""
    lock = FileLock(str(Path(path).expanduser()) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait(f"waiting for another writer of {path} to finish (up to {timeout:.0f} s)")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            held = holder(path)
            raise WarehouseBusy(
                f"{path} stayed locked by another pipeline writer for {timeout:.0f} s; is a "
                "long run still writing" + (f", or waiting for the file, which is held by "
                                            f"{held}?" if held else "?")) from None
    try:
        yield
    finally:
        lock.release()


def holder(path: str) -> str | None:
    """DuckDB's own words for the process holding ``path`` open (program and PID), if any."""
    try:
        duckdb.connect(str(Path(path).expanduser()), read_only=True).close()
    except duckdb.IOException as exc:
        match = re.search(r"held in (.+?\(PID \d+\))", str(exc))
        return match.group(1) if match else None
    return None


@contextmanager
def connect(path: str, *, timeout: float = 120.0, on_wait=None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open read-write, retrying while another process (a user's SQL shell) holds the file."""
    check_writable(path)
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            con = duckdb.connect(str(Path(path).expanduser()))
            break
        except duckdb.Error as exc:
            if not validate.held_elsewhere(str(exc)):
                raise WarehouseWriteError(f"could not open {path} for writing "
                                          f"({type(exc).__name__}: {str(exc)[:300]}); nothing "
                                          "was written") from None
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"could not open {path} for writing for {timeout:.0f} s: {exc}. Close the "
                    "other program holding it (a duckdb shell or notebook), or read with "
                    "a copy of the file while the pipeline writes."
                ) from None
            if not warned and on_wait:
                on_wait(f"{path} is held by another process, waiting up to {timeout:.0f} s: {exc}")
                warned = True
            time.sleep(1.0)
    try:
        yield con
    finally:
        con.close()


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    window: tuple[date, date]
    rows_per_day: dict[date, int]
    rows_before: int  # what the window held before
    emptied_days: tuple[date, ...] = ()  # stored days the API explicitly answered as empty


def replace_window(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    show_id: str,
    start: date,
    end: date,
    frame: pd.DataFrame,
    raw: Sequence[RawResponse],
    fetched_at: datetime,
    *,
    max_shrink: float = completeness.DEFAULT_MAX_SHRINK,
) -> WriteResult:
    """Atomically replace ``[start, end]`` of ``table`` for ``show_id`` with ``frame``.

    ``frame`` holds the endpoint's contract columns plus ``partition_date`` (and, for
    snapshots, ``as_of`` where the API said when). Whether the answer may replace the
    window at all is :mod:`podcast_pipeline.completeness`'s rule: rows outside the window
    or outside the value contract, or a replace that would silently empty or shrink
    stored days, raise and leave everything as it was. ``max_shrink``: the largest share
    of a stored day's rows the answer may drop (``PODCAST_PIPELINE_MAX_SHRINK_FRACTION``).
    """
    columns = [name for name, _ in table_columns(table)]
    data = frame.copy()
    data["show_id"] = show_id
    data["fetched_at"] = fetched_at
    if table.kind == "snapshot":
        data["as_of"] = data["as_of"].fillna(fetched_at) if "as_of" in data else fetched_at
    if table.has_backend and "backend" not in data:
        data["backend"] = None
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise PodcastPipelineError(f"{table.qualified}: rows lack columns {missing}")
    completeness.check_answer(table, data, start, end, show_id)
    data = scrub_frame(data[columns])  # the storage gate, whoever built the frame
    per_day = data.groupby(pd.to_datetime(data["partition_date"]).dt.date).size().to_dict()

    raw_frame = pd.DataFrame(
        [(table.qualified, r.api, r.endpoint, show_id, start, end, i, r.path, r.status,
          r.fetched_at, redact(r.body), *_covers(r, start, end))
         for i, r in enumerate(raw)],
        columns=[n for n, _ in RAW_COLUMNS],
    )
    col_list = ", ".join(f'"{c}"' for c in columns)
    select_list = ", ".join(f'CAST("{c}" AS {t})' for c, t in table_columns(table))
    raw_names = ", ".join(n for n, _ in RAW_COLUMNS)
    raw_select = ", ".join(f"CAST({n} AS {t})" for n, t in RAW_COLUMNS)
    key = [table.qualified, show_id]
    con.execute("BEGIN TRANSACTION")
    try:
        before = dict(con.execute(
            f"SELECT partition_date, count(*) FROM {table.qualified} "
            "WHERE show_id = ? AND partition_date BETWEEN ? AND ? GROUP BY 1",
            [show_id, start, end]).fetchall())
        emptied = completeness.check_replace(table, before, per_day, start, end, max_shrink)
        con.register("incoming_rows", data)
        con.register("incoming_raw", raw_frame)
        con.execute(
            f"DELETE FROM {table.qualified} WHERE show_id = ? AND partition_date BETWEEN ? AND ?",
            [show_id, start, end],
        )
        con.execute(f"INSERT INTO {table.qualified} ({col_list}) SELECT {select_list} FROM incoming_rows")
        # Older bodies stop covering the window's days: split those that span past both
        # ends, trim those reaching into it, drop those inside it.
        con.execute(f"INSERT INTO {RAW_TABLE} SELECT * REPLACE (CAST(? AS DATE) AS covers_start) "
                    f"FROM {RAW_TABLE} WHERE asset = ? AND show_id = ? "
                    "AND covers_start < ? AND covers_end > ?", [end + timedelta(1), *key, start, end])
        con.execute(f"UPDATE {RAW_TABLE} SET covers_end = ? WHERE asset = ? AND show_id = ? "
                    "AND covers_start < ? AND covers_end >= ?",
                    [start - timedelta(1), *key, start, start])
        con.execute(f"UPDATE {RAW_TABLE} SET covers_start = ? WHERE asset = ? AND show_id = ? "
                    "AND covers_start BETWEEN ? AND ? AND covers_end > ?",
                    [end + timedelta(1), *key, start, end, end])
        con.execute(f"DELETE FROM {RAW_TABLE} WHERE asset = ? AND show_id = ? "
                    "AND covers_start >= ? AND covers_end <= ?", [*key, start, end])
        con.execute(f"INSERT INTO {RAW_TABLE} ({raw_names}) SELECT {raw_select} FROM incoming_raw")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _rollback(con)
        raise WarehouseWriteError(
            f"writing {table.qualified} {start}..{end} failed ({type(exc).__name__}: "
            f"{str(exc)[:300]}). The transaction was rolled back: those partitions keep "
            "what they had. Free disk space or fix the file, then re-run them.") from None
    except BaseException:
        _rollback(con)
        raise
    finally:
        for view in ("incoming_rows", "incoming_raw"):
            try:
                con.unregister(view)
            except duckdb.Error:
                pass
    return WriteResult(table.qualified, len(data), (start, end), per_day,
                       sum(before.values()), tuple(emptied))


def _covers(r: RawResponse, start: date, end: date) -> tuple[date, date]:
    lo, hi = r.covers or (start, end)
    return max(lo, start), min(hi, end)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is still open: a failed COMMIT has already ended it, and
    the "no transaction is active" that a second ROLLBACK raises would hide the real error."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def latest_episode_ids(con: duckdb.DuckDBPyConnection, listing: Table,
                       show_id: str) -> tuple[date | None, list[int]]:
    """(day of the latest snapshot of ``listing`` for the show, its published episode ids);
    ``(None, [])`` when it was never stored. Drafts (no publish time) have no analytics."""
    (day,) = con.execute(f"SELECT max(partition_date) FROM {listing.qualified} WHERE show_id = ?",
                         [show_id]).fetchone()
    if day is None:
        return None, []
    rows = con.execute(f"SELECT DISTINCT episode_id FROM {listing.qualified} WHERE show_id = ? "
                       "AND partition_date = ? AND publish_on IS NOT NULL ORDER BY 1",
                       [show_id, day]).fetchall()
    return day, [int(eid) for (eid,) in rows]


def checksum(con: duckdb.DuckDBPyConnection, table: Table) -> tuple[int, str]:
    """(row count, order-independent hash of every row without volatile columns)."""
    cols = [c for c, _ in table_columns(table) if c not in VOLATILE_COLUMNS]
    row = ", ".join(f'"{c}" := "{c}"' for c in cols)
    count, total = con.execute(
        f"SELECT count(*), coalesce(sum(hash(struct_pack({row}))), 0)::VARCHAR FROM {table.qualified}"
    ).fetchone()
    return int(count), str(total)
