"""Issue 13's own check, as a script: a network's backfill, its daily run, and the same daily
run with one account's cookie dying mid-run.

    python -m benchmarks.bench_network_check --shows 10 30 100 [--days 365] [--latency-ms 0]
        [--assets anchor/plays op3/downloads ...] [--expire-after 0.5] [--shows-per-account 10]
        [--json PATH]

Per size N (an emulated network of N shows on N/10 accounts, the definitions from its network
file, every run in process one after another, the pipeline's own politeness defaults):

1. backfill: one run per show of all its assets (or ``--assets``) over ``--days`` days, ending
   the day before the daily run's window (so the daily run adds days of its own);
2. the daily run: every run the daily schedule asks for (one per show and ``network/shows``);
3. the same daily run again on a copy of the database as it was after the backfill, with
   ``acct01``'s cookie expiring after ``--expire-after`` × the requests its shows made in
   step 2 (the emulator's ``expire_after_requests`` for that account only), then the
   ``credential_expiry_alert`` sensor over every failed run, posting to a loopback webhook.

It asserts and prints: exactly one alert, naming every show of acct01 and no other; every
run of another account succeeded; every table of every other show equal (row count and an
order-independent hash of every column but fetched_at/as_of) to the fault-free run's; and
requests and wall per phase per size (JSON lines, then a table). The emulator answers after
``--latency-ms`` (default 0): this is a correctness check, not a speed one — speed at real
latency is ``bench_network_daily`` and ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.bench_network_daily import TODAY, _clear, _env

EXPIRED_ACCOUNT = "acct01"


class Receiver:
    """A loopback webhook recording every POSTed alert."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def show_tables(db: str, net: Any) -> dict[str, dict[str, tuple[int, str]]]:
    """Per show, per table it has: (rows, order-independent hash without fetched_at/as_of)."""
    import duckdb

    from podcast_pipeline import warehouse
    from podcast_pipeline.network_assets import row_show_id, show_keys
    from podcast_pipeline.tables import TABLES_BY_KEY

    out: dict[str, dict[str, tuple[int, str]]] = {}
    with duckdb.connect(db, read_only=True) as con:
        for show in net.shows:
            per: dict[str, tuple[int, str]] = {}
            for key in show_keys(net, show):
                table = TABLES_BY_KEY[".".join(key.path[1:])]
                cols = [c for c, _ in warehouse.table_columns(table)
                        if c not in warehouse.VOLATILE_COLUMNS]
                row = ", ".join(f'"{c}" := "{c}"' for c in cols)
                [(n, h)] = con.execute(
                    f"SELECT count(*), coalesce(sum(hash(struct_pack({row}))), 0)::VARCHAR "
                    f"FROM {table.qualified} WHERE show_id = ?",
                    [row_show_id(show, table)]).fetchall()
                per[table.qualified] = (int(n), str(h))
            out[show.key] = per
    return out


def _narrow(request: dg.RunRequest, only: list[str] | None) -> list[dg.AssetKey] | None:
    if not only:
        return None
    return [k for k in request.asset_selection or []
            if "/".join(k.path[1:]) in only or k.path == ["network", "shows"]]


def _runs(defs: dg.Definitions, requests: list[dg.RunRequest], instance: dg.DagsterInstance,
          only: list[str] | None) -> list[tuple[dg.RunRequest, Any]]:
    from podcast_pipeline.demo import execute

    done = []
    for request in requests:
        assets = _narrow(request, only)
        if assets == []:
            continue
        done.append((request, execute(defs, request, instance, log_level="ERROR",
                                      assets=assets)))
    return done


def _failure_sensor(instance: dg.DagsterInstance, run_id: str, resources: dict) -> None:
    from podcast_pipeline.sensors import credential_expiry_alert

    run = instance.get_run_by_id(run_id)
    event = next(r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event
                 and r.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="credential_expiry_alert", dagster_instance=instance, dagster_run=run,
        dagster_event=event, resources=resources).for_run_failure()
    credential_expiry_alert(context)


