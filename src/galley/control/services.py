"""Services: CreateService, UpdateService, DeleteService, DescribeServices, ListServices.

Handlers record desired state only (desiredCount, deployments); `controllers/services.py` moves
the tasks. Counts (runningCount, pendingCount, per deployment) are derived from the tasks table.
Keys starting with "_" in a stored service document are the controller's bookkeeping and are
never shown to users.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters, tags, taskdefs, tasks
from galley.control.common import describe_each, now, paginate, with_token
from galley.control.taskdef_rules import check_launch_type
from galley.errors import ApiError, client_error, invalid_parameter, service_not_found
from galley.scheduler import placement
from galley.scheduler import query as query_language
from galley.scheduler.service_step import new_deployment
from galley.store import schema as s
from galley.store.db import dumps, loads

SVC = s.services
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DEPLOYMENT_KEYS = ("networkConfiguration", "taskDefinition", "platformVersion",
                    "capacityProviderStrategy", "loadBalancers", "serviceRegistries")


def new_deployment_id() -> str:
    return "ecs-svc/" + "".join(secrets.choice("0123456789") for _ in range(19))


def service_arn_for(scope: Scope, cluster: dict[str, Any], ref: str) -> str:
    return ref if arns.is_arn(ref) else scope.service_arn(cluster["clusterName"], ref)


def _row(conn: Connection, scope: Scope, cluster: dict[str, Any], ref: str) -> Any:
    return conn.execute(select(SVC).where(SVC.c.arn == service_arn_for(scope, cluster, ref),
                                          SVC.c.cluster_arn == cluster["clusterArn"])).first()


def get_active(conn: Connection, scope: Scope, cluster: dict[str, Any], ref: str
               ) -> dict[str, Any]:
    """The service a call names; ServiceNotFound when missing, ServiceNotActive unless ACTIVE."""
    row = _row(conn, scope, cluster, ref)
    if row is None:
        raise service_not_found()
    if row.status != "ACTIVE":
        raise ApiError("ServiceNotActiveException", "Service was not ACTIVE.")
    return loads(row.doc)


def save(conn: Connection, doc: dict[str, Any]) -> None:
    conn.execute(update(SVC).where(SVC.c.arn == doc["serviceArn"])
                 .values(status=doc["status"], doc=dumps(doc)))


def _counts(conn: Connection, docs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """(deployment id) -> {"RUNNING": n, "PENDING": n} over the services' unfinished tasks."""
    names = {(d["clusterArn"], d["serviceName"]) for d in docs}
    out: dict[str, dict[str, int]] = {}
    if not names:
        return out
    rows = conn.execute(
        select(s.tasks.c.started_by, s.tasks.c.last_status, func.count())
        .where(s.tasks.c.cluster_arn.in_({c for c, _ in names}),
               s.tasks.c.service_name.in_({n for _, n in names}),
               s.tasks.c.last_status != "STOPPED")
        .group_by(s.tasks.c.started_by, s.tasks.c.last_status))
    for started_by, status, n in rows:
        bucket = out.setdefault(started_by or "", {"RUNNING": 0, "PENDING": 0})
        if status == "RUNNING":
            bucket["RUNNING"] += n
        elif status in clusters.PENDING_STATES:
            bucket["PENDING"] += n
    return out


