"""The analyst layer: SQL models over the raw tables, one DuckDB table each in ``analytics``.

Each model is a SELECT in ``sql/<name>.sql`` plus its declared columns here (name, type,
what it means). Building a model replaces ``analytics.<name>`` in one statement with that
SELECT cast to the declared types, so the table always has exactly the documented schema.
Plain Python: the Dagster assets (``assets.py``), the report and the tests all call
:func:`build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb

from podcast_pipeline import warehouse

SCHEMA = "analytics"
# The network's shows dimension (written by the network/shows asset from the network file);
# created empty here so the models build on a network of one too.
NETWORK_SHOWS_COLUMNS = ("show_id", "name", "spotify_account", "spotify_show_uri",
                         "webstation_id", "op3_show_uuid", "op3_token")
def network_shows_ddl() -> str:
    """network.shows, empty until the network/shows asset fills it: the models join it."""
    columns = ", ".join(f"{c} VARCHAR" for c in NETWORK_SHOWS_COLUMNS)
    return f"CREATE SCHEMA IF NOT EXISTS network; CREATE TABLE IF NOT EXISTS network.shows ({columns})"
SQL_DIR = Path(__file__).with_name("sql")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


def _cols(spec: str) -> tuple[Column, ...]:
    """``name TYPE: description`` per line."""
    out = []
    for line in filter(str.strip, spec.splitlines()):
        head, _, description = line.partition(":")
        name, type_ = head.split(maxsplit=1)
        out.append(Column(name, type_.strip(), description.strip()))
    return tuple(out)


@dataclass(frozen=True)
class Model:
    name: str
    description: str  # one line: the question it answers
    deps: tuple[str, ...]  # qualified tables it reads ("anchor.plays", "analytics.shows")
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @cached_property
    def sql(self) -> str:
        return (SQL_DIR / f"{self.name}.sql").read_text(encoding="utf-8")


_SHOW = "show_id VARCHAR: The show: its Spotify for Creators (Anchor) station id, else its OP3 show uuid."
_SHOW_LINE = _SHOW + "\n"

EPISODE_MAP = Model(
    "episode_map",
    "Which Spotify for Creators episode is which OP3 episode, and by which rule (audio URL, "
    "title, publish time); unmatched episodes have match_rule NULL.",
    ("anchor.episodes", "anchor.episode_metadata", "op3.show", "op3.downloads"),
    _cols(_SHOW_LINE + """
anchor_show_id VARCHAR: The show's Anchor web station id (NULL: OP3 only).
op3_show_id VARCHAR: The show's OP3 show uuid (NULL: Spotify only).
show_title VARCHAR: The show's title as OP3 knows it.
spotify_episode_id BIGINT: Anchor's numeric episode id (NULL: OP3 only).
web_episode_id VARCHAR: Anchor's short episode id used in share links.
spotify_episode_uri VARCHAR: spotify:episode:… URI.
op3_episode_id VARCHAR: OP3 episode id (SHA-256 of the feed item guid; NULL: Spotify only).
op3_item_guid VARCHAR: The feed item's guid as OP3 reports it.
title VARCHAR: Spotify's title, else OP3's (NULL when neither has one).
spotify_title VARCHAR: The title on Spotify for Creators.
op3_title VARCHAR: The title in the feed as OP3 read it.
spotify_published_at TIMESTAMPTZ: Publish time on Spotify for Creators (UTC).
op3_published_at TIMESTAMPTZ: The feed item's pubDate as OP3 read it (UTC).
release_date DATE: UTC day of the Spotify publish time, else of OP3's.
audio_url VARCHAR: The audio file URL Spotify for Creators serves.
match_rule VARCHAR: audio_url, title or publish_time; NULL = unmatched (one side only).
"""))

SHOWS = Model(
    "shows",
    "Every show and its id at each source (Anchor station and OP3 show linked by their "
    "matched episodes).",
    ("analytics.episode_map", "anchor.plays", "op3.downloads"),
    _cols(_SHOW_LINE + """
