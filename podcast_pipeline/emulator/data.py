"""Deterministic synthetic dataset behind both emulated APIs.

Everything derives from ``(seed, today)``. Per-day data is generated lazily and cached,
so serving a 30-day window costs 30 small generations once. All endpoints read the same
per-day numbers, which is what makes cross-endpoint sums agree exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from bisect import bisect
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from itertools import accumulate
from typing import Any, TypeVar

DAY = 86400
T = TypeVar("T")

AGE_RANGES = ("0-17", "18-22", "23-27", "28-34", "35-44", "45-59", "60+")
AGE_WEIGHTS = (1, 6, 18, 30, 25, 14, 6)
GENDERS = ("Male", "Female", "Not specified", "Non-binary")
GENDER_WEIGHTS = (55, 38, 6, 1)
APPS = ("Spotify", "Web Browser", "Apple Podcasts", "Pocket Casts", "CastBox", "Overcast")
APP_WEIGHTS = (62, 13, 12, 7, 3, 3)
DEVICES = ("iPhone", "Android", "Mac", "Windows", "Other")
DEVICE_WEIGHTS = (42, 30, 5, 5, 18)
BREAKDOWNS = ("age", "gender", "app", "device")  # the per-day percent endpoints
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("Germany", 33), ("United States", 16), ("United Kingdom", 8), ("France", 6),
    ("Netherlands", 3), ("Canada", 3), ("Australia", 3), ("Poland", 3), ("India", 2),
    ("Sweden", 2), ("Brazil", 2), ("Spain", 2), ("Italy", 1), ("Portugal", 1), ("Norway", 1),
    ("Czech Republic", 0.9), ("Israel", 0.8), ("Hungary", 0.8), ("Singapore", 0.7),
    ("Japan", 0.6), ("Denmark", 0.5), ("Austria", 0.5), ("Mexico", 0.5), ("Ireland", 0.4),
    ("Tunisia", 0.05), ("Peru", 0.05),
)
REGIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "Germany": (("Land Berlin", 38), ("Bavaria", 16), ("North Rhine-Westphalia", 11),
                ("Hesse", 6), ("Free and Hanseatic City of Hamburg", 5), ("Lower Saxony", 5),
                ("Saxony", 4), ("Schleswig-Holstein", 3), ("Bremen", 2),
                ("Baden-Württemberg Region", 2), ("Thuringia", 0.3), ("Saarland", 0.1)),
    "United States": (("California", 22), ("New York", 15), ("Texas", 11), ("Washington", 7),
                      ("Illinois", 6), ("Florida", 5), ("Massachusetts", 4), ("Kentucky", 0.5)),
    "United Kingdom": (("England", 80), ("Scotland", 11), ("Wales", 6),
                       ("Northern Ireland", 3)),
}

# (agentType, agentName, deviceType, deviceName, userAgent, referrerType, referrerName, weight)
Profile = tuple[str, str, str | None, str | None, str, str | None, str | None, float]
PROFILES: tuple[Profile, ...] = (
    ("app", "Apple Podcasts", "mobile", "Apple iPhone",
     "AppleCoreMedia/1.0.0.21E236 (iPhone; U; CPU OS 17_4_1 like Mac OS X; en_us)", None, None, 30),
    ("app", "Spotify", "mobile", "Android Phone",
     "Spotify/8.9.42.575 Android/33 (LM-G900)", None, None, 22),
    ("app", "Overcast", "mobile", "Apple iPhone",
     "Overcast/3.0 (+http://overcast.fm/; iOS podcast app)", None, None, 10),
    ("app", "Pocket Casts", "mobile", "Android Phone", "Pocket Casts", None, None, 8),
    ("app", "Podcast Addict", "mobile", "Android Phone",
     "PodcastAddict/v5 (+https://podcastaddict.com/; Android podcast app)", None, None, 6),
    ("app", "AntennaPod", "mobile", "Android Phone", "AntennaPod/3.3.2", None, None, 5),
    ("browser", "Chrome", "computer", "Windows Computer",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", "host", "Podcast Index", 6),
    ("app", "CastBox", "mobile", "Android Phone", "CastBox/9.33.1-240102011 (Linux;Android 14) ExoPlayerLib/2.10.4", None, None, 4),
    ("app", "Amazon Music", "smart_speaker", "Amazon Echo", "Echo/1.0(APNG)", None, None, 3),
    ("app", "Apple Podcasts", "computer", "Apple Computer",
     "Podcasts/1575.1.2 CFNetwork/1494.0.7 Darwin/23.4.0", None, None, 6),
)
BOT_PROFILES: tuple[tuple[str, str, str], ...] = (
    ("bot", "Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("bot-lib", "python-requests", "python-requests/2.31.0"),
    ("no-ua", "", ""),
)
# (countryCode, continentCode, regionCode, regionName, timezone, metroCode, edgeColo, weight)
Location = tuple[str, str, str, str, str, str | None, str, float]
LOCATIONS: tuple[Location, ...] = (
    ("DE", "EU", "BE", "Land Berlin", "Europe/Berlin", None, "TXL", 30),
    ("DE", "EU", "BY", "Bavaria", "Europe/Berlin", None, "MUC", 12),
    ("US", "NA", "CA", "California", "America/Los_Angeles", "807", "SJC", 14),
    ("US", "NA", "NY", "New York", "America/New_York", "501", "EWR", 10),
    ("US", "NA", "KY", "Kentucky", "America/New_York", "541", "ORD", 2),
    ("GB", "EU", "ENG", "England", "Europe/London", None, "LHR", 9),
    ("FR", "EU", "IDF", "Île-de-France", "Europe/Paris", None, "CDG", 6),
    ("NL", "EU", "NH", "North Holland", "Europe/Amsterdam", None, "AMS", 4),
    ("CA", "NA", "ON", "Ontario", "America/Toronto", None, "YYZ", 3),
    ("AU", "OC", "NSW", "New South Wales", "Australia/Sydney", None, "SYD", 3),
)

DOWNLOAD_HEADERS = (
    "time", "url", "audienceId", "showUuid", "episodeId", "hashedIpAddress", "agentType",
    "agentName", "deviceType", "deviceName", "referrerType", "referrerName", "botType",
    "countryCode", "continentCode", "regionCode", "regionName", "timezone", "metroCode",
)
HIT_HEADERS = (
    "time", "uuid", "hashedIpAddress", "method", "url", "userAgent", "referer", "range",
    "xpsId", "ulid", "edgeColo", "continent", "country", "timezone", "regionCode", "region",
    "metroCode",
)
Row = tuple[str | None, ...]


@dataclass(frozen=True)
class EmulatorConfig:
    """What to synthesise. ``today=None`` means the real UTC date when the dataset is built."""

    seed: int = 7
    episodes: int = 12
    days: int = 120
    downloads_per_day: int = 150
    today: date | None = None
    drafts: int = 1
    redirect_logs_direct: bool = False  # serve /redirect-logs itself (documented v0.0.3)
    # Bad data on purpose: this breakdown ("app", "device", "gender"; "age" on the REST API
    # only, GraphQL sends age as counts) sums to 1.25 instead of 1 on the last data day, so
    # the fraction check fails and blocks the models over it.
    broken_fraction: str | None = None


@dataclass(frozen=True)
class Episode:
    index: int
    episode_id: int
    web_episode_id: str
    title: str | None
    publish_ts: int | None  # epoch seconds; None for drafts
    created_ts: int
    duration_s: int
    guid: str
    op3_episode_id: str  # sha256 hex of the guid, as OP3 computes it
    url: str  # OP3-prefixed enclosure url
    spotify_uri: str
    has_transcript: bool

    @property
    def is_draft(self) -> bool:
        return self.publish_ts is None

    @property
    def publish_day(self) -> date | None:
        return None if self.publish_ts is None else datetime.fromtimestamp(self.publish_ts, UTC).date()


@dataclass
class AnchorDay:
    plays: dict[int, int]  # episode_id -> plays
    categories: dict[str, Counter[str]]  # age/gender/app/device/geo -> counts
    cities: dict[str, Counter[str]]  # country -> region counts
    impressions: dict[str, int] = field(default_factory=dict)  # source -> count

    @property
    def total(self) -> int:
        return sum(self.plays.values())


@dataclass
class Op3Day:
    downloads: list[Row]  # raw daily file incl. bot rows, ascending time; DOWNLOAD_HEADERS order
    hits: list[Row]  # ascending (time, uuid); HIT_HEADERS order
    # What the API derives from the rows to answer fast (sorted times, formatted rows),
    # built on first use and kept as long as the day is.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def by_episode(self) -> Counter[str]:
        """Non-bot downloads per OP3 episode id (what the counts queries sum)."""
        return Counter(r[4] or "" for r in self.downloads if not r[12])


def _hex(rng: random.Random, nbytes: int) -> str:
    return rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


def _poisson(rng: random.Random, mu: float) -> int:
    if mu <= 0:
        return 0
    if mu > 40:
        return max(0, round(rng.gauss(mu, math.sqrt(mu))))
    limit, k, p = math.exp(-mu), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _iso_ms(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _picker(population: Sequence[T], weights: list[float], rng: random.Random) -> Callable[[], T]:
    """``lambda: rng.choices(population, weights)[0]`` with the cumulative weights built
    once: ``choices`` draws one ``random()`` and bisects the same sums, so the picks and
    the generator's state are exactly those of calling it."""
    cum = list(accumulate(weights))
    total, hi, draw = cum[-1] + 0.0, len(population) - 1, rng.random
    return lambda: population[bisect(cum, draw() * total, 0, hi)]


