"""Plain-Python client of the Spotify for Creators (Anchor) analytics API.

One public method per warehouse table (see :mod:`podcast_pipeline.tables`), each
returning the contract DataFrame. Time ranges are UTC days, both ends inclusive.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pandas as pd

from podcast_pipeline.anchor.parse import parse_analytics, validate_envelope
from podcast_pipeline.contract import conform, snake_keys, table
from podcast_pipeline.errors import MalformedResponse
from podcast_pipeline.http import (
    MAX_EPISODES_ENV,
    ApiSession,
    CallStats,
    ClientBase,
    CredentialVerdict,
    Recorder,
    RetryPolicy,
    paginate,
)
from podcast_pipeline.settings import AnchorSettings
from podcast_pipeline.timeutil import as_utc_date, as_utc_datetime, epoch, from_epoch, utc_now

log = logging.getLogger(__name__)

DAILY = 86400
IMPRESSIONS_DAYS = 29
IMPRESSIONS_LAG = timedelta(days=2)

EPISODE_FIELDS = {
    "episodeId": "episode_id", "webEpisodeId": "web_episode_id", "title": "title",
    "publishOnUnixTimestamp": "publish_on", "createdUnixTimestamp": "created_at",
    "duration": "duration_ms", "totalPlays": "total_plays", "shareLinkPath": "share_link_path",
    "downloadUrl": "download_url", "adCount": "ad_count", "isTrailer": "is_trailer",
    "isVideoEpisode": "is_video_episode", "spotifyEpisodeUri": "spotify_episode_uri",
    "spotifyShowUri": "spotify_show_uri",
}
OVERVIEW_FIELDS = {
    "webEpisodeId": "web_episode_id", "title": "title", "description": "description",
    "isPublished": "is_published", "isDeleted": "is_deleted",
    "publishOnUnixTimestamp": "publish_on", "createdUnixTimestamp": "created_at",
    "totalDuration": "total_duration", "hourOffset": "hour_offset", "spotifyUrl": "spotify_url",
    "shareLinkPath": "share_link_path",
}
# ISO twins of the unix fields and the audio list, consumed into contract columns.
OVERVIEW_CONSUMED = ("publishOn", "created", "episodeAudios", "episodeId")


def _range(start: date | datetime, end: date | datetime) -> tuple[date, date]:
    s, e = as_utc_date(start), as_utc_date(end)
    if s > e:
        raise ValueError(f"start {s} is after end {e}")
    return s, e


def _validate_page(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return "the body has no 'items' list"
    return None


def _validate_object(body: Any) -> str | None:
    return None if isinstance(body, dict) else f"expected a JSON object, got {type(body).__name__}"


class AnchorClient(ClientBase):
    """Spotify for Creators analytics for one show (web station id + ``anchorpw_s`` cookie)."""

    api = "anchor"
    backend = "rest"

    def __init__(self, settings: AnchorSettings, *, retry: RetryPolicy | None = None,
                 recorder: Recorder | None = None, stats: CallStats | None = None,
                 verdict: CredentialVerdict | None = None) -> None:
        self.settings = settings
        self.session = ApiSession(
            "anchor", settings.base_url,
            # Exactly as the browser sends it, and like the browser only to the API's host.
            credential={"Cookie": f"anchorpw_s={settings.cookie}"},
            retry=retry, recorder=recorder, stats=stats, verdict=verdict,
        )
        self._station_id: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, **kw: Any) -> AnchorClient:
        return cls(AnchorSettings.from_env(), **kw)

    def show_id(self) -> str:
        """The warehouse's key for the show (the GraphQL client uses the same one if set)."""
        return self.settings.webstation_id

    # ------------------------------------------------------------------ plumbing
    def _json(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None,
              validate: Any = validate_envelope, covers: tuple[date, date] | None = None,
              owner: tuple[str, int] | None = None) -> Any:
        """``owner`` (``("stationId", S)`` or ``("episodeId", E)``): the envelope, when it
        names one, must name what was asked for; an answer about another show or episode
        must not replace this one's rows."""
        # Without isMumsCompatible, accounts with delegated access get 403.
        query = {**(params or {}), "isMumsCompatible": "true"}

        def check(body: Any) -> str | None:
            problem = validate(body)
            if problem is None and owner is not None and isinstance(body, dict):
                key, want = owner
                got = body.get(key)
                if got is not None and str(got) != str(want):
                    return f"the answer is for {key} {str(got)[:20]}, not {want}"
            return problem
        return self.session.get_json(endpoint, path, query, validate=check, covers=covers)

    def station_id(self) -> int:
        """The numeric station id, bootstrapped once from the legacy episodePage form."""
        with self._lock:
            if self._station_id is None:
                body = self._json("station_id", self._episode_page_path(), {"limit": 1},
                                  validate=_validate_station)
                self._station_id = int(body["stationId"])
            return self._station_id

    def _episode_page_path(self) -> str:
        return f"/stations/webStationId:{self.settings.webstation_id}/episodePage"

    def _station(self, endpoint: str, suffix: str, params: Mapping[str, Any] | None = None,
                 lead: Mapping[str, Any] | None = None) -> pd.DataFrame:
        sid = self.station_id()
        body = self._json(endpoint, f"/analytics/station/{sid}{suffix}", params,
                          covers=_covers(params), owner=("stationId", sid))
        return parse_analytics(body, endpoint, lead)

    @staticmethod
    def _range_params(start: date | datetime, end: date | datetime,
                      interval: bool = False) -> dict[str, Any]:
        s, e = _range(start, end)
        # The end bucket is included by the API: end=D is D's UTC-midnight epoch.
        params: dict[str, Any] = {"timeRangeStart": epoch(s), "timeRangeEnd": epoch(e)}
        if interval:
            params["timeInterval"] = DAILY
        return params

    # ------------------------------------------------------------------ snapshots
    def episodes(self, limit: int = 50) -> pd.DataFrame:
        """Every episode (follows ``next``); drafts may lack title / publish time."""
        items: list[dict[str, Any]] = []
        ids: set[Any] = set()

        def page(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            params: dict[str, Any] = {"limit": limit, "orderBy": "publishOn"}
            if token is not None:
                params["pageToken"] = token
            body = self._json("episodes", self._episode_page_path(), params,
                              validate=_validate_page)
            if self._station_id is None and isinstance(body.get("stationId"), int):
                self._station_id = body["stationId"]
            new = 0
            for n, item in enumerate(body["items"]):
                if not isinstance(item, dict) or item.get("episodeId") is None:
                    raise MalformedResponse("anchor", "episodes", f"item {n} has no episodeId")
                new += item["episodeId"] not in ids
                ids.add(item["episodeId"])
            nxt = body.get("next")
            if not nxt:
                return body["items"], None
            if not isinstance(nxt, str) or "pageToken=" not in nxt:
                raise MalformedResponse("anchor", "episodes", f"'next' has no pageToken: "
                                        f"{str(nxt)[:80]!r}")
            if not new:
                raise MalformedResponse("anchor", "episodes", "a page listed no episode that "
                                        "was not listed before, yet 'next' goes on; stopping "
                                        "instead of looping")
            return body["items"], unquote(nxt.split("pageToken=", 1)[1].split("&", 1)[0])

        most = self.session.limits.max_episodes
        for found in paginate("anchor", "episodes", page, max_pages=math.ceil(most / limit) + 1,
                              why=f"more than {most} episodes at {limit} a page; raise "
                                  f"{MAX_EPISODES_ENV} if the show really has more"):
            items.extend(found)
        df, extras = snake_keys(items, EPISODE_FIELDS)
        if len(df):
            dupes = df["episode_id"].duplicated()
            if dupes.any():  # an episode published mid-pagination shifts pages
                log.warning("anchor episodes: dropping %d duplicate episode ids", dupes.sum())
                df = df[~dupes]
        return conform(df, table("anchor", "episodes"), "episodes", extras)

    def total_plays(self) -> pd.DataFrame:
        return self._station("total_plays", "/totalPlays")

    def total_plays_by_episode(self) -> pd.DataFrame:
        return self._station("total_plays_by_episode", "/totalPlaysByEpisode")

    def unique_listeners(self) -> pd.DataFrame:
        return self._station("unique_listeners", "/uniqueListeners")

    def audience_size(self) -> pd.DataFrame:
        return self._station("audience_size", "/audienceSize")

    def plays_by_geo(self, limit: int = 200) -> pd.DataFrame:
        """All-time share of plays per country (the API takes no time range)."""
        return self._station("plays_by_geo", "/playsByGeo", {"limit": limit, "resultGeo": "geo2"})

    def plays_by_geo_city(self, country: str | None = None, limit: int = 200, *,
                          top_countries: int = 5) -> pd.DataFrame:
        """Regions/cities of ``country``, or of each of the top countries by plays."""
        if country is None:
            countries = [c for c in self.plays_by_geo()["geo"].head(top_countries)
                         if isinstance(c, str)]
        else:
            countries = [country]
        frames = [
            self._station("plays_by_geo_city", "/playsByGeo",
                          {"limit": limit, "resultGeo": "geo3", "geo2": c}, lead={"country": c})
            for c in countries
        ]
        if not frames:
            return conform(pd.DataFrame(), table("anchor", "plays_by_geo_city"),
                           "plays_by_geo_city")
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ ranged
    def plays(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._station("plays", "/plays", self._range_params(start, end, interval=True))

    def plays_by_age_range(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._station("plays_by_age_range", "/playsByAgeRange",
                             self._range_params(start, end))

    def plays_by_app(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._station("plays_by_app", "/playsByApp", self._range_params(start, end))

    def plays_by_device(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._station("plays_by_device", "/playsByDevice", self._range_params(start, end))

    def plays_by_gender(self, start: date | datetime, end: date | datetime) -> pd.DataFrame:
        return self._station("plays_by_gender", "/playsByGender", self._range_params(start, end))

    def plays_by_episode(self, start: date | datetime, end: date | datetime,
                         limit: int | None = None) -> pd.DataFrame:
        params = self._range_params(start, end, interval=True)
        if limit is not None:
            params["limit"] = limit
        return self._station("plays_by_episode", "/playsByEpisode", params)

    def impressions(self, start: date | datetime | None = None,
                    end: date | datetime | None = None) -> pd.DataFrame:
        """Daily impressions. Default window: 29 days ending now − 2 days (hour-rounded)."""
        t0, t1 = _impressions_window(start, end)
        window = {"version": "1.0", "startTime": float(t0), "endTime": float(t1)}
        include = ["impressions", "dailyImpressions", "impressionsBySource"]
        query = {"include": include, "options": {k: window for k in include}}
        encoded = base64.b64encode(json.dumps(query, separators=(",", ":")).encode()).decode()
        # Whole UTC days (the asset's case) are what the answer is complete for.
        covers = (start, end) if type(start) is date and type(end) is date else None
        sid = self.station_id()
        body = self._json("impressions", f"/analytics/station/{sid}", {"query": encoded},
                          validate=_validate_impressions, covers=covers, owner=("stationId", sid))
        counts = _daily_impressions(body) or []
        rows = []
        for n, c in enumerate(counts):
            if not isinstance(c, dict) or "count" not in c or "date" not in c:
                raise MalformedResponse("anchor", "impressions",
                                        f"dailyImpressions.counts[{n}] lacks date/count")
            day = _impressions_date(c["date"])
            if covers and day == covers[1] + timedelta(days=1):
                # endTime is the next UTC midnight; a server that reads it inclusively
                # answers for that day too. It was not asked for: leave it out.
                continue
            rows.append({**c, "date": day, "impressions": c["count"]})
        df, extras = snake_keys(rows, {"date": "date", "impressions": "impressions"},
                                skip=("count",))
        return conform(df, table("anchor", "impressions"), "impressions", extras)

    # ------------------------------------------------------------------ per episode
    def episode_plays(self, episode_id: int, start: date | datetime,
                      end: date | datetime) -> pd.DataFrame:
        params = self._range_params(start, end, interval=True)
        body = self._json("episode_plays", f"/analytics/episode/{int(episode_id)}/plays",
                          params, covers=_covers(params), owner=("episodeId", int(episode_id)))
        return parse_analytics(body, "episode_plays", {"episode_id": int(episode_id)})

    def episode_performance(self, episode_id: int) -> pd.DataFrame:
        body = self._json("episode_performance",
                          f"/analytics/episode/{int(episode_id)}/performance",
                          owner=("episodeId", int(episode_id)))
        return parse_analytics(body, "episode_performance", {"episode_id": int(episode_id)})

    def episode_aggregated_performance(self, episode_id: int) -> pd.DataFrame:
        body = self._json("episode_aggregated_performance",
                          f"/analytics/episode/{int(episode_id)}/aggregatedPerformance",
                          owner=("episodeId", int(episode_id)))
        return parse_analytics(body, "episode_aggregated_performance",
                               {"episode_id": int(episode_id)})

    def episode_metadata(self, episode_id: int) -> pd.DataFrame:
        """The episode's overview as one row."""
        body = self._json("episode_metadata", f"/episodes/{int(episode_id)}/overview",
                          {"returnWebIds": "true"}, validate=_validate_object)
        return overview_frame(int(episode_id), body)


def overview_frame(episode_id: int, body: Mapping[str, Any]) -> pd.DataFrame:
    """An episode overview body (REST proxy or the legacy host) → anchor.episode_metadata."""
    item = dict(body)
    item.setdefault("publishOnUnixTimestamp", item.get("publishOn"))
    item.setdefault("createdUnixTimestamp", item.get("created"))
    audios = item.get("episodeAudios")
    first = audios[0] if isinstance(audios, list) and audios else None
    df, extras = snake_keys([item], OVERVIEW_FIELDS, skip=OVERVIEW_CONSUMED)
    df.insert(0, "episode_id", [int(episode_id)])
    df["audio_url"] = [first.get("url") if isinstance(first, dict) else None]
    return conform(df, table("anchor", "episode_metadata"), "episode_metadata", extras)


# ---------------------------------------------------------------------- helpers
def _covers(params: Mapping[str, Any] | None) -> tuple[date, date] | None:
    """The UTC days a ranged request's answer is complete for (its inclusive range)."""
    if not params or "timeRangeStart" not in params:
        return None
    return from_epoch(params["timeRangeStart"]).date(), from_epoch(params["timeRangeEnd"]).date()


def _validate_station(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("stationId"), int):
        return "the episodePage body has no integer 'stationId'"
    return None


def _impressions_window(start: date | datetime | None,
                        end: date | datetime | None) -> tuple[int, int]:
    def hour(dt: datetime) -> int:
        return int(dt.replace(minute=0, second=0, microsecond=0).timestamp())

    if end is None:
        t1 = hour(utc_now() - IMPRESSIONS_LAG)
    elif isinstance(end, datetime):
        t1 = hour(as_utc_datetime(end))
    else:  # an inclusive date: the window runs to the next UTC midnight
        t1 = epoch(end + timedelta(days=1))
    if start is None:
        t0 = t1 - IMPRESSIONS_DAYS * DAILY
    else:
        t0 = hour(as_utc_datetime(start))
    if t0 >= t1:
        raise ValueError("impressions: start must be before end")
    return t0, t1


def _daily_impressions(body: Any) -> list[Any] | None:
    """``dailyImpressions.counts`` at the top level or under ``data``/``result`` (unverified)."""
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("data"), body.get("result")):
        daily = holder.get("dailyImpressions") if isinstance(holder, dict) else None
        if isinstance(daily, dict) and isinstance(daily.get("counts"), list):
            return daily["counts"]
    return None


def _validate_impressions(body: Any) -> str | None:
    if _daily_impressions(body) is None:
        return "the body has no 'dailyImpressions.counts' list"
    return None


def _impressions_date(value: Any) -> date:
    """The shape is unverified: accept epoch seconds or ms, or an ISO date/datetime."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return from_epoch(value / 1000 if value > 1e11 else value).date()
        if isinstance(value, str) and "T" in value:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return as_utc_date(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
        if isinstance(value, str):
            return date.fromisoformat(value[:10])
    except ValueError:
        pass
    raise MalformedResponse("anchor", "impressions", f"unreadable date {value!r}")
