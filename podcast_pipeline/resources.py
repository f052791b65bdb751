"""Dagster resources: thin, configurable holders of the plain-Python clients.

Every field is optional: unset fields fall back to the environment at run time, so
definitions load with no credential set and a missing one fails only the steps that
need it, with a message naming the variable (see ``settings.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.http import CallStats, Recorder, RetryPolicy
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.settings import AnchorSettings, Op3Settings


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


class AnchorResource(_ApiResource):
    """Spotify for Creators (Anchor) analytics client configuration."""

    base_url: str | None = None
    webstation_id: str | None = None
    cookie: str | None = None

    def settings(self) -> AnchorSettings:
        return AnchorSettings.from_env(self._environ({
            "ANCHOR_BASE_URL": self.base_url, "ANCHOR_WEBSTATION_ID": self.webstation_id,
            "ANCHOR_PW_S": self.cookie,
        }))

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None) -> AnchorClient:
        return AnchorClient(self.settings(), retry=self.retry_policy(), recorder=recorder, stats=stats)


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

    def client(self, recorder: Recorder | None = None, stats: CallStats | None = None) -> Op3Client:
        return Op3Client(self.settings(), retry=self.retry_policy(), recorder=recorder, stats=stats)


class WarehouseResource(DuckDBResource):
    """``DuckDBResource`` plus the project's serialised, lock-tolerant writer."""

    lock_timeout_seconds: float = 600.0

    @contextmanager
    def writer(self, on_wait=None) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.write_lock(self.database, self.lock_timeout_seconds, on_wait):
            with warehouse.connect(self.database, timeout=self.lock_timeout_seconds,
                                   on_wait=on_wait) as con:
                warehouse.ensure_schema(con)
                yield con
