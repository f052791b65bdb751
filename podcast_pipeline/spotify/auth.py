"""sp_dc / sp_key cookies → PKCE authorization code → short-lived bearer, as the dashboard does.

The flow of the reference client (``spotifygraphqlconnector`` 0.5.3): GET the accounts
``/oauth2/v2/auth`` page with the two cookies and ``prompt=none``; the page embeds
``const authorizationResponse = {...};`` holding a code; POST it with the PKCE verifier to
``/api/token`` for ``access_token`` + ``expires_in``. No refresh token: every renewal repeats
the flow. The cookies go to the accounts host only; the bearer lives in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from podcast_pipeline.errors import ApiError, CredentialsExpired, MalformedResponse
from podcast_pipeline.http import ApiSession, CallStats, RetryPolicy
from podcast_pipeline.redact import register_secret
from podcast_pipeline.settings import SpotifySettings

log = logging.getLogger(__name__)

API = "anchor"  # the same Spotify for Creators API as the REST backend, for alerts and tags
CLIENT_ID = "05a1371ee5194c27860b3ff3ff3979d2"  # the dashboard's public OAuth client id
SCOPE = "streaming ugc-image-upload user-read-email user-read-private"
REDIRECT_URI = "https://podcasters.spotify.com"  # the old domain, as the dashboard still sends
LOGIN_ATTEMPTS = 3  # the whole flow, as a unit (reference client)
REFRESH_BUFFER_SECONDS = 300.0
_AUTH_RESPONSE = re.compile(r"const authorizationResponse = (.*?);", re.DOTALL)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge): 86 URL-safe characters and base64url(SHA-256), unpadded."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def parse_authorization_page(body: str, state: str) -> str:
    """The authorization code from the accounts page; typed errors for the other outcomes."""
    if "login_required" in body:  # the reference client checks only this substring
        raise CredentialsExpired(API, "login", status=None, path="/oauth2/v2/auth",
                                 reason="the accounts page answered login_required: the "
                                        "Spotify session of these cookies has ended",
                                 backend="graphql")
    m = _AUTH_RESPONSE.search(body)
    if not m:
        raise MalformedResponse(API, "login", "the accounts page has no "
                                "'const authorizationResponse = …;'", path="/oauth2/v2/auth")
    obj = _js_object(m.group(1))
    response = obj.get("response") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or obj.get("type") != "authorization_response" or \
            not isinstance(response, dict):
        raise MalformedResponse(API, "login", "authorizationResponse is not an "
                                "authorization_response object", path="/oauth2/v2/auth")
    if response.get("state") != state:
        raise MalformedResponse(API, "login", "authorizationResponse carries another state "
                                "than the one sent (not our request)", path="/oauth2/v2/auth")
    code = response.get("code")
    if not isinstance(code, str) or not code:
        error = response.get("error")
        raise MalformedResponse(API, "login", "authorizationResponse has no code"
                                + (f" (error {str(error)[:60]!r})" if error else ""),
                                path="/oauth2/v2/auth")
    register_secret(code)
    return code


def _js_object(text: str) -> Any:
    """Strict JSON, else YAML (the reference client's parser: it also reads unquoted keys)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise MalformedResponse(API, "login", "authorizationResponse is not a readable object",
                                path="/oauth2/v2/auth") from None


class BearerSource:
    """Hands out a valid bearer, logging in when there is none or it is about to expire.

    A dead cookie (``login_required``) poisons the source: every later call raises the same
    :class:`CredentialsExpired` at once, with no request. Thread-safe.
    """

    def __init__(self, settings: SpotifySettings, *, retry: RetryPolicy | None = None,
                 stats: CallStats | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._clock = clock
        # Not recorded: the page holds an authorization code and the token body the bearer.
        # No redirects: the cookies must not follow one to another host.
        self.session = ApiSession(API, settings.accounts_url, headers={"Accept": "*/*"},
                                  retry=self.retry, stats=stats, follow_redirects=False,
                                  renewable_401=True)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._dead: CredentialsExpired | None = None
        self.logins = 0
        self.show_uri: str | None = None  # the show, once a client of this login resolved it

    def close(self) -> None:
        self.session.close()

    def bearer(self) -> tuple[str, bool]:
        """(bearer, fresh): ``fresh`` when this call had to log in to get it."""
        with self._lock:
            if self._dead is not None:
                raise self._dead
            if self._token is not None and self._clock() < self._expires_at:
                return self._token, False
            self._token = None
            token, lifetime = self._login()
            self._token = token
            # Renew 300 s before the end (the reference client's margin), or a tenth of a
            # short lifetime, so a 60 s token is not renewed before every request.
            self._expires_at = self._clock() + lifetime - min(REFRESH_BUFFER_SECONDS,
                                                              lifetime / 10)
            return token, True

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (it met a 401); the next :meth:`bearer` logs in again."""
        with self._lock:
            if self._token == token:
                self._token = None

    def kill(self, exc: CredentialsExpired) -> CredentialsExpired:
        with self._lock:
            self._dead = exc
            self._token = None
        return exc

    def _login(self) -> tuple[str, float]:
        last: ApiError | None = None
        for attempt in range(1, LOGIN_ATTEMPTS + 1):
            try:
                return self._login_once()
            except CredentialsExpired as exc:
                if exc.backend != "graphql":  # e.g. a 401 from the token endpoint
                    exc = CredentialsExpired(API, exc.endpoint, path=exc.path, reason=exc.reason,
                                             backend="graphql")
                raise self.kill_locked(exc) from None
            except ApiError as exc:
                last = exc
                if attempt < LOGIN_ATTEMPTS:
                    log.warning("Spotify login failed (%s); trying again (%d/%d)",
                                type(exc).__name__, attempt, LOGIN_ATTEMPTS - 1)
                    time.sleep(min(2.0 * self.retry.backoff_factor * attempt, 10.0))
        assert last is not None
        raise last

    def kill_locked(self, exc: CredentialsExpired) -> CredentialsExpired:
        self._dead, self._token = exc, None  # caller holds the lock
        return exc

    def _login_once(self) -> tuple[str, float]:
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        cookies = f"sp_dc={self.settings.sp_dc}"
        if self.settings.sp_key:
            cookies += f"; sp_key={self.settings.sp_key}"
        page = self.session.fetch("login", "/oauth2/v2/auth", {
            "response_type": "code", "client_id": CLIENT_ID, "scope": SCOPE,
            "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
            "code_challenge_method": "S256", "state": state,
            "response_mode": "web_message", "prompt": "none",
        }, headers={"Cookie": cookies}, parse=lambda reply: reply.text)  # strict UTF-8
        code = parse_authorization_page(page, state)
        body = self.session.request_json("POST", "token", "/api/token", form={
            "grant_type": "authorization_code", "client_id": CLIENT_ID, "code": code,
            "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
        }, validate=_validate_token)
        token = body["access_token"]
        register_secret(token)  # before anything could turn it into text
        expires_in = body.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and \
            not isinstance(expires_in, bool) and expires_in > 0 else 3600.0
        self.logins += 1
        log.info("Spotify login: new bearer, valid %.0f s", lifetime)
        return token, lifetime


def _validate_token(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or \
            not body["access_token"]:
        return "the token answer has no access_token"
    return None
