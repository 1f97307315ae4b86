"""Checks on template.yaml (the SAM stack) and infra/template.py (the helpers
that read it for local runs)."""

from __future__ import annotations

import ast
import copy
import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest

from infra.template import (
    TABLE_ENV,
    TEMPLATE_PATH,
    create_tables,
    function_environment,
    function_handlers,
    load_template,
    table_specs,
    ttl_attributes,
)
from meterbill.services import aggregation

REPO_ROOT = TEMPLATE_PATH.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
REGION = "us-east-1"
FUNCTIONS = ["ApiFunction", "IngestFunction", "AggregatorFunction", "ClosePeriodsFunction", "CloseWorkerFunction",
             "OutboxFanoutFunction", "StripeDispatchFunction", "StripeWebhookFunction",
             "HubSpotDispatchFunction", "XeroDispatchFunction", "AnomaliesFunction",
             "ReconcileFunction", "DunningFunction"]
FUNCTIONS += ["WebhooksDispatchFunction"]   # outbound webhooks


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # moto + DynamoDB streams: account-id based endpoints break in-process mocking.
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


def _resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == resource_type}


# ------------------------------------------------------------------ cfn-lint


def test_cfn_lint_reports_nothing() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE_PATH)
    assert not matches, "cfn-lint findings:\n" + "\n".join(
        f"  {m.rule.id} {m.message} ({Path(m.filename or '').name}:{m.linenumber})" for m in matches
    )


# ------------------------------------------------------------ SAM translator


class _StubManagedPolicyLoader:
    """Stands in for the IAM-backed loader; SAM only asks it for policies
    referenced *by name* in `Policies`, which this template does not do."""

    POLICIES = {
        "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "AWSLambdaDynamoDBExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
        "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> dict[str, str]:
        self.calls += 1
        return dict(self.POLICIES)


@pytest.fixture(scope="module")
def translated() -> dict:
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(load_template())  # also proves load_template yields what SAM accepts
    # `sam package` replaces local CodeUri with an S3 location before the transform runs.
    for resource in _resources_of_type(sam, "AWS::Serverless::Function").values():
        resource["Properties"]["CodeUri"] = "s3://meterbill-artifacts/meterbill.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        return transform(sam, {}, _StubManagedPolicyLoader())


def test_sam_translates(translated: dict) -> None:
    resources = translated["Resources"]
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in resources.values())
    for name in FUNCTIONS:
        assert resources[name]["Type"] == "AWS::Lambda::Function"
    assert resources["HttpApi"]["Type"] == "AWS::ApiGatewayV2::Api"


