"""``podcast-pipeline demo`` as a user runs it: a real process, twice, into one database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from podcast_pipeline import warehouse
from podcast_pipeline.cli import build_parser
from podcast_pipeline.emulator import Dataset, EmulatorConfig
from podcast_pipeline.tables import ALL_TABLES

DAYS = 3
# Everything the demo must not pick up from the developer's shell.
OURS = re.compile(r"^(ANCHOR_|OP3_|DUCKDB_PATH$|DAGSTER_HOME$|PODCAST_PIPELINE_)")


def run_demo(db: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not OURS.match(k)}
    env["HOME"] = env["TMPDIR"] = str(home)  # anything temporary lands in tmp_path
    script = Path(sys.executable).with_name("podcast-pipeline")
    return subprocess.run([str(script), "demo", "--days", str(DAYS), "--database", str(db)],
                          cwd=home, env=env, capture_output=True, text=True, timeout=300)


def checksums(db: Path) -> dict[str, tuple[int, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t.qualified: warehouse.checksum(con, t) for t in ALL_TABLES}


def test_demo_twice_gives_identical_tables_and_prints_the_summary(tmp_path: Path):
    db = tmp_path / "demo.duckdb"
    first = run_demo(db, tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    once = checksums(db)
    second = run_demo(db, tmp_path)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert checksums(db) == once  # same rows, no duplicates (fetched_at/as_of aside)

    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    days = [yesterday - timedelta(days=k) for k in reversed(range(DAYS))]
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ALL_TABLES:
            partitions = [d for (d,) in con.execute(
                f"SELECT DISTINCT partition_date FROM {table.qualified} ORDER BY 1").fetchall()]
            # Snapshots are stored under the UTC day they were taken (today), once a day.
            assert partitions == (days if table.kind != "snapshot" else [today]), table
        counts = {t.qualified: con.execute(f"SELECT count(*) FROM {t.qualified}").fetchone()[0]
                  for t in ALL_TABLES}

    # The per-table summary, read back from DuckDB, matches the database.
    out = second.stdout
    assert "Rows per table" in out
    for name, n in counts.items():
        assert n > 0, name
        assert re.search(rf"^\s*{re.escape(name)}\s+{n}\s+rows\b", out, re.M), name
    # Plays and downloads per day are the emulated show's (the demo's default seed).
    seed = build_parser().parse_args(["demo"]).seed
    ds = Dataset(EmulatorConfig(seed=seed))
    for day in days:
        line = re.search(rf"^\s*{day}\s+(\d+)\s+(\d+)\s*$", out, re.M)
        assert line, f"no summary line for {day}"
        assert (int(line[1]), int(line[2])) == (ds.station_plays(day), ds.download_count(day))
    # Progress while it runs: a line per asset as it lands.
    log = first.stdout + first.stderr
    for table in ALL_TABLES:
        assert f"{table.qualified}: replaced" in log, table.qualified
