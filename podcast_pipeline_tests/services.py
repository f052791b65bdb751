"""The network mode's servers on loopback, for test_distributed and benchmarks.bench_distributed:
a throw-away PostgreSQL cluster and Redis (Debian's, installed with apt-get when missing) and
``dagster-celery`` workers, each in its own process group, stopped on exit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from podcast_pipeline_tests.procs import PROJECT, Captured

BIN = Path(sys.executable).parent
_AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class ServiceMissing(RuntimeError):
    """A server program is missing and cannot be installed here (the tests skip)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str, package: str) -> str:
    """The path of a Debian server program, installing its package when missing (with an
    ``apt-get update`` first when the package lists are stale)."""
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        raise ServiceMissing(f"{name} is missing and apt-get cannot install {package} here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, timeout=600, env=env, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, timeout=600, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, timeout=600, env=env, stdout=subprocess.DEVNULL)
    return tool(name, package)


def wait_port(port: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass(frozen=True)
class Postgres:
    port: int
    bin: Path  # the folder of initdb, pg_ctl, createdb

    def createdb(self, name: str) -> None:
        subprocess.run([*_AS_POSTGRES, str(self.bin / "createdb"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", name], check=True, timeout=60)

    def dagster_env(self, db: str = "dagster") -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-trust-auth",
                "DAGSTER_PG_DB": db}

    def libpq(self, db: str) -> str:
        """A DuckLake catalog string (libpq keywords, no password: trust auth on loopback)."""
        return f"dbname={db} host=127.0.0.1 port={self.port} user=postgres"


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster on a free loopback port, trust auth, deleted afterwards."""
    pg_bin = Path(tool("initdb", "postgresql")).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="pp-pg-"))  # not a test's tmp_path: postgres owns it
    if _AS_POSTGRES:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run([*_AS_POSTGRES, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres"], check=True, timeout=120, stdout=subprocess.DEVNULL)
        subprocess.run([*_AS_POSTGRES, str(pg_bin / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "log"), "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {port} -c max_connections=300 "
                        f"-c unix_socket_directories={root}", "start"],
                       check=True, timeout=90, stdout=subprocess.DEVNULL)
        server = Postgres(port, pg_bin)
        server.createdb("dagster")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*_AS_POSTGRES, str(pg_bin / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "-w", "-t", "60", "stop"], timeout=90,
                           stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """Redis on a free loopback port, no persistence: the broker's base URL."""
    port = free_port()
    proc = subprocess.Popen([tool("redis-server", "redis-server"), "--bind", "127.0.0.1",
                             "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


class Worker(Captured):
    """``dagster-celery worker start`` (deploy/celery_worker.yaml) in its own process group,
    one task at a time; its output is collected live."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(PROJECT / "deploy" / "celery_worker.yaml"), "-n", name, "--",
             "-c", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle"],
            env)

    @property
    def tasks_done(self) -> int:
        return sum(" succeeded in " in line and "Task " in line for line in list(self.lines))

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
