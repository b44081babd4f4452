"""Pure RegisterTaskDefinition rules: validate a request and normalise it the way ECS does.

    request -> family, networkMode, task cpu/memory
            -> each container (defaults, ports, memory, health check, logs, ...)
            -> across containers (names, essential, sums, dependsOn/links/volumesFrom,
               mountPoints, host ports)
            -> volumes, placement constraints, task options
            -> launch-type rules (EC2 / EXTERNAL / FARGATE / MANAGED_INSTANCES)
            -> compatibilities + requiresAttributes -> DescribeTaskDefinition-shaped body

The body has no taskDefinitionArn/revision/status/registeredAt/registeredBy: the caller adds
them. Error texts are ECS's own wherever a real response has been observed (the ECS semantics
reference and public issues); the others follow the same wording. Like ECS, only the first
problem found is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from galley.control.taskdef_units import (
    FARGATE_SIZES,
    is_fargate_size,
    parse_task_cpu,
    parse_task_memory,
)
from galley.errors import client_error, invalid_parameter

__all__ = [
    "FARGATE_SIZES",
    "check_launch_type",
    "container_memory_reservation",
    "normalize_task_definition",
    "parse_task_cpu",
    "parse_task_memory",
]

JsonDict = dict[str, Any]

NETWORK_MODES = ("bridge", "host", "awsvpc", "none")
COMPATIBILITIES = ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES")
LOG_DRIVERS = (
    "json-file",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "awsfirelens",
)
FARGATE_LOG_DRIVERS = ("awslogs", "splunk", "awsfirelens")
ULIMIT_NAMES = (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip
MAX_CONTAINERS = 10
MAX_PLACEMENT_CONSTRAINTS = 10

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DIGEST_RE = re.compile(r"@sha256:[0-9A-Fa-f]{64}$")
# Private ECR images need registry auth (and, on Fargate, an execution role).
_ECR_IMAGE_RE = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
_PORT_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")

# Member order of ECS's ContainerDefinition / TaskDefinition shapes, so output is stable.
_CONTAINER_ORDER = (
    "name", "image", "repositoryCredentials", "cpu", "memory", "memoryReservation", "links",
    "portMappings", "essential", "restartPolicy", "entryPoint", "command", "environment",
    "environmentFiles", "mountPoints", "volumesFrom", "linuxParameters", "secrets", "dependsOn",
    "startTimeout", "stopTimeout", "versionConsistency", "hostname", "user", "workingDirectory",
    "disableNetworking", "privileged", "readonlyRootFilesystem", "dnsServers", "dnsSearchDomains",
    "extraHosts", "dockerSecurityOptions", "interactive", "pseudoTerminal", "dockerLabels",
    "ulimits", "logConfiguration", "healthCheck", "systemControls", "resourceRequirements",
    "firelensConfiguration", "credentialSpecs",
)  # fmt: skip
# Real responses list a port mapping's name first.
_PORT_MAPPING_ORDER = (
    "name",
    "containerPort",
    "hostPort",
    "protocol",
    "appProtocol",
    "containerPortRange",
)
_HEALTH_CHECK_ORDER = ("command", "interval", "timeout", "retries", "startPeriod")
# Request members echoed back when present (TaskDefinition order); the rest are computed.
_PASS_THROUGH = (
    "taskRoleArn", "executionRoleArn", "runtimePlatform", "inferenceAccelerators", "pidMode",
    "ipcMode", "proxyConfiguration", "ephemeralStorage",
)  # fmt: skip

# (field, default, low, high) [M HealthCheck].
_HEALTH_CHECK_RANGES = (
    ("interval", 30, 5, 300),
    ("timeout", 5, 2, 60),
    ("retries", 3, 1, 10),
    ("startPeriod", None, 0, 300),
)


# --------------------------------------------------------------------------------------------
# Public API


def normalize_task_definition(request: Mapping[str, Any]) -> JsonDict:
    """Validate a RegisterTaskDefinition body and return it as DescribeTaskDefinition shows it."""
    req = _without_none(request)
    family = _check_family(req.get("family"))
    given_mode = req.get("networkMode")
    if given_mode is not None:
        _check_enum("networkMode", given_mode, NETWORK_MODES)
    mode = given_mode or "bridge"
    requires = req.get("requiresCompatibilities")
    for compatibility in requires or ():
        _check_enum("requiresCompatibilities", compatibility, COMPATIBILITIES)
    task_cpu = parse_task_cpu(req["cpu"]) if "cpu" in req else None
    task_memory = parse_task_memory(req["memory"]) if "memory" in req else None

    raw_containers = req.get("containerDefinitions") or []
    if not raw_containers:
        raise client_error("Container list cannot be empty.")
    if len(raw_containers) > MAX_CONTAINERS:
        raise client_error("Too many containers.")
    containers = [_normalize_container(c, mode, task_memory is not None) for c in raw_containers]
    volumes = _normalize_volumes(req.get("volumes") or [])
    _check_across_containers(containers, volumes, task_cpu, task_memory)
    placement = _check_placement_constraints(req.get("placementConstraints") or [])
    _check_task_options(req, containers)

    td: JsonDict = {"containerDefinitions": containers, "family": family}
    td.update((key, req[key]) for key in _PASS_THROUGH if key in req)
    if given_mode is not None:
        # ECS leaves networkMode out of the response when the request left it to default.
        td["networkMode"] = given_mode
    td["volumes"] = volumes
    td["placementConstraints"] = placement
    if requires is not None:
        td["requiresCompatibilities"] = list(requires)
    if task_cpu is not None:
        td["cpu"] = str(task_cpu)
    if task_memory is not None:
        td["memory"] = str(task_memory)
    td["enableFaultInjection"] = bool(req.get("enableFaultInjection", False))

    problems = _launch_type_problems(td)
    for compatibility in requires or ():
        if problems[compatibility]:
            raise client_error(problems[compatibility][0])
    td["compatibilities"] = [c for c in _COMPATIBILITY_ORDER if not problems[c]]
    td["requiresAttributes"] = [{"name": n} for n in _required_attributes(td)]
    return _ordered(td, _TASK_ORDER)


def check_launch_type(task_definition: Mapping[str, Any], launch_type: str) -> None:
    """Refuse a launch type the normalised definition's `compatibilities` does not list."""
    if launch_type not in (task_definition.get("compatibilities") or ()):
        raise invalid_parameter(f"Task definition does not support launch_type {launch_type}.")


