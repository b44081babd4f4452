"""State changes agents submit: ECS's SubmitTaskStateChange and SubmitContainerStateChange, plus
Galley's one extension for what those shapes cannot carry.

    request (ECS shape) --translate (pure)--> agent report --tasks.apply_agent_report--> task doc

The translations below are pure: they check a request against the task it names and return the
report `task_docs.apply_report` folds in (lastStatus only moves forward, the first stop reason
wins). The handlers at the bottom do the I/O: find the task, check that the caller may report
for it, apply.

Who may report for a task. Every caller signs with the account's key pair, so SigV4 says "a
Galley client", not "the agent of instance X". What we can keep safe:
- A task of the built-in FARGATE capacity is reported in-process by its own agent; no API
  client may change it.
- A task placed on a container instance may be reported through the API. `galley agent` adds
  `containerInstance` (its own ARN) to every Submit* request; when a request carries it, the
  task must be assigned to that instance, so an agent never changes another instance's task.
  The member is not in ECS's model: AWS's front end, and Galley's, ignore unknown members, so
  the request stays valid ECS. Without it (Amazon's agent, boto3) any authenticated caller is
  trusted, as the shared key pair already trusts it with StopTask.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from galley import arns
from galley.app import FARGATE_AGENT_ID, Galley
from galley.arns import Scope
from galley.control import clusters, tasks
from galley.control.task_docs import CONTAINER_RANK, RANK
from galley.errors import invalid_parameter
from galley.store import schema as s
from galley.store.db import loads

# ECS does not document the acknowledgment's text; agents only check that the call succeeded.
ACKNOWLEDGMENT = "ACK"
ESSENTIAL_EXITED = "Essential container in task exited"
ATTACHMENT_STATUSES = ("PRECREATED", "CREATED", "ATTACHING", "ATTACHED", "DETACHING", "DETACHED",
                       "DELETED", "FAILED")
HEALTH_STATUSES = ("HEALTHY", "UNHEALTHY", "UNKNOWN")
CONNECTIVITY = ("CONNECTED", "DISCONNECTED")
_CONTAINER_MEMBERS = ("runtimeId", "exitCode", "reason", "networkBindings", "imageDigest")
_TIMESTAMPS = ("pullStartedAt", "pullStoppedAt", "executionStoppedAt")


# ---- pure translation ----------------------------------------------------------------------


def stop_code_for(reason: str) -> str:
    """The stopCode ECS gives a task its agent stopped: an essential exit, else a failed start."""
    return "EssentialContainerExited" if reason == ESSENTIAL_EXITED else "TaskFailedToStart"


def epoch_seconds(value: Any, member: str) -> float:
    """A wire timestamp (epoch seconds, or ISO 8601 as the model also allows) as epoch seconds
    with millisecond precision."""
    if isinstance(value, bool):
        raise invalid_parameter(f"{member} must be a timestamp.")
    if isinstance(value, int | float):
        return round(float(value), 3)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise invalid_parameter(f"{member} must be a timestamp.") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp(), 3)
    raise invalid_parameter(f"{member} must be a timestamp.")


def _one_of(value: Any, allowed: Any, member: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid_parameter(f"{member} must be one of [{', '.join(allowed)}], got {value!r}.")
    return str(value)


def _container_names(doc: dict[str, Any]) -> set[str]:
    return {c["name"] for c in doc["containers"]}


def _container_change(change: dict[str, Any], names: set[str], prefix: str) -> dict[str, Any]:
    """One ECS ContainerStateChange (containerName, status, ...) as a report entry; `prefix`
    names where it sits in the request ("containers." or "")."""
    name = change.get("containerName")
    if not name:
        raise invalid_parameter(f"{prefix}containerName must be specified.")
    if name not in names:
        raise invalid_parameter(f"The task has no container named {name}.")
    out: dict[str, Any] = {"name": name}
    if "status" in change:
        out["lastStatus"] = _one_of(change["status"], CONTAINER_RANK, f"{prefix}status")
    for key in _CONTAINER_MEMBERS:
        if key in change:
            out[key] = change[key]
    return out


def task_state_change_report(params: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The report for a SubmitTaskStateChange on the task `doc`.

    `reason` becomes the task's stoppedReason (with the stopCode ECS derives from it) only when
    the status says the task is stopping; managedAgents are accepted and ignored, as Galley runs
    no managed agents (enableExecuteCommand is always false).
    """
    report: dict[str, Any] = {"taskArn": doc["taskArn"]}
    status = params.get("status")
    if status is not None:
        report["lastStatus"] = _one_of(status, RANK, "status")
        if params.get("reason") and RANK[status] >= RANK["DEACTIVATING"]:
            report["stoppedReason"] = params["reason"]
            report["stopCode"] = stop_code_for(params["reason"])
    for key in _TIMESTAMPS:
        if key in params:
            report[key] = epoch_seconds(params[key], key)
    names = _container_names(doc)
    containers = [_container_change(c, names, "containers.")
                  for c in params.get("containers", [])]
    if containers:
        report["containers"] = containers
    for change in params.get("attachments", []):
        report["attachment"] = _attachment_change(change, doc)
    return report


