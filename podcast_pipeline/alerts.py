"""Credential alerts: what to say, where to send it, and when not to say it again.

Channels: the Dagster log (always: the sensor's tick log in the UI), a generic JSON
webhook (``PODCAST_PIPELINE_ALERT_WEBHOOK_URL``) and Slack through ``dagster-slack``
(``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``).

One alert per expiry: each API's credential state lives in the Dagster instance's
key-value store, common to the run-failure sensor and the probe sensor (and so to every
code location and daemon process of the instance). A new expiry alert goes out only when
the credential was seen working after the previous one: an asset of that API
materialized later, or the probe said "recovered".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import requests

from podcast_pipeline.errors import API_NAMES
from podcast_pipeline.redact import redact, register_secret, register_url
from podcast_pipeline.settings import SLACK_CHANNEL_ENV, SLACK_TOKEN_ENV, WEBHOOK_ENV, Settings

log = logging.getLogger(__name__)

STATE_KEY = "podcast_pipeline/credential_state/{api}"

# Numbered steps, per API, then the steps both share.
FIX: dict[str, list[str]] = {
    "anchor": [
        "Log in to https://creators.spotify.com in a browser, with the show's account.",
        "Open DevTools → Application → Cookies → podcasters.spotify.com and copy the value of "
        "the cookie anchorpw_s (the value only; it looks like s%3A…).",
        "Put it in ANCHOR_PW_S in the project's .env file (in the folder you start Dagster "
        "from), or in the environment Dagster is started with.",
    ],
    "op3": [
        "Create a new API token at https://op3.dev/api/keys (or ask the show's OP3 admin).",
        "Put it in OP3_TOKEN in the project's .env file (in the folder you start Dagster from), "
        "or in the environment Dagster is started with.",
    ],
}
# The same API over its GraphQL backend (SPOTIFY_SP_DC / SPOTIFY_SP_KEY) has other cookies.
FIX_GRAPHQL = [
    "Log in to https://creators.spotify.com in a browser, with the show's account.",
    "Open DevTools → Application → Cookies → https://accounts.spotify.com (the cookies live on "
    ".spotify.com, so creators.spotify.com shows them too) and copy the values of the cookies "
    "sp_dc and sp_key (the values only).",
    "Put them in SPOTIFY_SP_DC and SPOTIFY_SP_KEY in the project's .env file (in the folder you "
    "start Dagster from), or in the environment Dagster is started with.",
]
FIX_AFTER = [
    "Make Dagster read it: if you edited .env, reload the code location (UI → Deployment → "
    "Code locations → Reload); if you exported the variable, restart `dagster dev` (or the "
    "code server, daemon and webserver) with the new value. No code change is needed.",
    "Check it: `podcast-pipeline check-credentials` should print \"{api}: ok\".",
    "Re-run what failed: UI → Runs → the failed run → Re-execute → From failure (or launch a "
    "backfill of the failed partitions).",
]


def fix_steps(api: str, backend: str | None = None) -> list[str]:
    first = FIX_GRAPHQL if api == "anchor" and backend == "graphql" else FIX[api]
    return [*first, *(s.replace("{api}", api) for s in FIX_AFTER)]


@dataclass(frozen=True)
class Alert:
    kind: Literal["credentials_expired", "credentials_recovered"]
    api: str
    show: str
    text: str  # the whole human message, multi-line; "text" also suits Slack-style webhooks
    first_partition: str | None = None
    run_id: str | None = None
    detected_by: str = ""
    fix_steps: list[str] = field(default_factory=list)
    account: str | None = None  # a network's Spotify account or OP3 token
    shows: list[str] = field(default_factory=list)  # every show the credential affects

    def payload(self) -> dict[str, object]:
        body = {k: v for k, v in asdict(self).items() if v not in (None, [])}
        body["api_name"] = API_NAMES.get(self.api, self.api)
        return body


def _rename(text: str, variables: Mapping[str, str] | None) -> str:
    """The single-show variable names → an account's own (e.g. SPOTIFY_SP_DC → ACME_SP_DC)."""
    for old, new in (variables or {}).items():
        text = text.replace(old, new)
    return text


def expired_alert(api: str, show: str, *, first_partition: str | None, run_id: str | None,
                  detected_by: str, backend: str | None = None, account: str | None = None,
                  shows: list[str] | None = None,
                  variables: Mapping[str, str] | None = None) -> Alert:
    """``account`` / ``shows`` / ``variables``: a network's credential, every show it reads,
    and its variables by the single-show names they replace."""
    name = API_NAMES.get(api, api)
    steps = [_rename(step, variables) for step in fix_steps(api, backend)]
    credential = {"anchor": "cookie (ANCHOR_PW_S)", "op3": "token (OP3_TOKEN)"}.get(api, "key")
    if api == "anchor" and backend == "graphql":
        credential = "login cookies (SPOTIFY_SP_DC / SPOTIFY_SP_KEY)"
    why = (f"Spotify refuses to log in with the {credential}: the session they belong to "
           "has ended" if "SPOTIFY_SP_DC" in credential else
           f"Every call answers 401: the {credential} is expired or invalid")
    lines = [
        f"🚨 {name} credential expired — {show}",
        f"{why}, so no new data is coming in from it. Runs stop calling the API as soon as "
        "they meet the 401.",
    ]
    if first_partition:
        lines.append(f"First failed partition: {first_partition}"
                     + (f" (run {run_id})." if run_id else "."))
    if shows:
        lines.append(f"Shows affected ({len(shows)}): " + "; ".join(shows) + ". The other "
                     "accounts' shows are not affected.")
    lines.append(f"Detected by: {detected_by}.")
    lines.append("To fix:")
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    lines.append("This is the only alert for this expiry; the next one comes only after the "
                 "credential has worked again.")
    lines = [_rename(line, variables) for line in lines]
    return Alert("credentials_expired", api, show, redact("\n".join(lines)), first_partition,
                 run_id, detected_by, steps, account, list(shows or []))


