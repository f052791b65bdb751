"""The one partitioning of every windowed asset: daily, UTC, from the configured start date."""

from __future__ import annotations

from datetime import date
from functools import cache

import dagster as dg

from podcast_pipeline.settings import DEFAULT_START_DATE, START_DATE_ENV

__all__ = ["START_DATE_ENV", "daily_partitions"]


@cache
def daily_partitions(start: date = DEFAULT_START_DATE) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from ``start`` (``Settings.start_date``) up to yesterday."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")
