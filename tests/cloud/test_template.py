from __future__ import annotations

import json

import pytest
import yaml
from cfnlint.api import lint

from cloud.iotsql import parse_sql
from cloud.rules import RULES, LambdaAction, S3Action, SqsAction
from cloud.template import FUNCTIONS, QUEUES, build, render, rule_logical_id


@pytest.mark.slow
def test_template_passes_cfn_lint() -> None:
    """cfn-lint offline with its default rules (errors and warnings), on the YAML rendering;
    the JSON rendering is the same document (test_yaml_has_no_aliases_and_round_trips)."""
    matches = lint(render("yaml"))
    assert [str(m) for m in matches] == []


def test_every_rule_is_rendered_from_its_definition() -> None:
    res = build()["Resources"]
    rules = {k: v for k, v in res.items() if v["Type"] == "AWS::IoT::TopicRule"}
    assert len(rules) == len(RULES)
    for rule in RULES:
        payload = rules[rule_logical_id(rule)]["Properties"]["TopicRulePayload"]
        assert payload["AwsIotSqlVersion"] == "2016-03-23"
        assert payload["Sql"] == rule.sql
        assert parse_sql(payload["Sql"]) == rule.query
        rendered = payload["Actions"]
        assert len(rendered) == len(rule.actions)
        for act, out in zip(rule.actions, rendered, strict=True):
            if isinstance(act, S3Action):
                assert out["S3"]["Key"] == act.key
                assert out["S3"]["BucketName"] == {"Ref": "RawBucket"}
            elif isinstance(act, SqsAction):
                assert out["Sqs"]["QueueUrl"] == {"Ref": QUEUES[act.queue]}
            else:
                assert isinstance(act, LambdaAction)
                fid = FUNCTIONS[act.function][0]
                assert out["Lambda"]["FunctionArn"] == {"Fn::GetAtt": [fid, "Arn"]}
                perms = [
                    v["Properties"]
                    for v in res.values()
                    if v["Type"] == "AWS::Lambda::Permission"
                    and v["Properties"]["Principal"] == "iot.amazonaws.com"
                    and v["Properties"]["FunctionName"] == {"Ref": fid}
                    and v["Properties"]["SourceArn"]
                    == {"Fn::GetAtt": [rule_logical_id(rule), "Arn"]}
                ]
                assert len(perms) == 1


def _statements(role: dict) -> list[dict]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_roles_are_least_privilege() -> None:
    res = build()["Resources"]
    for name, r in res.items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        for st in _statements(r):
            assert st["Effect"] == "Allow"
            assert "*" not in json.dumps(st["Action"]), name
            for resource in st["Resource"]:
                assert resource != "*", name
    # the raw-archive rule may only put objects under raw/ (and its error prefix)
    raw = _statements(res[rule_logical_id(RULES[0]) + "Role"])
    assert {a for s in raw for a in s["Action"]} == {"s3:PutObject"}
    api = _statements(res["ApiRole"])
    assert "s3:PutObject" not in {a for s in api for a in s["Action"]}
    # the API writes only read requests, and publishes only read commands
    for st in api:
        if {"dynamodb:PutItem", "dynamodb:UpdateItem"} & set(st["Action"]):
            assert st["Resource"] == [{"Fn::GetAtt": ["ReadRequestsTable", "Arn"]}]
        if "iot:Publish" in st["Action"]:
            assert st["Action"] == ["iot:Publish"]
            assert [r["Fn::Sub"].endswith(":topic/cmd/ami/*/read/req") for r in st["Resource"]] == [
                True
            ]


def test_yaml_has_no_aliases_and_round_trips() -> None:
    text = render("yaml")
    assert "&id" not in text
    assert "*id" not in text
    assert yaml.safe_load(text) == build()
