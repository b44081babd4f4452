"""Warm awsvpc sandboxes: started ahead of time so a task's network namespace is ready at once.

Starting the sandbox is the slowest step of an awsvpc task (a container start plus its network
setup). The pool keeps a few started, unassigned sandboxes; a task takes one, which is renamed
to the task's sandbox name (that name is how a restarted agent finds it again), and the pool
refills itself in the background once the burst of starts is over.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

import docker
import docker.errors

from galley.agent import docker_config as dc

log = logging.getLogger("galley.agent")

ROLE_POOLED = "sandbox-pool"
REFILL_DELAY = 1.0  # seconds of quiet after the last take before refilling


class SandboxPool:
    def __init__(self, client: docker.DockerClient, agent_id: str, network: str,
                 size: int) -> None:
        self.docker = client
        self.agent_id = agent_id
        self.image = ""  # known once the agent has ensured the sandbox image (start)
        self.network = network
        self.size = size
        self.prefix = f"galley-pool-{agent_id}-"
        self._ready: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._last_take = 0.0

    def start(self, stop: threading.Event, image: str) -> None:
        self.image = image
        if self.size <= 0:
            return
        self._adopt()
        threading.Thread(target=self._refill_loop, args=(stop,), daemon=True,
                         name="sandbox-pool").start()
        self._wake.set()

    def owns(self, name: str) -> bool:
        """True for a pooled sandbox not yet given to a task (the sweep leaves those alone)."""
        return name.lstrip("/").startswith(self.prefix)

    def take(self, name: str) -> str | None:
        """A started sandbox renamed to `name`, or None when the pool is empty."""
        while True:
            with self._lock:
                if not self._ready:
                    return None
                sandbox_id = self._ready.pop()
                self._last_take = time.monotonic()
            self._wake.set()
            try:
                self.docker.api.rename(sandbox_id, name)
                return sandbox_id
            except docker.errors.APIError:
                log.info("pooled sandbox %s unusable; discarding it", sandbox_id[:12])
                self._discard(sandbox_id)

    def _adopt(self) -> None:
        """Keep the started pooled sandboxes a previous run left; remove the rest."""
        label = f"{dc.LABEL_AGENT}={self.agent_id}"
        for summary in self.docker.api.containers(all=True, filters={"label": label}):
            labels = summary.get("Labels") or {}
            names = summary.get("Names") or []
            if labels.get(dc.LABEL_ROLE) != ROLE_POOLED or not any(map(self.owns, names)):
                continue
            if summary.get("State") == "running" and len(self._ready) < self.size:
                self._ready.append(summary["Id"])
            else:
                self._discard(summary["Id"])

    def _refill_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(timeout=30)
            self._wake.clear()
            # Let a burst of task starts have the engine first.
            while time.monotonic() - self._last_take < REFILL_DELAY and not stop.is_set():
                stop.wait(REFILL_DELAY)
            while not stop.is_set() and len(self._ready) < self.size:
                try:
                    sandbox_id = self._create()
                except Exception:
                    log.warning("could not start a pooled sandbox", exc_info=True)
                    break
                with self._lock:
                    self._ready.append(sandbox_id)

    def _create(self) -> str:
        labels = {dc.LABEL_AGENT: self.agent_id, dc.LABEL_ROLE: ROLE_POOLED}
        container: Any = self.docker.containers.create(
            self.image, name=self.prefix + secrets.token_hex(4), labels=labels,
            network=self.network, detach=True)
        try:
            container.start()
        except docker.errors.APIError:
            self._discard(container.id)
            raise
        return str(container.id)

    def _discard(self, sandbox_id: str) -> None:
        try:
            self.docker.api.remove_container(sandbox_id, force=True)
        except docker.errors.APIError:
            pass
