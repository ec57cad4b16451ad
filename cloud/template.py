"""Render the CloudFormation template of the cloud companion from the rule definitions.

The IoT rules are generated from :data:`cloud.rules.RULES` (the same objects the local
evaluator runs), each with ``AwsIotSqlVersion`` 2016-03-23 (CloudFormation would otherwise
default to 2015-10-08, and cfn-lint does not warn). Every role allows only what its holder
does: a rule role may put objects under ``raw/`` or send to its own queues; the ingest function
reads/writes its tables and writes ``lake/`` and ``dead-letter/``; the documents function
writes the dashboard tables and completes read requests; the API function reads, writes only
read requests, and may publish only on ``cmd/ami/*/read/req``.

Resource names are derived from the stack name, so two stacks can live in one account. The
Lambda handlers are :mod:`cloud.lambda_handlers` (``ingest``, ``alarm``, ``api``), packaged as
one zip given by the ``CodeBucket``/``CodeKey`` parameters.
"""

from __future__ import annotations

import json
from typing import Any

from cloud.iotsql import SQL_VERSION
from cloud.rules import RULES, LambdaAction, Rule, S3Action, SqsAction
from edge_core.errors import ConfigError

__all__ = ["FUNCTIONS", "QUEUES", "TABLES", "build", "render", "rule_logical_id"]

# queue name of the rules -> logical id
QUEUES = {"oms": "OmsQueue", "revenue-protection": "RevenueProtectionQueue"}
# function name of the rules/API -> (logical id, handler)
FUNCTIONS = {
    "ingest": ("IngestFunction", "cloud.lambda_handlers.ingest"),
    "alarm": ("AlarmFunction", "cloud.lambda_handlers.alarm"),
    "api": ("ApiFunction", "cloud.lambda_handlers.api"),
    "documents": ("DocumentsFunction", "cloud.lambda_handlers.documents"),
}
# logical id -> (environment variable, partition key, sort key or None)
TABLES = {
    "LatestTable": ("AMI_LATEST_TABLE", ("meter", "S"), ("channel", "S")),
    "IntervalsTable": ("AMI_INTERVALS_TABLE", ("series", "S"), ("capture_time", "N")),
    "ProcessedBatchesTable": ("AMI_BATCHES_TABLE", ("batch_id", "S"), None),
    "OutagesTable": ("AMI_OUTAGES_TABLE", ("key", "S"), ("start", "N")),
    "RegistryTable": ("AMI_REGISTRY_TABLE", ("meter", "S"), ("valid_from", "N")),
    "ReadRequestsTable": ("AMI_READS_TABLE", ("id", "S"), None),
    "FleetTable": ("AMI_FLEET_TABLE", ("meter", "S"), None),
    "EventsTable": ("AMI_EVENTS_TABLE", ("kind", "S"), ("sort", "S")),
    "HealthTable": ("AMI_HEALTH_TABLE", ("thing", "S"), ("time", "N")),
}
_TTL_TABLES = ("ProcessedBatchesTable", "IntervalsTable", "ReadRequestsTable", "HealthTable")


def _ref(name: str) -> dict[str, Any]:
    return {"Ref": name}


def _arn(name: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [name, "Arn"]}


def _bucket_objects(prefix: str) -> dict[str, Any]:
    return {"Fn::Sub": f"${{RawBucket.Arn}}/{prefix}*"}


def _name(suffix: str) -> dict[str, Any]:
    return {"Fn::Sub": f"${{AWS::StackName}}-{suffix}"}


def rule_logical_id(rule: Rule) -> str:
    return "Rule" + "".join(p.capitalize() for p in rule.name.split("_"))


def _assume(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


def _policy(name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "PolicyName": name,
        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
    }


def _allow(actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def _table(pk: tuple[str, str], sk: tuple[str, str] | None, ttl: bool) -> dict[str, Any]:
    attrs = [{"AttributeName": pk[0], "AttributeType": pk[1]}]
    keys = [{"AttributeName": pk[0], "KeyType": "HASH"}]
    if sk is not None:
        attrs.append({"AttributeName": sk[0], "AttributeType": sk[1]})
        keys.append({"AttributeName": sk[0], "KeyType": "RANGE"})
    props: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attrs,
        "KeySchema": keys,
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }
    if ttl:
        props["TimeToLiveSpecification"] = {"AttributeName": "expires", "Enabled": True}
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": props,
    }


