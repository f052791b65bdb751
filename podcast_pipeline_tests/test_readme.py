"""README.md's command blocks, run as a new user pastes them, so the README cannot drift.

Every ```bash / ```python block in the README carries a marker on the line above it:
``<!-- readme-test: NAME -->`` (run here, by name) or ``<!-- readme-test: skip (why) -->``.
The flow runs in a scratch folder laid out like a fresh clone (the project's files, ``.venv``
pointing at this interpreter's environment) with none of the developer's settings. Only two
things differ from pasting, both for ports used by other processes on this machine: the
emulator gets ``--port 0`` instead of ``--port 8765``, and ``dagster dev`` a free ``-p``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
MARKER = re.compile(r"^\s*<!-- readme-test: (?:skip \((?P<why>[^)]+)\)|(?P<name>[a-z0-9-]+)) -->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
# The blocks this file runs; test_every_block_is_marked keeps the README and this list equal.
RUN = {"emulator-start", "ui", "backfill", "emulator-stop", "env-example", "dagster-home",
       "backfill-range", "sql", "emulator-help", "client", "dev-checks", "network"}
OURS = re.compile(r"^(ANCHOR_|OP3_|DUCKDB_PATH$|DAGSTER_HOME$|PODCAST_PIPELINE_|EMULATOR_PID$)")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    name: str | None  # None: not marked
    why: str | None  # the reason of a skip
    line: int


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m["lang"]:
            if m:  # an unlabelled fence (sample output): skip to its end
                i += 1
                while i < len(lines) and not FENCE.match(lines[i]):
                    i += 1
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARKER.match(prev)
        out.append(Block(m["lang"], textwrap.dedent("\n".join(body)) + "\n",
                         mark["name"] if mark else None, mark["why"] if mark else None, start + 1))
        i += 1
    return out


def block(name: str) -> str:
    codes = {b.code for b in readme_blocks() if b.name == name}
    assert len(codes) == 1, f"README blocks named {name!r}: {len(codes)} different texts"
    return codes.pop()


def test_every_block_is_marked_and_named_blocks_agree() -> None:
    blocks = [b for b in readme_blocks() if b.lang in ("bash", "python", "sh", "shell")]
    assert blocks, "no command blocks found: has the README's fence syntax changed?"
    unmarked = [b.line for b in blocks if b.name is None and b.why is None]
    assert not unmarked, f"README lines {unmarked}: mark each block `<!-- readme-test: … -->`"
    assert {b.name for b in blocks if b.name} == RUN
    for name in RUN:
        block(name)  # several blocks of one name are the same command


def test_ci_runs_the_readmes_test_command() -> None:
    tests = next(b for b in readme_blocks() if b.why and ".ci/run" in b.why and "pytest" in b.code)
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    assert tests.code.strip() in ci  # .ci/run runs that line verbatim


# ---------------------------------------------------------------------- the flow
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        word, assignment = shlex.split(line)
        assert word == "export"
        name, value = assignment.split("=", 1)
        env[name] = value
    return env


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder laid out like a fresh clone after the README's install command."""
    work = tmp_path / "podcast_pipeline"
    work.mkdir()
    for name in ("pyproject.toml", "workspace.yaml", "dagster.yaml", ".env.example", "README.md"):
        shutil.copy(PROJECT / name, work / name)
    for name in ("podcast_pipeline", "podcast_pipeline_tests", "benchmarks"):
        (work / name).symlink_to(PROJECT / name, target_is_directory=True)
    (work / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return work


def user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not OURS.match(k)}
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONUNBUFFERED="1")
    return env


