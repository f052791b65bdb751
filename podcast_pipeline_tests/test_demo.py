"""``podcast-pipeline demo`` as a user runs it: a real process, twice, into one database.

The summary's numbers are checked against the emulated show itself (``Dataset``, the ground
truth the emulator serves) and the progress lines against the tables the run wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.cli import build_parser
from podcast_pipeline.emulator import Dataset, EmulatorConfig
from podcast_pipeline.summary import COLUMN
from podcast_pipeline.tables import ALL_TABLES

DAYS = 3
# Everything the demo must not pick up from the developer's shell.
OURS = re.compile(r"^(ANCHOR_|OP3_|DUCKDB_PATH$|DAGSTER_HOME$|PODCAST_PIPELINE_)")
NUMBER = r"([\d,]+|-)"
# Lines only Dagster's own console log prints.
DAGSTER_LOG = re.compile(r" - dagster - (DEBUG|INFO|WARNING|ERROR) - |STEP_SUCCESS|RUN_START")


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not OURS.match(k)}
    env["HOME"] = env["TMPDIR"] = str(home)  # anything temporary lands in tmp_path
    script = Path(sys.executable).with_name("podcast-pipeline")
    return subprocess.run([str(script), *args], cwd=home, env=env, capture_output=True,
                          text=True, timeout=300)


def checksums(db: Path) -> dict[str, tuple[int, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t.qualified: warehouse.checksum(con, t) for t in ALL_TABLES}


def num(text: str) -> int:
    return int(text.replace(",", ""))


def section(out: str, title: str) -> str:
    """The lines of the summary block starting with ``title``, up to the next blank line."""
    start = out.index(title)
    end = out.find("\n\n", start)
    return out[start:end if end != -1 else None]


def two_lists(block: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The side-by-side top lists as (name, value) pairs: the left and the right column."""
    columns: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
    for line in block.splitlines()[2:]:
        for side, text in enumerate((line[4:4 + COLUMN], line[4 + COLUMN:])):
            if m := re.match(r"^\d\. (.+?)\s+([\d.,]+(?: %)?)$", text.strip()):
                columns[side].append((m[1], m[2]))
    return columns


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    """Two runs into one database: the default one, then ``--verbose``."""
    home = tmp_path_factory.mktemp("demo")
    db = home / "demo.duckdb"
    first = run_cli(home, "demo", "--days", str(DAYS), "--database", str(db))
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    once = checksums(db)
    second = run_cli(home, "demo", "--days", str(DAYS), "--database", str(db), "--verbose")
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert checksums(db) == once  # same rows, no duplicates (fetched_at/as_of aside)
    return db, first.stdout, first.stderr, second.stdout + second.stderr


def test_demo_writes_every_table_for_the_days_asked(demo: tuple[Path, str, str, str]) -> None:
    db = demo[0]
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    days = [yesterday - timedelta(days=k) for k in reversed(range(DAYS))]
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ALL_TABLES:
            partitions = [d for (d,) in con.execute(
                f"SELECT DISTINCT partition_date FROM {table.qualified} ORDER BY 1").fetchall()]
            # Snapshots are stored under the UTC day they were taken (today), once a day.
            assert partitions == (days if table.kind != "snapshot" else [today]), table


def test_progress_is_one_line_per_asset_and_dagster_log_only_when_verbose(
        demo: tuple[Path, str, str, str]) -> None:
    db, out, err, verbose = demo
    assert not DAGSTER_LOG.search(out + err), (out + err)[:3000]
    assert DAGSTER_LOG.search(verbose)
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ALL_TABLES:
            key = f"{table.schema}/{table.name}"
            lines = re.findall(rf"^  ✓ {re.escape(key)}\s+(.*)$", out, re.M)
            assert len(lines) == 1, (key, out)
            rows = con.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()[0]
            assert re.match(rf"{rows:,} rows?\b", lines[0]), (key, rows, lines[0])
            days = 1 if table.kind == "snapshot" else DAYS
            assert (f"over {days} days" in lines[0]) == (days > 1), lines[0]


