"""Demo databases for the analytics tests: the real demo (emulator over HTTP, Dagster's own
execution, a persistent Dagster instance), once per test session: the first xdist worker
to ask builds it, the others read what it left (the tests only read the database or copy it).

Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from filelock import FileLock

from podcast_pipeline.demo import RunOutcome, patched_env, run_demo

CLEAN_DAYS = 40  # covers one episode's first 30 days and several first weeks


@dataclass
class DemoRun:
    db: Path
    home: Path
    output: str
    outcomes: list[RunOutcome]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "asset:check" -> result
    materializations: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest metadata
    failures: dict[str, str] = field(default_factory=dict)  # step key -> the error's message


def _collect(run: DemoRun) -> None:
    from podcast_pipeline.definitions import build_definitions

    defs = build_definitions()
    with dg.DagsterInstance.from_config(str(run.home)) as instance:
        for key in defs.resolve_asset_graph().asset_check_keys:
            record = instance.get_latest_asset_check_evaluation_record(key)
            if record and record.event and record.event.asset_check_evaluation:
                ev = record.event.asset_check_evaluation
                run.checks[f"{key.asset_key.to_user_string()}:{key.name}"] = {
                    "passed": ev.passed, "severity": ev.severity,
                    "metadata": {k: getattr(v, "value", v) for k, v in ev.metadata.items()}}
        for outcome in run.outcomes:
            for entry in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
                error = entry.dagster_event.step_failure_data.error
                run.failures[entry.step_key] = error.message if error else ""
        for spec in defs.resolve_all_asset_specs():
            if spec.group_name != "analytics":
                continue
            event = instance.get_latest_materialization_event(spec.key)
            if event and event.asset_materialization:
                run.materializations[spec.key.to_user_string()] = {
                    k: getattr(v, "value", v)
                    for k, v in event.asset_materialization.metadata.items()}


def make_demo(base: Path, days: int, broken_fraction: str | None = None) -> DemoRun:
    home = base / "dagster_home"
    home.mkdir(parents=True)
    db = base / "demo.duckdb"
    out = io.StringIO()
    env = {"DAGSTER_HOME": str(home), "PODCAST_PIPELINE_REPORT_DIR": str(base / "report")}
    with patched_env(env):
        outcomes = run_demo(days=days, database=str(db), out=out,
                            broken_fraction=broken_fraction)
        run = DemoRun(db, home, out.getvalue(), outcomes)
        _collect(run)
    return run


def shared(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], DemoRun]
           ) -> DemoRun:
    """``build(folder)`` once for the whole session, across xdist workers: they share the
    parent of their own temporary roots; without xdist, the session's root is the one."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    done = root / f"{name}.pickle"
    with FileLock(str(root / f"{name}.lock"), timeout=1800):
        if done.exists():
            return pickle.loads(done.read_bytes())
        # A worker's own folder: one whose build failed leaves the next worker a clean one.
        run = build(root / f"{name}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
        done.write_bytes(pickle.dumps(run))
        return run


@pytest.fixture(scope="session")
def clean_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield shared(tmp_path_factory, "clean_demo", lambda base: make_demo(base, CLEAN_DAYS))


@pytest.fixture(scope="session")
def broken_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield shared(tmp_path_factory, "broken_demo",
                 lambda base: make_demo(base, 3, broken_fraction="app"))
