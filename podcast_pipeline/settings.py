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
SPOTIFY_DEFAULT_ACCOUNTS_URL = "https://accounts.spotify.com"
SPOTIFY_DEFAULT_GRAPHQL_URL = "https://creators-graph.spotify.com/v2/graph-pq"
SPOTIFY_DEFAULT_LEGACY_API_URL = "https://api-v5.anchor.fm"
BACKEND_ENV = "SPOTIFY_BACKEND"
BACKENDS = ("auto", "graphql", "rest")
EMULATOR_PREFIX = "emulator-"

_WEBSTATION_ID = re.compile(r"^[0-9a-f]{6,12}$")
_SHOW_UUID = re.compile(r"^[0-9a-f]{32}$")
_BAD_SECRET_CHARS = re.compile(r"[\s;,\"']")
_SHOW_ID = re.compile(r"^[0-9A-Za-z]{22}$")


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
        other = (" Or use the GraphQL backend the dashboard uses today: set SPOTIFY_SP_DC and "
                 "SPOTIFY_SP_KEY instead (see .env.example)." if var == "ANCHOR_PW_S" else "")
        raise ConfigError(var, "is not set", f"To fix: {FIX_STEPS[_api_of(var)]}{other}")
    if _BAD_SECRET_CHARS.search(value):
        raise ConfigError(var, "contains spaces, quotes, ';' or ','",
                          f"Paste only the value itself into {var}, without quotes")


def _api_of(var: str) -> str:
    if var.startswith("SPOTIFY"):
        return "spotify_graphql"
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


def show_uri(value: str) -> str:
    """``spotify:show:<id>``, from the URI itself, the bare id or a dashboard/open.spotify URL."""
    text = value.strip()
    m = re.search(r"(?:spotify:show:|/show/)([0-9A-Za-z]{22})(?:[/?#]|$)", text)
    ident = m.group(1) if m else text
    if not _SHOW_ID.match(ident):
        raise ConfigError("SPOTIFY_SHOW_URI", f"is not a Spotify show URI ({value!r})",
                          "Use spotify:show:<22 letters and digits>, e.g. from the dashboard URL "
                          "https://creators.spotify.com/pod/show/<id>/episodes, or unset it to "
                          "use the account's only (or first hosted) show")
    return f"spotify:show:{ident}"


@dataclass(frozen=True)
class SpotifySettings:
    """Spotify for Creators over GraphQL: the ``sp_dc`` / ``sp_key`` cookies of a logged-in
    Spotify web session, the show (optional when the account has one), the three hosts.

    ``sp_key`` is optional: the reference client sends both, but a fresh ``sp_dc`` alone has
    re-authenticated for others, and some browsers do not show ``sp_key`` at all.
    ``webstation_id`` (ANCHOR_WEBSTATION_ID, optional) keys the warehouse rows, so rows of the
    REST and GraphQL backends for one show replace each other instead of piling up.
    """

    sp_dc: str = field(repr=False)
    sp_key: str | None = field(default=None, repr=False)
    show_uri: str | None = None
    webstation_id: str | None = None
    accounts_url: str = SPOTIFY_DEFAULT_ACCOUNTS_URL
    graphql_url: str = SPOTIFY_DEFAULT_GRAPHQL_URL
    legacy_url: str = SPOTIFY_DEFAULT_LEGACY_API_URL

    def __post_init__(self) -> None:
        for attr, var in (("accounts_url", "SPOTIFY_ACCOUNTS_URL"),
                          ("graphql_url", "SPOTIFY_GRAPHQL_URL"),
                          ("legacy_url", "SPOTIFY_LEGACY_API_URL")):
            object.__setattr__(self, attr, _base_url(var, getattr(self, attr)))
        _secret("SPOTIFY_SP_DC", self.sp_dc)
        if self.sp_key:
            _secret("SPOTIFY_SP_KEY", self.sp_key)
        for var, value, name in (("SPOTIFY_SP_DC", self.sp_dc, "sp_dc"),
                                 ("SPOTIFY_SP_KEY", self.sp_key or "", "sp_key")):
            if value.lower().startswith(name + "="):
                raise ConfigError(var, "includes the cookie name",
                                  f"Put only the value after '{name}=' into {var}")
        # Emulator cookies must not go to a real host, and no URL may point at a real one
        # while another points at the emulator (the cookie would leave loopback).
        for var, url in (("SPOTIFY_ACCOUNTS_URL", self.accounts_url),
                         ("SPOTIFY_GRAPHQL_URL", self.graphql_url),
                         ("SPOTIFY_LEGACY_API_URL", self.legacy_url)):
            _emulator_guard("SPOTIFY_SP_DC", self.sp_dc, var, url)
        if self.show_uri is not None:
            object.__setattr__(self, "show_uri", show_uri(self.show_uri))
        if self.webstation_id and not _WEBSTATION_ID.match(self.webstation_id):
            raise ConfigError("ANCHOR_WEBSTATION_ID", f"is not a short hex id "
                              f"({self.webstation_id!r})",
                              "Use the 6-12 lowercase hex characters from your podcast's URL, "
                              "or unset it")
        register_secret(self.sp_dc)
        register_secret(self.sp_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SpotifySettings:
        return cls(
            sp_dc=_get(environ, "SPOTIFY_SP_DC"),
            sp_key=_get(environ, "SPOTIFY_SP_KEY") or None,
            show_uri=_get(environ, "SPOTIFY_SHOW_URI") or None,
            webstation_id=_get(environ, "ANCHOR_WEBSTATION_ID") or None,
            accounts_url=_get(environ, "SPOTIFY_ACCOUNTS_URL") or SPOTIFY_DEFAULT_ACCOUNTS_URL,
            graphql_url=_get(environ, "SPOTIFY_GRAPHQL_URL") or SPOTIFY_DEFAULT_GRAPHQL_URL,
            legacy_url=_get(environ, "SPOTIFY_LEGACY_API_URL") or SPOTIFY_DEFAULT_LEGACY_API_URL,
        )


def spotify_backend(environ: Mapping[str, str] = os.environ) -> str:
    """Which Spotify for Creators backend to use: ``graphql`` or ``rest``.

    SPOTIFY_BACKEND=graphql|rest decides; unset (or ``auto``): GraphQL when SPOTIFY_SP_DC is
    set (the API the dashboard uses today), else REST (whose "ANCHOR_PW_S is not set" error
    names both ways to configure it).
    """
    choice = _get(environ, BACKEND_ENV).lower() or "auto"
    if choice not in BACKENDS:
        raise ConfigError(BACKEND_ENV, f"is {choice!r}, not one of {', '.join(BACKENDS)}",
                          "Set it to graphql (cookies sp_dc/sp_key) or rest (cookie anchorpw_s), "
                          "or unset it to choose by which credential is set")
    if choice != "auto":
        return choice
    return "graphql" if _get(environ, "SPOTIFY_SP_DC") else "rest"
