"""The emulator over real HTTP: shapes against the recorded responses and the OP3 swagger,
cross-endpoint consistency, pagination, error bodies, faults, stats and expiry (the CLI is in
test_emulator_cli.py)."""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jsonschema
import pytest
import requests

from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.emulator.common import b58decode
from podcast_pipeline.emulator.data import day_epoch
from podcast_pipeline.emulator.faults import FaultEngine
from podcast_pipeline_tests.recorded import anchor_body, op3_body, op3_swagger

TODAY = date(2025, 6, 1)
YESTERDAY = TODAY - timedelta(days=1)


# ---- helpers -------------------------------------------------------------------------

class Clients:
    def __init__(self, emu: Emulator) -> None:
        self.emu, self.ds, env = emu, emu.dataset, emu.env
        self.anchor = requests.Session()
        self.anchor.cookies.set("anchorpw_s", env["ANCHOR_PW_S"])
        self.op3 = requests.Session()
        self.op3.headers["Authorization"] = f"Bearer {env['OP3_TOKEN']}"
        self.a_base, self.o_base = env["ANCHOR_BASE_URL"], env["OP3_BASE_URL"]

    def a(self, path: str, **params: Any) -> requests.Response:
        params.setdefault("isMumsCompatible", "true")
        return self.anchor.get(self.a_base + path, params=params, timeout=10)

    def station(self, kind: str, **params: Any) -> requests.Response:
        return self.a(f"/analytics/station/{self.ds.station_id}/{kind}", **params)

    def o(self, path: str, **params: Any) -> requests.Response:
        return self.op3.get(self.o_base + path, params=params, timeout=10, allow_redirects=False)


@pytest.fixture
def c(emulator: Emulator) -> Clients:
    return Clients(emulator)


def rng(start: date, end: date, **extra: Any) -> dict[str, Any]:
    return {"timeRangeStart": day_epoch(start), "timeRangeEnd": day_epoch(end), **extra}


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    return {str: "str", list: "list", dict: "dict"}[type(x)]


def _alts(values: list[Any]) -> dict[str, Any]:
    """Merge sibling values into one alternative per JSON type (dicts key-wise, lists flat)."""
    out: dict[str, Any] = {}
    for v in values:
        k = _kind(v)
        if k == "dict":
            for kk, vv in v.items():
                out.setdefault("dict", {}).setdefault(kk, []).append(vv)
            out.setdefault("dict", {})
            out["dicts"] = out.get("dicts", 0) + 1  # siblings merged: a key in all of them is required
        elif k == "list":
            out.setdefault("list", []).extend(v)
        else:
            out.setdefault(k, v)
    return out


def _sig(x: Any) -> Any:
    k = _kind(x)
    if k == "dict":
        return tuple(sorted((kk, _sig(v)) for kk, v in x.items()))
    if k == "list":
        return ("list", frozenset(_sig(v) for v in x))
    return k


# Dicts whose keys are data (titles, app names, dates, uuids), not field names.
MAP_KEYS = {"EpisodeTitle", "translationMapping", "colors", "appDownloads", "appShares",
            "dailyDownloads", "showDownloadCounts", "flagUrlByGeo"}


def shape_errors(recorded: Any, emulated: Any, *, subset: bool = False,
                 extra_ok: frozenset[str] = frozenset(), ignore: frozenset[str] = frozenset(),
                 nullable: frozenset[str] = frozenset()) -> list[str]:
    """Recursive structural comparison: same key sets and JSON types, list elements typed alike.

    ``subset``: absent fields are omitted (OP3), so emulated keys need only be recorded keys.
    A null is accepted where the recorded value is a string (titles can be null)."""
    errs: list[str] = []

    def check(rec_values: list[Any], emu: Any, path: str) -> None:
        a = _alts(rec_values)
        k = _kind(emu)
        a.pop("dicts", None) if "dict" not in a else None
        if k == "null" and path.rsplit(".", 1)[-1] in nullable:
            return
        if not a or set(a) == {"null"} or (k == "null" and ("null" in a or "str" in a)):
            return
        if k not in a:
            errs.append(f"{path}: {k} where recorded has {sorted(a)}")
            return
        if k == "dict":
            rd = a["dict"]
            if path.rsplit(".", 1)[-1] in MAP_KEYS:
                vals = [v for vs in rd.values() for v in vs]
                for v in emu.values():
                    if vals:
                        check(vals, v, path + "{}")
                return
            n = a["dicts"]
            extra = set(emu) - set(rd) - extra_ok
            missing = {key for key, vs in rd.items() if len(vs) == n} - set(emu) - ignore
            if extra:
                errs.append(f"{path}: unexpected keys {sorted(extra)}")
            if missing and not subset:
                errs.append(f"{path}: missing keys {sorted(missing)}")
            if n == 1 and list(emu) != [key for key in rd if key in emu] and not subset and not extra:
                errs.append(f"{path}: key order {list(emu)} vs {list(rd)}")
            for key in set(emu) & set(rd):
                check(rd[key], emu[key], f"{path}.{key}")
        elif k == "list" and a["list"]:
            seen = set()
            for e in emu:
                s = _sig(e)
                if s not in seen:
                    seen.add(s)
                    check(a["list"], e, path + "[]")

    check([recorded], emulated, "$")
    return errs


