"""The HTTP layer both clients share: one request loop, one re-fetch loop, one pager.

- :meth:`ApiSession.fetch` is the only way a client gets a body. Each attempt runs under a
  total deadline (connect, headers, every byte of the body, redirects), reads at most
  ``max_body_bytes`` of decompressed body, and follows redirects itself so the credential
  goes only to the API's own origin. 429 / 5xx / connection errors are retried with
  exponential backoff and jitter, honouring ``Retry-After`` up to ``max_retry_wait``. A
  body that arrives broken or that ``parse`` rejects is fetched again ``malformed_retries``
  times, then :class:`MalformedResponse` names the endpoint.
- A 401 is never retried: it is recorded in a :class:`CredentialVerdict`, which every
  session of a run (threads, and through callbacks other processes) consults before each
  request. Retrying a dead Spotify cookie is what gets accounts flagged.
- :func:`paginate` is the only paging loop: a generator of pages with a page limit and a
  guard against a cursor that comes back.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import accumulate, chain
from typing import Any, Self, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from podcast_pipeline import validate
from podcast_pipeline.errors import (
    BASE_URL_VARS,
    AccessDenied,
    ApiError,
    CredentialsExpired,
    LimitExceeded,
    MalformedResponse,
    NotFound,
    RateLimited,
    UnauthorizedAfterRedirect,
)
from podcast_pipeline.redact import redact

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
USER_AGENT = "podcast_pipeline/0.1 (+https://github.com/podcast-pipeline)"
CHUNK = 64 * 1024

# The settings that raise each bound, named in the error that bound raises.
DEADLINE_ENV = "PODCAST_PIPELINE_REQUEST_DEADLINE_SECONDS"
MAX_BODY_ENV = "PODCAST_PIPELINE_MAX_BODY_MB"
MAX_JSON_DEPTH_ENV = "PODCAST_PIPELINE_MAX_JSON_DEPTH"
MAX_RETRY_WAIT_ENV = "PODCAST_PIPELINE_MAX_RETRY_WAIT_SECONDS"
MAX_ROWS_PER_DAY_ENV = "PODCAST_PIPELINE_MAX_ROWS_PER_DAY"
MAX_EPISODES_ENV = "PODCAST_PIPELINE_MAX_EPISODES"


@dataclass(frozen=True)
class RawResponse:
    """One HTTP exchange as kept in the warehouse's raw table. Never holds a secret."""

    api: str
    endpoint: str
    path: str  # path + query string, redacted
    status: int
    body: str  # redacted
    fetched_at: datetime
    retries: int = 0
    # The UTC days this answer is the whole truth for (both ends inclusive), when the
    # client knows them; None: the window of the write it belongs to.
    covers: tuple[Any, Any] | None = None


Recorder = Callable[[RawResponse], None]


@dataclass(frozen=True)
class Limits:
    """What an answer may cost at most. Each is a setting (``settings.Settings``, the
    variables below name them in errors); the defaults suit a large show."""

    deadline: float = 300.0  # seconds per request: connect, headers, redirects, whole body
    max_body_bytes: int = 32 * 2**20  # per body, after decompression (a 20,000-row TSV: ~9 MB)
    max_json_depth: int = 64  # nesting of objects/arrays (both APIs use fewer than 8)
    max_retry_wait: float = 60.0  # seconds: a longer Retry-After is cut to this
    max_rows_per_day: int = 100_000  # downloads / hits a day: bounds how many pages a window has
    max_episodes: int = 25_000  # episodes of one show: bounds the episode list's pages


@dataclass
class RetryPolicy:
    """How hard to try. Defaults suit the live services; tests and the demo shorten them."""

    total: int = 6  # retries of 429 / 5xx / connection errors, per request
    backoff_factor: float = 1.0
    backoff_max: float = 60.0
    backoff_jitter: float = 0.5
    malformed_retries: int = 2  # a truncated 200 is usually transient
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # per socket read; Limits.deadline bounds the whole request
    limits: Limits = field(default_factory=Limits)

    def backoff(self, retry: int) -> float:
        """urllib3's schedule: the first retry at once, then factor × 2^(n-1), plus jitter."""
        if retry <= 1:
            return 0.0
        value = self.backoff_factor * 2 ** (retry - 1)
        if self.backoff_jitter:
            value += random.random() * self.backoff_jitter
        return max(0.0, min(self.backoff_max, value))


