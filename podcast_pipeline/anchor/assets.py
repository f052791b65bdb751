"""One asset per Spotify for Creators endpoint: the client call each one makes.

The common machinery (windows, warehouse writes, metadata) is in ``podcast_pipeline.assets``.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline.assets import Endpoint, Source, build_assets
from podcast_pipeline.tables import ANCHOR_TABLES, TABLES_BY_KEY

FETCH = {
    "episodes": lambda c: c.episodes(),
    "total_plays": lambda c: c.total_plays(),
    "total_plays_by_episode": lambda c: c.total_plays_by_episode(),
    "unique_listeners": lambda c: c.unique_listeners(),
    "audience_size": lambda c: c.audience_size(),
    "plays": lambda c, start, end: c.plays(start, end),
    "plays_by_age_range": lambda c, day: c.plays_by_age_range(day, day),
    "plays_by_app": lambda c, day: c.plays_by_app(day, day),
    "plays_by_device": lambda c, day: c.plays_by_device(day, day),
    "plays_by_episode": lambda c, start, end: c.plays_by_episode(start, end),
    "plays_by_gender": lambda c, day: c.plays_by_gender(day, day),
    "plays_by_geo": lambda c: c.plays_by_geo(),
    "plays_by_geo_city": lambda c: c.plays_by_geo_city(),
    "impressions": lambda c, start, end: c.impressions(start, end),
    "episode_plays": lambda c, episode_id, start, end: c.episode_plays(episode_id, start, end),
    "episode_performance": lambda c, episode_id: c.episode_performance(episode_id),
    "episode_aggregated_performance": lambda c, episode_id: c.episode_aggregated_performance(episode_id),
    "episode_metadata": lambda c, episode_id: c.episode_metadata(episode_id),
}

SOURCE = Source(
    api="anchor",
    resource_key="anchor",
    kinds=frozenset({"python", "spotify", "duckdb"}),
    show_id=lambda settings: settings.show_key(),  # either backend's settings
    # Per-episode assets take the published episodes of the latest anchor.episodes snapshot.
    episode_list=TABLES_BY_KEY["anchor.episodes"],
)

# Fields API.md documents for these endpoints that the tables do not store.
UNSTORED = {
    "episodes": frozenset({"share_link_embed_path", "contains_music_segments",
                           "is_published_to_spotify_exclusively", "wordpress_post_metadata_id",
                           "audio_count"}),
    "episode_metadata": frozenset({"web_station_id", "episode_image", "share_link_embed_path"}),
}

ENDPOINTS = [Endpoint(t, FETCH[t.name], UNSTORED.get(t.name, frozenset())) for t in ANCHOR_TABLES]


def build_anchor_assets(partitions_def: dg.DailyPartitionsDefinition | None = None,
                        ) -> list[dg.AssetsDefinition]:
    return build_assets(SOURCE, ENDPOINTS, partitions_def)


# With the default start date, for tests and notebooks; the definitions build theirs.
anchor_assets = build_anchor_assets()
