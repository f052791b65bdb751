"""The ``emulator`` subcommand: serve both APIs on loopback and print the env to use them.

``eval "$(podcast-pipeline emulator --seed 7 &)"`` style use works because the
``export`` lines go to stdout first and everything human goes to stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import socket
import sys
from datetime import date, datetime
from typing import Any

from .data import EmulatorConfig
from .faults import APIS, Faults
from .server import Emulator


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "emulator", help="serve fake Anchor + OP3 APIs on loopback",
        description="Serve emulated Anchor and OP3 APIs from a deterministic synthetic dataset.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only by default)")
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="allow binding a non-loopback address (exposes fake credentials)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--downloads-per-day", type=int, default=150)
    p.add_argument("--drafts", type=int, default=1)
    p.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: UTC today)")
    p.add_argument("--redirect-logs-direct", action="store_true",
                   help="serve /redirect-logs itself (documented v0.0.3) instead of a 308 to /hits")
    f = p.add_argument_group("faults")
    f.add_argument("--latency-ms", type=float, default=0.0)
    f.add_argument("--jitter-ms", type=float, default=0.0)
    f.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500/502/503")
    f.add_argument("--rate-limit-rate", type=float, default=0.0, help="fraction answered 429")
    f.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds on Anchor 429s")
    f.add_argument("--expire-after-requests", type=int, default=None)
    f.add_argument("--expire-at", type=_aware, default=None, help="ISO datetime with offset")
    f.add_argument("--expire-apis", nargs="+", choices=APIS, default=list(APIS))
    f.add_argument("--malformed-rate", type=float, default=0.0)
    f.add_argument("--malformed-kind", choices=("truncated", "html", "mixed"), default="mixed")
    f.add_argument("--fault-seed", type=int, default=0)
    f.add_argument("--apply-to", nargs="+", default=None, help="endpoint or api names faults apply to")
    f.add_argument("--bearer-ttl", type=float, default=None,
                   help="seconds a Spotify GraphQL bearer lives (default 3600)")
    f.add_argument("--data-fetching-rate", type=float, default=0.0,
                   help="share of GraphQL geo region/city answers nulled by a DataFetchingException")
    p.set_defaults(func=run)  # `podcast-pipeline emulator` dispatches on args.func
    return p


def _aware(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError("--expire-at needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return dt


def _is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(
        latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate, retry_after=args.retry_after,
        expire_after_requests=args.expire_after_requests, expire_at=args.expire_at,
        expire_apis=tuple(args.expire_apis), malformed_rate=args.malformed_rate,
        malformed_kind=args.malformed_kind, seed=args.fault_seed,
        apply_to=frozenset(args.apply_to) if args.apply_to else None,
        bearer_ttl=args.bearer_ttl, data_fetching_rate=args.data_fetching_rate)


def run(args: argparse.Namespace) -> int:
    if not args.allow_non_loopback and not _is_loopback(args.host):
        print(f"refusing to bind non-loopback host {args.host!r} (use --allow-non-loopback)",
              file=sys.stderr)
        return 2
    config = EmulatorConfig(seed=args.seed, episodes=args.episodes, days=args.days,
                            downloads_per_day=args.downloads_per_day, today=args.today,
                            drafts=args.drafts, redirect_logs_direct=args.redirect_logs_direct)
    emu = Emulator(config, faults=faults_from_args(args), host=args.host, port=args.port)
    emu.start()
    for name, value in emu.all_env.items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()
    print(f"emulator serving Anchor (REST + GraphQL) + OP3 on {emu.url} (fake credentials; Ctrl-C to stop)",
          file=sys.stderr)
    emu.serve_forever()
    return 0
