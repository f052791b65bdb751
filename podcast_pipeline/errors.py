"""Typed errors used by both API clients, the warehouse and the Dagster layer.

Every message names what went wrong and what to do. None ever contains a secret:
messages are built from the API name, the endpoint name and the request *path*
(which never carries a credential), and body excerpts are passed through
:func:`podcast_pipeline.redact.redact` before they are kept.
"""

from __future__ import annotations

# What the user must do when a credential dies, per API.
FIX_STEPS: dict[str, str] = {
    "anchor": (
        "Log in to https://creators.spotify.com (or podcasters.spotify.com), open DevTools → "
        "Application → Cookies → podcasters.spotify.com, copy the value of the cookie "
        "'anchorpw_s' and put it in ANCHOR_PW_S (in .env or the environment of the Dagster "
        "daemon and webserver), then reload the code location or restart `dagster dev`."
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
                 path: str | None = None, reason: str | None = None) -> None:
        cred = "ANCHOR_PW_S cookie (anchorpw_s)" if api == "anchor" else "OP3_TOKEN"
        why = f" ({reason})" if reason else ""
        message = (
            f"the {cred} was rejected as expired or invalid{why}. "
            f"No further calls will be made with it. To fix: {FIX_STEPS.get(api, '')}"
        )
        super().__init__(api, endpoint, message, status=status, path=path)
        self.reason = reason


class AccessDenied(ApiError):
    """HTTP 403: the credential is valid but may not see this resource."""

    kind = "access_denied"


class RateLimited(ApiError):
    """HTTP 429 that persisted through every retry."""

    kind = "rate_limited"


class MalformedResponse(ApiError):
    """A 200 whose body is not what the endpoint returns (HTML, truncated JSON, missing keys)."""

    kind = "malformed_response"


class NotFound(ApiError):
    """HTTP 404."""

    kind = "not_found"
