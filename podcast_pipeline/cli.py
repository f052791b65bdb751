"""``podcast-pipeline``: emulator | demo | summary | report | chaos | check-credentials."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from podcast_pipeline.demo import run_demo

    outcomes = run_demo(days=args.days, database=args.database, seed=args.seed,
                        verbose=args.verbose, broken_fraction=args.broken_fraction,
                        backend=args.backend, shows=args.shows, accounts=args.accounts)
    return 0 if all(o.success for o in outcomes) else 1


def _report(args: argparse.Namespace) -> int:
    from podcast_pipeline.analytics.report import ReportError, run_report

    try:
        written = run_report(args.database, args.out, build_models=args.build_models)
    except ReportError as exc:
        print(f"podcast-pipeline report: {exc}", file=sys.stderr)
        return 1
    print(f"Report: {written.html}")
    print(f"CSV files: {written.html.parent}/{{{','.join(written.csv)}}}.csv")
    print(written.summary.replace("**", ""))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    import duckdb

    from podcast_pipeline import warehouse
    from podcast_pipeline.settings import Settings
    from podcast_pipeline.summary import print_summary

    # --database: that DuckDB file; else the configured warehouse (the file, or DuckLake).
    target = args.database or Settings.load().warehouse_target()
    if isinstance(target, str) and not Path(target).is_file():
        print(f"summary: no database at {target}: run the demo or materialize assets first, "
              "or name one with --database PATH", file=sys.stderr)
        return 2
    try:
        print_summary(target)
    except duckdb.IOException as err:  # a run is writing right now: it holds the file briefly
        print(f"summary: cannot open {warehouse.describe(target)} read-only ({err}); a run "
              "may be writing it, try again in a few seconds", file=sys.stderr)
        return 1
    except warehouse.WarehouseWriteError as err:  # DuckLake's catalog cannot be reached
        print(f"summary: {err}", file=sys.stderr)
        return 1
    return 0


def _check_credentials(args: argparse.Namespace) -> int:
    from podcast_pipeline.credentials import check_env, environment_with_dotenv

    verdicts = check_env(environment_with_dotenv())  # ./.env too, as `dagster dev` reads it
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(v.ok for v in verdicts) else 1


def _chaos(args: argparse.Namespace) -> int:
    from podcast_pipeline.chaos import ChaosOptions, run_chaos
    from podcast_pipeline.emulator import Faults

    faults = Faults(error_rate=args.error_rate, rate_limit_rate=args.rate_limit_rate,
                    latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                    malformed_rate=args.truncated_rate, malformed_kind="truncated",
                    seed=args.fault_seed)
    report = run_chaos(ChaosOptions(
        days=args.days, seed=args.seed, database=args.database,
        reference_database=args.reference_database, faults=faults, max_retries=args.max_retries,
        backoff_factor=args.backoff, max_reruns=args.max_reruns,
        log_level="INFO" if args.verbose else "WARNING", backend=args.backend))
    return 0 if report.ok else 1


def _add_chaos_parser(sub: argparse._SubParsersAction) -> None:
    from dataclasses import asdict

    from podcast_pipeline.chaos import DEFAULT_FAULTS, ChaosOptions

    d = {**asdict(ChaosOptions()), **asdict(DEFAULT_FAULTS)}  # fault "seed" wins: --fault-seed

    chaos = sub.add_parser("chaos", help="the demo against an emulator with faults, then a "
                           "fault-free run of the same seed; exit 1 unless every table is equal")
    chaos.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    chaos.add_argument("--seed", type=int, default=7, help="emulator data seed (default 7)")
    chaos.add_argument("--database", default="data/chaos.duckdb",
                       help="DuckDB file of the faulted run (recreated; default data/chaos.duckdb)")
    chaos.add_argument("--reference-database", default=None,
                       help="DuckDB file of the fault-free run (default <database>.reference.duckdb)")
    for flag, key, what in (
        ("--error-rate", "error_rate", "share of requests answered 500/502/503"),
        ("--rate-limit-rate", "rate_limit_rate", "share of requests answered 429"),
        ("--truncated-rate", "malformed_rate", "share of 200s whose body is cut in half"),
        ("--latency-ms", "latency_ms", "added latency per request"),
        ("--jitter-ms", "jitter_ms", "random extra latency per request, 0..this"),
    ):
        chaos.add_argument(flag, type=float, default=d[key], help=f"{what} (default {d[key]:g})")
    chaos.add_argument("--fault-seed", type=int, default=d["seed"],
                       help=f"seed of the fault dice (default {d['seed']})")
    chaos.add_argument("--max-retries", type=int, default=d["max_retries"],
                       help=f"client retries per request (default {d['max_retries']})")
    chaos.add_argument("--backoff", type=float, default=d["backoff_factor"],
                       help=f"client retry backoff factor in s (default {d['backoff_factor']:g})")
    chaos.add_argument("--max-reruns", type=int, default=d["max_reruns"],
                       help=f"re-runs of a run's failed assets (default {d['max_reruns']})")
    chaos.add_argument("--verbose", action="store_true", help="Dagster's INFO log too")
    _add_backend(chaos)
    chaos.set_defaults(func=_chaos)


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("graphql", "rest"), default="graphql",
                        help="Spotify for Creators backend the emulator is read with: graphql "
                        "(sp_dc/sp_key, default) or rest (anchorpw_s)")


def build_parser() -> argparse.ArgumentParser:
    from podcast_pipeline.emulator import cli as emulator_cli
    from podcast_pipeline.emulator.data import BREAKDOWNS

    parser = argparse.ArgumentParser(prog="podcast-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    emulator_cli.register(sub)

    demo = sub.add_parser("demo", help="materialize every asset for the last days against the "
                          "built-in emulator and print a summary")
    demo.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    demo.add_argument("--database", default="data/demo.duckdb",
                      help="DuckDB file to write (default data/demo.duckdb)")
    demo.add_argument("--seed", type=int, default=7, help="emulator data seed (default 7)")
    demo.add_argument("--verbose", action="store_true",
                      help="show Dagster's own INFO log too (off: one line per asset)")
    demo.add_argument("--broken-fraction", choices=BREAKDOWNS, default=None,
                      help="bad data on purpose: this Anchor breakdown sums to 1.25 on the last "
                           "(GraphQL backend: app and device only) "
                           "day, so its blocking check fails and the models over it are not rebuilt")
    _add_backend(demo)
    demo.add_argument("--shows", type=int, default=1,
                      help="emulated shows (default 1); more make a network, configured by a "
                           "network file written beside --database")
    demo.add_argument("--accounts", type=int, default=1,
                      help="Spotify for Creators accounts the shows are spread over, "
                           "round-robin (default 1)")
    demo.set_defaults(func=_demo)
    summary = sub.add_parser("summary", help="lifetime plays and listeners, the last 7 days, top "
                             "episodes, apps and countries, read from the DuckDB file")
    summary.add_argument("--database", default=None, metavar="PATH",
                         help="DuckDB file to read (default: the configured warehouse, "
                              "DUCKDB_PATH or DuckLake); the demo's is data/demo.duckdb")
    summary.set_defaults(func=_summary)
    report = sub.add_parser("report", help="write the HTML report and one CSV file per "
                            "analytics model; print where they are")
    report.add_argument("--database", default=None,
                        help="DuckDB file (default: the configured warehouse, DUCKDB_PATH "
                             "or DuckLake)")
    report.add_argument("--out", default=None, help="folder to write into (default "
                        "PODCAST_PIPELINE_REPORT_DIR, else <database>-report beside the database)")
    report.add_argument("--build-models", action="store_true",
                        help="rebuild the analytics models from the raw tables first (writes to "
                             "the database; the pipeline must not be writing it)")
    report.set_defaults(func=_report)
    _add_chaos_parser(sub)
    check = sub.add_parser("check-credentials", help="one authenticated call per API with the "
                           "credentials in the environment and ./.env; one line per API, exit 1 unless "
                           "both are ok")
    check.set_defaults(func=_check_credentials)
    workspace = sub.add_parser("workspace", help="print a workspace.yaml with one code location "
                               "per Spotify account of the network file (and one for the "
                               "network): each process then loads only its account's shows")
    workspace.add_argument("--accounts-per-location", type=int, default=1, metavar="K",
                           help="K accounts' shows per code location (default 1): fewer "
                                "code servers, each a bigger load per run")
    workspace.set_defaults(func=_workspace)
    return parser


def _workspace(args: argparse.Namespace) -> int:
    from podcast_pipeline.locations import workspace_yaml
    from podcast_pipeline.network import load_network
    from podcast_pipeline.settings import Settings

    print(workspace_yaml(load_network(Settings.load()), args.accounts_per_location), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    from podcast_pipeline.errors import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # a malformed setting: its one line, not a traceback
        print(f"podcast-pipeline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
