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
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from podcast_pipeline.errors import ConfigError, PodcastPipelineError
from podcast_pipeline.http import RawResponse
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
)


class WarehouseBusy(PodcastPipelineError):
    """The database stayed locked by another process for longer than we wait."""


def table_columns(table: Table) -> tuple[tuple[str, str], ...]:
    """Key columns, then ``as_of`` for snapshots, then the endpoint's own columns."""
    extra = (("as_of", "TIMESTAMPTZ"),) if table.kind == "snapshot" else ()
    stamp = (("backend", "VARCHAR"),) if table.has_backend else ()
    return table.all_columns[:3] + extra + table.columns + stamp


def ddl(table: Table) -> str:
    cols = ", ".join(f'"{name}" {type_}' for name, type_ in table_columns(table))
    return f"CREATE TABLE IF NOT EXISTS {table.qualified} ({cols})"


def ensure_schema(con: duckdb.DuckDBPyConnection, tables: Sequence[Table] = ALL_TABLES) -> None:
    for schema in sorted({t.schema for t in tables} | {"raw"}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in tables:
        con.execute(ddl(table))
    _add_new_columns(con, tables)
    raw_cols = ", ".join(f"{n} {t}" for n, t in RAW_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} ({raw_cols})")


def _add_new_columns(con: duckdb.DuckDBPyConnection, tables: Sequence[Table]) -> None:
    """Columns the contract gained since the file was made (e.g. ``backend``) are added,
    empty, so an existing warehouse keeps working."""
    have = {(s, t, c) for s, t, c in con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns").fetchall()}
    for table in tables:
        for name, type_ in table_columns(table):
            if (table.schema, table.name, name) not in have:
                column_sql = f'"{name}" {type_}'  # identifiers from tables.py only
                con.execute(f"ALTER TABLE {table.qualified} ADD COLUMN {column_sql}")


def check_writable(path: str) -> None:
    """Fail early, naming the setting, when the database file cannot be created."""
    if Path(path).expanduser().is_dir():
        raise ConfigError("DUCKDB_PATH", f"({path}) is a folder, not a database file",
                          "Set DUCKDB_PATH to a file path such as data/podcast.duckdb.")
    parent = Path(path).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("DUCKDB_PATH", f"points into {parent}, which cannot be created ({exc})",
                          "Set DUCKDB_PATH to a file in a writable folder.") from None
    if not os.access(parent, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise ConfigError("DUCKDB_PATH", f"({path}) is not writable",
                          "Set DUCKDB_PATH to a file in a writable folder.")


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
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
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
    dropped_outside_window: int
    rows_per_day: dict[date, int]


def replace_window(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    show_id: str,
    start: date,
    end: date,
    frame: pd.DataFrame,
    raw: Sequence[RawResponse],
    fetched_at: datetime,
) -> WriteResult:
    """Atomically replace ``[start, end]`` of ``table`` for ``show_id`` with ``frame``.

    ``frame`` holds the endpoint's contract columns plus ``partition_date`` (and
    ``as_of`` for snapshots). Rows whose ``partition_date`` falls outside the window
    are dropped (and counted) so that a write can never touch another partition.
    """
    columns = [name for name, _ in table_columns(table)]
    data = frame.copy()
    data["show_id"] = show_id
    data["fetched_at"] = fetched_at
    if table.kind == "snapshot" and "as_of" not in data:
        data["as_of"] = fetched_at
    if table.has_backend and "backend" not in data:
        data["backend"] = None
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise PodcastPipelineError(f"{table.qualified}: rows lack columns {missing}")
    in_window = pd.to_datetime(data["partition_date"]).dt.date.between(start, end)
    dropped = int((~in_window).sum())
    data = data.loc[in_window, columns]
    per_day = data.groupby(pd.to_datetime(data["partition_date"]).dt.date).size().to_dict()

    raw_frame = pd.DataFrame(
        [(table.qualified, r.api, r.endpoint, show_id, start, end, i, r.path, r.status, r.fetched_at, r.body)
         for i, r in enumerate(raw)],
        columns=[n for n, _ in RAW_COLUMNS],
    )
    col_list = ", ".join(f'"{c}"' for c in columns)
    select_list = ", ".join(f'CAST("{c}" AS {t})' for c, t in table_columns(table))
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("incoming_rows", data)
        con.register("incoming_raw", raw_frame)
        con.execute(
            f"DELETE FROM {table.qualified} WHERE show_id = ? AND partition_date BETWEEN ? AND ?",
            [show_id, start, end],
        )
        con.execute(f"INSERT INTO {table.qualified} ({col_list}) SELECT {select_list} FROM incoming_rows")
        con.execute(
            f"DELETE FROM {RAW_TABLE} WHERE asset = ? AND show_id = ? "
            "AND window_start >= ? AND window_end <= ?",
            [table.qualified, show_id, start, end],
        )
        raw_cols = ", ".join(f"CAST({n} AS {t})" for n, t in RAW_COLUMNS)
        con.execute(f"INSERT INTO {RAW_TABLE} SELECT {raw_cols} FROM incoming_raw")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming_rows")
        con.unregister("incoming_raw")
    return WriteResult(table.qualified, len(data), (start, end), dropped, per_day)


def checksum(con: duckdb.DuckDBPyConnection, table: Table) -> tuple[int, str]:
    """(row count, order-independent hash of every row without volatile columns)."""
    cols = [c for c, _ in table_columns(table) if c not in VOLATILE_COLUMNS]
    row = ", ".join(f'"{c}" := "{c}"' for c in cols)
    count, total = con.execute(
        f"SELECT count(*), coalesce(sum(hash(struct_pack({row}))), 0)::VARCHAR FROM {table.qualified}"
    ).fetchone()
    return int(count), str(total)
