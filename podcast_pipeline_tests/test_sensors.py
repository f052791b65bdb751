"""Credential-expiry sensors, end to end: the emulator over real HTTP, Dagster's own execution
on a temporary on-disk instance, real DuckDB files and a real webhook receiver on loopback.

Budget: about 20 s for the module (the 500s test waits for Dagster's two step retries).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import TAGS_TO_MAYBE_OMIT_ON_RETRY
from dagster._serdes import serialize_value

from podcast_pipeline import alerts
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.assets import DEAD_CREDENTIAL_TAG
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.sensors import credential_expiry_alert, credential_probe
from podcast_pipeline.settings import Settings

TODAY = date(2025, 6, 1)
RANGE = ("2025-05-25", "2025-05-31")
ASSETS = {a.key.to_user_string(): a for a in [*anchor_assets, *op3_assets]}
# Steps run in key order: impressions and plays (3 Anchor requests with the station lookup),
# then plays_by_app (one request per day), plays_by_gender, and OP3 downloads.
MID_BACKFILL = ["anchor/impressions", "anchor/plays", "anchor/plays_by_app",
                "anchor/plays_by_gender", "op3/downloads"]
EXPIRE_AFTER = 5  # the 6th Anchor request, the 3rd day of plays_by_app, answers 401


# ---------------------------------------------------------------- a real webhook receiver
class Receiver:
    """A loopback HTTP server that records every POST and answers ``{"ok": true}``."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.append({"path": self.path, "headers": dict(self.headers.items()),
                                    "raw": raw.decode()})
                body = json.dumps({"ok": status < 400}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(p["raw"]) for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    receiver = Receiver()
    monkeypatch.setenv(alerts.WEBHOOK_ENV, receiver.url)
    monkeypatch.delenv(alerts.SLACK_TOKEN_ENV, raising=False)
    yield receiver
    receiver.close()


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as emulator:
        for key, value in emulator.env.items():
            monkeypatch.setenv(key, value)
        # These tests count every request up to the 401 and after it: one day at a time, so
        # no request is already in flight when the cookie dies (the stop of requests in
        # flight side by side is test_verdict's).
        monkeypatch.setenv("PODCAST_PIPELINE_SPOTIFY_CONCURRENCY", "1")
        monkeypatch.setenv("PODCAST_PIPELINE_OP3_CONCURRENCY", "1")
        yield emulator


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The instance's folder: in RAM where there is a tmpfs, as sqlite syncs every event."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="podcast-sensors-") as folder:
            yield Path(folder)
    else:
        (tmp_path / "dagster_home").mkdir()
        yield tmp_path / "dagster_home"


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """On disk (sqlite event log, run storage, compute logs) so every byte can be searched."""
    inst = dg.DagsterInstance.local_temp(tempdir=str(home))
    yield inst
    inst.dispose()


def resources(tmp_path: Path) -> dict[str, Any]:
    """The definitions' resources from this environment's settings, without retries."""
    settings = Settings.load()
    return {"anchor": AnchorResource.from_settings(settings, max_retries=0, backoff_factor=0),
            "op3": Op3Resource.from_settings(settings, max_retries=0, backoff_factor=0),
            "warehouse": WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))}


def materialize(keys: list[str], instance: dg.DagsterInstance, tmp_path: Path,
                span: tuple[str, str] = RANGE) -> dg.ExecuteInProcessResult:
    """One single-run backfill of ``span``, as the schedule and the UI launch it."""
    return dg.materialize([ASSETS[k] for k in keys], instance=instance,
                          resources=resources(tmp_path), raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": span[0],
                                "dagster/asset_partition_range_end": span[1]})


