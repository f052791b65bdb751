"""The replace rule (completeness.py) and the raw bodies' coverage, on real DuckDB files.

What may replace a window (rows in the window, values in their contract, no silent
emptying or shrinking), how raw.responses keeps each day covered by exactly one write,
secrets echoed into cells, and a disk that fills up during COMMIT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from podcast_pipeline import completeness, warehouse
from podcast_pipeline.errors import MalformedResponse, RefusedReplace
from podcast_pipeline.http import RawResponse
from podcast_pipeline.redact import register_secret
from podcast_pipeline.tables import TABLES_BY_KEY

PLAYS = TABLES_BY_KEY["anchor.plays"]
GENDER = TABLES_BY_KEY["anchor.plays_by_gender"]
DOWNLOADS = TABLES_BY_KEY["op3.downloads"]
NOW = datetime(2026, 11, 20, 6, tzinfo=UTC)
D = date(2026, 11, 1)


def day(n: int) -> date:
    return D + timedelta(days=n - 1)


def plays(values: dict[date, int | None]) -> pd.DataFrame:
    return pd.DataFrame({"date": list(values), "plays": pd.array(list(values.values()),
                                                                 dtype="Int64"),
                         "partition_date": list(values)})


def body(tag: str, covers: tuple[date, date] | None = None) -> RawResponse:
    return RawResponse("anchor", "plays", f"/plays?{tag}", 200, f'{{"tag":"{tag}"}}', NOW,
                       covers=covers)


def write(db: str, frame: pd.DataFrame, start: date, end: date, raw: list[RawResponse] | None = None,
          table=PLAYS, max_shrink: float = completeness.DEFAULT_MAX_SHRINK) -> warehouse.WriteResult:
    with warehouse.connect(db) as con:
        warehouse.ensure_schema(con)
        return warehouse.replace_window(con, table, "show1", start, end, frame,
                                        raw if raw is not None else [body("w")], NOW,
                                        max_shrink=max_shrink)


def rows(db: str, table=PLAYS) -> list[tuple]:
    with duckdb.connect(db, read_only=True) as con:
        stamp = ", backend" if table.has_backend else ""  # the warehouse's, not the answer's
        return con.execute(f"SELECT partition_date, * EXCLUDE (show_id, partition_date, "
                           f"fetched_at{stamp}) FROM {table.qualified} ORDER BY ALL").fetchall()


def coverage(db: str) -> list[tuple[str, date, date]]:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute("SELECT path, covers_start, covers_end FROM raw.responses "
                           "ORDER BY covers_start, path").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "w.duckdb")


# ---------------------------------------------------------------------- which answers replace
def test_a_day_the_answer_leaves_out_is_not_emptied(db: str) -> None:
    write(db, plays({day(d): 10 for d in range(1, 4)}), day(1), day(3))
    with pytest.raises(RefusedReplace, match=f"{day(2)} would go from 1 rows to none, though "
                       "the API did not say it is empty"):
        write(db, plays({day(1): 11, day(3): 13}), day(1), day(3))
    assert [r[2] for r in rows(db)] == [10, 10, 10]


def test_an_explicitly_empty_window_empties_every_day_and_says_so(db: str) -> None:
    write(db, plays({day(d): 10 for d in range(1, 4)}), day(1), day(3))
    result = write(db, plays({}), day(1), day(3))
    assert rows(db) == [] and result.emptied_days == (day(1), day(2), day(3))
    assert result.rows_before == 3


def test_per_day_answers_are_each_their_own_envelope(db: str) -> None:
    """A breakdown day with no rows came from that day's own `rows: []`: explicit."""
    frame = pd.DataFrame({"gender": ["Male", "Female"] * 2, "fraction": [0.5] * 4,
                          "partition_date": [day(1)] * 2 + [day(2)] * 2})
    write(db, frame, day(1), day(2), table=GENDER)
    result = write(db, frame[frame["partition_date"] == day(2)], day(1), day(2), table=GENDER)
    assert result.emptied_days == (day(1),)
    assert [r[0] for r in rows(db, GENDER)] == [day(2), day(2)]


@pytest.mark.parametrize(("limit", "new_rows", "ok"), [
    (0.5, 6, True), (0.5, 5, True), (0.5, 4, False), (0.0, 9, False), (1.0, 1, True)])
def test_the_shrink_guard(db: str, limit: float, new_rows: int, ok: bool) -> None:
    frame = pd.DataFrame({"gender": [f"g{i}" for i in range(10)], "fraction": [0.1] * 10,
                          "partition_date": [day(1)] * 10})
    write(db, frame, day(1), day(1), table=GENDER)
    if ok:
        write(db, frame.head(new_rows), day(1), day(1), table=GENDER, max_shrink=limit)
        assert len(rows(db, GENDER)) == new_rows
    else:
        with pytest.raises(RefusedReplace, match=f"from 10 to {new_rows} rows"):
            write(db, frame.head(new_rows), day(1), day(1), table=GENDER, max_shrink=limit)
        assert len(rows(db, GENDER)) == 10


