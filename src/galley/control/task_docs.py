"""Pure task documents: build a Task as ECS shows it, and fold agent reports into it.

A task row holds two JSON documents: `doc`, the Task exactly as DescribeTasks returns it, and
`spec`, what its agent needs to run it (the task definition with RunTask overrides applied).
"""

from __future__ import annotations

import copy
import secrets
import uuid
from typing import Any

from galley.arns import Scope

# lastStatus in the order ECS moves through them; a report never moves a task backwards.
TASK_STATES = [
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
]
RANK = {state: i for i, state in enumerate(TASK_STATES)}
CONTAINER_RANK = {"PENDING": 0, "RUNNING": 1, "STOPPED": 2}

FARGATE_PLATFORM_VERSION = "1.4.0"


def merge_overrides(
    container_defs: list[dict[str, Any]], overrides: dict[str, Any]
) -> list[dict[str, Any]]:
    """Container definitions with RunTask containerOverrides applied (environment merges by name)."""
    by_name = {o["name"]: o for o in overrides.get("containerOverrides", []) if "name" in o}
    merged = []
    for cdef in container_defs:
        c = copy.deepcopy(cdef)
        o = by_name.get(c["name"])
        if o:
            for key in ("command", "cpu", "memory", "memoryReservation", "resourceRequirements"):
                if key in o:
                    c[key] = o[key]
            if "environment" in o:
                env = {e["name"]: e for e in c.get("environment", [])}
                env.update({e["name"]: e for e in o["environment"]})
                c["environment"] = list(env.values())
        merged.append(c)
    return merged


