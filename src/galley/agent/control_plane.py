"""How an agent talks to the control plane: read desired tasks, report what happened.

The built-in FARGATE agent of `galley up` uses `LocalControlPlane` (same process, no network:
reports go straight to `tasks.apply_agent_report`); a remote `galley agent` uses the same
interface over the ECS API (`agent.remote`: DiscoverPollEndpoint, SubmitTaskStateChange,
SubmitContainerStateChange, plus Galley's desired-state channel).
"""

from __future__ import annotations

from typing import Any, Protocol

from galley.app import Galley
from galley.control import tasks


class ControlPlane(Protocol):
    def desired_tasks(self) -> list[dict[str, Any]]:
        """Tasks this agent must run or tear down: {taskArn, desiredStatus, spec}."""
        ...

    def report(self, report: dict[str, Any]) -> None:
        """Record a task's observed state (see control.task_docs.apply_report)."""
        ...

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until desired state may have changed, or timeout; return a version to pass on."""
        ...


class LocalControlPlane:
    """The control plane in this process, for the built-in agent."""

    def __init__(self, app: Galley, agent_id: str) -> None:
        self.app = app
        self.agent_id = agent_id

    def desired_tasks(self) -> list[dict[str, Any]]:
        return tasks.desired_for_agent(self.app, self.agent_id)

    def report(self, report: dict[str, Any]) -> None:
        tasks.apply_agent_report(self.app, report)

    def wait_for_change(self, since: int, timeout: float) -> int:
        return self.app.store.desired_changed.wait(since, timeout)
