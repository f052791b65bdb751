"""The one ``Definitions`` of the project: assets, checks, resources, schedule, sensors.

Everything is built from one :class:`~podcast_pipeline.settings.Settings`, read from the
environment when the code location loads.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline.analytics.assets import analytics_assets, analytics_automation, analytics_job
from podcast_pipeline.analytics.checks import raw_table_checks
from podcast_pipeline.anchor.assets import build_anchor_assets
from podcast_pipeline.op3.assets import build_op3_assets
from podcast_pipeline.partitions import daily_partitions
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.schedules import build_daily_refresh_schedule, daily_refresh_job
from podcast_pipeline.sensors import build_credential_probe, credential_expiry_alert
from podcast_pipeline.settings import Settings
from podcast_pipeline.spotify.assets import build_spotify_assets


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """``settings`` must come from this process's environment (``Settings.load()``, the
    default): secrets reach the resources as ``EnvVar``s, resolved from it at run time."""
    s = settings or Settings.load()
    partitions = daily_partitions(s.start_date)
    return dg.Definitions(
        assets=[*build_anchor_assets(partitions), *build_spotify_assets(partitions),
                *build_op3_assets(partitions),
                *analytics_assets],
        asset_checks=raw_table_checks,
        jobs=[daily_refresh_job, analytics_job],
        schedules=[build_daily_refresh_schedule(s)],
        sensors=[credential_expiry_alert, build_credential_probe(s), analytics_automation],
        resources={
            "anchor": AnchorResource.from_settings(s),
            "op3": Op3Resource.from_settings(s),
            "warehouse": WarehouseResource.from_settings(s),
        },
    )


defs = build_definitions()
