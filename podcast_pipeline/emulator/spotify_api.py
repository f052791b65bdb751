"""The GraphQL backend of Spotify for Creators: accounts login, persisted queries, legacy host.

Three "hosts" under one loopback port (the emulator's env maps each live host to its prefix):
accounts (``/oauth2/v2/auth`` page embedding ``const authorizationResponse = {...};`` and
``/api/token``), the GraphQL endpoint (operations by name + sha256 hash) and the legacy
``api-v5.anchor.fm`` episode overview. Numbers come from the same :class:`Dataset` as the REST
emulator: Spotify-only plays, demographics, apps, devices, geo and impressions are the REST
backend's own counts, so both backends fill ``anchor.*`` alike where the metric maps.

Shapes the reference marks as inferred (impressions, discovery, consumption, audience, top
episodes, the NRT totals, unknown-hash and 401 bodies) are served as the client expects them;
each is marked ``inferred`` below.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl

from podcast_pipeline.spotify.operations import OPERATIONS

from . import anchor_api
from .common import Response, compact
from .data import AGE_RANGES, GENDERS, REGIONS, Dataset, Episode, day_epoch
from .shows import EmulatedAccount, ShowNetwork

ACCOUNTS_PREFIX = "/spotify/accounts"
GRAPHQL_PATH = "/spotify/graph/v2/graph-pq"
LEGACY_PREFIX = "/spotify/legacy"
DEFAULT_BEARER_TTL = 3600.0
_OVERVIEW = re.compile(r"^/v3/episodes/([^/]+)/overview$")

COUNTRY_CODES = {
    "Germany": "DE", "United States": "US", "United Kingdom": "GB", "France": "FR",
    "Netherlands": "NL", "Canada": "CA", "Australia": "AU", "Poland": "PL", "India": "IN",
    "Sweden": "SE", "Brazil": "BR", "Spain": "ES", "Italy": "IT", "Portugal": "PT",
    "Norway": "NO", "Czech Republic": "CZ", "Israel": "IL", "Hungary": "HU", "Singapore": "SG",
    "Japan": "JP", "Denmark": "DK", "Austria": "AT", "Mexico": "MX", "Ireland": "IE",
    "Tunisia": "TN", "Peru": "PE",
}
CITIES = {
    "Land Berlin": ("Berlin",), "Bavaria": ("Munich", "Nuremberg", "Augsburg"),
    "North Rhine-Westphalia": ("Cologne", "Düsseldorf", "Dortmund"),
    "California": ("Los Angeles", "San Francisco", "San Diego"),
    "New York": ("New York City", "Buffalo"), "Texas": ("Austin", "Houston", "Dallas"),
    "England": ("London", "Manchester", "Bristol"), "Scotland": ("Edinburgh", "Glasgow"),
}
CITY_WEIGHTS = (60, 25, 15)
GENDER_ENUM = {"Male": "MALE", "Female": "FEMALE", "Not specified": "NOT_SPECIFIED",
               "Non-binary": "NON_BINARY"}
AGE_BRACKETS = {"60+": "60-150"}  # GraphQL names the last bracket by its bounds
SOURCES = ("SEARCH", "HOME", "LIBRARY", "OTHER")
OTHER_SHOW_URI = "spotify:show:0NonHostedEmulatorShow0"
# The server's own copy of the hashes it knows (a client-side change must not move them).
HASHES = {name: op.sha256 for name, op in OPERATIONS.items()}


def wrap(value: Any) -> dict[str, Any]:
    """Every analytics leaf sits under ``analyticsValue.analyticsValue``."""
    return {"analyticsValue": {"analyticsValue": value, "periodOverPeriodPercentageDiff": None}}


def points(values: list[tuple[date, Any]]) -> dict[str, Any]:
    return wrap({"__typename": "TimeSeriesValue", "points": [
        {"date": d.isoformat(), "endDate": d.isoformat(), "value": {"value": v}}
        for d, v in values]})


def gql_error(message: str, classification: str, path: list[str] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "extensions": {"classification": classification}}
    if path:
        err["path"] = path
    return err


class GraphQLAnswer(Exception):
    """Raised by a resolver to answer 200 with these errors and this (partial) data."""

    def __init__(self, errors: list[dict[str, Any]], data: Any = None) -> None:
        self.errors, self.data = errors, data


class SpotifyBackend:
    """The login state (codes, bearers, per account) and the resolvers.

    Resolvers read ``self.ds`` (the show the request names) and ``self.shows`` (the shows
    its account sees): :meth:`graphql` hands each a shallow copy scoped to its request, so
    the login state stays shared.
    """

    def __init__(self, ds: Dataset, network: ShowNetwork | None = None) -> None:
        self.ds = ds
        self.network = network or ShowNetwork(ds.config, first=ds)
        self.shows: list[Dataset] = [ds]
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, float, str]] = {}  # code -> (challenge, issued, acct)
        self._bearers: dict[str, tuple[float, str]] = {}  # bearer -> (expiry, account)
        self.logins = 0
        self.issued: list[str] = []  # every bearer handed out (tests search for leaks)

    # ---- accounts --------------------------------------------------------------------
    def revoke_bearers(self, account: str | None = None) -> None:
        """Every bearer (or one account's) now answers 401."""
        with self._lock:
            if account is None:
                self._bearers.clear()
            else:
                for bearer in [b for b, (_, a) in self._bearers.items() if a == account]:
                    del self._bearers[bearer]

    def cookie_account(self, cookie_header: str) -> EmulatedAccount | None:
        jar = dict(p.strip().split("=", 1) for p in cookie_header.split(";") if "=" in p)
        # sp_key is sent by the reference client; whether the live server needs it is
        # unknown, so the emulator accepts sp_dc alone but rejects a wrong sp_key.
        return self.network.by_spotify_cookies(jar)

    def cookies_ok(self, cookie_header: str) -> bool:
        return self.cookie_account(cookie_header) is not None

    def code_account(self, body: bytes) -> EmulatedAccount | None:
        """The account a token request's code was issued to (the code stays unused)."""
        code = dict(parse_qsl(body.decode("utf-8", "replace"))).get("code", "")
        with self._lock:
            entry = self._codes.get(code)
        return self.network.account(entry[2]) if entry else None

    def bearer_account(self, authorization: str) -> EmulatedAccount | None:
        """The account of a live bearer; None when it is unknown, revoked or expired."""
        m = re.match(r"(?i)^bearer (\S+)$", authorization or "")
        if not m:
            return None
        with self._lock:
            entry = self._bearers.get(m.group(1))
        if entry is None or time.monotonic() >= entry[0]:
            return None
        return self.network.account(entry[1])

    def auth_page(self, query: dict[str, str], cookie_header: str, expired: bool) -> Response:
        state = query.get("state", "")
        if query.get("client_id") != "05a1371ee5194c27860b3ff3ff3979d2" or \
                query.get("response_type") != "code" or not query.get("code_challenge") or \
                query.get("code_challenge_method") != "S256":
            return _page({"type": "authorization_response",
                          "response": {"error": "invalid_request", "state": state}})
        account = self.cookie_account(cookie_header)
        if expired or account is None:
            # The dead-session form is inferred; the reference client only looks for the word.
            return _page({"type": "authorization_response",
                          "response": {"error": "login_required", "state": state}})
        code = "AQD" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = (query["code_challenge"], time.monotonic(), account.name)
        return _page({"type": "authorization_response", "response": {"code": code,
                                                                     "state": state}})

    def token(self, body: bytes, ttl: float | None) -> Response:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        with self._lock:
            entry = self._codes.pop(form.get("code", ""), None)  # codes are single-use
        if entry is None or form.get("grant_type") != "authorization_code":
            return Response(400, compact({"error": "invalid_grant",
                                          "error_description": "Invalid authorization code"}))
        challenge, _, account = entry
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != challenge:
            return Response(400, compact({"error": "invalid_grant",
                                          "error_description": "code_verifier was incorrect"}))
        lifetime = ttl or DEFAULT_BEARER_TTL
        bearer = "BQD" + "emulator" + secrets.token_urlsafe(96)
        with self._lock:
            self._bearers[bearer] = (time.monotonic() + lifetime, account)
            self.logins += 1
            self.issued.append(bearer)
        return Response(200, compact({"access_token": bearer, "token_type": "Bearer",
                                      "expires_in": int(round(lifetime)), "scope": ""}))

    def bearer_ok(self, authorization: str) -> bool:
        return self.bearer_account(authorization) is not None

    # ---- GraphQL ---------------------------------------------------------------------
    def graphql(self, body: bytes, geo_fails: Callable[[], bool],
                account: EmulatedAccount | None = None,
                who: list[str | None] | None = None) -> tuple[str, Response]:
        """Answer one operation for ``account``; ``who[1]`` gets the show it was for."""
        try:
            req = json.loads(body or b"null")
        except ValueError:
            return "unknown", Response(400, compact({"errors": [gql_error(
                "Invalid JSON body", "InvalidSyntax")]}))
        if not isinstance(req, dict) or not isinstance(req.get("operationName"), str):
            return "unknown", Response(400, compact({"errors": [gql_error(
                "operationName is required", "ValidationError")]}))
        name = req["operationName"]
        ext = req.get("extensions") if isinstance(req.get("extensions"), dict) else {}
        pq = ext.get("persistedQuery") if isinstance(ext.get("persistedQuery"), dict) else {}
        resolver = RESOLVERS.get(name)
        if resolver is None or pq.get("sha256Hash") != HASHES.get(name):
            # Apollo's answer to an unknown persisted query (the live one is unrecorded).
            return name, Response(200, compact({"errors": [gql_error(
                "PersistedQueryNotFound", "PersistedQueryNotFound")]}))
        variables = req.get("variables") if isinstance(req.get("variables"), dict) else {}
        scoped = self.scoped(account, variables)
        if scoped is None:
            return name, forbidden()
        if who is not None:
            who[1] = scoped.ds.webstation_id
        try:
            data = resolver(scoped, variables, geo_fails)
        except GraphQLAnswer as ans:
            out: dict[str, Any] = {"errors": ans.errors}
            if ans.data is not None:
                out["data"] = ans.data
            return name, Response(200, compact(out))
        return name, Response(200, compact({"data": data}))

    def scoped(self, account: EmulatedAccount | None,
               variables: dict[str, Any]) -> SpotifyBackend | None:
        """This backend as the request sees it: ``ds`` the show it names (else the account's
        first), ``shows`` the account's; None when it names another account's show."""
        shows = self.network.shows_of(account) if account else [self.ds]
        uri, episode = variables.get("showUri"), variables.get("episodeUri")
        target = (self.network.find("show_uri", uri) if isinstance(uri, str) else
                  self.network.find("episode_uri", episode) if isinstance(episode, str)
                  else None)
        if target is not None and target not in shows:
            return None
        view = copy.copy(self)
        view.ds, view.shows = target or shows[0], shows
        return view

    # ---- helpers for resolvers ---------------------------------------------------------
    def show(self, variables: dict[str, Any]) -> None:
        uri = variables.get("showUri")
        if uri == OTHER_SHOW_URI:  # not hosted here: analytics unknown, answered as an error
            raise GraphQLAnswer([gql_error("Show is not hosted on Spotify for Creators",
                                           "DataFetchingException", ["showByShowUri"])],
                                {"showByShowUri": None})
        if uri != self.ds.spotify_show_uri:
            raise GraphQLAnswer([gql_error(f"Show {uri} not found", "DataFetchingException",
                                           ["showByShowUri"])], {"showByShowUri": None})

    def episode(self, variables: dict[str, Any]) -> Episode:
        uri = variables.get("episodeUri")
        ep = next((e for e in self.ds.episodes if e.spotify_uri == uri), None)
        if ep is None:
            raise GraphQLAnswer([gql_error(f"Episode {uri} not found", "DataFetchingException",
                                           ["episodeByUri"])], {"episodeByUri": None})
        return ep

    def days(self, variables: dict[str, Any], window_key: str = "dateRangeWindow",
             default: str = "WINDOW_LAST_THIRTY_DAYS") -> list[date]:
        """The data days of a named or custom window (named windows end yesterday, inferred)."""
        window = variables.get(window_key) or default
        ds = self.ds
        if window == "WINDOW_CUSTOM":
            rng = variables.get("customDateRange")
            try:
                start = date.fromisoformat(rng["startDate"])
                end = date.fromisoformat(rng["endDate"])
            except (TypeError, KeyError, ValueError):
                raise GraphQLAnswer([gql_error("customDateRange needs startDate and endDate "
                                               "as YYYY-MM-DD", "ValidationError")]) from None
            return ds.data_days(start, end)
        spans = {"WINDOW_LAST_SEVEN_DAYS": 7, "WINDOW_LAST_THIRTY_DAYS": 30,
                 "WINDOW_LAST_NINETY_DAYS": 90, "WINDOW_LAST_SIXTY_DAYS": 60}
        if window == "WINDOW_ALL_TIME":
            return ds.data_days()
        if window in spans:
            return ds.data_days(ds.yesterday - timedelta(days=spans[window] - 1), ds.yesterday)
        raise GraphQLAnswer([gql_error(f"Unsupported window {window}", "ValidationError")])

    def counts(self, kind: str, days: list[date]) -> Counter[str]:
        total: Counter[str] = Counter()
        for d in days:
            total.update(self.ds.anchor_day(d).categories[kind])
        return total

    def episode_window(self, ep: Episode, days: list[date]) -> tuple[int, int, int]:
        plays = streams = downloads = 0
        for d in days:
            p, s, dl = self.ds.spotify_day(d).get(ep.episode_id, (0, 0, 0))
            plays, streams, downloads = plays + p, streams + s, downloads + dl
        return plays, streams, downloads


def _page(obj: dict[str, Any]) -> Response:
    html = ("<!DOCTYPE html><html><head><title>Spotify</title></head><body><script>"
            f"const authorizationResponse = {json.dumps(obj, separators=(',', ':'))};"
            "window.opener && window.opener.postMessage(authorizationResponse, '*');"
            "</script></body></html>")
    return Response(200, html.encode(), "text/html; charset=utf-8")


def forbidden() -> Response:
    # Another account's show or episode. The live answer is unrecorded (inferred): a 403,
    # which the client reports as access denied, never as a dead login or as data.
    return Response(403, compact({"errors": [gql_error(
        "Forbidden: the user has no access to this show", "PermissionDenied")]}))


def unauthorized() -> Response:
    # The live 401 body is unrecorded; this is the Spotify Web API's style (inferred).
    return Response(401, compact({"error": {"status": 401,
                                            "message": "The access token expired"}}))


def legacy(ds: Dataset, method: str, sub: str) -> Response:
    m = _OVERVIEW.match(sub)
    if method != "GET" or not m:
        return anchor_api.errors(404, "Not Found")
    ep = ds.episode(int(m.group(1))) if m.group(1).isdigit() else None
    if ep is not None and ep.is_draft:  # H: drafts answer 403 on this host
        return anchor_api.errors(403, "Forbidden")
    return anchor_api._overview(ds, m.group(1))


# ---------------------------------------------------------------------- resolvers
Resolver = Callable[[SpotifyBackend, dict[str, Any], Callable[[], bool]], Any]


def _shows(b: SpotifyBackend, station_ids: bool) -> dict[str, Any]:
    """Every show of the account (a network's account has several), then one hosted
    elsewhere."""
    def hosted(ds: Dataset) -> dict[str, Any]:
        if station_ids:
            return {"uri": ds.spotify_show_uri, "name": ds.show_title,
                    "stationId": str(ds.station_id), "coverArt": None, "permissionsV2": []}
        return {"__typename": "HostedShow", "uri": ds.spotify_show_uri,
                "name": ds.show_title, "hostingProvider": "S4P",
                "authorName": "Emulator", "category": "Technology",
                "description": f"{ds.show_title}, served by the emulator"}

    other: dict[str, Any] = {"__typename": "NonHostedShow", "uri": OTHER_SHOW_URI,
                             "name": "A Show Hosted Elsewhere", "hostingProvider": "MEGAPHONE"}
    if station_ids:
        other = {"uri": other["uri"], "name": other["name"], "id": "0", "coverArt": None,
                 "permissionsV2": []}
    return {"showsForUser": {"shows": [*map(hosted, b.shows), other]}}


def _on_spotify(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)
    node: dict[str, Any] = {"uri": b.ds.spotify_show_uri,
                            "playsDaily": points([(d, b.ds.station_plays(d)) for d in days])}
    if v.get("includeAudienceSize"):
        node["audienceSizeDaily"] = points([(d, round(b.ds.station_plays(d) * 0.8))
                                            for d in days])
    return {"showByShowUri": node}


def _geo(b: SpotifyBackend, v: dict[str, Any], geo_fails: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)
    params = v.get("geoParams") if isinstance(v.get("geoParams"), dict) else {}
    level = params.get("resultGeo", "GEO_COUNTRY")
    expected = {"GEO_COUNTRY": "SHOW_PLAYS_AND_DOWNLOADS_BY_COUNTRY",
                "GEO_REGION": "SHOW_PLAYS_AND_DOWNLOADS_BY_REGION",
                "GEO_CITY": "SHOW_PLAYS_AND_DOWNLOADS_BY_CITY"}
    if level not in expected or v.get("metricType") != expected[level]:
        raise GraphQLAnswer([gql_error("metricType does not match geoParams.resultGeo",
                                       "ValidationError")])
    uri = b.ds.spotify_show_uri
    if level != "GEO_COUNTRY" and geo_fails():
        raise GraphQLAnswer([gql_error("Exception while fetching data (/showByShowUri/"
                                       "showPlaysAndDownloadsByGeo)", "DataFetchingException",
                                       ["showByShowUri", "showPlaysAndDownloadsByGeo"])],
                            {"showByShowUri": {"uri": uri, "showPlaysAndDownloadsByGeo": None}})
    names = {code: name for name, code in COUNTRY_CODES.items()}
    if level == "GEO_COUNTRY":
        counts = Counter({COUNTRY_CODES[k]: n for k, n in b.counts("geo", days).items()})
        labels = names
    else:
        country = names.get(str(params.get("country")))
        regions = REGIONS.get(country or "", ())
        region_counts: Counter[str] = Counter()
        for d in days:
            region_counts.update(b.ds.anchor_day(d).cities.get(country or "", Counter()))
        codes = {r: str(i + 1) for i, (r, _) in enumerate(regions)}
        if level == "GEO_REGION":
            counts = Counter({codes[r]: n for r, n in region_counts.items()})
            labels = {c: r for r, c in codes.items()}
        else:
            region = next((r for r, c in codes.items() if c == str(params.get("region"))), None)
            cities = CITIES.get(region or "", (region,) if region else ())
            counts = Counter(dict(zip(cities, _split(region_counts.get(region or "", 0),
                                                     CITY_WEIGHTS[:len(cities)]), strict=True)))
            labels = {c: c for c in cities}
    total = sum(counts.values())
    top = sorted((k for k in counts if counts[k] > 0), key=lambda k: (-counts[k], labels[k]))
    geos = [{"displayName": labels[k], "flagUrl": None, "navigationName": k,
             "value": anchor_api._round_geo(counts[k] / total)} for k in top]
    return {"showByShowUri": {"uri": uri, "showPlaysAndDownloadsByGeo": wrap(
        {"__typename": "GeoFacetedValue", "geos": geos})}}


def _split(n: int, weights: tuple[int, ...]) -> list[int]:
    """``n`` split by ``weights``, largest remainder first (sums to ``n`` exactly)."""
    if not weights:
        return []
    total = sum(weights)
    raw = [n * w / total for w in weights]
    parts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: (parts[i] - raw[i], i))[:n - sum(parts)]:
        parts[i] += 1
    return parts


