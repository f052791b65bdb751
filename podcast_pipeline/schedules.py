"""The daily refresh: yesterday for everything, plus a look-back for restated days."""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.partitions import daily_partitions
from podcast_pipeline.settings import spotify_backend
from podcast_pipeline.tables import ALL_TABLES

LOOKBACK_ENV = "PODCAST_PIPELINE_LOOKBACK_DAYS"
CRON_ENV = "PODCAST_PIPELINE_SCHEDULE_CRON"
DEFAULT_LOOKBACK_DAYS = 3
DEFAULT_CRON = "0 6 * * *"  # 06:00 UTC: yesterday is complete on both services by then

SNAPSHOT_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind == "snapshot"]
WINDOWED_KEYS = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.kind != "snapshot"]
# The credential that says a source is in use: a user with only OP3 gets no daily Anchor failures.
CREDENTIAL_ENV = {"anchor": "ANCHOR_PW_S", "op3": "OP3_TOKEN"}
GRAPHQL_CREDENTIAL_ENV = "SPOTIFY_SP_DC"  # Spotify for Creators over GraphQL: anchor + spotify

daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.assets(*SNAPSHOT_KEYS, *WINDOWED_KEYS),  # daily: from the assets
    description="Every asset for one or more days; the schedule and the demo launch it.",
)


def configured_apis() -> set[str]:
    """The sources whose credential is set (malformed ones included: their runs say why)."""
    def is_set(var: str) -> bool:
        return bool((os.environ.get(var) or "").strip())

    apis = {"op3"} if is_set(CREDENTIAL_ENV["op3"]) else set()
    if is_set(CREDENTIAL_ENV["anchor"]) or is_set(GRAPHQL_CREDENTIAL_ENV):
        apis.add("anchor")
        try:
            if spotify_backend() == "graphql":
                apis.add("spotify")  # the GraphQL-only tables: same credential
        except ConfigError:
            pass  # a bad SPOTIFY_BACKEND: the anchor runs report it
    return apis


def lookback_days() -> int:
    raw = os.environ.get(LOOKBACK_ENV) or str(DEFAULT_LOOKBACK_DAYS)
    if not raw.strip().isdigit():
        raise ConfigError(LOOKBACK_ENV, f"is {raw!r}, not a whole number of days",
                          f"Set it to e.g. {DEFAULT_LOOKBACK_DAYS}, or unset it")
    return int(raw)


@dg.schedule(
    job=daily_refresh_job,
    cron_schedule=os.environ.get(CRON_ENV) or DEFAULT_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Daily at 06:00 UTC: snapshots for yesterday's partition, and the ranged endpoints for "
        f"yesterday plus the {DEFAULT_LOOKBACK_DAYS} days before it (PODCAST_PIPELINE_LOOKBACK_DAYS), "
        "because Spotify's numbers arrive late and get restated."
    ),
)
def daily_refresh_schedule(
    context: dg.ScheduleEvaluationContext,
) -> list[dg.RunRequest] | dg.SkipReason:
    apis = configured_apis()
    if not apis:
        return dg.SkipReason(f"No source is configured: set {GRAPHQL_CREDENTIAL_ENV} or "
                             f"{CREDENTIAL_ENV['anchor']} (Spotify for Creators) and/or "
                             f"{CREDENTIAL_ENV['op3']} (OP3); see .env.example.")
    skipped = sorted(set(CREDENTIAL_ENV) - apis)  # "spotify" follows "anchor"
    if skipped:
        context.log.info(f"Not refreshing {', '.join(skipped)}: "
                         f"{', '.join(CREDENTIAL_ENV[a] for a in skipped)} is not set.")
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    first = yesterday - timedelta(days=lookback_days())
    first = max(first, daily_partitions().start.date())
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
