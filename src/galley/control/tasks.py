"""Tasks: RunTask, StopTask, DescribeTasks, ListTasks, and the agent-facing side.

Handlers only record desired state; agents move actual state and report it back through
`apply_agent_report`, which is where lastStatus, exit codes and timestamps come from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from galley import arns
from galley.app import FARGATE_AGENT_ID, Galley
from galley.arns import Scope
from galley.control import clusters, tags, taskdefs
from galley.control.common import describe_each, now, paginate_query, with_token
from galley.control.task_docs import apply_report, new_task
from galley.control.taskdef_rules import check_launch_type
from galley.errors import ApiError, invalid_parameter
from galley.jsondoc import RawJson
from galley.scheduler import capacity
from galley.store import schema as s
from galley.store.db import dumps, loads

T = s.tasks
LAUNCH_TYPES_WITH_FARGATE_CAPACITY = {"FARGATE"}

# Placement for EC2/EXTERNAL arrives with container instances: a function
# (conn, scope, cluster_doc, task_def, count, params, launch_type) -> (agent ids, failures).
Placer = Callable[..., tuple[list[str | None], list[dict[str, Any]]]]
PLACERS: dict[str, Placer] = {}


def resolve_launch_type(cluster: dict[str, Any], params: dict[str, Any]
                        ) -> tuple[str, list[dict[str, Any]]]:
    """(launchType, capacity provider strategy) by ECS's precedence: the request's launchType,
    else its strategy, else the cluster's default strategy, else EC2."""
    strategy = params.get("capacityProviderStrategy")
    if params.get("launchType") and strategy:
        raise invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. "
            "Remove one and try again."
        )
    if params.get("launchType"):
        return params["launchType"], []
    default = not strategy
    strategy = strategy or cluster.get("defaultCapacityProviderStrategy") or []
    if not strategy:
        return "EC2", []
    try:
        capacity.check_strategy(strategy, cluster.get("capacityProviders", []), default=default)
    except capacity.StrategyError as e:
        raise invalid_parameter(str(e)) from None
    # Only the built-in FARGATE providers can be associated with a cluster.
    return "FARGATE", capacity.normalized(strategy)


def _check_network(task_def: dict[str, Any], params: dict[str, Any]) -> None:
    mode = task_def.get("networkMode", "bridge")
    config = params.get("networkConfiguration")
    if mode == "awsvpc":
        if not config or "awsvpcConfiguration" not in config:
            raise invalid_parameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        if not config["awsvpcConfiguration"].get("subnets"):
            raise invalid_parameter("subnets can not be empty.")
    elif config:
        raise invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task definition."
        )


def _check_overrides(task_def: dict[str, Any], overrides: dict[str, Any]) -> None:
    names = {c["name"] for c in task_def["containerDefinitions"]}
    for o in overrides.get("containerOverrides", []):
        if o.get("name") not in names:
            raise invalid_parameter(
                f"Override for container named {o.get('name')} is not a container in the "
                "TaskDefinition."
            )