@dataclass
class CallStats:
    """Counters a caller (metadata, the chaos demo, a benchmark) reads after work is done.

    ``requests`` counts every HTTP request sent (redirect hops included), ``retries`` the
    ones repeated after a 429 / 5xx / connection error, ``malformed_retries`` the re-fetches
    of a broken body."""

    requests: int = 0
    retries: int = 0
    malformed_retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _mine: threading.local = field(default_factory=threading.local, repr=False)

    def add(self, *, requests_: int = 0, retries: int = 0, malformed: int = 0) -> None:
        with self.lock:
            self.requests += requests_
            self.retries += retries
            self.malformed_retries += malformed
        self._mine.requests = self.requests_of_this_thread() + requests_

    def requests_of_this_thread(self) -> int:
        """Requests sent by the calling thread: what one of several concurrent calls cost."""
        return getattr(self._mine, "requests", 0)


class CredentialVerdict:
    """Whether an API's credential met a 401 in this run, consulted before every request.

    One object is shared by every session of a run in a process (threads included);
    ``load(api)`` and ``publish(api)`` extend it to other processes (the Dagster layer
    keeps it in a run tag). A session without one gets its own.
    """

    # ``load`` reads the run from the instance's storage; asked before each of thousands of
    # requests it costs more than the requests, so it is asked at most this often.
    LOAD_EVERY = 0.25  # seconds

    def __init__(self, load: Callable[[str], bool] | None = None,
                 publish: Callable[[str], None] | None = None) -> None:
        self._dead: set[str] = set()
        self._load, self._publish = load, publish
        self._lock = threading.Lock()
        self._loaded: dict[str, float] = {}

    def refused(self, api: str) -> bool:
        with self._lock:
            now = time.monotonic()
            if (api not in self._dead and self._load is not None
                    and now - self._loaded.get(api, -math.inf) >= self.LOAD_EVERY):
                self._loaded[api] = now
                if self._load(api):
                    self._dead.add(api)
            return api in self._dead

    def record_401(self, api: str) -> None:
        with self._lock:
            first = api not in self._dead
            self._dead.add(api)
            if first and self._publish is not None:
                self._publish(api)


def excerpt(text: str, limit: int = 160) -> str:
    text = redact(text.strip().replace("\n", " "))
    return text[:limit] + ("…" if len(text) > limit else "")


def utf8_text(body: bytes) -> str:
    """The body decoded strictly as UTF-8, which both APIs send.

    Decoding with replacement would swap a bad byte for U+FFFD and store the damage
    silently; a body that is not UTF-8 is corrupt, so this raises ``ValueError`` naming
    the first bad byte.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not valid UTF-8 (byte {body[exc.start]:#04x} at "
                         f"offset {exc.start})") from None


# ---------------------------------------------------------------------- JSON
class _TooDeep(Exception):
    pass


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply arrays/objects nest in ``text`` (brackets inside strings do not count)."""
    brackets = re.sub(r"[^\[\]{}]+", "", _JSON_STRING.sub("", text))
    return max(accumulate(_BRACKET_STEP[c] for c in brackets), default=0)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {redact(key)!r} appears twice in one JSON object, "
                                 "so which value counts would be a guess")
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# A key's closing quote and its colon: every key of a document matches once, so fewer
# key-value pairs parsed than matches means a key repeated (or, rarely, a value holding
# `\":`, which only costs the strict re-parse below). Counted in the body's bytes.
_KEY_END = re.compile(rb'"[ \t\n\r]*:')


def parse_json(text: str, max_depth: int, raw: bytes | None = None) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, nesting at most ``max_depth``.

    Parsed by the C decoder without a per-object hook (several times faster on pages of
    thousands of objects); the nesting and the number of pairs are then read off the
    result, and only a document whose pairs fall short of its keys is parsed again with
    the duplicate-key check, which names the key. ``raw``: ``text`` as UTF-8, if at hand."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # deeper than the decoder recurses: far past any limit
        raise _TooDeep(json_depth(text)) from None
    depth, pairs = _shape(value)
    if depth > max_depth:
        raise _TooDeep(depth)
    if pairs and pairs != len(_KEY_END.findall(text.encode() if raw is None else raw)):
        json.loads(text, object_pairs_hook=_unique_keys)  # raises on a repeated key
    return value


