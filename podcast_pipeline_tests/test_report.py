"""The report as a podcaster sees it: the demo's report.html opened in headless Chromium
(Debian's ``chromium``) with the network cut off. Its charts drew, the page is not blank, and
every number in a chart or table equals a SQL query of the model it shows."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from PIL import Image

from podcast_pipeline.analytics import models
from podcast_pipeline.analytics.report import HTML_NAME, MIX_VALUES, episode_label, fmt
from podcast_pipeline_tests.analytics_demo import DemoRun, clean_demo  # noqa: F401

# The first test here may build the session's demo database (a 40-day demo): more than the
# default per-test timeout on a busy machine.
pytestmark = pytest.mark.timeout(1200)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
LOAD_TIMEOUT_MS = 60_000

COLLECT_JS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
    id: gd.id,
    svgs: gd.querySelectorAll('svg.main-svg').length,
    marks: [...gd.querySelectorAll('g.point path, path.js-line')]
             .filter(p => (p.getAttribute('d') || '').length > 10).length,
    traces: gd.data.map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])})),
  }));
  const tables = [...document.querySelectorAll('table.data')].map(t => ({
    id: t.id,
    rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent)),
  }));
  return {plots, tables};
}"""


@dataclass
class Seen:
    plots: dict[str, dict[str, Any]]
    tables: dict[str, list[list[str]]]
    screenshot: bytes
    blocked: list[str]


@pytest.fixture(scope="module")
def report_path(clean_demo: DemoRun) -> Path:  # noqa: F811
    path = Path(clean_demo.materializations["analytics/report"]["path"])
    assert path.name == HTML_NAME and path.is_file()
    return path


@pytest.fixture(scope="module")
def seen(report_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Seen:
    if not CHROMIUM.exists():
        pytest.fail("this test opens the report in Debian's chromium: apt-get install -y chromium "
                    "(.ci/run does it)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:  # offline means offline: nothing may be fetched
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_local)
            page.goto(report_path.as_uri(), timeout=LOAD_TIMEOUT_MS)
            page.wait_for_function(
                "() => { const p = document.querySelectorAll('.js-plotly-plot');"
                " return p.length > 0 && [...p].every(g => g.querySelector('svg.main-svg')); }",
                timeout=LOAD_TIMEOUT_MS)
            data = page.evaluate(COLLECT_JS)
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    (tmp_path_factory.mktemp("report_shot") / "report.png").write_bytes(shot)
    return Seen({p["id"]: p for p in data["plots"]}, {t["id"]: t["rows"] for t in data["tables"]},
                shot, blocked)


@pytest.fixture
def con(clean_demo: DemoRun) -> Iterator[duckdb.DuckDBPyConnection]:  # noqa: F811
    c = duckdb.connect(str(clean_demo.db), read_only=True)
    yield c
    c.close()


def trace(seen: Seen, plot: str, name: str) -> dict[str, Any]:
    (t,) = [t for t in seen.plots[plot]["traces"] if t["name"] == name]
    return t


def same(got: list[Any], want: list[Any]) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None) or (g is not None and w is not None and g == pytest.approx(w))
        for g, w in zip(got, want, strict=True))


def test_the_report_opens_offline_and_every_chart_drew(seen: Seen, clean_demo: DemoRun):  # noqa: F811
    assert seen.blocked == []
    assert len(seen.plots) == clean_demo.materializations["analytics/report"]["charts"] >= 9
    for plot_id, plot in seen.plots.items():
        assert plot["svgs"] >= 1 and plot["marks"] >= 1, plot_id
    image = Image.open(io.BytesIO(seen.screenshot)).convert("RGB")
    assert image.height > 3000  # the whole page, every section
    colors = image.getcolors(maxcolors=1 << 24)
    assert colors is not None and len(colors) > 200
    background = max(colors)[1]
    drawn = sum(n for n, c in colors if c != background)
    assert drawn / (image.width * image.height) > 0.1


