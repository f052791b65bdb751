"""Helpers for tests that run the pipeline in real processes (``dagster asset materialize``)
against the emulator and a DuckDB file, and compare databases by checksums."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import yaml

from podcast_pipeline import warehouse
from podcast_pipeline.demo import ENV_KEYS
from podcast_pipeline.emulator import Emulator
from podcast_pipeline.tables import ALL_TABLES, TABLES_BY_KEY

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def dagster_home(tmp_path: Path, pool_limit: int | None = None) -> str:
    """A fresh instance folder holding the project's shipped dagster.yaml (with every pool's
    limit raised to ``pool_limit`` where a test needs more than one step per credential)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    if pool_limit is not None:
        config["concurrency"]["pools"]["default_limit"] = pool_limit
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    # Create the SQLite storages now: processes that start together would race to migrate them.
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return str(home)


def pipeline_env(emu: Emulator, db: str, home: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHOR_", "OP3_"))}
    env.update({k: v for k, v in emu.env.items() if k in ENV_KEYS})
    env.update(DUCKDB_PATH=db, DAGSTER_HOME=home, PYTHONUNBUFFERED="1", **extra)
    return env


class Captured:
    """A command in its own process group, its output (stdout and stderr) collected live."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, env=env, cwd=PROJECT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


class Materialize(Captured):
    """``dagster asset materialize`` in its own process group; its output is collected live."""

    def __init__(self, env: dict[str, str], select: list[str], *, partition: str | None = None,
                 partition_range: tuple[str, str] | None = None,
                 run_config: dict | None = None, location: str | None = None) -> None:
        """``location``: an attribute of ``podcast_pipeline.locations`` (a code location of a
        network split per account), else the whole network's ``podcast_pipeline.definitions``."""
        target = (["-m", "podcast_pipeline.locations", "-a", location] if location
                  else ["-m", "podcast_pipeline.definitions"])
        cmd = [DAGSTER, "asset", "materialize", *target, "--select", ",".join(select)]
        if run_config:
            cmd += ["--config-json", json.dumps(run_config)]
        if partition:
            cmd += ["--partition", partition]
        if partition_range:
            cmd += ["--partition-range", "...".join(partition_range)]
        super().__init__(cmd, env)

    def wait_for(self, text: str, times: int = 1, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(text) < times:
            if self.proc.poll() is not None:
                self._reader.join(5)
                if self.count(text) >= times:
                    return
                raise AssertionError(f"process ended (rc {self.proc.returncode}) before "
                                     f"{times}× {text!r}:\n{self.log[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {times}× {text!r} within {timeout} s:\n{self.log[-4000:]}")
            time.sleep(0.05)

    def finish(self, timeout: float = 180.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(10)
        return rc

    def kill(self) -> None:
        """SIGKILL the whole process group (the CLI and its step workers); wait until all died."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    """Whether a thread of a process of group ``pgid`` still runs. A killed process's leader
    turns zombie while other threads finish a long write, and its file locks live until the
    last thread is gone."""
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def partition_checksums(db: str, key: str) -> dict[date, tuple[int, str]]:
    """Per partition: (rows, order-independent hash without fetched_at/as_of)."""
    table = TABLES_BY_KEY[key]
    cols = [c for c, _ in warehouse.table_columns(table) if c not in warehouse.VOLATILE_COLUMNS]
    row = ", ".join(f'"{c}" := "{c}"' for c in cols)
    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute(f"SELECT partition_date, count(*), sum(hash(struct_pack({row})))::VARCHAR "
                           f"FROM {table.qualified} GROUP BY 1").fetchall()
    return {d: (int(n), s) for d, n, s in rows}


def table_checksums(target: warehouse.Target) -> dict[str, tuple[int, str]]:
    """Every table's checksum, in a DuckDB file or a DuckLake."""
    with warehouse.reader(target) as con:
        return {t.qualified: warehouse.checksum(con, t) for t in ALL_TABLES}


def materialize_in_process(emu: Emulator, db: str, select: list[str], *,
                           partition: str | None = None,
                           partition_range: tuple[str, str] | None = None) -> None:
    """The same materialization as :class:`Materialize`, run sequentially in this process."""
    import dagster as dg

    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.demo import execute, patched_env

    tags = ({"dagster/asset_partition_range_start": partition_range[0],
             "dagster/asset_partition_range_end": partition_range[1]} if partition_range else {})
    request = dg.RunRequest(partition_key=partition, tags=tags,
                            asset_selection=[dg.AssetKey(k.split("/")) for k in select])
    env = {k: v for k, v in emu.env.items() if k in ENV_KEYS}
    with patched_env({**env, "DUCKDB_PATH": db}):
        outcome = execute(build_definitions(), request, dg.DagsterInstance.ephemeral(),
                          log_level="WARNING")
    assert outcome.success, f"reference run failed: {outcome.failed_steps}"
