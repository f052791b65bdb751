"""The ``emulator`` subcommand: serve both APIs on loopback and print the env to use them.

``eval "$(podcast-pipeline emulator --background)"`` returns as soon as the port listens:
the server detaches (its own session, stdio on /dev/null), so nothing keeps the command
substitution's pipe open. ``--env-file`` writes the same ``export`` lines for other shells.
In the foreground the ``export`` lines go to stdout and everything human to stderr.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import select
import shlex
import signal
import socket
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .data import BREAKDOWNS, EmulatorConfig
from .faults import APIS, Faults
from .server import Emulator

DEFAULT_DATABASE = "data/demo.duckdb"  # the demo's: emulator data never lands in a real show's
NETWORK_FILE_NAME = "emulator-network.yaml"
READY_TIMEOUT_S = 30.0  # how long --background waits for the detached server to come up


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "emulator", help="serve fake Anchor + OP3 APIs on loopback",
        description="Serve emulated Spotify for Creators (Anchor) and OP3 APIs on loopback from a "
                    "deterministic synthetic show, and print the environment variables that point "
                    "the pipeline at them (export lines, for eval or a sourced file).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything but loopback is refused)")
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="allow binding a non-loopback address (exposes the fake credentials)")
    p.add_argument("--port", type=int, default=8765,
                   help="port to listen on (default 8765; 0 picks a free one)")
    p.add_argument("--background", action="store_true",
                   help="detach once listening: print the export lines (including EMULATOR_PID, "
                        "for `kill \"$EMULATOR_PID\"`) and return at once")
    p.add_argument("--env-file", type=Path, default=None, metavar="PATH",
                   help="also write the export lines to PATH once listening (source it with "
                        "`. PATH`); removed again when the emulator stops")
    p.add_argument("--database", default=DEFAULT_DATABASE, metavar="PATH",
                   help=f"DUCKDB_PATH to export (default {DEFAULT_DATABASE}, the demo's, so "
                        "emulated data stays out of your real database)")
    d = p.add_argument_group("data")
    d.add_argument("--seed", type=int, default=7,
                   help="seed of the synthetic show (default 7, as the demo)")
    d.add_argument("--episodes", type=int, default=12,
                   help="published episodes (default 12)")
    d.add_argument("--drafts", type=int, default=1, help="unpublished draft episodes (default 1)")
    d.add_argument("--days", type=int, default=120,
                   help="days of history before --today (default 120): every endpoint has data "
                        "for today-DAYS .. yesterday, nothing before")
    d.add_argument("--downloads-per-day", type=int, default=150,
                   help="mean OP3 downloads per day (default 150)")
    d.add_argument("--today", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="the emulated 'today' (default: the real UTC date)")
    n = p.add_argument_group("many shows (a network)")
    n.add_argument("--shows", type=_positive("--shows"), default=1,
                   help="shows to serve (default 1), each with its own data (seed.k), spread "
                        "round-robin over --accounts")
    n.add_argument("--accounts", type=_positive("--accounts"), default=1,
                   help="Spotify for Creators accounts owning them (default 1); each account's "
                        "cookies see only its shows; one OP3 token sees all")
    n.add_argument("--network-file", type=Path, default=None, metavar="PATH",
                   help="where to write the network file naming the accounts' variables "
                        "(exported as PODCAST_PIPELINE_NETWORK_FILE; default with more than "
                        f"one show: {NETWORK_FILE_NAME} beside --database)")
    n.add_argument("--op3-per-account", action="store_true",
                   help="give each account its own OP3 token too (EMU_ACCT01_OP3_TOKEN, ...), "
                        "seeing only its shows; the network file then uses those")
    n.add_argument("--network-backend", choices=("graphql", "rest"), default="graphql",
                   help="the backend the network file gives each account (default graphql)")
    d.add_argument("--redirect-logs-direct", action="store_true",
                   help="serve /redirect-logs itself (documented v0.0.3) instead of a 308 to /hits")
    p.add_argument("--broken-fraction", choices=BREAKDOWNS, default=None,
                   help="bad data on purpose: this Anchor breakdown sums to 1.25 on the last "
                        "(GraphQL backend: app and device only) "
                        "data day, so the fractions_sum_to_one check fails and blocks the models")
    f = p.add_argument_group("faults")
    f.add_argument("--latency-ms", type=float, default=0.0,
                   help="latency added to every request, in ms (default 0)")
    f.add_argument("--jitter-ms", type=float, default=0.0,
                   help="random extra latency per request, 0..this ms (default 0)")
    f.add_argument("--error-rate", type=float, default=0.0,
                   help="share of requests answered 500/502/503 (default 0)")
    f.add_argument("--rate-limit-rate", type=float, default=0.0,
                   help="share of requests answered 429 (default 0)")
    f.add_argument("--retry-after", type=int, default=None, metavar="SECONDS",
                   help="Retry-After header on Anchor's 429s (default none; OP3 never sends one)")
    f.add_argument("--expire-after-requests", type=int, default=None, metavar="N",
                   help="credentials answer 401 after N requests to their API (default never)")
    f.add_argument("--expire-at", type=_aware, default=None, metavar="DATETIME",
                   help="credentials answer 401 from this ISO time with offset, e.g. "
                        "2026-01-01T00:00:00Z (default never)")
    f.add_argument("--expire-apis", nargs="+", choices=APIS, default=list(APIS),
                   help="APIs whose credential expires: anchor (REST), op3, spotify (the "
                         "GraphQL login; default all)")
    f.add_argument("--expire-accounts", nargs="+", default=None, metavar="ACCOUNT",
                   help="with --expire-after-requests/--expire-at: only these accounts' "
                        "cookies expire, each after its own N requests (default: the API's "
                        "credential, every account's)")
    f.add_argument("--malformed-rate", type=float, default=0.0,
                   help="share of 200 answers whose body is broken (default 0)")
    f.add_argument("--malformed-kind", choices=("truncated", "html", "mixed"), default="mixed",
                   help="how bodies break: cut short, a login/Cloudflare HTML page, or either "
                        "(default mixed)")
    f.add_argument("--fault-seed", type=int, default=0,
                   help="seed of the fault dice, for reproducible faults (default 0)")
    f.add_argument("--apply-to", nargs="+", default=None, metavar="NAME",
                   help="limit faults to these endpoints (e.g. plays downloads) or APIs "
                        "(anchor op3); default all")
    f.add_argument("--bearer-ttl", type=float, default=None, metavar="SECONDS",
                   help="lifetime of a Spotify GraphQL bearer (default 3600, as live); an "
                        "expired one answers 401")
    f.add_argument("--data-fetching-rate", type=float, default=0.0,
                   help="share of GraphQL geo region/city answers nulled by a "
                        "DataFetchingException (default 0)")
    p.set_defaults(func=run)  # `podcast-pipeline emulator` dispatches on args.func
    return p


def _positive(flag: str) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{flag} needs a whole number >= 1, not {text!r}")
        return int(text)
    return parse


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
        bearer_ttl=args.bearer_ttl, data_fetching_rate=args.data_fetching_rate,
        expire_accounts=frozenset(args.expire_accounts) if args.expire_accounts else None)


def network_file(args: argparse.Namespace) -> Path | None:
    """Where the network file goes: --network-file, else beside the database for a network."""
    if args.network_file is not None:
        return Path(args.network_file).resolve()
    if args.shows > 1 or args.accounts > 1:
        return (Path(args.database).parent / NETWORK_FILE_NAME).resolve()
    return None


def export_lines(emu: Emulator, database: str, pid: int,
                 network: dict[str, str] | None = None) -> str:
    """``network``: the variables of the network file written (Emulator.network_env)."""
    env = {**emu.all_env, "DUCKDB_PATH": database, "EMULATOR_PID": str(pid), **(network or {})}
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _write_env_file(path: Path, text: str) -> None:
    """Atomically, so a shell sourcing it never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _remove_env_file(path: Path | None, text: str) -> None:
    """Only if it is still ours: a newer emulator may have rewritten it."""
    try:
        if path is not None and path.read_text() == text:
            path.unlink()
    except OSError:
        pass


