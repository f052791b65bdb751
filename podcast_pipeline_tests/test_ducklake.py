"""The DuckLake warehouse backend (``PODCAST_PIPELINE_WAREHOUSE=ducklake``), on an SQLite
catalog in a temp folder: several processes of one host share it, as PostgreSQL's serves
several hosts (test_distributed.py has no DuckLake variant yet; docs/scale-out.md measured it).

- The real assets, against the emulator, into DuckLake and into a DuckDB file: every table
  equal; the analytics models, the report and ``podcast-pipeline summary`` work on it.
- Two writer processes replace sliding windows of the same table (different shows) while a
  reader process queries: every write lands, no read fails or waits for a writer, every
  snapshot read holds whole windows only (rows and raw bodies, one transaction), and the
  final tables equal the same writes into a DuckDB file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import cli, warehouse
from podcast_pipeline.analytics import models
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.emulator import Emulator, EmulatorConfig
from podcast_pipeline.errors import ConfigError
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.settings import LakeSettings, Settings
from podcast_pipeline.summary import print_summary
from podcast_pipeline.tables import TABLES_BY_KEY as TABLES
from podcast_pipeline_tests import ducklake_procs as procs

TODAY = date(2025, 6, 1)
# A snapshot, a windowed table, and OP3's downloads (staged page by page, moved in by ATTACH).
ASSETS = ["anchor/episodes", "anchor/plays", "op3/downloads"]


def lake_in(folder: Path) -> LakeSettings:
    return LakeSettings(catalog=f"sqlite:{folder / 'catalog.sqlite'}",
                        data_path=str(folder / "data"))


def lake_env(folder: Path) -> dict[str, str]:
    lake = lake_in(folder)
    return {"PODCAST_PIPELINE_WAREHOUSE": "ducklake", "PODCAST_PIPELINE_DUCKLAKE_CATALOG":
            lake.catalog, "PODCAST_PIPELINE_DUCKLAKE_DATA_PATH": lake.data_path}


def contents(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Row count and content hash of each of ``tables`` (raw tables and analytics models)."""
    out = {}
    for name in tables:
        if name in TABLES:
            out[name] = warehouse.checksum(con, TABLES[name])
            continue
        cols = ", ".join(f'"{c.name}" := "{c.name}"'
                         for c in models.MODELS_BY_NAME[name.split(".")[1]].columns)
        n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(struct_pack({cols}))), 0)"
                           f"::VARCHAR FROM {name}").fetchone()
        out[name] = (int(n), str(h))
    return out


# ---------------------------------------------------------------------- settings
def test_settings_choose_the_backend_and_keep_the_catalog_password_secret(tmp_path):
    assert Settings.from_env({}).warehouse_target() == "data/podcast.duckdb"
    catalog = "dbname=lake host=db.internal user=pipeline password=Hunter2Secret"
    s = Settings.from_env({"PODCAST_PIPELINE_WAREHOUSE": "ducklake",
                           "PODCAST_PIPELINE_DUCKLAKE_CATALOG": catalog,
                           "PODCAST_PIPELINE_DUCKLAKE_DATA_PATH": str(tmp_path / "lake")})
    lake = s.warehouse_target()
    assert isinstance(lake, LakeSettings) and lake.kind == "postgres"
    assert "Hunter2Secret" not in repr(s) + repr(lake) + lake.label()
    assert "password=***" in lake.label()
    # An unreachable catalog: the error names the setting, never the password.
    with pytest.raises(warehouse.WarehouseWriteError) as err:
        with warehouse.connect(LakeSettings(catalog.replace("db.internal", "127.0.0.1 port=9"),
                                            str(tmp_path / "lake")), timeout=1):
            pass
    assert "PODCAST_PIPELINE_DUCKLAKE_CATALOG" in str(err.value)
    assert "Hunter2Secret" not in str(err.value)
    for bad, names in (({"PODCAST_PIPELINE_WAREHOUSE": "lakehouse"}, "PODCAST_PIPELINE_WAREHOUSE"),
                       ({"PODCAST_PIPELINE_WAREHOUSE": "ducklake"},
                        "PODCAST_PIPELINE_DUCKLAKE_CATALOG"),
                       ({"PODCAST_PIPELINE_WAREHOUSE": "ducklake",
                         "PODCAST_PIPELINE_DUCKLAKE_CATALOG": "sqlite:x.sqlite"},
                        "PODCAST_PIPELINE_DUCKLAKE_DATA_PATH")):
        with pytest.raises(ConfigError, match=names):
            Settings.from_env(bad)


# ---------------------------------------------------------------------- the real assets
@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as e:
        yield e


def test_assets_models_report_and_summary_on_ducklake_equal_the_duckdb_file(
        emu, tmp_path, monkeypatch, capsys):
    env = emu.env
    file_db = tmp_path / "podcast.duckdb"
    lake_dir = tmp_path / "lake"
    lake = lake_in(lake_dir)
    sources = {"anchor": AnchorResource(base_url=env["ANCHOR_BASE_URL"],
                                        webstation_id=env["ANCHOR_WEBSTATION_ID"],
                                        cookie=env["ANCHOR_PW_S"]),
               "op3": Op3Resource(base_url=env["OP3_BASE_URL"], token=env["OP3_TOKEN"],
                                  show_uuid=env["OP3_SHOW_UUID"], url_prefix=env["OP3_URL_PREFIX"])}
    stores = {"file": WarehouseResource(database=str(file_db)),
              "lake": WarehouseResource(database=str(file_db), backend="ducklake",
                                        ducklake_catalog=lake.catalog,
                                        ducklake_data_path=lake.data_path)}
    selection = [dg.AssetKey(k.split("/")) for k in ASSETS]
    for name, store in stores.items():
        result = dg.materialize([*anchor_assets, *op3_assets], selection=selection,
                                resources={**sources, "warehouse": store},
                                partition_key=(TODAY - timedelta(1)).isoformat(),
                                raise_on_error=False)
        assert result.success, name
    # Nothing of the lake went into the DuckDB file: its rows are in the catalog and folder.
    compared = [k.replace("/", ".") for k in ASSETS] + [m.qualified for m in models.MODELS]
    with duckdb.connect(str(file_db)) as con:
        models.build_all(con)
        expected = contents(con, compared)
    assert expected["anchor.plays"][0] == 1 and expected["op3.downloads"][0] > 0
    assert expected["analytics.daily_listening"][0] > 0
    for var, value in lake_env(lake_dir).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "unused.duckdb"))
    monkeypatch.setenv("PODCAST_PIPELINE_REPORT_DIR", str(tmp_path / "report"))
    # `podcast-pipeline report --build-models` and `summary` read the configured warehouse.
    assert cli.main(["report", "--build-models"]) == 0
    assert (tmp_path / "report" / "report.html").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["summary"]) == 0
    summary = capsys.readouterr().out
    print_summary(str(file_db))
    assert summary == capsys.readouterr().out
    assert not (tmp_path / "unused.duckdb").exists()
    with warehouse.reader(lake) as con:
        assert contents(con, compared) == expected
    assert list((lake_dir / "data").rglob("*.parquet"))  # the rows live in the data folder


# ---------------------------------------------------------------------- concurrent writers
def test_two_writer_processes_and_a_reader_on_one_table(tmp_path):
    procs.writers_and_reader(lake_in(tmp_path), tmp_path)
