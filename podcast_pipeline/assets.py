"""The one asset factory: partition window → client calls → DataFrame → warehouse.

Each source module (``anchor/assets.py``, ``op3/assets.py``) lists its endpoints as
``Endpoint(table, fetch)``; everything they share — partition windows, snapshot days,
the episode list, the 401 fail-fast, schema-drift checks, per-partition metadata — lives
here once.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

import dagster as dg
import pandas as pd

from podcast_pipeline import politeness, warehouse
from podcast_pipeline.errors import ApiError, ConfigError, CredentialsExpired, MalformedResponse
from podcast_pipeline.http import CallStats, CredentialVerdict, RawResponse
from podcast_pipeline.network import DEFAULT_NAME
from podcast_pipeline.partitions import daily_partitions
from podcast_pipeline.settings import START_DATE_ENV, Settings
from podcast_pipeline.tables import COLUMN_DOCS, Table
from podcast_pipeline.timeutil import days, utc_now

# Run tag set by the first step that meets a 401; later steps of the run fail at once.
# Value "<run id>:<credential>[,<credential>]", a credential being the API ("anchor", "op3")
# on a network of one, else "<api>@<account or OP3 token>" (network.py): a dead account stops
# only its own shows. Re-executions copy their parent's tags, and a run must only trust its
# own verdict (the credential may have been replaced since).
DEAD_CREDENTIAL_TAG = "podcast_pipeline/credentials_expired"
PREVIEW_ROWS = 5


@dataclass(frozen=True)
class Endpoint:
    """One API endpoint: its table and how to fetch it.

    ``fetch`` by kind: ranged ``(client, start, end)``; per_day ``(client, day)``;
    snapshot ``(client)``; episode-level adds ``episode_id`` after ``client``.
    """

    table: Table
    fetch: Callable[..., pd.DataFrame]
    # Documented fields the table leaves out on purpose (raw.responses keeps them): not drift.
    unstored: frozenset[str] = frozenset()
    # Ranged endpoints that can be long: ``(client, start, end, stage, concurrency)`` puts
    # the answer page by page into a ``warehouse.Stage`` instead of returning a frame.
    stage: Callable[..., None] | None = None


@dataclass(frozen=True)
class Scope:
    """The show of a network that an asset serves; None on a network of one (today's keys
    and groups; its account and token are both ``default``)."""

    show: str  # the network's show key: prefix of the asset keys, group show_<key>
    name: str
    credential: str  # the Spotify account or OP3 token the show's calls use

    def credential_id(self, api: str) -> str:
        return f"{api}@{self.credential}"


SHOW_TAG = "podcast_pipeline/show"
ACCOUNT_TAG = {"anchor": "podcast_pipeline/spotify_account", "op3": "podcast_pipeline/op3_token"}


@dataclass(frozen=True)
class Source:
    api: str  # "anchor" | "op3"
    resource_key: str
    kinds: frozenset[str]
    show_id: Callable[[Any], str]  # settings -> the show's id in this API
    # The snapshot table listing the show's episodes: episode-level assets depend on its
    # asset and read the ids of its latest snapshot from the warehouse.
    episode_list: Table | None = None


def build_assets(source: Source, endpoints: Sequence[Endpoint],
                 partitions_def: dg.DailyPartitionsDefinition | None = None,
                 scope: Scope | None = None) -> list[dg.AssetsDefinition]:
    """``partitions_def``: the settings' daily partitions (default: from the default start);
    ``scope``: the network show they serve (None: the network of one, today's keys)."""
    partitions_def = partitions_def or daily_partitions()
    with warnings.catch_warnings():
        # backfill_policy is "beta" in Dagster 1.13 but is the documented way to get
        # single-run backfills.
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        return [_build_asset(source, ep, partitions_def, scope) for ep in endpoints]


def asset_key(table: Table, show: str | None = None) -> dg.AssetKey:
    """``anchor/plays``; a network show's is prefixed by its key: ``<show>/anchor/plays``."""
    return dg.AssetKey([*([show] if show else []), table.schema, table.name])


SNAPSHOT_DAY_DOC = ("The UTC day the snapshot was taken (the date of as_of): one snapshot per "
                    "day, the day's last run wins.")


@cache
def _column_schema(table: Table) -> dg.TableSchema:
    """Built once per table: a network's shows share it (immutable)."""
    docs = dict(COLUMN_DOCS)
    if table.kind == "snapshot":
        docs["partition_date"] = SNAPSHOT_DAY_DOC
    return dg.TableSchema(columns=[
        dg.TableColumn(name, type_, description=docs.get(name))
        for name, type_ in warehouse.table_columns(table)
    ])


def _build_asset(source: Source, ep: Endpoint, partitions_def: dg.DailyPartitionsDefinition,
                 scope: Scope | None) -> dg.AssetsDefinition:
    table = ep.table
    show = scope.show if scope else None
    key = asset_key(table, show)
    check = dg.AssetCheckSpec("no_schema_drift", asset=key,
                              description="The API sent no columns this project does not know.")
    snapshot = table.kind == "snapshot"
    deps = ([asset_key(source.episode_list, show)]
            if table.episode_level and source.episode_list else [])
    tags = {"podcast_pipeline/fetch": table.kind}
    if scope:  # for selections: tag:podcast_pipeline/show=<key>, .../spotify_account=<name>
        tags |= {SHOW_TAG: scope.show, ACCOUNT_TAG[source.api]: scope.credential}

    @dg.asset(
        key=key,
        group_name=f"show_{scope.show}" if scope else table.schema,
        description=f"{scope.name}: {table.description}" if scope else table.description,
        # Snapshots have no history in the API: unpartitioned, each run stores today's.
        partitions_def=None if snapshot else partitions_def,
        # Also on snapshots, so that the CLI accepts them in a --partition-range selection.
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        # One pool per account / OP3 token, limit 1 (politeness.py): one step calls a
        # credential at a time, across every run of the instance.
        pool=politeness.pool(source.api, scope.credential if scope else DEFAULT_NAME),
        kinds=set(source.kinds),
        tags=tags,
        metadata={"dagster/table_name": table.qualified,
                  **({"show": scope.name} if scope else {}),
                  "dagster/column_schema": _column_schema(table),
                  "fetch": table.kind},
        required_resource_keys={source.resource_key, "warehouse"},
        check_specs=[check],
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2,
                                    backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    )
    def _asset(context):  # no annotations: Dagster would resolve them per asset
        try:
            return materialize_endpoint(context, source, ep, scope)
        except dg.Failure as exc:
            if scope is None:
                raise
            raise _in_own_words(context, source, scope, exc) from None

    return _asset


def _in_own_words(context: dg.AssetExecutionContext, source: Source, scope: Scope,
                  exc: dg.Failure) -> dg.Failure:
    """A network show's failure names its account's (or token's) variables and the network
    file, not the single-show ones the clients' messages and fix steps use."""
    net = getattr(context.resources, source.resource_key).network()
    show = net.show(scope.show)

    def words(text: str) -> str:
        return net.in_own_words(source.api, show, text)

    meta = dict(exc.metadata or {})
    if isinstance(meta.get("setting"), str):
        meta["setting"] = words(meta["setting"])
    return dg.Failure(description=words(exc.description or ""), metadata=meta,
                      allow_retries=exc.allow_retries)


def partition_window(context: dg.AssetExecutionContext) -> tuple[date, date]:
    tw = context.partition_time_window
    return tw.start.date(), (tw.end - timedelta(days=1)).date()


def _window(context: dg.AssetExecutionContext, table: Table, now: datetime) -> tuple[date, date]:
    """The days this run replaces: the partition window, or a snapshot's own UTC day."""
    if table.kind == "snapshot":
        return now.date(), now.date()
    return partition_window(context)


def materialize_endpoint(context: dg.AssetExecutionContext, source: Source,
                         ep: Endpoint, scope: Scope | None = None) -> dg.MaterializeResult:
    table = ep.table
    fetched_at = utc_now()  # a snapshot is stored under this UTC day, with this as_of

    def credential(api: str) -> str:  # the unit of the 401 verdict
        return scope.credential_id(api) if scope else api

    who = {"credential": scope.credential, "show": scope.show} if scope else {}
    start, end = _window(context, table, fetched_at)
    api_resource = getattr(context.resources, source.resource_key)
    show = scope.show if scope else None
    _refuse_if_credential_dead(context, credential(source.api), table, start, who,
                               lambda: api_resource.backend_name(show))
    try:
        settings = api_resource.settings(show)
        _check_local_config(context, table, start)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False,
                         metadata={"error_kind": "config_error", "setting": exc.setting,
                                   **who}) from None
    show_id = source.show_id(settings)
    episode_ids = (_episode_ids(context, source, table, show_id, show)
                   if table.episode_level else None)
    # The credential's whole allowance: its pool lets one step at a time (politeness.py).
    concurrency = politeness.calls_per_step(source.api, Settings.load())

    raw: list[RawResponse] = []
    lock = threading.Lock()
    stage = (warehouse.Stage(table, show_id, start, end)
             if ep.stage is not None and table.kind == "ranged" else None)

    def record(r: RawResponse) -> None:
        if stage is not None:  # the body goes to disk, not into a list of the whole window
            stage.record(r)
            return
        with lock:
            raw.append(r)

    what = f"the snapshot of {start}" if table.kind == "snapshot" else f"{start}..{end}"
    context.log.info(f"{table.qualified}: fetching {what} ({table.kind})")
    try:
        return _fetch_and_store(context, source, ep, scope, start, end, show_id, episode_ids,
                                concurrency, stage, raw, record, fetched_at, what)
    finally:
        if stage is not None:
            stage.close()