def _request_hash(params: dict[str, Any]) -> str:
    body = {k: v for k, v in params.items() if k != "clientToken"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_launch_request(params: dict[str, Any], action: str) -> list[dict[str, str]]:
    """Checks RunTask and StartTask share before touching the store; returns the tags."""
    if len(params.get("startedBy", "")) > 128:
        raise invalid_parameter("startedBy must be at most 128 characters.")
    if params.get("propagateTags") == "SERVICE":
        raise invalid_parameter(
            f"The value SERVICE for propagateTags is not supported for {action}.")
    tag_list = list(params.get("tags", []))
    tags.validate(tag_list)
    return tag_list


def check_task_fits_request(task_def: dict[str, Any], params: dict[str, Any]) -> None:
    _check_network(task_def, params)
    _check_overrides(task_def, params.get("overrides", {}))


def task_tags(conn: Connection, cluster: dict[str, Any], task_def: dict[str, Any],
              params: dict[str, Any], tag_list: list[dict[str, str]]) -> list[dict[str, str]]:
    """The request's tags plus propagated and ECS-managed ones."""
    if params.get("propagateTags") == "TASK_DEFINITION":
        tag_list = tags.get(conn, task_def["taskDefinitionArn"]) + tag_list
    if params.get("enableECSManagedTags"):
        tag_list = [*tag_list, {"key": "aws:ecs:clusterName", "value": cluster["clusterName"]}]
    return tag_list


def run_task(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    count = params.get("count", 1)
    if not 1 <= count <= 10:
        raise invalid_parameter("count must be between 1 and 10.")
    token = params.get("clientToken")
    if token is not None and len(token) > 64:
        raise invalid_parameter("clientToken must be at most 64 characters.")
    tag_list = check_launch_request(params, "RunTask")
    overrides = params.get("overrides", {})
    with app.store.write() as conn:
        if token is not None:
            replay = _replay(conn, token, params)
            if replay is not None:
                return replay
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        task_def = taskdefs.get_for_launch(conn, scope, params["taskDefinition"])
        launch_type, strategy = resolve_launch_type(cluster, params)
        check_launch_type(task_def, launch_type)
        check_task_fits_request(task_def, params)
        tag_list = task_tags(conn, cluster, task_def, params, tag_list)
        shares: dict[str | None, int] = {None: count}
        if strategy:
            shares = {name: n for name, n in capacity.split(strategy, count).items()}
        docs, failures = [], []
        for provider, n in shares.items():
            placed, missed = launch_tasks(
                conn, scope, cluster, task_def, count=n, launch_type=launch_type,
                provider=provider, params=params, overrides=overrides,
                group=params.get("group") or f"family:{task_def['family']}",
                started_by=params.get("startedBy"),
                network_configuration=params.get("networkConfiguration"), tag_list=tag_list)
            docs += placed
            failures += missed
        created = docs[0]["createdAt"] if docs else now()
        result = {"tasks": docs, "failures": failures}
        if token is not None:
            conn.execute(
                insert(s.client_tokens).values(
                    token=token,
                    request_hash=_request_hash(params),
                    created_at=created,
                    response=dumps([d["taskArn"] for d in docs]),
                )
            )
    app.store.desired_changed.bump()
    return result


def launch_tasks(conn: Connection, scope: Scope, cluster: dict[str, Any],
                 task_def: dict[str, Any], *, count: int, launch_type: str,
                 provider: str | None, params: dict[str, Any], overrides: dict[str, Any],
                 group: str, started_by: str | None,
                 network_configuration: dict[str, Any] | None, tag_list: list[dict[str, str]],
                 service_name: str | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Place and record `count` new tasks (RunTask and services); (task docs, failures)."""
    if launch_type in LAUNCH_TYPES_WITH_FARGATE_CAPACITY:
        agent_ids: list[str | None] = [FARGATE_AGENT_ID] * count
        failures: list[dict[str, Any]] = []
    elif launch_type in PLACERS:
        agent_ids, failures = PLACERS[launch_type](
            conn, scope, cluster, task_def, count, {**params, "group": group}, launch_type)
    else:
        raise invalid_parameter("No Container Instances were found in your cluster.")
    created = now()
    docs, rows = [], []
    for agent_id in agent_ids:
        doc, spec = new_task(
            scope, cluster_arn=cluster["clusterArn"], cluster_name=cluster["clusterName"],
            task_def=task_def, launch_type=launch_type, overrides=overrides, group=group,
            started_by=started_by, network_configuration=network_configuration,
            capacity_provider=provider, created_at=created)
        if launch_type not in LAUNCH_TYPES_WITH_FARGATE_CAPACITY:
            doc["containerInstanceArn"] = agent_id
        rows.append(task_row(doc, spec, agent_id, service_name))
        docs.append({**doc, "tags": tag_list})
    if rows:  # one executemany: a service launching 1,000 tasks is one statement, not 1,000
        conn.execute(insert(T), rows)
    for doc in docs:
        tags.put(conn, doc["taskArn"], tag_list)
    return docs, failures


def task_row(doc: dict[str, Any], spec: dict[str, Any], agent_id: str | None,
             service_name: str | None = None) -> dict[str, Any]:
    """The tasks-table row of a new task."""
    return {"arn": doc["taskArn"], "cluster_arn": doc["clusterArn"], "family": spec["family"],
            "started_by": doc.get("startedBy"), "service_name": service_name,
            "launch_type": doc["launchType"], "agent_id": agent_id,
            "desired_status": doc["desiredStatus"], "last_status": doc["lastStatus"],
            "created_at": doc["createdAt"], "version": doc["version"], "doc": dumps(doc),
            "spec": dumps(spec)}


def insert_task(
    conn: Connection,
    doc: dict[str, Any],
    spec: dict[str, Any],
    agent_id: str | None,
    service_name: str | None = None,
) -> None:
    # Values as parameters, not in the statement: the compiled statement is then cached
    # (insert().values(...) builds and compiles a new statement per call).
    conn.execute(insert(T), [task_row(doc, spec, agent_id, service_name)])


def _replay(conn: Connection, token: str, params: dict[str, Any]) -> dict[str, Any] | None:
    row = conn.execute(select(s.client_tokens).where(s.client_tokens.c.token == token)).first()
    if row is None:
        return None
    if row.request_hash != _request_hash(params):
        raise ApiError(
            "ConflictException", "The clientToken was already used with different parameters."
        )
    docs = [
        loads(r.doc) for r in conn.execute(select(T.c.doc).where(T.c.arn.in_(loads(row.response))))
    ]
    return {"tasks": docs, "failures": []}


def task_arn_for(scope: Scope, cluster: dict[str, Any], ref: str) -> str:
    """Task ARN for a task id, a short ARN (task/id) or a long one (task/cluster/id)."""
    if arns.is_arn(ref):
        parsed = arns.parse(ref)
        if parsed and parsed[2].count("/") == 1:
            return scope.task_arn(cluster["clusterName"], parsed[2].split("/")[1])
        return ref
    return scope.task_arn(cluster["clusterName"], ref)


# The values are parameters of one statement compiled once per set of columns (an
# update().values(...) per call costs more than the SQL itself: every agent report saves a task).
_SAVE = update(T).where(T.c.arn == bindparam("task_arn"))


def save_task(conn: Connection, doc: dict[str, Any], **columns: Any) -> None:
    conn.execute(_SAVE, {"task_arn": doc["taskArn"], "desired_status": doc["desiredStatus"],
                         "last_status": doc["lastStatus"], "version": doc["version"],
                         "doc": dumps(doc), **columns})


def request_stop(
    conn: Connection, doc: dict[str, Any], reason: str, stop_code: str, at: float
) -> bool:
    """Mark a task to stop (desiredStatus STOPPED) with ECS's first-reason-wins rule."""
    if doc["desiredStatus"] == "STOPPED":
        return False
    doc["desiredStatus"] = "STOPPED"
    doc.setdefault("stoppingAt", at)
    if "stoppedReason" not in doc:
        doc["stoppedReason"] = reason
        doc["stopCode"] = stop_code
    doc["version"] += 1
    save_task(conn, doc)
    return True


def stop_task(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    reason = params.get("reason") or "Task stopped by user"
    if len(reason) > 255:
        raise invalid_parameter("reason must be at most 255 characters.")
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        arn = task_arn_for(scope, cluster, params["task"])
        row = conn.execute(
            select(T.c.doc).where(T.c.arn == arn, T.c.cluster_arn == cluster["clusterArn"])
        ).first()
        if row is None:
            raise invalid_parameter("The referenced task was not found.")
        doc = loads(row.doc)
        changed = request_stop(conn, doc, reason, "UserInitiated", now())
        if changed:
            tags.remove(conn, arn)
    if changed:
        app.store.desired_changed.bump()
    return {"task": doc}


def describe_tasks(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params["tasks"]
    if not refs:
        raise invalid_parameter("Tasks cannot be empty.")
    if len(refs) > 100:
        raise invalid_parameter("At most 100 tasks can be described at once.")
    with_tags = "TAGS" in params.get("include", [])
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        wanted = [task_arn_for(scope, cluster, r) for r in refs]
        found = {
            r.arn: r.doc
            for r in conn.execute(
                select(T.c.arn, T.c.doc).where(
                    T.c.arn.in_(wanted), T.c.cluster_arn == cluster["clusterArn"]
                )
            )
        }

        def answer(arn: str, stored: str) -> Any:
            if not with_tags:  # the stored document is the answer: splice it in unparsed
                return RawJson(stored)
            return {**loads(stored), "tags": tags.get(conn, arn)}

        tasks, failures = describe_each(wanted, found, answer)
    return {"tasks": tasks, "failures": failures}


# Later modules resolve filters that need other tables: name -> fn(conn, scope, cluster, value)
# returning a SQLAlchemy condition on the tasks table.
LIST_FILTERS: dict[str, Callable[..., Any]] = {}


def list_tasks(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    desired = params.get("desiredStatus", "RUNNING")
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        query = select(T.c.arn).where(
            T.c.cluster_arn == cluster["clusterArn"], T.c.desired_status == desired
        )
        if params.get("family"):
            query = query.where(T.c.family == params["family"])
        if params.get("startedBy"):
            query = query.where(T.c.started_by == params["startedBy"])
        if params.get("launchType"):
            query = query.where(T.c.launch_type == params["launchType"])
        for name, condition in LIST_FILTERS.items():
            if params.get(name):
                query = query.where(condition(conn, scope, cluster, params[name]))
        rows, token = paginate_query(conn, query.order_by(T.c.created_at, T.c.arn), params)
    return with_token({"taskArns": [r.arn for r in rows]}, token)


# ---- the agent-facing side ------------------------------------------------------------------


def desired_for_agent(app: Galley, agent_id: str) -> list[dict[str, Any]]:
    """Every task this agent must run or tear down: those not yet STOPPED."""
    with app.store.read() as conn:
        rows = conn.execute(
            select(T.c.arn, T.c.desired_status, T.c.spec).where(
                T.c.agent_id == agent_id, T.c.last_status != "STOPPED"
            )
        )
        return [
            {"taskArn": r.arn, "desiredStatus": r.desired_status, "spec": loads(r.spec)}
            for r in rows
        ]


def apply_agent_report(app: Galley, report: dict[str, Any]) -> None:
    """Record what an agent saw happen to a task (states, exit codes, bindings, health)."""
    at = now()
    with app.store.write() as conn:
        row = conn.execute(select(T.c.doc, T.c.spec).where(T.c.arn == report["taskArn"])).first()
        if row is None:
            return
        doc = loads(row.doc)
        previous = doc["lastStatus"]
        changed = apply_report(doc, loads(row.spec), report, at)
        if changed:
            columns: dict[str, Any] = {"stopped_at": doc.get("stoppedAt")}
            if doc["healthStatus"] == "HEALTHY":
                columns["ever_healthy"] = 1
            save_task(conn, doc, **columns)
            for hook in REPORT_HOOKS:
                hook(conn, doc, previous)
    if changed:
        app.store.actual_changed.bump()


# Later modules react to task changes in the same transaction:
# fn(conn, task_doc, previous_last_status).
REPORT_HOOKS: list[Callable[[Connection, dict[str, Any], str], None]] = []


def purge_stopped(app: Galley, older_than: float) -> int:
    """Forget STOPPED tasks whose stop is older than the retention (ECS keeps them >= 1 h)."""
    with app.store.write() as conn:
        arn_list = [
            r.arn
            for r in conn.execute(
                select(T.c.arn).where(T.c.stopped_at.is_not(None), T.c.stopped_at < older_than)
            )
        ]
        if arn_list:
            conn.execute(delete(s.tags).where(s.tags.c.resource_arn.in_(arn_list)))
            conn.execute(delete(T).where(T.c.arn.in_(arn_list)))
    return len(arn_list)


def stop_all_for_cleanup(app: Galley) -> int:
    """Record every unfinished task as STOPPED (used by `galley cleanup`, which removes them)."""
    at = now()
    count = 0
    with app.store.write() as conn:
        for row in conn.execute(select(T.c.doc).where(T.c.last_status != "STOPPED")).all():
            doc = loads(row.doc)
            request_stop(conn, doc, "Task stopped by galley cleanup", "UserInitiated", at)
            doc.update(lastStatus="STOPPED", stoppedAt=at, executionStoppedAt=at)
            for c in doc["containers"]:
                c["lastStatus"] = "STOPPED"
            save_task(conn, doc, stopped_at=at)
            count += 1
    app.store.actual_changed.bump()
    return count
