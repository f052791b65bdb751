"""Dagster resources: thin, configurable holders of the plain-Python clients.

The definitions build them from the one :class:`~podcast_pipeline.settings.Settings`
(``from_settings``), so the UI's resource config shows every value a run uses. Secrets
are ``EnvVar``s there: the UI and the run config name the variable, never the value. A
missing value stays ``None`` and fails, at run time, only the steps that use the resource,
with a message naming the variable (see ``settings.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from podcast_pipeline import network, warehouse
from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.completeness import DEFAULT_MAX_SHRINK
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.http import CallStats, CredentialVerdict, Limits, Recorder, RetryPolicy
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.settings import (
    ANCHOR_DEFAULT_BASE_URL,
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DUCKLAKE_CATALOG_ENV,
    DUCKLAKE_DATA_PATH_ENV,
    OP3_DEFAULT_BASE_URL,
    SPOTIFY_DEFAULT_ACCOUNTS_URL,
    SPOTIFY_DEFAULT_GRAPHQL_URL,
    SPOTIFY_DEFAULT_LEGACY_API_URL,
    WAREHOUSE_ENV,
    AnchorSettings,
    LakeSettings,
    Op3Settings,
    Settings,
    SpotifySettings,
)
from podcast_pipeline.spotify.auth import BearerSource
from podcast_pipeline.spotify.client import SpotifyGraphQLClient


def _env_secret(variable: str, value: object | None) -> dg.EnvVar | None:
    """The secret as an ``EnvVar`` (resolved by Dagster in the run, masked in the UI), or
    None when unset: an ``EnvVar`` of an unset variable would fail the whole run at launch,
    not only the steps that need it."""
    return dg.EnvVar(variable) if value is not None else None


class _ApiResource(dg.ConfigurableResource):
    max_retries: int = Field(6, description="Retries of a request on 429, 5xx and connection "
                             "errors (with backoff and Retry-After).")
    backoff_factor: float = Field(1.0, description="Seconds; the wait before retry n is about "
                                  "backoff_factor * 2**n, with jitter.")
    timeout_seconds: float = Field(60.0, description="Read timeout of one request, in seconds.")
    # The bounds on an answer (http.Limits), from the settings model.
    request_deadline_seconds: float = Field(Limits.deadline, gt=0, description=(
        "PODCAST_PIPELINE_REQUEST_DEADLINE_SECONDS: the whole of one request, body included."))
    max_body_mb: float = Field(Limits.max_body_bytes / 2**20, gt=0, description=(
        "PODCAST_PIPELINE_MAX_BODY_MB: one body, counted after decompression."))
    max_json_depth: int = Field(Limits.max_json_depth, gt=0,
                                description="PODCAST_PIPELINE_MAX_JSON_DEPTH")
    max_retry_wait_seconds: float = Field(Limits.max_retry_wait, gt=0, description=(
        "PODCAST_PIPELINE_MAX_RETRY_WAIT_SECONDS: a longer Retry-After is cut to this."))
    max_rows_per_day: int = Field(Limits.max_rows_per_day, gt=0, description=(
        "PODCAST_PIPELINE_MAX_ROWS_PER_DAY: bounds how many pages a window's answer may have."))
    max_episodes: int = Field(Limits.max_episodes, gt=0, description=(
        "PODCAST_PIPELINE_MAX_EPISODES: bounds how many pages the episode list may have."))
    network_file: str | None = Field(None, description=(
        "PODCAST_PIPELINE_NETWORK_FILE: the network's shows; each show's step gets the client "
        "of its own account / OP3 token, the secrets read at run time from the variables the "
        "file names. Unset: the single-show variables."))

    def network(self) -> network.Network:
        """The network file's network (read now); the Anchor resource's names its single show."""
        return network.load_network(Settings.from_env(
            {network.NETWORK_FILE_ENV: self.network_file} if self.network_file else {}))

    def _show(self, model: Settings, key: str) -> tuple[network.Network, network.Show]:
        """The network (read now: the file may have changed since the definitions loaded)."""
        net = network.load_network(model)
        try:
            return net, net.show(key)
        except KeyError:
            raise ConfigError(network.NETWORK_FILE_ENV, f"no longer lists show {key!r} "
                              f"({net.where()})", "Reload the code location (UI → Deployment "
                              "→ Reload) so its assets follow the file, or put the show "
                              "back") from None

    def retry_policy(self) -> RetryPolicy:
        limits = Limits(deadline=self.request_deadline_seconds,
                        max_body_bytes=int(self.max_body_mb * 2**20),
                        max_json_depth=self.max_json_depth,
                        max_retry_wait=self.max_retry_wait_seconds,
                        max_rows_per_day=self.max_rows_per_day, max_episodes=self.max_episodes)
        return RetryPolicy(total=self.max_retries, backoff_factor=self.backoff_factor,
                           read_timeout=self.timeout_seconds, limits=limits)


def _limit_fields(settings: Settings) -> dict[str, Any]:
    limits = settings.limits()
    return {"request_deadline_seconds": limits.deadline,
            "max_body_mb": limits.max_body_bytes / 2**20, "max_json_depth": limits.max_json_depth,
            "max_retry_wait_seconds": limits.max_retry_wait,
            "max_rows_per_day": limits.max_rows_per_day, "max_episodes": limits.max_episodes}


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
    """Spotify for Creators, either backend: one resource, one client per step.

    ``backend`` (SPOTIFY_BACKEND): ``graphql`` (cookies sp_dc/sp_key, what the dashboard uses
    today), ``rest`` (cookie anchorpw_s), or ``auto``: GraphQL when SPOTIFY_SP_DC is set,
    else REST. Both clients fill the same ``anchor.*`` tables.
    """

    base_url: str = Field(ANCHOR_DEFAULT_BASE_URL, description="ANCHOR_BASE_URL")
    webstation_id: str | None = Field(None, description="ANCHOR_WEBSTATION_ID: the show's "
                                      "short hex id in the dashboard URL.")
    cookie: str | None = Field(None, description="ANCHOR_PW_S (secret: the anchorpw_s cookie).")
    backend: str = Field("auto", description="SPOTIFY_BACKEND: graphql, rest or auto (GraphQL "
                         "when SPOTIFY_SP_DC is set, else REST).")
    sp_dc: str | None = Field(None, description="SPOTIFY_SP_DC (secret: the sp_dc cookie).")
    sp_key: str | None = Field(None, description="SPOTIFY_SP_KEY (secret: the sp_key cookie).")
    show_uri: str | None = Field(None, description="SPOTIFY_SHOW_URI: which show, when the "
                                 "account has several hosted ones.")
    accounts_url: str = Field(SPOTIFY_DEFAULT_ACCOUNTS_URL, description="SPOTIFY_ACCOUNTS_URL")
    graphql_url: str = Field(SPOTIFY_DEFAULT_GRAPHQL_URL, description="SPOTIFY_GRAPHQL_URL")
    legacy_api_url: str = Field(SPOTIFY_DEFAULT_LEGACY_API_URL,
                                description="SPOTIFY_LEGACY_API_URL")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AnchorResource:
        return cls(**{"base_url": settings.anchor_base_url,
                      "webstation_id": settings.anchor_webstation_id,
                      "cookie": _env_secret("ANCHOR_PW_S", settings.anchor_cookie),
                      "backend": settings.spotify_backend,
                      "sp_dc": _env_secret("SPOTIFY_SP_DC", settings.spotify_sp_dc),
                      "sp_key": _env_secret("SPOTIFY_SP_KEY", settings.spotify_sp_key),
                      "show_uri": settings.spotify_show_uri,
                      "accounts_url": settings.spotify_accounts_url,
                      "graphql_url": settings.spotify_graphql_url,
                      "legacy_api_url": settings.spotify_legacy_api_url,
                      "network_file": settings.network_file,
                      **_limit_fields(settings), **overrides})

    def _model(self) -> Settings:
        return Settings.from_env({k: v for k, v in {
            "ANCHOR_BASE_URL": self.base_url, "ANCHOR_WEBSTATION_ID": self.webstation_id,
            "ANCHOR_PW_S": self.cookie, "SPOTIFY_BACKEND": self.backend,
            "SPOTIFY_SP_DC": self.sp_dc, "SPOTIFY_SP_KEY": self.sp_key,
            "SPOTIFY_SHOW_URI": self.show_uri, "SPOTIFY_ACCOUNTS_URL": self.accounts_url,
            "SPOTIFY_GRAPHQL_URL": self.graphql_url,
            "SPOTIFY_LEGACY_API_URL": self.legacy_api_url,
            network.NETWORK_FILE_ENV: self.network_file}.items() if v is not None})

    def network(self) -> network.Network:
        """The configured network (read now), of one show without a network file."""
        return network.load_network(self._model())

    def backend_name(self, show: str | None = None) -> str:
        if show is None:
            return self._model().spotify_backend_name()
        net, entry = self._show(self._model(), show)
        return net.account(entry.account).backend if entry.account else "graphql"

    def settings(self, show: str | None = None) -> AnchorSettings | SpotifySettings:
        """The single show's settings, or (``show``: a network show's key) that show's, with
        its account's cookies."""
        model = self._model()
        if show is None:
            return model.spotify_view()
        net, entry = self._show(model, show)
        return network.spotify_settings(net, entry, model)

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None, *,
               share_key: str | None = None, verdict: CredentialVerdict | None = None,
               show: str | None = None) -> AnchorClient | SpotifyGraphQLClient:
        """``share_key`` (the run id): clients under one key share the station id (REST) or
        the login (GraphQL; one per account). Without one (the credential probe) every client
        logs in itself. ``show``: a network show's key (None: the single show)."""
        kw: dict[str, Any] = {"retry": self.retry_policy(), "recorder": recorder, "stats": stats,
                              "verdict": verdict}
        settings = self.settings(show)
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

    base_url: str = Field(OP3_DEFAULT_BASE_URL, description="OP3_BASE_URL")
    show_uuid: str | None = Field(None, description="OP3_SHOW_UUID: the show's OP3 uuid.")
    url_prefix: str | None = Field(None, description="OP3_URL_PREFIX: prefix of the episode "
                                   "URLs whose redirect logs are fetched.")
    token: str | None = Field(None, description="OP3_TOKEN (secret: the API token).")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Op3Resource:
        return cls(**{"base_url": settings.op3_base_url, "show_uuid": settings.op3_show_uuid,
                      "url_prefix": settings.op3_url_prefix,
                      "token": _env_secret("OP3_TOKEN", settings.op3_token),
                      "network_file": settings.network_file,
                      **_limit_fields(settings), **overrides})

    def settings(self, show: str | None = None) -> Op3Settings:
        """The single show's settings, or (``show``: a network show's key) that show's, with
        its token."""
        if show is None:
            return Op3Settings(token=self.token or "", show_uuid=self.show_uuid or "",
                               base_url=self.base_url, url_prefix=self.url_prefix)
        model = Settings.from_env({k: v for k, v in {
            "OP3_BASE_URL": self.base_url, "OP3_TOKEN": self.token,
            network.NETWORK_FILE_ENV: self.network_file}.items() if v is not None})
        net, entry = self._show(model, show)
        return network.op3_settings(net, entry, model)

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None, *,
               share_key: str | None = None, verdict: CredentialVerdict | None = None,
               show: str | None = None) -> Op3Client:
        """``share_key`` is accepted for symmetry with Anchor; OP3 needs no bootstrap."""
        return Op3Client(self.settings(show), retry=self.retry_policy(), recorder=recorder,
                         stats=stats, verdict=verdict)


