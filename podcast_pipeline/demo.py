"""The demo: every asset for the last N days, against the in-process emulator, into DuckDB.

It runs the very run requests the daily schedule emits (with the look-back widened
to N days) through Dagster's own execution, then prints a summary read back with SQL.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import dagster as dg

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.summary import print_summary

DEMO_DB = "data/demo.duckdb"
ENV_KEYS = ("ANCHOR_BASE_URL", "ANCHOR_WEBSTATION_ID", "ANCHOR_PW_S", "OP3_BASE_URL",
            "OP3_TOKEN", "OP3_SHOW_UUID", "OP3_URL_PREFIX")  # the REST backend + OP3
# The GraphQL backend + OP3; ANCHOR_WEBSTATION_ID keys its rows like the REST backend's.
GRAPHQL_ENV_KEYS = ("ANCHOR_WEBSTATION_ID", "SPOTIFY_SP_DC", "SPOTIFY_SP_KEY", "SPOTIFY_SHOW_URI",
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
    from podcast_pipeline.schedules import build_daily_refresh_schedule
    from podcast_pipeline.settings import Settings

    settings = Settings.load().model_copy(update={"lookback_days": max(days - 1, 0)})
    context = dg.build_schedule_context(scheduled_execution_time=now)
    return list(build_daily_refresh_schedule(settings)(context))


def execute(defs: dg.Definitions, request: dg.RunRequest, instance: dg.DagsterInstance,
            *, log_level: str = "INFO", resources: dict[str, Any] | None = None,
            assets: Sequence[dg.AssetKey] | None = None,
            extra_tags: dict[str, str] | None = None, progress: TextIO | None = None) -> RunOutcome:
    """Run ``request`` in process; ``assets`` narrows it (a re-run of failed steps),
    ``resources`` is run config for the resources (e.g. a shorter retry backoff) and
    ``progress`` gets one line per asset as its step ends."""
    job = defs.resolve_job_def("daily_refresh")
    if request.asset_selection:
        # The job of just this request's assets (one show's): execute_in_process records the
        # snapshot of the job it subsets, which for the whole network's job is seconds per run
        # and grows with the shows (7 s a run at 100 shows, against 1.4 s this way).
        job = job.get_subset(asset_selection=frozenset(request.asset_selection) | set(assets or ()))
    run_id = str(uuid.uuid4())
    if progress is not None:
        instance.add_event_listener(run_id, Progress(progress))
    tags = {**request.tags, **(extra_tags or {})}
    selection = list(assets if assets is not None else request.asset_selection or [])
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if resources:  # run config replaces a resource's config whole: start from the code's
        run_config["resources"] = {k: {"config": {**_code_config(defs, k), **v}}
                                   for k, v in resources.items()}
    result = job.execute_in_process(
        run_id=run_id,
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
            counted.add(event.step_key)  # a range step repeats its run's metadata per partition
            meta = event.materialization.metadata
            # A window's total; "requests" of one partition counts what covered that day.
            outcome.requests += _int(meta.get("window_requests", meta.get("requests")))
            outcome.retries += _int(meta.get("retries"))
            outcome.malformed_refetches += _int(meta.get("malformed_refetches"))
    return outcome


def execute_analytics(defs: dg.Definitions, instance: dg.DagsterInstance, *,
                      log_level: str = "INFO", progress: TextIO | None = None) -> RunOutcome:
    """The analytics models and the report, in process (under ``dagster dev`` the automation
    sensor starts these by itself once their inputs changed)."""
    run_id = str(uuid.uuid4())
    if progress is not None:
        instance.add_event_listener(run_id, Progress(progress))
    result = defs.resolve_job_def("analytics").execute_in_process(
        run_id=run_id, instance=instance, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
    failed = [e.step_key for e in result.all_events if e.is_step_failure and e.step_key]
    return RunOutcome(result.run_id, result.success, failed, "analytics")


def _code_config(defs: dg.Definitions, key: str) -> dict[str, Any]:
    """The config the definitions built a resource with (an EnvVar as ``{"env": NAME}``)."""
    schema = defs.resources[key].get_resource_definition().config_schema
    return dict(schema.as_field().default_value)


def _int(value: Any) -> int:
    return int(getattr(value, "value", value) or 0)


class Progress:
    """An event listener printing one line per asset when its step succeeds, fails or is
    retried: what the demo shows instead of Dagster's own log."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started: dict[str, float] = {}
        self.partitions: dict[str, int] = {}
        self.window_rows: dict[str, int] = {}  # a window's total, stated on each partition
        self.partition_rows: dict[str, int] = {}  # per-partition counts, to be added up
        self.asset: dict[str, str] = {}
        self.checks: dict[str, list[tuple[str, bool]]] = {}  # check step -> (name, passed)

    def __call__(self, entry: Any) -> None:
        event = entry.dagster_event
        step = event.step_key if event is not None else None
        if event is None or step is None:
            return
        if event.is_step_start:
            self.started[step] = entry.timestamp
        elif event.is_step_materialization:
            self.asset[step] = event.asset_key.to_user_string()
            self.partitions[step] = self.partitions.get(step, 0) + 1
            meta = event.materialization.metadata
            if "window_rows" in meta:
                self.window_rows[step] = _int(meta["window_rows"])
            elif "dagster/row_count" in meta:
                self.partition_rows[step] = self.partition_rows.get(step, 0) + _int(
                    meta["dagster/row_count"])
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            self.asset.setdefault(step, f"{evaluation.asset_key.to_user_string()}: checks")
            self.checks.setdefault(step, []).append((evaluation.check_name, evaluation.passed))
        elif event.is_step_success and step in self.checks and step not in self.partitions:
            failed = [name for name, passed in self.checks[step] if not passed]
            n = len(self.checks[step])
            self._line("✓" if not failed else "!", step,
                       f"{n} passed" if not failed else f"warning: {', '.join(failed)} failed")
        elif event.is_step_success:
            rows = self.window_rows.get(step, self.partition_rows.get(step))
            days = self.partitions.get(step, 0)
            what = f"{_plural(rows, 'row') if rows is not None else '?'}"
            if days > 1:
                what += f" over {days} days"
            took = entry.timestamp - self.started.get(step, entry.timestamp)
            self._line("✓", step, f"{what:<26} {took:5.1f} s")
        elif event.is_step_failure:
            error = event.step_failure_data.error if event.step_failure_data else None
            message = (error.message if error else "failed").strip().splitlines()[0]
            failed = [name for name, passed in self.checks.get(step, []) if not passed]
            if failed and step not in self.partitions:  # a check step: name the blocking check
                message = f"{', '.join(failed)} failed (blocking)"
            self._line("✗", step, f"FAILED: {message}")
        elif event.is_step_up_for_retry:
            self._line("↻", step, "failed, Dagster retries it")

    def _line(self, mark: str, step: str, text: str) -> None:
        name = self.asset.get(step, step.replace("__", "/"))
        print(f"  {mark} {name:<42} {text}", file=self.out, flush=True)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summarize(db_path: str, out: TextIO = sys.stdout) -> None:
    print_summary(db_path, out)


