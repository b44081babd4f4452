"""DAEMON services: which container instances a daemon belongs on, and which of its tasks go.

A daemon runs one task on every ACTIVE container instance that satisfies its memberOf
constraints (the service's and its task definition's). The service scheduler treats the number
of such instances as the daemon's desiredCount, places with an implied distinctInstance, and
replaces ("drains") a daemon task whose instance left the set. On a DRAINING instance the daemon
task is the last to stop: it stays until no REPLICA service task is left there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from galley.control import fleet
from galley.scheduler import query as query_language
from galley.store import schema as s
from galley.store.db import loads

INST = s.container_instances
DISTINCT_INSTANCE = {"type": "distinctInstance"}


@dataclass(frozen=True)
class DaemonHosts:
    eligible: frozenset[str]  # instances the daemon should have a task on
    held: frozenset[str]  # DRAINING instances whose daemon task waits for replica tasks to go


def member_of(constraints: list[dict[str, Any]]) -> list[query_language.Query]:
    return [query_language.parse(c["expression"]) for c in constraints
            if str(c.get("type", "")).lower() == "memberof" and c.get("expression")]


def hosts(conn: Connection, service: dict[str, Any], task_def: dict[str, Any]) -> DaemonHosts:
    rows = conn.execute(select(INST).where(INST.c.cluster_arn == service["clusterArn"],
                                           INST.c.status.in_(("ACTIVE", "DRAINING")))).all()
    queries = member_of([*service.get("placementConstraints", []),
                         *task_def.get("placementConstraints", [])])
    subjects = fleet.subjects(conn, rows) if queries else {}
    eligible = frozenset(r.arn for r in rows if r.status == "ACTIVE" and all(
        q.matches(subjects[r.arn]) for q in queries))
    draining = [r.arn for r in rows if r.status == "DRAINING"]
    return DaemonHosts(eligible, _hosting_replicas(conn, service["clusterArn"], draining))


def _hosting_replicas(conn: Connection, cluster_arn: str, instance_arns: list[str]
                      ) -> frozenset[str]:
    """Those of the instances that still run a task of a REPLICA service."""
    if not instance_arns:
        return frozenset()
    daemons = {r.name for r in conn.execute(select(s.services.c.name, s.services.c.doc).where(
        s.services.c.cluster_arn == cluster_arn, s.services.c.status != "INACTIVE"))
        if loads(r.doc)["schedulingStrategy"] == "DAEMON"}
    rows = conn.execute(select(s.tasks.c.agent_id, s.tasks.c.service_name).where(
        s.tasks.c.agent_id.in_(instance_arns), s.tasks.c.last_status != "STOPPED",
        s.tasks.c.service_name.is_not(None)))
    return frozenset(agent for agent, name in rows if name not in daemons)
