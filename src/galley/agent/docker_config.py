"""Map an ECS task and its container definitions to Docker SDK create arguments.

Pure: nothing here talks to Docker. The agent feeds `create_kwargs(...)` to
`client.containers.create(**kwargs)` (the container is created, not started), creates the volumes
listed by `volume_plan(...)` beforehand, starts containers in `dependency_order(...)` and stops them
in `stop_order(...)`.

Two Docker facts shape the mapping (both checked against dockerd 20.10 and docker SDK 7.1.0):

* The SDK's high-level `containers.create()` rejects `stop_timeout` (it is not in its kwarg
  whitelist), so `create_kwargs` leaves it out; the agent passes `stop_timeout(container)` to
  `container.stop(timeout=...)` instead.
* A container joining another's network namespace (`awsvpc`) may not carry a hostname, DNS servers,
  extra hosts or published ports (the engine answers 400 "conflicting options"), and a container
  joining a sandbox's IPC namespace needs the sandbox to be created with `ipc_mode="shareable"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from docker.types import Ulimit

__all__ = [
    "AMAZON_LABEL_CLUSTER",
    "AMAZON_LABEL_CONTAINER",
    "AMAZON_LABEL_FAMILY",
    "AMAZON_LABEL_TASK",
    "AMAZON_LABEL_VERSION",
    "DEFAULT_STOP_TIMEOUT",
    "LABEL_AGENT",
    "LABEL_CONTAINER",
    "LABEL_ROLE",
    "LABEL_TASK",
    "LABEL_VOLUME",
    "MINIMUM_CPU_SHARES",
    "ROLE_APP",
    "ROLE_SANDBOX",
    "SANDBOX_CONTAINER_NAME",
    "TaskSpec",
    "VolumePlan",
    "container_name",
    "cpu_shares",
    "create_kwargs",
    "dependency_order",
    "labels_for",
    "sandbox_kwargs",
    "sandbox_name",
    "stop_order",
    "stop_timeout",
    "task_volume_name",
    "volume_plan",
]

LABEL_AGENT = "galley.agent"
"""Label: id of the agent that owns the container or volume."""
LABEL_TASK = "galley.task-arn"
"""Label: ARN of the task the container or task-scoped volume belongs to."""
LABEL_CONTAINER = "galley.container-name"
"""Label: the ECS container name (absent on the sandbox)."""
LABEL_ROLE = "galley.role"
"""Label: `ROLE_APP` for task containers, `ROLE_SANDBOX` for the awsvpc sandbox."""
LABEL_VOLUME = "galley.volume-name"
"""Label on task-scoped docker volumes: the task definition's volume name."""

ROLE_APP = "app"
ROLE_SANDBOX = "sandbox"

AMAZON_LABEL_TASK = "com.amazonaws.ecs.task-arn"
AMAZON_LABEL_CONTAINER = "com.amazonaws.ecs.container-name"
AMAZON_LABEL_CLUSTER = "com.amazonaws.ecs.cluster"
AMAZON_LABEL_FAMILY = "com.amazonaws.ecs.task-definition-family"
AMAZON_LABEL_VERSION = "com.amazonaws.ecs.task-definition-version"

SANDBOX_CONTAINER_NAME = "~internal~ecs~pause"
"""`com.amazonaws.ecs.container-name` of the sandbox, as ECS labels its pause container."""

DEFAULT_STOP_TIMEOUT = 30
"""Seconds between SIGTERM and SIGKILL when a container has no `stopTimeout`."""

MINIMUM_CPU_SHARES = 2
"""The ECS agent raises container `cpu` 0 or 1 (or absent) to 2 shares: docker reads 0 as 1024."""

_NS = 1_000_000_000
_HEALTH_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}
_DEVICE_PERMS = {"read": "r", "write": "w", "mknod": "m"}
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")
# sysctls that live in the IPC namespace (rejected by runc when the container uses the host's).
_IPC_SYSCTL = re.compile(r"^(kernel\.(msg|sem|shm)|fs\.mqueue\.)")


# ----------------------------------------------------------------------------------------------
# Task spec
# ----------------------------------------------------------------------------------------------


def _units(value: Any) -> int | None:
    """Task cpu/memory as the control plane hands them over: an int (or its string), or absent.

    Units such as "1 vCPU" are normalised at registration (control.taskdef_units), never here.
    """
    return None if value is None or value == "" else int(value)


