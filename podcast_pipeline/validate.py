"""Checks on configuration values, run before any request is made.

Each function raises :class:`ConfigError` naming the variable, what is wrong and what to
do. None ever repeats a secret's value: a bad character is named by its position and
Unicode name only.
"""

from __future__ import annotations

import ipaddress
import math
import os
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from podcast_pipeline.errors import FIX_STEPS, ConfigError

EMULATOR_PREFIX = "emulator-"

# What each secret may hold. A cookie value: RFC 6265's cookie-octet (printable ASCII
# without space, '"', ',', ';' and '\'), which is what a browser stores and sends. A bearer
# token: RFC 6750's b64token characters.
_COOKIE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set(" \",;\\")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")
_ALLOWED = {"ANCHOR_PW_S": ("a cookie value", _COOKIE_CHARS),
            "OP3_TOKEN": ("an API token", _TOKEN_CHARS)}
_URL_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))

# The first bytes of a DuckDB file: an 8-byte checksum, then this magic.
DUCKDB_MAGIC = b"DUCK"
SQLITE_MAGIC = b"SQLite format 3\x00"


def is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def char_name(ch: str) -> str:
    """``U+200B (ZERO WIDTH SPACE)``: readable even when the character is invisible."""
    return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed character')})"


def _first_bad(value: str, allowed: frozenset[str]) -> tuple[int, str] | None:
    for i, ch in enumerate(value, 1):
        if ch not in allowed:
            return i, ch
    return None


def base_url(var: str, value: str) -> str:
    """An http(s) base URL with nothing but scheme, host, port and path; returned normalised."""
    value = value.strip().rstrip("/")
    bad = _first_bad(value, _URL_CHARS)
    if bad:
        raise ConfigError(var, f"has a character a URL cannot hold at position {bad[0]}: "
                          f"{char_name(bad[1])}",
                          f"Retype {var} by hand, or unset it to use the default")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number 0-65535)
    except ValueError as exc:
        raise ConfigError(var, f"is not a valid URL ({exc})",
                          f"Set {var} to a URL like the default, or unset it") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(var, f"is not an http(s) URL ({value!r})",
                          f"Set {var} to a URL like the default, or unset it")
    if "@" in parts.netloc:
        # requests would turn user:pass@ into an Authorization header that replaces the
        # API's own credential, and every answer would read as "credential expired".
        raise ConfigError(var, "holds a user name or password ('…@' before the host)",
                          f"Remove it from {var}: the API's credential goes in its own "
                          "variable (ANCHOR_PW_S / OP3_TOKEN), never in the URL")
    if parts.query or value.endswith("?"):
        raise ConfigError(var, "has a query string ('?…')",
                          f"Remove everything from '?' on: {var} is only the base the "
                          "endpoints' paths are added to")
    if parts.fragment or "#" in value:
        raise ConfigError(var, "has a fragment ('#…')", f"Remove everything from '#' on in {var}")
    if parts.scheme != "https" and not is_loopback_url(value):
        # The cookie/token would travel in cleartext.
        raise ConfigError(var, "uses http:// for a non-local host",
                          f"Use https:// in {var} (plain http is only allowed for localhost)")
    return value


def _api_of(var: str) -> str:
    if var.startswith("SPOTIFY"):
        return "spotify_graphql"
    return "anchor" if var.startswith("ANCHOR") else "op3"


def secret(var: str, value: str, kind_of: str | None = None) -> None:
    """A credential is set and holds only characters its kind can carry (the kind of
    ``kind_of``, e.g. OP3_TOKEN, when ``var`` is a network file's own variable name)."""
    if not value:
        other = (" Or use the GraphQL backend the dashboard uses today: set SPOTIFY_SP_DC and "
                 "SPOTIFY_SP_KEY instead (see .env.example)." if var == "ANCHOR_PW_S" else "")
        raise ConfigError(var, "is not set", f"To fix: {FIX_STEPS[_api_of(var)]}{other}")
    kind, allowed = _ALLOWED.get(kind_of or var, ("a credential", _COOKIE_CHARS))
    bad = _first_bad(value, allowed)
    if bad:
        pos, ch = bad
        raise ConfigError(var, f"has a character that cannot be part of {kind}, at position "
                          f"{pos} of {len(value)}: {char_name(ch)}",
                          f"Paste only the value itself into {var}, without quotes or spaces; "
                          "if it went through a document or chat, copy it again straight from "
                          "the source (those can add invisible characters or turn '-' into '–')")


