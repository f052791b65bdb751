"""Requests per second the emulator serves to the project's own clients.

    .venv/bin/python benchmarks/bench_emulator.py [--seconds 5] [--threads 1 4 8]

Each thread has its own client and repeats one cheap call (Anchor ``plays`` for one day,
OP3 ``show``); the figure includes the clients' parsing, as the pipeline sees it.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import date, timedelta

from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.demo import patched_env
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.op3.client import Op3Client

TODAY = date(2025, 6, 1)


def calls(api: str):
    day = TODAY - timedelta(days=1)
    if api == "anchor":
        client = AnchorClient.from_env()
        return client, lambda: client.plays(day, day)
    client = Op3Client.from_env()
    return client, client.show


def measure(api: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        client, call = calls(api)
        with client:
            call()  # warm up: Anchor's station-id bootstrap, connection set-up
            while time.monotonic() < stop:
                call()
                counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as emu, patched_env(emu.env):
        print(f"{'api':<8}{'threads':>8}{'requests/s':>12}")
        for api in ("anchor", "op3"):
            for n in args.threads:
                print(f"{api:<8}{n:>8}{measure(api, n, args.seconds):>12.0f}", flush=True)


if __name__ == "__main__":
    main()
