"""A network in Dagster: per-show assets, pools per account / token, the daily run of every
show, one alert per dead account naming its shows.

The shape tests build the definitions from a network file (no secret set: the definitions
must load without them); the single-show keys are covered by test_definitions.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import alerts, warehouse
from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.demo import execute
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.network import Network, Show, load_network
from podcast_pipeline.network_assets import SHOWS_KEY, pool_limits, show_keys
from podcast_pipeline.sensors import apply_pool_limits, credential_expiry_alert, credential_probe
from podcast_pipeline.settings import Settings
from podcast_pipeline.tables import ANCHOR_TABLES, OP3_TABLES, SPOTIFY_TABLES, TABLES_BY_KEY
from podcast_pipeline_tests.procs import Materialize, dagster_home

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


def test_pool_limits_sensor_sets_one_pool_per_account_and_token(network_settings):
    net = load_network(network_settings)
    limits = pool_limits(net, network_settings)
    assert limits == {"spotify_acme": 1, "spotify_beta": 1, "op3_main": 2}
    with dg.instance_for_test() as instance:
        assert apply_pool_limits(instance, limits) == sorted(limits)
        assert instance.event_log_storage.get_concurrency_info("spotify_acme").slot_count == 1
        assert instance.event_log_storage.get_concurrency_info("op3_main").slot_count == 2
        assert apply_pool_limits(instance, limits) == []  # already there: nothing changes
    more = Settings.from_env({"PODCAST_PIPELINE_NETWORK_FILE": network_settings.network_file,
                              "PODCAST_PIPELINE_SPOTIFY_CONCURRENCY": "3"})
    assert pool_limits(net, more)["spotify_acme"] == 3


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


POLITE_ASSETS = ["anchor/plays_by_app", "anchor/plays_by_device", "anchor/plays_by_gender"]


def test_parallel_runs_make_one_call_at_a_time_per_account(tmp_path: Path) -> None:
    """Four `dagster asset materialize` processes at once, one per show, each running steps
    in parallel: acct01's pool (limit 1, the default) serialises its shows' calls across
    both runs; acct02's pool, raised to 4 here, lets them overlap (so the count can see it)."""
    home = dagster_home(tmp_path)
    latency = Faults(latency_ms=60)  # every request long enough to overlap
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY), faults=latency, shows=4,
                  accounts=2) as emu:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_"))}
        env.update({k: v for k, v in {**emu.env, **emu.graphql_env}.items()
                    if k.endswith("_URL") or k == "OP3_TOKEN"})
        env.update(emu.network_env(tmp_path / "network.yaml"), DAGSTER_HOME=home,
                   DUCKDB_PATH=str(tmp_path / "w.duckdb"), PYTHONUNBUFFERED="1")
        settings = Settings.from_env(env)
        net = load_network(settings)
        limits = pool_limits(net, settings)
        assert limits["spotify_acct01"] == 1
        with dg.DagsterInstance.from_config(home) as instance:
            apply_pool_limits(instance, {**limits, "spotify_acct02": 4})
        emu.reset_stats()
        runs = [Materialize(env, [f"{s.key}/{a}" for a in POLITE_ASSETS],
                            partition_range=("2025-05-28", "2025-05-31")) for s in net.shows]
        codes = [run.finish(timeout=300) for run in runs]
        for run, code in zip(runs, codes, strict=True):
            assert code == 0, run.log[-3000:]
        stats = emu.stats()
    peaks = stats["max_concurrent_by_account"]
    assert stats["by_account"]["acct01"] >= 2 * len(POLITE_ASSETS) * 4  # 2 shows × 3 × 4 days
    assert peaks["acct01"] == 1, peaks
    assert peaks["acct02"] >= 2, peaks  # the same runs without the limit do overlap