class _DayClock:
    """``_iso_ms`` for the instants of one UTC day, by arithmetic instead of strftime."""

    def __init__(self, d: date) -> None:
        self.prefix, self.base = f"{d.isoformat()}T", day_epoch(d) * 1000

    def __call__(self, ms: int) -> str:
        s, milli = divmod(ms - self.base, 1000)
        if not 0 <= s < DAY:
            return _iso_ms(ms)
        h, rest = divmod(s, 3600)
        return f"{self.prefix}{h:02d}:{rest // 60:02d}:{rest % 60:02d}.{milli:03d}Z"


def day_epoch(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY


def epoch_day(seconds: float) -> date:
    return date(1970, 1, 1) + timedelta(days=int(seconds // DAY))


class DayCache:
    """A bounded least-recently-used cache of generated days.

    Days are regenerated identically from their seed, so evicting one only costs time: a
    network of 100 shows over a year would otherwise keep every OP3 day (~0.2 MB each).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


OP3_CACHE_DAYS = 800  # one show's two years, or the recent days of many shows


class Dataset:
    """The synthetic show. Methods without a leading underscore are for tests too.

    ``show`` numbers the shows of an emulated network: show 0 is the single-show emulator's
    (same ids and numbers for a seed as always); show k > 0 draws from ``seed.k``.
    """

    def __init__(self, config: EmulatorConfig, show: int = 0,
                 op3_cache: DayCache | None = None) -> None:
        self.config = config
        self.show_index = show
        self.salt = str(config.seed) if show == 0 else f"{config.seed}.{show}"
        self.today: date = config.today or datetime.now(UTC).date()
        self.first_day: date = self.today - timedelta(days=config.days)
        self.yesterday: date = self.today - timedelta(days=1)
        rng = random.Random(f"{self.salt}:ids")
        # Fake but realistically shaped credentials, fixed per seed and marked "emulator".
        self.cookie = f"s%3Aemulator-{_hex(rng, 12)}.{_hex(rng, 16)}"
        self.op3_token = f"emulator-{_hex(rng, 12)}"
        self.webstation_id = _hex(rng, 4)
        self.station_id = rng.randrange(10_000_000, 99_999_999)
        self.show_uuid = _hex(rng, 16)
        g = _hex(rng, 16)
        self.podcast_guid = f"{g[:8]}-{g[8:12]}-{g[12:16]}-{g[16:20]}-{g[20:]}"
        self.show_title = f"Emulated Podcast {self.salt}"
        self.vanity = f"emulated-podcast-{self.salt.replace('.', '-')}"
        self.feed_url = f"https://anchor.fm/s/{self.webstation_id}/podcast/rss"
        self.url_prefix = f"https://op3.dev/e/anchor.fm/s/{self.webstation_id}/podcast/play/"
        self.spotify_show_uri = f"spotify:show:{_b62(rng, 22)}"
        self.episodes: list[Episode] = self._make_episodes(rng)
        self._lock = threading.Lock()
        self._anchor: dict[date, AnchorDay] = {}
        self._op3 = op3_cache if op3_cache is not None else DayCache(OP3_CACHE_DAYS)
        self._perf: dict[int, list[int]] = {}
        self._spotify: dict[date, dict[int, tuple[int, int, int]]] = {}
        # The Spotify login cookies of the GraphQL backend, fixed per seed like the others.
        srng = random.Random(f"{self.salt}:spotify-ids")
        self.sp_dc = f"emulator-{_hex(srng, 24)}"
        self.sp_key = f"emulator-{_hex(srng, 18)}"

    # ---- episodes -------------------------------------------------------------------
    def _make_episodes(self, rng: random.Random) -> list[Episode]:
        n, span = self.config.episodes, self.config.days
        out: list[Episode] = []
        base_id = rng.randrange(60_000_000, 90_000_000)
        if self.show_index:  # the shows of a network never share an episode id
            base_id = 100_000_000 + self.show_index * 100_000 + base_id % 50_000
        for i in range(n + self.config.drafts):
            draft = i >= n
            if draft:
                publish = None
                created = day_epoch(self.today) - rng.randrange(DAY, 5 * DAY)
            else:
                # Oldest on first_day, newest today (so it has no complete day of data yet).
                offset = round(i * span / (n - 1)) if n > 1 else span
                pub_day = self.first_day + timedelta(days=offset)
                seconds = 300 if pub_day == self.today else rng.randrange(4 * 3600, 20 * 3600)
                publish = day_epoch(pub_day) + seconds
                created = publish - rng.randrange(3600, 3 * DAY)
            # One published episode without a title, as seen in the wild; drafts too.
            title = None if draft or (i == 1 and n > 2) else f"Episode {i + 1}: {_topic(rng)}"
            web_id = "e" + _b36(rng, 6)
            guid = f"{_hex(rng, 4)}-{_hex(rng, 2)}-{_hex(rng, 2)}-{_hex(rng, 2)}-{_hex(rng, 6)}"
            out.append(Episode(
                index=i, episode_id=base_id + i * 1117 + rng.randrange(1000), web_episode_id=web_id,
                title=title, publish_ts=publish, created_ts=created,
                duration_s=rng.randrange(5 * 60, 40 * 60), guid=guid,
                op3_episode_id=hashlib.sha256(guid.encode()).hexdigest(),
                url=f"{self.url_prefix}{i + 1}/https%3A%2F%2Fd3ctxlq1ktw2nl.cloudfront.net%2Fstaging%2F{_hex(rng, 8)}.m4a",
                spotify_uri=f"spotify:episode:{_b62(rng, 22)}",
                has_transcript=i % 2 == 0,
            ))
        return out

    @cached_property
    def published(self) -> list[Episode]:
        return [e for e in self.episodes if not e.is_draft]

    @cached_property
    def drafts(self) -> list[Episode]:
        return [e for e in self.episodes if e.is_draft]

    def episode(self, episode_id: int) -> Episode | None:
        return next((e for e in self.episodes if e.episode_id == episode_id), None)

    def data_days(self, start: date | None = None, end: date | None = None) -> list[date]:
        """Days with data (first_day..yesterday), clipped to ``[start, end]`` inclusive."""
        lo = max(self.first_day, start or self.first_day)
        hi = min(self.yesterday, end or self.yesterday)
        return [lo + timedelta(days=k) for k in range((hi - lo).days + 1)] if lo <= hi else []

    def has_data(self, d: date) -> bool:
        return self.first_day <= d <= self.yesterday

    def _weight(self, ep: Episode, d: date) -> float:
        pd = ep.publish_day
        if pd is None or pd > d:
            return 0.0
        age = (d - pd).days
        return 0.35 + 2.5 * math.exp(-age / 4)

    # ---- Anchor ---------------------------------------------------------------------
    def anchor_day(self, d: date) -> AnchorDay:
        with self._lock:
            hit = self._anchor.get(d)
        if hit is not None:
            return hit
        day = self._gen_anchor(d) if self.has_data(d) else AnchorDay({}, {}, {})
        with self._lock:
            self._anchor[d] = day
        return day

    def _gen_anchor(self, d: date) -> AnchorDay:
        rng = random.Random(f"{self.salt}:anchor:{d.isoformat()}")
        mean_total = self.config.downloads_per_day * 0.5
        weights = {e.episode_id: self._weight(e, d) for e in self.published}
        norm = sum(weights.values()) or 1.0
        plays = {eid: _poisson(rng, mean_total * w / norm) for eid, w in weights.items() if w > 0}
        total = sum(plays.values())
        cats: dict[str, Counter[str]] = {}
        for name, keys, w in (("age", AGE_RANGES, AGE_WEIGHTS), ("gender", GENDERS, GENDER_WEIGHTS),
                              ("app", APPS, APP_WEIGHTS), ("device", DEVICES, DEVICE_WEIGHTS)):
            cats[name] = Counter(rng.choices(keys, w, k=total))
        countries = [c for c, _ in COUNTRIES]
        cats["geo"] = Counter(rng.choices(countries, [w for _, w in COUNTRIES], k=total))
        cities = {
            country: Counter(rng.choices([r for r, _ in regs], [w for _, w in regs], k=cats["geo"][country]))
            for country, regs in REGIONS.items()
        }
        impressions = {src: _poisson(rng, max(total, 1) * f)
                       for src, f in (("SEARCH", 1.2), ("LIBRARY", 2.0), ("OTHER", 0.6), ("HOME", 3.1))}
        return AnchorDay(plays, cats, cities, impressions)

    def station_plays(self, d: date) -> int:
        return self.anchor_day(d).total

    def episode_plays(self, episode_id: int, d: date) -> int:
        return self.anchor_day(d).plays.get(episode_id, 0)

    def total_plays(self) -> int:
        return sum(self.station_plays(d) for d in self.data_days())

    def total_plays_by_episode(self) -> dict[int, int]:
        out = {e.episode_id: 0 for e in self.published}
        for d in self.data_days():
            for eid, n in self.anchor_day(d).plays.items():
                out[eid] += n
        return out

    def category_counts(self, kind: str, start: date, end: date, country: str | None = None) -> Counter[str]:
        """Summed per-day counts of ``kind`` (age/gender/app/device/geo/city) over start..end."""
        total: Counter[str] = Counter()
        for d in self.data_days(start, end):
            day = self.anchor_day(d)
            total.update(day.cities.get(country or "", Counter()) if kind == "city" else day.categories[kind])
        return total

    def spotify_day(self, d: date) -> dict[int, tuple[int, int, int]]:
        """GraphQL-only numbers of day ``d`` per episode: (Spotify plays, streams, downloads).

        Plays are the REST backend's plays (the same Spotify-only counts); streams (60 s+)
        are a share of them; downloads happen off Spotify, so they add to "plays + downloads".
        """
        with self._lock:
            hit = self._spotify.get(d)
        if hit is not None:
            return hit
        rng = random.Random(f"{self.salt}:spotify:{d.isoformat()}")
        out = {}
        for eid, plays in sorted(self.anchor_day(d).plays.items()):
            streams = sum(rng.random() < 0.78 for _ in range(plays))
            out[eid] = (plays, streams, _poisson(rng, plays * 0.6))
        with self._lock:
            self._spotify[d] = out
        return out

    def unique_listeners(self) -> int:
        return round(self.total_plays() * 0.31)

    def audience_size(self) -> int:
        return round(self.total_plays() * 0.55) + 3

    def performance(self, episode_id: int) -> list[int]:
        """Listeners still there at each second (one sample per second up to the duration)."""
        with self._lock:
            hit = self._perf.get(episode_id)
        if hit is not None:
            return hit
        ep = self.episode(episode_id)
        plays = self.total_plays_by_episode().get(episode_id, 0) if ep else 0
        curve: list[int] = []
        if ep is not None and plays > 0:
            rng = random.Random(f"{self.salt}:perf:{episode_id}")
            start = max(1, round(plays * rng.uniform(0.3, 0.5)))
            keep = rng.uniform(0.15, 0.4)  # fraction still listening at the end
            dur = ep.duration_s
            curve = [max(0, round(start * (1 - (1 - keep) * (t / dur) ** 0.7))) for t in range(dur)]
        with self._lock:
            self._perf[episode_id] = curve
        return curve

    def aggregated_performance(self, episode_id: int) -> list[tuple[str, int | str | None]]:
        curve = self.performance(episode_id)
        if not curve or curve[0] == 0:
            return [("percentile25", 0), ("percentile50", 0), ("percentile75", 0),
                    ("percentile100", 0), ("averageListenSeconds", None)]
        n, top = len(curve), curve[0]
        pct = [round(100 * curve[min(n - 1, int(n * q))] / top) for q in (0.25, 0.5, 0.75, 1.0)]
        avg = str(round(sum(curve) / top))
        return [("percentile25", pct[0]), ("percentile50", pct[1]), ("percentile75", pct[2]),
                ("percentile100", pct[3]), ("averageListenSeconds", avg)]

    # ---- OP3 ------------------------------------------------------------------------
    def op3_day(self, d: date) -> Op3Day:
        key = (self.show_index, d)  # the cache may be shared by a network's shows
        hit = self._op3.get(key)
        if hit is not None:
            return hit
        day = self._gen_op3(d) if self.has_data(d) else Op3Day([], [])
        self._op3.put(key, day)
        return day

    def _gen_op3(self, d: date) -> Op3Day:
        rng = random.Random(f"{self.salt}:op3:{d.isoformat()}")
        eps = [e for e in self.published if self._weight(e, d) > 0]
        if not eps:
            return Op3Day([], [])
        # rng.choices(population, weights)[0], step for step (same draws, same picks),
        # without rebuilding the cumulative weights on every call.
        pick_ep = _picker(eps, [self._weight(e, d) for e in eps], rng)
        pick_prof = _picker(PROFILES, [p[-1] for p in PROFILES], rng)
        pick_loc = _picker(LOCATIONS, [loc[-1] for loc in LOCATIONS], rng)
        clock = _DayClock(d)
        n = _poisson(rng, self.config.downloads_per_day)
        n_bots = _poisson(rng, self.config.downloads_per_day * 0.04)
        day_ms = day_epoch(d) * 1000
        key = _hex(rng, 8)  # the daily rotating ip-hash key
        listeners: list[tuple[str, Profile, Location]] = []
        seen: set[tuple[int, int]] = set()
        raw: list[tuple[int, Row, list[Row]]] = []
        for k in range(n + n_bots):
            bot = k >= n
            ep = pick_ep()
            lo = max(day_ms, (ep.publish_ts or 0) * 1000)
            ms = rng.randrange(lo, day_ms + DAY * 1000)
            if bot:
                bt, bname, ua = rng.choice(BOT_PROFILES)
                ip = hashlib.sha1(f"{key}:bot:{k}".encode()).hexdigest()
                loc = pick_loc()
                prof: Profile = (bt, bname, None, None, ua, None, None, 0)
                bot_type: str | None = bt
            else:
                # Downloads are deduplicated per listener+episode within a UTC day.
                li = rng.randrange(max(1, int(n * 0.7)))
                if (li, ep.index) in seen:
                    li = max(len(listeners), int(n * 0.7))  # a fresh listener
                seen.add((li, ep.index))
                while len(listeners) <= li:
                    j = len(listeners)
                    listeners.append((hashlib.sha1(f"{key}:{j}".encode()).hexdigest(),
                                      pick_prof(), pick_loc()))
                ip, prof, loc = listeners[li]
                bot_type = None
            ua, ref = prof[4], prof[6]
            audience = hashlib.sha256(f"{ip}|{ua}|{ref or ''}".encode()).hexdigest()
            cc, cont, rc, rn, tz, metro, colo, _ = loc
            row: Row = (None, ep.url, audience, self.show_uuid, ep.op3_episode_id, ip,
                        prof[0], prof[1] or None, prof[2], prof[3], prof[5], ref, bot_type,
                        cc, cont, rc, rn, tz, metro)
            hits: list[Row] = []
            t = ms
            apple = "AppleCoreMedia" in ua
            xps = _hex(rng, 16).upper() if apple else None
            for h in range(1 + rng.randrange(3)):
                if h:
                    t = min(t + rng.randrange(200, 120_000), day_ms + DAY * 1000 - 1)
                rng_end = rng.randrange(1_000_000, 60_000_000)
                hits.append((clock(t), _hex(rng, 16), ip, "GET", ep.url, ua or None, None,
                             ("bytes=0-1" if h == 0 else f"bytes=0-{rng_end}") if apple else None,
                             xps and f"{xps[:8]}-{xps[8:12]}-{xps[12:16]}-{xps[16:20]}-{xps[20:]}",
                             None, colo, cont, cc, tz, rc, rn, metro))
            raw.append((ms, row, hits))
        raw.sort(key=lambda r: r[0])
        downloads = [(clock(ms),) + row[1:] for ms, row, _ in raw]
        hits = sorted((h for _, _, hs in raw for h in hs), key=lambda h: (h[0] or "", h[1] or ""))
        return Op3Day(downloads, hits)

    def downloads(self, d: date, bots: bool = False) -> list[dict[str, str]]:
        """Download rows of day ``d`` as dicts with blank fields omitted (like json-o)."""
        return [_as_dict(DOWNLOAD_HEADERS, r) for r in self.op3_day(d).downloads if bots or not r[12]]

    def download_count(self, d: date, episode_op3_id: str | None = None) -> int:
        """Non-bot downloads on ``d`` (optionally one episode): what the counts queries sum."""
        counts = self.op3_day(d).by_episode
        return counts.get(episode_op3_id, 0) if episode_op3_id else sum(counts.values())

    def hits(self, d: date) -> list[dict[str, str]]:
        return [_as_dict(HIT_HEADERS, r) for r in self.op3_day(d).hits]

    def app_downloads(self, days: Iterable[date]) -> Counter[str]:
        out: Counter[str] = Counter()
        for d in days:
            out.update(r[7] for r in self.op3_day(d).downloads if not r[12] and r[7])
        return out


def _as_dict(headers: tuple[str, ...], row: Row) -> dict[str, str]:
    return {h: v for h, v in zip(headers, row, strict=True) if v not in (None, "")}


_TOPICS = ("Data pipelines", "Listener mail", "Interview", "Behind the scenes", "Q&A",
           "Deep dive", "News roundup", "Guest special", "Tools we use", "Season recap")


def _topic(rng: random.Random) -> str:
    return rng.choice(_TOPICS)


def _b36(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _b62(rng: random.Random, n: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(n))
