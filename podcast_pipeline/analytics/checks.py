"""Asset checks on the raw tables, shown in the Dagster UI beside each asset.

One ``multi_asset_check`` per raw table holds the rules that apply to it (one step per
table, each rule its own check in the UI). Blocking rules are the ones whose failure would
make a model wrong (negative counts, fractions that do not add up, unknown episode ids):
in a run they skip the assets downstream, the models' automation condition waits for them
to pass, and a model run started by hand refuses to build over them (``assets.py``).
The rules themselves are plain SQL in ``quality.py``.

A network file gives every show's raw assets their own checks (``<show>/anchor/plays``,
step ``<show>_anchor_plays_checks``): the same rules, each reading only that show's rows
(its ``show_id`` a SQL parameter), so one show's bad day fails only its own check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import duckdb

from podcast_pipeline import network_assets
from podcast_pipeline.analytics import quality
from podcast_pipeline.network import Network
from podcast_pipeline.tables import ALL_TABLES, Table
from podcast_pipeline.timeutil import utc_now

# Freshness is also evaluated at 12:00 UTC every day by the automation sensor, six hours
# after the daily refresh, so a refresh that silently stopped turns the check red.
FRESHNESS_CRON = "0 12 * * *"


@dataclass(frozen=True)
class Facts:
    """What Dagster knows about the asset, beside what the table holds."""

    materialized_days: set[date] | None  # None: not partitioned by day
    newest_day: date | None
    today: date


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    applies: Callable[[Table], bool]
    # (connection, table, the show's rows' show_id or None for every row, facts)
    run: Callable[[duckdb.DuckDBPyConnection, Table, str | None, Facts], quality.Outcome]
    blocking: Callable[[Table], bool] = lambda t: False
    warn_only: bool = False  # a failure is a warning, never an error
    automation_condition: dg.AutomationCondition | None = None


RULES: tuple[Rule, ...] = (
    Rule("counts_non_negative",
         "No count, share or duration column holds a negative value.",
         applies=lambda t: bool(quality.count_columns(t)),
         run=lambda con, t, s, f: quality.counts_non_negative(con, t, s),
         blocking=lambda t: True),
    Rule("fractions_sum_to_one",
         "Each day's (each snapshot's) fractions add up to 1 ± 0.01; Spotify's rounded "
         "country and region shares get 0.005 more per rounded row.",
         applies=lambda t: any(c == "fraction" for c, _ in t.columns),
         run=lambda con, t, s, f: quality.fractions_sum_to_one(con, t, s),
         blocking=lambda t: True),
    Rule("episode_ids_known",
         "Every episode id (plays_by_episode: title) appears in the show's episode list "
         "(anchor/episodes; for OP3 op3/show).",
         applies=quality.applies_episode_ids,
         run=lambda con, t, s, f: quality.episode_ids_known(con, t, s),
         # OP3's list is the current feed: an episode taken out of it keeps its downloads.
         blocking=lambda t: t.schema == "anchor"),
    Rule("no_missing_days",
         "No materialized day is empty for a show that had rows the day before.",
         applies=lambda t: t.kind != "snapshot",
         run=lambda con, t, s, f: quality.no_missing_days(con, t, f.materialized_days, s),
         warn_only=True),
    Rule("fresh",
         f"The newest partition is at most {quality.FRESH_DAYS} days old.",
         applies=lambda t: True,
         run=lambda con, t, s, f: quality.freshness(f.newest_day, f.today),
         automation_condition=dg.AutomationCondition.cron_tick_passed(FRESHNESS_CRON, "UTC")),
    Rule("downloads_match_show_download_counts",
         "Stored OP3 downloads agree with OP3's own show_download_counts (weekly and "
         "30-day sums, days it reports none) on every day both cover.",
         applies=lambda t: t.qualified == "op3.downloads",
         run=lambda con, t, s, f: quality.downloads_match_counts(con, f.materialized_days, s)),
)


def asset_key(table: Table, show: str | None = None) -> dg.AssetKey:
    return dg.AssetKey([*([show] if show else []), table.schema, table.name])


def rules_for(table: Table) -> list[Rule]:
    return [r for r in RULES if r.applies(table)]


def blocking_check_keys(keys: list[dg.AssetKey]) -> list[dg.AssetCheckKey]:
    """The blocking checks of these raw assets (the ones a model must not build over); a
    network show's key (``<show>/anchor/plays``) has the same checks as its table's."""
    by_path = {(t.schema, t.name): t for t in ALL_TABLES}
    tables = [(k, by_path.get((k.path[-2], k.path[-1]))) for k in keys if len(k.path) >= 2]
    return [dg.AssetCheckKey(k, r.name) for k, t in tables if t is not None
            for r in rules_for(t) if r.blocking(t)]


def _facts(instance: dg.DagsterInstance, key: dg.AssetKey) -> Facts:
    days = {date.fromisoformat(p) for p in instance.get_materialized_partitions(key)}
    if days:
        newest: date | None = max(days)
    else:
        event = instance.get_latest_materialization_event(key)
        newest = datetime.fromtimestamp(event.timestamp, UTC).date() if event else None
    return Facts(days or None, newest, utc_now().date())


def markdown_table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def result(key: dg.AssetKey, rule: Rule, outcome: quality.Outcome) -> dg.AssetCheckResult:
    warn = rule.warn_only or outcome.inconclusive
    metadata: dict[str, Any] = {"summary": outcome.summary}
    if outcome.rows:
        metadata["offending_rows"] = dg.MetadataValue.md(markdown_table(outcome.rows))
    return dg.AssetCheckResult(
        asset_key=key, check_name=rule.name, passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
        description=outcome.summary, metadata=metadata)


def _build(table: Table, show: str | None = None,
           show_id: str | None = None) -> dg.AssetChecksDefinition:
    """The checks of ``table``'s asset: every row's, or (a network show) the asset
    ``<show>/...`` and only the rows whose ``show_id`` is ``show_id``."""
    key = asset_key(table, show)
    rules = rules_for(table)
    name = f"{show}_{table.schema}_{table.name}_checks" if show else \
        f"{table.schema}_{table.name}_checks"
    of = f"{table.qualified} (show {show}: rows of show_id {show_id})" if show else \
        table.qualified
    specs = [dg.AssetCheckSpec(r.name, asset=key, description=r.description,
                               blocking=r.blocking(table),
                               automation_condition=r.automation_condition)
             for r in rules]

    @dg.multi_asset_check(specs=specs, name=name, can_subset=True,
                          required_resource_keys={"warehouse"},
                          description=f"Data-quality checks of {of}.")
    def _checks(context):  # no annotations: Dagster would resolve them per check
        selected = {k.name for k in context.selected_asset_check_keys}
        facts = _facts(context.instance, key)
        results = []
        # Read under the writers' lock: a parallel step may be writing the file.
        with context.resources.warehouse.writer(on_wait=context.log.info) as con:
            for rule in rules:
                if rule.name in selected:
                    results.append(result(key, rule, rule.run(con, table, show_id, facts)))
        yield from results

    return _checks


raw_table_checks: list[dg.AssetChecksDefinition] = [
    _build(t) for t in ALL_TABLES if rules_for(t)]


def build_raw_table_checks(net: Network) -> list[dg.AssetChecksDefinition]:
    """The network's checks: one set per show's raw assets (the network of one: today's)."""
    if not network_assets.is_network(net):
        return raw_table_checks
    by_path = {(t.schema, t.name): t for t in ALL_TABLES}
    out = []
    for show in net.shows:
        for key in network_assets.show_keys(net, show):
            table = by_path[(key.path[1], key.path[2])]
            if rules_for(table):
                out.append(_build(table, show.key, network_assets.row_show_id(show, table)))
    return out