def container_memory_reservation(container: Mapping[str, Any]) -> int | None:
    """Memory placement reserves for a container: memoryReservation if set, else memory."""
    reservation = container.get("memoryReservation")
    return reservation if reservation is not None else container.get("memory")


# --------------------------------------------------------------------------------------------
# Small helpers


def _without_none(value: Any) -> Any:
    """Deep copy without None members, so the caller's request is never mutated or echoed null."""
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def _ordered(values: Mapping[str, Any], order: Iterable[str]) -> JsonDict:
    """`values` with known keys in `order` first, then any others as given."""
    order = tuple(order)
    out = {k: values[k] for k in order if k in values}
    out.update((k, v) for k, v in values.items() if k not in out)
    return out


def _check_enum(field: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise client_error(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
        )


def _is_int(value: Any) -> TypeGuard[int]:
    # JSON booleans decode to Python bools, which are ints; they are never valid numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_family(family: Any) -> str:
    if not isinstance(family, str) or not family.strip():
        raise client_error("Family can not be blank.")
    if len(family) > 255:
        raise client_error("Family name must be no longer than 255 characters.")
    if not _NAME_RE.match(family):
        raise client_error("Family contains invalid characters.")
    return family


# --------------------------------------------------------------------------------------------
# One container


def _normalize_container(raw: Mapping[str, Any], mode: str, task_memory: bool) -> JsonDict:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise client_error("Container.name should not be null or empty.")
    if not _NAME_RE.match(name):
        raise client_error("Container.name contains invalid characters.")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise client_error("Container.image should not be null or empty.")
    if "@" in image and not _DIGEST_RE.search(image):
        raise client_error(f"Invalid 'image' setting for container '{name}'.")

    c = dict(raw)
    # ECS fills these defaults into every described container.
    c.setdefault("cpu", 0)
    c.setdefault("portMappings", [])
    c.setdefault("essential", True)
    c.setdefault("environment", [])
    c.setdefault("mountPoints", [])
    c.setdefault("volumesFrom", [])
    c.setdefault("systemControls", [])

    if not _is_int(c["cpu"]) or c["cpu"] < 0:
        raise client_error(f"Invalid 'cpu' setting for container '{name}'.")
    _check_container_memory(c, name, task_memory)
    c["portMappings"] = _normalize_port_mappings(c["portMappings"], name, mode)
    if c.get("links") and mode != "bridge":
        raise client_error(f"Links are not supported when networkMode={mode}.")
    if mode == "awsvpc":
        if c.get("hostname"):
            raise client_error("hostname is not supported on container when networkMode=awsvpc.")
        if c.get("extraHosts"):
            raise client_error("extraHosts is not supported on container when networkMode=awsvpc.")
    if "healthCheck" in c:
        c["healthCheck"] = _normalize_health_check(c["healthCheck"], name)
    for field in ("startTimeout", "stopTimeout"):
        if field in c and (not _is_int(c[field]) or c[field] < 0):
            raise client_error(f"Invalid '{field}' setting for container '{name}'.")
    _check_ulimits(c.get("ulimits") or [], name)
    if "logConfiguration" in c:
        _check_log_configuration(c["logConfiguration"])
    _check_restart_policy(c.get("restartPolicy"), name)
    for dependency in c.get("dependsOn") or []:
        _check_enum(
            "condition", dependency.get("condition"), ("START", "COMPLETE", "SUCCESS", "HEALTHY")
        )
    return _ordered(c, _CONTAINER_ORDER)


def _check_container_memory(c: Mapping[str, Any], name: str, task_memory: bool) -> None:
    memory, reservation = c.get("memory"), c.get("memoryReservation")
    for field, value in (("memory", memory), ("memoryReservation", reservation)):
        if value is not None and (not _is_int(value) or value <= 0):
            raise client_error(f"Invalid '{field}' setting for container '{name}'.")
    if not task_memory and memory is None and reservation is None:
        raise client_error(
            f"Invalid setting for container '{name}'. "
            "At least one of 'memory' or 'memoryReservation' must be specified."
        )
    # The API reference says memory must exceed memoryReservation, but ECS accepts equal values
    # (awsdocs/amazon-ecs-developer-guide#242), so only a larger reservation is refused.
    if memory is not None and reservation is not None and reservation > memory:
        raise client_error(
            f"Invalid 'memoryReservation' setting for container '{name}'. "
            "The 'memoryReservation' value cannot be greater than the 'memory' value."
        )


def _normalize_port_mappings(mappings: list[Any], name: str, mode: str) -> list[JsonDict]:
    if mappings and mode == "none":
        raise client_error("Port mappings are not supported when networkMode=none.")
    return [_normalize_port_mapping(pm, name, mode) for pm in mappings]


def _normalize_port_mapping(raw: Mapping[str, Any], name: str, mode: str) -> JsonDict:
    pm = dict(raw)
    container_port, host_port = pm.get("containerPort"), pm.get("hostPort")
    if "containerPortRange" in pm:
        _check_container_port_range(pm, name, mode)
    elif not _is_int(container_port) or not 1 <= container_port <= 65535:
        raise client_error(f"Invalid 'containerPort' setting for container '{name}'.")
    if host_port is not None and (not _is_int(host_port) or not 0 <= host_port <= 65535):
        raise client_error(f"Invalid 'hostPort' setting for container '{name}'.")
    pm.setdefault("protocol", "tcp")
    _check_enum("protocol", pm["protocol"], ("tcp", "udp"))
    if "appProtocol" in pm:
        _check_enum("appProtocol", pm["appProtocol"], ("http", "http2", "grpc"))
    if mode in ("awsvpc", "host") and container_port is not None:
        # The task owns the (ENI or host) network stack, so the host port is the container port;
        # ECS writes it back (0 and omitted both mean "same").
        if host_port in (None, 0):
            pm["hostPort"] = container_port
        elif host_port != container_port:
            raise client_error(
                f"When networkMode={mode}, the host ports and container ports in port mappings "
                "must match."
            )
    return _ordered(pm, _PORT_MAPPING_ORDER)


def _check_container_port_range(pm: Mapping[str, Any], name: str, mode: str) -> None:
    invalid = f"Invalid 'containerPortRange' setting for container '{name}'."
    match = _PORT_RANGE_RE.match(str(pm["containerPortRange"]))
    if match is None or "containerPort" in pm or "hostPort" in pm:
        raise client_error(invalid)
    first, last = int(match.group(1)), int(match.group(2))
    if not 1 <= first < last <= 65535:
        raise client_error(invalid)
    if mode not in ("bridge", "awsvpc"):
        raise client_error(f"containerPortRange is not supported when networkMode={mode}.")


def _normalize_health_check(raw: Mapping[str, Any], name: str) -> JsonDict:
    hc = dict(raw)
    if not hc.get("command"):
        raise client_error(
            f"Invalid 'healthCheck' setting for container '{name}'. 'command' is required."
        )
    for field, default, low, high in _HEALTH_CHECK_RANGES:
        if field not in hc and default is not None:
            hc[field] = default
        if field in hc and (not _is_int(hc[field]) or not low <= hc[field] <= high):
            raise client_error(
                f"Invalid 'healthCheck' setting for container '{name}'. "
                f"'{field}' must be between {low} and {high}."
            )
    return _ordered(hc, _HEALTH_CHECK_ORDER)


def _check_ulimits(ulimits: list[Mapping[str, Any]], name: str) -> None:
    seen: set[str] = set()
    for ulimit in ulimits:
        ulimit_name = ulimit.get("name")
        _check_enum("ulimits.name", ulimit_name, ULIMIT_NAMES)
        soft, hard = ulimit.get("softLimit"), ulimit.get("hardLimit")
        if ulimit_name in seen:
            raise client_error(
                f"Invalid 'ulimits' setting for container '{name}'. "
                f"Ulimit '{ulimit_name}' is specified more than once."
            )
        seen.add(str(ulimit_name))
        if not _is_int(soft) or not _is_int(hard) or soft < 0 or soft > hard:
            raise client_error(
                f"Invalid 'ulimits' setting for container '{name}'. The softLimit of "
                f"'{ulimit_name}' cannot be greater than its hardLimit."
            )


def _check_log_configuration(log: Mapping[str, Any]) -> None:
    driver = log.get("logDriver")
    _check_enum("logDriver", driver, LOG_DRIVERS)
    if driver != "awslogs":
        return
    options = log.get("options") or {}
    missing = [o for o in ("awslogs-region", "awslogs-group") if not options.get(o)]
    if missing:
        raise client_error(f"Log driver awslogs requires options: {', '.join(missing)}")
    if "awslogs-create-group" in options and str(options["awslogs-create-group"]).lower() != "true":
        raise client_error(
            "Log driver awslogs option 'awslogs-create-group' should only be set to 'true', "
            "else omit option."
        )


def _check_restart_policy(policy: Mapping[str, Any] | None, name: str) -> None:
    if policy is None:
        return
    period = policy.get("restartAttemptPeriod")
    if period is not None and (not _is_int(period) or not 60 <= period <= 1800):
        raise client_error(
            f"Invalid 'restartPolicy' setting for container '{name}'. "
            "'restartAttemptPeriod' must be between 60 and 1800 seconds."
        )
    if len(policy.get("ignoredExitCodes") or []) > 50:
        raise client_error(
            f"Invalid 'restartPolicy' setting for container '{name}'. "
            "At most 50 'ignoredExitCodes' can be specified."
        )


# --------------------------------------------------------------------------------------------
# Across containers


def _check_across_containers(
    containers: list[JsonDict],
    volumes: list[JsonDict],
    task_cpu: int | None,
    task_memory: int | None,
) -> None:
    by_name: dict[str, JsonDict] = {}
    for c in containers:
        if c["name"] in by_name:
            raise client_error("Container names must be unique within a Task Definition.")
        by_name[c["name"]] = c
    if not any(c["essential"] for c in containers):
        raise client_error("Task definition doesn't have any essential container.")
    if task_cpu is not None and sum(c["cpu"] for c in containers) > task_cpu:
        raise client_error(
            "The sum of all container 'cpu' values cannot be greater than the value of the "
            "task 'cpu'."
        )
    if task_memory is not None:
        _check_memory_against_task(containers, task_memory)
    _check_depends_on(containers, by_name)
    _check_links(containers, by_name)
    volume_names = {v["name"] for v in volumes}
    for c in containers:
        for source in c["volumesFrom"]:
            target = source.get("sourceContainer")
            if target not in by_name or target == c["name"]:
                raise client_error(f"Unknown container '{target}' in volumesFrom.")
        for mount in c["mountPoints"]:
            if mount.get("sourceVolume") not in volume_names:
                raise client_error(f"Unknown volume '{mount.get('sourceVolume')}'.")
    _check_host_ports(containers)


def _check_memory_against_task(containers: list[JsonDict], task_memory: int) -> None:
    for c in containers:
        if c.get("memory") is not None and c["memory"] > task_memory:
            raise client_error(
                f"The 'memory' setting for container '{c['name']}' is greater than for the task."
            )
    reserved = [container_memory_reservation(c) or 0 for c in containers]
    if sum(reserved) > task_memory:
        field = (
            "memoryReservation" if any("memoryReservation" in c for c in containers) else "memory"
        )
        raise client_error(
            f"The sum of all container '{field}' values cannot be greater than the value of the "
            "task 'memory'."
        )


def _check_depends_on(containers: list[JsonDict], by_name: Mapping[str, JsonDict]) -> None:
    graph: dict[str, list[str]] = {}
    for c in containers:
        graph[c["name"]] = []
        for dependency in c.get("dependsOn") or []:
            target = dependency.get("containerName")
            if target not in by_name:
                # Verbatim ECS text, odd " + " included (eagletmt/hako#99, dagster-io/dagster#6926).
                raise client_error(
                    f"Cannot depend on container + '{target}' because it does not exist"
                )
            if dependency["condition"] in ("COMPLETE", "SUCCESS") and by_name[target]["essential"]:
                raise client_error(
                    "A dependency container with SUCCESS or COMPLETE condition cannot be an "
                    "essential container"
                )
            graph[c["name"]].append(target)
    if _has_cycle(graph):
        raise client_error("Container dependencies should not have a cycle")


def _check_links(containers: list[JsonDict], by_name: Mapping[str, JsonDict]) -> None:
    graph: dict[str, list[str]] = {}
    for c in containers:
        graph[c["name"]] = []
        for link in c.get("links") or []:
            target = str(link).split(":", 1)[0]
            if target not in by_name:
                raise client_error(f"Unknown container '{target}' in links.")
            graph[c["name"]].append(target)
    if _has_cycle(graph):
        raise client_error("Container links should not have a cycle")


def _has_cycle(graph: Mapping[str, list[str]]) -> bool:
    """Depth-first search for a back edge; a self-reference counts as a cycle."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(node: str) -> bool:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                return True
        state[node] = 2
        return False

    return any(node not in state and visit(node) for node in graph)


def _check_host_ports(containers: list[JsonDict]) -> None:
    # Static host ports are exclusive per task: one ENI (awsvpc) or one host (bridge/host).
    taken: set[tuple[str, int]] = set()
    for c in containers:
        for pm in c["portMappings"]:
            host_port = pm.get("hostPort")
            if not host_port:  # 0/absent in bridge mode = dynamic port
                continue
            key = (pm["protocol"], host_port)
            if key in taken:
                raise client_error(
                    f"{pm['protocol'].upper()} host port '{host_port}' is mapped multiple times "
                    "in task."
                )
            taken.add(key)


# --------------------------------------------------------------------------------------------
# Volumes, placement constraints and task-level options


def _normalize_volumes(raw: list[Mapping[str, Any]]) -> list[JsonDict]:
    volumes: list[JsonDict] = []
    names: set[str] = set()
    for raw_volume in raw:
        volume = dict(raw_volume)
        name = volume.get("name")
        if not isinstance(name, str) or not name:
            raise client_error("Volume.name should not be null or empty.")
        if not _NAME_RE.match(name):
            raise client_error("Volume.name contains invalid characters.")
        if name in names:
            raise client_error("Volume names must be unique within a Task Definition.")
        names.add(name)
        efs = volume.get("efsVolumeConfiguration")
        if efs is not None:
            # ECS describes EFS volumes with the root directory filled in.
            volume["efsVolumeConfiguration"] = {
                **efs,
                "rootDirectory": efs.get("rootDirectory", "/"),
            }
        docker = volume.get("dockerVolumeConfiguration")
        if docker is not None and "scope" in docker:
            _check_enum("scope", docker["scope"], ("task", "shared"))
        volumes.append(volume)
    return volumes


def _check_placement_constraints(constraints: list[Mapping[str, Any]]) -> list[JsonDict]:
    if len(constraints) > MAX_PLACEMENT_CONSTRAINTS:
        raise client_error("Too many placement constraints. The maximum is 10.")
    for constraint in constraints:
        kind = constraint.get("type")
        if kind != "memberOf":
            raise client_error(
                f"Invalid placement constraint type '{kind}' for a task definition. "
                "Only 'memberOf' is supported."
            )
        expression = constraint.get("expression")
        if not expression or len(expression) > 2000:
            raise client_error("Invalid placement constraint expression for type 'memberOf'.")
    return [dict(c) for c in constraints]


def _check_task_options(req: Mapping[str, Any], containers: list[JsonDict]) -> None:
    if "pidMode" in req:
        _check_enum("pidMode", req["pidMode"], ("host", "task"))
    if "ipcMode" in req:
        _check_enum("ipcMode", req["ipcMode"], ("host", "task", "none"))
    size = (req.get("ephemeralStorage") or {}).get("sizeInGiB")
    if "ephemeralStorage" in req and (not _is_int(size) or not 21 <= size <= 200):
        raise client_error(
            "Invalid 'ephemeralStorage' setting for task. 'sizeInGiB' must be between 21 and 200."
        )
    proxy = req.get("proxyConfiguration")
    if proxy is not None and proxy.get("containerName") not in {c["name"] for c in containers}:
        raise client_error(
            f"Unknown container '{proxy.get('containerName')}' in proxyConfiguration."
        )


# --------------------------------------------------------------------------------------------
# Launch types: every problem a definition has for each one; empty list = compatible.

_COMPATIBILITY_ORDER = ("EXTERNAL", "EC2", "FARGATE", "MANAGED_INSTANCES")  # as ECS lists them
_TASK_ORDER = (
    "containerDefinitions", "family", "taskRoleArn", "executionRoleArn", "networkMode", "volumes",
    "requiresAttributes", "placementConstraints", "compatibilities", "runtimePlatform",
    "requiresCompatibilities", "cpu", "memory", "inferenceAccelerators", "pidMode", "ipcMode",
    "proxyConfiguration", "ephemeralStorage", "enableFaultInjection",
)  # fmt: skip


def _launch_type_problems(td: Mapping[str, Any]) -> dict[str, list[str]]:
    return {
        "EC2": [],  # anything that passed the general rules runs on EC2
        "EXTERNAL": list(_external_problems(td)),
        "FARGATE": list(_fargate_problems(td)),
        "MANAGED_INSTANCES": list(_managed_instances_problems(td)),
    }


def _external_problems(td: Mapping[str, Any]) -> Iterable[str]:
    # ECS Anywhere agents drop the task-eni, appmesh and elastic-inference capabilities.
    mode = td.get("networkMode", "bridge")
    if mode == "awsvpc":
        yield (
            "Tasks using the EXTERNAL launch type do not support network mode 'awsvpc'. "
            "The supported network modes are 'bridge', 'host' and 'none'."
        )
    if "proxyConfiguration" in td:
        yield "Tasks using the EXTERNAL launch type do not support proxyConfiguration."
    if td.get("inferenceAccelerators"):
        yield "Tasks using the EXTERNAL launch type do not support inferenceAccelerators."


def _managed_instances_problems(td: Mapping[str, Any]) -> Iterable[str]:
    # Managed Instances need an explicit awsvpc, host or none mode; bridge is not offered.
    mode = td.get("networkMode")
    if mode not in ("awsvpc", "host", "none"):
        yield (
            f"Tasks using the MANAGED_INSTANCES launch type do not support network mode "
            f"'{mode or 'bridge'}'. The supported network modes are 'awsvpc', 'host' and 'none'."
        )


def _fargate_problems(td: Mapping[str, Any]) -> Iterable[str]:
    if td.get("networkMode") != "awsvpc":
        yield "Fargate only supports network mode ‘awsvpc’."  # curly quotes are ECS's own
    if "cpu" not in td:
        yield "Fargate requires that 'cpu' be defined at the task level."
    if "memory" not in td:
        yield "Fargate requires that 'memory' be defined at the task level."
    if "cpu" in td and "memory" in td:
        cpu, memory = int(td["cpu"]), int(td["memory"])
        windows = str(
            (td.get("runtimePlatform") or {}).get("operatingSystemFamily", "")
        ).startswith("WINDOWS")
        if not is_fargate_size(cpu, memory) or (windows and cpu < 1024):
            yield (
                f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
                "See the Amazon ECS documentation for the valid values."
            )
    if td.get("pidMode", "task") != "task":
        yield (
            f"Tasks using the Fargate launch type do not support pidMode '{td['pidMode']}'. "
            "The supported value for pidMode is 'task'."
        )
    if "ipcMode" in td:
        yield "Tasks using the Fargate launch type do not support ipcMode."
    for volume in td["volumes"]:
        if (volume.get("host") or {}).get("sourcePath"):
            yield "Fargate compatible task definitions do not support sourcePath"
        if "dockerVolumeConfiguration" in volume:
            yield "Fargate compatible task definitions do not support dockerVolumeConfiguration"
    for c in td["containerDefinitions"]:
        yield from _fargate_container_problems(c, td)


def _fargate_container_problems(c: Mapping[str, Any], td: Mapping[str, Any]) -> Iterable[str]:
    name = c["name"]
    unsupported = "Fargate compatible task definitions do not support"
    if c.get("privileged"):
        yield f"{unsupported} privileged containers"
    if c.get("links"):
        yield f"{unsupported} links"
    if c.get("dockerSecurityOptions"):
        yield f"{unsupported} dockerSecurityOptions"
    linux = c.get("linuxParameters") or {}
    for key in ("devices", "sharedMemorySize", "maxSwap", "swappiness"):
        if key in linux:
            yield f"{unsupported} linuxParameters.{key}"
    if any(cap != "SYS_PTRACE" for cap in (linux.get("capabilities") or {}).get("add") or []):
        yield f"{unsupported} adding kernel capabilities other than SYS_PTRACE"
    for field in ("startTimeout", "stopTimeout"):
        if field in c and not 2 <= c[field] <= 120:
            yield (
                f"Invalid '{field}' setting for container '{name}'. "
                "The valid values for Fargate are 2-120 seconds."
            )
    log = c.get("logConfiguration")
    if log is not None:
        driver = log["logDriver"]
        if driver not in FARGATE_LOG_DRIVERS:
            yield f"{unsupported} log driver '{driver}'"
        if driver == "awslogs":
            if not (log.get("options") or {}).get("awslogs-stream-prefix"):
                yield "Log driver awslogs requires options: awslogs-stream-prefix"
            if "executionRoleArn" not in td:
                yield (
                    "Fargate requires task definition to have execution role ARN to support "
                    "log driver awslogs."
                )
    if _ECR_IMAGE_RE.match(c["image"]) and "executionRoleArn" not in td:
        yield "Fargate requires task definition to have execution role ARN to support ECR images."


# --------------------------------------------------------------------------------------------
# requiresAttributes: the container-instance capabilities a task needs, as ECS computes them.
# ECS does not document the mapping; it is reconstructed from public DescribeTaskDefinition
# outputs and the agent's capability list (aws/amazon-ecs-agent agent/app/agent_capability.go).

_C = "com.amazonaws.ecs.capability."
_E = "ecs.capability."


def _docker(version: str) -> str:
    return f"{_C}docker-remote-api.{version}"


# Output order seen in real responses; anything else follows alphabetically.
_ATTRIBUTE_ORDER = (
    f"{_C}logging-driver.awslogs", f"{_E}execution-role-awslogs", f"{_C}ecr-auth",
    _docker("1.19"), _docker("1.21"), _docker("1.28"), f"{_C}task-iam-role",
    f"{_C}task-iam-role-network-host", _docker("1.25"), f"{_E}container-health-check",
    f"{_E}execution-role-ecr-pull", _docker("1.18"), f"{_E}task-eni", _docker("1.29"),
    f"{_E}container-ordering", f"{_E}aws-appmesh", f"{_E}efsAuth", f"{_E}efs",
)  # fmt: skip


def _required_attributes(td: Mapping[str, Any]) -> list[str]:
    names: set[str] = set()
    has_execution_role = "executionRoleArn" in td
    fargate_required = "FARGATE" in (td.get("requiresCompatibilities") or ())
    mode = td.get("networkMode", "bridge")
    if mode == "awsvpc":
        names |= {_docker("1.18"), f"{_E}task-eni"}
    if "taskRoleArn" in td:
        names.add(f"{_C}task-iam-role")
        if mode == "host":
            names.add(f"{_C}task-iam-role-network-host")
    if "proxyConfiguration" in td:
        names.add(f"{_E}aws-appmesh")
    if "pidMode" in td or "ipcMode" in td:
        names.add(f"{_E}pid-ipc-namespace-sharing")
    for volume in td["volumes"]:
        if "efsVolumeConfiguration" in volume:
            names |= {f"{_E}efs", f"{_E}efsAuth", _docker("1.25")}
        driver = (volume.get("dockerVolumeConfiguration") or {}).get("driver")
        if driver:
            names.add(f"{_E}docker-plugin.{driver}")
    for c in td["containerDefinitions"]:
        names |= _container_attributes(c, has_execution_role, fargate_required)
    rank = {name: i for i, name in enumerate(_ATTRIBUTE_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _container_attributes(
    c: Mapping[str, Any], has_execution_role: bool, fargate_required: bool
) -> set[str]:
    names: set[str] = set()
    if _ECR_IMAGE_RE.match(c["image"]):
        names.add(f"{_C}ecr-auth")
        if has_execution_role:
            names.add(f"{_E}execution-role-ecr-pull")
    if "memoryReservation" in c:
        names.add(_docker("1.21"))
    if "healthCheck" in c:
        names.add(f"{_E}container-health-check")
    if c.get("dependsOn"):
        names.add(f"{_E}container-ordering")
    if (c.get("linuxParameters") or {}).get("initProcessEnabled"):
        names.add(_docker("1.25"))
    if c.get("dockerLabels") or c.get("ulimits"):
        names.add(_docker("1.18"))
    if c.get("privileged"):
        names.add(f"{_C}privileged-container")
    if "repositoryCredentials" in c:
        names.add(f"{_E}private-registry-authentication.secretsmanager")
    if c.get("environmentFiles"):
        names.add(f"{_E}env-files.s3")
    if (c.get("restartPolicy") or {}).get("enabled"):
        names.add(f"{_E}container-restart-policy")
    if any("containerPortRange" in pm for pm in c["portMappings"]):
        names.add(f"{_E}network.container-port-range")
    for option in c.get("dockerSecurityOptions") or []:
        if option.startswith("label:"):
            names.add(f"{_C}selinux")
        elif option.startswith("apparmor:"):
            names.add(f"{_C}apparmor")
    for secret in c.get("secrets") or []:
        names.add(f"{_E}secrets.{_secret_store(secret)}.environment-variables")
    log = c.get("logConfiguration")
    if log is not None:
        driver = log["logDriver"]
        options = log.get("options") or {}
        names |= {f"{_C}logging-driver.{driver}", _docker("1.18")}
        if options:
            names.add(_docker("1.19"))
        if "mode" in options:  # non-blocking log delivery arrived with Docker API 1.28
            names.add(_docker("1.28"))
        if driver == "awslogs" and has_execution_role:
            names.add(f"{_E}execution-role-awslogs")
        if driver == "awslogs" and fargate_required:
            names.add(_docker("1.29"))
        for secret in log.get("secretOptions") or []:
            names.add(f"{_E}secrets.{_secret_store(secret)}.bootstrap.log-driver")
    firelens = (c.get("firelensConfiguration") or {}).get("type")
    if firelens:
        names.add(f"{_E}firelens.{firelens}")
    return names


def _secret_store(secret: Mapping[str, Any]) -> str:
    return "asm" if ":secretsmanager:" in str(secret.get("valueFrom", "")) else "ssm"
