"""Bad input and bad configuration, end to end (the table in docs/bad-input.md).

Every case runs the real path: a Dagster materialization of one asset against the
emulator over loopback HTTP, into a DuckDB file in tmp_path. Malformed bodies come from
the emulator's own fault modes (HTML page, truncated body) or from ``Tamper``, a loopback
proxy that rewrites the emulator's answer on the endpoint's real path. Each partition is
seeded by a clean run first, so "nothing written" is checked against real old rows.

Budget: about 25 s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import pytest

from podcast_pipeline import warehouse
from podcast_pipeline.anchor.assets import anchor_assets
from podcast_pipeline.emulator import Emulator, EmulatorConfig, Faults
from podcast_pipeline.emulator.common import b58encode
from podcast_pipeline.http import DEADLINE_ENV, MAX_JSON_DEPTH_ENV
from podcast_pipeline.op3.assets import op3_assets
from podcast_pipeline.partitions import START_DATE_ENV
from podcast_pipeline.resources import AnchorResource, Op3Resource, WarehouseResource
from podcast_pipeline_tests.tamper import Answer, Rule, Tamper

TODAY = date(2025, 6, 1)
PARTITION = "2025-05-30"
ASSETS = {a.key.to_user_string(): a for a in [*anchor_assets, *op3_assets]}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"

# Real paths of the endpoints the cases tamper with (after the emulator's 308 for OP3 hits).
PLAYS = r"/analytics/station/\d+/plays\?"
GENDER = r"/analytics/station/\d+/playsByGender\?"
DOWNLOADS = r"/downloads/show/"
HITS = r"/hits\?"


# ---------------------------------------------------------------------------- harness
@dataclass
class Pipeline:
    """One emulator + proxy + DuckDB file + Dagster instance; ``materialize`` runs an asset."""

    emu: Emulator
    proxy: Tamper
    db: str
    instance: dg.DagsterInstance
    overrides: dict[str, Any] = field(default_factory=dict)

    def resources(self) -> dict[str, Any]:
        env = self.proxy.env(self.emu.env)
        fast = {"max_retries": 2, "backoff_factor": 0.0}
        anchor = {"base_url": env["ANCHOR_BASE_URL"], "webstation_id": env["ANCHOR_WEBSTATION_ID"],
                  "cookie": env["ANCHOR_PW_S"], **fast}
        op3 = {"base_url": env["OP3_BASE_URL"], "token": env["OP3_TOKEN"],
               "show_uuid": env["OP3_SHOW_UUID"], "url_prefix": env["OP3_URL_PREFIX"], **fast}
        anchor.update(self.overrides.get("anchor", {}))
        op3.update(self.overrides.get("op3", {}))
        return {"anchor": AnchorResource(**anchor), "op3": Op3Resource(**op3),
                "warehouse": WarehouseResource(database=self.overrides.get("database", self.db))}

    def materialize(self, asset: str, partition: str = PARTITION) -> dg.ExecuteInProcessResult:
        return dg.materialize([ASSETS[asset]], partition_key=partition, resources=self.resources(),
                              instance=self.instance, raise_on_error=False)

    def seed(self, asset: str) -> tuple[list[tuple], list[tuple]]:
        """A clean run of ``asset``, then everything stored: (its table, its raw responses)."""
        result = self.materialize(asset)
        assert result.success, failure(result)
        stored = self.stored(asset)
        assert stored[0] and stored[1], "the clean run must write rows to compare against"
        return stored

    def stored(self, asset: str) -> tuple[list[tuple], list[tuple]]:
        table = asset.replace("/", ".")
        with duckdb.connect(self.db, read_only=True) as con:
            rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            raw = con.execute("SELECT * FROM raw.responses WHERE asset = ? ORDER BY ALL",
                              [table]).fetchall()
        return rows, raw

    def values(self, asset: str, columns: str) -> list[tuple]:
        with duckdb.connect(self.db, read_only=True) as con:
            return con.execute(f"SELECT {columns} FROM {asset.replace('/', '.')} ORDER BY ALL"
                               ).fetchall()


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    """The one step failure's description and metadata (fails if it was not a dg.Failure)."""
    events = [e for e in result.all_events if e.is_step_failure]
    if not events:
        return "", {}
    data = events[0].step_failure_data
    assert data.user_failure_data is not None, f"untyped failure: {data.error.to_string()}"
    meta = {k: getattr(v, "value", v) for k, v in data.user_failure_data.metadata.items()}
    return data.user_failure_data.description or "", meta


def materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, today=TODAY)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def proxy(emu: Emulator) -> Iterator[Tamper]:
    with Tamper(emu.url) as tamper:
        yield tamper


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def pipeline(emu: Emulator, proxy: Tamper, instance: dg.DagsterInstance,
             tmp_path: Path) -> Iterator[Pipeline]:
    emu.set_faults(Faults())
    proxy.clear()
    yield Pipeline(emu, proxy, str(tmp_path / "podcast.duckdb"), instance)
    emu.set_faults(Faults())
    proxy.clear()


# ---------------------------------------------------------------------------- body rewrites
def json_rule(change: Callable[[Any], object]) -> Rule:
    """Rewrite a JSON answer: ``change`` edits the parsed body in place."""
    def rule(path: str, answer: Answer) -> Answer:
        body = answer.json()
        change(body)
        return answer.with_json(body)
    return rule


def tsv_rule(change: Callable[[list[str]], list[str]]) -> Rule:
    """Rewrite a TSV answer line by line (the header is line 0; the trailing '' is kept).
    A lone surrogate such as "\\udcff" in a line goes out as that raw byte (0xff)."""
    def rule(path: str, answer: Answer) -> Answer:
        lines = answer.body.decode().split("\n")
        body = "\n".join(change(lines)).encode("utf-8", "surrogateescape")
        return Answer(answer.status, answer.headers, body)
    return rule


def bytes_rule(change: Callable[[bytes], bytes]) -> Rule:
    return lambda path, answer: Answer(answer.status, answer.headers, change(answer.body))


def rows_of(body: dict[str, Any]) -> list[list[Any]]:
    return body["data"]["rows"]


def cut_field(lines: list[str]) -> list[str]:
    fields = lines[2].split("\t")
    lines[2] = "\t".join(fields[:5] + fields[6:])  # one field fewer than the header
    return lines


def put_byte(lines: list[str]) -> list[str]:
    fields = lines[1].split("\t")
    fields[7] = fields[7] + "\udcff"  # agentName, followed by the byte 0xff
    lines[1] = "\t".join(fields)
    return lines


def repeat_token(path: str, answer: Answer) -> Answer:
    """Every page says 'continue from the start of the day', so the token never changes."""
    token = b58encode(json.dumps({"date": PARTITION, "rowNumber": 0},
                                 separators=(",", ":")).encode())
    return answer.with_header("x-continuation-token", token)


def non_utf8_json(body: bytes) -> bytes:
    assert b'"kind":"plays"' in body  # else the proxy breaks the connection: a loud failure
    return body.replace(b'"kind":"plays"', b'"kind":"pl\xffays"', 1)


SENTINEL = 987654321


def bare_number(literal: bytes) -> Rule:
    """Put a bare JSON token (``Infinity``, ``NaN``: not JSON, but Python's json reads
    them) where the first day's plays are."""
    def rule(path: str, answer: Answer) -> Answer:
        body = answer.json()
        rows_of(body)[0][1] = SENTINEL
        text = json.dumps(body).encode().replace(str(SENTINEL).encode(), literal)
        return Answer(answer.status, answer.headers, text)
    return rule


def conflicting_day(body: dict[str, Any]) -> None:
    day, plays = rows_of(body)[0]
    rows_of(body).append([day, plays + 5])


# ---------------------------------------------------------------------------- rejected inputs
@dataclass(frozen=True)
class Rejected:
    id: str  # also the row key in docs/bad-input.md
    asset: str
    endpoint: str  # the client's endpoint name the error must carry
    expect: str  # a fragment of the error message
    faults: Faults | None = None
    path: str = ""
    rule: Rule | None = None
    kind: str = "malformed_response"  # the error_kind in the failure's metadata


