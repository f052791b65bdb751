"""The reference GraphQL client, ``spotifygraphqlconnector`` 0.5.3, against the emulator.

It is not a project dependency (it pins loguru/tenacity/PyYAML of its own), so the test
installs it once into a venv under ``.cache/`` with pip and runs it there as a subprocess,
its URL constants pointed at the emulator. It must get the shapes the reference describes,
``CredentialsExpired`` for a dead cookie, and a silent re-login after an unknown bearer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from podcast_pipeline.emulator import Emulator, Faults

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "spotifygraphqlconnector-0.5.3"
RUNNER = Path(__file__).parent / "reference" / "run_spotifygraphqlconnector.py"
PY = VENV / "bin" / "python"


def reference_python() -> Path:
    """The venv's python, creating the venv and installing the package on first use."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(VENV) + ".lock", timeout=600):  # xdist workers share one install
        probe = [str(PY), "-c", "import spotifygraphqlconnector"]
        if PY.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
            return PY
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True,
                       timeout=120)
        subprocess.run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "spotifygraphqlconnector==0.5.3"], check=True, timeout=540)
    return PY


@pytest.fixture(scope="module")
def python() -> Path:
    return reference_python()


@pytest.fixture
def env(emulator: Emulator, tmp_path: Path) -> Iterator[dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")}
    yield {**base, **emulator.graphql_env, "SPOTIFY_OUTPUT_DIR": str(tmp_path / "out"),
           "SPOTIFY_GEO_COUNTRY": "DE", "SPOTIFY_GEO_REGION": "1", "LOGURU_LEVEL": "WARNING"}


def run(python: Path, env: dict[str, str], scenario: str, **kw: Any) -> dict[str, Any]:
    proc = subprocess.run([str(python), str(RUNNER), scenario], env=env, capture_output=True,
                          text=True, timeout=120, **kw)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def leaf(node: dict[str, Any], *path: str) -> Any:
    for key in path:
        node = node[key]
    return node["analyticsValue"]["analyticsValue"]


def test_reference_cli_gets_every_shape(python: Path, env: dict[str, str],
                                        emulator: Emulator) -> None:
    assert run(python, env, "cli") == {"exit": 0}
    out = Path(env["SPOTIFY_OUTPUT_DIR"])
    files = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    ds = emulator.dataset

    shows = files["getshowsforuser"]["showsForUser"]["shows"]
    assert [s["hostingProvider"] for s in shows] == ["S4P", "MEGAPHONE"]
    assert shows[0]["uri"] == ds.spotify_show_uri
    station = files["webgetusershows"]["showsForUser"]["shows"][0]["stationId"]
    assert station == str(ds.station_id)

    plays = leaf(files["getshowonspotifystats"]["showByShowUri"], "playsDaily")["points"]
    assert len(plays) == 30 and all(set(p) >= {"date", "value"} for p in plays)
    last30 = ds.data_days(ds.yesterday - timedelta(days=29), ds.yesterday)
    assert [p["date"] for p in plays] == [d.isoformat() for d in last30]
    assert sum(p["value"]["value"] for p in plays) == sum(ds.station_plays(d) for d in last30)

    for level in ("country", "region", "city"):  # DE, then region "1" (Land Berlin)
        node = files[f"getshowplaysanddownloadsbygeo_{level}"]["showByShowUri"]
        geos = leaf(node, "showPlaysAndDownloadsByGeo")["geos"]
        assert geos and all(0 <= g["value"] <= 1 and g["navigationName"] for g in geos), level
    country = leaf(files["getshowplaysanddownloadsbygeo_country"]["showByShowUri"],
                   "showPlaysAndDownloadsByGeo")["geos"][0]
    assert (country["displayName"], country["navigationName"]) == ("Germany", "DE")

    demo = files["getshowdemographics"]["showByShowUri"]
    age = leaf(demo, "showPlaysByAge")
    gender = leaf(demo, "showPlaysByGender")
    assert age["totalValue"] == gender["totalValue"] > 0
    assert sum(b["genderBreakdown"]["total"] for b in age["ageBreakdown"]) == age["totalValue"]
    assert {c["gender"] for c in gender["genderBreakdown"]["counts"]} >= {"MALE", "FEMALE"}

    platforms = files["getshowplaysanddownloadsplatformsstats"]["showByShowUri"]
    apps = leaf(platforms, "showPlaysAndDownloadsByApp")["apps"]
    assert abs(sum(a["value"] for a in apps) - 1) < 1e-9

    episodes = files["all_episodes"]
    assert len(episodes) == len(ds.episodes)
    assert all({"episodeId", "uri", "publishedOn", "asset", "analyticsStartsV2"} <= set(e)
               for e in episodes)
    page1 = files["webgetindexedepisodelist"]["showByShowUri"]["episodesV2"]
    assert page1["pagination"]["totalItems"] == len(ds.episodes)

    perf = next(v for k, v in files.items() if k.startswith("getepisodeperformancealltime"))
    assert "episodePerformanceTotalAllTime" in perf["episodeByUri"]
    legacy = next(v for k, v in files.items() if k.startswith("getepisodelegacywebid"))
    assert legacy["webEpisodeId"].startswith("e") and legacy["webStationId"] == ds.webstation_id
    s_and_d = next(v for k, v in files.items() if k.startswith("getepisodestreamsanddownloads"))
    assert leaf(s_and_d["episodeByUri"], "analytics")["points"]
    # Every call the CLI makes reached the emulator by name and hash; none was refused.
    stats = emulator.stats()
    assert stats["by_status"].get(401, 0) == 0 and stats["by_status"].get(400, 0) == 0
    assert stats["by_endpoint"]["auth"] == 1 and stats["by_endpoint"]["token"] == 1


def test_reference_dead_cookie_is_credentials_expired(python: Path, env: dict[str, str],
                                                      emulator: Emulator) -> None:
    emulator.expire("spotify")
    assert run(python, env, "dead_cookie") == {"first": "CredentialsExpired",
                                               "second": "CredentialsExpired"}
    # Poisoned after the first answer: one login attempt, no retries, no GraphQL call.
    assert emulator.stats()["by_endpoint"] == {"auth": 1}


def test_reference_relogs_in_silently_after_unknown_bearer(python: Path, env: dict[str, str],
                                                           emulator: Emulator) -> None:
    proc = subprocess.Popen([str(python), str(RUNNER), "relogin"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "READY"
        emulator.revoke_bearers()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    assert result["episodes"] == len(emulator.dataset.published), err[-1000:]
    assert emulator.spotify.logins == 2
    assert emulator.stats()["by_status"][401] == 1


def test_reference_unknown_hash_names_the_operation(python: Path, env: dict[str, str]) -> None:
    result = run(python, env, "unknown_hash")
    assert result["error"] == "GraphQLResponseError"
    assert result["operation"] == "getShowTopEpisodes"
    assert result["errors"][0]["message"] == "PersistedQueryNotFound"


def test_reference_geo_data_fetching_exception(python: Path, env: dict[str, str],
                                               emulator: Emulator) -> None:
    emulator.set_faults(Faults(data_fetching_rate=1.0))
    assert run(python, env, "geo_failure") == {"region": {}}  # C turns the null into {}
