"""Sensors that notice a dead credential: on a failed run (401), and by an hourly probe.

Both share the per-API state in ``alerts`` so an expiry is announced once, whichever
sensor sees it first.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline import alerts, credentials
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.resources import AnchorResource, Op3Resource
from podcast_pipeline.settings import PROBE_INTERVAL_ENV, Settings

SHOW_ENV = {"anchor": "ANCHOR_WEBSTATION_ID", "op3": "OP3_SHOW_UUID"}


def credential_failures(events: list[dg.DagsterEvent]) -> dict[str, str]:
    """api → first failed partition, for step failures that were a 401.

    Reads the typed ``dg.Failure`` metadata the assets attach (``error_kind``, ``api``,
    ``first_partition``); failures of any other kind are not credential problems.
    """
    found: dict[str, str] = {}
    for event in events:
        data = event.step_failure_data
        user = data.user_failure_data if data else None
        meta = user.metadata if user else {}
        if _value(meta.get("error_kind")) != "credentials_expired":
            continue
        api = str(_value(meta.get("api")))
        partition = str(_value(meta.get("first_partition")) or "")
        if api not in found or (partition and (not found[api] or partition < found[api])):
            found[api] = partition
    return found


def backend_of(api: str, resource: AnchorResource | Op3Resource | None) -> str | None:
    if api != "anchor" or not isinstance(resource, AnchorResource):
        return None
    try:
        return resource.backend_name()
    except ConfigError:
        return None


def _value(meta: object) -> object:
    return getattr(meta, "value", meta)


def show_label(api: str, resource: AnchorResource | Op3Resource | None) -> str:
    """The show as the user knows it, from the resource's settings (even if incomplete)."""
    if resource is not None:
        try:
            return credentials.show_label(resource.settings())
        except ConfigError:
            pass
    value = getattr(resource, "webstation_id" if api == "anchor" else "show_uuid", None)
    return (f"web station {value}" if api == "anchor" else f"show {value}") if value else \
        f"the show configured in {SHOW_ENV[api]}"


@dg.run_failure_sensor(
    name="credential_expiry_alert",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Sends one alert per expiry when a run failed because Spotify for Creators or "
                "OP3 answered 401. Other failures are not reported as credential problems.",
)
def credential_expiry_alert(context: dg.RunFailureSensorContext, anchor: AnchorResource,
                            op3: Op3Resource) -> None:
    # Returns None on purpose: a returned SkipReason makes Dagster stop after one run per tick.
    failures = credential_failures(context.get_step_failure_events())
    if not failures:
        return
    resources = {"anchor": anchor, "op3": op3}
    for api, partition in sorted(failures.items()):
        if not alerts.should_alert_expired(context.instance, api):
            context.log.info(f"{api}: credential already reported expired; no new alert "
                             f"for run {context.dagster_run.run_id}")
            continue
        alert = alerts.expired_alert(api, show_label(api, resources.get(api)),
                                     first_partition=partition or None,
                                     run_id=context.dagster_run.run_id,
                                     detected_by="a failed run",
                                     backend=backend_of(api, resources.get(api)))
        sent = alerts.send(alert, context.log)
        context.log.info(f"{api}: expiry alert sent to {', '.join(sent)}")


def build_credential_probe(settings: Settings) -> dg.SensorDefinition:
    """The probe sensor, every ``settings.probe_interval_seconds``."""
    interval = settings.probe_interval_seconds
    return dg.sensor(
        name="credential_probe",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval} s ({PROBE_INTERVAL_ENV}), one cheap authenticated call "
                    "per configured API: alerts when a credential dies before the daily schedule "
                    "meets it, and when it works again. Unconfigured APIs are skipped.",
    )(_probe)


def _probe(context: dg.SensorEvaluationContext, anchor: AnchorResource,
           op3: Op3Resource) -> dg.SkipReason:
    # One call per API per tick, and ticks are at least an interval apart: a dead
    # credential is never tried more often than that.
    verdicts = []
    for api, resource in (("anchor", anchor), ("op3", op3)):
        verdict = credentials.check(api, resource.settings)
        verdicts.append(f"{api}: {verdict.status}")
        if verdict.status == "expired":
            if alerts.should_alert_expired(context.instance, api):
                alerts.send(alerts.expired_alert(api, show_label(api, resource),
                                                 first_partition=None, run_id=None,
                                                 detected_by="the credential probe sensor",
                                                 backend=backend_of(api, resource)),
                            context.log)
            else:
                context.log.info(f"{api}: still expired; already reported")
        elif verdict.status == "ok":
            if alerts.should_announce_recovery(context.instance, api):
                alerts.send(alerts.recovered_alert(api, show_label(api, resource),
                                                   detected_by="the credential probe sensor"),
                            context.log)
        elif verdict.status != "not_configured":  # network trouble is not a credential verdict
            context.log.warning(verdict.line())
    return dg.SkipReason("; ".join(verdicts))


# With the default interval, for tests and notebooks; the definitions build theirs from Settings.
credential_probe = build_credential_probe(Settings.from_env({}))
