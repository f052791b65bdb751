"""The analytics models over a real demo database: every number equals a hand-written sum
over the raw tables, horizons the data does not cover are NULL, the episode-matching rules
fall back as documented, and the README's example queries run."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline.analytics import assets as analytics_assets
from podcast_pipeline.analytics import models
from podcast_pipeline_tests.analytics_demo import DemoRun, clean_demo  # noqa: F401

# The first test here may build the session's demo database (a 40-day demo): more than the
# default per-test timeout on a busy machine.
pytestmark = pytest.mark.timeout(1200)

REPO = Path(__file__).resolve().parents[1]
HORIZONS = (1, 7, 30, 90)


@pytest.fixture
def con(clean_demo: DemoRun) -> Iterator[duckdb.DuckDBPyConnection]:  # noqa: F811
    c = duckdb.connect(str(clean_demo.db), read_only=True)
    yield c
    c.close()


@pytest.fixture
def scratch(clean_demo: DemoRun, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:  # noqa: F811
    """A writable copy of the demo database to tamper with."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy(clean_demo.db, copy)
    c = duckdb.connect(str(copy))
    yield c
    c.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def test_the_demo_built_every_model_and_the_report(clean_demo: DemoRun):  # noqa: F811
    assert all(o.success for o in clean_demo.outcomes), clean_demo.output[-3000:]
    for model in models.MODELS:
        meta = clean_demo.materializations[f"analytics/{model.name}"]
        with duckdb.connect(str(clean_demo.db), read_only=True) as c:
            (n,) = c.execute(f"SELECT count(*) FROM {model.qualified}").fetchone()
        assert meta["dagster/row_count"] == n > 0, model.name
        assert [col.name for col in meta["dagster/column_schema"].columns] == [
            col.name for col in model.columns]
    assert "analytics/report" in clean_demo.materializations
    assert "Report: " in clean_demo.output


def test_each_table_has_exactly_the_declared_columns(con: duckdb.DuckDBPyConnection):
    for model in models.MODELS:
        got = rows(con, "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'analytics' AND table_name = ? "
                        "ORDER BY ordinal_position", model.name)
        spelled = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}  # DuckDB's own name for it
        assert got == [(c.name, spelled.get(c.type, c.type)) for c in model.columns], model.name
        assert all(len(c.description) > 10 for c in model.columns)


def test_daily_listening_equals_sums_over_the_raw_tables(con: duckdb.DuckDBPyConnection):
    (show,) = rows(con, "SELECT show_id FROM analytics.shows")[0]
    plays = dict(rows(con, "SELECT date, sum(plays) FROM anchor.plays GROUP BY date"))
    downloads = dict(rows(con, "SELECT date, count(*) FROM op3.downloads GROUP BY date"))
    # All platforms: the day's sum of Spotify's per-episode plays + downloads (GraphQL backend).
    everywhere = dict(rows(con, "SELECT partition_date, sum(plays_and_downloads) "
                                "FROM spotify.episode_daily_totals GROUP BY 1"))
    got = rows(con, "SELECT day, spotify_plays, op3_downloads, spotify_plays_avg_7d, "
                    "op3_downloads_avg_28d, all_platform_plays_and_downloads "
                    "FROM analytics.daily_listening WHERE show_id = ? ORDER BY day", show)
    days = [r[0] for r in got]
    assert days[0] == min(plays) and days[-1] == max(plays)
    assert days == [days[0] + timedelta(days=k) for k in range(len(days))]  # no day skipped
    assert everywhere and set(everywhere) <= set(days)  # the demo's default backend stores them
    for i, (day, sp, op, avg7, op_avg28, all_platform) in enumerate(got):
        assert sp == plays[day]
        assert op == downloads.get(day, 0)
        assert all_platform == everywhere.get(day)
        if i < 6:
            assert avg7 is None  # the window is not complete
        else:
            assert avg7 == pytest.approx(sum(plays[d] for d in days[i - 6:i + 1]) / 7)
        if i < 27:
            assert op_avg28 is None
        else:
            assert op_avg28 == pytest.approx(sum(downloads.get(d, 0) for d in days[i - 27:i + 1]) / 28)