def _function(key: str, role: str, timeout: int, memory: int) -> dict[str, Any]:
    logical, handler = FUNCTIONS[key]
    env: dict[str, Any] = {var: _ref(tid) for tid, (var, _, _) in TABLES.items()}
    env["AMI_BACKEND"] = "aws"
    env["AMI_BUCKET"] = _ref("RawBucket")
    env["AMI_IOT_ENDPOINT"] = _ref("IotDataEndpoint")
    return {
        "Type": "AWS::Lambda::Function",
        "DependsOn": [f"{logical}Logs"],
        "Properties": {
            "FunctionName": _name(key),
            "Runtime": "python3.11",
            "Handler": handler,
            "Role": _arn(role),
            "Code": {"S3Bucket": _ref("CodeBucket"), "S3Key": _ref("CodeKey")},
            "Timeout": timeout,
            "MemorySize": memory,
            "Architectures": ["arm64"],
            "Environment": {"Variables": env},
        },
    }


def _log_group(key: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{key}"},
            "RetentionInDays": 30,
        },
    }


def _logs_statement(key: str) -> dict[str, Any]:
    return _allow(
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [{"Fn::Sub": f"${{{FUNCTIONS[key][0]}Logs.Arn}}"}],
    )


def _table_arn(tid: str) -> dict[str, Any]:
    return _arn(tid)


def _rule_resources(rule: Rule, res: dict[str, Any]) -> None:
    rid = rule_logical_id(rule)
    actions: list[dict[str, Any]] = []
    statements: list[dict[str, Any]] = []
    for act in rule.actions:
        if isinstance(act, S3Action):
            actions.append(
                {
                    "S3": {
                        "BucketName": _ref("RawBucket"),
                        "Key": act.key,
                        "RoleArn": _arn(f"{rid}Role"),
                    }
                }
            )
            statements.append(_allow(["s3:PutObject"], [_bucket_objects("raw/")]))
        elif isinstance(act, SqsAction):
            if act.queue not in QUEUES:
                raise ConfigError(f"rule {rule.name}: no queue {act.queue!r} in the template")
            qid = QUEUES[act.queue]
            actions.append(
                {"Sqs": {"QueueUrl": _ref(qid), "RoleArn": _arn(f"{rid}Role"), "UseBase64": False}}
            )
            statements.append(_allow(["sqs:SendMessage"], [_arn(qid)]))
        elif isinstance(act, LambdaAction):
            if act.function not in FUNCTIONS:
                raise ConfigError(f"rule {rule.name}: no function {act.function!r}")
            fid = FUNCTIONS[act.function][0]
            actions.append({"Lambda": {"FunctionArn": _arn(fid)}})
            res[f"{rid}{fid}Permission"] = {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": _ref(fid),
                    "Principal": "iot.amazonaws.com",
                    "SourceAccount": _ref("AWS::AccountId"),
                    "SourceArn": _arn(rid),
                },
            }
    # Failed actions are kept as objects under rule-errors/ (the error action needs the role too).
    statements.append(_allow(["s3:PutObject"], [_bucket_objects("rule-errors/")]))
    res[f"{rid}Role"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": _assume("iot.amazonaws.com"),
            "Policies": [_policy("actions", _dedupe(statements))],
        },
    }
    res[rid] = {
        "Type": "AWS::IoT::TopicRule",
        "Properties": {
            "TopicRulePayload": {
                "Description": rule.description,
                "Sql": rule.sql,
                "AwsIotSqlVersion": SQL_VERSION,
                "RuleDisabled": False,
                "Actions": actions,
                "ErrorAction": {
                    "S3": {
                        "BucketName": _ref("RawBucket"),
                        "Key": f"rule-errors/{rule.name}/${{newuuid()}}.json",
                        "RoleArn": _arn(f"{rid}Role"),
                    }
                },
            },
        },
    }


