"""Read GraphQL ``data`` objects into the warehouse contract's DataFrames.

Every analytics leaf is wrapped twice: ``<field>.analyticsValue.analyticsValue``. Shapes the
reference marks as seen are read as such; the others (impressions, discovery, consumption,
audience, top episodes, the NRT total) are *inferred* from field names the reference client
documents, so each reader names the path it expected when a body does not fit — a changed
shape fails loudly instead of storing zeros.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd

from podcast_pipeline.anchor.parse import conform, table
from podcast_pipeline.errors import MalformedResponse

API = "anchor"


def bad(endpoint: str, problem: str) -> MalformedResponse:
    return MalformedResponse(API, endpoint, problem)


def at(data: Any, path: Sequence[str], endpoint: str) -> Any:
    """``data[path[0]][path[1]]…``; a missing or non-object step raises naming the path."""
    node = data
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            raise bad(endpoint, f"the answer has no {'.'.join(path[:i + 1])}")
        node = node[key]
    return node


def leaf(data: Any, path: Sequence[str], endpoint: str) -> Any:
    """The analytics value under ``path`` (adds the two ``analyticsValue`` wrappers)."""
    return at(data, [*path, "analyticsValue", "analyticsValue"], endpoint)


def number(value: Any, where: str, endpoint: str, *, integer: bool = False) -> int | float:
    if isinstance(value, Mapping) and "value" in value:
        value = value["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(endpoint, f"{where} is not a number ({value!r})")
    if integer:
        if value != int(value):
            raise bad(endpoint, f"{where} is not a whole number ({value!r})")
        return int(value)
    return float(value)


def _points(data: Any, path: Sequence[str],
            endpoint: str) -> Iterator[tuple[int, date, Mapping[str, Any]]]:
    """A time series' points as (index, UTC day, point); a point without a readable date raises."""
    value = leaf(data, path, endpoint)
    points = value.get("points") if isinstance(value, Mapping) else None
    if not isinstance(points, list):
        raise bad(endpoint, f"{'.'.join(path)} has no points list")
    for n, p in enumerate(points):
        if not isinstance(p, Mapping) or not isinstance(p.get("date"), str):
            raise bad(endpoint, f"point {n} has no date")
        try:
            day = date.fromisoformat(p["date"][:10])
        except ValueError:
            raise bad(endpoint, f"point {n} has an unreadable date {p['date']!r}") from None
        yield n, day, p


def series(data: Any, path: Sequence[str], endpoint: str) -> list[tuple[date, int]]:
    """A ``TimeSeriesValue``'s points as (UTC day, count); a day twice with two values raises."""
    out: dict[date, int] = {}
    for n, day, p in _points(data, path, endpoint):
        value = number(p.get("value"), f"point {n} ({day})", endpoint, integer=True)
        if day in out and out[day] != value:
            raise bad(endpoint, f"the day {day} comes back twice with {out[day]} and {value}; "
                      "refusing to pick one")
        out[day] = int(value)
    return sorted(out.items())


def consumption_series(data: Any, path: Sequence[str],
                       endpoint: str) -> list[tuple[date, dict[str, Any]]]:
    """``episodeConsumptionDaily`` points as (UTC day, consumption row).

    No source records a point's value (*inferred*): it is read as the all-time
    ``ConsumptionValue`` (``totalConsumptionHours``, ``foregroundConsumptionPercent``, and the
    millisecond counts when present). A point without ``totalConsumptionHours`` fails, naming
    it, so a different shape is never stored as 0.
    """
    out: dict[date, dict[str, Any]] = {}
    for n, day, p in _points(data, path, endpoint):
        v = p.get("value")
        if not isinstance(v, Mapping) or "totalConsumptionHours" not in v:
            raise bad(endpoint, f"point {n} ({day}) has no value.totalConsumptionHours (the "
                      "shape this project expects; the answer may have changed)")
        where = f"point {n} ({day})"
        row = {"consumption_hours": number(v["totalConsumptionHours"],
                                           f"{where} totalConsumptionHours", endpoint),
               "foreground_fraction": _optional(v, "foregroundConsumptionPercent", where,
                                                endpoint),
               "ms_played": _optional(v, "totalMsPlayed", where, endpoint, integer=True),
               "foreground_ms_played": _optional(v, "foregroundMsPlayed", where, endpoint,
                                                 integer=True)}
        if day in out and out[day] != row:
            raise bad(endpoint, f"the day {day} comes back twice with different values; "
                      "refusing to pick one")
        out[day] = row
    return sorted(out.items())


def _optional(value: Mapping[str, Any], key: str, where: str, endpoint: str, *,
              integer: bool = False) -> int | float | None:
    got = value.get(key)
    return None if got is None else number(got, f"{where} {key}", endpoint, integer=integer)


def items(value: Any, key: str, where: str, endpoint: str) -> list[Mapping[str, Any]]:
    found = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(found, list) or not all(isinstance(x, Mapping) for x in found):
        raise bad(endpoint, f"{where} has no list of objects '{key}'")
    return found


def frame(name: str, rows: Iterable[Mapping[str, Any]], schema: str = "anchor") -> pd.DataFrame:
    """Rows → the contract DataFrame of ``schema.name`` (unknown keys are left out)."""
    tbl = table(schema, name)
    df = pd.DataFrame(list(rows), columns=[c for c, _ in tbl.columns], dtype=object)
    return conform(df, tbl, name, extras=())


