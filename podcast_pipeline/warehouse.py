"""DuckDB: table DDL from the contract in ``tables.py``, and the one-transaction
partition-window replace every asset uses.

Two backends, chosen by ``Settings.warehouse_target`` and opened by :func:`connect` /
:func:`reader`: the DuckDB file (the default), or DuckLake (a catalog in PostgreSQL or
SQLite, data files in a shared folder) for many writing processes and hosts.

With the file, writes are serialised across processes by a file lock beside the database
(``<db>.lock``) so that parallel steps and runs wait rather than fail on DuckDB's
single-writer lock; API calls happen before the lock is taken. DuckLake needs no lock: each
writer commits its own snapshot, and a commit that conflicts with another writer's (DuckLake
checks per table) is retried, bounded. SQL text only ever contains identifiers from our own
code; every value is a bound parameter, comes from a registered DataFrame, or (ATTACH binds
none) is quoted by :func:`sql_string`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from podcast_pipeline import completeness, validate
from podcast_pipeline.errors import ConfigError, PodcastPipelineError
from podcast_pipeline.http import RawResponse
from podcast_pipeline.redact import contains_secret, redact, scrub_frame
from podcast_pipeline.settings import (
    DUCKLAKE_CATALOG_ENV,
    DUCKLAKE_DATA_PATH_ENV,
    WAREHOUSE_ENV,
    LakeSettings,
)
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
    # A body longer than BODY_PART characters is stored as several rows, its parts 0, 1, …
    # in order (``string_agg(body, '' ORDER BY part)`` gives it back whole).
    ("part", "INTEGER"),
)
# DuckDB keeps a string longer than a few KiB in overflow blocks, and pins every one of a
# table's unfinished row group at once when it commits or checkpoints it (measured with
# duckdb 1.5.5 and 2.0.0): at a 128 MB limit 730 OP3 pages of 600 KB failed in one write,
# and 230 of them failed even one small commit at a time, since raw.responses gains only a
# few rows a day. Short parts stay inline and are written row group by row group; a row
# group (122,880 rows) is held whole while it is written, so the part sets what that costs:
# a year of pages committed at +476 MB of RSS in parts of 2,048 characters, +206 MB in 512;
# the year's redirect-logs step alone peaked at 430 MiB in parts of 512, 394 MiB in 256.
BODY_PART = 256
# raw.responses with each body whole again: one row per body, no ``part`` (for readers).
WHOLE_BODIES = ("SELECT * EXCLUDE (body, part), string_agg(body, '' ORDER BY part) AS body "
                f"FROM {RAW_TABLE} GROUP BY ALL")


def body_parts(body: str) -> list[str]:
    """``body`` cut into the parts it is stored as (one, possibly empty, at least)."""
    return [body[i:i + BODY_PART] for i in range(0, len(body), BODY_PART)] or [""]


# DuckDB's buffer pool per connection we open. Without a limit it may grow to 80 % of the
# machine's memory on a large window; with one it spills to disk (its temp directory).
DUCKDB_MEMORY_LIMIT = "128MB"
# A stage's connection once its pages are in, and the writer's while it reads a stage in:
# both only stream Parquet files then, on one thread, so a small pool costs little time. A
# year of OP3 redirect logs (1.5 M rows, 1,522 pages of 600 KB), staged and written without
# Dagster: 609 MB peak RSS at 128 MB (the stage's pool still held beside the writer's); 383
# MB at 48 MB with the stage's connection reopened after its dedupe (the replace 12 s → 20
# s). At 32 MB the dedupe of a year of OP3 downloads (730,000 rows) ran out of memory.
STAGED_MEMORY_LIMIT = "48MB"


class WarehouseBusy(PodcastPipelineError):
    """The database stayed locked by another process for longer than we wait."""


class WarehouseWriteError(PodcastPipelineError):
    """DuckDB could not write (disk full, file too large, I/O error); nothing was written."""


class WarehouseConflict(WarehouseWriteError):
    """DuckLake: other writers kept committing to the same table; every attempt rolled back."""


# What :func:`connect` and :func:`reader` open: a DuckDB file's path, or DuckLake.
Target = str | LakeSettings

LAKE = "lake"  # the DuckLake database's name in our connections (``USE lake``)
# (package, extension): the wheels that ship each extension for the pinned duckdb, loaded
# from their files so that nothing is downloaded. The scanner of the catalog goes first.
EXTENSIONS = {"postgres": ("duckdb_extension_postgres_scanner", "postgres_scanner"),
              "sqlite": ("duckdb_extension_sqlite_scanner", "sqlite_scanner"),
              "ducklake": ("duckdb_extension_ducklake", "ducklake")}

# A DuckLake commit that lost to another writer's is retried with growing, jittered sleeps:
# about a minute in all before giving up (docs/scale-out.md: 4 writers on one table, back to
# back, with short linear sleeps of 0.05 s x attempt, twice still lost after 20 attempts).
CONFLICT_ATTEMPTS = 20
CONFLICT_SLEEP_FIRST, CONFLICT_SLEEP_MAX = 0.05, 4.0


def sql_string(value: str) -> str:
    """``value`` as an SQL string literal, for the statements that bind no parameters."""
    return "'" + value.replace("'", "''") + "'"


def attach_sql(path: str, name: str, options: Sequence[str] = ()) -> str:
    """``ATTACH '<path>' AS <name> (<options>)``. DuckDB 1.5 binds no parameter in ATTACH,
    so the path is quoted here: a file of our own (a stage) or the DuckLake catalog of the
    settings; ``name`` and ``options`` are our own words."""
    return f"ATTACH {sql_string(path)} AS {name}" + (f" ({', '.join(options)})" if options else "")


def load_sql(file: str) -> str:
    """``LOAD '<file>'`` of an extension file from its installed wheel (binds no parameter)."""
    return f"LOAD {sql_string(file)}"


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
    to the contract since (nullable; a column the contract dropped stays, unused).

    Done once per database file and process: every step writes through here, and the
    catalog queries cost more than a small step's own write."""
    key = _file_identity(con)
    if key is not None and (key, tuple(t.qualified for t in tables)) in _SCHEMA_READY:
        return

    def work() -> None:  # one transaction: other DuckLake writers may create the same tables
        con.execute("BEGIN TRANSACTION")
        _ensure_schema(con, tables)
        con.execute("COMMIT")

    try:
        retry_conflicts(con, "creating the warehouse tables", work)
    except BaseException:
        _rollback(con)
        raise
    if key is not None:
        _SCHEMA_READY.add((key, tuple(t.qualified for t in tables)))


