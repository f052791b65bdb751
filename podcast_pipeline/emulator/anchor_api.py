"""The Spotify for Creators (Anchor) analytics API, served from the synthetic dataset.

Shapes, key order and types follow the recorded responses in podcast_pipeline_tests/recorded/anchor.
Paths here are relative to the base ``/pod/api/proxy/v3``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from datetime import date, timedelta
from typing import Any

from .common import Response, b58decode, b58encode, compact, iso_ms
from .data import AGE_RANGES, DAY, GENDERS, Dataset, Episode, day_epoch, epoch_day

PREFIX = "/pod/api/proxy/v3"
STATION_KINDS = ("totalPlays", "totalPlaysByEpisode", "uniqueListeners", "audienceSize", "plays",
                 "playsByAgeRange", "playsByApp", "playsByDevice", "playsByEpisode",
                 "playsByGender", "playsByGeo")
EPISODE_KINDS = {"plays": "episodePlays", "performance": "episodePerformance",
                 "aggregatedPerformance": "episodeAggregatedPerformance"}
INTERVALS = (86400, 604800, 2628000)

_EPISODE_PAGE = re.compile(r"^/stations/([^/]+)/episodePage$")
_STATION = re.compile(r"^/analytics/station/([^/]+)(?:/([^/]+))?$")
_EPISODE = re.compile(r"^/analytics/episode/([^/]+)/([^/]+)$")
_OVERVIEW = re.compile(r"^/episodes/([^/]+)/overview$")

AGE_COLORS = dict.fromkeys(AGE_RANGES, "#26008D")
GENDER_COLORS = {"Male": "#26008D", "Female": "#5925FF", "Not specified": "#9691FF",
                 "Non-binary": "#D7DBFF"}
APP_COLORS = {"Spotify": "#1ED760", "Web Browser": "#5D55FF", "Apple Podcasts": "#D56DFB",
              "Pocket Casts": "#F43E37", "CastBox": "#F55B23", "Overcast": "#FC7E0F"}
DEVICE_COLORS = {"iPhone": "#5D55FF", "Android": "#26008D", "Mac": "#EF77A1",
                 "Windows": "#80AC0B", "Other": "#FF4834"}
TIME_COL = {"name": "Time (UTC)", "type": "integer", "isDateTime": True}


def errors(status: int, message: str, prop: str | None = None) -> Response:
    """Anchor's only recorded error body is ``{"errors":[{"property","message"}]}``."""
    item = {"property": prop, "message": message} if prop else {"message": message}
    return Response(status, compact({"errors": [item]}))


def unauthorized() -> Response:
    return errors(401, "Unauthorized")


def rate_limited(retry_after: int | None) -> Response:
    r = errors(429, "Too Many Requests")
    if retry_after is not None:
        r.headers.append(("Retry-After", str(retry_after)))
    return r


def server_error(status: int) -> Response:
    if status == 500:
        return errors(500, "Internal Server Error")
    text = {502: "Bad Gateway", 503: "Service Unavailable"}[status]
    return Response(status, f"<html><body><h1>{status} {text}</h1></body></html>\n".encode(),
                    "text/html")


def endpoint_name(path: str, query: dict[str, str]) -> str:
    if _EPISODE_PAGE.match(path):
        return "episodePage"
    if m := _STATION.match(path):
        kind = m.group(2)
        if kind is None:
            return "impressions"
        if kind == "playsByGeo" and query.get("resultGeo") == "geo3":
            return "playsByGeoCity"
        return kind if kind in STATION_KINDS else "unknown"
    if m := _EPISODE.match(path):
        return EPISODE_KINDS.get(m.group(2), "unknown")
    if _OVERVIEW.match(path):
        return "episodeOverview"
    return "unknown"


def show_ref(path: str) -> tuple[str, object] | None:
    """Which show a path names, for an emulated network to route it: ("station", id),
    ("webstation", id) or ("episode", id); None when it names none."""
    if m := _EPISODE_PAGE.match(path) or _STATION.match(path):
        sid = m.group(1)
        if sid.startswith("webStationId:"):
            return "webstation", sid.split(":", 1)[1]
        return ("station", int(sid)) if sid.isdigit() else None
    if m := _EPISODE.match(path) or _OVERVIEW.match(path):
        return ("episode", int(m.group(1))) if m.group(1).isdigit() else None
    return None


def not_owner() -> Response:
    """Another account's station or episode: the answer documented for shared-access accounts."""
    return errors(403, "User does not own station")


