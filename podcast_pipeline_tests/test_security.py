"""Secrets never leak, and SQL is never built from values.

One demo-like run in a real subprocess — the schedule's run requests executed by
``demo.execute`` against the emulator with 5xx, 429, jitter, malformed bodies and both
credentials expiring, then the run-failure sensor alerting a loopback webhook — leaves
every artifact on disk: stdout/stderr, the sqlite event logs and compute logs under a
tmp DAGSTER_HOME, the DuckDB file. Each is searched for the cookie and the token in
every encoding they could take. A loopback proxy in front of the emulator records the
requests exactly as sent, to show where the secrets travel.

Budget: about 25 s (the subprocess run is most of it).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import dagster as dg
import duckdb
import pytest

import podcast_pipeline
from podcast_pipeline import warehouse
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline.tables import ALL_TABLES, KEY_COLUMNS
from podcast_pipeline_tests.tamper import Answer, Rule, Tamper

PROJECT = Path(__file__).resolve().parents[1]
SEED = 11
DAYS = 3
# The seed's first 20 fault draws hold two 429s, a 5xx, a truncated body and an HTML page;
# every live request draws (no jitter, which would draw too and tie the sequence to thread
# timing), and a run makes far more than 20 before the credentials die.
FAULTS = Faults(error_rate=0.10, rate_limit_rate=0.05, malformed_rate=0.05, seed=22)
# The cookie dies mid-way through the ranged run, the token during it: most assets of
# both APIs write rows and raw bodies first, then 401s, failed runs and alerts follow.
EXPIRE_AFTER = {"anchor": 70, "spotify": 70, "op3": 6}  # answers of 200 through the proxy


def expire_after(emu: Emulator, limits: dict[str, int]) -> Rule:
    """A pass-through proxy rule that expires an API's credential after its Nth good answer."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def rule(path: str, answer: Answer) -> Answer:
        api = "anchor" if path.startswith("/pod/") else "spotify" if \
            path.startswith("/spotify/") else "op3"
        with lock:
            counts[api] += 1
            if counts[api] == limits[api]:
                emu.expire(api)
        return answer

    return rule


def echo_secrets(emu: Emulator, then: Rule) -> Rule:
    """A hostile API that echoes the credential it was sent: raw, URL-encoded, base64 at
    every alignment and base64url in every JSON answer, and JSON-escaped as an episode's
    title, which is stored in a table (where masking the raw body cannot see it)."""
    cookie, token = emu.env["ANCHOR_PW_S"], emu.env["OP3_TOKEN"]
    sp_dc = emu.dataset.sp_dc

    def rule(path: str, answer: Answer) -> Answer:
        answer = then(path, answer)
        if "json" not in (answer.header("Content-Type") or "") or answer.status != 200:
            return answer
        body = answer.json()
        if not isinstance(body, dict):
            return answer
        if path.startswith("/pod/"):
            secret, sent = cookie, f"anchorpw_s={cookie}"
        elif path.startswith("/spotify/"):  # the GraphQL backend's hosts: its login cookie
            secret, sent = sp_dc, f"sp_dc={sp_dc}"
        else:
            secret, sent = token, f"Bearer {token}"
        forms = [secret, unquote(secret), quote(secret, safe="")]
        forms += [base64.b64encode((p + sent).encode()).decode() for p in ("", "x", "xy")]
        forms += [base64.urlsafe_b64encode((p + unquote(sent)).encode()).decode()
                  for p in ("", "x", "xy")]
        body["echo"] = forms
        items = body.get("items")
        if isinstance(items, list) and items and isinstance(items[0], dict):
            items[0]["title"] = "SECRET-ECHO"  # an episode title, stored in anchor.episodes
            escaped = "".join(f"\\u{ord(c):04x}" for c in unquote(cookie))
            text = json.dumps(body).replace("SECRET-ECHO", escaped)
            return Answer(answer.status, answer.headers, text.encode())
        return answer.with_json(body)

    return rule