def test_translated_stream_mapping(translated: dict) -> None:
    mappings = {k: m for k, m in _resources_of_type(translated, "AWS::Lambda::EventSourceMapping").items()
                if m["Properties"]["FunctionName"] == {"Ref": "AggregatorFunction"}}
    assert len(mappings) == 1, mappings
    props = next(iter(mappings.values()))["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["EventsTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["ParallelizationFactor"] == 1
    # A poison record never blocks the shard (the aggregator dead-letters it); a batch that still
    # fails is retried for hours, inside the stream's 24 h, then its range goes to an alarmed queue.
    # No bisection: batch boundaries are the identity that keeps a retry exactly-once.
    # Lambda gives up only by age, at the age the aggregator's marker pruning assumes (GIVE_UP_S).
    assert props["MaximumRetryAttempts"] == -1
    assert props["MaximumRecordAgeInSeconds"] == aggregation.GIVE_UP_S <= 12 * 3600
    assert props["BisectBatchOnFunctionError"] is False
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AggregatorDeadLetterQueue", "Arn"]}
    alarms = {name: r["Properties"] for name, r in _resources_of_type(translated, "AWS::CloudWatch::Alarm").items()}
    assert alarms["AggregatorIteratorAgeAlarm"]["MetricName"] == "IteratorAge"
    assert alarms["AggregatorDeadLetterAlarm"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["AggregatorDeadLetterQueue", "QueueName"]}
    assert alarms["UsageDeadLetteredAlarm"]["MetricName"] == "UsageDeadLettered"
    # SAM grants the stream-read permissions itself.
    role = translated["Resources"]["AggregatorFunctionRole"]["Properties"]
    assert any(str(arn).endswith("/AWSLambdaDynamoDBExecutionRole") for arn in role["ManagedPolicyArns"])


def _close_schedule(translated: dict) -> dict:
    """The billing run's schedule (the others: reconciliation, anomalies, dunning)."""
    [schedule] = [s for s in _resources_of_type(translated, "AWS::Scheduler::Schedule").values()
                  if s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": ["ClosePeriodsFunction", "Arn"]}]
    return schedule


def test_translated_schedule(translated: dict) -> None:
    schedules = _resources_of_type(translated, "AWS::Scheduler::Schedule")
    assert len(schedules) == 4, schedules
    props = _close_schedule(translated)["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "CloseSchedule"}
    assert props["Target"]["Arn"] == {"Fn::GetAtt": ["ClosePeriodsFunction", "Arn"]}
    assert "RetryPolicy" in props["Target"]
    closer = translated["Resources"]["ClosePeriodsFunction"]["Properties"]
    assert closer["ReservedConcurrentExecutions"] == 1
    [anomalies] = [s["Properties"] for s in schedules.values() if s["Properties"]["Target"]["Arn"] == {
        "Fn::GetAtt": ["AnomaliesFunction", "Arn"]}]
    assert "RetryPolicy" in anomalies["Target"] and "DeadLetterConfig" in anomalies["Target"]
    [daily] = [s["Properties"] for s in schedules.values() if s["Properties"]["Target"]["Arn"] == {
        "Fn::GetAtt": ["ReconcileFunction", "Arn"]}]
    assert "<aws.scheduler.scheduled-time>" in daily["Target"]["Input"] and "RetryPolicy" in daily["Target"]
    assert daily["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["CloseScheduleDeadLetterQueue", "Arn"]}}


def test_policies_are_inline_and_scoped(translated: dict) -> None:
    """No wildcard actions/resources in our own statements, no SAM policy templates (ssm: an
    integration's settings under /meterbill/<vendor>)."""
    raw = load_template()
    for name, resource in _resources_of_type(raw, "AWS::Serverless::Function").items():
        policies = resource["Properties"].get("Policies", [])
        assert policies, f"{name} has no Policies"
        for policy in policies:
            assert isinstance(policy, dict) and set(policy) == {"Statement"}, f"{name}: {policy!r}"
            for statement in policy["Statement"]:
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                assert all(a.split(":")[0] in ("dynamodb", "sqs", "ssm") and "*" not in a
                           or a == "lambda:InvokeFunction" for a in actions), (name, actions)
                resources = statement["Resource"]
                resources = resources if isinstance(resources, list) else [resources]
                assert "*" not in resources, name
                if "lambda:InvokeFunction" in actions:   # the API hands a reconciliation to its function
                    assert (name, resources) == ("ApiFunction", [{"Fn::GetAtt": ["ReconcileFunction", "Arn"]}])


def test_cfn_lint_reports_nothing_on_the_expanded_template(translated: dict) -> None:
    """The raw lint does not see everything inside SAM resources (e.g. IAM action names in a
    function's Policies): lint what CloudFormation actually receives, too."""
    import json

    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(translated), config=ManualArgs(regions=[REGION]))
    assert not matches, "cfn-lint findings on the expanded template:\n" + "\n".join(
        f"  {m.rule.id} {m.message[:200]}" for m in matches)


# ------------------------------------------------------------ template defences


def _number_parameter(template: dict, name: str) -> dict:
    param = template["Parameters"][name]
    assert param["Type"] == "Number" and param["MinValue"] >= 1 and param["Default"] >= param["MinValue"], name
    return param


def test_http_api_throttles_by_default_with_parameters(template: dict, translated: dict) -> None:
    """Every request, also one with an unknown key (a DynamoDB read), passes API Gateway's token
    bucket first: above the limits the client gets 429 and nothing behind it runs or costs."""
    rate = _number_parameter(template, "ApiThrottleRateLimit")
    burst = _number_parameter(template, "ApiThrottleBurstLimit")
    assert rate["Default"] <= 10_000 and rate["Default"] <= burst["Default"] <= 5_000  # below the account's
    [stage] = _resources_of_type(translated, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["ApiId"] == {"Ref": "HttpApi"}
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
                                             "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"}}


def test_http_api_writes_access_logs_without_credentials(template: dict, translated: dict) -> None:
    import json

    [stage] = _resources_of_type(translated, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    assert fields["requestId"] == "$context.requestId" and fields["status"] == "$context.status"
    assert "$context.identity.sourceIp" in fields.values()
    assert not any("header" in v.lower() or "authoriz" in v.lower() for v in fields.values())
    group = template["Resources"]["HttpApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_close_queue_feeds_the_close_worker_with_partial_failures_and_bounded_concurrency(
        template: dict, translated: dict) -> None:
    queue = template["Resources"]["CloseQueue"]["Properties"]
    worker = template["Resources"]["CloseWorkerFunction"]["Properties"]
    # AWS: a Lambda consumer's queue visibility timeout at least 6 x the function's timeout
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["CloseDeadLetterQueue", "Arn"]}
    receives = queue["RedrivePolicy"]["maxReceiveCount"]
    assert worker["Environment"]["Variables"]["METERBILL_CLOSE_MAX_RECEIVES"] == str(receives)
    [mapping] = [m["Properties"] for m in _resources_of_type(translated, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["FunctionName"] == {"Ref": "CloseWorkerFunction"}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["CloseQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "CloseWorkerConcurrency"}}
    alarms = _resources_of_type(translated, "AWS::CloudWatch::Alarm")
    assert any(a["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["CloseDeadLetterQueue", "QueueName"]}
               and a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    # the schedule names its tick (the run id of a retried invocation)
    schedule = _close_schedule(translated)
    assert "<aws.scheduler.scheduled-time>" in schedule["Properties"]["Target"]["Input"]
    for sender in ("ApiFunction", "ClosePeriodsFunction", "CloseWorkerFunction"):
        env = template["Resources"][sender]["Properties"]["Environment"]["Variables"]
        assert env["METERBILL_CLOSE_QUEUE_URL"] == {"Ref": "CloseQueue"}, sender


def test_close_schedule_has_an_alarmed_dead_letter_queue(translated: dict) -> None:
    schedule = _close_schedule(translated)
    target = schedule["Properties"]["Target"]
    queue_arn = {"Fn::GetAtt": ["CloseScheduleDeadLetterQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": queue_arn}
    queue = translated["Resources"]["CloseScheduleDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue" and queue["Properties"]["SqsManagedSseEnabled"] is True
    role = translated["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    statements = [st for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]]
    assert any("sqs:SendMessage" in st["Action"] and st["Resource"] == queue_arn for st in statements)
    alarms = [a["Properties"] for a in _resources_of_type(translated, "AWS::CloudWatch::Alarm").values()]
    assert any(a["Namespace"] == "AWS/SQS" and a["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["CloseScheduleDeadLetterQueue", "QueueName"]} and a["AlarmActions"] == [{"Ref": "AlarmTopic"}]
               for a in alarms)


def test_aggregator_has_reserved_concurrency(template: dict, translated: dict) -> None:
    """A flood of API calls can never take the concurrency the aggregator needs (one per shard)."""
    _number_parameter(template, "AggregatorReservedConcurrency")
    props = translated["Resources"]["AggregatorFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "AggregatorReservedConcurrency"}


def test_tables_have_deletion_protection(template: dict) -> None:
    for name in TABLE_ENV:
        table = template["Resources"][name]
        assert table["Properties"]["DeletionProtectionEnabled"] is True, name
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", name


def test_log_groups_can_be_encrypted_with_a_kms_key(template: dict) -> None:
    param = template["Parameters"]["LogsKmsKeyArn"]
    assert param["Default"] == ""
    assert template["Conditions"]["HasLogsKmsKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "LogsKmsKeyArn"}, ""]}]}
    groups = _resources_of_type(template, "AWS::Logs::LogGroup")
    assert len(groups) == len(FUNCTIONS) + 1  # the functions and the API's access log
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {
            "Fn::If": ["HasLogsKmsKey", {"Ref": "LogsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}, name


def test_statements_name_only_real_actions_and_none_unused(template: dict) -> None:
    """TransactWriteItems is no IAM action (its parts are checked as PutItem, UpdateItem, DeleteItem,
    ConditionCheckItem); nothing in the code calls BatchWriteItem on the billing table."""
    for name, resource in _resources_of_type(template, "AWS::Serverless::Function").items():
        actions = {a for p in resource["Properties"]["Policies"] for st in p["Statement"] for a in st["Action"]}
        assert "dynamodb:TransactWriteItems" not in actions, name
    api = template["Resources"]["ApiFunction"]["Properties"]["Policies"]
    billing = [st for p in api for st in p["Statement"] if isinstance(st["Resource"], list)
               and {"Fn::GetAtt": ["BillingTable", "Arn"]} in st["Resource"]]
    assert billing and all("dynamodb:BatchWriteItem" not in st["Action"] for st in billing)
    source = "\n".join(p.read_text(encoding="utf-8") for d in ("meterbill", "functions")
                       for p in (REPO_ROOT / d).rglob("*.py")
                       if "local" not in p.relative_to(REPO_ROOT).parts)   # local tooling (seed.py): moto only
    assert "batch_write_item" not in source


# -------------------------------------------------------------------- handlers


def _defines_handler(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handler":
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "handler" for t in targets):
                return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == "handler" for a in node.names):
            return True
    return False


@pytest.mark.parametrize("function", FUNCTIONS)
def test_handler_resolves(function: str, template: dict, aws_env: None,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    handler = function_handlers(template)[function]
    module_name, _, attr = handler.rpartition(".")
    assert module_name and attr, f"{function}: Handler {handler!r} is not module.attr"
    module_file = REPO_ROOT.joinpath(*module_name.split(".")).with_suffix(".py")
    if not module_file.exists():
        pytest.skip(f"{function}: {module_file.relative_to(REPO_ROOT)} not written yet")
    # What Lambda would provide, so module-level setup can run.
    for logical_id, env_name in TABLE_ENV.items():
        monkeypatch.setenv(env_name, f"test-{logical_id}")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "meterbill")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "meterbill")
    monkeypatch.setenv("METERBILL_INVOICE_PREFIX", "INV-")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing and not (REPO_ROOT / missing).is_dir():
            # A third-party runtime dependency is absent from this environment,
            # which is a setup problem (`pip install -e .`), not a template one.
            pytest.skip(f"{function}: dependency {missing!r} not installed ({exc})")
        raise
    assert callable(getattr(module, attr, None)), f"{function}: {handler} is not a callable"


def test_every_function_module_is_deployed(template: dict) -> None:
    referenced = {h.rpartition(".")[0] for h in function_handlers(template).values()}
    modules = [p for p in sorted(FUNCTIONS_DIR.glob("*.py")) if p.name != "__init__.py"]
    unreferenced = [
        f"functions.{p.stem}" for p in modules if _defines_handler(p) and f"functions.{p.stem}" not in referenced
    ]
    assert not unreferenced, f"modules with a handler but no function in template.yaml: {unreferenced}"


# ---------------------------------------------------------------- environment


def test_functions_name_their_tables(template: dict) -> None:
    environments = function_environment(template)
    assert set(environments) == set(FUNCTIONS)
    for function, env in environments.items():
        for logical_id, env_name in TABLE_ENV.items():
            assert env.get(env_name) == {"Ref": logical_id}, f"{function}: {env_name} = {env.get(env_name)!r}"
            assert template["Resources"][logical_id]["Type"] == "AWS::DynamoDB::Table"


def test_log_group_per_function(template: dict) -> None:
    groups = {
        props["LogGroupName"]["Fn::Sub"]: props
        for props in (r["Properties"] for r in _resources_of_type(template, "AWS::Logs::LogGroup").values())
    }
    for function in function_handlers(template):
        props = groups.get(f"/aws/lambda/${{{function}}}")
        assert props is not None, f"no log group for {function}"
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_parameters_are_used(template: dict) -> None:
    body = repr({k: v for k, v in template.items() if k != "Parameters"})
    for name in template["Parameters"]:
        assert repr({"Ref": name}) in body, f"parameter {name} is never referenced"


# ----------------------------------------------------------- template loader


def test_load_template_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""\
        AWSTemplateFormatVersion: 2010-09-09
        Conditions:
          IsProd: !Equals [!Ref Stage, prod]
          NotProd: !Not [!Condition IsProd]
        Resources:
          R:
            Properties:
              A: !Ref X
              B: !GetAtt T.StreamArn
              C: !GetAtt [T, Arn]
              D: !Sub ${T.Arn}/index/*
              E: !Sub [ "${a}-x", { a: !Ref Y } ]
              F: !If [IsProd, 1, !Ref AWS::NoValue]
              G: !Join ["", [a, !Select [0, !Split [",", "p,q"]]]]
              H: !FindInMap [M, !Ref AWS::Region, k]
              I: !GetAZs ''
        """), encoding="utf-8")
    t = load_template(path)
    assert t["AWSTemplateFormatVersion"] == "2010-09-09"
    assert t["Conditions"] == {
        "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
    }
    assert t["Resources"]["R"]["Properties"] == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["T", "StreamArn"]},
        "C": {"Fn::GetAtt": ["T", "Arn"]},
        "D": {"Fn::Sub": "${T.Arn}/index/*"},
        "E": {"Fn::Sub": ["${a}-x", {"a": {"Ref": "Y"}}]},
        "F": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]},
        "G": {"Fn::Join": ["", ["a", {"Fn::Select": [0, {"Fn::Split": [",", "p,q"]}]}]]},
        "H": {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "k"]},
        "I": {"Fn::GetAZs": ""},
    }


def test_table_specs_follow_template(template: dict) -> None:
    specs = table_specs(template)
    assert set(specs) == {"EventsTable", "BillingTable"}
    for logical_id, spec in specs.items():
        props = template["Resources"][logical_id]["Properties"]
        assert "TableName" not in spec
        assert spec["KeySchema"] == props["KeySchema"]
        assert spec["AttributeDefinitions"] == props["AttributeDefinitions"]
        assert spec["BillingMode"] == props["BillingMode"]
    assert specs["EventsTable"]["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert specs["BillingTable"]["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}  # the outbox
    assert [g["IndexName"] for g in specs["BillingTable"]["GlobalSecondaryIndexes"]] == ["gsi1", "gsi2", "gsi3"]
    assert ttl_attributes(template) == {"BillingTable": "expires_at"}


# ------------------------------------------------------- create_tables (moto)


def _key_schema(schema: list[dict]) -> dict[str, str]:
    return {k["AttributeName"]: k["KeyType"] for k in schema}


def test_create_tables_matches_template(template: dict, aws_env: None) -> None:
    from moto import mock_aws

    names = {logical_id: f"mb-test-{logical_id}" for logical_id in TABLE_ENV}
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, names, template)
        client.put_item(TableName=names["EventsTable"], Item={"id": {"S": "evt-1"}})
        create_tables(client, names)  # idempotent; default template is template.yaml
        assert sorted(client.list_tables()["TableNames"]) == sorted(names.values())
        # Not recreated: the item written in between survives.
        assert "Item" in client.get_item(TableName=names["EventsTable"], Key={"id": {"S": "evt-1"}})

        for logical_id, table_name in names.items():
            props = template["Resources"][logical_id]["Properties"]
            table = client.describe_table(TableName=table_name)["Table"]
            assert table["TableStatus"] == "ACTIVE"
            assert _key_schema(table["KeySchema"]) == _key_schema(props["KeySchema"])
            assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
                (a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]
            }
            assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]

            declared_gsis = {g["IndexName"]: g for g in props.get("GlobalSecondaryIndexes", [])}
            actual_gsis = {g["IndexName"]: g for g in table.get("GlobalSecondaryIndexes", [])}
            assert set(actual_gsis) == set(declared_gsis)
            for index_name, declared in declared_gsis.items():
                assert _key_schema(actual_gsis[index_name]["KeySchema"]) == _key_schema(declared["KeySchema"])
                assert actual_gsis[index_name]["Projection"]["ProjectionType"] == declared["Projection"]["ProjectionType"]

            declared_stream = props.get("StreamSpecification")
            if declared_stream:
                assert table["StreamSpecification"] == {
                    "StreamEnabled": True, "StreamViewType": declared_stream["StreamViewType"]}
                assert table["LatestStreamArn"]
            else:
                assert not table.get("StreamSpecification", {}).get("StreamEnabled", False)

            ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
            declared_ttl = props.get("TimeToLiveSpecification")
            if declared_ttl and declared_ttl.get("Enabled"):
                assert ttl["TimeToLiveStatus"] == "ENABLED"
                assert ttl["AttributeName"] == declared_ttl["AttributeName"]
            else:
                assert ttl["TimeToLiveStatus"] == "DISABLED"

        # The stream is readable (what the local aggregator will poll).
        events = client.describe_table(TableName=names["EventsTable"])["Table"]
        streams = boto3.client("dynamodbstreams", region_name=REGION)
        description = streams.describe_stream(StreamArn=events["LatestStreamArn"])["StreamDescription"]
        assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_create_tables_rejects_unknown_table(template: dict, aws_env: None) -> None:
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        with pytest.raises(KeyError):
            create_tables(client, {"NoSuchTable": "x"}, template)
        assert client.list_tables()["TableNames"] == []


# ------------------------------------------------------------ sam-build.mk


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("function", FUNCTIONS)
def test_sam_build_targets(function: str, tmp_path: Path) -> None:
    """Each SAM makefile target installs the project from the repo root into ARTIFACTS_DIR."""
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"include {REPO_ROOT / 'infra' / 'sam-build.mk'}\n", encoding="utf-8")
    artifacts = tmp_path / "artifacts"
    result = subprocess.run(
        ["make", "-n", "-f", str(makefile), f"build-{function}", f"ARTIFACTS_DIR={artifacts}"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    recipe = " ".join(result.stdout.replace("\\\n", " ").split())
    assert f'cd "{REPO_ROOT}"' in recipe
    assert "pip install --no-compile" in recipe
    assert f'-t "{artifacts}" .' in recipe
    assert "compile-artifacts" in recipe


def _compile_artifacts(tmp_path: Path, runtime: str) -> subprocess.CompletedProcess[str]:
    artifacts = tmp_path / "artifacts"
    (artifacts / "pkg").mkdir(parents=True)
    (artifacts / "pkg" / "mod.py").write_text("VALUE = 1\n", encoding="utf-8")
    return subprocess.run(
        ["make", "-s", "-f", str(REPO_ROOT / "infra" / "sam-build.mk"), "compile-artifacts",
         f"ARTIFACTS_DIR={artifacts}", f"SAM_PYTHON={sys.executable}", f"SAM_RUNTIME_VERSION={runtime}"],
        cwd=tmp_path, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_sam_build_compiles_bytecode_for_the_runtime(tmp_path: Path) -> None:
    """Built with the runtime's interpreter, every module gets an unchecked hash-based .pyc
    (zip mtimes cannot invalidate it), so a cold start on read-only /var/task compiles nothing."""
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    result = _compile_artifacts(tmp_path, host)
    assert result.returncode == 0, result.stderr
    pyc = tmp_path / "artifacts" / "pkg" / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc"
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01   # hash-based, check_source off (PEP 552)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_sam_build_skips_bytecode_from_another_python(tmp_path: Path) -> None:
    result = _compile_artifacts(tmp_path, "2.7")
    assert result.returncode == 0, result.stderr
    assert "no .pyc compiled" in result.stderr
    assert not (tmp_path / "artifacts" / "pkg" / "__pycache__").exists()


# ------------------------------------------------------- integrations' queues

INTEGRATIONS = {"stripe": "Stripe", "hubspot": "HubSpot", "xero": "Xero"}


@pytest.mark.parametrize("name", sorted(INTEGRATIONS))
def test_each_integration_has_its_queue_dlq_alarms_and_dispatch_function(template: dict, name: str) -> None:
    """One block per vendor, the same shape: enabled by its parameter, a sync queue whose DLQ is
    alarmed, a dispatch function (the shared handler) limited by its concurrency parameter, reading
    only its own settings; the fan-out and the API know its queue (env and SendMessage)."""
    title = INTEGRATIONS[name]
    res = template["Resources"]
    assert template["Conditions"][f"{title}Enabled"] == {"Fn::Equals": [{"Ref": f"{title}Integration"}, "Enabled"]}
    for logical in (f"{title}SyncQueue", f"{title}SyncDeadLetterQueue", f"{title}SyncDeadLetterAlarm",
                    f"{title}DispatchFunction", f"{title}SyncFailedAlarm"):
        assert res[logical]["Condition"] == f"{title}Enabled", logical
    queue = res[f"{title}SyncQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{title}SyncDeadLetterQueue", "Arn"]}
    fn = res[f"{title}DispatchFunction"]["Properties"]
    assert fn["Handler"] == "functions.dispatch.handler"
    assert queue["VisibilityTimeout"] > fn["Timeout"]
    assert fn["Environment"]["Variables"]["METERBILL_INTEGRATION"] == name
    [event] = fn["Events"].values()
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": f"{title}SyncConcurrency"}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    statements = fn["Policies"][0]["Statement"]
    ssm = [s for s in statements if any(str(a).startswith("ssm:") for a in s["Action"])]
    assert all(f"parameter/meterbill/{name}" in str(s["Resource"]) for s in ssm) and ssm
    for reader in ("OutboxFanoutFunction", "ApiFunction"):
        props = res[reader]["Properties"]
        assert props["Environment"]["Variables"][f"METERBILL_SYNC_QUEUE_{name.upper()}"] == \
            {"Fn::If": [f"{title}Enabled", {"Ref": f"{title}SyncQueue"}, ""]}
        assert f"{title}Enabled" in str(props["Environment"]["Variables"]["METERBILL_INTEGRATIONS"])
        sends = [s for s in props["Policies"][0]["Statement"] if "sqs:SendMessage" in s["Action"]]
        assert f"{title}SyncQueue" in str(sends), reader


def test_only_the_xero_dispatcher_may_write_a_setting_and_only_its_refresh_token(template: dict) -> None:
    writes = {(logical, str(s["Resource"])) for logical, r in template["Resources"].items()
              if r["Type"] == "AWS::Serverless::Function"
              for s in ((r["Properties"].get("Policies") or [{}])[0].get("Statement") or [])
              if any(a in ("ssm:PutParameter", "secretsmanager:PutSecretValue") for a in s["Action"])}
    assert [(logical, resource.rsplit(":", 1)[-1]) for logical, resource in writes] == [
        ("XeroDispatchFunction", "parameter/meterbill/xero/refresh_token'}")]
