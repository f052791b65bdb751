"""How many calls each credential gets at once: decided here, for a network of one and of many.

One Spotify for Creators account (the ``anchor/*`` and ``spotify/*`` steps of all its shows)
and one OP3 token each have one Dagster pool, ``spotify_<account>`` / ``op3_<token>`` (the
network of one: ``spotify_default`` / ``op3_default``), with **limit 1**: one step calls a
credential at a time, across every run of the instance. That step keeps at most the
credential's setting in flight (:func:`calls_per_step`: days, episodes, redirect-log runs
side by side). So, per credential, steps × calls ≤ 1 × N, whatever the executor: an
in-process run (the daily job, the benchmarks) runs its steps one after another and still
gets N connections, a multiprocess or Celery run gets no more.

Dagster's SQLite storage does not make that 1 a hard bound: it reads a free slot and writes
the claim in two statements, so two steps that claim at the same moment can both get it
(measured: 43 of 100 simultaneous claims of a 1-slot pool both succeeded). A temporary
instance (no ``DAGSTER_HOME``) has no limits at all. So each step also holds a file lock per
credential beside the warehouse while it calls (:func:`calling`): on one machine the bound
holds whatever the instance; across machines (PostgreSQL storage, ``deploy/``) the pool's
``FOR UPDATE SKIP LOCKED`` claim does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from podcast_pipeline.network import Network
from podcast_pipeline.settings import OP3_CONCURRENCY_ENV, SPOTIFY_CONCURRENCY_ENV, Settings

POOL_LIMIT = 1  # steps per credential at once; the calls of that step are the setting
# A step waiting here got a pool slot another step of its credential also holds (the SQLite
# race above): it waits for that step's calls, bounded. Longer than the longest fetch measured
# (a year of redirect logs: 258 s).
WAIT_SECONDS = 3600.0
SETTING = {"anchor": SPOTIFY_CONCURRENCY_ENV, "op3": OP3_CONCURRENCY_ENV}


class CredentialBusy(Exception):
    """Another step kept calling the credential for :data:`WAIT_SECONDS`."""


def pool(api: str, credential: str) -> str:
    """The pool of a Spotify account (``api`` "anchor": anchor/* and spotify/*) or OP3 token."""
    return f"spotify_{credential}" if api == "anchor" else f"op3_{credential}"


def calls_per_step(api: str, settings: Settings) -> int:
    """Requests one step keeps in flight to its credential: the credential's whole allowance,
    since its pool lets one step at a time."""
    return max(1, settings.spotify_concurrency if api == "anchor" else settings.op3_concurrency)


def pool_limits(net: Network) -> dict[str, int]:
    """Each account's and token's pool (those with shows), at :data:`POOL_LIMIT`."""
    pools = [pool("anchor", a.name) for a in net.accounts if net.shows_of_account(a.name)]
    pools += [pool("op3", t.name) for t in net.op3_tokens if net.shows_of_token(t.name)]
    return dict.fromkeys(pools, POOL_LIMIT)


def lock_path(database: str, pool_name: str) -> str:
    """``<db>.<pool>.lock``: every process writing one warehouse meets there."""
    db = Path(database).expanduser()
    return str(db.with_name(f"{db.name}.{pool_name}.lock"))


@contextmanager
def calling(database: str, pool_name: str, on_wait: Callable[[str], None] | None = None,
            timeout: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the credential's calls lock while a step calls it (not while it writes)."""
    lock = FileLock(lock_path(database, pool_name))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait(f"pool {pool_name}: another step is calling this credential; waiting for "
                    f"it to finish (up to {timeout:.0f} s)")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise CredentialBusy(f"pool {pool_name}: another step kept calling this credential "
                                 f"for {timeout:.0f} s") from None
    try:
        yield
    finally:
        lock.release()