def recovered_alert(api: str, show: str, *, detected_by: str) -> Alert:
    name = API_NAMES.get(api, api)
    text = (f"✅ {name} credential works again — {show}\n"
            "Re-run any partitions that failed while it was expired (UI → Runs → the failed run → "
            "Re-execute → From failure).")
    return Alert("credentials_recovered", api, show, redact(text), detected_by=detected_by)


# ---------------------------------------------------------------------- channels
class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


@dataclass
class WebhookChannel:
    """POSTs ``Alert.payload()`` as JSON; any 2xx counts as delivered."""

    url: str = field(repr=False)
    name: str = "webhook"

    def __post_init__(self) -> None:
        # For Zapier / n8n / Slack-style hooks the URL is the credential: a delivery error
        # (which quotes the URL or its path) must not print it.
        register_url(self.url)

    def send(self, alert: Alert) -> None:
        # The answer's body is never read: nothing in it matters, and nothing bounds it.
        resp = requests.post(self.url, json=alert.payload(), timeout=(5, 10),
                             allow_redirects=False, stream=True)
        resp.close()
        if not 200 <= resp.status_code < 300:
            raise RuntimeError(f"the webhook answered HTTP {resp.status_code}")


@dataclass
class SlackChannel:
    """``chat.postMessage`` through ``dagster-slack``'s client (a bot token with chat:write)."""

    token: str = field(repr=False)
    channel: str
    name: str = "slack"
    base_url: str | None = None  # Slack's own API unless set (a proxy, or a test receiver)

    def __post_init__(self) -> None:
        register_secret(self.token)  # a delivery error must not print it

    def send(self, alert: Alert) -> None:
        from dagster_slack import SlackResource

        client = SlackResource(token=self.token).get_client()
        if self.base_url:
            client.base_url = self.base_url.rstrip("/") + "/"
        client.chat_postMessage(channel=self.channel, text=alert.text)


def configured_channels(environ: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels the settings name (from ``environ``, default the process environment)."""
    settings = Settings.from_env(environ)
    channels: list[Channel] = []
    if settings.alert_webhook_url is not None:
        channels.append(WebhookChannel(settings.alert_webhook_url.get_secret_value()))
    if settings.slack_bot_token is not None and settings.slack_channel:
        channels.append(SlackChannel(settings.slack_bot_token.get_secret_value(),
                                     settings.slack_channel))
    return channels


def send(alert: Alert, logger: logging.Logger | logging.LoggerAdapter | None = None,
         channels: list[Channel] | None = None) -> list[str]:
    """Log the alert always; deliver to every configured channel. Returns where it went."""
    logger = logger or log
    logger.warning(alert.text)
    sent = ["log"]
    targets = configured_channels() if channels is None else channels
    if not targets:
        logger.info(f"No alert channel configured: set {WEBHOOK_ENV}, or {SLACK_TOKEN_ENV} and "
                    f"{SLACK_CHANNEL_ENV}, to get alerts outside Dagster.")
    for channel in targets:
        try:
            channel.send(alert)
            sent.append(channel.name)
        except Exception as exc:  # a broken channel must not hide the alert elsewhere
            logger.error(f"could not deliver the alert to {channel.name}: "
                         f"{redact(type(exc).__name__ + ': ' + str(exc))[:300]}")
    return sent


# ---------------------------------------------------------------------- state
@dataclass
class CredentialState:
    status: Literal["ok", "dead", "unknown"] = "unknown"
    since: float = 0.0  # when it last changed (epoch seconds)

    def dump(self) -> str:
        return json.dumps(asdict(self))


def load_state(instance, api: str) -> CredentialState:
    key = STATE_KEY.format(api=api)
    raw = instance.run_storage.get_cursor_values({key}).get(key)
    if not raw:
        return CredentialState()
    try:
        return CredentialState(**json.loads(raw))
    except (ValueError, TypeError):
        return CredentialState()


def save_state(instance, api: str, state: CredentialState) -> None:
    instance.run_storage.set_cursor_values({STATE_KEY.format(api=api): state.dump()})


def last_success_time(instance, api: str, keys: list | None = None) -> float:
    """When an asset of ``api`` (or one of ``keys``: a network credential's) last
    materialized: proof its credential worked then."""
    import dagster as dg

    from podcast_pipeline.tables import ALL_TABLES

    if keys is None:
        keys = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.schema == api]
    latest = 0.0
    for record in instance.get_latest_materialization_events(keys).values():
        if record is not None:
            latest = max(latest, record.timestamp)
    return latest


def should_alert_expired(instance, api: str, keys: list | None = None) -> bool:
    """True (and the state turns dead) unless this expiry was already announced. ``api``:
    the API, or a network credential ``<api>@<account>`` (its assets: ``keys``)."""
    state = load_state(instance, api)
    if state.status == "dead" and last_success_time(instance, api, keys) <= state.since:
        return False
    save_state(instance, api, CredentialState("dead", time.time()))
    return True


def should_announce_recovery(instance, api: str) -> bool:
    """True once when a credential known dead works again; the state turns ok either way."""
    state = load_state(instance, api)
    if state.status != "ok":
        save_state(instance, api, CredentialState("ok", time.time()))
    return state.status == "dead"
