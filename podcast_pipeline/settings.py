"""Every setting of the pipeline in one typed model, read from the environment.

:class:`Settings` is built by pydantic-settings from the variables listed in
``.env.example``; the definitions, resources, schedule, sensors and alerts all take their
values from one instance of it. Definitions load with every variable unset:

- pipeline-wide values (dates, numbers, the database path) are checked when the model
  is built, so a malformed one stops the code location from loading, naming it;
- each API's own values are checked only when that API is used
  (:class:`AnchorSettings`, :class:`Op3Settings`), so a missing or malformed one fails
  only that API's steps, before any request.

Every problem is a :class:`ConfigError` naming the variable and the fix. Secrets are
``SecretStr`` in the model (never in its repr) and registered for redaction when used.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from podcast_pipeline import validate
from podcast_pipeline.completeness import DEFAULT_MAX_SHRINK, SHRINK_ENV
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.http import (
    DEADLINE_ENV,
    MAX_BODY_ENV,
    MAX_EPISODES_ENV,
    MAX_JSON_DEPTH_ENV,
    MAX_RETRY_WAIT_ENV,
    MAX_ROWS_PER_DAY_ENV,
    Limits,
)
from podcast_pipeline.redact import register_secret

ANCHOR_DEFAULT_BASE_URL = "https://podcasters.spotify.com/pod/api/proxy/v3"
OP3_DEFAULT_BASE_URL = "https://op3.dev/api/1"
SPOTIFY_DEFAULT_ACCOUNTS_URL = "https://accounts.spotify.com"
SPOTIFY_DEFAULT_GRAPHQL_URL = "https://creators-graph.spotify.com/v2/graph-pq"
SPOTIFY_DEFAULT_LEGACY_API_URL = "https://api-v5.anchor.fm"
BACKEND_ENV = "SPOTIFY_BACKEND"
BACKENDS = ("auto", "graphql", "rest")
GRAPHQL_CREDENTIAL_ENV = "SPOTIFY_SP_DC"  # Spotify for Creators over GraphQL

# The variables of the pipeline-wide settings, named where their checks and tests refer to them.
DUCKDB_PATH_ENV = "DUCKDB_PATH"
START_DATE_ENV = "PODCAST_PIPELINE_START_DATE"
LOOKBACK_ENV = "PODCAST_PIPELINE_LOOKBACK_DAYS"
# Retired: its meaning (requests per step, times 2 steps per API) is now per credential.
RETIRED_REQUESTS_PER_STEP_ENV = "PODCAST_PIPELINE_REQUESTS_PER_STEP"
CRON_ENV = "PODCAST_PIPELINE_SCHEDULE_CRON"
LOCK_TIMEOUT_ENV = "PODCAST_PIPELINE_DB_LOCK_TIMEOUT_SECONDS"
PROBE_INTERVAL_ENV = "PODCAST_PIPELINE_PROBE_INTERVAL_SECONDS"
REPORT_DIR_ENV = "PODCAST_PIPELINE_REPORT_DIR"
WEBHOOK_ENV = "PODCAST_PIPELINE_ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"
SLACK_CHANNEL_ENV = "SLACK_CHANNEL"
# Politeness: concurrent calls per Spotify account / per OP3 token (politeness.py).
SPOTIFY_CONCURRENCY_ENV = "PODCAST_PIPELINE_SPOTIFY_CONCURRENCY"
OP3_CONCURRENCY_ENV = "PODCAST_PIPELINE_OP3_CONCURRENCY"
NETWORK_FILE_ENV = "PODCAST_PIPELINE_NETWORK_FILE"  # the network of shows (network.py)
# The warehouse backend: the DuckDB file (DUCKDB_PATH) or DuckLake (a catalog database and a
# folder of Parquet files, which many processes and hosts write at once).
WAREHOUSE_ENV = "PODCAST_PIPELINE_WAREHOUSE"
WAREHOUSES = ("duckdb", "ducklake")
DUCKLAKE_CATALOG_ENV = "PODCAST_PIPELINE_DUCKLAKE_CATALOG"
DUCKLAKE_DATA_PATH_ENV = "PODCAST_PIPELINE_DUCKLAKE_DATA_PATH"
# The network mode across machines (deploy/): steps on Celery workers over this broker.
CELERY_BROKER_ENV = "PODCAST_PIPELINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "PODCAST_PIPELINE_CELERY_BACKEND"
# What one daily run of a network holds: a show, or the shows of one Spotify account (and OP3
# token): every run loads every show's definitions, so big networks want fewer runs.
DAILY_RUNS_ENV = "PODCAST_PIPELINE_DAILY_RUNS"
DAILY_RUNS = ("show", "account")
# The credential that says a source is in use.
CREDENTIAL_ENV = {"anchor": "ANCHOR_PW_S", "op3": "OP3_TOKEN"}

DEFAULT_DB_PATH = "data/podcast.duckdb"
DEFAULT_START_DATE = date(2025, 1, 1)
DEFAULT_LOOKBACK_DAYS = 3
DEFAULT_CRON = "0 6 * * *"  # 06:00 UTC: yesterday is complete on both services by then
DEFAULT_LOCK_TIMEOUT_SECONDS = 600.0
DEFAULT_PROBE_INTERVAL = 3600
MIN_PROBE_INTERVAL = 60

_WEBSTATION_ID = re.compile(r"^[0-9a-f]{6,12}$")
_SHOW_UUID = re.compile(r"^[0-9a-f]{32}$")


# ---------------------------------------------------------------------- per-API views
# (the field checks themselves live in validate.py)
@dataclass(frozen=True)
class AnchorSettings:
    """Spotify for Creators (Anchor): base URL, short hex web station id, ``anchorpw_s`` cookie."""

    webstation_id: str
    cookie: str = field(repr=False)
    base_url: str = ANCHOR_DEFAULT_BASE_URL
    # A network file's show key: the rows' show_id when it is not the web station id.
    key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "webstation_id", (self.webstation_id or "").strip())
        object.__setattr__(self, "cookie", (self.cookie or "").strip())
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

    def show_key(self) -> str:
        """The warehouse's key for the show (the GraphQL backend uses the same one if set)."""
        return self.key or self.webstation_id

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnchorSettings:
        return Settings.from_env(environ).anchor()