def _age(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)
    ages, genders = b.counts("age", days), b.counts("gender", days)
    total = sum(ages.values())
    gender_weights = tuple(genders[g] for g in GENDERS)
    brackets = []
    for age in AGE_RANGES:
        split = _split(ages[age], gender_weights) if sum(gender_weights) else [0] * len(GENDERS)
        counts = [{"gender": GENDER_ENUM[g], "displayName": g, "count": n,
                   "percent": n / total if total else 0, "color": "#5925FF"}
                  for g, n in zip(GENDERS, split, strict=True)]
        brackets.append({"ageBracket": AGE_BRACKETS.get(age, age),
                         "displayName": AGE_BRACKETS.get(age, age),
                         "genderBreakdown": {"total": ages[age], "counts": counts}})
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri, "showPlaysByAge": wrap(
        {"__typename": "FacetedAnalyticsValue", "totalValue": total,
         "ageBreakdown": brackets if total else []})}}


def _gender(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)
    genders = b.counts("gender", days)
    total = sum(genders.values())
    counts = [{"gender": GENDER_ENUM[g], "displayName": g, "count": genders[g],
               "percent": genders[g] / total, "color": "#26008D"} for g in GENDERS] if total else []
    if counts and b.ds.config.broken_fraction == "gender" and b.ds.yesterday in days:
        counts[0]["percent"] += 0.25  # --broken-fraction: the last day's shares sum to 1.25
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri, "showPlaysByGender": wrap(
        {"__typename": "FacetedAnalyticsValue", "totalValue": total,
         "genderBreakdown": {"total": total, "counts": counts}})}}


