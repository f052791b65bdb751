"""The one ``Definitions`` of the project: assets, checks, resources, schedule, sensors.

Everything is built from one :class:`~podcast_pipeline.settings.Settings`, read from the
environment when the code location loads.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline.analytics.assets import (
    analytics_automation,
    analytics_job,
    build_analytics_assets,
)
from podcast_pipeline.analytics.checks import build_raw_table_checks
from podcast_pipeline.network import load_network
from podcast_pipeline.network_assets import source_assets
from podcast_pipeline.partitions import daily_partitions
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.schedules import build_daily_refresh_job, build_daily_refresh_schedule
from podcast_pipeline.sensors import (
    build_credential_probe,
    build_pool_limits_sensor,
    credential_expiry_alert,
)
from podcast_pipeline.settings import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, Settings


def build_executor(s: Settings) -> dg.ExecutorDefinition | None:
    """Dagster's Celery executor when a broker is set (the network mode, deploy/): every step
    a task on the workers. The URLs stay variables, so no password lands in the job snapshot."""
    if s.celery_broker is None:
        return None  # Dagster's default: steps in subprocesses of the run
    from dagster_celery import celery_executor  # the [network] extra

    return celery_executor.configured({"broker": {"env": CELERY_BROKER_ENV},
                                       "backend": {"env": CELERY_BACKEND_ENV}})


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """``settings`` must come from this process's environment (``Settings.load()``, the
    default): secrets reach the resources as ``EnvVar``s, resolved from it at run time."""
    s = settings or Settings.load()
    partitions = daily_partitions(s.start_date)
    net = load_network(s)  # the file's shows, or the single-show variables as a network of one
    sources = source_assets(net, partitions)
    daily = build_daily_refresh_job(net, distributed=s.celery_broker is not None)
    sensors = [credential_expiry_alert, build_credential_probe(s), analytics_automation,
               build_pool_limits_sensor(net, s)]
    return dg.Definitions(
        assets=[*sources, *build_analytics_assets(net)],
        asset_checks=build_raw_table_checks(net),
        jobs=[daily, analytics_job],
        executor=build_executor(s),
        schedules=[build_daily_refresh_schedule(s, net, daily)],
        sensors=sensors,
        resources={
            "anchor": AnchorResource.from_settings(s),
            "op3": Op3Resource.from_settings(s),
            "warehouse": WarehouseResource.from_settings(s),
        },
    )


defs = build_definitions()
