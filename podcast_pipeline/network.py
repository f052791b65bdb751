"""The network: which shows the pipeline serves, on which accounts, with which credentials.

A YAML file named by ``PODCAST_PIPELINE_NETWORK_FILE`` lists Spotify for Creators accounts,
OP3 tokens and shows (see README "Many shows (a network)"). The file holds only the *names*
of the environment variables that hold the secrets, and loading it reads none of them: the
definitions load with every secret unset, and each show's run reads its own account's
variables (:func:`spotify_settings`, :func:`op3_settings`), so a missing one fails only the
shows of that account, naming the variable.

Without the setting, today's single-show variables (ANCHOR_*, SPOTIFY_*, OP3_*) form a
network of one: account ``default``, OP3 token ``default``, one show keyed as today.

Every problem in the file is a :class:`ConfigError` naming the file, the entry and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from podcast_pipeline import validate
from podcast_pipeline.errors import FIX_STEPS, ConfigError
from podcast_pipeline.settings import (
    NETWORK_FILE_ENV,
    AnchorSettings,
    Op3Settings,
    Settings,
    SpotifySettings,
    show_uri,
)

DEFAULT_NAME = "default"  # the account and OP3 token of the network of one
BACKENDS = ("graphql", "rest")

_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
# Show keys become parts of Dagster names (asset keys, partition keys, tags): no '-' or '.'.
_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WEBSTATION_ID = re.compile(r"^[0-9a-f]{6,12}$")
_SHOW_UUID = re.compile(r"^[0-9a-f]{32}$")

_ACCOUNT_FIELDS = ("name", "backend", "sp_dc_env", "sp_key_env", "anchor_pw_s_env")
_TOKEN_FIELDS = ("name", "token_env")
_SHOW_FIELDS = ("key", "name", "account", "spotify_show_uri", "webstation_id",
                "op3_show_uuid", "op3_token", "op3_url_prefix")


@dataclass(frozen=True)
class Account:
    """A Spotify for Creators login; it usually owns several shows."""

    name: str
    backend: str  # graphql | rest
    sp_dc_env: str | None = None
    sp_key_env: str | None = None
    anchor_pw_s_env: str | None = None

    def secret_envs(self) -> tuple[str, ...]:
        """The variables this account's credential is read from, for messages."""
        names = (self.sp_dc_env, self.sp_key_env) if self.backend == "graphql" else (
            self.anchor_pw_s_env,)
        return tuple(n for n in names if n)


@dataclass(frozen=True)
class Op3Token:
    name: str
    token_env: str


@dataclass(frozen=True)
class Show:
    """One show: its warehouse key (the rows' ``show_id``) and where each source finds it."""

    key: str
    name: str
    account: str | None = None
    spotify_show_uri: str | None = None
    webstation_id: str | None = None
    op3_show_uuid: str | None = None
    op3_token: str | None = None
    op3_url_prefix: str | None = None