def _platforms(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)

    def shares(kind: str) -> list[dict[str, Any]]:
        c = b.counts(kind, days)
        total = sum(c.values())
        keys = sorted((k for k in c if c[k] > 0), key=lambda k: (k == "Other", -c[k], k))
        out = [{"displayName": k, "value": c[k] / total, "color": "#1ED760"} for k in keys]
        if out and b.ds.config.broken_fraction == kind and b.ds.yesterday in days:
            out[0]["value"] += 0.25  # --broken-fraction: the last day's shares sum to 1.25
        return out

    return {"showByShowUri": {
        "uri": b.ds.spotify_show_uri,
        "showPlaysAndDownloadsByApp": wrap({"__typename": "AppFacetedBreakdown",
                                            "apps": shares("app")}),
        "showPlaysAndDownloadsByDevice": wrap({"__typename": "DeviceFacetedBreakdown",
                                               "devices": shares("device")})}}


def _impressions_counter(b: SpotifyBackend, days: list[date]) -> Counter[str]:
    total: Counter[str] = Counter()
    for d in days:
        total.update(b.ds.anchor_day(d).impressions)
    return total


def _sources(counter: Counter[str]) -> dict[str, Any]:
    return wrap({"__typename": "ImpressionSourceValue", "impressionSourceBreakdown": {
        "total": sum(counter.values()),
        "counts": [{"source": s, "displayName": s.title(), "count": counter[s]}
                   for s in SOURCES]}})


