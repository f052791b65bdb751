"""Issue 14's measurement: a network's daily run on Dagster's distributed pieces, at several
sizes and worker counts, on this machine.

    python -m benchmarks.bench_distributed --shows 50 100 --workers 1 2 4
        [--assets anchor/plays op3/downloads] [--runs-at-once 4] [--max-runs K]
        [--daily-runs show|account] [--locations one|account]
        [--latency-ms 0] [--json benchmarks/distributed.json]

Needs the [network] extra and Debian's postgresql and redis-server (installed when missing,
as root). Per size N (an emulated network of N shows on N/10 accounts) and worker count W:
a fresh instance database in one PostgreSQL (deploy/dagster.yaml), a fresh DuckLake (its
catalog a database of the same PostgreSQL, its files in a temporary folder), W
``dagster-celery`` workers (one task each), the pools set as the daemon's sensor sets them,
then every run the daily schedule asks for (one per show, narrowed to ``--assets``), launched
as ``dagster asset materialize`` processes, at most ``--runs-at-once`` at a time (the daemon's
launcher starts a process per run the same way; its queue's per-account limits are not
modelled). ``--max-runs`` runs only the first K shows' runs: a sample at a size too big to
run whole here.

Prints one JSON line per (N, W) and a table: wall, runs, steps, requests, per-account peak of
calls in flight (read from the emulator's request log; must stay within the setting), run
and step durations from Dagster's run storage (its bookkeeping per run = run wall minus the
steps' own time), events per run, and the peak memory (VmHWM, sampled) of every process by
kind: the run processes, the workers (their task children), this process. ``--workers 0``
runs the same on one machine for comparison: SQLite, the DuckDB file, each run in process
(the daily job's executor).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.__main__ import descendants
from benchmarks.bench_network_daily import TODAY, _clear, _env
from benchmarks.worker import vm_hwm_mib
from podcast_pipeline.network_assets import SHOWS_KEY

ROOT = Path(__file__).resolve().parents[1]
CLEARED = ("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_", "DAGSTER_")


class Peaks(threading.Thread):
    """Every 0.5 s: the peak RSS of each live process under this one, by kind."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.by_pid: dict[int, tuple[str, float]] = {}

    @staticmethod
    def kind(pid: int) -> str:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "gone"
        if "dagster-celery" in cmd or "celery" in cmd:
            return "worker"
        if "asset materialize" in cmd:
            return "run"
        if "dagster" in cmd and "api" in cmd:
            return "run"
        return "other" if pid != os.getpid() else "bench"

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for pid in descendants(os.getpid()):
                mib = vm_hwm_mib(pid)
                if mib:
                    kind = self.by_pid.get(pid, (self.kind(pid), 0.0))[0]
                    self.by_pid[pid] = (kind, max(mib, self.by_pid.get(pid, ("", 0.0))[1]))

    def summary(self) -> dict[str, float]:
        self.halt.set()
        self.join(10)
        out: dict[str, float] = {}
        for kind, mib in self.by_pid.values():
            out[kind] = round(max(out.get(kind, 0.0), mib), 1)
        return out


def _requests(defs: dg.Definitions, home: str, assets: set[tuple[str, ...]],
              max_runs: int | None) -> list[tuple[list[str], tuple[str, str], dict[str, str]]]:
    when = datetime(TODAY.year, TODAY.month, TODAY.day, 6, tzinfo=UTC)
    with dg.DagsterInstance.from_config(home) as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        requests = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(
            context).run_requests or []
    runs = []
    for r in requests:
        if r.asset_selection == [SHOWS_KEY]:
            continue  # network/shows: no API call
        keys = ["/".join(k.path) for k in r.asset_selection or [] if tuple(k.path[1:]) in assets]
        runs.append((keys, (r.tags["dagster/asset_partition_range_start"],
                            r.tags["dagster/asset_partition_range_end"]), r.tags))
    return runs[:max_runs] if max_runs else runs


