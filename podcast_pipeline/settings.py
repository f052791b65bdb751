"""Settings of both API clients, read from the environment and checked before any request.

Every problem is a :class:`ConfigError` naming the variable and the fix. Secrets are
registered for redaction and hidden from ``repr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from podcast_pipeline import validate
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.redact import register_secret

ANCHOR_DEFAULT_BASE_URL = "https://podcasters.spotify.com/pod/api/proxy/v3"
OP3_DEFAULT_BASE_URL = "https://op3.dev/api/1"

_WEBSTATION_ID = re.compile(r"^[0-9a-f]{6,12}$")
_SHOW_UUID = re.compile(r"^[0-9a-f]{32}$")


def _get(environ: Mapping[str, str], var: str) -> str:
    return (environ.get(var) or "").strip()


@dataclass(frozen=True)
class AnchorSettings:
    """Spotify for Creators (Anchor): base URL, short hex web station id, ``anchorpw_s`` cookie."""

    webstation_id: str
    cookie: str = field(repr=False)
    base_url: str = ANCHOR_DEFAULT_BASE_URL

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", validate.base_url("ANCHOR_BASE_URL", self.base_url))
        if not self.webstation_id:
            raise ConfigError("ANCHOR_WEBSTATION_ID", "is not set",
                              "Set it to the short hex id from your podcast's URL, e.g. fb37d7a4")
        if not _WEBSTATION_ID.match(self.webstation_id):
            raise ConfigError("ANCHOR_WEBSTATION_ID", f"is not a short hex id "
                              f"({self.webstation_id!r})",
                              "Use the 6-12 lowercase hex characters from your podcast's URL, "
                              "e.g. fb37d7a4")
        validate.secret("ANCHOR_PW_S", self.cookie)
        if self.cookie.lower().startswith("anchorpw_s="):
            raise ConfigError("ANCHOR_PW_S", "includes the cookie name",
                              "Put only the value after 'anchorpw_s=' into ANCHOR_PW_S")
        validate.emulator_guard("ANCHOR_PW_S", self.cookie, "ANCHOR_BASE_URL", self.base_url)
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
        object.__setattr__(self, "base_url", validate.base_url("OP3_BASE_URL", self.base_url))
        validate.secret("OP3_TOKEN", self.token)
        validate.emulator_guard("OP3_TOKEN", self.token, "OP3_BASE_URL", self.base_url)
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
