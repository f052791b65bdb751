"""One cheap authenticated call per API, and a verdict a person can act on.

Shared by the hourly probe sensor and ``podcast-pipeline check-credentials``. Plain
Python (no Dagster import) so the CLI starts fast. Verdicts never hold a secret: they
are built from typed errors whose messages carry only API names, paths and redacted text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.errors import (
    API_NAMES,
    FIX_STEPS,
    AccessDenied,
    ApiError,
    ConfigError,
    CredentialsExpired,
)
from podcast_pipeline.http import RetryPolicy
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.redact import redact
from podcast_pipeline.settings import AnchorSettings, Op3Settings, Settings, SpotifySettings
from podcast_pipeline.spotify.client import SpotifyGraphQLClient

Status = Literal["ok", "expired", "rejected", "not_configured", "unreachable"]
APIS = ("anchor", "op3")
SECRET_VAR = {"anchor": "ANCHOR_PW_S", "op3": "OP3_TOKEN"}

# A probe must finish well inside a sensor tick (60 s by default): few, short retries.
PROBE_RETRY = RetryPolicy(total=2, backoff_factor=0.5, backoff_max=2.0, malformed_retries=0,
                          connect_timeout=5.0, read_timeout=15.0)

ApiSettings = AnchorSettings | SpotifySettings | Op3Settings
GRAPHQL_SECRET_VAR = "SPOTIFY_SP_DC / SPOTIFY_SP_KEY"


@dataclass(frozen=True)
class Verdict:
    api: str
    status: Status
    detail: str  # one line, what it means and what to do; never a secret

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        label = {"ok": "ok", "expired": "EXPIRED or invalid", "rejected": "REJECTED",
                 "not_configured": "NOT CONFIGURED", "unreachable": "UNREACHABLE"}[self.status]
        return redact(f"{self.api}: {label} — {self.detail}")


def show_label(settings: ApiSettings) -> str:
    if isinstance(settings, SpotifySettings):
        if settings.webstation_id:
            return f"web station {settings.webstation_id}"
        return f"show {settings.show_uri}" if settings.show_uri else "the account's show"
    if isinstance(settings, AnchorSettings):
        return f"web station {settings.webstation_id}"
    return f"show {settings.show_uuid}"


def _call(settings: ApiSettings, retry: RetryPolicy) -> None:
    """The cheapest authenticated request each API has."""
    if isinstance(settings, SpotifySettings):
        with SpotifyGraphQLClient(settings, retry=retry) as spotify:
            spotify.show_uri()  # a login, then getShowsForUser
    elif isinstance(settings, AnchorSettings):
        with AnchorClient(settings, retry=retry) as anchor:
            anchor.station_id()  # episodePage?limit=1
    else:
        with Op3Client(settings, retry=retry) as op3:
            op3.show(episodes=False)  # /shows/{uuid}?episodes=exclude


def check(api: str, load_settings: Callable[[], ApiSettings],
          retry: RetryPolicy = PROBE_RETRY) -> Verdict:
    """Load ``api``'s settings and make one authenticated call; classify the outcome."""
    name = API_NAMES[api]
    try:
        settings = load_settings()
    except ConfigError as exc:
        return Verdict(api, "not_configured", str(exc))
    graphql = isinstance(settings, SpotifySettings)
    var = GRAPHQL_SECRET_VAR if graphql else SECRET_VAR[api]
    fix = FIX_STEPS["spotify_graphql" if graphql else api]
    try:
        _call(settings, retry)
    except CredentialsExpired as exc:
        how = "rejected" if graphql else "answered 401 to"
        why = f" ({exc.reason})" if graphql and exc.reason else ""
        return Verdict(api, "expired", f"{name} {how} {var}{why} ({show_label(settings)}). "
                       f"To fix: {fix}")
    except ConfigError as exc:  # e.g. several shows on the account and no SPOTIFY_SHOW_URI
        return Verdict(api, "not_configured", str(exc))
    except AccessDenied as exc:  # OP3: a token that is not a key at all; Anchor: not this show
        return Verdict(api, "rejected", f"{exc}. Check {var} and the show id; "
                       f"to get a new credential: {fix}")
    except ApiError as exc:  # connection, 5xx, 429, malformed: says nothing about the credential
        return Verdict(api, "unreachable", f"{exc}. The credential was not tested.")
    backend = " (GraphQL backend)" if graphql else ""
    return Verdict(api, "ok", f"{name} accepted {var} for {show_label(settings)}{backend}")


def environment_with_dotenv(directory: str | Path = ".") -> dict[str, str]:
    """The process environment with ``directory/.env`` on top, the way ``dagster dev`` reads it.

    python-dotenv is Dagster's own dependency; like Dagster, a value in .env wins.
    """
    from dotenv import dotenv_values

    path = Path(directory) / ".env"
    found = dotenv_values(path) if path.is_file() else {}
    return {**os.environ, **{k: v for k, v in found.items() if v is not None}}


def check_env(environ: Mapping[str, str] | None = None,
              retry: RetryPolicy = PROBE_RETRY) -> list[Verdict]:
    """Both APIs, configured from ``environ`` (default: the process environment)."""
    settings = Settings.from_env(environ)
    return [check("anchor", settings.spotify_view, retry), check("op3", settings.op3, retry)]