def html(endpoint: str) -> Faults:
    return Faults(malformed_rate=1.0, malformed_kind="html", apply_to=frozenset({endpoint}))


def truncated(endpoint: str) -> Faults:
    return Faults(malformed_rate=1.0, malformed_kind="truncated", apply_to=frozenset({endpoint}))


REJECTED = [
    Rejected("html-login-page-200", "anchor/plays", "plays", "got an HTML page",
             faults=html("plays")),
    Rejected("html-challenge-page-200-op3", "op3/downloads", "downloads", "expected TSV but got HTML",
             faults=html("downloads")),
    Rejected("truncated-json", "anchor/plays", "plays", "not valid JSON (truncated",
             faults=truncated("plays")),
    Rejected("truncated-tsv", "op3/downloads", "downloads", "does not end with a newline",
             faults=truncated("downloads")),
    Rejected("json-without-data", "anchor/plays", "plays", "no 'data' object",
             path=PLAYS, rule=json_rule(lambda b: b.pop("data"))),
    Rejected("json-without-rows", "anchor/plays", "plays", "no 'data.rows' list",
             path=PLAYS, rule=json_rule(lambda b: b["data"].pop("rows"))),
    Rejected("op3-json-without-rows", "op3/redirect_logs", "redirect_logs", "no 'rows' list",
             path=HITS, rule=json_rule(lambda b: b.pop("rows"))),
    Rejected("row-with-too-few-cells", "anchor/plays", "plays", "row 0 has 1 cells but there are 2",
             path=PLAYS, rule=json_rule(lambda b: rows_of(b)[0].pop())),
    Rejected("row-with-too-many-cells", "anchor/plays", "plays", "row 0 has 3 cells but there are 2",
             path=PLAYS, rule=json_rule(lambda b: rows_of(b)[0].append(1))),
    Rejected("non-numeric-string-number", "anchor/plays", "plays", "column 'plays' is not BIGINT",
             path=PLAYS, rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, "12a"))),
    Rejected("same-day-twice-with-different-values", "anchor/plays", "plays",
             "comes back in 2 rows with different plays", path=PLAYS,
             rule=json_rule(conflicting_day)),
    Rejected("op3-repeated-continuation-token", "op3/downloads", "downloads",
             "stopping instead of looping", path=DOWNLOADS, rule=repeat_token),
    Rejected("tsv-line-missing-a-field", "op3/downloads", "downloads", "TSV line 3 has 18 fields, the header has 19",
             path=DOWNLOADS, rule=tsv_rule(cut_field)),
    Rejected("non-utf8-byte-json", "anchor/plays", "plays", "not valid UTF-8 (byte 0xff",
             path=PLAYS, rule=bytes_rule(non_utf8_json)),
    Rejected("non-utf8-byte-tsv", "op3/downloads", "downloads", "not valid UTF-8 (byte 0xff",
             path=DOWNLOADS, rule=tsv_rule(put_byte)),
    # -- suspicious answers that would replace good rows with fewer or none
    Rejected("op3-empty-body-200", "op3/downloads", "downloads",
             "the body is empty, without the header line", path=DOWNLOADS,
             rule=bytes_rule(lambda b: b"")),
    Rejected("anchor-empty-body-200", "anchor/plays", "plays",
             "not valid JSON (truncated or corrupt, 0 characters)", path=PLAYS,
             rule=bytes_rule(lambda b: b"")),
    Rejected("only-row-outside-the-window", "anchor/plays", "plays",
             "1 of 1 rows lie outside the requested 2025-05-30..2025-05-30 (field 'date' is "
             "3000-01-01", path=PLAYS, rule=json_rule(lambda b: rows_of(b)[0].__setitem__(
                 0, 32503680000))),
    Rejected("row-for-the-day-before", "anchor/plays", "plays", "lie outside the requested",
             path=PLAYS, rule=json_rule(lambda b: rows_of(b).append(
                 [rows_of(b)[0][0] - 86400, 3]))),
    Rejected("op3-rows-outside-the-window", "op3/redirect_logs", "redirect_logs",
             "lie outside the requested", path=HITS,
             rule=json_rule(lambda b: [r.__setitem__("time", "2999-01-01T00:00:00.000Z")
                                       for r in b["rows"]])),
    Rejected("duplicate-json-key", "anchor/plays", "plays",
             "the key 'rows' appears twice in one JSON object", path=PLAYS,
             rule=bytes_rule(lambda b: b.replace(b'"data":{', b'"data":{"rows":[],', 1))),
    Rejected("duplicate-tsv-column", "op3/downloads", "downloads",
             "the TSV header names column(s) ['agentType'] twice", path=DOWNLOADS,
             rule=tsv_rule(lambda lines: [lines[0].replace("agentName", "agentType"),
                                          *lines[1:]])),
    Rejected("breakdown-shrinks-by-more-than-half", "anchor/plays_by_gender", "plays_by_gender",
             "would shrink from 4 to 1 rows (75% fewer; at most 50% is accepted)", path=GENDER,
             rule=json_rule(lambda b: b["data"].__setitem__("rows", rows_of(b)[:1])),
             kind="refused_replace"),
    Rejected("downloads-shrink-by-more-than-half", "op3/downloads", "downloads",
             "would shrink from", path=DOWNLOADS, rule=tsv_rule(lambda lines: lines[:6] + [""]),
             kind="refused_replace"),
    Rejected("answer-for-another-station", "anchor/plays", "plays",
             "the answer is for stationId 1234, not", path=PLAYS,
             rule=json_rule(lambda b: b.__setitem__("stationId", 1234))),
    Rejected("op3-rows-of-another-show", "op3/downloads", "downloads",
             "rows belong to show 0123456789abcdef0123456789abcdef, not to", path=DOWNLOADS,
             rule=tsv_rule(lambda lines: [lines[0]] + [
                 "\t".join(f if i != 3 else "0123456789abcdef0123456789abcdef"
                           for i, f in enumerate(line.split("\t"))) if line else line
                 for line in lines[1:]])),
    Rejected("partial-content-206", "anchor/plays", "plays",
             "HTTP 206 instead of 200: not a complete answer to a GET", path=PLAYS,
             rule=lambda path, answer: Answer(206, answer.headers, answer.body)),
    # -- values outside their column's contract
    Rejected("negative-count", "anchor/plays", "plays",
             "column 'plays' holds -3 on 2025-05-30: a count, id, duration or share cannot be "
             "negative", path=PLAYS, rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, -3))),
    Rejected("boolean-as-count", "anchor/plays", "plays",
             "column 'plays' is not BIGINT: True is a boolean, not a number", path=PLAYS,
             rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, True))),
    Rejected("fraction-above-one", "anchor/plays_by_gender", "plays_by_gender",
             "column 'fraction' holds 1.5 on 2025-05-30: a fraction lies between 0 and 1",
             path=GENDER, rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, 1.5))),
    Rejected("negative-fraction", "anchor/plays_by_gender", "plays_by_gender",
             "column 'fraction' holds -0.25", path=GENDER,
             rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, -0.25))),
    Rejected("infinity-as-text", "anchor/plays_by_gender", "plays_by_gender",
             "column 'fraction' is not DOUBLE: 'Infinity' is not a number", path=GENDER,
             rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, "Infinity"))),
    Rejected("infinity-literal", "anchor/plays", "plays", "Infinity is not a JSON number",
             path=PLAYS, rule=bare_number(b"Infinity")),
    Rejected("nan-literal", "anchor/plays", "plays", "NaN is not a JSON number",
             path=PLAYS, rule=bare_number(b"NaN")),
    Rejected("number-beyond-a-double", "anchor/plays_by_gender", "plays_by_gender",
             "'1e999' is not a finite number", path=GENDER,
             rule=json_rule(lambda b: rows_of(b)[0].__setitem__(1, "1e999"))),
    # -- bounds
    Rejected("deeply-nested-json", "anchor/plays", "plays",
             f"the JSON nests 100000 levels deep, more than the limit of 64; raise "
             f"{MAX_JSON_DEPTH_ENV}", path=PLAYS,
             rule=bytes_rule(lambda b: b"[" * 100_000 + b"]" * 100_000), kind="limit_exceeded"),
]


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
def test_rejected_input_fails_typed_and_writes_nothing(pipeline: Pipeline, case: Rejected) -> None:
    before = pipeline.seed(case.asset)
    pipeline.emu.reset_stats()
    if case.faults is not None:
        pipeline.emu.set_faults(case.faults)
    if case.rule is not None:
        pipeline.proxy.rewrite(case.path, case.rule)

    result = pipeline.materialize(case.asset)

    assert not result.success
    description, meta = failure(result)
    table = case.asset.replace("/", ".")
    assert description.startswith(f"{table} partition {PARTITION}: "), description
    assert f"endpoint '{case.endpoint}'" in description and case.expect in description, description
    assert "\n" not in description
    assert meta["error_kind"] == case.kind and meta["endpoint"] == case.endpoint
    assert meta["first_partition"] == PARTITION
    # The bad answer was really served, and nothing of it reached the warehouse.
    served = pipeline.emu.stats()["faults"].get("malformed", 0) + pipeline.proxy.rewritten
    assert served > 0
    assert pipeline.stored(case.asset) == before