# One machine: the executor of the daily job the schedule launches (schedules.py).
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _launch_all(env: dict[str, str], runs, at_once: int, run_config: dict | None = None,
                where: dict[str, str] | None = None) -> list[str]:
    """Every run as ``dagster asset materialize``, at most ``at_once`` at a time; the
    failures' last lines. ``where``: each show's code location (``locations.py``), else the
    one location of every show."""
    from podcast_pipeline_tests.procs import Materialize

    pending, live, failed = list(runs), [], []
    while pending or live:
        while pending and len(live) < at_once:
            keys, window, _tags = pending.pop(0)
            location = where[keys[0].split("/")[0]] if where else None
            live.append(Materialize(env, keys, partition_range=window, run_config=run_config,
                                    location=location))
        time.sleep(0.2)
        for proc in [p for p in live if p.proc.poll() is not None]:
            live.remove(proc)
            if proc.finish(timeout=30) != 0:
                failed.append(proc.log[-1500:])
    return failed


def _dagster_figures(home: str) -> dict[str, Any]:
    """Run and step durations and events per run, from the instance's own storage."""
    with dg.DagsterInstance.from_config(home) as instance:
        records = instance.get_run_records()
        run_s, step_s, overhead, events = [], [], [], []
        for rec in records:
            if rec.start_time is None or rec.end_time is None:
                continue
            wall = rec.end_time - rec.start_time
            stats = instance.get_run_step_stats(rec.dagster_run.run_id)
            steps = [s.end_time - s.start_time for s in stats if s.start_time and s.end_time]
            run_s.append(wall)
            step_s.extend(steps)
            overhead.append(wall - sum(steps))  # steps of one run on one credential: in turn
            events.append(len(instance.all_logs(rec.dagster_run.run_id)))
        succeeded = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 2) if xs else 0.0

    return {"runs_recorded": len(records), "runs_succeeded": succeeded,
            "run_s_median": med(run_s), "step_s_median": med(step_s),
            "bookkeeping_s_per_run_median": med(overhead), "events_per_run_median": med(events)}


