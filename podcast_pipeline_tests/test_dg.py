"""Dagster's current CLI on the project: ``dg check defs`` loads every definition and
``dg list defs`` lists what the project defines, found through ``[tool.dg]`` in pyproject.toml.

Run in a scratch folder laid out like a clone (``.venv`` pointing at this environment), since
``dg`` runs the project's own ``.venv/bin/python``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from podcast_pipeline.tables import TABLES_BY_KEY

PROJECT = Path(__file__).resolve().parents[1]
OURS = re.compile(r"^(ANCHOR_|OP3_|DUCKDB_PATH$|DAGSTER_HOME$|PODCAST_PIPELINE_)")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dg") / "podcast_pipeline"
    root.mkdir()
    (root / "pyproject.toml").write_text((PROJECT / "pyproject.toml").read_text())
    (root / "podcast_pipeline").symlink_to(PROJECT / "podcast_pipeline", target_is_directory=True)
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return root


def dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not OURS.match(k)}
    env["HOME"] = str(project.parent)
    return subprocess.run([str(project / ".venv" / "bin" / "dg"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=240)


def test_dg_check_defs_loads_every_definition(project: Path) -> None:
    proc = dg(project, "check", "defs")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "All definitions loaded successfully" in out
    assert "virtual environment does not match" not in out  # suppressed in [tool.dg.cli]


def test_dg_list_defs_shows_the_projects_definitions(project: Path) -> None:
    proc = dg(project, "list", "defs", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    defs = json.loads(proc.stdout)
    keys = {a["asset_key"] for a in defs["assets"]}
    raw = {k for k in keys if not k.startswith("analytics/")}  # analytics: test_analytics_models
    assert raw == {k.replace(".", "/") for k in TABLES_BY_KEY}
    assert "analytics/daily_listening" in keys and "analytics/report" in keys
    assert {s["name"] for s in defs["schedules"]} == {"daily_refresh_schedule"}
    assert {s["name"] for s in defs["sensors"]} == {"credential_expiry_alert", "credential_probe",
                                                     "analytics_automation", "pool_limits"}
    assert {"daily_refresh"} <= {j["name"] for j in defs["jobs"]}
