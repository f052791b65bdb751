"""Sensors that notice a dead credential: on a failed run (401), and by an hourly probe.

Both share the per-API state in ``alerts`` so an expiry is announced once, whichever
sensor sees it first.
"""

from __future__ import annotations

import dagster as dg

from podcast_pipeline import alerts, credentials, politeness
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.network import Network, Show
from podcast_pipeline.network_assets import credential_keys
from podcast_pipeline.resources import AnchorResource, Op3Resource
from podcast_pipeline.settings import (
    OP3_CONCURRENCY_ENV,
    PROBE_INTERVAL_ENV,
    SPOTIFY_CONCURRENCY_ENV,
    Settings,
)

SHOW_ENV = {"anchor": "ANCHOR_WEBSTATION_ID", "op3": "OP3_SHOW_UUID"}


def credential_failures(events: list[dg.DagsterEvent]) -> dict[str, str]:
    """credential → first failed partition, for step failures that were a 401.

    Reads the typed ``dg.Failure`` metadata the assets attach (``error_kind``, ``api``,
    ``first_partition``, and on a network ``credential``); failures of any other kind are
    not credential problems. A credential is the API on a network of one, else
    ``<api>@<account or OP3 token>``.
    """
    found: dict[str, str] = {}
    for event in events:
        data = event.step_failure_data
        user = data.user_failure_data if data else None
        meta = user.metadata if user else {}
        if _value(meta.get("error_kind")) != "credentials_expired":
            continue
        api = str(_value(meta.get("api")))
        if meta.get("credential") is not None:
            api = f"{api}@{_value(meta.get('credential'))}"
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
        if "@" in api:  # a network's account or OP3 token
            _network_expired(context, anchor.network(), api, partition or None,
                             context.dagster_run.run_id, "a failed run")
            continue
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
    if anchor.network_file:
        return _probe_network(context, anchor, op3)
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


# ---------------------------------------------------------------------- a network's credentials
def _credential_shows(net: Network, api: str, name: str) -> tuple[Show, ...]:
    return net.shows_of_account(name) if api == "anchor" else net.shows_of_token(name)


def _label(api: str, name: str) -> str:
    return f"account {name}" if api == "anchor" else f"OP3 token {name}"


def _network_expired(context: dg.SensorEvaluationContext | dg.RunFailureSensorContext,
                     net: Network, credential: str, first_partition: str | None,
                     run_id: str | None, detected_by: str) -> None:
    """One alert per dead account / token, naming every show it affects."""
    api, _, name = credential.partition("@")
    keys = credential_keys(net, api, name)
    if not alerts.should_alert_expired(context.instance, credential, keys):
        context.log.info(f"{credential}: credential already reported expired; no new alert")
        return
    shows = [f"{s.name} ({s.key})" for s in _credential_shows(net, api, name)]
    backend = net.account(name).backend if api == "anchor" else None
    alert = alerts.expired_alert(api, _label(api, name), first_partition=first_partition,
                                 run_id=run_id, detected_by=detected_by, backend=backend,
                                 account=name, shows=shows,
                                 variables=net.variables(api, name))
    sent = alerts.send(alert, context.log)
    context.log.info(f"{credential}: expiry alert sent to {', '.join(sent)}")


def _probe_network(context: dg.SensorEvaluationContext, anchor: AnchorResource,
                   op3: Op3Resource) -> dg.SkipReason:
    """One call per account and per OP3 token (with its first show), not per show."""
    net = anchor.network()
    verdicts = []
    for api, resource, names in (("anchor", anchor, [a.name for a in net.accounts]),
                                 ("op3", op3, [t.name for t in net.op3_tokens])):
        for name in names:
            shows = _credential_shows(net, api, name)
            if not shows:
                continue
            credential = f"{api}@{name}"
            verdict = credentials.check(api, lambda r=resource, k=shows[0].key: r.settings(k))
            verdicts.append(f"{credential}: {verdict.status}")
            if verdict.status == "expired":
                _network_expired(context, net, credential, None, None,
                                 "the credential probe sensor")
            elif verdict.status == "ok":
                if alerts.should_announce_recovery(context.instance, credential):
                    alerts.send(alerts.recovered_alert(
                        api, f"{_label(api, name)} ({len(shows)} shows)",
                        detected_by="the credential probe sensor"), context.log)
            elif verdict.status != "not_configured":
                context.log.warning(f"{credential}: {verdict.line()}")
    return dg.SkipReason("; ".join(verdicts) or "no credential in the network file")


def build_pool_limits_sensor(net: Network, settings: Settings) -> dg.SensorDefinition:
    """Keeps each account's and token's pool at 1 (``politeness.py``): dagster.yaml's
    default_limit gives a new pool that already; this puts back a limit changed by hand or
    left by an older version."""
    limits = politeness.pool_limits(net)

    @dg.sensor(name="pool_limits", minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Keeps the concurrency pool of each Spotify account and OP3 token "
                           f"at {politeness.POOL_LIMIT}: one step calls a credential at a time, "
                           f"across all runs, with at most {settings.spotify_concurrency} "
                           f"({SPOTIFY_CONCURRENCY_ENV}) or {settings.op3_concurrency} "
                           f"({OP3_CONCURRENCY_ENV}) calls in flight.")
    def _pool_limits(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        changed = apply_pool_limits(context.instance, limits)
        for pool in changed:
            context.log.info(f"pool {pool}: limit set to {limits[pool]}")
        return dg.SkipReason(f"{len(limits)} pools at their limits ({len(changed)} changed)")

    return _pool_limits


def apply_pool_limits(instance: dg.DagsterInstance, limits: dict[str, int]) -> list[str]:
    """Set each pool's slots where they differ; returns the pools changed."""
    storage = instance.event_log_storage
    changed = []
    for pool, limit in sorted(limits.items()):
        info = storage.get_concurrency_info(pool)
        if info.slot_count != limit:
            storage.set_concurrency_slots(pool, limit)
            changed.append(pool)
    return changed