_SCHEMA_READY: set[tuple[tuple[str, int, int], tuple[str, ...]]] = set()


def _file_identity(con: duckdb.DuckDBPyConnection) -> tuple[str, int, int] | None:
    """(path, device, inode) of the connection's database file: a file deleted and made
    again is another file. A DuckLake: its catalog (hashed: it may hold a password). None
    for an in-memory database."""
    row = con.execute("SELECT path, type FROM duckdb_databases() WHERE database_name = "
                      "current_database()").fetchall()  # fetchone leaves the result open
    if not row or not row[0][0]:
        return None
    path, kind = row[0]
    if kind == "ducklake":
        return ("ducklake:" + hashlib.sha256(path.encode()).hexdigest(), 0, 0)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_dev, st.st_ino)


def _ensure_schema(con: duckdb.DuckDBPyConnection, tables: Sequence[Table]) -> None:
    for schema in sorted({t.schema for t in tables} | {"raw"}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in tables:
        con.execute(ddl(table))
    raw_cols = ", ".join(f"{n} {t}" for n, t in RAW_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} ({raw_cols})")
    have: dict[str, set[str]] = {}
    for schema, name, column in con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database()"  # not DuckLake's catalog database
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
    if "part" not in have.get(RAW_TABLE, set()):  # bodies from before parts: one row each
        con.execute(f"UPDATE {RAW_TABLE} SET part = 0")


def check_writable(path: str, *, try_open: bool = True) -> None:
    """Fail early, naming the setting, when ``path`` cannot hold the warehouse."""
    validate.duckdb_path("DUCKDB_PATH", path, try_open=try_open)


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
def connect(target: Target, *, timeout: float = 120.0,
            on_wait=None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse read-write: the DuckDB file (retrying while another process, a
    user's SQL shell, holds it) or DuckLake (retrying while its catalog is busy)."""
    if isinstance(target, LakeSettings):
        con = _open_lake(target, read_only=False, timeout=timeout, on_wait=on_wait)
    else:
        con = _open_file(target, timeout=timeout, on_wait=on_wait)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def reader(target: Target, *, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for a reader (the summary, the report), read-only unless told
    otherwise, without the writers' lock or waits. The DuckDB file cannot be opened while a
    pipeline step writes it (``duckdb.IOException``); DuckLake can, at any time: the reader
    sees the last committed snapshot, never half a window."""
    if isinstance(target, LakeSettings):
        con = _open_lake(target, read_only=read_only, timeout=30.0)
    else:
        con = duckdb.connect(str(Path(target).expanduser()), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def describe(target: Target) -> str:
    """The warehouse for messages: the file's path, or DuckLake's catalog (password
    masked) and data folder."""
    return target.label() if isinstance(target, LakeSettings) else str(target)


def _open_file(path: str, *, timeout: float, on_wait) -> duckdb.DuckDBPyConnection:
    # The step checked the file opens before its first request (resource.check); opening it
    # read-only again here cost a connect (~30 ms) on every write.
    check_writable(path, try_open=False)
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            return duckdb.connect(str(Path(path).expanduser()),
                                  config={"memory_limit": DUCKDB_MEMORY_LIMIT})
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


def extension_file(key: str) -> str:
    """The file of extension ``key`` (see :data:`EXTENSIONS`) for the running duckdb, from its
    installed wheel; ConfigError naming the package when it is not installed."""
    package, name = EXTENSIONS[key]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        found = sorted(root.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
        if found:
            return str(found[0])
    pip_name = package.replace("_", "-")
    raise ConfigError(WAREHOUSE_ENV, f"is ducklake, but DuckDB's {name} extension for duckdb "
                      f"{duckdb.__version__} is not installed",
                      f"Install the package {pip_name}=={duckdb.__version__} (the project's "
                      "[network] extra has the DuckLake and PostgreSQL ones)")


def _open_lake(lake: LakeSettings, *, read_only: bool, timeout: float,
               on_wait=None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose default database is the DuckLake (``USE lake``), its
    extensions loaded from their wheels (nothing downloaded). Retries, up to ``timeout``,
    while the catalog is busy with another writer's commit."""
    files = [extension_file(lake.kind), extension_file("ducklake")]
    if not read_only:
        try:
            Path(lake.data_path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(DUCKLAKE_DATA_PATH_ENV,
                              f"({lake.data_path}) cannot be created ({exc.strerror})",
                              "Set it to a folder every writer can write") from None
    options = [f"DATA_PATH {sql_string(os.path.join(lake.data_path, ''))}"]
    if read_only:
        options.append("READ_ONLY")
    catalog = f"ducklake:{lake.kind}:{lake.spec}"
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        # No automatic download of a missing extension: the wheels are the only source.
        con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY_LIMIT,
                                     "autoinstall_known_extensions": False})
        try:
            con.execute("SET enable_progress_bar = false")  # a slow catalog read draws one
            for file in files:
                con.execute(load_sql(file))
            con.execute(attach_sql(catalog, LAKE, options))
            con.execute(f"USE {LAKE}")
            return con
        except duckdb.Error as exc:
            con.close()
            text = _lake_text(lake, exc)
            if not is_conflict(exc) or time.monotonic() >= deadline:
                raise WarehouseWriteError(
                    f"could not open {lake.label()}{'' if read_only else ' for writing'} "
                    f"({type(exc).__name__}: {text}); nothing was written. Check "
                    f"{DUCKLAKE_CATALOG_ENV} (is the catalog database reachable, the user "
                    "allowed?) and that the data folder is mounted") from None
            if not warned and on_wait:
                on_wait(f"the DuckLake catalog is busy, retrying up to {timeout:.0f} s: {text}")
                warned = True
            time.sleep(random.uniform(0.05, 0.3))


def _lake_text(lake: LakeSettings, exc: BaseException) -> str:
    """DuckDB's error, cut short, without the catalog string (it may hold a password)."""
    return redact(str(exc).replace(lake.spec, "<catalog>"))[:400]


def is_conflict(exc: BaseException) -> bool:
    """A DuckLake commit that lost to another writer's (or a catalog busy with one): the
    same work, tried again, succeeds."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        "transaction conflict" in text or "database is locked" in text
        or "could not serialize access" in text
        # Writers opening a fresh catalog together each create DuckLake's tables; on
        # PostgreSQL all but one lose on a unique key, and open the winner's lake on retry.
        or ("failed to initialize ducklake" in text
            and ("duplicate key" in text or "already exists" in text)))


T = TypeVar("T")


def retry_conflicts(con: duckdb.DuckDBPyConnection, what: str, work: Callable[[], T],
                    on_retry: Callable[[str], None] | None = None) -> T:
    """``work()`` (one transaction, or statements that each commit), again after a DuckLake
    commit conflict, with growing jittered sleeps, :data:`CONFLICT_ATTEMPTS` times at most;
    then :class:`WarehouseConflict`. Other errors pass through. On the DuckDB file, where one
    process writes at a time, it runs ``work`` once."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return work()
        except duckdb.Error as exc:
            if not is_conflict(exc):
                raise
            _rollback(con)
            if attempt == CONFLICT_ATTEMPTS:
                raise WarehouseConflict(
                    f"{what}: gave up after {CONFLICT_ATTEMPTS} attempts, each lost to another "
                    "writer's commit to the same table (DuckLake checks conflicts per table; "
                    f"last: {' '.join(redact(str(exc)).split())[:240]}). Nothing was "
                    "written: re-run those partitions, or let fewer runs write this table at "
                    "once (max_concurrent_runs, the pools)") from None
            if on_retry:
                on_retry(f"{what}: commit conflict with another writer, attempt {attempt + 1}")
            time.sleep(min(CONFLICT_SLEEP_MAX, CONFLICT_SLEEP_FIRST * 2 ** (attempt - 1))
                       * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    window: tuple[date, date]
    rows_per_day: dict[date, int]
    rows_before: int  # what the window held before
    emptied_days: tuple[date, ...] = ()  # stored days the API explicitly answered as empty


class Stage:
    """One answer's rows and raw bodies, kept on disk page by page as they arrive, so a
    window of any size costs bounded memory: each page's rows become a Parquet file and
    each raw body (in its stored parts) another, in a temporary directory.
    :func:`replace_window` reads both into the warehouse inside its one transaction;
    :meth:`close` deletes the directory.
    Rules 2 and 3 of :mod:`podcast_pipeline.completeness` run on every page before it is
    kept. (Parquet files rather than a DuckDB stage file: that file's WAL and checkpoints
    cost more than the parse of the pages.)

    Thread-safe: concurrent fetches of one window add pages under one lock. Pages are parsed
    by DuckDB: into ``con`` (an in-memory connection that holds one page at a time)
    directly (:meth:`add_table`), or by the stage from a page the client checked
    (:meth:`add_page`).
    """

    def __init__(self, table: Table, show_id: str, start: date, end: date) -> None:
        self.table, self.show_id, self.start, self.end = table, show_id, start, end
        self.columns = [c for c, _ in table.columns]
        self.extras: list[str] = []  # columns the API sent that the table does not know
        self.rows = 0  # staged, duplicates included
        self.per_day: dict[date, int] = {}
        self.duplicates = 0
        self._finished = False
        self._seq = 0
        self._files: list[str] = []  # raw bodies and their details (STAGED_RAW), in order
        self._pages: list[str] = []  # Parquet files of the rows
        self._lock = threading.RLock()
        self._dir = tempfile.mkdtemp(prefix="podcast_pipeline_stage_")
        # read_csv of a page takes one 32 MB buffer: the staged limit would refuse it.
        self.con = self._connect(DUCKDB_MEMORY_LIMIT)

    def _connect(self, memory_limit: str, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": self._dir,
                                     **({"threads": threads} if threads else {})})
        # Identifiers and types from tables.py only. Empty: the rows' shape when no page
        # had any.
        stage_cols = ", ".join(f'"{c}" {t}'
                               for c, t in (("partition_date", "DATE"), *self.table.columns))
        con.execute(f"CREATE TABLE rows ({stage_cols})")
        return con

    # ---- filling
    def record(self, r: RawResponse) -> None:
        """A :data:`~podcast_pipeline.http.Recorder`: the body, cut into its stored parts
        (:data:`BODY_PART`) with its details, goes to a Parquet file at once; the replace
        reads them all back inside its transaction."""
        lo, hi = _covers(r, self.start, self.end)
        body = redact(r.body) if contains_secret(r.body) else r.body  # fetch() masked it
        parts = body_parts(body)
        with self._lock:
            seq = self._seq
            self._seq += 1
            path = os.path.join(self._dir, f"body-{seq:07d}.parquet")
            # Bound values, one row per part (the two unnests zip); no frame in between.
            values = {"request_seq": seq, "api": r.api, "endpoint": r.endpoint, "path": r.path,
                      "status": r.status, "fetched_at": r.fetched_at, "covers_start": lo,
                      "covers_end": hi, "part": len(parts), "body": parts}
            self.con.sql(staged_body_sql(), params=[values[n] for n in STAGED_RAW]
                         ).write_parquet(path)
            self._files.append(path)

    def add_page(self, page: Any) -> None:
        """One page a client checked but left for DuckDB to parse: ``page.load(con, name)``
        puts it into table ``name`` of :attr:`con` (as :meth:`add_table` takes it) and
        returns its column names. Parsed and kept under the stage's lock, so concurrent
        fetches of one window each parse their own pages in turn."""
        with self._lock:
            columns = page.load(self.con, "stage_page")
            self.add_table("stage_page", columns)

    def add_table(self, name: str, columns: Sequence[str]) -> None:
        """One page a client parsed into table ``name`` of :attr:`con` (contract columns
        with their types, ``date``); ``columns``: every column the page had."""
        with self._lock:
            completeness.check_staged(self.con, self.table, name, self.start, self.end,
                                      self.show_id)
            col_list = ", ".join(f'"{c}"' for c in self.columns)
            page = name
            (n,) = self.con.execute(f"SELECT count(*) FROM {page}").fetchall()[0]
            if n:
                path = os.path.join(self._dir, f"rows-{len(self._pages):07d}.parquet")
                self.con.sql(f'SELECT CAST("date" AS DATE) AS partition_date, {col_list} '
                             f"FROM {page}").write_parquet(path)
                self._pages.append(path)
            self.rows += int(n)
            self._note(columns)

    def _note(self, columns: Sequence[str]) -> None:
        known = {*self.columns, "partition_date"}
        self.extras += [c for c in columns if c not in known and c not in self.extras]

    # ---- reading back
    def _staged(self) -> tuple[str, list[Any]]:
        """Where the rows are read from, and its parameter: the staged pages, or the empty
        table when no page had any (read_parquet of no files is an error)."""
        return ("read_parquet(?)", [self._pages]) if self._pages else ("rows", [])

    def finish(self) -> None:
        """Drop rows repeated in every column (an API that sent a row twice) and count the
        rows per day, ready for :func:`replace_window`."""
        with self._lock:
            if self._finished:
                return
            # Parquet only from here; one thread, so the limit holds on a machine of many cores.
            self.con.execute("SET memory_limit = ?", [STAGED_MEMORY_LIMIT])
            self.con.execute("SET threads = 1")
            # Equal rows hash alike, so as many distinct row hashes as rows proves there is
            # no repeat, at the cost of one number per row instead of every column. (A
            # grouping spills to disk past the limit; count(DISTINCT ...) does not.)
            col_list = ", ".join(f'"{c}"' for c in ("partition_date", *self.columns))
            staged, params = self._staged()
            (unique,) = self.con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT hash({col_list}) FROM {staged})",
                params).fetchall()[0]
            if unique != self.rows:
                (unique,) = self.con.execute(
                    f"SELECT count(*) FROM (SELECT DISTINCT * FROM {staged})", params
                ).fetchall()[0]
            self.duplicates = self.rows - int(unique)
            if self.duplicates:
                path = os.path.join(self._dir, "unique.parquet")
                self.con.sql("SELECT DISTINCT * FROM read_parquet($pages)",
                             params={"pages": self._pages}).write_parquet(path)
                for old in self._pages:
                    os.remove(old)
                self._pages = [path]
                staged, params = self._staged()
            self.rows = int(unique)
            self.per_day = dict(self.con.execute(
                f"SELECT partition_date, count(*) FROM {staged} GROUP BY 1", params).fetchall())
            self._finished = True
            # DuckDB keeps the dedupe's buffers until the connection closes (195 MB of RSS
            # on a year of redirect logs), beside the writer's during the replace.
            self.con.close()
            self.con = self._connect(STAGED_MEMORY_LIMIT, threads=1)

    def pages(self) -> list[str]:
        """The Parquet files holding the rows (none when there are no rows)."""
        with self._lock:
            return list(self._pages)

    def body_files(self) -> list[str]:
        """The Parquet files holding the raw bodies (:data:`STAGED_RAW`), in the order they
        arrived."""
        with self._lock:
            return list(self._files)

    def sample(self, n: int) -> pd.DataFrame:
        """The first ``n`` rows (for a preview)."""
        with self._lock:
            staged, params = self._staged()
            return self.con.execute(f"SELECT * FROM {staged} LIMIT ?", [*params, int(n)]).df()

    def nulls(self, columns: Sequence[str]) -> dict[str, int]:
        """Rows with NULL in each of ``columns``."""
        if not columns:
            return {}
        with self._lock:
            column_sql = ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in columns)
            staged, params = self._staged()
            counts = self.con.execute(f"SELECT {column_sql} FROM {staged}", params).fetchall()[0]
        return dict(zip(columns, map(int, counts), strict=True))

    def close(self) -> None:
        with self._lock:
            try:
                self.con.close()
            finally:
                shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What a stage keeps of each raw body, one row per part; the rest of RAW_COLUMNS is the
