"""How a code location's ``Definitions`` are built: assets, checks, resources, schedule,
sensors; the whole network (``definitions.py``) or one location's part (``locations.py``).

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
from podcast_pipeline.locations import Location
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


def build_definitions(settings: Settings | None = None,
                      location: Location | None = None) -> dg.Definitions:
    """``settings`` must come from this process's environment (``Settings.load()``, the
    default): secrets reach the resources as ``EnvVar``s, resolved from it at run time.
    ``location``: one code location's part of a network (``locations.py``); None: all of it."""
    s = settings or Settings.load()
    partitions = daily_partitions(s.start_date)
    net = load_network(s)  # the file's shows, or the single-show variables as a network of one
    distributed = s.celery_broker is not None
    common = {"executor": build_executor(s), "resources": {
        "anchor": AnchorResource.from_settings(s),
        "op3": Op3Resource.from_settings(s),
        "warehouse": WarehouseResource.from_settings(s),
    }}
    if location is not None and not location.network_wide:  # an account's (or token's) shows
        part = net.restrict(sh for sh in net.shows if sh.key in location.shows)
        daily = build_daily_refresh_job(part, distributed=distributed, shows_table=False)
        return dg.Definitions(
            assets=source_assets(part, partitions, shows_table=False),
            asset_checks=build_raw_table_checks(part),
            jobs=[daily],
            schedules=[build_daily_refresh_schedule(s, part, daily, shows_table=False)],
            sensors=[analytics_automation],  # its checks' freshness crons
            **common,
        )
    # The whole network, or its network-wide location: the shows table, the models over every
    # show and the sensors (the alert watches every location), without the shows' API assets.
    own = net if location is None else net.restrict(())
    daily = build_daily_refresh_job(own, distributed=distributed)
    return dg.Definitions(
        assets=[*source_assets(own, partitions), *build_analytics_assets(net)],
        asset_checks=build_raw_table_checks(own),
        jobs=[daily, analytics_job],
        schedules=[build_daily_refresh_schedule(s, own, daily)],
        sensors=[credential_expiry_alert, build_credential_probe(s),
                 build_pool_limits_sensor(net, s), analytics_automation],
        **common,
    )