def _fetch_and_store(context: dg.AssetExecutionContext, source: Source, ep: Endpoint,
                     scope: Scope | None, start: date, end: date, show_id: str,
                     episode_ids: list[int] | None, concurrency: int,
                     stage: warehouse.Stage | None, raw: list[RawResponse],
                     record: Callable[[RawResponse], None], fetched_at: datetime,
                     what: str) -> dg.MaterializeResult:
    table = ep.table
    api_resource = getattr(context.resources, source.resource_key)
    stats = CallStats()

    def credential(api: str) -> str:  # the unit of the 401 verdict
        return scope.credential_id(api) if scope else api

    who = {"credential": scope.credential, "show": scope.show} if scope else {}
    show = scope.show if scope else None
    try:
        # share_key: the steps of one run bootstrap the Anchor station id once, not each.
        # The run's 401 verdict, checked before every request of every step and thread.
        verdict = CredentialVerdict(
            load=lambda api: credential(api) in _dead_apis(context),
            publish=lambda api: _mark_credential_dead(context, credential(api)))
        # The calls, not the write, under the credential's lock: its next step may call while
        # this one writes.
        pool = politeness.pool(source.api, scope.credential if scope else DEFAULT_NAME)
        with politeness.calling(context.resources.warehouse.database, pool,
                                on_wait=context.log.info), \
                api_resource.client(recorder=record, stats=stats, share_key=context.run.run_id,
                                    verdict=verdict, show=show) as client:
            if stage is not None and ep.stage is not None:
                ep.stage(client, start, end, stage, concurrency)
                stage.finish()  # dedupe and count per day, before the write lock is taken
                requests_per_day = dict.fromkeys(days(start, end), stats.requests)
            else:
                frame, requests_per_day = _fetch(context, ep, client, start, end, stats,
                                                 episode_ids, concurrency)
            if stage is None and table.has_backend:  # anchor.*: which backend filled the rows
                frame["backend"] = getattr(client, "backend", None)
    except politeness.CredentialBusy as exc:  # waited an hour already: say so, do not retry
        raise dg.Failure(description=f"{table.qualified}: {exc}", allow_retries=False,
                         metadata={"error_kind": "credential_busy", **who}) from None
    except ConfigError as exc:  # found only once the API answered (e.g. which show to read)
        raise dg.Failure(description=f"{table.qualified}: {exc}", allow_retries=False,
                         metadata={"error_kind": "config_error", "setting": exc.setting,
                                   **who}) from None
    except CredentialsExpired as exc:
        _mark_credential_dead(context, credential(source.api))
        raise _failure(exc, table, start, allow_retries=False, end=end, who=who) from None
    except ApiError as exc:
        # The session already fetched a malformed body 3 times; a step retry seconds later
        # would only repeat every request of the window and fail the same way.
        retry = not isinstance(exc, MalformedResponse)
        raise _failure(exc, table, start, allow_retries=retry, end=end, who=who) from None

    known = [c for c, _ in table.columns]
    drift = [c for c in (stage.extras if stage is not None else frame.columns)
             if c not in known and c not in ep.unstored
             and c not in ("partition_date", "as_of", "backend")]
    if stage is not None:
        answer: pd.DataFrame | warehouse.Stage = stage
        duplicates = stage.duplicates
        frame = stage.sample(PREVIEW_ROWS)  # all the metadata needs of the rows themselves
    else:
        frame, duplicates = _drop_duplicates(frame, known + ["partition_date"])
        answer = frame
    if duplicates:
        context.log.warning(f"{table.qualified}: dropped {duplicates} duplicate rows the API sent")

    try:
        store = context.resources.warehouse
        with store.writer(on_wait=context.log.info) as con:
            result = warehouse.replace_window(con, table, show_id, start, end, answer, raw,
                                              fetched_at, max_shrink=store.max_shrink_fraction,
                                              on_retry=context.log.info)
    except ApiError as exc:  # completeness refused the answer: the same one would come back
        raise _failure(exc, table, start, allow_retries=False, end=end, who=who) from None
    except (warehouse.WarehouseBusy, warehouse.WarehouseWriteError) as exc:
        # We already waited the configured time; a step retry would only hold the run longer.
        kind = ("warehouse_busy" if isinstance(exc, warehouse.WarehouseBusy) else
                "write_conflict" if isinstance(exc, warehouse.WarehouseConflict) else
                "write_failed")
        raise dg.Failure(description=str(exc), allow_retries=False,
                         metadata={"error_kind": kind, "asset": table.qualified,
                                   "first_partition": str(start)}) from None
    context.log.info(f"{table.qualified}: replaced {what} with {result.rows} rows "
                     f"({stats.requests} requests, {stats.retries} retries)")

    empty = [d for d in days(start, end) if not result.rows_per_day.get(d)]
    if empty:
        context.log.warning(f"{table.qualified}: the API returned no rows for "
                            f"{len(empty)} of {(end - start).days + 1} days ({_spans(empty)}); "
                            "they are stored empty. " + NO_ROWS_HINT)
    numeric = [c for c, sql in table.columns if sql in ("BIGINT", "DOUBLE")]
    metadata = _metadata(table, frame, result, stats, start, end, duplicates,
                         stage.nulls(numeric) if stage is not None else None)
    if table.kind != "snapshot":
        headline = (pd.Series(result.rows_per_day, dtype="int64") if stage is not None
                    else _headline_per_day(table, frame))
        for day in days(start, end):
            context.add_asset_metadata(
                _day_metadata(table, day, result, headline, requests_per_day.get(day, 0)),
                partition_key=day.isoformat())
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="no_schema_drift", passed=not drift,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unknown_columns": ", ".join(drift) or "none",
                      "note": "new columns are kept in raw.responses; update tables.py"},
        )],
    )