@dataclass(frozen=True)
class TaskSpec:
    """What the agent knows about one task when creating its containers."""

    task_arn: str
    task_id: str
    cluster_arn: str
    family: str
    revision: int
    network_mode: str
    launch_type: str
    containers: list[dict]
    volumes: list[dict]
    cpu: int | None = None
    memory: int | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        """Build from camelCase keys; taskId defaults to the last segment of taskArn."""
        task_arn = d["taskArn"]
        family = d.get("family")
        revision = d.get("revision")
        if (family is None or revision is None) and d.get("taskDefinitionArn"):
            tail = d["taskDefinitionArn"].rsplit("/", 1)[-1]
            fam, _, rev = tail.rpartition(":")
            family = family if family is not None else fam
            revision = revision if revision is not None else rev
        return cls(
            task_arn=task_arn,
            task_id=d.get("taskId") or task_arn.rsplit("/", 1)[-1],
            cluster_arn=d.get("clusterArn", ""),
            family=family or "",
            revision=int(revision or 0),
            network_mode=d.get("networkMode") or "bridge",
            launch_type=d.get("launchType") or "EC2",
            containers=list(d.get("containers") or d.get("containerDefinitions") or []),
            volumes=list(d.get("volumes") or []),
            cpu=_units(d.get("cpu")),
            memory=_units(d.get("memory")),
            pid_mode=d.get("pidMode") or None,
            ipc_mode=d.get("ipcMode") or None,
        )

    def container(self, name: str) -> dict:
        """The container definition called `name` (KeyError if none)."""
        for c in self.containers:
            if c.get("name") == name:
                return c
        raise KeyError(name)

    def volume(self, name: str) -> dict:
        """The task definition volume called `name` (KeyError if none)."""
        for v in self.volumes:
            if v.get("name") == name:
                return v
        raise KeyError(name)


# ----------------------------------------------------------------------------------------------
# Names and labels
# ----------------------------------------------------------------------------------------------


def _sanitise(name: str) -> str:
    """Fit a name to docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`."""
    return _NAME_BAD.sub("-", name)


def container_name(spec: TaskSpec, container: str) -> str:
    """Docker name of an ECS container: `galley-<task_id[:12]>-<container>`."""
    return _sanitise(f"galley-{spec.task_id[:12]}-{container}")


def sandbox_name(spec: TaskSpec) -> str:
    """Docker name of the task's sandbox: `galley-<task_id[:12]>-sandbox`."""
    return _sanitise(f"galley-{spec.task_id[:12]}-sandbox")


def task_volume_name(spec: TaskSpec, volume: str) -> str:
    """Docker volume name for a task-scoped volume: `galley-<task_id>-<volume>`.

    The whole task id is used (not 12 characters) since a collision would make one task's cleanup
    delete another task's data.
    """
    return _sanitise(f"galley-{spec.task_id}-{volume}")


def _amazon_labels(spec: TaskSpec, container: str) -> dict[str, str]:
    return {
        AMAZON_LABEL_TASK: spec.task_arn,
        AMAZON_LABEL_CONTAINER: container,
        AMAZON_LABEL_CLUSTER: spec.cluster_arn,
        AMAZON_LABEL_FAMILY: spec.family,
        AMAZON_LABEL_VERSION: str(spec.revision),
    }


def labels_for(spec: TaskSpec, container: dict, agent_id: str) -> dict[str, str]:
    """User dockerLabels, then galley.* and com.amazonaws.ecs.* labels (which win on clashes)."""
    labels = {str(k): str(v) for k, v in (container.get("dockerLabels") or {}).items()}
    labels.update(
        {
            LABEL_AGENT: agent_id,
            LABEL_TASK: spec.task_arn,
            LABEL_CONTAINER: container["name"],
            LABEL_ROLE: ROLE_APP,
        }
    )
    labels.update(_amazon_labels(spec, container["name"]))
    return labels


# ----------------------------------------------------------------------------------------------
# Volumes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumePlan:
    """A docker volume the agent must make before creating the task's containers.

    `scope` "task": create it, remove it when the task stops. `scope` "shared": create it only if
    no volume of that name exists (autoprovision), never remove it.
    """

    name: str
    driver: str
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    scope: str = "task"
    volume: str = ""
    """The task definition's volume name."""


def _volume_kind(volume: dict) -> str:
    """Classify an ECS task definition volume: "bind", "task" or "shared"."""
    dvc = volume.get("dockerVolumeConfiguration")
    if dvc is not None:
        return "shared" if (dvc.get("scope") or "task") == "shared" else "task"
    for unsupported in ("efsVolumeConfiguration", "fsxWindowsFileServerVolumeConfiguration"):
        if volume.get(unsupported):
            raise ValueError(f"volume {volume.get('name')!r}: {unsupported} is not supported")
    host = volume.get("host") or {}
    return "bind" if host.get("sourcePath") else "task"


