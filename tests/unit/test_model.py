"""Input validation against botocore's ECS model: generated cases for every operation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import botocore.loaders
import botocore.model
import botocore.serialize
import botocore.validate
import pytest

from galley.api.model import ServiceModel, load
from galley.errors import ApiError

ECS = ServiceModel.load("ecs")
SHAPES: dict[str, Any] = ECS.raw["shapes"]
BOTO_MODEL = botocore.model.ServiceModel(ECS.raw, "ecs")
SERIALIZER = botocore.serialize.create_serializer("json", include_validation=False)
OPERATIONS = sorted(ECS.operation_names)
BAD_ENUM = "NOT_A_REAL_VALUE"


# --------------------------------------------------------------------------- input generators


def minimal(shape_name: str) -> Any:
    """The smallest value botocore considers valid for a shape (required members only)."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        if shape.get("document"):
            return {}
        return {m: minimal(shape["members"][m]["shape"]) for m in shape.get("required", [])}
    if kind == "list":
        return [minimal(shape["member"]["shape"]) for _ in range(int(shape.get("min", 0)))]
    if kind == "map":
        return {}
    if kind == "string":
        if shape.get("enum"):
            return shape["enum"][0]
        return "x" * max(1, int(shape.get("min", 1)))
    if kind in ("integer", "long"):
        return int(shape.get("min", 1))
    if kind in ("float", "double"):
        return float(shape.get("min", 1.0))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 1_700_000_000
    if kind == "blob":
        return b"data"
    raise AssertionError(kind)


def wire(operation: str, params: dict[str, Any]) -> Any:
    """Serialize params exactly as boto3 would put them on the wire, then decode the JSON body."""
    request = SERIALIZER.serialize_to_request(params, BOTO_MODEL.operation_model(operation))
    body = request["body"]
    return json.loads(body) if body else {}


def input_shape(operation: str) -> dict[str, Any]:
    name = ECS.input_shape_name(operation)
    assert name is not None
    return SHAPES[name]


def wrong_value(shape_name: str) -> tuple[Any, str] | None:
    """A JSON value of the wrong type for a shape and the SerializationException text it earns."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        return None if shape.get("document") else ("oops", "Expected null")
    return {
        "list": ("oops", "Expected list or null"),
        "map": (["oops"], "Start of list found where not expected"),
        "string": (12345, "NUMBER_VALUE cannot be converted to String"),
        "integer": ("7", "STRING_VALUE cannot be converted to Integer"),
        "long": ("7", "STRING_VALUE cannot be converted to Long"),
        "boolean": ("yes", "STRING_VALUE cannot be converted to Boolean"),
        "double": ("1.5", "STRING_VALUE cannot be converted to Double"),
        "float": ("1.5", "STRING_VALUE cannot be converted to Float"),
        "timestamp": (True, "TRUE_VALUE cannot be converted to Date"),
        "blob": (17, "NUMBER_VALUE cannot be converted to ByteBuffer"),
    }[kind]


Step = tuple[str | int, str]  # (member name or list index, shape name of the value there)


def enum_paths(shape_name: str, prefix: tuple[Step, ...] = (), depth: int = 0) -> Iterator[Any]:
    """Paths (through structures and lists) from a shape down to enum-valued strings."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "string" and shape.get("enum"):
        yield prefix
    elif depth >= 4:
        return
    elif kind == "structure" and not shape.get("document"):
        for name, ref in shape["members"].items():
            yield from enum_paths(ref["shape"], (*prefix, (name, ref["shape"])), depth + 1)
    elif kind == "list":
        member = shape["member"]["shape"]
        yield from enum_paths(member, (*prefix, (0, member)), depth + 1)


def inject(params: dict[str, Any], steps: tuple[Step, ...], value: Any) -> dict[str, Any]:
    """Set `value` at `steps`, creating minimal valid containers on the way."""
    node: Any = params
    for i, (key, shape_name) in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(key, int):
            if not node:
                node.append(None)
            if last:
                node[0] = value
            else:
                if node[0] is None:
                    node[0] = minimal(shape_name)
                node = node[0]
        else:
            if last:
                node[key] = value
            else:
                if key not in node:
                    node[key] = minimal(shape_name)
                node = node[key]
    return params


def coral_path(steps: tuple[Step, ...]) -> str:
    out: list[str] = []
    for key, _ in steps:
        out.append(f"{key + 1}.member" if isinstance(key, int) else key)
    return ".".join(out)


def minimal_input(operation: str) -> dict[str, Any]:
    name = ECS.input_shape_name(operation)
    assert name is not None
    value = minimal(name)
    assert isinstance(value, dict)
    return value


