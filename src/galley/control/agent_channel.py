"""The channel agents use besides the ECS API: long-poll for desired tasks, report state.

An agent is a container instance; polling doubles as its heartbeat (agentConnected).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from galley.app import Galley
from galley.arns import Scope
from galley.control import tasks
from galley.control.common import now
from galley.errors import invalid_parameter
from galley.store import schema as s

MAX_WAIT_SECONDS = 20.0


def heartbeat(app: Galley, instance_arn: str) -> None:
    with app.store.write() as conn:
        row = conn.execute(select(s.container_instances.c.status).where(
            s.container_instances.c.arn == instance_arn)).first()
        if row is None or row.status == "INACTIVE":
            raise invalid_parameter("The container instance is not registered (or was "
                                    "deregistered); register it again.")
        conn.execute(update(s.container_instances).where(
            s.container_instances.c.arn == instance_arn).values(last_seen=now(),
                                                                agent_connected=1))


def poll_tasks(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    """Tasks for the instance; waits up to waitSeconds while nothing changed since `version`."""
    arn = params["containerInstanceArn"]
    heartbeat(app, arn)
    signal = app.store.desired_changed
    wait = min(float(params.get("waitSeconds", 0)), MAX_WAIT_SECONDS)
    if wait > 0 and params.get("version") == signal.version:
        signal.wait(params["version"], wait)
    version = signal.version  # read before the tasks, so a later change wakes the next poll
    return {"version": version, "tasks": tasks.desired_for_agent(app, arn)}


def report_task_state(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    report = params["report"]
    row = None
    with app.store.read() as conn:
        row = conn.execute(select(s.tasks.c.agent_id).where(
            s.tasks.c.arn == report.get("taskArn"))).first()
    if row is None or row.agent_id != params["containerInstanceArn"]:
        raise invalid_parameter("The task is not assigned to this container instance.")
    tasks.apply_agent_report(app, report)
    return {}


def mark_disconnected(app: Galley, silent_since: float) -> int:
    """Show agents that have not polled since `silent_since` as disconnected (placement then
    reports AGENT for them); their next poll connects them again."""
    with app.store.write() as conn:
        result = conn.execute(update(s.container_instances).where(
            s.container_instances.c.agent_connected == 1,
            s.container_instances.c.last_seen < silent_since).values(agent_connected=0))
    return int(result.rowcount or 0)
