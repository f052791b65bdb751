"""The network mode across processes, as deploy/ configures it: Dagster's storage in
PostgreSQL, steps on two dagster-celery workers over Redis, the emulator serving a network
of 4 shows on 2 accounts. The daily run of every show (one run per show, all at once) must
leave every table equal to the same runs with Dagster's default executor on one machine.

PostgreSQL and Redis are Debian's, started on loopback by the fixtures (installed with
apt-get when missing) and stopped after; the test is skipped only where neither they nor
apt-get are available.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.network import load_network
from podcast_pipeline.politeness import pool_limits
from podcast_pipeline.sensors import apply_pool_limits
from podcast_pipeline.settings import Settings
from podcast_pipeline_tests.procs import PROJECT, Materialize, dagster_home, table_checksums

pytest.importorskip("dagster_celery", reason="needs the [network] extra: "
                                               "pip install -e '.[dev,network]'")
pytest.importorskip("dagster_postgres", reason="needs the [network] extra")

BIN = Path(sys.executable).parent
EMU_TODAY = datetime(2025, 6, 1, 6, tzinfo=UTC)
# Per show, the assets of the daily run this test runs (the whole run is 20+ steps per show).
SUBSET = {("anchor", "episodes"), ("anchor", "plays"), ("anchor", "plays_by_app"),
          ("anchor", "episode_plays"), ("spotify", "episode_daily_totals"), ("op3", "downloads")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str, package: str) -> str:
    """The path of a Debian server program, installing its package when missing."""
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(f"{name} is missing and apt-get cannot install {package} here")
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, timeout=600,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                   stdout=subprocess.DEVNULL)
    return _tool(name, package)


def _wait_port(port: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture()
def postgres() -> Iterator[dict[str, str]]:
    """A throw-away PostgreSQL cluster on loopback: the DAGSTER_PG_* variables of deploy/."""
    initdb = str(Path(_tool("initdb", "postgresql")).resolve())  # beside pg_ctl, createdb
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="pp-pg-"))  # not tmp_path: the postgres user needs it
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w",
                        "-t", "60", "-o", f"-c listen_addresses=127.0.0.1 -p {port} "
                        f"-c unix_socket_directories={root}", "start"],
                       check=True, timeout=90, stdout=subprocess.DEVNULL)
        subprocess.run([*as_user, str(Path(initdb).with_name("createdb")), "-h", "127.0.0.1",
                        "-p", str(port), "-U", "postgres", "dagster"], check=True, timeout=60)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port),
               "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-trust-auth",
               "DAGSTER_PG_DB": "dagster"}
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w",
                            "-t", "60", "stop"], timeout=90, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def redis() -> Iterator[str]:
    """Redis on loopback, no persistence: the broker's base URL."""
    port = _free_port()
    proc = subprocess.Popen([_tool("redis-server", "redis-server"), "--bind", "127.0.0.1",
                             "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


class Worker:
    """``dagster-celery worker start`` (deploy/celery_worker.yaml) in its own process group."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(PROJECT / "deploy" / "celery_worker.yaml"), "-n", name, "--",
             "-c", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle"],
            env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.log:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker not ready (rc {self.proc.poll()}):\n"
                                     f"{self.log[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        except ProcessLookupError:
            pass


def _daily_runs(env: dict[str, str], home: str) -> list[tuple[list[str], tuple[str, str]]]:
    """The schedule's runs, one per show (narrowed to SUBSET): (selection, partition range)."""
    settings = Settings.from_env(env)
    defs, net = build_definitions(settings), load_network(settings)
    with dg.DagsterInstance.from_config(home) as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=EMU_TODAY)
        requests = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(
            context).run_requests or []
    runs = []
    for request in requests:
        if request.tags.get("podcast_pipeline/show") is None:
            continue  # the network.shows run: no API call
        keys = ["/".join(k.path) for k in request.asset_selection or []
                if tuple(k.path[1:]) in SUBSET]
        runs.append((keys, (request.tags["dagster/asset_partition_range_start"],
                            request.tags["dagster/asset_partition_range_end"])))
    assert len(runs) == len(net.shows) == 4
    return runs


def _run_all(env: dict[str, str], runs) -> None:
    procs = [Materialize(env, keys, partition_range=window) for keys, window in runs]
    try:
        for proc in procs:
            assert proc.finish(timeout=600) == 0, proc.log[-4000:]
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                proc.kill()


def test_daily_run_on_two_celery_workers_equals_one_machine(
        tmp_path: Path, postgres: dict[str, str], redis: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in postgres.items():  # this process reads deploy/dagster.yaml too
        monkeypatch.setenv(key, value)
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY.date()), shows=4, accounts=2) as emu:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_",
                                     "DAGSTER_"))}
        base.update({k: v for k, v in {**emu.env, **emu.graphql_env}.items()
                     if k.endswith("_URL") or k == "OP3_TOKEN"})
        base.update(emu.network_env(tmp_path / "network.yaml"), PYTHONUNBUFFERED="1",
                    PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}")  # workers call `celery`

        # One machine: the shipped dagster.yaml (SQLite), Dagster's default executor.
        local_home = dagster_home(tmp_path)
        local = {**base, "DAGSTER_HOME": local_home, "DUCKDB_PATH": str(tmp_path / "local.duckdb")}
        runs = _daily_runs(local, local_home)
        started = time.monotonic()
        _run_all(local, runs)
        local_s = time.monotonic() - started

        # The network mode: deploy/dagster.yaml (PostgreSQL), steps on two Celery workers.
        home = tmp_path / "network_home"
        home.mkdir()
        shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        net = {**base, **postgres, "DAGSTER_HOME": str(home),
               "DUCKDB_PATH": str(tmp_path / "network.duckdb"),
               "PODCAST_PIPELINE_CELERY_BROKER": f"{redis}/0",
               "PODCAST_PIPELINE_CELERY_BACKEND": f"{redis}/1"}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # What the daemon's pool_limits sensor does before the first runs. Without it,
            # runs that start together race to create a pool's row in PostgreSQL, and all
            # but one fail on its unique key (dagster 1.13.27).
            settings = Settings.from_env(net)
            apply_pool_limits(instance, pool_limits(load_network(settings)))
        workers = [Worker(f"w{i}", net) for i in (1, 2)]
        try:
            for worker in workers:
                worker.wait_ready()
            started = time.monotonic()
            _run_all(net, runs)
            network_s = time.monotonic() - started
        finally:
            for worker in workers:
                worker.stop()

        # Every step ran as a Celery task, and both workers took some.
        done = [w.log.count("succeeded in") for w in workers]
        steps = sum(len(keys) for keys, _ in runs)
        print(f"{len(runs)} runs, {steps} steps: one machine {local_s:.0f} s; two Celery "
              f"workers {network_s:.0f} s, tasks per worker {done}")  # pytest -s shows it
        assert sum(done) >= steps and min(done) > 0, (done, steps, workers[0].log[-2000:])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records()
            assert len(records) == len(runs)
            assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)

    local_tables = table_checksums(local["DUCKDB_PATH"])
    assert sum(n for n, _ in local_tables.values()) > 0
    assert table_checksums(net["DUCKDB_PATH"]) == local_tables


def test_ducklake_with_its_catalog_in_postgresql(postgres, tmp_path, monkeypatch):
    """The DuckLake warehouse as deploy/ would run it: its catalog a database of the same
    PostgreSQL; two writer processes and a reader, as test_ducklake.py does on SQLite; and a
    commit conflict retried, then (when it never wins) named."""
    from podcast_pipeline.settings import LakeSettings
    from podcast_pipeline_tests import ducklake_procs

    pytest.importorskip("duckdb_extension_postgres_scanner", reason="needs the [network] extra")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    createdb = str(Path(_tool("initdb", "postgresql")).resolve().with_name("createdb"))
    subprocess.run([*as_user, createdb, "-h", "127.0.0.1", "-p", postgres["DAGSTER_PG_PORT"],
                    "-U", "postgres", "ducklake"], check=True, timeout=60)
    lake = LakeSettings(catalog=f"dbname=ducklake host=127.0.0.1 port={postgres['DAGSTER_PG_PORT']}"
                        " user=postgres", data_path=str(tmp_path / "lake"))
    ducklake_procs.writers_and_reader(lake, tmp_path)
    ducklake_procs.conflict_retried_then_named(lake, monkeypatch)