def _impressions_trend(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.days(v)
    daily = [(d, sum(b.ds.anchor_day(d).impressions.values())) for d in days]
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri,
                              "impressionsTotal": wrap({"value": sum(n for _, n in daily)}),
                              "impressionsDaily": points(daily)}}


def _impressions_sources(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri,
                              "impressionsSources": _sources(_impressions_counter(b, b.days(v)))}}


def _discovery(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    uri = b.ds.spotify_show_uri
    fields = ("audienceSize", "audienceFollowRate", "consumptionHoursPerPerson",
              "impressionsFunnel")
    if v.get("dateRangeWindow") == "WINDOW_CUSTOM":  # the reference: custom ranges fail
        raise GraphQLAnswer([gql_error("Exception while fetching data", "DataFetchingException",
                                       ["showByShowUri", f]) for f in fields],
                            {"showByShowUri": {"uri": uri, **dict.fromkeys(fields)}})
    days = b.days(v)
    plays = sum(b.ds.station_plays(d) for d in days)
    audience = b.ds.audience_size() if v.get("dateRangeWindow") == "WINDOW_ALL_TIME" else \
        round(plays * 0.55) + 3
    reached = round(sum(_impressions_counter(b, days).values()) * 0.4)
    interested = round(reached * 0.3)
    hours = sum(b.ds.spotify_day(d).get(e.episode_id, (0, 0, 0))[1] * e.duration_s * 0.6
                for d in days for e in b.ds.published) / 3600
    return {"showByShowUri": {
        "uri": uri, "audienceSize": wrap({"value": audience}),
        "audienceFollowRate": wrap({"__typename": "RatioValueFloat",
                                    "value": round(0.08 + (b.ds.config.seed % 7) / 100, 4)}),
        "consumptionHoursPerPerson": wrap({"value": round(hours / audience, 4) if audience
                                           else 0.0}),
        "impressionsFunnel": wrap({"__typename": "DiscoveryFunnelValue", "steps": [
            {"stepName": "REACHED", "stepValue": reached,
             "conversionRateToNext": interested / reached if reached else 0},
            {"stepName": "INTERESTED", "stepValue": interested,
             "conversionRateToNext": min(1.0, round(plays * 0.5) / interested)
             if interested else 0},
            {"stepName": "CONSUMED", "stepValue": round(plays * 0.5),
             "conversionRateToNext": None}]})}}


def _ranked(b: SpotifyBackend) -> list[tuple[Episode, int]]:
    totals = b.ds.total_plays_by_episode()
    eps = sorted(b.ds.published, key=lambda e: (-totals[e.episode_id], -(e.publish_ts or 0)))
    return [(e, totals[e.episode_id]) for e in eps]


def _top_episodes(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri, "topEpisodes": wrap({
        "__typename": "TopEpisodesFacetedValue",
        "episodes": [{"rank": i, "uri": e.spotify_uri, "title": e.title, "value": n}
                     for i, (e, n) in enumerate(_ranked(b), 1)]})}}


