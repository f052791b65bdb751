"""The OP3 API v1, served from the synthetic dataset.

Validation order, messages and envelopes follow the OP3 server (skymethod/op3) and the
responses in podcast_pipeline_tests/recorded/op3. Paths here are relative to ``/api/1``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import json.encoder
import re
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .common import Response, b58decode, b58encode, is_base58, pretty
from .data import DOWNLOAD_HEADERS, HIT_HEADERS, PROFILES, Dataset, Op3Day, Row

PREFIX = "/api/1"
JSON = "application/json"
CORS = ("access-control-allow-origin", "*")
_API_PATH = re.compile(r"^(/[a-z/-]+(/.+?)?)$")
_SHOW = re.compile(
    r"^/shows/([0-9a-f]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-zA-Z_-]{15,})$")
_QUERY = re.compile(r"^/queries/([0-9a-z-]+)$")
_UUID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_DURATION = re.compile(r"^([-+]?)(\d+)([dhms])$")
_INSTANT = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z$")
QUERY_NAMES = {"recent-episodes-with-transcripts": "recentEpisodesWithTranscripts",
               "top-apps-for-show": "topAppsForShow", "top-apps": "topApps",
               "show-download-counts": "showDownloadCounts",
               "episode-download-counts": "episodeDownloadCounts"}
FILTERS = ("url", "urlSha256", "userAgent", "referer", "hashedIpAddress", "edgeColo", "ulid",
           "xpsId", "method")
DEVICES = sorted({p[3] for p in PROFILES if p[3]} | {"Apple iPad", "Apple Watch", "Android Tablet"})


class BadRequest(Exception):
    pass


def json_response(obj: dict[str, Any], status: int = 200) -> Response:
    return Response(status, pretty(obj), JSON, [CORS])


def unauthorized() -> Response:
    return json_response({"error": "unauthorized"}, 401)


def expired() -> Response:
    return json_response({"error": "expired"}, 401)


def forbidden() -> Response:
    return json_response({"error": "forbidden"}, 403)


def slow_down() -> Response:
    return Response(429, b"slow down", "text/plain; charset=utf-8", [CORS])


def server_error(status: int) -> Response:
    if status == 500:
        return json_response({"error": "Error: Internal error\n    at computeApiResponse (api.ts:98:19)"}, 500)
    text = {502: "Bad gateway", 503: "Service unavailable"}[status]
    return Response(status, f"<html><body><h1>{status}</h1><p>{text}</p></body></html>".encode(),
                    "text/html; charset=UTF-8")


def options() -> Response:
    return Response(204, b"", None, [CORS, ("access-control-allow-methods", "*"),
                                     ("access-control-allow-headers", "*")])


def endpoint_name(path: str) -> str:
    if path == "/redirect-logs":
        return "redirectLogs"
    if path == "/hits":
        return "hits"
    if path.startswith("/downloads/"):
        return "downloads"
    if _SHOW.match(path):
        return "shows"
    if (m := _QUERY.match(path)) and m.group(1) in QUERY_NAMES:
        return QUERY_NAMES[m.group(1)]
    return "notFound"


def show_ref(path: str, params: list[tuple[str, str]]) -> tuple[str, str] | None:
    """Which show a request names, for an emulated network to route it: ("uuid", ...),
    ("guid", ...), ("feed", url), ("url", prefix filter) or None (the first show answers)."""
    q = dict(params)
    m = re.match(r"^/downloads/show/([0-9a-f]{32})$", path)
    ident = m.group(1) if m else None
    if ident is None and (m := _SHOW.match(path)):
        ident = m.group(1)
    if ident is None:
        first = next((v for k, v in params if k == "showUuid"), None)
        ident = first or q.get("podcastGuid") or q.get("feedUrlBase64")
    if ident is not None:
        if _UUID.match(ident):
            return "uuid", ident
        if re.match(r"^[0-9a-fA-F-]{36}$", ident):
            return "guid", ident.lower()
        try:
            return "feed", base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
    if "url" in q:
        return "url", q["url"]
    return None


def handle(ds: Dataset, method: str, path: str, params: list[tuple[str, str]], raw_query: str,
           *, now: datetime, redirect_logs_direct: bool = False) -> Response:
    started = time.monotonic()
    q = dict(params)  # Object.fromEntries: the last value wins
    name = endpoint_name(path)
    if not _API_PATH.match(path) or name == "notFound":
        return json_response({"error": "not found"}, 404)
    if method != "GET":
        return Response(405, f"{method} not allowed".encode(), None, [CORS])
    ctx = _Ctx(ds, q, params, now, started)
    if name == "redirectLogs":
        if not redirect_logs_direct:
            # The live service moved this endpoint in April 2024.
            loc = "/api/1/hits" + (f"?{raw_query}" if raw_query else "")
            return Response(308, b"", None, [CORS, ("location", loc)])
        return ctx.message_400(lambda: ctx.hits(legacy=True))
    if name == "hits":
        return ctx.message_400(lambda: ctx.hits(legacy=False))
    if name == "downloads":
        return ctx.message_400(lambda: ctx.downloads(path))
    if name == "shows":
        m = _SHOW.match(path)
        assert m is not None
        return ctx.message_400(lambda: ctx.show(m.group(1)))
    handler: Callable[[], Response] = getattr(ctx, name)
    return handler()


def _parse_time(name: str, value: str, now: datetime) -> str:
    if m := _DURATION.match(value):
        unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}[m.group(3)]
        delta = int(m.group(2)) * unit * (-1 if m.group(1) == "-" else 1)
        t = now + timedelta(seconds=delta)
        value = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if re.match(r"^\d{4}-\d{2}$", value):
        value = f"{value}-01T00:00:00.000Z"
    if re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        value = f"{value}T00:00:00.000Z"
    if m := _INSTANT.match(value):
        value = f"{m.group(1)}{(m.group(2) or '.000')[:4].ljust(4, '0')}Z"
    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", value):
        raise BadRequest(f"Bad {name}: {value}")
    return value


def _parse_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d+", text) and str(int(text)) == text else None


class _Ctx:
    def __init__(self, ds: Dataset, q: dict[str, str], params: list[tuple[str, str]],
                 now: datetime, started: float) -> None:
        self.ds, self.q, self.params, self.now, self.started = ds, q, params, now, started

    def query_time(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def message_400(self, fn: Callable[[], Response]) -> Response:
        try:
            return fn()
        except BadRequest as e:
            return json_response({"message": str(e)}, 400)

    # ---- common parameters -----------------------------------------------------------
    def common(self, limit_default: int, limit_min: int, limit_max: int) -> dict[str, Any]:
        q = self.q
        out: dict[str, Any] = {"limit": limit_default, "format": "tsv"}
        if "start" in q and "startAfter" in q:
            raise BadRequest("Specify either 'start' or 'startAfter', not both")
        if "start" in q:
            out["start"] = _parse_time("start", q["start"], self.now)
        if "startAfter" in q:
            out["startAfter"] = _parse_time("startAfter", q["startAfter"], self.now)
        if "end" in q:
            out["end"] = _parse_time("end", q["end"], self.now)
        if "limit" in q:
            lim = _parse_int(q["limit"])
            if lim is None or not limit_min <= lim <= limit_max:
                raise BadRequest(f"Bad limit: {q['limit']}")
            out["limit"] = lim
        if "format" in q:
            if q["format"] not in ("tsv", "json", "json-o", "json-a"):
                raise BadRequest(f"Bad format: {q['format']}")
            out["format"] = q["format"]
        if "continuationToken" in q:
            if not is_base58(q["continuationToken"]):
                raise BadRequest(f"Bad continuationToken: {q['continuationToken']}")
            out["continuationToken"] = q["continuationToken"]
        out["skipHeaders"] = q.get("skip") == "headers"
        return out

    def rows_response(self, c: dict[str, Any], headers: tuple[str, ...], rows: list[Row],
                      token: str | None, picked: list[tuple[Op3Day, Any]] | None = None,
                      kind: str = "") -> Response:
        """``rows``, or ``picked``: (day, positions in its ``kind`` rows) in order, whose TSV
        lines and JSON objects are formatted once per day and kept (same bytes)."""
        qt = self.query_time()
        fmt = c["format"]
        if picked is not None and fmt in ("tsv", "json", "json-o"):
            formatted = [(_formatted(day, kind, fmt), at) for day, at in picked]
            cells = [part[i] for part, at in formatted for i in at]
        else:
            if picked is not None:
                rows = [getattr(day, kind)[i] for day, at in picked for i in at]
            cells = None
        if fmt == "tsv":
            lines = [] if c["skipHeaders"] else ["\t".join(headers)]
            lines += cells if cells is not None else [_tsv_line(r) for r in rows]
            lines.append("")
            hdrs = [("x-query-time", str(qt))]
            if token:
                hdrs.append(("x-continuation-token", token))
            return Response(200, "\n".join(lines).encode(), "text/tab-separated-values", hdrs + [CORS])
        count = len(cells) if cells is not None else len(rows)
        tail: dict[str, Any] = {"count": count, "queryTime": qt}
        if token:
            tail["continuationToken"] = token
        if cells is not None:
            return Response(200, _pretty_rows(cells, tail), JSON, [CORS])
        body: dict[str, Any]
        if fmt == "json-a":
            body = {"headers": list(headers), "rows": [[v or None for v in r] for r in rows]}
        else:
            body = {"rows": [{h: v for h, v in zip(headers, r, strict=True) if v} for r in rows]}
        return json_response(body | tail)

    # ---- downloads -------------------------------------------------------------------
    def downloads(self, path: str) -> Response:
        m = re.match(r"^/downloads/show/(.*?)$", path)
        if not m:
            raise BadRequest(f"Bad api path: {path}")
        show = m.group(1)
        if not _UUID.match(show):
            raise BadRequest(f"Bad showUuid: {show}")
        c = self.common(100, 0, 20000)
        bots = self.q.get("bots", "exclude")
        if bots not in ("include", "exclude"):
            raise BadRequest(f"Bad bots: {bots}")
        episode = self.q.get("episodeId")
        if episode is not None and not _SHA256.match(episode):
            raise BadRequest(f"Bad episodeId: {episode}")
        token = None
        if "continuationToken" in c:
            token = _unpack_token(c["continuationToken"])
        ds, limit = self.ds, c["limit"]
        known = show == ds.show_uuid
        start_s = c.get("start") or c.get("startAfter")
        day: date | None = date.fromisoformat(start_s[:10]) if start_s else (ds.first_day if known else None)
        rows: list[Row] = []
        row_number = 0
        end_day = date.fromisoformat(c["end"][:10]) if "end" in c else None
        picked: list[tuple[Op3Day, Any]] | None = None
        if day is not None and episode:  # rare: row by row
            if token:
                day = token[0]
            while day <= ds.today and len(rows) < limit:
                if end_day is not None and day > end_day:
                    break  # every later row would be cut by `end` anyway
                row_number = 0
                for r in (ds.op3_day(day).downloads if known else []):
                    row_number += 1
                    t = r[0] or ""
                    if token and day == token[0] and row_number <= token[1]:
                        continue
                    if r[12] and bots == "exclude":
                        continue
                    if "start" in c and t < c["start"]:
                        continue
                    if "startAfter" in c and t <= c["startAfter"]:
                        continue
                    if "end" in c and t >= c["end"]:
                        break
                    if r[4] != episode:
                        continue
                    rows.append(r)
                    if len(rows) >= limit:
                        break
                if len(rows) < limit:
                    day += timedelta(days=1)
        elif day is not None:  # the same rows, found by bisecting each day's sorted times
            if token:
                day = token[0]
            picked, count = [], 0
            while day <= ds.today and count < limit:
                if end_day is not None and day > end_day:
                    break
                od = ds.op3_day(day) if known else _NO_DAY
                times, humans = _derived(od, "download_index", _download_index)
                lo = token[1] if token and day == token[0] else 0
                if "start" in c:
                    lo = max(lo, bisect_left(times, c["start"]))
                if "startAfter" in c:
                    lo = max(lo, bisect_right(times, c["startAfter"]))
                hi = bisect_left(times, c["end"]) if "end" in c else len(times)
                if bots == "exclude":
                    a = bisect_left(humans, lo)
                    at: Any = humans[a:min(bisect_left(humans, hi), a + limit - count)]
                else:
                    at = range(lo, max(lo, min(hi, lo + limit - count)))
                picked.append((od, at))
                count += len(at)
                if count >= limit:
                    row_number = at[-1] + 1  # the position in the day of the last row sent
                else:
                    day += timedelta(days=1)
        sent = len(rows) if picked is None else sum(len(at) for _, at in picked)
        out_token = None
        if sent >= limit and day is not None:
            # Sent whenever the page is full, even if nothing is left: the last page may be empty.
            out_token = b58encode(json.dumps({"date": day.isoformat(), "rowNumber": row_number},
                                             separators=(",", ":")).encode())
        return self.rows_response(c, DOWNLOAD_HEADERS, rows, out_token, picked, "downloads")

    # ---- hits / redirect-logs --------------------------------------------------------
    def hits(self, legacy: bool) -> Response:
        c = self.common(100, 0, 1000)
        q = self.q
        present = [f for f in FILTERS if f in q]
        if len(present) > 1:
            raise BadRequest("Cannot specify more than one filter parameter")
        if not legacy:
            for name in ("userAgent", "referer", "ulid", "xpsId", "urlSha256"):
                if name in q:
                    raise BadRequest(f"The '{name}' filter is no longer supported")
        match: Callable[[Row], bool] = lambda r: True  # noqa: E731
        if "url" in q:
            url = q["url"]
            if url.endswith("*"):
                match = lambda r: (r[4] or "").startswith(url[:-1])  # noqa: E731
            else:
                match = lambda r: r[4] == url  # noqa: E731
        elif "urlSha256" in q:
            h = q["urlSha256"]
            if not _SHA256.match(h):
                raise BadRequest(f"Bad urlSha256: {h}")
            match = lambda r: hashlib.sha256((r[4] or "").encode()).hexdigest() == h  # noqa: E731
        elif "hashedIpAddress" in q:
            h = q["hashedIpAddress"]
            if h == "current":
                h = hashlib.sha1(b"127.0.0.1").hexdigest()  # no download comes from loopback
            elif not _SHA1.match(h):
                raise BadRequest(f"Bad hashedIpAddress: {h}")
            match = lambda r: r[2] == h  # noqa: E731
        elif present and legacy:  # /hits counts edgeColo/method as filters but ignores them
            col = {"userAgent": 5, "referer": 6, "xpsId": 8, "ulid": 9, "edgeColo": 10, "method": 3}[present[0]]
            val = q[present[0]]
            match = lambda r: r[col] == val  # noqa: E731
        desc = not legacy and "desc" in q and q["desc"] != "false"
        ds, limit = self.ds, c["limit"]
        lo = max(ds.first_day, date.fromisoformat((c.get("start") or c.get("startAfter") or "0001-01-01")[:10]))
        hi = min(ds.yesterday, date.fromisoformat(c["end"][:10]) if "end" in c else ds.yesterday)
        days = [lo + timedelta(days=k) for k in range((hi - lo).days + 1)]
        rows: list[Row] = []
        if not desc:  # the same rows, found by bisecting each day's sorted times
            picked: list[tuple[Op3Day, Any]] = []
            count = 0
            for d in days:
                if count >= limit:
                    break
                od = ds.op3_day(d)
                times = _derived(od, "hit_times", lambda day: [h[0] or "" for h in day.hits])
                lo = bisect_left(times, c["start"]) if "start" in c else 0
                if "startAfter" in c:
                    lo = max(lo, bisect_right(times, c["startAfter"]))
                hi = bisect_left(times, c["end"]) if "end" in c else len(times)
                at = []
                for i in range(lo, hi):
                    if match(od.hits[i]):
                        at.append(i)
                        if count + len(at) >= limit:
                            break
                picked.append((od, at))
                count += len(at)
            return self.rows_response(c, HIT_HEADERS, [], None, picked, "hits")
        for d in reversed(days):
            if len(rows) >= limit:
                break
            day_rows = ds.op3_day(d).hits
            for r in reversed(day_rows):
                t = r[0] or ""
                if ("start" in c and t < c["start"]) or ("startAfter" in c and t <= c["startAfter"]) \
                        or ("end" in c and t >= c["end"]) or not match(r):
                    continue
                rows.append(r)
                if len(rows) >= limit:
                    break
        return self.rows_response(c, HIT_HEADERS, rows, None)

    # ---- shows -----------------------------------------------------------------------
    def _lookup(self, ident: str) -> bool:
        ds = self.ds
        if ident in (ds.show_uuid, ds.podcast_guid) or ident.lower() == ds.podcast_guid:
            return True
        try:
            return base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode() == ds.feed_url
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return False

    def show(self, ident: str) -> Response:
        episodes = self.q.get("episodes", "exclude")
        if episodes not in ("include", "exclude"):
            raise BadRequest(f"Bad episodes: {episodes}")
        if not self._lookup(ident):
            return json_response({"message": "not found"}, 404)
        ds = self.ds
        body: dict[str, Any] = {"showUuid": ds.show_uuid, "title": ds.show_title,
                                "podcastGuid": ds.podcast_guid,
                                "statsPageUrl": f"https://op3.dev/show/{ds.show_uuid}"}
        if episodes == "include":
            eps = sorted(ds.published, key=lambda e: -(e.publish_ts or 0))
            body["episodes"] = [
                {"id": e.op3_episode_id, **({"title": e.title} if e.title else {}),
                 "pubdate": _iso(e.publish_ts or 0), "itemGuid": e.guid} for e in eps]
        return json_response(body)

    # ---- queries ---------------------------------------------------------------------
    def recentEpisodesWithTranscripts(self) -> Response:  # noqa: N802
        limit = 100
        if "limit" in self.q:
            lim = _parse_int(self.q["limit"])
            if lim is None or not 1 <= lim <= 100:
                return json_response({"message": f"Bad limit: {self.q['limit']}, must be an integer between 1 and 100"}, 400)
            limit = lim
        ds = self.ds
        eps = sorted((e for e in ds.published if e.has_transcript), key=lambda e: -(e.publish_ts or 0))
        out = []
        for e in eps[:limit]:
            first = max(e.publish_day or ds.first_day, ds.yesterday - timedelta(days=29))
            daily = {d.isoformat(): n for d in ds.data_days(first)
                     if (n := ds.download_count(d, e.op3_episode_id)) > 0}
            out.append({"pubdate": _iso(e.publish_ts or 0), "podcastGuid": ds.podcast_guid,
                        "episodeItemGuid": e.guid, "hasTranscripts": True, "dailyDownloads": daily})
        rt = {"asof": _iso(_epoch(ds.today)), "episodes": out}
        return json_response({"rt": rt, "queryTime": self.query_time()})

    def topAppsForShow(self) -> Response:  # noqa: N802
        q = self.q
        if "showUuid" in q:
            ident = q["showUuid"]
            if not _UUID.match(ident):
                return json_response({"message": f"Bad showUuid: {ident}"}, 400)
        elif "podcastGuid" in q:
            ident = q["podcastGuid"]
            if not re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", ident, re.I):
                return json_response({"message": f"Bad podcastGuid: {ident}"}, 400)
        elif "feedUrlBase64" in q:
            ident = q["feedUrlBase64"]
            if not re.match(r"^[0-9a-zA-Z_-]{15,}$", ident):
                return json_response({"message": f"Bad feedUrlBase64: {ident}"}, 400)
        else:
            return json_response({"message": "Must provide either showUuid, podcastGuid or feedUrlBase64"}, 400)
        ds = self.ds
        found = self._lookup(ident)
        if not found and "showUuid" not in q:
            return json_response({"message": "not found"}, 404)
        apps: Counter[str] = Counter()
        if found:
            m = ds.today.month - 2
            first = date(ds.today.year + (m - 1) // 12, (m - 1) % 12 + 1, 1)
            apps = ds.app_downloads(ds.data_days(first))
        ordered = dict(sorted(apps.items(), key=lambda kv: (-kv[1], kv[0])))
        return json_response({"showUuid": ident, "appDownloads": ordered, "queryTime": self.query_time()})

    def topApps(self) -> Response:  # noqa: N802
        ds, q = self.ds, self.q
        device: str | None = None
        if "deviceName" in q:
            device = q["deviceName"]
        elif "userAgent" in q:
            device = _device_for_ua(q["userAgent"])
            if device is None:
                return json_response({"error": "unknown device"}, 400)
        if device is not None and device not in DEVICES:
            return json_response({"error": "unknown device"}, 400)
        days = ds.data_days(ds.yesterday - timedelta(days=29))
        counts: Counter[str] = Counter()
        for d in days:
            counts.update(r[7] for r in ds.op3_day(d).downloads
                          if not r[12] and r[7] and (device is None or r[9] == device))
        total = sum(counts.values())
        shares = {k: round(100 * v / total, 6) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
        body: dict[str, Any] = {"appShares": shares}
        if device is not None:
            body["deviceName"] = device
        body |= {"minDate": (ds.yesterday - timedelta(days=29)).isoformat(),
                 "maxDate": ds.yesterday.isoformat(), "queryTime": self.query_time()}
        return json_response(body)

    def showDownloadCounts(self) -> Response:  # noqa: N802
        uuids = [v for k, v in self.params if k == "showUuid"]
        if not uuids:
            return json_response({"error": "Bad showUuid: undefined"}, 400)
        for u in uuids:
            if not _UUID.match(u):  # also refuses a comma-separated list
                return json_response({"error": f"Bad showUuid: {u}"}, 400)
        ds = self.ds
        counts: dict[str, Any] = {}
        if ds.show_uuid in uuids:
            last30 = [ds.yesterday - timedelta(days=29 - k) for k in range(30)]
            per = [ds.download_count(d) if ds.has_data(d) else 0 for d in last30]
            weeks = [sum(per[2 + 7 * w: 9 + 7 * w]) for w in range(4)]
            num_weeks = min(4, sum(1 for d in ds.data_days(ds.yesterday - timedelta(days=27))) // 7)
            avg = int(sum(weeks[4 - num_weeks:]) / num_weeks + 0.5) if num_weeks else 0
            counts[ds.show_uuid] = {"days": "".join("1" if n else "0" for n in per),
                                    "monthlyDownloads": sum(per), "weeklyDownloads": weeks,
                                    "weeklyAvgDownloads": avg, "numWeeks": num_weeks}
        return json_response({"asof": ds.yesterday.isoformat(), "showDownloadCounts": counts,
                              "queryTime": self.query_time()})

    def episodeDownloadCounts(self) -> Response:  # noqa: N802
        show = self.q.get("showUuid")
        if show is None or not _UUID.match(show):
            return json_response({"message": f"Bad showUuid: {show}"}, 400)
        ds = self.ds
        if show != ds.show_uuid:
            return json_response({"message": "not found"}, 404)
        eps = sorted(ds.published, key=lambda e: -(e.publish_ts or 0))
        out = []
        for e in eps:
            pd = e.publish_day or ds.first_day
            per = [ds.download_count(d, e.op3_episode_id) for d in ds.data_days(pd)]
            row: dict[str, Any] = {"itemGuid": e.guid, "title": e.title or "", "pubdate": _iso(e.publish_ts or 0)}
            for n in (1, 3, 7, 30):
                if len(per) >= n:
                    row[f"downloads{n}"] = sum(per[:n])
            row["downloadsAll"] = sum(per)
            out.append(row)
        return json_response({"showUuid": show, "showTitle": ds.show_title,
                              "minDownloadHour": f"{ds.first_day.isoformat()}T00",
                              "maxDownloadHour": f"{ds.yesterday.isoformat()}T23",
                              "episodes": out, "queryTime": self.query_time()})


_NO_DAY = Op3Day([], [])  # an unknown show's days


def _derived(day: Op3Day, name: str, build: Callable[[Op3Day], Any]) -> Any:
    """What ``build`` derives from a day's rows, made once and kept with the day."""
    got = day.memo.get(name)
    if got is None:
        got = day.memo[name] = build(day)
    return got