def expect(operation: str, params: Any, code: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        ECS.validate_input(operation, params)
    err = info.value
    assert err.status == 400
    assert err.code == code, err.message
    return err


# --------------------------------------------------------------------------- generated cases


REQUIRED_CASES = [
    (op, member) for op in OPERATIONS for member in input_shape(op).get("required", [])
]
TYPE_CASES = [
    (op, member, ref["shape"])
    for op in OPERATIONS
    for member, ref in input_shape(op)["members"].items()
    if wrong_value(ref["shape"]) is not None
]
ENUM_CASES = []
for _op in OPERATIONS:
    _name = ECS.input_shape_name(_op)
    assert _name is not None
    for _index, _steps in enumerate(enum_paths(_name)):
        if _index >= 5:
            break
        ENUM_CASES.append((_op, _steps))


def test_model_metadata() -> None:
    assert ECS.target_prefix == "AmazonEC2ContainerServiceV20141113"
    assert ECS.protocol == "json"
    assert ECS.json_version == "1.1"
    assert ECS.signing_name == "ecs"
    assert len(OPERATIONS) == 77
    assert {"RunTask", "CreateService", "DescribeServices"} <= ECS.operation_names
    assert ECS.validation_error_code == "InvalidParameterException"


def test_load_is_cached() -> None:
    assert ServiceModel.load("ecs") is ECS
    assert load("ecs") is ECS


def test_operation_for_target() -> None:
    assert ECS.operation_for_target("AmazonEC2ContainerServiceV20141113.RunTask") == "RunTask"
    assert ECS.operation_for_target("AmazonEC2ContainerServiceV20141113.Nope") is None
    assert ECS.operation_for_target("Logs_20140328.RunTask") is None
    assert ECS.operation_for_target("RunTask") is None


def test_every_operation_has_generated_cases() -> None:
    with_required = {op for op, _ in REQUIRED_CASES}
    with_members = {op for op, _, _ in TYPE_CASES}
    assert with_members == set(OPERATIONS)
    assert with_required  # most ECS operations have required members
    assert len({op for op, _ in ENUM_CASES}) > 30


@pytest.mark.parametrize("operation", OPERATIONS)
def test_minimal_valid_input_passes(operation: str) -> None:
    params = minimal_input(operation)
    op_model = BOTO_MODEL.operation_model(operation)
    report = botocore.validate.ParamValidator().validate(params, op_model.input_shape)
    assert not report.has_errors(), report.generate_report()
    ECS.validate_input(operation, wire(operation, params))


@pytest.mark.parametrize(("operation", "member"), REQUIRED_CASES)
def test_missing_required_member(operation: str, member: str) -> None:
    params = wire(operation, minimal_input(operation))
    del params[member]
    err = expect(operation, params, "InvalidParameterException")
    assert err.message == (
        f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: "
        "Member must not be null"
    )
    # An explicit JSON null is the same as absent.
    params[member] = None
    assert expect(operation, params, "InvalidParameterException").message == err.message


@pytest.mark.parametrize(("operation", "member", "shape"), TYPE_CASES)
def test_wrong_type(operation: str, member: str, shape: str) -> None:
    bad = wrong_value(shape)
    assert bad is not None
    value, message = bad
    params = wire(operation, minimal_input(operation))
    params[member] = value
    err = expect(operation, params, "SerializationException")
    assert err.message == message


@pytest.mark.parametrize(
    ("operation", "steps"), ENUM_CASES, ids=[f"{op}:{coral_path(s)}" for op, s in ENUM_CASES]
)
def test_bad_enum_value(operation: str, steps: tuple[Step, ...]) -> None:
    enum = SHAPES[steps[-1][1]]["enum"]
    good = inject(minimal_input(operation), steps, enum[-1])
    ECS.validate_input(operation, wire(operation, good))
    bad = inject(minimal_input(operation), steps, BAD_ENUM)
    err = expect(operation, bad, "InvalidParameterException")
    assert err.message == (
        f"1 validation error detected: Value '{BAD_ENUM}' at '{coral_path(steps)}' failed to "
        f"satisfy constraint: Member must satisfy enum value set: [{', '.join(enum)}]"
    )


def botocore_examples() -> list[tuple[str, int, dict[str, Any]]]:
    examples = botocore.loaders.Loader().load_service_model("ecs", "examples-1")["examples"]
    cases = []
    for operation, items in sorted(examples.items()):
        for index, example in enumerate(items):
            cases.append((operation, index, example.get("input", {})))
    return cases


EXAMPLES = botocore_examples()


@pytest.mark.parametrize(("operation", "index", "params"), EXAMPLES)
def test_botocore_examples_pass(operation: str, index: int, params: dict[str, Any]) -> None:
    op_model = BOTO_MODEL.operation_model(operation)
    report = botocore.validate.ParamValidator().validate(params, op_model.input_shape)
    if report.has_errors():
        pytest.skip("example no longer valid for botocore itself")
    ECS.validate_input(operation, wire(operation, params))


# --------------------------------------------------------------------------- specific behaviour


REALISTIC_RUN_TASK = {
    "cluster": "default",
    "taskDefinition": "web:3",
    "count": 2,
    "launchType": "FARGATE",
    "startedBy": "ci",
    "tags": [{"key": "team", "value": "core"}],
    "networkConfiguration": {
        "awsvpcConfiguration": {
            "subnets": ["subnet-1", "subnet-2"],
            "securityGroups": ["sg-1"],
            "assignPublicIp": "ENABLED",
        }
    },
    "overrides": {
        "containerOverrides": [
            {
                "name": "app",
                "command": ["run", "--fast"],
                "environment": [{"name": "A", "value": "1"}],
                "memory": 512,
            }
        ],
        "cpu": "256",
    },
}


def test_realistic_requests_pass() -> None:
    ECS.validate_input("RunTask", wire("RunTask", REALISTIC_RUN_TASK))
    ECS.validate_input(
        "RegisterTaskDefinition",
        wire(
            "RegisterTaskDefinition",
            {
                "family": "web",
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [
                    {
                        "name": "app",
                        "image": "nginx:latest",
                        "essential": True,
                        "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
                        "healthCheck": {"command": ["CMD", "true"], "interval": 30},
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {"awslogs-group": "/ecs/web"},
                        },
                    }
                ],
            },
        ),
    )
    ECS.validate_input(
        "CreateService",
        wire(
            "CreateService",
            {
                "serviceName": "web",
                "taskDefinition": "web",
                "desiredCount": 3,
                "deploymentConfiguration": {
                    "minimumHealthyPercent": 50,
                    "maximumPercent": 200,
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                },
                "loadBalancers": [
                    {"targetGroupArn": "arn:tg", "containerName": "app", "containerPort": 80}
                ],
            },
        ),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Start of list found where not expected"),
        ("x", "Expected null"),
        (3, "Expected null"),
        (None, "Expected null"),
        (True, "Expected null"),
    ],
)
def test_body_must_be_an_object(body: Any, message: str) -> None:
    assert expect("ListClusters", body, "SerializationException").message == message