def _all_platforms(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    days = b.ds.data_days()
    sd = sum(s + dl for d in days for _, s, dl in b.ds.spotify_day(d).values())
    pd_ = sum(p + dl for d in days for p, _, dl in b.ds.spotify_day(d).values())
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri,
                              "streamsAndDownloadsAllTime": wrap({"value": sd}),
                              "playsAndDownloadsAllTime": wrap({"value": pd_})}}


def _overview_nrt(b: SpotifyBackend, v: dict[str, Any], g: Callable[[], bool]) -> Any:
    totals = _all_platforms(b, v, g)["showByShowUri"]
    return {"showByShowUri": {**totals, "playsAllTime": wrap({"value": b.ds.total_plays()}),
                              "followerCount": round(b.ds.audience_size() * 0.2)}}


def _episode_item(b: SpotifyBackend, e: Episode, days: list[date]) -> dict[str, Any]:
    plays, streams, downloads = b.episode_window(e, days)
    return {
        "__typename": "HostedEpisode", "episodeId": e.episode_id, "uri": e.spotify_uri,
        "title": e.title, "episodeType": "EPISODE_TYPE_FULL",
        "contentType": "EPISODE_CONTENT_TYPE_AUDIO", "isSpotifyExclusive": False,
        "publishedOn": None if e.publish_ts is None else {"seconds": e.publish_ts},
        "createdOn": {"seconds": e.created_ts},
        "asset": {"lengthMs": e.duration_s * 1000 + e.episode_id % 997,
                  "downloadUrl": None if e.is_draft else
                  f"https://anchor.fm/s/{b.ds.webstation_id}/podcast/play/{e.index + 1}/"
                  f"{e.guid}.m4a?sig={hashlib.sha1(e.guid.encode()).hexdigest()[:16]}",
                  "mediaFiles": [{"mediaType": "MEDIA_TYPE_AUDIO"}]},
        "analyticsStartsV2": wrap({"value": plays}),
        "analyticsStreamsAndDownloads": wrap({"value": streams + downloads}),
        "analyticsAudience": wrap({"value": round((plays + downloads) * 0.85)}),
        "analyticsPlaysAndDownloads": wrap({"value": plays + downloads}),
    }