class Shell:
    def __init__(self, cwd: Path) -> None:
        self.cwd, self.env = cwd, user_env(cwd.parent)

    def bash(self, code: str, timeout: float = 300, source_env: bool = False,
             ) -> subprocess.CompletedProcess[str]:
        """``code`` in a new bash, as pasted; ``source_env`` first loads .emulator.env as the
        shell that started the emulator has it."""
        script = (". ./.emulator.env\n" if source_env else "") + code
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{code}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                     f"--- stderr\n{proc.stderr[-3000:]}"
        return proc

    def python(self, code: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([str(self.cwd / ".venv" / "bin" / "python"), "-c", code],
                              cwd=self.cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, f"{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout


class DagsterDev:
    """The README's ``dagster dev`` line in its own process group, on a free port."""

    def __init__(self, shell: Shell, code: str) -> None:
        command = code.split("#", 1)[0].strip()
        assert command.startswith(".venv/bin/dagster dev"), command
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["bash", "-c", f". ./.emulator.env\nexec {command} -p {self.port}"], cwd=shell.cwd,
            env=shell.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)

    def graphql(self, query: str) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql",
                                     data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_loaded(self, timeout: float = 240) -> dict:
        """The code location's entry once the webserver answers and the location has loaded."""
        query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited: {self.output()[-3000:]}")
            try:
                entries = self.graphql(query)["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return entries[0]
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        raise AssertionError(f"dagster dev not loaded within {timeout} s")

    def output(self) -> str:
        self.stop()
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def stop(self) -> None:
        """Ctrl-C, as the README says; SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


def stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Each step has its own bound; the whole flow gets more than pytest's default 300 s because
# it runs a dozen real processes (two CLI backfills, dagster dev, which also rebuilds the
# analytics models through their automation sensor), slow on a loaded machine.
@pytest.mark.timeout(900)
def test_readme_flow_as_pasted(clone: Path) -> None:
    shell = Shell(clone)
    start = block("emulator-start")
    assert "--port 8765" in start
    shell.bash(start.replace("--port 8765", "--port 0"), timeout=60)  # returns at once
    env = parse_env_file(clone / ".emulator.env")
    pid = int(env["EMULATOR_PID"])
    ui = None
    try:
        ui = DagsterDev(shell, block("ui"))  # terminal 1, while terminal 2 backfills
        backfill = shell.bash(block("backfill"))
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        first = yesterday - timedelta(days=13)  # "14 days ago" .. yesterday
        db = clone / env["DUCKDB_PATH"]
        with duckdb.connect(str(db), read_only=True) as con:
            days = con.execute("SELECT min(date), max(date), count(*) FROM anchor.plays").fetchone()
            assert days == (first, yesterday, 14)
            for table in ("anchor.plays_by_app", "anchor.episode_plays", "op3.downloads"):
                n, d = con.execute(f"SELECT count(*), count(DISTINCT partition_date) "
                                   f"FROM {table}").fetchone()
                assert n > 0 and d == 14, table
        assert "RUN_SUCCESS" in backfill.stdout + backfill.stderr
        summary = backfill.stdout[backfill.stdout.index("Last 7 days"):]
        assert f"{yesterday:%a} {yesterday}" in summary and "Top apps" in summary

        entry = ui.wait_loaded()
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        ui.stop()

        shell.bash(block("backfill-range"), source_env=True)
        sql = shell.python(block("sql"))
        assert str(yesterday) in sql and "agent_name" in sql and "Spotify" in sql
        client = shell.python(block("client"), env=env)
        assert str(yesterday) in client and "plays" in client
        assert "--background" in shell.bash(block("emulator-help")).stdout
        shell.bash(block("dagster-home"))
        assert (clone / ".dagster_home" / "dagster.yaml").read_text() == \
            (PROJECT / "dagster.yaml").read_text()

        shell.bash(block("emulator-stop"), source_env=True)
        deadline = time.monotonic() + 15
        while (clone / ".emulator.env").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (clone / ".emulator.env").exists()  # removed by the emulator as it stopped
        shell.bash(block("env-example"))  # last: a .env of placeholders overrides the emulator
        assert (clone / ".env").read_text() == (PROJECT / ".env.example").read_text()
    finally:
        if ui is not None:
            ui.stop()
        stop_pid(pid)


@pytest.mark.timeout(600)
def test_readme_dev_checks(clone: Path) -> None:
    """Lint and ``dg check defs`` / ``dg list defs`` as the Development section runs them."""
    out = Shell(clone).bash(block("dev-checks"), timeout=500)
    assert "All definitions loaded successfully" in out.stdout + out.stderr
    assert "anchor/plays" in out.stdout  # dg list defs' table


@pytest.mark.timeout(300)
def test_readme_network_as_pasted(clone: Path) -> None:
    """The network block: an emulated network, check-credentials, one account expired."""
    code = block("network")
    assert code.count("8766") == 2
    port = str(free_port())
    shell = Shell(clone)
    try:
        out = shell.bash(code.replace("8766", port), timeout=120)
    finally:
        env_file = clone / ".emulator-network.env"
        if env_file.exists():
            stop_pid(int(parse_env_file(env_file)["EMULATOR_PID"]))
    lines = [line.split(" — ")[0] for line in out.stdout.splitlines() if " — " in line]
    assert lines == ["account acct01: ok", "account acct02: ok", "op3 token main: ok",
                     "account acct01: ok", "account acct02: EXPIRED or invalid",
                     "op3 token main: ok"], out.stdout
    assert "acct02 expired, as it should" in out.stdout
    assert (clone / "data" / "emulator-network.yaml").is_file()
    workspace = (clone / "workspace-network.yaml").read_text(encoding="utf-8")
    assert [line.split(": ")[1] for line in workspace.splitlines()
            if "location_name" in line] == ["network", "acct01", "acct02"]
    logged = out.stdout + out.stderr
    for name in ("network", "acct01", "acct02"):
        assert f"Validation successful for code location {name}." in logged, logged[-3000:]
    assert "All code locations passed validation." in logged