# write's own.
STAGED_RAW = ("request_seq", "api", "endpoint", "path", "status", "fetched_at",
              "covers_start", "covers_end", "part", "body")
_RAW_TYPES = dict(RAW_COLUMNS)


@functools.cache
def staged_body_sql() -> str:
    """One body's rows from bound values, in :data:`STAGED_RAW` order: ``part`` is bound
    as the number of parts, ``body`` as the list of them (the two unnests zip)."""
    return "SELECT " + ", ".join(
        "unnest(range(CAST(? AS INTEGER))) AS part" if n == "part"
        else "unnest(CAST(? AS VARCHAR[])) AS body" if n == "body"
        else f"CAST(? AS {_RAW_TYPES[n]}) AS {n}" for n in STAGED_RAW)


def replace_window(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    show_id: str,
    start: date,
    end: date,
    frame: pd.DataFrame | Stage,
    raw: Sequence[RawResponse],
    fetched_at: datetime,
    *,
    max_shrink: float = completeness.DEFAULT_MAX_SHRINK,
    on_retry: Callable[[str], None] | None = None,
) -> WriteResult:
    """Atomically replace ``[start, end]`` of ``table`` for ``show_id`` with ``frame``.

    ``frame`` holds the endpoint's contract columns plus ``partition_date`` (and, for
    snapshots, ``as_of`` where the API said when), or is a :class:`Stage` holding them on
    disk (its raw bodies too; ``raw`` is then empty). Whether the answer may replace the
    window at all is :mod:`podcast_pipeline.completeness`'s rule: rows outside the window
    or outside the value contract, or a replace that would silently empty or shrink
    stored days, raise and leave everything as it was. ``max_shrink``: the largest share
    of a stored day's rows the answer may drop (``PODCAST_PIPELINE_MAX_SHRINK_FRACTION``).
    On DuckLake, a commit that conflicts with another writer's runs the transaction again
    (:func:`retry_conflicts`; ``on_retry`` hears of each retry).
    """
    columns = [name for name, _ in table_columns(table)]
    col_list = ", ".join(f'"{c}"' for c in columns)
    raw_names = ", ".join(n for n, _ in RAW_COLUMNS)
    staged = isinstance(frame, Stage)
    if isinstance(frame, Stage):
        if frame.table != table or frame.show_id != show_id or (frame.start, frame.end) != (
                start, end) or raw:
            raise PodcastPipelineError(f"{table.qualified}: the stage holds another window")
        frame.finish()
        per_day, rows = frame.per_day, frame.rows
        consts = {"show_id": "CAST(? AS VARCHAR)", "fetched_at": "CAST(? AS TIMESTAMPTZ)",
                  "as_of": "CAST(? AS TIMESTAMPTZ)", "backend": "CAST(NULL AS VARCHAR)"}
        select_list = ", ".join(consts.get(c, f'CAST("{c}" AS {t})')
                                for c, t in table_columns(table))
        row_params = [{"show_id": show_id}.get(c, fetched_at) for c in columns
                      if c in consts and c != "backend"]
        raw_select = ", ".join(f"CAST({n} AS {t})" if n in STAGED_RAW else f"CAST(? AS {t})"
                               for n, t in RAW_COLUMNS)
        files, pages = frame.body_files(), frame.pages()
        raw_params = [{"asset": table.qualified, "show_id": show_id, "window_start": start,
                       "window_end": end}[n] for n, _ in RAW_COLUMNS if n not in STAGED_RAW]
    else:
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
        rows = len(data)
        raw_frame = pd.DataFrame(
            [(table.qualified, r.api, r.endpoint, show_id, start, end, i, r.path, r.status,
              r.fetched_at, text, *_covers(r, start, end), n)
             for i, r in enumerate(raw) for n, text in enumerate(body_parts(redact(r.body)))],
            columns=[n for n, _ in RAW_COLUMNS],
        )
        select_list = ", ".join(f'CAST("{c}" AS {t})' for c, t in table_columns(table))
        raw_select = ", ".join(f"CAST({n} AS {t})" for n, t in RAW_COLUMNS)
        con.register("incoming_rows", data)
        con.register("incoming_raw", raw_frame)
    key = [table.qualified, show_id]
    before: dict[date, int] = {}
    # The writer's own limit, given back after a staged replace (which runs in the small pool).
    memory_limit = (con.execute("SELECT current_setting(?)", ["memory_limit"]).fetchone()[0]
                    if staged else None)

    def transaction() -> list[date]:
        """The replace, one transaction: tried again whole after a DuckLake conflict."""
        con.execute("BEGIN TRANSACTION")
        before.clear()
        before.update(con.execute(
            f"SELECT partition_date, count(*) FROM {table.qualified} "
            "WHERE show_id = ? AND partition_date BETWEEN ? AND ? GROUP BY 1",
            [show_id, start, end]).fetchall())
        emptied = completeness.check_replace(table, before, per_day, start, end, max_shrink)
        con.execute(
            f"DELETE FROM {table.qualified} WHERE show_id = ? AND partition_date BETWEEN ? AND ?",
            [show_id, start, end],
        )
        if staged:  # one row group in flight at a time, not one per thread (see BODY_PART)
            con.execute("SET threads = 1")
            con.execute("SET memory_limit = ?", [STAGED_MEMORY_LIMIT])
            if pages:  # read_parquet of no files is an error, not an empty table
                con.execute(f"INSERT INTO {table.qualified} ({col_list}) SELECT {select_list} "
                            "FROM read_parquet(?)", [*row_params, pages])
        else:
            con.execute(f"INSERT INTO {table.qualified} ({col_list}) SELECT {select_list} "
                        "FROM incoming_rows")
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
        if not staged:
            con.execute(f"INSERT INTO {RAW_TABLE} ({raw_names}) SELECT {raw_select} "
                        "FROM incoming_raw")
        elif files:  # read_parquet of no files is an error, not an empty table
            con.execute(f"INSERT INTO {RAW_TABLE} ({raw_names}) SELECT {raw_select} "
                        "FROM read_parquet(?)", [*raw_params, files])
        con.execute("COMMIT")
        return emptied

    try:
        emptied = retry_conflicts(con, f"writing {table.qualified} {start}..{end}", transaction,
                                  on_retry)
    except WarehouseConflict:
        raise
    except duckdb.Error as exc:
        _rollback(con)
        what = ("Backfill this asset in shorter ranges (e.g. a month per run)"
                if isinstance(exc, duckdb.OutOfMemoryException) or "Out of Memory" in str(exc)
                else "Free disk space or fix the file")
        raise WarehouseWriteError(
            f"writing {table.qualified} {start}..{end} failed ({type(exc).__name__}: "
            f"{str(exc)[:300]}). The transaction was rolled back: those partitions keep "
            f"what they had. {what}, then re-run them.") from None
    except BaseException:
        _rollback(con)
        raise
    finally:
        if staged:
            try:
                con.execute("RESET threads")
                con.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error:
                pass
        for view in ("incoming_rows", "incoming_raw"):
            try:
                con.unregister(view)
            except duckdb.Error:
                pass
    return WriteResult(table.qualified, rows, (start, end), per_day,
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