def _expected_launch(con: duckdb.DuckDBPyConnection, table: str, id_col: str, episode: object,
                     release: date, horizon: int, count: str) -> int | None:
    lo, hi = rows(con, f"SELECT min(partition_date), max(partition_date) FROM {table}")[0]
    if release < lo or release + timedelta(days=horizon - 1) > hi:
        return None
    (n,) = rows(con, f"SELECT coalesce({count}, 0) FROM {table} WHERE {id_col} = ? "
                     "AND date BETWEEN ? AND ?", episode, release,
                release + timedelta(days=horizon - 1))[0]
    return n


def test_episode_launch_counts_equal_hand_sums_and_are_null_beyond_the_data(
        con: duckdb.DuckDBPyConnection):
    launch = rows(con, "SELECT spotify_episode_id, op3_episode_id, release_date, "
                       + ", ".join(f"spotify_plays_{h}d, op3_downloads_{h}d" for h in HORIZONS)
                       + " FROM analytics.episode_launch")
    assert len(launch) == 12
    filled = {h: 0 for h in HORIZONS}
    for sid, oid, release, *values in launch:
        for i, h in enumerate(HORIZONS):
            sp, op = values[2 * i], values[2 * i + 1]
            assert sp == _expected_launch(con, "anchor.episode_plays", "episode_id", sid,
                                          release, h, "sum(plays)"), (sid, h)
            assert op == _expected_launch(con, "op3.downloads", "episode_id", oid, release, h,
                                          "count(*)"), (oid, h)
            filled[h] += sp is not None
    # A 40-day window: several first weeks, one first month, no first 90 days.
    assert filled[1] >= 3 and filled[7] >= 2 and filled[30] >= 1 and filled[90] == 0
    # The newest episode (released today) has no complete day: every horizon is NULL.
    newest = max(launch, key=lambda r: r[2])
    assert newest[3:] == (None,) * 8


def test_episode_launch_ranks_order_the_show_episodes(con: duckdb.DuckDBPyConnection):
    for h in HORIZONS:
        got = rows(con, f"SELECT spotify_plays_{h}d, spotify_rank_{h}d FROM analytics.episode_launch")
        values = sorted((v for v, _ in got if v is not None), reverse=True)
        for v, rank in got:
            assert rank == (None if v is None else values.index(v) + 1)


def test_episode_leaderboard_matches_the_snapshots_and_the_retention_curve(
        con: duckdb.DuckDBPyConnection):
    board = rows(con, "SELECT spotify_episode_id, op3_episode_id, spotify_plays, op3_downloads, "
                      "median_listen_seconds, still_listening_at_50pct, average_listen_seconds, "
                      "spotify_rank, match_rule FROM analytics.episode_leaderboard")
    lifetime = dict(rows(con, "SELECT episode_id, plays FROM anchor.total_plays_by_episode"))
    downloads = dict(rows(con, "SELECT episode_id, count(*) FROM op3.downloads GROUP BY 1"))
    metrics = {(e, m): v for e, m, v in rows(
        con, "SELECT episode_id, metric, value FROM anchor.episode_aggregated_performance")}
    assert len(board) == 12 and all(r[8] == "audio_url" for r in board)
    for sid, oid, plays, dl, median, p50, avg, rank, _ in board:
        assert plays == lifetime[sid]
        assert dl == downloads.get(oid, 0)
        assert p50 == metrics[(sid, "percentile50")]
        assert avg == metrics.get((sid, "averageListenSeconds"))  # the REST API's only
        curve = [n for (n,) in rows(con, "SELECT listeners FROM anchor.episode_performance "
                                         "WHERE episode_id = ? ORDER BY sample_second", sid)]
        if curve and curve[0] > 0:
            half = next((t for t, n in enumerate(curve) if 2 * n <= curve[0]), len(curve))
            assert median == half
        assert rank == sorted(lifetime.values(), reverse=True).index(plays) + 1


