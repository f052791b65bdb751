"""``podcast-pipeline emulator`` as a user starts it: a real process in the foreground, and
``--background`` inside ``eval "$(…)"`` in a real bash, which must return at once."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

CLI = [str(Path(sys.executable).with_name("podcast-pipeline")), "emulator"]
EXPORTED = {"ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL",
            "OP3_TOKEN", "OP3_SHOW_UUID", "OP3_URL_PREFIX", "DUCKDB_PATH", "EMULATOR_PID",
            # the GraphQL backend's (set beside the REST cookie, they select GraphQL)
            "SPOTIFY_SP_DC", "SPOTIFY_SP_KEY", "SPOTIFY_ACCOUNTS_URL", "SPOTIFY_GRAPHQL_URL",
            "SPOTIFY_LEGACY_API_URL"}


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines, unquoted as the shell does."""
    env = {}
    for line in text.splitlines():
        word, assignment = shlex.split(line)
        assert word == "export", line
        name, value = assignment.split("=", 1)
        env[name] = value
    return env


def top_apps_status(env: dict[str, str]) -> int:
    r = requests.get(env["OP3_BASE_URL"] + "/queries/top-apps",
                     headers={"Authorization": f"Bearer {env['OP3_TOKEN']}"}, timeout=10)
    return r.status_code


def port_of(env: dict[str, str]) -> int:
    return int(env["OP3_BASE_URL"].split(":")[2].split("/")[0])


def wait_closed(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepts connections after {timeout} s")


def test_refuses_a_non_loopback_host() -> None:
    refused = subprocess.run([*CLI, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "non-loopback" in refused.stderr


def test_foreground_prints_exports_writes_the_env_file_and_cleans_up(tmp_path: Path) -> None:
    env_file = tmp_path / "sub" / ".emulator.env"
    proc = subprocess.Popen([*CLI, "--port", "0", "--seed", "3", "--today", "2025-06-01",
                             "--env-file", str(env_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        text = "".join(proc.stdout.readline() for _ in EXPORTED)
        env = parse_exports(text)
        assert set(env) == EXPORTED
        assert env["OP3_URL_PREFIX"].endswith("/*")
        assert env["DUCKDB_PATH"] == "data/demo.duckdb" and env["EMULATOR_PID"] == str(proc.pid)
        assert env_file.read_text() == text
        assert top_apps_status(env) == 200
        proc.send_signal(signal.SIGTERM)  # what `kill "$EMULATOR_PID"` sends
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not env_file.exists()


def test_background_returns_at_once_and_stops_with_kill(tmp_path: Path) -> None:
    # The README's form. If the server kept the substitution's pipe open, this would hang
    # until the timeout instead of printing.
    script = (f'eval "$({shlex.join(CLI)} --background --port 0 --env-file .emulator.env)"\n'
              'env | grep -E "^(ANCHOR_|OP3_|SPOTIFY_|DUCKDB_PATH=|EMULATOR_PID=)" | sort\n')
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_"))}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=60)
    file_env = parse_exports((tmp_path / ".emulator.env").read_text())
    pid = int(file_env["EMULATOR_PID"])
    try:
        assert done.returncode == 0, done.stderr
        shell_env = dict(line.split("=", 1) for line in done.stdout.splitlines())
        assert shell_env == file_env and set(shell_env) == EXPORTED
        assert f"pid {pid}" in done.stderr and 'kill "$EMULATOR_PID"' in done.stderr
        assert top_apps_status(file_env) == 200  # still serving after the shell is gone

        port = port_of(file_env)
        for extra in ([], ["--background"]):  # a taken port: one clear line, exit 2
            taken = subprocess.run([*CLI, *extra, "--port", str(port)], capture_output=True,
                                   text=True, timeout=30)
            assert taken.returncode == 2 and taken.stdout == ""
            assert f"port {port}" in taken.stderr and "already in use" in taken.stderr
            assert "--port 0" in taken.stderr

        os.kill(pid, signal.SIGTERM)
        wait_closed(port)
        deadline = time.monotonic() + 10
        while (tmp_path / ".emulator.env").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (tmp_path / ".emulator.env").exists()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_help_explains_every_option() -> None:
    from podcast_pipeline.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    emulator = sub.choices["emulator"]  # type: ignore[index]
    undocumented = [a.option_strings for a in emulator._actions
                    if a.option_strings and not (a.help or "").strip()]
    assert not undocumented
    shown = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "--background" in shown.stdout


@pytest.mark.parametrize("command", ["demo", "chaos", "check-credentials"])
def test_other_commands_document_every_option(command: str) -> None:
    from podcast_pipeline.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]  # type: ignore[index]
    assert all((a.help or "").strip() for a in parser._actions if a.option_strings)
