"""One 401 per run, across the processes of a real ``dagster asset materialize``.

Two Anchor steps of one run call the same Spotify account. Since issue 13 they take turns
(one step per account at a time: the account's pool and its calls lock), so the proxy
answers whichever step calls first with 401 on its first request. The verdict lives in the
run: the other step must then make no call at all with the dead cookie. (Side-by-side
requests inside one step stopping at their next request: test_sensors.)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import date

import dagster as dg
import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline_tests.procs import Materialize, dagster_home, pipeline_env
from podcast_pipeline_tests.tamper import Answer, Tamper

TODAY = date(2025, 6, 1)
HOLD = 30.0  # every wait below is bounded


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as emulator:
        yield emulator


def test_a_401_in_one_step_stops_the_other_steps_next_request(emu, tmp_path):
    first = threading.Lock()
    answered: list[str] = []

    def dead_first(path: str, answer: Answer) -> Answer:
        with first:
            answered.append(path)
            if len(answered) == 1:  # the first call to the account, whichever step makes it
                return Answer(401, [("Content-Type", "application/json")],
                              b'{"error":"unauthorized"}')
        return answer

    with Tamper(emu.url) as proxy:
        proxy.rewrite(r"/playsBy(Gender|App)\?", dead_first)
        env = pipeline_env(emu, str(tmp_path / "v.duckdb"), dagster_home(tmp_path))
        env.update({k: v for k, v in proxy.env(emu.env).items() if k in env})
        run = Materialize(env, ["anchor/plays_by_gender", "anchor/plays_by_app"],
                          partition_range=("2025-05-01", "2025-05-30"))
        code = run.finish()
        exchanges = proxy.exchanges

    assert code != 0
    assert run.count("Executing steps using multiprocess executor") == 1, run.log[-3000:]
    calls = [e for e in exchanges if "/playsByGender?" in e.path or "/playsByApp?" in e.path]
    # Without the run's verdict the other step would go through its 30 days (30 calls).
    assert [e.status for e in calls] == [401], run.log[-3000:]
    assert sum(e.status == 401 for e in exchanges) == 1
    # Refused at its start, or (when it started before the 401 and waited on the account's
    # calls lock) at its first request: either way, by the run's verdict. Read from the run's
    # event log: a step process's own output may not reach the command's stderr before the
    # command exits.
    failures = _step_failures(env["DAGSTER_HOME"])
    assert sorted(failures) == ["anchor__plays_by_app", "anchor__plays_by_gender"], failures
    assert any(re.search(r"an earlier (step|call) of this run got 401", t)
               for t in failures.values()), failures
    assert any("rejected as expired or invalid" in t for t in failures.values()), failures


def _step_failures(home: str) -> dict[str, str]:
    instance = dg.DagsterInstance.from_config(home)
    try:
        (run,) = instance.get_runs(limit=2)
        return {r.dagster_event.step_key: str(r.dagster_event.step_failure_data.user_failure_data
                                              .description)
                for r in instance.all_logs(run.run_id)
                if r.dagster_event is not None and r.dagster_event.is_step_failure}
    finally:
        instance.dispose()