def _download_index(day: Op3Day) -> tuple[list[str], list[int]]:
    """(every download's time, ascending; the positions of those not by bots)."""
    return ([r[0] or "" for r in day.downloads],
            [i for i, r in enumerate(day.downloads) if not r[12]])


def _tsv_line(r: Row) -> str:
    return "\t".join(v or "" for v in r)


def _formatted(day: Op3Day, kind: str, fmt: str) -> list[str]:
    """Every ``kind`` row of ``day`` as a TSV line, or as the JSON object ``pretty`` writes
    inside the ``rows`` list (a row's blank fields left out)."""
    def build(day: Op3Day) -> list[str]:
        rows: list[Row] = getattr(day, kind)
        if fmt == "tsv":
            return [_tsv_line(r) for r in rows]
        keys = [f"      {_enc(h)}: " for h in (DOWNLOAD_HEADERS if kind == "downloads"
                                                 else HIT_HEADERS)]
        return [_pretty_object([k + _enc(v) for k, v in zip(keys, r, strict=True) if v])
                for r in rows]
    return _derived(day, f"{kind}:{'tsv' if fmt == 'tsv' else 'json'}", build)


def _pretty_object(members: list[str]) -> str:
    return "    {\n" + ",\n".join(members) + "\n    }" if members else "    {}"


def _pretty_rows(objects: list[str], tail: dict[str, Any]) -> bytes:
    """``pretty({"rows": [...], **tail})`` from the rows' objects already written."""
    head = '{\n  "rows": [\n' + ",\n".join(objects) + "\n  ]" if objects else '{\n  "rows": []'
    rest = "".join(f",\n  {_enc(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in tail.items())
    return (head + rest + "\n}").encode()


_enc = json.encoder.encode_basestring  # json.dumps(text, ensure_ascii=False) of a str, in C


def _unpack_token(token: str) -> tuple[date, int]:
    try:
        obj = json.loads(b58decode(token).decode())
        d, n = obj["date"], obj["rowNumber"]
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
            raise ValueError
        return date.fromisoformat(d), n
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequest(f"Bad continuationToken: {token}") from None


def _device_for_ua(ua: str) -> str | None:
    for needle, device in (("iPhone", "Apple iPhone"), ("iPad", "Apple iPad"), ("Android", "Android Phone"),
                           ("Windows", "Windows Computer"), ("Darwin", "Apple Computer"),
                           ("Macintosh", "Apple Computer"), ("Echo/", "Amazon Echo")):
        if needle in ua:
            return device
    return None


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
