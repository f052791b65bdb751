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

API_VARS = ("PODCAST_PIPELINE_NETWORK_FILE", "ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL", "OP3_TOKEN",
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


# ---------------------------------------------------------------------- a network
@pytest.fixture(scope="module")
def network_emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=date(2025, 6, 1)), shows=5, accounts=2) as e:
        yield e


@pytest.mark.parametrize("backend", ["graphql", "rest"])
def test_network_one_line_per_account_and_token(network_emu: Emulator, tmp_path: Path,
                                                backend: str) -> None:
    emu = network_emu
    env = {**emu.all_env, **emu.network_env(tmp_path / "network.yaml", backend)}
    code, lines, err = check(tmp_path, env)
    assert code == 0, err
    assert [line.split(" — ")[0] for line in lines] == [
        "account acct01: ok", "account acct02: ok", "op3 token main: ok"]
    names = [ds.webstation_id for ds in emu.network.datasets]
    assert "3 shows: " in lines[0] and all(k in lines[0] for k in names[0::2])
    assert "2 shows: " in lines[1] and all(k in lines[1] for k in names[1::2])
    assert "5 shows: " in lines[2] and "OP3_TOKEN" in lines[2]
    var = "EMU_ACCT01_SP_DC" if backend == "graphql" else "EMU_ACCT01_ANCHOR_PW_S"
    assert var in lines[0] and "SPOTIFY_SP_DC" not in lines[0]

    emu.expire("anchor", "acct02")
    emu.expire("spotify", "acct02")
    try:
        code, lines, err = check(tmp_path, env)
    finally:
        emu.refresh("anchor", "acct02")
        emu.refresh("spotify", "acct02")
    assert code == 1
    assert [line.split(" — ")[0] for line in lines] == [
        "account acct01: ok", "account acct02: EXPIRED or invalid", "op3 token main: ok"]
    dead = lines[1]
    assert all(k in dead for k in names[1::2]) and names[0] not in dead
    if backend == "graphql":  # the fix names the account's own variables
        assert "EMU_ACCT02_SP_DC and EMU_ACCT02_SP_KEY" in dead and "login_required" in dead
    else:
        assert "put it in EMU_ACCT02_ANCHOR_PW_S" in dead and "anchorpw_s" in dead
    assert "SPOTIFY_SP_DC" not in dead and "put it in ANCHOR_PW_S" not in dead
    account_secrets = [v.split("emulator-", 1)[1] for k, v in emu.account_env.items()]
    assert not [s for s in account_secrets if s in "\n".join(lines) + err]


def test_network_unset_variable_and_bad_file(network_emu: Emulator, tmp_path: Path) -> None:
    emu = network_emu
    env = {**emu.all_env, **emu.network_env(tmp_path / "network.yaml")}
    del env["EMU_ACCT02_SP_DC"]
    code, lines, err = check(tmp_path, env)
    assert code == 1, err
    assert lines[0].startswith("account acct01: ok")
    assert lines[1].startswith("account acct02: NOT CONFIGURED — EMU_ACCT02_SP_DC is not set")
    assert "account 'acct02'" in lines[1] and str(tmp_path / "network.yaml") in lines[1]
    (tmp_path / "bad.yaml").write_text("shows: [\n")
    code, lines, err = check(tmp_path, {**env, "PODCAST_PIPELINE_NETWORK_FILE": "bad.yaml"})
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("network: NOT CONFIGURED — PODCAST_PIPELINE_NETWORK_FILE "
                               "(bad.yaml): the file is not valid YAML")
