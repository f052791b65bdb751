"""``python -m podcast_pipeline.emulator [flags]``: the emulator CLI on its own."""

import argparse
import sys

from .cli import register, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podcast_pipeline.emulator")
    sub = parser.add_subparsers(dest="command", required=False)
    register(sub)
    args = parser.parse_args(["emulator", *(argv if argv is not None else sys.argv[1:])])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
