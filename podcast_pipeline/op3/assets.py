"""One asset per OP3 endpoint: the client call each one makes.

The common machinery (windows, warehouse writes, metadata) is in ``podcast_pipeline.assets``.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline.assets import Endpoint, Source, build_assets
from podcast_pipeline.tables import OP3_TABLES

FETCH = {
    "downloads": lambda c, start, end: c.downloads(start, end),
    "redirect_logs": lambda c, start, end: c.redirect_logs(start, end),
    "show": lambda c: c.show(),
    "recent_episodes_with_transcripts": lambda c: c.recent_episodes_with_transcripts(),
    "top_apps_for_show": lambda c: c.top_apps_for_show(),
    "top_apps": lambda c: c.top_apps(),
    "show_download_counts": lambda c: c.show_download_counts(),
}

SOURCE = Source(
    api="op3",
    resource_key="op3",
    kinds=frozenset({"python", "duckdb"}),
    show_id=lambda settings: settings.show_uuid,
)

ENDPOINTS = [Endpoint(t, FETCH[t.name]) for t in OP3_TABLES]


def build_op3_assets(partitions_def: dg.DailyPartitionsDefinition | None = None,
                     ) -> list[dg.AssetsDefinition]:
    return build_assets(SOURCE, ENDPOINTS, partitions_def)


# With the default start date, for tests and notebooks; the definitions build theirs.
op3_assets = build_op3_assets()
