"""The network file: what loads, every malformed entry's error, secrets read only at run time,
and the single-show variables as a network of one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.network import (
    Network,
    load_network,
    op3_settings,
    spotify_settings,
)
from podcast_pipeline.settings import (
    NETWORK_FILE_ENV,
    AnchorSettings,
    Op3Settings,
    Settings,
    SpotifySettings,
)

URI = ["spotify:show:" + c * 22 for c in "ABCDE"]
UUID = [f"{i:032x}" for i in range(1, 6)]

NETWORK = f"""
accounts:
  - name: acme
    sp_dc_env: ACME_SP_DC
    sp_key_env: ACME_SP_KEY
  - name: bolt
    backend: graphql
    sp_dc_env: BOLT_SP_DC
  - name: cork
    backend: rest
    anchor_pw_s_env: CORK_ANCHOR_PW_S
op3_tokens:
  - name: main
    token_env: NET_OP3_TOKEN
  - name: other
    token_env: OTHER_OP3_TOKEN
shows:
  - key: fb37d7a4
    name: The Daily Byte
    account: acme
    spotify_show_uri: {URI[0]}
    op3_show_uuid: {UUID[0]}
    op3_token: main
  - key: a1b2c3
    name: Second Acme Show
    account: acme
    spotify_show_uri: https://creators.spotify.com/pod/show/{URI[1][-22:]}/episodes
  - key: bolt_show
    account: bolt
    op3_show_uuid: {UUID[2]}
    op3_token: other
  - key: c0ffee01
    name: Cork Talk
    account: cork
    op3_show_uuid: {UUID[3]}
    op3_token: main
  - key: op3only
    name: Only on OP3
    op3_show_uuid: {UUID[4]}
    op3_token: main
"""

SECRETS = {"ACME_SP_DC": "acme-dc-secret", "ACME_SP_KEY": "acme-key-secret",
           "BOLT_SP_DC": "bolt-dc-secret", "CORK_ANCHOR_PW_S": "s%3Acork-secret",
           "NET_OP3_TOKEN": "main-op3-secret", "OTHER_OP3_TOKEN": "other-op3-secret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "network.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def settings_for(path: Path, **extra: str) -> Settings:
    return Settings.from_env({NETWORK_FILE_ENV: str(path), **extra})


class Recording(Mapping[str, str]):
    """An environment that remembers every name asked for."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data, self.asked = data, set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.data[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return self.data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the environment must not be listed")

    def __len__(self) -> int:
        return len(self.data)


# ---------------------------------------------------------------------- a file that loads
def test_three_accounts_five_shows_load(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK)
    net = load_network(settings_for(path))
    assert net.source == str(path)
    assert [a.name for a in net.accounts] == ["acme", "bolt", "cork"]
    assert [(a.backend, a.secret_envs()) for a in net.accounts] == [
        ("graphql", ("ACME_SP_DC", "ACME_SP_KEY")), ("graphql", ("BOLT_SP_DC",)),
        ("rest", ("CORK_ANCHOR_PW_S",))]
    assert [s.key for s in net.shows] == ["fb37d7a4", "a1b2c3", "bolt_show", "c0ffee01",
                                          "op3only"]
    assert [s.key for s in net.shows_of_account("acme")] == ["fb37d7a4", "a1b2c3"]
    assert [s.key for s in net.shows_of_token("main")] == ["fb37d7a4", "c0ffee01", "op3only"]
    assert net.shows_of_account("nobody") == ()
    second = net.show("a1b2c3")
    assert second.spotify_show_uri == URI[1]  # a dashboard URL becomes the URI
    assert second.webstation_id == "a1b2c3"  # a hex key keys GraphQL rows as the REST ones
    assert net.show("bolt_show").name == "bolt_show" and net.show("bolt_show").webstation_id is None
    assert net.show("c0ffee01").webstation_id == "c0ffee01"  # REST: the key is the station
    assert net.show("op3only").account is None
    assert net.account("cork").anchor_pw_s_env == "CORK_ANCHOR_PW_S"
    with pytest.raises(KeyError):
        net.show("missing")


