from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import date

import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig

# Scratch files in memory where the machine has a tmpfs: Dagster's SQLite event log commits
# (fsyncs) several times per event, 1.8 ms each on this disk against 0.1 ms in memory, and
# the suite writes tens of thousands of events (a 40-day demo: 81 s on disk, 62 s here).
# Set before pytest makes its temporary root, inherited by xdist workers and the pipeline's
# subprocesses. Nothing asserts on time; a machine without /dev/shm keeps its default.
_SHM = "/dev/shm"
if "TMPDIR" not in os.environ and os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK):
    os.environ["TMPDIR"] = tempfile.tempdir = _SHM

# The modules that take longest (seconds of `pytest --durations=0`, summed per module), run
# first: with `--dist loadscope --no-loadscope-reorder` xdist hands modules out in this order,
# so the last ones to start are short and no worker finishes minutes after the other. Only an
# order: a module missing here runs after these, in collection order. The analytics-demo
# modules are spread out so two workers do not wait on one demo's build at once.
LONGEST_FIRST = ("test_distributed", "test_concurrency", "test_readme", "test_network_dagster", "test_analytics_models",
                 "test_chaos", "test_security", "test_demo", "test_crash", "test_assets",
                 "test_bad_input", "test_backends_compare", "test_analytics_checks",
                 "test_sensors", "test_ducklake")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1]
                                         if item.module else "", len(rank)))


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port with a fixed 'today' (deterministic data)."""
    with Emulator(EmulatorConfig(seed=7, today=date(2025, 6, 1))) as emu:
        yield emu
