"""The warehouse contract: one table per endpoint, its columns and DuckDB types.

Each client method returns a DataFrame whose columns include the ``columns`` named
here (extra, unknown columns may follow and are reported as schema drift). The
warehouse adds the key columns (``show_id``, ``partition_date``, ``fetched_at``)
in front. Shares (``fraction``) are in [0, 1] (DOUBLE; episode_aggregated_performance
keeps Spotify's 0-100 percent); counts are BIGINT;
times are TIMESTAMPTZ in UTC; days are DATE.

``kind`` decides how a partition is filled:
- ``ranged``: the API answers for a time window; rows carry their own ``date`` and
  land in that day's partition (one request may cover many days).
- ``per_day``: the API answers one aggregate per window (percent breakdowns), so
  each day is one request.
- ``snapshot``: the API only knows current values; the asset is unpartitioned and each
  run stores its snapshot under the UTC day it was taken (``partition_date`` is the date
  of ``as_of``), so the table keeps one snapshot per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["ranged", "per_day", "snapshot"]

KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("show_id", "VARCHAR"),
    ("partition_date", "DATE"),
    ("fetched_at", "TIMESTAMPTZ"),
)


# What the columns that recur across tables mean, shown in the Dagster UI's column schema.
COLUMN_DOCS: dict[str, str] = {
    "show_id": "The show: Anchor web station id (GraphQL backend: ANCHOR_WEBSTATION_ID if set, "
               "else the Spotify show id) or OP3 show uuid.",
    "partition_date": "The UTC day (Dagster partition) this row belongs to.",
    "fetched_at": "When the pipeline fetched it (UTC).",
    "as_of": "When the snapshot was taken (UTC); the API only knows current values.",
    "computed_at": "When OP3 computed these numbers (its 'asof'; UTC), which can be before "
                   "the snapshot was taken (as_of).",
    "date": "The UTC day the API counted this in.",
    "time": "When it happened (UTC).",
    "plays": "Plays. Spotify-only or all platforms depends on the table and backend: see the "
             "table's description (since 2026-06-11 a Spotify play is 30 s+ listened).",
    "fraction": "Share between 0 and 1 (the API's 'percent' as a fraction).",
    "episode_id": "Anchor: numeric episode id; OP3: SHA-256 of the feed item's guid.",
    "downloads": "Downloads counted by OP3.",
    "audience_id": "OP3's per-day listener hash: count distinct within one UTC day only.",
    "hashed_ip_address": "Listener IP hashed with a key that rotates daily.",
    "backend": "Which Spotify for Creators backend filled the row: 'rest' (cookie anchorpw_s) "
               "or 'graphql' (cookies sp_dc/sp_key). Where the two differ in meaning the "
               "table's description says how; filter on it before comparing across time.",
    "episode_uri": "Spotify episode URI (spotify:episode:…).",
    "starts": "Spotify-only starts (plays counted on start, the pre-2026-06-11 play).",
    "plays_and_downloads": "All platforms: Spotify plays (30 s+ since 2026-06-11) plus downloads "
                           "elsewhere; the dashboard's headline.",
    "streams_and_downloads": "All platforms: Spotify streams (60 s+) plus downloads elsewhere; "
                             "the dashboard's headline before 2026-06-11.",
    "audience": "People who listened (Spotify's audience count for the window).",
    "source": "Where the show or episode was shown: SEARCH, HOME, LIBRARY or OTHER.",
    "impressions": "Times shown to people on Spotify.",
    "audience_size": "Listeners (Spotify's audience size).",
    "follow_rate": "Share of the audience that follows the show (0-1).",
    "consumption_hours_per_person": "Hours listened per listener in the window.",
    "reached": "Discovery funnel: people the show was shown to.",
    "interested": "Discovery funnel: people who looked at it (opened the show or an episode).",
    "consumed": "Discovery funnel: people who listened.",
    "consumption_hours": "Hours listened: all time in spotify.episode_consumption, that UTC day "
                         "in spotify.episode_consumption_daily.",
    "foreground_fraction": "Share (0-1) listened with the app in the foreground.",
    "ms_played": "Milliseconds listened (all time, or that day in the daily table).",
    "episode_count": "How many items of the show's episode list were summed for the day.",
    "foreground_ms_played": "Milliseconds listened with the app in the foreground.",
    "foreground_audience_size": "Listeners who listened with the app in the foreground.",
    "age_range": "Listener age bracket (0-17 … 60+), as Spotify reports it.",
    "gender": "Listener gender as Spotify labels it.",
    "level": "country, region or city.",
    "country": "The country: its name in anchor.*, its navigation code (e.g. DE) in spotify.geo.",
    "region": "spotify.geo: the parent region's navigation code, for cities.",
    "name": "The name as the dashboard shows it.",
    "navigation_name": "The code Spotify uses to drill down (a country's is its ISO code).",
    "rank": "1 = the most played.",
    "title": "The episode's title (drafts may have none).",
    "show_uri": "Spotify show URI (spotify:show:…).",
    "hosting_provider": "S4P = hosted on Spotify for Creators (full analytics); MEGAPHONE, "
                        "OTHER_THIRD_PARTY = hosted elsewhere.",
    "author_name": "The show's author as listed on Spotify.",
    "category": "The show's category on Spotify.",
    "is_selected": "True for the show this pipeline reads.",
    "window_name": "The API's named rolling window (e.g. WINDOW_LAST_THIRTY_DAYS), ending on the "
              "snapshot day; its time zone and exact edges are not documented.",
}


# The value contract beyond the type (enforced by completeness.py): BIGINT and DOUBLE
# columns hold counts, ids, durations or shares, so they are never negative, except the
# columns named here; fraction columns lie in [0, 1]; every number is finite.
SIGNED_COLUMNS = frozenset({"hour_offset"})  # minus the creator's UTC offset, in hours
FRACTION_COLUMNS = frozenset({"fraction", "foreground_fraction"})


@dataclass(frozen=True)
class Table:
    schema: str  # "anchor" | "spotify" | "op3"
    name: str  # table name == asset name == client method name
    kind: Kind
    columns: tuple[tuple[str, str], ...]
    description: str
    headline: str | None = None  # numeric column summed per day into UI metadata
    episode_level: bool = False  # one call per episode of the show
    # anchor.*: the warehouse adds a ``backend`` column ('rest' | 'graphql'), stamped by the
    # asset from the client that fetched the rows (clients do not return it).
    has_backend: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return KEY_COLUMNS + self.columns


def _t(schema: str, name: str, kind: Kind, cols: str, description: str, **kw: object) -> Table:
    columns = tuple(
        (c.split()[0], " ".join(c.split()[1:])) for c in cols.split(",") if c.strip()
    )
    return Table(schema, name, kind, columns, description, **kw)  # type: ignore[arg-type]


_ANCHOR_TABLES: tuple[Table, ...] = (
    _t("anchor", "episodes", "snapshot",
       "episode_id BIGINT, web_episode_id VARCHAR, title VARCHAR, publish_on TIMESTAMPTZ,"
       "created_at TIMESTAMPTZ, duration_ms BIGINT, total_plays BIGINT, share_link_path VARCHAR,"
       "download_url VARCHAR, ad_count BIGINT, is_trailer BOOLEAN, is_video_episode BOOLEAN,"
       "spotify_episode_uri VARCHAR, spotify_show_uri VARCHAR",
       "Every episode of the show as listed on Spotify for Creators today (title, publish time, "
       "duration, lifetime plays). Drafts may have no title or publish time.",
       headline="total_plays"),
    _t("anchor", "total_plays", "snapshot", "plays BIGINT",
       "Lifetime plays of the whole show, as of the day the snapshot was taken.",
       headline="plays"),
    _t("anchor", "total_plays_by_episode", "snapshot",
       "episode_id BIGINT, episode_title VARCHAR, plays BIGINT, publish_time TIMESTAMPTZ,"
       "rank BIGINT, episode_uri VARCHAR",
       "Lifetime streams & downloads per episode with its rank, as of the snapshot day.",
       headline="plays"),
    _t("anchor", "unique_listeners", "snapshot", "unique_listeners BIGINT",
       "Lifetime unique listeners of the show, as of the snapshot day.",
       headline="unique_listeners"),
    _t("anchor", "audience_size", "snapshot", "audience_size BIGINT",
       "Spotify's estimate of the show's audience size, as of the snapshot day.",
       headline="audience_size"),
    _t("anchor", "plays", "ranged", "date DATE, plays BIGINT",
       "Plays of the whole show per UTC day. Spotify restates the last days for up to ~2 "
       "days, so the schedule re-fetches them.", headline="plays"),
    _t("anchor", "plays_by_age_range", "per_day", "age_range VARCHAR, fraction DOUBLE",
       "Share of the day's plays per listener age range (fractions summing to 1; empty "
       "when Spotify has too few plays to report)."),
    _t("anchor", "plays_by_app", "per_day", "app VARCHAR, fraction DOUBLE",
       "Share of the day's plays per listening app (Spotify, Apple Podcasts, …) as fractions."),
    _t("anchor", "plays_by_device", "per_day", "device VARCHAR, fraction DOUBLE",
       "Share of the day's plays per device (iPhone, Android, …) as fractions."),
    _t("anchor", "plays_by_episode", "ranged",
       "date DATE, episode_title VARCHAR, plays BIGINT",
       "Plays per episode per UTC day (Spotify reports the top episodes of each day).",
       headline="plays"),
    _t("anchor", "plays_by_gender", "per_day", "gender VARCHAR, fraction DOUBLE",
       "Share of the day's plays per listener gender as fractions."),
    _t("anchor", "plays_by_geo", "snapshot", "geo VARCHAR, fraction DOUBLE",
       "All-time share of plays per country (fractions; Spotify rounds values ≥ 0.01 to two "
       "decimals), as of the snapshot day."),
    _t("anchor", "plays_by_geo_city", "snapshot",
       "country VARCHAR, geo VARCHAR, fraction DOUBLE",
       "All-time share of plays per region/city within each of the show's top countries, as "
       "of the snapshot day."),
    _t("anchor", "impressions", "ranged", "date DATE, impressions BIGINT",
       "How often the show was shown to people on Spotify, per UTC day.",
       headline="impressions"),
    _t("anchor", "episode_plays", "ranged", "episode_id BIGINT, date DATE, plays BIGINT",
       "Plays per episode per UTC day, for every episode of the show.",
       headline="plays", episode_level=True),
    _t("anchor", "episode_performance", "snapshot",
       "episode_id BIGINT, sample_second BIGINT, listeners BIGINT",
       "Audience retention: listeners still playing at each second of each episode, as of "
       "the snapshot day.", episode_level=True),
    _t("anchor", "episode_aggregated_performance", "snapshot",
       "episode_id BIGINT, metric VARCHAR, value DOUBLE",
       "Per episode, one row per metric: percentile25/50/75/100 are the percent (0-100, as "
       "Spotify reports them) of listeners still listening at that point of the episode; "
       "averageListenSeconds is seconds (null when Spotify has none). As of the snapshot day.", episode_level=True),
    _t("anchor", "episode_metadata", "snapshot",
       "episode_id BIGINT, web_episode_id VARCHAR, title VARCHAR, description VARCHAR,"
       "is_published BOOLEAN, is_deleted BOOLEAN, publish_on TIMESTAMPTZ, created_at TIMESTAMPTZ,"
       "total_duration BIGINT, hour_offset BIGINT, spotify_url VARCHAR, audio_url VARCHAR,"
       "share_link_path VARCHAR",
       "Each episode's overview (description, publish state, audio URL), as of the snapshot "
       "day.", episode_level=True),
)

# The REST backend's meaning first; "GraphQL:" says what the other backend fills in.
GRAPHQL_NOTES: dict[str, str] = {
    "episodes": "GraphQL: total_plays is Spotify-only starts (analyticsStartsV2); "
                "web_episode_id, share_link_path and ad_count are not in GraphQL (null); "
                "episodes not hosted on Spotify for Creators have no episode_id and are left out.",
    "total_plays": "GraphQL: all-platform streams + downloads, all time "
                   "(getShowAllPlatformsStatsNRT), not Spotify-only plays.",
    "total_plays_by_episode": "GraphQL: all-time plays per episode from getShowTopEpisodes "
                              "(Spotify-only, ranked); publish_time from the episode list.",
    "unique_listeners": "GraphQL: has no separate count; this is the discovery audience size "
                        "(all time), the same number as audience_size.",
    "audience_size": "GraphQL: getShowAudienceDiscoveryStats audienceSize, all time.",
    "plays": "GraphQL: Spotify-only plays (getShowOnSpotifyStats). Since 2026-06-11 Spotify "
             "counts a play after 30 s listened (before: on start), so days before and after "
             "that date are not comparable.",
    "plays_by_age_range": "GraphQL: bracket count ÷ total (getShowPlaysByAge); 60-150 is "
                          "stored as 60+; absolute counts are in spotify.demographics.",
    "plays_by_app": "GraphQL: all platforms (getShowPlaysAndDownloadsPlatformsStats).",
    "plays_by_device": "GraphQL: all platforms (getShowPlaysAndDownloadsPlatformsStats).",
    "plays_by_episode": "GraphQL: has no such call; built from each episode's daily "
                        "Spotify-only plays, the top 5 per day as REST reports them.",
    "plays_by_gender": "GraphQL: the percent of getShowPlaysByGender.",
    "plays_by_geo": "GraphQL: all-platform plays + downloads by country, all time "
                    "(getShowPlaysAndDownloadsByGeo GEO_COUNTRY).",
    "plays_by_geo_city": "GraphQL: regions (GEO_REGION) of the top countries, all platforms; "
                         "cities are in spotify.geo.",
    "impressions": "GraphQL: getShowImpressionsTrendStats impressionsDaily.",
    "episode_plays": "GraphQL: Spotify-only plays per day (getEpisodePlaysDaily), with the "
                     "2026-06-11 play redefinition; all-platform counts are in "
                     "spotify.episode_daily_totals.",
    "episode_performance": "GraphQL: getEpisodePerformanceAllTime points.",
    "episode_aggregated_performance": "GraphQL: percentile25..100 are audiencePercentage "
                                      "(0-100) and there is no average: the metric "
                                      "medianCompletionSeconds takes the place of "
                                      "averageListenSeconds.",
    "episode_metadata": "GraphQL: the legacy overview (api-v5.anchor.fm) with the bearer.",
}


def _with_backend(t: Table) -> Table:
    note = GRAPHQL_NOTES.get(t.name)
    return Table(t.schema, t.name, t.kind, t.columns,
                 t.description + (f" {note}" if note else ""), t.headline, t.episode_level,
                 has_backend=True)


ANCHOR_TABLES: tuple[Table, ...] = tuple(_with_backend(t) for t in _ANCHOR_TABLES)

SPOTIFY_TABLES: tuple[Table, ...] = (
    _t("spotify", "shows", "snapshot",
       "show_uri VARCHAR, name VARCHAR, hosting_provider VARCHAR, author_name VARCHAR,"
       "category VARCHAR, is_selected BOOLEAN",
       "Every show the Spotify account can see (getShowsForUser). hosting_provider S4P means "
       "hosted on Spotify for Creators, with full analytics; is_selected marks the show the "
       "pipeline reads (SPOTIFY_SHOW_URI, else the only or first hosted one)."),
    _t("spotify", "episode_daily_totals", "per_day",
       "episode_id BIGINT, episode_uri VARCHAR, starts BIGINT, plays_and_downloads BIGINT,"
       "streams_and_downloads BIGINT, audience BIGINT",
       "Per episode and UTC day: Spotify-only starts, and across all platforms plays + "
       "downloads (the dashboard's headline since 2026-06-11) and streams + downloads (the "
       "older headline; a stream is 60 s+), plus the day's audience. The show's daily totals "
       "are the sums over episodes (spotify.show_daily_totals). From the episode list with a "
       "one-day custom window.", headline="plays_and_downloads"),
    _t("spotify", "show_daily_totals", "per_day",
       "plays_and_downloads BIGINT, streams_and_downloads BIGINT, starts BIGINT,"
       "episode_count BIGINT",
       "The whole show per UTC day, all platforms: plays + downloads (the dashboard's headline "
       "since 2026-06-11) and streams + downloads (a stream is 60 s+), beside Spotify-only "
       "starts. No persisted query gives the show's all-platform daily series, so each day is "
       "the sum over every item of the episode list asked with that one-day window (Spotify's "
       "own show total equals that sum within 0.01 % as measured; episodes deleted from the "
       "list are not counted).", headline="plays_and_downloads"),
    _t("spotify", "audience_size_daily", "ranged", "date DATE, audience_size BIGINT",
       "Spotify's audience size of the show per UTC day (getShowOnSpotifyStats with "
       "includeAudienceSize; Spotify only). Not documented: whether a day's value counts that "
       "day's listeners or a running total, so do not sum it across days.",
       headline="audience_size"),
    _t("spotify", "impressions_by_source", "per_day", "source VARCHAR, impressions BIGINT",
       "How often the show was shown on Spotify per UTC day, by where (SEARCH, HOME, "
       "LIBRARY, OTHER).", headline="impressions"),
    _t("spotify", "episode_impressions_by_source", "snapshot",
       "episode_id BIGINT, window_name VARCHAR, source VARCHAR, impressions BIGINT",
       "Impressions per episode by source over the last 30 days as of the snapshot day. "
       "There is no daily series per episode: getEpisodeImpressionsFaceted answers only a "
       "window total, and the daily impressions exist for the whole show only "
       "(anchor.impressions, spotify.impressions_by_source).", headline="impressions",
       episode_level=True),
    _t("spotify", "discovery", "snapshot",
       "window_name VARCHAR, audience_size BIGINT, follow_rate DOUBLE,"
       "consumption_hours_per_person DOUBLE, reached BIGINT, interested BIGINT, consumed BIGINT",
       "The discovery funnel (people reached → interested → consumed), follow rate (fraction) "
       "and hours per person, for the last 7, 30 and 90 days as of the snapshot day. The API "
       "refuses custom date ranges for these, so only rolling windows exist."),
    _t("spotify", "episode_consumption", "snapshot",
       "episode_id BIGINT, consumption_hours DOUBLE, foreground_fraction DOUBLE,"
       "ms_played BIGINT, foreground_ms_played BIGINT",
       "Per episode, all time as of the snapshot day: hours listened, and the share listened "
       "in the foreground. Per day: spotify.episode_consumption_daily.", episode_level=True),
    _t("spotify", "episode_consumption_daily", "ranged",
       "episode_id BIGINT, date DATE, consumption_hours DOUBLE, foreground_fraction DOUBLE,"
       "ms_played BIGINT, foreground_ms_played BIGINT",
       "Per episode and UTC day: hours and milliseconds listened, and the share in the "
       "foreground (getEpisodeConsumption, episodeConsumptionDaily). The shape of a day's "
       "value is not recorded anywhere; it is read as the all-time ConsumptionValue and an "
       "answer of another shape fails instead of being stored.", episode_level=True),
    _t("spotify", "episode_audience", "snapshot",
       "episode_id BIGINT, audience_size BIGINT, foreground_audience_size BIGINT,"
       "foreground_fraction DOUBLE",
       "Per episode, all time as of the snapshot day: listeners, and those who listened in "
       "the foreground. The API has no per-day audience per episode "
       "(getEpisodeAudienceSizeAllTime only); the show's is in spotify.audience_size_daily.",
       headline="audience_size", episode_level=True),
    _t("spotify", "demographics", "per_day",
       "age_range VARCHAR, gender VARCHAR, plays BIGINT, fraction DOUBLE",
       "Plays per UTC day by listener age range × gender, as absolute counts (Spotify-only; "
       "fraction = plays ÷ the day's total).", headline="plays"),
    _t("spotify", "geo", "snapshot",
       "level VARCHAR, country VARCHAR, region VARCHAR, name VARCHAR, navigation_name VARCHAR,"
       "fraction DOUBLE",
       "All-time share of plays + downloads (all platforms) by country, by region within the "
       "top countries, and by city within their top regions (level country/region/city; "
       "country and region hold the parent's navigation_name), from "
       "getShowPlaysAndDownloadsByGeo. When Spotify nulls a region or city answer "
       "(DataFetchingException) it is asked again, then the snapshot fails and stores nothing: "
       "never a 0 or a partial map. getShowPlaysByGeo (Spotify-only) is not called: its "
       "variables and answer are not documented."),
    _t("spotify", "top_episodes", "snapshot",
       "rank BIGINT, episode_uri VARCHAR, title VARCHAR, plays BIGINT",
       "The show's episodes ranked by all-time plays (getShowTopEpisodes), as of the snapshot "
       "day.", headline="plays"),
)

OP3_TABLES: tuple[Table, ...] = (
    _t("op3", "downloads", "ranged",
       "time TIMESTAMPTZ, date DATE, url VARCHAR, audience_id VARCHAR, show_uuid VARCHAR,"
       "episode_id VARCHAR, hashed_ip_address VARCHAR, agent_type VARCHAR, agent_name VARCHAR,"
       "device_type VARCHAR, device_name VARCHAR, referrer_type VARCHAR, referrer_name VARCHAR,"
       "bot_type VARCHAR, country_code VARCHAR, continent_code VARCHAR, region_code VARCHAR,"
       "region_name VARCHAR, timezone VARCHAR, metro_code VARCHAR",
       "One row per download of the show counted by OP3 (IAB-style, deduplicated per UTC "
       "day, bots excluded).", headline="downloads"),
    _t("op3", "redirect_logs", "ranged",
       "time TIMESTAMPTZ, date DATE, uuid VARCHAR, hashed_ip_address VARCHAR, method VARCHAR,"
       "url VARCHAR, user_agent VARCHAR, referer VARCHAR, range VARCHAR, xps_id VARCHAR,"
       "ulid VARCHAR, edge_colo VARCHAR, continent VARCHAR, country VARCHAR, timezone VARCHAR,"
       "region_code VARCHAR, region VARCHAR, metro_code VARCHAR",
       "Every raw request OP3 redirected for the show's prefix URLs (before download "
       "deduplication).", headline="hits"),
    _t("op3", "show", "snapshot",
       "show_uuid VARCHAR, show_title VARCHAR, podcast_guid VARCHAR, stats_page_url VARCHAR,"
       "episode_id VARCHAR, episode_title VARCHAR, pubdate TIMESTAMPTZ, item_guid VARCHAR",
       "The show as OP3 knows it, one row per episode, as of the snapshot day."),
    _t("op3", "recent_episodes_with_transcripts", "snapshot",
       "computed_at TIMESTAMPTZ, pubdate TIMESTAMPTZ, podcast_guid VARCHAR, episode_item_guid VARCHAR,"
       "has_transcripts BOOLEAN, date DATE, downloads BIGINT",
       "OP3-wide list of recent episodes that ship transcripts, with their daily downloads."),
    _t("op3", "top_apps_for_show", "snapshot",
       "show_uuid VARCHAR, app VARCHAR, downloads BIGINT, rank BIGINT",
       "Downloads per app for the show over the current and previous two calendar months.",
       headline="downloads"),
    _t("op3", "top_apps", "snapshot",
       "app VARCHAR, fraction DOUBLE, min_date DATE, max_date DATE, device_name VARCHAR",
       "OP3-wide share of downloads per app over the last 30 days (fractions)."),
    _t("op3", "show_download_counts", "snapshot",
       "show_uuid VARCHAR, computed_at TIMESTAMPTZ, days VARCHAR, monthly_downloads BIGINT,"
       "weekly_downloads BIGINT[], weekly_avg_downloads BIGINT, num_weeks BIGINT",
       "The show's downloads over the last 30 days and per week, as OP3 computes them daily.",
       headline="monthly_downloads"),
)

ALL_TABLES: tuple[Table, ...] = ANCHOR_TABLES + SPOTIFY_TABLES + OP3_TABLES
TABLES_BY_KEY: dict[str, Table] = {t.qualified: t for t in ALL_TABLES}
