"""The host agent: makes Docker hold exactly the tasks the control plane wants here.

    loop:   desired tasks <- control plane (woken by a change, or every resync period)
            -> one TaskRunner per task (start / adopt / stop)
            -> sweep: remove containers of tasks that are gone, kill orphans
    events: one Docker event stream, filtered to this agent's label, routed to runners

Containers carry labels (agent id, task ARN, container name) so that a restarted agent finds
and re-adopts them rather than starting duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import docker
import docker.errors

from galley.agent import docker_config as dc
from galley.agent.control_plane import ControlPlane
from galley.agent.sandbox_image import ensure_sandbox_image
from galley.agent.sandbox_pool import SandboxPool
from galley.agent.task_runner import TaskRunner

log = logging.getLogger("galley.agent")


class Agent:
    """Runs the tasks the control plane assigns to `agent_id` on one Docker engine."""

    def __init__(self, control: ControlPlane, agent_id: str, *,
                 docker_client: docker.DockerClient | None = None,
                 resync_seconds: float = 5.0, container_retention: float = 600.0,
                 awsvpc_network: str = "bridge", sandbox_pool_size: int = 2) -> None:
        self.control = control
        self.agent_id = agent_id
        self.docker = docker_client or docker.from_env(max_pool_size=32)
        self.resync_seconds = resync_seconds
        self.container_retention = container_retention
        self.awsvpc_network = awsvpc_network
        self.sandbox_image = ""
        self.sandbox_pool = SandboxPool(self.docker, agent_id, awsvpc_network, sandbox_pool_size)
        self.runners: dict[str, TaskRunner] = {}
        self.finished: dict[str, float] = {}  # task ARN -> when its runner ended
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._label = f"{dc.LABEL_AGENT}={agent_id}"

    # ---- lifecycle ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Reconcile until `stop` is set. Containers are left running for the next start."""
        self._stop = stop or self._stop
        self.sandbox_image = ensure_sandbox_image(self.docker)
        self.sandbox_pool.start(self._stop, self.sandbox_image)
        events = threading.Thread(target=self._events_loop, daemon=True, name="docker-events")
        events.start()
        version = 0
        while not self._stop.is_set():
            try:
                self.reconcile(self.control.desired_tasks())
                version = self.control.wait_for_change(version, self.resync_seconds)
            except Exception:
                log.exception("agent loop failed; retrying in a second")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()

    # ---- reconcile ----------------------------------------------------------------------------

    def reconcile(self, desired: list[dict[str, Any]]) -> None:
        wanted = {t["taskArn"]: t for t in desired}
        with self._lock:
            for arn, task in wanted.items():
                runner = self.runners.get(arn)
                if runner is None:
                    runner = TaskRunner(self, task["spec"], task["desiredStatus"])
                    self.runners[arn] = runner
                    runner.start()
                else:
                    runner.set_desired(task["desiredStatus"])
            # A finished runner is forgotten once the control plane no longer lists its task.
            for arn in [a for a, r in self.runners.items() if r.done.is_set() and a not in wanted]:
                del self.runners[arn]
        self._sweep(set(wanted))

    def task_finished(self, runner: TaskRunner) -> None:
        self.finished[runner.arn] = time.time()

    def _sweep(self, wanted: set[str]) -> None:
        """Remove what belongs to no live task: expired stopped containers, orphans, volumes."""
        now = time.time()
        keep = wanted | set(self.runners) | {
            arn for arn, at in self.finished.items() if now - at < self.container_retention}
        for arn in [a for a, at in self.finished.items() if now - at >= self.container_retention]:
            del self.finished[arn]
        sandbox_names = {"/" + dc.sandbox_name(r.spec) for r in self.runners.values()}
        for summary in self.docker.api.containers(all=True, filters={"label": self._label}):
            labels = summary.get("Labels") or {}
            names = set(summary.get("Names") or [])
            if labels.get(dc.LABEL_TASK) in keep or names & sandbox_names:
                continue
            if any(map(self.sandbox_pool.owns, names)):
                continue
            try:
                self.docker.api.remove_container(summary["Id"], force=True, v=False)
            except docker.errors.APIError:
                log.debug("could not remove %s", summary["Id"])
        for volume in self.docker.api.volumes(filters={"label": self._label}).get("Volumes") or []:
            if (volume.get("Labels") or {}).get(dc.LABEL_TASK) not in keep:
                try:
                    self.docker.api.remove_volume(volume["Name"])
                except docker.errors.APIError:
                    pass  # still in use by a container being removed; next sweep

    # ---- Docker events ------------------------------------------------------------------------

    def _events_loop(self) -> None:
        client = docker.from_env(timeout=None)
        while not self._stop.is_set():
            try:
                stream = client.events(decode=True, filters={"type": "container",
                                                             "label": self._label})
                # Anything that happened while the stream was down is caught by a resync.
                for runner in list(self.runners.values()):
                    runner.resync()
                for event in stream:
                    arn = event.get("Actor", {}).get("Attributes", {}).get(dc.LABEL_TASK)
                    runner = self.runners.get(arn or "")
                    if runner is not None:
                        runner.on_docker_event(event)
                    if self._stop.is_set():
                        break
            except Exception:
                log.warning("Docker event stream broke; reconnecting", exc_info=True)
                time.sleep(1)