# ---------------------------------------------------------------------------- tolerated inputs
# One test each below; these are their rows in docs/bad-input.md.
TOLERATED_IDS = ["unknown-extra-column", "unknown-extra-tsv-column", "nulls-for-numbers",
                 "string-numbers", "empty-rows", "empty-tsv-with-its-header", "duplicate-rows",
                 "duplicate-tsv-lines", "utf8-text-in-tsv", "small-shrink"]


def add_column(body: dict[str, Any]) -> None:
    body["data"]["columnHeaders"].append({"name": "Skips", "type": "integer"})
    for row in rows_of(body):
        row.append(3)


def drift_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "no_schema_drift"
    return evaluation


def test_unknown_extra_column_is_kept_out_and_flagged_as_drift(pipeline: Pipeline) -> None:
    pipeline.seed("anchor/plays")
    before = pipeline.values("anchor/plays", "partition_date, date, plays")
    pipeline.proxy.rewrite(PLAYS, json_rule(add_column))

    result = pipeline.materialize("anchor/plays")

    assert result.success
    check = drift_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["unknown_columns"].value == "skips"
    assert pipeline.values("anchor/plays", "partition_date, date, plays") == before
    with duckdb.connect(pipeline.db, read_only=True) as con:
        bodies = [b for (b,) in con.execute(
            f"SELECT body FROM ({warehouse.WHOLE_BODIES}) WHERE asset = 'anchor.plays'").fetchall()]
    assert any('"Skips"' in b for b in bodies), "the new column stays visible in raw.responses"