def present(doc: dict[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The service as DescribeServices shows it: counts filled in, bookkeeping removed."""
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    running = pending = 0
    deployments = []
    for d in doc["deployments"]:
        c = counts.get(d["id"], {"RUNNING": 0, "PENDING": 0})
        deployments.append({**d, "runningCount": c["RUNNING"], "pendingCount": c["PENDING"]})
        running += c["RUNNING"]
        pending += c["PENDING"]
    out["deployments"] = deployments
    out["runningCount"] = running
    out["pendingCount"] = pending
    return out


def _deployment_configuration(params: dict[str, Any], current: dict[str, Any] | None = None,
                              *, daemon: bool = False) -> dict[str, Any]:
    # A daemon has one task per instance: it replaces them in place (stop, then start).
    bounds = {"maximumPercent": 100, "minimumHealthyPercent": 0} if daemon else \
        {"maximumPercent": 200, "minimumHealthyPercent": 100}
    config = {"deploymentCircuitBreaker": {"enable": False, "rollback": False},
              **bounds, **(current or {})}
    config.update(params.get("deploymentConfiguration", {}))
    if daemon and config["maximumPercent"] != 100:
        raise invalid_parameter("The maximumPercent of a service with the daemon scheduling "
                                "strategy must be 100.")
    if not 100 <= config["maximumPercent"] <= 2000:
        raise invalid_parameter("maximumPercent must be between 100 and 2000.")
    if not 0 <= config["minimumHealthyPercent"] <= 100:
        raise invalid_parameter("minimumHealthyPercent must be between 0 and 100.")
    return config


def _check_daemon_params(params: dict[str, Any]) -> None:
    """What ECS refuses for a DAEMON service (messages as ECS words them)."""
    if "desiredCount" in params:
        raise invalid_parameter(
            "The daemon scheduling strategy does not support a desired count for services. "
            "Remove the desired count value and try again")
    if params.get("placementStrategy"):
        raise invalid_parameter(
            "The daemon scheduling strategy does not support placement strategies. Remove the "
            "placement strategy and try again")


def _check_placement(params: dict[str, Any]) -> None:
    """Refuse malformed placement strategies and constraints before they are stored."""
    try:
        placement.compile_strategies(params.get("placementStrategy") or [])
        for expression in placement.check_constraints(params.get("placementConstraints") or []):
            query_language.parse(expression)
    except ValueError as e:  # QueryError included
        raise invalid_parameter(str(e)) from None


def _check_task_definition(conn: Connection, scope: Scope, service: dict[str, Any],
                           ref: str) -> dict[str, Any]:
    try:
        task_def = taskdefs.get_for_launch(conn, scope, ref)
    except ApiError as e:
        raise client_error(e.message) from None
    # A service on a capacity provider strategy has no launchType; only FARGATE providers exist.
    check_launch_type(task_def, service.get("launchType", "FARGATE"))
    awsvpc = task_def.get("networkMode") == "awsvpc"
    if awsvpc and not service.get("networkConfiguration"):
        raise invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    if not awsvpc and service.get("networkConfiguration"):
        raise invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task "
            "definition.")
    return task_def


def create_service(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    name = params["serviceName"]
    if not _NAME.match(name):
        raise invalid_parameter("Service name should be between 1 and 255 characters long and "
                                "can only contain letters, numbers, underscores and hyphens.")
    strategy = params.get("schedulingStrategy", "REPLICA")
    if strategy == "DAEMON":
        _check_daemon_params(params)
    elif "desiredCount" not in params:
        raise invalid_parameter("desiredCount is required for a REPLICA service.")
    elif params["desiredCount"] < 0:
        raise invalid_parameter("desiredCount cannot be negative.")
    controller = params.get("deploymentController", {}).get("type", "ECS")
    if controller != "ECS":
        raise ApiError("UnsupportedFeatureException",
                       f"Galley supports only the ECS deployment controller, not {controller}.")
    if params.get("loadBalancers") or params.get("serviceRegistries"):
        raise ApiError("UnsupportedFeatureException",
                       "Galley does not support load balancers or service registries yet.")
    if "taskDefinition" not in params:
        raise invalid_parameter("taskDefinition is required for the ECS deployment controller.")
    _check_placement(params)
    tag_list = params.get("tags", [])
    tags.validate(tag_list)
    at = now()
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        arn = scope.service_arn(cluster["clusterName"], name)
        existing = _row(conn, scope, cluster, arn)
        if existing is not None and existing.status == "ACTIVE":
            raise invalid_parameter("Creation of service was not idempotent.")
        if existing is not None and existing.status == "DRAINING":
            raise invalid_parameter("Unable to Start a service that is still Draining.")
        launch_type, providers = tasks.resolve_launch_type(cluster, params)
        daemon = strategy == "DAEMON"
        if daemon and (launch_type == "FARGATE" or providers):
            raise invalid_parameter(
                "The daemon scheduling strategy is supported only with the EC2 and EXTERNAL "
                "launch types. Specify one of them and try again.")
        doc: dict[str, Any] = {
            "serviceArn": arn,
            "serviceName": name,
            "clusterArn": cluster["clusterArn"],
            "loadBalancers": [],
            "serviceRegistries": [],
            "status": "ACTIVE",
            "desiredCount": params.get("desiredCount", 0),
            "launchType": launch_type,
            "deploymentConfiguration": _deployment_configuration(params, daemon=daemon),
            "events": [],
            "createdAt": at,
            "placementConstraints": params.get("placementConstraints", []),
            "placementStrategy": params.get("placementStrategy", []),
            "schedulingStrategy": strategy,
            "deploymentController": {"type": "ECS"},
            "createdBy": f"arn:aws:iam::{scope.account}:root",
            "enableECSManagedTags": params.get("enableECSManagedTags", False),
            "propagateTags": params.get("propagateTags", "NONE"),
            "enableExecuteCommand": params.get("enableExecuteCommand", False),
            "healthCheckGracePeriodSeconds": params.get("healthCheckGracePeriodSeconds", 0),
        }
        if providers:  # the request's, or the cluster's default strategy (kept as it was)
            doc["capacityProviderStrategy"] = providers
            doc.pop("launchType")
        if launch_type == "FARGATE":
            doc["platformVersion"] = params.get("platformVersion", "LATEST")
            doc["platformFamily"] = "Linux"
        if params.get("networkConfiguration"):
            doc["networkConfiguration"] = params["networkConfiguration"]
        task_def = _check_task_definition(conn, scope, doc, params["taskDefinition"])
        doc["taskDefinition"] = task_def["taskDefinitionArn"]
        doc["deployments"] = [new_deployment(new_deployment_id(), doc["taskDefinition"], doc, at)]
        values = {"status": "ACTIVE", "created_at": at, "doc": dumps(doc)}
        if existing is None:
            conn.execute(insert(SVC).values(arn=arn, cluster_arn=cluster["clusterArn"],
                                            name=name, **values))
        else:  # the name of an INACTIVE service may be reused
            conn.execute(update(SVC).where(SVC.c.arn == arn).values(**values))
            tags.remove(conn, arn)
        tags.put(conn, arn, tag_list)
        result = present(doc, {})
        result["tags"] = tag_list
    app.store.actual_changed.bump()
    return {"service": result}


def update_service(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    at = now()
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        doc = get_active(conn, scope, cluster, params["service"])
        daemon = doc["schedulingStrategy"] == "DAEMON"
        if daemon:
            _check_daemon_params(params)
        _check_placement(params)
        if "desiredCount" in params:
            if params["desiredCount"] < 0:
                raise invalid_parameter("desiredCount cannot be negative.")
            doc["desiredCount"] = params["desiredCount"]
        if "deploymentConfiguration" in params:
            doc["deploymentConfiguration"] = _deployment_configuration(
                params, doc["deploymentConfiguration"], daemon=daemon)
        for key in ("healthCheckGracePeriodSeconds", "placementConstraints", "placementStrategy",
                    "propagateTags", "enableECSManagedTags", "enableExecuteCommand"):
            if key in params:
                doc[key] = params[key]
        if params.get("loadBalancers") or params.get("serviceRegistries"):
            raise ApiError("UnsupportedFeatureException",
                           "Galley does not support load balancers or service registries yet.")
        redeploy = bool(params.get("forceNewDeployment"))
        if params.get("capacityProviderStrategy"):
            if daemon:
                raise invalid_parameter("The daemon scheduling strategy does not support "
                                        "capacity provider strategies.")
            _, providers = tasks.resolve_launch_type(
                cluster, {"capacityProviderStrategy": params["capacityProviderStrategy"]})
            params = {**params, "capacityProviderStrategy": providers}
            doc.pop("launchType", None)
        for key in ("networkConfiguration", "platformVersion", "capacityProviderStrategy"):
            if key in params and params[key] != doc.get(key):
                doc[key] = params[key]
                redeploy = True
        task_def_arn = doc["taskDefinition"]
        if "taskDefinition" in params:
            task_def_arn = _check_task_definition(conn, scope, doc,
                                                  params["taskDefinition"])["taskDefinitionArn"]
            redeploy = redeploy or task_def_arn != doc["taskDefinition"]
        elif redeploy:
            _check_task_definition(conn, scope, doc, task_def_arn)
        if redeploy:
            for d in doc["deployments"]:
                d["status"] = "ACTIVE"
            doc["taskDefinition"] = task_def_arn
            doc["deployments"].insert(0, new_deployment(new_deployment_id(), task_def_arn, doc,
                                                        at))
            doc["_launchFailures"] = 0  # a new task definition resets the launch backoff
            doc["_nextLaunchAt"] = 0
        save(conn, doc)
        result = present(doc, _counts(conn, [doc]))
    app.store.actual_changed.bump()
    return {"service": result}


def delete_service(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        doc = get_active(conn, scope, cluster, params["service"])
        # A daemon cannot be scaled to 0 first, so it needs no force (as in ECS).
        if doc["desiredCount"] > 0 and not params.get("force") and \
                doc["schedulingStrategy"] != "DAEMON":
            raise invalid_parameter("The service cannot be stopped while it is scaled above 0.")
        doc["desiredCount"] = 0
        doc["status"] = "DRAINING"
        save(conn, doc)
        result = present(doc, _counts(conn, [doc]))
    app.store.actual_changed.bump()
    return {"service": result}


def describe_services(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params["services"]
    if not refs:
        raise invalid_parameter("Services cannot be empty.")
    if len(refs) > 10:
        raise invalid_parameter("At most 10 services can be described at once.")
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        wanted = [service_arn_for(scope, cluster, r) for r in refs]
        rows = {r.arn: loads(r.doc) for r in conn.execute(select(SVC.c.arn, SVC.c.doc).where(
            SVC.c.arn.in_(wanted), SVC.c.cluster_arn == cluster["clusterArn"]))}
        counts = _counts(conn, list(rows.values()))
        with_tags = "TAGS" in params.get("include", [])

        def answer(arn: str, doc: dict[str, Any]) -> dict[str, Any]:
            shown = present(doc, counts)
            return {**shown, "tags": tags.get(conn, arn)} if with_tags else shown

        found, failures = describe_each(wanted, rows, answer)
    return {"services": found, "failures": failures}


def list_services(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        rows = conn.execute(select(SVC.c.arn, SVC.c.doc).where(
            SVC.c.cluster_arn == cluster["clusterArn"], SVC.c.status == "ACTIVE")
            .order_by(SVC.c.created_at, SVC.c.arn)).all()
    arn_list = []
    for row in rows:
        doc = loads(row.doc)
        if params.get("launchType") and doc.get("launchType") != params["launchType"]:
            continue
        if params.get("schedulingStrategy") and \
                doc["schedulingStrategy"] != params["schedulingStrategy"]:
            continue
        arn_list.append(row.arn)
    page, token = paginate(arn_list, params, default=10)
    return with_token({"serviceArns": page}, token)


# ---- hooks into tasks and clusters -----------------------------------------------------------

def _list_filter(conn: Connection, scope: Scope, cluster: dict[str, Any], ref: str) -> Any:
    row = _row(conn, scope, cluster, ref)
    if row is None:
        raise service_not_found()
    return s.tasks.c.service_name == row.name


def _count_services(conn: Connection, cluster_arns: list[str]) -> list[tuple[str, str, int]]:
    rows = conn.execute(select(SVC.c.cluster_arn, func.count()).where(
        SVC.c.cluster_arn.in_(cluster_arns), SVC.c.status == "ACTIVE").group_by(
        SVC.c.cluster_arn))
    return [(arn, "services", n) for arn, n in rows]


def _refuse_delete(conn: Connection, cluster_arn: str) -> ApiError | None:
    if conn.execute(select(SVC.c.arn).where(SVC.c.cluster_arn == cluster_arn,
                                            SVC.c.status != "INACTIVE").limit(1)).first():
        return ApiError("ClusterContainsServicesException",
                        "The Cluster cannot be deleted while Services are active.")
    return None


tasks.LIST_FILTERS["serviceName"] = _list_filter
clusters.COUNTERS.append(_count_services)
clusters.DELETE_CHECKS.append(_refuse_delete)
tags.TAGGABLE["service"] = SVC