@pytest.mark.parametrize(("column", "value", "why"), [
    ("plays", -1, "cannot be negative"),
    ("plays", float("inf"), "not a finite number"),
])
def test_values_outside_the_contract_are_refused(db: str, column: str, value: float,
                                                 why: str) -> None:
    frame = pd.DataFrame({"date": [day(1)], "plays": [value], "partition_date": [day(1)]})
    with pytest.raises(MalformedResponse, match=f"column '{column}' holds .* on {day(1)}: .*{why}"):
        write(db, frame, day(1), day(1))


def test_op3_rows_of_another_show_are_refused() -> None:
    frame = pd.DataFrame({"show_uuid": ["show1", "other"], "date": [day(1)] * 2,
                          "partition_date": [day(1)] * 2})
    with pytest.raises(MalformedResponse, match="1 of 2 rows belong to show other, not to show1"):
        completeness.check_answer(DOWNLOADS, frame, day(1), day(1), "show1")


def test_a_signed_column_may_be_negative() -> None:
    meta = TABLES_BY_KEY["anchor.episode_metadata"]
    frame = pd.DataFrame({"episode_id": [1], "hour_offset": [-5], "total_duration": [60],
                          "partition_date": [day(1)]})
    completeness.check_answer(meta, frame, day(1), day(1))
    frame["total_duration"] = [-60]
    with pytest.raises(MalformedResponse, match="'total_duration' holds -60"):
        completeness.check_answer(meta, frame, day(1), day(1))


def test_nulls_are_not_contract_violations(db: str) -> None:
    write(db, plays({day(1): None}), day(1), day(1))
    assert rows(db) == [(day(1), day(1), None)]


# ---------------------------------------------------------------------- raw coverage
def test_overlapping_writes_leave_each_day_covered_once(db: str) -> None:
    write(db, plays({day(d): 1 for d in range(1, 21)}), day(1), day(20), [body("A")])
    write(db, plays({day(d): 2 for d in range(15, 26)}), day(15), day(25), [body("B")])
    write(db, plays({day(d): 3 for d in range(5, 9)}), day(5), day(8), [body("C")])
    write(db, plays({day(d): 4 for d in range(24, 26)}), day(24), day(25), [body("D")])
    # A is split around C and trimmed by B; B is trimmed by D.
    assert coverage(db) == [("/plays?A", day(1), day(4)), ("/plays?C", day(5), day(8)),
                            ("/plays?A", day(9), day(14)), ("/plays?B", day(15), day(23)),
                            ("/plays?D", day(24), day(25))]
    covered = [d for _, s, e in coverage(db) for d in pd.date_range(s, e).date]
    assert sorted(covered) == [day(d) for d in range(1, 26)]  # every day exactly once
    write(db, plays({day(d): 5 for d in range(1, 26)}), day(1), day(25), [body("E")])
    assert coverage(db) == [("/plays?E", day(1), day(25))]


def test_per_day_bodies_cover_only_their_day(db: str) -> None:
    frame = pd.DataFrame({"gender": ["Male"] * 3, "fraction": [1.0] * 3,
                          "partition_date": [day(1), day(2), day(3)]})
    raw = [body(f"g{d}", (day(d), day(d))) for d in (1, 2, 3)] + [body("boot")]
    write(db, frame, day(1), day(3), raw, table=GENDER)
    write(db, frame.iloc[1:2], day(2), day(2), [body("g2-again", (day(2), day(2)))], table=GENDER)
    # The window-wide bootstrap body is split around day 2; g2 is superseded by g2-again.
    assert coverage(db) == [("/plays?boot", day(1), day(1)), ("/plays?g1", day(1), day(1)),
                            ("/plays?g2-again", day(2), day(2)),
                            ("/plays?boot", day(3), day(3)), ("/plays?g3", day(3), day(3))]


def test_a_database_from_before_coverage_is_upgraded(db: str) -> None:
    with duckdb.connect(db) as con:
        con.execute("CREATE SCHEMA raw")
        old = ", ".join(f"{n} {t}" for n, t in warehouse.RAW_COLUMNS
                        if not n.startswith("covers_") and n != "part")  # both came later
        con.execute(f"CREATE TABLE raw.responses ({old})")
        con.execute("INSERT INTO raw.responses VALUES ('anchor.plays', 'anchor', 'plays', "
                    "'show1', DATE '2026-11-01', DATE '2026-11-03', 0, '/old', 200, now(), '{}')")
    write(db, plays({day(3): 1}), day(3), day(3), [body("new")])
    assert coverage(db) == [("/old", day(1), day(2)), ("/plays?new", day(3), day(3))]
    with duckdb.connect(db, read_only=True) as con:  # a body from before parts is one part
        assert con.execute("SELECT DISTINCT part FROM raw.responses").fetchall() == [(0,)]


