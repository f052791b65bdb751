"""Sensors that notice a dead credential: on a failed run (401), and by an hourly probe."""

from __future__ import annotations

import os

import dagster as dg

from podcast_pipeline import alerts
from podcast_pipeline.errors import ConfigError, CredentialsExpired, PodcastPipelineError
from podcast_pipeline.resources import AnchorResource, Op3Resource

PROBE_INTERVAL_ENV = "PODCAST_PIPELINE_PROBE_INTERVAL_SECONDS"
DEFAULT_PROBE_INTERVAL = 3600


def credential_failures(events: list[dg.DagsterEvent]) -> dict[str, str]:
    """api → first failed partition, for step failures that were a 401."""
    found: dict[str, str] = {}
    for event in events:
        data = event.step_failure_data
        user = data.user_failure_data if data else None
        meta = user.metadata if user else {}
        kind = meta.get("error_kind")
        if kind is None or getattr(kind, "value", kind) != "credentials_expired":
            continue
        api = str(getattr(meta.get("api"), "value", meta.get("api")))
        partition = str(getattr(meta.get("first_partition"), "value", ""))
        if api not in found or partition < found[api]:
            found[api] = partition
    return found


def _show_id(api: str, instance_env: dict[str, str] | None = None) -> str:
    env = os.environ if instance_env is None else instance_env
    return (env.get("ANCHOR_WEBSTATION_ID") if api == "anchor" else env.get("OP3_SHOW_UUID")) or "?"


@dg.run_failure_sensor(
    name="credential_expiry_alert",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Sends one alert per expiry when a run failed because Spotify for Creators or "
                "OP3 answered 401. Other failures are not reported as credential problems.",
)
def credential_expiry_alert(context: dg.RunFailureSensorContext) -> None:
    failures = credential_failures(context.get_step_failure_events())
    if not failures:
        return
    for api, partition in sorted(failures.items()):
        if not alerts.should_alert_expired(context.instance, api):
            context.log.info(f"{api}: credential already reported expired; no new alert")
            continue
        alert = alerts.expired_alert(api, _show_id(api), first_partition=partition,
                                     run_id=context.dagster_run.run_id,
                                     detected_by="run failure")
        sent = alerts.send(alert, context.log)
        context.log.info(f"{api}: expiry alert sent to {', '.join(sent)}")


def probe_interval() -> int:
    return int(os.environ.get(PROBE_INTERVAL_ENV) or DEFAULT_PROBE_INTERVAL)


def probe(resource: AnchorResource | Op3Resource) -> str:
    """'ok', 'expired' or 'unconfigured' after one cheap authenticated call."""
    try:
        client = resource.client()
    except ConfigError:
        return "unconfigured"
    with client:
        try:
            if isinstance(resource, AnchorResource):
                client.station_id()
            else:
                client.show(episodes=False)
        except CredentialsExpired:
            return "expired"
    return "ok"


@dg.sensor(
    name="credential_probe",
    minimum_interval_seconds=probe_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Hourly, one cheap authenticated call per configured API: alerts when a "
                "credential dies before the daily schedule meets it, and when it works again.",
)
def credential_probe(context: dg.SensorEvaluationContext, anchor: AnchorResource,
                     op3: Op3Resource) -> dg.SkipReason:
    verdicts = []
    for api, resource in (("anchor", anchor), ("op3", op3)):
        try:
            verdict = probe(resource)
        except PodcastPipelineError as exc:  # network trouble is not a credential verdict
            verdict = "unreachable"
            context.log.warning(f"{api}: probe could not decide: {exc}")
        verdicts.append(f"{api}: {verdict}")
        if verdict == "expired" and alerts.should_alert_expired(context.instance, api):
            alerts.send(alerts.expired_alert(api, _show_id(api), first_partition=None,
                                             run_id=None, detected_by="hourly probe"), context.log)
        elif verdict == "ok" and alerts.should_announce_recovery(context.instance, api):
            alerts.send(alerts.recovered_alert(api, _show_id(api), detected_by="hourly probe"),
                        context.log)
    return dg.SkipReason("; ".join(verdicts))
