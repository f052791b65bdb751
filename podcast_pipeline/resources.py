"""Dagster resources: thin, configurable holders of the plain-Python clients.

Every field is optional: unset fields fall back to the environment at run time, so
definitions load with no credential set and a missing one fails only the steps that
need it, with a message naming the variable (see ``settings.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.http import CallStats, Recorder, RetryPolicy
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.settings import (
    AnchorSettings,
    Op3Settings,
    SpotifySettings,
    spotify_backend,
)
from podcast_pipeline.spotify.auth import BearerSource
from podcast_pipeline.spotify.client import SpotifyGraphQLClient


class _ApiResource(dg.ConfigurableResource):
    max_retries: int = 6
    backoff_factor: float = 1.0
    timeout_seconds: float = 60.0

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(total=self.max_retries, backoff_factor=self.backoff_factor,
                           read_timeout=self.timeout_seconds)

    def _environ(self, overrides: dict[str, str | None]) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: v for k, v in overrides.items() if v})
        return env


# Station ids learned per share key (a run id): the steps of a run that share a process (the
# in-process executor: demo, tests, single-run backfills) bootstrap it once, not once per
# step; under the multiprocess executor each step still asks once. Bounded in size.
_STATION_IDS: dict[tuple[str, str, str], int] = {}
_STATION_IDS_MAX = 256


class _SharingAnchorClient(AnchorClient):
    """Starts from, and publishes, the station id other clients under the same key learned.

    The episodes page carries the station id, so a run that lists episodes first needs no
    bootstrap request at all.
    """

    def __init__(self, settings: AnchorSettings, share_key: str, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self._share = (share_key, settings.base_url, settings.webstation_id)
        self._station_id = _STATION_IDS.get(self._share)

    def _publish(self) -> None:
        if self._station_id is not None:
            if len(_STATION_IDS) >= _STATION_IDS_MAX:
                _STATION_IDS.clear()
            _STATION_IDS[self._share] = self._station_id

    def station_id(self) -> int:
        sid = super().station_id()
        self._publish()
        return sid

    def episodes(self, limit: int = 50) -> pd.DataFrame:
        frame = super().episodes(limit)
        self._publish()
        return frame


# One Spotify login per share key (a run id): the steps of a run in one process reuse the
# bearer (memory only) instead of logging in once each. Bounded like the station ids.
_LOGINS: dict[tuple[str, str, int], BearerSource] = {}
_LOGINS_MAX = 64


def _shared_login(settings: SpotifySettings, share_key: str, **kw: Any) -> BearerSource:
    key = (share_key, settings.accounts_url, hash((settings.sp_dc, settings.sp_key)))
    login = _LOGINS.get(key)
    if login is None:
        if len(_LOGINS) >= _LOGINS_MAX:
            for old in _LOGINS.values():
                old.close()
            _LOGINS.clear()
        login = _LOGINS[key] = BearerSource(settings, **kw)
    return login


class AnchorResource(_ApiResource):
    """Spotify for Creators: one resource, either backend.

    ``backend`` (SPOTIFY_BACKEND): ``graphql`` (cookies sp_dc/sp_key, what the dashboard uses
    today), ``rest`` (cookie anchorpw_s), or unset: GraphQL when SPOTIFY_SP_DC is set, else
    REST when ANCHOR_PW_S is. Both clients fill the same ``anchor.*`` tables.
    """

    base_url: str | None = None
    webstation_id: str | None = None
    cookie: str | None = None
    backend: str | None = None
    sp_dc: str | None = None
    sp_key: str | None = None
    show_uri: str | None = None
    accounts_url: str | None = None
    graphql_url: str | None = None
    legacy_api_url: str | None = None

    def _env(self) -> dict[str, str]:
        return self._environ({
            "ANCHOR_BASE_URL": self.base_url, "ANCHOR_WEBSTATION_ID": self.webstation_id,
            "ANCHOR_PW_S": self.cookie, "SPOTIFY_BACKEND": self.backend,
            "SPOTIFY_SP_DC": self.sp_dc, "SPOTIFY_SP_KEY": self.sp_key,
            "SPOTIFY_SHOW_URI": self.show_uri, "SPOTIFY_ACCOUNTS_URL": self.accounts_url,
            "SPOTIFY_GRAPHQL_URL": self.graphql_url, "SPOTIFY_LEGACY_API_URL": self.legacy_api_url,
        })

    def backend_name(self) -> str:
        return spotify_backend(self._env())

    def settings(self) -> AnchorSettings | SpotifySettings:
        env = self._env()
        if spotify_backend(env) == "graphql":
            return SpotifySettings.from_env(env)
        return AnchorSettings.from_env(env)

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None, *,
               share_key: str | None = None) -> AnchorClient | SpotifyGraphQLClient:
        """``share_key`` (the run id): REST clients under one key share the station id. Without
        one (the credential probe) every client makes its own authenticated call."""
        kw: dict[str, Any] = {"retry": self.retry_policy(), "recorder": recorder, "stats": stats}
        settings = self.settings()
        if isinstance(settings, SpotifySettings):
            if share_key is None:
                return SpotifyGraphQLClient(settings, **kw)
            login = _shared_login(settings, share_key, retry=kw["retry"])
            return SpotifyGraphQLClient(settings, auth=login, **kw)
        if share_key is None:
            return AnchorClient(settings, **kw)
        return _SharingAnchorClient(settings, share_key, **kw)


class Op3Resource(_ApiResource):
    """OP3 API client configuration."""

    base_url: str | None = None
    token: str | None = None
    show_uuid: str | None = None
    url_prefix: str | None = None

    def settings(self) -> Op3Settings:
        return Op3Settings.from_env(self._environ({
            "OP3_BASE_URL": self.base_url, "OP3_TOKEN": self.token,
            "OP3_SHOW_UUID": self.show_uuid, "OP3_URL_PREFIX": self.url_prefix,
        }))

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None, *,
               share_key: str | None = None) -> Op3Client:
        """``share_key`` is accepted for symmetry with Anchor; OP3 needs no bootstrap."""
        return Op3Client(self.settings(), retry=self.retry_policy(), recorder=recorder, stats=stats)


class WarehouseResource(DuckDBResource):
    """``DuckDBResource`` plus the project's serialised, lock-tolerant writer."""

    # None: PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS, else 600 s.
    lock_timeout_seconds: float | None = None

    @contextmanager
    def writer(self, on_wait=None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Wait (bounded, one budget for both waits) for our other writers, then for any
        other process holding the file; raises ``WarehouseBusy`` naming the holder."""
        timeout = self.lock_timeout_seconds or warehouse.lock_timeout()
        deadline = time.monotonic() + timeout
        with warehouse.write_lock(self.database, timeout, on_wait):
            with warehouse.connect(self.database, timeout=max(1.0, deadline - time.monotonic()),
                                   on_wait=on_wait) as con:
                warehouse.ensure_schema(con)
                yield con
