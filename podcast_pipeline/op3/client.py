"""Plain-Python client of the OP3 API v1.

The token travels only in ``Authorization: Bearer`` (a query-string token ends up in
logs). Date ranges are UTC days with both ends inclusive, like the Anchor client; OP3's
own ``end`` is exclusive, so the client sends ``end + 1 day``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import Any

import duckdb
import pandas as pd

from podcast_pipeline.contract import conform, number, snake, table
from podcast_pipeline.errors import MalformedResponse
from podcast_pipeline.http import (
    MAX_ROWS_PER_DAY_ENV,
    ApiSession,
    CallStats,
    ClientBase,
    CredentialVerdict,
    Recorder,
    Reply,
    RetryPolicy,
    page_budget,
    paginate,
)
from podcast_pipeline.redact import contains_secret, redact
from podcast_pipeline.settings import Op3Settings
from podcast_pipeline.timeutil import as_utc_date

log = logging.getLogger(__name__)

DOWNLOAD_COLUMNS = (
    "time", "url", "audienceId", "showUuid", "episodeId", "hashedIpAddress", "agentType",
    "agentName", "deviceType", "deviceName", "referrerType", "referrerName", "botType",
    "countryCode", "continentCode", "regionCode", "regionName", "timezone", "metroCode",
)
REDIRECT_FILTERS = ("url", "urlSha256", "userAgent", "referer", "hashedIpAddress", "ulid", "xpsId")


def _range(start: date | datetime, end: date | datetime) -> tuple[str, str]:
    s, e = as_utc_date(start), as_utc_date(end)
    if s > e:
        raise ValueError(f"start {s} is after end {e}")
    return s.isoformat(), (e + timedelta(days=1)).isoformat()


def _has(key: str, kind: type) -> Any:
    def check(body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get(key), kind):
            return f"the body has no '{key}' {kind.__name__}"
        return None
    return check


class Op3Client(ClientBase):
    """OP3 data of one show (bearer token + show uuid)."""

    api = "op3"

    def __init__(self, settings: Op3Settings, *, retry: RetryPolicy | None = None,
                 recorder: Recorder | None = None, stats: CallStats | None = None,
                 verdict: CredentialVerdict | None = None) -> None:
        self.settings = settings
        self.session = ApiSession(
            "op3", settings.base_url, credential={"Authorization": f"Bearer {settings.token}"},
            retry=retry, recorder=recorder, stats=stats, verdict=verdict,
        )

    @classmethod
    def from_env(cls, **kw: Any) -> Op3Client:
        return cls(Op3Settings.from_env(), **kw)

    # ------------------------------------------------------------------ downloads
    def downloads(self, start: date | datetime, end: date | datetime, *, bots: str = "exclude",
                  episode_id: str | None = None, limit: int = 20000) -> pd.DataFrame:
        """One row per download on UTC days ``start``..``end`` (inclusive), in memory.

        For a long window use :meth:`download_pages`, which keeps one page at a time."""
        con = duckdb.connect()
        try:
            frames, extras = [], []
            for columns in self.download_pages(start, end, con, bots=bots,
                                               episode_id=episode_id, limit=limit):
                frames.append(con.execute(f"SELECT * FROM {PAGE_TABLE}").df())
                extras += [c for c in columns if c not in extras]
        finally:
            con.close()
        df = pd.concat(frames, ignore_index=True)
        known = {c for c, _ in table("op3", "downloads").columns}
        df = conform(df, table("op3", "downloads"), "downloads",
                     [c for c in extras if c not in known])
        df["date"] = df["time"].dt.date  # UTC, since conform made time tz-aware UTC
        return df

    def download_pages(self, start: date | datetime, end: date | datetime,
                       con: duckdb.DuckDBPyConnection, *, bots: str = "exclude",
                       episode_id: str | None = None, limit: int = 20000) -> Iterator[list[str]]:
        """The downloads of UTC days ``start``..``end``, one page at a time, as DuckDB parses
        them: each page replaces table :data:`PAGE_TABLE` of ``con`` (the contract's
        columns typed, ``date`` the UTC day of ``time``, then any extra columns as text), and
        the names of its columns are yielded. Copy the page before asking for the next.

        Ends after OP3's empty last page; a page that is malformed, outside the window,
        or that does not move forward in time raises instead.
        """
        if bots not in ("include", "exclude"):
            raise ValueError("bots must be 'include' or 'exclude'")
        if not 1 <= limit <= 20000:
            raise ValueError("limit must be within 1..20000")
        s, e = _range(start, end)
        days = (as_utc_date(end) - as_utc_date(start)).days + 1
        covers = (as_utc_date(start), as_utc_date(end))
        base: list[tuple[str, Any]] = [("start", s), ("end", e), ("format", "tsv"),
                                       ("limit", limit), ("bots", bots)]
        if episode_id:
            base.append(("episodeId", episode_id))
        path = f"/downloads/show/{self.settings.show_uuid}"
        last_us = [-(2**62)]  # of the page before: pages must move forward in time

        def page(token: str | None) -> tuple[list[str], str | None]:
            params = base + ([("continuationToken", token)] if token else [])
            columns, nxt = self.session.fetch(
                "downloads", path, params, parse=lambda reply: _load_tsv_page(reply, con),
                accept="text/tab-separated-values", covers=covers)
            n, first, last, lo, hi = con.execute(
                f'SELECT count(*), epoch_us(min("time")), epoch_us(max("time")), min("date"), '
                f'max("date") FROM {PAGE_TABLE}').fetchall()[0]
            if n:  # OP3 sends downloads in time order: pages must move forward
                if first < last_us[0]:
                    raise MalformedResponse("op3", "downloads", f"a page starts at "
                                            f"{_iso(first)}, before the page ahead of it ended "
                                            f"({_iso(last_us[0])}): the pages are not moving "
                                            "forward; stopping instead of looping")
                if not s <= lo.isoformat() <= hi.isoformat() < e:
                    raise MalformedResponse("op3", "downloads", f"a page holds downloads from "
                                            f"{_iso(first)} to {_iso(last)}, outside the "
                                            f"requested {s} up to (not including) {e}")
                last_us[0] = last
            return columns, nxt

        most = self.session.limits.max_rows_per_day
        yield from paginate(
            "op3", "downloads", page, max_pages=page_budget(days, most, limit),
            why=f"more than {days} day(s) can hold at {most} downloads a day; raise "
                f"{MAX_ROWS_PER_DAY_ENV} if the show really has more")

    # ------------------------------------------------------------------ redirect logs
    def redirect_logs(self, start: date | datetime, end: date | datetime, *,
                      url: str | None = None, limit: int = 1000,
                      **one_filter: str) -> pd.DataFrame:
        """Raw redirected requests on UTC days ``start``..``end`` for one filter, in memory
        (:meth:`redirect_log_pages` keeps one page at a time)."""
        con = duckdb.connect()
        try:
            frames, extras = [], []
            for page in self.redirect_log_pages(start, end, url=url, limit=limit,
                                                **one_filter):
                columns = page.load(con, REDIRECT_PAGE_TABLE)
                frames.append(con.execute(f"SELECT * FROM {REDIRECT_PAGE_TABLE}").df())
                extras += [c for c in columns if c not in extras]
        finally:
            con.close()
        known = {c for c, _ in table("op3", "redirect_logs").columns}
        return conform(pd.concat(frames, ignore_index=True), table("op3", "redirect_logs"),
                       "redirect_logs", [c for c in extras if c not in known])

    def redirect_log_pages(self, start: date | datetime, end: date | datetime, *,
                           url: str | None = None, limit: int = 1000,
                           **one_filter: str) -> Iterator[JsonRows]:
        """Raw redirected requests on UTC days ``start``..``end`` for one filter, one page
        (the rows not seen on an earlier page) at a time, ending at the first short page.
        Each page is checked (strict JSON, every row an object with a uuid and a time) and
        handed over for DuckDB to parse (:meth:`JsonRows.load`).

        Works against ``/redirect-logs`` directly or via its 308 to ``/hits``. Without a
        filter, ``url`` defaults to the configured ``OP3_URL_PREFIX``.
        """
        unknown = set(one_filter) - set(REDIRECT_FILTERS)
        if unknown:
            raise ValueError(f"unknown redirect-logs filter(s) {sorted(unknown)}; "
                             f"use one of {REDIRECT_FILTERS}")
        filters = {k: v for k, v in {"url": url, **one_filter}.items() if v is not None}
        if len(filters) > 1:
            raise ValueError(f"OP3 accepts at most one filter, got {sorted(filters)}")
        if not filters and self.settings.url_prefix:
            filters = {"url": self.settings.url_prefix}
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be within 1..1000")
        s, e = _range(start, end)
        days = (as_utc_date(end) - as_utc_date(start)).days + 1
        covers = (as_utc_date(start), as_utc_date(end))
        # The next page starts at the last time of this one (inclusive), so only rows of
        # that millisecond can come again: their uuids are all that needs remembering.
        edge: dict[str, Any] = {"time": None, "uuids": set()}
        check = _has("rows", list)

        def parse(reply: Reply) -> tuple[Any, str]:
            body = self.session.json_body(reply)
            problem = check(body)
            if problem:
                raise ValueError(problem)
            return body, reply.text

        def page(cursor: tuple[str, str] | None) -> tuple[JsonRows, tuple[str, str] | None]:
            cursor = cursor or ("start", s)
            params = [cursor, ("end", e), ("format", "json"), ("limit", limit),
                      *filters.items()]
            body, text = self.session.fetch("redirect_logs", "/redirect-logs", params,
                                            parse=parse, covers=covers)
            found = body["rows"]
            keep: list[int] = []  # 1-based positions of the rows not seen before
            seen: set[str] = edge["uuids"]
            for n, row in enumerate(found):
                if not isinstance(row, dict) or not row.get("uuid") or not isinstance(
                        row.get("time"), str):
                    raise MalformedResponse("op3", "redirect_logs", f"row {n} has no uuid/time")
                if row["uuid"] not in seen:
                    seen.add(row["uuid"])
                    keep.append(n + 1)
            rows = _json_rows(text, found, keep)
            if len(found) < limit:
                return rows, None
            last = max(str(r["time"]) for r in found)  # max, in case the server sorts desc
            if last != edge["time"]:
                edge["time"] = last
                edge["uuids"] = {r["uuid"] for r in found if str(r["time"]) == last}
            # Inclusive start at the last time re-reads rows of that millisecond instead of
            # skipping them (deduped on uuid). If a whole page shares it, step past it; a
            # server that ignores that sends the same cursor back, which paginate refuses.
            if keep and cursor != ("start", last):
                return rows, ("start", last)
            log.warning("op3 redirect_logs: more than %d rows at %s; continuing after it, "
                        "rows of that millisecond beyond the page may be missed", limit, last)
            return rows, ("startAfter", last)

        most = self.session.limits.max_rows_per_day
        yield from paginate("op3", "redirect_logs", page,
                            max_pages=page_budget(days, most, limit),
                            why=f"more than {days} day(s) can hold at {most} requests a day; "
                                f"raise {MAX_ROWS_PER_DAY_ENV} if the show really has more")

    # ------------------------------------------------------------------ show & queries
    def show(self, show_uuid: str | None = None, episodes: bool = True) -> pd.DataFrame:
        """The show, one row per episode (one row with null episode columns if none)."""
        uuid = show_uuid or self.settings.show_uuid
        body = self.session.get_json(
            "show", f"/shows/{uuid}", {"episodes": "include" if episodes else "exclude"},
            validate=_has("showUuid", str))
        head = {k: v for k, v in body.items() if k != "episodes"}
        eps = body.get("episodes") or [{}]
        if not isinstance(eps, list) or not all(isinstance(x, dict) for x in eps):
            raise MalformedResponse("op3", "show", "'episodes' is not a list of objects")
        show_map = {"showUuid": "show_uuid", "title": "show_title", "podcastGuid": "podcast_guid",
                    "statsPageUrl": "stats_page_url"}
        ep_map = {"id": "episode_id", "title": "episode_title", "pubdate": "pubdate",
                  "itemGuid": "item_guid"}
        records = [{**{show_map.get(k, snake(k)): v for k, v in head.items()},
                    **{ep_map.get(k, "episode_" + snake(k)): v for k, v in ep.items()}}
                   for ep in eps]
        return conform(pd.DataFrame(records, dtype=object), table("op3", "show"), "show")

    def recent_episodes_with_transcripts(self, limit: int = 100) -> pd.DataFrame:
        """OP3-wide recent episodes with transcripts, one row per episode and day."""
        body = self.session.get_json("recent_episodes_with_transcripts",
                                     "/queries/recent-episodes-with-transcripts",
                                     {"limit": limit}, validate=_validate_recent)
        inner = body["rt"] if isinstance(body.get("rt"), dict) else body  # live wraps in rt
        records = []
        for ep in inner["episodes"]:
            daily = ep.get("dailyDownloads") if isinstance(ep, dict) else None
            if not isinstance(daily, dict | None):
                raise MalformedResponse("op3", "recent_episodes_with_transcripts",
                                        "an episode or its dailyDownloads is not an object")
            if not isinstance(ep, dict):
                raise MalformedResponse("op3", "recent_episodes_with_transcripts",
                                        "an episode is not an object")
            base = {"computed_at": inner.get("asof"),
                    **{snake(k): v for k, v in ep.items() if k != "dailyDownloads"}}
            # An episode without downloads yet still gets a row (null date), not dropped.
            for day, n in (daily or {}).items() or [(None, None)]:
                records.append({**base, "date": day, "downloads": n})
        return conform(pd.DataFrame(records, dtype=object),
                       table("op3", "recent_episodes_with_transcripts"),
                       "recent_episodes_with_transcripts")

    def top_apps_for_show(self, show_uuid: str | None = None) -> pd.DataFrame:
        """Downloads per app over the current and previous two months, ranked 1.. as sent."""
        uuid = show_uuid or self.settings.show_uuid
        body = self.session.get_json("top_apps_for_show", "/queries/top-apps-for-show",
                                     {"showUuid": uuid}, validate=_has("appDownloads", dict))
        apps = body["appDownloads"]
        df = pd.DataFrame({"show_uuid": [body.get("showUuid", uuid)] * len(apps),
                           "app": list(apps), "downloads": list(apps.values()),
                           "rank": list(range(1, len(apps) + 1))}, dtype=object)
        return conform(df, table("op3", "top_apps_for_show"), "top_apps_for_show")

    def top_apps(self, device_name: str | None = None) -> pd.DataFrame:
        """OP3-wide app shares over 30 days, as fractions (the API sends percentages)."""
        params = {"deviceName": device_name} if device_name else None
        body = self.session.get_json("top_apps", "/queries/top-apps", params,
                                     validate=_has("appShares", dict))
        shares = body["appShares"]
        try:  # number(): no booleans, NaN or infinities posing as a share
            fractions = [None if number(v) is None else number(v) / 100 for v in shares.values()]
        except ValueError as exc:
            raise MalformedResponse("op3", "top_apps", f"a share is not a number: {exc}") from None
        n = len(shares)
        df = pd.DataFrame({"app": list(shares), "fraction": fractions,
                           "min_date": [body.get("minDate")] * n,
                           "max_date": [body.get("maxDate")] * n,
                           "device_name": [body.get("deviceName", device_name)] * n},
                          dtype=object)
        return conform(df, table("op3", "top_apps"), "top_apps")

    def show_download_counts(self, show_uuids: Iterable[str] | None = None) -> pd.DataFrame:
        """30-day and weekly download counts per show (unknown shows are omitted by OP3)."""
        uuids = list(show_uuids) if show_uuids is not None else [self.settings.show_uuid]
        body = self.session.get_json("show_download_counts", "/queries/show-download-counts",
                                     [("showUuid", u) for u in uuids],  # repeated key, no commas
                                     validate=_has("showDownloadCounts", dict))
        records = []
        for uuid, counts in body["showDownloadCounts"].items():
            if not isinstance(counts, dict):
                raise MalformedResponse("op3", "show_download_counts",
                                        f"counts of {uuid} are not an object")
            # OP3's "asof" is when it computed the counts; as_of stays the snapshot's time.
            records.append({"show_uuid": uuid, "computed_at": body.get("asof"),
                            **{snake(k): v for k, v in counts.items()}})
        return conform(pd.DataFrame(records, dtype=object), table("op3", "show_download_counts"),
                       "show_download_counts")


# ---------------------------------------------------------------------- helpers
def _validate_recent(body: Any) -> str | None:
    inner = body.get("rt", body) if isinstance(body, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("episodes"), list):
        return "the body has no 'episodes' list (wrapped in 'rt' or not)"
    return None


PAGE_TABLE = "op3_downloads_page"  # where download_pages puts each page


def _iso(epoch_us: int) -> str:
    return datetime.fromtimestamp(epoch_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


REDIRECT_PAGE_TABLE = "op3_redirect_logs_page"  # where redirect_logs() loads each page
# The keys of a redirect-logs row (OP3's /hits), each the camelCase of a contract column.
REDIRECT_KEYS = ("time", "uuid", "hashedIpAddress", "method", "url", "userAgent", "referer",
                 "range", "xpsId", "ulid", "edgeColo", "continent", "country", "timezone",
                 "regionCode", "region", "metroCode")


@dataclass(frozen=True)
class JsonRows:
    """One checked redirect-logs page, for DuckDB to parse: Python's strict parse has
    vouched for the JSON (and each row's uuid and time); DuckDB turns the rows into typed
    columns without a Python loop per cell."""

    text: str  # the body (masked if it echoed a secret)
    keep: list[int]  # 1-based positions of the rows to load
    keys: tuple[str, ...]  # every key of the rows, first seen first
    names: tuple[str, ...]  # the column each key fills (a contract column or an extra)

    def __len__(self) -> int:
        return len(self.keep)

    def load(self, con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
        """Replace table ``name`` of ``con`` with the rows (contract columns typed, ``date``
        the UTC day of ``time``, extras as text); returns the names of its columns.
        A JSON value that is not a string lands in a text column as its JSON text."""
        position = {n: i for i, n in enumerate(self.names)}
        picks = []
        for col, sql in table("op3", "redirect_logs").columns:
            if col == "date":  # the UTC day whatever the session's time zone
                picks.append(f'CAST(make_timestamp(epoch_us(CAST(NULLIF(c{position["time"]}, '
                             "'') AS TIMESTAMPTZ))) AS DATE) AS \"date\"")
            elif col == "time":
                picks.append(f'CAST(NULLIF(c{position["time"]}, \'\') AS TIMESTAMPTZ) AS "time"')
            elif col in position:
                picks.append(f'CAST(c{position[col]} AS {sql}) AS "{col}"')
            else:
                picks.append(f'CAST(NULL AS {sql}) AS "{col}"')
        picks += [f'c{i} AS "{n}"' for i, n in enumerate(self.names) if n not in _KNOWN_HITS]
        # The API's keys never enter SQL: each is a JSON pointer (a bound value) picking
        # its field of every row, and the fields are read as c0, c1, … by position.
        pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in self.keys]
        fields = ", ".join(f"x[{i + 1}] AS c{i}" for i in range(len(self.keys)))
        con.execute("SET TimeZone = ?", ["UTC"])  # a time without an offset is UTC, as OP3 means
        try:
            page, select_list = name, ", ".join(picks)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {page} AS SELECT {select_list} "
                        f"FROM (SELECT {fields} FROM (SELECT json_extract_string(r, ?) AS x "
                        "FROM (SELECT unnest(list_select(json_extract(?, '$.rows[*]'), ?)) "
                        "AS r)))", [pointers, self.text, self.keep])
        except duckdb.ConversionException as exc:
            raise MalformedResponse("op3", "redirect_logs", "column 'time' is not "
                                    f"TIMESTAMPTZ: {_first_line(exc)}") from None
        return list(self.names)


_KNOWN_HITS = frozenset(c for c, _ in table("op3", "redirect_logs").columns)


def _column_names(keys: Iterable[str], api_names: Collection[str],
                  contract: frozenset[str]) -> list[str]:
    """The column name of each API key/header: snake_case, ``_extra`` appended until it is
    unique and, for a key the API does not document, clear of the contract's columns (an
    unknown key must not overwrite a contract column)."""
    names: list[str] = []
    for k in keys:
        name = snake(k)
        while name in names or (k not in api_names and name in contract):
            name += "_extra"
        names.append(name)
    return names


def _json_rows(text: str, rows: list[dict[str, Any]], keep: list[int]) -> JsonRows:
    keys = tuple(dict.fromkeys(chain.from_iterable(rows)))  # first seen first
    names = _column_names(keys, REDIRECT_KEYS, _KNOWN_HITS)
    if "time" not in keys:  # a page without rows: still the columns the SQL reads
        keys, names = ("time", *keys), ["time", *names]
    if contains_secret(text):  # an echoed secret is masked in every cell it reached
        text = json.dumps({"rows": [{k: redact(v) if isinstance(v, str) else v
                                     for k, v in row.items()} for row in rows]})
    return JsonRows(text, keep, keys, tuple(names))


def _tsv_header(text: str) -> list[str]:
    """The header of a downloads TSV page; raises ValueError when the body is not one.

    OP3 always sends the header line, even for no rows: an empty body is not an empty page.
    """
    if text.lstrip()[:1] in ("<", "{"):
        raise ValueError("expected TSV but got HTML or JSON")
    if not text:
        raise ValueError("the body is empty, without the header line OP3 always sends")
    if not text.endswith("\n"):
        raise ValueError("TSV does not end with a newline (truncated)")
    header = text[:text.index("\n")].split("\t")
    if len(set(header)) != len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        raise ValueError(f"the TSV header names column(s) {twice} twice")
    missing = [c for c in DOWNLOAD_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"TSV header lacks column(s) {missing}")
    return header


_FIELDS = re.compile(r"Line: (\d+).*?Expected Number of Columns: (\d+) Found: (\d+)", re.S)


def _load_tsv_page(reply: Reply, con: duckdb.DuckDBPyConnection) -> tuple[list[str],
                                                                           str | None]:
    """Parse one downloads page with DuckDB into :data:`PAGE_TABLE` of ``con`` (the
    ``parse`` of ApiSession.fetch: a ValueError fetches the page again); returns its column
    names and the continuation token."""
    text = reply.text  # strict UTF-8
    header = _tsv_header(text)
    body = reply.body
    if contains_secret(text):  # an echoed secret is masked in every cell it reached
        body = redact(text).encode()
    names = _column_names(header, DOWNLOAD_COLUMNS, _KNOWN)
    # The API's header names never enter SQL: DuckDB reads the fields as c0, c1, … and
    # each is picked by its position in the header.
    position = {name: i for i, name in enumerate(names)}
    picks = []
    for col, sql in table("op3", "downloads").columns:
        if col == "date":  # the UTC day whatever the session's time zone (naive UTC)
            picks.append(f'CAST(make_timestamp(epoch_us(CAST(c{position["time"]} AS '
                         'TIMESTAMPTZ))) AS DATE) AS "date"')
        else:
            picks.append(f'CAST(c{position[col]} AS {sql}) AS "{col}"')
    picks += [f'c{position[n]} AS "{n}"' for n in names if n not in _KNOWN]
    select_list = ", ".join(picks)  # tables.py names and snake_case (identifier) extras
    fields = {f"c{i}": "VARCHAR" for i in range(len(header))}
    con.execute("SET TimeZone = ?", ["UTC"])  # a time without an offset is UTC, as OP3 means
    fd, path = tempfile.mkstemp(suffix=".tsv", prefix="op3_page_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {PAGE_TABLE} AS SELECT {select_list} FROM "
            "read_csv(?, delim=?, quote=?, escape=?, header=false, skip=1, auto_detect=false, "
            "strict_mode=true, null_padding=false, columns=?)", [path, "\t", "", "", fields])
    except duckdb.ConversionException as exc:
        raise MalformedResponse("op3", "downloads", f"column 'time' is not TIMESTAMPTZ: "
                                f"{_first_line(exc)}") from None
    except duckdb.InvalidInputException as exc:
        m = _FIELDS.search(str(exc))
        if m:
            raise ValueError(f"TSV line {m[1]} has {m[3]} fields, the header has {m[2]}"
                             ) from None
        raise ValueError(f"unreadable TSV ({_first_line(exc)})") from None
    finally:
        os.remove(path)
    return names, reply.headers.get("x-continuation-token") or None


_KNOWN = frozenset(c for c, _ in table("op3", "downloads").columns)


def _first_line(exc: Exception) -> str:
    return redact(str(exc).strip().splitlines()[0])[:200]