def test_unknown_extra_tsv_column_is_flagged_as_drift(pipeline: Pipeline) -> None:
    before = pipeline.seed("op3/downloads")[0]
    pipeline.proxy.rewrite(DOWNLOADS, tsv_rule(
        lambda lines: [line + ("\tlistenerScore" if n == 0 else "\t7") if line else line
                       for n, line in enumerate(lines)]))

    result = pipeline.materialize("op3/downloads")

    assert result.success
    check = drift_check(result)
    assert not check.passed and check.metadata["unknown_columns"].value == "listener_score"
    after = pipeline.stored("op3/downloads")[0]
    assert [r[3:] for r in after] == [r[3:] for r in before]  # same rows; only fetched_at moved


def test_nulls_where_numbers_are_expected_stay_null_and_are_reported(pipeline: Pipeline) -> None:
    pipeline.seed("anchor/plays")
    pipeline.proxy.rewrite(PLAYS, json_rule(lambda b: rows_of(b)[0].__setitem__(1, None)))

    result = pipeline.materialize("anchor/plays")

    assert result.success
    assert materialization(result)["null_numbers"] == "plays: 1 of 1 rows"
    assert pipeline.values("anchor/plays", "date, plays") == [(date(2025, 5, 30), None)]


def test_string_numbers_are_read_as_numbers(pipeline: Pipeline) -> None:
    pipeline.seed("anchor/plays")
    before = pipeline.values("anchor/plays", "date, plays")
    pipeline.proxy.rewrite(PLAYS, json_rule(
        lambda b: b["data"].__setitem__("rows", [[str(t), str(n)] for t, n in rows_of(b)])))

    result = pipeline.materialize("anchor/plays")

    assert result.success and "null_numbers" not in materialization(result)
    assert pipeline.values("anchor/plays", "date, plays") == before