def _dedupe(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[str] = []
    out = []
    for s in statements:
        key = json.dumps(s, sort_keys=True)
        if key not in seen:
            seen.append(key)
            out.append(s)
    return out


def _api_resources(res: dict[str, Any]) -> None:
    res["RestApi"] = {
        "Type": "AWS::ApiGateway::RestApi",
        "Properties": {
            "Name": _name("api"),
            "Description": "ami-edge meter data API (Lambda proxy; see cloud/openapi.yaml)",
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "ApiKeySourceType": "HEADER",
        },
    }
    res["ApiProxyResource"] = {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {
            "RestApiId": _ref("RestApi"),
            "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "{proxy+}",
        },
    }
    integration = {
        "Type": "AWS_PROXY",
        "IntegrationHttpMethod": "POST",
        "Uri": {
            "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/"
            "2015-03-31/functions/${ApiFunction.Arn}/invocations"
        },
    }
    res["ApiProxyMethod"] = {
        "Type": "AWS::ApiGateway::Method",
        "Properties": {
            "RestApiId": _ref("RestApi"),
            "ResourceId": _ref("ApiProxyResource"),
            "HttpMethod": "ANY",
            "AuthorizationType": "NONE",
            "ApiKeyRequired": True,
            "Integration": integration,
        },
    }
    res["ApiDeployment"] = {
        "Type": "AWS::ApiGateway::Deployment",
        "DependsOn": ["ApiProxyMethod"],
        "Properties": {"RestApiId": _ref("RestApi")},
    }
    res["ApiStage"] = {
        "Type": "AWS::ApiGateway::Stage",
        "Properties": {
            "RestApiId": _ref("RestApi"),
            "DeploymentId": _ref("ApiDeployment"),
            "StageName": "live",
        },
    }
    res["ApiKey"] = {
        "Type": "AWS::ApiGateway::ApiKey",
        "DependsOn": ["ApiStage"],
        "Properties": {"Enabled": True, "Name": _name("key")},
    }
    res["ApiUsagePlan"] = {
        "Type": "AWS::ApiGateway::UsagePlan",
        "DependsOn": ["ApiStage"],
        "Properties": {
            "ApiStages": [{"ApiId": _ref("RestApi"), "Stage": "live"}],
            "Throttle": {"BurstLimit": 100, "RateLimit": 50},
        },
    }
    res["ApiUsagePlanKey"] = {
        "Type": "AWS::ApiGateway::UsagePlanKey",
        "Properties": {
            "KeyId": _ref("ApiKey"),
            "KeyType": "API_KEY",
            "UsagePlanId": _ref("ApiUsagePlan"),
        },
    }
    res["ApiInvokePermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": _ref("ApiFunction"),
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {
                "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                "${AWS::AccountId}:${RestApi}/*/*/*"
            },
        },
    }


_HIVE_PARQUET = "org.apache.hadoop.hive.ql.io.parquet"


def _glue_resources(res: dict[str, Any]) -> None:
    res["LakeDatabase"] = {
        "Type": "AWS::Glue::Database",
        "Properties": {
            "CatalogId": _ref("AWS::AccountId"),
            "DatabaseInput": {"Name": "ami_lake", "Description": "ami-edge interval lake"},
        },
    }
    cols = [
        ("meter", "string"),
        ("channel", "string"),
        ("capture_time", "bigint"),
        ("value", "double"),
        ("unit", "string"),
        ("status", "int"),
        ("raw", "bigint"),
        ("scaler", "int"),
        ("multiplier", "double"),
        ("data_class", "int"),
        ("batch_id", "string"),
    ]
    location = {"Fn::Sub": "s3://${RawBucket}/lake/intervals/"}
    res["LakeIntervalsTable"] = {
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": _ref("AWS::AccountId"),
            "DatabaseName": _ref("LakeDatabase"),
            "TableInput": {
                "Name": "intervals",
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {
                    "classification": "parquet",
                    "projection.enabled": "true",
                    "projection.year.type": "integer",
                    "projection.year.range": "2020,2100",
                    "projection.month.type": "integer",
                    "projection.month.range": "1,12",
                    "projection.month.digits": "2",
                    "projection.day.type": "integer",
                    "projection.day.range": "1,31",
                    "projection.day.digits": "2",
                },
                "PartitionKeys": [
                    {"Name": "year", "Type": "string"},
                    {"Name": "month", "Type": "string"},
                    {"Name": "day", "Type": "string"},
                ],
                "StorageDescriptor": {
                    "Location": location,
                    "InputFormat": f"{_HIVE_PARQUET}.MapredParquetInputFormat",
                    "OutputFormat": f"{_HIVE_PARQUET}.MapredParquetOutputFormat",
                    "SerdeInfo": {
                        "SerializationLibrary": f"{_HIVE_PARQUET}.serde.ParquetHiveSerDe"
                    },
                    "Columns": [{"Name": n, "Type": t} for n, t in cols],
                },
            },
        },
    }