def test_a_table_from_before_a_contract_column_gains_it(db: str) -> None:
    with duckdb.connect(db) as con:  # show_download_counts as it was, with OP3's "asof"
        con.execute("CREATE SCHEMA op3")
        con.execute("CREATE TABLE op3.show_download_counts (show_id VARCHAR, partition_date "
                    "DATE, fetched_at TIMESTAMPTZ, as_of TIMESTAMPTZ, show_uuid VARCHAR, \"asof\" "
                    "DATE, days VARCHAR, monthly_downloads BIGINT, weekly_downloads BIGINT[], "
                    "weekly_avg_downloads BIGINT, num_weeks BIGINT)")
    table = TABLES_BY_KEY["op3.show_download_counts"]
    frame = pd.DataFrame({"show_uuid": ["show1"], "computed_at": [pd.Timestamp(
        "2026-10-31T00:00:00Z")], "days": ["1" * 30], "monthly_downloads": [5],
        "weekly_downloads": [[1, 4]], "weekly_avg_downloads": [2], "num_weeks": [2],
        "partition_date": [day(1)]})
    write(db, frame, day(1), day(1), table=table)
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT computed_at, monthly_downloads, \"asof\" FROM "
                           "op3.show_download_counts").fetchall() == [
            (pd.Timestamp("2026-10-31T00:00:00Z").to_pydatetime(), 5, None)]


# ---------------------------------------------------------------------- secrets in cells
def test_a_secret_echoed_into_a_cell_is_masked_before_storage(db: str) -> None:
    """Also when it arrived JSON-escaped, which masking the raw body cannot see."""
    secret = "s%3Acell-echo-secret.Zyx%2Bw"
    register_secret(secret)
    table = TABLES_BY_KEY["anchor.plays_by_episode"]
    frame = pd.DataFrame({"date": [day(1)] * 2, "plays": [1, 2], "partition_date": [day(1)] * 2,
                          "episode_title": [f"you sent anchorpw_s={secret}", "s:cell-echo-secret.Zyx+w"]})
    write(db, frame, day(1), day(1), table=table)
    stored = str(rows(db, table))
    assert "cell-echo-secret" not in stored and stored.count("***") == 2
    assert "you sent anchorpw_s=***" in stored  # the rest of the text stays


# ---------------------------------------------------------------------- write errors
FULL_DISK = textwrap.dedent('''
    import resource, signal, sys
    from datetime import UTC, date, datetime
    import pandas as pd
    from podcast_pipeline import warehouse
    from podcast_pipeline.tables import TABLES_BY_KEY
    db, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    table = TABLES_BY_KEY["op3.downloads"]
    n = 20000
    frame = pd.DataFrame({c: ["x" * 40] * n for c, t in table.columns if t == "VARCHAR"})
    frame["show_uuid"] = "show1"
    frame["time"] = pd.Timestamp("2026-11-01T12:00:00Z")
    frame["date"] = date(2026, 11, 1)
    frame["partition_date"] = date(2026, 11, 1)
    with warehouse.connect(db) as con:
        try:
            warehouse.replace_window(con, table, "show1", date(2026, 11, 1), date(2026, 11, 1),
                                     frame, [], datetime.now(UTC))
        except warehouse.WarehouseWriteError as exc:
            print("WRITE ERROR:", exc)
            sys.exit(3)
''')


def test_a_full_disk_during_commit_is_reported_as_itself_and_writes_nothing(db: str) -> None:
    frame = pd.DataFrame({c: ["old"] for c, t in DOWNLOADS.columns if t == "VARCHAR"})
    frame["show_uuid"] = "show1"
    frame["time"] = pd.Timestamp("2026-11-01T01:00:00Z")
    frame["date"] = frame["partition_date"] = date(2026, 11, 1)
    write(db, frame, day(1), day(1), [], table=DOWNLOADS)
    with duckdb.connect(db) as con:
        con.execute("CHECKPOINT")
    before = rows(db, DOWNLOADS)
    size = os.path.getsize(db)
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, db, str(size + 200_000)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "File too large" in proc.stdout and "rolled back" in proc.stdout
    assert "no transaction is active" not in proc.stdout + proc.stderr
    assert rows(db, DOWNLOADS) == before