def test_daily_listening_chart_and_totals_equal_the_model(seen: Seen, con: duckdb.DuckDBPyConnection):
    rows = con.execute("SELECT day, spotify_plays, op3_downloads, spotify_plays_avg_7d, "
                       "op3_downloads_avg_7d, all_platform_plays_and_downloads "
                       "FROM analytics.daily_listening ORDER BY day").fetchall()
    days = [r[0].isoformat() for r in rows]
    assert any(r[5] is not None for r in rows)  # so the all-platform line is drawn
    for name, col in (("Spotify plays", 1), ("OP3 downloads", 2), ("Spotify, 7-day average", 3),
                      ("OP3, 7-day average", 4), ("All platforms: plays + downloads", 5)):
        t = trace(seen, "daily-s0", name)
        assert t["x"] == days and same(t["y"], [r[col] for r in rows]), name
    want = []
    for n in (7, 28):
        last = rows[-n:]
        want.append([str(len(last)), fmt(last[-1][0]), fmt(sum(r[1] for r in last)),
                     fmt(sum(r[2] for r in last))])
    assert seen.tables["totals-s0"] == want


def test_launch_comparison_equals_the_model(seen: Seen, con: duckdb.DuckDBPyConnection):
    chart = con.execute("SELECT title, release_date, spotify_plays_7d, op3_downloads_7d "
                        "FROM analytics.episode_launch WHERE spotify_plays_7d IS NOT NULL "
                        "OR op3_downloads_7d IS NOT NULL ORDER BY release_date").fetchall()
    assert len(chart) >= 2
    labels = [episode_label(t, d) for t, d, _, _ in chart]
    sp, op = (trace(seen, "launch-s0", "Spotify plays, first 7 days"),
              trace(seen, "launch-s0", "OP3 downloads, first 7 days"))
    assert sp["x"] == labels and same(sp["y"], [r[2] for r in chart])
    assert op["x"] == labels and same(op["y"], [r[3] for r in chart])
    table = con.execute("SELECT title, release_date, spotify_plays_1d, spotify_plays_7d, "
                        "spotify_plays_30d, spotify_plays_90d, op3_downloads_1d, op3_downloads_7d, "
                        "op3_downloads_30d, op3_downloads_90d, spotify_rank_7d, op3_rank_7d "
                        "FROM analytics.episode_launch ORDER BY release_date DESC, title").fetchall()
    assert seen.tables["launch-table-s0"] == [
        [episode_label(r[0], r[1]), *(fmt(v) for v in r[1:])] for r in table]
    assert any(cell == "—" for row in seen.tables["launch-table-s0"] for cell in row)


def test_top_episodes_equal_the_leaderboard(seen: Seen, con: duckdb.DuckDBPyConnection):
    top = con.execute("SELECT spotify_rank, title, release_date, spotify_plays, op3_downloads, "
                      "average_listen_seconds, median_listen_seconds, still_listening_at_50pct, "
                      "still_listening_at_100pct FROM analytics.episode_leaderboard "
                      "ORDER BY spotify_rank LIMIT 10").fetchall()
    labels = [episode_label(r[1], r[2]) for r in top]
    sp = trace(seen, "top-s0", "Spotify plays to date")
    op = trace(seen, "top-s0", "OP3 downloads stored")
    assert sp["y"] == labels and same(sp["x"], [r[3] for r in top])
    assert op["y"] == labels and same(op["x"], [r[4] for r in top])
    assert seen.tables["top-table-s0"] == [
        [fmt(r[0]), episode_label(r[1], r[2]), *(fmt(v) for v in r[2:])] for r in top]