NO_ROWS_HINT = ("Days before the show existed, before the API keeps data, or without a play "
              "or download have none; if you expected data, check the dates and re-run them.")


def _spans(days_: list[date]) -> str:
    """2025-01-01..2025-01-03, 2025-01-07 — consecutive days as ranges."""
    spans: list[tuple[date, date]] = []
    for d in days_:
        if spans and d == spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], d)
        else:
            spans.append((d, d))
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


def _episode_ids(context: dg.AssetExecutionContext, source: Source, table: Table,
                 show_id: str, show: str | None = None) -> list[int]:
    """Published episode ids of the latest ``source.episode_list`` snapshot in the warehouse."""
    listing = source.episode_list
    assert listing is not None, f"{table.qualified} is episode-level but {source.api} lists none"
    with context.resources.warehouse.writer(on_wait=context.log.info) as con:
        day, ids = warehouse.latest_episode_ids(con, listing, show_id)
    if day is None:
        raise dg.Failure(
            description=(f"{table.qualified} needs the episode list, but {listing.qualified} has "
                         f"no snapshot for {show_id} yet: materialize "
                         f"{asset_key(listing, show).to_user_string()} first (the daily run does, "
                         "before this asset), then this asset again."),
            allow_retries=False,
            metadata={"error_kind": "missing_upstream", "asset": table.qualified,
                      "upstream": listing.qualified})
    context.log.info(f"{table.qualified}: {len(ids)} published episodes from {listing.qualified} "
                     f"(snapshot of {day})")
    return ids