def test_each_show_gets_its_own_accounts_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK)
    settings = settings_for(path)
    net = load_network(settings)
    acme = spotify_settings(net, net.show("a1b2c3"), settings, SECRETS)
    assert isinstance(acme, SpotifySettings)
    assert (acme.sp_dc, acme.sp_key, acme.show_uri, acme.show_key()) == (
        "acme-dc-secret", "acme-key-secret", URI[1], "a1b2c3")
    assert "acme-dc-secret" not in repr(acme)
    bolt = spotify_settings(net, net.show("bolt_show"), settings, SECRETS)
    assert isinstance(bolt, SpotifySettings) and bolt.sp_dc == "bolt-dc-secret"
    assert bolt.sp_key is None and bolt.show_uri is None  # bolt's only show: no URI needed
    # Its rows are keyed by the file's key, which is neither a station id nor a URI id.
    assert bolt.show_key() == "bolt_show"
    cork = spotify_settings(net, net.show("c0ffee01"), settings, SECRETS)
    assert isinstance(cork, AnchorSettings)
    assert (cork.cookie, cork.webstation_id) == ("s%3Acork-secret", "c0ffee01")
    op3 = op3_settings(net, net.show("bolt_show"), settings, SECRETS)
    assert (op3.token, op3.show_uuid) == ("other-op3-secret", UUID[2])
    with pytest.raises(ConfigError, match="show 'op3only'.*has no Spotify account"):
        spotify_settings(net, net.show("op3only"), settings, SECRETS)
    with pytest.raises(ConfigError, match="show 'a1b2c3'.*has no op3_show_uuid"):
        op3_settings(net, net.show("a1b2c3"), settings, SECRETS)


def test_loading_reads_no_secret_and_a_run_reads_only_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK)
    env = Recording({NETWORK_FILE_ENV: str(path), **SECRETS})
    net = load_network(environ=env)  # builds Settings from env: only the model's variables
    assert len(net.shows) == 5
    assert env.asked.isdisjoint(SECRETS), env.asked & set(SECRETS)
    settings = settings_for(path)
    env.asked.clear()
    spotify_settings(net, net.show("bolt_show"), settings, env)
    assert env.asked == {"BOLT_SP_DC"}
    env.asked.clear()
    op3_settings(net, net.show("c0ffee01"), settings, env)
    assert env.asked == {"NET_OP3_TOKEN"}


def test_process_environment_is_read_at_run_time(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, NETWORK)
    settings = settings_for(path)
    net = load_network(settings)
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        spotify_settings(net, net.show("fb37d7a4"), settings)
    text = str(info.value)
    assert info.value.setting == "ACME_SP_DC"
    assert "is not set" in text and "account 'acme'" in text and str(path) in text
    assert "creators.spotify.com" in text  # how to get the cookie
    monkeypatch.setenv("ACME_SP_DC", "from-process")
    got = spotify_settings(net, net.show("fb37d7a4"), settings)
    assert isinstance(got, SpotifySettings) and got.sp_dc == "from-process"
    with pytest.raises(ConfigError, match="NET_OP3_TOKEN is not set.*OP3 token 'main'"):
        op3_settings(net, net.show("fb37d7a4"), settings)


