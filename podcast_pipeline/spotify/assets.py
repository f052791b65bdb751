"""The metrics only the GraphQL backend has: one asset per ``spotify.*`` table.

They share the ``anchor`` resource (and so its credential, alerts and fail-fast) with the
``anchor.*`` assets; with the REST backend selected they fail at once, naming the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from podcast_pipeline.anchor.assets import SOURCE as ANCHOR_SOURCE
from podcast_pipeline.assets import Endpoint, Source, build_assets
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.tables import SPOTIFY_TABLES


def graphql_only(fetch: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    def run(client: Any, *args: Any) -> pd.DataFrame:
        if getattr(client, "backend", None) != "graphql":
            raise ConfigError("SPOTIFY_BACKEND", "selects the REST backend, which has no such "
                              "metric", "Set SPOTIFY_SP_DC (and SPOTIFY_SP_KEY) and unset "
                              "SPOTIFY_BACKEND or set it to graphql; or leave the spotify.* "
                              "assets out")
        return fetch(client, *args)
    return run


FETCH = {
    "shows": lambda c: c.shows(),
    "episode_daily_totals": lambda c, day: c.episode_daily_totals(day),
    "show_daily_totals": lambda c, day: c.show_daily_totals(day),
    "audience_size_daily": lambda c, start, end: c.audience_size_daily(start, end),
    "episode_consumption_daily": lambda c, episode_id, start, end: c.episode_consumption_daily(
        episode_id, start, end),
    "impressions_by_source": lambda c, day: c.impressions_by_source(day, day),
    "episode_impressions_by_source": lambda c, episode_id: c.episode_impressions_by_source(
        episode_id),
    "discovery": lambda c: c.discovery(),
    "episode_consumption": lambda c, episode_id: c.episode_consumption(episode_id),
    "episode_audience": lambda c, episode_id: c.episode_audience(episode_id),
    "demographics": lambda c, day: c.demographics(day, day),
    "geo": lambda c: c.geo(),
    "top_episodes": lambda c: c.top_episodes(),
}

SOURCE = Source(
    api="anchor",  # the same API and credential as anchor.*: one alert, one fail-fast verdict
    resource_key="anchor",
    kinds=frozenset({"python", "spotify", "duckdb"}),
    show_id=ANCHOR_SOURCE.show_id,
    episode_list=ANCHOR_SOURCE.episode_list,  # per-episode assets follow anchor.episodes
)

ENDPOINTS = [Endpoint(t, graphql_only(FETCH[t.name])) for t in SPOTIFY_TABLES]


def build_spotify_assets(partitions_def: dg.DailyPartitionsDefinition | None = None,
                         ) -> list[dg.AssetsDefinition]:
    return build_assets(SOURCE, ENDPOINTS, partitions_def)


spotify_assets = build_spotify_assets()