def test_audience_mix_shares_equal_the_model(seen: Seen, con: duckdb.DuckDBPyConnection):
    for dim in ("app", "device", "country", "age", "gender"):
        spotify = dict(con.execute(
            "SELECT value, 100 * sum(spotify_count) / (SELECT sum(spotify_count) FROM "
            "analytics.audience_mix WHERE dimension = $1 AND period = 'day') "
            "FROM analytics.audience_mix WHERE dimension = $1 AND period = 'day' "
            "AND spotify_count IS NOT NULL GROUP BY value", [dim]).fetchall())
        if dim == "country":  # Spotify's countries are its all-time shares
            spotify = dict(con.execute(
                "SELECT value, 100 * spotify_fraction / sum(spotify_fraction) OVER () "
                "FROM analytics.audience_mix WHERE dimension = 'country' "
                "AND period = 'all_time'").fetchall())
        op3 = dict(con.execute(
            "SELECT value, 100.0 * sum(op3_count) / (SELECT sum(op3_count) FROM "
            "analytics.audience_mix WHERE dimension = $1) FROM analytics.audience_mix "
            "WHERE dimension = $1 AND op3_count IS NOT NULL GROUP BY value", [dim]).fetchall())
        plot = f"mix-{dim}-s0"
        names = {t["name"] for t in seen.plots[plot]["traces"]}
        assert names == ({"Spotify %"} | ({"OP3 %"} if op3 else set()))
        # The chart shows the biggest values (by both shares), each share of the whole.
        ranked = sorted(set(spotify) | set(op3),
                        key=lambda v: (-(spotify.get(v, 0) + op3.get(v, 0)), v))
        shown = ranked[:MIX_VALUES]
        for name, want in (("Spotify %", spotify), ("OP3 %", op3)):
            if name not in names:
                continue
            t = trace(seen, plot, name)
            assert t["x"] == shown, dim
            assert same(t["y"], [want.get(v) for v in shown]), (dim, name)


def test_retention_curves_equal_the_model(seen: Seen, con: duckdb.DuckDBPyConnection):
    episodes = con.execute("SELECT spotify_episode_id, any_value(title), any_value(release_date) "
                           "FROM analytics.episode_retention GROUP BY 1").fetchall()
    traces = seen.plots["retention-s0"]["traces"]
    assert len(traces) == len(episodes) >= 10
    for episode_id, title, release_date in episodes:
        curve = con.execute("SELECT sample_second, percent_of_start FROM analytics.episode_retention "
                            "WHERE spotify_episode_id = ? ORDER BY sample_second",
                            [episode_id]).fetchall()
        t = trace(seen, "retention-s0", episode_label(title, release_date))
        assert same(t["x"], [s / 60 for s, _ in curve]) and same(t["y"], [p for _, p in curve])


def test_csv_files_beside_the_report_hold_the_models(report_path: Path,
                                                      con: duckdb.DuckDBPyConnection):
    for model in models.MODELS:
        csv = pd.read_csv(report_path.with_name(f"{model.name}.csv"))
        table = con.execute(f"SELECT * FROM {model.qualified}").df()
        assert list(csv.columns) == [c.name for c in model.columns]
        assert len(csv) == len(table), model.name
        for c in model.columns:
            if c.type in ("BIGINT", "DOUBLE"):
                assert csv[c.name].sum() == pytest.approx(table[c.name].astype(float).sum()), c.name


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PODCAST_PIPELINE_", "DUCKDB_PATH", "DAGSTER_HOME"))}
    script = Path(sys.executable).with_name("podcast-pipeline")
    return subprocess.run([str(script), "report", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_report_command_writes_where_it_says(clean_demo: DemoRun, tmp_path: Path):  # noqa: F811
    db = tmp_path / "show.duckdb"
    shutil.copy(clean_demo.db, db)
    done = cli("--database", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    html = tmp_path / "show-report" / HTML_NAME
    assert f"Report: {html}" in done.stdout and "Spotify plays" in done.stdout
    assert html.stat().st_size > 1_000_000  # plotly.js is inside
    assert (tmp_path / "show-report" / "daily_listening.csv").is_file()

    with duckdb.connect(str(db)) as c:
        c.execute("DROP SCHEMA analytics CASCADE")
    refused = cli("--database", str(db), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert refused.returncode == 1 and "--build-models" in refused.stderr
    assert not (tmp_path / "r").exists()
    built = cli("--database", str(db), "--out", str(tmp_path / "r"), "--build-models", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    assert (tmp_path / "r" / HTML_NAME).is_file()
    missing = cli("--database", str(tmp_path / "nope.duckdb"), cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_the_report_asset_records_path_and_summary(clean_demo: DemoRun):  # noqa: F811
    meta = clean_demo.materializations["analytics/report"]
    assert meta["path"].endswith(HTML_NAME)
    assert "Spotify plays" in meta["summary"] and "OP3" in meta["summary"]
    assert f"Report: {meta['path']}" in clean_demo.output
