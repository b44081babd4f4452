"""Container instances as placement sees them: remaining capacity, task counts, task groups.

Placement runs for every RunTask and every service launch, over every instance of the cluster
and every live task on them: at 1,000 instances and 10,000 tasks, parsing each task's documents
on every call costs far more than the placement itself. What a task reserves and its group never
change once it exists, and an instance's document changes only when it is registered again or
its attributes change, so both are parsed once and kept: task facts by task ARN, instance facts
by instance ARN together with the document text they came from. Which tasks are live on which
instance is read from the store on every call, so every answer reflects every commit.

    rows (container_instances) --usage()--> per instance: remaining Capacity, running and
                                             pending counts, tasks per group
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from galley.control.clusters import PENDING_STATES
from galley.scheduler.placement import Candidate
from galley.scheduler.query import Subject
from galley.scheduler.resources import Capacity, Need, registered_capacity, task_need
from galley.store import schema as s
from galley.store.db import loads

T = s.tasks
# Above this many instances, live tasks are read by cluster rather than by instance ARN.
_BY_CLUSTER_FROM = 50
_FETCH_CHUNK = 500
# The caches keep at least this many entries before they are trimmed to what is live.
_KEEP_TASKS = 50_000
_KEEP_INSTANCES = 5_000


@dataclass(frozen=True)
class InstanceFacts:
    """What an instance document says that placement needs (shared: never mutate)."""

    registered: Capacity
    attributes: dict[str, str | None]
    ec2_instance_id: str
    agent_version: str


@dataclass
class Usage:
    """An instance now: what is left of its resources and what runs there."""

    capacity: Capacity
    running: int = 0
    pending: int = 0
    groups: Counter[str] = field(default_factory=Counter)


# task ARN -> (what it reserves, its group). Needs and groups are interned: tasks of one task
# definition share one Need.
_tasks: dict[str, tuple[Need, str]] = {}
_needs: dict[Need, Need] = {}
_groups: dict[str, str] = {}
# instance ARN -> (document text, facts parsed from it)
_instances: dict[str, tuple[str, InstanceFacts]] = {}


def spec_need_doc(spec: dict[str, Any]) -> dict[str, Any]:
    """A task spec in the task-definition shape `task_need` reads."""
    return {"containerDefinitions": spec["containers"], "cpu": spec.get("cpu"),
            "memory": spec.get("memory"), "networkMode": spec.get("networkMode", "bridge")}


def facts(row: Any) -> InstanceFacts:
    """The parsed document of a container_instances row (cached while the text is the same)."""
    cached = _instances.get(row.arn)
    if cached is not None and cached[0] == row.doc:
        return cached[1]
    doc = loads(row.doc)
    parsed = InstanceFacts(
        registered=registered_capacity(doc["registeredResources"]),
        attributes={a["name"]: a.get("value") for a in doc.get("attributes", [])},
        ec2_instance_id=doc["ec2InstanceId"],
        agent_version=doc.get("versionInfo", {}).get("agentVersion", ""))
    _instances[row.arn] = (row.doc, parsed)
    return parsed


def _copy(cap: Capacity) -> Capacity:
    return Capacity(cap.cpu, cap.memory, set(cap.tcp_ports), set(cap.udp_ports))


def _live(conn: Connection, rows: Sequence[Any]) -> Iterable[tuple[str, str, str]]:
    """(task ARN, instance ARN, lastStatus) of every task not STOPPED on the instances."""
    clusters = {r.cluster_arn for r in rows}
    if len(rows) >= _BY_CLUSTER_FROM and len(clusters) == 1:
        # One indexed range (ix_tasks_cluster_live) instead of a thousand-value IN list; a
        # STOPPED task always has stopped_at, so the live ones are those without.
        return conn.execute(select(T.c.arn, T.c.agent_id, T.c.last_status).where(
            T.c.cluster_arn == next(iter(clusters)), T.c.stopped_at.is_(None),
            T.c.last_status != "STOPPED", T.c.agent_id.is_not(None)))
    return conn.execute(select(T.c.arn, T.c.agent_id, T.c.last_status).where(
        T.c.agent_id.in_([r.arn for r in rows]), T.c.last_status != "STOPPED"))


def _task_facts(conn: Connection, arns: list[str]) -> dict[str, tuple[Need, str]]:
    """(need, group) of each task, parsed from the store for those not seen before."""
    known = _tasks
    out = {}
    missing = []
    for arn in arns:
        got = known.get(arn)
        if got is None:
            missing.append(arn)
        else:
            out[arn] = got
    for i in range(0, len(missing), _FETCH_CHUNK):
        chunk = missing[i:i + _FETCH_CHUNK]
        for arn, spec, doc in conn.execute(select(T.c.arn, T.c.spec, T.c.doc).where(
                T.c.arn.in_(chunk))):
            need = task_need(spec_need_doc(loads(spec)))
            group = loads(doc).get("group", "")
            entry = (_needs.setdefault(need, need), _groups.setdefault(group, group))
            known[arn] = out[arn] = entry
    return out


def usage(conn: Connection, rows: Sequence[Any]) -> dict[str, Usage]:
    """instance ARN -> Usage, for container_instances rows (full rows: arn, cluster_arn, doc)."""
    out = {r.arn: Usage(_copy(facts(r).registered)) for r in rows}
    if not out:
        return out
    live = [(arn, agent, status) for arn, agent, status in _live(conn, rows) if agent in out]
    task_facts = _task_facts(conn, [arn for arn, _, _ in live])
    for arn, agent, status in live:
        need, group = task_facts[arn]
        u = out[agent]
        u.capacity.take(need)
        u.groups[group] += 1
        if status == "RUNNING":
            u.running += 1
        elif status in PENDING_STATES:
            u.pending += 1
    _trim(task_facts, out)
    return out


def _trim(live_tasks: dict[str, tuple[Need, str]], instances: dict[str, Usage]) -> None:
    """Bound the caches: when they hold far more than this call used, keep only that."""
    global _tasks, _instances, _needs, _groups
    if len(_tasks) > 2 * len(live_tasks) + _KEEP_TASKS:
        _tasks = dict(live_tasks)
        _needs = {n: n for n, _ in live_tasks.values()}
        _groups = {g: g for _, g in live_tasks.values()}
    if len(_instances) > 2 * len(instances) + _KEEP_INSTANCES:
        _instances = {a: _instances[a] for a in instances if a in _instances}


def candidates(rows: Sequence[Any], usage: dict[str, Usage]) -> list[Candidate]:
    """The instances as placement sees them (their capacity and groups are the Usage's own,
    so placing on a candidate updates its Usage too)."""
    out = []
    for r in rows:
        f, u = facts(r), usage[r.arn]
        out.append(Candidate(arn=r.arn, status=r.status, agent_connected=bool(r.agent_connected),
                             capacity=u.capacity, attributes=f.attributes,
                             host=f.ec2_instance_id, groups=u.groups))
    return out


def subject(row: Any, u: Usage) -> Subject:
    """What the cluster query language sees of an instance."""
    f = facts(row)
    return Subject(attributes=f.attributes, ec2_instance_id=f.ec2_instance_id,
                   agent_connected=bool(row.agent_connected), agent_version=f.agent_version,
                   registered_at=row.registered_at, running_tasks_count=u.running,
                   task_groups=frozenset(g for g, n in u.groups.items() if n > 0))


def subjects(conn: Connection, rows: Sequence[Any]) -> dict[str, Subject]:
    """What the cluster query language sees of each instance."""
    u = usage(conn, rows)
    return {r.arn: subject(r, u[r.arn]) for r in rows}


def forget() -> None:
    """Drop every cached fact (tests; a store replaced under a running process)."""
    global _tasks, _instances, _needs, _groups
    _tasks, _instances, _needs, _groups = {}, {}, {}, {}
