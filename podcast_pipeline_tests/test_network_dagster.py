"""A network in Dagster: per-show assets, pools per account / token, the daily run of every
show, one alert per dead account naming its shows.

The shape tests build the definitions from a network file (no secret set: the definitions
must load without them); the single-show keys are covered by test_definitions.py.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import alerts, warehouse
from podcast_pipeline.analytics import checks
from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.demo import execute
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.network import Network, Show, load_network
from podcast_pipeline.network_assets import SHOWS_KEY, show_keys
from podcast_pipeline.politeness import calls_per_step, pool_limits
from podcast_pipeline.sensors import apply_pool_limits, credential_expiry_alert, credential_probe
from podcast_pipeline.settings import Settings
from podcast_pipeline.summary import print_summary
from podcast_pipeline.tables import ANCHOR_TABLES, OP3_TABLES, SPOTIFY_TABLES, TABLES_BY_KEY
from podcast_pipeline_tests.procs import dagster_home

NETWORK = """
accounts:
  - name: acme
    sp_dc_env: ACME_SP_DC
  - name: beta
    backend: rest
    anchor_pw_s_env: BETA_PW_S
op3_tokens:
  - name: main
    token_env: NET_OP3_TOKEN
shows:
  - key: aa11bb22
    name: The Daily Byte
    account: acme
    spotify_show_uri: spotify:show:AAAAAAAAAAAAAAAAAAAAA1
    op3_show_uuid: 11111111111111111111111111111111
    op3_token: main
  - key: cc33dd44
    name: Night Owls
    account: acme
    spotify_show_uri: spotify:show:AAAAAAAAAAAAAAAAAAAAA2
  - key: ee55ff66
    name: Rest Stop
    account: beta
    op3_show_uuid: 33333333333333333333333333333333
    op3_token: main
  - key: op3only
    name: Feed Only
    op3_show_uuid: 44444444444444444444444444444444
    op3_token: main
"""


@pytest.fixture(autouse=True)
def _no_leaked_instance() -> Iterator[None]:
    """A disposed test instance must not stay Dagster's current definitions-state storage
    (later definitions in this process would fail to resolve)."""
    from dagster._core.storage.defs_state import base

    before = base._current_storage.get()
    yield
    base._current_storage.set(before)


@pytest.fixture()
def network_settings(tmp_path: Path) -> Settings:
    path = tmp_path / "network.yaml"
    path.write_text(NETWORK, encoding="utf-8")
    return Settings.from_env({"PODCAST_PIPELINE_NETWORK_FILE": str(path),
                              "DUCKDB_PATH": str(tmp_path / "w.duckdb")})


def test_each_show_gets_its_own_assets_group_tags_and_its_credential_pool(network_settings):
    defs = build_definitions(network_settings)
    graph = defs.resolve_asset_graph()
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    windowed = dg.AssetKey(["aa11bb22", "anchor", "plays"])
    spec = specs[windowed]
    assert spec.group_name == "show_aa11bb22"
    assert spec.tags["podcast_pipeline/show"] == "aa11bb22"
    assert spec.tags["podcast_pipeline/spotify_account"] == "acme"
    assert spec.description.startswith("The Daily Byte: ")
    assert graph.get(windowed).pools == {"spotify_acme"}
    assert graph.get(dg.AssetKey(["ee55ff66", "op3", "downloads"])).pools == {"op3_main"}
    assert graph.get(dg.AssetKey(["ee55ff66", "anchor", "plays"])).pools == {"spotify_beta"}
    # Partitions stay days, whatever the number of shows.
    assert isinstance(defs.resolve_assets_def(windowed).partitions_def,
                      dg.DailyPartitionsDefinition)
    # Episode-level assets follow their own show's episode list.
    episode_plays = dg.AssetKey(["cc33dd44", "anchor", "episode_plays"])
    assert dg.AssetKey(["cc33dd44", "anchor", "episodes"]) in \
        defs.resolve_assets_def(episode_plays).asset_deps[episode_plays]
    # What each show has: GraphQL accounts also get spotify.*, REST ones not; OP3 where set.
    per_show = {s: {k.path[1] for k in specs if k.path[0] == s}
                for s in ("aa11bb22", "cc33dd44", "ee55ff66", "op3only")}
    assert per_show == {"aa11bb22": {"anchor", "spotify", "op3"},
                        "cc33dd44": {"anchor", "spotify"}, "ee55ff66": {"anchor", "op3"},
                        "op3only": {"op3"}}
    n = {"anchor": len(ANCHOR_TABLES), "spotify": len(SPOTIFY_TABLES), "op3": len(OP3_TABLES)}
    raw = [k for k in specs if k.path[0] not in ("analytics", "network")]
    assert len(raw) == sum(n[api] for apis in per_show.values() for api in apis)
    # No unprefixed raw asset is left: a network file prefixes every show.
    assert not [k for k in specs if k.path[0] in ("anchor", "op3", "spotify")]
    # The analytics models read every show's assets of their tables.
    daily = defs.resolve_assets_def(dg.AssetKey(["analytics", "daily_listening"]))
    deps = daily.asset_deps[dg.AssetKey(["analytics", "daily_listening"])]
    assert {dg.AssetKey([s, "op3", "downloads"]) for s in ("aa11bb22", "ee55ff66",
                                                           "op3only")} <= deps
    assert SHOWS_KEY in defs.resolve_assets_def(
        dg.AssetKey(["analytics", "shows"])).asset_deps[dg.AssetKey(["analytics", "shows"])]
    # The Resources tab keeps one resource per API; no secret in the definitions.
    assert sorted(defs.resources) == ["anchor", "op3", "warehouse"]
    assert defs.resources["anchor"].network_file == network_settings.network_file


def test_selections_by_show_account_and_all(network_settings):
    """What the README's backfill commands select."""
    defs = build_definitions(network_settings)
    graph = defs.resolve_asset_graph()

    def select(text: str) -> set[dg.AssetKey]:
        return dg.AssetSelection.from_string(text).resolve(graph)

    one = select("group:show_cc33dd44")
    assert one and {k.path[0] for k in one} == {"cc33dd44"}
    acme = select('tag:"podcast_pipeline/spotify_account"="acme"')
    assert {k.path[0] for k in acme} == {"aa11bb22", "cc33dd44"}
    assert {k.path[1] for k in acme} == {"anchor", "spotify"}
    some = select("group:show_aa11bb22 or group:show_op3only")
    assert {k.path[0] for k in some} == {"aa11bb22", "op3only"}


