"""One asset per OP3 endpoint: the client call each one makes.

The common machinery (windows, warehouse writes, metadata) is in ``podcast_pipeline.assets``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg

from podcast_pipeline.assets import Endpoint, Source, build_assets
from podcast_pipeline.op3.client import PAGE_TABLE, JsonRows, Op3Client
from podcast_pipeline.tables import OP3_TABLES
from podcast_pipeline.warehouse import Stage

FETCH = {
    "downloads": lambda c, start, end: c.downloads(start, end),
    "redirect_logs": lambda c, start, end: c.redirect_logs(start, end),
    "show": lambda c: c.show(),
    "recent_episodes_with_transcripts": lambda c: c.recent_episodes_with_transcripts(),
    "top_apps_for_show": lambda c: c.top_apps_for_show(),
    "top_apps": lambda c: c.top_apps(),
    "show_download_counts": lambda c: c.show_download_counts(),
}


def stage_downloads(client: Op3Client, start: date, end: date, stage: Stage,
                    concurrency: int) -> None:
    """DuckDB parses each TSV page into the stage: no row passes through Python. One
    sequence of pages (the continuation token orders them), 20,000 rows each."""
    for columns in client.download_pages(start, end, stage.con):
        stage.add_table(PAGE_TABLE, columns)


def stage_redirect_logs(client: Op3Client, start: date, end: date, stage: Stage,
                        concurrency: int) -> None:
    """Pages of 1,000 rows, each paged by time: the window is cut into ``concurrency``
    runs of days paged side by side, each complete on its own (its raw bodies cover just
    its days), so the step waits on latency ÷ concurrency. Each run ends on a short page,
    so this costs at most ``concurrency - 1`` requests more than one sequence would."""
    failed = threading.Event()  # one run failing stops the others at their next page
    pages = [client.redirect_log_pages(*span) for span in _spans(start, end, concurrency)]
    # The first page alone: it learns /redirect-logs' permanent redirect for the others.
    first = next(pages[0], None)
    if first is not None:
        stage.add_page(first)

    def drain(run: Iterator[JsonRows]) -> None:
        try:
            for page in run:
                stage.add_page(page)
                if failed.is_set():
                    return
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=len(pages)) as pool:
        list(pool.map(drain, pages))  # list(): the first failure is raised here


def _spans(start: date, end: date, parts: int) -> list[tuple[date, date]]:
    """``start``..``end`` cut into at most ``parts`` runs of whole days, in order."""
    total = (end - start).days + 1
    size = -(-total // max(1, min(parts, total)))
    return [(start + timedelta(i), min(end, start + timedelta(i + size - 1)))
            for i in range(0, total, size)]


STAGE = {"downloads": stage_downloads, "redirect_logs": stage_redirect_logs}

SOURCE = Source(
    api="op3",
    resource_key="op3",
    kinds=frozenset({"python", "duckdb"}),
    show_id=lambda settings: settings.show_uuid,
)

ENDPOINTS = [Endpoint(t, FETCH[t.name], stage=STAGE.get(t.name)) for t in OP3_TABLES]


def build_op3_assets(partitions_def: dg.DailyPartitionsDefinition | None = None,
                     ) -> list[dg.AssetsDefinition]:
    return build_assets(SOURCE, ENDPOINTS, partitions_def)


# With the default start date, for tests and notebooks; the definitions build theirs.
op3_assets = build_op3_assets()
