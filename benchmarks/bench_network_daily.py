"""A network's daily run at several sizes, against the emulator, in process.

    python -m benchmarks.bench_network_daily --shows 10 30 100 [--lookback 0]
    python -m benchmarks.bench_network_daily --year-backfill   # one show, 365 days, one run

Per size: an emulated network of N shows on N/10 accounts, the definitions from its network
file, then every run the daily schedule requests (one per show, each all of the show's
assets), executed one after the other in this process. Prints requests, wall seconds and
per-show figures as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

TODAY = date(2025, 6, 1)


def _env(emu, tmp: Path, lookback: int) -> dict[str, str]:
    env = {k: v for k, v in {**emu.env, **emu.graphql_env}.items()
           if k.endswith("_URL") or k == "OP3_TOKEN"}
    env.update(emu.network_env(tmp / "network.yaml"), DUCKDB_PATH=str(tmp / "w.duckdb"),
               PODCAST_PIPELINE_LOOKBACK_DAYS=str(lookback),
               PODCAST_PIPELINE_START_DATE=(TODAY - timedelta(days=400)).isoformat())
    return env


def _clear() -> None:
    for k in [k for k in os.environ if k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_",
                                                    "PODCAST_PIPELINE_"))]:
        del os.environ[k]


def daily(shows: int, lookback: int, only: list[str] | None = None) -> dict:
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.demo import execute
    from podcast_pipeline.emulator import Emulator, EmulatorConfig
    from podcast_pipeline.settings import Settings

    _clear()
    with tempfile.TemporaryDirectory() as tmp, Emulator(
            EmulatorConfig(seed=7, today=TODAY), shows=shows,
            accounts=max(1, shows // 10)) as emu:
        os.environ.update(_env(emu, Path(tmp), lookback))
        t0 = time.perf_counter()
        defs = build_definitions(Settings.load())
        load_s = time.perf_counter() - t0
        when = datetime(TODAY.year, TODAY.month, TODAY.day, 6, tzinfo=UTC)
        with dg.instance_for_test() as instance:
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
            requests = list(defs.resolve_schedule_def("daily_refresh_schedule")
                            .evaluate_tick(context).run_requests or [])
            emu.reset_stats()
            t1 = time.perf_counter()
            failed = []
            for request in requests:
                assets = None if not only else [
                    k for k in request.asset_selection or [] if "/".join(k.path[1:]) in only]
                if assets == []:  # the network/shows run, narrowed away
                    continue
                outcome = execute(defs, request, instance, log_level="ERROR", assets=assets)
                failed += outcome.failed_steps
            wall = time.perf_counter() - t1
        stats = emu.stats()
    return {"shows": shows, "assets": "all" if not only else len(only), "accounts": max(1, shows // 10), "runs": len(requests),
            "definitions_s": round(load_s, 2), "wall_s": round(wall, 1),
            "requests": stats["requests"], "requests_per_show": round(stats["requests"] / shows, 1),
            "wall_per_show_s": round(wall / shows, 2), "failed_steps": len(failed)}


def year_backfill() -> dict:
    """One show's every asset over 365 days in one run (as a UI backfill launches it)."""
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.demo import execute
    from podcast_pipeline.emulator import Emulator, EmulatorConfig
    from podcast_pipeline.network import load_network
    from podcast_pipeline.network_assets import show_keys
    from podcast_pipeline.settings import Settings

    _clear()
    with tempfile.TemporaryDirectory() as tmp, Emulator(
            EmulatorConfig(seed=7, today=TODAY, days=400), shows=10, accounts=1) as emu:
        os.environ.update(_env(emu, Path(tmp), 0))
        defs = build_definitions(Settings.load())
        net = load_network(Settings.load())
        show = net.shows[3]
        end = TODAY - timedelta(days=1)
        request = dg.RunRequest(asset_selection=show_keys(net, show), tags={
            "dagster/asset_partition_range_start": (end - timedelta(days=364)).isoformat(),
            "dagster/asset_partition_range_end": end.isoformat()})
        with dg.instance_for_test() as instance:
            emu.reset_stats()
            t = time.perf_counter()
            outcome = execute(defs, request, instance, log_level="ERROR")
            wall = time.perf_counter() - t
        return {"year_backfill_one_show_of_10": show.key, "assets": len(request.asset_selection),
                "days": 365, "wall_s": round(wall, 1), "requests": emu.stats()["requests"],
                "success": outcome.success, "failed_steps": outcome.failed_steps[:5]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shows", type=int, nargs="*", default=[10, 30, 100])
    ap.add_argument("--lookback", type=int, default=0, help="days before yesterday (short window)")
    ap.add_argument("--year-backfill", action="store_true")
    ap.add_argument("--assets", nargs="*", help="narrow each show's run to these tables, e.g. "
                    "anchor/plays op3/downloads (the whole daily run when not given)")
    args = ap.parse_args()
    if args.year_backfill:
        print(json.dumps(year_backfill()), flush=True)
        return
    for n in args.shows:
        print(json.dumps(daily(n, args.lookback, args.assets)), flush=True)


if __name__ == "__main__":
    main()
