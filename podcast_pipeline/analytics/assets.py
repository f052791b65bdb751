"""The analytics models and the report as Dagster assets, kept fresh by declarative automation.

Each model is an unpartitioned asset downstream of the raw tables it reads (the lineage in
the graph is the SQL's FROM list). It is re-materialized by the automation sensor when any
input changed and every blocking check of its inputs passed; a run started some other way
(the UI, the demo) refuses to build over a failed blocking check, leaving the previous
table in place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from podcast_pipeline.analytics import checks, models, report
from podcast_pipeline.analytics.models import MODELS, Model

GROUP = "analytics"
PREVIEW_ROWS = 5

# A blocking check of an input whose latest run failed holds a model back. (Not Dagster's
# all_deps_blocking_checks_passed(): that also waits for checks that never ran, e.g. every
# Anchor check for a user who only has OP3.)
BLOCKING_CHECK_FAILED = dg.AutomationCondition.any_checks_match(
    dg.AutomationCondition.check_failed(), blocking_only=True)

# eager() would also wait for every daily partition since the start date to exist (any
# missing upstream partition blocks it), which never happens for a whole-history model.
MODEL_CONDITION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & ~dg.AutomationCondition.any_deps_match(BLOCKING_CHECK_FAILED)
).with_label("when an input changed and none of its blocking checks failed")

# The report reads every model: it also waits while any model is held back, instead of
# reporting over a stale table.
REPORT_CONDITION = (
    MODEL_CONDITION
    & ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.any_deps_match(BLOCKING_CHECK_FAILED))
).with_label("after the models, when no model is held back by a failed blocking check")


def key_of(qualified: str) -> dg.AssetKey:
    return dg.AssetKey(qualified.split("."))


def raw_deps(model: Model) -> list[dg.AssetKey]:
    """The raw tables a model reads, directly or through other models."""
    out: list[dg.AssetKey] = []
    for dep in model.deps:
        if dep.startswith(f"{models.SCHEMA}."):
            out += raw_deps(models.MODELS_BY_NAME[dep.split(".", 1)[1]])
        else:
            out.append(key_of(dep))
    return list(dict.fromkeys(out))


def column_schema(model: Model) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.type, description=c.description)
                                   for c in model.columns])


def refuse_if_blocked(context: dg.AssetExecutionContext, upstream: list[dg.AssetKey]) -> None:
    """Fail, writing nothing, while the latest run of an upstream blocking check failed."""
    failed = []
    for check_key in checks.blocking_check_keys(upstream):
        record = context.instance.get_latest_asset_check_evaluation_record(check_key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        # Any failed result counts, warnings too, as in the automation condition.
        if evaluation is not None and not evaluation.passed:
            summary = evaluation.metadata.get("summary")
            failed.append(f"{check_key.asset_key.to_user_string()} {check_key.name}"
                          + (f" ({summary.value})" if summary is not None else ""))
    if failed:
        raise dg.Failure(
            description=(f"{context.asset_key.to_user_string()} was not rebuilt (the previous "
                         "table stays) because a blocking check of its input failed: "
                         + "; ".join(failed) + ". Fix the data (re-materialize the days the "
                         "check names) and the check runs again with it."),
            allow_retries=False,
            metadata={"error_kind": "blocked_by_check", "failed_checks": "; ".join(failed)})


def _preview(con: duckdb.DuckDBPyConnection, model: Model) -> str:
    cur = con.execute(f"SELECT * FROM {model.qualified} LIMIT ?", [PREVIEW_ROWS])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return checks.markdown_table(rows) if rows else "(no rows)"


def _unmatched(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute("""
        SELECT show_id, CASE WHEN spotify_episode_id IS NULL THEN 'OP3 only' ELSE 'Spotify only'
                            END AS side,
               coalesce(title, '(untitled)') AS title, release_date,
               coalesce(CAST(spotify_episode_id AS VARCHAR), op3_episode_id) AS id
        FROM analytics.episode_map WHERE match_rule IS NULL ORDER BY show_id, release_date""")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


EPISODES_MATCHED = "all_episodes_matched"


Expand = Callable[[dg.AssetKey], list[dg.AssetKey]]  # a raw table's key → its assets' keys


def _same(key: dg.AssetKey) -> list[dg.AssetKey]:
    return [key]


def _deps(model: Model, expand: Expand) -> list[dg.AssetKey]:
    """The model's inputs: other models, and every asset (every show's) of each raw table."""
    return [k for d in model.deps for k in
            ([key_of(d)] if d.startswith(f"{models.SCHEMA}.") else expand(key_of(d)))]


def _model_asset(model: Model, expand: Expand = _same,
                 extra_deps: tuple[dg.AssetKey, ...] = ()) -> dg.AssetsDefinition:
    key = key_of(model.qualified)
    specs = ([dg.AssetCheckSpec(EPISODES_MATCHED, asset=key, description=(
        "Every episode is matched between Spotify and OP3 (unmatched ones are listed)."))]
        if model is models.EPISODE_MAP else [])

    @dg.asset(
        key=key,
        group_name=GROUP,
        description=model.description,
        deps=[*_deps(model, expand), *(extra_deps if model is models.SHOWS else ())],
        kinds={"duckdb", "sql"},
        metadata={"dagster/table_name": model.qualified,
                  "dagster/column_schema": column_schema(model),
                  "sql": dg.MetadataValue.md(f"```sql\n{model.sql}\n```")},
        automation_condition=MODEL_CONDITION,
        required_resource_keys={"warehouse"},
        check_specs=specs,
    )
    def _asset(context) -> dg.MaterializeResult:  # annotation omitted: Dagster checks it at runtime
        refuse_if_blocked(context, raw_deps(model))
        with context.resources.warehouse.writer(on_wait=context.log.info) as con:
            rows = models.build(con, model)
            preview = _preview(con, model)
            unmatched = _unmatched(con) if model is models.EPISODE_MAP else None
        context.log.info(f"{model.qualified}: {rows} rows")
        metadata: dict[str, Any] = {
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": model.qualified,
            "dagster/column_schema": column_schema(model),
            "preview": dg.MetadataValue.md(preview),
        }
        check_results = []
        if unmatched is not None:
            listing = ("\n".join(f"- {u['side']}: {u['title']} ({u['release_date']}, {u['id']})"
                                 for u in unmatched) or "none")
            metadata["unmatched_episodes"] = dg.MetadataValue.md(listing)
            check_results.append(dg.AssetCheckResult(
                check_name=EPISODES_MATCHED, passed=not unmatched,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{len(unmatched)} unmatched episode(s)",
                metadata={"unmatched": dg.MetadataValue.md(listing)}))
        return dg.MaterializeResult(metadata=metadata, check_results=check_results)

    return _asset


model_assets: list[dg.AssetsDefinition] = [_model_asset(m) for m in MODELS]
REPORT_KEY = dg.AssetKey([GROUP, "report"])
ALL_RAW_DEPS = list(dict.fromkeys(k for m in MODELS for k in raw_deps(m)))


@dg.asset(
    key=REPORT_KEY,
    group_name=GROUP,
    description="The podcaster's report: one self-contained HTML file (works offline) with "
                "daily listening, launch comparison, top episodes, audience mix and retention "
                "curves (per show, and a network overview when there are several), and every "
                "model as a CSV file beside it.",
    deps=[key_of(m.qualified) for m in MODELS],
    kinds={"html"},
    automation_condition=REPORT_CONDITION,
    required_resource_keys={"warehouse"},
)
def report_asset(context) -> dg.MaterializeResult:  # annotation omitted: checked at runtime
    refuse_if_blocked(context, ALL_RAW_DEPS)
    database = context.resources.warehouse.database
    out_dir = report.report_dir(database)
    with context.resources.warehouse.writer(on_wait=context.log.info) as con:
        written = report.write_report(con, out_dir)
    context.log.info(f"report written to {written.html}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(written.html)),
        "csv_files": dg.MetadataValue.md("\n".join(f"- {p}" for p in written.csv.values())),
        "summary": dg.MetadataValue.md(written.summary),
        "charts": dg.MetadataValue.int(written.charts),
        "size_bytes": dg.MetadataValue.int(Path(written.html).stat().st_size),
    })


analytics_assets: list[dg.AssetsDefinition] = [*model_assets, report_asset]


def build_analytics_assets(net: Any) -> list[dg.AssetsDefinition]:
    """The models over a network's assets: each raw table's input is every show's asset of
    it (the network of one: today's ``analytics_assets``)."""
    from podcast_pipeline import network_assets
    from podcast_pipeline.tables import TABLES_BY_KEY

    if not network_assets.is_network(net):
        return analytics_assets

    def expand(key: dg.AssetKey) -> list[dg.AssetKey]:
        return network_assets.table_keys(net, TABLES_BY_KEY[".".join(key.path)])

    return [*(_model_asset(m, expand, (network_assets.SHOWS_KEY,)) for m in MODELS),
            report_asset]

analytics_job = dg.define_asset_job(
    "analytics",
    selection=dg.AssetSelection.groups(GROUP),
    description="Rebuild every analytics model and the report (the automation sensor does "
                "this by itself when their inputs change; the demo runs it directly).",
)

analytics_automation = dg.AutomationConditionSensorDefinition(
    "analytics_automation",
    target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Declarative automation: rebuilds the analytics models and the report when "
                "their inputs change (and their blocking checks passed), and runs the "
                f"freshness checks daily at {checks.FRESHNESS_CRON} (cron, UTC).",
)
