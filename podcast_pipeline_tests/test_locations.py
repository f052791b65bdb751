"""A network split into code locations (``locations.py``): one per account, one per OP3 token
of the shows without an account, one for the network; together exactly the one location's
definitions, and each loads and runs on its own (the CLI, as the daemon's run workers do)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from podcast_pipeline import cli
from podcast_pipeline.code_location import build_definitions
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.locations import plan
from podcast_pipeline.network import load_network
from podcast_pipeline.network_assets import SHOWS_KEY, show_keys
from podcast_pipeline.settings import Settings
from podcast_pipeline_tests.procs import DAGSTER, Materialize, dagster_home
from podcast_pipeline_tests.test_network_dagster import EMU_TODAY, NETWORK


@pytest.fixture()
def network_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    path = tmp_path / "network.yaml"
    path.write_text(NETWORK, encoding="utf-8")
    monkeypatch.setenv("PODCAST_PIPELINE_NETWORK_FILE", str(path))
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    return Settings.load()


def _assets(defs: dg.Definitions) -> set[dg.AssetKey]:
    """The keys it materializes (not the other locations' keys it only depends on)."""
    return {k for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for k in a.keys}


def _checks(defs: dg.Definitions) -> set[dg.AssetCheckKey]:
    keys = {k for c in defs.asset_checks or [] for k in c.check_keys}
    return keys | {k for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
                   for k in a.check_keys}


def _workspace(capsys: pytest.CaptureFixture[str]) -> dict:
    assert cli.main(["workspace"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_locations_split_the_network_without_overlap(
        network_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    net = load_network(network_env)
    locations = plan(net)
    assert [(loc.name, loc.attribute, loc.shows) for loc in locations] == [
        ("network", "network", ()),
        ("acme", "account_acme", ("aa11bb22", "cc33dd44")),
        ("beta", "account_beta", ("ee55ff66",)),
        ("op3-main", "token_main", ("op3only",)),  # no account: by its OP3 token
    ]
    entries = [e["python_module"] for e in _workspace(capsys)["load_from"]]
    assert entries == [{"module_name": "podcast_pipeline.locations", "attribute": loc.attribute,
                        "location_name": loc.name} for loc in locations]

    whole = build_definitions(network_env)
    parts = {loc.name: build_definitions(network_env, loc) for loc in locations}
    assets = {name: _assets(d) for name, d in parts.items()}
    checks = {name: _checks(d) for name, d in parts.items()}
    assert sum(map(len, assets.values())) == len(set().union(*assets.values()))  # disjoint
    assert set().union(*assets.values()) == _assets(whole)
    assert sum(map(len, checks.values())) == len(set().union(*checks.values()))
    assert set().union(*checks.values()) == _checks(whole)
    for loc in locations[1:]:  # an account's location: its shows' API assets, nothing else
        assert assets[loc.name] == {k for key in loc.shows
                                    for k in show_keys(net, net.show(key))}
    assert SHOWS_KEY in assets["network"]
    # The models read the accounts' assets across locations: lineage in the asset graph.
    def parents(defs: dg.Definitions) -> set[dg.AssetKey]:
        graph = defs.resolve_asset_graph()
        return {k for key in assets["network"] for k in graph.get(key).parent_keys}

    assert parents(parts["network"]) == parents(whole)
    assert parents(whole) & assets["acme"] and parents(whole) & assets["op3-main"]

    # One alert sensor, watching every location; every location has a daily schedule and
    # together they ask for every asset the one location's schedule does.
    sensors = [s.name for d in parts.values() for s in d.sensors or []]
    assert sensors.count("credential_expiry_alert") == 1
    tick = datetime(EMU_TODAY.year, EMU_TODAY.month, EMU_TODAY.day, 6, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    asked = [k for d in parts.values()
             for r in d.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(
                 context).run_requests or [] for k in r.asset_selection or []]
    whole_asked = [k for r in whole.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(
        context).run_requests or [] for k in r.asset_selection or []]
    assert sorted(asked) == sorted(whole_asked)
    assert "code locations" in (parts["network"].resolve_job_def("daily_refresh").description
                                or "")


def test_accounts_can_share_a_location(network_env: Settings,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import podcast_pipeline.locations as locations

    net = load_network(network_env)
    assert [(loc.name, loc.attribute, loc.shows) for loc in plan(net, 2)] == [
        ("network", "network", ()),
        ("acme-to-beta", "accounts_2_1", ("aa11bb22", "cc33dd44", "ee55ff66")),
        ("op3-main", "token_main", ("op3only",)),
    ]
    assert cli.main(["workspace", "--accounts-per-location", "2"]) == 0
    assert "attribute: accounts_2_1" in capsys.readouterr().out
    # What a run worker does with the pointer: module and attribute, nothing else.
    locations._definitions.cache_clear()
    grouped = _assets(locations.accounts_2_1)
    assert grouped == _assets(locations.account_acme) | _assets(locations.account_beta)
    with pytest.raises(AttributeError, match="podcast-pipeline workspace"):
        _ = locations.account_gone
    assert not hasattr(locations, "__wrapped__") and not hasattr(locations, "defs")
    assert cli.main(["workspace", "--accounts-per-location", "0"]) == 2


def test_a_location_needs_a_network_file(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PODCAST_PIPELINE_NETWORK_FILE", raising=False)
    with pytest.raises(ConfigError, match="PODCAST_PIPELINE_NETWORK_FILE"):
        plan(load_network(Settings.load()))
    assert cli.main(["workspace"]) == 2
    assert "PODCAST_PIPELINE_NETWORK_FILE" in capsys.readouterr().err


def test_two_accounts_whose_names_share_an_attribute_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(NETWORK.replace("name: beta", "name: ac-me").replace(
        "account: beta", "account: ac-me").replace("name: acme", "name: ac_me").replace(
        "account: acme", "account: ac_me"), encoding="utf-8")
    net = load_network(Settings.from_env({"PODCAST_PIPELINE_NETWORK_FILE": str(path)}))
    with pytest.raises(ConfigError, match="'ac_me' and 'ac-me'.*Rename one"):
        plan(net)


@pytest.fixture()
def emu_env(tmp_path: Path) -> Iterator[tuple[Emulator, dict[str, str]]]:
    with Emulator(EmulatorConfig(seed=7, today=EMU_TODAY), shows=4, accounts=2) as emu:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_",
                                    "DAGSTER_HOME", "DUCKDB_PATH"))}
        env.update({k: v for k, v in {**emu.env, **emu.graphql_env}.items()
                    if k.endswith("_URL") or k == "OP3_TOKEN"})
        env.update(emu.network_env(tmp_path / "network.yaml"),
                   DUCKDB_PATH=str(tmp_path / "w.duckdb"),
                   DAGSTER_HOME=dagster_home(tmp_path),
                   PODCAST_PIPELINE_START_DATE="2025-01-01")
        yield emu, env


def test_an_accounts_location_runs_its_shows_and_no_others(
        emu_env: tuple[Emulator, dict[str, str]], tmp_path: Path) -> None:
    _emu, env = emu_env
    out = subprocess.run([str(Path(DAGSTER).with_name("podcast-pipeline")), "workspace"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    names = [e["python_module"]["location_name"] for e in yaml.safe_load(out)["load_from"]]
    assert names == ["network", "acct01", "acct02"]
    # test_readme.py validates such a workspace with `dagster definitions validate -w`.

    net = load_network(Settings.from_env(env))
    show = net.shows[0]
    assert show.account == "acct01"
    select = [f"{show.key}/anchor/plays", f"{show.key}/op3/downloads"]
    run = Materialize(env, select, partition="2025-05-30", location="account_acct01")
    assert run.finish(timeout=300) == 0, run.log[-4000:]
    with duckdb.connect(env["DUCKDB_PATH"], read_only=True) as con:
        shows = {r[0] for r in con.sql(
            "SELECT show_id FROM anchor.plays WHERE partition_date = '2025-05-30'").fetchall()}
    assert shows == {show.key}
    # Another account's show is not in this location.
    other = next(s for s in net.shows if s.account == "acct02")
    run = Materialize(env, [f"{other.key}/anchor/plays"], partition="2025-05-30",
                      location="account_acct01")
    assert run.finish(timeout=300) != 0
    assert f"{other.key}/anchor/plays" in run.log

