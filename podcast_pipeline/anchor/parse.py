"""Turn API bodies into DataFrames that match :mod:`podcast_pipeline.tables`.

Anchor analytics bodies are ``{"data": {"rows": [...], "columnHeaders": [...]}}``.
Columns are mapped by header *name* (never by position: Spotify adds columns, e.g.
"Episode URI" in Aug 2025); headers we do not know are kept as extra snake_case
columns after the contract columns, so schema drift is visible instead of lost.

Casting to the contract's dtypes is :mod:`podcast_pipeline.contract`'s, shared with OP3.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd

from podcast_pipeline.contract import conform, snake, table
from podcast_pipeline.errors import MalformedResponse
from podcast_pipeline.timeutil import DAY, day_of_epoch

# Known header names → contract column, per analytics endpoint (client method name).
# "Time (UTC)" is the bucket's UTC-midnight epoch and becomes ``date``.
HEADERS: dict[str, dict[str, str]] = {
    "total_plays": {"Plays": "plays"},
    "total_plays_by_episode": {
        "Episode Title": "episode_title", "Episode ID": "episode_id",
        "Streams & Downloads": "plays", "Publish Time (UTC)": "publish_time",
        "Rank": "rank", "Episode URI": "episode_uri",
    },
    "unique_listeners": {"Unique Listeners": "unique_listeners"},
    "audience_size": {"Audience Size": "audience_size"},
    "plays": {"Time (UTC)": "date", "Plays": "plays"},
    "plays_by_age_range": {"Age Range": "age_range", "Percent of Plays": "fraction"},
    "plays_by_app": {"App": "app", "Percent of Plays": "fraction"},
    "plays_by_device": {"Device": "device", "Percent of Plays": "fraction"},
    "plays_by_episode": {"Time (UTC)": "date", "EpisodeTitle": "episode_title",
                         "Plays": "plays"},
    "plays_by_gender": {"Gender": "gender", "Percent of Plays": "fraction"},
    "plays_by_geo": {"Geo": "geo", "Percent of Plays": "fraction"},
    "plays_by_geo_city": {"Geo": "geo", "Percent of Plays": "fraction"},
    "episode_plays": {"Time (UTC)": "date", "Plays": "plays"},
    "episode_performance": {"Sample": "sample_second", "Listeners": "listeners"},
    "episode_aggregated_performance": {"Metric": "metric", "Value": "value"},
}


# Time series with one row per day: a day seen twice with different values is a conflict.
SERIES = frozenset({"plays", "episode_plays"})


def validate_envelope(body: Any) -> str | None:
    """The ``validate`` hook for :meth:`ApiSession.get_json` on analytics endpoints."""
    if not isinstance(body, dict):
        return f"expected a JSON object, got {type(body).__name__}"
    data = body.get("data")
    if not isinstance(data, dict):
        return "the body has no 'data' object"
    if not isinstance(data.get("rows"), list):
        return "the body has no 'data.rows' list"
    if not isinstance(data.get("columnHeaders"), list):
        return "the body has no 'data.columnHeaders' list"
    return None


def parse_analytics(body: Mapping[str, Any], endpoint: str,
                    lead: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """An analytics envelope → the contract DataFrame of ``endpoint`` (a client method name).

    ``lead`` holds constant columns the client knows (``episode_id``, ``country``).
    """
    def bad(problem: str) -> MalformedResponse:
        return MalformedResponse("anchor", endpoint, problem)

    data = body["data"]
    known = HEADERS[endpoint]
    headers = data["columnHeaders"]
    labels = data.get("labels") or {}
    names: list[str] = []
    label_maps: dict[int, Mapping[str, Any]] = {}
    extra_types: dict[str, Mapping[str, Any]] = {}
    for i, h in enumerate(headers):
        if not isinstance(h, dict):
            raise bad(f"column header {i} is not an object")
        key = h.get("name") if h.get("name") is not None else h.get("labelKey")
        if not isinstance(key, str):
            raise bad(f"column header {i} has neither 'name' nor 'labelKey'")
        if "labelKey" in h and "name" not in h:
            mapping = labels.get(key)
            if not isinstance(mapping, dict):
                raise bad(f"column '{key}' refers to data.labels.{key}, which is missing")
            label_maps[i] = mapping
        col = known.get(key) or snake(key)
        if key not in known:
            extra_types[col] = h
        if col in names or (lead and col in lead):
            raise bad(f"column '{col}' appears twice in columnHeaders")
        names.append(col)
    missing = [k for k, c in known.items() if c not in names and k != "Episode URI"]
    if missing:
        raise bad(f"expected column(s) {missing} not in columnHeaders {[*names]}")

    rows = data["rows"]
    if len(headers) == 1 and all(not isinstance(r, list) for r in rows):
        rows = [[r] for r in rows]  # totalPlays & co. send flat rows: [1234]
    records: list[list[Any]] = []
    for n, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(headers):
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise bad(f"row {n} has {got} cells but there are {len(headers)} column headers")
        cells = list(row)
        for i, mapping in label_maps.items():
            if cells[i] is not None:
                if str(cells[i]) not in mapping:
                    raise bad(f"row {n}: label {cells[i]!r} not in data.labels")
                cells[i] = mapping[str(cells[i])]
        records.append(cells)
    df = pd.DataFrame(records, columns=names, dtype=object)
    if "date" in known.values():
        df["date"] = [_bucket_date(v, endpoint) for v in df["date"]]
    if endpoint in SERIES:
        _refuse_conflicting_buckets(df, endpoint)
    for col, h in extra_types.items():
        df[col] = _cast_extra(df[col], h)
    for col, value in reversed(list((lead or {}).items())):
        df.insert(0, col, [value] * len(df))
    return conform(df, table("anchor", endpoint), endpoint)


def _refuse_conflicting_buckets(df: pd.DataFrame, endpoint: str) -> None:
    """Two *different* rows for one day would make that day's count depend on which one
    wins (or double it when summed). Exact repeats pass: the asset drops and counts them."""
    distinct = df[["date", "plays"]].astype(str).drop_duplicates()
    clash = distinct[distinct["date"].duplicated()]
    if len(clash):
        day = clash["date"].iloc[0]
        values = sorted(distinct.loc[distinct["date"] == day, "plays"])
        raise MalformedResponse("anchor", endpoint, f"the day {day} comes back in "
                                f"{len(values)} rows with different plays {values}; refusing "
                                "to pick one")


def _bucket_date(value: Any, endpoint: str) -> date | None:
    if value is None:
        return None
    # Whole epoch seconds only: int() would also take True, "  12 " or 1748563200.7.
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.isdigit():
        seconds = int(value)
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    else:
        raise MalformedResponse("anchor", endpoint, f"time bucket {str(value)[:40]!r} is not "
                                "epoch seconds")
    if seconds % DAY:
        # A bucket off UTC midnight means the day attribution is ambiguous: refuse it.
        raise MalformedResponse("anchor", endpoint, f"time bucket {seconds} is not a UTC "
                                "midnight")
    return day_of_epoch(seconds)


def _cast_extra(s: pd.Series, header: Mapping[str, Any]) -> pd.Series:
    """Best-effort typing of an unknown column from its header; raw values if that fails."""
    try:
        if header.get("isDateTime"):
            return pd.to_datetime(pd.to_numeric(s), unit="s", utc=True)
        if header.get("type") == "integer":
            return pd.to_numeric(s).astype("Int64")
        if header.get("type") == "number":
            return pd.to_numeric(s).astype("float64")
    except (TypeError, ValueError):
        pass
    return s