def test_audience_mix_counts_are_fractions_times_plays_beside_op3_counts(
        con: duckdb.DuckDBPyConnection):
    plays = dict(rows(con, "SELECT date, plays FROM anchor.plays"))
    for dim, table, col in (("app", "plays_by_app", "app"), ("age", "plays_by_age_range", "age_range"),
                            ("gender", "plays_by_gender", "gender"), ("device", "plays_by_device", "device")):
        raw = {(d, v): f for d, v, f in rows(con, f"SELECT partition_date, {col}, fraction FROM anchor.{table}")}
        got = rows(con, "SELECT date, value, spotify_count, spotify_fraction FROM analytics.audience_mix "
                        "WHERE dimension = ? AND period = 'day' AND spotify_fraction IS NOT NULL", dim)
        assert len(got) == len(raw) > 0
        for day, value, count, fraction in got:
            assert fraction == raw[(day, value)]
            assert count == pytest.approx(raw[(day, value)] * plays[day])
    for dim, col in (("app", "agent_name"), ("device", "device_name"), ("country", "country_code")):
        raw_op3 = {(d, v or "Unknown"): n for d, v, n in rows(
            con, f"SELECT date, {col}, count(*) FROM op3.downloads GROUP BY ALL")}
        got = {(d, v): (n, f) for d, v, n, f in rows(
            con, "SELECT date, value, op3_count, op3_fraction FROM analytics.audience_mix "
                 "WHERE dimension = ? AND op3_count IS NOT NULL", dim)}
        assert {k: n for k, (n, _) in got.items()} == raw_op3
        for (day, value), (_, fraction) in got.items():
            total = sum(n for (d, _), n in raw_op3.items() if d == day)
            assert fraction == pytest.approx(raw_op3[(day, value)] / total)
    # Spotify's countries are all-time: the geo snapshot times lifetime plays.
    (lifetime,) = rows(con, "SELECT plays FROM anchor.total_plays")[0]
    geo = dict(rows(con, "SELECT geo, fraction FROM anchor.plays_by_geo"))
    got = rows(con, "SELECT value, spotify_count FROM analytics.audience_mix "
                    "WHERE period = 'all_time' AND dimension = 'country'")
    assert {v for v, _ in got} == set(geo)
    for value, count in got:
        assert count == pytest.approx(geo[value] * lifetime)


def test_episode_retention_is_a_percentage_of_the_start(con: duckdb.DuckDBPyConnection):
    (n,) = rows(con, "SELECT count(*) FROM anchor.episode_performance")[0]
    (m,) = rows(con, "SELECT count(*) FROM analytics.episode_retention")[0]
    assert n == m > 1000
    bad = rows(con, """
        SELECT r.spotify_episode_id, r.sample_second FROM analytics.episode_retention r
        JOIN anchor.episode_performance p
          ON p.episode_id = r.spotify_episode_id AND p.sample_second = r.sample_second
        JOIN anchor.episode_performance s
          ON s.episode_id = p.episode_id AND s.sample_second = 0
        WHERE abs(r.percent_of_start - 100.0 * p.listeners / s.listeners) > 1e-9""")
    assert bad == []
    assert rows(con, "SELECT DISTINCT percent_of_start FROM analytics.episode_retention "
                     "WHERE sample_second = 0") == [(100.0,)]


def _rebuild_map(con: duckdb.DuckDBPyConnection) -> dict[object, tuple]:
    models.build(con, models.EPISODE_MAP)
    return {r[0]: r[1:] for r in rows(
        con, "SELECT coalesce(CAST(spotify_episode_id AS VARCHAR), op3_episode_id), "
             "op3_episode_id, match_rule FROM analytics.episode_map")}


