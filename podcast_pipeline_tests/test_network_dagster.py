"""A network in Dagster: per-show assets, pools per account / token, the daily run of every
show, one alert per dead account naming its shows.

The shape tests build the definitions from a network file (no secret set: the definitions
must load without them); the single-show keys are covered by test_definitions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from podcast_pipeline import alerts
from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.network import load_network
from podcast_pipeline.network_assets import SHOWS_KEY, pool_limits, show_keys
from podcast_pipeline.sensors import apply_pool_limits
from podcast_pipeline.settings import Settings
from podcast_pipeline.tables import ANCHOR_TABLES, OP3_TABLES, SPOTIFY_TABLES

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