def handle(ds: Dataset, method: str, path: str, query: dict[str, str]) -> Response:
    if method != "GET":
        return errors(405, f"{method} not allowed")
    if not (_EPISODE_PAGE.match(path) or _STATION.match(path) or _EPISODE.match(path)
            or _OVERVIEW.match(path)):
        return errors(404, "Not Found")
    # Shared-access accounts are refused without the flag; the reference client always sends it.
    if query.get("isMumsCompatible") != "true":
        return errors(403, "User does not own station")
    if m := _EPISODE_PAGE.match(path):
        return _episode_page(ds, m.group(1), query)
    if m := _STATION.match(path):
        sid = m.group(1)
        if not sid.isdigit():
            return errors(400, "should be integer", "params.stationId")
        if int(sid) != ds.station_id:
            return errors(403, "User does not own station")
        return _station(ds, int(sid), m.group(2), query)
    if m := _EPISODE.match(path):
        return _episode_analytics(ds, m.group(1), m.group(2), query)
    m = _OVERVIEW.match(path)
    assert m is not None
    return _overview(ds, m.group(1))


# ---- helpers -------------------------------------------------------------------------

def _int(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _range(ds: Dataset, query: dict[str, str]) -> tuple[int, int] | Response:
    start, end = _int(query, "timeRangeStart"), _int(query, "timeRangeEnd")
    for name, val in (("timeRangeStart", start), ("timeRangeEnd", end)):
        if query.get(name) not in (None, "") and val is None:
            return errors(400, "should be integer", f"query.{name}")
    # Absent range: the last 30 complete days (the web UI's default view).
    if start is None:
        start = day_epoch(ds.today - timedelta(days=30))
    if end is None:
        end = day_epoch(ds.yesterday)
    return start, end


def _days(ds: Dataset, start: int, end: int) -> list[date]:
    """Data days of the UTC-midnight buckets from start to end, the end bucket included."""
    return ds.data_days(epoch_day(start), epoch_day(end))


def _bucket(d: date, first: date, interval: int) -> int:
    if interval == 604800:
        return day_epoch(first + timedelta(days=(d - first).days // 7 * 7))
    if interval == 2628000:
        return day_epoch(max(first, d.replace(day=1)))
    return day_epoch(d)


def _interval(query: dict[str, str]) -> int | Response:
    raw = query.get("timeInterval")
    if raw is None:
        return 86400
    val = _int(query, "timeInterval")
    if val not in INTERVALS:
        return errors(400, f"is not one of enum values: {','.join(map(str, INTERVALS))}",
                      "query.timeInterval")
    return val


def _envelope(key: str, ident: int, kind: str, data: dict[str, Any],
              parameters: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {key: ident, "kind": kind}
    if parameters is not None:
        body["parameters"] = parameters
    body["data"] = data
    return Response(200, compact(body))


# ---- station analytics ---------------------------------------------------------------

def _station(ds: Dataset, sid: int, kind: str | None, query: dict[str, str]) -> Response:
    if kind is None:
        return _impressions(ds, sid, query)
    if kind not in STATION_KINDS:
        return errors(400, "is not one of enum values: " + ",".join(STATION_KINDS),
                      "params.queryKind")
    env = lambda data, params=None: _envelope("stationId", sid, kind, data, params)  # noqa: E731
    if kind == "totalPlays":
        return env({"rows": [ds.total_plays()],
                    "columnHeaders": [{"name": "Plays", "type": "integer"}]})
    if kind == "uniqueListeners":
        return env({"rows": [ds.unique_listeners()],
                    "columnHeaders": [{"name": "Unique Listeners", "type": "integer"}]})
    if kind == "audienceSize":
        return env({"rows": [ds.audience_size()],
                    "columnHeaders": [{"name": "Audience Size", "type": "integer"}]})
    if kind == "totalPlaysByEpisode":
        totals = ds.total_plays_by_episode()
        eps = sorted(ds.published, key=lambda e: (-totals[e.episode_id], -(e.publish_ts or 0)))
        rows = [[e.title, e.episode_id, totals[e.episode_id], e.publish_ts, rank, e.spotify_uri]
                for rank, e in enumerate(eps, 1)]
        return env({"rows": rows, "columnHeaders": [
            {"name": "Episode Title", "type": "string"},
            {"name": "Episode ID", "type": "integer"},
            {"name": "Streams & Downloads", "type": "integer"},
            {"name": "Publish Time (UTC)", "type": "integer", "isDateTime": True},
            {"name": "Rank", "type": "integer"},
            {"name": "Episode URI", "type": "string"}]})
    if kind == "playsByGeo":
        return _geo(ds, sid, query)
    rng = _range(ds, query)
    if isinstance(rng, Response):
        return rng
    start, end = rng
    days = _days(ds, start, end)
    if kind in ("plays", "playsByEpisode"):
        interval = _interval(query)
        if isinstance(interval, Response):
            return interval
        if kind == "plays":
            rows = _series(ds, days, epoch_day(start), interval, None)
            return env({"rows": rows, "columnHeaders": [TIME_COL, {"name": "Plays", "type": "integer"}]},
                       {"timeRange": [start, end], "timeInterval": interval})
        limit = _int(query, "limit") or 5
        return _plays_by_episode(ds, env, days, start, end, interval, limit)
    spec = {"playsByAgeRange": ("age", "Age Range", AGE_COLORS, AGE_RANGES),
            "playsByGender": ("gender", "Gender", GENDER_COLORS, GENDERS),
            "playsByApp": ("app", "App", APP_COLORS, None),
            "playsByDevice": ("device", "Device", DEVICE_COLORS, None)}[kind]
    cat, col, colors, fixed = spec
    counts: Counter[str] = Counter()
    for d in days:
        counts.update(ds.anchor_day(d).categories[cat])
    total = sum(counts.values())
    headers = [{"name": col, "type": "string"}, {"name": "Percent of Plays", "type": "number"}]
    with_interval = kind in ("playsByApp", "playsByDevice")

    def params(tr: list[int]) -> dict[str, Any]:
        if with_interval:
            return {"minValue": 0.02, "timeRange": tr, "timeInterval": 86400}
        return {"timeRange": tr}

    if total == 0:  # as recorded for a show with too few plays
        return env({"rows": [], "columnHeaders": headers, "translationMapping": {}, "colors": {}},
                   params([]))
    if fixed is not None:
        keys = list(fixed)
    else:
        keys = sorted((k for k in counts if counts[k] > 0), key=lambda k: (k == "Other", -counts[k], k))
    rows = [[k, counts[k] / total if counts[k] else 0] for k in keys]
    if ds.config.broken_fraction == cat and ds.yesterday in days:
        rows[0][1] += 0.25  # --broken-fraction: a share that makes the day sum to 1.25
    mapping = {k: k for k in (sorted(keys) if kind == "playsByGender" else keys)}
    return env({"rows": rows, "translationMapping": mapping, "columnHeaders": headers,
                "colors": {k: colors.get(k, "#9691FF") for k in keys}}, params([start, end]))


def _series(ds: Dataset, days: list[date], first: date, interval: int,
            episode_id: int | None) -> list[list[int]]:
    buckets: dict[int, int] = {}
    for d in days:
        n = ds.station_plays(d) if episode_id is None else ds.episode_plays(episode_id, d)
        key = _bucket(d, first, interval)
        buckets[key] = buckets.get(key, 0) + n
    return [[k, v] for k, v in buckets.items()]


def _plays_by_episode(ds: Dataset, env: Any, days: list[date], start: int, end: int,
                      interval: int, limit: int) -> Response:
    per_bucket: dict[int, Counter[int]] = {}
    for d in days:
        per_bucket.setdefault(_bucket(d, epoch_day(start), interval), Counter()).update(
            ds.anchor_day(d).plays)
    labels: dict[int, str] = {}
    rows: list[list[Any]] = []
    for key, counter in per_bucket.items():
        top = sorted((e for e in counter.items() if e[1] > 0), key=lambda e: (-e[1], e[0]))[:limit]
        for eid, n in top:
            label = labels.setdefault(eid, str(len(labels)))
            rows.append([key, label, n])
    titles = {label: (ep.title if (ep := ds.episode(eid)) else None) for eid, label in labels.items()}
    return env({"rows": rows, "columnHeaders": [
        TIME_COL, {"labelKey": "EpisodeTitle", "type": "string"}, {"name": "Plays", "type": "integer"}],
        "labels": {"EpisodeTitle": titles}},
        {"timeRange": [start, end], "timeInterval": interval, "limit": limit})


def _round_geo(v: float) -> float:
    return round(v, 2) if v >= 0.01 else v


def _geo(ds: Dataset, sid: int, query: dict[str, str]) -> Response:
    result = query.get("resultGeo", "geo2")
    limit = _int(query, "limit") or 200
    country = query.get("geo2") if result == "geo3" else None
    if result not in ("geo2", "geo3") or (result == "geo3" and not country):
        return errors(400, "is invalid", "query.resultGeo")
    counts = ds.category_counts("city" if country else "geo", ds.first_day, ds.yesterday, country)
    total = sum(counts.values())
    top = sorted((k for k in counts if counts[k] > 0), key=lambda k: (-counts[k], k))[:limit]
    rows = [[k, _round_geo(counts[k] / total)] for k in top]
    # Echoed as the live service does: geo_4 for the country list, geo_3 for regions.
    params = {"geos": [None, country, None], "resultGeo": "geo_3" if country else "geo_4",
              "timeRange": [day_epoch(ds.first_day), day_epoch(ds.today)], "timeInterval": 3600}
    return _envelope("stationId", sid, "playsByGeo", {
        "rows": rows,
        "columnHeaders": [{"name": "Geo", "type": "string"}, {"name": "Percent of Plays", "type": "number"}],
        "assets": {"flagUrlByGeo": {}}}, params)


def _impressions(ds: Dataset, sid: int, query: dict[str, str]) -> Response:
    bad = errors(400, "is invalid", "query.query")
    try:
        spec = json.loads(base64.b64decode(query.get("query", ""), validate=True))
        include = spec["include"]
        opts = spec["options"]
        windows = {k: (float(opts[k]["startTime"]), float(opts[k]["endTime"])) for k in include}
    except (ValueError, KeyError, TypeError, binascii.Error):
        return bad
    if not include or not set(include) <= {"impressions", "dailyImpressions", "impressionsBySource"}:
        return bad
    body: dict[str, Any] = {}
    for k in include:
        s, e = windows[k]
        days = ds.data_days(epoch_day(s), epoch_day(e))
        per_day = [(d, sum(ds.anchor_day(d).impressions.values())) for d in days]
        total = sum(n for _, n in per_day)
        if k == "impressions":
            body[k] = {"count": total, "start": s, "end": e}
        elif k == "dailyImpressions":
            body[k] = {"counts": [{"date": d.isoformat(), "count": n} for d, n in per_day]}
        else:
            by_src: Counter[str] = Counter()
            for d in days:
                by_src.update(ds.anchor_day(d).impressions)
            body[k] = {"count": total, "start": s, "end": e, "sourcedCounts": {"counts": {
                src: by_src[src] for src in ("SEARCH", "LIBRARY", "OTHER", "HOME")}}}
    return Response(200, compact(body))


# ---- episodes ------------------------------------------------------------------------

def _slug(ep: Episode) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", ep.title or "untitled").strip("-")
    return f"{base}-{ep.web_episode_id}"


def _page_token(ds: Dataset, offset: int) -> str:
    return b58encode(f"{ds.salt}:{offset}:pg".encode())


def _episode_page(ds: Dataset, sid: str, query: dict[str, str]) -> Response:
    if sid.startswith("webStationId:"):
        if sid.split(":", 1)[1] != ds.webstation_id:
            return errors(403, "User does not own station")
    elif not sid.isdigit():
        return errors(400, "should be integer", "params.stationId")
    elif int(sid) != ds.station_id:
        return errors(403, "User does not own station")
    limit = _int(query, "limit") if "limit" in query else 15
    if limit is None or not 1 <= limit <= 100:
        return errors(400, "should be <= 100 and >= 1", "query.limit")
    offset = 0
    token = query.get("pageToken")
    if token:
        try:
            seed, off, tag = b58decode(token).decode().split(":")
            offset = int(off)
            assert tag == "pg" and seed == ds.salt and offset >= 0
        except (ValueError, AssertionError, UnicodeDecodeError):
            return errors(400, "is invalid", "query.pageToken")
    # Drafts (no publish time) first, then newest published first.
    eps = ds.drafts + sorted(ds.published, key=lambda e: -(e.publish_ts or 0))
    totals = ds.total_plays_by_episode()
    page = eps[offset:offset + limit]
    nxt = None
    if offset + limit < len(eps):
        nxt = (f"/v3/stations/{ds.station_id}/episodePage?orderBy=publishOn&limit={limit}"
               f"&pageToken={_page_token(ds, offset + limit)}")
    items = [{
        "episodeId": e.episode_id,
        "webEpisodeId": e.web_episode_id,
        "title": e.title,
        "publishOnUnixTimestamp": e.publish_ts,
        "createdUnixTimestamp": e.created_ts,
        "shareLinkPath": f"/{ds.vanity}/episodes/{_slug(e)}",
        "shareLinkEmbedPath": f"/{ds.vanity}/embed/episodes/{_slug(e)}",
        "downloadUrl": None if e.is_draft else _download_url(e),
        "totalPlays": totals.get(e.episode_id, 0),
        "duration": e.duration_s * 1000 + e.episode_id % 997,
        "adCount": 0,
        "containsMusicSegments": False,
        "isPublishedToSpotifyExclusively": False,
        "wordpressPostMetadataId": None,
        "isTrailer": False,
        "isVideoEpisode": False,
        "audioCount": 1,
        "spotifyEpisodeUri": None if e.is_draft else e.spotify_uri,
        "spotifyShowUri": ds.spotify_show_uri,
    } for e in page]
    return Response(200, compact({"items": items, "next": nxt, "stationId": ds.station_id}))


def _download_url(e: Episode) -> str:
    return (f"/pod/api/audio/a{e.web_episode_id[1:]}/download?url=https%3A%2F%2F"
            f"d3ctxlq1ktw2nl.cloudfront.net%2Fstaging%2F{e.guid}.m4a")


def _find_episode(ds: Dataset, raw: str) -> Episode | Response:
    if not raw.isdigit():
        return errors(400, "should be integer", "params.episodeId")
    ep = ds.episode(int(raw))
    if ep is None:
        return errors(404, "Episode not found")
    return ep


def _episode_analytics(ds: Dataset, raw: str, kind: str, query: dict[str, str]) -> Response:
    if kind not in EPISODE_KINDS:  # e.g. allTimeVideoData, exactly as recorded
        return errors(400, "is not one of enum values: plays,totalPlays,performance,aggregatedPerformance",
                      "params.queryKind")
    ep = _find_episode(ds, raw)
    if isinstance(ep, Response):
        return ep
    eid = ep.episode_id
    if kind == "plays":
        rng = _range(ds, query)
        if isinstance(rng, Response):
            return rng
        interval = _interval(query)
        if isinstance(interval, Response):
            return interval
        start, end = rng
        rows = _series(ds, _days(ds, start, end), epoch_day(start), interval, eid)
        return _envelope("episodeId", eid, "plays", {
            "rows": rows, "columnHeaders": [TIME_COL, {"name": "Plays", "type": "integer"}]},
            {"timeRange": [start, end], "timeInterval": interval})
    if kind == "performance":
        return _envelope("episodeId", eid, "performance", {
            "rows": [[i, str(n)] for i, n in enumerate(ds.performance(eid))],
            "columnHeaders": [{"name": "Sample", "type": "integer"},
                              {"name": "Listeners", "type": "integer"}]})
    return _envelope("episodeId", eid, "aggregatedPerformance", {
        "rows": [list(r) for r in ds.aggregated_performance(eid)],
        "columnHeaders": [{"name": "Metric", "type": "string"}, {"name": "Value", "type": "integer"}]})


def _overview(ds: Dataset, raw: str) -> Response:
    ep = _find_episode(ds, raw)
    if isinstance(ep, Response):
        return ep
    # A draft's overview answers 200 with isPublished false and no publish time (as the
    # dashboard's editor shows it): a 403 here was only inferred, and it made the reference
    # client's own CLI (`python -m anchorconnector`) crash on the first draft it listed.
    pub = ep.publish_ts
    return Response(200, compact({
        "created": iso_ms(ep.created_ts),
        "createdUnixTimestamp": ep.created_ts,
        "description": f"<p>{ep.title or ''}</p>",
        "totalDuration": ep.duration_s * 1000,
        "hourOffset": -1,
        "isDeleted": False,
        "isPublished": not ep.is_draft,
        "webEpisodeId": ep.web_episode_id,
        "webStationId": ds.webstation_id,
        "publishOn": None if pub is None else iso_ms(pub),
        "publishOnUnixTimestamp": pub,
        "title": ep.title,
        "episodeAudios": [{"url": f"https://d3ctxlq1ktw2nl.cloudfront.net/staging/{ep.guid}.m4a"}],
        "spotifyUrl": None if ep.is_draft else
        f"https://open.spotify.com/episode/{ep.spotify_uri.rsplit(':', 1)[1]}",
        "episodeImage": None,
        "shareLinkPath": f"/{ds.vanity}/episodes/{_slug(ep)}",
        "shareLinkEmbedPath": f"/{ds.vanity}/embed/episodes/{_slug(ep)}",
    }))


__all__ = ["DAY", "PREFIX", "endpoint_name", "handle", "not_owner", "rate_limited", "server_error",
           "show_ref", "unauthorized"]
