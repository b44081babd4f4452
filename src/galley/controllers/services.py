"""The service scheduler: a level-triggered loop applying `service_step` plans to the store.

Woken when tasks change state or a service is created/updated, and at least every half second
(time alone makes tasks healthy and backoffs expire). Each service is decided on a copy first
and written only when the step has something to do.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from galley.app import Galley
from galley.arns import Scope
from galley.control import daemons, scale_in, services, tags, tasks
from galley.control.common import now
from galley.control.daemons import DaemonHosts
from galley.control.task_docs import RANK
from galley.errors import ApiError
from galley.scheduler.capacity import split
from galley.scheduler.service_step import Plan, TaskView, add_events, step, task_stopped
from galley.store import schema as s
from galley.store.db import loads

log = logging.getLogger("galley.services")
T = s.tasks
INST = s.container_instances


def run(app: Galley, stop: threading.Event, period: float = 0.5) -> None:
    version = 0
    while not stop.is_set():
        wake_at = None
        started = time.monotonic()
        try:
            wake_at = reconcile_all(app)
        except Exception:
            log.exception("service reconcile failed")
        spent = time.monotonic() - started
        timeout = period if wake_at is None else min(period, max(0.0, wake_at - now()))
        # Under a stream of task reports (thousands a second at scale) every pass finds a
        # change waiting: leave the rest of the control plane at least as much time as a pass
        # took before the next. A small cluster's pass takes a millisecond: no delay there.
        if spent > 0.002 and stop.wait(min(spent, timeout)):
            break
        version = app.store.actual_changed.wait(version, max(0.0, timeout - spent))


def reconcile_all(app: Galley) -> float | None:
    """Reconcile every live service; return the earliest time one wants another look."""
    with app.store.read() as conn:
        arns = [r.arn for r in conn.execute(select(services.SVC.c.arn).where(
            services.SVC.c.status != "INACTIVE"))]
    wakes = []
    for arn in arns:
        try:
            wake_at = reconcile(app, arn)
        except Exception:
            log.exception("reconciling %s failed", arn)
            continue
        if wake_at is not None:
            wakes.append(wake_at)
    return min(wakes, default=None)


# task ARN -> (version, healthStatus, createdAt, startedAt, has an essential health check):
# what a TaskView needs from a task's documents, parsed once per version of the task rather than
# on every look at every service (10,000 tasks are 20,000 JSON documents a pass).
_parsed: dict[str, tuple[int, str, float, float | None, bool]] = {}


def _parse(conn: Connection, arns: list[str]) -> dict[str, tuple[int, str, float, float | None,
                                                                bool]]:
    global _parsed
    if len(_parsed) > 200_000:  # stopped tasks are never looked at again: start afresh
        _parsed = {}
    known = _parsed
    for i in range(0, len(arns), 500):
        for r in conn.execute(select(T.c.arn, T.c.version, T.c.doc, T.c.spec).where(
                T.c.arn.in_(arns[i:i + 500]))):
            doc = loads(r.doc)
            old = known.get(r.arn)
            checked = old[4] if old is not None else any(  # the spec never changes
                c.get("essential", True) and c.get("healthCheck")
                for c in loads(r.spec)["containers"])
            known[r.arn] = (r.version, doc.get("healthStatus", "UNKNOWN"), doc["createdAt"],
                            doc.get("startedAt"), checked)
    return known


def _views(conn: Connection, service: dict[str, Any], daemon: DaemonHosts | None
           ) -> list[TaskView]:
    """The service's unfinished tasks; those whose instance is DRAINING (or, for a daemon, left
    its set of instances) are marked draining. A daemon task held on a DRAINING instance until
    the replica tasks there are gone is left out, so nothing replaces or stops it yet."""
    rows = conn.execute(select(T.c.arn, T.c.version, T.c.started_by, T.c.last_status,
                               T.c.desired_status, T.c.agent_id, INST.c.status.label("host"))
                        .select_from(T.outerjoin(INST, INST.c.arn == T.c.agent_id)).where(
        T.c.cluster_arn == service["clusterArn"], T.c.service_name == service["serviceName"],
        T.c.last_status != "STOPPED")).all()
    parsed = _parsed
    stale = [r.arn for r in rows if parsed.get(r.arn, (-1,))[0] != r.version]
    if stale:
        parsed = _parse(conn, stale)
    views = []
    placed = []  # (task ARN, instance ARN, createdAt) of live PRIMARY tasks on instances
    primary = service["deployments"][0]["id"]
    for r in rows:
        if daemon is not None and r.agent_id in daemon.held:
            continue
        draining = r.agent_id not in daemon.eligible if daemon is not None else \
            r.host in ("DRAINING", "INACTIVE")
        got = parsed.get(r.arn)
        if got is None:  # purged between the two reads: it is not unfinished any more
            continue
        _version, health, created_at, started_at, checked = got
        views.append(TaskView(
            arn=r.arn, deployment_id=r.started_by or "", last_status=r.last_status,
            desired_status=r.desired_status, health_status=health, has_health_check=checked,
            created_at=created_at, started_at=started_at, draining=draining))
        if r.host is not None and r.started_by == primary and r.desired_status == "RUNNING" \
                and not draining:
            placed.append((r.arn, r.agent_id, created_at))
    if service["status"] == "ACTIVE" and len(placed) > service["desiredCount"]:
        rank = scale_in.ranks(conn, service, _primary_task_def(conn, service), placed)
        views = [replace(v, scale_in_rank=rank.get(v.arn, 0)) for v in views]
    return views


def _primary_task_def(conn: Connection, service: dict[str, Any]) -> dict[str, Any]:
    return dict(loads(conn.execute(select(s.task_definitions.c.doc).where(
        s.task_definitions.c.arn == service["deployments"][0]["taskDefinition"])).one().doc))


def _daemon_hosts(conn: Connection, service: dict[str, Any]) -> DaemonHosts | None:
    """For a DAEMON service, its instances; its desiredCount follows how many there are."""
    if service["schedulingStrategy"] != "DAEMON":
        return None
    hosts = daemons.hosts(conn, service, _primary_task_def(conn, service))
    if service["status"] == "ACTIVE":
        service["desiredCount"] = len(hosts.eligible)
    return hosts


def _decide(app: Galley, conn: Connection, doc: dict[str, Any], at: float) -> tuple[Plan, bool]:
    plan = step(doc, _views(conn, doc, _daemon_hosts(conn, doc)), at, app.settings.service)
    added = add_events(doc, plan.events, at, uuid.uuid4)
    return plan, bool(plan.start or plan.stop or plan.changed or added)


def reconcile(app: Galley, arn: str) -> float | None:
    """One step for one service; returns when time alone would change its next decision."""
    at = now()
    with app.store.read() as conn:
        row = conn.execute(select(services.SVC.c.doc).where(services.SVC.c.arn == arn)).first()
        if row is None:
            return None
        plan, busy = _decide(app, conn, copy.deepcopy(loads(row.doc)), at)
    if not busy:
        return plan.wake_at
    with app.store.write() as conn:
        row = conn.execute(select(services.SVC.c.doc).where(services.SVC.c.arn == arn)).one()
        doc = loads(row.doc)
        plan, _ = _decide(app, conn, doc, at)
        events = _apply(app, conn, doc, plan, at)
        add_events(doc, events, at, uuid.uuid4)
        services.save(conn, doc)
    if plan.start or plan.stop:
        app.store.desired_changed.bump()
    return plan.wake_at


def _apply(app: Galley, conn: Connection, service: dict[str, Any], plan: Plan, at: float
           ) -> list[str]:
    """Stop and launch what the plan says; return the events that tell the story."""
    name = service["serviceName"]
    events = []
    stopped = []
    for arn, reason in plan.stop:
        row = conn.execute(select(T.c.doc).where(T.c.arn == arn)).first()
        if row and tasks.request_stop(conn, loads(row.doc), reason, "ServiceSchedulerInitiated",
                                      at):
            stopped.append(arn.rsplit("/", 1)[1])
    if stopped:
        events.append(f"(service {name}) has stopped {len(stopped)} running tasks: "
                      + " ".join(f"(task {t})" for t in stopped) + ".")
    cluster = {"clusterArn": service["clusterArn"],
               "clusterName": service["clusterArn"].rsplit("/", 1)[1]}
    for deployment_id, count in plan.start.items():
        deployment = next(d for d in service["deployments"] if d["id"] == deployment_id)
        task_def = loads(conn.execute(select(s.task_definitions.c.doc).where(
            s.task_definitions.c.arn == deployment["taskDefinition"])).one().doc)
        launch_type = deployment.get("launchType", "FARGATE")
        constraints = service.get("placementConstraints", [])
        if service["schedulingStrategy"] == "DAEMON":
            constraints = [*constraints, daemons.DISTINCT_INSTANCE]
        try:
            docs, failures = [], []
            for provider, n in _provider_shares(conn, service, deployment, count).items():
                placed, missed = tasks.launch_tasks(
                    conn, _scope(service), cluster, task_def, count=n, launch_type=launch_type,
                    provider=provider,
                    params={"placementStrategy": service.get("placementStrategy", []),
                            "placementConstraints": constraints},
                    overrides={}, group=f"service:{name}", started_by=deployment_id,
                    network_configuration=deployment.get("networkConfiguration"),
                    tag_list=_task_tags(conn, service, task_def), service_name=name)
                docs += placed
                failures += missed
        except ApiError as e:
            events.append(f"(service {name}) was unable to place a task because no container "
                          f"instance met all of its requirements. Reason: {e.message}")
            continue
        if docs:
            events.append(f"(service {name}) has started {len(docs)} tasks: "
                          + " ".join(f"(task {d['taskArn'].rsplit('/', 1)[1]})" for d in docs)
                          + ".")
        if failures:
            closest = failures[0]
            events.append(
                f"(service {name}) was unable to place a task because no container instance met "
                f"all of its requirements. The closest matching container-instance "
                f"{closest['arn'].rsplit('/', 1)[1]} encountered error \"{closest['reason']}\".")
    return events


def _provider_shares(conn: Connection, service: dict[str, Any], deployment: dict[str, Any],
                     count: int) -> dict[str | None, int]:
    """New tasks per capacity provider: by the deployment's strategy, counting the tasks each
    provider already runs for it (no strategy: all on the launch type, no provider)."""
    strategy = deployment.get("capacityProviderStrategy")
    if not strategy:
        return {None: count}
    existing: Counter[str] = Counter()
    for (doc,) in conn.execute(select(T.c.doc).where(
            T.c.cluster_arn == service["clusterArn"], T.c.service_name == service["serviceName"],
            T.c.started_by == deployment["id"], T.c.desired_status == "RUNNING")):
        existing[loads(doc).get("capacityProviderName", "")] += 1
    shares: dict[str | None, int] = {
        name: n for name, n in split(strategy, count, existing).items()}
    return shares


def _scope(service: dict[str, Any]) -> Scope:
    parts = service["serviceArn"].split(":")
    return Scope(parts[3], parts[4])


def _task_tags(conn: Connection, service: dict[str, Any], task_def: dict[str, Any]
               ) -> list[dict[str, str]]:
    result: list[dict[str, str]] = []
    if service.get("propagateTags") == "SERVICE":
        result = tags.get(conn, service["serviceArn"])
    elif service.get("propagateTags") == "TASK_DEFINITION":
        result = tags.get(conn, task_def["taskDefinitionArn"])
    if service.get("enableECSManagedTags"):
        result = result + [
            {"key": "aws:ecs:clusterName", "value": service["clusterArn"].rsplit("/", 1)[1]},
            {"key": "aws:ecs:serviceName", "value": service["serviceName"]}]
    return result


def on_task_report(app: Galley) -> Any:
    """A REPORT_HOOK: feed each stopped service task to the breaker and the launch backoff."""

    def hook(conn: Connection, doc: dict[str, Any], previous: str) -> None:
        # Account once, as soon as the task starts stopping: the backoff must be in place
        # before the scheduler launches the replacement.
        if RANK[doc["lastStatus"]] < RANK["DEACTIVATING"] or RANK[previous] >= RANK["DEACTIVATING"]:
            return
        group = doc.get("group", "")
        if not group.startswith("service:"):
            return
        if doc.get("stopCode") == "UserInitiated" or \
                doc.get("stoppedReason", "").startswith("Scaling activity"):
            return
        arn = doc["clusterArn"].replace(":cluster/", ":service/") + "/" + group[len("service:"):]
        row = conn.execute(select(services.SVC.c.doc).where(services.SVC.c.arn == arn)).first()
        if row is None:
            return
        service = loads(row.doc)
        settings = app.settings.service
        task_row = conn.execute(select(T.c.ever_healthy, T.c.spec).where(
            T.c.arn == doc["taskArn"])).one()
        spec = loads(task_row.spec)
        checked = any(c.get("essential", True) and c.get("healthCheck")
                      for c in spec["containers"])
        stopped_at = doc.get("executionStoppedAt") or doc.get("stoppingAt") or now()
        ran_for = stopped_at - doc["startedAt"] if "startedAt" in doc else 0.0
        healthy = bool(task_row.ever_healthy) if checked else ran_for >= settings.settle_seconds
        events = task_stopped(
            service, doc.get("startedBy", ""), became_healthy=healthy,
            health_failure=doc.get("stoppedReason") == "Task failed container health checks",
            now=now(), settings=settings, new_deployment_id=services.new_deployment_id())
        add_events(service, events, now(), uuid.uuid4)
        services.save(conn, service)  # apply_agent_report wakes the loop after the commit

    return hook
