"""The numbers a podcaster opens the dashboard for, read from the warehouse with SQL.

Lifetime plays and listeners, the last days side by side (Spotify plays, OP3 downloads), the
top episodes, apps and countries. Snapshot numbers come from each show's latest snapshot;
every section says "no data" rather than failing when its tables are still empty, so it
works on any database the pipeline wrote.

A network's database (``network.shows`` lists its shows) gets one block per show, named as in
the network file, then the network's totals of the counts that add up across shows (plays,
downloads). Shares, top lists and audience sizes are per show only: a country's share of
one show's plays and of another's do not add up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TextIO

import duckdb

from podcast_pipeline import warehouse

LAST_DAYS = 7  # "the last week", side by side
TOP = 5
WINDOW_DAYS = 30  # the span behind the app and country numbers
COLUMN = 40  # width of the left list where two are side by side


@dataclass(frozen=True)
class ShowFilter:
    """Whose rows a summary reads: ``None`` every show's, else the ``show_id`` of the show's
    Spotify rows (its key) and of its OP3 rows (its OP3 uuid; "" for none: no OP3 rows)."""

    spotify: str | None = None
    op3: str | None = None


EVERY_SHOW = ShowFilter()


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


def read_summary(con: duckdb.DuckDBPyConnection, show: ShowFilter = EVERY_SHOW) -> Summary:
    """The summary of one show's rows (``show``), or of every row in the database. Each
    query filters with ``show_id = coalesce(?, show_id)``: the show a parameter, no filter
    for ``None``."""
    sp, op3 = show.spotify, show.op3
    s = Summary()
    s.show_titles = [t for (t,) in con.execute(
        """
        SELECT DISTINCT show_title FROM (
            SELECT show_title FROM op3.show WHERE show_id = coalesce(?, show_id)
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        WHERE show_title IS NOT NULL ORDER BY 1
        """, [op3]).fetchall()]
    s.as_of = _first(con.execute(
        "SELECT max(partition_date) FROM anchor.total_plays WHERE show_id = coalesce(?, show_id)",
        [sp]).fetchone())
    s.lifetime_plays = _first(con.execute(
        """
        SELECT sum(plays) FROM (
            SELECT plays FROM anchor.total_plays WHERE show_id = coalesce(?, show_id)
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """, [sp]).fetchone())
    s.backend = _first(con.execute(
        """
        SELECT backend FROM anchor.total_plays WHERE show_id = coalesce(?, show_id)
        ORDER BY partition_date DESC, fetched_at DESC LIMIT 1
        """, [sp]).fetchone())
    s.unique_listeners = _first(con.execute(
        """
        SELECT sum(unique_listeners) FROM (
            SELECT unique_listeners FROM anchor.unique_listeners
            WHERE show_id = coalesce(?, show_id)
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """, [sp]).fetchone())
    s.op3_downloads_30d = _first(con.execute(
        """
        SELECT sum(monthly_downloads) FROM (
            SELECT monthly_downloads FROM op3.show_download_counts
            WHERE show_id = coalesce(?, show_id)
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        """, [op3]).fetchone())

    s.last_days = [(d, p, n) for d, p, n in con.execute(
        """
        WITH plays AS (SELECT date, sum(plays) AS plays FROM anchor.plays
                       WHERE show_id = coalesce(?, show_id) GROUP BY date),
             downloads AS (SELECT date, count(*) AS downloads FROM op3.downloads
                           WHERE show_id = coalesce(?, show_id) GROUP BY date)
        SELECT coalesce(p.date, d.date) AS day, p.plays, d.downloads
        FROM plays p FULL OUTER JOIN downloads d ON p.date = d.date
        ORDER BY day DESC LIMIT ?
        """, [sp, op3, LAST_DAYS]).fetchall()][::-1]
    if not s.last_days:
        return s
    first_day, last_day = s.last_days[0][0], s.last_days[-1][0]

    s.top_episodes = [(title, int(plays), int(recent)) for title, plays, recent in con.execute(
        """
        SELECT coalesce(t.episode_title, '(untitled, id ' || t.episode_id || ')'), t.plays,
               coalesce((SELECT sum(e.plays) FROM anchor.episode_plays e
                         WHERE e.show_id = t.show_id AND e.episode_id = t.episode_id
                           AND e.date BETWEEN ? AND ?), 0)
        FROM (SELECT * FROM anchor.total_plays_by_episode WHERE show_id = coalesce(?, show_id)
              QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)) t
        ORDER BY t.plays DESC, t.episode_id LIMIT ?
        """, [first_day, last_day, sp, TOP]).fetchall()]

    start = last_day - timedelta(days=WINDOW_DAYS - 1)
    earliest = _first(con.execute(
        """
        SELECT min(date) FROM (
            SELECT date FROM anchor.plays WHERE show_id = coalesce(?, show_id)
            UNION ALL SELECT date FROM op3.downloads WHERE show_id = coalesce(?, show_id))
        WHERE date >= ?
        """, [sp, op3, start]).fetchone())
    s.window = (max(start, earliest or start), last_day)
    # A day's app shares weigh by that day's plays; days without a breakdown count for neither.
    s.spotify_apps = con.execute(
        """
        WITH days AS (
            SELECT p.show_id, p.date, p.plays FROM anchor.plays p
            WHERE p.date BETWEEN ? AND ? AND p.show_id = coalesce(?, p.show_id)
              AND (p.show_id, p.date) IN (SELECT show_id, partition_date FROM anchor.plays_by_app))
        SELECT a.app, sum(a.fraction * d.plays) / (SELECT sum(plays) FROM days) AS share
        FROM anchor.plays_by_app a JOIN days d ON d.show_id = a.show_id AND d.date = a.partition_date
        GROUP BY a.app HAVING share > 0 ORDER BY share DESC, a.app LIMIT ?
        """, [*s.window, sp, TOP]).fetchall()
    s.op3_apps = con.execute(
        """
        SELECT agent_name, count(*) AS n FROM op3.downloads
        WHERE date BETWEEN ? AND ? AND agent_name IS NOT NULL AND show_id = coalesce(?, show_id)
        GROUP BY agent_name ORDER BY n DESC, agent_name LIMIT ?
        """, [*s.window, op3, TOP]).fetchall()
    s.spotify_countries = con.execute(
        """
        SELECT geo, sum(fraction) AS share FROM (
            SELECT geo, fraction FROM anchor.plays_by_geo WHERE show_id = coalesce(?, show_id)
            QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
        GROUP BY geo ORDER BY share DESC, geo LIMIT ?
        """, [sp, TOP]).fetchall()
    s.op3_countries = con.execute(
        """
        SELECT country_code, count(*) AS n FROM op3.downloads
        WHERE date BETWEEN ? AND ? AND country_code IS NOT NULL
          AND show_id = coalesce(?, show_id)
        GROUP BY country_code ORDER BY n DESC, country_code LIMIT ?
        """, [*s.window, op3, TOP]).fetchall()
    return s


def network_shows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, ShowFilter]]:
    """(name, filter) of each show of a network's database; [] for a single show's."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables "
                         "WHERE table_schema = ? AND table_name = ?", ["network", "shows"])
    if not _first(exists.fetchone()):
        return []
    return [(name, ShowFilter(key, uuid or "")) for key, name, uuid in con.execute(
        "SELECT show_id, coalesce(name, show_id), op3_show_uuid FROM network.shows "
        "ORDER BY name, show_id").fetchall()]


@dataclass
class NetworkSummary:
    """Per show its summary, and the network's sums of the counts that add up."""

    shows: list[tuple[str, Summary]]
    as_of: date | None = None
    lifetime_plays: int | None = None
    backend: str | None = None  # None with lifetime_plays None: the shows' backends differ
    op3_downloads_30d: int | None = None
    last_days: list[tuple[date, int | None, int | None]] = field(default_factory=list)


def _total(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def network_totals(shows: list[tuple[str, Summary]]) -> NetworkSummary:
    out = NetworkSummary(shows)
    summaries = [s for _, s in shows]
    out.as_of = max((s.as_of for s in summaries if s.as_of), default=None)
    backends = {s.backend for s in summaries if s.lifetime_plays is not None}
    if len(backends) <= 1:  # REST plays and GraphQL streams + downloads are not one count
        out.backend = next(iter(backends), None)
        out.lifetime_plays = _total([s.lifetime_plays for s in summaries])
    out.op3_downloads_30d = _total([s.op3_downloads_30d for s in summaries])
    # A day among the network's last days is among each show's last days where it has one,
    # so adding the shows' rows per day is the network's day.
    by_day: dict[date, list[tuple[int | None, int | None]]] = {}
    for s in summaries:
        for day, plays, downloads in s.last_days:
            by_day.setdefault(day, []).append((plays, downloads))
    out.last_days = [(day, _total([p for p, _ in by_day[day]]),
                      _total([d for _, d in by_day[day]]))
                     for day in sorted(by_day)[-LAST_DAYS:]]
    return out


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


def _lifetime_line(plays: int | None, backend: str | None) -> str:
    # GraphQL's lifetime total is all platforms (see tables.GRAPHQL_NOTES).
    if backend == "graphql":
        return f"  Lifetime streams + downloads (all)     {_n(plays):>10}"
    return f"  Lifetime plays (Spotify)               {_n(plays):>10}"


def _last_days_lines(last_days: list[tuple[date, int | None, int | None]]) -> list[str]:
    last = f"Last {len(last_days)} days"
    out = [f"  {last:<21}{'Spotify plays':>15}{'OP3 downloads':>16}"]
    for day, plays, downloads in last_days:
        out.append(f"  {f'{day:%a} {day}':<21}{_n(plays):>15}{_n(downloads):>16}")
    total_p = sum(p for _, p, _ in last_days if p is not None)
    total_d = sum(d for _, _, d in last_days if d is not None)
    return [*out, f"  {'together':<21}{_n(total_p):>15}{_n(total_d):>16}", ""]


def render(s: Summary, name: str | None = None) -> str:
    """One show's block (``name``: its name in the network file), or the database's."""
    if s.lifetime_plays is None and not s.last_days:
        if name is not None:
            return f'"{name}": no data yet: materialize its assets first.'
        return "No data yet: materialize some assets first."
    show = f'"{name}"' if name is not None else (
        " + ".join(f'"{t}"' for t in s.show_titles) or "Your show")
    out = [f"{show}, as of {s.as_of or '-'} (UTC)", "",
           _lifetime_line(s.lifetime_plays, s.backend),
           # GraphQL has no unique-listener count (anchor.unique_listeners holds the
           # audience size): see tables.GRAPHQL_NOTES.
           (f"  Audience size (Spotify)                {_n(s.unique_listeners):>10}"
            if s.backend == "graphql" else
            f"  Lifetime unique listeners (Spotify)    {_n(s.unique_listeners):>10}"),
           f"  Downloads in the last 30 days (OP3)    {_n(s.op3_downloads_30d):>10}", ""]
    last = f"Last {len(s.last_days)} days"
    out += _last_days_lines(s.last_days)

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


def render_network(n: NetworkSummary) -> str:
    """Each show's block, then the network's totals: only counts, which add up."""
    blocks = [render(s, name) for name, s in n.shows]
    out = [f"The network, {len(n.shows)} shows, as of {n.as_of or '-'} (UTC): their sums", "",
           (_lifetime_line(n.lifetime_plays, n.backend) if n.lifetime_plays is not None else
            "  Lifetime plays: per show only (the shows' Spotify backends count differently)"),
           f"  Downloads in the last 30 days (OP3)    {_n(n.op3_downloads_30d):>10}", "",
           *_last_days_lines(n.last_days),
           "  Shares, top lists and audience sizes are per show (above): they do not add up."]
    return "\n\n".join([*blocks, "\n".join(out)])


def print_summary(target: warehouse.Target, out: TextIO = sys.stdout) -> None:
    """Open the warehouse (a DuckDB file's path, or DuckLake) read-only just long enough to
    read the summary, then print it: a network's per show and its totals, a single show's
    as one block."""
    with warehouse.reader(target) as con:
        shows = network_shows(con)
        if shows:
            text = render_network(network_totals(
                [(name, read_summary(con, f)) for name, f in shows]))
        else:
            text = render(read_summary(con))
    print(text, file=out)