anchor_show_id VARCHAR: Anchor web station id (NULL: OP3 only).
op3_show_id VARCHAR: OP3 show uuid (NULL: Spotify only).
title VARCHAR: The show's title as OP3 knows it.
episodes BIGINT: Episodes in episode_map.
matched_episodes BIGINT: Of those, matched between Spotify and OP3.
name VARCHAR: The show's name in the network file (network.shows), else its title, else its id.
network_show_key VARCHAR: Its key in the network file (NULL: not listed there, or no file).
spotify_account VARCHAR: The network's Spotify account it is read with (NULL: none or no file).
"""))

DAILY_LISTENING = Model(
    "daily_listening",
    "Per show and UTC day: Spotify plays, all-platform plays + downloads and OP3 downloads "
    "side by side, with trailing 7- and 28-day averages.",
    ("analytics.shows", "anchor.plays", "spotify.show_daily_totals", "op3.downloads"),
    _cols(_SHOW_LINE + """
day DATE: The UTC day.
spotify_plays BIGINT: Plays Spotify for Creators reports for the day (NULL: not covered).
all_platform_plays_and_downloads BIGINT: Plays + downloads on every platform, as Spotify counts them (its GraphQL backend: spotify.show_daily_totals, the day's sum over the episode list; NULL where not stored).
op3_downloads BIGINT: Downloads OP3 counted that day (NULL: not covered).
spotify_plays_avg_7d DOUBLE: Mean of spotify_plays over this and the 6 days before (NULL unless all 7 are known).
spotify_plays_avg_28d DOUBLE: Mean over this and the 27 days before (NULL unless all 28 are known).
all_platform_plays_and_downloads_avg_7d DOUBLE: 7-day mean of all_platform_plays_and_downloads.
all_platform_plays_and_downloads_avg_28d DOUBLE: 28-day mean of all_platform_plays_and_downloads.
op3_downloads_avg_7d DOUBLE: 7-day mean of op3_downloads (NULL unless all 7 are known).
op3_downloads_avg_28d DOUBLE: 28-day mean of op3_downloads (NULL unless all 28 are known).
"""))

_HORIZONS = (1, 7, 30, 90)
EPISODE_LAUNCH = Model(
    "episode_launch",
    "Per episode: Spotify plays and OP3 downloads in its first 1, 7, 30 and 90 days and its "
    "rank at each; NULL where the data does not cover the whole horizon yet.",
    ("analytics.episode_map", "anchor.episode_plays", "op3.downloads"),
    _cols(_SHOW_LINE + """
title VARCHAR: Episode title.
release_date DATE: Day 1 of every horizon (UTC).
spotify_episode_id BIGINT: Anchor episode id.
op3_episode_id VARCHAR: OP3 episode id.
spotify_days_covered BIGINT: Consecutive days from the release day that anchor.episode_plays holds.
op3_days_covered BIGINT: Consecutive days from the release day that op3.downloads holds.
""" + "".join(
        f"spotify_plays_{h}d BIGINT: Spotify plays in days 1..{h} (NULL: not covered yet).\n"
        for h in _HORIZONS) + "".join(
        f"op3_downloads_{h}d BIGINT: OP3 downloads in days 1..{h} (NULL: not covered yet).\n"
        for h in _HORIZONS) + "".join(
        f"spotify_rank_{h}d BIGINT: Rank by spotify_plays_{h}d among the show's episodes.\n"
        for h in _HORIZONS) + "".join(
        f"op3_rank_{h}d BIGINT: Rank by op3_downloads_{h}d among the show's episodes.\n"
        for h in _HORIZONS)))

EPISODE_LEADERBOARD = Model(
    "episode_leaderboard",
    "Per episode: plays and downloads to date with their ranks, how far people listen, and "
    "its Spotify and OP3 ids.",
    ("analytics.episode_map", "anchor.total_plays_by_episode", "anchor.episodes",
     "anchor.episode_aggregated_performance", "anchor.episode_performance", "op3.downloads"),
    _cols(_SHOW_LINE + """
spotify_rank BIGINT: Rank by spotify_plays within the show (1 = most).
op3_rank BIGINT: Rank by op3_downloads within the show.
title VARCHAR: Episode title.
release_date DATE: UTC release day.
spotify_plays BIGINT: Lifetime plays on Spotify for Creators (latest snapshot).
op3_downloads BIGINT: OP3 downloads stored in the warehouse (since op3_counted_since).
op3_counted_since DATE: First day of op3.downloads in the warehouse for the show.
duration_seconds DOUBLE: Episode length.
still_listening_at_25pct DOUBLE: Percent (0-100) of listeners still listening a quarter in.
still_listening_at_50pct DOUBLE: Percent still listening halfway.
still_listening_at_75pct DOUBLE: Percent still listening three quarters in.
still_listening_at_100pct DOUBLE: Percent still listening at the end.
average_listen_seconds DOUBLE: Spotify's average listen time.
median_listen_seconds BIGINT: Second at which half of those who started had stopped (from the retention curve).
spotify_episode_id BIGINT: Anchor episode id.
web_episode_id VARCHAR: Anchor short id used in share links.
spotify_episode_uri VARCHAR: spotify:episode:… URI.
op3_episode_id VARCHAR: OP3 episode id.
match_rule VARCHAR: How the Spotify and OP3 episode were matched (NULL: unmatched).
"""))

AUDIENCE_MIX = Model(
    "audience_mix",
    "Who listens: app, device, country, age and gender per show and day, as Spotify counts and "
    "fractions beside OP3's.",
    ("analytics.shows", "anchor.plays", "anchor.plays_by_age_range", "anchor.plays_by_gender",
     "anchor.plays_by_app", "anchor.plays_by_device", "anchor.plays_by_geo",
     "anchor.total_plays", "op3.downloads"),
    _cols(_SHOW_LINE + """
date DATE: The UTC day (period all_time: the day of the snapshot).
period VARCHAR: day, or all_time for Spotify's countries (it reports them for all time only).
dimension VARCHAR: app, device, country, age or gender.
value VARCHAR: The app, device, country, age range or gender.
spotify_count DOUBLE: spotify_fraction x that day's Spotify plays (all_time: x lifetime plays).
spotify_fraction DOUBLE: Spotify's share (0-1).
op3_count BIGINT: OP3 downloads with this value that day.
op3_fraction DOUBLE: op3_count / that day's OP3 downloads.
"""))

EPISODE_RETENTION = Model(
    "episode_retention",
    "Per episode and second: listeners still playing, as a percentage of those who started.",
    ("analytics.shows", "analytics.episode_map", "anchor.episode_performance"),
    _cols(_SHOW_LINE + """
spotify_episode_id BIGINT: Anchor episode id.
title VARCHAR: Episode title.
release_date DATE: UTC release day.
sample_second BIGINT: Seconds into the episode.
listeners BIGINT: Listeners still playing at that second.
percent_of_start DOUBLE: listeners / listeners at second 0 x 100.
"""))

# In dependency order: building them in this order needs no other scheduling.
MODELS: tuple[Model, ...] = (EPISODE_MAP, SHOWS, DAILY_LISTENING, EPISODE_LAUNCH,
                             EPISODE_LEADERBOARD, AUDIENCE_MIX, EPISODE_RETENTION)
MODELS_BY_NAME = {m.name: m for m in MODELS}


def model_ddl(model: Model) -> str:
    """``CREATE OR REPLACE TABLE analytics.<name>`` as the model's SELECT (the text of its
    .sql file in this package) cast to the declared columns: identifiers and our SQL only."""
    select_list = ", ".join(f'CAST("{c.name}" AS {c.type}) AS "{c.name}"' for c in model.columns)
    return (f"CREATE OR REPLACE TABLE {model.qualified} AS SELECT {select_list} FROM "
            f"({model.sql}) AS model")


def build(con: duckdb.DuckDBPyConnection, model: Model) -> int:
    """Replace ``analytics.<model>`` with the model's rows; returns the row count."""
    warehouse.ensure_schema(con)  # raw tables exist (empty) even before their first run

    def work() -> None:  # each statement commits; on DuckLake another writer may race it
        con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        con.execute(network_shows_ddl())
        con.execute(model_ddl(model))

    warehouse.retry_conflicts(con, f"building {model.qualified}", work)
    [(rows,)] = con.execute(f"SELECT count(*) FROM {model.qualified}").fetchall()
    return int(rows)


def build_all(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {m.name: build(con, m) for m in MODELS}


def missing(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Models whose table does not exist yet."""
    have = {name for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
        [SCHEMA]).fetchall()}
    return [m.name for m in MODELS if m.name not in have]