def network_file_for(database: str) -> Path:
    """Where a demo network's file goes: beside the database (data/demo-network.yaml)."""
    path = Path(database).expanduser()
    return path.with_name(f"{path.stem}-network.yaml")


PLANNED_SUBSET_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def run_demo(days: int = 30, database: str = DEMO_DB, *, seed: int = 7, faults: Faults | None = None,
             out: TextIO = sys.stdout, verbose: bool = False,
             broken_fraction: str | None = None, backend: str = "graphql",
             shows: int = 1, accounts: int = 1) -> list[RunOutcome]:
    """Materialize every asset for the last ``days`` days against the emulator into ``database``,
    printing a line per asset, then the summary. ``verbose`` adds Dagster's INFO log;
    ``backend`` is the Spotify backend the emulator is read with (graphql or rest);
    ``shows`` over ``accounts``: an emulated network, configured by a network file written
    beside the database (one show: the single-show variables, as always)."""
    from podcast_pipeline.definitions import build_definitions

    if days < 1:
        raise SystemExit("--days must be at least 1")
    if not 1 <= accounts <= shows:
        raise SystemExit("--shows and --accounts must be at least 1, and --accounts at most "
                         "--shows (every account owns a show)")
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    config = EmulatorConfig(seed=seed, broken_fraction=broken_fraction)
    began = time.monotonic()
    with Emulator(config, faults=faults or Faults(), shows=shows, accounts=accounts) as emu:
        env = emulator_env(emu, backend)
        env["DUCKDB_PATH"] = database
        env["PODCAST_PIPELINE_WAREHOUSE"] = "duckdb"  # the file named above, whatever .env says
        # Dagster's opt-in the README gives for ranged runs: one planned event per asset of a
        # range, not one per day (1,250 fewer SQLite writes in a 40-day demo, 70 s -> 57 s).
        env[PLANNED_SUBSET_ENV] = os.environ.get(PLANNED_SUBSET_ENV, "true")
        network = ""
        if shows > 1 or accounts > 1:
            env |= emu.network_env(network_file_for(database), backend)
            network = (f"; {shows} shows on {accounts} accounts, network file "
                       f"{env['PODCAST_PIPELINE_NETWORK_FILE']}")
        with patched_env(env):
            defs = build_definitions()
            instance = instance_for_demo()
            print(f"Emulator on {emu.url} (Spotify backend: {backend}{network}); writing {database}; {days} days up to "
                  f"{(now - timedelta(days=1)).date()} (UTC)", file=out, flush=True)
            outcomes = []
            for request in run_requests_for(days, now):
                print(f"\n{_describe(request)}", file=out, flush=True)
                outcomes.append(execute(defs, request, instance, progress=out,
                                        log_level="INFO" if verbose else "CRITICAL"))
            print("\nThe analytics models and the report:", file=out, flush=True)
            outcomes.append(execute_analytics(defs, instance, progress=out,
                                              log_level="INFO" if verbose else "CRITICAL"))
    failed = [o for o in outcomes if not o.success]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} runs succeeded in "
          f"{time.monotonic() - began:.0f} s" + "".join(
              f"; run {o.run_id[:8]} ({o.partitions}) failed: {', '.join(o.failed_steps)}"
              for o in failed), file=out)
    print(f"\nThe summary, read back from {database} with SQL:\n", file=out)
    summarize(database, out)
    from podcast_pipeline.analytics.report import HTML_NAME, report_dir

    report = report_dir(database) / HTML_NAME
    if report.exists():
        print(f"\nReport: {report.resolve()} (open it in a browser; CSV files beside it)",
              file=out)
    return outcomes


def _describe(request: dg.RunRequest) -> str:
    n = len(request.asset_selection or [])
    if request.partition_key:
        return f"Snapshots of {request.partition_key} ({n} assets):"
    start = request.tags.get("dagster/asset_partition_range_start")
    end = request.tags.get("dagster/asset_partition_range_end")
    return f"Today's snapshots and the daily numbers {start} .. {end} ({n} assets, one run):"
