"""The placement view of a cluster (control/fleet.py) against the store, on a SQLite file.

`fleet.usage` keeps parsed task and instance facts between calls; these tests check that its
answers always equal a plain recomputation from the store's documents, whatever changed in
between (new tasks, state reports, stops, attribute changes), by instance ARN and by cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from galley.app import Galley
from galley.arns import Scope
from galley.config import Settings
from galley.control import clusters, fleet, instances, taskdefs, tasks
from galley.scheduler.resources import registered_capacity, task_need
from galley.store import schema as s
from galley.store.db import dumps, loads

SCOPE = Scope("000000000000", "us-east-1")
CLUSTER = "fleet"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Galley]:
    fleet.forget()
    galley = Galley(Settings(data_dir=tmp_path))
    clusters.create_cluster(galley, SCOPE, {"clusterName": CLUSTER})
    yield galley
    galley.store.close()
    fleet.forget()


def register(app: Galley, n: int, cpu: int = 4096, memory: int = 8192) -> list[str]:
    out = []
    for k in range(n):
        answer = instances.register_container_instance(app, SCOPE, {
            "cluster": CLUSTER,
            "totalResources": [{"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                               {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}],
            "attributes": [{"name": "ecs.availability-zone", "value": f"az-{k % 3}"}]})
        out.append(answer["containerInstance"]["containerInstanceArn"])
    return out


def task_definition(app: Galley, family: str, cpu: int, memory: int,
                    host_port: int | None = None) -> str:
    container: dict[str, Any] = {"name": "app", "image": "busybox", "cpu": cpu,
                                 "memory": memory}
    if host_port:
        container["portMappings"] = [{"containerPort": 80, "hostPort": host_port}]
    return str(taskdefs.register_task_definition(app, SCOPE, {
        "family": family, "networkMode": "bridge", "containerDefinitions": [container]},
    )["taskDefinition"]["taskDefinitionArn"])


def run(app: Galley, task_def: str, count: int, group: str | None = None) -> list[str]:
    params: dict[str, Any] = {"cluster": CLUSTER, "taskDefinition": task_def, "count": count,
                              "launchType": "EC2"}
    if group:
        params["group"] = group
    answer = tasks.run_task(app, SCOPE, params)
    return [t["taskArn"] for t in answer["tasks"]]


def report(app: Galley, arn: str, status: str) -> None:
    tasks.apply_agent_report(app, {"taskArn": arn, "lastStatus": status})


def plain(app: Galley) -> dict[str, tuple[int, int, int, int, Counter[str], str | None]]:
    """instance ARN -> (cpu, memory, running, pending, groups, zone), from the documents."""
    out: dict[str, Any] = {}
    with app.store.read() as conn:
        for row in conn.execute(select(s.container_instances)):
            doc = loads(row.doc)
            cap = registered_capacity(doc["registeredResources"])
            zone = {a["name"]: a.get("value") for a in doc["attributes"]}.get(
                "ecs.availability-zone")
            out[row.arn] = [cap, 0, 0, Counter(), zone]
        for row in conn.execute(select(s.tasks).where(s.tasks.c.last_status != "STOPPED")):
            if row.agent_id not in out:
                continue
            entry = out[row.agent_id]
            entry[0].take(task_need(fleet.spec_need_doc(loads(row.spec))))
            entry[1] += row.last_status == "RUNNING"
            entry[2] += row.last_status in clusters.PENDING_STATES
            entry[3][loads(row.doc)["group"]] += 1
    return {arn: (e[0].cpu, e[0].memory, e[1], e[2], e[3], e[4]) for arn, e in out.items()}


def cached(app: Galley) -> dict[str, tuple[int, int, int, int, Counter[str], str | None]]:
    with app.store.read() as conn:
        rows = conn.execute(select(s.container_instances)).all()
        usage = fleet.usage(conn, rows)
        return {r.arn: (usage[r.arn].capacity.cpu, usage[r.arn].capacity.memory,
                        usage[r.arn].running, usage[r.arn].pending,
                        +usage[r.arn].groups,
                        fleet.facts(r).attributes.get("ecs.availability-zone"))
                for r in rows}


@pytest.mark.parametrize("n_instances", [3, 60])  # by instance ARN, and by cluster
def test_usage_follows_every_change(app: Galley, n_instances: int) -> None:
    register(app, n_instances)
    small = task_definition(app, "small", 128, 256)
    ported = task_definition(app, "ported", 256, 512, host_port=8080)
    started = run(app, small, 10) + run(app, ported, 2, group="web")
    assert cached(app) == plain(app)
    for arn in started[:4]:
        report(app, arn, "RUNNING")
    report(app, started[4], "STOPPED")
    report(app, started[-1], "STOPPED")  # a static port is free again
    assert cached(app) == plain(app)
    run(app, small, 5)
    assert cached(app) == plain(app)
    with app.store.read() as conn:
        rows = conn.execute(select(s.container_instances)).all()
        usage = fleet.usage(conn, rows)
    assert sum(8080 in u.capacity.tcp_ports for u in usage.values()) == 1


def test_a_changed_instance_document_is_read_again(app: Galley) -> None:
    arns = register(app, 2)
    assert cached(app)[arns[0]][5] == "az-0"
    with app.store.write() as conn:
        row = conn.execute(select(s.container_instances.c.doc).where(
            s.container_instances.c.arn == arns[0])).one()
        doc = loads(row.doc)
        doc["attributes"] = [{"name": "ecs.availability-zone", "value": "az-9"}]
        conn.execute(s.container_instances.update().where(
            s.container_instances.c.arn == arns[0]).values(doc=dumps(doc)))
    assert cached(app)[arns[0]][5] == "az-9"
    assert cached(app) == plain(app)


def test_placement_sees_tasks_placed_by_earlier_calls(app: Galley) -> None:
    register(app, 2, cpu=1024, memory=1024)
    small = task_definition(app, "small", 256, 512)
    assert len(run(app, small, 4)) == 4  # two per instance fill the memory
    answer = tasks.run_task(app, SCOPE, {"cluster": CLUSTER, "taskDefinition": small,
                                         "launchType": "EC2"})
    assert answer["tasks"] == []
    assert {f["reason"] for f in answer["failures"]} == {"RESOURCE:MEMORY"}


def test_the_task_cache_is_trimmed_to_what_is_live(app: Galley,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "_KEEP_TASKS", 0)
    register(app, 3)
    small = task_definition(app, "small", 1, 1)
    first = run(app, small, 10)
    cached(app)
    for arn in first:
        report(app, arn, "STOPPED")
    run(app, small, 3)
    cached(app)  # 13 known, 3 live: more than twice what is live, so only those stay
    assert set(fleet._tasks) == set(tasks_live(app))
    assert len(fleet._tasks) == 3


def tasks_live(app: Galley) -> list[str]:
    with app.store.read() as conn:
        return [r.arn for r in conn.execute(select(s.tasks.c.arn).where(
            s.tasks.c.last_status != "STOPPED"))]
