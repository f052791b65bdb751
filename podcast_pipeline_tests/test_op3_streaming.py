"""OP3's long answers are staged page by page and replace their window in one transaction.

A loopback server answers the real client; the assets write a real DuckDB file. An answer
that breaks off mid-stream (after pages were already staged) must leave the stored window
and its raw bodies exactly as they were; a multi-page answer stores every row once.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.op3.assets import _spans, op3_assets
from podcast_pipeline.resources import Op3Resource, WarehouseResource
from podcast_pipeline.tables import TABLES_BY_KEY
from podcast_pipeline_tests.recorded import FakeServer, Request
from podcast_pipeline_tests.test_recorded_op3 import API, SHOW, TOKEN, tsv, tsv_reply, tsv_row

ASSETS = {a.key.to_user_string(): a for a in op3_assets}
START, END = "2025-03-01", "2025-03-03"
DOWNLOADS = f"{API}/downloads/show/{SHOW}"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


def materialize(server: FakeServer, db: Path, key: str) -> dg.ExecuteInProcessResult:
    resources = {"op3": Op3Resource(base_url=server.url + API, token=TOKEN, show_uuid=SHOW,
                                    url_prefix="https://op3.dev/e/example.com/*",
                                    max_retries=1, backoff_factor=0.0),
                 "warehouse": WarehouseResource(database=str(db))}
    return dg.materialize([ASSETS[key]], resources=resources,
                          tags={"dagster/asset_partition_range_start": START,
                                "dagster/asset_partition_range_end": END},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def stored(db: Path, table: str) -> tuple[list[tuple], list[tuple]]:
    """(every row without fetched_at, every raw body with its coverage) of ``table``."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(f"SELECT * EXCLUDE (fetched_at) FROM {table} ORDER BY ALL").fetchall()
        raw = con.execute("SELECT request_seq, path, body, covers_start, covers_end FROM "
                          f"({warehouse.WHOLE_BODIES}) WHERE asset = ? ORDER BY ALL",
                          [table]).fetchall()
    finally:
        con.close()
    return rows, raw


def pages(*replies: tuple[int, dict[str, str], str]) -> Callable[[Request], tuple]:
    """Page n answers the n-th continuation token ("t1", "t2", …); the first has none."""
    def route(req: Request) -> tuple:
        token = req.params.get("continuationToken")
        return replies[int(token[1:]) if token else 0]
    return route


def test_multi_page_download_answer_stores_every_row_once(server: FakeServer,
                                                          tmp_path: Path) -> None:
    server.routes[DOWNLOADS] = pages(
        tsv_reply(tsv(tsv_row("2025-03-01T00:00:01.000Z", 1), tsv_row("2025-03-01T10:00:00.000Z", 2)),
                  "t1"),
        tsv_reply(tsv(tsv_row("2025-03-02T00:00:00.000Z", 3), tsv_row("2025-03-03T23:59:59.999Z", 4)),
                  "t2"),
        tsv_reply(tsv()))
    db = tmp_path / "w.duckdb"

    result = materialize(server, db, "op3/downloads")

    assert result.success
    rows, raw = stored(db, "op3.downloads")
    urls = sorted(r[4] for r in rows)  # show_id, partition_date, time, date, url, …
    assert urls == [f"https://op3.dev/e/ex.com/{n}.mp3" for n in (1, 2, 3, 4)]
    assert [(r[1], r[3]) for r in sorted(rows, key=lambda r: r[4])] == [
        (date(2025, 3, 1),) * 2, (date(2025, 3, 1),) * 2, (date(2025, 3, 2),) * 2,
        (date(2025, 3, 3),) * 2]
    # One raw body per page, in order, each the truth for the whole window.
    assert [seq for seq, *_ in raw] == [0, 1, 2]
    assert {(lo, hi) for *_, lo, hi in raw} == {(date(2025, 3, 1), date(2025, 3, 3))}
    meta = next(e.materialization.metadata for e in result.all_events
                if e.is_step_materialization)
    assert meta["window_rows"].value == 4


