"""``podcast-pipeline``: emulator | demo | check-credentials."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from podcast_pipeline.demo import run_demo

    outcomes = run_demo(days=args.days, database=args.database, seed=args.seed, quiet=args.quiet)
    return 0 if all(o.success for o in outcomes) else 1


def build_parser() -> argparse.ArgumentParser:
    from podcast_pipeline.emulator import cli as emulator_cli

    parser = argparse.ArgumentParser(prog="podcast-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    emulator_cli.register(sub)

    demo = sub.add_parser("demo", help="materialize every asset for the last days against the "
                          "built-in emulator and print a summary")
    demo.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    demo.add_argument("--database", default="data/demo.duckdb",
                      help="DuckDB file to write (default data/demo.duckdb)")
    demo.add_argument("--seed", type=int, default=7, help="emulator data seed (default 7)")
    demo.add_argument("--quiet", action="store_true", help="only warnings and the summary")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