@dataclass(frozen=True)
class Op3Settings:
    """OP3: base URL, bearer token, show uuid and the optional redirect-logs URL prefix."""

    token: str = field(repr=False)
    show_uuid: str
    base_url: str = OP3_DEFAULT_BASE_URL
    url_prefix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", (self.token or "").strip())
        object.__setattr__(self, "show_uuid", (self.show_uuid or "").strip())
        object.__setattr__(self, "url_prefix", (self.url_prefix or "").strip() or None)
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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Op3Settings:
        return Settings.from_env(environ).op3()


# A libpq password, key=value form (quoted or not) or in a postgresql:// URI's user info.
_LIBPQ_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.I)
_URI_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@]*:)([^@]*)(@)")


@dataclass(frozen=True)
class LakeSettings:
    """The DuckLake warehouse: its catalog, PostgreSQL (a libpq string, ``dbname=... host=...``
    or ``postgresql://...``; optionally prefixed ``postgres:``) or an SQLite file (``sqlite:``
    and its path, or a path ending in .sqlite/.sqlite3/.db), and the folder its data files
    go into, shared by every writer. The catalog is a secret when it holds a password: it
    is registered for redaction, and :meth:`label` is what messages show."""

    catalog: str = field(repr=False)
    data_path: str

    def __post_init__(self) -> None:
        text = (self.catalog or "").strip()
        if not text:
            raise ConfigError(DUCKLAKE_CATALOG_ENV, "is not set",
                              f"With {WAREHOUSE_ENV}=ducklake, set it to the catalog's libpq "
                              "string (e.g. 'dbname=ducklake host=db user=pipeline', the "
                              "password in PGPASSWORD or ~/.pgpass) or an SQLite file "
                              "(sqlite:data/lake.sqlite, one host only)")
        object.__setattr__(self, "catalog", text)
        for match in _LIBPQ_PASSWORD.finditer(text):
            register_secret(match.group(2).strip("'"))
        uri = _URI_PASSWORD.match(text.removeprefix("postgres:"))
        if uri:
            register_secret(uri.group(2))
        if self.kind == "sqlite" and not self.spec.strip():
            raise ConfigError(DUCKLAKE_CATALOG_ENV, "names no SQLite file",
                              "Write it as sqlite:<path>, e.g. sqlite:data/lake.sqlite")
        if self.kind == "sqlite":
            object.__setattr__(self, "catalog",
                               "sqlite:" + str(Path(self.spec).expanduser().resolve()))
        data = (self.data_path or "").strip()
        if not data:
            raise ConfigError(DUCKLAKE_DATA_PATH_ENV, "is not set",
                              f"With {WAREHOUSE_ENV}=ducklake, set it to the folder every "
                              "writer shares for the data files, e.g. /shared/lake")
        if "://" in data:
            raise ConfigError(DUCKLAKE_DATA_PATH_ENV, f"is a URL ({data!r})",
                              "Set it to a folder every host mounts (object storage is not "
                              "supported yet)")
        object.__setattr__(self, "data_path", str(Path(data).expanduser().resolve()))

    @property
    def kind(self) -> str:
        """``postgres`` or ``sqlite``."""
        text = self.catalog
        if text.startswith("sqlite:"):
            return "sqlite"
        if (text.startswith(("postgres:", "postgresql:")) or "=" in text):
            return "postgres"
        if text.lower().endswith((".sqlite", ".sqlite3", ".db")):
            return "sqlite"
        raise ConfigError(DUCKLAKE_CATALOG_ENV, "is neither a libpq string nor an SQLite file",
                          "Use e.g. 'dbname=ducklake host=db user=pipeline' (PostgreSQL) or "
                          "sqlite:data/lake.sqlite")

    @property
    def spec(self) -> str:
        """The catalog without its kind prefix: what DuckLake's ``ATTACH`` takes after it."""
        text = self.catalog
        if text.startswith("sqlite:"):
            return text.removeprefix("sqlite:")
        if text.startswith("postgres:") and not text.startswith("postgres://"):
            return text.removeprefix("postgres:")
        return text

    def label(self) -> str:
        """The catalog and folder for messages, any password masked."""
        shown = _URI_PASSWORD.sub(r"\1***\3", _LIBPQ_PASSWORD.sub(r"\1***", self.spec))
        return f"DuckLake (catalog {self.kind} {shown}; data {self.data_path})"