def _shape(value: Any) -> tuple[int, int]:
    """(nesting depth, key-value pairs) of a parsed document, a level at a time: the
    values of a level are typed in C (``map``), so a page of thousands of flat objects
    costs no Python step per value."""
    depth = pairs = 0
    level = [value]
    while level:
        dicts = [n for n in level if type(n) is dict]
        lists = [n for n in level if type(n) is list]
        if not dicts and not lists:
            break
        depth += 1
        pairs += sum(map(len, dicts))
        values = [*chain.from_iterable(map(dict.values, dicts)), *chain.from_iterable(lists)]
        kinds = set(map(type, values))
        level = [v for v in values if type(v) is dict or type(v) is list] if (
            dict in kinds or list in kinds) else []
    return depth, pairs


# ---------------------------------------------------------------------- the deadline
_current = threading.local()


class _Watch:
    """A request's total deadline. When it passes, the sockets the request uses are shut
    down, so a read blocked on a server that trickles bytes returns at once (a per-read
    timeout never trips while one byte a minute keeps arriving)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._conns: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._conns.append(conn)
            fired = self.fired
        if fired:
            _shut(conn)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            conns = list(self._conns)
        for conn in conns:
            _shut(conn)

    def __enter__(self) -> _Watch:
        _current.watch = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.watch = None


def _shut(conn: HTTPConnection) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _attach(conn: HTTPConnection) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(conn)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _attach(self)  # a kept-alive connection is reused without connect()
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection  # type: ignore[assignment]


class _Adapter(HTTPAdapter):
    """No retries or redirects of its own (the session does both) and watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool,
                                                   "https": _WatchedHTTPSPool}