@dataclass(frozen=True)
class Network:
    accounts: tuple[Account, ...]
    op3_tokens: tuple[Op3Token, ...]
    shows: tuple[Show, ...]
    source: str | None = None  # the file it came from; None: the single-show variables

    def show(self, key: str) -> Show:
        for show in self.shows:
            if show.key == key:
                return show
        raise KeyError(f"no show {key!r} in {self.where()}")

    def account(self, name: str) -> Account:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account {name!r} in {self.where()}")

    def op3_token(self, name: str) -> Op3Token:
        for token in self.op3_tokens:
            if token.name == name:
                return token
        raise KeyError(f"no OP3 token {name!r} in {self.where()}")

    def shows_of_account(self, name: str) -> tuple[Show, ...]:
        return tuple(s for s in self.shows if s.account == name)

    def shows_of_token(self, name: str) -> tuple[Show, ...]:
        return tuple(s for s in self.shows if s.op3_token == name)

    def where(self) -> str:
        return self.source or "the single-show variables"

    def restrict(self, shows: Iterable[Show]) -> Network:
        """The same accounts, tokens and file, with only ``shows``: one code location's part
        (``locations.py``)."""
        return replace(self, shows=tuple(shows))

    def variables(self, api: str, name: str) -> dict[str, str]:
        """The single-show credential variables → the names this account (``api`` "anchor")
        or OP3 token reads instead, from the file (for messages, alerts and fix steps)."""
        if api == "op3":
            return {"OP3_TOKEN": self.op3_token(name).token_env}
        a = self.account(name)
        names = {"SPOTIFY_SP_DC": a.sp_dc_env,
                 "SPOTIFY_SP_KEY": a.sp_key_env or (a.sp_dc_env and
                                                    "the variable named by sp_key_env"),
                 "ANCHOR_PW_S": a.anchor_pw_s_env}
        return {k: v for k, v in names.items() if v}

    def in_own_words(self, api: str, show: Show, text: str) -> str:
        """``text`` (a message naming the single-show variables) as this show's: its
        account's or token's variables, its entry's fields, and the file that names them."""
        if self.source is None:
            return text
        credential = show.account if api == "anchor" else show.op3_token
        names = self.variables(api, credential) if credential else {}
        entry = f"of show '{show.key}' in {NETWORK_FILE_ENV}"
        names |= ({"SPOTIFY_SHOW_URI": f"spotify_show_uri {entry}",
                   "ANCHOR_WEBSTATION_ID": f"webstation_id {entry}"} if api == "anchor" else
                  {"OP3_SHOW_UUID": f"op3_show_uuid {entry}"})
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        renamed = pattern.sub(lambda m: names[m.group(1)], text)
        if renamed != text and self.source not in renamed:
            whose = f"account '{credential}'" if api == "anchor" else f"OP3 token '{credential}'"
            renamed += f" ({NETWORK_FILE_ENV}={self.source} names the variables of {whose}.)"
        return renamed


# ---------------------------------------------------------------------- loading
def load_network(settings: Settings | None = None,
                 environ: Mapping[str, str] | None = None) -> Network:
    """The configured network; reads no secret (``environ`` only builds ``settings``)."""
    if settings is None:
        settings = Settings.from_env(environ)
    path = settings.network_file
    if not path:
        return _network_of_one(settings)
    return _load_file(Path(path))


# Every step reads its show's entry, and parsing a 100-show file is ~0.35 s: keep the parsed
# network per path and text. Reading the file is cheap, so an edit is seen at once; a file
# with a mistake is never kept, so its error is raised every time.
_PARSED: dict[tuple[str, str], Network] = {}


def _network_of_one(settings: Settings) -> Network:
    """Today's single-show variables as a network of one show, keyed as the tables are today."""
    try:
        backend = settings.spotify_backend_name()
    except ConfigError:
        backend = "auto"  # a bad SPOTIFY_BACKEND: spotify_settings raises it, for this show only
    account = Account(DEFAULT_NAME, backend, sp_dc_env="SPOTIFY_SP_DC",
                      sp_key_env="SPOTIFY_SP_KEY", anchor_pw_s_env="ANCHOR_PW_S")
    token = Op3Token(DEFAULT_NAME, "OP3_TOKEN")
    webstation = (settings.anchor_webstation_id or "").strip() or None
    uri = (settings.spotify_show_uri or "").strip() or None
    uuid = (settings.op3_show_uuid or "").strip() or None
    key = webstation or _uri_id(uri) or uuid or DEFAULT_NAME
    show = Show(key=key, name=key, account=DEFAULT_NAME, spotify_show_uri=uri,
                webstation_id=webstation, op3_show_uuid=uuid, op3_token=DEFAULT_NAME,
                op3_url_prefix=settings.op3_url_prefix)
    return Network((account,), (token,), (show,), source=None)


def _uri_id(uri: str | None) -> str | None:
    if not uri:
        return None
    try:
        return show_uri(uri).rsplit(":", 1)[1]
    except ConfigError:
        return None  # malformed: the Spotify steps report it


