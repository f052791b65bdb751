"""The HTTP layer both clients share: retries, typed errors, the 401 stop, raw capture.

Retries are urllib3's ``Retry`` on the session's adapter (exponential backoff with
jitter, ``Retry-After`` honoured, 429/5xx/connection errors/timeouts). A 401 is
never retried and, once seen, :class:`ApiSession` refuses every further call: retrying
a dead Spotify cookie is what gets accounts flagged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from podcast_pipeline.errors import (
    AccessDenied,
    ApiError,
    CredentialsExpired,
    MalformedResponse,
    NotFound,
    RateLimited,
)
from podcast_pipeline.redact import redact

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "podcast_pipeline/0.1 (+https://github.com/podcast-pipeline)"


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


Recorder = Callable[[RawResponse], None]


@dataclass
class RetryPolicy:
    """How hard to try. Defaults suit the live services; tests and the demo shorten them."""

    total: int = 6
    backoff_factor: float = 1.0
    backoff_max: float = 60.0
    backoff_jitter: float = 0.5
    malformed_retries: int = 2  # a truncated 200 is usually transient
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def to_urllib3(self, methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})) -> Retry:
        return Retry(
            total=self.total,
            connect=self.total,
            read=self.total,
            status=self.total,
            other=0,
            allowed_methods=methods,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_factor,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff_jitter,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )


@dataclass
class CallStats:
    """Counters a caller (the chaos demo, a benchmark) can read after work is done."""

    requests: int = 0
    retries: int = 0
    malformed_retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, requests_: int = 0, retries: int = 0, malformed: int = 0) -> None:
        with self.lock:
            self.requests += requests_
            self.retries += retries
            self.malformed_retries += malformed


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def excerpt(text: str, limit: int = 160) -> str:
    text = redact(text.strip().replace("\n", " "))
    return text[:limit] + ("…" if len(text) > limit else "")


def utf8_text(resp: requests.Response) -> str:
    """The body decoded strictly as UTF-8, which both APIs send.

    ``resp.text`` would swap a bad byte for U+FFFD and store the damage silently; a body
    that is not UTF-8 is corrupt, so this raises ``ValueError`` naming the first bad byte.
    """
    try:
        return resp.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not valid UTF-8 (byte {resp.content[exc.start]:#04x} at "
                         f"offset {exc.start})") from None


class ApiSession:
    """A ``requests.Session`` for one API, one credential, with the project's error rules."""

    def __init__(
        self,
        api: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
        stats: CallStats | None = None,
        retry_methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"}),
        follow_redirects: bool = True,
        stop_on_401: bool = True,
    ) -> None:
        """``retry_methods`` may add POST for read-only POST APIs (GraphQL persisted queries).
        ``follow_redirects=False`` turns any 3xx into an error, so a credential header never
        travels to another host. ``stop_on_401=False``: a 401 raises but does not end the
        session (a short-lived bearer the caller renews)."""
        self.api = api
        self.follow_redirects = follow_redirects
        self.stop_on_401 = stop_on_401
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.recorder = recorder
        self.stats = stats or CallStats()
        self.dead: CredentialsExpired | None = None
        # Paths a 301/308 moved for good (OP3 /redirect-logs → /hits): later pages go straight
        # to the new path instead of costing a redirect each.
        self._moved: dict[str, str] = {}
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._session.headers.update(headers)
        adapter = HTTPAdapter(max_retries=self.retry.to_urllib3(retry_methods), pool_maxsize=16)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ requests
    def get(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        accept: str | None = None,
    ) -> tuple[requests.Response, RawResponse]:
        """GET ``base_url + path``; return the response and its raw record, or raise typed."""
        return self.request("GET", endpoint, path, params, accept=accept)

    def request(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> tuple[requests.Response, RawResponse]:
        """One request with the session's rules; ``label`` annotates the recorded path
        (e.g. a GraphQL operation name, shown as ``#name``: a POST's path alone says little)."""
        if self.dead is not None:
            raise CredentialsExpired(self.api, endpoint, status=None, path=path,
                                     reason="an earlier call in this session got 401")
        url = self.base_url + self._moved.get(path, path)
        query = urlencode(list(params.items()) if isinstance(params, Mapping) else (params or []))
        shown_path = redact(urlsplit(url).path + (f"?{query}" if query else "")
                            + (f"#{label}" if label else ""))
        extra = {**(headers or {}), **({"Accept": accept} if accept else {})}
        body = {"json": json_body} if json_body is not None else {"data": form} if form else {}
        try:
            resp = self._send(method, endpoint, url, query, extra or None, shown_path, body)
        except requests.exceptions.RetryError as exc:  # retries exhausted on statuses
            self.stats.add(requests_=self.retry.total + 1, retries=self.retry.total)
            if "429" in str(exc) or "too many 429" in str(exc):
                raise RateLimited(self.api, endpoint, "still rate limited after every retry",
                                  status=429, path=shown_path) from None
            raise ApiError(self.api, endpoint, "server kept failing after every retry",
                           path=shown_path) from None
        except requests.exceptions.RequestException as exc:
            self.stats.add(requests_=self.retry.total + 1, retries=self.retry.total)
            raise ApiError(self.api, endpoint,
                           f"could not reach the API after retries ({type(exc).__name__}); "
                           "check the base URL and your network", path=shown_path) from None

        if not self.follow_redirects and resp.is_redirect:
            self.stats.add(requests_=1)
            target = urlsplit(resp.headers.get("Location", "")).hostname or "another path"
            raise ApiError(self.api, endpoint, f"answered a redirect ({resp.status_code}) to "
                           f"{target}; not following it, so the credential stays with this host",
                           status=resp.status_code, path=shown_path)
        self._remember_permanent_redirect(path, resp)
        if "charset" not in resp.headers.get("Content-Type", "").lower():
            # Both APIs send UTF-8, but OP3's TSV declares no charset: requests would decode
            # text/* as ISO-8859-1 ("Île-de-France" → "Ã\x8ele-de-France") and guess for JSON.
            resp.encoding = "utf-8"
        # Each hop of a redirect (OP3 /redirect-logs → /hits) has its own retry history.
        history = [h for hop in (*resp.history, resp)
                   for h in getattr(getattr(hop.raw, "retries", None), "history", ()) or ()]
        self.stats.add(requests_=1 + len(history), retries=len(history))
        raw = RawResponse(
            api=self.api, endpoint=endpoint, path=shown_path, status=resp.status_code,
            body=redact(resp.text), fetched_at=datetime.now(UTC), retries=len(history),
        )
        self._raise_for_status(resp, endpoint, shown_path)
        return resp, raw

    def _remember_permanent_redirect(self, path: str, resp: requests.Response) -> None:
        if not resp.history or resp.history[0].status_code not in (301, 308):
            return
        base, final = urlsplit(self.base_url), urlsplit(resp.url)
        if (final.scheme, final.netloc) == (base.scheme, base.netloc) and \
                final.path.startswith(base.path + "/"):
            self._moved[path] = final.path[len(base.path):]

    def _send(self, method: str, endpoint: str, url: str, query: str,
              headers: dict[str, str] | None, shown_path: str,
              body: Mapping[str, Any]) -> requests.Response:
        """One GET through the retrying adapter; a body cut off mid-transfer is fetched again.

        urllib3's ``Retry`` ends when the headers arrive, so a connection that drops while
        the body streams in (``ChunkedEncodingError``) needs its own small loop.
        """
        attempt = 0
        while True:
            try:
                return self._session.request(
                    method, url, params=query or None, headers=headers,
                    timeout=(self.retry.connect_timeout, self.retry.read_timeout),
                    allow_redirects=self.follow_redirects, **body,
                )
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                if attempt >= self.retry.malformed_retries:
                    raise MalformedResponse(
                        self.api, endpoint, "the connection dropped before the whole response "
                        f"arrived ({type(exc).__name__}), on every try", path=shown_path) from None
                attempt += 1
                self.stats.add(requests_=1, malformed=1)
                log.warning("%s %s: response cut off mid-transfer; fetching again (%d/%d)",
                            self.api, endpoint, attempt, self.retry.malformed_retries)
                time.sleep(min(self.retry.backoff_factor * attempt, 5.0))

    def get_json(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        validate: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """GET and parse JSON; ``validate(body)`` returns a problem text or None.

        A body that is not JSON (an HTML login page, a truncated document) or that
        fails ``validate`` is fetched again up to ``malformed_retries`` times, then
        raises :class:`MalformedResponse` naming the endpoint.
        """
        return self.request_json("GET", endpoint, path, params, validate=validate)

    def request_json(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        validate: Callable[[Any], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> Any:
        """:meth:`get_json` for any method (the body goes along on every re-fetch)."""
        attempt = 0
        while True:
            resp, raw = self.request(method, endpoint, path, params, headers=headers,
                                     json_body=json_body, form=form, label=label)
            problem = _json_problem(resp)
            body: Any = None
            if problem is None:
                body = resp.json()
                problem = validate(body) if validate else None
            if problem is None:
                self.record(raw)
                return body
            if attempt >= self.retry.malformed_retries:
                raise MalformedResponse(self.api, endpoint, problem, status=resp.status_code,
                                        path=raw.path, excerpt=excerpt(resp.text))
            attempt += 1
            self.stats.add(malformed=1)
            log.warning("%s %s: %s; fetching again (%d/%d)", self.api, endpoint, problem,
                        attempt, self.retry.malformed_retries)
            time.sleep(min(self.retry.backoff_factor * attempt, 5.0))

    def record(self, raw: RawResponse) -> None:
        if self.recorder is not None:
            self.recorder(raw)

    # ------------------------------------------------------------------ errors
    def _raise_for_status(self, resp: requests.Response, endpoint: str, path: str) -> None:
        status = resp.status_code
        if status < 400:
            return
        reason = _error_text(resp)
        if status == 401:
            expired = CredentialsExpired(self.api, endpoint, path=path, reason=reason)
            if self.stop_on_401:
                self.dead = expired
            raise expired
        if status == 403:
            raise AccessDenied(self.api, endpoint,
                               f"access denied ({reason or 'forbidden'}); check that the "
                               "credential belongs to this show", status=status, path=path)
        if status == 404:
            raise NotFound(self.api, endpoint, f"not found ({reason or 'no such resource'})",
                           status=status, path=path)
        if status == 429:
            raise RateLimited(self.api, endpoint, "still rate limited after every retry",
                              status=status, path=path, excerpt=excerpt(resp.text))
        raise ApiError(self.api, endpoint, reason or "request failed", status=status, path=path,
                       excerpt=None if reason else excerpt(resp.text))


def _json_problem(resp: requests.Response) -> str | None:
    text = resp.text
    ctype = resp.headers.get("Content-Type", "")
    if "html" in ctype or text.lstrip()[:1] == "<":
        return "expected JSON but got an HTML page (a login page means the session expired)"
    try:
        text = utf8_text(resp)
    except ValueError as exc:
        return str(exc)
    try:
        json.loads(text)
    except ValueError:
        return f"body is not valid JSON (truncated or corrupt, {len(text)} characters)"
    return None


def _error_text(resp: requests.Response) -> str | None:
    """The error message from either API's body style: {"error": …} or {"message": …}."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return excerpt(text, 120) if text and not text.startswith("<") else None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return excerpt(body[key], 200)
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return excerpt(json.dumps(errors), 200)
    return None


class ClientBase:
    """What both API clients share: one ``ApiSession``, closed on leaving a ``with`` block."""

    session: ApiSession

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
