"""The one ``Definitions`` of the project: assets, checks, resources, schedule, sensors."""

from __future__ import annotations

import os

import dagster as dg

from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.schedules import daily_refresh_job, daily_refresh_schedule
from podcast_pipeline.sensors import credential_expiry_alert, credential_probe
from podcast_pipeline.spotify.assets import spotify_assets
from podcast_pipeline.warehouse import database_path


def _secret(name: str) -> dg.EnvVar | None:
    """``EnvVar`` keeps the value out of the UI's config view; unset → read at run time."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*anchor_assets, *spotify_assets, *op3_assets],
        jobs=[daily_refresh_job],
        schedules=[daily_refresh_schedule],
        sensors=[credential_expiry_alert, credential_probe],
        resources={
            "anchor": AnchorResource(cookie=_secret("ANCHOR_PW_S"), sp_dc=_secret("SPOTIFY_SP_DC"),
                                     sp_key=_secret("SPOTIFY_SP_KEY")),
            "op3": Op3Resource(token=_secret("OP3_TOKEN")),
            "warehouse": WarehouseResource(database=database_path()),
        },
    )


defs = build_definitions()
