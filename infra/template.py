"""Read the SAM template (``template.yaml``) so local runs and tests use the
same table definitions and handlers as the deployed stack.

Standard library + PyYAML only; deliberately independent of ``meterbill``.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import yaml

TEMPLATE_PATH: pathlib.Path = pathlib.Path(__file__).resolve().parent.parent / "template.yaml"

# Template logical id of each table -> environment variable carrying its name.
TABLE_ENV: dict[str, str] = {
    "EventsTable": "METERBILL_EVENTS_TABLE",
    "BillingTable": "METERBILL_BILLING_TABLE",
}

# Template logical id of each queue the code sends to -> environment variable carrying its URL.
QUEUE_ENV: dict[str, str] = {
    "CloseQueue": "METERBILL_CLOSE_QUEUE_URL",
    "StripeSyncQueue": "METERBILL_SYNC_QUEUE_STRIPE",
    "HubSpotSyncQueue": "METERBILL_SYNC_QUEUE_HUBSPOT",
    "XeroSyncQueue": "METERBILL_SYNC_QUEUE_XERO",
    "WebhooksQueue": "METERBILL_SYNC_QUEUE_WEBHOOKS",
}

_DYNAMODB_TABLE = "AWS::DynamoDB::Table"
_SQS_QUEUE = "AWS::SQS::Queue"
_SERVERLESS_FUNCTION = "AWS::Serverless::Function"


# --------------------------------------------------------------------- loading


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form intrinsics and,
    like CloudFormation, leaves date-like scalars as strings."""


