"""Casting parsed API values to the warehouse contract of :mod:`podcast_pipeline.tables`.

Shared by both clients. A value either is of its column's type or the answer is
malformed: a boolean is never read as a number (nor a number as a boolean), a number
must be finite, and a string only counts as a number when it is written as one. Whether
a typed value is in range for its column (no negative counts, fractions in [0, 1]) is
:mod:`podcast_pipeline.completeness`'s decision.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd

from podcast_pipeline.errors import MalformedResponse
from podcast_pipeline.redact import scrub_frame
from podcast_pipeline.tables import TABLES_BY_KEY, Table


@functools.lru_cache(maxsize=4096)  # called for every key of every row of a page
def snake(name: str) -> str:
    """"Percent of Plays" → percent_of_plays, "EpisodeTitle" → episode_title."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "column"


def table(api: str, name: str) -> Table:
    return TABLES_BY_KEY[f"{api}.{name}"]



def conform(df: pd.DataFrame, tbl: Table, endpoint: str,
            extras: Iterable[str] | None = None) -> pd.DataFrame:
    """Cast ``df`` to ``tbl``'s columns and dtypes, contract columns first, extras after.

    Contract columns absent from ``df`` become all-null (OP3 omits blank JSON fields);
    a value that cannot be cast raises :class:`MalformedResponse` naming the endpoint.
    Extra columns keep their values; nested ones become JSON text so they stay storable.
    """
    out: dict[str, pd.Series] = {}
    index = df.index
    for col, sql in tbl.columns:
        raw = df[col] if col in df.columns else pd.Series([None] * len(df), index=index,
                                                          dtype=object)
        try:
            out[col] = _cast(raw, sql)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedResponse(tbl.schema, endpoint, f"column '{col}' is not {sql}: "
                                    f"{exc}") from None
    contract = {c for c, _ in tbl.columns}
    for col in extras if extras is not None else df.columns:
        if col not in contract:
            s = df[col]
            if s.dtype == object and s.map(lambda v: isinstance(v, dict | list)).any():
                s = s.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
            out[col] = s
    # Every client frame passes here: a secret an API echoed never reaches metadata,
    # previews or the warehouse.
    return scrub_frame(pd.DataFrame(out, index=index).reset_index(drop=True))


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT


_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def number(v: Any) -> Any:
    """A JSON number or a number written as text ("59", as Spotify sends some); None for
    blanks. Booleans, "NaN", "Infinity" and numbers too big for a double are refused."""
    if _is_null(v) or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is a boolean, not a number")
    if isinstance(v, str):
        if not _NUMBER_TEXT.match(v.strip()):
            raise ValueError(f"{v[:40]!r} is not a number")
        v = v.strip()
        return int(v) if v.lstrip("+-").isdigit() else _finite(float(v), v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _finite(v, v)
    raise ValueError(f"{type(v).__name__} {str(v)[:40]!r} is not a number")


def _finite(x: float, shown: Any) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{str(shown)[:40]!r} is not a finite number")
    return x


def _cast(s: pd.Series, sql: str) -> pd.Series:
    if sql == "BIGINT":
        return pd.to_numeric(s.map(number).astype(object)).astype("Int64")
    if sql == "DOUBLE":
        return pd.to_numeric(s.map(number).astype(object)).astype("float64")
    if sql == "VARCHAR":
        return s.map(lambda v: None if _is_null(v) else str(v)).astype("str")
    if sql == "BOOLEAN":
        return s.map(_bool).astype("boolean")
    if sql == "DATE":
        return s.map(_date).astype(object)
    if sql == "TIMESTAMPTZ":
        return _timestamps(s)
    if sql == "BIGINT[]":
        return s.map(_int_list).astype(object)
    raise TypeError(f"unsupported contract type {sql}")


def _bool(v: Any) -> bool | None:
    if _is_null(v):
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError(f"{str(v)[:40]!r} is not a boolean")


def _date(v: Any) -> date | None:
    if _is_null(v):
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        return date.fromisoformat(v[:10])
    raise ValueError(f"{v!r} is not a date")


def _timestamps(s: pd.Series) -> pd.Series:
    vals = s.map(lambda v: None if _is_null(v) or v == "" else v)
    present = vals.dropna()
    if len(present) and all(isinstance(v, int | float) and not isinstance(v, bool)
                            for v in present):
        out = pd.to_datetime(pd.to_numeric(vals), unit="s", utc=True)
    else:
        out = pd.to_datetime(vals, utc=True, format="ISO8601")
    return out.astype("datetime64[us, UTC]")  # one resolution whatever the source


def _int_list(v: Any) -> list[int] | None:
    if _is_null(v):
        return None
    if not isinstance(v, list | tuple) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise ValueError(f"{v!r} is not a list of integers")
    return list(v)


def snake_keys(items: Sequence[Mapping[str, Any]], mapping: Mapping[str, str],
               skip: Iterable[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """JSON objects → DataFrame: ``mapping`` renames known keys, others become snake_case.

    Returns the frame and the extra column names in first-seen order.
    """
    skipped = set(skip)
    extras: list[str] = []
    records = []
    for item in items:
        rec: dict[str, Any] = {}
        for k, v in item.items():
            if k in skipped:
                continue
            col = mapping.get(k)
            if col is None:
                col = snake(k)
                while col in mapping.values():
                    col += "_extra"  # an unknown key must not overwrite a contract column
                if col not in extras:
                    extras.append(col)
            rec[col] = v
        records.append(rec)
    return pd.DataFrame(records, dtype=object), extras
