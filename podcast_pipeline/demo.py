"""The demo: every asset for the last N days, against the in-process emulator, into DuckDB.

It runs the very run requests the daily schedule emits (with the look-back widened
to N days) through Dagster's own execution, then prints a summary read back with SQL.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
import duckdb

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.tables import ALL_TABLES

DEMO_DB = "data/demo.duckdb"
ENV_KEYS = ("ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL",
            "OP3_TOKEN", "OP3_SHOW_UUID", "OP3_URL_PREFIX")  # the REST backend + OP3
# The GraphQL backend + OP3; ANCHOR_WEBSTATION_ID keys its rows like the REST backend's.
GRAPHQL_ENV_KEYS = ("ANCHOR_WEBSTATION_ID", "SPOTIFY_SP_DC", "SPOTIFY_SP_KEY",
                    "SPOTIFY_ACCOUNTS_URL", "SPOTIFY_GRAPHQL_URL", "SPOTIFY_LEGACY_API_URL",
                    "OP3_BASE_URL", "OP3_TOKEN", "OP3_SHOW_UUID", "OP3_URL_PREFIX")
BACKENDS = ("graphql", "rest")


def emulator_env(emu: Emulator, backend: str = "graphql") -> dict[str, str]:
    """The environment that points the pipeline at ``emu`` with one Spotify backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    keys = GRAPHQL_ENV_KEYS if backend == "graphql" else ENV_KEYS
    return {**{k: v for k, v in emu.all_env.items() if k in keys}, "SPOTIFY_BACKEND": backend}


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failed_steps: list[str] = field(default_factory=list)
    partitions: str = ""
    failed_assets: list[dg.AssetKey] = field(default_factory=list)
    requests: int = 0  # HTTP requests of the materialized steps (their metadata)
    retries: int = 0  # client retries of 429/5xx/connection errors (their metadata)
    malformed_refetches: int = 0  # bodies fetched again because they were malformed
    step_retries: int = 0  # steps Dagster retried under the assets' RetryPolicy


@contextmanager
def patched_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def instance_for_demo() -> dg.DagsterInstance:
    """The user's instance when DAGSTER_HOME is set (run history kept), else a throwaway one."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()  # its temporary folder is removed again, unlike mkdtemp


def run_requests_for(days: int, now: datetime) -> list[dg.RunRequest]:
    """The schedule's own run requests for ``now``, with the look-back set to cover ``days``."""
    from podcast_pipeline.schedules import daily_refresh_schedule

    with patched_env({"PODCAST_PIPELINE_LOOKBACK_DAYS": str(max(days - 1, 0))}):
        context = dg.build_schedule_context(scheduled_execution_time=now)
        return list(daily_refresh_schedule(context))


def execute(defs: dg.Definitions, request: dg.RunRequest, instance: dg.DagsterInstance,
            *, log_level: str = "INFO", resources: dict[str, Any] | None = None,
            assets: Sequence[dg.AssetKey] | None = None,
            extra_tags: dict[str, str] | None = None) -> RunOutcome:
    """Run ``request`` in process; ``assets`` narrows it (a re-run of failed steps) and
    ``resources`` is run config for the resources (e.g. a shorter retry backoff)."""
    job = defs.resolve_job_def("daily_refresh")
    tags = {**request.tags, **(extra_tags or {})}
    selection = list(assets if assets is not None else request.asset_selection or [])
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if resources:
        run_config["resources"] = {k: {"config": v} for k, v in resources.items()}
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=selection,
        tags=tags,
        raise_on_error=False,
        run_config=run_config,
    )
    failed = [e.step_key for e in result.all_events if e.is_step_failure and e.step_key]
    by_step = {"__".join(k.path): k for k in selection}  # an asset's step key is its op name
    span = request.partition_key or (
        f"{tags.get('dagster/asset_partition_range_start')}..{tags.get('dagster/asset_partition_range_end')}")
    outcome = RunOutcome(result.run_id, result.success, failed, span,
                         failed_assets=[by_step[s] for s in failed if s in by_step])
    counted: set[str | None] = set()
    for event in result.all_events:
        if event.is_step_up_for_retry:
            outcome.step_retries += 1
        elif event.is_step_materialization and event.step_key not in counted:
            counted.add(event.step_key)  # a range step repeats its metadata per partition
            meta = event.materialization.metadata
            outcome.requests += _int(meta.get("requests"))
            outcome.retries += _int(meta.get("retries"))
            outcome.malformed_refetches += _int(meta.get("malformed_refetches"))
    return outcome


def _int(value: Any) -> int:
    return int(getattr(value, "value", value) or 0)


def summarize(db_path: str, out: TextIO = sys.stdout) -> None:
    con = duckdb.connect(db_path, read_only=True)
    try:
        print("\nRows per table", file=out)
        for table in ALL_TABLES:
            (n,) = con.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()
            days = con.execute(
                f"SELECT count(DISTINCT partition_date) FROM {table.qualified}").fetchone()[0]
            print(f"  {table.qualified:<42} {n:>8} rows  {days:>3} partitions", file=out)
        print("\nLast 7 days (UTC)          anchor plays   op3 downloads", file=out)
        rows = con.execute(
            """
            WITH d AS (SELECT DISTINCT partition_date AS day FROM anchor.plays
                       UNION SELECT DISTINCT partition_date FROM op3.downloads)
            SELECT day,
                   (SELECT sum(plays) FROM anchor.plays p WHERE p.date = d.day),
                   (SELECT count(*) FROM op3.downloads o WHERE o.date = d.day)
            FROM d ORDER BY day DESC LIMIT 7
            """
        ).fetchall()
        for day, plays, downloads in reversed(rows):
            print(f"  {day}             {plays if plays is not None else '-':>8}   {downloads:>12}",
                  file=out)
    finally:
        con.close()


def run_demo(days: int = 30, database: str = DEMO_DB, *, seed: int = 7, faults: Faults | None = None,
             out: TextIO = sys.stdout, quiet: bool = False,
             backend: str = "graphql") -> list[RunOutcome]:
    """Materialize every asset for the last ``days`` days against the emulator into ``database``."""
    from podcast_pipeline.definitions import build_definitions

    if days < 1:
        raise SystemExit("--days must be at least 1")
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    config = EmulatorConfig(seed=seed)
    with Emulator(config, faults=faults or Faults()) as emu:
        env = emulator_env(emu, backend)
        env["DUCKDB_PATH"] = database
        with patched_env(env):
            defs = build_definitions()
            instance = instance_for_demo()
            print(f"Emulator on {emu.url} (Spotify backend: {backend}); database {database}; "
                  f"{days} days up to "
                  f"{(now - timedelta(days=1)).date()} (UTC)", file=out)
            outcomes = []
            for request in run_requests_for(days, now):
                names = ", ".join(k.to_user_string() for k in (request.asset_selection or []))
                print(f"\n▶ run for {request.partition_key or 'range'}: {names}", file=out)
                outcomes.append(execute(defs, request, instance,
                                        log_level="WARNING" if quiet else "INFO"))
    for o in outcomes:
        status = "ok" if o.success else f"FAILED steps: {', '.join(o.failed_steps)}"
        print(f"run {o.run_id[:8]} {o.partitions}: {status}", file=out)
    summarize(database, out)
    return outcomes