DRIVER = '''
"""The demo's own run requests and executor, then the sensors, as the daemon would run them."""
import json, logging, os, sys
from datetime import UTC, datetime

import dagster as dg

from podcast_pipeline import demo
from podcast_pipeline.definitions import build_definitions
from podcast_pipeline.sensors import credential_expiry_alert, credential_probe

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # every library's lines too
defs = build_definitions()
instance = dg.DagsterInstance.get()
now = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
fast = {"backoff_factor": 0.05}
outcomes = []
for request in demo.run_requests_for(int(os.environ["DAYS"]), now):
    o = demo.execute(defs, request, instance, log_level="DEBUG",
                     resources={"anchor": fast, "op3": fast})
    print(o, flush=True)
    outcomes.append(o)
sensor_resources = {k: defs.resources[k] for k in ("anchor", "op3")}
for o in outcomes:
    if o.success:
        continue
    run = instance.get_run_by_id(o.run_id)
    event = next(r.dagster_event for r in instance.all_logs(o.run_id)
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="credential_expiry_alert", dagster_instance=instance, dagster_run=run,
        dagster_event=event, resources=sensor_resources).for_run_failure()
    credential_expiry_alert(context)
probe = credential_probe(dg.build_sensor_context(instance=instance, resources=sensor_resources))
print("probe:", probe.skip_message, flush=True)
demo.summarize(os.environ["DUCKDB_PATH"])
print("RESULT " + json.dumps({"runs": len(outcomes),
                              "failed_steps": sum(len(o.failed_steps) for o in outcomes)}))
'''