def _attachment_change(change: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """An AttachmentStateChange for the task's network interface (its only attachment)."""
    ref = str(change.get("attachmentArn", ""))
    attachment_id = ref.rsplit("/", 1)[-1] if arns.is_arn(ref) else ref
    if not doc["attachments"] or doc["attachments"][0]["id"] != attachment_id:
        raise invalid_parameter(f"The task has no attachment {ref}.")
    return {"status": _one_of(change.get("status"), ATTACHMENT_STATUSES, "attachments.status")}


def container_state_change_report(params: dict[str, Any], doc: dict[str, Any]
                                  ) -> dict[str, Any]:
    """The report for a SubmitContainerStateChange on the task `doc`."""
    return {"taskArn": doc["taskArn"],
            "containers": [_container_change(params, _container_names(doc), "")]}


def health_and_network_report(params: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The report for Galley's extension call: container health, task connectivity and the
    awsvpc attachment's status and details, which ECS's Submit* shapes have no members for.

    Nothing else is taken from it, so task and container status move only through Submit*.
    """
    report: dict[str, Any] = {"taskArn": doc["taskArn"]}
    names = _container_names(doc)
    containers = []
    for change in _list(params.get("containers", []), "containers"):
        name = change.get("containerName") if isinstance(change, dict) else None
        if name not in names:
            raise invalid_parameter(f"The task has no container named {name}.")
        containers.append({"name": name, "healthStatus": _one_of(
            change.get("healthStatus"), HEALTH_STATUSES, "containers.healthStatus")})
    if containers:
        report["containers"] = containers
    if "connectivity" in params:
        report["connectivity"] = _one_of(params["connectivity"], CONNECTIVITY, "connectivity")
    if "connectivityAt" in params:
        report["connectivityAt"] = epoch_seconds(params["connectivityAt"], "connectivityAt")
    if "attachment" in params:
        attachment = params["attachment"]
        if not isinstance(attachment, dict):
            raise invalid_parameter("attachment must be an object.")
        out: dict[str, Any] = {"status": _one_of(attachment.get("status"), ATTACHMENT_STATUSES,
                                                 "attachment.status")}
        details = attachment.get("details", {})
        if not isinstance(details, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in details.items()):
            raise invalid_parameter("attachment.details must map names to strings.")
        if details:
            out["details"] = details
        report["attachment"] = out
    return report


def _list(value: Any, member: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_parameter(f"{member} must be a list.")
    return value


# ---- the handlers ----------------------------------------------------------------------------


def _task_to_report(app: Galley, scope: Scope, params: dict[str, Any], *,
                    instance: str | None) -> dict[str, Any]:
    """The task doc a state change names, once the caller may report for it (module docstring).

    `instance` is the container instance the caller says it is, as a name-or-ARN, or None.
    """
    if instance is not None and not isinstance(instance, str):
        raise invalid_parameter("containerInstance must be a string.")
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        ref = params.get("task")
        if not ref:
            raise invalid_parameter("task must be specified.")
        row = conn.execute(select(s.tasks.c.doc, s.tasks.c.agent_id).where(
            s.tasks.c.arn == tasks.task_arn_for(scope, cluster, ref),
            s.tasks.c.cluster_arn == cluster["clusterArn"])).first()
    if row is None:
        raise invalid_parameter("The referenced task was not found.")
    doc: dict[str, Any] = loads(row.doc)
    if row.agent_id == FARGATE_AGENT_ID or "containerInstanceArn" not in doc:
        raise invalid_parameter("The task does not run on a container instance; Galley's "
                                "built-in FARGATE capacity reports its state itself.")
    if instance is not None:
        if row.agent_id != scope.instance_arn_for(cluster["clusterName"], instance):
            raise invalid_parameter("The task is not assigned to this container instance.")
    return doc


def submit_task_state_change(app: Galley, scope: Scope, params: dict[str, Any]
                             ) -> dict[str, Any]:
    """SubmitTaskStateChange: a task's status, its containers, pull and execution times."""
    doc = _task_to_report(app, scope, params, instance=params.get("containerInstance"))
    tasks.apply_agent_report(app, task_state_change_report(params, doc))
    return {"acknowledgment": ACKNOWLEDGMENT}


def submit_container_state_change(app: Galley, scope: Scope, params: dict[str, Any]
                                  ) -> dict[str, Any]:
    """SubmitContainerStateChange: one container's status, exit code and bindings."""
    doc = _task_to_report(app, scope, params, instance=params.get("containerInstance"))
    tasks.apply_agent_report(app, container_state_change_report(params, doc))
    return {"acknowledgment": ACKNOWLEDGMENT}


def submit_health_and_network(app: Galley, scope: Scope, params: dict[str, Any]
                              ) -> dict[str, Any]:
    """`GalleyAgent_v1.SubmitTaskHealthAndNetwork` {containerInstanceArn, taskArn, containers
    [{containerName, healthStatus}], connectivity, connectivityAt, attachment{status, details}}.
    """
    task_arn = params["taskArn"]
    parsed = arns.parse(task_arn)
    if parsed is None or parsed[2].count("/") != 2:
        raise invalid_parameter("taskArn must be a task ARN.")
    doc = _task_to_report(app, scope, {"cluster": parsed[2].split("/")[1], "task": task_arn},
                          instance=params["containerInstanceArn"])
    tasks.apply_agent_report(app, health_and_network_report(params, doc))
    return {}