def test_empty_rows_replace_the_partition_with_nothing_and_say_so(pipeline: Pipeline) -> None:
    pipeline.seed("anchor/plays_by_gender")
    pipeline.proxy.rewrite(GENDER, json_rule(lambda b: b["data"].__setitem__("rows", [])))

    result = pipeline.materialize("anchor/plays_by_gender")

    assert result.success
    meta = materialization(result)
    assert meta["dagster/row_count"] == 0 and "returned no rows" in meta["note"]
    rows, raw = pipeline.stored("anchor/plays_by_gender")
    names = [n for n, _ in warehouse.RAW_COLUMNS]
    body, part = names.index("body"), names.index("part")
    parts = sorted((r for r in raw if r[2] == "plays_by_gender"), key=lambda r: r[part])
    answer = "".join(r[body] for r in parts)  # the empty answer, as evidence
    assert rows == [] and [r[part] for r in parts] == list(range(len(parts)))
    assert '"rows":[]' in answer.replace(" ", "")


def test_a_tsv_with_only_its_header_empties_the_day_and_says_so(pipeline: Pipeline) -> None:
    """OP3's own empty envelope (the header line, no rows) is an explicit "no downloads"."""
    assert pipeline.seed("op3/downloads")[0]
    pipeline.proxy.rewrite(DOWNLOADS, tsv_rule(lambda lines: [lines[0], ""]))

    result = pipeline.materialize("op3/downloads")

    assert result.success
    meta = materialization(result)
    assert meta["dagster/row_count"] == 0 and "returned no rows" in meta["note"]
    assert pipeline.stored("op3/downloads")[0] == []


def test_a_small_shrink_is_accepted(pipeline: Pipeline) -> None:
    """Fewer rows than before, but within PODCAST_PIPELINE_MAX_SHRINK_FRACTION (a day's
    downloads restated a little lower): replaced as sent."""
    before = pipeline.seed("op3/downloads")[0]
    pipeline.proxy.rewrite(DOWNLOADS, tsv_rule(lambda lines: lines[:-3] + [""]))  # 2 fewer

    result = pipeline.materialize("op3/downloads")

    assert result.success and len(pipeline.stored("op3/downloads")[0]) == len(before) - 2


def test_request_counts_in_metadata_are_exact(pipeline: Pipeline) -> None:
    """A 503, then a body cut off, then the answer: 3 requests, 1 retry, 1 re-fetch."""
    pipeline.seed("anchor/plays")
    pipeline.proxy.clear()
    answers = iter(["503", "cut"])

    def flaky(path: str, answer: Answer) -> Answer:
        step = next(answers, "ok")
        if step == "503":
            return Answer(503, [("Content-Type", "application/json")], b'{"error":"busy"}')
        return Answer(answer.status, answer.headers, answer.body[:20]) if step == "cut" else answer
    pipeline.proxy.rewrite(PLAYS, flaky)

    result = pipeline.materialize("anchor/plays")

    assert result.success
    meta = materialization(result)
    sent = pipeline.proxy.exchanges  # everything the run sent, the station-id bootstrap too
    assert (meta["requests"], meta["retries"], meta["malformed_refetches"]) == (len(sent), 1, 1)
    assert [e.status for e in sent if "/plays?" in e.path] == [503, 200, 200]


def test_exact_duplicate_rows_are_dropped_and_counted(pipeline: Pipeline) -> None:
    pipeline.seed("anchor/plays")
    before = pipeline.values("anchor/plays", "partition_date, date, plays")
    pipeline.proxy.rewrite(PLAYS, json_rule(lambda b: rows_of(b).append(list(rows_of(b)[0]))))

    result = pipeline.materialize("anchor/plays")

    assert result.success and materialization(result)["duplicates_dropped"] == 1
    assert pipeline.values("anchor/plays", "partition_date, date, plays") == before


