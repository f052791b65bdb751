"""Typed errors used by both API clients, the warehouse and the Dagster layer.

Every message names what went wrong and what to do. None ever contains a secret:
messages are built from the API name, the endpoint name and the request *path*
(which never carries a credential), and body excerpts are passed through
:func:`podcast_pipeline.redact.redact` before they are kept.
"""

from __future__ import annotations

from typing import Any

# What the user must do when a credential dies, per API.
FIX_STEPS: dict[str, str] = {
    "anchor": (
        "Log in to https://creators.spotify.com (or podcasters.spotify.com), open DevTools → "
        "Application → Cookies → podcasters.spotify.com, copy the value of the cookie "
        "'anchorpw_s' and put it in ANCHOR_PW_S (in .env or the environment of the Dagster "
        "daemon and webserver), then reload the code location or restart `dagster dev`."
    ),
    "spotify_graphql": (
        "Log in to https://creators.spotify.com in a browser with the show's account, open "
        "DevTools → Application → Cookies → https://accounts.spotify.com (or "
        "creators.spotify.com; the cookies live on .spotify.com), copy the values of the "
        "cookies 'sp_dc' and 'sp_key' and put them in SPOTIFY_SP_DC and SPOTIFY_SP_KEY (in .env "
        "or the environment of the Dagster daemon and webserver), then reload the code location "
        "or restart `dagster dev`."
    ),
    "op3": (
        "Create a new API token at https://op3.dev/api/keys (or ask the show's OP3 admin), put it "
        "in OP3_TOKEN (in .env or the environment of the Dagster daemon and webserver), then "
        "reload the code location or restart `dagster dev`."
    ),
}

API_NAMES: dict[str, str] = {"anchor": "Spotify for Creators (Anchor)", "op3": "OP3"}


class PodcastPipelineError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PodcastPipelineError):
    """A setting is missing or malformed; raised before any HTTP request."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting = setting
        super().__init__(f"{setting} {problem}. {fix}")


class ApiError(PodcastPipelineError):
    """An API answered with an error status, or could not be reached."""

    kind = "api_error"

    def __init__(
        self,
        api: str,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        path: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        self.api = api
        self.endpoint = endpoint
        self.status = status
        self.path = path
        self.excerpt = excerpt
        where = f"{API_NAMES.get(api, api)} endpoint '{endpoint}'"
        if path:
            where += f" ({path})"
        text = f"{where}: {message}"
        if status is not None:
            text += f" [HTTP {status}]"
        if excerpt:
            text += f" — body starts: {excerpt!r}"
        super().__init__(text)


class CredentialsExpired(ApiError):
    """HTTP 401: the cookie or token is expired or invalid. Never retried."""

    kind = "credentials_expired"

    def __init__(self, api: str, endpoint: str, *, status: int | None = 401,
                 path: str | None = None, reason: str | None = None,
                 backend: str | None = None) -> None:
        cred = "ANCHOR_PW_S cookie (anchorpw_s)" if api == "anchor" else "OP3_TOKEN"
        fix = FIX_STEPS.get(api, "")
        if backend == "graphql":  # the same API over GraphQL: another credential, another fix
            cred = "SPOTIFY_SP_DC / SPOTIFY_SP_KEY cookies (sp_dc, sp_key)"
            fix = FIX_STEPS["spotify_graphql"]
        why = f" ({reason})" if reason else ""
        message = (
            f"the {cred} was rejected as expired or invalid{why}. "
            f"No further calls will be made with it. To fix: {fix}"
        )
        self.backend = backend
        super().__init__(api, endpoint, message, status=status, path=path)
        self.reason = reason


class AccessDenied(ApiError):
    """HTTP 403: the credential is valid but may not see this resource."""

    kind = "access_denied"


class RateLimited(ApiError):
    """HTTP 429 that persisted through every retry."""

    kind = "rate_limited"


class GraphQLError(ApiError):
    """A GraphQL 200 whose ``errors`` left no ``data`` (unknown hash, validation error, …)."""

    kind = "graphql_error"

    def __init__(self, api: str, operation: str, errors: list[Any], *,
                 path: str | None = None) -> None:
        self.operation = operation
        self.errors = errors
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        classification = (first.get("extensions") or {}).get("classification") \
            if isinstance(first.get("extensions"), dict) else None
        message = str(first.get("message") or "no message")[:200]
        hint = ""
        if "PersistedQuery" in message or classification == "PersistedQueryNotFound":
            hint = (" The dashboard's query hashes rotate with its deploys: find the new hash "
                    "in DevTools → Network → graph-pq → Payload and update "
                    "podcast_pipeline/spotify/operations.py.")
        super().__init__(api, operation, f"GraphQL operation {operation} failed: "
                         f"{classification or 'error'}: {message}.{hint}", status=200, path=path)


class FieldUnavailable(ApiError):
    """GraphQL nulled a field the table needs (``DataFetchingException``): reported, not 0."""

    kind = "field_unavailable"


class MalformedResponse(ApiError):
    """A 200 whose body is not what the endpoint returns (HTML, truncated JSON, missing keys)."""

    kind = "malformed_response"


class NotFound(ApiError):
    """HTTP 404."""

    kind = "not_found"


class LimitExceeded(MalformedResponse):
    """An answer went past a bound the client keeps (time, size, nesting, pages).

    The message names the limit and the setting that raises it. Not re-fetched and not
    retried by Dagster: the same request would meet the same bound.
    """

    kind = "limit_exceeded"


BASE_URL_VARS: dict[str, str] = {"anchor": "ANCHOR_BASE_URL", "op3": "OP3_BASE_URL"}


class UnauthorizedAfterRedirect(ApiError):
    """A 401 from the target of a redirect: says nothing about whether the credential works.

    Only same-origin redirects carry the credential, so a 401 from another host is expected;
    it is not reported as an expired credential (no alert, no 401 verdict for the run).
    """

    kind = "unauthorized_after_redirect"


class RefusedReplace(ApiError):
    """A well-formed answer that would wipe or shrink stored partitions without the API
    saying they are empty: kept out of the warehouse, the old rows stay."""

    kind = "refused_replace"
