"""Definitions and UI at network scale: load time, asset-graph GraphQL query, screenshots.

    python -m benchmarks.bench_network_ui --shows 10 30 100 [--screenshots DIR]

Per size: a network file of N shows over N/10 accounts (names of unset variables only: the
definitions load without secrets), then in a fresh process the definitions' load time, and a
``dagster-webserver`` on loopback answering the asset-graph query the asset catalog makes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

ASSET_GRAPH_QUERY = """query { assetNodes { assetKey { path } groupName opNames
  dependencyKeys { path } partitionDefinition { description } pools } }"""
CATALOG_QUERY = """query { assetsOrError { ... on AssetConnection { nodes { key { path }
  definition { groupName } } } } }"""


def network_file(path: Path, shows: int, accounts: int) -> None:
    lines = ["accounts:"]
    for a in range(1, accounts + 1):
        lines += [f"  - name: acct{a:02d}", f"    sp_dc_env: BENCH_ACCT{a:02d}_SP_DC"]
    lines += ["op3_tokens:", "  - name: main", "    token_env: BENCH_OP3_TOKEN", "shows:"]
    for i in range(shows):
        lines += [f"  - key: {0xa0000000 + i:08x}", f"    name: Show {i + 1:03d}",
                  f"    account: acct{i % accounts + 1:02d}",
                  f"    spotify_show_uri: spotify:show:{'S' * 16}{i:06d}",
                  f"    op3_show_uuid: {i:032x}", "    op3_token: main"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_seconds(env: dict[str, str]) -> tuple[float, int]:
    code = ("import time,json; t=time.perf_counter(); "
            "from podcast_pipeline.definitions import defs; "
            "n=len(list(defs.resolve_all_asset_specs())); defs.resolve_asset_graph(); "
            "print(json.dumps([time.perf_counter()-t, n]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    seconds, n = json.loads(out.strip().splitlines()[-1])
    return seconds, n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str) -> tuple[float, dict]:
    t = time.perf_counter()
    resp = requests.post(url, json={"query": query}, timeout=600)
    resp.raise_for_status()
    return time.perf_counter() - t, resp.json()


def screenshot(base: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        show = f"{0xa0000000:08x}"
        for name, path in (("catalog", "/assets"), ("graph", "/asset-groups"),
                           ("show_group", "/locations/podcast_pipeline.definitions/asset-groups/"
                                          f"show_{show}"),
                           ("show_asset", f"/assets/{show}/anchor/plays?view=partitions")):
            t = time.perf_counter()
            page.goto(base + path, wait_until="networkidle", timeout=300_000)
            page.wait_for_timeout(3000)
            skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
            if skip.count():
                skip.first.click()
                page.wait_for_timeout(1000)
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"  {name} page: {time.perf_counter() - t:.1f} s → {out / (name + '.png')}")
        browser.close()


def run(shows: int, shots: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "network.yaml"
        network_file(net, shows, max(1, shows // 10))
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANCHOR_", "OP3_", "SPOTIFY_", "PODCAST_PIPELINE_"))}
        env.update(PODCAST_PIPELINE_NETWORK_FILE=str(net), DAGSTER_HOME=str(home),
                   DUCKDB_PATH=str(Path(tmp) / "w.duckdb"))
        seconds, assets = load_seconds(env)
        port = free_port()
        web = subprocess.Popen([str(BIN / "dagster-webserver"), "-m", "podcast_pipeline.definitions",
                                "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=PROJECT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            deadline = time.monotonic() + 300
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or web.poll() is not None:
                    raise RuntimeError("dagster-webserver did not start")
                time.sleep(0.5)
            graphql(url, CATALOG_QUERY)  # the code location finished loading
            graph_s, body = graphql(url, ASSET_GRAPH_QUERY)
            nodes = len(body["data"]["assetNodes"])
            catalog_s, _ = graphql(url, CATALOG_QUERY)
            if shots:
                out = shots / f"shows{shows}"
                out.mkdir(parents=True, exist_ok=True)
                screenshot(f"http://127.0.0.1:{port}", out)
        finally:
            os.killpg(web.pid, 15)
            web.wait(30)
    return {"shows": shows, "assets": assets, "definitions_load_s": round(seconds, 2),
            "asset_graph_query_s": round(graph_s, 2), "graph_nodes": nodes,
            "catalog_query_s": round(catalog_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shows", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--screenshots", type=Path)
    args = ap.parse_args()
    for n in args.shows:
        print(json.dumps(run(n, args.screenshots if n == max(args.shows) else None)), flush=True)


if __name__ == "__main__":
    main()