def new_task(
    scope: Scope,
    *,
    cluster_arn: str,
    cluster_name: str,
    task_def: dict[str, Any],
    launch_type: str,
    overrides: dict[str, Any],
    group: str,
    started_by: str | None,
    network_configuration: dict[str, Any] | None,
    capacity_provider: str | None,
    created_at: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(doc, spec) for a new task, lastStatus PROVISIONING (awsvpc) or PENDING."""
    task_id = secrets.token_hex(16)
    task_arn = scope.task_arn(cluster_name, task_id)
    containers_spec = merge_overrides(task_def["containerDefinitions"], overrides)
    awsvpc = task_def.get("networkMode") == "awsvpc"
    cpu = overrides.get("cpu") or task_def.get("cpu")
    memory = overrides.get("memory") or task_def.get("memory")
    containers = []
    for c in containers_spec:
        container: dict[str, Any] = {
            "containerArn": scope.container_arn(cluster_name, task_id, str(uuid.uuid4())),
            "taskArn": task_arn,
            "name": c["name"],
            "image": c["image"],
            "lastStatus": "PENDING",
            "networkBindings": [],
            "networkInterfaces": [],
            "healthStatus": "UNKNOWN",
            "cpu": str(c.get("cpu", 0)),
        }
        if c.get("memory") is not None:
            container["memory"] = str(c["memory"])
        if c.get("memoryReservation") is not None:
            container["memoryReservation"] = str(c["memoryReservation"])
        containers.append(container)
    doc: dict[str, Any] = {
        "taskArn": task_arn,
        "clusterArn": cluster_arn,
        "taskDefinitionArn": task_def["taskDefinitionArn"],
        "overrides": {
            "containerOverrides": overrides.get("containerOverrides")
            or [{"name": c["name"]} for c in containers_spec],
            "inferenceAcceleratorOverrides": [],
            **{
                k: overrides[k]
                for k in ("cpu", "memory", "taskRoleArn", "executionRoleArn")
                if k in overrides
            },
        },
        "lastStatus": "PROVISIONING" if awsvpc else "PENDING",
        "desiredStatus": "RUNNING",
        "containers": containers,
        "version": 1,
        "createdAt": created_at,
        "group": group,
        "launchType": launch_type,
        "attachments": [],
        "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
        "availabilityZone": f"{scope.region}a",
        "healthStatus": "UNKNOWN",
        "enableExecuteCommand": False,
    }
    if cpu is not None:
        doc["cpu"] = str(cpu)
    if memory is not None:
        doc["memory"] = str(memory)
    if started_by:
        doc["startedBy"] = started_by
    if capacity_provider:
        doc["capacityProviderName"] = capacity_provider
    if launch_type == "FARGATE":
        doc["platformVersion"] = FARGATE_PLATFORM_VERSION
        doc["platformFamily"] = "Linux"
        doc["ephemeralStorage"] = {"sizeInGiB": 20}
    subnets = (network_configuration or {}).get("awsvpcConfiguration", {}).get("subnets", [])
    if awsvpc:
        doc["attachments"] = [
            {
                "id": str(uuid.uuid4()),
                "type": "ElasticNetworkInterface",
                "status": "PRECREATED",
                "details": [
                    {"name": "subnetId", "value": subnets[0] if subnets else "subnet-local"}
                ],
            }
        ]
    spec = {
        "taskArn": task_arn,
        "taskId": task_id,
        "clusterArn": cluster_arn,
        "family": task_def["family"],
        "revision": task_def["revision"],
        "networkMode": task_def.get("networkMode", "bridge"),
        "launchType": launch_type,
        "containers": containers_spec,
        "volumes": task_def.get("volumes", []),
        **({"cpu": int(cpu)} if cpu is not None else {}),
        **({"memory": int(memory)} if memory is not None else {}),
        **{k: task_def[k] for k in ("pidMode", "ipcMode") if k in task_def},
    }
    return doc, spec


def task_health(doc: dict[str, Any], spec: dict[str, Any]) -> str:
    """ECS's rule over essential containers that have a health check; UNKNOWN when none has."""
    checked = {
        c["name"] for c in spec["containers"] if c.get("essential", True) and c.get("healthCheck")
    }
    statuses = [c.get("healthStatus", "UNKNOWN") for c in doc["containers"] if c["name"] in checked]
    if not statuses:
        return "UNKNOWN"
    if "UNHEALTHY" in statuses:
        return "UNHEALTHY"
    if "UNKNOWN" in statuses:
        return "UNKNOWN"
    return "HEALTHY"


_CONTAINER_FIELDS = (
    "runtimeId",
    "exitCode",
    "reason",
    "networkBindings",
    "networkInterfaces",
    "healthStatus",
    "imageDigest",
)
_TIMESTAMPS = ("pullStartedAt", "pullStoppedAt", "connectivityAt", "executionStoppedAt")


def apply_report(
    doc: dict[str, Any], spec: dict[str, Any], report: dict[str, Any], at: float
) -> bool:
    """Fold an agent's report into the task doc; True when anything changed.

    The first stop reason wins (a user's StopTask reason is not replaced by the agent's), and
    lastStatus never moves backwards.
    """
    before = copy.deepcopy(doc)
    status = report.get("lastStatus")
    if status and RANK[status] > RANK[doc["lastStatus"]]:
        doc["lastStatus"] = status
        if status == "RUNNING" and "startedAt" not in doc:
            doc["startedAt"] = at
        if RANK[status] >= RANK["DEACTIVATING"]:
            # The task is on its way out: ECS sets desiredStatus STOPPED at once, which lets a
            # service start the replacement while the old containers are still torn down.
            doc.setdefault("stoppingAt", at)
            doc["desiredStatus"] = "STOPPED"
        if status == "STOPPED":
            doc["stoppedAt"] = at
            doc.setdefault("executionStoppedAt", report.get("executionStoppedAt") or at)
            doc["desiredStatus"] = "STOPPED"
    for key in _TIMESTAMPS:
        if key in report and key not in doc:
            doc[key] = report[key]
    if report.get("stoppedReason") and "stoppedReason" not in doc:
        doc["stoppedReason"] = report["stoppedReason"]
        if report.get("stopCode"):
            doc["stopCode"] = report["stopCode"]
    if report.get("connectivity"):
        doc["connectivity"] = report["connectivity"]
    by_name = {c["name"]: c for c in doc["containers"]}
    for change in report.get("containers", []):
        c = by_name.get(change["name"])
        if c is None:
            continue
        new = change.get("lastStatus")
        if new and CONTAINER_RANK[new] > CONTAINER_RANK[c["lastStatus"]]:
            c["lastStatus"] = new
        for key in _CONTAINER_FIELDS:
            if key in change and change[key] is not None:
                c[key] = change[key]
    if "attachment" in report and doc["attachments"]:
        att = doc["attachments"][0]
        att["status"] = report["attachment"]["status"]
        details = {d["name"]: d for d in att["details"]}
        for name, value in report["attachment"].get("details", {}).items():
            details[name] = {"name": name, "value": value}
        att["details"] = list(details.values())
        ip = details.get("privateIPv4Address", {}).get("value")
        if ip:
            for c in doc["containers"]:
                c["networkInterfaces"] = [{"attachmentId": att["id"], "privateIpv4Address": ip}]
    if doc["lastStatus"] == "STOPPED":
        for c in doc["containers"]:
            c["lastStatus"] = "STOPPED"
    doc["healthStatus"] = task_health(doc, spec)
    if doc != before:
        doc["version"] = before["version"] + 1
        return True
    return False