def test_summary_numbers_are_the_shows(demo: tuple[Path, str, str, str]) -> None:
    out = demo[1]
    ds = Dataset(EmulatorConfig(seed=build_parser().parse_args(["demo"]).seed))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    days = [yesterday - timedelta(days=k) for k in reversed(range(DAYS))]

    def headline(label: str) -> int:
        match = re.search(rf"^  {re.escape(label)}\s+{NUMBER}$", out, re.M)
        assert match, label
        return num(match[1])

    assert f"as of {yesterday + timedelta(days=1)} (UTC)" in out  # snapshots: the day taken
    # The demo reads Spotify over GraphQL: its lifetime total is all-platform streams +
    # downloads, and its listener number the audience size (tables.GRAPHQL_NOTES).
    assert headline("Lifetime streams + downloads (all)") == sum(
        s + dl for d in ds.data_days() for _, s, dl in ds.spotify_day(d).values())
    assert headline("Audience size (Spotify)") == ds.audience_size()
    last30 = [yesterday - timedelta(days=k) for k in range(30)]
    assert headline("Downloads in the last 30 days (OP3)") == sum(
        ds.download_count(d) for d in last30 if ds.has_data(d))

    # The last days side by side: Spotify's plays and OP3's downloads of each day.
    for day in days:
        line = re.search(rf"^  \w{{3}} {day}\s+{NUMBER}\s+{NUMBER}$", out, re.M)
        assert line, f"no line for {day}"
        assert (num(line[1]), num(line[2])) == (ds.station_plays(day), ds.download_count(day))
    together = re.search(rf"^  together\s+{NUMBER}\s+{NUMBER}$", out, re.M)
    assert together and (num(together[1]), num(together[2])) == (
        sum(map(ds.station_plays, days)), sum(map(ds.download_count, days)))

    # Top 5 episodes by lifetime plays, with their plays in the last days.
    lifetime = ds.total_plays_by_episode()
    ranked = sorted(lifetime, key=lambda e: (-lifetime[e], e))[:5]
    block = section(out, "  Top 5 episodes").splitlines()[1:]
    assert len(block) == 5
    for line, eid in zip(block, ranked, strict=True):
        ep = ds.episode(eid)
        assert ep is not None
        title = ep.title or f"(untitled, id {eid})"
        m = re.match(rf"^    \d\. {re.escape(title)}\s+{NUMBER}\s+{NUMBER}$", line)
        assert m, (line, title)
        assert num(m[1]) == lifetime[eid]
        assert num(m[2]) == sum(ds.episode_plays(eid, d) for d in days)

    # Apps over the days in the database: Spotify's shares of plays, OP3's downloads.
    spotify_apps, op3_apps = two_lists(section(out, "  Top apps"))
    counts = ds.category_counts("app", days[0], days[-1])
    total = sum(counts.values())
    # The top 5 by count; apps with equal counts (CastBox, Overcast) may come in either order.
    assert [counts[a] for a, _ in spotify_apps] == [n for _, n in counts.most_common(5)]
    for app, share in spotify_apps:
        assert float(share.rstrip(" %")) == pytest.approx(100 * counts[app] / total, abs=0.06)
    expected_apps = ds.app_downloads(days)
    assert [(a, num(n)) for a, n in op3_apps] == sorted(
        expected_apps.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    # Countries: Spotify's all-time shares (rounded to 0.01 by Spotify), OP3's downloads.
    spotify_geo, op3_geo = two_lists(section(out, "  Top countries"))
    geo = ds.category_counts("geo", ds.first_day, ds.yesterday)
    geo_total = sum(geo.values())
    rounded = {c: round(n / geo_total, 2) for c, n in geo.items()}  # ties can swap places
    shown = [(c, float(share.rstrip(" %"))) for c, share in spotify_geo]
    assert [x for _, x in shown] == pytest.approx([100 * x for x in sorted(rounded.values(), reverse=True)[:5]])
    assert all(x == pytest.approx(100 * rounded[c]) for c, x in shown)
    by_country = Counter(r["countryCode"] for d in days for r in ds.downloads(d)
                         if r.get("countryCode"))
    assert [(c, num(n)) for c, n in op3_geo] == sorted(
        by_country.items(), key=lambda kv: (-kv[1], kv[0]))[:5]


def test_summary_command_reads_any_database(demo: tuple[Path, str, str, str],
                                            tmp_path: Path) -> None:
    db, out = demo[0], demo[1]
    shown = run_cli(tmp_path, "summary", "--database", str(db))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() in out  # the same summary the demo printed
    missing = run_cli(tmp_path, "summary", "--database", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 2 and "no database at" in missing.stderr
    empty = tmp_path / "empty.duckdb"
    with duckdb.connect(str(empty)) as con:
        warehouse.ensure_schema(con)
    blank = run_cli(tmp_path, "summary", "--database", str(empty))
    assert blank.returncode == 0 and "No data yet" in blank.stdout

