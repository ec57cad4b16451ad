"""docs/cloud-team.md against the code: the spec-only decoder, the examples, the rules."""

from __future__ import annotations

import doctest
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cloud-team.md"
GOLDEN = sorted((ROOT / "tests" / "golden").glob("batch-*.bin"))


def _blocks(lang: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _decoder() -> dict[str, Any]:
    (code,) = [b for b in _blocks("python") if b.startswith("# spec_decoder.py")]
    assert "import edge_core" not in code  # the spec alone
    assert "from edge_core" not in code
    assert "cloud." not in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "cloud-team.md:spec_decoder", "exec"), namespace)  # the doc's own code
    return namespace


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_spec_decoder_of_the_doc_decodes_every_golden_file(path: Path) -> None:
    decode = _decoder()["decode_batch"]
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    got = decode(path.read_bytes())
    assert got["batch_id"] == expected["batch_id"]
    assert got["thing"] == expected["thing"]
    assert got["data_class"] == expected["data_class"]
    assert got["created"] == expected["created"]
    assert [list(r) for r in got["readings"]] == expected["readings"]


def test_spec_decoder_agrees_with_the_reference_on_a_fresh_batch() -> None:
    from bench.uplink import generate_readings
    from edge_core.batch import decode_batch, encode_split
    from edge_core.model import DataClass

    readings = generate_readings(20, 1, seed=3, data_class=DataClass.INTERVAL)
    decode = _decoder()["decode_batch"]
    for _batch, payload in encode_split(readings, thing="dcu-x", data_class=DataClass.INTERVAL):
        ours = decode(payload)["readings"]
        ref = decode_batch(payload).readings
        assert ours == [
            (r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status) for r in ref
        ]


def test_doctest_example_of_the_doc_holds() -> None:
    (example,) = [b for b in _blocks("python") if b.startswith(">>>")]
    test = doctest.DocTestParser().get_doctest(
        example, dict(_decoder()), "cloud-team.md", str(DOC), 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        runner.run(test, clear_globs=False)
    finally:
        os.chdir(cwd)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted == 4


def _schema(rel: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / rel).read_text(encoding="utf-8")))


def test_json_examples_of_the_doc_validate() -> None:
    docs = [json.loads(b) for b in _blocks("json")]
    request = _schema("docs/schemas/read-request.schema.json")
    response = _schema("docs/schemas/read-response.schema.json")
    alarm = _schema("edge_core/alarms/alarm.schema.json")
    kinds = []
    for doc in docs:
        if "read_at" in doc:
            response.validate(doc)
            kinds.append("response")
        elif "received_ms" in doc:
            rule_added = {"thing", "received_ms"}
            alarm.validate({k: v for k, v in doc.items() if k not in rule_added})
            kinds.append("oms")
        else:
            request.validate(doc)
            kinds.append("request")
    assert sorted(kinds) == ["oms", "request", "response", "response"]


def test_oms_example_is_what_the_rule_engine_sends() -> None:
    from cloud.rules import RuleEngine

    (oms,) = [json.loads(b) for b in _blocks("json") if "received_ms" in b]
    alarm = {k: v for k, v in oms.items() if k not in ("thing", "received_ms")}
    order = json.loads((ROOT / "edge_core/alarms/alarm.schema.json").read_text())["properties"]
    payload = json.dumps({k: alarm[k] for k in order if k in alarm}).encode()
    engine = RuleEngine(clock_ms=lambda: oms["received_ms"], uuid_factory=lambda: "u")
    sent = [
        inv.payload
        for inv in engine.evaluate(f"alarm/ami/{oms['thing']}/power", payload)
        if inv.kind == "sqs" and inv.target == "oms"
    ]
    assert sent == [oms]


def test_every_rule_is_documented_with_its_sql() -> None:
    from cloud.rules import RULES

    text = DOC.read_text(encoding="utf-8")
    for rule in RULES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{rule.name}`")), "")
        assert row, f"rule {rule.name} missing from the rules table"
        assert f"`{rule.sql}`" in row, f"SQL of {rule.name} differs from cloud/rules.py"


def test_lake_columns_are_those_of_the_glue_table() -> None:
    from cloud.template import build

    table = build()["Resources"]["LakeIntervalsTable"]["Properties"]["TableInput"]
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Data lake") : text.index("## REST API")]
    documented = re.findall(r"^\| `([a-z_]+)` \| (?:string|bigint|double|int) \|", section, re.M)
    assert documented == columns


def test_rule_counts_in_the_cost_section_are_those_of_the_rules() -> None:
    from bench.uplink import generate_readings
    from cloud.iotsql import filter_covers
    from cloud.rules import RULES, RuleEngine
    from edge_core.batch import encode_split
    from edge_core.model import DataClass

    text = " ".join(DOC.read_text(encoding="utf-8").split())
    m = re.search(r"matches the filters of (\d+) rules, of which (\d+) run their actions", text)
    assert m, "cost section changed its wording"
    topic = "dt/ami/dcu-x/interval"
    matching = [r for r in RULES if filter_covers(r.topic_filter, topic)]
    readings = generate_readings(2, 1, seed=1, data_class=DataClass.INTERVAL)
    (_, payload), *_ = encode_split(readings, thing="dcu-x", data_class=DataClass.INTERVAL)
    invoked = {inv.rule for inv in RuleEngine(uuid_factory=lambda: "u").evaluate(topic, payload)}
    assert (int(m.group(1)), int(m.group(2))) == (len(matching), len(invoked))
