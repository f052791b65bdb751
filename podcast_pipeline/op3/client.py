"""Plain-Python client of the OP3 API v1.

The token travels only in ``Authorization: Bearer`` (a query-string token ends up in
logs). Date ranges are UTC days with both ends inclusive, like the Anchor client; OP3's
own ``end`` is exclusive, so the client sends ``end + 1 day``.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from podcast_pipeline.contract import conform, number, snake, snake_keys, table
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
        """One row per download on UTC days ``start``..``end`` (inclusive)."""
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
        last_time = [""]  # of the page before: pages must move forward in time

        def page(token: str | None) -> tuple[pd.DataFrame, str | None]:
            params = base + ([("continuationToken", token)] if token else [])
            frame, nxt = self.session.fetch("downloads", path, params, parse=_tsv_page,
                                            accept="text/tab-separated-values", covers=covers)
            if len(frame):  # OP3 sends downloads in time order: pages must move forward
                first, last = frame["time"].min(), frame["time"].max()
                if first < last_time[0]:
                    raise MalformedResponse("op3", "downloads", f"a page starts at {first}, "
                                            f"before the page ahead of it ended "
                                            f"({last_time[0]}): the pages are not moving "
                                            "forward; stopping instead of looping")
                if not s <= first[:10] <= last[:10] < e:
                    raise MalformedResponse("op3", "downloads", f"a page holds downloads from "
                                            f"{first} to {last}, outside the requested {s} "
                                            f"up to (not including) {e}")
                last_time[0] = last
            return frame, nxt

        most = self.session.limits.max_rows_per_day
        frames = list(paginate(
            "op3", "downloads", page, max_pages=page_budget(days, most, limit),
            why=f"more than {days} day(s) can hold at {most} downloads a day; raise "
                f"{MAX_ROWS_PER_DAY_ENV} if the show really has more"))
        df = pd.concat(frames, ignore_index=True)
        extras = [c for c in df.columns if c not in DOWNLOAD_COLUMNS]
        df = df.rename(columns={c: snake(c) for c in df.columns})
        df = df.replace({"": None})  # TSV blanks are OP3's "absent" (json omits, json-a nulls)
        df = conform(df, table("op3", "downloads"), "downloads", [snake(c) for c in extras])
        df["date"] = df["time"].dt.date  # UTC, since conform made time tz-aware UTC
        return df

    # ------------------------------------------------------------------ redirect logs
    def redirect_logs(self, start: date | datetime, end: date | datetime, *,
                      url: str | None = None, limit: int = 1000,
                      **one_filter: str) -> pd.DataFrame:
        """Raw redirected requests on UTC days ``start``..``end`` for one filter.

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
        rows: dict[str, dict[str, Any]] = {}

        def page(cursor: tuple[str, str] | None) -> tuple[None, tuple[str, str] | None]:
            cursor = cursor or ("start", s)
            params = [cursor, ("end", e), ("format", "json"), ("limit", limit),
                      *filters.items()]
            body = self.session.get_json("redirect_logs", "/redirect-logs", params,
                                         validate=_has("rows", list), covers=covers)
            found = body["rows"]
            new = 0
            for n, row in enumerate(found):
                if not isinstance(row, dict) or not row.get("uuid") or not isinstance(
                        row.get("time"), str):
                    raise MalformedResponse("op3", "redirect_logs", f"row {n} has no uuid/time")
                if row["uuid"] not in rows:
                    rows[row["uuid"]] = row
                    new += 1
            if len(found) < limit:
                return None, None
            last = max(str(r["time"]) for r in found)  # max, in case the server sorts desc
            # Inclusive start at the last time re-reads rows of that millisecond instead of
            # skipping them (deduped on uuid). If a whole page shares it, step past it; a
            # server that ignores that sends the same cursor back, which paginate refuses.
            if new and cursor != ("start", last):
                return None, ("start", last)
            log.warning("op3 redirect_logs: more than %d rows at %s; continuing after it, "
                        "rows of that millisecond beyond the page may be missed", limit, last)
            return None, ("startAfter", last)

        most = self.session.limits.max_rows_per_day
        for _ in paginate("op3", "redirect_logs", page, max_pages=page_budget(days, most, limit),
                          why=f"more than {days} day(s) can hold at {most} requests a day; "
                              f"raise {MAX_ROWS_PER_DAY_ENV} if the show really has more"):
            pass
        df, extras = snake_keys(list(rows.values()), {})
        df = conform(df, table("op3", "redirect_logs"), "redirect_logs", extras)
        df["date"] = df["time"].dt.date
        return df

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


def _tsv_page(reply: Reply) -> tuple[pd.DataFrame, str | None]:
    """One downloads page and its continuation token (the ``parse`` of ApiSession.fetch)."""
    return _parse_tsv(reply.text), reply.headers.get("x-continuation-token") or None


def _parse_tsv(text: str) -> pd.DataFrame:
    """A downloads TSV page → string DataFrame; raises ValueError when it is not one.

    OP3 always sends the header line, even for no rows: an empty body is not an empty page.
    """
    if text.lstrip()[:1] in ("<", "{"):
        raise ValueError("expected TSV but got HTML or JSON")
    if not text:
        raise ValueError("the body is empty, without the header line OP3 always sends")
    if not text.endswith("\n"):
        raise ValueError("TSV does not end with a newline (truncated)")
    # read_csv pads short lines with "" (keep_default_na=False) and may turn a surplus field
    # into an index: check every line's field count first so nothing shifts silently.
    lines = text[:-1].split("\n")
    header = lines[0].split("\t")
    if len(set(header)) != len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        raise ValueError(f"the TSV header names column(s) {twice} twice")
    fields = len(header) - 1
    for n, line in enumerate(lines[1:], start=2):
        if line.count("\t") != fields:
            raise ValueError(f"TSV line {n} has {line.count(chr(9)) + 1} fields, the header "
                             f"has {fields + 1}")
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False,
                         quoting=csv.QUOTE_NONE, index_col=False)  # OP3 never quotes
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"unreadable TSV ({str(exc).strip()})") from None
    missing = [c for c in DOWNLOAD_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"TSV header lacks column(s) {missing}")
    return df
