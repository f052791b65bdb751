"""The podcaster's report: one self-contained HTML file plus every model as CSV beside it.

Everything shown comes from a SQL query over the ``analytics`` models (the queries are in
this module, one per chart or table). The charts are Plotly figures with plotly.js inlined
once, so the file opens offline and needs nothing installed. Plain Python over a DuckDB
connection: ``podcast-pipeline report`` and the ``analytics/report`` asset both call
:func:`write_report`.
"""

from __future__ import annotations

import contextlib
import html
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from podcast_pipeline.analytics import models

HTML_NAME = "report.html"
TOP_EPISODES = 10
MIX_VALUES = 12  # the biggest values per audience chart (shares are of the whole, not of these)
DIMENSIONS = ("app", "device", "country", "age", "gender")
SPOTIFY, OP3, ALL_PLATFORMS = "#1DB954", "#5D55FF", "#F28C28"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


class ReportError(RuntimeError):
    """The report cannot be written; the message says what to do."""


class ModelsMissing(ReportError):
    """The report was asked for before the models it reads exist."""


def report_dir(database: str) -> Path:
    """``PODCAST_PIPELINE_REPORT_DIR``, else ``<database without .duckdb>-report`` beside it."""
    from podcast_pipeline.settings import Settings

    configured = Settings.load().report_dir
    if configured:
        return Path(configured).expanduser()
    db = Path(database).expanduser()
    return db.with_name(f"{db.stem}-report")


# ---- the queries: one per chart or table, all over analytics.* --------------------------

Rows = list[dict[str, Any]]


def _rows(cur: duckdb.DuckDBPyConnection) -> Rows:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def q_shows(con: duckdb.DuckDBPyConnection) -> Rows:
    """Each show with its name (the network file's, else its title, else its id)."""
    return _rows(con.execute("SELECT show_id, name AS title, spotify_account "
                             "FROM analytics.shows ORDER BY name, show_id"))


def q_network_daily(con: duckdb.DuckDBPyConnection) -> Rows:
    """The whole network per UTC day: every show's numbers summed."""
    return _rows(con.execute("""
        SELECT day, sum(spotify_plays) AS spotify_plays, sum(op3_downloads) AS op3_downloads,
               count(DISTINCT show_id) AS shows
        FROM analytics.daily_listening GROUP BY day ORDER BY day"""))


def q_network_totals(con: duckdb.DuckDBPyConnection, days: int) -> Rows:
    """Per show, sums over the network's last ``days`` days (one window for every show)."""
    return _rows(con.execute("""
        SELECT s.show_id, s.name, s.spotify_account,
               sum(d.spotify_plays) AS spotify_plays, sum(d.op3_downloads) AS op3_downloads
        FROM analytics.shows s
        LEFT JOIN analytics.daily_listening d
               ON d.show_id = s.show_id
              AND d.day > (SELECT max(day) FROM analytics.daily_listening) - ?
        GROUP BY ALL ORDER BY s.name, s.show_id""", [days]))


def q_daily(con: duckdb.DuckDBPyConnection, show: str) -> Rows:
    return _rows(con.execute("""
        SELECT day, spotify_plays, all_platform_plays_and_downloads, op3_downloads,
               spotify_plays_avg_7d, op3_downloads_avg_7d
        FROM analytics.daily_listening WHERE show_id = ? ORDER BY day""", [show]))


def q_totals(con: duckdb.DuckDBPyConnection, show: str, days: int) -> dict[str, Any]:
    """Sums over the last ``days`` days the model holds for the show (fewer if it holds fewer)."""
    return _rows(con.execute("""
        SELECT count(*) AS days, max(day) AS last_day,
               sum(spotify_plays) AS spotify_plays, sum(op3_downloads) AS op3_downloads
        FROM analytics.daily_listening
        WHERE show_id = ? AND day > (SELECT max(day) FROM analytics.daily_listening
                                     WHERE show_id = ?) - ?""", [show, show, days]))[0]


def q_launch(con: duckdb.DuckDBPyConnection, show: str) -> Rows:
    return _rows(con.execute("""
        SELECT title, release_date, spotify_plays_1d, spotify_plays_7d, spotify_plays_30d,
               spotify_plays_90d, op3_downloads_1d, op3_downloads_7d, op3_downloads_30d,
               op3_downloads_90d, spotify_rank_7d, op3_rank_7d
        FROM analytics.episode_launch WHERE show_id = ?
        ORDER BY release_date DESC, title""", [show]))


