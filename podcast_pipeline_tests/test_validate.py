"""Configuration checks made before any request (``validate.py``), one case per mistake."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import duckdb
import pytest

from podcast_pipeline import completeness, validate
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.http import DEADLINE_ENV, MAX_BODY_ENV, MAX_JSON_DEPTH_ENV, Limits
from podcast_pipeline.settings import Settings

COOKIE = "s%3Aabcdef.Signature%2Bpart"


@pytest.mark.parametrize(("value", "position", "name"), [
    ("\u200b" + COOKIE, 1, "ZERO WIDTH SPACE"),
    (COOKIE[:5] + "\u200b" + COOKIE[5:], 6, "ZERO WIDTH SPACE"),
    (COOKIE + "\u00a0", len(COOKIE) + 1, "NO-BREAK SPACE"),
    (COOKIE[:3] + "\u2013" + COOKIE[3:], 4, "EN DASH"),
    ('"' + COOKIE + '"', 1, "QUOTATION MARK"),
    (COOKIE + ";", len(COOKIE) + 1, "SEMICOLON"),
    (COOKIE + "\\", len(COOKIE) + 1, "REVERSE SOLIDUS"),
    (COOKIE + "é", len(COOKIE) + 1, "LATIN SMALL LETTER E WITH ACUTE"),
])
def test_a_cookie_with_a_character_no_browser_sends_names_it_by_position(
        value: str, position: int, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate.secret("ANCHOR_PW_S", value)
    text = str(info.value)
    assert info.value.setting == "ANCHOR_PW_S"
    assert f"at position {position} of {len(value)}" in text and name in text
    assert COOKIE not in text and "Signature" not in text  # the value is never repeated


@pytest.mark.parametrize("value", ["tok en", "tok\u2013en", "tok:en", "tok%en", "токен"])
def test_a_token_outside_the_bearer_alphabet_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="cannot be part of an API token, at position"):
        validate.secret("OP3_TOKEN", value)


@pytest.mark.parametrize("value", [COOKIE, "s:abc.def+ghi/jk=", "anchor-like_value~1"])
def test_real_looking_cookies_pass(value: str) -> None:
    validate.secret("ANCHOR_PW_S", value)


@pytest.mark.parametrize(("url", "problem"), [
    ("https://user:pass@op3.dev/api/1", "holds a user name or password"),
    ("https://token@op3.dev/api/1", "holds a user name or password"),
    ("https://op3.dev/api/1?token=x", "has a query string"),
    ("https://op3.dev/api/1?", "has a query string"),
    ("https://op3.dev/api/1#top", "has a fragment"),
    ("https://op3.dev:99999/api/1", "is not a valid URL"),
    ("https://op3.dev:port/api/1", "is not a valid URL"),
    ("https://op3.dev/api /1", "at position 20: U+0020 (SPACE)"),
    ("https://op3\u200b.dev/api/1", "at position 12: U+200B"),
    ("http://op3.dev/api/1", "uses http:// for a non-local host"),
    ("op3.dev/api/1", "is not an http(s) URL"),
])
def test_base_urls_with_more_than_a_base_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as info:
        validate.base_url("OP3_BASE_URL", url)
    assert str(info.value).startswith("OP3_BASE_URL ")
    assert "pass" not in str(info.value) or "password" in str(info.value)


@pytest.mark.parametrize("url", ["https://op3.dev/api/1", "http://127.0.0.1:8765/api/1/",
                                 "http://localhost:1/x", "http://[::1]:8/api"])
def test_plain_base_urls_pass(url: str) -> None:
    assert validate.base_url("OP3_BASE_URL", url) == url.rstrip("/")


def test_emulator_credentials_only_on_loopback() -> None:
    validate.emulator_guard("OP3_TOKEN", "emulator-x", "OP3_BASE_URL", "http://127.0.0.1:1/a")
    with pytest.raises(ConfigError, match="points at op3.dev"):
        validate.emulator_guard("OP3_TOKEN", "emulator-x", "OP3_BASE_URL", "https://op3.dev/a")


def test_duckdb_path_must_be_a_duckdb_file_or_absent(tmp_path: Path) -> None:
    validate.duckdb_path("DUCKDB_PATH", str(tmp_path / "new" / "podcast.duckdb"))  # absent
    real = tmp_path / "real.duckdb"
    with duckdb.connect(str(real)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    validate.duckdb_path("DUCKDB_PATH", str(real))
    cases = {"text.duckdb": "a file of another kind", "empty.duckdb": "an empty file",
             "lite.duckdb": "an SQLite database", "short.duckdb": "a file of another kind"}
    (tmp_path / "text.duckdb").write_text("date,plays\n")
    (tmp_path / "empty.duckdb").write_bytes(b"")
    with sqlite3.connect(tmp_path / "lite.duckdb") as lite:
        lite.execute("CREATE TABLE t (x)")
    (tmp_path / "short.duckdb").write_bytes(b"\x00" * 8 + b"DUC")
    for name, what in cases.items():
        with pytest.raises(ConfigError, match=f"is {what}, not a DuckDB database") as info:
            validate.duckdb_path("DUCKDB_PATH", str(tmp_path / name))
        assert "Nothing was fetched" in str(info.value)
    with pytest.raises(ConfigError, match="is empty"):
        validate.duckdb_path("DUCKDB_PATH", " ")
    corrupt = bytearray(real.read_bytes())
    corrupt[12:20] = b"\xff" * 8  # the header's checksum no longer matches
    (tmp_path / "corrupt.duckdb").write_bytes(bytes(corrupt))
    with pytest.raises(ConfigError, match="cannot open .*Corrupt database file"):
        validate.duckdb_path("DUCKDB_PATH", str(tmp_path / "corrupt.duckdb"))
    with duckdb.connect(str(real)):  # held read-write in this process: still fine
        validate.duckdb_path("DUCKDB_PATH", str(real))


@pytest.mark.parametrize(("var", "raw"), [(DEADLINE_ENV, "0"), (DEADLINE_ENV, "-5"),
                                          (MAX_BODY_ENV, "lots"), (MAX_JSON_DEPTH_ENV, "inf"),
                                          (MAX_BODY_ENV, "nan")])
def test_limits_from_the_environment_are_checked(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var} is '{raw}', not a positive number"):
        Settings.from_env({var: raw})


def test_limits_from_the_environment() -> None:
    limits = Settings.from_env({DEADLINE_ENV: "30", MAX_BODY_ENV: "1.5",
                                MAX_JSON_DEPTH_ENV: "10"}).limits()
    assert (limits.deadline, limits.max_body_bytes, limits.max_json_depth) == (
        30.0, int(1.5 * 2**20), 10)
    assert Settings.from_env({}).limits() == Limits()


@pytest.mark.parametrize("raw", ["-0.1", "1.5", "half"])
def test_the_shrink_guard_is_a_fraction(raw: str) -> None:
    with pytest.raises(ConfigError, match="not a fraction between 0 and 1"):
        Settings.from_env({completeness.SHRINK_ENV: raw})
    assert Settings.from_env({}).max_shrink_fraction == completeness.DEFAULT_MAX_SHRINK