# ---------------------------------------------------------------------- the session
@dataclass(frozen=True)
class Reply:
    """A complete answer: status, headers, the whole (decompressed) body, the hops taken."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    redirects: tuple[tuple[int, str], ...] = ()  # (status, location) of each hop

    @property
    def text(self) -> str:
        """Strict UTF-8; raises ``ValueError`` (a malformed body) otherwise."""
        return utf8_text(self.body)

    def loose_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Send:
    """What one request sends besides the URL: method, extra headers, body."""

    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    json_body: Any = None
    form: Mapping[str, str] | None = None


_GET = _Send()


class _Broken(Exception):
    """The body did not arrive whole (or ``parse`` refused it): fetch it again."""

    def __init__(self, problem: str, reply: Reply | None = None) -> None:
        super().__init__(problem)
        self.reply = reply


T = TypeVar("T")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class ApiSession:
    """One API, one credential, the project's error rules. Thread-safe for concurrent GETs."""

    def __init__(
        self,
        api: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        credential: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
        stats: CallStats | None = None,
        verdict: CredentialVerdict | None = None,
        follow_redirects: bool = True,
        renewable_401: bool = False,
    ) -> None:
        """``follow_redirects=False``: any 3xx is an error (the Spotify GraphQL backend's
        hosts: a credential never travels anywhere it was not sent). ``renewable_401``: a 401
        raises :class:`CredentialsExpired` without the run's verdict — the caller holds a
        short-lived bearer it renews, and records the verdict itself if renewing fails."""
        self.api = api
        self.follow_redirects = follow_redirects
        self.renewable_401 = renewable_401
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.limits = self.retry.limits
        self.recorder = recorder
        self.stats = stats or CallStats()
        self.verdict = verdict or CredentialVerdict()
        # Sent only to the base URL's host, like a browser keeps a host's cookie: a
        # redirect to another host (or from https down to http) never carries it.
        self._credential = dict(credential or {})
        self._origin = _origin(self.base_url)
        # Paths a 301/308 moved for good (OP3 /redirect-logs → /hits): later pages go straight
        # to the new path instead of costing a redirect each.
        self._moved: dict[str, str] = {}
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json",
                                      "Accept-Encoding": "gzip, deflate"})
        self._session.headers.update(headers or {})
        adapter = _Adapter(pool_maxsize=16)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ public
    def fetch(self, endpoint: str, path: str,
              params: Mapping[str, Any] | list[tuple[str, Any]] | None = None, *,
              parse: Callable[[Reply], T], accept: str | None = None,
              covers: tuple[Any, Any] | None = None, method: str = "GET",
              headers: Mapping[str, str] | None = None, json_body: Any = None,
              form: Mapping[str, str] | None = None, label: str | None = None) -> T:
        """GET ``base_url + path`` and return ``parse(reply)``; record the raw answer.

        ``parse`` raises ``ValueError`` with a problem text when the body is not what the
        endpoint sends. Such a body, or one cut off mid-transfer, is fetched again up to
        ``malformed_retries`` times; then :class:`MalformedResponse` names the endpoint.
        ``method``/``json_body``/``form`` send a read-only POST (GraphQL persisted queries);
        ``headers`` go with each attempt, to the base URL's host only, like the credential;
        ``label`` annotates the recorded path (``#operationName``: a POST's path says little).
        """
        query = urlencode(list(params.items()) if isinstance(params, Mapping) else (params or []))
        url = self.base_url + path
        shown_path = redact(urlsplit(url).path + (f"?{query}" if query else "")
                            + (f"#{label}" if label else ""))
        send = _Send(method, dict(headers or {}), json_body, form)
        refetch = 0
        while True:
            try:
                reply, retries = self._get(endpoint, path, query, accept, shown_path, send)
                try:
                    value = parse(reply)
                except _TooDeep as exc:
                    raise LimitExceeded(
                        self.api, endpoint, f"the JSON nests {exc.args[0]} levels deep, more "
                        f"than the limit of {self.limits.max_json_depth}; raise "
                        f"{MAX_JSON_DEPTH_ENV} if the API really sends that",
                        status=reply.status, path=shown_path) from None
                except ValueError as exc:
                    raise _Broken(str(exc), reply) from None
            except _Broken as broken:
                if refetch >= self.retry.malformed_retries:
                    reply_ = broken.reply
                    raise MalformedResponse(
                        self.api, endpoint, str(broken),
                        status=reply_.status if reply_ else None, path=shown_path,
                        excerpt=excerpt(reply_.loose_text()) if reply_ else None) from None
                refetch += 1
                self.stats.add(malformed=1)
                log.warning("%s %s: %s; fetching again (%d/%d)", self.api, endpoint, broken,
                            refetch, self.retry.malformed_retries)
                time.sleep(min(self.retry.backoff_factor * refetch, 5.0))
                continue
            self.record(RawResponse(
                api=self.api, endpoint=endpoint, path=shown_path, status=reply.status,
                body=redact(reply.loose_text()), fetched_at=datetime.now(UTC), retries=retries,
                covers=covers))
            return value

    def request_json(self, method: str, endpoint: str, path: str,
                     params: Mapping[str, Any] | list[tuple[str, Any]] | None = None, *,
                     validate: Callable[[Any], str | None] | None = None,
                     headers: Mapping[str, str] | None = None, json_body: Any = None,
                     form: Mapping[str, str] | None = None, label: str | None = None) -> Any:
        """:meth:`get_json` for any method, with per-request headers and a body."""
        def parse(reply: Reply) -> Any:
            body = self.json_body(reply)
            problem = validate(body) if validate else None
            if problem:
                raise ValueError(problem)
            return body
        return self.fetch(endpoint, path, params, parse=parse, method=method, headers=headers,
                          json_body=json_body, form=form, label=label)

    def get_json(self, endpoint: str, path: str,
                 params: Mapping[str, Any] | list[tuple[str, Any]] | None = None, *,
                 validate: Callable[[Any], str | None] | None = None,
                 covers: tuple[Any, Any] | None = None) -> Any:
        """GET and parse strict JSON; ``validate(body)`` returns a problem text or None."""
        def parse(reply: Reply) -> Any:
            body = self.json_body(reply)
            problem = validate(body) if validate else None
            if problem:
                raise ValueError(problem)
            return body
        return self.fetch(endpoint, path, params, parse=parse, covers=covers)

    def json_body(self, reply: Reply) -> Any:
        ctype = reply.headers.get("Content-Type", "").lower()
        if "html" in ctype or reply.body.lstrip()[:1] == b"<":
            raise ValueError("expected JSON but got an HTML page (a login page means the "
                             "session expired)")
        text = reply.text
        try:
            return parse_json(text, self.limits.max_json_depth, reply.body)
        except json.JSONDecodeError:
            raise ValueError(f"body is not valid JSON (truncated or corrupt, {len(text)} "
                             "characters)") from None

    def record(self, raw: RawResponse) -> None:
        if self.recorder is not None:
            self.recorder(raw)

    # ------------------------------------------------------------------ one request
    def _refuse_if_dead(self, endpoint: str, path: str) -> None:
        if self.verdict.refused(self.api):
            raise CredentialsExpired(self.api, endpoint, status=None, path=path,
                                     reason="an earlier call of this run got 401; not "
                                            "calling again")

    def _get(self, endpoint: str, path: str, query: str, accept: str | None,
             shown_path: str, send: _Send | None = None) -> tuple[Reply, int]:
        """One logical GET: retried on 429 / 5xx / connection errors; typed errors for the
        rest. Returns the 2xx reply and how many retries it took."""
        retries = 0
        while True:
            self._refuse_if_dead(endpoint, shown_path)
            url = self.base_url + self._moved.get(path, path) + (f"?{query}" if query else "")
            try:
                reply = self._attempt(endpoint, url, accept, shown_path, send or _GET)
                problem = None
            except (requests.ConnectionError, requests.Timeout) as exc:
                reply, problem = None, type(exc).__name__
            except requests.RequestException as exc:  # an invalid URL or header: not transient
                raise ApiError(self.api, endpoint, f"the request could not be sent "
                               f"({type(exc).__name__}); check {BASE_URL_VARS[self.api]}",
                               path=shown_path) from None
            if reply is not None:
                self._remember_permanent_redirect(path, reply)
                if reply.status == 200:
                    return reply, retries
                if reply.status not in RETRY_STATUSES:
                    self._raise_for_status(reply, endpoint, shown_path)
            if retries >= self.retry.total:
                self._give_up(reply, problem, endpoint, shown_path, retries)
            retries += 1
            self.stats.add(retries=1)
            wait = self._wait(reply, retries, endpoint)
            log.info("%s %s: %s, retry %d/%d in %.1f s", self.api, endpoint,
                     f"HTTP {reply.status}" if reply else problem, retries, self.retry.total,
                     wait)
            time.sleep(wait)

    def _attempt(self, endpoint: str, url: str, accept: str | None,
                 shown_path: str, send: _Send) -> Reply:
        """Send the request and follow its redirects, all within the deadline; read the
        final body whole (at most ``max_body_bytes`` of it)."""
        redirects: list[tuple[int, str]] = []
        with _Watch(self.limits.deadline) as watch:
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    same = self._same_host(url)
                    headers = {**self._credential, **send.headers} if same else {}
                    if accept:
                        headers["Accept"] = accept
                    self.stats.add(requests_=1)
                    resp = self._session.request(
                        send.method, url, headers=headers, stream=True, allow_redirects=False,
                        json=send.json_body, data=send.form,
                        timeout=(self.retry.connect_timeout, self.retry.read_timeout))
                    location = resp.headers.get("Location")
                    if resp.status_code in REDIRECT_STATUSES and not self.follow_redirects:
                        resp.close()
                        target = urlsplit(urljoin(url, location or "")).hostname or "?"
                        raise ApiError(self.api, endpoint, f"answered a redirect "
                                       f"({resp.status_code}) to {target}; not following it, "
                                       "so the credential stays with this host",
                                       status=resp.status_code, path=shown_path)
                    if resp.status_code in REDIRECT_STATUSES and location:
                        resp.close()  # its body is never read: nothing bounds it
                        url = self._redirect_target(url, location, endpoint, shown_path)
                        redirects.append((resp.status_code, url))
                        continue
                    try:
                        body = self._read_body(resp, endpoint, shown_path, watch)
                    except BaseException:
                        resp.close()  # a half-read connection cannot be reused
                        raise
                    resp.raw.release_conn()  # read to the end: back to the pool (keep-alive)
                    return Reply(resp.status_code, resp.headers, body, url, tuple(redirects))
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
                if watch.fired:
                    raise self._too_slow(endpoint, shown_path) from None
                raise
        raise ApiError(self.api, endpoint, f"more than {MAX_REDIRECTS} redirects (last to "
                       f"{redact(urlsplit(url).path)}); check {BASE_URL_VARS[self.api]}",
                       path=shown_path)

    def _same_host(self, url: str) -> bool:
        scheme, host, _ = _origin(url)
        return host == self._origin[1] and not (scheme == "http" and self._origin[0] == "https")

    def _redirect_target(self, url: str, location: str, endpoint: str, shown_path: str) -> str:
        target = urljoin(url, location)
        if "@" in urlsplit(target).netloc:  # requests would turn it into an Authorization
            raise ApiError(self.api, endpoint, "redirected to a URL with a user name or "
                           f"password in it, which is not followed; check "
                           f"{BASE_URL_VARS[self.api]}", path=shown_path)
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https") or (
                scheme == "http" and urlsplit(url).scheme == "https"
                and not validate.is_loopback_url(target)):
            raise ApiError(self.api, endpoint, f"redirected to a {scheme or 'relative'}:// URL, "
                           "which is not followed (only http(s), never from https to plain "
                           f"http); check {BASE_URL_VARS[self.api]}", path=shown_path)
        return target

    def _read_body(self, resp: requests.Response, endpoint: str, shown_path: str,
                   watch: _Watch) -> bytes:
        limit = self.limits.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.raw.stream(CHUNK, decode_content=True):
                size += len(chunk)
                if size > limit:
                    raise LimitExceeded(
                        self.api, endpoint, f"the body is larger than {limit / 2**20:g} MiB "
                        f"(decompressed), the limit per response; raise {MAX_BODY_ENV} if the "
                        "API really sends that much", status=resp.status_code, path=shown_path)
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watch.fired:
                raise self._too_slow(endpoint, shown_path) from None
            raise _Broken("the connection dropped before the whole response arrived "
                          f"({type(exc).__name__})") from None
        if watch.fired:  # the socket was shut mid-body: what arrived is not the whole body
            raise self._too_slow(endpoint, shown_path)
        return b"".join(chunks)

    def _too_slow(self, endpoint: str, shown_path: str) -> LimitExceeded:
        return LimitExceeded(
            self.api, endpoint, f"no complete answer within {self.limits.deadline:g} s, the "
            f"limit per request (the server is too slow or keeps the body open); raise "
            f"{DEADLINE_ENV} if the API is just slow", path=shown_path)

    def _wait(self, reply: Reply | None, retry: int, endpoint: str) -> float:
        backoff = self.retry.backoff(retry)
        asked = _retry_after(reply.headers.get("Retry-After")) if reply is not None else None
        if asked is None:
            return backoff
        cap = self.limits.max_retry_wait
        if asked > cap:
            log.warning("%s %s: the API asked to wait %.0f s (Retry-After); waiting %.0f s, "
                        "the most %s allows", self.api, endpoint, asked, cap, MAX_RETRY_WAIT_ENV)
        return min(max(asked, backoff), cap)

    def _give_up(self, reply: Reply | None, problem: str | None, endpoint: str,
                 shown_path: str, retries: int) -> None:
        tries = f"{retries + 1} tries"
        if reply is None:
            raise ApiError(self.api, endpoint, f"could not reach the API ({problem}) in {tries}; "
                           f"check {BASE_URL_VARS[self.api]} and your network", path=shown_path)
        if reply.status == 429:
            asked = _retry_after(reply.headers.get("Retry-After"))
            waited = (f"; it asked to wait {asked:.0f} s, more than {MAX_RETRY_WAIT_ENV} "
                      f"({self.limits.max_retry_wait:g} s) allows"
                      if asked and asked > self.limits.max_retry_wait else "")
            raise RateLimited(self.api, endpoint, f"still rate limited after {tries}{waited}; "
                              "re-run later", status=429, path=shown_path,
                              excerpt=excerpt(reply.loose_text()))
        reason = _error_text(reply)
        raise ApiError(self.api, endpoint, f"server kept failing ({tries})"
                       + (f": {reason}" if reason else ""), status=reply.status, path=shown_path)

    def _remember_permanent_redirect(self, path: str, reply: Reply) -> None:
        if not reply.redirects or reply.redirects[0][0] not in (301, 308):
            return
        final = urlsplit(reply.url)
        base = urlsplit(self.base_url)
        if _origin(reply.url) == self._origin and final.path.startswith(base.path + "/"):
            self._moved[path] = final.path[len(base.path):]

    def _raise_for_status(self, reply: Reply, endpoint: str, path: str) -> None:
        status = reply.status
        reason = _error_text(reply)
        if status == 401 and reply.redirects:
            # Not the credential's fault: it is only sent to the API's own origin.
            target = urlsplit(reply.url)
            same = self._same_host(reply.url)
            raise UnauthorizedAfterRedirect(
                self.api, endpoint,
                f"answered 401 after a redirect to {target.hostname}{redact(target.path)} "
                + ("(same host, credential sent)" if same else
                   "(another host: the credential is never sent there)")
                + f". This is not reported as an expired credential; check "
                f"{BASE_URL_VARS[self.api]} (the API may have moved)", status=401, path=path)
        if status == 401:
            if not self.renewable_401:
                self.verdict.record_401(self.api)
            raise CredentialsExpired(self.api, endpoint, path=path, reason=reason)
        if status == 403:
            raise AccessDenied(self.api, endpoint,
                               f"access denied ({reason or 'forbidden'}); check that the "
                               "credential belongs to this show", status=status, path=path)
        if status == 404:
            raise NotFound(self.api, endpoint, f"not found ({reason or 'no such resource'})",
                           status=status, path=path)
        if 300 <= status < 400:
            raise ApiError(self.api, endpoint, "a redirect without a Location header",
                           status=status, path=path)
        if status < 300:  # 204 No Content, 206 Partial Content…: never the whole answer
            raise MalformedResponse(self.api, endpoint, f"HTTP {status} instead of 200: not a "
                                    "complete answer to a GET", status=status, path=path)
        raise ApiError(self.api, endpoint, reason or "request failed", status=status, path=path,
                       excerpt=None if reason else excerpt(reply.loose_text()))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if readable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_text(reply: Reply) -> str | None:
    """The error message from either API's body style: {"error": …} or {"message": …}."""
    text = reply.loose_text()
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        text = text.strip()
        return excerpt(text, 120) if text and not text.startswith("<") else None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return excerpt(body[key], 200)
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return excerpt(json.dumps(errors), 200)
    return None