def q_launch_chart(con: duckdb.DuckDBPyConnection, show: str) -> Rows:
    return _rows(con.execute("""
        SELECT title, release_date, spotify_plays_7d, op3_downloads_7d
        FROM analytics.episode_launch
        WHERE show_id = ? AND (spotify_plays_7d IS NOT NULL OR op3_downloads_7d IS NOT NULL)
        ORDER BY release_date""", [show]))


def q_top(con: duckdb.DuckDBPyConnection, show: str) -> Rows:
    return _rows(con.execute("""
        SELECT spotify_rank, title, release_date, spotify_plays, op3_downloads,
               average_listen_seconds, median_listen_seconds, still_listening_at_50pct,
               still_listening_at_100pct
        FROM analytics.episode_leaderboard WHERE show_id = ?
        ORDER BY spotify_rank NULLS LAST, op3_rank NULLS LAST, title LIMIT ?""",
        [show, TOP_EPISODES]))


def q_mix(con: duckdb.DuckDBPyConnection, show: str, dimension: str) -> Rows:
    """Shares over every day the model holds (Spotify's countries: its all-time snapshot)."""
    return _rows(con.execute("""
        WITH d AS (
            SELECT value, sum(spotify_count) AS spotify, sum(op3_count) AS op3
            FROM analytics.audience_mix
            WHERE show_id = $show AND dimension = $dimension AND period = 'day' GROUP BY value
            UNION ALL
            SELECT value, sum(spotify_count), NULL
            FROM analytics.audience_mix
            WHERE show_id = $show AND dimension = $dimension AND period = 'all_time'
            GROUP BY value
        ),
        v AS (SELECT value, sum(spotify) AS spotify, sum(op3) AS op3 FROM d GROUP BY value)
        SELECT value, 100 * spotify / sum(spotify) OVER () AS spotify_percent,
               100 * op3 / sum(op3) OVER () AS op3_percent
        FROM v ORDER BY coalesce(spotify_percent, 0) + coalesce(op3_percent, 0) DESC, value
        LIMIT $top""", {"show": show, "dimension": dimension, "top": MIX_VALUES}))


def q_retention(con: duckdb.DuckDBPyConnection, show: str) -> Rows:
    return _rows(con.execute("""
        SELECT spotify_episode_id, any_value(title) AS title,
               any_value(release_date) AS release_date,
               list(sample_second / 60.0 ORDER BY sample_second) AS minutes,
               list(percent_of_start ORDER BY sample_second) AS percent
        FROM analytics.episode_retention WHERE show_id = ? AND percent_of_start IS NOT NULL
        GROUP BY spotify_episode_id ORDER BY spotify_episode_id""", [show]))


@dataclass
class Written:
    html: Path
    csv: dict[str, Path] = field(default_factory=dict)
    summary: str = ""
    charts: int = 0


def episode_label(title: str | None, release_date: Any) -> str:
    """What a chart or table calls an episode (some have no title)."""
    return title if title else f"Untitled ({release_date})"


def fmt(value: Any, decimals: int = 0) -> str:
    """How a number appears in the report's tables (the tests format SQL results the same)."""
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{value:,.{decimals}f}"
    return str(value)


def _table(table_id: str, headers: list[str], rows: list[list[str]], note: str = "",
           text_column: int = 0) -> str:
    """Numbers right-aligned; ``text_column`` (the episode) left-aligned and allowed to wrap."""
    def cell(tag: str, i: int, value: str) -> str:
        cls = " class='text'" if i == text_column else ""
        return f"<{tag}{cls}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    caption = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return (f"<table id='{table_id}' class='data'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{caption}")


def _figure(fig: go.Figure, div_id: str, height: int = 380) -> str:
    fig.update_layout(height=height, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      template="plotly_white", legend={"orientation": "h", "y": -0.15})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=PLOT_CONFIG)


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts = 0

    def chart(self, fig: go.Figure, div_id: str, height: int = 380) -> None:
        self.charts += 1
        self.parts.append(_figure(fig, div_id, height))

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)


def _daily_bars(rows: Rows) -> tuple[list[str], go.Figure]:
    """The days, and a figure with Spotify plays and OP3 downloads as bars side by side."""
    days = [r["day"].isoformat() for r in rows]
    fig = go.Figure()
    fig.add_bar(x=days, y=[r["spotify_plays"] for r in rows], name="Spotify plays",
                marker_color=SPOTIFY, opacity=0.55)
    fig.add_bar(x=days, y=[r["op3_downloads"] for r in rows], name="OP3 downloads",
                marker_color=OP3, opacity=0.55)
    return days, fig


