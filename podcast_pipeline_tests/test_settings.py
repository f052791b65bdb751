"""Settings: every missing, empty or malformed variable is a ConfigError naming it."""

from __future__ import annotations

import pytest

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.redact import redact
from podcast_pipeline.settings import (
    ANCHOR_DEFAULT_BASE_URL,
    OP3_DEFAULT_BASE_URL,
    AnchorSettings,
    Op3Settings,
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