def test_the_daily_schedule_runs_every_show_once(network_settings):
    defs = build_definitions(network_settings)
    schedule = defs.resolve_schedule_def("daily_refresh_schedule")
    when = datetime(2025, 6, 2, 6, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    net = load_network(network_settings)
    by_show = {r.tags.get("podcast_pipeline/show"): r for r in requests}
    assert set(by_show) == {None, *(s.key for s in net.shows)}
    assert by_show[None].asset_selection == [SHOWS_KEY]
    for show in net.shows:
        r = by_show[show.key]
        assert set(r.asset_selection) == set(show_keys(net, show))
        assert r.tags["dagster/asset_partition_range_end"] == "2025-06-01"
        assert r.tags["dagster/asset_partition_range_start"] == "2025-05-29"  # look-back 3
    assert by_show["aa11bb22"].tags["podcast_pipeline/spotify_account"] == "acme"
    # Every API asset of the network is in exactly one show's run.
    selected = [k for r in requests for k in r.asset_selection]
    all_raw = [k for k in defs.resolve_asset_graph().get_all_asset_keys()
               if k.path[0] not in ("analytics",)]
    assert sorted(selected) == sorted(all_raw)


def _schedule_requests(settings: Settings) -> tuple[str, list[dg.RunRequest]]:
    """The daily schedule's description and its run requests for 2025-06-02."""
    schedule = build_definitions(settings).resolve_schedule_def("daily_refresh_schedule")
    when = datetime(2025, 6, 2, 6, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        return schedule.description or "", list(schedule.evaluate_tick(context).run_requests or [])


def test_the_daily_schedule_can_run_each_account_once(network_settings):
    """PODCAST_PIPELINE_DAILY_RUNS=account: a run per Spotify account holding its shows (an
    OP3-only show: per token), tagged for the run queue's limits; every API asset once."""
    settings = network_settings.model_copy(update={"daily_runs": "account"})
    description, requests = _schedule_requests(settings)
    net = load_network(settings)
    keys = {s.key: set(show_keys(net, s)) for s in net.shows}
    runs = {(r.tags.get("podcast_pipeline/spotify_account"), r.tags.get("podcast_pipeline/op3_token")):
            set(r.asset_selection) for r in requests if r.asset_selection != [SHOWS_KEY]}
    assert runs == {("acme", "main"): keys["aa11bb22"] | keys["cc33dd44"],
                    ("beta", "main"): keys["ee55ff66"], (None, "main"): keys["op3only"]}
    assert not any("podcast_pipeline/show" in r.tags for r in requests)
    assert len({r.run_key for r in requests}) == len(requests) == 4
    selected = [k for r in requests for k in r.asset_selection]
    assert len(selected) == len(set(selected))
    assert "one run per account (PODCAST_PIPELINE_DAILY_RUNS)" in description


def test_an_unknown_daily_runs_value_names_the_variable(network_settings):
    with pytest.raises(ConfigError, match="PODCAST_PIPELINE_DAILY_RUNS.*not one of show, account"):
        Settings.from_env({"PODCAST_PIPELINE_NETWORK_FILE": str(network_settings.network_file),
                           "PODCAST_PIPELINE_DAILY_RUNS": "shows"})


def test_the_network_daily_job_runs_in_process_unless_celery_is_set(network_settings, tmp_path):
    """One machine: a show's run in one process (a process per step would load every show's
    definitions ~80 times per run); with a broker, every step a Celery task."""
    one = build_definitions(network_settings).resolve_job_def("daily_refresh")
    assert one.executor_def.name == "in_process"
    pytest.importorskip("dagster_celery")
    distributed = Settings.from_env({
        "PODCAST_PIPELINE_NETWORK_FILE": str(network_settings.network_file),
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "PODCAST_PIPELINE_CELERY_BROKER": "redis://127.0.0.1:1/0",
        "PODCAST_PIPELINE_CELERY_BACKEND": "redis://127.0.0.1:1/1"})
    job = build_definitions(distributed).resolve_job_def("daily_refresh")
    assert job.executor_def.name == "celery"


def test_pool_limits_sensor_sets_one_pool_per_account_and_token(network_settings):
    """One step per credential at a time; the setting is that step's calls in flight."""
    net = load_network(network_settings)
    limits = pool_limits(net)
    assert limits == {"spotify_acme": 1, "spotify_beta": 1, "op3_main": 1}
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("op3_main", 2)  # e.g. left by an older version
        assert apply_pool_limits(instance, limits) == sorted(limits)
        assert storage.get_concurrency_info("spotify_acme").slot_count == 1
        assert storage.get_concurrency_info("op3_main").slot_count == 1
        assert apply_pool_limits(instance, limits) == []  # already there: nothing changes
    assert (calls_per_step("anchor", network_settings), calls_per_step("op3", network_settings)) \
        == (1, 4)
    more = Settings.from_env({"PODCAST_PIPELINE_NETWORK_FILE": network_settings.network_file,
                              "PODCAST_PIPELINE_SPOTIFY_CONCURRENCY": "3"})
    assert calls_per_step("anchor", more) == 3 and pool_limits(net) == limits


def test_a_network_shows_failure_names_its_accounts_variables_and_the_file(
        network_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret is set: each show's step fails before any request, and its message (fix
    steps included) names the variables the file gives its account or token, and the file;
    never the single-show SPOTIFY_SP_DC / ANCHOR_PW_S / OP3_TOKEN."""
    for key in [k for k in os.environ if k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_"))]:
        monkeypatch.delenv(key)
    defs = build_definitions(network_settings)
    keys = [dg.AssetKey(["aa11bb22", "anchor", "plays"]), dg.AssetKey(["ee55ff66", "anchor",
                                                                       "plays"]),
            dg.AssetKey(["ee55ff66", "op3", "downloads"])]
    request = dg.RunRequest(asset_selection=keys, partition_key="2025-05-30")
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "home"))
    try:
        outcome = execute(defs, request, instance, log_level="ERROR")
        texts = {}
        for record in instance.all_logs(outcome.run_id):
            event = record.dagster_event
            if event is not None and event.is_step_failure:
                texts[event.step_key] = str(event.step_failure_data.user_failure_data.description)
    finally:
        instance.dispose()
    assert sorted(texts) == ["aa11bb22__anchor__plays", "ee55ff66__anchor__plays",
                             "ee55ff66__op3__downloads"]
    own = {"aa11bb22__anchor__plays": ["ACME_SP_DC", "the variable named by sp_key_env"],
           "ee55ff66__anchor__plays": ["BETA_PW_S"], "ee55ff66__op3__downloads": ["NET_OP3_TOKEN"]}
    for step, text in texts.items():
        for name in own[step]:
            assert name in text, (step, text)
        assert network_settings.network_file in text, text
        assert not re.search(r"\b(SPOTIFY_SP_DC|SPOTIFY_SP_KEY|ANCHOR_PW_S|OP3_TOKEN)\b", text), \
            (step, text)


def test_an_account_alert_names_every_show_and_its_own_variables():
    alert = alerts.expired_alert(
        "anchor", "account acme", first_partition="2025-05-30", run_id="r1",
        detected_by="a failed run", backend="graphql", account="acme",
        shows=["The Daily Byte (aa11bb22)", "Night Owls (cc33dd44)"],
        variables={"SPOTIFY_SP_DC": "ACME_SP_DC", "SPOTIFY_SP_KEY": "ACME_SP_KEY"})
    assert "The Daily Byte (aa11bb22)" in alert.text and "Night Owls (cc33dd44)" in alert.text
    assert "ACME_SP_DC" in alert.text and "SPOTIFY_SP_DC" not in alert.text
    assert alert.payload()["account"] == "acme"
    assert alert.payload()["shows"] == ["The Daily Byte (aa11bb22)", "Night Owls (cc33dd44)"]


# ---------------------------------------------------------------- against the emulator
# 4 shows on 2 accounts (acct01: shows 0 and 2; acct02: shows 1 and 3), one OP3 token.
EMU_TODAY = date(2025, 6, 1)
WINDOW = ("2025-05-27", "2025-05-31")
# Per show: the episode list, a ranged, a per-day and a per-episode Spotify asset, OP3.
SUBSET = ["anchor/episodes", "anchor/plays", "anchor/plays_by_app", "anchor/episode_plays",
          "spotify/episode_daily_totals", "op3/downloads"]
COMPARED = ["anchor.plays", "anchor.plays_by_app", "anchor.episode_plays",
            "spotify.episode_daily_totals", "op3.downloads"]


@pytest.fixture()
def emu_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY), shows=4, accounts=2) as emu:
        env = {**emu.env, **emu.graphql_env, **emu.network_env(tmp_path / "network.yaml")}
        for key in [k for k in os.environ if k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_"))]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if not key.startswith(("ANCHOR_WEBSTATION", "ANCHOR_PW_S", "OP3_SHOW", "SPOTIFY_SP",
                                   "SPOTIFY_SHOW")):  # only the file says which shows
                monkeypatch.setenv(key, value)
        yield emu


def _keys(net: Network, shows: list[Show]) -> list[dg.AssetKey]:
    wanted = {tuple(k.split("/")) for k in SUBSET}
    return [k for s in shows for k in show_keys(net, s) if tuple(k.path[1:]) in wanted]


def _per_show(db: str, show: Show) -> dict[str, tuple[int, str]]:
    """Per table: the show's rows in the window (count, order-independent hash)."""
    out = {}
    with duckdb.connect(db, read_only=True) as con:
        for qualified in COMPARED:
            table = TABLES_BY_KEY[qualified]
            cols = [c for c, _ in warehouse.table_columns(table)
                    if c not in warehouse.VOLATILE_COLUMNS]
            row = ", ".join(f'"{c}" := "{c}"' for c in cols)
            sid = show.op3_show_uuid if table.schema == "op3" else show.key
            [(n, h)] = con.execute(
                f"SELECT count(*), sum(hash(struct_pack({row})))::VARCHAR FROM "
                f"{table.qualified} WHERE show_id = ? AND partition_date BETWEEN ? AND ?",
                [sid, *WINDOW]).fetchall()
            out[qualified] = (int(n), str(h))
    return out


def _backfill(defs: dg.Definitions, keys: list[dg.AssetKey], instance: dg.DagsterInstance):
    request = dg.RunRequest(asset_selection=keys, tags={
        "dagster/asset_partition_range_start": WINDOW[0],
        "dagster/asset_partition_range_end": WINDOW[1]})
    return execute(defs, request, instance, log_level="WARNING")


def test_network_backfill_daily_run_and_one_account_expiring_mid_run(
        emu_network: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = emu_network
    receiver = _Receiver()
    monkeypatch.setenv(alerts.WEBHOOK_ENV, receiver.url)
    monkeypatch.delenv(alerts.SLACK_TOKEN_ENV, raising=False)
    clean, faulted = str(tmp_path / "clean.duckdb"), str(tmp_path / "faulted.duckdb")
    monkeypatch.setenv("DUCKDB_PATH", clean)
    defs = build_definitions(Settings.load())
    net = load_network(Settings.load())
    acct01, acct02 = net.shows_of_account("acct01"), net.shows_of_account("acct02")
    assert len(acct01) == len(acct02) == 2
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "home"))
    try:
        # A fault-free backfill of every show: each show has its own rows.
        outcome = _backfill(defs, _keys(net, list(net.shows)), instance)
        assert outcome.success, outcome.failed_steps
        reference = {s.key: _per_show(clean, s) for s in net.shows}
        for show in net.shows:
            assert all(n > 0 for n, _ in reference[show.key].values()), (show, reference)
        assert len({str(r) for r in reference.values()}) == 4  # four shows, four datasets

        # The daily schedule: one run per show (narrowed to the subset), every one succeeds.
        when = datetime(2025, 6, 1, 6, tzinfo=UTC)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        runs = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(context)
        requests = list(runs.run_requests or [])
        assert {r.tags.get("podcast_pipeline/show") for r in requests} == \
            {None, *(s.key for s in net.shows)}
        for request in requests:
            subset = [k for k in request.asset_selection
                      if k == SHOWS_KEY or k in _keys(net, list(net.shows))]
            outcome = execute(defs, request, instance, log_level="WARNING", assets=subset)
            assert outcome.success, (request.tags, outcome.failed_steps)
        assert {s.key: _per_show(clean, s) for s in net.shows} == reference  # same days, same data

        # The same backfill into a new file while acct01's cookie dies after its 6th request.
        monkeypatch.setenv("DUCKDB_PATH", faulted)
        defs = build_definitions(Settings.load())
        emu.reset_stats()
        emu.set_faults(Faults(expire_after_requests=6, expire_apis=("spotify",),
                              expire_accounts=frozenset({"acct01"})))
        outcome = _backfill(defs, _keys(net, list(net.shows)), instance)
        assert not outcome.success
        failed_shows = {step.split("__")[0] for step in outcome.failed_steps}
        assert failed_shows == {s.key for s in acct01}, outcome.failed_steps
        assert all("__op3__" not in step for step in outcome.failed_steps)
        for show in acct02:  # the other account's shows are complete and equal
            assert _per_show(faulted, show) == reference[show.key]
        for show in acct01:  # their OP3 rows (another credential) too
            assert _per_show(faulted, show)["op3.downloads"] == \
                reference[show.key]["op3.downloads"]
        # Fail-fast per account: the dead cookie was tried once or twice in the whole run (the
        # emulator cannot name the account of a refused login), acct02 never failed.
        refused = [r for r in emu.requests if r.status >= 400]
        assert 1 <= len(refused) <= 2, [(r.endpoint, r.status, r.account) for r in refused]
        assert not [r for r in emu.requests if r.account == "acct02" and r.status >= 400]

        # Exactly one alert, for acct01, naming both its shows; a second look sends none.
        sensor_resources = dict(defs.resources)
        for _ in range(2):
            _run_failure_sensor(instance, outcome.run_id, sensor_resources)
        bodies = receiver.bodies()
        assert len(bodies) == 1, bodies
        [alert] = bodies
        assert alert["account"] == "acct01" and alert["api"] == "anchor"
        assert alert["shows"] == [f"{s.name} ({s.key})" for s in acct01]
        for show in acct02:
            assert show.key not in alert["text"]
        assert "EMU_ACCT01_SP_DC" in alert["text"]
        for secret in (emu.network.account("acct01").sp_dc, emu.network.account("acct01").sp_key):
            assert secret not in str(bodies)

        # The probe: one call per account and token; the known expiry is not re-announced.
        emu.reset_stats()
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources)
        verdicts = credential_probe(context).skip_message or ""
        assert verdicts == "anchor@acct01: expired; anchor@acct02: ok; op3@main: ok"
        assert len(receiver.bodies()) == 1
        logins = [r for r in emu.requests if r.endpoint in ("token", "oauth2_auth", "auth")
                  or "token" in r.endpoint]
        assert len({r.account for r in logins}) <= 2
    finally:
        instance.dispose()
        receiver.close()


