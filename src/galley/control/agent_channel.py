"""The channel agents use besides the ECS API: long-poll for desired tasks.

An agent finds the channel with ECS's DiscoverPollEndpoint (as Amazon's agent finds its ACS
endpoint), then long-polls `GalleyAgent_v1.PollTasks` there; polling doubles as its heartbeat
(agentConnected). State goes back through ECS's Submit* calls (control/state_changes.py).
"""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import select, update

from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters, tasks
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


def discover_poll_endpoint(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    """DiscoverPollEndpoint: the URL of the desired-state channel, which is this server.

    ECS answers three endpoints (agent communication, telemetry, Service Connect) and Amazon's
    agent treats a missing one as an error; Galley serves whatever it has of each on the one
    endpoint, so all three are that URL.
    """
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        ref = params.get("containerInstance")
        if ref:
            arn = scope.instance_arn_for(cluster["clusterName"], ref)
            row = conn.execute(select(s.container_instances.c.status).where(
                s.container_instances.c.arn == arn,
                s.container_instances.c.cluster_arn == cluster["clusterArn"])).first()
            if row is None or row.status == "INACTIVE":
                raise invalid_parameter("The referenced container instance was not found.")
    url = scope.endpoint or served_endpoint(app.settings.host, app.settings.port)
    return {"endpoint": url, "telemetryEndpoint": url, "serviceConnectEndpoint": url}


def served_endpoint(host: str, port: int) -> str:
    """The URL of the address the server listens on.

    DiscoverPollEndpoint answers the URL the client used (its Host header, `Scope.endpoint`);
    this is the fallback for a request without one.
    A wildcard address is no URL anyone can use: the host's name stands in for it, and
    `galley agent` falls back to the URL it was given when the answer does not connect.
    """
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def mark_disconnected(app: Galley, silent_since: float) -> int:
    """Show agents that have not polled since `silent_since` as disconnected (placement then
    reports AGENT for them); their next poll connects them again."""
    with app.store.write() as conn:
        result = conn.execute(update(s.container_instances).where(
            s.container_instances.c.agent_connected == 1,
            s.container_instances.c.last_seen < silent_since).values(agent_connected=0))
    return int(result.rowcount or 0)
