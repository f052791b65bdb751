"""UTC-only date helpers. Naive datetimes are refused: they caused off-by-a-day
buckets in the reference client on non-UTC hosts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

DAY = 86400


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc_date(value: date | datetime) -> date:
    """A ``date`` as is, or the UTC date of an aware ``datetime``; naive datetimes raise."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a datetime.date or a "
                "timezone-aware datetime (UTC)"
            )
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a date or an aware datetime, got {type(value).__name__}")


def as_utc_datetime(value: date | datetime) -> datetime:
    """UTC midnight of a ``date``, or an aware ``datetime`` converted to UTC."""
    if isinstance(value, datetime):
        as_utc_date(value)  # validates awareness
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def epoch(value: date | datetime) -> int:
    """Epoch seconds of UTC midnight (for a date) or of the aware datetime."""
    return int(as_utc_datetime(value).timestamp())


def from_epoch(seconds: int | float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def day_of_epoch(seconds: int | float) -> date:
    return from_epoch(seconds).date()


def days(start: date, end: date) -> Iterator[date]:
    """Every date from ``start`` to ``end`` inclusive."""
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)