def _fetch(context: dg.AssetExecutionContext, ep: Endpoint, client: Any, start: date, end: date,
           stats: CallStats, episode_ids: list[int] | None, concurrency: int,
           ) -> tuple[pd.DataFrame, dict[date, int]]:
    """The rows of the window, and per day the requests whose answer covered that day."""
    table = ep.table
    if episode_ids is not None:
        ids = episode_ids
        args = (start, end) if table.kind == "ranged" else ()
        done = iter(range(1, len(ids) + 1))  # next() on a range iterator is thread-safe

        def one(episode_id: int) -> pd.DataFrame:
            part = ep.fetch(client, episode_id, *args)
            n = next(done)
            if n % 10 == 0 or n == len(ids):
                context.log.info(f"{table.qualified}: {n}/{len(ids)} episodes fetched")
            return part

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            parts = list(pool.map(one, ids))
        frame = _concat(parts, table)
    elif table.kind == "per_day":
        window = list(days(start, end))
        done = iter(range(1, len(window) + 1))

        def day_of(day: date) -> tuple[pd.DataFrame, int]:
            before = stats.requests_of_this_thread()
            part = ep.fetch(client, day)
            part["partition_date"] = day
            n = next(done)
            if n % 30 == 0:
                context.log.info(f"{table.qualified}: {n} of {len(window)} days fetched")
            return part, stats.requests_of_this_thread() - before

        # The first day alone (it may bootstrap the client, once), then a few at a time:
        # each day is its own request, so the window's wall time is latency ÷ concurrency.
        answers = [day_of(window[0])]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers += pool.map(day_of, window[1:])
        per_day = {day: n for day, (_, n) in zip(window, answers, strict=True)}
        return _concat([part for part, _ in answers], table), per_day
    elif table.kind == "ranged":
        frame = ep.fetch(client, start, end)
    else:
        frame = ep.fetch(client)

    frame = frame.copy()
    if table.kind == "ranged":
        frame["partition_date"] = pd.to_datetime(frame["date"]).dt.date if len(frame) else []
    elif table.kind == "snapshot":
        frame["partition_date"] = start
    # One answer (or one per episode) covered the whole window.
    return frame, dict.fromkeys(days(start, end), stats.requests)