def recorded_anchor(name: str) -> Any:
    return anchor_body(name.removesuffix(".json"))


def recorded_op3(name: str) -> Any:
    return op3_body(name.removesuffix(".json"))


# ---- shapes vs recorded responses ------------------------------------------------------

def test_anchor_shapes_match_every_recorded_response(c: Clients) -> None:
    ds = c.ds
    win = rng(YESTERDAY - timedelta(days=3), YESTERDAY, timeInterval=86400)
    ep = ds.published[3].episode_id
    newest = max(ds.published, key=lambda e: e.publish_ts or 0).episode_id  # no plays yet
    empty = rng(ds.first_day - timedelta(days=20), ds.first_day - timedelta(days=10))
    cases: dict[str, requests.Response] = {
        "anchorAudienceSize.json": c.station("audienceSize"),
        "anchorTotalPlays.json": c.station("totalPlays"),
        "anchorUniqueListeners.json": c.station("uniqueListeners"),
        "anchorTotalPlaysByEpisode.json": c.station("totalPlaysByEpisode"),
        "anchorPlays.json": c.station("plays", **win),
        "anchorPlaysByAgeRange.json": c.station("playsByAgeRange", **win),
        "anchorPlaysByApp.json": c.station("playsByApp", **win),
        "anchorPlaysByDevice.json": c.station("playsByDevice", **win),
        "anchorPlaysByEpisode.json": c.station("playsByEpisode", limit=3, **win),
        "anchorPlaysByGender.json": c.station("playsByGender", **win),
        "anchorPlaysByGenderEmpty.json": c.station("playsByGender", **empty),
        "anchorPlaysByGeo.json": c.station("playsByGeo", limit=200, resultGeo="geo2"),
        "anchorPlaysByGeoCity.json": c.station("playsByGeo", limit=200, resultGeo="geo3", geo2="Germany"),
        "anchorEpisodePlays.json": c.a(f"/analytics/episode/{ep}/plays", **win),
        "anchorEpisodePerformance.json": c.a(f"/analytics/episode/{ep}/performance"),
        "anchorEpisodeAggregatedPerformance.json": c.a(f"/analytics/episode/{ep}/aggregatedPerformance"),
        "anchorEpisodeAggregatedPerformanceNullValue.json":
            c.a(f"/analytics/episode/{newest}/aggregatedPerformance"),
    }
    for name, resp in cases.items():
        assert resp.status_code == 200, (name, resp.text)
        recorded = recorded_anchor(name)
        if name == "anchorPlaysByGeoCity.json":  # hand-edited: geos holds a JSON schema
            recorded = copy.deepcopy(recorded)
            recorded["parameters"]["geos"] = [None, "Germany", None]
        errs = shape_errors(recorded, resp.json())
        assert not errs, (name, errs)
    body = cases["anchorEpisodeAggregatedPerformanceNullValue.json"].json()
    assert body["data"]["rows"][-1] == ["averageListenSeconds", None]
    assert cases["anchorPlaysByGenderEmpty.json"].json() == {
        **recorded_anchor("anchorPlaysByGenderEmpty.json"), "stationId": ds.station_id}
    # episodePage: the recording keeps only the items list.
    page = c.a(f"/stations/webStationId:{ds.webstation_id}/episodePage", limit=50, orderBy="publishOn").json()
    assert list(page) == ["items", "next", "stationId"]
    errs = shape_errors(recorded_anchor("anchorEpisodesPage.json"), page["items"],
                        extra_ok=frozenset({"spotifyEpisodeUri", "spotifyShowUri"}),
                        ignore=frozenset({"$comment"}),
                        nullable=frozenset({"publishOnUnixTimestamp", "downloadUrl", "spotifyEpisodeUri"}))
    assert not errs
    assert any(i["title"] is None and i["publishOnUnixTimestamp"] for i in page["items"])
    assert any(i["publishOnUnixTimestamp"] is None and i["downloadUrl"] is None for i in page["items"])


