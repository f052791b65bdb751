"""Scrub secrets out of text before it is logged, stored or raised.

Clients register the secrets they hold; anything that turns a response, path or
exception into text passes it through :func:`redact`. Belt and braces: secrets
only ever travel in a Cookie or Authorization header, so this should find nothing.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

_lock = threading.Lock()
_secrets: set[str] = set()

# Query parameters that carry credentials in either API; their values are always masked.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|anchorpw_s|access_token|api_key)=)[^&#\s]*")


def register_secret(value: str | None) -> None:
    """Remember a secret (and its URL-encoded forms) so :func:`redact` can mask it."""
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.update({value, quote(value, safe=""), unquote(value)})


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and credential query value masked."""
    if not text:
        return text
    text = _SECRET_PARAMS.sub(r"\1***", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