def _drop_duplicates(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Drop rows repeated in every known column (the API sent the same row twice)."""
    if not len(frame):
        return frame, 0
    keys = frame[[c for c in frame.columns if c in columns]]
    try:
        repeated = keys.duplicated()
    except TypeError:  # list cells (e.g. weekly_downloads) are unhashable
        repeated = keys.astype(str).duplicated()
    return frame.loc[~repeated], int(repeated.sum())


def _concat(parts: list[pd.DataFrame], table: Table) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=[c for c, _ in table.columns] + ["partition_date"])
    return pd.concat(parts, ignore_index=True)


def _dead_apis(context: dg.AssetExecutionContext) -> set[str]:
    """Credentials (see DEAD_CREDENTIAL_TAG) that met a 401 earlier in this very run (not in
    a parent it was copied from)."""
    run_id = context.run.run_id
    run = context.instance.get_run_by_id(run_id)
    owner, _, apis = (run.tags.get(DEAD_CREDENTIAL_TAG, "") if run else "").partition(":")
    return set(apis.split(",")) - {""} if owner == run_id else set()


def _mark_credential_dead(context: dg.AssetExecutionContext, api: str) -> None:
    apis = ",".join(sorted(_dead_apis(context) | {api}))  # keep the other API's verdict
    context.instance.add_run_tags(context.run.run_id,
                                  {DEAD_CREDENTIAL_TAG: f"{context.run.run_id}:{apis}"})


def _refuse_if_credential_dead(context: dg.AssetExecutionContext, credential: str, table: Table,
                               start: date, who: dict[str, str],
                               backend: Callable[[], str]) -> None:
    if credential in _dead_apis(context):
        api = credential.partition("@")[0]
        try:  # the message names the backend's own credential (sp_dc over GraphQL)
            which = backend() if api == "anchor" else None
        except ConfigError:
            which = None
        exc = CredentialsExpired(api, table.name, status=None, backend=which,
                                 reason="an earlier step of this run got 401; not calling again")
        raise _failure(exc, table, start, allow_retries=False, who=who)


def _check_local_config(context: dg.AssetExecutionContext, table: Table, start: date) -> None:
    """Settings besides the API's, checked before any request so a bad one costs no calls."""
    first = Settings.load().start_date  # this process's; the definitions may be older
    if table.kind != "snapshot" and start < first:
        raise ConfigError(START_DATE_ENV, f"is {first}, after the requested partition {start}",
                          f"Set {START_DATE_ENV} to {start} or earlier and reload the code "
                          f"location, or materialize partitions from {first} on")
    context.resources.warehouse.check()


def _failure(exc: ApiError, table: Table, first_partition: date, *, allow_retries: bool,
             end: date | None = None, who: dict[str, str] | None = None) -> dg.Failure:
    span = f"{first_partition}..{end}" if end and end != first_partition else str(first_partition)
    return dg.Failure(
        description=f"{table.qualified} partition {span}: {exc}",
        allow_retries=allow_retries,
        metadata={"error_kind": exc.kind, "api": exc.api, "endpoint": exc.endpoint,
                  "asset": table.qualified, "first_partition": str(first_partition),
                  "status": exc.status if exc.status is not None else -1,
                  **(who or {})},  # a network's show and its account / token
    )


def _headline_per_day(table: Table, frame: pd.DataFrame) -> pd.Series | None:
    if not table.headline or not len(frame):
        return None
    by_day = pd.to_datetime(frame["partition_date"]).dt.date
    if table.headline in frame.columns:
        return pd.to_numeric(frame[table.headline], errors="coerce").groupby(by_day).sum()
    return frame.groupby(by_day).size()  # e.g. downloads: one row per download


def _metadata(table: Table, frame: pd.DataFrame, result: warehouse.WriteResult, stats: CallStats,
              start: date, end: date, duplicates: int,
              nulls: dict[str, int] | None = None) -> dict[str, Any]:
    """What holds for the whole run. A windowed run's per-day numbers go on each partition
    (``_day_metadata``): Dagster copies this metadata onto every partition of the window."""
    meta: dict[str, Any] = {
        "dagster/table_name": table.qualified,
        "dagster/column_schema": _column_schema(table),
        "retries": dg.MetadataValue.int(stats.retries),
        "malformed_refetches": dg.MetadataValue.int(stats.malformed_retries),
        "preview": dg.MetadataValue.md(_preview(frame, table)),
    }
    if table.kind == "snapshot":
        meta["snapshot_date"] = str(start)
        meta["dagster/row_count"] = dg.MetadataValue.int(result.rows)
        meta["requests"] = dg.MetadataValue.int(stats.requests)
        headline = _headline_per_day(table, frame)
        if table.headline:
            meta[table.headline] = dg.MetadataValue.int(
                int(headline.sum()) if headline is not None else 0)
        if result.rows == 0:
            meta["note"] = "The API returned no rows: the snapshot is stored empty."
    else:
        meta["window"] = f"{start}..{end}"
        meta["window_rows"] = dg.MetadataValue.int(result.rows)
        meta["window_requests"] = dg.MetadataValue.int(stats.requests)
    if duplicates:
        meta["duplicates_dropped"] = dg.MetadataValue.int(duplicates)
    if nulls is None:  # ``frame`` holds every row (not a staged answer's sample)
        nulls = {c: int(frame[c].isna().sum()) for c, sql in table.columns
                 if sql in ("BIGINT", "DOUBLE") and c in frame.columns}
    if any(nulls.values()):  # stored as NULL, never as 0: say so rather than let sums hide it
        meta["null_numbers"] = ", ".join(f"{c}: {n} of {result.rows} rows"
                                         for c, n in nulls.items() if n)
    return meta


def _day_metadata(table: Table, day: date, result: warehouse.WriteResult,
                  headline: pd.Series | None, requests: int) -> dict[str, Any]:
    """One partition's own numbers, so the Partitions-mode plots draw the daily series."""
    rows = int(result.rows_per_day.get(day, 0))
    meta: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(rows),
                            "requests": dg.MetadataValue.int(requests)}
    if table.headline:
        value = headline.get(day, 0) if headline is not None else 0
        meta[table.headline] = dg.MetadataValue.int(int(value))
    if rows == 0:
        meta["note"] = ("The API returned no rows for this day: the partition is stored empty. "
                        + NO_ROWS_HINT)
    return meta


def _preview(frame: pd.DataFrame, table: Table) -> str:
    cols = [c for c, _ in table.columns][:8]
    head = frame[[c for c in cols if c in frame.columns]].head(PREVIEW_ROWS)
    if head.empty:
        return "_no rows_"
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(str(v)[:40] for v in row) + " |")
    return "\n".join(lines)