def test_op3_shapes_match_recorded_responses(emulator: Emulator) -> None:
    ds = emulator.dataset
    c = Clients(emulator)
    cases = {
        "hits_time-window.json": c.o("/hits", start="-2d", format="json", limit=50),
        "hits_url-filter.json": c.o("/hits", url=ds.url_prefix + "*", format="json", desc="true"),
        "queries_recent-episodes-with-transcripts.json": c.o("/queries/recent-episodes-with-transcripts"),
        "queries_show-download-counts.json": c.o("/queries/show-download-counts", showUuid=ds.show_uuid),
        "queries_top-apps-for-show.json": c.o("/queries/top-apps-for-show", showUuid=ds.show_uuid),
        "queries_top-apps.json": c.o("/queries/top-apps"),
        f"shows_{'bb28afcc-137e-5c66-b231-4ffad7979b44'}.json": c.o(f"/shows/{ds.podcast_guid}"),
        "shows_c008c9c7cfe847dda55cfdde54a22154.json": c.o(f"/shows/{ds.show_uuid}"),
    }
    for name, resp in cases.items():
        assert resp.status_code == 200, (name, resp.text)
        assert resp.text.startswith("{\n  \""), name  # 2-space pretty JSON
        recorded = recorded_op3(name)
        if name.startswith("hits"):  # blank fields are omitted: judge rows against both recordings
            recorded["rows"] += recorded_op3("hits_url-filter.json")["rows"]
        errs = shape_errors(recorded, resp.json(), subset=name.startswith("hits"))
        assert not errs, (name, errs)
    rows = cases["hits_url-filter.json"].json()["rows"]
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)


def _swagger(version: str) -> dict[str, Any]:
    """The swagger document with its known defects patched so a validator accepts it."""
    doc = op3_swagger(version)
    valid = {"string", "integer", "number", "boolean", "array", "object", "null"}

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and node["type"] not in valid:
                node["type"] = "string"  # "enum", "40-character hex", ...
            node.pop("format", None)  # free-text formats such as "32-character hex"
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(doc)
    for sec in doc["securityDefinitions"].values():
        if sec["type"] == "custom":
            sec.update(type="apiKey", name="Authorization")
    for name, d in doc["definitions"].items():
        if d.get("type") == "object" and "properties" in d and "additionalProperties" not in d:
            d["additionalProperties"] = False  # stricter than the document: no stray fields
            if name == "ViewShowResponse.Episode":
                d["properties"]["itemGuid"] = {"type": "string"}  # sent live, missing from swagger
    return doc


def _validate(doc: dict[str, Any], definition: str, body: Any) -> None:
    schema = {"definitions": doc["definitions"], "$ref": f"#/definitions/{definition}"}
    jsonschema.Draft4Validator(schema).validate(body)


def test_op3_json_validates_against_swagger(c: Clients) -> None:
    ds = c.ds
    v3, v1 = _swagger("0.0.3"), _swagger("0.1.0")
    dl = c.o(f"/downloads/show/{ds.show_uuid}", start="-3d", limit=100, format="json").json()
    _validate(v3, "QueryDownloadsResponse", dl)
    assert dl["count"] == 100 and "continuationToken" in dl
    _validate(v1, "QueryHitsResponse", c.o("/hits", start="-2d", format="json").json())
    _validate(v3, "ViewShowResponse", c.o(f"/shows/{ds.show_uuid}", episodes="include").json())
    rt = c.o("/queries/recent-episodes-with-transcripts", limit=3).json()
    _validate(v3, "QueryRecentEpisodesWithTranscriptsResponse", {**rt["rt"], "queryTime": rt["queryTime"]})
    _validate(v3, "QueryTopAppsForShowResponse",
              c.o("/queries/top-apps-for-show", showUuid=ds.show_uuid).json())
    _validate(v3, "QueryTopAppsResponse", c.o("/queries/top-apps", deviceName="Apple iPhone").json())
    _validate(v3, "QueryShowDownloadCountsResponse",
              c.o("/queries/show-download-counts", showUuid=ds.show_uuid).json())
    _validate(v1, "QueryEpisodeDownloadCountsResponse",
              c.o("/queries/episode-download-counts", showUuid=ds.show_uuid).json())
    with Emulator(EmulatorConfig(seed=7, today=TODAY, redirect_logs_direct=True)) as direct:
        d = Clients(direct)
        logs = d.o("/redirect-logs", start="-1d", format="json", limit=5)
        assert logs.status_code == 200
        _validate(v3, "QueryRedirectLogsResponse", logs.json())
        ua = logs.json()["rows"][0]["userAgent"]
        assert d.o("/redirect-logs", start="-1d", userAgent=ua, format="json").json()["count"] > 0


