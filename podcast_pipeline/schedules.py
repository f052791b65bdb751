"""The daily refresh: today's snapshots, and yesterday plus a look-back for restated days."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.network import Network, Show, load_network
from podcast_pipeline.network_assets import ACCOUNT_TAG, SHOW_TAG, SHOWS_KEY, is_network, show_keys
from podcast_pipeline.settings import (
    CREDENTIAL_ENV,
    CRON_ENV,
    DAILY_RUNS_ENV,
    GRAPHQL_CREDENTIAL_ENV,
    LOOKBACK_ENV,
    Settings,
)
from podcast_pipeline.tables import ALL_TABLES

__all__ = ["CREDENTIAL_ENV", "GRAPHQL_CREDENTIAL_ENV", "LOOKBACK_ENV", "build_daily_refresh_job",
           "build_daily_refresh_schedule", "daily_refresh_job"]

ALL_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES]
SNAPSHOT_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind == "snapshot"]
WINDOWED_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind != "snapshot"]

daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.assets(*ALL_KEYS),
    description="Every asset: the snapshots (unpartitioned) once, the windowed assets for a "
                "range of days in one run; the schedule and the demo launch it.",
    # Measured (benchmarks, README "Performance"): a process per step costs seconds each on
    # a small machine, several times the whole run's API time; steps call the APIs with a
    # few requests in flight each (PODCAST_PIPELINE_SPOTIFY_CONCURRENCY / _OP3_CONCURRENCY).
    executor_def=dg.in_process_executor,
)


def build_daily_refresh_job(net: Network | None = None, *, distributed: bool = False,
                            shows_table: bool = True) -> dg.UnresolvedAssetJobDefinition:
    """The daily job over every API asset of the network (the network of one: today's).
    ``distributed``: the definitions' Celery executor runs its steps (deploy/), else the
    in-process executor does, as for a network of one. ``shows_table``: with the
    ``network/shows`` asset (False in a code location of some shows: ``locations.py``)."""
    if net is None or not is_network(net):
        return daily_refresh_job
    keys = [k for show in net.shows for k in show_keys(net, show)]
    return dg.define_asset_job(
        "daily_refresh", selection=dg.AssetSelection.assets(
            *keys, *([SHOWS_KEY] if shows_table else [])),
        description=(f"Every API asset of the network's {len(net.shows)} shows: the schedule "
                     "launches one run per show (or per account: PODCAST_PIPELINE_DAILY_RUNS; "
                     "snapshots once, the windowed assets for a range of days), so one show's "
                     "failure fails only its own run's steps." if net.shows else
                     "The network/shows table, daily; the shows' API assets are in the "
                     "accounts' code locations (podcast-pipeline workspace)."),
        # One machine: a process per step would load the whole network's definitions for
        # each of a show's ~80 steps (README "Running a network").
        executor_def=None if distributed else dg.in_process_executor)


def _network_runs(net: Network, first: str, day: str, per: str = "show",
                  shows_table: bool = True) -> list[dg.RunRequest]:
    """One run per show (its own status, history and retries in the Runs page), or with
    ``per`` "account" one per Spotify account (the shows without one: per OP3 token): its
    shows' assets together, so the network's definitions load once per account, not per show.
    ``shows_table``: and a run of ``network/shows``."""
    runs = ([dg.RunRequest(run_key=f"daily-network-{day}", asset_selection=[SHOWS_KEY])]
            if shows_table else [])
    groups: dict[str, list[Show]] = {}
    for show in net.shows:
        name = show.key if per == "show" else show.account or f"op3-{show.op3_token}"
        groups.setdefault(name, []).append(show)
    for name, shows in groups.items():
        tags = {"dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": day}
        if per == "show":
            tags[SHOW_TAG] = name
        # The run queue's limits per account and token (deploy/dagster.yaml) read these; a
        # run of several tokens has none for OP3, whose pools still bound its calls.
        for api, values in (("anchor", {s.account for s in shows}),
                            ("op3", {s.op3_token for s in shows} - {None})):
            if len(values) == 1 and None not in values:
                tags[ACCOUNT_TAG[api]] = values.pop()
        runs.append(dg.RunRequest(run_key=f"daily-{name}-{first}-{day}",
                                  asset_selection=[k for s in shows for k in show_keys(net, s)],
                                  tags=tags))
    return runs


def build_daily_refresh_schedule(settings: Settings, net: Network | None = None,
                                 job: dg.UnresolvedAssetJobDefinition | None = None,
                                 shows_table: bool = True) -> dg.ScheduleDefinition:
    """The schedule as ``settings`` configure it: its cron, look-back and the sources in use;
    with a network file (``net``, ``job`` from :func:`build_daily_refresh_job`), every show
    of ``net``, and ``network/shows`` unless ``shows_table`` is False."""
    if net is None:  # e.g. the demo: the network the settings name
        net = load_network(settings)
    lookback = settings.lookback_days
    apis = settings.configured_apis()
    first_partition = settings.start_date
    network_file = net is not None and is_network(net)
    runs = (f"one run per {settings.daily_runs} ({DAILY_RUNS_ENV})" if network_file
            else "one run")

    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        if network_file:
            assert net is not None
            yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
            first = max(yesterday - timedelta(days=lookback), first_partition)
            return _network_runs(net, first.isoformat(), yesterday.isoformat(),
                                  settings.daily_runs, shows_table)
        if not apis:
            return dg.SkipReason(f"No source is configured: set {GRAPHQL_CREDENTIAL_ENV} or "
                                 f"{CREDENTIAL_ENV['anchor']} (Spotify for Creators) and/or "
                                 f"{CREDENTIAL_ENV['op3']} (OP3); see .env.example.")
        skipped = sorted(set(CREDENTIAL_ENV) - apis)
        if skipped:
            context.log.info(f"Not refreshing {', '.join(skipped)}: "
                             f"{', '.join(CREDENTIAL_ENV[a] for a in skipped)} is not set.")
        yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
        first = max(yesterday - timedelta(days=lookback), first_partition)
        day = yesterday.isoformat()
        # One run: the episode list is taken before the per-episode assets read it, and the
        # snapshots (unpartitioned) land under today, the day they are taken.
        return [dg.RunRequest(
            run_key=f"daily-{first}-{day}",
            asset_selection=[k for k in ALL_KEYS if k.path[0] in apis],
            tags={"dagster/asset_partition_range_start": first.isoformat(),
                  "dagster/asset_partition_range_end": day},
        )]

    try:
        return dg.schedule(
            name="daily_refresh_schedule",
            job=job or daily_refresh_job,
            cron_schedule=settings.schedule_cron,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(
                f"Cron {settings.schedule_cron} (UTC, {CRON_ENV}), {runs}: every snapshot asset "
                f"(stored under today), and the windowed assets for yesterday plus the "
                f"{lookback} days before it ({LOOKBACK_ENV}), because Spotify's numbers arrive "
                "late and get restated."
            ),
        )(refresh)
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(CRON_ENV, f"is {settings.schedule_cron!r}, not a cron schedule",
                          "Use five fields like '0 6 * * *' (06:00 UTC daily), or unset it") from None