def test_unknown_members_are_ignored() -> None:
    ECS.validate_input("ListClusters", {"bogus": [1, 2], "maxResults": 5})


def test_null_optional_member_is_absent() -> None:
    ECS.validate_input("ListClusters", {"maxResults": None, "nextToken": None})


def test_unknown_operation() -> None:
    err = expect("NoSuchThing", {}, "UnknownOperationException")
    assert "NoSuchThing" in err.message


def test_nested_type_errors() -> None:
    params = dict(REALISTIC_RUN_TASK)
    params["overrides"] = {"containerOverrides": [{"name": "app", "memory": "512"}]}
    err = expect("RunTask", params, "SerializationException")
    assert err.message == "STRING_VALUE cannot be converted to Integer"
    params["overrides"] = {"containerOverrides": "app"}
    assert expect("RunTask", params, "SerializationException").message == "Expected list or null"
    params["overrides"] = {"containerOverrides": ["app"]}
    assert expect("RunTask", params, "SerializationException").message == "Expected null"
    params["overrides"] = {"containerOverrides": [{"name": {"a": 1}}]}
    assert (
        expect("RunTask", params, "SerializationException").message
        == "Start of structure or map found where not expected."
    )


def test_numbers() -> None:
    base = {"taskDefinition": "td"}
    ECS.validate_input("RunTask", {**base, "count": 2.0})
    assert (
        expect("RunTask", {**base, "count": 1.5}, "SerializationException").message
        == "NUMBER_VALUE cannot be converted to Integer"
    )
    expect("RunTask", {**base, "count": 2**31}, "SerializationException")
    expect("RunTask", {**base, "count": True}, "SerializationException")