class WarehouseResource(DuckDBResource):
    """``DuckDBResource`` plus the project's writer: serialised and lock-tolerant on the DuckDB
    file (``database``), or on DuckLake (``backend``) one connection per writer, no lock."""

    lock_timeout_seconds: float = Field(
        DEFAULT_LOCK_TIMEOUT_SECONDS, gt=0,
        description="PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS: how long a write waits for the "
                    "database file held by another process.")
    max_shrink_fraction: float = Field(
        DEFAULT_MAX_SHRINK, ge=0, le=1,
        description="PODCAST_PIPELINE_MAX_SHRINK_FRACTION: the largest share of a stored day's "
                    "rows a new answer may drop without the API saying the day is empty.")
    backend: str = Field("duckdb", description=f"{WAREHOUSE_ENV}: duckdb (the file at "
                         "`database`) or ducklake (the catalog and data folder below).")
    ducklake_catalog: str | None = Field(None, description=f"{DUCKLAKE_CATALOG_ENV}: DuckLake's "
                                         "catalog (a libpq string or an SQLite file).")
    ducklake_data_path: str | None = Field(None, description=f"{DUCKLAKE_DATA_PATH_ENV}: the "
                                           "folder of DuckLake's data files.")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WarehouseResource:
        return cls(**{"database": settings.duckdb_path,
                      "lock_timeout_seconds": settings.db_lock_timeout_seconds,
                      "max_shrink_fraction": settings.max_shrink_fraction,
                      "backend": settings.warehouse,
                      # An EnvVar: it may hold a password, so the UI names the variable only.
                      "ducklake_catalog": _env_secret(DUCKLAKE_CATALOG_ENV,
                                                      settings.ducklake_catalog),
                      "ducklake_data_path": settings.ducklake_data_path, **overrides})

    def target(self) -> warehouse.Target:
        """What this resource writes, decided by :meth:`Settings.warehouse_target`."""
        return Settings.from_env({k: v for k, v in {
            "DUCKDB_PATH": self.database, WAREHOUSE_ENV: self.backend,
            DUCKLAKE_CATALOG_ENV: self.ducklake_catalog,
            DUCKLAKE_DATA_PATH_ENV: self.ducklake_data_path}.items() if v is not None}
        ).warehouse_target()

    def check(self) -> None:
        """Before any request: the DuckDB file's path can hold the warehouse, or the DuckLake
        settings are whole (their catalog is reached when the write opens it)."""
        target = self.target()
        if not isinstance(target, LakeSettings):
            warehouse.check_writable(target)

    @contextmanager
    def writer(self, on_wait=None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Wait (bounded, one budget for both waits) for our other writers, then for any
        other process holding the file; raises ``WarehouseBusy`` naming the holder. On
        DuckLake, no lock: each writer commits its own snapshot (conflicts are retried by
        ``warehouse.replace_window``)."""
        timeout = self.lock_timeout_seconds
        target = self.target()
        if isinstance(target, LakeSettings):
            with warehouse.connect(target, timeout=timeout, on_wait=on_wait) as con:
                warehouse.ensure_schema(con)
                yield con
            return
        deadline = time.monotonic() + timeout
        with warehouse.write_lock(target, timeout, on_wait):
            with warehouse.connect(target, timeout=max(1.0, deadline - time.monotonic()),
                                   on_wait=on_wait) as con:
                warehouse.ensure_schema(con)
                yield con
