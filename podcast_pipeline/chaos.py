"""The chaos run: the demo against a faulty emulator, then the same seed without faults.

Faults (5xx, 429, latency jitter, truncated bodies) are absorbed by the clients'
retries, by Dagster's step retries, and — where a step still fails — by re-running
the failed assets of that run request (bounded). A fault-free reference run of the
same seed then fills a second database, and every table's checksum (all rows, without
``fetched_at``/``as_of``) must match: faults may cost time, never data.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults

if TYPE_CHECKING:  # Dagster and the demo load lazily, so the CLI's parser stays quick
    import dagster as dg

    from podcast_pipeline.demo import RunOutcome

CHAOS_DB = "data/chaos.duckdb"
DEFAULT_FAULTS = Faults(error_rate=0.10, rate_limit_rate=0.05, jitter_ms=20.0,
                        malformed_rate=0.01, malformed_kind="truncated", seed=1)


@dataclass(frozen=True)
class ChaosOptions:
    days: int = 30
    seed: int = 7
    database: str = CHAOS_DB
    reference_database: str | None = None  # default: <database>.reference.duckdb
    faults: Faults = DEFAULT_FAULTS
    # The live defaults (6 retries, backoff 1 s) would make a faulty run crawl; the
    # retry count stays, only the waits shrink.
    max_retries: int = 6
    backoff_factor: float = 0.05
    max_reruns: int = 3  # re-runs of a run request's failed assets
    log_level: str = "WARNING"
    backend: str = "graphql"  # the Spotify backend: graphql (default) or rest

    @property
    def reference(self) -> str:
        if self.reference_database:
            return self.reference_database
        path = Path(self.database)
        return str(path.with_name(path.stem + ".reference" + path.suffix))

    def resources(self) -> dict[str, Any]:
        policy = {"max_retries": self.max_retries, "backoff_factor": self.backoff_factor}
        return {"anchor": policy, "op3": policy}


@dataclass
class Pass:
    """One pass of every run request against one emulator into one database."""

    database: str
    outcomes: list[RunOutcome] = field(default_factory=list)  # first attempts
    reruns: list[tuple[RunOutcome, RunOutcome]] = field(default_factory=list)  # (failed, re-run)
    unrecovered: list[RunOutcome] = field(default_factory=list)
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def all_runs(self) -> list[RunOutcome]:
        return self.outcomes + [r for _, r in self.reruns]

    def total(self, attr: str) -> int:
        return sum(getattr(o, attr) for o in self.all_runs)


@dataclass(frozen=True)
class TableComparison:
    table: str
    rows: int
    reference_rows: int
    equal: bool


@dataclass
class ChaosReport:
    options: ChaosOptions
    last_day: date
    faulted: Pass
    reference: Pass
    tables: list[TableComparison]

    @property
    def ok(self) -> bool:
        return (all(t.equal for t in self.tables) and not self.faulted.unrecovered
                and not self.reference.unrecovered)


def run_chaos(options: ChaosOptions = ChaosOptions(), out: TextIO = sys.stdout) -> ChaosReport:
    import dagster as dg

    from podcast_pipeline.demo import instance_for_demo

    if options.days < 1:
        raise SystemExit("--days must be at least 1")
    now = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    for db in (options.database, options.reference):
        _fresh(db)
    f = options.faults
    print(f"Chaos run: {options.days} days up to {(now - timedelta(days=1)).date()} (UTC), seed "
          f"{options.seed}; faults {f.error_rate:.0%} 5xx, {f.rate_limit_rate:.0%} 429, "
          f"{f.malformed_rate:.0%} {f.malformed_kind} bodies, latency {f.latency_ms:g}+0..{f.jitter_ms:g} ms; "
          f"client retries {options.max_retries} (backoff {options.backoff_factor:g} s); up to "
          f"{options.max_reruns} re-runs of failed assets", file=out)
    faulted = run_pass(options, now, options.database, options.faults, options.max_reruns,
                       instance_for_demo(), out)
    # The reference's materializations must not land in the user's instance as if they
    # were the chaos database's, so it always runs on a throwaway instance.
    reference = run_pass(options, now, options.reference, Faults(), options.max_reruns,
                         dg.DagsterInstance.ephemeral(), out)
    report = ChaosReport(options, (now - timedelta(days=1)).date(), faulted, reference,
                         compare(options.database, options.reference))
    print_report(report, out)
    return report


def _fresh(path: str) -> None:
    """Both databases start empty, so that old rows cannot make them look equal or not."""
    from podcast_pipeline.settings import Settings

    if Path(path).resolve() == Path(Settings.load().duckdb_path).resolve():
        raise SystemExit(f"refusing to recreate {path}: it is the pipeline's own database "
                         "(DUCKDB_PATH); give the chaos run other files")
    for p in (Path(path), Path(path + ".wal")):
        p.unlink(missing_ok=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def run_pass(options: ChaosOptions, now: datetime, database: str, faults: Faults,
             max_reruns: int, instance: dg.DagsterInstance, out: TextIO) -> Pass:
    """Every run request of ``options.days`` days; a failed run's failed assets are run
    again, up to ``max_reruns`` times, with lineage tags pointing at the failed run."""
    from podcast_pipeline.definitions import build_definitions
    from podcast_pipeline.demo import emulator_env, execute, patched_env, run_requests_for

    result = Pass(database)
    started = time.monotonic()
    label = "faulted" if faults != Faults() else "reference (no faults)"
    config = EmulatorConfig(seed=options.seed, today=now.date())
    with Emulator(config, faults=faults) as emu:
        env = emulator_env(emu, options.backend)
        env["DUCKDB_PATH"] = database
        env["PODCAST_PIPELINE_WAREHOUSE"] = "duckdb"  # the file named above, whatever .env says
        with patched_env(env):
            defs = build_definitions()
            print(f"\n▶ {label} pass into {database}", file=out)
            for request in run_requests_for(options.days, now):
                outcome = execute(defs, request, instance, log_level=options.log_level,
                                  resources=options.resources())
                result.outcomes.append(outcome)
                _report_run(outcome, out)
                root, attempt = outcome, 0
                while not outcome.success and attempt < max_reruns:
                    attempt += 1
                    rerun = execute(
                        defs, request, instance, log_level=options.log_level,
                        resources=options.resources(),
                        assets=outcome.failed_assets or None,
                        extra_tags={"dagster/parent_run_id": outcome.run_id,
                                    "dagster/root_run_id": root.run_id,
                                    "podcast_pipeline/chaos_rerun": str(attempt)},
                    )
                    result.reruns.append((outcome, rerun))
                    _report_run(rerun, out, rerun_of=outcome)
                    outcome = rerun
                if not outcome.success:
                    result.unrecovered.append(outcome)
        result.emulator_stats = emu.stats()
    result.seconds = time.monotonic() - started
    return result


def _report_run(o: RunOutcome, out: TextIO, rerun_of: RunOutcome | None = None) -> None:
    what = f"re-run of {_assets(rerun_of)} " if rerun_of else ""
    status = "ok" if o.success else f"FAILED {_assets(o)}"
    print(f"  run {o.run_id[:8]} {what}{o.partitions}: {status}", file=out)


def _assets(o: RunOutcome) -> str:
    return ", ".join(k.to_user_string() for k in o.failed_assets) or "the whole run"


def compare(database: str, reference: str) -> list[TableComparison]:
    import duckdb

    from podcast_pipeline import warehouse
    from podcast_pipeline.tables import ALL_TABLES

    with duckdb.connect(database, read_only=True) as a, duckdb.connect(reference, read_only=True) as b:
        rows = []
        for table in ALL_TABLES:
            (n, sum_a), (m, sum_b) = warehouse.checksum(a, table), warehouse.checksum(b, table)
            rows.append(TableComparison(table.qualified, n, m, (n, sum_a) == (m, sum_b)))
    return rows


def print_report(r: ChaosReport, out: TextIO) -> None:
    fp, rp = r.faulted, r.reference
    stats = fp.emulator_stats
    faults = Counter(stats.get("faults", {}))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.get("by_status", {}).items()))
    print("\nChaos summary", file=out)
    print(f"  requests made            {stats.get('requests', 0)} (by status {statuses}); "
          f"reference run {rp.emulator_stats.get('requests', 0)}", file=out)
    print(f"  faults injected          5xx {faults['error']}, 429 {faults['rate_limit']}, "
          f"truncated/malformed {faults['malformed']}, delayed {faults['latency']}", file=out)
    print(f"  client retries           {fp.total('retries')} (429/5xx) + "
          f"{fp.total('malformed_refetches')} malformed bodies fetched again "
          "(steps that succeeded)", file=out)
    print(f"  Dagster step retries     {fp.total('step_retries')}", file=out)
    failed = [o for o in fp.all_runs if not o.success]
    print(f"  failed runs              {len(failed)}"
          + "".join(f"\n    {o.run_id[:8]} {o.partitions}: {_assets(o)}" for o in failed), file=out)
    print(f"  re-runs                  {len(fp.reruns)}"
          + "".join(f"\n    {n.run_id[:8]} {n.partitions}: {_assets(f)} -> "
                    f"{'ok' if n.success else 'FAILED'}" for f, n in fp.reruns), file=out)
    if fp.unrecovered or rp.unrecovered:
        print(f"  still failing            {len(fp.unrecovered)} faulted, "
              f"{len(rp.unrecovered)} reference", file=out)
    print(f"  wall time                faulted {fp.seconds:.1f} s, reference {rp.seconds:.1f} s",
          file=out)
    print(f"\nTable checksums: {fp.database} vs {rp.database}", file=out)
    for t in r.tables:
        print(f"  {t.table:<42} {t.rows:>7} / {t.reference_rows:<7} rows  equal: "
              f"{'yes' if t.equal else 'NO'}", file=out)
    equal = sum(t.equal for t in r.tables)
    verdict = "OK" if r.ok else "FAILED"
    print(f"\n{verdict}: {equal} of {len(r.tables)} tables equal to the fault-free run", file=out)