def _run_failure_sensor(instance: dg.DagsterInstance, run_id: str, resources: dict) -> None:
    run = instance.get_run_by_id(run_id)
    event = next(r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event
                 and r.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="credential_expiry_alert", dagster_instance=instance, dagster_run=run,
        dagster_event=event, resources=resources).for_run_failure()
    credential_expiry_alert(context)


class _Receiver:
    """A loopback webhook that records every POSTed alert."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.raw.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        return [json.loads(b) for b in self.raw]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Per-day Spotify assets (a request per day, side by side in a step) and OP3's redirect logs
# (runs of days side by side): each step has several requests to keep in flight.
POLITE_ASSETS = ["anchor/plays_by_app", "spotify/show_daily_totals", "op3/redirect_logs"]
POLITE_RANGE = ("2025-05-28", "2025-05-31")


def _run(env: dict[str, str], home: str, keys: list[list[str]]) -> None:
    """One run in process (the daily job's executor), in a process of its own."""
    for key in [k for k in os.environ if k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_",
                                                       "PODCAST_PIPELINE_"))]:
        del os.environ[key]
    os.environ.update(env)
    request = dg.RunRequest(tags={"dagster/asset_partition_range_start": POLITE_RANGE[0],
                                  "dagster/asset_partition_range_end": POLITE_RANGE[1]})
    with dg.DagsterInstance.from_config(home) as instance:
        outcome = execute(build_definitions(Settings.load()), request, instance,
                          log_level="WARNING", assets=[dg.AssetKey(k) for k in keys])
    if not outcome.success:
        raise SystemExit(f"failed steps: {outcome.failed_steps}")


