"""Credential alerts: what to say, where to send it, and when not to say it again.

One alert per expiry: the state of each API's credential is kept in the Dagster
instance's key-value store, shared by the run-failure sensor and the probe sensor.
A new alert goes out only when the credential was last seen working after the
previous alert (a successful materialization, or the probe saying "recovered").
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import requests

from podcast_pipeline.errors import API_NAMES, FIX_STEPS
from podcast_pipeline.redact import redact

log = logging.getLogger(__name__)

WEBHOOK_ENV = "PODCAST_PIPELINE_ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"
SLACK_CHANNEL_ENV = "SLACK_CHANNEL"
STATE_KEY = "podcast_pipeline/credential_state/{api}"


@dataclass(frozen=True)
class Alert:
    kind: Literal["credentials_expired", "credentials_recovered"]
    api: str
    show: str
    text: str
    first_partition: str | None = None
    run_id: str | None = None
    detected_by: str = ""

    def payload(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def expired_alert(api: str, show: str, *, first_partition: str | None, run_id: str | None,
                  detected_by: str) -> Alert:
    where = f" First failed partition: {first_partition}." if first_partition else ""
    run = f" Run: {run_id}." if run_id else ""
    text = (f":rotating_light: {API_NAMES.get(api, api)} credential expired for show {show}: "
            f"every call answers 401, so no new data is coming in.{where}{run} "
            f"To fix: {FIX_STEPS.get(api, '')} Then re-run the failed partitions "
            "(Dagster UI → the asset → Materialize, or the backfill's 'Re-execute failed').")
    return Alert("credentials_expired", api, show, redact(text), first_partition, run_id,
                 detected_by)


def recovered_alert(api: str, show: str, *, detected_by: str) -> Alert:
    text = (f":white_check_mark: {API_NAMES.get(api, api)} credential for show {show} works "
            "again. Re-run any partitions that failed while it was expired.")
    return Alert("credentials_recovered", api, show, redact(text), detected_by=detected_by)


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


@dataclass
class WebhookChannel:
    url: str
    name: str = "webhook"

    def send(self, alert: Alert) -> None:
        resp = requests.post(self.url, json=alert.payload(), timeout=10)
        resp.raise_for_status()


@dataclass
class SlackChannel:
    token: str
    channel: str
    name: str = "slack"

    def send(self, alert: Alert) -> None:
        from dagster_slack import SlackResource

        SlackResource(token=self.token).get_client().chat_postMessage(
            channel=self.channel, text=alert.text)


def configured_channels(environ: dict[str, str] | None = None) -> list[Channel]:
    env = os.environ if environ is None else environ
    channels: list[Channel] = []
    if env.get(WEBHOOK_ENV):
        channels.append(WebhookChannel(env[WEBHOOK_ENV]))
    if env.get(SLACK_TOKEN_ENV) and env.get(SLACK_CHANNEL_ENV):
        channels.append(SlackChannel(env[SLACK_TOKEN_ENV], env[SLACK_CHANNEL_ENV]))
    return channels


def send(alert: Alert, logger: logging.Logger | logging.LoggerAdapter | None = None,
         channels: list[Channel] | None = None) -> list[str]:
    """Log the alert always; deliver to every configured channel. Returns where it went."""
    logger = logger or log
    logger.warning(alert.text)
    sent = ["log"]
    for channel in configured_channels() if channels is None else channels:
        try:
            channel.send(alert)
            sent.append(channel.name)
        except Exception as exc:  # a broken channel must not hide the alert elsewhere
            logger.error(f"could not deliver the alert to {channel.name}: "
                         f"{redact(type(exc).__name__ + ': ' + str(exc))[:200]}")
    return sent


# ---------------------------------------------------------------------- state
@dataclass
class CredentialState:
    status: Literal["ok", "dead", "unknown"] = "unknown"
    since: float = 0.0  # when it last changed

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


def last_success_time(instance, api: str) -> float:
    """When an asset of ``api`` last materialized: proof its credential worked then."""
    import dagster as dg

    from podcast_pipeline.tables import ALL_TABLES

    keys = [dg.AssetKey([t.schema, t.name]) for t in ALL_TABLES if t.schema == api]
    latest = 0.0
    for record in instance.get_latest_materialization_events(keys).values():
        if record is not None:
            latest = max(latest, record.timestamp)
    return latest


def should_alert_expired(instance, api: str) -> bool:
    """True (and the state turns dead) unless this expiry was already announced."""
    state = load_state(instance, api)
    if state.status == "dead" and last_success_time(instance, api) <= state.since:
        return False
    save_state(instance, api, CredentialState("dead", time.time()))
    return True


def should_announce_recovery(instance, api: str) -> bool:
    state = load_state(instance, api)
    save_state(instance, api, CredentialState("ok", time.time()))
    return state.status == "dead"
