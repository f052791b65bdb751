"""The daily schedule's run requests, evaluated by Dagster for a given tick."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.partitions import START_DATE_ENV, daily_partitions
from podcast_pipeline.schedules import (
    CREDENTIAL_ENV,
    GRAPHQL_CREDENTIAL_ENV,
    LOOKBACK_ENV,
    SNAPSHOT_KEYS,
    WINDOWED_KEYS,
    build_daily_refresh_schedule,
)
from podcast_pipeline.settings import CRON_ENV, Settings
from podcast_pipeline.tables import ALL_TABLES, TABLES_BY_KEY

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def schedule() -> dg.ScheduleDefinition:
    """The schedule the definitions build from this environment's settings."""
    from podcast_pipeline.definitions import build_definitions

    return build_definitions().resolve_schedule_def("daily_refresh_schedule")


def tick(when: datetime) -> list[dg.RunRequest]:
    """Dagster's own evaluation, with the repository so it resolves the asset selections."""
    from podcast_pipeline.definitions import build_definitions

    defs = build_definitions()
    context = dg.build_schedule_context(scheduled_execution_time=when,
                                        repository_def=defs.get_repository_def())
    data = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(context)
    assert data.skip_message is None
    return list(data.run_requests or [])


def only(requests: list[dg.RunRequest]) -> dg.RunRequest:
    """The tick's one run: a partition range for the windowed assets, the snapshots once."""
    (request,) = requests
    assert request.partition_key is None
    return request


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch):
    for var in (LOOKBACK_ENV, CRON_ENV, START_DATE_ENV):
        monkeypatch.delenv(var, raising=False)
    for var in CREDENTIAL_ENV.values():  # both sources in use unless a test says otherwise
        monkeypatch.setenv(var, "configured")
    monkeypatch.setenv(GRAPHQL_CREDENTIAL_ENV, "configured")  # and Spotify's GraphQL backend
    monkeypatch.delenv("SPOTIFY_BACKEND", raising=False)


def test_one_run_of_every_asset_with_four_days_for_the_windowed_ones():
    request = only(tick(datetime(2026, 3, 10, 6, tzinfo=UTC)))
    # Yesterday plus the default 3 days before it: Spotify restates late numbers.
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-03-06", "2026-03-09")
    # Every asset once, in one run, so the episode list is taken before the per-episode
    # assets read it; the snapshots are unpartitioned and ignore the range.
    assert sorted(".".join(k.path) for k in request.asset_selection) == sorted(
        t.qualified for t in ALL_TABLES)
    assert set(SNAPSHOT_KEYS) | set(WINDOWED_KEYS) == set(request.asset_selection)
    assert {TABLES_BY_KEY[".".join(k.path)].kind for k in WINDOWED_KEYS} == {"ranged", "per_day"}
    assert request.run_key == "daily-2026-03-06-2026-03-09"


@pytest.mark.parametrize("lookback", [0, 1, 7])
def test_lookback_is_configurable(lookback: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(LOOKBACK_ENV, str(lookback))
    when = datetime(2026, 3, 10, 6, tzinfo=UTC)
    windowed = only(tick(when))
    yesterday = date(2026, 3, 9)
    start = date.fromisoformat(windowed.tags[RANGE_START])
    assert windowed.tags[RANGE_END] == yesterday.isoformat()
    assert (yesterday - start).days + 1 == lookback + 1


@pytest.mark.parametrize(("var", "value"), [(LOOKBACK_ENV, "three"), (LOOKBACK_ENV, "-1"),
                                            (CRON_ENV, "at six")])
def test_bad_schedule_setting_names_the_variable(var: str, value: str,
                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"^{var} is {value!r}") as info:
        build_daily_refresh_schedule(Settings.load())
    assert info.value.setting == var


def test_cron_is_configurable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CRON_ENV, "30 7 * * *")
    assert schedule().cron_schedule == "30 7 * * *"


def test_range_never_starts_before_the_first_partition(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(START_DATE_ENV, raising=False)
    first = daily_partitions().start.date()
    when = datetime.combine(first + timedelta(days=2), datetime.min.time(), UTC).replace(hour=6)
    windowed = only(tick(when))
    assert windowed.tags[RANGE_START] == first.isoformat()
    assert windowed.tags[RANGE_END] == (first + timedelta(days=1)).isoformat()


def test_requested_partitions_exist_on_the_tick():
    """Yesterday is the newest partition Dagster knows at 06:00 UTC."""
    when = datetime(2026, 3, 10, 6, tzinfo=UTC)
    windowed = only(tick(when))
    keys = daily_partitions().get_partition_keys(current_time=when)
    assert keys[-1] == windowed.tags[RANGE_END]
    assert windowed.tags[RANGE_START] in keys


def test_runs_daily_at_six_utc():
    s = schedule()
    assert s.cron_schedule == "0 6 * * *"
    assert s.execution_timezone == "UTC"
    assert s.job_name == "daily_refresh"
    assert s.default_status == dg.DefaultScheduleStatus.RUNNING


def test_only_configured_sources_are_refreshed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ANCHOR_PW_S")
    monkeypatch.delenv(GRAPHQL_CREDENTIAL_ENV)
    request = only(tick(datetime(2026, 3, 10, 6, tzinfo=UTC)))
    assert {k.path[0] for k in request.asset_selection} == {"op3"}
    assert len(request.asset_selection) == sum(t.schema == "op3" for t in ALL_TABLES)


def test_rest_backend_leaves_the_graphql_only_tables_out(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(GRAPHQL_CREDENTIAL_ENV)  # ANCHOR_PW_S alone: the REST backend
    request = only(tick(datetime(2026, 3, 10, 6, tzinfo=UTC)))
    assert {k.path[0] for k in request.asset_selection} == {"anchor", "op3"}


def test_no_source_configured_skips_with_the_variables_named(monkeypatch: pytest.MonkeyPatch):
    from podcast_pipeline.definitions import build_definitions

    for var in (*CREDENTIAL_ENV.values(), GRAPHQL_CREDENTIAL_ENV):
        monkeypatch.delenv(var)
    defs = build_definitions()
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 10, 6, tzinfo=UTC),
                                        repository_def=defs.get_repository_def())
    data = defs.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(context)
    assert not data.run_requests
    assert "ANCHOR_PW_S" in data.skip_message and "OP3_TOKEN" in data.skip_message
    assert GRAPHQL_CREDENTIAL_ENV in data.skip_message
