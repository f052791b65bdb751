"""``podcast-pipeline check-credentials`` as a real subprocess against the emulator.

Budget: about 5 s (one interpreter start per case).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig

API_VARS = ("ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL", "OP3_TOKEN",
            "OP3_SHOW_UUID", "OP3_URL_PREFIX", "SPOTIFY_SP_DC", "SPOTIFY_SP_KEY", "SPOTIFY_BACKEND",
            "SPOTIFY_SHOW_URI", "SPOTIFY_ACCOUNTS_URL", "SPOTIFY_GRAPHQL_URL",
            "SPOTIFY_LEGACY_API_URL")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=date(2025, 6, 1))) as emulator:
        yield emulator


def check(cwd: Path, extra: dict[str, str]) -> tuple[int, list[str], str]:
    """Run the command in ``cwd`` with only ``extra`` as API settings; (exit code, lines, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in API_VARS}
    env.update(extra)
    proc = subprocess.run([sys.executable, "-m", "podcast_pipeline.cli", "check-credentials"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def secrets_in(emu: Emulator, *texts: str) -> list[str]:
    pieces = [emu.dataset.cookie.split("emulator-", 1)[1], emu.dataset.op3_token]
    return [p for p in pieces for t in texts if p in t]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_valid_then_expired(emu: Emulator, tmp_path: Path) -> None:
    code, lines, err = check(tmp_path, emu.env)
    assert code == 0, err
    assert [line.split(" — ")[0] for line in lines] == ["anchor: ok", "op3: ok"]
    assert emu.dataset.webstation_id in lines[0] and emu.dataset.show_uuid in lines[1]

    emu.expire("anchor")
    emu.expire("op3")
    try:
        code, lines, err = check(tmp_path, emu.env)
    finally:
        emu.refresh("anchor")
        emu.refresh("op3")
    assert code == 1
    assert [line.split(" — ")[0] for line in lines] == ["anchor: EXPIRED or invalid",
                                                       "op3: EXPIRED or invalid"]
    assert "DevTools → Application → Cookies → podcasters.spotify.com" in lines[0]
    assert "anchorpw_s" in lines[0] and "ANCHOR_PW_S" in lines[0]
    assert "op3.dev/api/keys" in lines[1] and "OP3_TOKEN" in lines[1]
    assert not secrets_in(emu, *lines, err)


def test_not_configured_and_unreachable(emu: Emulator, tmp_path: Path) -> None:
    env = {k: v for k, v in emu.env.items() if k != "OP3_TOKEN"}
    env["ANCHOR_BASE_URL"] = f"http://127.0.0.1:{closed_port()}/pod/api/proxy/v3"
    code, lines, err = check(tmp_path, env)
    assert code == 1
    assert lines[0].startswith("anchor: UNREACHABLE — ") and "not tested" in lines[0]
    assert lines[1].startswith("op3: NOT CONFIGURED — OP3_TOKEN is not set")
    assert len(lines) == 2 and not secrets_in(emu, *lines, err)


def test_reads_dotenv_in_the_working_directory(emu: Emulator, tmp_path: Path) -> None:
    # The README's flow: settings in ./.env, nothing exported.
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in emu.env.items()))
    code, lines, err = check(tmp_path, {})
    assert code == 0, err
    assert [line.split(" — ")[0] for line in lines] == ["anchor: ok", "op3: ok"]


def test_graphql_backend_valid_then_dead_cookie(emu: Emulator, tmp_path: Path) -> None:
    env = {k: v for k, v in emu.env.items() if k != "ANCHOR_PW_S"} | emu.graphql_env
    code, lines, err = check(tmp_path, env)
    assert code == 0, err
    assert lines[0].startswith("anchor: ok") and "GraphQL backend" in lines[0]
    emu.expire("spotify")
    try:
        code, lines, err = check(tmp_path, env)
    finally:
        emu.refresh("spotify")
    assert code == 1
    assert lines[0].startswith("anchor: EXPIRED")
    for needed in ("login_required", "SPOTIFY_SP_DC", "sp_dc", "sp_key",
                   "https://accounts.spotify.com"):
        assert needed in lines[0], needed
    pieces = [emu.dataset.sp_dc.split("emulator-", 1)[1], emu.dataset.sp_key.split("-", 1)[1]]
    assert not [p for p in pieces if p in "\n".join(lines) + err]
