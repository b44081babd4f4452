"""Generated bad-input sweep over every implemented ECS operation, sent as raw signed requests.

For each operation in `galley.api.ecs.OPERATIONS`, built from botocore's ECS model:

  (a) malformed JSON bodies                      -> 400 SerializationException
  (b) each required member missing (or null)     -> 400 InvalidParameterException/ClientException
                                                    whose message names the member
  (c) a wrong JSON type for each top-level member -> 400 (type/validation error)
  (d) names of resources that do not exist        -> the ECS error (ClusterNotFoundException,
                                                    "Unable to describe task definition.", ...) or
                                                    `failures` with reason MISSING for Describe*
  (e) an optional member sent as JSON null        -> treated as absent (never a 500)
  (f) structurally valid but empty items ([{}]/{}) against real resources -> never a 500

Every error must be a 4xx whose JSON body has `__type` and `message` (never a 500), the server
must still answer /health and ListClusters afterwards, and a whole (a)-(d) sweep for one
operation must change nothing visible (clusters, task definition families, tasks).

Requests are signed with botocore's SigV4Auth and sent with `requests`, so bodies boto3 would
refuse client-side reach the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape

from galley.api.ecs import OPERATIONS

from .conftest import BUSYBOX
from .galley_process import ACCESS_KEY, REGION, SECRET_KEY, GalleyProcess

MODEL = botocore.session.get_session().get_service_model("ecs")
TARGET_PREFIX = MODEL.metadata["targetPrefix"]
IMPLEMENTED = sorted(OPERATIONS)
UNIMPLEMENTED = sorted(set(MODEL.operation_names) - set(OPERATIONS))

NOPE = "badinput-does-not-exist"
NOPE_TASK_ID = "0123456789abcdef0123456789abcdef"
EXISTING_CLUSTER = "badinput-existing"
EXISTING_FAMILY = "badinput-existing-family"

# Codes a wrong JSON type may legitimately produce (model.py answers SerializationException).
TYPE_ERROR_CODES = {"SerializationException", "InvalidParameterException", "ClientException"}
MISSING_MEMBER_CODES = {"InvalidParameterException", "ClientException"}
NOT_FOUND_CODES = {
    "ClusterNotFoundException", "ServiceNotFoundException", "ClientException",
    "InvalidParameterException", "ResourceNotFoundException", "TaskSetNotFoundException",
    "TargetNotFoundException", "NamespaceNotFoundException", "ServiceNotActiveException",
}  # fmt: skip


# ---- raw signed requests ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    doc: Any = None

    def __post_init__(self) -> None:
        try:
            self.doc = json.loads(self.body) if self.body else None
        except ValueError:
            self.doc = None

    @property
    def code(self) -> str | None:
        if isinstance(self.doc, dict):
            raw = self.doc.get("__type")
            return raw.rsplit("#", 1)[-1] if isinstance(raw, str) else None
        return None

    @property
    def message(self) -> str | None:
        if isinstance(self.doc, dict):
            return self.doc.get("message") or self.doc.get("Message")
        return None

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:400]!r}>"


_http = requests.Session()


def raw_post(endpoint: str, target: str | None, body: bytes, *, region: str = REGION,
             access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
             sign: bool = True) -> Reply:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
    if sign:
        SigV4Auth(Credentials(access_key, secret_key), "ecs", region).add_auth(request)
    r = _http.post(endpoint + "/", data=body, headers=dict(request.headers.items()), timeout=60)
    return Reply(r.status_code, r.content, dict(r.headers))


def call(endpoint: str, operation: str, body: Any) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_post(endpoint, f"{TARGET_PREFIX}.{operation}", raw)


def error_shape_problems(reply: Reply) -> list[str]:
    """Problems with an error reply: it must be a 4xx AWS JSON error, never a 500."""
    problems = []
    if not 400 <= reply.status < 500:
        problems.append(f"status {reply.status} is not 4xx")
    if not isinstance(reply.doc, dict):
        problems.append("body is not a JSON object")
        return problems
    if not isinstance(reply.doc.get("__type"), str) or not reply.doc["__type"]:
        problems.append("no __type")
    if not isinstance(reply.message, str) or not reply.message:
        problems.append("no message")
    if not any(k.lower() == "x-amzn-requestid" for k in reply.headers):
        problems.append("no x-amzn-RequestId header")
    return problems


# ---- values from the model -------------------------------------------------------------------


def input_shape(operation: str) -> Shape | None:
    return MODEL.operation_model(operation).input_shape


def sample(shape: Shape, depth: int = 0) -> Any:
    """A minimal value of `shape` that passes model validation (required members only)."""
    kind = shape.type_name
    if kind == "structure":
        return {name: sample(shape.members[name], depth + 1) for name in shape.required_members}
    if kind == "list":
        n = max(int(shape.metadata.get("min", 0)), 1)
        return [sample(shape.member, depth + 1) for _ in range(n)]
    if kind == "map":
        return {}
    if kind == "string":
        enum = shape.enum
        if enum:
            return enum[0]
        n = max(int(shape.metadata.get("min", 0)), 1)
        return ("x" * n)[: int(shape.metadata.get("max", n))]
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 0
    if kind == "blob":
        return "eA=="
    return None


def wrong_values(shape: Shape) -> list[tuple[str, Any]]:
    """(label, value) pairs of the wrong JSON type for `shape`."""
    kind = shape.type_name
    if kind == "string":
        return [("number", 12345), ("bool", True), ("list", ["x"]), ("object", {"a": "b"})]
    if kind in ("integer", "long"):
        return [("string", "7"), ("bool", True), ("fraction", 1.5), ("list", [1]),
                ("object", {"a": 1})]
    if kind in ("float", "double"):
        return [("string", "7"), ("bool", True), ("list", [1.0])]
    if kind == "boolean":
        return [("string", "true"), ("number", 1), ("list", [True]), ("object", {})]
    if kind == "timestamp":
        return [("bool", True), ("list", [1]), ("object", {}), ("bad-string", "not-a-date")]
    if kind == "list":
        item_wrong = wrong_values(shape.member)
        out = [("string", "x"), ("number", 1), ("object", {"a": 1}), ("bool", False)]
        if item_wrong:
            label, value = item_wrong[0]
            out.append((f"item-{label}", [value]))
        return out
    if kind == "structure":
        return [("string", "x"), ("number", 1), ("list", [{}]), ("bool", True)]
    if kind == "map":
        return [("string", "x"), ("list", ["x"]), ("number", 3)]
    return []


@dataclass
class Ctx:
    """What probes need at run time: the endpoint, the account, real resources to aim at."""

    endpoint: str
    account: str
    existing_cluster_arn: str = ""
    existing_td_arn: str = ""

    def arn(self, resource: str) -> str:
        return f"arn:aws:ecs:{REGION}:{self.account}:{resource}"


def hints(ctx: Ctx) -> dict[str, Any]:
    """Plausible values for well-known top-level members (all naming nothing that exists)."""
    return {
        "cluster": NOPE,
        "clusters": [NOPE],
        "clusterName": "badinput-created",
        "taskDefinition": f"{NOPE}:1",
        "taskDefinitions": [f"{NOPE}:1"],
        "task": NOPE_TASK_ID,
        "tasks": [NOPE_TASK_ID],
        "family": "badinput-registered",
        "containerDefinitions": [{"name": "app", "image": BUSYBOX, "memory": 64}],
        "resourceArn": ctx.arn(f"cluster/{NOPE}"),
        "tags": [{"key": "k", "value": "v"}],
        "tagKeys": ["k"],
        "settings": [{"name": "containerInsights", "value": "enabled"}],
        "service": NOPE,
        "services": [NOPE],
        "serviceName": NOPE,
        "containerInstance": NOPE_TASK_ID,
        "containerInstances": [NOPE_TASK_ID],
    }


def base_body(operation: str, ctx: Ctx) -> dict[str, Any]:
    """The required members, filled with plausible values."""
    shape = input_shape(operation)
    if shape is None:
        return {}
    h = hints(ctx)
    return {name: h.get(name, sample(shape.members[name])) for name in shape.required_members}


# ---- probes ----------------------------------------------------------------------------------

Check = Callable[[Reply], list[str]]


@dataclass
class Probe:
    label: str
    operation: str
    body: Any  # JSON-able or raw bytes
    check: Check


def expect_error(codes: set[str] | str, message: str | None = None,
                 mentions: str | None = None) -> Check:
    allowed = {codes} if isinstance(codes, str) else codes

    def check(reply: Reply) -> list[str]:
        problems = error_shape_problems(reply)
        if reply.code not in allowed:
            problems.append(f"__type {reply.code!r} not in {sorted(allowed)}")
        if message is not None and reply.message != message:
            problems.append(f"message {reply.message!r} != {message!r}")
        if mentions is not None and mentions not in (reply.message or ""):
            problems.append(f"message {reply.message!r} does not name {mentions!r}")
        return problems

    return check


def expect_ok(predicate: Callable[[dict[str, Any]], bool], what: str) -> Check:
    def check(reply: Reply) -> list[str]:
        if reply.status != 200 or not isinstance(reply.doc, dict):
            return [f"expected 200 with {what}"]
        return [] if predicate(reply.doc) else [f"expected {what}"]

    return check


def expect_missing_failure(arn_suffix: str, list_key: str) -> Check:
    def ok(doc: dict[str, Any]) -> bool:
        failures = doc.get("failures") or []
        return (doc.get(list_key) == [] and len(failures) == 1
                and failures[0].get("reason") == "MISSING"
                and str(failures[0].get("arn", "")).endswith(arn_suffix))

    return expect_ok(ok, f"{list_key}=[] and one failure reason MISSING for …{arn_suffix}")


def expect_failure_or_error(ref: str, list_key: str) -> Check:
    """A 200 whose failures name `ref` (nothing done), or a 4xx not-found error."""

    def check(reply: Reply) -> list[str]:
        if reply.status == 200 and isinstance(reply.doc, dict):
            failures = reply.doc.get("failures") or []
            if reply.doc.get(list_key) == [] and len(failures) == 1 and ref in str(failures[0]):
                return []
            return [f"200 without exactly one failure naming {ref!r} and empty {list_key}"]
        problems = error_shape_problems(reply)
        if reply.code not in NOT_FOUND_CODES:
            problems.append(f"__type {reply.code!r} is not a not-found error")
        return problems

    return check


def malformed_json_probes(operation: str) -> list[Probe]:
    bodies = {
        "truncated": b'{"cluster": ',
        "not-json": b"this is not json",
        "trailing-comma": b'{"a": 1,}',
        "single-quotes": b"{'a': 1}",
        "bad-utf8": b'{"a": "\xff\xfe"}',
        "unclosed-string": b'{"a": "b}',
    }
    return [Probe(f"malformed-{label}", operation, body,
                  expect_error("SerializationException"))
            for label, body in bodies.items()]


def non_object_probes(operation: str) -> list[Probe]:
    bodies: dict[str, bytes] = {"array": b"[]", "string": b'"x"', "number": b"42",
                                "true": b"true"}
    return [Probe(f"top-level-{label}", operation, body, expect_error(TYPE_ERROR_CODES))
            for label, body in bodies.items()]


def missing_required_probes(operation: str, ctx: Ctx, member: str | None = None) -> list[Probe]:
    shape = input_shape(operation)
    probes = []
    for name in shape.required_members if shape else []:
        if member is not None and name != member:
            continue
        body = base_body(operation, ctx)
        absent = dict(body)
        del absent[name]
        check = expect_error(MISSING_MEMBER_CODES, mentions=name)
        probes.append(Probe(f"missing-{name}", operation, absent, check))
        probes.append(Probe(f"null-{name}", operation, {**body, name: None}, check))
    return probes


def wrong_type_probes(operation: str, ctx: Ctx, member: str | None = None) -> list[Probe]:
    shape = input_shape(operation)
    probes = []
    for name, member_shape in (shape.members.items() if shape else []):
        if member is not None and name != member:
            continue
        for label, value in wrong_values(member_shape):
            body = {**base_body(operation, ctx), name: value}
            probes.append(Probe(f"wrong-type-{name}-{label}", operation, body,
                                expect_error(TYPE_ERROR_CODES)))
    return probes


CLUSTER_NOT_FOUND = expect_error("ClusterNotFoundException", "Cluster not found.")
TD_NOT_DESCRIBABLE = expect_error("ClientException", "Unable to describe task definition.")
BAD_TOKEN = expect_error("InvalidParameterException")
TAG_TARGET_MISSING = expect_error(
    {"ResourceNotFoundException", "ClusterNotFoundException", "InvalidParameterException"})


def nonexistent_probes(operation: str, ctx: Ctx) -> list[Probe]:
    """Hand-written expectations for the implemented operations, plus a generic fallback."""
    cluster_arn = ctx.arn(f"cluster/{NOPE}")
    td_arn = ctx.arn(f"task-definition/{NOPE}:1")
    existing_task_arn = ctx.arn(f"task/{EXISTING_CLUSTER}/{NOPE_TASK_ID}")
    tagging_targets = {
        "cluster-arn": cluster_arn,
        "task-definition-arn": td_arn,
        "task-arn": existing_task_arn,
        "service-arn": ctx.arn(f"service/{EXISTING_CLUSTER}/{NOPE}"),
    }
    setting = [{"name": "containerInsights", "value": "enabled"}]
    table: dict[str, list[tuple[str, dict[str, Any], Check]]] = {
        "CreateCluster": [],
        "RegisterTaskDefinition": [],
        "DescribeClusters": [
            ("name", {"clusters": [NOPE]}, expect_missing_failure(f"cluster/{NOPE}", "clusters")),
            ("arn", {"clusters": [cluster_arn]},
             expect_missing_failure(f"cluster/{NOPE}", "clusters")),
        ],
        "ListClusters": [("bad-token", {"nextToken": "not-a-token!"}, BAD_TOKEN)],
        "UpdateCluster": [
            ("name", {"cluster": NOPE, "settings": setting}, CLUSTER_NOT_FOUND),
            ("arn", {"cluster": cluster_arn, "settings": setting}, CLUSTER_NOT_FOUND),
        ],
        "UpdateClusterSettings": [
            ("name", {"cluster": NOPE, "settings": setting}, CLUSTER_NOT_FOUND),
        ],
        "DeleteCluster": [
            ("name", {"cluster": NOPE}, CLUSTER_NOT_FOUND),
            ("arn", {"cluster": cluster_arn}, CLUSTER_NOT_FOUND),
        ],
        "DescribeTaskDefinition": [
            ("family", {"taskDefinition": NOPE}, TD_NOT_DESCRIBABLE),
            ("family-rev", {"taskDefinition": f"{NOPE}:1"}, TD_NOT_DESCRIBABLE),
            ("arn", {"taskDefinition": td_arn}, TD_NOT_DESCRIBABLE),
            ("existing-family-missing-rev", {"taskDefinition": f"{EXISTING_FAMILY}:999"},
             TD_NOT_DESCRIBABLE),
        ],
        "ListTaskDefinitions": [
            ("family", {"familyPrefix": NOPE},
             expect_ok(lambda d: d.get("taskDefinitionArns") == [], "taskDefinitionArns=[]")),
            ("bad-token", {"nextToken": "not-a-token!"}, BAD_TOKEN),
        ],
        "ListTaskDefinitionFamilies": [
            ("prefix", {"familyPrefix": NOPE},
             expect_ok(lambda d: d.get("families") == [], "families=[]")),
            ("bad-token", {"nextToken": "not-a-token!"}, BAD_TOKEN),
        ],
        "DeregisterTaskDefinition": [
            ("family-rev", {"taskDefinition": f"{NOPE}:1"}, expect_error("ClientException")),
            ("family-only", {"taskDefinition": NOPE}, expect_error("ClientException")),
            ("arn", {"taskDefinition": td_arn}, expect_error("ClientException")),
        ],
        "DeleteTaskDefinitions": [
            ("family-rev", {"taskDefinitions": [f"{NOPE}:1"]},
             expect_failure_or_error(NOPE, "taskDefinitions")),
            ("arn", {"taskDefinitions": [td_arn]},
             expect_failure_or_error(NOPE, "taskDefinitions")),
        ],
        "RunTask": [
            ("cluster", {"cluster": NOPE, "taskDefinition": ctx.existing_td_arn,
                         "launchType": "FARGATE"}, CLUSTER_NOT_FOUND),
            ("task-definition", {"cluster": EXISTING_CLUSTER, "taskDefinition": f"{NOPE}:1",
                                 "launchType": "FARGATE"},
             expect_error({"InvalidParameterException", "ClientException"},
                          "TaskDefinition not found.")),
            ("task-definition-family", {"cluster": EXISTING_CLUSTER, "taskDefinition": NOPE,
                                        "launchType": "FARGATE"},
             expect_error({"InvalidParameterException", "ClientException"},
                          "TaskDefinition not found.")),
        ],
        "StopTask": [
            ("cluster", {"cluster": NOPE, "task": NOPE_TASK_ID}, CLUSTER_NOT_FOUND),
            ("task", {"cluster": EXISTING_CLUSTER, "task": NOPE_TASK_ID},
             expect_error("InvalidParameterException", "The referenced task was not found.")),
            ("task-arn", {"cluster": EXISTING_CLUSTER, "task": existing_task_arn},
             expect_error("InvalidParameterException", "The referenced task was not found.")),
        ],
        "DescribeTasks": [
            ("cluster", {"cluster": NOPE, "tasks": [NOPE_TASK_ID]}, CLUSTER_NOT_FOUND),
            ("task", {"cluster": EXISTING_CLUSTER, "tasks": [NOPE_TASK_ID]},
             expect_missing_failure(NOPE_TASK_ID, "tasks")),
            ("task-arn", {"cluster": EXISTING_CLUSTER, "tasks": [existing_task_arn]},
             expect_missing_failure(NOPE_TASK_ID, "tasks")),
        ],
        "ListTasks": [
            ("cluster", {"cluster": NOPE}, CLUSTER_NOT_FOUND),
            ("cluster-arn", {"cluster": cluster_arn}, CLUSTER_NOT_FOUND),
            ("family", {"cluster": EXISTING_CLUSTER, "family": NOPE},
             expect_ok(lambda d: d.get("taskArns") == [], "taskArns=[]")),
            ("bad-token", {"cluster": EXISTING_CLUSTER, "nextToken": "not-a-token!"}, BAD_TOKEN),
        ],
    }
    for op, extra in (("TagResource", {"tags": [{"key": "k", "value": "v"}]}),
                      ("UntagResource", {"tagKeys": ["k"]}), ("ListTagsForResource", {})):
        table[op] = [(label, {"resourceArn": arn, **extra}, TAG_TARGET_MISSING)
                     for label, arn in tagging_targets.items()]
        table[op].append(("not-an-arn", {"resourceArn": "not-an-arn", **extra},
                          expect_error("InvalidParameterException")))
    if operation in table:
        cases = table[operation]
    else:  # an operation added later: aim each reference member at nothing
        cases = []
        body = base_body(operation, ctx)
        shape = input_shape(operation)
        h = hints(ctx)
        for name in shape.members if shape else []:
            if name in ("cluster", "service", "task", "taskDefinition", "containerInstance",
                        "resourceArn"):
                cases.append((name, {**body, name: h[name]}, _generic_not_found(name, h[name])))
    return [Probe(f"nonexistent-{label}", operation, body, check)
            for label, body, check in cases]


def _generic_not_found(member: str, value: Any) -> Check:
    def check(reply: Reply) -> list[str]:
        if reply.status == 200 and isinstance(reply.doc, dict) and reply.doc.get("failures"):
            return []
        problems = error_shape_problems(reply)
        if reply.code not in NOT_FOUND_CODES:
            problems.append(f"__type {reply.code!r} is not a not-found error for {member}")
        return problems

    return check


def all_sweep_probes(operation: str, ctx: Ctx) -> list[Probe]:
    return (malformed_json_probes(operation) + non_object_probes(operation)
            + missing_required_probes(operation, ctx) + wrong_type_probes(operation, ctx)
            + nonexistent_probes(operation, ctx))


def run_probes(ctx: Ctx, probes: list[Probe]) -> list[str]:
    failures = []
    for probe in probes:
        reply = call(ctx.endpoint, probe.operation, probe.body)
        problems = probe.check(reply)
        if problems:
            shown = probe.body if isinstance(probe.body, bytes) else json.dumps(probe.body)
            failures.append(f"{probe.operation} [{probe.label}] body={str(shown)[:300]} -> "
                            f"{reply!r}: {'; '.join(problems)}")
    return failures


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx(galley: GalleyProcess) -> Iterator[Ctx]:
    ecs = galley.client()
    cluster_arn = ecs.create_cluster(clusterName=EXISTING_CLUSTER)["cluster"]["clusterArn"]
    account = cluster_arn.split(":")[4]
    td = ecs.register_task_definition(
        family=EXISTING_FAMILY, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                               "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
    yield Ctx(galley.endpoint, account, cluster_arn, td)


def snapshot(ecs: Any) -> dict[str, Any]:
    """Everything a bad request might have changed, as lists of ARNs/names."""
    clusters: list[str] = []
    for page in ecs.get_paginator("list_clusters").paginate():
        clusters += page["clusterArns"]
    families: list[str] = []
    for page in ecs.get_paginator("list_task_definition_families").paginate(status="ALL"):
        families += page["families"]
    defs: dict[str, list[str]] = {}
    for status in ("ACTIVE", "INACTIVE"):
        defs[status] = []
        for page in ecs.get_paginator("list_task_definitions").paginate(status=status):
            defs[status] += page["taskDefinitionArns"]
    tasks: dict[str, list[str]] = {}
    for arn in sorted(clusters):
        for desired in ("RUNNING", "STOPPED"):
            found: list[str] = []
            for page in ecs.get_paginator("list_tasks").paginate(cluster=arn,
                                                                 desiredStatus=desired):
                found += page["taskArns"]
            tasks[f"{arn} {desired}"] = sorted(found)
    snap = {"clusters": sorted(clusters), "families": sorted(families),
            "task_definitions": {k: sorted(v) for k, v in defs.items()}, "tasks": tasks}
    # Operations added since this sweep was written: their resources must not change either.
    for operation, paginator, key in (("ListServices", "list_services", "serviceArns"),
                                      ("ListContainerInstances", "list_container_instances",
                                       "containerInstanceArns")):
        if operation in OPERATIONS:
            for arn in sorted(clusters):
                found = []
                for page in ecs.get_paginator(paginator).paginate(cluster=arn):
                    found += page[key]
                snap[f"{key} {arn}"] = sorted(found)
    return snap


def assert_healthy(galley: GalleyProcess) -> None:
    r = requests.get(galley.endpoint + "/health", timeout=10)
    assert r.status_code == 200, r.text
    assert "clusterArns" in galley.client().list_clusters()


def member_params(kind: str) -> list[Any]:
    out = []
    for op in IMPLEMENTED:
        shape = input_shape(op)
        names = (shape.required_members if kind == "required" else list(shape.members)) \
            if shape else []
        out += [pytest.param(op, name, id=f"{op}-{name}") for name in names]
    return out


# ---- (a)-(d) per operation -------------------------------------------------------------------


def test_every_implemented_operation_is_in_the_model() -> None:
    assert IMPLEMENTED, "galley.api.ecs.OPERATIONS is empty"
    assert set(IMPLEMENTED) <= set(MODEL.operation_names)


@pytest.mark.parametrize("operation", IMPLEMENTED)
def test_malformed_json_is_a_serialization_exception(ctx: Ctx, operation: str) -> None:
    failures = run_probes(ctx, malformed_json_probes(operation) + non_object_probes(operation))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("operation", "member"), member_params("required"))
def test_missing_required_member_is_named(ctx: Ctx, operation: str, member: str) -> None:
    failures = run_probes(ctx, missing_required_probes(operation, ctx, member))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("operation", "member"), member_params("all"))
def test_wrong_json_type_is_a_400(ctx: Ctx, operation: str, member: str) -> None:
    failures = run_probes(ctx, wrong_type_probes(operation, ctx, member))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("operation", IMPLEMENTED)
def test_nonexistent_names_get_the_ecs_error(ctx: Ctx, operation: str) -> None:
    failures = run_probes(ctx, nonexistent_probes(operation, ctx))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("operation", IMPLEMENTED)
def test_bad_input_sweep_changes_nothing(ctx: Ctx, galley: GalleyProcess, operation: str
                                        ) -> None:
    ecs = galley.client()
    before = snapshot(ecs)
    failures = run_probes(ctx, all_sweep_probes(operation, ctx))
    after = snapshot(ecs)
    assert_healthy(galley)
    assert not failures, "\n".join(failures)
    assert after == before, f"the bad-input sweep of {operation} changed state"


# ---- (e) optional members sent as null mean "absent" -----------------------------------------


@pytest.mark.parametrize(("operation", "member"), [
    p for p in member_params("all")
    if p.values[1] not in input_shape(p.values[0]).required_members])
def test_null_optional_member_is_treated_as_absent(ctx: Ctx, galley: GalleyProcess,
                                                   operation: str, member: str) -> None:
    body = base_body(operation, ctx)
    if operation == "CreateCluster":
        body["clusterName"] = "badinput-null-probe"
    if member in body:
        del body[member]
    ecs = galley.client()
    had_default = _cluster_is_active(ecs, "default")
    absent = call(ctx.endpoint, operation, body)
    nulled = call(ctx.endpoint, operation, {**body, member: None})
    try:
        assert nulled.status < 500, f"{member}=null -> {nulled!r} (absent -> {absent!r})"
        assert (nulled.status, nulled.code) == (absent.status, absent.code), (
            f"{member}=null -> {nulled!r} but absent -> {absent!r}")
        if nulled.status >= 400:
            assert not error_shape_problems(nulled), nulled
    finally:
        _undo_created_service(ecs, operation, absent, nulled)
        _drop_cluster(ecs, "badinput-null-probe")
        if not had_default:
            _drop_cluster(ecs, "default")


def _undo_created_service(ecs: Any, operation: str, *replies: Reply) -> None:
    if operation != "CreateService":
        return
    for reply in replies:
        if reply.status == 200 and isinstance(reply.doc, dict) and "service" in reply.doc:
            service = reply.doc["service"]
            ecs.delete_service(cluster=service["clusterArn"], service=service["serviceArn"],
                               force=True)


def _cluster_is_active(ecs: Any, name: str) -> bool:
    found = ecs.describe_clusters(clusters=[name])["clusters"]
    return bool(found) and found[0]["status"] == "ACTIVE"


def _drop_cluster(ecs: Any, name: str) -> None:
    if _cluster_is_active(ecs, name):
        ecs.delete_cluster(cluster=name)


# ---- (f) empty items against real resources --------------------------------------------------


def _real_base(operation: str, ctx: Ctx) -> dict[str, Any]:
    """Required members aimed at resources that exist (so handlers get past the lookups)."""
    body = base_body(operation, ctx)
    real = {"cluster": EXISTING_CLUSTER, "clusters": [EXISTING_CLUSTER],
            "taskDefinition": ctx.existing_td_arn, "resourceArn": ctx.existing_cluster_arn,
            "clusterName": EXISTING_CLUSTER, "family": "badinput-empty-items"}
    for name in list(body):
        if name in real:
            body[name] = real[name]
    shape = input_shape(operation)
    if shape and "cluster" in shape.members:
        body["cluster"] = EXISTING_CLUSTER
    return body


def _empty_item_params() -> list[Any]:
    out = []
    for op in IMPLEMENTED:
        shape = input_shape(op)
        for name, member in (shape.members.items() if shape else []):
            if member.type_name == "structure" and not member.required_members:
                out.append(pytest.param(op, name, {}, id=f"{op}-{name}-empty-object"))
            if member.type_name == "list" and member.member.type_name == "structure" \
                    and not member.member.required_members:
                out.append(pytest.param(op, name, [{}], id=f"{op}-{name}-empty-item"))
    return out


@pytest.mark.parametrize(("operation", "member", "value"), _empty_item_params())
def test_empty_items_never_cause_a_server_error(ctx: Ctx, galley: GalleyProcess, operation: str,
                                                member: str, value: Any) -> None:
    body = {**_real_base(operation, ctx), member: value}
    if operation == "CreateCluster":
        body["clusterName"] = "badinput-empty-items"
    ecs = galley.client()
    had_default = _cluster_is_active(ecs, "default")
    reply = call(ctx.endpoint, operation, body)
    try:
        assert reply.status < 500, f"{operation} {json.dumps(body)} -> {reply!r}"
        if reply.status >= 400:
            assert not error_shape_problems(reply), reply
    finally:
        _undo_created_service(ecs, operation, reply)
        _drop_cluster(ecs, "badinput-empty-items")
        if not had_default:
            _drop_cluster(ecs, "default")
        if reply.status == 200 and operation == "RunTask":
            for task in reply.doc.get("tasks", []):
                ecs.stop_task(cluster=EXISTING_CLUSTER, task=task["taskArn"])
        if operation == "UpdateCluster" or operation == "UpdateClusterSettings":
            ecs.update_cluster_settings(cluster=EXISTING_CLUSTER, settings=[
                {"name": "containerInsights", "value": "disabled"}])
    assert_healthy(galley)


def _nested_null_cases() -> list[Any]:
    net = {"awsvpcConfiguration": {"subnets": ["subnet-12345"], "securityGroups": None,
                                   "assignPublicIp": None}}
    return [
        pytest.param("TagResource", {"resourceArn": "<existing-cluster>",
                                     "tags": [{"key": "k", "value": None}]}, id="tag-value"),
        pytest.param("CreateCluster", {"clusterName": "badinput-nested-null",
                                       "settings": [{"name": "containerInsights",
                                                     "value": None}]}, id="cluster-setting"),
        pytest.param("RegisterTaskDefinition", {
            "family": "badinput-nested-null",
            "containerDefinitions": [{"name": "app", "image": BUSYBOX, "memory": 64,
                                      "command": None, "environment": None,
                                      "portMappings": None, "essential": None}]},
            id="container-definition"),
        pytest.param("RunTask", {"cluster": EXISTING_CLUSTER, "taskDefinition": "<existing-td>",
                                 "launchType": "FARGATE", "networkConfiguration": net,
                                 "overrides": {"containerOverrides": [
                                     {"name": "app", "command": None, "environment": None}]}},
                     id="run-task-overrides"),
    ]


@pytest.mark.parametrize(("operation", "body"), _nested_null_cases())
def test_nested_nulls_never_cause_a_server_error(ctx: Ctx, galley: GalleyProcess,
                                                 operation: str, body: dict[str, Any]) -> None:
    """Null members inside structures mean "absent" too (the model says so)."""
    text = json.dumps(body).replace('"<existing-cluster>"', json.dumps(ctx.existing_cluster_arn))
    text = text.replace('"<existing-td>"', json.dumps(ctx.existing_td_arn))
    ecs = galley.client()
    reply = call(ctx.endpoint, operation, json.loads(text))
    try:
        assert reply.status < 500, f"{operation} {text} -> {reply!r}"
        if reply.status >= 400:
            assert not error_shape_problems(reply), reply
    finally:
        if reply.status == 200 and operation == "RunTask":
            for task in reply.doc.get("tasks", []):
                ecs.stop_task(cluster=EXISTING_CLUSTER, task=task["taskArn"])
        _drop_cluster(ecs, "badinput-nested-null")
        ecs.untag_resource(resourceArn=ctx.existing_cluster_arn, tagKeys=["k"])
    assert_healthy(galley)


# ---- routing: unknown and unimplemented operations -------------------------------------------


@pytest.mark.parametrize("target", [
    f"{TARGET_PREFIX}.NoSuchOperation",
    f"{TARGET_PREFIX}.listClusters",
    "NoSuchServiceV1.ListClusters",
    "ListClusters",
    "",
    None,
], ids=["unknown-op", "wrong-case", "unknown-prefix", "no-prefix", "empty", "absent"])
def test_unknown_target_is_unknown_operation(galley: GalleyProcess, target: str | None) -> None:
    reply = raw_post(galley.endpoint, target, b"{}")
    assert not error_shape_problems(reply), reply
    assert reply.code == "UnknownOperationException", reply


@pytest.mark.parametrize("operation", UNIMPLEMENTED)
def test_unimplemented_operation_is_an_aws_error_not_a_500(ctx: Ctx, galley: GalleyProcess,
                                                           operation: str) -> None:
    before = snapshot(galley.client()) if operation.startswith(("Create", "Delete")) else None
    shape = input_shape(operation)
    for body in ({}, sample(shape) if shape else {}):
        reply = call(ctx.endpoint, operation, body)
        assert not error_shape_problems(reply), f"{operation} {json.dumps(body)} -> {reply!r}"
    if before is not None:
        assert snapshot(galley.client()) == before


def test_server_is_still_healthy_after_everything(galley: GalleyProcess) -> None:
    assert_healthy(galley)