def build(rules: tuple[Rule, ...] = RULES) -> dict[str, Any]:
    """The template as a dict (CloudFormation JSON structure)."""
    res: dict[str, Any] = {}
    res["RawBucket"] = {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
        },
    }
    for name, qid in QUEUES.items():
        res[qid] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": _name(name),
                "MessageRetentionPeriod": 1209600,
                "SqsManagedSseEnabled": True,
            },
        }
    for tid, (_, pk, sk) in TABLES.items():
        res[tid] = _table(pk, sk, ttl=tid in _TTL_TABLES)

    rw = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
    ro = ["dynamodb:GetItem", "dynamodb:Query"]
    roles = {
        "IngestRole": (
            "ingest",
            [
                _allow(
                    rw,
                    [
                        _table_arn(t)
                        for t in (
                            "LatestTable",
                            "IntervalsTable",
                            "ProcessedBatchesTable",
                            "FleetTable",
                        )
                    ],
                ),
                _allow(ro, [_table_arn("RegistryTable")]),
                _allow(
                    ["s3:PutObject"], [_bucket_objects("lake/"), _bucket_objects("dead-letter/")]
                ),
            ],
        ),
        "AlarmRole": (
            "alarm",
            [
                _allow([*rw, "dynamodb:Scan"], [_table_arn("OutagesTable")]),
                _allow(
                    ["dynamodb:GetItem", "dynamodb:PutItem"], [_table_arn("ProcessedBatchesTable")]
                ),
                _allow(["dynamodb:PutItem"], [_table_arn("EventsTable")]),
            ],
        ),
        "DocumentsRole": (
            "documents",
            [
                _allow(
                    rw,
                    [_table_arn(t) for t in ("ReadRequestsTable", "EventsTable", "HealthTable")],
                ),
            ],
        ),
        "ApiRole": (
            "api",
            [
                _allow(
                    ro,
                    [
                        _table_arn(t)
                        for t in ("LatestTable", "IntervalsTable", "EventsTable", "HealthTable")
                    ],
                ),
                _allow(
                    [*ro, "dynamodb:Scan"],
                    [_table_arn(t) for t in ("OutagesTable", "RegistryTable", "FleetTable")],
                ),
                _allow(rw, [_table_arn("ReadRequestsTable")]),
                _allow(
                    ["iot:Publish"],
                    [
                        {
                            "Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:"
                            "${AWS::AccountId}:topic/cmd/ami/*/read/req"
                        }
                    ],
                ),
            ],
        ),
    }
    for role, (key, statements) in roles.items():
        res[role] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _assume("lambda.amazonaws.com"),
                "Policies": [_policy("least-privilege", [_logs_statement(key), *statements])],
            },
        }
        res[f"{FUNCTIONS[key][0]}Logs"] = _log_group(key)
    res["IngestFunction"] = _function("ingest", "IngestRole", 60, 1024)
    res["AlarmFunction"] = _function("alarm", "AlarmRole", 10, 256)
    res["ApiFunction"] = _function("api", "ApiRole", 10, 512)
    res["DocumentsFunction"] = _function("documents", "DocumentsRole", 10, 256)
    for rule in rules:
        _rule_resources(rule, res)
    _glue_resources(res)
    _api_resources(res)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "ami-edge cloud companion: IoT rules, raw bucket and lake, queues, "
        "tables, handlers and the REST API (generated by cloud/template.py)",
        "Parameters": {
            "CodeBucket": {"Type": "String", "Description": "bucket of the Lambda zip"},
            "CodeKey": {"Type": "String", "Description": "key of the Lambda zip"},
            "IotDataEndpoint": {
                "Type": "String",
                "Default": "",
                "Description": "IoT data endpoint host (aws iot describe-endpoint "
                "--endpoint-type iot:Data-ATS) the API publishes read commands to; empty: "
                "the SDK default",
            },
        },
        "Resources": res,
        "Outputs": {
            "RawBucketName": {"Value": _ref("RawBucket")},
            "OmsQueueUrl": {"Value": _ref("OmsQueue")},
            "ApiUrl": {
                "Value": {
                    "Fn::Sub": "https://${RestApi}.execute-api.${AWS::Region}."
                    "${AWS::URLSuffix}/live"
                }
            },
        },
    }


def render(fmt: str = "yaml", rules: tuple[Rule, ...] = RULES) -> str:
    """The template as JSON or YAML text."""
    doc = build(rules)
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        class _NoAliases(yaml.SafeDumper):
            def ignore_aliases(self, data: Any) -> bool:
                return True  # CloudFormation rejects YAML aliases

        return str(yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, width=120))
    raise ConfigError(f"unknown template format {fmt!r}")
