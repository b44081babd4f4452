"""Container instances: hosts running `galley agent`, registered into a cluster.

Registration, describe/list, state changes and deregistration, plus the EC2/EXTERNAL placer
RunTask uses. An instance's remaining resources and task counts are derived from its tasks.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters, fleet, tags, tasks
from galley.control.common import describe_each, now, paginate, with_token
from galley.errors import ApiError, invalid_parameter
from galley.scheduler import query as query_language
from galley.scheduler.placement import Candidate, place_tasks
from galley.scheduler.resources import (
    DEFAULT_RESERVED_PORTS,
    Capacity,
    remaining_resources,
    task_need,
)
from galley.store import schema as s
from galley.store.db import dumps, loads

INST = s.container_instances
AGENT_VERSION = "1.0.0-galley"


spec_need_doc = fleet.spec_need_doc


def _capacities(conn: Connection, rows: list[Any]) -> dict[str, tuple[Capacity, int, int]]:
    """instance ARN -> (remaining capacity, running count, pending count)."""
    return {arn: (u.capacity, u.running, u.pending) for arn, u in fleet.usage(conn, rows).items()}


def _present(row: Any, usage: tuple[Capacity, int, int]) -> dict[str, Any]:
    doc = loads(row.doc)
    cap, running, pending = usage
    doc.update(status=row.status, agentConnected=bool(row.agent_connected),
               remainingResources=remaining_resources(cap), runningTasksCount=running,
               pendingTasksCount=pending)
    return doc


def _attributes(params: dict[str, Any]) -> list[dict[str, Any]]:
    attrs = {a["name"]: a for a in params.get("attributes", [])}
    attrs.setdefault("ecs.os-type", {"name": "ecs.os-type", "value": "linux"})
    return list(attrs.values())


def register_container_instance(app: Galley, scope: Scope, params: dict[str, Any]
                                ) -> dict[str, Any]:
    identity = {}
    if params.get("instanceIdentityDocument"):
        try:
            identity = json.loads(params["instanceIdentityDocument"])
        except ValueError:
            raise invalid_parameter("instanceIdentityDocument is not valid JSON.") from None
    resources = params.get("totalResources", [])
    if any("name" not in r for r in resources):
        raise invalid_parameter("Each totalResources entry needs a name.")
    names = {r["name"] for r in resources}
    if not {"CPU", "MEMORY"} <= names:
        raise invalid_parameter("totalResources must include CPU and MEMORY.")
    if "PORTS" not in names:
        resources = [*resources, {"name": "PORTS", "type": "STRINGSET",
                                  "stringSetValue": [str(p) for p in DEFAULT_RESERVED_PORTS]}]
    tag_list = params.get("tags", [])
    tags.validate(tag_list)
    at = now()
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        arn = params.get("containerInstanceArn")
        row = conn.execute(select(INST).where(INST.c.arn == arn)).first() if arn else None
        if row is not None and row.cluster_arn != cluster["clusterArn"]:
            raise invalid_parameter("The container instance belongs to another cluster.")
        arn = str(row.arn) if row is not None else \
            scope.container_instance_arn(cluster["clusterName"], arns.new_id())
        ec2_id = identity.get("instanceId") or (loads(row.doc)["ec2InstanceId"] if row else
                                                "i-" + arns.new_id()[:17])
        doc = {
            "containerInstanceArn": arn,
            "ec2InstanceId": ec2_id,
            "version": (loads(row.doc)["version"] + 1) if row else 1,
            "versionInfo": params.get("versionInfo", {"agentVersion": AGENT_VERSION}),
            "registeredResources": [{"doubleValue": 0.0, "longValue": 0, "integerValue": 0,
                                     **r} for r in resources],
            "attributes": _attributes(params),
            "registeredAt": loads(row.doc)["registeredAt"] if row else at,
            "attachments": [],
            "tags": tag_list,
        }
        values = {"status": "ACTIVE", "agent_connected": 1, "last_seen": at, "doc": dumps(doc)}
        if row is None:
            conn.execute(insert(INST).values(arn=arn, cluster_arn=cluster["clusterArn"],
                                          ec2_instance_id=ec2_id, registered_at=at, **values))
        else:
            conn.execute(update(INST).where(INST.c.arn == arn).values(**values))
        tags.put(conn, arn, tag_list)
        new_row = conn.execute(select(INST).where(INST.c.arn == arn)).one()
        return {"containerInstance": _present(new_row, _capacities(conn, [new_row])[arn])}


def describe_container_instances(app: Galley, scope: Scope, params: dict[str, Any]
                                 ) -> dict[str, Any]:
    refs = params["containerInstances"]
    if len(refs) > 100:
        raise invalid_parameter("At most 100 container instances can be described at once.")
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        wanted = [scope.instance_arn_for(cluster["clusterName"], r) for r in refs]
        rows = {r.arn: r for r in conn.execute(select(INST).where(
            INST.c.arn.in_(wanted), INST.c.cluster_arn == cluster["clusterArn"]))}
        usage = _capacities(conn, list(rows.values()))
        with_tags = "TAGS" in params.get("include", [])

        def present(arn: str, row: Any) -> dict[str, Any]:
            doc = _present(row, usage[arn])
            return {**doc, "tags": tags.get(conn, arn)} if with_tags else doc

        found, failures = describe_each(wanted, rows, present)
    return {"containerInstances": found, "failures": failures}


def list_container_instances(app: Galley, scope: Scope, params: dict[str, Any]
                             ) -> dict[str, Any]:
    try:
        expression = query_language.parse(params["filter"]) if params.get("filter") else None
    except query_language.QueryError as e:
        raise invalid_parameter(str(e)) from None
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        query = select(INST).where(INST.c.cluster_arn == cluster["clusterArn"])
        if params.get("status"):
            query = query.where(INST.c.status == params["status"])
        else:
            query = query.where(INST.c.status != "INACTIVE")
        rows = conn.execute(query.order_by(INST.c.registered_at, INST.c.arn)).all()
        if expression is not None:
            subjects = fleet.subjects(conn, rows)
            rows = [r for r in rows if expression.matches(subjects[r.arn])]
        arn_list = [r.arn for r in rows]
    page, token = paginate(arn_list, params)
    return with_token({"containerInstanceArns": page}, token)


def _live_tasks(conn: Connection, arn: str) -> list[Any]:
    return list(conn.execute(select(s.tasks.c.arn, s.tasks.c.doc).where(
        s.tasks.c.agent_id == arn, s.tasks.c.last_status != "STOPPED")).all())


def deregister_container_instance(app: Galley, scope: Scope, params: dict[str, Any]
                                  ) -> dict[str, Any]:
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        arn = scope.instance_arn_for(cluster["clusterName"], params["containerInstance"])
        row = conn.execute(select(INST).where(INST.c.arn == arn,
                                           INST.c.cluster_arn == cluster["clusterArn"])).first()
        if row is None:
            raise invalid_parameter("The referenced container instance was not found.")
        live = _live_tasks(conn, arn)
        if live and not params.get("force"):
            raise invalid_parameter(
                "Found running tasks on the instance. Set force to true to deregister it.")
        at = now()
        for task in live:
            tasks.request_stop(conn, loads(task.doc),
                               "Container instance deregistration forced by user",
                               "UserInitiated", at)
        conn.execute(update(INST).where(INST.c.arn == arn).values(status="INACTIVE",
                                                            agent_connected=0))
        new_row = conn.execute(select(INST).where(INST.c.arn == arn)).one()
        result = {"containerInstance": _present(new_row, _capacities(conn, [new_row])[arn])}
    app.store.desired_changed.bump()
    return result


def update_container_instances_state(app: Galley, scope: Scope, params: dict[str, Any]
                                     ) -> dict[str, Any]:
    refs = params["containerInstances"]
    if len(refs) > 10:
        raise invalid_parameter("At most 10 container instances can be updated at once.")
    status = params["status"]
    if status not in ("ACTIVE", "DRAINING"):
        raise invalid_parameter("Container instances can only be set to ACTIVE or DRAINING.")
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        wanted = [scope.instance_arn_for(cluster["clusterName"], r) for r in refs]
        found, failures = [], []
        for arn in wanted:
            row = conn.execute(select(INST).where(INST.c.arn == arn,
                                               INST.c.cluster_arn == cluster["clusterArn"])).first()
            if row is None or row.status == "INACTIVE":
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            conn.execute(update(INST).where(INST.c.arn == arn).values(status=status))
            row = conn.execute(select(INST).where(INST.c.arn == arn)).one()
            found.append(_present(row, _capacities(conn, [row])[arn]))
    app.store.desired_changed.bump()
    return {"containerInstances": found, "failures": failures}


# ---- placement for EC2 / EXTERNAL ------------------------------------------------------------

def place(conn: Connection, scope: Scope, cluster: dict[str, Any], task_def: dict[str, Any],
          count: int, params: dict[str, Any], launch_type: str
          ) -> tuple[list[str | None], list[dict[str, Any]]]:
    """Instance ARNs for `count` tasks (fewer when they do not fit) and ECS failure entries."""
    rows = conn.execute(select(INST).where(INST.c.cluster_arn == cluster["clusterArn"],
                                           INST.c.status != "INACTIVE")).all()
    if not rows:
        raise invalid_parameter("No Container Instances were found in your cluster.")
    usage = fleet.usage(conn, rows)
    by_arn = {r.arn: r for r in rows}
    candidates = fleet.candidates(rows, usage)
    queries: dict[str, query_language.Query] = {}

    def member_of(expression: str, candidate: Candidate) -> bool:
        if expression not in queries:
            queries[expression] = query_language.parse(expression)
        # As placement goes, the tasks placed so far count (as running) on their instances.
        subject = replace(fleet.subject(by_arn[candidate.arn], usage[candidate.arn]),
                          task_groups=frozenset(g for g, n in candidate.groups.items() if n > 0),
                          running_tasks_count=sum(candidate.groups.values()))
        return queries[expression].matches(subject)

    constraints = [*params.get("placementConstraints", []),
                   *task_def.get("placementConstraints", [])]
    try:
        placement = place_tasks(candidates, task_need(task_def, params.get("overrides")), count,
                                params.get("group", f"family:{task_def['family']}"),
                                params.get("placementStrategy", []), constraints,
                                member_of=member_of, rng=random.Random())
    except ValueError as e:  # QueryError included: a bad expression or strategy
        raise invalid_parameter(str(e)) from None
    return list(placement.chosen), placement.failures


def _count_instances(conn: Connection, cluster_arns: list[str]) -> list[tuple[str, str, int]]:
    rows = conn.execute(select(INST.c.cluster_arn).where(INST.c.cluster_arn.in_(cluster_arns),
                                                      INST.c.status != "INACTIVE"))
    counts: dict[str, int] = {}
    for (arn,) in rows:
        counts[arn] = counts.get(arn, 0) + 1
    return [(arn, "instances", n) for arn, n in counts.items()]


def _refuse_delete(conn: Connection, cluster_arn: str) -> ApiError | None:
    if conn.execute(select(INST.c.arn).where(INST.c.cluster_arn == cluster_arn,
                                          INST.c.status != "INACTIVE").limit(1)).first():
        return ApiError("ClusterContainsContainerInstancesException",
                        "The Cluster cannot be deleted while Container Instances are active or "
                        "draining.")
    return None


def _list_filter(conn: Connection, scope: Scope, cluster: dict[str, Any], ref: str) -> Any:
    return s.tasks.c.agent_id == scope.instance_arn_for(cluster["clusterName"], ref)


tasks.PLACERS["EC2"] = place
tasks.PLACERS["EXTERNAL"] = place
tasks.LIST_FILTERS["containerInstance"] = _list_filter
clusters.COUNTERS.append(_count_instances)
clusters.DELETE_CHECKS.append(_refuse_delete)
tags.TAGGABLE["container-instance"] = INST