def emulator_guard(var: str, secret: str, base_var: str, base_url: str) -> None:
    """Emulator credentials are refused anywhere but loopback: never a real host by accident."""
    if unquote(secret).removeprefix("s:").startswith(EMULATOR_PREFIX) and not is_loopback_url(
            base_url):
        raise ConfigError(var, "holds an emulator credential but "
                          f"{base_var} points at {urlsplit(base_url).hostname}",
                          "emulator credentials can only be used with the local emulator; "
                          f"set a real credential or point {base_var} at the emulator")


def _number(raw: str | None, default: float) -> float:
    """``raw`` as a float; ``default`` when unset or blank; NaN (refused by every check) when
    it is not a number."""
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        return math.nan


def positive_number(var: str, raw: str | None, default: float) -> float:
    """A setting that must be a positive, finite number (unset or blank: ``default``)."""
    value = _number(raw, default)
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(var, f"is {raw!r}, not a positive number",
                          f"Set it to a number above 0 (default {default:g}), or unset it")
    return value


def fraction(var: str, raw: str | None, default: float) -> float:
    """A setting that must be a number in [0, 1] (unset or blank: ``default``)."""
    value = _number(raw, default)
    if not 0 <= value <= 1:
        raise ConfigError(var, f"is {raw!r}, not a fraction between 0 and 1",
                          f"Set it to e.g. {default:g} (1 turns the check off), or unset it")
    return value


def duckdb_path(var: str, path: str, *, try_open: bool = True) -> None:
    """``path`` can hold the warehouse: a DuckDB database file or nothing yet, in a folder
    that exists or can be created, writable. Checked before any request, so a wrong path
    costs no fetch. ``try_open``: also open a DuckDB file read-only (not corrupt, a version
    this DuckDB reads); a writer about to open it skips that (its own open says so)."""
    if not path.strip():
        raise ConfigError(var, "is empty", f"Set {var} to a file path such as "
                          "data/podcast.duckdb, or unset it")
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(var, f"({path}) is a folder, not a database file",
                          f"Set {var} to a file path such as data/podcast.duckdb.")
    parent = file.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(var, f"points into {parent}, which cannot be created ({exc})",
                          f"Set {var} to a file in a writable folder.") from None
    if not os.access(parent, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise ConfigError(var, f"({path}) is not writable",
                          f"Set {var} to a file in a writable folder.")
    if not file.exists():
        return  # DuckDB creates it
    try:
        with file.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ConfigError(var, f"({path}) cannot be read ({exc.strerror})",
                          f"Check the file's permissions, or point {var} elsewhere.") from None
    if head[8:12] == DUCKDB_MAGIC:
        if try_open:
            _opens(var, path, file)
        return
    if not head:
        what = "an empty file"
    elif head.startswith(SQLITE_MAGIC):
        what = "an SQLite database"
    else:
        what = "a file of another kind"
    raise ConfigError(var, f"({path}) is {what}, not a DuckDB database",
                      f"Point {var} at your DuckDB file or at a path that does not exist yet "
                      "(the pipeline creates it); move this file away if it is in the way. "
                      "Nothing was fetched")


def held_elsewhere(duckdb_error: str) -> bool:
    """Whether DuckDB refused a file because another connection holds it (not because the
    file is bad: "block" in a corruption message must not read as "lock")."""
    text = duckdb_error.lower()
    return any(k in text for k in ("could not set lock", "conflicting lock",
                                   "different configuration"))


def _opens(var: str, path: str, file: Path) -> None:
    """A DuckDB file this DuckDB can open (not corrupt, not from an incompatible version).
    A file another process holds open is fine here: the writer waits for it."""
    import duckdb

    try:
        duckdb.connect(str(file), read_only=True).close()
    except duckdb.Error as exc:
        text = str(exc)
        if held_elsewhere(text):
            return
        raise ConfigError(var, f"({path}) is a DuckDB file this DuckDB {duckdb.__version__} "
                          f"cannot open ({text[:200]})",
                          f"Restore it from a backup or point {var} at another file; nothing "
                          "was fetched") from None
