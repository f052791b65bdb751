"""Plain-Python client of the Spotify for Creators GraphQL API (the dashboard's backend).

Methods named like :class:`~podcast_pipeline.anchor.client.AnchorClient`'s return the same
``anchor.*`` contract DataFrames, so the asset layer takes either client; the others fill the
``spotify.*`` tables only GraphQL has. Time ranges are UTC days, both ends inclusive.

Rules (see the reference's §2–3):
- persisted queries by operation name + sha256 hash; no query text is sent;
- 429/5xx retried with backoff by the shared :class:`ApiSession`;
- a 401 means the bearer expired: one silent login, then the call again; a 401 right after
  a fresh login, or ``login_required`` on the accounts page, is :class:`CredentialsExpired`
  and every later call fails at once;
- a 200 with ``errors`` and no ``data`` is :class:`GraphQLError` naming the operation; a field
  the table needs that comes back null (``DataFetchingException``) is fetched again, then
  :class:`FieldUnavailable` — never stored as 0;
- cookies go only to the accounts host, the bearer only to the GraphQL and legacy hosts,
  and no session follows a redirect.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd

from podcast_pipeline.anchor.client import overview_frame
from podcast_pipeline.errors import (
    ConfigError,
    CredentialsExpired,
    FieldUnavailable,
    GraphQLError,
    MalformedResponse,
)
from podcast_pipeline.http import (
    ApiSession,
    CallStats,
    ClientBase,
    CredentialVerdict,
    Recorder,
    RetryPolicy,
)
from podcast_pipeline.redact import redact
from podcast_pipeline.settings import SpotifySettings
from podcast_pipeline.spotify import parse as P
from podcast_pipeline.spotify.auth import API, BearerSource
from podcast_pipeline.spotify.operations import OPERATIONS
from podcast_pipeline.timeutil import as_utc_date, utc_now

log = logging.getLogger(__name__)
T = TypeVar("T")

# What the dashboard sends (reference client); whether any is checked is unknown, so all are.
BROWSER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:147.0) Gecko/20100101 Firefox/147.0"
GRAPHQL_HEADERS = {
    "User-Agent": BROWSER_UA, "Accept": "*/*", "Accept-Language": "en",
    "Content-Type": "application/json", "Origin": "https://creators.spotify.com",
    "Referer": "https://creators.spotify.com/",
}
LEGACY_HEADERS = {
    "User-Agent": BROWSER_UA, "Accept": "*/*", "Accept-Language": "en",
    "Anchor-API-Version": "3.8.3", "Anchor-Client-Type": "web",
    "Referer": "https://creators.spotify.com/",
}
PAGE_SIZE = 50  # the largest page the dashboard is seen to ask for
MAX_PAGES = 500  # 25,000 episodes: past that, pagination is not ending
TOP_COUNTRIES = 5
TOP_REGIONS = 3
EPISODE_LIMIT = 5  # REST playsByEpisode's default: the top 5 episodes per day
ROLLING_WINDOWS = ("WINDOW_LAST_SEVEN_DAYS", "WINDOW_LAST_THIRTY_DAYS", "WINDOW_LAST_NINETY_DAYS")
IMPRESSIONS_DAYS = 29
IMPRESSIONS_LAG = timedelta(days=2)


def custom_range(start: date | datetime, end: date | datetime) -> dict[str, Any]:
    s, e = as_utc_date(start), as_utc_date(end)
    if s > e:
        raise ValueError(f"start {s} is after end {e}")
    return {"dateRangeWindow": "WINDOW_CUSTOM",
            "customDateRange": {"startDate": s.isoformat(), "endDate": e.isoformat()}}


class SpotifyGraphQLClient(ClientBase):
    """Spotify for Creators analytics of one show over GraphQL (cookies sp_dc / sp_key)."""

    api = API
    backend = "graphql"

    def __init__(self, settings: SpotifySettings, *, retry: RetryPolicy | None = None,
                 recorder: Recorder | None = None, stats: CallStats | None = None,
                 clock: Callable[[], float] | None = None,
                 auth: BearerSource | None = None,
                 verdict: CredentialVerdict | None = None) -> None:
        """``auth``: a login shared with other clients (the steps of one run); it stays open
        when this client closes."""
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._own_auth = auth is None
        self.auth = auth or BearerSource(settings, retry=self.retry, stats=stats,
                                         **({"clock": clock} if clock else {}))
        # The run's 401 verdict: consulted before every request; recorded here only when a
        # fresh login does not help (a 401 alone means the bearer expired).
        self.verdict = verdict or CredentialVerdict()
        # Persisted queries only read, so the shared retry loop may repeat their POSTs.
        self.session = ApiSession(API, settings.graphql_url, headers=GRAPHQL_HEADERS,
                                  retry=self.retry, recorder=recorder, stats=stats,
                                  verdict=self.verdict, follow_redirects=False,
                                  renewable_401=True)
        self.legacy = ApiSession(API, settings.legacy_url, headers=LEGACY_HEADERS,
                                 retry=self.retry, recorder=recorder, stats=stats,
                                 verdict=self.verdict, follow_redirects=False,
                                 renewable_401=True)
        self._lock = threading.Lock()
        self._show_uri: str | None = None  # resolved (and checked) on first use
        self._shows: list[Mapping[str, Any]] | None = None
        self._episodes: pd.DataFrame | None = None
        self._dead: CredentialsExpired | None = None

    @classmethod
    def from_env(cls, **kw: Any) -> SpotifyGraphQLClient:
        return cls(SpotifySettings.from_env(), **kw)

    def close(self) -> None:
        self.session.close()
        self.legacy.close()
        if self._own_auth:
            self.auth.close()

    # ------------------------------------------------------------------ plumbing
    def _authorized(self, endpoint: str, call: Callable[[str], T]) -> T:
        """``call(bearer)``; after a 401, one silent login and one more try."""
        if self._dead is not None:
            raise self._dead
        if self.verdict.refused(API):  # another step of this run already met a dead login
            raise CredentialsExpired(API, endpoint, status=None, backend="graphql",
                                     reason="an earlier call of this run was refused; not "
                                            "calling again")
        try:
            token, fresh = self.auth.bearer()
        except CredentialsExpired:
            self.verdict.record_401(API)  # a dead cookie: the run's other steps stop too
            raise
        try:
            return call(token)
        except CredentialsExpired as exc:
            if exc.status is None:  # refused by the run's verdict, not a 401: no login helps
                raise
            if fresh:
                raise self._die(endpoint, "401 right after a fresh login") from None
            log.info("Spotify %s: bearer no longer accepted (401); logging in again", endpoint)
            self.auth.invalidate(token)
        try:
            token, _ = self.auth.bearer()
        except CredentialsExpired:
            self.verdict.record_401(API)
            raise
        try:
            return call(token)
        except CredentialsExpired:
            raise self._die(endpoint, "401 again right after a fresh login") from None

    def _die(self, endpoint: str, reason: str) -> CredentialsExpired:
        self._dead = CredentialsExpired(API, endpoint, reason=reason, backend="graphql")
        self.verdict.record_401(API)  # the run's other steps stop calling too
        return self.auth.kill(self._dead)

    def graphql(self, endpoint: str, operation: str, variables: Mapping[str, Any] | None = None,
              *, required: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
        """Run a persisted query; return ``data``. ``required`` paths must not be null."""
        op = OPERATIONS[operation]
        body = {"operationName": operation, "variables": dict(variables or {}),
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": op.sha256}}}
        nulled: list[str] = []
        last: list[Any] = [None]

        def validate(env: Any) -> str | None:
            if not isinstance(env, dict) or not ("data" in env or "errors" in env):
                return "the answer is not a GraphQL response (no data, no errors)"
            data = env.get("data")
            nulled.clear()
            last[0] = env
            if isinstance(data, dict):
                for path in required:
                    if _null_at(data, path):
                        nulled.append(".".join(path))
            if nulled:
                return f"{', '.join(nulled)} came back null ({_error_summary(env)})"
            return None

        def call(token: str) -> Any:
            return self.session.request_json(
                "POST", endpoint, "", headers={"Authorization": f"Bearer {token}",
                                               "x-creator-client": op.client},
                json_body=body, validate=validate, label=operation)

        try:
            env = self._authorized(endpoint, call)
        except MalformedResponse as exc:
            if nulled:
                raise FieldUnavailable(API, endpoint, f"GraphQL {operation}: "
                                       f"{', '.join(nulled)} stayed null on every try "
                                       f"({_error_summary(last[0])}); nothing was stored for "
                                       "it", path=exc.path) from None
            raise
        data = env.get("data")
        errors = env.get("errors") or []
        if not isinstance(data, dict):
            if errors:
                raise GraphQLError(API, operation, errors if isinstance(errors, list)
                                   else [errors], path=f"#{operation}")
            raise MalformedResponse(API, endpoint, f"GraphQL {operation} answered no data")
        if errors:
            log.warning("Spotify GraphQL %s answered with errors besides data: %s", operation,
                        redact(_error_summary(env)))
        return data

    def _legacy_json(self, endpoint: str, path: str) -> Any:
        def call(token: str) -> Any:
            return self.legacy.request_json(
                "GET", endpoint, path, {"isMumsCompatible": "true", "returnWebIds": "true"},
                headers={"Authorization": f"Bearer {token}"},
                validate=lambda b: None if isinstance(b, dict) else "expected a JSON object")

        return self._authorized(endpoint, call)

    # ------------------------------------------------------------------ the show
    def list_shows(self) -> list[Mapping[str, Any]]:
        with self._lock:
            if self._shows is None:
                data = self.graphql("shows", "getShowsForUser")
                self._shows = P.items(P.at(data, ["showsForUser"], "shows"), "shows",
                                      "showsForUser", "shows")
            return self._shows

    def show_uri(self) -> str:
        """SPOTIFY_SHOW_URI (checked against the account), else the only hosted show."""
        if self._show_uri is not None:
            return self._show_uri
        # Resolved by another client of this login, for the same show: a network's account
        # shares its login between shows, each with its own SPOTIFY_SHOW_URI.
        if self.auth.show_uri is not None and self.settings.show_uri in (None,
                                                                         self.auth.show_uri):
            self._show_uri = self.auth.show_uri
            return self._show_uri
        shows = self.list_shows()
        uris = [s.get("uri") for s in shows]
        if self.settings.show_uri is not None:
            if self.settings.show_uri not in uris:
                raise ConfigError("SPOTIFY_SHOW_URI", f"is {self.settings.show_uri}, which this "
                                  f"Spotify account does not list (it has {_show_list(shows)})",
                                  "Set it to one of those, or unset it")
            self._show_uri = self.auth.show_uri = self.settings.show_uri
            return self._show_uri
        hosted = [s for s in shows if s.get("hostingProvider") == "S4P"]
        pick = hosted if hosted else shows
        if len(pick) != 1:
            raise ConfigError("SPOTIFY_SHOW_URI", f"is not set and the account has "
                              f"{len(pick)} {'hosted ' if hosted else ''}shows "
                              f"({_show_list(pick)})",
                              "Set SPOTIFY_SHOW_URI to the one this pipeline should read")
        uri = pick[0].get("uri")
        if not isinstance(uri, str):
            raise MalformedResponse(API, "shows", "the show has no uri")
        self._show_uri = self.auth.show_uri = uri
        return uri

    def show_id(self) -> str:
        """The warehouse's key for the show: ANCHOR_WEBSTATION_ID if set (shared with the REST
        backend's rows), else the show URI's id."""
        return self.settings.webstation_id or self.show_uri().rsplit(":", 1)[1]

    def _show(self, endpoint: str, operation: str, variables: Mapping[str, Any] | None = None,
              required: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
        data = self.graphql(endpoint, operation, {"showUri": self.show_uri(), **(variables or {})},
                          required=[("showByShowUri", *p) for p in required] or
                          [("showByShowUri",)])
        return P.at(data, ["showByShowUri"], endpoint)

    def shows(self) -> pd.DataFrame:
        chosen = self.show_uri()
        rows = [{"show_uri": s.get("uri"), "name": s.get("name"),
                 "hosting_provider": s.get("hostingProvider"), "author_name": s.get("authorName"),
                 "category": s.get("category"), "is_selected": s.get("uri") == chosen}
                for s in self.list_shows()]
        return P.frame("shows", rows, "spotify")

    # ------------------------------------------------------------------ episodes
    def _episode_pages(self, endpoint: str, window: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every item of WebGetIndexedEpisodeList, page by page until pagination says the end.

        A short or empty page before ``totalItems`` is reached is an incomplete answer and
        raises: a partial episode list must not replace a complete one.
        """
        uri = self.show_uri()
        found: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        expected: int | None = None
        for page in range(1, MAX_PAGES + 1):
            data = self.graphql(endpoint, "WebGetIndexedEpisodeList", {
                "showUri": uri, "currentPage": page, "pageSize": PAGE_SIZE, "sortOrder": None,
                "sortBy": None, "search": None, "filter": None,
                "includeMembershipTiers": False, **window,
            }, required=[("showByShowUri", "episodesV2")])
            v2 = P.at(data, ["showByShowUri", "episodesV2"], endpoint)
            batch = P.items(v2, "items", "episodesV2", endpoint)
            pagination = v2.get("pagination") if isinstance(v2.get("pagination"), Mapping) else {}
            total_items, total_pages = pagination.get("totalItems"), pagination.get("totalPages")
            if isinstance(total_items, int):
                expected = total_items
            fresh = [i for i in batch if str(i.get("uri")) not in seen]
            if batch and not fresh:
                raise MalformedResponse(API, endpoint, f"page {page} repeats episodes already "
                                        "seen; stopping instead of looping")
            for item in fresh:
                seen.add(str(item.get("uri")))
                found.append(item)
            if not batch or (expected is not None and len(found) >= expected) or \
                    (isinstance(total_pages, int) and page >= total_pages) or \
                    len(batch) < PAGE_SIZE:
                break
        else:
            raise MalformedResponse(API, endpoint, f"more than {MAX_PAGES} pages; pagination "
                                    "never ends")
        if expected is not None and len(found) < expected:
            raise MalformedResponse(API, endpoint, f"pagination says {expected} episodes but "
                                    f"the pages held {len(found)}; refusing a partial list")
        return found

    def episodes(self, limit: int = PAGE_SIZE) -> pd.DataFrame:
        """Every hosted episode (those with a numeric episode id), lifetime starts."""
        items = self._episode_pages("episodes", {"analyticsWindow": "WINDOW_ALL_TIME"})
        uri = self.show_uri()
        rows = [P.episode_row(i, uri, "episodes") for i in items if i.get("episodeId") is not None]
        if len(rows) < len(items):
            log.info("Spotify episodes: %d episodes without an episode id (not hosted on "
                     "Spotify for Creators) left out", len(items) - len(rows))
        df = P.frame("episodes", rows)
        with self._lock:
            self._episodes = df
        return df

    def _episode_index(self) -> pd.DataFrame:
        with self._lock:
            cached = self._episodes
        return cached if cached is not None else self.episodes()

    def _episode_uri(self, episode_id: int) -> str:
        index = self._episode_index()
        match = index.loc[index["episode_id"] == int(episode_id), "spotify_episode_uri"]
        if not len(match) or not isinstance(match.iloc[0], str):
            raise MalformedResponse(API, "episodes", f"episode {episode_id} is not in the "
                                    "show's episode list")
        return str(match.iloc[0])

    def _episode(self, endpoint: str, operation: str, episode_id: int,
                 variables: Mapping[str, Any] | None = None,
                 required: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
        data = self.graphql(endpoint, operation,
                          {"episodeUri": self._episode_uri(episode_id), **(variables or {})},
                          required=[("episodeByUri", *p) for p in required] or
                          [("episodeByUri",)])
        return P.at(data, ["episodeByUri"], endpoint)

    # ------------------------------------------------------------------ anchor.* snapshots
    def station_id(self) -> str:
        """The cheapest authenticated call (login + getShowsForUser); the show's key."""
        return self.show_id()

    def total_plays(self) -> pd.DataFrame:
        show = self._show("total_plays", "getShowAllPlatformsStatsNRT",
                          required=[("streamsAndDownloadsAllTime",)])
        value = P.number(P.leaf(show, ["streamsAndDownloadsAllTime"], "total_plays"),
                         "streamsAndDownloadsAllTime", "total_plays", integer=True)
        return P.frame("total_plays", [{"plays": value}])

    def top_episodes(self) -> pd.DataFrame:
        show = self._show("top_episodes", "getShowTopEpisodes", required=[("topEpisodes",)])
        ranked = P.items(P.leaf(show, ["topEpisodes"], "top_episodes"), "episodes",
                         "topEpisodes", "top_episodes")
        rows = [{"rank": e.get("rank"), "episode_uri": e.get("uri"), "title": e.get("title"),
                 "plays": P.number(e.get("value"), f"topEpisodes[{n}].value", "top_episodes",
                                   integer=True)} for n, e in enumerate(ranked)]
        return P.frame("top_episodes", rows, "spotify")

    def total_plays_by_episode(self) -> pd.DataFrame:
        top = self.top_episodes()
        index = self._episode_index().set_index("spotify_episode_uri")
        rows = []
        for r in top.itertuples(index=False):
            known = r.episode_uri in index.index
            eid = index.at[r.episode_uri, "episode_id"] if known else None
            rows.append({"episode_id": int(eid) if eid is not None and pd.notna(eid) else None,
                         "episode_title": r.title,
                         "plays": None if pd.isna(r.plays) else int(r.plays),
                         "publish_time": index.at[r.episode_uri, "publish_on"] if known else None,
                         "rank": None if pd.isna(r.rank) else int(r.rank),
                         "episode_uri": r.episode_uri})
        return P.frame("total_plays_by_episode", rows)

    def _discovery(self, window: str) -> dict[str, Any]:
        fields = ("audienceSize", "audienceFollowRate", "consumptionHoursPerPerson",
                  "impressionsFunnel")
        show = self._show("discovery", "getShowAudienceDiscoveryStats",
                          {"dateRangeWindow": window}, required=[(f,) for f in fields])
        steps = {s.get("stepName"): s.get("stepValue") for s in P.items(
            P.leaf(show, ["impressionsFunnel"], "discovery"), "steps", "impressionsFunnel",
            "discovery")}
        return {
            "window_name": window,
            "audience_size": P.number(P.leaf(show, ["audienceSize"], "discovery"),
                                      "audienceSize", "discovery", integer=True),
            "follow_rate": P.number(P.leaf(show, ["audienceFollowRate"], "discovery"),
                                    "audienceFollowRate", "discovery"),
            "consumption_hours_per_person": P.number(
                P.leaf(show, ["consumptionHoursPerPerson"], "discovery"),
                "consumptionHoursPerPerson", "discovery"),
            "reached": steps.get("REACHED"), "interested": steps.get("INTERESTED"),
            "consumed": steps.get("CONSUMED"),
        }

    def discovery(self) -> pd.DataFrame:
        """The discovery funnel for each rolling window (custom ranges are refused by Spotify)."""
        return P.frame("discovery", [self._discovery(w) for w in ROLLING_WINDOWS], "spotify")

    def audience_size(self) -> pd.DataFrame:
        value = self._discovery("WINDOW_ALL_TIME")["audience_size"]
        return P.frame("audience_size", [{"audience_size": value}])

    def unique_listeners(self) -> pd.DataFrame:
        value = self._discovery("WINDOW_ALL_TIME")["audience_size"]
        return P.frame("unique_listeners", [{"unique_listeners": value}])

    def _geo(self, level: str, country: str | None = None, region: str | None = None
             ) -> list[Mapping[str, Any]]:
        # getShowPlaysAndDownloadsByGeo, whose variables and answer are recorded; the
        # Spotify-only getShowPlaysByGeo is registered by the dashboard but its variables and
        # shape are unknown, so it is not called (a guessed query could store wrong numbers).
        metric = {"GEO_COUNTRY": "SHOW_PLAYS_AND_DOWNLOADS_BY_COUNTRY",
                  "GEO_REGION": "SHOW_PLAYS_AND_DOWNLOADS_BY_REGION",
                  "GEO_CITY": "SHOW_PLAYS_AND_DOWNLOADS_BY_CITY"}[level]
        params: dict[str, Any] = {"resultGeo": level}
        if country:
            params["country"] = country
        if region:
            params["region"] = region
        endpoint = "plays_by_geo" if level == "GEO_COUNTRY" else "plays_by_geo_city"
        show = self._show(endpoint, "getShowPlaysAndDownloadsByGeo",
                          {"dateRangeWindow": "WINDOW_ALL_TIME", "metricType": metric,
                           "geoParams": params}, required=[("showPlaysAndDownloadsByGeo",)])
        return P.items(P.leaf(show, ["showPlaysAndDownloadsByGeo"], endpoint), "geos",
                       "showPlaysAndDownloadsByGeo", endpoint)

    def plays_by_geo(self, limit: int = 200) -> pd.DataFrame:
        rows = P.fractions({"geos": self._geo("GEO_COUNTRY")}, "geos", "geo", "geos",
                           "plays_by_geo")
        return P.frame("plays_by_geo", rows[:limit])

    def plays_by_geo_city(self, country: str | None = None, limit: int = 200, *,
                          top_countries: int = TOP_COUNTRIES) -> pd.DataFrame:
        """Regions of ``country`` (a display name, as REST takes), or of each top country."""
        countries = self._geo("GEO_COUNTRY")
        chosen = [c for c in countries if c.get("displayName") == country] if country else \
            countries[:top_countries]
        rows = []
        for c in chosen:
            regions = self._geo("GEO_REGION", str(c.get("navigationName")))
            rows += [{"country": c.get("displayName"), **r} for r in P.fractions(
                {"geos": regions}, "geos", "geo", "geos", "plays_by_geo_city")[:limit]]
        return P.frame("plays_by_geo_city", rows)

    def geo(self) -> pd.DataFrame:
        """Country → region → city, by navigationName (the top countries and their regions)."""
        rows: list[dict[str, Any]] = []

        def add(level: str, entries: Sequence[Mapping[str, Any]], country: str | None,
                region: str | None) -> None:
            for n, g in enumerate(entries):
                rows.append({"level": level, "country": country, "region": region,
                             "name": g.get("displayName"), "navigation_name": g.get(
                                 "navigationName"), "fraction": P.number(
                                 g.get("value"), f"geos[{n}].value", "geo")})

        countries = self._geo("GEO_COUNTRY")
        add("country", countries, None, None)
        for c in countries[:TOP_COUNTRIES]:
            code = str(c.get("navigationName"))
            regions = self._geo("GEO_REGION", code)
            add("region", regions, code, None)
            for r in regions[:TOP_REGIONS]:
                region = str(r.get("navigationName"))
                add("city", self._geo("GEO_CITY", code, region), code, region)
        return P.frame("geo", rows, "spotify")

    # ------------------------------------------------------------------ anchor.* ranged
    def plays(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        show = self._show("plays", "getShowOnSpotifyStats",
                          {**custom_range(start, end), "includeAudienceSize": False},
                          required=[("playsDaily",)])
        return P.frame("plays", [{"date": d, "plays": n}
                                 for d, n in P.series(show, ["playsDaily"], "plays")])

    def _platforms(self, endpoint: str, start: date | datetime, end: date | datetime,
                   field: str, key: str, col: str) -> pd.DataFrame:
        show = self._show(endpoint, "getShowPlaysAndDownloadsPlatformsStats",
                          custom_range(start, end), required=[(field,)])
        return P.frame(endpoint, P.fractions(P.leaf(show, [field], endpoint), key, col, field,
                                             endpoint))

    def plays_by_app(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._platforms("plays_by_app", start, end, "showPlaysAndDownloadsByApp",
                               "apps", "app")

    def plays_by_device(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._platforms("plays_by_device", start, end, "showPlaysAndDownloadsByDevice",
                               "devices", "device")

    def _by_age(self, endpoint: str, start: date | datetime, end: date | datetime) -> Any:
        show = self._show(endpoint, "getShowPlaysByAge", custom_range(start, end),
                          required=[("showPlaysByAge",)])
        return P.leaf(show, ["showPlaysByAge"], endpoint)

    def plays_by_age_range(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        total, brackets = P.age_totals(self._by_age("plays_by_age_range", start, end),
                                       "plays_by_age_range")
        rows = [] if total == 0 else [{"age_range": a, "fraction": n / total}
                                      for a, n in brackets]
        return P.frame("plays_by_age_range", rows)

    def plays_by_gender(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        show = self._show("plays_by_gender", "getShowPlaysByGender", custom_range(start, end),
                          required=[("showPlaysByGender",)])
        value = P.leaf(show, ["showPlaysByGender"], "plays_by_gender")
        return P.frame("plays_by_gender", P.gender_fractions(value, "plays_by_gender"))

    def demographics(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        """Age × gender as counts (GraphQL only; REST has only two separate fraction lists)."""
        total, rows = P.age_gender_counts(self._by_age("demographics", start, end),
                                          "demographics")
        for r in rows:
            r["fraction"] = r["plays"] / total if total else None
        return P.frame("demographics", rows, "spotify")

    def impressions(self, start: date | datetime | None = None,
                    end: date | datetime | None = None) -> pd.DataFrame:
        """Daily impressions; default window as REST's: 29 days ending today − 2 days."""
        if end is None:
            end = (utc_now() - IMPRESSIONS_LAG).date()
        if start is None:
            start = as_utc_date(end) - timedelta(days=IMPRESSIONS_DAYS - 1)
        show = self._show("impressions", "getShowImpressionsTrendStats", custom_range(start, end),
                          required=[("impressionsDaily",)])
        return P.frame("impressions", [{"date": d, "impressions": n} for d, n in
                                       P.series(show, ["impressionsDaily"], "impressions")])

    def impressions_by_source(self, start: date | datetime,
                              end: date | datetime) -> pd.DataFrame:
        show = self._show("impressions_by_source", "getShowImpressionsSourcesStats",
                          custom_range(start, end), required=[("impressionsSources",)])
        return P.frame("impressions_by_source", P.source_counts(
            P.leaf(show, ["impressionsSources"], "impressions_by_source"),
            "impressions_by_source"), "spotify")

    def _day_totals(self, endpoint: str, day: date | datetime) -> list[dict[str, Any]]:
        """Every episode-list item's totals for one UTC day (a one-day custom window)."""
        window = custom_range(day, day)
        items = self._episode_pages(endpoint, {
            "analyticsWindow": "WINDOW_CUSTOM", "customDateRange": window["customDateRange"]})

        def value(item: Mapping[str, Any], key: str) -> int:
            return int(P.number(P.leaf(item, [key], endpoint), f"{key} of {item.get('uri')}",
                                endpoint, integer=True))

        return [{"episode_id": i.get("episodeId"), "episode_uri": i.get("uri"),
                 "starts": value(i, "analyticsStartsV2"),
                 "plays_and_downloads": value(i, "analyticsPlaysAndDownloads"),
                 "streams_and_downloads": value(i, "analyticsStreamsAndDownloads"),
                 "audience": value(i, "analyticsAudience")} for i in items]

    def episode_daily_totals(self, day: date | datetime) -> pd.DataFrame:
        """Per episode, one day's starts, plays + downloads, streams + downloads, audience."""
        return P.frame("episode_daily_totals", self._day_totals("episode_daily_totals", day),
                       "spotify")

    def show_daily_totals(self, day: date | datetime) -> pd.DataFrame:
        """The show's all-platform totals of one UTC day: the sum over the episode list.

        No persisted query the dashboard sends gives the show's all-platform daily series
        (the reference knows one only as a schema name, without a hash), while the episode
        list takes a custom window and its items sum to Spotify's show total (measured within
        0.01 %). Audience is left out: listeners of two episodes are not two listeners.
        """
        rows = self._day_totals("show_daily_totals", day)
        return P.frame("show_daily_totals", [{
            "plays_and_downloads": sum(r["plays_and_downloads"] for r in rows),
            "streams_and_downloads": sum(r["streams_and_downloads"] for r in rows),
            "starts": sum(r["starts"] for r in rows), "episode_count": len(rows)}], "spotify")

    def audience_size_daily(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        """``audienceSizeDaily`` of getShowOnSpotifyStats (asked with includeAudienceSize).

        Not documented: whether a day's value is that day's listeners or a running total, so
        it is stored as given and the table says not to add days up. A server that leaves the
        field out or nulls it fails the call (required path), never a day of 0.
        """
        show = self._show("audience_size_daily", "getShowOnSpotifyStats",
                          {**custom_range(start, end), "includeAudienceSize": True},
                          required=[("audienceSizeDaily",)])
        return P.frame("audience_size_daily", [
            {"date": d, "audience_size": n}
            for d, n in P.series(show, ["audienceSizeDaily"], "audience_size_daily")], "spotify")

    def plays_by_episode(self, start: date | datetime, end: date | datetime,
                         limit: int | None = None) -> pd.DataFrame:
        """The top ``limit`` (5) episodes of each day by Spotify-only plays, as REST reports:
        GraphQL has no such call, so it is built from each episode's daily plays."""
        index = self._episode_index()
        published = index[pd.notna(index["publish_on"])]
        per_day: dict[date, list[tuple[int, int, Any]]] = {}
        for eid, title in zip(published["episode_id"], published["title"], strict=True):
            for r in self.episode_plays(int(eid), start, end).itertuples(index=False):
                if r.plays and r.plays > 0:
                    per_day.setdefault(r.date, []).append((-int(r.plays), int(eid), title))
        rows = [{"date": d, "episode_title": title, "plays": -neg}
                for d in sorted(per_day)
                for neg, _, title in sorted(per_day[d], key=lambda t: (t[0], t[1]))[
                    :limit or EPISODE_LIMIT]]
        return P.frame("plays_by_episode", rows)

    # ------------------------------------------------------------------ per episode
    def episode_plays(self, episode_id: int, start: date | datetime,
                      end: date | datetime) -> pd.DataFrame:
        ep = self._episode("episode_plays", "getEpisodePlaysDaily", episode_id,
                           custom_range(start, end), required=[("analytics",)])
        return P.frame("episode_plays", [{"episode_id": int(episode_id), "date": d, "plays": n}
                                         for d, n in P.series(ep, ["analytics"],
                                                              "episode_plays")])

    def _performance(self, endpoint: str, episode_id: int) -> Any:
        ep = self._episode(endpoint, "getEpisodePerformanceAllTime", episode_id,
                           required=[("episodePerformanceTotalAllTime",)])
        return P.leaf(ep, ["episodePerformanceTotalAllTime"], endpoint)

    def episode_performance(self, episode_id: int) -> pd.DataFrame:
        points = P.items(self._performance("episode_performance", episode_id), "points",
                         "episodePerformanceTotalAllTime", "episode_performance")
        return P.frame("episode_performance", [
            {"episode_id": int(episode_id), "sample_second": p.get("second"),
             "listeners": p.get("sampleCount")} for p in points])

    def episode_aggregated_performance(self, episode_id: int) -> pd.DataFrame:
        value = self._performance("episode_aggregated_performance", episode_id)
        rows = [{"episode_id": int(episode_id),
                 "metric": f"percentile{int(P.number(p.get('completionPercentage'), 'completionPercentage', 'episode_aggregated_performance'))}",
                 "value": p.get("audiencePercentage")}
                for p in P.items(value, "percentiles", "episodePerformanceTotalAllTime",
                                 "episode_aggregated_performance")]
        rows.append({"episode_id": int(episode_id), "metric": "medianCompletionSeconds",
                     "value": value.get("medianCompletionSeconds")})
        return P.frame("episode_aggregated_performance", rows)

    def episode_metadata(self, episode_id: int) -> pd.DataFrame:
        """The legacy overview (api-v5.anchor.fm) with the bearer: GraphQL lacks most fields."""
        body = self._legacy_json("episode_metadata", f"/v3/episodes/{int(episode_id)}/overview")
        return overview_frame(int(episode_id), body)

    def episode_impressions_by_source(self, episode_id: int) -> pd.DataFrame:
        window = "WINDOW_LAST_THIRTY_DAYS"
        ep = self._episode("episode_impressions_by_source", "getEpisodeImpressionsFaceted",
                           episode_id, {"dateRangeWindow": window},
                           required=[("impressionsFaceted",)])
        rows = P.source_counts(P.leaf(ep, ["impressionsFaceted"], "episode_impressions_by_source"),
                               "episode_impressions_by_source")
        return P.frame("episode_impressions_by_source",
                       [{"episode_id": int(episode_id), "window_name": window, **r} for r in rows],
                       "spotify")

    def episode_consumption(self, episode_id: int) -> pd.DataFrame:
        ep = self._episode("episode_consumption", "getEpisodeConsumptionAllTime", episode_id,
                           required=[("consumptionAllTime",)])
        v = P.leaf(ep, ["consumptionAllTime"], "episode_consumption")
        return P.frame("episode_consumption", [{
            "episode_id": int(episode_id), "consumption_hours": v.get("totalConsumptionHours"),
            "foreground_fraction": v.get("foregroundConsumptionPercent"),
            "ms_played": v.get("totalMsPlayed"), "foreground_ms_played": v.get(
                "foregroundMsPlayed")}], "spotify")

    def episode_consumption_daily(self, episode_id: int, start: date | datetime,
                                  end: date | datetime) -> pd.DataFrame:
        """Per UTC day of the window: getEpisodeConsumption's episodeConsumptionDaily."""
        ep = self._episode("episode_consumption_daily", "getEpisodeConsumption", episode_id,
                           custom_range(start, end), required=[("episodeConsumptionDaily",)])
        return P.frame("episode_consumption_daily", [
            {"episode_id": int(episode_id), "date": d, **row}
            for d, row in P.consumption_series(ep, ["episodeConsumptionDaily"],
                                               "episode_consumption_daily")], "spotify")

    def episode_audience(self, episode_id: int) -> pd.DataFrame:
        ep = self._episode("episode_audience", "getEpisodeAudienceSizeAllTime", episode_id,
                           required=[("audienceSizeAllTime",)])
        v = P.leaf(ep, ["audienceSizeAllTime"], "episode_audience")
        return P.frame("episode_audience", [{
            "episode_id": int(episode_id), "audience_size": v.get("totalAudienceSize"),
            "foreground_audience_size": v.get("foregroundAudienceSize"),
            "foreground_fraction": v.get("foregroundAudiencePercent")}], "spotify")


# ---------------------------------------------------------------------- helpers
def _null_at(data: Mapping[str, Any], path: Sequence[str]) -> bool:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping):
            return False  # a shape problem, reported by the parser with the path
        node = node.get(key)
        if node is None:
            return True
    return False


def _error_summary(env: Any) -> str:
    errors = env.get("errors") if isinstance(env, Mapping) else None
    if not isinstance(errors, list) or not errors:
        return "no error given"
    parts = []
    for e in errors[:3]:
        if isinstance(e, Mapping):
            ext = e.get("extensions") if isinstance(e.get("extensions"), Mapping) else {}
            path = ".".join(str(p) for p in e.get("path") or [])
            parts.append(f"{ext.get('classification') or 'error'} at {path or '?'}: "
                         f"{str(e.get('message'))[:80]}")
    return "; ".join(parts) or json.dumps(errors)[:200]


def _show_list(shows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{s.get('name')!s} = {s.get('uri')!s}" for s in shows[:10]) or "none"