def failures(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """step key → the typed failure metadata (values unwrapped)."""
    out = {}
    for event in result.all_events:
        if event.is_step_failure:
            meta = event.step_failure_data.user_failure_data.metadata
            out[event.step_key] = {k: getattr(v, "value", v) for k, v in meta.items()}
    return out


def run_failure_sensor(instance: dg.DagsterInstance, run_id: str, tmp_path: Path) -> None:
    """Evaluate the run-failure sensor on ``run_id`` exactly as the daemon hands it a run."""
    run = instance.get_run_by_id(run_id)
    event = next(r.dagster_event for r in instance.all_logs(run_id)
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="credential_expiry_alert", dagster_instance=instance, dagster_run=run,
        dagster_event=event, resources=resources(tmp_path)).for_run_failure()
    credential_expiry_alert(context)


def probe_tick(instance: dg.DagsterInstance, tmp_path: Path) -> str:
    context = dg.build_sensor_context(instance=instance, resources=resources(tmp_path))
    result = credential_probe(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message or ""


def anchor_requests(emu: Emulator) -> list[int]:
    return [r.status for r in emu.requests if r.api == "anchor"]


# ---------------------------------------------------------------- secrets never leak
def secret_pieces(emu: Emulator) -> list[str]:
    """The random parts of the cookie and the token: found in any encoding or truncation."""
    cookie = emu.dataset.cookie  # s%3Aemulator-<12 hex>.<16 hex>
    ident, signature = cookie.split("emulator-", 1)[1].split(".")
    return [ident, signature, emu.dataset.op3_token.split("emulator-", 1)[1]]


def assert_no_secret(emu: Emulator, instance: dg.DagsterInstance, run_ids: list[str],
                     texts: list[str], home: Path, database: Path) -> None:
    pieces = secret_pieces(emu)
    for text in texts:
        assert not [p for p in pieces if p in text], "a secret in an alert or a log line"
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            blob = serialize_value(record)
            assert not [p for p in pieces if p in blob], f"a secret in the event log: {blob[:200]}"
    # Every file of the instance: event logs, run storage (tags, KV state), compute logs.
    files = [p for p in home.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert not [p for p in pieces if p.encode() in data], f"a secret in {path}"
    con = duckdb.connect(str(database), read_only=True)
    try:
        columns = con.execute("SELECT table_schema, table_name, column_name FROM "
                              "information_schema.columns WHERE data_type = 'VARCHAR'").fetchall()
        for schema, table, column in columns:
            for piece in pieces:
                (hits,) = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" '
                                      f'WHERE "{column}" LIKE ?', [f"%{piece}%"]).fetchone()
                assert hits == 0, f"a secret in {schema}.{table}.{column}"
    finally:
        con.close()


# ---------------------------------------------------------------- the run-failure sensor
def test_anchor_expiry_mid_backfill_alerts_once_then_again_after_recovery(
        emu: Emulator, webhook: Receiver, instance: dg.DagsterInstance, home: Path,
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level("DEBUG")
    emu.set_faults(Faults(expire_after_requests=EXPIRE_AFTER, expire_apis=("anchor",)))

    # Run 1: the cookie dies in the middle of a 7-day backfill.
    first = materialize(MID_BACKFILL, instance, tmp_path)
    assert not first.success
    failed = failures(first)
    assert set(failed) == {"anchor__plays_by_app", "anchor__plays_by_gender"}
    assert failed["anchor__plays_by_app"] == {
        "error_kind": "credentials_expired", "api": "anchor", "endpoint": "plays_by_app",
        "asset": "anchor.plays_by_app", "first_partition": RANGE[0], "status": 401}
    # The later Anchor step failed with the same typed error and made no request at all ...
    assert failed["anchor__plays_by_gender"]["error_kind"] == "credentials_expired"
    assert failed["anchor__plays_by_gender"]["status"] == -1
    statuses = anchor_requests(emu)
    assert statuses == [200] * EXPIRE_AFTER + [401]
    assert emu.stats()["by_endpoint"].get("playsByGender") is None
    # ... while OP3 and the steps before the expiry went on.
    done = {e.step_key for e in first.all_events if e.is_step_success}
    assert done == {"anchor__impressions", "anchor__plays", "op3__downloads"}

    run_failure_sensor(instance, first.run_id, tmp_path)
    assert len(webhook.posts) == 1
    alert = webhook.bodies()[0]
    assert alert["kind"] == "credentials_expired" and alert["api"] == "anchor"
    assert alert["first_partition"] == RANGE[0] and alert["run_id"] == first.run_id
    assert alert["show"] == f"web station {emu.dataset.webstation_id}"
    text = alert["text"]
    for needed in ("Spotify for Creators", emu.dataset.webstation_id, RANGE[0],
                   "DevTools → Application → Cookies → podcasters.spotify.com", "anchorpw_s",
                   "ANCHOR_PW_S", "check-credentials", "Reload"):
        assert needed in text

    # Run 2 fails too: one request (the first 401), every other Anchor step fails fast, and
    # neither the run-failure sensor nor the probe says it again.
    emu.reset_stats()
    second = materialize(MID_BACKFILL, instance, tmp_path)
    assert not second.success
    assert anchor_requests(emu) == [401]
    assert {k for k, v in failures(second).items() if v["error_kind"] == "credentials_expired"} == {
        "anchor__impressions", "anchor__plays", "anchor__plays_by_app", "anchor__plays_by_gender"}
    run_failure_sensor(instance, second.run_id, tmp_path)
    assert "anchor: expired" in probe_tick(instance, tmp_path)
    assert len(webhook.posts) == 1

    # A fresh cookie and a successful run re-arm the alert; the next expiry is announced.
    emu.set_faults(Faults())
    emu.refresh("anchor")
    third = materialize(MID_BACKFILL, instance, tmp_path)
    assert third.success
    emu.expire("anchor")
    fourth = materialize(MID_BACKFILL, instance, tmp_path)
    assert not fourth.success
    run_failure_sensor(instance, fourth.run_id, tmp_path)
    assert len(webhook.posts) == 2
    assert webhook.bodies()[1]["run_id"] == fourth.run_id

    out, err = capfd.readouterr()
    runs = [first.run_id, second.run_id, third.run_id, fourth.run_id]
    assert_no_secret(emu, instance, runs, [p["raw"] for p in webhook.posts] + [caplog.text, out, err],
                     home, tmp_path / "warehouse.duckdb")


def test_op3_expiry_alerts_naming_op3(emu: Emulator, webhook: Receiver,
                                      instance: dg.DagsterInstance, tmp_path: Path) -> None:
    emu.expire("op3")  # 401 {"error":"expired"}
    result = materialize(["op3/downloads", "op3/redirect_logs"], instance, tmp_path,
                         span=("2025-05-31", "2025-05-31"))
    assert not result.success
    assert [r.status for r in emu.requests if r.api == "op3"] == [401]  # the second step: no call
    assert {v["api"] for v in failures(result).values()} == {"op3"}

    run_failure_sensor(instance, result.run_id, tmp_path)
    [alert] = webhook.bodies()
    assert alert["api"] == "op3" and alert["api_name"] == "OP3"
    assert alert["first_partition"] == "2025-05-31"
    assert alert["text"].startswith("🚨 OP3 credential expired")
    for needed in ("https://op3.dev/api/keys", "OP3_TOKEN", emu.dataset.show_uuid):
        assert needed in alert["text"]
    assert not [p for p in secret_pieces(emu) if p in webhook.posts[0]["raw"]]


def test_server_errors_are_not_reported_as_expiry(emu: Emulator, webhook: Receiver,
                                                  instance: dg.DagsterInstance,
                                                  tmp_path: Path) -> None:
    emu.set_faults(Faults(error_rate=1.0, apply_to=frozenset({"anchor"})))
    result = materialize(["anchor/plays"], instance, tmp_path, span=("2025-05-31", "2025-05-31"))
    assert not result.success
    assert failures(result)["anchor__plays"]["error_kind"] == "api_error"
    assert set(anchor_requests(emu)) <= {500, 502, 503}
    run_failure_sensor(instance, result.run_id, tmp_path)
    assert webhook.posts == []
    assert alerts.load_state(instance, "anchor").status == "unknown"


def test_both_apis_die_in_one_run_one_call_and_one_alert_each(
        emu: Emulator, webhook: Receiver, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    emu.expire("anchor")
    emu.expire("op3")
    keys = ["anchor/plays", "anchor/plays_by_app", "op3/downloads", "op3/redirect_logs"]
    result = materialize(keys, instance, tmp_path, span=("2025-05-31", "2025-05-31"))
    assert not result.success
    assert sorted((r.api, r.status) for r in emu.requests) == [("anchor", 401), ("op3", 401)]
    tag = instance.get_run_by_id(result.run_id).tags[DEAD_CREDENTIAL_TAG]
    assert tag == f"{result.run_id}:anchor,op3"  # the second 401 kept the first verdict
    run_failure_sensor(instance, result.run_id, tmp_path)
    assert sorted(b["api"] for b in webhook.bodies()) == ["anchor", "op3"]


def test_reexecution_after_a_fresh_cookie_calls_the_api_again(
        emu: Emulator, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    # Re-execution (the UI's "Re-execute", the run-retries daemon) copies the failed run's
    # tags by default (use_parent_run_tags), the dead-credential flag included. The new run
    # must try the now fresh cookie, not fail fast on the old run's verdict.
    emu.expire("anchor")
    keys = ["anchor/plays", "anchor/plays_by_app"]
    failed = materialize(keys, instance, tmp_path, span=("2025-05-31", "2025-05-31"))
    assert not failed.success
    parent_tags = instance.get_run_by_id(failed.run_id).tags
    assert DEAD_CREDENTIAL_TAG in parent_tags
    inherited = {k: v for k, v in parent_tags.items() if k not in TAGS_TO_MAYBE_OMIT_ON_RETRY}
    emu.refresh("anchor")
    emu.reset_stats()
    again = dg.materialize([ASSETS[k] for k in keys], instance=instance,
                           resources=resources(tmp_path), raise_on_error=False,
                           tags={**inherited, "dagster/parent_run_id": failed.run_id})
    assert again.success, failures(again)
    assert anchor_requests(emu) and set(anchor_requests(emu)) == {200}


# ---------------------------------------------------------------- the probe sensor
def test_probe_alerts_on_expiry_once_and_on_recovery_once(
        emu: Emulator, webhook: Receiver, instance: dg.DagsterInstance, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe_tick(instance, tmp_path) == "anchor: ok; op3: ok"
    assert webhook.posts == []

    emu.expire("anchor")
    assert probe_tick(instance, tmp_path) == "anchor: expired; op3: ok"
    [expired] = webhook.bodies()
    assert expired["kind"] == "credentials_expired" and expired["api"] == "anchor"
    assert "first_partition" not in expired and "probe" in expired["detected_by"]
    assert "DevTools → Application → Cookies → podcasters.spotify.com" in expired["text"]

    emu.reset_stats()
    assert probe_tick(instance, tmp_path) == "anchor: expired; op3: ok"
    assert len(webhook.posts) == 1
    assert anchor_requests(emu) == [401]  # one call per tick for a dead credential

    emu.refresh("anchor")
    assert probe_tick(instance, tmp_path) == "anchor: ok; op3: ok"
    assert [b["kind"] for b in webhook.bodies()] == ["credentials_expired", "credentials_recovered"]
    assert webhook.bodies()[1]["text"].startswith("✅ Spotify for Creators (Anchor) credential works")
    assert probe_tick(instance, tmp_path) == "anchor: ok; op3: ok"
    assert len(webhook.posts) == 2

    # An API without credentials is skipped: no call, no alert.
    monkeypatch.delenv("OP3_TOKEN")
    emu.reset_stats()
    assert probe_tick(instance, tmp_path) == "anchor: ok; op3: not_configured"
    assert [r.api for r in emu.requests] == ["anchor"]
    assert len(webhook.posts) == 2
    assert not [p for p in secret_pieces(emu) for post in webhook.posts if p in post["raw"]]


# ---------------------------------------------------------------- channels
def test_slack_channel_posts_through_dagster_slack_client(webhook: Receiver) -> None:
    slack = Receiver()
    broken = Receiver(status=500)
    try:
        token = "xoxb-test-0123456789-abcdef"
        [channel] = alerts.configured_channels({alerts.SLACK_TOKEN_ENV: token,
                                                alerts.SLACK_CHANNEL_ENV: "#podcast-alerts"})
        assert isinstance(channel, alerts.SlackChannel)
        channel = dataclasses.replace(channel, base_url=slack.url.rsplit("/", 1)[0] + "/api/")
        alert = alerts.expired_alert("anchor", "web station fb37d7a4", first_partition="2025-05-25",
                                     run_id="r1", detected_by="a failed run")
        messages: list[str] = []

        class Capture:
            def warning(self, msg: str) -> None:
                messages.append(msg)
            info = error = warning

        sent = alerts.send(alert, Capture(),  # type: ignore[arg-type]
                           channels=[alerts.WebhookChannel(broken.url), channel])
        assert sent == ["log", "slack"]  # the broken webhook did not stop Slack
        [post] = slack.posts
        assert post["path"] == "/api/chat.postMessage"
        assert post["headers"]["Authorization"] == f"Bearer {token}"
        body = json.loads(post["raw"])
        assert body["channel"] == "#podcast-alerts" and body["text"] == alert.text
        assert messages[0] == alert.text
        assert any("could not deliver the alert to webhook" in m for m in messages)
        assert not [m for m in messages if token in m]
    finally:
        slack.close()
        broken.close()


# ---------------------------------------------------------------- the GraphQL backend
def graphql_secret_pieces(emu: Emulator) -> list[str]:
    ds = emu.dataset
    return [ds.sp_dc.split("emulator-", 1)[1], ds.sp_key.split("emulator-", 1)[1]]


def test_graphql_dead_cookie_mid_backfill_alerts_exactly_once(
        emu: Emulator, webhook: Receiver, instance: dg.DagsterInstance, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    for key, value in emu.graphql_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANCHOR_PW_S")  # auto: the GraphQL backend, from its cookies alone
    # The run logs in once (auth, token) and finds the show (getShowsForUser) once for all its
    # steps: impressions takes 4 requests, plays 1, plays_by_app one a day; the 10th (its 5th
    # day) meets the dead session: a 401, one silent login, login_required.
    emu.set_faults(Faults(expire_after_requests=9, expire_apis=("spotify",)))

    first = materialize(MID_BACKFILL, instance, tmp_path)
    assert not first.success
    failed = failures(first)
    assert set(failed) == {"anchor__plays_by_app", "anchor__plays_by_gender"}
    assert failed["anchor__plays_by_app"]["error_kind"] == "credentials_expired"
    assert failed["anchor__plays_by_gender"]["status"] == -1  # failed fast, no call
    spotify = [(r.endpoint, r.status) for r in emu.requests if r.api == "spotify"]
    assert len(spotify) == 11 and [s for _, s in spotify].count(401) == 1
    assert [e for e, _ in spotify].count("auth") == 2  # one login for the run, one retry
    assert spotify[-2:] == [("getShowPlaysAndDownloadsPlatformsStats", 401), ("auth", 200)]
    assert emu.stats()["faults"]["expired"] == 2  # the 401, then login_required

    run_failure_sensor(instance, first.run_id, tmp_path)
    second = materialize(MID_BACKFILL, instance, tmp_path)
    assert not second.success
    run_failure_sensor(instance, second.run_id, tmp_path)
    assert "anchor: expired" in probe_tick(instance, tmp_path)
    assert len(webhook.posts) == 1  # one expiry, one alert
    alert = webhook.bodies()[0]
    assert alert["api"] == "anchor" and alert["first_partition"] == RANGE[0]
    for needed in ("SPOTIFY_SP_DC", "SPOTIFY_SP_KEY", "sp_dc", "sp_key",
                   "https://accounts.spotify.com", "check-credentials"):
        assert needed in alert["text"], needed
    assert "anchorpw_s" not in alert["text"]
    texts = [p["raw"] for p in webhook.posts] + [caplog.text]
    for piece in graphql_secret_pieces(emu):
        assert not [t for t in texts if piece in t]
        for run_id in (first.run_id, second.run_id):
            for record in instance.all_logs(run_id):
                assert piece not in serialize_value(record)
