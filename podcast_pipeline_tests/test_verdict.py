"""One 401 per run, across the processes of a real ``dagster asset materialize``.

Two Anchor steps run at once under the multiprocess executor. A proxy answers the first
request of one (plays_by_gender) with 401 while it holds the other's (plays_by_app)
first request in flight; it lets that one through a moment after the 401. The other
step must then stop at its very next request: the verdict lives in the run, and each
request of each step checks it first, not only each step at its start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date

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
    app_in_flight, refused = threading.Event(), threading.Event()

    def gender(path: str, answer: Answer) -> Answer:
        app_in_flight.wait(HOLD)  # both steps are running now
        refused.set()
        return Answer(401, [("Content-Type", "application/json")], b'{"error":"unauthorized"}')

    def app(path: str, answer: Answer) -> Answer:
        if not app_in_flight.is_set():
            app_in_flight.set()
            refused.wait(HOLD)
            time.sleep(1.0)  # the 401's step records the verdict in the run meanwhile
        return answer

    with Tamper(emu.url) as proxy:
        proxy.rewrite(r"/playsByGender\?", gender)
        proxy.rewrite(r"/playsByApp\?", app)
        env = pipeline_env(emu, str(tmp_path / "v.duckdb"), dagster_home(tmp_path))
        env.update({k: v for k, v in proxy.env(emu.env).items() if k in env})
        run = Materialize(env, ["anchor/plays_by_gender", "anchor/plays_by_app"],
                          partition_range=("2025-05-01", "2025-05-30"))
        code = run.finish()
        exchanges = proxy.exchanges

    assert code != 0
    assert run.count("Executing steps using multiprocess executor") == 1, run.log[-3000:]
    gender_calls = [e for e in exchanges if "/playsByGender?" in e.path]
    app_calls = [e for e in exchanges if "/playsByApp?" in e.path]
    assert [e.status for e in gender_calls] == [401], run.log[-3000:]
    # Without a shared verdict the other step would go on through its 30 days (30 calls).
    assert [e.status for e in app_calls] == [200], run.log[-3000:]
    assert sum(e.status == 401 for e in exchanges) == 1
    assert "an earlier call of this run got 401" in run.log
    assert "rejected as expired or invalid" in run.log
