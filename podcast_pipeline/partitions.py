"""The one partitioning of every asset: daily, UTC."""

from __future__ import annotations

import os
from datetime import date
from functools import cache

import dagster as dg

from podcast_pipeline.errors import ConfigError

START_DATE_ENV = "PODCAST_PIPELINE_START_DATE"
DEFAULT_START_DATE = "2025-01-01"


def start_date() -> str:
    value = os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ConfigError(START_DATE_ENV, f"is {value!r}, not a date",
                          "Use the form YYYY-MM-DD, e.g. 2025-01-01.") from None
    return value


@cache
def daily_partitions() -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from ``PODCAST_PIPELINE_START_DATE`` up to yesterday."""
    return dg.DailyPartitionsDefinition(start_date=start_date(), timezone="UTC")
