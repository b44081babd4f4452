"""One task's life on this host: a small state machine in its own thread.

    start:  images present? -> sandbox (awsvpc) -> volumes -> create containers
            -> start them in dependsOn waves (independent ones together) -> report RUNNING
    watch:  Docker events: a container dies (essential -> stop the task), health changes,
            the control plane sets desiredStatus STOPPED
    stop:   stop in reverse dependency waves, each container with its stopTimeout
            -> remove the sandbox -> report STOPPED with exit codes and the reason

Every step looks at what Docker already has first, so an agent restarted mid-way re-adopts the
task's containers instead of starting duplicates.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import docker.errors

from galley.agent import docker_config as dc

if TYPE_CHECKING:
    from galley.agent.agent import Agent

log = logging.getLogger("galley.agent")

ESSENTIAL_EXITED = "Essential container in task exited"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


T = TypeVar("T")


def in_parallel(fn: Callable[[T], Any], items: Sequence[T]) -> None:
    """Run fn over items at once; re-raise the first error. Daemon threads, so a Galley that is
    shutting down never waits for a container that is still starting or stopping."""
    errors: list[BaseException] = []

    def run(item: T) -> None:
        try:
            fn(item)
        except BaseException as e:  # handed to the caller below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items[1:]]
    for thread in threads:
        thread.start()
    if items:
        run(items[0])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class StartFailure(Exception):
    """The task cannot start; `reason` becomes its stoppedReason (stopCode TaskFailedToStart)."""

    def __init__(self, reason: str, container: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.container = container


@dataclass
class ContainerState:
    name: str
    definition: dict[str, Any]
    id: str | None = None
    status: str = "PENDING"  # PENDING | RUNNING | STOPPED, as ECS shows containers
    started: bool = False
    exit_code: int | None = None
    reason: str | None = None
    health: str = "UNKNOWN"
    bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def essential(self) -> bool:
        return bool(self.definition.get("essential", True))

    def change(self) -> dict[str, Any]:
        """This container as a report entry."""
        out: dict[str, Any] = {"name": self.name, "lastStatus": self.status,
                               "healthStatus": self.health, "networkBindings": self.bindings}
        if self.id:
            out["runtimeId"] = self.id
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.reason:
            out["reason"] = self.reason
        return out


class TaskRunner:
    """Drives one task toward its desired status and reports what happens."""

    def __init__(self, agent: Agent, spec: dict[str, Any], desired: str) -> None:
        self.agent = agent
        self.docker = agent.docker
        self.spec = dc.TaskSpec.from_dict(spec)
        self.arn = self.spec.task_arn
        self.desired = desired
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.containers = {c["name"]: ContainerState(c["name"], c) for c in self.spec.containers}
        self.sandbox_id: str | None = None
        self.stop_reason: str | None = None
        self.stop_code: str | None = None
        self.execution_stopped_at: float | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"task-{self.spec.task_id[:8]}")

    # ---- inputs from the agent --------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def set_desired(self, desired: str) -> None:
        if desired != self.desired:
            self.desired = desired
            self.events.put(("desired", desired))

    def on_docker_event(self, event: dict[str, Any]) -> None:
        self.events.put(("docker", event))

    def resync(self) -> None:
        self.events.put(("resync", None))

    # ---- the life of the task ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._adopt()
            if self._should_run():
                self._start()
                # A container can exit while its task starts (an inspect after the start saw
                # it); its die event then changes nothing, so act on it here.
                for state in self.containers.values():
                    if state.status == "STOPPED" and state.started:
                        self._after_change(state)
            if self._should_run():
                self._report({"lastStatus": "RUNNING",
                              "containers": [c.change() for c in self.containers.values()]})
                self._watch()
        except StartFailure as failure:
            self._set_stop(failure.reason, "TaskFailedToStart")
            if failure.container and failure.container in self.containers:
                self.containers[failure.container].reason = failure.reason
        except Exception as e:  # a runtime fault must still end in a reported STOPPED task
            log.exception("task %s failed", self.arn)
            self._set_stop(f"ContainerRuntimeError: {e}", "TaskFailedToStart")
        try:
            self._teardown()
        except Exception:
            log.exception("teardown of %s failed", self.arn)
        finally:
            self.done.set()

    def _should_run(self) -> bool:
        return self.desired == "RUNNING" and self.stop_reason is None

    def _set_stop(self, reason: str, code: str) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_code = reason, code
            # Execution stopped now (an essential exit, a failed start), not after the teardown.
            self.execution_stopped_at = time.time()

    def _report(self, report: dict[str, Any]) -> None:
        self.agent.control.report({"taskArn": self.arn, **report})

    # ---- adoption ---------------------------------------------------------------------------

    def _adopt(self) -> None:
        """Take over whatever Docker already holds for this task (after an agent restart)."""
        existing = self.docker.api.containers(
            all=True, filters={"label": f"{dc.LABEL_TASK}={self.arn}"})
        for summary in existing:
            labels = summary.get("Labels") or {}
            if labels.get(dc.LABEL_ROLE) == dc.ROLE_SANDBOX:
                self.sandbox_id = summary["Id"]
                continue
            state = self.containers.get(labels.get(dc.LABEL_CONTAINER, ""))
            if state is not None:
                state.id = summary["Id"]
                self._refresh(state)
        if self.sandbox_id is None and self.spec.network_mode == "awsvpc":
            try:  # a sandbox that came from the pool carries the task's name, not its labels
                self.sandbox_id = self.docker.api.inspect_container(
                    dc.sandbox_name(self.spec))["Id"]
            except docker.errors.NotFound:
                pass
        for state in self.containers.values():
            if state.status == "STOPPED" and state.essential and state.started:
                self._set_stop(ESSENTIAL_EXITED, "EssentialContainerExited")

    def _refresh(self, state: ContainerState) -> None:
        """Read a container's state from Docker (status, exit code, OOM, health, bindings)."""
        assert state.id is not None
        try:
            info = self.docker.api.inspect_container(state.id)
        except docker.errors.NotFound:
            if state.started:
                state.status = "STOPPED"
            return
        st = info["State"]
        if st.get("Running"):
            state.status, state.started = "RUNNING", True
            state.bindings = self._bindings(info, state)
        elif st.get("Status") in ("exited", "dead"):
            state.status, state.started = "STOPPED", True
            state.exit_code = st.get("ExitCode")
            if st.get("OOMKilled"):
                state.reason = OOM_REASON
        health = (st.get("Health") or {}).get("Status")
        if health in ("healthy", "unhealthy"):
            state.health = health.upper()

    def _bindings(self, info: dict[str, Any], state: ContainerState) -> list[dict[str, Any]]:
        if self.spec.network_mode == "host":
            return [{"bindIP": "0.0.0.0", "containerPort": p["containerPort"],
                     "hostPort": p.get("hostPort", p["containerPort"]),
                     "protocol": p.get("protocol", "tcp")}
                    for p in state.definition.get("portMappings", [])]
        if self.spec.network_mode != "bridge":
            return []
        out = []
        for key, binds in (info["NetworkSettings"].get("Ports") or {}).items():
            port, _, proto = key.partition("/")
            for b in binds or []:
                if ":" in b.get("HostIp", ""):
                    continue  # ECS reports the IPv4 binding
                out.append({"bindIP": b.get("HostIp") or "0.0.0.0", "containerPort": int(port),
                            "hostPort": int(b["HostPort"]), "protocol": proto or "tcp"})
        return out

    # ---- start ------------------------------------------------------------------------------

    def _start(self) -> None:
        report: dict[str, Any] = {"pullStartedAt": time.time()}
        self._ensure_images()
        report["pullStoppedAt"] = time.time()
        self._ensure_volumes()
        if self.spec.network_mode == "awsvpc":
            self.sandbox_id = self.sandbox_id or self._pooled_sandbox() or \
                self._create(self._sandbox_kwargs())
            # The sandbox starts while the task's containers are created (they only need its id).
            steps: list[Callable[[], Any]] = [
                lambda: report.update(self._start_sandbox()), self._create_containers]
            in_parallel(lambda step: step(), steps)
        else:
            self._create_containers()
        self._report({"lastStatus": "PENDING", **report})
        self._start_in_waves()

    def _ensure_images(self) -> None:
        for image in dict.fromkeys(c["image"] for c in self.spec.containers):
            try:
                self.docker.api.inspect_image(image)
                continue
            except docker.errors.ImageNotFound:
                pass
            try:
                repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] \
                    else (image, "", "latest")
                self.docker.api.pull(repo, tag=tag)
                self.docker.api.inspect_image(image)
            except (docker.errors.APIError, docker.errors.ImageNotFound) as e:
                msg = getattr(e, "explanation", None) or str(e)
                raise StartFailure(
                    f"CannotPullContainerError: pull image manifest has been retried 1 time(s): "
                    f"failed to resolve ref {image}: {msg}") from None

    def _sandbox_kwargs(self) -> dict[str, Any]:
        return dc.sandbox_kwargs(self.spec, agent_id=self.agent.agent_id,
                                 image=self.agent.sandbox_image,
                                 network=self.agent.awsvpc_network)

    def _pooled_sandbox(self) -> str | None:
        # A shareable IPC namespace (ipcMode task) must be asked for when the sandbox is made.
        if self.spec.ipc_mode == "task":
            return None
        return self.agent.sandbox_pool.take(dc.sandbox_name(self.spec))

    def _start_sandbox(self) -> dict[str, Any]:
        """Start the container holding the task's network namespace; its address is the ENI."""
        assert self.sandbox_id is not None
        info = self.docker.api.inspect_container(self.sandbox_id)
        if not info["State"].get("Running"):
            self.docker.api.start(self.sandbox_id)
            info = self.docker.api.inspect_container(self.sandbox_id)
        net = next(iter(info["NetworkSettings"]["Networks"].values()))
        ip = net["IPAddress"]
        return {
            "connectivity": "CONNECTED",
            "connectivityAt": time.time(),
            "attachment": {"status": "ATTACHED", "details": {
                "networkInterfaceId": "eni-" + self.spec.task_id[:17],
                "macAddress": net.get("MacAddress", ""),
                "privateDnsName": f"ip-{ip.replace('.', '-')}.ec2.internal",
                "privateIPv4Address": ip,
            }},
        }

    def _create(self, kwargs: dict[str, Any]) -> str:
        """Create a container from SDK-style kwargs; reuse one left by a previous agent run."""
        try:
            return str(self.docker.containers.create(**kwargs).id)
        except docker.errors.APIError as e:
            if e.status_code == 409:  # name taken: our own container from before a restart
                return str(self.docker.api.inspect_container(kwargs["name"])["Id"])
            raise

    def _ensure_volumes(self) -> None:
        for plan in dc.volume_plan(self.spec, agent_id=self.agent.agent_id):
            try:
                self.docker.api.inspect_volume(plan.name)
            except docker.errors.NotFound:
                try:
                    self.docker.api.create_volume(plan.name, driver=plan.driver,
                                                  driver_opts=plan.driver_opts or None,
                                                  labels=plan.labels or None)
                except docker.errors.APIError as e:
                    raise StartFailure(f"CannotCreateVolumeError: {e.explanation}") from None

    def _create_containers(self) -> None:
        """Create every container not created yet; independent creates run together."""
        order = dc.dependency_order(self.spec.containers)
        missing = [self.containers[name] for name in order if self.containers[name].id is None]

        def create(state: ContainerState) -> None:
            kwargs = dc.create_kwargs(self.spec, state.definition, agent_id=self.agent.agent_id,
                                      sandbox_id=self.sandbox_id)
            try:
                state.id = self._create(kwargs)
            except docker.errors.APIError as e:
                raise StartFailure(f"CannotCreateContainerError: {e.explanation}",
                                   state.name) from None

        # links and volumesFrom need their target to exist first: create those in order.
        needs_order = any(c.get("links") or c.get("volumesFrom") for c in self.spec.containers)
        if needs_order or len(missing) < 2:
            for state in missing:
                create(state)
            return
        in_parallel(create, missing)

    def _start_in_waves(self) -> None:
        began = time.monotonic()
        while self._should_run():
            waiting = [s for s in self.containers.values() if not s.started]
            if not waiting:
                return
            ready = [s for s in waiting if self._dependencies_met(s, began)]
            if ready:
                self._start_containers(ready)
                continue
            self._pump(timeout=0.5)

    def _dependencies_met(self, state: ContainerState, began: float) -> bool:
        # A link is resolved (into /etc/hosts) when the linking container starts, so its target
        # must already be running: links order starts like dependsOn START.
        met = all(self.containers[link.split(":")[0]].started
                  for link in state.definition.get("links", []))
        for dep in state.definition.get("dependsOn", []):
            other = self.containers[dep["containerName"]]
            condition = dep["condition"]
            if condition == "START":
                ok = other.started
            elif condition == "COMPLETE":
                ok = other.status == "STOPPED"
            elif condition == "SUCCESS":
                ok = other.status == "STOPPED" and other.exit_code == 0
                if other.status == "STOPPED" and other.exit_code != 0:
                    raise StartFailure(
                        f"CannotStartContainerError: dependency {other.name} exited with code "
                        f"{other.exit_code}; condition SUCCESS of container {state.name} cannot "
                        "be met", state.name)
            else:  # HEALTHY
                ok = other.health == "HEALTHY"
                if other.status == "STOPPED":
                    raise StartFailure(
                        f"CannotStartContainerError: dependency {other.name} stopped before it "
                        f"became HEALTHY; container {state.name} cannot start", state.name)
            met = met and ok
        timeout = state.definition.get("startTimeout")
        if not met and timeout is not None and time.monotonic() - began > timeout:
            raise StartFailure(
                f"ContainerRuntimeTimeoutError: Could not transition to started; timed out after "
                f"waiting {timeout}s for the dependencies of container {state.name}", state.name)
        return met

    def _start_containers(self, ready: list[ContainerState]) -> None:
        def start_one(state: ContainerState) -> None:
            assert state.id is not None
            try:
                self.docker.api.start(state.id)
            except docker.errors.APIError as e:
                raise StartFailure(f"CannotStartContainerError: {e.explanation}",
                                   state.name) from None
            state.started = True
            state.status = "RUNNING"
            if self.spec.network_mode in ("bridge", "host"):
                self._refresh(state)

        in_parallel(start_one, ready)

    # ---- watch ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while self._should_run():
            self._pump(timeout=self.agent.resync_seconds)

    def _pump(self, timeout: float) -> None:
        """Handle one input (or resync after `timeout` of silence)."""
        try:
            kind, payload = self.events.get(timeout=timeout)
        except queue.Empty:
            kind, payload = "resync", None
        if kind == "docker":
            self._on_docker(payload)
        elif kind == "resync":
            for state in self.containers.values():
                if state.status == "RUNNING":
                    before = state.change()
                    self._refresh(state)
                    if state.change() != before:
                        self._after_change(state)

    def _on_docker(self, event: dict[str, Any]) -> None:
        attrs = event.get("Actor", {}).get("Attributes", {})
        state = self.containers.get(attrs.get(dc.LABEL_CONTAINER, ""))
        if state is None or event.get("id") != state.id:
            return
        action = event.get("Action") or event.get("status") or ""
        if action == "die" and state.status != "STOPPED":
            self._refresh(state)
            if state.status != "STOPPED":  # inspect raced the exit; trust the event
                state.status, state.started = "STOPPED", True
                state.exit_code = int(attrs.get("exitCode", -1))
            self._after_change(state)
        elif action.startswith("health_status"):
            new = "HEALTHY" if action.endswith("healthy") and "unhealthy" not in action \
                else "UNHEALTHY"
            if new != state.health:
                state.health = new
                self._after_change(state)

    def _after_change(self, state: ContainerState) -> None:
        if state.status == "STOPPED" and state.essential:
            self._set_stop(ESSENTIAL_EXITED, "EssentialContainerExited")
        self._report({"containers": [state.change()]})

    # ---- stop -------------------------------------------------------------------------------

    def _teardown(self) -> None:
        self._report({"lastStatus": "STOPPING", **self._reason()})
        for wave in self._stop_waves():
            self._stop_containers(wave)
        for state in self.containers.values():
            if state.id is not None and state.started:
                self._refresh(state)
            if state.status != "STOPPED":
                state.status = "STOPPED"
        final: dict[str, Any] = {"lastStatus": "STOPPED", "executionStoppedAt": time.time(),
                                 "containers": [c.change() for c in self.containers.values()]}
        final.update(self._reason())
        if self.sandbox_id is not None:
            self._report({"lastStatus": "DEPROVISIONING"})
            try:
                self.docker.api.remove_container(self.sandbox_id, force=True)
            except docker.errors.NotFound:
                pass
            final["attachment"] = {"status": "DELETED"}
        self._report(final)
        self.agent.task_finished(self)

    def _reason(self) -> dict[str, Any]:
        if self.stop_reason is None:
            return {}
        return {"stoppedReason": self.stop_reason, "stopCode": self.stop_code,
                "executionStoppedAt": self.execution_stopped_at}

    def _stop_waves(self) -> list[list[ContainerState]]:
        """Containers grouped so that dependents stop before what they depend on."""
        order = dc.stop_order(self.spec.containers)
        level: dict[str, int] = {}
        for name in order:
            # A container stops in the wave after every container that depends on it.
            dependents = [c["name"] for c in self.spec.containers
                          if any(d["containerName"] == name for d in c.get("dependsOn", []))
                          or any(link.split(":")[0] == name for link in c.get("links", []))]
            level[name] = 1 + max((level.get(d, 0) for d in dependents), default=-1)
        waves: dict[int, list[ContainerState]] = {}
        for name, lvl in level.items():
            waves.setdefault(lvl, []).append(self.containers[name])
        return [waves[k] for k in sorted(waves)]

    def _stop_containers(self, wave: list[ContainerState]) -> None:
        running = [s for s in wave if s.id is not None and s.status == "RUNNING"]

        def stop_one(state: ContainerState) -> None:
            assert state.id is not None
            try:
                self.docker.api.stop(state.id, timeout=dc.stop_timeout(state.definition))
            except docker.errors.NotFound:
                pass

        in_parallel(stop_one, running)