def test_numeric_range() -> None:
    params = {
        "name": "cp",
        "autoScalingGroupProvider": {
            "autoScalingGroupArn": "arn:asg",
            "managedScaling": {"targetCapacity": 0},
        },
    }
    err = expect("CreateCapacityProvider", params, "InvalidParameterException")
    assert err.message == (
        "1 validation error detected: Value '0' at "
        "'autoScalingGroupProvider.managedScaling.targetCapacity' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    params["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] = 101  # type: ignore[index]
    err = expect("CreateCapacityProvider", params, "InvalidParameterException")
    assert err.message.endswith("Member must have value less than or equal to 100")
    params["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] = 100  # type: ignore[index]
    ECS.validate_input("CreateCapacityProvider", params)


def test_string_and_list_lengths() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:cluster/x"
    err = expect(
        "TagResource", {"resourceArn": arn, "tags": [{"key": ""}]}, "InvalidParameterException"
    )
    assert err.message == (
        "1 validation error detected: Value '' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1"
    )
    tags = [{"key": f"k{i}", "value": "v"} for i in range(51)]
    err = expect("TagResource", {"resourceArn": arn, "tags": tags}, "InvalidParameterException")
    assert err.message.endswith(
        "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
    )
    ECS.validate_input("TagResource", {"resourceArn": arn, "tags": tags[:50]})


def test_errors_are_collected_and_capped() -> None:
    err = expect(
        "RunTask",
        {"launchType": "NOPE", "tags": [{"key": ""}], "propagateTags": "NOPE"},
        "InvalidParameterException",
    )
    assert err.message.startswith("4 validation errors detected: ")
    assert "Value null at 'taskDefinition'" in err.message
    assert "Value 'NOPE' at 'launchType'" in err.message
    assert "Value 'NOPE' at 'propagateTags'" in err.message
    assert "at 'tags.1.member.key'" in err.message
    assert err.message.count("; ") == 3
    many = {"taskDefinition": "td", "tags": [{"key": ""} for _ in range(15)]}
    err = expect("RunTask", many, "InvalidParameterException")
    assert err.message.startswith("10 validation errors detected: ")
    assert err.message.count("failed to satisfy constraint") == 10


def test_null_list_items_are_rejected() -> None:
    err = expect("DescribeClusters", {"clusters": ["a", None]}, "InvalidParameterException")
    assert "Value null at 'clusters.2.member'" in err.message


def test_timestamps_accept_numbers_and_iso_strings() -> None:
    base = {"status": "RUNNING"}
    good_values: tuple[Any, ...] = (
        1_700_000_000,
        1.7e9,
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123+00:00",
    )
    for value in good_values:
        ECS.validate_input("SubmitTaskStateChange", {**base, "pullStartedAt": value})
    bad_values: tuple[Any, ...] = ("yesterday", True, [1])
    for value in bad_values:
        expect("SubmitTaskStateChange", {**base, "pullStartedAt": value}, "SerializationException")


def test_maps() -> None:
    td = {"family": "f", "containerDefinitions": [{"name": "c", "image": "i"}]}
    ok = {**td, "containerDefinitions": [{"name": "c", "dockerLabels": {"a": "b"}}]}
    ECS.validate_input("RegisterTaskDefinition", ok)
    bad = {**td, "containerDefinitions": [{"name": "c", "dockerLabels": {"a": 1}}]}
    err = expect("RegisterTaskDefinition", bad, "SerializationException")
    assert err.message == "NUMBER_VALUE cannot be converted to String"
    bad = {**td, "containerDefinitions": [{"name": "c", "dockerLabels": "a=b"}]}
    assert expect("RegisterTaskDefinition", bad, "SerializationException").message == (
        "Expected map or null"
    )


def test_validators_are_compiled_once() -> None:
    ECS.validate_input("ListClusters", {})
    first = ECS._validators["ListClusters"]
    ECS.validate_input("ListClusters", {})
    assert ECS._validators["ListClusters"] is first


def test_validation_is_fast() -> None:
    params = wire("RunTask", REALISTIC_RUN_TASK)
    ECS.validate_input("RunTask", params)
    start = time.perf_counter()
    for _ in range(2000):
        ECS.validate_input("RunTask", params)
    assert (time.perf_counter() - start) / 2000 < 0.001


def test_compile_all_models() -> None:
    for name, code in (
        ("ecs", "InvalidParameterException"),
        ("logs", "InvalidParameterException"),
        ("application-autoscaling", "ValidationException"),
    ):
        model = ServiceModel.load(name)
        model.compile_all()
        assert model.validation_error_code == code
        assert set(model._validators) == set(model.operation_names)


def test_other_services_use_their_codes_and_patterns() -> None:
    logs = ServiceModel.load("logs")
    assert logs.target_prefix == "Logs_20140328"
    err = None
    with pytest.raises(ApiError) as info:
        logs.validate_input(
            "PutLogEvents",
            {"logGroupName": "g", "logStreamName": "a:b", "logEvents": [{"timestamp": 1}]},
        )
    err = info.value
    assert err.code == "InvalidParameterException"
    assert err.message.startswith("2 validation errors detected: ")
    assert "Member must satisfy regular expression pattern: [^:*]*" in err.message
    assert "Value null at 'logEvents.1.member.message'" in err.message
    scaling = ServiceModel.load("application-autoscaling")
    assert scaling.target_prefix == "AnyScaleFrontendService"
    with pytest.raises(ApiError) as info:
        scaling.validate_input(
            "RegisterScalableTarget",
            {
                "ServiceNamespace": "ecs",
                "ResourceId": "service/c/s",
                "ScalableDimension": "ecs:service:Nope",
            },
        )
    assert info.value.code == "ValidationException"
    assert "at 'ScalableDimension' failed to satisfy constraint" in info.value.message
