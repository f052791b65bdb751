"""The emulator serves a network: N shows over M accounts, each show its own data, each
account's cookies seeing only its shows, one OP3 token for all, one account's cookie
expiring alone. Driven by the pipeline's own clients over HTTP, configured from the network
file the emulator writes (podcast_pipeline.network)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from podcast_pipeline.anchor.client import AnchorClient
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.emulator.data import Dataset
from podcast_pipeline.emulator.faults import Faults
from podcast_pipeline.errors import AccessDenied, ConfigError, CredentialsExpired
from podcast_pipeline.http import RetryPolicy
from podcast_pipeline.network import Network, load_network, op3_settings, spotify_settings
from podcast_pipeline.op3.client import Op3Client
from podcast_pipeline.settings import NETWORK_FILE_ENV, Settings, SpotifySettings
from podcast_pipeline.spotify.client import SpotifyGraphQLClient, custom_range

TODAY = date(2025, 6, 1)
DAY = TODAY - timedelta(days=5)
FAST = RetryPolicy(total=1, backoff_factor=0.0, backoff_max=0.0, malformed_retries=0,
                   connect_timeout=5.0, read_timeout=15.0)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY), shows=5, accounts=2) as e:
        yield e


def configured(emu: Emulator, tmp_path: Path, backend: str = "graphql"
               ) -> tuple[Network, Settings, dict[str, str]]:
    """The network file the emulator writes, loaded as the pipeline loads it."""
    path = tmp_path / f"network-{backend}.yaml"
    path.write_text(emu.network_yaml(backend))
    env = {**emu.all_env, NETWORK_FILE_ENV: str(path)}
    settings = Settings.from_env(env)
    return load_network(settings), settings, env


def spotify(net: Network, key: str, settings: Settings, env: dict[str, str]
            ) -> SpotifyGraphQLClient | AnchorClient:
    s = spotify_settings(net, net.show(key), settings, env)
    if isinstance(s, SpotifySettings):
        return SpotifyGraphQLClient(s, retry=FAST)
    return AnchorClient(s, retry=FAST)


def plays_on(client: SpotifyGraphQLClient | AnchorClient, day: date) -> int:
    frame = client.plays(day, day)
    return int(frame["plays"].sum())


# ---------------------------------------------------------------------- the shape
def test_shows_round_robin_over_accounts_each_with_its_own_data(emu: Emulator) -> None:
    net = emu.network
    assert [a.name for a in net.accounts] == ["acct01", "acct02"]
    assert [a.shows for a in net.accounts] == [(0, 2, 4), (1, 3)]
    keys = [ds.webstation_id for ds in net.datasets]
    assert len(set(keys)) == 5
    assert len({ds.station_id for ds in net.datasets}) == 5
    assert len({ds.show_uuid for ds in net.datasets}) == 5
    plays = [[ds.station_plays(DAY - timedelta(days=k)) for k in range(5)] for ds in net.datasets]
    assert len({tuple(p) for p in plays}) == 5  # five different shows, not one five times
    # Show 0 is the single-show emulator's show, ids and numbers alike.
    alone = Dataset(EmulatorConfig(seed=7, today=TODAY))
    assert (net.datasets[0].webstation_id, net.datasets[0].station_plays(DAY)) == (
        alone.webstation_id, alone.station_plays(DAY))
    # Deterministic: the same seed gives the same network.
    again = Emulator(EmulatorConfig(seed=7, today=TODAY), shows=5, accounts=2).network
    assert [d.webstation_id for d in again.datasets] == keys
    assert again.datasets[3].op3_day(DAY).downloads == net.datasets[3].op3_day(DAY).downloads
    # Each show's cookies are its owner's; one OP3 token for all.
    assert net.datasets[2].sp_dc == net.accounts[0].sp_dc != net.accounts[1].sp_dc
    assert {ds.op3_token for ds in net.datasets} == {net.op3_token}


def test_single_show_exports_what_it_always_did() -> None:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as single:
        assert not any(name.startswith("EMU_") for name in single.all_env)
        assert single.network.is_single and len(single.network.accounts) == 1
        assert single.dataset is single.network.datasets[0]


def test_building_a_large_network_generates_no_day() -> None:
    emu = Emulator(EmulatorConfig(seed=7, today=TODAY, days=365), shows=100, accounts=10)
    assert len(emu.network.datasets) == 100
    assert all(not ds._anchor and not ds._spotify for ds in emu.network.datasets)
    assert len(emu.network.datasets[0]._op3) == 0  # the shared, bounded OP3 day cache
    assert [len(a.shows) for a in emu.network.accounts] == [10] * 10


# ---------------------------------------------------------------------- every API per show
@pytest.mark.parametrize("backend", ["graphql", "rest"])
def test_each_show_answers_its_own_numbers_through_its_accounts_cookies(
        emu: Emulator, tmp_path: Path, backend: str) -> None:
    net, settings, env = configured(emu, tmp_path, backend)
    assert [s.key for s in net.shows] == [ds.webstation_id for ds in emu.network.datasets]
    assert [s.account for s in net.shows] == ["acct01", "acct02", "acct01", "acct02", "acct01"]
    for show, ds in zip(net.shows, emu.network.datasets, strict=True):
        with spotify(net, show.key, settings, env) as client:
            assert plays_on(client, DAY) == ds.station_plays(DAY), show.key
        with Op3Client(op3_settings(net, show, settings, env), retry=FAST) as op3:
            assert len(op3.downloads(DAY, DAY)) == ds.download_count(DAY), show.key
    # The request log names each request's account and show, never a secret.
    recs = [r for r in emu.requests if r.api in ("anchor", "spotify") and r.show]
    assert {(r.account, r.show) for r in recs} == {
        (emu.network.owner(ds).name, ds.webstation_id) for ds in emu.network.datasets}
    assert {r.account for r in emu.requests if r.api == "op3"} == {"main"}
    secrets = [a.sp_dc for a in emu.network.accounts] + [a.cookie for a in emu.network.accounts]
    assert not any(s in repr(emu.requests) for s in secrets + [emu.network.op3_token])
    by_account = emu.stats()["by_account"]
    assert by_account["acct01"] > 0 and by_account["acct02"] > 0


def test_one_op3_query_counts_several_shows(emu: Emulator, tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path)
    shows = emu.network.datasets
    with Op3Client(op3_settings(net, net.shows[0], settings, env), retry=FAST) as op3:
        counts = op3.show_download_counts([ds.show_uuid for ds in shows[:3]])
    got = dict(zip(counts["show_uuid"], counts["monthly_downloads"], strict=True))
    last30 = [TODAY - timedelta(days=k) for k in range(1, 31)]
    assert got == {ds.show_uuid: sum(ds.download_count(d) for d in last30) for ds in shows[:3]}
    assert len(set(got.values())) == 3


def test_get_shows_for_user_lists_exactly_the_accounts_shows(emu: Emulator,
                                                            tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path)
    for account in emu.network.accounts:
        key = net.shows_of_account(account.name)[0].key
        client = spotify(net, key, settings, env)
        assert isinstance(client, SpotifyGraphQLClient)
        with client:
            hosted = [s["uri"] for s in client.list_shows() if s.get("__typename") == "HostedShow"]
        assert hosted == [ds.spotify_show_uri for ds in emu.network.shows_of(account)]


def test_another_accounts_show_is_refused(emu: Emulator, tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path)
    theirs = net.shows_of_account("acct01")[1]
    env = {**env, "EMU_ACCT01_SP_DC": env["EMU_ACCT02_SP_DC"],
           "EMU_ACCT01_SP_KEY": env["EMU_ACCT02_SP_KEY"]}  # acct02's cookies, acct01's show
    with spotify(net, theirs.key, settings, env) as client:
        assert isinstance(client, SpotifyGraphQLClient)
        with pytest.raises(ConfigError, match="does not list"):  # the client checks first
            plays_on(client, DAY)
        with pytest.raises(AccessDenied):  # and the emulator refuses it when asked anyway
            client.graphql("plays", "getShowOnSpotifyStats",
                           {"showUri": theirs.spotify_show_uri, **custom_range(DAY, DAY)})
        episode = emu.network.datasets[2].published[0].spotify_uri
        with pytest.raises(AccessDenied):
            client.graphql("episode_plays", "getEpisodePlaysDaily", {"episodeUri": episode})
    rest, settings, env_rest = configured(emu, tmp_path, "rest")
    env_rest = {**env_rest, "EMU_ACCT01_ANCHOR_PW_S": env_rest["EMU_ACCT02_ANCHOR_PW_S"]}
    with spotify(rest, theirs.key, settings, env_rest) as client, pytest.raises(AccessDenied):
        plays_on(client, DAY)
    # An episode of another account's show, straight at the REST API: 403 as well.
    ds0 = emu.network.datasets[0]
    r = requests.get(f"{emu.env['ANCHOR_BASE_URL']}/analytics/episode/"
                     f"{ds0.published[0].episode_id}/plays?isMumsCompatible=true",
                     cookies={"anchorpw_s": emu.network.accounts[1].cookie}, timeout=10)
    assert r.status_code == 403 and "does not own" in r.text
    # And its overview on the legacy host, with acct02's bearer.
    with spotify(net, net.shows_of_account("acct02")[0].key, settings, configured(
            emu, tmp_path)[2]) as mine:
        assert isinstance(mine, SpotifyGraphQLClient)
        mine.list_shows()  # logged in
        bearer = emu.spotify.issued[-1]
    r = requests.get(f"{emu.graphql_env['SPOTIFY_LEGACY_API_URL']}/v3/episodes/"
                     f"{ds0.published[0].episode_id}/overview",
                     headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert r.status_code == 403
    own = emu.network.datasets[1].published[0].episode_id
    r = requests.get(f"{emu.graphql_env['SPOTIFY_LEGACY_API_URL']}/v3/episodes/{own}/overview",
                     headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert r.status_code == 200 and r.json()["webStationId"] == emu.network.datasets[1].webstation_id


# ---------------------------------------------------------------------- one account expires
@pytest.mark.parametrize("backend", ["graphql", "rest"])
def test_expiring_one_account_fails_only_its_shows(emu: Emulator, tmp_path: Path,
                                                   backend: str) -> None:
    net, settings, env = configured(emu, tmp_path, backend)
    live = {s.key: spotify(net, s.key, settings, env) for s in net.shows}
    try:
        for client in live.values():  # logged in, bearer in hand
            plays_on(client, DAY)
        r = requests.post(emu.url + "/_emulator/expire?account=acct02", timeout=10)
        assert r.status_code == 200 and r.json()["account"] == "acct02"
        for show in net.shows:
            if show.account == "acct02":
                with pytest.raises(CredentialsExpired):
                    plays_on(live[show.key], DAY - timedelta(days=1))
            else:
                assert plays_on(live[show.key], DAY - timedelta(days=1)) >= 0
        assert emu.stats()["expired_accounts"] == {"anchor": ["acct02"], "spotify": ["acct02"]}
        # A fresh cookie brings it back, the others never noticed.
        requests.post(emu.url + "/_emulator/refresh?account=acct02", timeout=10)
        with spotify(net, net.shows_of_account("acct02")[0].key, settings, env) as again:
            assert plays_on(again, DAY) >= 0
    finally:
        for client in live.values():
            client.close()


def test_automatic_expiry_can_target_one_account(emu: Emulator, tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path, "rest")
    emu.set_faults(Faults(expire_after_requests=4, expire_apis=("anchor",),
                          expire_accounts=frozenset({"acct02"})))
    mine, theirs = net.shows_of_account("acct01")[0], net.shows_of_account("acct02")[0]
    with spotify(net, mine.key, settings, env) as a, spotify(net, theirs.key, settings, env) as b:
        for k in range(3):  # its 4 requests: the station id, then 3 days
            assert plays_on(b, DAY - timedelta(days=k)) >= 0
        with pytest.raises(CredentialsExpired):
            plays_on(b, DAY - timedelta(days=3))
        for k in range(6):  # acct01's own count passes 4: still fine
            assert plays_on(a, DAY - timedelta(days=k)) >= 0
    assert requests.get(emu.url + "/_emulator/faults", timeout=10).json()[
        "expire_accounts"] == ["acct02"]


def test_automatic_expiry_of_one_graphql_account_answers_401_at_once(
        emu: Emulator, tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path)
    mine, theirs = net.shows_of_account("acct01")[0], net.shows_of_account("acct02")[0]
    with spotify(net, mine.key, settings, env) as a, spotify(net, theirs.key, settings, env) as b:
        plays_on(b, DAY)  # auth, token, getShowsForUser, plays: 4 requests of acct02
        emu.set_faults(Faults(expire_after_requests=1, expire_apis=("spotify",),
                              expire_accounts=frozenset({"acct02"})))  # counts restart
        assert plays_on(b, DAY) >= 0  # its 1st request since
        with pytest.raises(CredentialsExpired):
            plays_on(b, DAY)  # the 2nd: 401 with the bearer still in hand, then login_required
        assert plays_on(a, DAY) >= 0 and plays_on(a, DAY) >= 0
    theirs_log = [(r.endpoint, r.status) for r in emu.requests if r.account == "acct02"]
    assert theirs_log[-3:] == [("getShowOnSpotifyStats", 200), ("getShowOnSpotifyStats", 401),
                               ("auth", 200)]  # the login page answers login_required
    assert emu.stats()["expired_accounts"] == {"spotify": ["acct02"]}


def test_control_errors_name_the_accounts(emu: Emulator) -> None:
    r = requests.post(emu.url + "/_emulator/expire/anchor?account=acct09", timeout=10)
    assert r.status_code == 400 and "acct01, acct02" in r.json()["error"]
    r = requests.post(emu.url + "/_emulator/expire/op3?account=acct01", timeout=10)
    assert r.status_code == 400 and "network's" in r.json()["error"]
    r = requests.post(emu.url + "/_emulator/expire", timeout=10)
    assert r.status_code == 400 and "?account=" in r.json()["error"]
    described = requests.get(emu.url + "/_emulator/network", timeout=10).json()
    assert [a["shows"] for a in described["accounts"]] == [
        [emu.network.datasets[k].webstation_id for k in a.shows] for a in emu.network.accounts]
    text = repr(described)
    assert not any(a.sp_dc in text or a.cookie in text for a in emu.network.accounts)


# ---------------------------------------------------------------------- concurrency in the log
def test_the_log_counts_concurrent_calls_per_account(emu: Emulator, tmp_path: Path) -> None:
    net, settings, env = configured(emu, tmp_path, "rest")
    emu.set_faults(Faults(latency_ms=150))
    keys = [s.key for s in net.shows_of_account("acct01")]  # three shows of one account
    clients = [spotify(net, k, settings, env) for k in keys]
    try:
        for c in clients:
            plays_on(c, DAY)  # each resolves its station id first, one by one
        emu.reset_stats()
        barrier = threading.Barrier(len(clients), timeout=30)

        def call(c: SpotifyGraphQLClient | AnchorClient) -> None:
            barrier.wait()
            plays_on(c, DAY)

        threads = [threading.Thread(target=call, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert emu.stats()["max_concurrent_by_account"] == {"acct01": 3}
        emu.reset_stats()
        for c in clients:  # one after another: never two at once
            plays_on(c, DAY - timedelta(days=1))
        assert emu.stats()["max_concurrent_by_account"] == {"acct01": 1}
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------------- the command line
def test_background_network_exports_each_account_and_the_network_file(tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).with_name("podcast-pipeline")), "emulator"]
    script = (f'eval "$({shlex.join(cli)} --background --port 0 --today 2025-06-01 '
              '--shows 3 --accounts 2 --env-file .emulator.env)"\n'
              'env | grep -E "^(EMU_|PODCAST_PIPELINE_NETWORK_FILE=|EMULATOR_PID=)" | sort\n')
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_", "EMU_", "PODCAST_PIPELINE_"))}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shell = dict(line.split("=", 1) for line in done.stdout.splitlines())
    pid = int(shell["EMULATOR_PID"])
    try:
        assert "3 shows on 2 accounts" in done.stderr
        assert sorted(k for k in shell if k.startswith("EMU_")) == [
            f"EMU_ACCT0{j}_{v}" for j in (1, 2) for v in ("ANCHOR_PW_S", "SP_DC", "SP_KEY")]
        path = Path(shell[NETWORK_FILE_ENV])
        assert path == tmp_path / "data" / "emulator-network.yaml" and path.is_file()
        file_env = {**os.environ, **_exports((tmp_path / ".emulator.env").read_text())}
        assert all(shell[k] == file_env[k] for k in shell)
        text = path.read_text()
        assert not any(v in text for k, v in shell.items() if k.startswith("EMU_"))
        net = load_network(environ=file_env)
        settings = Settings.from_env(file_env)
        assert [s.account for s in net.shows] == ["acct01", "acct02", "acct01"]
        with spotify(net, net.shows[1].key, settings, file_env) as client:
            assert plays_on(client, DAY) > 0
    finally:
        os.kill(pid, signal.SIGTERM)


def test_network_flags_are_checked(tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).with_name("podcast-pipeline")), "emulator", "--port", "0"]
    for flags, message in ((["--shows", "2", "--accounts", "3"], "cannot exceed --shows"),
                           (["--shows", "0"], "--shows needs a whole number >= 1"),
                           (["--shows", "2", "--expire-accounts", "acct07",
                             "--expire-after-requests", "3"], "unknown accounts ['acct07']")):
        run = subprocess.run([*cli, *flags], capture_output=True, text=True, timeout=30,
                             cwd=tmp_path)
        assert run.returncode == 2 and message in run.stderr, run.stderr
        assert run.stdout == ""


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        _, assignment = shlex.split(line)
        name, value = assignment.split("=", 1)
        out[name] = value
    return out


def test_an_op3_token_per_account_sees_only_its_shows(tmp_path: Path) -> None:
    config = EmulatorConfig(seed=7, today=TODAY)
    with Emulator(config, shows=4, accounts=2, op3_per_account=True) as emu:
        net, settings, env = configured(emu, tmp_path)
        assert [t.name for t in net.op3_tokens] == ["acct01", "acct02"]
        assert [s.op3_token for s in net.shows] == ["acct01", "acct02", "acct01", "acct02"]
        for show, ds in zip(net.shows, emu.network.datasets, strict=True):
            with Op3Client(op3_settings(net, show, settings, env), retry=FAST) as op3:
                assert len(op3.downloads(DAY, DAY)) == ds.download_count(DAY)
        # acct02's token asking for acct01's show: refused, and named in the log.
        wrong = {**env, "EMU_ACCT01_OP3_TOKEN": env["EMU_ACCT02_OP3_TOKEN"]}
        with Op3Client(op3_settings(net, net.shows[0], settings, wrong), retry=FAST) as op3, \
                pytest.raises(AccessDenied):
            op3.downloads(DAY, DAY)
        assert {r.account for r in emu.requests if r.api == "op3"} == {"acct01", "acct02"}
        # The network's main token still sees every show.
        main = {**env, "EMU_ACCT01_OP3_TOKEN": env["OP3_TOKEN"]}
        with Op3Client(op3_settings(net, net.shows[0], settings, main), retry=FAST) as op3:
            counts = op3.show_download_counts([ds.show_uuid for ds in emu.network.datasets])
        assert len(counts) == 4