@pytest.mark.parametrize(("var", "value", "match"), [
    ("ACME_SP_DC", "sp_dc=abc", "ACME_SP_DC includes the cookie name"),
    ("ACME_SP_DC", "ab c", "ACME_SP_DC has a character"),
    ("ACME_SP_DC", "emulator-sp-dc-x", "ACME_SP_DC holds an emulator credential"),
    ("CORK_ANCHOR_PW_S", "anchorpw_s=s%3Ax", "CORK_ANCHOR_PW_S includes the cookie name"),
    ("NET_OP3_TOKEN", "tok;en", "NET_OP3_TOKEN has a character that cannot be part of an API"),
])
def test_malformed_secrets_name_the_accounts_variable(tmp_path: Path, var: str, value: str,
                                                      match: str) -> None:
    path = write(tmp_path, NETWORK)
    settings = settings_for(path)
    net = load_network(settings)
    show = net.show({"ACME_SP_DC": "fb37d7a4", "CORK_ANCHOR_PW_S": "c0ffee01",
                     "NET_OP3_TOKEN": "fb37d7a4"}[var])
    env = {**SECRETS, var: value}
    with pytest.raises(ConfigError, match=match) as info:
        if var == "NET_OP3_TOKEN":
            op3_settings(net, show, settings, env)
        else:
            spotify_settings(net, show, settings, env)
    assert info.value.setting == var and value not in str(info.value)


# ---------------------------------------------------------------------- malformed files
ACCT = "accounts:\n  - name: acme\n    sp_dc_env: ACME_SP_DC\n"
TOK = "op3_tokens:\n  - name: main\n    token_env: OP3_TOKEN\n"
SHOW = "shows:\n  - key: fb37d7a4\n    account: acme\n"