def check(shows: int, days: int, latency_ms: float, only: list[str] | None,
          expire_after: float, lookback: int, per_account: int = 10) -> dict[str, Any]:
    import os

    from podcast_pipeline import alerts
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
    from podcast_pipeline.network import load_network
    from podcast_pipeline.network_assets import SHOWS_KEY, show_keys
    from podcast_pipeline.settings import Settings

    _clear()
    accounts = max(1, shows // per_account)
    receiver = Receiver()
    latency = Faults(latency_ms=latency_ms)
    out: dict[str, Any] = {"shows": shows, "accounts": accounts, "days": days,
                           "latency_ms": latency_ms, "assets": only or "all"}
    with tempfile.TemporaryDirectory() as tmp, Emulator(
            EmulatorConfig(seed=7, today=TODAY, days=days + lookback + 10), faults=latency,
            shows=shows, accounts=accounts) as emu:
        os.environ.update(_env(emu, Path(tmp), lookback))
        os.environ.update({alerts.WEBHOOK_ENV: receiver.url,
                           "PODCAST_PIPELINE_START_DATE":
                               (TODAY - timedelta(days=days + lookback + 5)).isoformat()})
        clean, faulted = str(Path(tmp) / "w.duckdb"), str(Path(tmp) / "faulted.duckdb")
        defs = build_definitions(Settings.load())
        net = load_network(Settings.load())
        dead = net.shows_of_account(EXPIRED_ACCOUNT)
        when = datetime(TODAY.year, TODAY.month, TODAY.day, 6, tzinfo=UTC)
        end = TODAY - timedelta(days=lookback + 2)  # the day before the daily window
        backfill = [dg.RunRequest(asset_selection=show_keys(net, s), tags={
            "dagster/asset_partition_range_start": (end - timedelta(days=days - 1)).isoformat(),
            "dagster/asset_partition_range_end": end.isoformat()}) for s in net.shows]
        backfill.append(dg.RunRequest(asset_selection=[SHOWS_KEY]))

        def phase(name: str, requests: list[dg.RunRequest], instance: dg.DagsterInstance,
                  defs: dg.Definitions) -> list[tuple[dg.RunRequest, Any]]:
            emu.reset_stats()
            t = time.perf_counter()
            done = _runs(defs, requests, instance, only)
            wall = time.perf_counter() - t
            stats = emu.stats()
            out[name] = {"runs": len(done), "wall_s": round(wall, 1),
                         "requests": stats["requests"],
                         "requests_per_show": round(stats["requests"] / shows, 1),
                         "wall_per_show_s": round(wall / shows, 2),
                         "failed_runs": sum(not o.success for _, o in done),
                         "by_account": stats["by_account"]}
            print(json.dumps({"shows": shows, "phase": name,
                              **{k: v for k, v in out[name].items() if k != "by_account"}}),
                  flush=True)
            return done

        with dg.instance_for_test() as instance:
            done = phase("backfill", backfill, instance, defs)
            assert all(o.success for _, o in done), [o.failed_steps[:3] for _, o in done]
            for suffix in ("", ".wal"):  # the warehouse after the backfill, for step 3
                if Path(clean + suffix).exists():
                    shutil.copy(clean + suffix, faulted + suffix)
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
            daily = list(defs.resolve_schedule_def("daily_refresh_schedule")
                         .evaluate_tick(context).run_requests or [])
            done = phase("daily", daily, instance, defs)
            assert all(o.success for _, o in done), [o.failed_steps[:3] for _, o in done]
        reference = show_tables(clean, net)
        dead_requests = out["daily"]["by_account"].get(EXPIRED_ACCOUNT, 0)
        after = max(1, int(dead_requests * expire_after))

        # The same daily run on the backfilled copy; acct01's cookie dies after `after` calls.
        os.environ["DUCKDB_PATH"] = faulted
        defs = build_definitions(Settings.load())
        with dg.instance_for_test() as instance:
            emu.set_faults(Faults(latency_ms=latency_ms, expire_after_requests=after,
                                  expire_apis=("spotify", "anchor"),
                                  expire_accounts=frozenset({EXPIRED_ACCOUNT})))
            done = phase("daily_with_expiry", daily, instance, defs)
            resources = dict(defs.resources)
            failed = [(r, o) for r, o in done if not o.success]
            for _, outcome in failed:
                _failure_sensor(instance, outcome.run_id, resources)
            for _, outcome in failed[:1]:  # a second look at a failure sends nothing new
                _failure_sensor(instance, outcome.run_id, resources)
        got = show_tables(faulted, net)
    receiver.close()

    failed_shows = sorted({r.tags.get("podcast_pipeline/show") for r, _ in failed})
    dead_keys = {s.key for s in dead}
    others = [s for s in net.shows if s.key not in dead_keys]
    unequal = {s.key: [t for t in reference[s.key] if reference[s.key][t] != got[s.key][t]]
               for s in others}
    unequal = {k: v for k, v in unequal.items() if v}
    alerts_sent = receiver.bodies
    out["check"] = {
        "expired_account": EXPIRED_ACCOUNT, "expired_after_requests": after,
        "account_requests_in_clean_daily": dead_requests,
        "failed_shows": failed_shows, "shows_of_account": sorted(dead_keys),
        "alerts": len(alerts_sent),
        "alert_account": alerts_sent[0].get("account") if alerts_sent else None,
        "alert_names_every_show": bool(alerts_sent) and alerts_sent[0].get("shows") == [
            f"{s.name} ({s.key})" for s in dead],
        "alert_names_no_other_show": bool(alerts_sent) and not any(
            s.key in alerts_sent[0].get("text", "") for s in others),
        "other_shows_compared": len(others),
        "other_shows_unequal": unequal,
        "dead_shows_equal_to_clean": sum(reference[k] == got[k] for k in dead_keys),
    }
    c = out["check"]
    c["passed"] = (c["alerts"] == 1 and c["alert_account"] == EXPIRED_ACCOUNT
                   and c["alert_names_every_show"] and c["alert_names_no_other_show"]
                   and set(failed_shows) <= dead_keys and bool(failed_shows) and not unequal)
    for phase_ in ("backfill", "daily", "daily_with_expiry"):
        out[phase_].pop("by_account", None)
    print(json.dumps({"shows": shows, "check": c}), flush=True)
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| Shows | Phase | Runs | Requests | Requests per show | Wall (s) | Wall per show (s) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        for phase in ("backfill", "daily", "daily_with_expiry"):
            p = r[phase]
            lines.append(f"| {r['shows']} | {phase} | {p['runs']} | {p['requests']:,} | "
                         f"{p['requests_per_show']} | {p['wall_s']:,} | {p['wall_per_show_s']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_network_check",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--shows", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--days", type=int, default=365, help="days of the backfill")
    ap.add_argument("--lookback", type=int, default=3, help="the daily run's look-back days")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="the emulator's answer delay (0-10 ms: a correctness check)")
    ap.add_argument("--assets", nargs="*", help="narrow every run to these tables, e.g. "
                    "anchor/plays op3/downloads (default: every asset of every show)")
    ap.add_argument("--expire-after", type=float, default=0.5,
                    help="acct01's cookie dies after this share of its clean daily requests")
    ap.add_argument("--shows-per-account", type=int, default=10)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    started = datetime.now(UTC).isoformat()
    results = [check(n, a.days, a.latency_ms, a.assets, a.expire_after, a.lookback,
                     a.shows_per_account) for n in a.shows]
    print(table(results))
    passed = all(r["check"]["passed"] for r in results)
    print("check:", "PASSED" if passed else "FAILED")
    if a.json:
        Path(a.json).write_text(json.dumps({"started": started, "args": vars(a),
                                            "results": results}, indent=1, default=str))
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