def test_episode_matching_falls_back_from_audio_url_to_title_to_publish_time(
        scratch: duckdb.DuckDBPyConnection):
    truth = {str(s): o for s, o in rows(scratch, "SELECT spotify_episode_id, op3_episode_id "
                                                 "FROM analytics.episode_map")}
    untitled = rows(scratch, "SELECT CAST(episode_id AS VARCHAR) FROM anchor.episodes "
                             "WHERE title IS NULL AND publish_on IS NOT NULL")[0][0]
    assert set(_rebuild_map(scratch).values()) == {(o, "audio_url") for o in truth.values()}

    # Without audio URLs, titled episodes match by title, the untitled one by publish time.
    scratch.execute("UPDATE anchor.episode_metadata SET audio_url = NULL")
    scratch.execute("UPDATE anchor.episodes SET download_url = NULL")
    got = _rebuild_map(scratch)
    assert {k: v[0] for k, v in got.items()} == truth  # the same pairs
    assert {k for k, v in got.items() if v[1] == "publish_time"} == {untitled}
    assert {v[1] for k, v in got.items() if k != untitled} == {"title"}

    # The OP3 download URL (prefix + URL-encoded enclosure) ends with the audio URL.
    scratch.execute("UPDATE op3.show SET item_guid = NULL")
    sid, oid, url = rows(scratch, "SELECT CAST(m.spotify_episode_id AS VARCHAR), d.episode_id, "
                                  "url_decode(any_value(d.url)) FROM op3.downloads d "
                                  "JOIN analytics.episode_map m ON m.op3_episode_id = d.episode_id "
                                  "GROUP BY ALL LIMIT 1")[0]
    scratch.execute("UPDATE anchor.episode_metadata SET audio_url = ? WHERE episode_id = ?",
                    ["https://" + url.split("https://")[-1], int(sid)])
    assert _rebuild_map(scratch)[sid] == (oid, "audio_url")


def test_ambiguous_or_far_apart_episodes_are_listed_unmatched(scratch: duckdb.DuckDBPyConnection):
    scratch.execute("UPDATE anchor.episode_metadata SET audio_url = NULL")
    scratch.execute("UPDATE anchor.episodes SET download_url = NULL")
    a, b = rows(scratch, "SELECT spotify_episode_id, op3_episode_id FROM analytics.episode_map "
                         "WHERE spotify_title IS NOT NULL ORDER BY release_date LIMIT 2")
    # Two episodes share one title on both sides: the title pairs them 2 x 2, not one to one,
    # so the publish time decides for both.
    scratch.execute("UPDATE op3.show SET episode_title = 'Same title' WHERE episode_id IN (?, ?)",
                    [a[1], b[1]])
    scratch.execute("UPDATE anchor.episodes SET title = 'Same  title' WHERE episode_id IN (?, ?)",
                    [a[0], b[0]])
    got = _rebuild_map(scratch)
    assert got[str(a[0])] == (a[1], "publish_time") and got[str(b[0])] == (b[1], "publish_time")
    # One of them also published two hours away on OP3: nothing pairs it any more.
    scratch.execute("UPDATE op3.show SET pubdate = pubdate + INTERVAL 2 HOUR WHERE episode_id = ?",
                    [a[1]])
    got = _rebuild_map(scratch)
    assert got[str(a[0])] == (None, None)  # Spotify only
    assert got[a[1]] == (a[1], None)  # OP3 only
    listed = analytics_assets._unmatched(scratch)
    assert {(u["side"], u["id"]) for u in listed} == {("Spotify only", str(a[0])),
                                                      ("OP3 only", a[1])}


def readme_analytics_queries() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Analytics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_readme_example_queries_run_and_return_rows(con: duckdb.DuckDBPyConnection):
    queries = readme_analytics_queries()
    assert len(queries) >= len(models.MODELS)
    for model in models.MODELS:
        assert any(model.qualified in q for q in queries), f"no README example for {model.name}"
    for q in queries:
        assert con.execute(q).fetchall(), q


def test_model_assets_sit_downstream_of_the_raw_tables_with_automation():
    from podcast_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    for model in models.MODELS:
        node = graph.get(dg.AssetKey(["analytics", model.name]))
        assert node.parent_keys == {dg.AssetKey(d.split(".")) for d in model.deps}
        assert node.automation_condition is not None
        assert node.partitions_def is None
    report = graph.get(analytics_assets.REPORT_KEY)
    assert report.parent_keys == {dg.AssetKey(["analytics", m.name]) for m in models.MODELS}
    sensor = defs.resolve_sensor_def("analytics_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {s.name for s in defs.resolve_all_job_defs()} >= {"daily_refresh", "analytics"}
