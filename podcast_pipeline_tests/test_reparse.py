"""Re-parsing raw.responses gives back the tables exactly, after overlapping writes.

Four assets (a ranged single request, a per-day breakdown, OP3 downloads and OP3's
time-paged redirect logs) are written in overlapping windows, each fetch answering a
little differently (a proxy marks plays and download URLs with the run's number), so
the latest fetch of a day must win. Then the raw bodies are replayed through the very
same assets from a loopback server that answers only from raw.responses, one coverage
group at a time, and the rows each group covers are compared with the tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.tables import TABLES_BY_KEY
from podcast_pipeline_tests.hostile import Hostile, Request, send
from podcast_pipeline_tests.tamper import Answer, Tamper

TODAY = date(2025, 6, 1)
ASSETS = {a.key.to_user_string(): a for a in [*anchor_assets, *op3_assets]}
KEYS = ["anchor/plays", "anchor/plays_by_gender", "op3/downloads", "op3/redirect_logs"]
# Overlapping windows: the second overlaps the first's end, the third lands inside the
# first (splitting its coverage), the fourth is one day the second already had.
WINDOWS = [("2025-05-01", "2025-05-12"), ("2025-05-09", "2025-05-16"),
           ("2025-05-03", "2025-05-04"), ("2025-05-16", "2025-05-16")]
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def resources(env: dict[str, str], db: str) -> dict[str, Any]:
    fast = {"max_retries": 1, "backoff_factor": 0.0}
    return {
        "anchor": AnchorResource(base_url=env["ANCHOR_BASE_URL"], cookie=env["ANCHOR_PW_S"],
                                 webstation_id=env["ANCHOR_WEBSTATION_ID"], **fast),
        "op3": Op3Resource(base_url=env["OP3_BASE_URL"], token=env["OP3_TOKEN"],
                           show_uuid=env["OP3_SHOW_UUID"], url_prefix=env["OP3_URL_PREFIX"],
                           **fast),
        "warehouse": WarehouseResource(database=db)}


def materialize(keys: list[str], env: dict[str, str], db: str, start: str, end: str) -> None:
    result = dg.materialize([ASSETS[k] for k in keys], resources=resources(env, db),
                            tags=dict(zip(RANGE_TAGS, (start, end), strict=True)),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events
                            if e.is_step_failure]


def contents(db: str, key: str, days: tuple[date, date] | None = None) -> list[tuple]:
    table = TABLES_BY_KEY[key.replace("/", ".")]
    cols = [c for c, _ in warehouse.table_columns(table) if c not in warehouse.VOLATILE_COLUMNS]
    where = " WHERE partition_date BETWEEN ? AND ?" if days else ""
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(f"SELECT {', '.join(cols)} FROM {table.qualified}{where}",
                           list(days) if days else []).fetchall()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=5, today=TODAY)) as emulator:
        yield emulator


def test_replaying_each_days_raw_bodies_rebuilds_the_tables(
        emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "podcast.duckdb")
    run = itertools.count(1)
    current = [0]

    def mark_plays(path: str, answer: Answer) -> Answer:
        body = answer.json()
        for row in body["data"]["rows"]:
            row[1] += 1000 * current[0]
        return answer.with_json(body)

    def mark_urls(path: str, answer: Answer) -> Answer:
        text = answer.body.decode().replace(".mp3\t", f".mp3?run={current[0]}\t")
        return Answer(answer.status, answer.headers, text.encode())

    with Tamper(emu.url) as proxy:
        proxy.rewrite(r"/analytics/station/\d+/plays\?", mark_plays)
        proxy.rewrite(r"/downloads/show/", mark_urls)
        env = proxy.env(emu.env)
        for start, end in WINDOWS:
            current[0] = next(run)
            materialize(KEYS, env, db, start, end)

    with duckdb.connect(db, read_only=True) as con:
        # Each body whole again from its stored parts, as the README's query does it.
        raw = con.execute("SELECT asset, endpoint, path, body, window_start, window_end, "
                          f"covers_start, covers_end FROM ({warehouse.WHOLE_BODIES})").fetchall()
    # The overlaps really happened: coverage was trimmed and split, and no day is covered
    # by two writes' bodies of the same endpoint.
    assert any(r[4:6] != r[6:8] for r in raw)
    for key in KEYS:
        table = key.replace("/", ".")
        spans = {(r[4], r[5], r[6], r[7]) for r in raw if r[0] == table and r[1] == table.split(".")[1]}
        days = [d for _, _, s, e in spans for d in _days(s, e)]
        assert len(days) == len(set(days)), f"{table}: a day covered twice"
        marked = contents(db, key)
        assert marked, table

    # Replay: a server that knows only raw.responses.
    for key in KEYS:
        table = key.replace("/", ".")
        endpoint = table.split(".")[1]
        rows = [r for r in raw if r[0] == table]
        groups = sorted({(r[4], r[5], r[6], r[7]) for r in rows if r[1] == endpoint})
        if TABLES_BY_KEY[table].kind == "per_day":  # one body per day: replay all days at once
            groups = [(min(g[2] for g in groups), max(g[3] for g in groups)) * 2]
        rebuilt: list[tuple] = []
        for w_start, w_end, c_start, c_end in groups:
            # The station-id bootstrap may be kept with whichever asset of the run made it.
            bodies = {r[2]: r[3] for r in raw if r[1] == "station_id"}
            per_day = TABLES_BY_KEY[table].kind == "per_day"
            bodies.update({r[2]: r[3] for r in rows if r[1] == endpoint and (
                per_day or (r[4], r[5], r[6], r[7]) == (w_start, w_end, c_start, c_end))})
            first, last = (c_start, c_end) if per_day else (w_start, w_end)
            if endpoint == "redirect_logs":  # paged in runs of days, each its own requests
                first, last = _requested_days([p for p in bodies if "/redirect-logs?" in p])
                monkeypatch.setenv("PODCAST_PIPELINE_OP3_CONCURRENCY", "1")
            scratch = str(tmp_path / f"replay-{endpoint}-{c_start}.duckdb")
            with Hostile() as replay:
                replay.route("^/", _serve(bodies))
                env = {**emu.env, "ANCHOR_BASE_URL": replay.url + "/pod/api/proxy/v3",
                       "OP3_BASE_URL": replay.url + "/api/1"}
                materialize([key], env, scratch, first.isoformat(), last.isoformat())
                assert not [r for r in replay.requests if r.target not in bodies]
            rebuilt += contents(scratch, key, (c_start, c_end))
        assert sorted(rebuilt, key=repr) == sorted(contents(db, key), key=repr), table


def _requested_days(paths: list[str]) -> tuple[date, date]:
    """The days a run of time-paged requests asked for: its first ``start``, its ``end``
    (exclusive, so the day before)."""
    queries = [dict(parse_qsl(urlsplit(p).query)) for p in paths]
    first = min(q["start"] for q in queries if "start" in q)
    (end,) = {q["end"] for q in queries}
    return date.fromisoformat(first[:10]), date.fromordinal(date.fromisoformat(end).toordinal() - 1)


def _days(start: date, end: date) -> list[date]:
    return [date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1)]


def _serve(bodies: dict[str, str]):
    def handle(req: Request, conn: Any) -> None:
        body = bodies.get(req.target)
        if body is None:
            send(conn, 404, body=b'{"message":"not in raw.responses"}')
            return
        kind = "application/json" if body.lstrip()[:1] in ("{", "[") else \
            "text/tab-separated-values"
        send(conn, 200, {"Content-Type": kind}, body.encode())
    return handle
