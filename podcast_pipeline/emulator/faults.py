"""Fault injection: latency, 429s, 5xx, malformed 200s and credential expiry.

Every eligible request draws the same three numbers from one seeded RNG whatever the
outcome, so for a sequential client the injected faults are exactly reproducible.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

APIS = ("anchor", "op3", "spotify")  # spotify: the GraphQL backend's hosts
MalformedKind = Literal["truncated", "html", "mixed"]


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # random 500/502/503
    rate_limit_rate: float = 0.0  # 429
    retry_after: int | None = None  # Anchor 429 only; OP3 never sends Retry-After
    expire_after_requests: int | None = None  # credential dies after N requests to an API
    expire_at: datetime | None = None  # aware datetime
    expire_apis: tuple[str, ...] = APIS
    malformed_rate: float = 0.0
    malformed_kind: MalformedKind = "mixed"
    seed: int = 0
    apply_to: frozenset[str] | None = None  # endpoint names (or api names); None = all
    bearer_ttl: float | None = None  # seconds a Spotify bearer lives (None: 3600, as live)
    data_fetching_rate: float = 0.0  # share of geo region/city answers nulled by Spotify
    # Only these emulated accounts' credentials expire by expire_after_requests/expire_at
    # (each counting its own requests); None: the whole API's credential, as with one show.
    expire_accounts: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.expire_at is not None and self.expire_at.tzinfo is None:
            raise ValueError("Faults.expire_at must be timezone-aware")
        if self.malformed_kind not in ("truncated", "html", "mixed"):
            raise ValueError(f"bad malformed_kind {self.malformed_kind!r}")
        if self.bearer_ttl is not None and not self.bearer_ttl > 0:
            raise ValueError("Faults.bearer_ttl must be positive seconds")
        bad = set(self.expire_apis) - set(APIS)
        if bad:
            raise ValueError(f"unknown expire_apis {sorted(bad)}")
        object.__setattr__(self, "expire_apis", tuple(self.expire_apis))
        if self.apply_to is not None:
            object.__setattr__(self, "apply_to", frozenset(self.apply_to))
        if self.expire_accounts is not None:
            object.__setattr__(self, "expire_accounts", frozenset(self.expire_accounts))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["expire_at"] = self.expire_at.isoformat() if self.expire_at else None
        d["expire_apis"] = list(self.expire_apis)
        d["apply_to"] = sorted(self.apply_to) if self.apply_to is not None else None
        d["expire_accounts"] = (sorted(self.expire_accounts)
                                if self.expire_accounts is not None else None)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}")
        d = dict(data)
        if isinstance(d.get("expire_at"), str):
            d["expire_at"] = datetime.fromisoformat(d["expire_at"].replace("Z", "+00:00"))
        if d.get("expire_apis") is not None:
            d["expire_apis"] = tuple(d["expire_apis"])
        else:
            d.pop("expire_apis", None)
        if d.get("apply_to") is not None:
            d["apply_to"] = frozenset(d["apply_to"])
        if d.get("expire_accounts") is not None:
            d["expire_accounts"] = frozenset(d["expire_accounts"])
        return cls(**d)


@dataclass
class Decision:
    rate_limit: bool = False
    error_status: int | None = None
    malformed: str | None = None  # "truncated" | "html"


@dataclass
class _CredState:
    requests: int = 0
    expired: bool = False
    refreshed_at: datetime | None = None


@dataclass
class FaultEngine:
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._cred = {api: _CredState() for api in APIS}
        # One emulated account's own credential state (a network's accounts), by (api, name).
        self._accounts: dict[tuple[str, str], _CredState] = {}

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            for st in (*self._cred.values(), *self._accounts.values()):
                st.requests = 0

    def applies(self, api: str, endpoint: str) -> bool:
        scope = self.faults.apply_to
        return scope is None or endpoint in scope or api in scope

    def count_and_check_expired(self, api: str, account: str | None = None) -> bool:
        """Count one request to ``api`` (by ``account``, when the credential names one);
        True when that credential is (now) expired.

        With ``expire_accounts`` set, the automatic expiry (after N requests, at a time)
        counts and kills only those accounts' credentials; a manual expire of the whole API
        still kills every account's."""
        f = self.faults
        with self._lock:
            st = self._cred[api]
            st.requests += 1
            own = None
            if account is not None:
                own = self._accounts.setdefault((api, account), _CredState())
                own.requests += 1
            scoped = f.expire_accounts is not None
            target = (own if account in (f.expire_accounts or ()) else None) if scoped else st
            if api in f.expire_apis and target is not None:
                if f.expire_after_requests is not None and \
                        target.requests > f.expire_after_requests:
                    target.expired = True
                if f.expire_at is not None and datetime.now(UTC) >= f.expire_at and (
                        target.refreshed_at is None or target.refreshed_at < f.expire_at):
                    target.expired = True
            return st.expired or (own is not None and own.expired)

    def expire(self, api: str, account: str | None = None) -> None:
        with self._lock:
            if account is None:
                self._cred[_check_api(api)].expired = True
            else:
                self._accounts.setdefault((_check_api(api), account), _CredState()).expired = True

    def refresh(self, api: str, account: str | None = None) -> None:
        """A fresh credential: the API's (and every account's of it), or one account's."""
        now = datetime.now(UTC)
        with self._lock:
            states = [self._accounts.setdefault((_check_api(api), account), _CredState())] \
                if account is not None else [self._cred[_check_api(api)]] + [
                    st for (a, _), st in self._accounts.items() if a == api]
            for st in states:
                st.expired, st.requests, st.refreshed_at = False, 0, now

    def expired_accounts(self) -> dict[str, list[str]]:
        """api -> the accounts whose own credential is expired (for /_emulator/stats)."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for (api, account), st in sorted(self._accounts.items()):
                if st.expired:
                    out.setdefault(api, []).append(account)
            return out

    def sleep(self) -> bool:
        f = self.faults
        if f.latency_ms <= 0 and f.jitter_ms <= 0:
            return False
        with self._lock:
            jitter = self._rng.uniform(0, f.jitter_ms) if f.jitter_ms > 0 else 0.0
        time.sleep((f.latency_ms + jitter) / 1000)
        return True

    def chance(self, rate: float) -> bool:
        """One extra draw for a fault only some requests can have (a nulled geo field)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def draw(self) -> Decision:
        f = self.faults
        with self._lock:
            r_limit, r_err, r_mal = self._rng.random(), self._rng.random(), self._rng.random()
            pick_status, pick_kind = self._rng.random(), self._rng.random()
        dec = Decision()
        if r_limit < f.rate_limit_rate:
            dec.rate_limit = True
        elif r_err < f.error_rate:
            dec.error_status = (500, 502, 503)[min(2, int(pick_status * 3))]
        elif r_mal < f.malformed_rate:
            kind = f.malformed_kind
            dec.malformed = kind if kind != "mixed" else ("truncated" if pick_kind < 0.5 else "html")
        return dec


def _check_api(api: str) -> str:
    if api not in APIS:
        raise ValueError(f"unknown api {api!r}; expected one of {APIS}")
    return api


LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Log in | Spotify for Creators</title></head>
<body><div id="app"><form action="/pod/login" method="post"><h1>Log in to Spotify for Creators</h1>
<input name="email" type="email"><input name="password" type="password">
<button type="submit">Log in</button></form></div></body></html>
"""


def truncate(body: bytes) -> bytes:
    """Cut a document roughly in half: what a dropped connection behind a proxy looks like.

    The cut never lands just after a newline: a TSV page cut there would be a valid, shorter
    page, and this fault models a detectably broken body (a silent short page is a data bug
    no client could see).
    """
    if len(body) <= 1:
        return b"{"
    cut = max(1, len(body) // 2)
    while cut > 1 and body[cut - 1:cut] == b"\n":
        cut -= 1
    return body[:cut]