@pytest.mark.parametrize(("text", "entry", "problem", "fix"), [
    (None, "the file", "does not exist", "Create it"),
    ("shows: [unclosed\n", "the file", "is not valid YAML at line 2", "Fix the syntax"),
    ("- a\n- b\n", "the file", "is not a mapping", "Start it with 'shows:'"),
    (ACCT + SHOW + "show:\n  - key: x\n", "the file", "unknown top-level entries ['show']",
     "check the spelling"),
    (ACCT, "shows", "is empty or missing", "at least one show"),
    (ACCT + "shows: fb37d7a4\n", "shows", "is not a list", "'- ' item"),
    ("accounts:\n  - name: Acme Corp\n    sp_dc_env: X\n" + SHOW, "account 'Acme Corp'",
     "is not 1-64 of a-z", "short name"),
    ("accounts:\n  - sp_dc_env: X\n" + SHOW, "accounts[0]", "has no valid name", "short name"),
    ("accounts:\n  - name: acme\n" + SHOW, "account 'acme'", "names no credential variable",
     "Set sp_dc_env"),
    ("accounts:\n  - name: acme\n    backend: soap\n    sp_dc_env: X\n" + SHOW,
     "account 'acme'", "backend is 'soap'", "anchor_pw_s_env with backend: rest"),
    ("accounts:\n  - name: acme\n    backend: rest\n    sp_dc_env: X\n" + SHOW,
     "account 'acme'", "uses backend rest but has no anchor_pw_s_env", "Set anchor_pw_s_env"),
    ("accounts:\n  - name: acme\n    sp_dc_env: AQBxyz-this-is-the-cookie-itself.sig\n" + SHOW,
     "account 'acme'", "sp_dc_env is not an environment variable name — the file holds the "
     "NAME", "ACME_SP_DC"),
    ("accounts:\n  - name: acme\n    sp_dc: secret\n" + SHOW, "account 'acme'",
     "unknown fields ['sp_dc']", "sp_dc_env"),
    (ACCT + ACCT.replace("accounts:\n", "") + SHOW, "account name 'acme'",
     "appears more than once", "its own name"),
    (TOK + "  - name: main\n    token_env: B\n" + ACCT + SHOW, "OP3 token name 'main'",
     "appears more than once", "its own name"),
    ("op3_tokens:\n  - name: main\n" + ACCT + SHOW, "OP3 token 'main'", "has no token_env",
     "Set token_env"),
    (ACCT + "shows:\n  - key: x1\n    account: acmee\n", "show 'x1'",
     "names account 'acmee', which is not under accounts (known: acme)", "fix the name"),
    (ACCT + SHOW + "  - key: fb37d7a4\n    account: acme\n", "show key 'fb37d7a4'",
     "appears more than once", "its own key"),
    (ACCT + "shows:\n  - name: No Key\n    account: acme\n", "shows[0]", "has no key",
     "web station id"),
    (ACCT + "shows:\n  - key: my-show\n    account: acme\n", "show 'my-show'",
     "is not 1-64 letters, digits or '_'", "web station id"),
    (ACCT + SHOW + "    spotify_show_uri: spotify:show:short\n", "show 'fb37d7a4'",
     "is not a Spotify show URI", "22 letters and digits"),
    (ACCT + SHOW + "    webstation_id: XYZ\n", "show 'fb37d7a4'",
     "web station id 'XYZ' is not 6-12 lowercase hex", "short hex id"),
    (ACCT + TOK + SHOW + "    op3_show_uuid: abc\n    op3_token: main\n", "show 'fb37d7a4'",
     "op3_show_uuid 'abc' is not 32 lowercase hex", "op3.dev/show/<uuid>"),
    (ACCT + SHOW + f"    op3_show_uuid: {UUID[0]}\n", "show 'fb37d7a4'",
     "has op3_show_uuid but no op3_token", "op3_tokens"),
    (ACCT + TOK + SHOW + "    op3_token: main\n", "show 'fb37d7a4'",
     "has op3_token but no op3_show_uuid", "Set op3_show_uuid"),
    (ACCT + TOK + SHOW + f"    op3_show_uuid: {UUID[0]}\n    op3_token: mian\n",
     "show 'fb37d7a4'", "names OP3 token 'mian', which is not under op3_tokens (known: main)",
     "fix the name"),
    (ACCT + "shows:\n  - key: lonely\n    name: Nowhere\n", "show 'lonely'",
     "has neither an account nor an op3_show_uuid", "Set account"),
    (ACCT + SHOW + "    op3_uuid: x\n", "show 'fb37d7a4'", "unknown fields ['op3_uuid']",
     "op3_show_uuid"),
    (ACCT + SHOW + "    name: [a, b]\n", "show 'fb37d7a4'", "field name is not text",
     "plain text"),
    (ACCT + "shows:\n  - fb37d7a4\n", "shows[0]", "is not a mapping", "'key: value'"),
    (ACCT + SHOW + f"    spotify_show_uri: {URI[0]}\n  - key: a1b2c3\n    account: acme\n",
     "show 'a1b2c3'", "has no spotify_show_uri, and its account 'acme' has 2 shows",
     "spotify:show:<id>"),
    (ACCT + SHOW + f"    spotify_show_uri: {URI[0]}\n  - key: a1b2c3\n    account: acme\n"
     f"    spotify_show_uri: {URI[0]}\n", f"show spotify_show_uri '{URI[0]}'",
     "appears more than once", "its own spotify_show_uri"),
])
def test_malformed_file_is_a_config_error_naming_file_entry_and_fix(
        tmp_path: Path, text: str | None, entry: str, problem: str, fix: str) -> None:
    path = tmp_path / "network.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_network(settings_for(path))
    message = str(info.value)
    assert str(path) in message and NETWORK_FILE_ENV in message
    assert entry in message, message
    assert problem in message, message
    assert fix in message, message


def test_a_secret_pasted_into_the_file_is_not_repeated(tmp_path: Path) -> None:
    cookie = "AQDxk1d-very-secret-cookie-value_0123456789"
    path = write(tmp_path, ACCT.replace("ACME_SP_DC", cookie) + SHOW)
    with pytest.raises(ConfigError) as info:
        load_network(settings_for(path))
    assert cookie not in str(info.value) and "NAME of the variable" in str(info.value)


# ---------------------------------------------------------------------- the network of one
SINGLE_REST = {"ANCHOR_WEBSTATION_ID": "fb37d7a4", "ANCHOR_PW_S": "s%3Areal-cookie",
               "OP3_TOKEN": "tok-abc", "OP3_SHOW_UUID": UUID[0],
               "OP3_URL_PREFIX": "https://op3.dev/e/example.com/*"}
