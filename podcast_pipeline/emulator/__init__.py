"""A loopback HTTP emulator of the Anchor and OP3 APIs with a deterministic dataset and faults."""

from .data import Dataset, EmulatorConfig, Episode
from .faults import Faults
from .server import Emulator, RequestRecord

__all__ = ["Dataset", "Emulator", "EmulatorConfig", "Episode", "Faults", "RequestRecord"]