class _File:
    """Builds the ConfigErrors of one file: each names the file, the entry and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, entry: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{NETWORK_FILE_ENV} ({self.path}): {entry}", problem, fix)


def _load_file(path: Path) -> Network:
    f = _File(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise f.error("the file", "does not exist",
                      f"Create it (see README \"Many shows (a network)\") or unset "
                      f"{NETWORK_FILE_ENV} to use the single-show variables") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise f.error("the file", f"cannot be read ({type(exc).__name__})",
                      "Make it a readable UTF-8 text file") from None
    network = _PARSED.get((str(path), text))
    if network is None:
        network = _parse(f, text)
        if len(_PARSED) >= 8:
            _PARSED.clear()
        _PARSED[(str(path), text)] = network
    return network


def _parse(f: _File, text: str) -> Network:
    import yaml  # PyYAML, pinned; imported here so the single-show path does not need it

    try:
        # BaseLoader: every value stays text, so a hex uuid of digits keeps its leading zeros
        # and a key like 'no' or '1e5' is not turned into false or a number.
        data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (BaseLoader builds no objects)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise f.error("the file", f"is not valid YAML{at}",
                      "Fix the syntax there (indentation, a missing ':' or an unclosed "
                      "quote); the README shows an example") from None
    if not isinstance(data, dict):
        raise f.error("the file", "is not a mapping with accounts, op3_tokens and shows",
                      "Start it with 'shows:' (and 'accounts:' / 'op3_tokens:' as needed), "
                      "as in the README example")
    unknown = sorted(set(map(str, data)) - {"accounts", "op3_tokens", "shows"})
    if unknown:
        raise f.error("the file", f"has unknown top-level entries {unknown}",
                      "Use only accounts, op3_tokens and shows (check the spelling)")
    accounts = tuple(_account(f, i, e) for i, e in enumerate(_entries(f, data, "accounts")))
    tokens = tuple(_token(f, i, e) for i, e in enumerate(_entries(f, data, "op3_tokens")))
    _unique(f, "account", [a.name for a in accounts], "name")
    _unique(f, "OP3 token", [t.name for t in tokens], "name")
    show_entries = _entries(f, data, "shows")
    if not show_entries:
        raise f.error("shows", "is empty or missing", "List at least one show")
    by_account = {a.name: a for a in accounts}
    by_token = {t.name: t for t in tokens}
    shows = tuple(_show(f, i, e, by_account, by_token) for i, e in enumerate(show_entries))
    _unique(f, "show", [s.key for s in shows], "key")
    _unique(f, "show", [s.spotify_show_uri for s in shows if s.spotify_show_uri],
            "spotify_show_uri")
    _unique(f, "show", [s.webstation_id for s in shows if s.webstation_id], "webstation_id")
    _unique(f, "show", [s.op3_show_uuid for s in shows if s.op3_show_uuid], "op3_show_uuid")
    for account in accounts:
        owned = [s for s in shows if s.account == account.name]
        if account.backend == "graphql" and len(owned) > 1:
            for s in owned:
                if not s.spotify_show_uri:
                    raise f.error(f"show '{s.key}'", f"has no spotify_show_uri, and its "
                                  f"account '{account.name}' has {len(owned)} shows",
                                  "Set spotify_show_uri: spotify:show:<id> (the id in the "
                                  "show's dashboard URL) so each show asks for its own data")
    return Network(accounts, tokens, shows, source=str(f.path))


def _entries(f: _File, data: dict, section: str) -> list[Any]:
    value = data.get(section)
    if value is None:
        return []
    if not isinstance(value, list):
        raise f.error(section, "is not a list", f"Write each entry of {section} as a "
                      "'- ' item, as in the README example")
    return value


def _fields(f: _File, entry: str, raw: Any, allowed: tuple[str, ...],
            kind: str, id_field: str) -> dict[str, str]:
    """The entry's fields as text; errors name it by its name/key when it has one."""
    if isinstance(raw, dict) and isinstance(raw.get(id_field), str) and raw[id_field].strip():
        entry = f"{kind} '{raw[id_field].strip()}'"
    if not isinstance(raw, dict):
        raise f.error(entry, "is not a mapping", "Write it as 'key: value' lines, as in the "
                      "README example")
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise f.error(entry, f"has unknown fields {unknown}",
                      f"Use only {', '.join(allowed)} (check the spelling)")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if v is None:
            continue
        if not isinstance(v, str):
            raise f.error(entry, f"field {k} is not text", f"Write {k} as plain text")
        text = str(v).strip()
        if text:
            out[str(k)] = text
    return out