# ---- consistency -------------------------------------------------------------------------

def test_anchor_numbers_agree_across_endpoints(c: Clients) -> None:
    ds = c.ds
    start, end = YESTERDAY - timedelta(days=29), YESTERDAY
    plays = c.station("plays", **rng(start, end, timeInterval=86400)).json()["data"]["rows"]
    assert [r[0] for r in plays] == [day_epoch(start + timedelta(days=k)) for k in range(30)]
    assert plays[-1][0] == day_epoch(end)  # the end bucket is included
    per_episode = {e.episode_id: c.a(f"/analytics/episode/{e.episode_id}/plays",
                                     **rng(start, end)).json()["data"]["rows"] for e in ds.published}
    for i, (ts, n) in enumerate(plays):
        assert n == ds.station_plays(start + timedelta(days=i))
        assert n == sum(dict(map(tuple, rows)).get(ts, 0) for rows in per_episode.values())
    total = c.station("totalPlays").json()["data"]["rows"]
    assert total == [sum(ds.station_plays(d) for d in ds.data_days())]
    by_ep = c.station("totalPlaysByEpisode").json()["data"]["rows"]
    assert {r[1]: r[2] for r in by_ep} == ds.total_plays_by_episode()
    assert sum(r[2] for r in by_ep) == total[0]
    assert [r[4] for r in by_ep] == list(range(1, len(by_ep) + 1))
    # playsByEpisode = the top `limit` of those same numbers per day.
    pbe = c.station("playsByEpisode", limit=3, **rng(start, end)).json()["data"]
    titles = pbe["labels"]["EpisodeTitle"]
    title_to_id = {e.title: e.episode_id for e in ds.published}
    for ts, label, n in pbe["rows"]:
        d = start + timedelta(days=(ts - day_epoch(start)) // 86400)
        day = ds.anchor_day(d).plays
        assert day[title_to_id[titles[label]]] == n if titles[label] else n in day.values()
        assert sorted(day.values(), reverse=True)[:3].count(n) >= 1
    assert Counter(r[0] for r in pbe["rows"]) == Counter({r[0]: 3 for r in plays})
    # Fractions are per-day integer counts over the window, summing to 1.
    for kind, cat in (("playsByAgeRange", "age"), ("playsByGender", "gender"),
                      ("playsByApp", "app"), ("playsByDevice", "device")):
        rows = c.station(kind, **rng(start, end)).json()["data"]["rows"]
        counts = ds.category_counts(cat, start, end)
        assert math.isclose(sum(r[1] for r in rows), 1.0)
        assert {r[0]: r[1] for r in rows if r[1]} == {k: v / sum(counts.values()) for k, v in counts.items() if v}
    weekly = c.station("plays", **rng(start, end, timeInterval=604800)).json()["data"]["rows"]
    assert sum(r[1] for r in weekly) == sum(r[1] for r in plays)
    # Past yesterday there is simply no data yet.
    late = c.station("plays", **rng(YESTERDAY - timedelta(days=1), TODAY + timedelta(days=3))).json()
    assert [r[0] for r in late["data"]["rows"]] == [day_epoch(YESTERDAY - timedelta(days=1)), day_epoch(YESTERDAY)]
    perf = c.a(f"/analytics/episode/{ds.published[3].episode_id}/performance").json()["data"]["rows"]
    assert len(perf) == ds.published[3].duration_s and all(isinstance(n, str) for _, n in perf)
    geo = c.station("playsByGeo", limit=200, resultGeo="geo2").json()["data"]["rows"]
    assert all(v == round(v, 2) for _, v in geo if v >= 0.01)


def test_op3_numbers_agree_across_endpoints(c: Clients) -> None:
    ds = c.ds
    counts = c.o("/queries/show-download-counts", showUuid=ds.show_uuid).json()
    sdc = counts["showDownloadCounts"][ds.show_uuid]
    days = [YESTERDAY - timedelta(days=29 - k) for k in range(30)]
    per_day = Counter()
    rows = c.o(f"/downloads/show/{ds.show_uuid}", start=days[0].isoformat(), end=TODAY.isoformat(),
               limit=20000, format="json").json()["rows"]
    for r in rows:
        per_day[r["time"][:10]] += 1
        assert "botType" not in r
    assert [per_day[d.isoformat()] for d in days] == [ds.download_count(d) for d in days]
    assert sdc["monthlyDownloads"] == len(rows)
    assert sdc["weeklyDownloads"] == [sum(per_day[d.isoformat()] for d in days[2 + 7 * w: 9 + 7 * w]) for w in range(4)]
    assert counts["asof"] == YESTERDAY.isoformat() and sdc["numWeeks"] == 4
    apps = c.o("/queries/top-apps-for-show", showUuid=ds.show_uuid).json()["appDownloads"]
    assert apps == dict(ds.app_downloads(ds.data_days(date(2025, 4, 1))))
    assert list(apps.values()) == sorted(apps.values(), reverse=True)
    shares = c.o("/queries/top-apps").json()["appShares"]
    assert abs(sum(shares.values()) - 100) < 1e-3
    # Hits are a superset: every download (bots too) starts with a hit at the same instant.
    with_bots = c.o(f"/downloads/show/{ds.show_uuid}", start=YESTERDAY.isoformat(), limit=20000,
                    bots="include", format="json").json()["rows"]
    assert len(with_bots) > ds.download_count(YESTERDAY)
    hits = ds.hits(YESTERDAY)
    first_hits = {(h["time"], h["hashedIpAddress"], h["url"]) for h in hits}
    assert all((r["time"], r["hashedIpAddress"], r["url"]) in first_hits for r in with_bots)
    assert len({h["uuid"] for h in hits}) == len(hits) >= len(with_bots)
    api_hits = c.o("/hits", start=YESTERDAY.isoformat(), end=TODAY.isoformat(), limit=1000, format="json").json()
    assert api_hits["rows"] == hits[:1000]


# ---- pagination ----------------------------------------------------------------------------

def test_episode_page_pagination_to_the_end(c: Clients) -> None:
    ds = c.ds
    r = c.a(f"/stations/webStationId:{ds.webstation_id}/episodePage", limit=5, orderBy="publishOn").json()
    assert r["stationId"] == ds.station_id
    items, seen_tokens = list(r["items"]), set()
    while r["next"]:
        prefix = f"/v3/stations/{ds.station_id}/episodePage?orderBy=publishOn&limit=5&pageToken="
        assert r["next"].startswith(prefix)
        token = r["next"].split("pageToken=")[1]
        assert token not in seen_tokens and "&" not in token
        seen_tokens.add(token)
        r = c.a(f"/stations/{ds.station_id}/episodePage", limit=5, orderBy="publishOn", pageToken=token).json()
        items += r["items"]
    assert len(items) == len(ds.episodes) == len({i["episodeId"] for i in items})
    assert c.a(f"/analytics/station/webStationId:{ds.webstation_id}/totalPlays").status_code == 400


def test_downloads_continuation_tokens(c: Clients) -> None:
    ds = c.ds
    start, end = (YESTERDAY - timedelta(days=2)).isoformat(), TODAY.isoformat()
    full = c.o(f"/downloads/show/{ds.show_uuid}", start=start, end=end, limit=20000, format="json-a").json()
    n = full["count"]
    assert "continuationToken" not in full and full["headers"][0] == "time"
    for limit in (n, 97):  # limit == n: the page is full, so a token comes back and the last page is empty
        rows, token, pages = [], None, 0
        while True:
            params = {"start": start, "end": end, "limit": limit, "skip": "headers"}
            if token:
                params["continuationToken"] = token
            resp = c.o(f"/downloads/show/{ds.show_uuid}", **params)
            assert resp.headers["content-type"] == "text/tab-separated-values"
            assert int(resp.headers["x-query-time"]) >= 0
            lines = resp.text.split("\n")
            assert lines[-1] == ""
            rows += [line.split("\t") for line in lines[:-1]]
            pages += 1
            token = resp.headers.get("x-continuation-token")
            if not token:
                break
            decoded = json.loads(b58decode(token))
            assert set(decoded) == {"date", "rowNumber"}
        assert [r[0] for r in rows] == [r[0] for r in full["rows"]]
        assert rows[0][6] == (full["rows"][0][6] or "")
        if limit == n:
            assert pages == 2 and len(lines) == 1  # the empty last page
        else:
            assert pages == math.ceil(n / limit) + (n % limit == 0)


# ---- error cases ---------------------------------------------------------------------------

def test_anchor_error_cases(c: Clients) -> None:
    ds = c.ds
    url = f"{c.a_base}/analytics/station/{ds.station_id}/totalPlays"
    assert requests.get(url, params={"isMumsCompatible": "true"}).status_code == 401
    assert requests.get(url, params={"isMumsCompatible": "true"},
                        cookies={"anchorpw_s": "s%3Aother.sig"}).status_code == 401
    r = c.anchor.get(url)
    assert r.status_code == 403 and "User does not own station" in r.text
    r = c.a(f"/analytics/episode/{ds.published[0].episode_id}/allTimeVideoData")
    assert r.status_code == 400 and r.json() == {"errors": [{
        "property": "params.queryKind",
        "message": "is not one of enum values: plays,totalPlays,performance,aggregatedPerformance"}]}
    # A draft's overview answers 200 with isPublished false: the reference client's CLI fetches
    # every listed episode's overview and would die on the 403 that API.md only infers.
    draft = c.a(f"/episodes/{ds.drafts[0].episode_id}/overview", returnWebIds="true")
    assert draft.status_code == 200 and draft.json()["isPublished"] is False
    ov = c.a(f"/episodes/{ds.published[0].episode_id}/overview", returnWebIds="true").json()
    assert ov["webStationId"] == ds.webstation_id and ov["publishOnUnixTimestamp"] < 10**11
    assert c.a("/analytics/station/123/totalPlays").status_code == 403


def test_op3_error_cases(c: Clients) -> None:
    ds = c.ds
    base, tok = c.o_base, ds.op3_token
    dl = f"/downloads/show/{ds.show_uuid}"

    def raw(method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, base + path, timeout=10, allow_redirects=False, **kw)

    r = raw("OPTIONS", "/hits")
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert raw("GET", "/hits").json() == {"error": "unauthorized"}
    assert raw("GET", "/hits", params={"token": "nope"}).json() == {"error": "forbidden"}
    assert raw("GET", "/hits", params={"token": tok}).status_code == 200
    r = raw("GET", "/hits", params={"token": "nope"}, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200  # the header wins
    assert raw("GET", "/nope", params={"token": tok}).json() == {"error": "not found"}
    r = raw("POST", "/hits", params={"token": tok})
    assert (r.status_code, r.text) == (405, "POST not allowed")
    expect = {
        (dl, "limit=20001"): {"message": "Bad limit: 20001"},
        (dl, "limit=1.0"): {"message": "Bad limit: 1.0"},
        (dl, "format=csv"): {"message": "Bad format: csv"},
        (dl, "start=2025-05-01T00:00:00%2B00:00"): {"message": "Bad start: 2025-05-01T00:00:00+00:00"},
        (dl, "start=2025-05&startAfter=-1d"): {"message": "Specify either 'start' or 'startAfter', not both"},
        (dl, "bots=true"): {"message": "Bad bots: true"},
        (dl, "continuationToken=0OIl"): {"message": "Bad continuationToken: 0OIl"},
        ("/downloads/show/XYZ", ""): {"message": "Bad showUuid: XYZ"},
        ("/hits", "url=a&hashedIpAddress=current"): {"message": "Cannot specify more than one filter parameter"},
        ("/hits", "limit=1001"): {"message": "Bad limit: 1001"},
        ("/shows/0123456789abcdef0123456789abcdef", ""): {"message": "not found"},
        ("/queries/top-apps-for-show", "showUuid=xyz"): {"message": "Bad showUuid: xyz"},
        ("/queries/recent-episodes-with-transcripts", "limit=0"):
            {"message": "Bad limit: 0, must be an integer between 1 and 100"},
        ("/queries/show-download-counts", f"showUuid={ds.show_uuid},{ds.show_uuid}"):
            {"error": f"Bad showUuid: {ds.show_uuid},{ds.show_uuid}"},
        ("/queries/top-apps", "deviceName=Nokia%203310"): {"error": "unknown device"},
    }
    for name in ("userAgent", "referer", "ulid", "xpsId", "urlSha256"):
        expect[("/hits", f"{name}=x")] = {"message": f"The '{name}' filter is no longer supported"}
    for (path, query), body in expect.items():
        r = c.op3.get(f"{base}{path}?{query}", timeout=10)
        status = 404 if "not found" in body.values() else 400
        assert (r.status_code, r.json()) == (status, body), (path, query)
        assert r.text == json.dumps(body, indent=2)
    other = "0123456789abcdef0123456789abcdef"
    both = c.op3.get(f"{base}/queries/show-download-counts?showUuid={ds.show_uuid}&showUuid={other}").json()
    assert list(both["showDownloadCounts"]) == [ds.show_uuid]
    assert c.o("/queries/top-apps-for-show", showUuid=other).json()["appDownloads"] == {}
    unknown = c.o(f"/downloads/show/{other}", format="json").json()
    assert (unknown["rows"], unknown["count"], "continuationToken" in unknown) == ([], 0, False)
    r = c.o("/redirect-logs", start="-1d", limit="3", format="json")
    assert r.status_code == 308 and r.headers["location"] == "/api/1/hits?start=-1d&limit=3&format=json"
    followed = c.op3.get(base + "/redirect-logs", params={"start": "-1d", "limit": 3, "format": "json"})
    assert followed.status_code == 200 and followed.json()["count"] == 3
    tsv = c.o("/hits", start="-1d", limit=2)
    assert tsv.text.split("\n")[0].split("\t")[:3] == ["time", "uuid", "hashedIpAddress"]


# ---- faults, stats, expiry ---------------------------------------------------------------

def test_faults_are_injected_deterministically(emulator: Emulator) -> None:
    c = Clients(emulator)
    faults = Faults(rate_limit_rate=0.2, error_rate=0.15, malformed_rate=0.2, malformed_kind="mixed",
                    retry_after=7, seed=42)
    emulator.set_faults(faults)
    engine = FaultEngine(faults)  # replay the same draws to know the exact expectation
    expected: Counter[str] = Counter()
    for _ in range(120):
        d = engine.draw()
        expected["rate_limit" if d.rate_limit else "error" if d.error_status else
                 "malformed" if d.malformed else "ok"] += 1
    seen: Counter[str] = Counter()
    for i in range(120):
        api = "anchor" if i % 2 else "op3"
        r = c.station("totalPlays") if api == "anchor" else c.o("/queries/top-apps")
        if r.status_code == 429:
            seen["rate_limit"] += 1
            if api == "anchor":
                assert r.headers["Retry-After"] == "7"
            else:
                assert "Retry-After" not in r.headers and r.text == "slow down"
        elif r.status_code in (500, 502, 503):
            seen["error"] += 1
        elif "html" in r.headers["content-type"]:
            seen["malformed"] += 1
            assert r.status_code == 200
        else:
            try:
                r.json()
                seen["ok"] += 1
            except ValueError:
                seen["malformed"] += 1
    assert seen == expected
    assert 12 <= expected["rate_limit"] <= 36 and expected["ok"] > 40
    st = emulator.stats()
    assert st["faults"] == {k: v for k, v in expected.items() if k != "ok"}
    assert st["requests"] == 120 and st["by_api"] == {"anchor": 60, "op3": 60}
    assert st["by_endpoint"] == {"totalPlays": 60, "topApps": 60}
    assert sum(st["by_status"].values()) == 120
    # apply_to limits faults to the named endpoints; control endpoints never see faults.
    emulator.set_faults(Faults(error_rate=1.0, apply_to=frozenset({"plays"})))
    assert c.station("totalPlays").status_code == 200
    assert c.station("plays").status_code in (500, 502, 503)
    assert requests.get(emulator.url + "/_emulator/stats").status_code == 200


def test_latency_and_malformed_kinds(emulator: Emulator) -> None:
    c = Clients(emulator)
    emulator.set_faults(Faults(latency_ms=30, malformed_rate=1.0, malformed_kind="truncated"))
    r = c.station("totalPlays")
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.03
    with pytest.raises(ValueError):
        r.json()
    emulator.set_faults(Faults(malformed_rate=1.0, malformed_kind="html"))
    r = c.station("totalPlays")
    assert r.status_code == 200 and r.text.lstrip().startswith("<!DOCTYPE html>")
    assert emulator.requests[-1].fault == "malformed"
    assert emulator.stats()["faults"]["latency"] == 1


def test_stats_and_request_log_mask_secrets(emulator: Emulator) -> None:
    c = Clients(emulator)
    c.station("totalPlays")
    requests.get(c.o_base + "/hits", params={"token": c.ds.op3_token})
    c.o("/hits")
    recs = emulator.requests
    assert [(r.api, r.endpoint, r.status) for r in recs] == [
        ("anchor", "totalPlays", 200), ("op3", "hits", 200), ("op3", "hits", 200)]
    text = repr(recs)
    assert c.ds.cookie not in text and c.ds.op3_token not in text and "token=***" in text
    assert recs[0].headers["Cookie"] == "anchorpw_s=***"
    assert recs[2].headers["Authorization"] == "Bearer ***"
    st = requests.get(emulator.url + "/_emulator/stats").json()
    assert st["requests"] == 3 and st["by_status"] == {"200": 3}
    assert requests.post(emulator.url + "/_emulator/reset").status_code == 200
    assert emulator.stats()["requests"] == 0 and emulator.requests == []


def test_credential_expiry_and_refresh(emulator: Emulator) -> None:
    c = Clients(emulator)
    emulator.set_faults(Faults(expire_after_requests=3))
    assert [c.station("totalPlays").status_code for _ in range(5)] == [200, 200, 200, 401, 401]
    assert [c.o("/queries/top-apps").status_code for _ in range(4)] == [200, 200, 200, 401]
    assert c.o("/queries/top-apps").json() == {"error": "expired"}
    bad = requests.get(c.o_base + "/queries/top-apps", params={"token": "emulator-wrong"})
    assert bad.status_code == 403
    emulator.refresh("anchor")
    assert c.station("totalPlays").status_code == 200
    assert c.o("/hits").status_code == 401  # op3 still expired
    assert requests.post(emulator.url + "/_emulator/refresh/op3").status_code == 200
    assert c.o("/hits").status_code == 200
    # Only the listed APIs expire; manual expiry over HTTP; faults over HTTP.
    r = requests.post(emulator.url + "/_emulator/faults", json={"expire_apis": ["op3"]})
    assert r.status_code == 200 and r.json()["expire_apis"] == ["op3"]
    requests.post(emulator.url + "/_emulator/expire/anchor")
    assert c.station("totalPlays").status_code == 401
    assert emulator.stats()["faults"]["expired"] >= 4
    emulator.refresh("anchor")
    emulator.set_faults(Faults(expire_at=datetime.now(UTC) + timedelta(seconds=0.3)))
    assert c.station("totalPlays").status_code == 200
    time.sleep(0.35)
    assert c.station("totalPlays").status_code == 401
    emulator.refresh("anchor")  # a credential refreshed after expire_at is valid again
    assert c.station("totalPlays").status_code == 200


def test_thirty_days_of_everything_in_one_request_each(emulator: Emulator) -> None:
    # No timing here (a loaded CI machine makes any bound flaky): speed is benchmarks/' job.
    c = Clients(emulator)
    start = YESTERDAY - timedelta(days=29)
    for kind in ("plays", "playsByEpisode", "playsByAgeRange", "playsByApp"):
        r = c.station(kind, **rng(start, YESTERDAY))
        assert r.status_code == 200 and r.json()["data"]["rows"], kind
    assert len(c.station("plays", **rng(start, YESTERDAY, timeInterval=86400))
               .json()["data"]["rows"]) == 30
    r = c.o(f"/downloads/show/{c.ds.show_uuid}", start=start.isoformat(), limit=20000)
    assert r.status_code == 200 and r.text.count("\n") > 20 * 100


def test_op3_pages_are_the_rows_of_each_day_formatted_as_before() -> None:
    """The pages come from bisected, preformatted days: they must be exactly what
    formatting the day's rows one by one gives (the TSV lines, pretty-printed JSON)."""
    from podcast_pipeline.emulator import op3_api
    from podcast_pipeline.emulator.common import pretty
    from podcast_pipeline.emulator.data import DOWNLOAD_HEADERS, HIT_HEADERS, Dataset

    today = date(2025, 6, 1)
    ds = Dataset(EmulatorConfig(seed=5, episodes=4, days=4, downloads_per_day=60, today=today))
    day = today - timedelta(days=2)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    span = [("start", day.isoformat()), ("end", (day + timedelta(days=1)).isoformat())]

    def get(path: str, params: list[tuple[str, str]]) -> bytes:
        return op3_api.handle(ds, "GET", path, span + params, "", now=now).body

    hits = ds.op3_day(day).hits
    body = get("/hits", [("format", "json"), ("limit", "1000")])
    qt = json.loads(body)["queryTime"]
    rows = [{h: v for h, v in zip(HIT_HEADERS, r, strict=True) if v} for r in hits]
    assert body == pretty({"rows": rows, "count": len(rows), "queryTime": qt})
    humans = [r for r in ds.op3_day(day).downloads if not r[12]]
    tsv = get(f"/downloads/show/{ds.show_uuid}", [("limit", "20000")])
    assert tsv.decode().split("\n") == ["\t".join(DOWNLOAD_HEADERS),
                                         *("\t".join(v or "" for v in r) for r in humans), ""]
    # A page cut mid-day continues where it stopped, by the token and by time.
    first = op3_api.handle(ds, "GET", f"/downloads/show/{ds.show_uuid}", span + [("limit", "7")],
                           "", now=now)
    token = dict(first.headers)["x-continuation-token"]
    rest = get(f"/downloads/show/{ds.show_uuid}", [("limit", "20000"),
                                                     ("continuationToken", token)])
    assert first.body.decode().split("\n")[1:-1] + rest.decode().split("\n")[1:] == \
        tsv.decode().split("\n")[1:]
    assert json.loads(get("/hits", [("format", "json"), ("limit", "5"),
                                    ("start", hits[3][0])]))["rows"][0]["uuid"] == next(
        r[1] for r in hits if r[0] >= hits[3][0])
