"""Data-quality rules over the raw tables: plain SQL, no Dagster (``checks.py`` wraps them).

Each rule returns an :class:`Outcome`: whether the table passes, one line saying why, and
the offending rows (at most :data:`MAX_ROWS`) so a reader can go straight to the bad day.
A rule given a ``show_id`` reads only that show's rows (a network's per-show checks); without
one it reads every row (the network of one). Each query says so with
``show_id = coalesce(?, show_id)``: the same SQL either way, the show a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from podcast_pipeline.tables import TABLES_BY_KEY, Table

MAX_ROWS = 20
FRACTION_TOLERANCE = 0.01
# Spotify rounds each country/region share >= 0.01 to two decimals: every such row can be
# off by up to 0.005, so their sum gets that much more room.
ROUNDING_SLACK = 0.005
FRESH_DAYS = 2
# BIGINT columns that are ids or offsets, not counts.
NOT_COUNTS = frozenset({"episode_id", "hour_offset"})
# Fraction groups: the rows whose fractions make up one whole.
FRACTION_GROUPS = {"anchor.plays_by_geo_city": ("show_id", "partition_date", "country"),
                   # countries, each country's regions, each region's cities: one whole each
                   "spotify.geo": ("show_id", "partition_date", "level", "country", "region")}
ROUNDED_SHARES = frozenset({"anchor.plays_by_geo", "anchor.plays_by_geo_city", "spotify.geo"})
# Per-episode tables and the episode list their ids must appear in.
ANCHOR_EPISODE_TABLES = ("anchor.episode_plays", "anchor.episode_performance",
                         "anchor.episode_aggregated_performance", "anchor.episode_metadata",
                         "anchor.total_plays_by_episode")


@dataclass
class Outcome:
    passed: bool
    summary: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Nothing could be compared (no episode list, no snapshot yet): say so, but only as a warning.
    inconclusive: bool = False


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts (dates as ISO text, for metadata)."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, (_plain(v) for v in row), strict=True)) for row in cur.fetchall()]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def count_columns(table: Table) -> list[tuple[str, bool]]:
    """(column, is_list) for every count-like column: BIGINT counts, list counts, fractions."""
    out = []
    for name, type_ in table.columns:
        if name in NOT_COUNTS:
            continue
        if type_ in ("BIGINT", "DOUBLE"):
            out.append((name, False))
        elif type_ == "BIGINT[]":
            out.append((name, True))
    return out


def counts_non_negative(con: duckdb.DuckDBPyConnection, table: Table,
                        show_id: str | None = None) -> Outcome:
    cols = count_columns(table)
    rows: list[dict[str, Any]] = []
    for column, is_list in cols:  # column: a column name from tables.py
        if is_list:  # e.g. weekly_downloads: its smallest element
            cur = con.execute(
                "SELECT show_id, partition_date, ? AS column_name, "
                f"CAST(list_min({column}) AS DOUBLE) AS value FROM {table.qualified} "
                f"WHERE list_min({column}) < 0 AND show_id = coalesce(?, show_id) "
                "ORDER BY partition_date LIMIT ?", [column, show_id, MAX_ROWS])
        else:
            cur = con.execute(
                "SELECT show_id, partition_date, ? AS column_name, "
                f"CAST({column} AS DOUBLE) AS value FROM {table.qualified} "
                f"WHERE {column} < 0 AND show_id = coalesce(?, show_id) "
                "ORDER BY partition_date LIMIT ?", [column, show_id, MAX_ROWS])
        rows += _dicts(cur)
    if rows:
        rows.sort(key=lambda r: r["partition_date"])
        cols_bad = sorted({r["column_name"] for r in rows})
        return Outcome(False, f"negative values in {', '.join(cols_bad)} (first on "
                              f"{rows[0]['partition_date']})", rows[:MAX_ROWS])
    return Outcome(True, f"no negative value in {', '.join(c for c, _ in cols)}")


def fractions_sum_to_one(con: duckdb.DuckDBPyConnection, table: Table,
                         show_id: str | None = None) -> Outcome:
    group_by = ", ".join(FRACTION_GROUPS.get(table.qualified, ("show_id", "partition_date")))
    slack = ROUNDING_SLACK if table.qualified in ROUNDED_SHARES else 0.0
    rows = _dicts(con.execute(
        f"SELECT {group_by}, round(sum(fraction), 6) AS total, count(*) AS rows_in_group, "
        "round(? + ? * count(*) FILTER (WHERE fraction >= 0.01), 6) AS tolerance "
        f"FROM {table.qualified} WHERE show_id = coalesce(?, show_id) GROUP BY {group_by} "
        "HAVING count(fraction) > 0 "
        "AND abs(sum(fraction) - 1) > ? + ? * count(*) FILTER (WHERE fraction >= 0.01) "
        "ORDER BY partition_date DESC LIMIT ?",
        [FRACTION_TOLERANCE, slack, show_id, FRACTION_TOLERANCE, slack, MAX_ROWS]))
    if rows:
        first = rows[0]
        return Outcome(False, f"fractions of {first['partition_date']} sum to {first['total']}, "
                              f"not 1 ± {first['tolerance']} ({len(rows)} day(s) off; "
                              "re-materialize those partitions once the source is right)", rows)
    return Outcome(True, "every non-empty day's fractions sum to 1 ± "
                         f"{FRACTION_TOLERANCE}" + (" (+ rounding)" if slack else ""))


def _episode_list(table: Table) -> tuple[Table, str, str]:
    """(the episode list, its column, the column of ``table``) for the id rule."""
    if table.qualified == "op3.downloads":
        return TABLES_BY_KEY["op3.show"], "episode_id", "episode_id"
    if table.qualified == "anchor.plays_by_episode":
        return TABLES_BY_KEY["anchor.episodes"], "title", "episode_title"
    return TABLES_BY_KEY["anchor.episodes"], "episode_id", "episode_id"


def applies_episode_ids(table: Table) -> bool:
    return table.qualified in (*ANCHOR_EPISODE_TABLES, "op3.downloads", "anchor.plays_by_episode")


def episode_ids_known(con: duckdb.DuckDBPyConnection, table: Table,
                      show_id: str | None = None) -> Outcome:
    """Every episode id (titles for plays_by_episode) appears in the show's episode list,
    in any snapshot of it (an episode deleted since still has its history)."""
    listing, list_column, column = _episode_list(table)  # columns from tables.py
    shows_without = _dicts(con.execute(
        f"SELECT DISTINCT t.show_id FROM {table.qualified} t "
        "WHERE t.show_id = coalesce(?, t.show_id) "
        f"AND NOT EXISTS (SELECT 1 FROM {listing.qualified} l WHERE l.show_id = t.show_id)",
        [show_id]))
    rows = _dicts(con.execute(
        f"SELECT t.show_id, CAST(t.{column} AS VARCHAR) AS value, "
        "min(t.partition_date) AS first_day, count(*) AS rows "
        f"FROM {table.qualified} t "
        f"WHERE t.show_id = coalesce(?, t.show_id) AND t.{column} IS NOT NULL "
        f"AND CAST(t.{column} AS VARCHAR) <> '' "
        f"AND EXISTS (SELECT 1 FROM {listing.qualified} l WHERE l.show_id = t.show_id) "
        f"AND NOT EXISTS (SELECT 1 FROM {listing.qualified} l "
        f"WHERE l.show_id = t.show_id AND l.{list_column} = t.{column}) "
        "GROUP BY ALL ORDER BY first_day LIMIT ?", [show_id, MAX_ROWS]))
    where = listing.qualified
    if rows:
        return Outcome(False, f"{len(rows)} {column} value(s) not in {where}, e.g. "
                              f"{rows[0]['value']} (first on {rows[0]['first_day']})", rows)
    if shows_without:
        ids = ", ".join(r["show_id"] for r in shows_without)
        return Outcome(False, f"no {where} snapshot for show(s) {ids} yet: materialize "
                              f"{where.replace('.', '/')} to check the ids", [], inconclusive=True)
    return Outcome(True, f"every {column} is in {where}")


def days_with_rows(con: duckdb.DuckDBPyConnection, table: Table,
                   show_id: str | None = None) -> dict[str, set[date]]:
    out: dict[str, set[date]] = {}
    for show, day in con.execute(
            f"SELECT DISTINCT show_id, partition_date FROM {table.qualified} "
            "WHERE show_id = coalesce(?, show_id)", [show_id]).fetchall():
        out.setdefault(show, set()).add(day)
    return out


def no_missing_days(con: duckdb.DuckDBPyConnection, table: Table,
                    materialized: Iterable[date] | None, show_id: str | None = None) -> Outcome:
    """A day that was materialized (or lies between stored days) but holds no rows for a
    show that had rows the day before."""
    rows: list[dict[str, Any]] = []
    for show, have in sorted(days_with_rows(con, table, show_id).items()):
        lo, hi = min(have), max(have)
        candidates = ({d for d in materialized if d >= lo} if materialized is not None
                      else {lo + timedelta(days=k) for k in range((hi - lo).days + 1)})
        for day in sorted(candidates):
            if day not in have and day - timedelta(days=1) in have:
                rows.append({"show_id": show, "day": day.isoformat(),
                             "day_before": (day - timedelta(days=1)).isoformat()})
    if rows:
        return Outcome(False, f"{len(rows)} day(s) without rows after a day with rows, first "
                              f"{rows[0]['day']} (show {rows[0]['show_id']}): re-materialize "
                              "them, or ignore if the show really had nothing", rows[:MAX_ROWS])
    return Outcome(True, "no empty day after a day with rows")


def freshness(newest: date | None, today: date, max_age_days: int = FRESH_DAYS) -> Outcome:
    if newest is None:
        return Outcome(False, "never materialized")
    age = (today - newest).days
    if age > max_age_days:
        return Outcome(False, f"newest partition {newest} is {age} days old (more than "
                              f"{max_age_days}): is the daily schedule running and are the "
                              "credentials valid?")
    return Outcome(True, f"newest partition {newest} is {age} day(s) old")


def downloads_match_counts(con: duckdb.DuckDBPyConnection, covered: Iterable[date] | None,
                           show_id: str | None = None) -> Outcome:
    """OP3's own daily-computed numbers (show_download_counts, latest snapshot per show)
    against the downloads stored for the same days: the 4 weekly sums (days asof-27..asof
    in 7-day weeks), the 30-day total (asof-29..asof) and the days its ``days`` string marks
    '0', each compared only when every one of its days is covered."""
    snapshots = _dicts(con.execute("""
        SELECT show_id, strftime(timezone('UTC', computed_at), '%Y-%m-%d') AS asof, "days",
               monthly_downloads, weekly_downloads
        FROM op3.show_download_counts WHERE show_id = coalesce(?, show_id)
        QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)""", [show_id]))
    if not snapshots:
        return Outcome(True, "nothing to compare yet: no op3.show_download_counts snapshot")
    per_day = {(s, d): n for s, d, n in con.execute(
        "SELECT show_id, date, count(*) FROM op3.downloads "
        "WHERE show_id = coalesce(?, show_id) GROUP BY ALL", [show_id]).fetchall()}
    have = days_with_rows(con, TABLES_BY_KEY["op3.downloads"], show_id)
    mismatches: list[dict[str, Any]] = []
    compared = 0
    for snap in snapshots:
        show, asof = snap["show_id"], date.fromisoformat(snap["asof"])
        stored = have.get(show, set())
        if covered is not None:
            cov = set(covered)
        elif stored:
            cov = {min(stored) + timedelta(days=k) for k in range((max(stored) - min(stored)).days + 1)}
        else:
            cov = set()
        days = [asof - timedelta(days=29 - k) for k in range(30)]
        counts = [per_day.get((show, d), 0) for d in days]
        flags = snap["days"] or ""
        # A '0' day has no downloads at OP3, so stored rows there are wrong. A '1' day with
        # nothing stored is left to the weekly sums: whether '1' means "had downloads" or
        # only "was counted" is not documented.
        for d, n, flag in zip(days, counts, flags, strict=False):
            if d in cov and flag == "0":
                compared += 1
                if n > 0:
                    mismatches.append({"show_id": show, "what": f"day {d}", "op3_says": 0,
                                       "stored": n})
        for w, expected in enumerate(snap["weekly_downloads"] or []):
            week = days[2 + 7 * w: 9 + 7 * w]
            if week and all(d in cov for d in week):
                compared += 1
                got = sum(counts[2 + 7 * w: 9 + 7 * w])
                if got != expected:
                    mismatches.append({"show_id": show, "what": f"week {week[0]}..{week[-1]}",
                                       "op3_says": expected, "stored": got})
        if all(d in cov for d in days):
            compared += 1
            if sum(counts) != snap["monthly_downloads"]:
                mismatches.append({"show_id": show, "what": f"30 days {days[0]}..{days[-1]}",
                                   "op3_says": snap["monthly_downloads"], "stored": sum(counts)})
    if mismatches:
        m = mismatches[0]
        return Outcome(False, f"{len(mismatches)} of {compared} comparisons differ, e.g. "
                              f"{m['what']}: OP3 says {m['op3_says']}, stored {m['stored']}: "
                              "re-materialize op3/downloads for those days", mismatches[:MAX_ROWS])
    if compared == 0:
        return Outcome(True, "nothing to compare yet: the stored downloads cover no whole week "
                             "of the snapshot's 30 days and none of its days without downloads")
    return Outcome(True, f"all {compared} comparisons with op3.show_download_counts agree")