def _daily(page: _Page, con: duckdb.DuckDBPyConnection, show: str, sid: str) -> None:
    rows = q_daily(con, show)
    page.add("<h2>Daily listening</h2>")
    if not rows:
        page.add("<p class='empty'>No daily numbers yet.</p>")
        return
    days, fig = _daily_bars(rows)
    if any(r["all_platform_plays_and_downloads"] is not None for r in rows):
        fig.add_scatter(x=days, y=[r["all_platform_plays_and_downloads"] for r in rows],
                        name="All platforms: plays + downloads", mode="lines+markers",
                        line_color=ALL_PLATFORMS)
    fig.add_scatter(x=days, y=[r["spotify_plays_avg_7d"] for r in rows],
                    name="Spotify, 7-day average", mode="lines", line_color=SPOTIFY)
    fig.add_scatter(x=days, y=[r["op3_downloads_avg_7d"] for r in rows],
                    name="OP3, 7-day average", mode="lines", line_color=OP3)
    fig.update_layout(barmode="group", yaxis_title="per UTC day")
    page.chart(fig, f"daily-{sid}")
    totals = [q_totals(con, show, n) for n in (7, 28)]
    page.add(_table(f"totals-{sid}", ["Days", "Up to", "Spotify plays", "OP3 downloads"],
                    [[str(t["days"]), fmt(t["last_day"]), fmt(t["spotify_plays"]),
                      fmt(t["op3_downloads"])] for t in totals],
                    "Sums over the last 7 and 28 days the warehouse holds (fewer where it holds "
                    "fewer); — = no data."))


def _network(page: _Page, con: duckdb.DuckDBPyConnection, shows: Rows) -> None:
    """The whole network: its daily totals, and each show's share of the last 28 days."""
    page.add(f"<section class='show' id='network'><h1>The network: {len(shows)} shows</h1>")
    rows = q_network_daily(con)
    if rows:
        _, fig = _daily_bars(rows)
        fig.update_layout(barmode="group", yaxis_title="per UTC day, all shows")
        page.chart(fig, "daily-network")
    week, month = q_network_totals(con, 7), q_network_totals(con, 28)
    total = ["All shows", "", *(fmt(sum(r[c] or 0 for r in t)) for t in (week, month)
                                for c in ("spotify_plays", "op3_downloads"))]
    page.add(_table("network-totals", ["Show", "Spotify account", "Spotify plays 7d",
                                       "OP3 downloads 7d", "Spotify plays 28d",
                                       "OP3 downloads 28d"],
                    [[w["name"], w["spotify_account"] or "—", fmt(w["spotify_plays"]),
                      fmt(w["op3_downloads"]), fmt(m["spotify_plays"]),
                      fmt(m["op3_downloads"])] for w, m in zip(week, month, strict=True)]
                    + [total],
                    "Sums over the network's last 7 and 28 days (the same days for every "
                    "show); — = no data. Each show's own section follows."))
    page.add("</section>")


def _launch(page: _Page, con: duckdb.DuckDBPyConnection, show: str, sid: str) -> None:
    page.add("<h2>Episode launches: the first days after release</h2>")
    chart = q_launch_chart(con, show)
    if chart:
        labels = [episode_label(r["title"], r["release_date"]) for r in chart]
        fig = go.Figure()
        fig.add_bar(x=labels, y=[r["spotify_plays_7d"] for r in chart],
                    name="Spotify plays, first 7 days", marker_color=SPOTIFY)
        fig.add_bar(x=labels, y=[r["op3_downloads_7d"] for r in chart],
                    name="OP3 downloads, first 7 days", marker_color=OP3)
        fig.update_layout(barmode="group")
        page.chart(fig, f"launch-{sid}")
    else:
        page.add("<p class='empty'>No episode has 7 days of data since its release yet.</p>")
    rows = q_launch(con, show)
    page.add(_table(
        f"launch-table-{sid}",
        ["Episode", "Released", "Spotify 1d", "7d", "30d", "90d", "OP3 1d", "7d", "30d", "90d",
         "Spotify rank 7d", "OP3 rank 7d"],
        [[episode_label(r["title"], r["release_date"]), fmt(r["release_date"]),
          *(fmt(r[c]) for c in ("spotify_plays_1d", "spotify_plays_7d", "spotify_plays_30d",
                                "spotify_plays_90d", "op3_downloads_1d", "op3_downloads_7d",
                                "op3_downloads_30d", "op3_downloads_90d", "spotify_rank_7d",
                                "op3_rank_7d"))] for r in rows],
        "Day 1 is the release day (UTC). — = the stored data does not cover the whole "
        "horizon yet (the episode is younger, or was released before the data starts)."))