# ---------------------------------------------------------------------------- secrets and search
@dataclass(frozen=True)
class Secret:
    name: str
    value: str

    def needles(self) -> set[str]:
        """The value as sent, decoded, re-encoded, its random cores, and base64 of it at every
        alignment: whatever form a leak takes, one of these is a substring of it."""
        decoded = unquote(self.value)
        out = {self.value, decoded, quote(self.value, safe=""), quote(decoded, safe=""),
               quote_plus(decoded)}
        out |= set(re.findall(r"[0-9a-f]{12,}", decoded))
        for text in (self.value, decoded):
            for k in range(3):
                part = text[k:].encode()
                part = part[: len(part) // 3 * 3]
                out |= {base64.b64encode(part).decode(), base64.urlsafe_b64encode(part).decode()}
        return out


def text_hits(text: str, secrets: list[Secret]) -> list[str]:
    return sorted({f"{s.name}:{n}" for s in secrets for n in s.needles() if n in text})


def file_hits(root: Path, secrets: list[Secret]) -> list[str]:
    """Every file's bytes, and every text cell of every sqlite database (a long value can be
    split across overflow pages, where a byte search would miss it)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path}: {h}" for h in text_hits(data.decode("utf-8", "replace"), secrets)]
        if data.startswith(b"SQLite format 3\x00"):
            hits += [f"{path}: {h}" for h in sqlite_hits(path, secrets)]
    return hits


def sqlite_hits(path: Path, secrets: list[Secret]) -> list[str]:
    hits = []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                for secret in secrets:
                    for needle in secret.needles():
                        (n,) = con.execute(f'SELECT count(*) FROM "{table}" WHERE '
                                           f'instr(CAST("{column}" AS TEXT), ?) > 0',
                                           [needle]).fetchone()
                        if n:
                            hits.append(f"{table}.{column}: {secret.name}:{needle}")
    finally:
        con.close()
    return hits


def duckdb_hits(path: str, secrets: list[Secret]) -> tuple[list[str], int]:
    """Every column of every table, cast to text (DuckDB compresses strings on disk, so
    a byte search of the file proves nothing). Returns hits and the columns searched."""
    hits, searched = [], 0
    with duckdb.connect(path, read_only=True) as con:
        columns = con.execute("SELECT table_schema, table_name, column_name FROM "
                              "information_schema.columns").fetchall()
        for schema, table, column in columns:
            searched += 1
            for secret in secrets:
                for needle in secret.needles():
                    (n,) = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE '
                                       f'contains(CAST("{column}" AS VARCHAR), ?)',
                                       [needle]).fetchone()
                    if n:
                        hits.append(f"{schema}.{table}.{column}: {secret.name}:{needle}")
        # A long body is stored in parts: a secret cut across two would be in no one cell.
        for secret in secrets if ("raw", "responses", "part") in columns else []:
            for needle in secret.needles():
                (n,) = con.execute(f"SELECT count(*) FROM ({warehouse.WHOLE_BODIES}) "
                                   "WHERE contains(body, ?)", [needle]).fetchone()
                if n:
                    hits.append(f"raw.responses whole bodies: {secret.name}:{needle}")
    return hits, searched


def test_the_search_finds_planted_secrets(tmp_path: Path) -> None:
    """The searches below can fail: each finds a secret planted in its kind of artifact."""
    secret = Secret("cookie", "s%3Aemulator-0123456789ab.cdef0123456789abcdef0123456789ab")
    assert text_hits("GET /x?c=s:emulator-0123456789ab.cdef", [secret])
    planted = base64.b64encode(b'{"c":"' + unquote(secret.value).encode() + b'"}').decode()
    assert text_hits(f"query={planted}", [secret]), "base64 at any alignment"
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as con:  # a value far longer than a page: overflow pages
        con.execute("CREATE TABLE t (v TEXT)")
        con.execute("INSERT INTO t VALUES (?)", ["x" * 9000 + unquote(secret.value) + "y" * 9000])
    assert sqlite_hits(db, [secret]) and file_hits(tmp_path, [secret])
    ddb = str(tmp_path / "x.duckdb")
    with duckdb.connect(ddb) as con:
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.r (path VARCHAR, n BIGINT[])")
        con.execute("INSERT INTO raw.r VALUES (?, [1])", [f"/p?token={quote(secret.value)}"])
    assert duckdb_hits(ddb, [secret])[0]


# ---------------------------------------------------------------------------- the run
class Webhook:
    """A loopback receiver that records every POST (headers and body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], str]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append((dict(self.headers.items()), body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    emu: Emulator
    proxy: Tamper
    webhook: Webhook
    home: Path
    db: str
    proc: subprocess.CompletedProcess[str]
    secrets: list[Secret]


SCRUBBED_ENV = ("ANCHOR_", "OP3_", "SPOTIFY_", "DUCKDB_PATH", "DAGSTER_HOME", "PODCAST_PIPELINE_",
                "SLACK_")


@pytest.fixture(scope="module", params=["rest", "graphql"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One run per Spotify backend: REST (anchorpw_s) and GraphQL (sp_dc, sp_key, bearers)."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"security-{backend}")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    webhook = Webhook()
    with Emulator(EmulatorConfig(seed=SEED), faults=FAULTS) as emu, Tamper(emu.url) as proxy:
        proxy.rewrite(r"^/", echo_secrets(emu, expire_after(emu, EXPIRE_AFTER)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV)}
        env.update(proxy.env(emu.env if backend == "rest" else
                             {**emu.env, **emu.graphql_env}))
        env["SPOTIFY_BACKEND"] = backend
        env.update({"DAYS": str(DAYS), "DUCKDB_PATH": str(tmp / "demo.duckdb"),
                    "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1",
                    "PODCAST_PIPELINE_ALERT_WEBHOOK_URL": webhook.url})
        proc = subprocess.run([sys.executable, str(driver)], cwd=tmp, env=env, text=True,
                              capture_output=True, timeout=300)
        secrets = [Secret("ANCHOR_PW_S", emu.env["ANCHOR_PW_S"]),
                   Secret("OP3_TOKEN", emu.env["OP3_TOKEN"]),
                   Secret("SPOTIFY_SP_DC", emu.dataset.sp_dc),
                   Secret("SPOTIFY_SP_KEY", emu.dataset.sp_key)]
        secrets += [Secret(f"bearer {i}", b) for i, b in enumerate(emu.spotify.issued)]
        yield Run(emu, proxy, webhook, home, str(tmp / "demo.duckdb"), proc, secrets)
    webhook.close()


def test_the_run_exercised_faults_expiry_and_alerts(run: Run) -> None:
    """Guards the leak checks below: they only mean something if all of this happened."""
    assert "RESULT" in run.proc.stdout, run.proc.stderr[-3000:]
    result = json.loads(run.proc.stdout.split("RESULT ", 1)[1])
    # One run: the schedule's single request (snapshots once, the windowed assets by range).
    assert result["runs"] == 1 and result["failed_steps"] > 0
    faults = run.emu.stats()["faults"]
    assert {"error", "rate_limit", "malformed", "expired"} <= set(faults), faults
    assert "rejected as expired" in run.proc.stderr
    alerts = [json.loads(body) for _, body in run.webhook.posts]
    assert {a["api"] for a in alerts if a["kind"] == "credentials_expired"} == {"anchor", "op3"}
    with duckdb.connect(run.db, read_only=True) as con:
        apis = {a for (a,) in con.execute("SELECT DISTINCT api FROM raw.responses").fetchall()}
        (echoes,) = con.execute(f"SELECT count(*) FROM ({warehouse.WHOLE_BODIES}) "
                                "WHERE contains(body, ?)",
                                ['"echo": ["***"']).fetchone()
        (titles,) = con.execute("SELECT count(*) FROM anchor.episodes WHERE title = ?",
                                ["***"]).fetchone()
    assert apis == {"anchor", "op3"}
    # the API echoed the credentials; all stored masked (titles: the REST episode list's)
    assert echoes > 10 and (titles > 0 or graphql(run))
    if graphql(run):  # logins, bearers and the dead session all happened
        assert run.emu.spotify.issued and faults["expired"] >= 1
    logs = [p for p in run.home.rglob("*") if p.suffix in (".out", ".err")]
    assert logs and list(run.home.rglob("history/runs/*.db"))


def test_no_secret_in_stdout_or_stderr(run: Run) -> None:
    assert text_hits(run.proc.stdout, run.secrets) == []
    assert text_hits(run.proc.stderr, run.secrets) == []


def test_no_secret_under_dagster_home(run: Run) -> None:
    """Event logs (sqlite), run storage, schedules db, compute logs: every file."""
    assert file_hits(run.home, run.secrets) == []


def test_no_secret_in_any_duckdb_table_or_column(run: Run) -> None:
    hits, searched = duckdb_hits(run.db, run.secrets)
    assert hits == []
    contract = sum(len(warehouse.table_columns(t)) for t in ALL_TABLES)
    assert searched >= contract + len(warehouse.RAW_COLUMNS)  # raw paths and bodies included


def test_no_secret_in_alert_payloads(run: Run) -> None:
    assert run.webhook.posts
    for headers, body in run.webhook.posts:
        assert text_hits(body + json.dumps(headers), run.secrets) == []


def graphql(run: Run) -> bool:
    return any(r.api == "spotify" for r in run.emu.requests)


def test_secrets_travel_only_in_the_cookie_or_authorization_header(run: Run) -> None:
    cookie, token, sp_dc, sp_key = (s.value for s in run.secrets[:4])
    bearers = set(run.emu.spotify.issued)
    exchanges = run.proxy.exchanges
    assert {ex.path.split("/")[1] for ex in exchanges} == (
        {"spotify", "api"} if graphql(run) else {"pod", "api"})
    assert {200, 401} <= {ex.status for ex in exchanges}  # retries and expiry included
    for ex in exchanges:
        headers = {k.lower(): v for k, v in ex.headers.items()}
        assert text_hits(ex.path, run.secrets) == [], ex.path
        if ex.path.startswith("/spotify/accounts/oauth2/"):  # the cookies, to accounts only
            assert headers.get("cookie") == f"sp_dc={sp_dc}; sp_key={sp_key}"
            assert "authorization" not in headers
        elif ex.path.startswith("/spotify/accounts/"):  # the token exchange: neither
            assert "cookie" not in headers and "authorization" not in headers
        elif ex.path.startswith("/spotify/"):  # GraphQL and legacy: the bearer only
            assert "cookie" not in headers
            assert headers.get("authorization", "").removeprefix("Bearer ") in bearers
        elif ex.path.startswith("/pod/api/proxy/v3/"):
            assert headers.get("cookie") == f"anchorpw_s={cookie}" and "authorization" not in headers
        else:
            assert ex.path.startswith("/api/1/"), ex.path
            assert headers.get("authorization") == f"Bearer {token}" and "cookie" not in headers
        others = {k: v for k, v in headers.items() if k not in ("cookie", "authorization")}
        assert text_hits(json.dumps(others), run.secrets) == [], others
    with duckdb.connect(run.db, read_only=True) as con:
        paths = [p for (p,) in con.execute("SELECT path FROM raw.responses").fetchall()]
    credential_param = re.compile(r"(?i)[?&](token|anchorpw_s|access_token|api_key)=")
    assert paths and not [p for p in paths if credential_param.search(p)]
    assert not [r.path_with_query for r in run.emu.requests
                if credential_param.search(r.path_with_query)]  # the emulator's own log


# ---------------------------------------------------------------------------- SQL from values
# Names an f-string handed to ``execute`` may interpolate. Each holds identifiers built
# from tables.py / warehouse.RAW_COLUMNS (checked by the identifier test below). To add one,
# make sure it can only ever hold such identifiers; values go in as ``?`` parameters.
SQL_NAMES = {"schema", "RAW_TABLE", "raw_cols", "raw_names", "raw_select", "col_list", "select_list",
             "row", "column_sql",
             # analytics/quality.py: a tables.py column, a comma list of them
             "column", "list_column", "group_by",
             # warehouse.Stage and OP3's DuckDB-parsed pages: contract columns, the page table
             "stage_cols", "page", "PAGE_TABLE", "REDIRECT_PAGE_TABLE",
             # warehouse.Stage: read_parquet(?) of its pages or its empty table; OP3's JSON
             # pages: their fields picked by position (x[1] AS c0, …)
             "staged", "fields",
             # network_assets.py: the shows dimension's table name
             "SHOWS_TABLE",
             # warehouse.py: the DuckLake database's name in our connections ("lake")
             "LAKE"}
SQL_ATTRIBUTES = {"qualified"}
# analytics/models.py model_ddl: a model's declared columns around its own .sql file's text.
# warehouse.attach_sql / load_sql: ATTACH and LOAD bind no parameter in duckdb 1.5, so they
# quote their path (a stage's temp file, an extension's file, the DuckLake catalog setting).
SQL_BUILDERS = {"ddl", "add_column", "model_ddl", "network_shows_ddl", "attach_sql", "load_sql",
                "staged_body_sql"}
SQL_METHODS = {"execute", "executemany", "sql", "query"}


def sql_calls() -> Iterator[tuple[str, ast.Call]]:
    root = Path(podcast_pipeline.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_METHODS and node.args):
                yield f"{path.relative_to(root.parent)}:{node.lineno}", node


def test_sql_text_only_interpolates_our_identifiers() -> None:
    calls = list(sql_calls())
    assert len(calls) >= 10  # the warehouse's DDL, replace and checksum, the demo summary
    bad = []
    for where, call in calls:
        sql = call.args[0]
        if isinstance(sql, ast.Constant) and isinstance(sql.value, str):
            continue
        if isinstance(sql, ast.Call) and getattr(sql.func, "id", None) in SQL_BUILDERS:
            continue
        if not isinstance(sql, ast.JoinedStr):
            bad.append(f"{where}: SQL is {ast.unparse(sql)!r}, not a literal or f-string")
            continue
        for part in sql.values:
            if not isinstance(part, ast.FormattedValue):
                continue
            expr = part.value
            ok = (isinstance(expr, ast.Name) and expr.id in SQL_NAMES) or (
                isinstance(expr, ast.Attribute) and expr.attr in SQL_ATTRIBUTES)
            if not ok:
                bad.append(f"{where}: interpolates {ast.unparse(expr)!r}")
    assert not bad, "SQL built from something other than our identifiers:\n" + "\n".join(bad)


IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
SQL_TYPE = re.compile(r"^[A-Z]+(\[\])?$")


def test_every_identifier_pasted_into_sql_is_a_plain_name() -> None:
    names = {"raw", "responses", "as_of", *(n for n, _ in KEY_COLUMNS),
             *(n for n, _ in warehouse.RAW_COLUMNS)}
    types = {t for _, t in warehouse.RAW_COLUMNS}
    for table in ALL_TABLES:
        names |= {table.schema, table.name} | {c for c, _ in warehouse.table_columns(table)}
        types |= {t for _, t in warehouse.table_columns(table)}
    from podcast_pipeline.analytics import models, quality

    for model in models.MODELS:
        names |= {models.SCHEMA, model.name} | {c.name for c in model.columns}
        types |= {c.type for c in model.columns}
    names |= {c for group in quality.FRACTION_GROUPS.values() for c in group}
    assert not [n for n in names if not IDENTIFIER.match(n)]
    assert not [t for t in types if not SQL_TYPE.match(t)]
    assert warehouse.RAW_TABLE == "raw.responses"


class RecordingConnection:
    """A real DuckDB connection that keeps every SQL text and its parameters."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[tuple[str, Any]]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, parameters: Any = None) -> RecordingConnection:
        self._log.append((sql, parameters))
        self._con.execute(sql, parameters) if parameters is not None else self._con.execute(sql)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def test_values_reach_duckdb_as_parameters_never_as_sql_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real materialization with a recording connection: the show ids, the partition dates
    and the API's values appear only in parameters and registered frames, never in SQL."""
    log: list[tuple[str, Any]] = []
    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect",
                        lambda *a, **kw: RecordingConnection(real_connect(*a, **kw), log))
    assets = {a.key.to_user_string(): a for a in [*anchor_assets, *op3_assets]}
    with Emulator(EmulatorConfig(seed=SEED, today=date(2025, 6, 1))) as emu:
        env = emu.env
        resources = {
            "anchor": AnchorResource(base_url=env["ANCHOR_BASE_URL"], cookie=env["ANCHOR_PW_S"],
                                     webstation_id=env["ANCHOR_WEBSTATION_ID"]),
            "op3": Op3Resource(base_url=env["OP3_BASE_URL"], token=env["OP3_TOKEN"],
                               show_uuid=env["OP3_SHOW_UUID"], url_prefix=env["OP3_URL_PREFIX"]),
            "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb"))}
        result = dg.materialize([assets["anchor/plays"], assets["op3/downloads"]],
                                partition_key="2025-05-30", resources=resources)
    assert result.success
    writes = [(sql, p) for sql, p in log if sql.lstrip().startswith(("DELETE", "INSERT"))]
    # Per asset: delete + insert of the rows; for raw.responses, the older bodies' split
    # (an insert), trim and drop, then the insert of the new ones. (OP3 downloads stage
    # their page as a Parquet file and its body as a text file: no insert.)
    assert len(writes) == 10
    values = {env["ANCHOR_WEBSTATION_ID"], env["OP3_SHOW_UUID"], "2025-05-30", "20250530"}
    for sql, _ in log:
        # ATTACH binds no parameter (duckdb 1.5): the stage's own temp file is quoted.
        assert "'" not in sql or sql.startswith("ATTACH '/"), f"a string literal in SQL: {sql}"
        assert not [v for v in values if v in sql], sql
    ids = {env["ANCHOR_WEBSTATION_ID"], env["OP3_SHOW_UUID"]}
    deletes = [p for sql, p in writes if sql.startswith("DELETE")]
    assert len(deletes) == 4 and all(ids & {str(v) for v in p} for p in deletes)


@pytest.mark.parametrize("text", [
    "x?token=abc", "a&ToKen=abc", "?apı_key=abc", "?anchorpw_ſ=abc", "&ACCESS_TOKEN=abc",
    "a?b&c?to\u212aen=abc", "Zürich ?api_key=abc&x=1", "&" * 60_000 + "?token=abc",
    "?token=abc" + "?" * 60_000])
def test_credential_query_values_are_masked_in_any_case(text: str) -> None:
    """Every text the case-insensitive parameter regex matches is masked, whichever letter
    the regex folds (dotless ı, long ſ, Kelvin K) and however many '?' and '&' it holds:
    the quick test before the regex must never skip one."""
    from podcast_pipeline.redact import _SECRET_PARAMS, redact

    assert _SECRET_PARAMS.search(text)
    assert "abc" not in redact(text)
    assert redact("Zürich\t" + "?x=1&y=2\t" * 1000) == "Zürich\t" + "?x=1&y=2\t" * 1000