# ---------------------------------------------------------------------- breakdowns
def fractions(value: Any, key: str, name_col: str, where: str,
              endpoint: str) -> list[dict[str, Any]]:
    """App/device/geo breakdowns: ``[{displayName, value}]`` with value a proportion 0–1."""
    out = []
    for n, item in enumerate(items(value, key, where, endpoint)):
        name = item.get("displayName")
        if not isinstance(name, str):
            raise bad(endpoint, f"{where}.{key}[{n}] has no displayName")
        out.append({name_col: name, "fraction": number(item.get("value"),
                                                      f"{where}.{key}[{n}].value", endpoint)})
    return out


AGE_LABELS = {"60-150": "60+"}  # the GraphQL bracket name → the REST label


def age_gender_counts(value: Any, endpoint: str) -> tuple[int, list[dict[str, Any]]]:
    """``FacetedAnalyticsValue`` by age: (totalValue, rows of age_range, gender, plays)."""
    total = number(value.get("totalValue") if isinstance(value, Mapping) else None,
                   "showPlaysByAge.totalValue", endpoint, integer=True)
    rows = []
    for n, bracket in enumerate(items(value, "ageBreakdown", "showPlaysByAge", endpoint)):
        age = bracket.get("ageBracket")
        if not isinstance(age, str):
            raise bad(endpoint, f"ageBreakdown[{n}] has no ageBracket")
        genders = bracket.get("genderBreakdown")
        if genders is None:  # seen for brackets with no split (Open Podcast handles it)
            continue
        for g in items(genders, "counts", f"ageBreakdown[{n}].genderBreakdown", endpoint):
            rows.append({"age_range": AGE_LABELS.get(age, age),
                         "gender": g.get("displayName") or g.get("gender"),
                         "plays": number(g.get("count"), f"ageBreakdown[{n}] count", endpoint,
                                         integer=True)})
    return int(total), rows


def age_totals(value: Any, endpoint: str) -> tuple[int, list[tuple[str, int]]]:
    total = number(value.get("totalValue") if isinstance(value, Mapping) else None,
                   "showPlaysByAge.totalValue", endpoint, integer=True)
    out = []
    for n, bracket in enumerate(items(value, "ageBreakdown", "showPlaysByAge", endpoint)):
        age = bracket.get("ageBracket")
        genders = bracket.get("genderBreakdown")
        count = genders.get("total") if isinstance(genders, Mapping) else bracket.get("total")
        if count is None and isinstance(genders, Mapping):
            count = sum(int(number(g.get("count"), "count", endpoint, integer=True))
                        for g in items(genders, "counts", "genderBreakdown", endpoint))
        if not isinstance(age, str):
            raise bad(endpoint, f"ageBreakdown[{n}] has no ageBracket")
        out.append((AGE_LABELS.get(age, age),
                    int(number(count, f"ageBreakdown[{n}] total", endpoint, integer=True))))
    return int(total), out


def gender_fractions(value: Any, endpoint: str) -> list[dict[str, Any]]:
    breakdown = value.get("genderBreakdown") if isinstance(value, Mapping) else None
    if breakdown is None:
        return []
    return [{"gender": g.get("displayName") or g.get("gender"),
             "fraction": number(g.get("percent"), f"genderBreakdown.counts[{n}].percent",
                                endpoint)}
            for n, g in enumerate(items(breakdown, "counts", "genderBreakdown", endpoint))]


def source_counts(value: Any, endpoint: str) -> list[dict[str, Any]]:
    """``impressionSourceBreakdown{total, counts[{source, displayName, count}]}`` (*inferred*)."""
    breakdown = at(value, ["impressionSourceBreakdown"], endpoint)
    return [{"source": c.get("source") or c.get("displayName"),
             "impressions": number(c.get("count"), f"counts[{n}].count", endpoint, integer=True)}
            for n, c in enumerate(items(breakdown, "counts", "impressionSourceBreakdown",
                                        endpoint))]


# ---------------------------------------------------------------------- episodes
EPISODE_ITEM_FIELDS = ("uri", "title")


def episode_row(item: Mapping[str, Any], show_uri: str, endpoint: str) -> dict[str, Any]:
    """An ``episodesV2`` item → the anchor.episodes contract (GraphQL has no web ids)."""
    asset = item.get("asset") if isinstance(item.get("asset"), Mapping) else {}

    def seconds(key: str) -> Any:
        v = item.get(key)
        return v.get("seconds") if isinstance(v, Mapping) else None

    def total(key: str) -> Any:
        node = item.get(key)
        try:
            return leaf(item, [key], endpoint).get("value") if isinstance(node, Mapping) else None
        except MalformedResponse:
            return None

    url = asset.get("downloadUrl")
    return {
        "episode_id": item.get("episodeId"), "web_episode_id": None, "title": item.get("title"),
        "publish_on": seconds("publishedOn"), "created_at": seconds("createdOn"),
        "duration_ms": asset.get("lengthMs"), "total_plays": total("analyticsStartsV2"),
        "share_link_path": None,
        # A short-lived signed URL: its query string is the signature (Open Podcast drops it).
        "download_url": url.split("?", 1)[0] if isinstance(url, str) else None,
        "ad_count": None, "is_trailer": item.get("episodeType") == "EPISODE_TYPE_TRAILER",
        "is_video_episode": item.get("contentType") == "EPISODE_CONTENT_TYPE_VIDEO",
        "spotify_episode_uri": item.get("uri"), "spotify_show_uri": show_uri,
    }
