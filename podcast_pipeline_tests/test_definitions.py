"""The one Definitions: loads with no settings at all, validates with Dagster's CLI, and a
missing credential fails only the steps that need it, before any request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.tables import ALL_TABLES, TABLES_BY_KEY

REPO = Path(__file__).resolve().parents[1]
CLEAN_ENV_KEYS = ("PATH", "SYSTEMROOT", "TMPDIR")  # nothing of ours, no DAGSTER_HOME


def clean_env(home: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in CLEAN_ENV_KEYS if k in os.environ}
    env["HOME"] = str(home)
    return env


DESCRIBE = textwrap.dedent("""
    import json
    from podcast_pipeline.definitions import defs

    assets = {}
    for spec in defs.resolve_all_asset_specs():
        if spec.group_name == "analytics":  # models and report: test_analytics_models
            continue
        ad = defs.resolve_assets_def(spec.key)
        pd_ = ad.partitions_def
        assets[".".join(spec.key.path)] = {
            "group": spec.group_name, "kinds": sorted(spec.kinds),
            "description": spec.description, "table": spec.metadata.get("dagster/table_name"),
            "columns": [c.name for c in spec.metadata["dagster/column_schema"].columns],
            "partitions": pd_ and [type(pd_).__name__, pd_.timezone, pd_.start.date().isoformat()],
            "single_run": ad.backfill_policy.max_partitions_per_run is None,
            "deps": sorted(k.to_user_string() for k in ad.asset_deps[spec.key]),
            "pools": sorted(defs.resolve_asset_graph().get(spec.key).pools or []),
        }
    schedule = defs.resolve_schedule_def("daily_refresh_schedule")
    print(json.dumps({
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
        "schedule": [schedule.cron_schedule, schedule.execution_timezone, schedule.job_name],
        "sensors": sorted(s.name for s in defs.sensors),
        "resources": sorted(defs.resources),
    }))
""")


def test_definitions_load_with_no_env_vars_at_all(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-c", DESCRIBE], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    from podcast_pipeline.warehouse import table_columns

    assert set(out["assets"]) == set(TABLES_BY_KEY)
    for name, asset in out["assets"].items():
        table = TABLES_BY_KEY[name]
        assert asset["group"] == table.schema and asset["table"] == name
        assert asset["description"] == table.description and len(asset["description"]) > 30
        assert "duckdb" in asset["kinds"] and "python" in asset["kinds"]
        assert asset["columns"] == [c for c, _ in table_columns(table)]
        if table.kind == "snapshot":  # no history in the API: one snapshot per run, stored by day
            assert asset["partitions"] is None, name
        else:
            assert asset["partitions"] == ["DailyPartitionsDefinition", "UTC", "2025-01-01"]
        assert asset["single_run"], name  # on snapshots too: the CLI's --partition-range needs it
        # Lineage: the per-episode assets hang below the episode list they read their ids from.
        assert asset["deps"] == (["anchor/episodes"] if table.episode_level else []), name
        # One pool per credential (politeness.py): spotify.* and anchor.* share the account's
        assert asset["pools"] == ["op3_default" if table.schema == "op3" else
                                  "spotify_default"], name
    assert "daily_refresh" in out["jobs"]
    assert out["schedule"] == ["0 6 * * *", "UTC", "daily_refresh"]
    assert out["sensors"] == ["analytics_automation", "credential_expiry_alert", "credential_probe",
                              "pool_limits"]
    assert out["resources"] == ["anchor", "op3", "warehouse"]
    assert list(tmp_path.iterdir()) == []  # loading creates no database, no folder


def test_dagster_definitions_validate_passes(tmp_path: Path):
    """The CLI reads workspace.yaml and the project's dagster.yaml from the project folder."""
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "All code locations passed validation" in output


# ---------------------------------------------------------------------- missing credentials
@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=5)) as e:
        yield e


SELECTION = ["anchor.plays", "anchor.total_plays", "anchor.episodes", "anchor.episode_plays",
             "op3.downloads", "op3.show"]


@pytest.mark.parametrize("missing", ["ANCHOR_PW_S", "ANCHOR_WEBSTATION_ID", "OP3_TOKEN",
                                     "OP3_SHOW_UUID"])
def test_missing_setting_fails_only_its_steps_before_any_request(
        missing: str, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from podcast_pipeline.definitions import build_definitions

    for key, value in emu.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(missing)
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    api = "anchor" if missing.startswith("ANCHOR") else "op3"
    defs = build_definitions()  # loads with the setting missing
    emu.reset_stats()
    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        partition_key=emu.dataset.yesterday.isoformat(),
        asset_selection=[dg.AssetKey(k.split(".")) for k in SELECTION],
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    failed = {e.step_key: e.step_failure_data for e in result.all_events if e.is_step_failure}
    started = {e.step_key for e in result.all_events if e.is_step_start}
    skipped = {k.replace(".", "__") for k in SELECTION} - started
    # The per-episode asset waits for the episode list it reads: not run when that failed.
    assert skipped == ({"anchor__episode_plays"} if api == "anchor" else set())
    assert sorted(failed) == sorted(k.replace(".", "__") for k in SELECTION
                                    if k.startswith(api) and k.replace(".", "__") not in skipped)
    for data in failed.values():
        assert f"{missing} is not set" in data.error.message
        assert data.user_failure_data.metadata["setting"].value == missing
    assert not [e for e in result.all_events if e.is_step_up_for_retry]  # no retry of config
    done = {e.asset_key.to_user_string().replace("/", ".") for e in result.all_events
            if e.is_step_materialization}
    assert done == {k for k in SELECTION if not k.startswith(api)}
    by_api = emu.stats()["by_api"]
    assert by_api.get(api, 0) == 0 and by_api[{"anchor": "op3", "op3": "anchor"}[api]] > 0


def test_every_table_is_an_asset_of_the_job():
    from podcast_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_refresh")
    keys = {".".join(k.path) for k in job.asset_layer.selected_asset_keys}
    assert keys == {t.qualified for t in ALL_TABLES}
