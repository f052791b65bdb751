"""The one rule deciding whether an answer may replace a stored partition window.

A window is replaced only by an answer the client can prove complete and well-formed:

1. **Well-formed.** The clients refuse any body that is not the API's own envelope (an
   empty body, an HTML page, a TSV without its header, JSON without its rows list,
   duplicate keys, a value that is not of its column's type). So an answer with no
   rows that reaches this module is one the API explicitly sent as empty.
2. **For this window and show.** Every row of a ranged table is dated inside the window,
   and every OP3 row names this show; anything else is not the answer asked for.
3. **Inside the value contract** of :mod:`podcast_pipeline.tables`: numbers are finite,
   never negative (except ``SIGNED_COLUMNS``), fractions lie in [0, 1].
4. **No silent loss.** A stored day is emptied only when the API said it is empty (the
   day's own answer, or the whole window's, has no rows), and never shrinks by more than
   ``PODCAST_PIPELINE_MAX_SHRINK_FRACTION`` of its rows.

Problems 2 and 3 are :class:`MalformedResponse` errors, 4 is :class:`RefusedReplace`; each
names the endpoint, the column and the day. :func:`warehouse.replace_window` calls
:func:`check_answer` before it writes and :func:`check_replace` inside its transaction; an
answer staged page by page (``warehouse.Stage``) passes :func:`check_answer`, or
:func:`check_staged` (the same rules in SQL, for pages DuckDB parsed), on every page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd

from podcast_pipeline.errors import MalformedResponse, RefusedReplace
from podcast_pipeline.tables import FRACTION_COLUMNS, SIGNED_COLUMNS, Table

SHRINK_ENV = "PODCAST_PIPELINE_MAX_SHRINK_FRACTION"  # a field of settings.Settings
DEFAULT_MAX_SHRINK = 0.5


def check_answer(table: Table, frame: pd.DataFrame, start: date, end: date,
                 show_id: str | None = None) -> None:
    """Rules 2 and 3 on the rows about to be written (``partition_date`` set)."""
    if not len(frame):
        return
    if show_id is not None and table.schema == "op3" and "show_uuid" in frame.columns:
        other = frame["show_uuid"].notna() & (frame["show_uuid"] != show_id)
        if other.any():
            raise MalformedResponse(
                table.schema, table.name,
                f"{int(other.sum())} of {len(frame)} rows belong to show "
                f"{frame['show_uuid'][other].iloc[0]}, not to {show_id}; the answer is not "
                "for this show, so it replaces nothing")
    days = pd.to_datetime(frame["partition_date"]).dt.date
    outside = ~days.between(start, end) | days.isna()
    if outside.any():
        i = outside.to_numpy().nonzero()[0][0]
        field = "date" if "date" in frame.columns and table.kind == "ranged" else "partition_date"
        value = frame[field].iloc[i]
        raise MalformedResponse(
            table.schema, table.name,
            f"{int(outside.sum())} of {len(frame)} rows lie outside the requested "
            f"{start}..{end} (field '{field}' is {value} in the first); the answer is not "
            "for this window, so it replaces nothing")
    for col, sql in table.columns:
        if col not in frame.columns or sql not in ("BIGINT", "DOUBLE", "BIGINT[]"):
            continue
        problem = _value_problem(col, sql, frame[col])
        if problem is not None:
            i, value, why = problem
            raise MalformedResponse(
                table.schema, table.name,
                f"column '{col}' holds {value!r} on {days.iloc[i]}: {why}; nothing was written")


def check_staged(con: Any, table: Table, page: str, start: date, end: date,
                 show_id: str | None = None) -> None:
    """Rules 2 and 3 on a page DuckDB parsed into table ``page`` of ``con`` (a ranged
    table's contract columns, typed, with ``date``): the same checks as
    :func:`check_answer`, without moving the rows into Python."""
    if show_id is not None and table.schema == "op3" and any(
            c == "show_uuid" for c, _ in table.columns):
        bad, total, first = con.execute(
            f"SELECT count(*) FILTER (WHERE show_uuid IS DISTINCT FROM ? AND show_uuid IS NOT "
            f"NULL), count(*), min(show_uuid) FILTER (WHERE show_uuid <> ?) FROM {page}",
            [show_id, show_id]).fetchall()[0]
        if bad:
            raise MalformedResponse(
                table.schema, table.name,
                f"{bad} of {total} rows belong to show {first}, not to {show_id}; the answer "
                "is not for this show, so it replaces nothing")
    bad, total, first = con.execute(
        f'SELECT count(*) FILTER (WHERE "date" IS NULL OR "date" NOT BETWEEN ? AND ?), '
        f'count(*), min("date") FILTER (WHERE "date" NOT BETWEEN ? AND ?) FROM {page}',
        [start, end, start, end]).fetchall()[0]
    if bad:
        raise MalformedResponse(
            table.schema, table.name,
            f"{bad} of {total} rows lie outside the requested {start}..{end} (field 'date' is "
            f"{first} in the first); the answer is not for this window, so it replaces nothing")
    for column, sql in table.columns:
        if sql not in ("BIGINT", "DOUBLE"):
            continue
        found: list[tuple[tuple, str]] = []
        if sql == "DOUBLE":
            found.append((con.execute(f'SELECT "{column}", "date" FROM {page} '
                                      f'WHERE NOT isfinite("{column}") LIMIT 1').fetchall(),
                          "not a finite number"))
        if column not in SIGNED_COLUMNS:
            found.append((con.execute(f'SELECT "{column}", "date" FROM {page} '
                                      f'WHERE "{column}" < 0 LIMIT 1').fetchall(),
                          "a count, id, duration or share cannot be negative"))
        if column in FRACTION_COLUMNS:
            found.append((con.execute(f'SELECT "{column}", "date" FROM {page} '
                                      f'WHERE "{column}" > 1 LIMIT 1').fetchall(),
                          "a fraction lies between 0 and 1"))
        for rows, why in found:  # fetchall: a fetchone would leave the result open
            if rows:
                value, day = rows[0]
                raise MalformedResponse(
                    table.schema, table.name,
                    f"column '{column}' holds {value!r} on {day}: {why}; nothing was written")


def _value_problem(col: str, sql: str, s: pd.Series) -> tuple[int, object, str] | None:
    if sql == "BIGINT[]":
        for i, v in enumerate(s):
            if isinstance(v, list) and any(x < 0 for x in v) and col not in SIGNED_COLUMNS:
                return i, v, "a count cannot be negative"
        return None
    values = pd.to_numeric(s, errors="coerce").astype("float64")
    checks: list[tuple[pd.Series, str]] = [
        (~values.map(lambda x: math.isnan(x) or math.isfinite(x)), "not a finite number")]
    if col not in SIGNED_COLUMNS:
        checks.append((values < 0, "a count, id, duration or share cannot be negative"))
    if col in FRACTION_COLUMNS:
        checks.append((values > 1, "a fraction lies between 0 and 1"))
    for bad, why in checks:
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            value = s.iloc[i]
            return i, value.item() if hasattr(value, "item") else value, why
    return None


def explicitly_empty(table: Table, after: Mapping[date, int], start: date, end: date) -> set[date]:
    """Days the API itself said are empty: for per-day endpoints each day is its own
    answer; otherwise one answer covers the window and only says so when it has no rows."""
    window = {d.date() for d in pd.date_range(start, end, freq="D")}
    if table.kind == "per_day":
        return {d for d in window if not after.get(d)}
    return window if not any(after.values()) else set()


def check_replace(table: Table, before: Mapping[date, int], after: Mapping[date, int],
                  start: date, end: date, limit: float) -> list[date]:
    """Rule 4: refuse a replace that empties a day the API did not call empty, or drops more
    than ``limit`` of a day's rows. Returns the days emptied because the API said so."""
    explicit = explicitly_empty(table, after, start, end)
    emptied: list[date] = []
    refused: list[str] = []
    for day in sorted(before):
        old, new = before[day], after.get(day, 0)
        if old == 0 or new >= old * (1 - limit):
            continue
        if new == 0 and day in explicit:
            emptied.append(day)
        elif new == 0:
            refused.append(f"{day} would go from {old} rows to none, though the API did not "
                           f"say it is empty (its answer has rows for other days)")
        else:
            refused.append(f"{day} would shrink from {old} to {new} rows "
                           f"({(old - new) / old:.0%} fewer; at most {limit:.0%} is accepted)")
    if refused:
        more = f" (and {len(refused) - 1} more day(s))" if len(refused) > 1 else ""
        raise RefusedReplace(
            table.schema, table.name,
            f"{refused[0]}{more}. Nothing was replaced: the stored rows stay. If the drop is "
            f"real, set {SHRINK_ENV}=1 (accept any drop) and re-run the partitions")
    return emptied