@pytest.mark.parametrize("breakage", ["repeated token", "broken page", "server error"])
def test_download_answer_breaking_off_mid_stream_changes_nothing(
        server: FakeServer, tmp_path: Path, breakage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "temp"  # where the stage file goes: it must be gone afterwards
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    db = tmp_path / "w.duckdb"
    server.routes[DOWNLOADS] = pages(
        tsv_reply(tsv(tsv_row("2025-03-01T08:00:00.000Z", 7)), "t1"), tsv_reply(tsv()))
    assert materialize(server, db, "op3/downloads").success
    before = stored(db, "op3.downloads")
    assert len(before[0]) == 1

    # Page 1 is new and staged, then the answer stops being provably complete.
    last = {"repeated token": tsv_reply(tsv(tsv_row("2025-03-02T00:00:00.000Z", 9)), "t1"),
            "broken page": tsv_reply(tsv(tsv_row("2025-03-02T00:00:00.000Z", 9))[:-30]),
            "server error": (500, {"Content-Type": "application/json"}, '{"error":"x"}')}
    server.routes[DOWNLOADS] = pages(
        tsv_reply(tsv(*[tsv_row(f"2025-03-01T0{h}:00:00.000Z", h) for h in range(1, 6)]), "t1"),
        last[breakage])

    result = materialize(server, db, "op3/downloads")

    assert not result.success
    assert stored(db, "op3.downloads") == before
    assert [p.name for p in temp.iterdir() if p.name.startswith(("podcast_pipeline_stage_",
                                                                  "op3_page_"))] == []


def hits_route(per_day: int, fail_after_first: bool = False) -> Callable[[Request], tuple]:
    """A /redirect-logs that pages by time: ``per_day`` rows a day, 1,000 per page."""
    def rows_from(start: str, end: str) -> list[dict[str, str]]:
        days = [d for d in ("2025-03-01", "2025-03-02", "2025-03-03") if start[:10] <= d < end[:10]]
        return [{"uuid": f"{d}-{n:05d}", "time": f"{d}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
                 f"{n % 60:02d}.000Z", "method": "GET", "url": "https://op3.dev/e/example.com/1"}
                for d in days for n in range(per_day)]

    asked: list[str] = []

    def route(req: Request) -> tuple:
        start, end = req.params["start"], req.params["end"]
        asked.append(start)
        if fail_after_first and len(asked) > 1:
            return 500, {"Content-Type": "application/json"}, '{"error":"gone"}'
        rows = [r for r in rows_from(start, end) if r["time"] >= start][:1000]
        return 200, {"Content-Type": "application/json"}, json.dumps({"rows": rows})
    return route


def test_redirect_logs_in_parallel_runs_store_each_row_once(
        server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODCAST_PIPELINE_OP3_CONCURRENCY", "3")
    server.routes[f"{API}/redirect-logs"] = hits_route(per_day=1500)
    db = tmp_path / "w.duckdb"

    result = materialize(server, db, "op3/redirect_logs")

    assert result.success, [e.step_failure_data.error.message for e in result.all_events
                            if e.is_step_failure]
    rows, raw = stored(db, "op3.redirect_logs")
    uuids = [r[4] for r in rows]  # show_id, partition_date, time, date, uuid
    assert len(uuids) == len(set(uuids)) == 3 * 1500
    # Three runs of one day each, every body covering its own day only.
    assert _spans(date(2025, 3, 1), date(2025, 3, 3), 3) == [
        (date(2025, 3, d), date(2025, 3, d)) for d in (1, 2, 3)]
    assert {(lo, hi) for *_, lo, hi in raw} == {(date(2025, 3, d), date(2025, 3, d))
                                                for d in (1, 2, 3)}
    count = duckdb.connect(str(db), read_only=True).execute(
        "SELECT partition_date, count(*) FROM op3.redirect_logs GROUP BY 1 ORDER BY 1").fetchall()
    assert count == [(date(2025, 3, d), 1500) for d in (1, 2, 3)]


def test_redirect_logs_failing_in_one_run_changes_nothing(
        server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODCAST_PIPELINE_OP3_CONCURRENCY", "3")
    db = tmp_path / "w.duckdb"
    server.routes[f"{API}/redirect-logs"] = hits_route(per_day=10)
    assert materialize(server, db, "op3/redirect_logs").success
    before = stored(db, "op3.redirect_logs")
    assert len(before[0]) == 30

    # The first page (1,000 new rows) is staged, then every other request fails.
    server.routes[f"{API}/redirect-logs"] = hits_route(per_day=1500, fail_after_first=True)
    result = materialize(server, db, "op3/redirect_logs")

    assert not result.success
    assert stored(db, "op3.redirect_logs") == before


def one_row_page(stage: warehouse.Stage, day: str) -> None:
    """Table ``page`` of the stage's connection: one downloads row at 01:00 UTC of ``day``."""
    stage.con.execute(f"CREATE TABLE page AS SELECT TIMESTAMPTZ '{day} 01:00:00+00' AS time, "
                      f"DATE '{day}' AS date, " + ", ".join(
                          f"CAST(? AS VARCHAR) AS {c}" for c, _ in stage.table.columns[2:]),
                      [SHOW if c == "show_uuid" else "x" for c, _ in stage.table.columns[2:]])


def test_stage_refuses_a_page_outside_the_window(tmp_path: Path) -> None:
    table = TABLES_BY_KEY["op3.downloads"]
    with warehouse.Stage(table, SHOW, date(2025, 3, 1), date(2025, 3, 1)) as stage:
        one_row_page(stage, "2025-03-02")
        with pytest.raises(Exception, match="outside the requested 2025-03-01..2025-03-01"):
            stage.add_table("page", [c for c, _ in table.columns])
        assert stage.rows == 0


def test_a_staged_replace_runs_in_the_small_pool_and_gives_the_writer_its_own_back(
        tmp_path: Path) -> None:
    """The dedupe and the replace read Parquet only, at ``STAGED_MEMORY_LIMIT``; the writer
    keeps its own limit for the next write, and the rows survive the stage's reconnect."""
    table = TABLES_BY_KEY["op3.downloads"]
    limit = "SELECT current_setting('memory_limit')"
    with warehouse.Stage(table, SHOW, date(2025, 3, 1), date(2025, 3, 1)) as stage, \
            warehouse.connect(str(tmp_path / "w.duckdb")) as con:
        staging = stage.con.execute(limit).fetchone()
        one_row_page(stage, "2025-03-01")
        stage.add_table("page", [c for c, _ in table.columns])
        stage.finish()
        with duckdb.connect(config={"memory_limit": warehouse.STAGED_MEMORY_LIMIT}) as small:
            expected = small.execute(limit).fetchone()
        assert stage.con.execute(limit).fetchone() == expected
        assert staging != expected  # parsing pages keeps the larger limit
        warehouse.ensure_schema(con)
        before = con.execute(limit).fetchone()
        result = warehouse.replace_window(con, table, SHOW, date(2025, 3, 1), date(2025, 3, 1),
                                          stage, [], datetime(2025, 3, 2, tzinfo=UTC))
        assert result.rows == 1
        assert con.execute(limit).fetchone() == before
        assert con.execute(f"SELECT count(*) FROM {table.qualified}").fetchone() == (1,)
