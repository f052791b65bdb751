from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from podcast_pipeline.emulator import Emulator, EmulatorConfig


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port with a fixed 'today' (deterministic data)."""
    with Emulator(EmulatorConfig(seed=7, today=date(2025, 6, 1))) as emu:
        yield emu