def test_duplicate_tsv_lines_are_dropped_and_counted(pipeline: Pipeline) -> None:
    before = pipeline.seed("op3/downloads")[0]
    pipeline.proxy.rewrite(DOWNLOADS, tsv_rule(lambda lines: lines[:2] + lines[1:]))

    result = pipeline.materialize("op3/downloads")

    assert result.success and materialization(result)["duplicates_dropped"] == 1
    assert [r[3:] for r in pipeline.stored("op3/downloads")[0]] == [r[3:] for r in before]


def test_utf8_text_in_tsv_without_charset_is_stored_exactly(pipeline: Pipeline) -> None:
    """OP3 sends TSV with no charset; read as Latin-1 it would store "Ã\x8ele-de-France"."""
    pipeline.seed("op3/downloads")

    def region(lines: list[str]) -> list[str]:
        fields = lines[1].split("\t")
        fields[16] = "Île-de-France"  # regionName
        lines[1] = "\t".join(fields)
        return lines

    pipeline.proxy.rewrite(DOWNLOADS, tsv_rule(region))
    result = pipeline.materialize("op3/downloads")

    assert result.success
    names = {n for (n,) in pipeline.values("op3/downloads", "region_name")}
    assert "Île-de-France" in names


# ---------------------------------------------------------------------------- bad configuration
CREDENTIAL_VARS = ("ANCHOR_PW_S", "ANCHOR_WEBSTATION_ID", "ANCHOR_BASE_URL", "OP3_TOKEN",
                   "OP3_SHOW_UUID", "OP3_BASE_URL", "OP3_URL_PREFIX", "DUCKDB_PATH",
                   DEADLINE_ENV, "PODCAST_PIPELINE_MAX_SHRINK_FRACTION")


@dataclass(frozen=True)
class BadConfig:
    id: str
    asset: str
    setting: str  # the variable the one-line message must name
    fix: str  # a fragment of the fix it must give
    overrides: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)


BAD_CONFIG = [
    BadConfig("missing-cookie", "anchor/plays", "ANCHOR_PW_S", "copy the value of the cookie",
              {"anchor": {"cookie": None}}),
    BadConfig("empty-cookie", "anchor/plays", "ANCHOR_PW_S", "copy the value of the cookie",
              {"anchor": {"cookie": None}}, {"ANCHOR_PW_S": "  "}),
    BadConfig("missing-token", "op3/downloads", "OP3_TOKEN", "op3.dev/api/keys",
              {"op3": {"token": None}}),
    BadConfig("empty-token", "op3/downloads", "OP3_TOKEN", "op3.dev/api/keys",
              {"op3": {"token": None}}, {"OP3_TOKEN": ""}),
    BadConfig("cookie-with-its-name", "anchor/plays", "ANCHOR_PW_S", "only the value",
              {"anchor": {"cookie": "anchorpw_s=s%3Aemulator-abc"}}),
    BadConfig("malformed-webstation-id", "anchor/plays", "ANCHOR_WEBSTATION_ID", "hex",
              {"anchor": {"webstation_id": "FB37-D7A4"}}),
    BadConfig("malformed-show-uuid", "op3/downloads", "OP3_SHOW_UUID", "without dashes",
              {"op3": {"show_uuid": "a18389b8-a52d-4112-a782-b32f40f73df6"}}),
    BadConfig("duckdb-path-under-a-file", "anchor/plays", "DUCKDB_PATH", "writable folder",
              {"database": "FILE/podcast.duckdb"}),
    BadConfig("duckdb-path-is-a-folder", "op3/downloads", "DUCKDB_PATH", "a file path",
              {"database": "DIR"}),
    BadConfig("partition-before-start-date", "anchor/plays", START_DATE_ENV, "or earlier",
              environ={START_DATE_ENV: "2025-05-31"}),
    BadConfig("start-date-not-a-date", "op3/downloads", START_DATE_ENV, "YYYY-MM-DD",
              environ={START_DATE_ENV: "2025/01/01"}),
    BadConfig("cookie-with-a-zero-width-space", "anchor/plays", "ANCHOR_PW_S",
              "at position 17 of 21: U+200B (ZERO WIDTH SPACE)",
              {"anchor": {"cookie": "s%3Aemulator-abc\u200bdefg"}}),
    BadConfig("token-with-an-en-dash", "op3/downloads", "OP3_TOKEN", "U+2013 (EN DASH)",
              {"op3": {"token": "emulator\u2013token"}}),
    BadConfig("base-url-with-user-and-password", "op3/downloads", "OP3_BASE_URL",
              "never in the URL", {"op3": {"base_url": "USERINFO"}}),
    BadConfig("base-url-with-a-query", "anchor/plays", "ANCHOR_BASE_URL",
              "Remove everything from '?' on", {"anchor": {"base_url": "QUERY"}}),
    BadConfig("duckdb-path-is-a-text-file", "anchor/plays", "DUCKDB_PATH",
              "is a file of another kind, not a DuckDB database", {"database": "TEXT"}),
    BadConfig("duckdb-path-is-an-empty-file", "op3/downloads", "DUCKDB_PATH",
              "is an empty file, not a DuckDB database", {"database": "EMPTY"}),
    BadConfig("duckdb-path-is-sqlite", "anchor/plays", "DUCKDB_PATH",
              "is an SQLite database, not a DuckDB database", {"database": "SQLITE"}),
    BadConfig("request-deadline-not-a-number", "op3/downloads", DEADLINE_ENV,
              "a number above 0", environ={DEADLINE_ENV: "ten"}),
    BadConfig("shrink-guard-out-of-range", "anchor/plays", "PODCAST_PIPELINE_MAX_SHRINK_FRACTION",
              "not a fraction between 0 and 1", environ={
                  "PODCAST_PIPELINE_MAX_SHRINK_FRACTION": "2"}),
]