# CloudFormation does not turn `2010-09-09` into a date; neither do we.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    """``!Name value`` -> long form: ``{"Ref": v}``, ``{"Condition": v}`` or
    ``{"Fn::Name": v}`` (``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``)."""
    value = _construct_node(loader, node)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: pathlib.Path | None = None) -> dict:
    """Parse a CloudFormation/SAM YAML template into plain dicts, converting
    short-form intrinsic tags to their long (JSON) form."""
    path = pathlib.Path(path) if path is not None else TEMPLATE_PATH
    with path.open(encoding="utf-8") as fh:
        template = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - safe loader subclass
    if not isinstance(template, dict):
        raise ValueError(f"{path}: not a template (top level is {type(template).__name__})")
    return template


# ---------------------------------------------------------------------- tables


def _resources(template: dict, resource_type: str) -> dict[str, dict]:
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") == resource_type
    }


def _index_spec(index: dict, *, with_throughput: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": copy.deepcopy(index["KeySchema"]),
        "Projection": copy.deepcopy(index["Projection"]),
    }
    if with_throughput and "ProvisionedThroughput" in index:
        spec["ProvisionedThroughput"] = copy.deepcopy(index["ProvisionedThroughput"])
    return spec


def table_specs(template: dict) -> dict[str, dict]:
    """Logical id -> ``create_table`` kwargs (without ``TableName``) for every
    ``AWS::DynamoDB::Table`` in the template."""
    specs: dict[str, dict] = {}
    for logical_id, resource in _resources(template, _DYNAMODB_TABLE).items():
        props = resource.get("Properties") or {}
        billing_mode = props.get("BillingMode", "PROVISIONED")
        provisioned = billing_mode == "PROVISIONED"
        spec: dict[str, Any] = {
            "KeySchema": copy.deepcopy(props["KeySchema"]),
            "AttributeDefinitions": copy.deepcopy(props["AttributeDefinitions"]),
            "BillingMode": billing_mode,
        }
        if provisioned and "ProvisionedThroughput" in props:
            spec["ProvisionedThroughput"] = copy.deepcopy(props["ProvisionedThroughput"])
        if props.get("GlobalSecondaryIndexes"):
            spec["GlobalSecondaryIndexes"] = [
                _index_spec(index, with_throughput=provisioned) for index in props["GlobalSecondaryIndexes"]
            ]
        if props.get("LocalSecondaryIndexes"):
            spec["LocalSecondaryIndexes"] = [
                _index_spec(index, with_throughput=False) for index in props["LocalSecondaryIndexes"]
            ]
        stream = props.get("StreamSpecification")
        if stream and stream.get("StreamViewType"):
            spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        specs[logical_id] = spec
    return specs


def ttl_attributes(template: dict) -> dict[str, str]:
    """Logical id -> TTL attribute name, for tables whose template enables TTL."""
    result: dict[str, str] = {}
    for logical_id, resource in _resources(template, _DYNAMODB_TABLE).items():
        ttl = (resource.get("Properties") or {}).get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") in (True, "true", "True") and ttl.get("AttributeName"):
            result[logical_id] = ttl["AttributeName"]
    return result


def _table_exists(client: Any, table_name: str) -> bool:
    try:
        client.describe_table(TableName=table_name)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def create_tables(client: Any, names: dict[str, str], template: dict | None = None) -> None:
    """Create each table ``names[logical_id]`` as the template defines it.

    Idempotent: existing tables are left alone (only their TTL setting is
    brought in line). Waits until every table is ACTIVE.
    """
    template = load_template() if template is None else template
    specs = table_specs(template)
    ttls = ttl_attributes(template)
    unknown = sorted(set(names) - set(specs))
    if unknown:
        raise KeyError(f"not DynamoDB tables in the template: {', '.join(unknown)}")

    for logical_id, table_name in names.items():
        if not _table_exists(client, table_name):
            try:
                client.create_table(TableName=table_name, **specs[logical_id])
            except client.exceptions.ResourceInUseException:
                pass  # created concurrently by someone else; fine
    for table_name in names.values():
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    for logical_id, table_name in names.items():
        attribute = ttls.get(logical_id)
        if attribute is None:
            continue
        current = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            continue
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )


# ---------------------------------------------------------------------- queues

_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
                     "MaximumMessageSize")


def queue_specs(template: dict) -> dict[str, dict[str, Any]]:
    """Logical id -> SQS attributes for every ``AWS::SQS::Queue``: the plain ones as strings, and
    ``RedrivePolicy`` as written (its ``deadLetterTargetArn`` names another queue by ``GetAtt``)."""
    specs: dict[str, dict[str, Any]] = {}
    for logical_id, resource in _resources(template, _SQS_QUEUE).items():
        props = resource.get("Properties") or {}
        spec: dict[str, Any] = {k: str(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
        if props.get("RedrivePolicy"):
            spec["RedrivePolicy"] = copy.deepcopy(props["RedrivePolicy"])
        specs[logical_id] = spec
    return specs


def create_queues(client: Any, names: dict[str, str], template: dict | None = None) -> dict[str, str]:
    """Create each queue ``names[logical_id]`` as the template defines it, and the dead-letter
    queue its redrive policy names (as ``<name>-dlq`` unless ``names`` names it too). Idempotent
    (``CreateQueue`` returns an existing queue's URL). Returns logical id -> queue URL."""
    template = load_template() if template is None else template
    specs = queue_specs(template)
    unknown = sorted(set(names) - set(specs))
    if unknown:
        raise KeyError(f"not SQS queues in the template: {', '.join(unknown)}")
    names = dict(names)
    urls: dict[str, str] = {}

    def create(logical_id: str) -> str:
        if logical_id in urls:
            return urls[logical_id]
        attributes = {k: v for k, v in specs[logical_id].items() if k != "RedrivePolicy"}
        redrive = specs[logical_id].get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            names.setdefault(target, f"{names[logical_id]}-dlq")
            dlq = create(target)
            arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn,
                                                      "maxReceiveCount": int(redrive["maxReceiveCount"])})
        urls[logical_id] = client.create_queue(QueueName=names[logical_id], Attributes=attributes)["QueueUrl"]
        return urls[logical_id]

    for logical_id in list(names):
        create(logical_id)
    return urls


# ------------------------------------------------------------------- functions


def _function_globals(template: dict) -> dict:
    return ((template.get("Globals") or {}).get("Function")) or {}


def function_handlers(template: dict) -> dict[str, str]:
    """Logical id -> ``Handler`` for every ``AWS::Serverless::Function``
    (falling back to ``Globals.Function.Handler``)."""
    default = _function_globals(template).get("Handler")
    handlers: dict[str, str] = {}
    for logical_id, resource in _resources(template, _SERVERLESS_FUNCTION).items():
        handler = (resource.get("Properties") or {}).get("Handler", default)
        if handler is None:
            raise ValueError(f"{logical_id}: no Handler (and none in Globals.Function)")
        handlers[logical_id] = handler
    return handlers


def function_environment(template: dict) -> dict[str, dict[str, Any]]:
    """Logical id -> environment variables for every ``AWS::Serverless::Function``,
    ``Globals.Function.Environment.Variables`` merged under the function's own
    (values are as written in the template, intrinsics in long form)."""
    default = ((_function_globals(template).get("Environment") or {}).get("Variables")) or {}
    environments: dict[str, dict[str, Any]] = {}
    for logical_id, resource in _resources(template, _SERVERLESS_FUNCTION).items():
        own = (((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
        environments[logical_id] = {**copy.deepcopy(default), **copy.deepcopy(own)}
    return environments
