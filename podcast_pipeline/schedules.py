"""The daily refresh: yesterday for everything, plus a look-back for restated days."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.settings import (
    CREDENTIAL_ENV,
    CRON_ENV,
    GRAPHQL_CREDENTIAL_ENV,
    LOOKBACK_ENV,
    Settings,
)
from podcast_pipeline.tables import ALL_TABLES

__all__ = ["CREDENTIAL_ENV", "GRAPHQL_CREDENTIAL_ENV", "LOOKBACK_ENV", "build_daily_refresh_schedule", "daily_refresh_job"]

SNAPSHOT_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind == "snapshot"]
WINDOWED_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind != "snapshot"]

daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.assets(*SNAPSHOT_KEYS, *WINDOWED_KEYS),  # daily: from the assets
    description="Every asset for one or more days; the schedule and the demo launch it.",
)


def build_daily_refresh_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The schedule as ``settings`` configure it: its cron, look-back and the sources in use."""
    lookback = settings.lookback_days
    apis = settings.configured_apis()
    first_partition = settings.start_date

    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
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
        return [
            dg.RunRequest(
                run_key=f"snapshots-{day}",
                partition_key=day,
                asset_selection=[k for k in SNAPSHOT_KEYS if k.path[0] in apis],
            ),
            dg.RunRequest(
                run_key=f"windowed-{first}-{day}",
                asset_selection=[k for k in WINDOWED_KEYS if k.path[0] in apis],
                tags={
                    "dagster/asset_partition_range_start": first.isoformat(),
                    "dagster/asset_partition_range_end": day,
                },
            ),
        ]

    try:
        return dg.schedule(
            name="daily_refresh_schedule",
            job=daily_refresh_job,
            cron_schedule=settings.schedule_cron,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(
                f"Cron {settings.schedule_cron} (UTC, {CRON_ENV}): snapshots for yesterday's "
                f"partition, and the ranged endpoints for yesterday plus the {lookback} days "
                f"before it ({LOOKBACK_ENV}), because Spotify's numbers arrive late and get "
                "restated."
            ),
        )(refresh)
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(CRON_ENV, f"is {settings.schedule_cron!r}, not a cron schedule",
                          "Use five fields like '0 6 * * *' (06:00 UTC daily), or unset it") from None