_SHOW_ID = re.compile(r"^[0-9A-Za-z]{22}$")


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
    key: str | None = None  # a network file's show key: the rows' show_id, first of all

    def __post_init__(self) -> None:
        object.__setattr__(self, "sp_dc", (self.sp_dc or "").strip())
        object.__setattr__(self, "sp_key", (self.sp_key or "").strip() or None)
        object.__setattr__(self, "webstation_id", (self.webstation_id or "").strip() or None)
        for attr, var in (("accounts_url", "SPOTIFY_ACCOUNTS_URL"),
                          ("graphql_url", "SPOTIFY_GRAPHQL_URL"),
                          ("legacy_url", "SPOTIFY_LEGACY_API_URL")):
            object.__setattr__(self, attr, validate.base_url(var, getattr(self, attr)))
        validate.secret("SPOTIFY_SP_DC", self.sp_dc)
        if self.sp_key:
            validate.secret("SPOTIFY_SP_KEY", self.sp_key)
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
            validate.emulator_guard("SPOTIFY_SP_DC", self.sp_dc, var, url)
        if self.show_uri is not None:
            object.__setattr__(self, "show_uri", show_uri(self.show_uri))
        if self.webstation_id and not _WEBSTATION_ID.match(self.webstation_id):
            raise ConfigError("ANCHOR_WEBSTATION_ID", f"is not a short hex id "
                              f"({self.webstation_id!r})",
                              "Use the 6-12 lowercase hex characters from your podcast's URL, "
                              "or unset it")
        register_secret(self.sp_dc)
        register_secret(self.sp_key)

    def show_key(self) -> str:
        """The warehouse's key for the show, known before any request: ANCHOR_WEBSTATION_ID
        (shared with the REST backend's rows), else the id of SPOTIFY_SHOW_URI; in a network
        file, the show's key."""
        if self.key:
            return self.key
        if self.webstation_id:
            return self.webstation_id
        if self.show_uri:
            return self.show_uri.rsplit(":", 1)[1]
        raise ConfigError("ANCHOR_WEBSTATION_ID", "is not set (nor SPOTIFY_SHOW_URI)",
                          "With the GraphQL backend, set ANCHOR_WEBSTATION_ID (the short hex "
                          "id in your dashboard URL) so the warehouse knows the show before "
                          "asking Spotify, and REST and GraphQL rows of one show share a key; "
                          "or set SPOTIFY_SHOW_URI")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpotifySettings:
        return Settings.from_env(environ).spotify()