def _env_name(f: _File, entry: str, fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not _ENV_NAME.match(value):
        hint = (" — the file holds the NAME of the variable, never the secret itself; move the "
                "value into an environment variable and name that here"
                if len(value) > 20 or not value.isascii() else "")
        raise f.error(entry, f"{name} is not an environment variable name{hint}",
                      f"Set {name} to a name like ACME_SP_DC (letters, digits, '_')")
    return value


def _named(f: _File, where: str, raw: Any, allowed: tuple[str, ...], kind: str,
           example: str) -> tuple[dict[str, str], str, str]:
    """An entry's fields, its name, and how errors call it; a missing or bad name raises."""
    fields = _fields(f, where, raw, allowed, kind, "name")
    name = fields.get("name", "")
    entry = f"{kind} '{name}'" if name else where
    if not _NAME.match(name):
        raise f.error(entry, "has no valid name" if not name else f"name {name!r} is not "
                      "1-64 of a-z, 0-9, '_' and '-'", f"Give it a short name like {example}")
    return fields, name, entry


def _account(f: _File, index: int, raw: Any) -> Account:
    fields, name, entry = _named(f, f"accounts[{index}]", raw, _ACCOUNT_FIELDS, "account",
                                 "acme")
    envs = {k: _env_name(f, entry, fields, k) for k in ("sp_dc_env", "sp_key_env",
                                                       "anchor_pw_s_env")}
    backend = fields.get("backend") or ("graphql" if envs["sp_dc_env"] else
                                        "rest" if envs["anchor_pw_s_env"] else "")
    if backend not in BACKENDS:
        raise f.error(entry, f"backend is {backend!r}" if backend else
                      "names no credential variable",
                      "Set sp_dc_env (and sp_key_env) for the GraphQL backend, or "
                      "anchor_pw_s_env with backend: rest")
    need = "sp_dc_env" if backend == "graphql" else "anchor_pw_s_env"
    if not envs[need]:
        raise f.error(entry, f"uses backend {backend} but has no {need}",
                      f"Set {need} to the name of the variable that holds the cookie")
    return Account(name, backend, envs["sp_dc_env"], envs["sp_key_env"],
                   envs["anchor_pw_s_env"])


def _token(f: _File, index: int, raw: Any) -> Op3Token:
    fields, name, entry = _named(f, f"op3_tokens[{index}]", raw, _TOKEN_FIELDS, "OP3 token",
                                 "main")
    token_env = _env_name(f, entry, fields, "token_env")
    if not token_env:
        raise f.error(entry, "has no token_env",
                      "Set token_env to the name of the variable that holds the token")
    return Op3Token(name, token_env)


def _show(f: _File, index: int, raw: Any, accounts: Mapping[str, Account],
          tokens: Mapping[str, Op3Token]) -> Show:
    fields = _fields(f, f"shows[{index}]", raw, _SHOW_FIELDS, "show", "key")
    key = fields.get("key", "")
    entry = f"show '{key}'" if key else f"shows[{index}]"
    if not _KEY.match(key):
        raise f.error(entry, "has no key" if not key else f"key {key!r} is not 1-64 letters, "
                      "digits or '_'", "Set key to the show's web station id (the short hex "
                      "id in its dashboard URL), or another short id of letters and digits")
    account_name = fields.get("account")
    account = None
    if account_name is not None:
        account = accounts.get(account_name)
        if account is None:
            known = ", ".join(sorted(accounts)) or "none"
            raise f.error(entry, f"names account '{account_name}', which is not under "
                          f"accounts (known: {known})", "Add that account or fix the name")
    uri = fields.get("spotify_show_uri")
    if uri is not None:
        try:
            uri = show_uri(uri)
        except ConfigError:
            raise f.error(entry, f"spotify_show_uri {uri!r} is not a Spotify show URI",
                          "Use spotify:show:<22 letters and digits>, e.g. from the dashboard "
                          "URL https://creators.spotify.com/pod/show/<id>/episodes") from None
    webstation = fields.get("webstation_id")
    if account is not None and account.backend == "rest" and webstation is None:
        webstation = key  # the REST backend's show is its web station; the key names it
    elif webstation is None and account is not None and _WEBSTATION_ID.match(key):
        webstation = key  # keys the GraphQL rows as the REST ones, as today
    if webstation is not None and not _WEBSTATION_ID.match(webstation):
        raise f.error(entry, f"web station id {webstation!r} is not 6-12 lowercase hex "
                      "characters", "Set key (or webstation_id) to the short hex id from the "
                      "show's dashboard URL, e.g. fb37d7a4")
    uuid = fields.get("op3_show_uuid")
    if uuid is not None:
        uuid = uuid.replace("-", "") if re.fullmatch(r"[0-9a-f-]{36}", uuid) else uuid
        if not _SHOW_UUID.match(uuid):
            raise f.error(entry, f"op3_show_uuid {uuid!r} is not 32 lowercase hex characters",
                          "Copy the uuid from the show's OP3 stats page URL "
                          "(https://op3.dev/show/<uuid>)")
    token = fields.get("op3_token")
    if uuid is not None and token is None:
        raise f.error(entry, "has op3_show_uuid but no op3_token",
                      "Set op3_token to the name of an entry under op3_tokens")
    if token is not None:
        if uuid is None:
            raise f.error(entry, "has op3_token but no op3_show_uuid",
                          "Set op3_show_uuid (from https://op3.dev/show/<uuid>) or remove "
                          "op3_token")
        if token not in tokens:
            known = ", ".join(sorted(tokens)) or "none"
            raise f.error(entry, f"names OP3 token '{token}', which is not under op3_tokens "
                          f"(known: {known})", "Add that token or fix the name")
    if account is None and uuid is None:
        raise f.error(entry, "has neither an account nor an op3_show_uuid",
                      "Set account (Spotify for Creators) and/or op3_show_uuid with op3_token")
    return Show(key=key, name=fields.get("name") or key, account=account_name,
                spotify_show_uri=uri, webstation_id=webstation, op3_show_uuid=uuid,
                op3_token=token, op3_url_prefix=fields.get("op3_url_prefix"))


def _unique(f: _File, kind: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise f.error(f"{kind} {what} '{value}'", "appears more than once",
                          f"Give each {kind} its own {what}")
        seen.add(value)


# ---------------------------------------------------------------------- a show's settings
def _secret(var: str, settings: Settings, environ: Mapping[str, str] | None) -> str:
    """The variable's value: from ``environ`` when given; else from ``settings`` for its own
    fields (so a model built from a mapping stays the truth), else from the process."""
    if environ is not None:
        return (environ.get(var) or "").strip()
    fields = {alias: name for name, alias in Settings.variables().items()}
    if var in fields:
        value = getattr(settings, fields[var])
        if value is None:
            return ""
        return (value.get_secret_value() if hasattr(value, "get_secret_value")
                else str(value)).strip()
    return (os.environ.get(var) or "").strip()


def _unset(network: Network, var: str, owner: str, field_: str, api: str) -> ConfigError:
    return ConfigError(var, f"is not set (named by {field_} of {owner} in {network.source})",
                       f"Set {var} in .env or the environment. To get the value: "
                       f"{FIX_STEPS[api]}")


def spotify_settings(network: Network, show: Show, settings: Settings,
                     environ: Mapping[str, str] | None = None
                     ) -> SpotifySettings | AnchorSettings:
    """The show's Spotify for Creators settings, its account's secrets read now."""
    if network.source is None:  # the network of one: exactly today's settings
        return (Settings.from_env(environ) if environ is not None else settings).spotify_view()
    if show.account is None:
        raise ConfigError(f"{NETWORK_FILE_ENV} ({network.source}): show '{show.key}'",
                          "has no Spotify account", "Set account: for it in the file, or "
                          "leave its Spotify tables unmaterialized")
    account = network.account(show.account)
    owner = f"account '{account.name}'"
    if account.backend == "rest":
        var = account.anchor_pw_s_env or ""
        cookie = _secret(var, settings, environ)
        if not cookie:
            raise _unset(network, var, owner, "anchor_pw_s_env", "anchor")
        _check_cookie(var, cookie, "anchorpw_s", "ANCHOR_BASE_URL", settings.anchor_base_url)
        return AnchorSettings(webstation_id=show.webstation_id or show.key, cookie=cookie,
                              base_url=settings.anchor_base_url, key=show.key)
    var = account.sp_dc_env or ""
    sp_dc = _secret(var, settings, environ)
    if not sp_dc:
        raise _unset(network, var, owner, "sp_dc_env", "spotify_graphql")
    _check_cookie(var, sp_dc, "sp_dc", "SPOTIFY_ACCOUNTS_URL", settings.spotify_accounts_url)
    sp_key = _secret(account.sp_key_env, settings, environ) if account.sp_key_env else ""
    if sp_key:
        _check_cookie(account.sp_key_env or "", sp_key, "sp_key", "SPOTIFY_ACCOUNTS_URL",
                      settings.spotify_accounts_url)
    for base_var, url in (("SPOTIFY_GRAPHQL_URL", settings.spotify_graphql_url),
                          ("SPOTIFY_LEGACY_API_URL", settings.spotify_legacy_api_url)):
        validate.emulator_guard(var, sp_dc, base_var, url)
    return SpotifySettings(sp_dc=sp_dc, sp_key=sp_key or None, show_uri=show.spotify_show_uri,
                           webstation_id=show.webstation_id,
                           accounts_url=settings.spotify_accounts_url,
                           graphql_url=settings.spotify_graphql_url,
                           legacy_url=settings.spotify_legacy_api_url, key=show.key)


def _check_cookie(var: str, value: str, cookie: str, base_var: str, base_url: str) -> None:
    """The checks the settings views make, naming the account's own variable."""
    validate.secret(var, value, kind_of="ANCHOR_PW_S" if cookie == "anchorpw_s" else None)
    if value.lower().startswith(cookie + "="):
        raise ConfigError(var, "includes the cookie name",
                          f"Put only the value after '{cookie}=' into {var}")
    validate.emulator_guard(var, value, base_var, base_url)


def op3_settings(network: Network, show: Show, settings: Settings,
                 environ: Mapping[str, str] | None = None) -> Op3Settings:
    """The show's OP3 settings, its token read now."""
    if network.source is None:
        return (Settings.from_env(environ) if environ is not None else settings).op3()
    where = f"{NETWORK_FILE_ENV} ({network.source}): show '{show.key}'"
    if show.op3_show_uuid is None or show.op3_token is None:
        raise ConfigError(where, "has no op3_show_uuid", "Set op3_show_uuid and op3_token "
                          "for it in the file, or leave its OP3 tables unmaterialized")
    token = network.op3_token(show.op3_token)
    value = _secret(token.token_env, settings, environ)
    if not value:
        raise _unset(network, token.token_env, f"OP3 token '{token.name}'", "token_env", "op3")
    validate.secret(token.token_env, value, kind_of="OP3_TOKEN")
    validate.emulator_guard(token.token_env, value, "OP3_BASE_URL", settings.op3_base_url)
    return Op3Settings(token=value, show_uuid=show.op3_show_uuid,
                       base_url=settings.op3_base_url, url_prefix=show.op3_url_prefix)
