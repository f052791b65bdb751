"""Benchmarks against the emulator (``python -m benchmarks``); not part of the tests."""