def spotify_backend(environ: Mapping[str, str] | None = None) -> str:
    """Which Spotify for Creators backend ``environ`` (default: the process's) selects."""
    return Settings.from_env(environ).spotify_backend_name()


# ---------------------------------------------------------------------- the model
def _refuse_retired(environ: Mapping[str, str]) -> None:
    """A retired variable still set would silently stop meaning what its user wanted."""
    if (environ.get(RETIRED_REQUESTS_PER_STEP_ENV) or "").strip():
        raise ConfigError(RETIRED_REQUESTS_PER_STEP_ENV, "is no longer used",
                          f"Remove it; set {SPOTIFY_CONCURRENCY_ENV} (calls at once per Spotify "
                          f"account, default 1) and {OP3_CONCURRENCY_ENV} (per OP3 token, "
                          "default 4) instead")


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


class Settings(BaseSettings):
    """Every setting, by the environment variable that sets it (see ``.env.example``)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True,
                                      hide_input_in_errors=True)

    # Spotify for Creators (Anchor)
    anchor_base_url: str = Field(ANCHOR_DEFAULT_BASE_URL, validation_alias="ANCHOR_BASE_URL")
    anchor_webstation_id: str | None = Field(None, validation_alias="ANCHOR_WEBSTATION_ID")
    anchor_cookie: SecretStr | None = Field(None, validation_alias="ANCHOR_PW_S")
    # Spotify for Creators over GraphQL (the dashboard's backend since 2026)
    spotify_backend: str = Field("auto", validation_alias=BACKEND_ENV)
    spotify_sp_dc: SecretStr | None = Field(None, validation_alias="SPOTIFY_SP_DC")
    spotify_sp_key: SecretStr | None = Field(None, validation_alias="SPOTIFY_SP_KEY")
    spotify_show_uri: str | None = Field(None, validation_alias="SPOTIFY_SHOW_URI")
    spotify_accounts_url: str = Field(SPOTIFY_DEFAULT_ACCOUNTS_URL,
                                      validation_alias="SPOTIFY_ACCOUNTS_URL")
    spotify_graphql_url: str = Field(SPOTIFY_DEFAULT_GRAPHQL_URL,
                                     validation_alias="SPOTIFY_GRAPHQL_URL")
    spotify_legacy_api_url: str = Field(SPOTIFY_DEFAULT_LEGACY_API_URL,
                                        validation_alias="SPOTIFY_LEGACY_API_URL")
    # OP3
    op3_base_url: str = Field(OP3_DEFAULT_BASE_URL, validation_alias="OP3_BASE_URL")
    op3_token: SecretStr | None = Field(None, validation_alias="OP3_TOKEN")
    op3_show_uuid: str | None = Field(None, validation_alias="OP3_SHOW_UUID")
    op3_url_prefix: str | None = Field(None, validation_alias="OP3_URL_PREFIX")
    # Many shows: the YAML file listing them (None: the variables above are a network of one)
    network_file: str | None = Field(None, validation_alias=NETWORK_FILE_ENV)
    # Steps on Celery workers (None: in this process's own subprocesses, as always)
    celery_broker: str | None = Field(None, validation_alias=CELERY_BROKER_ENV)
    celery_backend: str | None = Field(None, validation_alias=CELERY_BACKEND_ENV)
    daily_runs: str = Field("show", validation_alias=DAILY_RUNS_ENV)
    # Warehouse, partitions, schedule
    duckdb_path: str = Field(DEFAULT_DB_PATH, validation_alias=DUCKDB_PATH_ENV)
    warehouse: str = Field("duckdb", validation_alias=WAREHOUSE_ENV)
    ducklake_catalog: SecretStr | None = Field(None, validation_alias=DUCKLAKE_CATALOG_ENV)
    ducklake_data_path: str | None = Field(None, validation_alias=DUCKLAKE_DATA_PATH_ENV)
    db_lock_timeout_seconds: float = Field(DEFAULT_LOCK_TIMEOUT_SECONDS,
                                           validation_alias=LOCK_TIMEOUT_ENV)
    start_date: date = Field(DEFAULT_START_DATE, validation_alias=START_DATE_ENV)
    lookback_days: int = Field(DEFAULT_LOOKBACK_DAYS, validation_alias=LOOKBACK_ENV)
    schedule_cron: str = Field(DEFAULT_CRON, validation_alias=CRON_ENV)
    # Bounds on what an API answer may cost (http.Limits) and the replace guard
    request_deadline_seconds: float = Field(Limits.deadline, validation_alias=DEADLINE_ENV)
    max_body_mb: float = Field(Limits.max_body_bytes / 2**20, validation_alias=MAX_BODY_ENV)
    max_json_depth: int = Field(Limits.max_json_depth, validation_alias=MAX_JSON_DEPTH_ENV)
    max_retry_wait_seconds: float = Field(Limits.max_retry_wait,
                                          validation_alias=MAX_RETRY_WAIT_ENV)
    max_rows_per_day: int = Field(Limits.max_rows_per_day, validation_alias=MAX_ROWS_PER_DAY_ENV)
    max_episodes: int = Field(Limits.max_episodes, validation_alias=MAX_EPISODES_ENV)
    max_shrink_fraction: float = Field(DEFAULT_MAX_SHRINK, validation_alias=SHRINK_ENV)
    # At most this many concurrent calls per Spotify account (anchor/* and spotify/* of all
    # its shows) and per OP3 token, across all runs, also for a network of one: one step per
    # credential at a time (its pool), this many requests in flight in it (politeness.py).
    # Spotify 1: retrying and parallelising against a cookie account is how accounts get
    # flagged. OP3 4: a public API with bearer tokens (no login to lose), and the 4
    # connections issue 11's year backfill and floor are measured with.
    spotify_concurrency: int = Field(1, validation_alias=SPOTIFY_CONCURRENCY_ENV)
    op3_concurrency: int = Field(4, validation_alias=OP3_CONCURRENCY_ENV)
    # The report's folder (None: <database name>-report beside the database)
    report_dir: str | None = Field(None, validation_alias=REPORT_DIR_ENV)
    # Alerts
    probe_interval_seconds: int = Field(DEFAULT_PROBE_INTERVAL, validation_alias=PROBE_INTERVAL_ENV)
    alert_webhook_url: SecretStr | None = Field(None, validation_alias=WEBHOOK_ENV)
    slack_bot_token: SecretStr | None = Field(None, validation_alias=SLACK_TOKEN_ENV)
    slack_channel: str | None = Field(None, validation_alias=SLACK_CHANNEL_ENV)

    @classmethod
    def load(cls) -> Settings:
        """From this process's environment (what ``dagster dev`` set from ``.env``)."""
        _refuse_retired(os.environ)
        return cls()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """From ``environ`` only (the process environment when None)."""
        if environ is None:
            return cls.load()
        _refuse_retired(environ)
        # Every field given (None when absent), so nothing is taken from os.environ.
        return cls(**{alias: environ.get(alias) for alias in cls.variables().values()})

    @classmethod
    def variables(cls) -> dict[str, str]:
        """field name → the environment variable that sets it."""
        return {name: str(f.validation_alias) for name, f in cls.model_fields.items()}

    # Blank means unset, as in a .env line "OP3_URL_PREFIX=": the default applies.
    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()
                if v is not None and not (isinstance(v, str) and not v.strip())}

    @model_validator(mode="after")
    def _celery_pair(self) -> Settings:
        if (self.celery_broker is None) != (self.celery_backend is None):
            raise ConfigError(CELERY_BACKEND_ENV if self.celery_backend is None
                              else CELERY_BROKER_ENV, "is not set",
                              f"Set both {CELERY_BROKER_ENV} and {CELERY_BACKEND_ENV} (e.g. "
                              "redis://redis:6379/0 and redis://redis:6379/1), or neither.")
        return self

    @model_validator(mode="after")
    def _warehouse(self) -> Settings:
        self.warehouse_target()  # a bad backend or DuckLake setting stops the load, named
        return self

    @field_validator("start_date", mode="before")
    @classmethod
    def _start_date(cls, value: Any) -> Any:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(START_DATE_ENV, f"is {value!r}, not a date",
                              "Use the form YYYY-MM-DD, e.g. 2025-01-01.") from None

    @field_validator("lookback_days", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> Any:
        if isinstance(value, int) and value >= 0 or isinstance(value, str) and value.isdigit():
            return int(value)
        raise ConfigError(LOOKBACK_ENV, f"is {value!r}, not a whole number of days",
                          f"Set it to e.g. {DEFAULT_LOOKBACK_DAYS}, or unset it")

    @field_validator("probe_interval_seconds", mode="before")
    @classmethod
    def _probe_interval(cls, value: Any) -> Any:
        if str(value).isdigit() and int(value) >= MIN_PROBE_INTERVAL:
            return int(value)
        raise ConfigError(PROBE_INTERVAL_ENV, f"is {value!r}, not a whole number of seconds "
                          f">= {MIN_PROBE_INTERVAL}", "Set it to e.g. 3600 (hourly), or unset it")

    @field_validator("db_lock_timeout_seconds", mode="before")
    @classmethod
    def _lock_timeout(cls, value: Any) -> Any:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if not 0 < seconds < math.inf:
            raise ConfigError(LOCK_TIMEOUT_ENV, f"is {value!r}, not a positive number of seconds",
                              f"Set it to e.g. {DEFAULT_LOCK_TIMEOUT_SECONDS:.0f}, or unset it.")
        return seconds

    @field_validator("request_deadline_seconds", "max_body_mb", "max_json_depth",
                     "max_retry_wait_seconds", "max_rows_per_day", "max_episodes",
                     "spotify_concurrency", "op3_concurrency",
                     mode="before")
    @classmethod
    def _positive(cls, value: Any, info: ValidationInfo) -> Any:
        field_ = cls.model_fields[str(info.field_name)]
        number = validate.positive_number(str(field_.validation_alias), str(value),
                                          float(field_.default))
        return int(number) if field_.annotation in (int, "int") else number

    @field_validator("daily_runs", mode="before")
    @classmethod
    def _daily_runs(cls, value: Any) -> Any:
        choice = str(value).strip().lower()
        if choice not in DAILY_RUNS:
            raise ConfigError(DAILY_RUNS_ENV, f"is {value!r}, not one of {', '.join(DAILY_RUNS)}",
                              "Unset it for a run per show, or set account for a run per "
                              "Spotify account and OP3 token")
        return choice

    @field_validator("max_shrink_fraction", mode="before")
    @classmethod
    def _shrink(cls, value: Any) -> Any:
        return validate.fraction(SHRINK_ENV, str(value), DEFAULT_MAX_SHRINK)

    # ---- views
    def warehouse_target(self) -> str | LakeSettings:
        """The one place that decides the warehouse backend: the DuckDB file's path, or the
        DuckLake catalog and data folder (``warehouse.connect`` / ``warehouse.reader`` open
        either)."""
        choice = (self.warehouse or "duckdb").lower()
        if choice not in WAREHOUSES:
            raise ConfigError(WAREHOUSE_ENV, f"is {choice!r}, not one of {', '.join(WAREHOUSES)}",
                              "Unset it for the DuckDB file (DUCKDB_PATH), or set ducklake with "
                              f"{DUCKLAKE_CATALOG_ENV} and {DUCKLAKE_DATA_PATH_ENV}")
        if choice == "duckdb":
            return self.duckdb_path
        return LakeSettings(catalog=_reveal(self.ducklake_catalog),
                            data_path=self.ducklake_data_path or "")

    def limits(self) -> Limits:
        return Limits(deadline=self.request_deadline_seconds,
                      max_body_bytes=int(self.max_body_mb * 2**20),
                      max_json_depth=self.max_json_depth,
                      max_retry_wait=self.max_retry_wait_seconds,
                      max_rows_per_day=self.max_rows_per_day, max_episodes=self.max_episodes)

    def anchor(self) -> AnchorSettings:
        """The validated Anchor settings; ConfigError names what is missing or malformed."""
        return AnchorSettings(webstation_id=self.anchor_webstation_id or "",
                              cookie=_reveal(self.anchor_cookie), base_url=self.anchor_base_url)

    def spotify(self) -> SpotifySettings:
        """The validated GraphQL-backend settings; ConfigError names what is wrong."""
        return SpotifySettings(
            sp_dc=_reveal(self.spotify_sp_dc), sp_key=_reveal(self.spotify_sp_key) or None,
            show_uri=self.spotify_show_uri, webstation_id=self.anchor_webstation_id,
            accounts_url=self.spotify_accounts_url, graphql_url=self.spotify_graphql_url,
            legacy_url=self.spotify_legacy_api_url)

    def spotify_backend_name(self) -> str:
        """``graphql`` or ``rest``: SPOTIFY_BACKEND if set, else GraphQL when SPOTIFY_SP_DC is
        set (the API the dashboard uses today), else REST (whose "ANCHOR_PW_S is not set"
        names both ways to configure it)."""
        choice = (self.spotify_backend or "auto").lower()
        if choice not in BACKENDS:
            raise ConfigError(BACKEND_ENV, f"is {choice!r}, not one of {', '.join(BACKENDS)}",
                              "Set it to graphql (cookies sp_dc/sp_key) or rest (cookie "
                              "anchorpw_s), or unset it to choose by which credential is set")
        if choice != "auto":
            return choice
        return "graphql" if self.spotify_sp_dc is not None else "rest"

    def spotify_view(self) -> AnchorSettings | SpotifySettings:
        """The Spotify for Creators settings of the selected backend."""
        return self.spotify() if self.spotify_backend_name() == "graphql" else self.anchor()

    def op3(self) -> Op3Settings:
        return Op3Settings(token=_reveal(self.op3_token), show_uuid=self.op3_show_uuid or "",
                           base_url=self.op3_base_url, url_prefix=self.op3_url_prefix)

    def configured_apis(self) -> set[str]:
        """The sources whose credential is set (malformed ones included: their runs say why)."""
        apis = {api for api, secret in (("anchor", self.anchor_cookie),
                                        ("anchor", self.spotify_sp_dc), ("op3", self.op3_token))
                if secret is not None}
        try:
            if "anchor" in apis and self.spotify_backend_name() == "graphql":
                apis.add("spotify")  # the GraphQL-only tables, same credential as anchor.*
        except ConfigError:
            pass  # a bad SPOTIFY_BACKEND: the anchor runs report it
        return apis
