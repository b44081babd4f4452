"""StartTask: one task on each named container instance, bypassing the placement strategies.

Each instance is checked as placement would check it (ACTIVE, agent connected, resources and
ports, the task definition's constraints), by pinning the placement to that one instance; an
instance that cannot take the task gets a `failures` entry with ECS's reason instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters, taskdefs, tasks
from galley.control.taskdef_rules import check_launch_type
from galley.errors import invalid_parameter
from galley.store import schema as s

INST = s.container_instances
MAX_INSTANCES = 10


def start_task(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params["containerInstances"]
    if not 1 <= len(refs) <= MAX_INSTANCES:
        raise invalid_parameter(
            f"containerInstances must hold between 1 and {MAX_INSTANCES} container instances.")
    tag_list = tasks.check_launch_request(params, "StartTask")
    started: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        task_def = taskdefs.get_for_launch(conn, scope, params["taskDefinition"])
        check_launch_type(task_def, "EC2")
        tasks.check_task_fits_request(task_def, params)
        tag_list = tasks.task_tags(conn, cluster, task_def, params, tag_list)
        for ref in refs:
            arn = scope.instance_arn_for(cluster["clusterName"], ref)
            row = conn.execute(select(INST.c.ec2_instance_id, INST.c.status).where(
                INST.c.arn == arn, INST.c.cluster_arn == cluster["clusterArn"])).first()
            if row is None:
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            if row.status == "INACTIVE":
                failures.append({"arn": arn, "reason": "INACTIVE"})
                continue
            pinned = {"type": "memberOf", "expression": f'ec2InstanceId == "{row.ec2_instance_id}"'}
            docs, misses = tasks.launch_tasks(
                conn, scope, cluster, task_def, count=1, launch_type="EC2", provider=None,
                params={**params, "placementStrategy": [], "placementConstraints": [pinned]},
                overrides=params.get("overrides", {}),
                group=params.get("group") or f"family:{task_def['family']}",
                started_by=params.get("startedBy"),
                network_configuration=params.get("networkConfiguration"), tag_list=tag_list)
            started += docs
            failures += [f for f in misses if f.get("arn") == arn][:1]
    if started:
        app.store.desired_changed.bump()
    return {"tasks": started, "failures": failures}
