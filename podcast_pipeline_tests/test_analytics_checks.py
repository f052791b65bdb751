"""The raw-table asset checks: they pass on clean emulator data, a broken fraction fails its
blocking check and holds back exactly the models over it (in a run, in the automation
sensor's evaluation, and for a model started by hand), and each rule catches its bad data."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline.analytics import checks, quality
from podcast_pipeline.demo import ENV_KEYS, patched_env
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.tables import ALL_TABLES, TABLES_BY_KEY
from podcast_pipeline_tests.analytics_demo import DemoRun, broken_demo, clean_demo  # noqa: F401

# The first test here may build the session's demo database (a 40-day demo): more than the
# default per-test timeout on a busy machine.
pytestmark = pytest.mark.timeout(1200)

T = TABLES_BY_KEY


def test_every_check_passes_on_clean_emulator_data(clean_demo: DemoRun):  # noqa: F811
    expected = {f"{t.schema}/{t.name}:{r.name}" for t in ALL_TABLES for r in checks.rules_for(t)}
    ran = set(clean_demo.checks)
    assert expected <= ran, sorted(expected - ran)  # every rule ran in the demo's runs
    failed = {k: v["metadata"].get("summary") for k, v in clean_demo.checks.items()
              if not v["passed"]}
    assert failed == {}


def test_a_broken_fraction_fails_its_check_and_holds_back_the_models_over_it(
        broken_demo: DemoRun):  # noqa: F811
    check = broken_demo.checks["anchor/plays_by_app:fractions_sum_to_one"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    assert not check["passed"] and check["severity"] == dg.AssetCheckSeverity.ERROR
    assert check["metadata"]["summary"].startswith(f"fractions of {yesterday} sum to 1.25")
    assert yesterday.isoformat() in check["metadata"]["offending_rows"]
    # Only that check failed; the other apps' checks and the other tables passed.
    assert [k for k, v in broken_demo.checks.items() if not v["passed"]] == [
        "anchor/plays_by_app:fractions_sum_to_one"]

    failed_steps = {s for o in broken_demo.outcomes for s in o.failed_steps}
    assert failed_steps == {"anchor_plays_by_app_checks", "analytics__audience_mix"}
    built = set(broken_demo.materializations)
    assert "analytics/audience_mix" not in built and "analytics/report" not in built
    assert {"analytics/daily_listening", "analytics/episode_launch"} <= built
    blocked = broken_demo.failures["analytics__audience_mix"]
    assert "was not rebuilt" in blocked and "anchor/plays_by_app fractions_sum_to_one" in blocked
    assert "anchor/plays_by_app: checks" in broken_demo.output
    assert "FAILED: fractions_sum_to_one failed (blocking)" in broken_demo.output
    assert "(analytics) failed: analytics__audience_mix" in broken_demo.output
    with duckdb.connect(str(broken_demo.db), read_only=True) as con:
        tables = {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'analytics'").fetchall()}
    assert "audience_mix" not in tables and "daily_listening" in tables


def _requested(result: dg.AutomationResult | object) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size}


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # Dagster's own evaluation helper
def test_automation_rebuilds_models_when_inputs_change_but_not_over_a_failed_check(
        tmp_path: Path):
    """Dagster's own evaluation of the models' automation conditions, before and after the
    broken fraction is fixed."""
    from podcast_pipeline.definitions import build_definitions

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    keys = [dg.AssetKey(k.split("/")) for k in ("anchor/plays", "anchor/plays_by_app",
                                                 "op3/downloads")]
    tags = {"dagster/asset_partition_range_start": str(yesterday - timedelta(days=1)),
            "dagster/asset_partition_range_end": str(yesterday)}
    instance = dg.DagsterInstance.ephemeral()
    cursor = None
    results = []
    for broken in ("app", None):
        with Emulator(EmulatorConfig(seed=7, broken_fraction=broken)) as emu:
            env = {k: v for k, v in emu.env.items() if k in ENV_KEYS}
            env["DUCKDB_PATH"] = str(tmp_path / "auto.duckdb")
            with patched_env(env):
                defs = build_definitions()
                if cursor is None:  # the sensor's first tick: nothing new yet
                    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
                    assert _requested(first) == set()
                    cursor = first.cursor
                run = defs.resolve_job_def("daily_refresh").execute_in_process(
                    instance=instance, asset_selection=keys, tags=tags, raise_on_error=False)
                assert run.success is (broken is None)
                evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                               cursor=cursor)
                results.append(_requested(evaluation))
                # The sensor's next tick: what it requested counts as handled from here on
                # (the test runs none of it), and nothing new is requested.
                quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                          cursor=evaluation.cursor)
                assert _requested(quiet) == set()
                cursor = quiet.cursor
    held, fixed = results
    # Broken: every model whose inputs changed, except the one reading plays_by_app, and
    # not the report (a model it reads is held back).
    assert {"analytics/daily_listening", "analytics/shows"} <= held
    assert "analytics/audience_mix" not in held and "analytics/report" not in held
    # Fixed: audience_mix is rebuilt, and the report after it.
    assert {"analytics/audience_mix", "analytics/report", "analytics/daily_listening"} <= fixed


# ---- each rule on tampered copies of the clean demo database ----------------------------

@pytest.fixture
def scratch(clean_demo: DemoRun, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:  # noqa: F811
    copy = tmp_path / "copy.duckdb"
    shutil.copy(clean_demo.db, copy)
    con = duckdb.connect(str(copy))
    yield con
    con.close()


def test_negative_counts_are_found_with_their_day(scratch: duckdb.DuckDBPyConnection):
    assert quality.counts_non_negative(scratch, T["anchor.episode_plays"]).passed
    scratch.execute("UPDATE anchor.episode_plays SET plays = -3 WHERE rowid = "
                    "(SELECT min(rowid) FROM anchor.episode_plays)")
    out = quality.counts_non_negative(scratch, T["anchor.episode_plays"])
    assert not out.passed and "plays" in out.summary and out.rows[0]["value"] == -3
    scratch.execute("UPDATE op3.show_download_counts SET weekly_downloads = [1, -1, 2, 3]")
    assert not quality.counts_non_negative(scratch, T["op3.show_download_counts"]).passed


def test_fractions_tolerate_rounding_but_not_a_wrong_day(scratch: duckdb.DuckDBPyConnection):
    for name in ("anchor.plays_by_gender", "anchor.plays_by_geo", "anchor.plays_by_geo_city"):
        assert quality.fractions_sum_to_one(scratch, T[name]).passed, name
    (geo_sum,) = scratch.execute("SELECT sum(fraction) FROM anchor.plays_by_geo").fetchone()
    assert abs(geo_sum - 1) > 0.01  # Spotify's rounding: passes only thanks to the slack
    scratch.execute("UPDATE anchor.plays_by_geo SET fraction = fraction / 2")
    assert not quality.fractions_sum_to_one(scratch, T["anchor.plays_by_geo"]).passed
    day = scratch.execute("SELECT max(partition_date) FROM anchor.plays_by_gender").fetchone()[0]
    scratch.execute("UPDATE anchor.plays_by_gender SET fraction = fraction + 0.004 "
                    "WHERE partition_date = ?", [day])  # 4 rows: off by 0.016
    out = quality.fractions_sum_to_one(scratch, T["anchor.plays_by_gender"])
    assert not out.passed and str(day) in out.summary and len(out.rows) == 1
    scratch.execute("DELETE FROM anchor.plays_by_gender WHERE partition_date = ?", [day])
    assert quality.fractions_sum_to_one(scratch, T["anchor.plays_by_gender"]).passed  # empty day


def test_unknown_episode_ids_are_named(scratch: duckdb.DuckDBPyConnection):
    for name in ("anchor.episode_plays", "anchor.plays_by_episode", "op3.downloads"):
        assert quality.episode_ids_known(scratch, T[name]).passed, name
    scratch.execute("UPDATE anchor.episode_plays SET episode_id = 12345 WHERE rowid = "
                    "(SELECT min(rowid) FROM anchor.episode_plays)")
    out = quality.episode_ids_known(scratch, T["anchor.episode_plays"])
    assert not out.passed and "12345" in out.summary and not out.inconclusive
    scratch.execute("UPDATE op3.downloads SET episode_id = 'f00d' WHERE rowid = "
                    "(SELECT min(rowid) FROM op3.downloads)")
    assert "f00d" in quality.episode_ids_known(scratch, T["op3.downloads"]).summary
    scratch.execute("DELETE FROM anchor.episodes")
    out = quality.episode_ids_known(scratch, T["anchor.episode_plays"])
    assert not out.passed and out.inconclusive and "anchor/episodes" in out.summary


def test_an_empty_day_after_a_day_with_rows_is_flagged(scratch: duckdb.DuckDBPyConnection):
    table = T["anchor.plays"]
    days = sorted(d for (d,) in scratch.execute("SELECT partition_date FROM anchor.plays").fetchall())
    assert quality.no_missing_days(scratch, table, set(days)).passed
    scratch.execute("DELETE FROM anchor.plays WHERE partition_date IN (?, ?)", [days[5], days[-1]])
    out = quality.no_missing_days(scratch, table, set(days))  # both were materialized
    assert not out.passed and [r["day"] for r in out.rows] == [str(days[5]), str(days[-1])]
    # Without Dagster's record of materialized days, only gaps between stored days show.
    assert [r["day"] for r in quality.no_missing_days(scratch, table, None).rows] == [str(days[5])]


def test_freshness_allows_two_days():
    today = date(2026, 3, 10)
    assert quality.freshness(date(2026, 3, 9), today).passed
    assert quality.freshness(date(2026, 3, 8), today).passed
    old = quality.freshness(date(2026, 3, 7), today)
    assert not old.passed and "3 days old" in old.summary
    assert not quality.freshness(None, today).passed


def test_stored_downloads_are_compared_with_show_download_counts(
        scratch: duckdb.DuckDBPyConnection):
    assert quality.downloads_match_counts(scratch, None).passed
    (day,) = scratch.execute("SELECT max(date) FROM op3.downloads").fetchone()
    scratch.execute("DELETE FROM op3.downloads WHERE rowid IN (SELECT rowid FROM op3.downloads "
                    "WHERE date = ? LIMIT 2)", [day])
    out = quality.downloads_match_counts(scratch, None)
    assert not out.passed and "stored" in out.summary
    assert {r["what"].split()[0] for r in out.rows} == {"week", "30"}
    # Too little to compare (3 days, or no snapshot yet) is no disagreement.
    assert "nothing to compare" in quality.downloads_match_counts(scratch, {day}).summary
    scratch.execute("DELETE FROM op3.show_download_counts")
    assert "nothing to compare" in quality.downloads_match_counts(scratch, None).summary


def test_check_specs_are_blocking_where_a_model_would_be_misled():
    from podcast_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    blocking = {k.to_user_string() for k in graph.asset_check_keys if graph.get(k).blocking}
    assert "anchor/plays_by_app:fractions_sum_to_one" in blocking
    assert "anchor/episode_plays:episode_ids_known" in blocking
    assert "anchor/plays:counts_non_negative" in blocking
    assert not {k for k in blocking if k.endswith((":fresh", ":no_missing_days", ":no_schema_drift",
                                                   ":downloads_match_show_download_counts"))}
    assert "op3/downloads:episode_ids_known" not in blocking
    fresh = graph.get(dg.AssetCheckKey(dg.AssetKey(["op3", "downloads"]), "fresh"))
    assert fresh.automation_condition is not None  # evaluated daily by the automation sensor
