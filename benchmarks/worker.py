"""One benchmark scenario in its own process, so the parent reads its memory from the OS.

    python -m benchmarks.worker SCENARIO ARGS_JSON OUT_JSON

The parent (``python -m benchmarks``) starts the emulator and passes its environment.
Scenarios: ``pipeline`` (the schedule's run requests, in process), ``naive`` (the
reference client ``anchorconnector`` one day at a time plus a ``requests`` loop for OP3),
``read_csv`` (DuckDB's own load of a TSV file).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def vm_hwm_mib(pid: int | str = "self") -> float:
    """Peak resident memory of a process (``VmHWM``), MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_hwm() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5) so the next step's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Timer:
    """Seconds summed over calls (and threads: concurrent waits add up)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Any) -> Any:
        def timed(*a: Any, **kw: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - began
                    self.calls += 1
        return timed


class StepWatch:
    """Event listener: wall time and peak memory of each step (steps run one after another
    in process, so resetting the peak at each start gives each step its own)."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}
        self.resettable = True

    def __call__(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            return
        if event.is_step_start:
            self.resettable = reset_hwm() and self.resettable
            self.steps[event.step_key] = {"start": time.perf_counter()}
        elif event.is_step_success or event.is_step_failure:
            s = self.steps.setdefault(event.step_key, {"start": time.perf_counter()})
            s["seconds"] = time.perf_counter() - s.pop("start", time.perf_counter())
            s["peak_mib"] = vm_hwm_mib()
            s["ok"] = bool(event.is_step_success)


def pipeline(args: dict[str, Any]) -> dict[str, Any]:
    import dagster as dg
    import requests

    from podcast_pipeline import warehouse
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.demo import execute, run_requests_for
    from podcast_pipeline.schedules import build_daily_refresh_schedule
    from podcast_pipeline.settings import Settings

    http, db = Timer(), Timer()
    requests.Session.send = http.wrap(requests.Session.send)  # type: ignore[method-assign]
    warehouse.replace_window = db.wrap(warehouse.replace_window)  # type: ignore[assignment]
    now = datetime.fromisoformat(args["now"])
    began = time.perf_counter()
    defs = build_definitions()
    instance = dg.DagsterInstance.ephemeral()
    if args.get("days"):
        run_requests = run_requests_for(args["days"], now)
    else:  # the daily run: the schedule with the configured look-back
        context = dg.build_schedule_context(scheduled_execution_time=now)
        run_requests = list(build_daily_refresh_schedule(Settings.load())(context))
    only = set(args.get("assets") or [])
    startup = time.perf_counter() - began
    watch = StepWatch()
    runs = []
    for request in run_requests:
        selection = [k for k in request.asset_selection or []
                     if not only or k.to_user_string() in only]
        if not selection:
            continue
        run_began = time.perf_counter()
        outcome = _execute_watched(execute, defs, request, instance, selection, watch,
                                   instance.add_event_listener)
        runs.append({"partitions": outcome.partitions, "success": outcome.success,
                     "failed": outcome.failed_steps, "seconds": time.perf_counter() - run_began})
    wall = time.perf_counter() - began
    step_seconds = sum(s.get("seconds", 0.0) for s in watch.steps.values())
    return {"wall": wall, "startup": startup, "runs": runs, "steps": watch.steps,
            "http_seconds": http.seconds, "http_calls": http.calls,
            "duckdb_seconds": db.seconds, "step_seconds": step_seconds,
            "dagster_seconds": wall - startup - step_seconds,
            "per_step_peaks": watch.resettable, "peak_mib": vm_hwm_mib()}


def _execute_watched(execute: Any, defs: Any, request: Any, instance: Any, selection: list[Any],
                     watch: StepWatch, add_listener: Any) -> Any:
    """``demo.execute`` with ``watch`` listening to the run's events too."""
    def add(run_id: str, listener: Any) -> None:
        add_listener(run_id, listener)
        add_listener(run_id, watch)

    instance.add_event_listener = add
    try:
        # BENCH_LOG_LEVEL=ERROR shows why a step failed (the suite refuses a failed run).
        return execute(defs, request, instance, assets=selection,
                       log_level=os.environ.get("BENCH_LOG_LEVEL", "CRITICAL"),
                       progress=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
    finally:
        instance.add_event_listener = add_listener


def naive(args: dict[str, Any]) -> dict[str, Any]:
    """What a user writes without the pipeline: every endpoint, one day at a time."""
    import anchorconnector as ac
    import requests

    env = os.environ
    c = ac.AnchorConnector(env["ANCHOR_BASE_URL"], env["ANCHOR_WEBSTATION_ID"], env["ANCHOR_PW_S"])
    end = date.fromisoformat(args["yesterday"])
    began = time.perf_counter()
    calls = 0
    episodes = c.episodes()
    snapshot = (c.total_plays, c.total_plays_by_episode, c.unique_listeners, c.audience_size,
                c.plays_by_geo, c.impressions)
    for call in snapshot:
        call()
    calls += len(snapshot) + 1
    op3 = requests.Session()
    base, token, show = env["OP3_BASE_URL"], env["OP3_TOKEN"], env["OP3_SHOW_UUID"]
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(args["days"]):
        d = end - timedelta(days=n)
        s = datetime(d.year, d.month, d.day)  # noqa: DTZ001 - anchorconnector takes naive times
        e = s + timedelta(days=1)
        for m in (c.plays, c.plays_by_age_range, c.plays_by_app, c.plays_by_device,
                  c.plays_by_gender, c.plays_by_episode):
            m(s, e)
            calls += 1
        for ep in episodes:
            c.episode_plays(ep["episodeId"], s, e)
            calls += 1
        iso = (d.isoformat() + "T00:00:00.000Z", (d + timedelta(days=1)).isoformat() + "T00:00:00.000Z")
        params: dict[str, Any] = {"start": iso[0], "end": iso[1], "format": "tsv", "limit": 20000}
        while True:  # downloads, paged by continuation token
            r = op3.get(f"{base}/downloads/show/{show}", params=params, headers=headers, timeout=60)
            r.raise_for_status()
            calls += 1
            nxt = r.headers.get("x-continuation-token")
            if not nxt:
                break
            params["continuationToken"] = nxt
        cursor = iso[0]
        while True:  # redirect logs, paged by time
            r = op3.get(f"{base}/redirect-logs", headers=headers, timeout=60, params={
                "start": cursor, "end": iso[1], "format": "json", "limit": 1000,
                "url": env.get("OP3_URL_PREFIX", "")})
            r.raise_for_status()
            calls += 1
            rows = r.json()["rows"]
            if len(rows) < 1000:
                break
            last = max(row["time"] for row in rows)
            if last == cursor:  # a whole page in one millisecond: good enough for a baseline
                break
            cursor = last
    for ep in episodes:
        c.episode_performance(ep["episodeId"])
        c.episode_aggregated_performance(ep["episodeId"])
        c.episode_metadata(ep["episodeId"])
        calls += 3
    return {"wall": time.perf_counter() - began, "client_calls": calls, "peak_mib": vm_hwm_mib()}


def read_csv(args: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect(args["database"])
    con.execute("CREATE TABLE downloads AS SELECT * FROM read_csv(?, delim='\t', header=true, "
                "quote='', escape='', all_varchar=false)", [args["tsv"]])
    rows = con.execute("SELECT count(*) FROM downloads").fetchone()[0]
    con.close()
    return {"wall": time.perf_counter() - began, "rows": rows, "peak_mib": vm_hwm_mib()}


def load_parquet(args: dict[str, Any]) -> dict[str, Any]:
    """DuckDB's own load of the rows a backfill wrote (exported as Parquet beforehand)."""
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect(args["database"])
    for i, f in enumerate(args["files"]):
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM read_parquet(?)", [f])
    con.close()
    return {"wall": time.perf_counter() - began, "peak_mib": vm_hwm_mib()}


def cli(args: dict[str, Any]) -> dict[str, Any]:
    """``dagster asset materialize`` as a user types it, under a fresh DAGSTER_HOME holding
    the project's dagster.yaml; ``args["config"]`` picks the executor, ``args["env"]`` adds
    variables to the command's environment. Start-up is the time
    from launching the command to the run's first step; overhead is the wall time not
    spent inside steps (process start, definitions, run and event storage, executor)."""
    import subprocess

    import dagster as dg

    from podcast_pipeline.schedules import build_daily_refresh_schedule
    from podcast_pipeline.settings import Settings

    home = args["home"]
    now = datetime.fromisoformat(args["now"])
    (request,) = build_daily_refresh_schedule(Settings.load())(
        dg.build_schedule_context(scheduled_execution_time=now))  # the daily run's own
    select = args.get("select") or [k.to_user_string() for k in request.asset_selection]
    first, last = (request.tags[f"dagster/asset_partition_range_{e}"] for e in ("start", "end"))
    if args.get("days"):
        first = (now.date() - timedelta(days=args["days"])).isoformat()
    argv = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m",
            "podcast_pipeline.definitions", "--select", ",".join(select),
            "--partition-range", f"{first}...{last}"]
    if args.get("config"):
        argv += ["--config-json", json.dumps(args["config"])]
    began = time.time()
    proc = subprocess.run(argv, env={**os.environ, **args.get("env", {}), "DAGSTER_HOME": home},
                          capture_output=True,
                          text=True, timeout=3600, check=False)
    wall = time.time() - began
    instance = dg.DagsterInstance.from_config(home)
    run = instance.get_runs(limit=1)[0]
    events = [e for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
    starts = {e.step_key: e.timestamp for e in events if e.dagster_event.is_step_start}
    ends = {e.step_key: e.timestamp for e in events
            if e.dagster_event.is_step_success or e.dagster_event.is_step_failure}
    step_seconds = sum(ends[k] - starts[k] for k in ends if k in starts)
    first_step = min(starts.values()) if starts else began
    last_end = max(ends.values()) if ends else began
    instance.dispose()
    return {"wall": wall, "exit": proc.returncode, "stderr_tail": proc.stderr[-2000:],
            "status": str(run.status), "startup": first_step - began,
            "shutdown": began + wall - last_end, "step_seconds": step_seconds,
            "span_seconds": last_end - first_step, "steps": len(starts), "events": len(events),
            "peak_mib": vm_hwm_mib()}


SCENARIOS = {"pipeline": pipeline, "naive": naive, "read_csv": read_csv,
             "load_parquet": load_parquet, "cli": cli}


def main() -> None:
    scenario, raw, out = sys.argv[1:4]
    result = SCENARIOS[scenario](json.loads(raw))
    result["finished"] = datetime.now(UTC).isoformat()
    Path(out).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