SINGLE_GRAPHQL = {"SPOTIFY_SP_DC": "dc-value", "SPOTIFY_SP_KEY": "key-value",
                  "SPOTIFY_SHOW_URI": URI[2]}


@pytest.mark.parametrize("env", [
    SINGLE_REST,
    {**SINGLE_REST, **SINGLE_GRAPHQL},
    {**SINGLE_GRAPHQL, "SPOTIFY_BACKEND": "graphql"},
])
def test_single_show_variables_are_a_network_of_one(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    net = load_network(settings)
    assert isinstance(net, Network) and net.source is None
    assert [a.name for a in net.accounts] == ["default"]
    assert [t.name for t in net.op3_tokens] == ["default"]
    (show,) = net.shows
    today = settings.spotify_view()
    assert show.key == today.show_key()  # the key the tables use today
    assert show.account == "default" and net.shows_of_account("default") == (show,)
    assert net.account("default").backend == settings.spotify_backend_name()
    assert spotify_settings(net, show, settings) == today
    assert spotify_settings(net, show, settings, env) == today
    if "OP3_TOKEN" in env:
        assert op3_settings(net, show, settings) == settings.op3()
        assert op3_settings(net, show, settings).url_prefix == env["OP3_URL_PREFIX"]


def test_network_of_one_loads_with_nothing_set_and_reports_at_run_time() -> None:
    settings = Settings.from_env({})
    net = load_network(settings)
    (show,) = net.shows
    assert show.key == "default" and show.account == "default"
    with pytest.raises(ConfigError, match="ANCHOR_WEBSTATION_ID is not set"):  # as today
        spotify_settings(net, show, settings)
    with pytest.raises(ConfigError, match="OP3_TOKEN is not set"):
        op3_settings(net, show, settings)
    bad = Settings.from_env({"SPOTIFY_BACKEND": "soap", "ANCHOR_WEBSTATION_ID": "fb37d7a4"})
    (show,) = load_network(bad).shows  # a bad backend fails the runs, not the load
    assert show.key == "fb37d7a4"
    with pytest.raises(ConfigError, match="SPOTIFY_BACKEND is 'soap'"):
        spotify_settings(load_network(bad), show, bad)


def test_network_file_setting_from_the_environment(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, NETWORK)
    monkeypatch.setenv(NETWORK_FILE_ENV, str(path))
    assert Settings.load().network_file == str(path)
    assert len(load_network().shows) == 5
    assert Settings.from_env({NETWORK_FILE_ENV: "  "}).network_file is None
    assert isinstance(op3_settings(load_network(), load_network().show("op3only"),
                                   Settings.load(), SECRETS), Op3Settings)


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Many shows (a network)"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml"))]
    net = load_network(settings_for(write(tmp_path, example)))
    assert [(s.key, s.account) for s in net.shows] == [("fb37d7a4", "acme"), ("a1b2c3d4", "bolt")]
    assert net.account("bolt").backend == "rest" and net.show("a1b2c3d4").webstation_id == "a1b2c3d4"
    assert [t.token_env for t in net.op3_tokens] == ["OP3_TOKEN"]


def test_an_edited_file_is_read_again_at_once(tmp_path: Path) -> None:
    """Steps reuse the parsed file while its text is unchanged; an edit (even within the same
    second and of the same size) is what the next load sees, and a broken edit fails it."""
    path = write(tmp_path, NETWORK)
    first = load_network(settings_for(path))
    assert load_network(settings_for(path)) is first  # unchanged text: parsed once
    renamed = NETWORK.replace("name: The Daily Byte", "name: The Daily Bite")  # same size
    path.write_text(renamed, encoding="utf-8")
    again = load_network(settings_for(path))
    assert [s.name for s in again.shows][0] == "The Daily Bite"
    path.write_text(renamed.replace("account: bolt", "account: nobody"), encoding="utf-8")
    with pytest.raises(ConfigError, match="nobody"):
        load_network(settings_for(path))
    with pytest.raises(ConfigError, match="nobody"):  # a broken file is not kept either
        load_network(settings_for(path))
