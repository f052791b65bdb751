"""The numbers a podcaster opens the dashboard for, read from the warehouse with SQL.

Lifetime plays and listeners, the last days side by side (Spotify plays, OP3 downloads), the
top episodes, apps and countries. Snapshot numbers come from each show's latest snapshot;
every section says "no data" rather than failing when its tables are still empty, so it
works on any database the pipeline wrote. Several shows in one database are added up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TextIO

import duckdb

LAST_DAYS = 7  # "the last week", side by side
TOP = 5
WINDOW_DAYS = 30  # the span behind the app and country numbers
COLUMN = 40  # width of the left list where two are side by side


@dataclass
class Summary:
    show_titles: list[str] = field(default_factory=list)
    as_of: date | None = None  # the latest snapshot day
    lifetime_plays: int | None = None
    unique_listeners: int | None = None
    backend: str | None = None  # the Spotify backend of the latest totals: their meaning differs
    op3_downloads_30d: int | None = None  # OP3's own count for the last 30 days
    last_days: list[tuple[date, int | None, int | None]] = field(default_factory=list)
    top_episodes: list[tuple[str, int, int]] = field(default_factory=list)  # title, lifetime, last days
    window: tuple[date, date] | None = None  # the days behind the apps and countries
    spotify_apps: list[tuple[str, float]] = field(default_factory=list)  # share of plays
    op3_apps: list[tuple[str, int]] = field(default_factory=list)  # downloads
    spotify_countries: list[tuple[str, float]] = field(default_factory=list)  # all-time share
    op3_countries: list[tuple[str, int]] = field(default_factory=list)  # downloads


# Every SQL text here is a literal (values go in as ``?``): test_security checks that. A
# snapshot table's "latest" rows are each show's newest partition, via QUALIFY.
def _first(row: tuple[Any, ...] | None) -> Any:
    return row[0] if row else None


def read_summary(con: duckdb.DuckDBPyConnection) -> Summary:
    s = Summary()
    s.show_titles = [t for (t,) in con.execute(
        """
        SELECT DISTINCT show_title FROM (
            SELECT show_title FROM op3.show
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        WHERE show_title IS NOT NULL ORDER BY 1
        """).fetchall()]
    s.as_of = _first(con.execute("SELECT max(partition_date) FROM anchor.total_plays").fetchone())
    s.lifetime_plays = _first(con.execute(
        """
        SELECT sum(plays) FROM (
            SELECT plays FROM anchor.total_plays
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """).fetchone())
    s.backend = _first(con.execute(
        """
        SELECT backend FROM anchor.total_plays ORDER BY partition_date DESC, fetched_at DESC
        LIMIT 1
        """).fetchone())
    s.unique_listeners = _first(con.execute(
        """
        SELECT sum(unique_listeners) FROM (
            SELECT unique_listeners FROM anchor.unique_listeners
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """).fetchone())
    s.op3_downloads_30d = _first(con.execute(
        """
        SELECT sum(monthly_downloads) FROM (
            SELECT monthly_downloads FROM op3.show_download_counts
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """).fetchone())

    s.last_days = [(d, p, n) for d, p, n in con.execute(
        """
        WITH plays AS (SELECT date, sum(plays) AS plays FROM anchor.plays GROUP BY date),
             downloads AS (SELECT date, count(*) AS downloads FROM op3.downloads GROUP BY date)
        SELECT coalesce(p.date, d.date) AS day, p.plays, d.downloads
        FROM plays p FULL OUTER JOIN downloads d ON p.date = d.date
        ORDER BY day DESC LIMIT ?
        """, [LAST_DAYS]).fetchall()][::-1]
    if not s.last_days:
        return s
    first_day, last_day = s.last_days[0][0], s.last_days[-1][0]

    s.top_episodes = [(title, int(plays), int(recent)) for title, plays, recent in con.execute(
        """
        SELECT coalesce(t.episode_title, '(untitled, id ' || t.episode_id || ')'), t.plays,
               coalesce((SELECT sum(e.plays) FROM anchor.episode_plays e
                         WHERE e.show_id = t.show_id AND e.episode_id = t.episode_id
                           AND e.date BETWEEN ? AND ?), 0)
        FROM (SELECT * FROM anchor.total_plays_by_episode
              QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)) t
        ORDER BY t.plays DESC, t.episode_id LIMIT ?
        """, [first_day, last_day, TOP]).fetchall()]

    start = last_day - timedelta(days=WINDOW_DAYS - 1)
    earliest = _first(con.execute(
        """
        SELECT min(date) FROM (SELECT date FROM anchor.plays UNION ALL SELECT date FROM op3.downloads)
        WHERE date >= ?
        """, [start]).fetchone())
    s.window = (max(start, earliest or start), last_day)
    # A day's app shares weigh by that day's plays; days without a breakdown count for neither.
    s.spotify_apps = con.execute(
        """
        WITH days AS (
            SELECT p.show_id, p.date, p.plays FROM anchor.plays p
            WHERE p.date BETWEEN ? AND ?
              AND (p.show_id, p.date) IN (SELECT show_id, partition_date FROM anchor.plays_by_app))
        SELECT a.app, sum(a.fraction * d.plays) / (SELECT sum(plays) FROM days) AS share
        FROM anchor.plays_by_app a JOIN days d ON d.show_id = a.show_id AND d.date = a.partition_date
        GROUP BY a.app HAVING share > 0 ORDER BY share DESC, a.app LIMIT ?
        """, [*s.window, TOP]).fetchall()
    s.op3_apps = con.execute(
        """
        SELECT agent_name, count(*) AS n FROM op3.downloads
        WHERE date BETWEEN ? AND ? AND agent_name IS NOT NULL
        GROUP BY agent_name ORDER BY n DESC, agent_name LIMIT ?
        """, [*s.window, TOP]).fetchall()
    s.spotify_countries = con.execute(
        """
        SELECT geo, sum(fraction) AS share FROM (
            SELECT geo, fraction FROM anchor.plays_by_geo
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        GROUP BY geo ORDER BY share DESC, geo LIMIT ?
        """, [TOP]).fetchall()
    s.op3_countries = con.execute(
        """
        SELECT country_code, count(*) AS n FROM op3.downloads
        WHERE date BETWEEN ? AND ? AND country_code IS NOT NULL
        GROUP BY country_code ORDER BY n DESC, country_code LIMIT ?
        """, [*s.window, TOP]).fetchall()
    return s


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def _side_by_side(title: str, left_head: str, left: list[str], right_head: str,
                  right: list[str]) -> list[str]:
    lines = [title, f"    {left_head:<{COLUMN}}{right_head}"]
    for i in range(max(len(left), len(right))):
        a = f"{i + 1}. {left[i]}" if i < len(left) else ""
        b = f"{i + 1}. {right[i]}" if i < len(right) else ""
        lines.append(f"    {a:<{COLUMN}}{b}".rstrip())
    if not left and not right:
        lines.append("    no data yet")
    return lines


def render(s: Summary) -> str:
    if s.lifetime_plays is None and not s.last_days:
        return "No data yet: materialize some assets first."
    show = " + ".join(f'"{t}"' for t in s.show_titles) or "Your show"
    out = [f"{show}, as of {s.as_of or '-'} (UTC)", "",
           # GraphQL's lifetime total is all platforms, and it has no unique-listener count
           # (anchor.unique_listeners holds the audience size): see tables.GRAPHQL_NOTES.
           (f"  Lifetime streams + downloads (all)     {_n(s.lifetime_plays):>10}"
            if s.backend == "graphql" else
            f"  Lifetime plays (Spotify)               {_n(s.lifetime_plays):>10}"),
           (f"  Audience size (Spotify)                {_n(s.unique_listeners):>10}"
            if s.backend == "graphql" else
            f"  Lifetime unique listeners (Spotify)    {_n(s.unique_listeners):>10}"),
           f"  Downloads in the last 30 days (OP3)    {_n(s.op3_downloads_30d):>10}", ""]
    last = f"Last {len(s.last_days)} days"
    out.append(f"  {last:<21}{'Spotify plays':>15}{'OP3 downloads':>16}")
    for day, plays, downloads in s.last_days:
        out.append(f"  {f'{day:%a} {day}':<21}{_n(plays):>15}{_n(downloads):>16}")
    total_p = sum(p for _, p, _ in s.last_days if p is not None)
    total_d = sum(d for _, _, d in s.last_days if d is not None)
    out += [f"  {'together':<21}{_n(total_p):>15}{_n(total_d):>16}", ""]

    width = max([len(t) for t, _, _ in s.top_episodes] + [20])
    out.append(f"  {f'Top {TOP} episodes (Spotify)':<{width + 5}}{'lifetime':>10}{last.lower():>15}")
    for i, (title, plays, recent) in enumerate(s.top_episodes, 1):
        out.append(f"    {i}. {title:<{width}}{_n(plays):>10}{_n(recent):>15}")
    if not s.top_episodes:
        out.append("    no data yet")
    span = f"{s.window[0]} .. {s.window[1]}" if s.window else "-"
    out += [""] + _side_by_side(
        f"  Top apps, {span}", "Spotify (share of plays)",
        [f"{a:<20} {_pct(x):>8}" for a, x in s.spotify_apps],
        "OP3 (downloads)", [f"{a:<20} {_n(n):>7}" for a, n in s.op3_apps])
    out += [""] + _side_by_side(
        "  Top countries", "Spotify (share of plays, all time)",
        [f"{c:<20} {_pct(x):>8}" for c, x in s.spotify_countries],
        f"OP3 (downloads, {span})", [f"{c:<20} {_n(n):>7}" for c, n in s.op3_countries])
    return "\n".join(out)


def print_summary(db_path: str, out: TextIO = sys.stdout) -> None:
    """Open ``db_path`` read-only just long enough to read the summary, then print it."""
    with duckdb.connect(db_path, read_only=True) as con:
        summary = read_summary(con)
    print(render(summary), file=out)
