"""Settings: every missing, empty or malformed variable is a ConfigError naming it."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.redact import redact
from podcast_pipeline.settings import (
    ANCHOR_DEFAULT_BASE_URL,
    OP3_DEFAULT_BASE_URL,
    AnchorSettings,
    Op3Settings,
    Settings,
)

ANCHOR = {"ANCHOR_WEBSTATION_ID": "fb37d7a4", "ANCHOR_PW_S": "s%3Areal-cookie.sig-xyz"}
OP3 = {"OP3_TOKEN": "tok-abcdef-123", "OP3_SHOW_UUID": "a18389b8a52d4112a782b32f40f73df6"}


def test_anchor_from_env_defaults() -> None:
    s = AnchorSettings.from_env(ANCHOR)
    assert s.base_url == ANCHOR_DEFAULT_BASE_URL
    assert s.webstation_id == "fb37d7a4" and s.cookie == ANCHOR["ANCHOR_PW_S"]
    assert "real-cookie" not in repr(s)
    assert redact("cookie s%3Areal-cookie.sig-xyz and s:real-cookie.sig-xyz") == (
        "cookie *** and ***")


def test_op3_from_env_defaults() -> None:
    s = Op3Settings.from_env({**OP3, "OP3_URL_PREFIX": "https://op3.dev/e/example.com/*"})
    assert s.base_url == OP3_DEFAULT_BASE_URL and s.url_prefix == "https://op3.dev/e/example.com/*"
    assert "tok-abcdef" not in repr(s)
    assert Op3Settings.from_env(OP3).url_prefix is None


@pytest.mark.parametrize(("var", "value", "match"), [
    ("ANCHOR_WEBSTATION_ID", None, "is not set"),
    ("ANCHOR_WEBSTATION_ID", "", "is not set"),
    ("ANCHOR_WEBSTATION_ID", "98765432x", "not a short hex id"),
    ("ANCHOR_WEBSTATION_ID", "FB37D7A4", "not a short hex id"),
    ("ANCHOR_PW_S", None, "is not set"),
    ("ANCHOR_PW_S", "  ", "is not set"),
    ("ANCHOR_PW_S", "abc; other=1", "position 4 of 12: U\\+003B"),
    ("ANCHOR_PW_S", "anchorpw_s=s%3Aabc", "cookie name"),
    ("ANCHOR_BASE_URL", "podcasters.spotify.com/pod", "not an http"),
    ("ANCHOR_BASE_URL", "http://podcasters.spotify.com/pod/api/proxy/v3", "http://"),
])
def test_anchor_bad_values(var: str, value: str | None, match: str) -> None:
    env = dict(ANCHOR)
    env.pop(var, None)
    if value is not None:
        env[var] = value
    with pytest.raises(ConfigError, match=match) as info:
        AnchorSettings.from_env(env)
    assert info.value.setting == var
    assert str(info.value).startswith(var) and "\n" not in str(info.value)


@pytest.mark.parametrize(("var", "value", "match"), [
    ("OP3_TOKEN", None, "is not set"),
    ("OP3_TOKEN", "", "is not set"),
    ("OP3_TOKEN", "two words", "position 4 of 9: U\\+0020 \\(SPACE\\)"),
    ("OP3_SHOW_UUID", None, "is not set"),
    ("OP3_SHOW_UUID", "a18389b8-a52d-4112-a782-b32f40f73df6", "32 lowercase hex"),
    ("OP3_SHOW_UUID", "xyz", "32 lowercase hex"),
    ("OP3_BASE_URL", "ftp://op3.dev/api/1", "not an http"),
    ("OP3_BASE_URL", "http://op3.dev/api/1", "http://"),
    ("OP3_URL_PREFIX", "op3.dev/e/example.com/*", "not a URL"),
])
def test_op3_bad_values(var: str, value: str | None, match: str) -> None:
    env = dict(OP3)
    env.pop(var, None)
    if value is not None:
        env[var] = value
    with pytest.raises(ConfigError, match=match) as info:
        Op3Settings.from_env(env)
    assert info.value.setting == var
    assert "tok-abcdef" not in str(info.value)


def test_secret_never_in_error_message() -> None:
    with pytest.raises(ConfigError) as info:
        AnchorSettings.from_env({**ANCHOR, "ANCHOR_PW_S": "s%3Asecret value"})
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8123/v3", "http://localhost:9/x",
                                  "http://[::1]:8000/api/1"])
def test_loopback_http_allowed(base: str) -> None:
    assert AnchorSettings.from_env({**ANCHOR, "ANCHOR_BASE_URL": base}).base_url == base
    assert Op3Settings.from_env({**OP3, "OP3_BASE_URL": base}).base_url == base


def test_emulator_credentials_only_with_local_emulator() -> None:
    cookie = "s%3Aemulator-abc.sig"
    with pytest.raises(ConfigError, match="emulator credentials can only be used with the "
                       "local emulator") as info:
        AnchorSettings.from_env({**ANCHOR, "ANCHOR_PW_S": cookie})
    assert info.value.setting == "ANCHOR_PW_S"
    local = AnchorSettings.from_env({**ANCHOR, "ANCHOR_PW_S": cookie,
                                     "ANCHOR_BASE_URL": "http://127.0.0.1:5000/v3"})
    assert local.cookie == cookie
    with pytest.raises(ConfigError, match="local emulator"):
        Op3Settings.from_env({**OP3, "OP3_TOKEN": "emulator-token"})
    assert Op3Settings.from_env({**OP3, "OP3_TOKEN": "emulator-token",
                                 "OP3_BASE_URL": "http://localhost:5001/api/1"})


# ---------------------------------------------------------------------- the one model
REPO = Path(__file__).resolve().parents[1]


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    assert listed == set(Settings.variables().values())


def test_defaults_with_nothing_set_and_the_process_environment_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUCKDB_PATH", "elsewhere.duckdb")
    s = Settings.from_env({})
    assert (s.duckdb_path, s.start_date, s.lookback_days, s.schedule_cron) == (
        "data/podcast.duckdb", date(2025, 1, 1), 3, "0 6 * * *")
    assert s.configured_apis() == set() and s.anchor_cookie is None
    assert Settings.load().duckdb_path == "elsewhere.duckdb"


def test_blank_means_unset_and_values_are_stripped() -> None:
    s = Settings.from_env({**ANCHOR, "OP3_URL_PREFIX": "", "PODCAST_PIPELINE_LOOKBACK_DAYS": " ",
                           "ANCHOR_WEBSTATION_ID": " fb37d7a4 ", "OP3_TOKEN": "  "})
    assert s.op3_url_prefix is None and s.lookback_days == 3 and s.op3_token is None
    assert s.anchor_webstation_id == "fb37d7a4" and s.configured_apis() == {"anchor"}


def test_secrets_never_in_repr_or_dump() -> None:
    s = Settings.from_env({**ANCHOR, **OP3, "SLACK_BOT_TOKEN": "xoxb-secret-1",
                           "PODCAST_PIPELINE_ALERT_WEBHOOK_URL": "https://hooks.example/abc123"})
    shown = repr(s) + str(s.model_dump()) + s.model_dump_json()
    for secret in ("real-cookie", "tok-abcdef", "xoxb-secret-1", "abc123"):
        assert secret not in shown
    assert s.anchor().cookie == ANCHOR["ANCHOR_PW_S"] and s.op3().token == OP3["OP3_TOKEN"]


@pytest.mark.parametrize(("var", "value", "match"), [
    ("PODCAST_PIPELINE_START_DATE", "2025/01/01", "not a date"),
    ("PODCAST_PIPELINE_LOOKBACK_DAYS", "three", "not a whole number of days"),
    ("PODCAST_PIPELINE_LOOKBACK_DAYS", "-2", "not a whole number of days"),
    ("PODCAST_PIPELINE_PROBE_INTERVAL_SECONDS", "30", ">= 60"),
    ("PODCAST_PIPELINE_PROBE_INTERVAL_SECONDS", "hourly", ">= 60"),
    ("PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS", "nan", "not a positive number"),
])
def test_bad_pipeline_setting_is_one_line_naming_it(var: str, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        Settings.from_env({var: value})
    assert info.value.setting == var
    assert str(info.value).startswith(f"{var} is {value!r}") and "\n" not in str(info.value)


def test_concurrency_defaults_and_the_retired_requests_per_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls at once per credential: Spotify 1 (a cookie account), OP3 4 (issue 11's plan).
    The retired per-step variable is refused, naming what replaced it, rather than ignored."""
    s = Settings.from_env({})
    assert (s.spotify_concurrency, s.op3_concurrency) == (1, 4)
    for load in (lambda: Settings.from_env({"PODCAST_PIPELINE_REQUESTS_PER_STEP": "8"}),
                 Settings.load):
        monkeypatch.setenv("PODCAST_PIPELINE_REQUESTS_PER_STEP", "8")
        with pytest.raises(ConfigError, match="is no longer used") as info:
            load()
        assert "PODCAST_PIPELINE_SPOTIFY_CONCURRENCY" in str(info.value)
        assert "PODCAST_PIPELINE_OP3_CONCURRENCY" in str(info.value)
    with pytest.raises(ConfigError, match="PODCAST_PIPELINE_SPOTIFY_CONCURRENCY"):
        Settings.from_env({"PODCAST_PIPELINE_SPOTIFY_CONCURRENCY": "0"})