def measure(pg, redis_url: str, shows: int, workers: int, assets: set[tuple[str, ...]],
            at_once: int, max_runs: int | None, latency_ms: float,
            daily_runs: str = "show", locations: str = "one") -> dict[str, Any]:
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
    from podcast_pipeline.locations import show_locations
    from podcast_pipeline.network import load_network
    from podcast_pipeline.politeness import pool_limits
    from podcast_pipeline.sensors import apply_pool_limits
    from podcast_pipeline.settings import Settings
    from podcast_pipeline_tests.services import Worker

    _clear()
    name = f"s{shows}_w{workers}_{int(time.time())}"
    pg.createdb(f"dagster_{name}")
    pg.createdb(f"lake_{name}")
    with tempfile.TemporaryDirectory() as tmp, Emulator(
            EmulatorConfig(seed=7, today=TODAY), shows=shows, accounts=max(1, shows // 10),
            faults=Faults(latency_ms=latency_ms)) as emu:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
        env.update(_env(emu, Path(tmp), lookback=3), DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1",
                   PODCAST_PIPELINE_DAILY_RUNS=daily_runs,
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        if workers:  # the network mode: deploy/dagster.yaml, DuckLake, Celery
            shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
            env.update(**pg.dagster_env(f"dagster_{name}"),
                       PODCAST_PIPELINE_WAREHOUSE="ducklake",
                       PODCAST_PIPELINE_DUCKLAKE_CATALOG=pg.libpq(f"lake_{name}"),
                       PODCAST_PIPELINE_DUCKLAKE_DATA_PATH=str(Path(tmp) / "lake"),
                       PODCAST_PIPELINE_CELERY_BROKER=f"{redis_url}/0",
                       PODCAST_PIPELINE_CELERY_BACKEND=f"{redis_url}/1")
        else:  # one machine: the shipped dagster.yaml (SQLite), the DuckDB file, in process
            from podcast_pipeline_tests.procs import dagster_home

            shutil.rmtree(home)
            home = Path(dagster_home(Path(tmp)))
            env["DAGSTER_HOME"] = str(home)
        os.environ.update({k: v for k, v in env.items() if k.startswith(CLEARED)})
        t0 = time.perf_counter()
        settings = Settings.from_env(env)
        defs = build_definitions(settings)
        load_s = time.perf_counter() - t0
        with dg.DagsterInstance.from_config(str(home)) as instance:
            apply_pool_limits(instance, pool_limits(load_network(settings)))
        runs = _requests(defs, str(home), assets, max_runs)
        where = show_locations(load_network(settings)) if locations == "account" else None
        shows_run = len({k.split("/")[0] for keys, _, _ in runs for k in keys})
        peaks = Peaks()
        peaks.start()
        pool = [Worker(f"w{i}", env) for i in range(1, workers + 1)]
        try:
            for w in pool:
                w.wait_ready()
            emu.reset_stats()
            t0 = time.perf_counter()
            failed = _launch_all(env, runs, at_once, None if workers else IN_PROCESS, where)
            wall = time.perf_counter() - t0
            tasks = [w.tasks_done for w in pool]
        finally:
            for w in pool:
                w.stop()
        stats = emu.stats()
        figures = _dagster_figures(str(home))
        memory = peaks.summary()
    spotify = {a: n for a, n in stats["max_concurrent_by_account"].items()
               if not a.startswith("op3:")}
    op3 = {a: n for a, n in stats["max_concurrent_by_account"].items() if a.startswith("op3:")}
    return {"shows": shows, "workers": workers, "daily_runs": daily_runs,
            "locations": locations, "runs": len(runs),
            "assets": sum(len(k) for k, _, _ in runs),  # each a step, plus its checks' step
            "wall_s": round(wall, 1), "s_per_run": round(wall / max(1, len(runs)), 2),
            "requests": stats["requests"],
            "requests_per_show": round(stats["requests"] / max(1, shows_run), 1),
            "failed_runs": len(failed), "failures": failed[:3],
            "celery_tasks_per_worker": tasks,  # one per step: assets and their checks
            "spotify_peak_in_flight": max(spotify.values(), default=0),
            "op3_peak_in_flight": max(op3.values(), default=0),
            "definitions_load_s": round(load_s, 2), **figures, "peak_mib": memory}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed",
                                description=__doc__.splitlines()[0])
    p.add_argument("--shows", type=int, nargs="+", default=[50, 100])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                   help="Celery workers; 0: one machine (the shipped dagster.yaml, the DuckDB "
                        "file, the daily job's in-process executor) for comparison")
    p.add_argument("--assets", nargs="+", default=["anchor/plays", "op3/downloads"],
                   help="each show's assets of the daily run (default: two, one per API)")
    p.add_argument("--runs-at-once", type=int, default=4)
    p.add_argument("--max-runs", type=int, help="only the schedule's first K runs (a sample)")
    p.add_argument("--daily-runs", choices=["show", "account"], default="show",
                   help="PODCAST_PIPELINE_DAILY_RUNS: a run per show or per account")
    p.add_argument("--locations", choices=["one", "account"], default="one",
                   help="one code location of every show, or one per account (locations.py): "
                        "each run loads only its account's shows")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--json", default="benchmarks/distributed.json")
    a = p.parse_args()
    from podcast_pipeline_tests.services import postgres, redis

    assets = {tuple(x.split("/")) for x in a.assets}
    results = []
    with postgres() as pg, redis() as redis_url:
        for shows in a.shows:
            for workers in a.workers:
                r = measure(pg, redis_url, shows, workers, assets, a.runs_at_once,
                            a.max_runs, a.latency_ms, a.daily_runs, a.locations)
                print(json.dumps(r), flush=True)
                results.append(r)
                Path(a.json).write_text(json.dumps(results, indent=1))
    cols = ["shows", "workers", "daily_runs", "locations", "runs", "assets", "wall_s", "s_per_run", "requests_per_show",
            "failed_runs", "spotify_peak_in_flight", "op3_peak_in_flight", "run_s_median",
            "step_s_median", "bookkeeping_s_per_run_median", "events_per_run_median"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols), "|", r["peak_mib"])


if __name__ == "__main__":
    main()
