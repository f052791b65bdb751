"""An emulated network: N shows spread round-robin over M Spotify for Creators accounts.

Show k is its own :class:`Dataset` (seed ``seed.k``; show 0 is the single-show emulator's),
account j owns shows j, j+M, j+2M, ... and logs in with the cookies of its first show's
dataset, so with one show and one account everything is as it always was. Every dataset's
``cookie`` / ``sp_dc`` / ``sp_key`` are its owning account's. One OP3 token (show 0's) sees
every show, as one OP3 API key sees all the shows of its owner; with ``op3_per_account`` each
account also has its own token, which sees only its shows.

Building a network costs only ids and episode lists per show (a few ms for 100 shows): the
per-day numbers are generated when first asked for, and OP3 days share one bounded cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from .data import OP3_CACHE_DAYS, Dataset, DayCache, EmulatorConfig

MAX_SHOWS = 1000
OP3_TOKEN_ENV = "OP3_TOKEN"


@dataclass(frozen=True)
class EmulatedAccount:
    name: str  # acct01, acct02, ...
    cookie: str  # anchorpw_s
    sp_dc: str
    sp_key: str
    shows: tuple[int, ...]  # indexes into ShowNetwork.datasets
    op3_token: str | None = None  # its own OP3 token (op3_per_account), seeing only its shows

    @property
    def identity(self) -> str:
        """What the request log records for this account: a hash, never the cookie."""
        return hashlib.sha256(self.sp_dc.encode()).hexdigest()[:12]

    def env_names(self) -> dict[str, str]:
        """The variables the emulator exports this account's cookies under."""
        base = f"EMU_{self.name.upper()}"
        return {"sp_dc": f"{base}_SP_DC", "sp_key": f"{base}_SP_KEY",
                "anchor_pw_s": f"{base}_ANCHOR_PW_S", "op3_token": f"{base}_OP3_TOKEN"}


class ShowNetwork:
    """The shows and accounts the emulator serves, with lookups from every id to its show."""

    def __init__(self, config: EmulatorConfig, shows: int = 1, accounts: int = 1,
                 first: Dataset | None = None, op3_per_account: bool = False) -> None:
        """``first``: an existing dataset to serve as show 0 (a single-show backend's)."""
        if not 1 <= shows <= MAX_SHOWS:
            raise ValueError(f"shows must be 1..{MAX_SHOWS}, not {shows}")
        if not 1 <= accounts <= shows:
            raise ValueError(f"accounts must be 1..shows ({shows}), not {accounts}")
        self.config = config
        cache = DayCache(max(OP3_CACHE_DAYS, 4 * shows))
        self.datasets = [first or Dataset(config, 0, op3_cache=cache)]
        self.datasets += [Dataset(config, k, op3_cache=cache) for k in range(1, shows)]
        width = max(2, len(str(accounts)))
        self.accounts = tuple(
            EmulatedAccount(f"acct{j + 1:0{width}d}", self.datasets[j].cookie,
                            self.datasets[j].sp_dc, self.datasets[j].sp_key,
                            tuple(range(j, shows, accounts)),
                            _token(config.seed, j) if op3_per_account else None)
            for j in range(accounts))
        self._owner: dict[int, EmulatedAccount] = {}
        for account in self.accounts:
            for k in account.shows:
                ds = self.datasets[k]
                ds.cookie, ds.sp_dc, ds.sp_key = account.cookie, account.sp_dc, account.sp_key
                self._owner[k] = account
        self.op3_token = self.datasets[0].op3_token  # sees every show
        for ds in self.datasets:
            ds.op3_token = self._owner[ds.show_index].op3_token or self.op3_token
        # token -> (its name, the shows it sees; None: all)
        self.op3_tokens: dict[str, tuple[str, frozenset[int] | None]] = {
            self.op3_token: ("main", None),
            **{a.op3_token: (a.name, frozenset(a.shows)) for a in self.accounts if a.op3_token}}
        self._by: dict[str, dict[object, Dataset]] = {}
        for name, key in (("station", lambda d: d.station_id),
                          ("webstation", lambda d: d.webstation_id),
                          ("uuid", lambda d: d.show_uuid),
                          ("guid", lambda d: d.podcast_guid),
                          ("feed", lambda d: d.feed_url),
                          ("show_uri", lambda d: d.spotify_show_uri)):
            self._by[name] = self._index(name, ((key(d), d) for d in self.datasets))
        self._by["episode"] = self._index("episode id", (
            (e.episode_id, d) for d in self.datasets for e in d.episodes))
        self._by["episode_uri"] = self._index("episode uri", (
            (e.spotify_uri, d) for d in self.datasets for e in d.episodes))

    @staticmethod
    def _index(name: str, pairs: Iterable[tuple[object, Dataset]]) -> dict[object, Dataset]:
        out: dict[object, Dataset] = {}
        for key, ds in pairs:
            if key in out and out[key] is not ds:  # a 1-in-billions draw; never silently mix
                raise ValueError(f"two emulated shows drew the same {name}; pick another --seed")
            out[key] = ds
        return out

    @property
    def is_single(self) -> bool:
        return len(self.datasets) == 1

    # ---- lookups -------------------------------------------------------------------------
    def owner(self, ds: Dataset) -> EmulatedAccount:
        return self._owner[ds.show_index]

    def account(self, name: str) -> EmulatedAccount:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no emulated account {name!r} (known: "
                       f"{', '.join(a.name for a in self.accounts)})")

    def shows_of(self, account: EmulatedAccount) -> list[Dataset]:
        return [self.datasets[k] for k in account.shows]

    def by_cookie(self, cookie: str | None) -> EmulatedAccount | None:
        """The account whose ``anchorpw_s`` this is (raw or percent-decoded)."""
        if cookie is None:
            return None
        return next((a for a in self.accounts
                     if cookie == a.cookie or unquote(cookie) == unquote(a.cookie)), None)

    def by_spotify_cookies(self, jar: dict[str, str]) -> EmulatedAccount | None:
        """The account of an ``sp_dc`` (and ``sp_key`` when sent: a wrong one is refused)."""
        for a in self.accounts:
            if jar.get("sp_dc") == a.sp_dc and jar.get("sp_key", a.sp_key) == a.sp_key:
                return a
        return None

    def find(self, kind: str, key: object) -> Dataset | None:
        """The show with this id: kind is station, webstation, uuid, guid, feed, show_uri,
        episode or episode_uri."""
        return self._by[kind].get(key)


def _token(seed: int, account: int) -> str:
    digest = hashlib.sha256(f"{seed}:op3-token:{account}".encode()).hexdigest()
    return f"emulator-{digest[:24]}"


__all__ = ["EmulatedAccount", "OP3_TOKEN_ENV", "ShowNetwork"]
