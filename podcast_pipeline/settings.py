"""Settings of both API clients, read from the environment and checked before any request.

Every problem is a :class:`ConfigError` naming the variable and the fix. Secrets are
registered for redaction and hidden from ``repr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from podcast_pipeline.errors import FIX_STEPS, ConfigError
from podcast_pipeline.http import is_loopback_url
from podcast_pipeline.redact import register_secret

ANCHOR_DEFAULT_BASE_URL = "https://podcasters.spotify.com/pod/api/proxy/v3"
OP3_DEFAULT_BASE_URL = "https://op3.dev/api/1"
EMULATOR_PREFIX = "emulator-"

_WEBSTATION_ID = re.compile(r"^[0-9a-f]{6,12}$")
_SHOW_UUID = re.compile(r"^[0-9a-f]{32}$")
_BAD_SECRET_CHARS = re.compile(r"[\s;,\"']")


def _base_url(var: str, value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(var, f"is not an http(s) URL ({value!r})",
                          f"Set {var} to a URL like the default, or unset it")
    if parts.scheme != "https" and not is_loopback_url(value):
        # The cookie/token would travel in cleartext.
        raise ConfigError(var, "uses http:// for a non-local host",
                          f"Use https:// in {var} (plain http is only allowed for localhost)")
    return value


def _secret(var: str, value: str) -> None:
    if not value:
        raise ConfigError(var, "is not set", f"To fix: {FIX_STEPS[_api_of(var)]}")
    if _BAD_SECRET_CHARS.search(value):
        raise ConfigError(var, "contains spaces, quotes, ';' or ','",
                          f"Paste only the value itself into {var}, without quotes")


def _api_of(var: str) -> str:
    return "anchor" if var.startswith("ANCHOR") else "op3"


def _emulator_guard(var: str, secret: str, base_var: str, base_url: str) -> None:
    if unquote(secret).removeprefix("s:").startswith(EMULATOR_PREFIX) and not is_loopback_url(
            base_url):
        raise ConfigError(var, "holds an emulator credential but "
                          f"{base_var} points at {urlsplit(base_url).hostname}",
                          "emulator credentials can only be used with the local emulator; "
                          f"set a real credential or point {base_var} at the emulator")


def _get(environ: Mapping[str, str], var: str) -> str:
    return (environ.get(var) or "").strip()


@dataclass(frozen=True)
class AnchorSettings:
    """Spotify for Creators (Anchor): base URL, short hex web station id, ``anchorpw_s`` cookie."""

    webstation_id: str
    cookie: str = field(repr=False)
    base_url: str = ANCHOR_DEFAULT_BASE_URL

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _base_url("ANCHOR_BASE_URL", self.base_url))
        if not self.webstation_id:
            raise ConfigError("ANCHOR_WEBSTATION_ID", "is not set",
                              "Set it to the short hex id from your podcast's URL, e.g. fb37d7a4")
        if not _WEBSTATION_ID.match(self.webstation_id):
            raise ConfigError("ANCHOR_WEBSTATION_ID", f"is not a short hex id "
                              f"({self.webstation_id!r})",
                              "Use the 6-12 lowercase hex characters from your podcast's URL, "
                              "e.g. fb37d7a4")
        _secret("ANCHOR_PW_S", self.cookie)
        if self.cookie.lower().startswith("anchorpw_s="):
            raise ConfigError("ANCHOR_PW_S", "includes the cookie name",
                              "Put only the value after 'anchorpw_s=' into ANCHOR_PW_S")
        _emulator_guard("ANCHOR_PW_S", self.cookie, "ANCHOR_BASE_URL", self.base_url)
        register_secret(self.cookie)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AnchorSettings:
        return cls(
            webstation_id=_get(environ, "ANCHOR_WEBSTATION_ID"),
            cookie=_get(environ, "ANCHOR_PW_S"),
            base_url=_get(environ, "ANCHOR_BASE_URL") or ANCHOR_DEFAULT_BASE_URL,
        )


@dataclass(frozen=True)
class Op3Settings:
    """OP3: base URL, bearer token, show uuid and the optional redirect-logs URL prefix."""

    token: str = field(repr=False)
    show_uuid: str
    base_url: str = OP3_DEFAULT_BASE_URL
    url_prefix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _base_url("OP3_BASE_URL", self.base_url))
        _secret("OP3_TOKEN", self.token)
        _emulator_guard("OP3_TOKEN", self.token, "OP3_BASE_URL", self.base_url)
        if not self.show_uuid:
            raise ConfigError("OP3_SHOW_UUID", "is not set",
                              "Set it to your show's uuid from https://op3.dev/show/<uuid>")
        if not _SHOW_UUID.match(self.show_uuid):
            raise ConfigError("OP3_SHOW_UUID", f"is not 32 lowercase hex characters "
                              f"({self.show_uuid!r})",
                              "Copy the uuid from your show's OP3 stats page URL "
                              "(https://op3.dev/show/<uuid>), without dashes")
        if self.url_prefix is not None:
            parts = urlsplit(self.url_prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("OP3_URL_PREFIX", f"is not a URL ({self.url_prefix!r})",
                                  "Set it to your prefixed episode URL start, e.g. "
                                  "https://op3.dev/e/example.com/* (or unset it)")
        register_secret(self.token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Op3Settings:
        return cls(
            token=_get(environ, "OP3_TOKEN"),
            show_uuid=_get(environ, "OP3_SHOW_UUID"),
            base_url=_get(environ, "OP3_BASE_URL") or OP3_DEFAULT_BASE_URL,
            url_prefix=_get(environ, "OP3_URL_PREFIX") or None,
        )