def _parallel_runs(env: dict[str, str], home: str, selections: list[list[dg.AssetKey]]) -> None:
    """One run per selection, all at once, each in its own process on one DAGSTER_HOME (as a
    deployment's runs; Dagster's per-run logging set-up is not thread-safe)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run, args=(env, home, [k.path for k in keys]))
             for keys in selections]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * len(procs)


def test_parallel_runs_keep_each_accounts_calls_at_its_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four runs at once, one per show of two accounts, with PODCAST_PIPELINE_SPOTIFY_CONCURRENCY
    2: each account's requests (anchor/* and spotify/* together) are at most 2 in flight, and
    reach 2 (so the count sees overlap). The pools are raised to 4 here, as Dagster's SQLite
    claim can hand one slot to two steps: the calls lock still holds the bound."""
    home = dagster_home(tmp_path)
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY), faults=Faults(latency_ms=100),
                  shows=4, accounts=2) as emu:
        env = {k: v for k, v in {**emu.env, **emu.graphql_env}.items()
               if k.endswith("_URL") or k == "OP3_TOKEN"}
        env.update(emu.network_env(tmp_path / "network.yaml"),
                   DUCKDB_PATH=str(tmp_path / "w.duckdb"),
                   PODCAST_PIPELINE_SPOTIFY_CONCURRENCY="2", PODCAST_PIPELINE_OP3_CONCURRENCY="3")
        settings = Settings.from_env(env)
        net = load_network(settings)
        limits = pool_limits(net)
        assert set(limits.values()) == {1}
        with dg.DagsterInstance.from_config(home) as instance:
            apply_pool_limits(instance, dict.fromkeys(limits, 4))
        emu.reset_stats()
        wanted = {tuple(a.split("/")) for a in POLITE_ASSETS if not a.startswith("op3")}
        _parallel_runs(env, home, [[k for k in show_keys(net, s) if tuple(k.path[1:]) in wanted]
                                   for s in net.shows])
        stats = emu.stats()
    assert stats["by_account"]["acct01"] >= 2 * 2 * 4  # 2 shows × 2 assets × 4 days
    assert {a: stats["max_concurrent_by_account"][a] for a in ("acct01", "acct02")} == \
        {"acct01": 2, "acct02": 2}, stats["max_concurrent_by_account"]