def volume_plan(spec: TaskSpec, *, agent_id: str | None = None) -> list[VolumePlan]:
    """Docker volumes to create for the task, in declaration order.

    Task-scoped: host volumes without sourcePath, and dockerVolumeConfiguration with scope task
    (named `task_volume_name`, labelled with the task). Shared: dockerVolumeConfiguration with scope
    shared and autoprovision true (named as declared, user labels only). Bind mounts and shared
    volumes without autoprovision need nothing.
    """
    plans: list[VolumePlan] = []
    for volume in spec.volumes:
        name = volume["name"]
        kind = _volume_kind(volume)
        dvc = volume.get("dockerVolumeConfiguration") or {}
        user_labels = {str(k): str(v) for k, v in (dvc.get("labels") or {}).items()}
        driver = dvc.get("driver") or "local"
        opts = {str(k): str(v) for k, v in (dvc.get("driverOpts") or {}).items()}
        if kind == "task":
            labels = dict(user_labels)
            labels.update({LABEL_TASK: spec.task_arn, LABEL_VOLUME: name})
            if agent_id is not None:
                labels[LABEL_AGENT] = agent_id
            plans.append(
                VolumePlan(task_volume_name(spec, name), driver, opts, labels, "task", name)
            )
        elif kind == "shared" and dvc.get("autoprovision"):
            plans.append(VolumePlan(name, driver, opts, user_labels, "shared", name))
    return plans


def _volume_source(spec: TaskSpec, volume: dict) -> str:
    """The bind source for an ECS volume: host path, task volume name, or shared volume name."""
    kind = _volume_kind(volume)
    if kind == "bind":
        return volume["host"]["sourcePath"]
    if kind == "task":
        return task_volume_name(spec, volume["name"])
    return volume["name"]


# ----------------------------------------------------------------------------------------------
# Container create arguments
# ----------------------------------------------------------------------------------------------


def cpu_shares(container: dict) -> int:
    """Docker cpu shares for an ECS container `cpu` (0, 1 or absent → 2, as the ECS agent does)."""
    cpu = int(container.get("cpu") or 0)
    return cpu if cpu > 1 else MINIMUM_CPU_SHARES


def stop_timeout(container: dict) -> int:
    """Seconds to pass to `container.stop(timeout=...)`: stopTimeout, else 30."""
    value = container.get("stopTimeout")
    return DEFAULT_STOP_TIMEOUT if value is None else int(value)


def _healthcheck(container: dict) -> dict[str, Any]:
    """Docker healthcheck; `{"test": ["NONE"]}` disables an image HEALTHCHECK."""
    hc = container.get("healthCheck")
    if not hc or not hc.get("command"):
        return {"test": ["NONE"]}
    values = {k: hc.get(k) if hc.get(k) is not None else d for k, d in _HEALTH_DEFAULTS.items()}
    return {
        "test": list(hc["command"]),
        "interval": int(values["interval"]) * _NS,
        "timeout": int(values["timeout"]) * _NS,
        "retries": int(values["retries"]),
        "start_period": int(values["startPeriod"]) * _NS,
    }