def test_api_settings_are_checked_only_when_that_api_is_used() -> None:
    s = Settings.from_env({**OP3, "ANCHOR_WEBSTATION_ID": "NOT-HEX"})  # builds fine
    assert s.op3().show_uuid == OP3["OP3_SHOW_UUID"]
    with pytest.raises(ConfigError, match="not a short hex id"):
        s.anchor()


def test_resources_show_every_value_and_only_the_names_of_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource

    env = {**ANCHOR, **OP3, "ANCHOR_BASE_URL": "http://127.0.0.1:9/v3", "DUCKDB_PATH": "x.duckdb",
           "PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS": "12"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings.load()
    anchor, op3 = AnchorResource.from_settings(s), Op3Resource.from_settings(s)
    warehouse = WarehouseResource.from_settings(s)
    assert (anchor.base_url, anchor.webstation_id) == ("http://127.0.0.1:9/v3", "fb37d7a4")
    assert op3.show_uuid == OP3["OP3_SHOW_UUID"] and op3.base_url == OP3_DEFAULT_BASE_URL
    assert (warehouse.database, warehouse.lock_timeout_seconds) == ("x.duckdb", 12.0)
    assert anchor.cookie == dg.EnvVar("ANCHOR_PW_S") and op3.token == dg.EnvVar("OP3_TOKEN")
    assert "real-cookie" not in repr(anchor) and "tok-abcdef" not in repr(op3)
    # Unset secrets stay None: an EnvVar of an unset variable would fail every step of a run.
    monkeypatch.delenv("ANCHOR_PW_S")
    assert AnchorResource.from_settings(Settings.load()).cookie is None


def test_the_ui_config_of_the_definitions_shows_values_and_names_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the UI's Resources tab lists: the resources' configured values, as Dagster holds them."""
    from podcast_pipeline.definitions import build_definitions

    env = {**ANCHOR, **OP3, "OP3_URL_PREFIX": "https://op3.dev/e/example.com/*",
           "DUCKDB_PATH": "data/x.duckdb"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    defs = build_definitions()
    shown = {key: res.get_resource_definition().config_schema.as_field().default_value
             for key, res in defs.resources.items()}
    assert shown["anchor"]["webstation_id"] == "fb37d7a4"
    assert shown["anchor"]["base_url"] == ANCHOR_DEFAULT_BASE_URL
    assert shown["anchor"]["cookie"] == {"env": "ANCHOR_PW_S"}
    assert shown["op3"]["show_uuid"] == OP3["OP3_SHOW_UUID"]
    assert shown["op3"]["url_prefix"] == env["OP3_URL_PREFIX"]
    assert shown["op3"]["token"] == {"env": "OP3_TOKEN"}
    assert shown["warehouse"]["database"] == "data/x.duckdb"
    assert {"max_retries", "backoff_factor", "timeout_seconds"} <= set(shown["anchor"])
    assert "real-cookie" not in str(shown) and "tok-abcdef" not in str(shown)