def test_a_single_show_makes_one_spotify_call_at_a_time_across_parallel_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The network of one (the single-show variables) under the defaults: two runs at once,
    each with per-day anchor/* and spotify/* steps: one Spotify call at a time in all; OP3
    (default 4) keeps redirect-log runs side by side, never more than 4."""
    home = dagster_home(tmp_path)
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY), faults=Faults(latency_ms=100)) as emu:
        env = {**emu.env, **emu.graphql_env, "DUCKDB_PATH": str(tmp_path / "w.duckdb")}
        with dg.DagsterInstance.from_config(home) as instance:  # as if the pools did not hold
            apply_pool_limits(instance, {"spotify_default": 4, "op3_default": 4})
        emu.reset_stats()
        keys = [dg.AssetKey(a.split("/")) for a in POLITE_ASSETS]
        _parallel_runs(env, home, [keys, keys])
        stats = emu.stats()
    peaks = stats["max_concurrent_by_account"]
    [spotify] = [k for k in peaks if not k.startswith("op3:")]
    [op3] = [k for k in peaks if k.startswith("op3:")]
    assert stats["by_account"][spotify] >= 2 * 2 * 4
    assert peaks[spotify] == 1, peaks  # before: 2 steps × 4 days at a time = 8
    assert 2 <= peaks[op3] <= 4, peaks


def test_each_show_has_its_own_raw_table_checks(network_settings):
    defs = build_definitions(network_settings)
    graph = defs.resolve_asset_graph()
    app = [dg.AssetKey([s, "anchor", "plays_by_app"]) for s in ("aa11bb22", "cc33dd44",
                                                                  "ee55ff66")]
    for key in app:  # the same rules as a single show's table, on each show's asset
        assert {r.name for r in checks.rules_for(TABLES_BY_KEY["anchor.plays_by_app"])} <= \
            {c.name for c in graph.get_check_keys_for_assets({key})}
    assert dg.AssetCheckKey(dg.AssetKey(["op3only", "op3", "downloads"]),
                            "downloads_match_show_download_counts") in graph.asset_check_keys
    # Every check is on a show's asset: none on an unprefixed one that no asset writes.
    assert {k.asset_key.path[0] for k in graph.asset_check_keys} == \
        {"aa11bb22", "cc33dd44", "ee55ff66", "op3only", "analytics"}
    # The models refuse to build over a show's failed blocking check (refuse_if_blocked).
    assert dg.AssetCheckKey(app[0], "fractions_sum_to_one") in checks.blocking_check_keys(app)


def test_a_shows_broken_data_fails_only_its_own_check(
        emu_network: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two shows in one table: the broken one's check fails naming its day, the other's
    passes (each check reads only its show's rows)."""
    emu = emu_network
    good, bad = emu.network.datasets[0], emu.network.datasets[1]
    # --broken-fraction for one show only: its last day's app shares sum to 1.25.
    bad.config = replace(bad.config, broken_fraction="app")
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    defs = build_definitions(Settings.load())
    net = load_network(Settings.load())
    assert [s.key for s in net.shows[:2]] == [good.webstation_id, bad.webstation_id]
    keys = [dg.AssetKey([ds.webstation_id, "anchor", "plays_by_app"]) for ds in (good, bad)]
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "home"))
    try:
        outcome = _backfill(defs, keys, instance)
        # A failed blocking check fails its step: the broken show's only.
        assert outcome.failed_steps == [f"{bad.webstation_id}_anchor_plays_by_app_checks"]

        def evaluation(key: dg.AssetKey) -> dg.AssetCheckEvaluation:
            record = instance.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(key, "fractions_sum_to_one"))
            assert record is not None and record.event is not None
            return record.event.asset_check_evaluation

        ok, broken = evaluation(keys[0]), evaluation(keys[1])
        assert ok.passed, ok.metadata["summary"]
        assert not broken.passed
        assert broken.metadata["summary"].value.startswith(
            f"fractions of {WINDOW[1]} sum to 1.25")
        offending = broken.metadata["offending_rows"].value
        assert bad.webstation_id in offending and good.webstation_id not in offending
        # The table holds both shows' rows, the broken day included: only the filter by
        # show keeps the good show's check green.
        with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
            shows = {s for (s,) in con.execute(
                "SELECT DISTINCT show_id FROM anchor.plays_by_app WHERE partition_date = ?",
                [WINDOW[1]]).fetchall()}
        assert shows == {good.webstation_id, bad.webstation_id}
        # Their other checks passed ("fresh" is not: the emulator's today is in 2025).
        for key in keys:
            for name in ("counts_non_negative", "no_missing_days"):
                record = instance.get_latest_asset_check_evaluation_record(
                    dg.AssetCheckKey(key, name))
                assert record is not None and record.event is not None
                assert record.event.asset_check_evaluation.passed, (key, name)
        # A model over the table, started by hand, refuses over the broken show's check.
        mix = dg.AssetKey(["analytics", "audience_mix"])
        run = defs.resolve_job_def("analytics").execute_in_process(
            instance=instance, asset_selection=[mix], raise_on_error=False)
        [failure] = [e for e in run.all_events if e.is_step_failure]
        text = str(failure.step_failure_data.user_failure_data.description)
        assert "was not rebuilt" in text
        assert f"{bad.webstation_id}/anchor/plays_by_app fractions_sum_to_one" in text
        assert good.webstation_id not in text
    finally:
        instance.dispose()


SUMMARY_ASSETS = ["anchor/total_plays", "anchor/unique_listeners", "anchor/plays",
                  "anchor/plays_by_app", "anchor/plays_by_geo", "op3/show_download_counts",
                  "op3/downloads"]
PERCENT = re.compile(r"\s(\d+\.\d) %")


def test_the_summary_of_a_network_is_per_show_and_adds_only_counts(
        emu_network: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`podcast-pipeline summary` on a network's database: one block per show under its name
    from the network file, no share over 100 %, and network totals that are the sums of
    the shows' counts."""
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    defs = build_definitions(Settings.load())
    net = load_network(Settings.load())
    wanted = {tuple(k.split("/")) for k in SUMMARY_ASSETS}
    keys = [k for s in net.shows for k in show_keys(net, s) if tuple(k.path[1:]) in wanted]
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "home"))
    try:
        request = dg.RunRequest(asset_selection=[*keys, SHOWS_KEY], tags={
            "dagster/asset_partition_range_start": WINDOW[1],
            "dagster/asset_partition_range_end": WINDOW[1]})
        outcome = execute(defs, request, instance, log_level="WARNING")
        assert outcome.success, outcome.failed_steps
    finally:
        instance.dispose()
    out = io.StringIO()
    print_summary(str(db), out)
    text = out.getvalue()
    blocks = text.split("\n\n\"")
    heads = [line for line in text.splitlines() if ", as of " in line]
    # (a snapshot's day is the real day it was taken, not the emulator's today)
    assert [h.split(", as of ")[0] for h in heads[:-1]] == [
        f'"{s.name}"' for s in sorted(net.shows, key=lambda s: s.name)], text
    assert heads[-1].startswith(f"The network, {len(net.shows)} shows, as of"), text
    shares = [float(x) for x in PERCENT.findall(text)]
    assert shares and max(shares) <= 100.0, text
    # Each show's top countries are its own shares: together at most the whole.
    for block in blocks[:len(net.shows)]:
        countries = section(block, "  Top countries")
        assert 0 < sum(float(x) for x in PERCENT.findall(countries)) <= 100.0, block
    # The totals add the counts up, and only the counts.
    totals = text.rsplit("The network, ", 1)[1]
    assert "%" not in totals and "Audience" not in totals
    with duckdb.connect(str(db), read_only=True) as con:
        [(plays,)] = con.execute("SELECT sum(plays) FROM anchor.plays WHERE date = ?",
                                 [WINDOW[1]]).fetchall()
        [(downloads,)] = con.execute("SELECT count(*) FROM op3.downloads WHERE date = ?",
                                     [WINDOW[1]]).fetchall()
        per_show = [n for (n,) in con.execute(
            "SELECT sum(plays) FROM anchor.plays WHERE date = ? GROUP BY show_id",
            [WINDOW[1]]).fetchall()]
    assert len(per_show) == len(net.shows) and plays > max(per_show)
    day = date.fromisoformat(WINDOW[1])
    assert re.search(rf"^  {day:%a} {day}\s+{plays:,}\s+{downloads:,}$", totals, re.M), totals


def section(text: str, title: str) -> str:
    """The lines of the block starting with ``title``, up to the next blank line."""
    start = text.index(title)
    end = text.find("\n\n", start)
    return text[start:end if end >= 0 else None]
