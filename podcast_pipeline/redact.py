"""Scrub secrets out of text before it is logged, stored or raised.

Clients and alert channels register the secrets they hold; anything that turns a
response, path, exception or cell into text passes it through :func:`redact`. Secrets
only ever travel in a Cookie or Authorization header, so this should rarely find
anything, but an API may echo what it was sent: every form a body could carry it in
is masked (as given, URL-encoded or decoded, base64 / base64url at any offset, hex, and
JSON with every character escaped).
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
MIN_LENGTH = 4  # shorter "secrets" would mask ordinary words
_B64_CORE_MIN = 8  # a base64 fragment shorter than this could match anything

_lock = threading.Lock()
_forms: set[str] = set()
_ordered: tuple[str, ...] = ()
_pattern: re.Pattern[str] | None = None

# Query parameters that carry credentials in either API; their values are always masked.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|anchorpw_s|access_token|api_key)=)[^&#\s]*")


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of ``raw`` wherever it sits in an encoded stream.

    Inside a longer encoded text the secret starts at byte offset 0, 1 or 2 of a 3-byte
    group; for each, the characters that depend only on the secret's bytes are a fixed
    string (the first and last group also carry neighbouring bytes, so they are left out).
    """
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms.update({whole, whole.rstrip("=")})
        for offset in range(3):
            text = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = 4 if offset else 0  # the first group mixes in the preceding bytes
            usable = (offset + len(raw)) // 3 * 4  # whole groups made of the secret's bytes
            core = text[start:usable]
            if len(core) >= _B64_CORE_MIN:
                forms.add(core)
    return forms


def _forms_of(value: str) -> set[str]:
    texts = {value, unquote(value), quote(value, safe=""), quote_plus(value, safe=""),
             quote(unquote(value), safe="")}
    forms = set(texts)
    for text in texts:
        raw = text.encode()
        forms |= _base64_forms(raw)
        forms |= {raw.hex(), raw.hex().upper()}
        escaped = "".join(f"\\u{ord(c):04x}" for c in text)  # JSON with every char escaped
        forms |= {escaped, escaped.upper().replace("\\U", "\\u")}
    return {f for f in forms if len(f) >= MIN_LENGTH}


def register_secret(value: str | None) -> None:
    """Remember a secret (and every encoded form of it) so :func:`redact` masks it."""
    global _ordered, _pattern
    if not value or len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _forms:
            return
        _forms.update(_forms_of(value))
        _ordered = tuple(sorted(_forms, key=len, reverse=True))  # longest first: whole masks
        _pattern = re.compile("|".join(re.escape(f) for f in _ordered))


def register_url(url: str | None) -> None:
    """A URL that is itself a credential (a Zapier / n8n / Slack webhook): mask the whole
    URL and its path with query, which is how HTTP libraries quote it in their errors."""
    if not url:
        return
    register_secret(url)
    register_secret(url.rstrip("/"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail.strip("/")) >= 8:  # a bare "/hook" path is no secret on its own
        register_secret(tail)
        register_secret(tail.rstrip("/"))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and credential query value masked."""
    if not text:
        return text
    if _may_carry_param(text):
        text = _SECRET_PARAMS.sub(r"\1" + MASK, text)
    return _pattern.sub(MASK, text) if contains_secret(text) and _pattern else text


_MANY = 50_000  # more '?' and '&' than this: one regex scan beats a match at each


def _may_carry_param(text: str) -> bool:
    """Whether ``_SECRET_PARAMS`` matches, without its case-insensitive scan of every
    character (0.15 s per 8 MB page that has none): every match starts at a '?' or '&',
    so the same regex is tried only where one is (found by ``str.find``, fast)."""
    if text.count("?") + text.count("&") > _MANY:
        return _SECRET_PARAMS.search(text) is not None
    for mark in "?&":
        at = text.find(mark)
        while at != -1:
            if _SECRET_PARAMS.match(text, at):
                return True
            at = text.find(mark, at + 1)
    return False


def contains_secret(text: str) -> bool:
    """Whether any form of a registered secret is in ``text`` (plain substring search,
    several times faster than the masking regex on multi-megabyte bodies)."""
    with _lock:
        forms = _ordered
    return bool(text) and any(f in text for f in forms)


def scrub_frame(frame: Any) -> Any:
    """Mask registered secrets in a DataFrame's text cells (an API that echoed one, also
    JSON-escaped, which masking the raw body cannot see). Returns the frame, changed in
    place only where a secret was found."""
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object or str(s.dtype) in ("str", "string"):
            texts = s.dropna().tolist()  # a list: iterating a pandas array is per-cell slow
            if texts and contains_secret("\n".join(map(str, texts))):
                frame[col] = s.map(lambda v: redact(v) if isinstance(v, str) else v)
    return frame