@pytest.mark.parametrize("case", BAD_CONFIG, ids=[c.id for c in BAD_CONFIG])
def test_bad_configuration_is_one_line_before_any_request(
        pipeline: Pipeline, case: BadConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in case.environ.items():
        monkeypatch.setenv(var, value)
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "TEXT").write_text("date,plays\n2025-05-30,59\n")
    (tmp_path / "EMPTY").write_bytes(b"")
    with sqlite3.connect(tmp_path / "SQLITE") as lite:
        lite.execute("CREATE TABLE plays (day TEXT, plays INTEGER)")
    overrides = {k: dict(v) if isinstance(v, dict) else v for k, v in case.overrides.items()}
    if "database" in overrides:
        overrides["database"] = str(tmp_path / overrides["database"])
    proxy = urlsplit(pipeline.proxy.url)
    urls = {"USERINFO": f"http://user:pw@{proxy.netloc}/api/1",
            "QUERY": f"{pipeline.proxy.url}/pod/api/proxy/v3?isMumsCompatible=true"}
    for api in ("anchor", "op3"):
        if overrides.get(api, {}).get("base_url") in urls:
            overrides[api]["base_url"] = urls[overrides[api]["base_url"]]
    pipeline.overrides = overrides
    pipeline.emu.reset_stats()

    result = pipeline.materialize(case.asset)

    assert not result.success
    description, meta = failure(result)
    assert meta["error_kind"] == "config_error" and meta["setting"] == case.setting
    assert description.startswith(case.setting) and case.fix in description, description
    assert "\n" not in description
    assert pipeline.emu.stats()["requests"] == 0 and pipeline.proxy.exchanges == []


def test_partition_outside_the_partitions_is_refused_before_any_request(
        pipeline: Pipeline) -> None:
    pipeline.emu.reset_stats()
    with pytest.raises(dg.DagsterUnknownPartitionError):
        pipeline.materialize("anchor/plays", partition="2020-01-01")
    assert pipeline.emu.stats()["requests"] == 0


# ---------------------------------------------------------------------------- the docs table
def test_docs_table_lists_every_case() -> None:
    """docs/bad-input.md is the user-facing copy of this file: one row per case id."""
    text = DOCS.read_text()
    cases = [c.id for c in REJECTED] + [c.id for c in BAD_CONFIG] + TOLERATED_IDS
    missing = [c for c in cases if f"`{c}`" not in text]
    assert not missing, f"docs/bad-input.md lacks rows for {missing}"

