"""One cheap authenticated call per API, and a verdict a person can act on.

Shared by the hourly probe sensor and ``podcast-pipeline check-credentials``. Plain
Python (no Dagster import) so the CLI starts fast. Verdicts never hold a secret: they
are built from typed errors whose messages carry only API names, paths and redacted text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
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
from podcast_pipeline.network import Network, Show, load_network, op3_settings, spotify_settings
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.redact import redact
from podcast_pipeline.settings import (
    NETWORK_FILE_ENV,
    AnchorSettings,
    Op3Settings,
    Settings,
    SpotifySettings,
)
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


@dataclass(frozen=True)
class Owner:
    """Who a network's verdict is about: its label, its variables and the shows it serves."""

    label: str  # "account acme", "op3 token main"
    names: Mapping[str, str]  # the single-show variable -> this one's (in messages and fixes)
    shows: str  # "The Daily Byte (fb37d7a4), ..." for messages
    call: Callable[[ApiSettings, RetryPolicy], None] | None = None  # else the API's probe


def check(api: str, load_settings: Callable[[], ApiSettings],
          retry: RetryPolicy = PROBE_RETRY, owner: Owner | None = None) -> Verdict:
    """Load ``api``'s settings and make one authenticated call; classify the outcome.
    ``owner``: a network's account or OP3 token (its label, variables and shows)."""
    name = API_NAMES[api]
    label = owner.label if owner else api

    def own(text: str) -> str:  # the single-show variable names, as this owner's
        for single, mine in (owner.names.items() if owner else ()):
            text = re.sub(rf"\b{single}\b", mine, text)
        return text

    try:
        settings = load_settings()
    except ConfigError as exc:
        return Verdict(label, "not_configured", str(exc))
    graphql = isinstance(settings, SpotifySettings)
    var = own(GRAPHQL_SECRET_VAR if graphql else SECRET_VAR[api])
    fix = own(FIX_STEPS["spotify_graphql" if graphql else api])
    where = owner.shows if owner else show_label(settings)
    try:
        (owner.call if owner and owner.call else _call)(settings, retry)
    except CredentialsExpired as exc:
        how = "rejected" if graphql else "answered 401 to"
        why = f" ({exc.reason})" if graphql and exc.reason else ""
        return Verdict(label, "expired", f"{name} {how} {var}{why} ({where}). "
                       f"To fix: {fix}")
    except ConfigError as exc:  # e.g. several shows on the account and no SPOTIFY_SHOW_URI
        return Verdict(label, "not_configured", str(exc))
    except AccessDenied as exc:  # OP3: a token that is not a key at all; Anchor: not this show
        return Verdict(label, "rejected", f"{own(str(exc))}. Check {var} and the show id "
                       f"({where}); to get a new credential: {fix}")
    except ApiError as exc:  # connection, 5xx, 429, malformed: says nothing about the credential
        return Verdict(label, "unreachable", f"{own(str(exc))}. The credential was not tested.")
    backend = " (GraphQL backend)" if graphql else ""
    return Verdict(label, "ok", f"{name} accepted {var} for {where}{backend}")


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
    """Both APIs, configured from ``environ`` (default: the process environment); with a
    network file, one verdict per account and per OP3 token instead."""
    settings = Settings.from_env(environ)
    if settings.network_file:
        try:
            network = load_network(settings)
        except ConfigError as exc:
            return [Verdict("network", "not_configured", str(exc))]
        return check_network(network, settings, environ, retry)
    return [check("anchor", settings.spotify_view, retry), check("op3", settings.op3, retry)]


def _shows_text(shows: Sequence[Show]) -> str:
    names = [f"{s.name} ({s.key})" if s.name != s.key else s.key for s in shows]
    return ("show " if len(names) == 1 else f"{len(names)} shows: ") + ", ".join(names)


def check_network(network: Network, settings: Settings,
                  environ: Mapping[str, str] | None = None,
                  retry: RetryPolicy = PROBE_RETRY) -> list[Verdict]:
    """One probe per account (with its first show) and per OP3 token: one credential, one
    call, one line naming every show it serves."""
    out = []
    for account in network.accounts:
        shows = network.shows_of_account(account.name)
        if not shows:
            continue  # an account no show uses is never called
        owner = Owner(f"account {account.name}", network.variables("anchor", account.name),
                      _shows_text(shows), _lists_every_show(network, shows))
        out.append(check("anchor", lambda s=shows[0]: spotify_settings(
            network, s, settings, environ), retry, owner))
    for token in network.op3_tokens:
        shows = network.shows_of_token(token.name)
        if shows:
            owner = Owner(f"op3 token {token.name}", network.variables("op3", token.name),
                          _shows_text(shows))
            out.append(check("op3", lambda s=shows[0]: op3_settings(
                network, s, settings, environ), retry, owner))
    return out


def _lists_every_show(network: Network, shows: Sequence[Show]
                      ) -> Callable[[ApiSettings, RetryPolicy], None]:
    """The account's probe; over GraphQL its one show list must hold each of its shows."""
    def call(settings: ApiSettings, retry: RetryPolicy) -> None:
        if not isinstance(settings, SpotifySettings):
            return _call(settings, retry)
        with SpotifyGraphQLClient(settings, retry=retry) as spotify:
            listed = {s.get("uri") for s in spotify.list_shows()}
        for show in shows:
            if show.spotify_show_uri and show.spotify_show_uri not in listed:
                raise ConfigError(f"{NETWORK_FILE_ENV} ({network.source}): show '{show.key}'",
                                  f"has spotify_show_uri {show.spotify_show_uri}, which its "
                                  f"account '{show.account}' does not list",
                                  "Check the URI in the show's dashboard URL, or the account "
                                  "the show is under")
        return None
    return call