def _episode_list(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    b.show(v)
    page, size = v.get("currentPage", 1), v.get("pageSize", 10)
    if not isinstance(page, int) or not isinstance(size, int) or page < 1 or not 1 <= size <= 250:
        raise GraphQLAnswer([gql_error("currentPage must be >= 1 and pageSize 1..250",
                                       "ValidationError")])
    days = b.days(v, "analyticsWindow", "WINDOW_ALL_TIME")
    # Newest published first, drafts last (the default order is unrecorded; the reference CLI
    # reads the first item's legacy overview, which a draft answers with 403).
    eps = sorted(b.ds.published, key=lambda e: -(e.publish_ts or 0)) + b.ds.drafts
    chunk = eps[(page - 1) * size:page * size]
    return {"showByShowUri": {"episodesV2": {
        "indexStatus": "COMPLETED", "items": [_episode_item(b, e, days) for e in chunk],
        "pagination": {"currentPage": page, "pageSize": size, "totalItems": len(eps),
                       "totalPages": max(1, -(-len(eps) // size))},
        "sortable": ["TITLE", "PUBLISHED_ON", "PLAY_COUNT"]}}}


def _episode_series(kind: str) -> Resolver:
    def resolve(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
        ep = b.episode(v)
        days = b.days(v)
        weekly = v.get("aggregationType") == "AGGREGATION_TYPE_WEEKLY"
        values: list[tuple[date, int]] = []
        for d in days:
            p, s, dl = b.ds.spotify_day(d).get(ep.episode_id, (0, 0, 0))
            n = p if kind == "plays" else s + dl
            if weekly and values and (d - values[-1][0]).days < 7:
                values[-1] = (values[-1][0], values[-1][1] + n)
            else:
                values.append((d, n))
        return {"episodeByUri": {"uri": ep.spotify_uri, "analytics": points(values)}}
    return resolve


def _episode_plays_total(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    plays, _s, downloads = b.episode_window(ep, b.days(v, default="WINDOW_ALL_TIME"))
    return {"episodeByUri": {"uri": ep.spotify_uri, "analytics": wrap({"value": plays + downloads})}}


def _episode_impressions(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    counter: Counter[str] = Counter()
    for d in b.days(v):
        day = b.ds.anchor_day(d)
        share = day.plays.get(ep.episode_id, 0) / day.total if day.total else 0
        counter.update({s: round(n * share) for s, n in day.impressions.items()})
    return {"episodeByUri": {"uri": ep.spotify_uri, "impressionsFaceted": _sources(counter)}}


def _performance(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    curve = b.ds.performance(ep.episode_id)
    agg = dict(b.ds.aggregated_performance(ep.episode_id))
    top = curve[0] if curve else 0
    median = next((t for t, n in enumerate(curve) if n <= top / 2), len(curve)) if top else None
    return {"episodeByUri": {"uri": ep.spotify_uri, "episodePerformanceTotalAllTime": wrap({
        "points": [{"second": t, "sampleCount": n} for t, n in enumerate(curve)],
        "percentiles": [{"completionPercentage": q, "audiencePercentage": agg[f"percentile{q}"]}
                        for q in (25, 50, 75, 100)],
        "medianCompletionSeconds": median})}}


def _metadata(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    return {"episodeByUri": {"uri": ep.spotify_uri, "title": ep.title,
                             "publishedOn": None if ep.publish_ts is None else
                             {"seconds": ep.publish_ts},
                             "thumbnail": {"images": [{"url": "https://i.scdn.co/image/emu"}]}}}


def _consumption_value(b: SpotifyBackend, ep: Episode, days: list[date] | None) -> dict[str, Any]:
    curve = b.ds.performance(ep.episode_id)
    plays_all = b.ds.total_plays_by_episode().get(ep.episode_id, 0)
    share = 1.0
    if days is not None:
        plays = sum(b.ds.episode_plays(ep.episode_id, d) for d in days)
        share = plays / plays_all if plays_all else 0.0
    ms = round(sum(curve) * 1000 * share)
    fg = round(ms * 0.87)
    return {"__typename": "ConsumptionValue", "totalConsumptionHours": round(ms / 3.6e6, 4),
            "foregroundConsumptionPercent": round(fg / ms, 4) if ms else 0.0,
            "totalMsPlayed": ms, "foregroundMsPlayed": fg}


def _consumption_all_time(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    return {"episodeByUri": {"uri": ep.spotify_uri,
                             "consumptionAllTime": wrap(_consumption_value(b, ep, None))}}


def _consumption(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    days = b.days(v)
    return {"episodeByUri": {
        "uri": ep.spotify_uri, "episodeConsumptionTotal": wrap(_consumption_value(b, ep, days)),
        "episodeConsumptionDaily": wrap({"__typename": "TimeSeriesValue", "points": [
            {"date": d.isoformat(), "value": _consumption_value(b, ep, [d])} for d in days]})}}


def _audience(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    ep = b.episode(v)
    plays, _s, downloads = b.episode_window(ep, b.ds.data_days())
    total = round((plays + downloads) * 0.7)
    fg = round(total * 0.8)
    return {"episodeByUri": {"uri": ep.spotify_uri, "audienceSizeAllTime": wrap({
        "__typename": "AudienceValue", "totalAudienceSize": total,
        "foregroundAudienceSize": fg,
        "foregroundAudiencePercent": round(fg / total, 4) if total else 0.0})}}


def _const(data: Callable[[SpotifyBackend, dict[str, Any]], Any]) -> Resolver:
    return lambda b, v, _: data(b, v)


def _show_field(field: str, value: Callable[[SpotifyBackend], Any]) -> Resolver:
    def resolve(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
        b.show(v)
        return {"showByShowUri": {"uri": b.ds.spotify_show_uri, field: value(b)}}
    return resolve


def _plays_by_geo(b: SpotifyBackend, v: dict[str, Any], _: Callable[[], bool]) -> Any:
    # Variables and shape unknown (no client calls it): Spotify-only countries, inferred.
    b.show(v)
    c = b.counts("geo", b.days(v))
    total = sum(c.values())
    return {"showByShowUri": {"uri": b.ds.spotify_show_uri, "showPlaysByGeo": wrap({
        "__typename": "GeoFacetedValue", "geos": [
            {"displayName": k, "navigationName": COUNTRY_CODES[k], "value": n / total}
            for k, n in c.most_common() if n]})}}


RESOLVERS: dict[str, Resolver] = {
    "getUserMetadata": _const(lambda b, v: {"user": {"name": "Emulated Podcaster",
                                                     "avatarUrl": None}}),
    "WebGetUserShows": _const(lambda b, v: _shows(b, station_ids=True)),
    "WebGetUserAndShows": _const(lambda b, v: {"user": {"name": "Emulated Podcaster"},
                                               **_shows(b, station_ids=True)}),
    "WebGetUserRegistration": _const(lambda b, v: {"userRegistration": {
        "countryCode": v.get("countryCode", "US"), "hasAcceptedTerms": True}}),
    "WebGetExternalPartnerId": _const(lambda b, v: {"externalPartnerId": {
        "partnerName": v.get("partnerName"), "id": f"emulator-{b.ds.config.seed}"}}),
    "getShowsForUser": _const(lambda b, v: _shows(b, station_ids=False)),
    "WebGetShowTypeByUri": _show_field("showType", lambda b: "PODCAST"),
    "WebGetMonetizationLifecycleState": _show_field("monetizationLifecycleState",
                                                    lambda b: "NOT_ELIGIBLE"),
    "getShowClips": _show_field("clips", lambda b: {"items": [], "pageToken": None}),
    "getShowOnSpotifyStats": _on_spotify,
    "getShowOnSpotifyStatsNRT": _on_spotify,
    "getShowPlaysAndDownloadsByGeo": _geo,
    "getShowPlaysByGeo": _plays_by_geo,
    "getShowPlaysByAge": _age,
    "getShowPlaysByGender": _gender,
    "getShowPlaysAndDownloadsPlatformsStats": _platforms,
    "getShowImpressionsTrendStats": _impressions_trend,
    "getShowAudienceDiscoveryStats": _discovery,
    "getShowImpressionsSourcesStats": _impressions_sources,
    "getShowTopEpisodes": _top_episodes,
    "getShowOverviewStatsNRT": _overview_nrt,
    "getShowAllPlatformsStatsNRT": _all_platforms,
    "WebGetIndexedEpisodeList": _episode_list,
    "getEpisodePerformanceAllTime": _performance,
    "getEpisodeMetadataForAnalytics": _metadata,
    "getEpisodeStreamsAndDownloads": _episode_series("streams_and_downloads"),
    "getEpisodePlaysTotal": _episode_plays_total,
    "getEpisodePlaysDaily": _episode_series("plays"),
    "getEpisodeImpressionsFaceted": _episode_impressions,
    "getEpisodeConsumptionAllTime": _consumption_all_time,
    "getEpisodeConsumption": _consumption,
    "getEpisodeAudienceSizeAllTime": _audience,
}

__all__ = ["ACCOUNTS_PREFIX", "GRAPHQL_PATH", "LEGACY_PREFIX", "SpotifyBackend", "day_epoch"]