def _top(page: _Page, con: duckdb.DuckDBPyConnection, show: str, sid: str) -> None:
    page.add("<h2>Top episodes</h2>")
    rows = q_top(con, show)
    if not rows:
        page.add("<p class='empty'>No episodes yet.</p>")
        return
    labels = [episode_label(r["title"], r["release_date"]) for r in rows]
    fig = go.Figure()
    fig.add_bar(y=labels, x=[r["spotify_plays"] for r in rows], orientation="h",
                name="Spotify plays to date", marker_color=SPOTIFY)
    fig.add_bar(y=labels, x=[r["op3_downloads"] for r in rows], orientation="h",
                name="OP3 downloads stored", marker_color=OP3)
    fig.update_layout(barmode="group", yaxis={"autorange": "reversed"})
    page.chart(fig, f"top-{sid}", height=120 + 45 * len(rows))
    page.add(_table(
        f"top-table-{sid}",
        ["Rank", "Episode", "Released", "Spotify plays", "OP3 downloads", "Avg listen (s)",
         "Median listen (s)", "Still listening at half (%)", "At the end (%)"],
        [[fmt(r["spotify_rank"]), episode_label(r["title"], r["release_date"]),
          fmt(r["release_date"]), fmt(r["spotify_plays"]), fmt(r["op3_downloads"]),
          fmt(r["average_listen_seconds"]), fmt(r["median_listen_seconds"]),
          fmt(r["still_listening_at_50pct"]), fmt(r["still_listening_at_100pct"])]
         for r in rows],
        "Spotify plays are lifetime totals; OP3 downloads count the days stored in the "
        "warehouse.", text_column=1))


def _mix(page: _Page, con: duckdb.DuckDBPyConnection, show: str, sid: str) -> None:
    page.add("<h2>Audience mix</h2><p class='note'>Share of Spotify plays and of OP3 downloads "
             f"over the days the warehouse holds (the {MIX_VALUES} biggest per chart). Spotify "
             "reports countries for all time only, as names (OP3: ISO codes); the two name "
             "devices differently.</p><div class='grid'>")
    for dim in DIMENSIONS:
        rows = q_mix(con, show, dim)
        if not rows:
            continue
        values = [r["value"] for r in rows]
        fig = go.Figure()
        if any(r["spotify_percent"] is not None for r in rows):
            fig.add_bar(x=values, y=[r["spotify_percent"] for r in rows], name="Spotify %",
                        marker_color=SPOTIFY)
        if any(r["op3_percent"] is not None for r in rows):
            fig.add_bar(x=values, y=[r["op3_percent"] for r in rows], name="OP3 %",
                        marker_color=OP3)
        fig.update_layout(barmode="group", title=dim.capitalize(), yaxis_title="%")
        page.add("<div class='cell'>")
        page.chart(fig, f"mix-{dim}-{sid}", height=340)
        page.add("</div>")
    page.add("</div>")


def _retention(page: _Page, con: duckdb.DuckDBPyConnection, show: str, sid: str) -> None:
    page.add("<h2>Retention: how far into an episode people listen</h2>")
    rows = q_retention(con, show)
    if not rows:
        page.add("<p class='empty'>No retention curves yet.</p>")
        return
    fig = go.Figure()
    for r in rows:
        fig.add_scatter(x=r["minutes"], y=r["percent"], mode="lines",
                        name=episode_label(r["title"], r["release_date"]))
    fig.update_layout(xaxis_title="minutes into the episode",
                      yaxis_title="% of listeners who started", legend={"orientation": "v"})
    page.chart(fig, f"retention-{sid}", height=460)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f6f8}