# ---------------------------------------------------------------------- paging
C = TypeVar("C", bound=Hashable)
P = TypeVar("P")


def paginate(api: str, endpoint: str, fetch_page: Callable[[C | None], tuple[P, C | None]], *,
             max_pages: int, why: str) -> Iterator[P]:
    """Yield pages until ``fetch_page(cursor)`` returns no next cursor.

    The first call gets ``None``. A cursor that comes back (the server would loop) raises
    :class:`MalformedResponse`; more than ``max_pages`` pages raise :class:`LimitExceeded`
    with ``why`` (how the bound was derived and the setting that raises it).
    """
    seen: set[C] = set()
    cursor: C | None = None
    for _ in range(max_pages):
        page, cursor = fetch_page(cursor)
        yield page
        if cursor is None:
            return
        if cursor in seen:
            raise MalformedResponse(api, endpoint, f"the page cursor {redact(str(cursor))!r} "
                                    "came back twice; stopping instead of looping")
        seen.add(cursor)
    raise LimitExceeded(api, endpoint, f"more than {max_pages} pages, {why}")


def page_budget(days: int, per_day: int, page_size: int) -> int:
    """Pages a window can plausibly need: every day at ``per_day`` rows, plus one empty
    last page (a full page always carries a cursor)."""
    return math.ceil(days * per_day / page_size) + 1


class ClientBase:
    """What both API clients share: one ``ApiSession``, closed on leaving a ``with`` block."""

    session: ApiSession

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