def _tmpfs(entries: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in entries:
        opts = [*(t.get("mountOptions") or [])]
        if t.get("size"):
            opts.append(f"size={int(t['size'])}m")
        out[t["containerPath"]] = ",".join(opts)
    return out


def _devices(entries: list[dict]) -> list[str]:
    out = []
    for d in entries:
        perms = d.get("permissions")
        mode = "".join(_DEVICE_PERMS[p] for p in perms) if perms else "rwm"
        out.append(f"{d['hostPath']}:{d.get('containerPath') or d['hostPath']}:{mode}")
    return out


def _sysctls(spec: TaskSpec, container: dict) -> dict[str, str]:
    """systemControls, minus the ones runc refuses under host network or host IPC namespaces."""
    out: dict[str, str] = {}
    for sc in container.get("systemControls") or []:
        key = sc["namespace"]
        if spec.network_mode == "host" and key.startswith("net."):
            continue
        if spec.ipc_mode == "host" and _IPC_SYSCTL.match(key):
            continue
        out[key] = str(sc.get("value", ""))
    return out


def _ports(container: dict) -> dict[str, int | None]:
    """Bridge port bindings; hostPort 0/absent and containerPortRange → None (dynamic)."""
    ports: dict[str, int | None] = {}
    for pm in container.get("portMappings") or []:
        proto = (pm.get("protocol") or "tcp").lower()
        if pm.get("containerPort") is not None:
            ports[f"{int(pm['containerPort'])}/{proto}"] = int(pm.get("hostPort") or 0) or None
        elif pm.get("containerPortRange"):
            low, _, high = str(pm["containerPortRange"]).partition("-")
            for port in range(int(low), int(high or low) + 1):
                ports[f"{port}/{proto}"] = None
    return ports


def _links(spec: TaskSpec, container: dict) -> dict[str, str]:
    links: dict[str, str] = {}
    for link in container.get("links") or []:
        target, _, alias = link.partition(":")
        links[container_name(spec, target)] = alias or target
    return links


def _binds(spec: TaskSpec, container: dict) -> list[str]:
    """mountPoints as `source:target:ro|rw` binds (a missing host path is created, as in ECS)."""
    binds = []
    for mp in container.get("mountPoints") or []:
        try:
            volume = spec.volume(mp["sourceVolume"])
        except KeyError:
            raise ValueError(
                f"container {container['name']!r}: mount point references unknown volume "
                f"{mp['sourceVolume']!r}"
            ) from None
        mode = "ro" if mp.get("readOnly") else "rw"
        binds.append(f"{_volume_source(spec, volume)}:{mp['containerPath']}:{mode}")
    return binds


def _namespace_mode(mode: str | None, sandbox_id: str | None) -> str | None:
    """pidMode/ipcMode → docker: host → host, task → the sandbox's (if any), none → none."""
    if mode == "host":
        return "host"
    if mode == "task":
        return f"container:{sandbox_id}" if sandbox_id else None
    if mode == "none":
        return "none"
    return None


def _mib(value: Any) -> str:
    return f"{int(value)}m"


def create_kwargs(
    spec: TaskSpec, container: dict, *, agent_id: str, sandbox_id: str | None
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create(**kwargs)` for one ECS container.

    Keys whose ECS field is absent are left out. `stop_timeout` is not included (the SDK's
    `create()` refuses it): use `stop_timeout(container)` when stopping. Logging is left to
    docker's default driver.
    """
    name = container["name"]
    mode = spec.network_mode
    kw: dict[str, Any] = {
        "image": container["image"],
        "name": container_name(spec, name),
        "labels": labels_for(spec, container, agent_id),
        "healthcheck": _healthcheck(container),
        "cpu_shares": cpu_shares(container),
    }
    if container.get("command"):
        kw["command"] = list(container["command"])
    if container.get("entryPoint"):
        kw["entrypoint"] = list(container["entryPoint"])
    if container.get("environment"):
        kw["environment"] = {
            e["name"]: "" if e.get("value") is None else str(e["value"])
            for e in container["environment"]
        }
    if container.get("workingDirectory"):
        kw["working_dir"] = container["workingDirectory"]
    if container.get("user"):
        kw["user"] = container["user"]

    # Memory: hard limit, soft limit; the task's memory caps a container that declares neither.
    memory, reservation = container.get("memory"), container.get("memoryReservation")
    if memory:
        kw["mem_limit"] = _mib(memory)
    if reservation:
        kw["mem_reservation"] = _mib(reservation)
    if not memory and not reservation and spec.memory:
        kw["mem_limit"] = _mib(spec.memory)

    if container.get("ulimits"):
        kw["ulimits"] = [
            Ulimit(name=u["name"], soft=int(u["softLimit"]), hard=int(u["hardLimit"]))
            for u in container["ulimits"]
        ]
    if container.get("readonlyRootFilesystem"):
        kw["read_only"] = True
    if container.get("privileged"):
        kw["privileged"] = True
    if container.get("dockerSecurityOptions"):
        kw["security_opt"] = list(container["dockerSecurityOptions"])
    if container.get("pseudoTerminal"):
        kw["tty"] = True
    if container.get("interactive"):
        kw["stdin_open"] = True
    if container.get("disableNetworking"):
        kw["network_disabled"] = True

    linux = container.get("linuxParameters") or {}
    if linux.get("initProcessEnabled"):
        kw["init"] = True
    caps = linux.get("capabilities") or {}
    if caps.get("add"):
        kw["cap_add"] = list(caps["add"])
    if caps.get("drop"):
        kw["cap_drop"] = list(caps["drop"])
    if linux.get("tmpfs"):
        kw["tmpfs"] = _tmpfs(linux["tmpfs"])
    if linux.get("sharedMemorySize"):
        kw["shm_size"] = _mib(linux["sharedMemorySize"])
    if linux.get("devices"):
        kw["devices"] = _devices(linux["devices"])
    sysctls = _sysctls(spec, container)
    if sysctls:
        kw["sysctls"] = sysctls

    binds = _binds(spec, container)
    if binds:
        kw["volumes"] = binds
    if container.get("volumesFrom"):
        kw["volumes_from"] = [
            f"{container_name(spec, vf['sourceContainer'])}:{'ro' if vf.get('readOnly') else 'rw'}"
            for vf in container["volumesFrom"]
        ]

    # Network. awsvpc containers share the sandbox's namespace, which owns hostname, DNS and hosts.
    if mode == "awsvpc":
        if not sandbox_id:
            raise ValueError(f"awsvpc container {name!r} needs a sandbox_id")
        kw["network_mode"] = f"container:{sandbox_id}"
    else:
        if container.get("hostname"):
            kw["hostname"] = container["hostname"]
        if container.get("extraHosts"):
            kw["extra_hosts"] = [
                f"{h['hostname']}:{h['ipAddress']}" for h in container["extraHosts"]
            ]
        if container.get("dnsServers"):
            kw["dns"] = list(container["dnsServers"])
        if container.get("dnsSearchDomains"):
            kw["dns_search"] = list(container["dnsSearchDomains"])
        if mode == "bridge":
            kw["network_mode"] = "bridge"
            ports = _ports(container)
            if ports:
                kw["ports"] = ports
            links = _links(spec, container)
            if links:
                kw["links"] = links
        elif mode in ("host", "none"):
            kw["network_mode"] = mode
        else:
            raise ValueError(f"unknown network mode {mode!r}")

    pid_mode = _namespace_mode(spec.pid_mode, sandbox_id)
    if pid_mode and pid_mode != "none":
        kw["pid_mode"] = pid_mode
    ipc_mode = _namespace_mode(spec.ipc_mode, sandbox_id)
    if ipc_mode:
        kw["ipc_mode"] = ipc_mode
    return kw


def sandbox_kwargs(spec: TaskSpec, *, agent_id: str, image: str, network: str) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create(**kwargs)` for the task's sandbox.

    It holds the network namespace (on `network`) and, with ipcMode task, a shareable IPC namespace
    the containers join.
    """
    labels = {
        LABEL_AGENT: agent_id,
        LABEL_TASK: spec.task_arn,
        LABEL_ROLE: ROLE_SANDBOX,
        **_amazon_labels(spec, SANDBOX_CONTAINER_NAME),
    }
    kw: dict[str, Any] = {
        "image": image,
        "name": sandbox_name(spec),
        "labels": labels,
        "network": network,
    }
    if spec.ipc_mode == "task":
        kw["ipc_mode"] = "shareable"
    return kw


# ----------------------------------------------------------------------------------------------
# Start and stop order
# ----------------------------------------------------------------------------------------------


def _dependencies(container: dict) -> list[str]:
    """Names this container must start after: dependsOn, links and volumesFrom sources."""
    deps = [d["containerName"] for d in container.get("dependsOn") or []]
    deps += [link.partition(":")[0] for link in container.get("links") or []]
    deps += [vf["sourceContainer"] for vf in container.get("volumesFrom") or []]
    return deps


def dependency_order(containers: list[dict]) -> list[str]:
    """Container names in start order: dependencies first, otherwise declaration order.

    Raises ValueError on a cycle, a duplicate name, or a reference to an unknown container.
    """
    names = [c["name"] for c in containers]
    if len(set(names)) != len(names):
        raise ValueError("container names must be unique")
    position = {n: i for i, n in enumerate(names)}
    deps: dict[str, set[str]] = {}
    for c in containers:
        wanted = set(_dependencies(c))
        unknown = sorted(wanted - position.keys())
        if unknown:
            raise ValueError(f"container {c['name']!r} depends on unknown container(s) {unknown}")
        deps[c["name"]] = wanted  # a self-reference never becomes ready: reported as a cycle
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in done and deps[n] <= done]
        if not ready:
            stuck = [n for n in names if n not in done]
            raise ValueError(f"dependency cycle among containers {stuck}")
        first = min(ready, key=position.__getitem__)
        order.append(first)
        done.add(first)
    return order


def stop_order(containers: list[dict]) -> list[str]:
    """Container names in stop order: the reverse of `dependency_order`."""
    return list(reversed(dependency_order(containers)))