def _stop_on_sigterm() -> None:
    """``kill $EMULATOR_PID`` stops the server cleanly (and removes the env file), like Ctrl-C."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    if not args.allow_non_loopback and not _is_loopback(args.host):
        print(f"refusing to bind non-loopback host {args.host!r} (use --allow-non-loopback)",
              file=sys.stderr)
        return 2
    config = EmulatorConfig(seed=args.seed, episodes=args.episodes, days=args.days,
                            downloads_per_day=args.downloads_per_day, today=args.today,
                            drafts=args.drafts, redirect_logs_direct=args.redirect_logs_direct,
                            broken_fraction=args.broken_fraction)
    if args.accounts > args.shows:
        print(f"emulator: --accounts ({args.accounts}) cannot exceed --shows ({args.shows}): "
              "every account owns at least one show", file=sys.stderr)
        return 2
    try:
        emu = Emulator(config, faults=faults_from_args(args), host=args.host, port=args.port,
                       shows=args.shows, accounts=args.accounts,
                       op3_per_account=args.op3_per_account)
        unknown = sorted(set(args.expire_accounts or ()) -
                         {a.name for a in emu.network.accounts})
        if unknown:
            raise ValueError(f"--expire-accounts names unknown accounts {unknown} (known: "
                             f"{', '.join(a.name for a in emu.network.accounts)})")
    except ValueError as err:
        print(f"emulator: {err}", file=sys.stderr)
        return 2
    path = network_file(args)
    network = emu.network_env(path, args.network_backend) if path is not None else None
    try:
        emu.listen()
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            print(f"emulator: port {args.port} on {args.host} is already in use (an emulator "
                  "started before? stop it with `kill \"$EMULATOR_PID\"`), or pick another with "
                  "--port N, or --port 0 for any free port", file=sys.stderr)
        else:
            print(f"emulator: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    if args.background:
        return _detach(emu, args)
    text = export_lines(emu, args.database, os.getpid(), network)
    emu.start()
    if args.env_file:
        _write_env_file(args.env_file, text)
    sys.stdout.write(text)
    sys.stdout.flush()
    print(f"emulator serving Anchor (REST + GraphQL) + OP3 on {emu.url}{_shows_note(emu, path)} "
          "(fake credentials; Ctrl-C to stop)", file=sys.stderr)
    _stop_on_sigterm()
    try:
        emu.serve_forever()
    finally:
        _remove_env_file(args.env_file, text)
    return 0


def _shows_note(emu: Emulator, network: Path | None) -> str:
    if network is None:
        return ""
    return (f" for {len(emu.network.datasets)} shows on {len(emu.network.accounts)} accounts "
            f"(network file {network})")


def _detach(emu: Emulator, args: argparse.Namespace) -> int:
    """Fork a server in its own session; return once it answers or say why it did not."""
    if not hasattr(os, "fork"):
        print("emulator: --background needs fork(); run it without --background in its own "
              "terminal instead", file=sys.stderr)
        return 2
    read_end, write_end = os.pipe()
    url = emu.url
    pid = os.fork()
    if pid == 0:  # the server: never returns into the caller's code
        os._exit(_serve_detached(emu, args, read_end, write_end))
    os.close(write_end)
    emu.stop()  # the parent's copy of the listening socket; the child keeps its own
    text = _read_ready(read_end, pid)
    if text is None:
        return 2
    sys.stdout.write(text)
    sys.stdout.flush()
    where = f"; also in {args.env_file}" if args.env_file else ""
    print(f"emulator serving Anchor + OP3 on {url}{_shows_note(emu, network_file(args))} in "
          f"the background (pid {pid}{where}); "
          "stop it with: kill \"$EMULATOR_PID\"", file=sys.stderr)
    return 0


def _serve_detached(emu: Emulator, args: argparse.Namespace, read_end: int, write_end: int) -> int:
    """The forked child: detach, tell the parent the export lines (or ``!`` + the error), serve."""
    try:
        os.close(read_end)
        os.setsid()  # no hang-up or Ctrl-C of the caller's terminal reaches it
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        path = network_file(args)
        text = export_lines(emu, args.database, os.getpid(),
                            emu.network_env(path, args.network_backend) if path else None)
        _stop_on_sigterm()
        emu.start()
        if args.env_file:
            _write_env_file(args.env_file, text)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which prints it
        os.write(write_end, f"!{err}".encode())
        return 1
    os.write(write_end, text.encode())
    os.close(write_end)
    try:
        emu.serve_forever()
    finally:
        _remove_env_file(args.env_file, text)
    return 0


def _read_ready(fd: int, pid: int) -> str | None:
    """The export lines the child sends once it serves, within READY_TIMEOUT_S."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:  # the child closed its end: ready, or dead
                text = b"".join(chunks).decode()
                if text and not text.startswith("!"):
                    return text
                why = f": {text[1:]}" if text else ""
                print(f"emulator: the background server failed before it was ready{why}",
                      file=sys.stderr)
                return None
            chunks.append(chunk)
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    print(f"emulator: the background server was not ready within {READY_TIMEOUT_S:g} s; "
          "stopped it", file=sys.stderr)
    return None