main{max-width:1150px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
section.show{background:#fff;border-radius:12px;padding:8px 24px 24px;margin:24px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
table.data{border-collapse:collapse;font-size:14px;margin-top:8px;width:100%}
table.data th,table.data td{border-bottom:1px solid #eee;padding:4px 8px;text-align:right;
white-space:nowrap}
table.data th{white-space:normal;vertical-align:bottom}
table.data .text{text-align:left;white-space:normal;min-width:14em}
.note,.empty{color:#666;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}
"""


def render(con: duckdb.DuckDBPyConnection) -> tuple[str, int, str]:
    """(the HTML page, how many charts it has, a markdown summary)."""
    missing = models.missing(con)
    if missing:
        raise ModelsMissing(
            f"the analytics models {', '.join(missing)} do not exist in this database yet: "
            "materialize them first (`dagster asset materialize -m podcast_pipeline.definitions "
            "--select 'group:analytics'`, or `podcast-pipeline report --build-models`)")
    page = _Page()
    summary = []
    shows = q_shows(con)
    if len(shows) > 1:
        _network(page, con, shows)
    for i, s in enumerate(shows):
        show, sid = s["show_id"], f"s{i}"
        page.add(f"<section class='show' id='show-{sid}'><h1>{html.escape(s['title'])}</h1>"
                 f"<p class='note'>show id {html.escape(show)}</p>")
        _daily(page, con, show, sid)
        _launch(page, con, show, sid)
        _top(page, con, show, sid)
        _mix(page, con, show, sid)
        _retention(page, con, show, sid)
        page.add("</section>")
        week = q_totals(con, show, 7)
        top = q_top(con, show)
        summary.append(
            f"**{s['title']}**: last {week['days']} days up to {fmt(week['last_day'])}: "
            f"{fmt(week['spotify_plays'])} Spotify plays, {fmt(week['op3_downloads'])} OP3 "
            "downloads" + (f"; top episode {episode_label(top[0]['title'], top[0]['release_date'])}"
                           f" ({fmt(top[0]['spotify_plays'])} Spotify plays)" if top else ""))
    if not shows:
        page.add("<section class='show'><p class='empty'>No show has data yet: run the daily "
                 "refresh (or the demo) first.</p></section>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Podcast listening report</title>"
        f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body><main>"
        f"<p class='note'>Podcast listening report, generated {generated} from the warehouse's "
        "analytics models. The same tables are in the CSV files beside this file.</p>"
        + "".join(page.parts) + "</main></body></html>")
    return doc, page.charts, "\n\n".join(summary) or "No show has data yet."


def _atomic_write(path: Path, data: str) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(con: duckdb.DuckDBPyConnection, out_dir: Path) -> Written:
    """Write ``report.html`` and one ``<model>.csv`` per model into ``out_dir``."""
    doc, charts, summary = render(con)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written(html=(out_dir / HTML_NAME).resolve(), summary=summary, charts=charts)
    for model in models.MODELS:
        path = (out_dir / f"{model.name}.csv").resolve()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            con.table(model.qualified).write_csv(str(tmp), header=True)
            os.replace(tmp, path)  # a reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
        written.csv[model.name] = path
    _atomic_write(written.html, doc)
    return written


def run_report(database: str | None, out_dir: str | None, *, build_models: bool = False
               ) -> Written:
    """``podcast-pipeline report``: open the warehouse (``database``: that DuckDB file, else
    the configured one, the file or DuckLake; read-only unless the models are to be rebuilt)
    and write the report."""
    from podcast_pipeline import warehouse
    from podcast_pipeline.settings import Settings

    settings = Settings.load()
    target = database or settings.warehouse_target()
    if isinstance(target, str) and not Path(target).expanduser().is_file():
        raise ReportError(f"{target} does not exist: run the pipeline (or `podcast-pipeline "
                          "demo`) first, or pass --database")
    # The folder is named after the DuckDB file; with DuckLake, after DUCKDB_PATH as well.
    target_dir = Path(out_dir).expanduser() if out_dir else report_dir(
        target if isinstance(target, str) else settings.duckdb_path)
    with contextlib.ExitStack() as stack:
        try:
            con = stack.enter_context(warehouse.reader(target, read_only=not build_models))
        except duckdb.IOException as exc:
            raise ReportError(f"cannot open {warehouse.describe(target)}: {exc}. Wait for the "
                              "running pipeline step to finish, or report from a copy of the "
                              "file") from None
        except warehouse.WarehouseWriteError as exc:  # DuckLake's catalog is unreachable
            raise ReportError(str(exc)) from None
        if build_models:
            models.build_all(con)
        return write_report(con, target_dir)
