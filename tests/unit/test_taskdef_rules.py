"""Table-driven tests for the pure RegisterTaskDefinition rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from galley.control.taskdef_rules import (
    FARGATE_SIZES,
    check_launch_type,
    container_memory_reservation,
    normalize_task_definition,
    parse_task_cpu,
    parse_task_memory,
)
from galley.errors import ApiError

EXEC_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
TASK_ROLE = "arn:aws:iam::123456789012:role/app"
ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest"
AWSLOGS = {
    "logDriver": "awslogs",
    "options": {
        "awslogs-group": "/ecs/app",
        "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "ecs",
    },
}


def ec2(*containers: dict[str, Any], **task: Any) -> dict[str, Any]:
    """A valid bridge-mode request; containers default to one 128 MiB nginx."""
    defs = list(containers) or [{"name": "app", "image": "nginx", "memory": 128}]
    return {"family": "web", "containerDefinitions": copy.deepcopy(defs), **copy.deepcopy(task)}


def fargate(*containers: dict[str, Any], **task: Any) -> dict[str, Any]:
    """A valid FARGATE request (awsvpc, 256 CPU / 512 MiB); keyword arguments override."""
    defs = list(containers) or [{"name": "app", "image": "nginx"}]
    base = {
        "family": "web",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": EXEC_ROLE,
        "containerDefinitions": copy.deepcopy(defs),
    }
    base.update(copy.deepcopy(task))
    return {k: v for k, v in base.items() if v is not None}


def c(name: str = "app", **fields: Any) -> dict[str, Any]:
    """A container definition with a memory limit unless told otherwise."""
    out: dict[str, Any] = {"name": name, "image": "nginx", "memory": 128}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def raises(request: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        normalize_task_definition(request)
    return info.value


# ------------------------------------------------------------------------------------------
# parse_task_cpu / parse_task_memory / FARGATE_SIZES


@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("256", 256),
        ("1024", 1024),
        (" 512 ", 512),
        ("128", 128),
        ("196608", 196608),
        ("1 vCPU", 1024),
        ("1 vcpu", 1024),
        ("1vCPU", 1024),
        ("2 VCPU", 2048),
        ("0.5 vcpu", 512),
        ("0.25 vCPU", 256),
        (".25 vcpu", 256),
        ("0.125 vCPU", 128),
        ("16 vCPU", 16384),
        ("192 vCPU", 196608),
        (1024, 1024),
    ],
)
def test_parse_task_cpu_valid(value: Any, units: int) -> None:
    assert parse_task_cpu(value) == units


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "abc",
        "1.5",
        "256.0",
        "-256",
        "0",
        "127",
        "196609",
        "0.1 vcpu",
        "1 cpu",
        "1 GB",
        "1e3",
        "0x100",
        "1 vCPU 2",
        "vcpu",
        "193 vCPU",
    ],
)
def test_parse_task_cpu_invalid(value: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_task_cpu(value)
    assert (info.value.code, info.value.message) == (
        "ClientException",
        "Invalid 'cpu' setting for task.",
    )


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        ("512", 512),
        ("1024", 1024),
        ("1GB", 1024),
        ("1 GB", 1024),
        ("1gb", 1024),
        ("2 GiB", 2048),
        ("0.5GB", 512),
        ("0.5 gb", 512),
        ("30 GB", 30720),
        ("512 MiB", 512),
        ("512MB", 512),
        (" 6144 ", 6144),
        (2048, 2048),
    ],
)
def test_parse_task_memory_valid(value: Any, mib: int) -> None:
    assert parse_task_memory(value) == mib


@pytest.mark.parametrize(
    "value",
    ["", "abc", "0", "-1", "1.5", "0.3GB", "512.5 MiB", "1 TB", "1 vCPU", "GB", "1,024"],
)
def test_parse_task_memory_invalid(value: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_task_memory(value)
    assert (info.value.code, info.value.message) == (
        "ClientException",
        "Invalid 'memory' setting for task.",
    )


@pytest.mark.parametrize(
    ("cpu", "first", "last", "count"),
    [
        (256, 512, 2048, 3),
        (512, 1024, 4096, 4),
        (1024, 2048, 8192, 7),
        (2048, 4096, 16384, 13),
        (4096, 8192, 30720, 23),
        (8192, 16384, 61440, 12),
        (16384, 32768, 122880, 12),
    ],
)
def test_fargate_sizes_table(cpu: int, first: int, last: int, count: int) -> None:
    sizes = FARGATE_SIZES[cpu]
    assert (sizes[0], sizes[-1], len(sizes)) == (first, last, count)


def test_fargate_sizes_has_exactly_the_documented_cpus() -> None:
    assert sorted(FARGATE_SIZES) == [256, 512, 1024, 2048, 4096, 8192, 16384]


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [
        ("256", "512", True),
        ("256", "1GB", True),
        ("256", "2048", True),
        ("256", "3072", False),
        ("512", "512", False),
        ("512", "4 GB", True),
        ("1 vCPU", "2GB", True),
        ("1024", "1024", False),
        ("2048", "5120", True),
        ("4096", "30720", True),
        ("4096", "31744", False),
        ("8192", "20480", True),
        ("8192", "18432", False),
        ("16384", "40960", True),
        ("16384", "36864", False),
        ("128", "512", False),
    ],
)
def test_fargate_size_combinations(cpu: str, memory: str, ok: bool) -> None:
    request = fargate(cpu=cpu, memory=memory)
    if ok:
        assert "FARGATE" in normalize_task_definition(request)["compatibilities"]
    else:
        err = raises(request)
        expected = (
            f"No Fargate configuration exists for given values: {parse_task_cpu(cpu)} CPU, "
            f"{parse_task_memory(memory)} memory. See the Amazon ECS documentation for the valid "
            "values."
        )
        assert (err.code, err.message) == ("ClientException", expected)


# ------------------------------------------------------------------------------------------
# Validation errors: (request, exact message); all are ClientException unless noted.

CLIENT_ERRORS = [
    # family
    pytest.param(ec2(family=""), "Family can not be blank.", id="family-empty"),
    pytest.param(ec2(family="   "), "Family can not be blank.", id="family-blank"),
    pytest.param(
        ec2(family="a" * 256),
        "Family name must be no longer than 255 characters.",
        id="family-long",
    ),
    pytest.param(ec2(family="my app"), "Family contains invalid characters.", id="family-space"),
    pytest.param(ec2(family="app:1"), "Family contains invalid characters.", id="family-colon"),
    pytest.param(ec2(family="a@b.c"), "Family contains invalid characters.", id="family-at"),
    # container list
    pytest.param(
        {"family": "web", "containerDefinitions": []},
        "Container list cannot be empty.",
        id="no-containers",
    ),
    pytest.param({"family": "web"}, "Container list cannot be empty.", id="containers-missing"),
    pytest.param(
        ec2(*[c(f"c{i}") for i in range(11)]), "Too many containers.", id="eleven-containers"
    ),
    # names and images
    pytest.param(
        ec2({"image": "nginx", "memory": 8}),
        "Container.name should not be null or empty.",
        id="name-missing",
    ),
    pytest.param(ec2(c("")), "Container.name should not be null or empty.", id="name-empty"),
    pytest.param(ec2(c("my app")), "Container.name contains invalid characters.", id="name-space"),
    pytest.param(ec2(c("a" * 256)), "Container.name contains invalid characters.", id="name-long"),
    pytest.param(
        ec2({"name": "app", "memory": 8}),
        "Container.image should not be null or empty.",
        id="image-missing",
    ),
    pytest.param(
        ec2(c(image="")), "Container.image should not be null or empty.", id="image-empty"
    ),
    pytest.param(
        ec2(c(image="  ")), "Container.image should not be null or empty.", id="image-blank"
    ),
    pytest.param(
        ec2(c(image="nginx@sha256:abc")),
        "Invalid 'image' setting for container 'app'.",
        id="bad-digest",
    ),
    pytest.param(
        ec2(c("a"), c("a")),
        "Container names must be unique within a Task Definition.",
        id="dup-names",
    ),
    # essential
    pytest.param(
        ec2(c(essential=False)),
        "Task definition doesn't have any essential container.",
        id="none-essential",
    ),
    pytest.param(
        ec2(c("a", essential=False), c("b", essential=False)),
        "Task definition doesn't have any essential container.",
        id="two-non-essential",
    ),
    # memory
    pytest.param(
        ec2(c(memory=None)),
        "Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must "
        "be specified.",
        id="no-memory",
    ),
    pytest.param(
        ec2(c(memory=0)), "Invalid 'memory' setting for container 'app'.", id="memory-zero"
    ),
    pytest.param(
        ec2(c(memory=-5)), "Invalid 'memory' setting for container 'app'.", id="memory-negative"
    ),
    pytest.param(
        ec2(c(memory=None, memoryReservation=0)),
        "Invalid 'memoryReservation' setting for container 'app'.",
        id="reservation-zero",
    ),
    pytest.param(
        ec2(c(memory=128, memoryReservation=256)),
        "Invalid 'memoryReservation' setting for container 'app'. "
        "The 'memoryReservation' value cannot be greater than the 'memory' value.",
        id="reservation-above-memory",
    ),
    pytest.param(
        ec2(c(memory=1024), memory="512"),
        "The 'memory' setting for container 'app' is greater than for the task.",
        id="container-memory-above-task",
    ),
    pytest.param(
        ec2(
            c("a", memory=None, memoryReservation=300),
            c("b", memory=None, memoryReservation=300),
            memory="512",
        ),
        "The sum of all container 'memoryReservation' values cannot be greater than the value of "
        "the task 'memory'.",
        id="reservations-above-task",
    ),
    pytest.param(
        ec2(c("a", memory=300), c("b", memory=300), memory="512"),
        "The sum of all container 'memory' values cannot be greater than the value of the task "
        "'memory'.",
        id="memories-above-task",
    ),
    # cpu
    pytest.param(
        ec2(c(cpu=-1)), "Invalid 'cpu' setting for container 'app'.", id="container-cpu-negative"
    ),
    pytest.param(
        ec2(c("a", cpu=200), c("b", cpu=100), cpu="256"),
        "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
        id="cpu-sum-above-task",
    ),
    pytest.param(ec2(cpu="1.5"), "Invalid 'cpu' setting for task.", id="task-cpu-bad"),
    pytest.param(ec2(cpu="64"), "Invalid 'cpu' setting for task.", id="task-cpu-below-range"),
    pytest.param(ec2(memory="lots"), "Invalid 'memory' setting for task.", id="task-memory-bad"),
    # port mappings
    pytest.param(
        ec2(c(portMappings=[{"hostPort": 80}])),
        "Invalid 'containerPort' setting for container 'app'.",
        id="no-container-port",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 0}])),
        "Invalid 'containerPort' setting for container 'app'.",
        id="container-port-0",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 65536}])),
        "Invalid 'containerPort' setting for container 'app'.",
        id="container-port-big",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": -80}])),
        "Invalid 'containerPort' setting for container 'app'.",
        id="container-port-neg",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80, "hostPort": 70000}])),
        "Invalid 'hostPort' setting for container 'app'.",
        id="host-port-big",
    ),
    pytest.param(
        ec2(
            c("a", portMappings=[{"containerPort": 80, "hostPort": 3000}]),
            c("b", portMappings=[{"containerPort": 81, "hostPort": 3000}]),
        ),
        "TCP host port '3000' is mapped multiple times in task.",
        id="dup-host-port-bridge",
    ),
    pytest.param(
        ec2(
            c(
                portMappings=[
                    {"containerPort": 53, "hostPort": 53, "protocol": "udp"},
                    {"containerPort": 54, "hostPort": 53, "protocol": "udp"},
                ]
            )
        ),
        "UDP host port '53' is mapped multiple times in task.",
        id="dup-host-port-udp",
    ),
    pytest.param(
        ec2(
            c("a", portMappings=[{"containerPort": 8080}]),
            c("b", portMappings=[{"containerPort": 8080}]),
            networkMode="awsvpc",
        ),
        "TCP host port '8080' is mapped multiple times in task.",
        id="dup-port-awsvpc",
    ),
    pytest.param(
        ec2(
            c("a", portMappings=[{"containerPort": 80}]),
            c("b", portMappings=[{"containerPort": 80}]),
            networkMode="host",
        ),
        "TCP host port '80' is mapped multiple times in task.",
        id="dup-port-host",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80, "hostPort": 8080}]), networkMode="awsvpc"),
        "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
        id="awsvpc-port-mismatch",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80, "hostPort": 8080}]), networkMode="host"),
        "When networkMode=host, the host ports and container ports in port mappings must match.",
        id="host-port-mismatch",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80}]), networkMode="none"),
        "Port mappings are not supported when networkMode=none.",
        id="none-mode-ports",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "9000-8000"}])),
        "Invalid 'containerPortRange' setting for container 'app'.",
        id="port-range-reversed",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "abc"}])),
        "Invalid 'containerPortRange' setting for container 'app'.",
        id="port-range-garbage",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "8000-9000", "hostPort": 8000}])),
        "Invalid 'containerPortRange' setting for container 'app'.",
        id="port-range-with-host-port",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "8000-9000"}]), networkMode="host"),
        "containerPortRange is not supported when networkMode=host.",
        id="port-range-host-mode",
    ),
    # network-mode specific container fields
    pytest.param(
        ec2(c("a", links=["b"]), c("b"), networkMode="awsvpc"),
        "Links are not supported when networkMode=awsvpc.",
        id="links-awsvpc",
    ),
    pytest.param(
        ec2(c("a", links=["b"]), c("b"), networkMode="host"),
        "Links are not supported when networkMode=host.",
        id="links-host",
    ),
    pytest.param(
        ec2(c(hostname="web"), networkMode="awsvpc"),
        "hostname is not supported on container when networkMode=awsvpc.",
        id="hostname-awsvpc",
    ),
    pytest.param(
        ec2(c(extraHosts=[{"hostname": "db", "ipAddress": "10.0.0.1"}]), networkMode="awsvpc"),
        "extraHosts is not supported on container when networkMode=awsvpc.",
        id="extra-hosts-awsvpc",
    ),
    # links / dependsOn / volumesFrom / mountPoints
    pytest.param(
        ec2(c("a", links=["ghost"])), "Unknown container 'ghost' in links.", id="link-missing"
    ),
    pytest.param(
        ec2(c("a", links=["ghost:alias"])),
        "Unknown container 'ghost' in links.",
        id="link-alias-missing",
    ),
    pytest.param(
        ec2(c("a", links=["b"]), c("b", links=["a"])),
        "Container links should not have a cycle",
        id="link-cycle",
    ),
    pytest.param(
        ec2(c("a", links=["a"])), "Container links should not have a cycle", id="link-self"
    ),
    pytest.param(
        ec2(c("a", dependsOn=[{"containerName": "ghost", "condition": "START"}])),
        "Cannot depend on container + 'ghost' because it does not exist",
        id="depends-missing",
    ),
    pytest.param(
        ec2(
            c("a", dependsOn=[{"containerName": "b", "condition": "START"}]),
            c("b", dependsOn=[{"containerName": "a", "condition": "START"}]),
        ),
        "Container dependencies should not have a cycle",
        id="depends-cycle",
    ),
    pytest.param(
        ec2(
            c("a", dependsOn=[{"containerName": "b", "condition": "START"}]),
            c("b", dependsOn=[{"containerName": "c", "condition": "START"}]),
            c("c", dependsOn=[{"containerName": "a", "condition": "START"}]),
        ),
        "Container dependencies should not have a cycle",
        id="depends-cycle-3",
    ),
    pytest.param(
        ec2(c("a", dependsOn=[{"containerName": "a", "condition": "START"}])),
        "Container dependencies should not have a cycle",
        id="depends-self",
    ),
    pytest.param(
        ec2(c("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]), c("init")),
        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential "
        "container",
        id="depends-success-essential",
    ),
    pytest.param(
        ec2(
            c("app", dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
            c("init", essential=True),
        ),
        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential "
        "container",
        id="depends-complete-essential",
    ),
    pytest.param(
        ec2(c("a", dependsOn=[{"containerName": "b", "condition": "READY"}]), c("b")),
        "1 validation error detected: Value 'READY' at 'condition' failed to satisfy constraint: "
        "Member must satisfy enum value set: [START, COMPLETE, SUCCESS, HEALTHY]",
        id="depends-bad-condition",
    ),
    pytest.param(
        ec2(c("a", volumesFrom=[{"sourceContainer": "ghost"}])),
        "Unknown container 'ghost' in volumesFrom.",
        id="volumes-from-missing",
    ),
    pytest.param(
        ec2(c("a", volumesFrom=[{"sourceContainer": "a"}])),
        "Unknown container 'a' in volumesFrom.",
        id="volumes-from-self",
    ),
    pytest.param(
        ec2(c(mountPoints=[{"sourceVolume": "data", "containerPath": "/data"}])),
        "Unknown volume 'data'.",
        id="mount-undeclared",
    ),
    # volumes
    pytest.param(
        ec2(volumes=[{"host": {"sourcePath": "/x"}}]),
        "Volume.name should not be null or empty.",
        id="volume-no-name",
    ),
    pytest.param(
        ec2(volumes=[{"name": "my vol"}]),
        "Volume.name contains invalid characters.",
        id="volume-bad-name",
    ),
    pytest.param(
        ec2(volumes=[{"name": "v"}, {"name": "v"}]),
        "Volume names must be unique within a Task Definition.",
        id="volume-dup",
    ),
    pytest.param(
        ec2(volumes=[{"name": "v", "dockerVolumeConfiguration": {"scope": "global"}}]),
        "1 validation error detected: Value 'global' at 'scope' failed to satisfy constraint: "
        "Member must satisfy enum value set: [task, shared]",
        id="volume-bad-scope",
    ),
    # health checks
    pytest.param(
        ec2(c(healthCheck={"command": []})),
        "Invalid 'healthCheck' setting for container 'app'. 'command' is required.",
        id="hc-no-command",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "interval": 4})),
        "Invalid 'healthCheck' setting for container 'app'. 'interval' must be between 5 and 300.",
        id="hc-interval-low",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "interval": 301})),
        "Invalid 'healthCheck' setting for container 'app'. 'interval' must be between 5 and 300.",
        id="hc-interval-high",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "timeout": 1})),
        "Invalid 'healthCheck' setting for container 'app'. 'timeout' must be between 2 and 60.",
        id="hc-timeout-low",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "timeout": 61})),
        "Invalid 'healthCheck' setting for container 'app'. 'timeout' must be between 2 and 60.",
        id="hc-timeout-high",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "retries": 0})),
        "Invalid 'healthCheck' setting for container 'app'. 'retries' must be between 1 and 10.",
        id="hc-retries-low",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "retries": 11})),
        "Invalid 'healthCheck' setting for container 'app'. 'retries' must be between 1 and 10.",
        id="hc-retries-high",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "startPeriod": -1})),
        "Invalid 'healthCheck' setting for container 'app'. 'startPeriod' must be between 0 and "
        "300.",
        id="hc-start-low",
    ),
    pytest.param(
        ec2(c(healthCheck={"command": ["CMD", "true"], "startPeriod": 301})),
        "Invalid 'healthCheck' setting for container 'app'. 'startPeriod' must be between 0 and "
        "300.",
        id="hc-start-high",
    ),
    # timeouts, ulimits, restart policy
    pytest.param(
        ec2(c(stopTimeout=-1)),
        "Invalid 'stopTimeout' setting for container 'app'.",
        id="stop-timeout-negative",
    ),
    pytest.param(
        ec2(c(startTimeout=-1)),
        "Invalid 'startTimeout' setting for container 'app'.",
        id="start-timeout-negative",
    ),
    pytest.param(
        ec2(c(ulimits=[{"name": "nofile", "softLimit": 2048, "hardLimit": 1024}])),
        "Invalid 'ulimits' setting for container 'app'. The softLimit of 'nofile' cannot be "
        "greater than its hardLimit.",
        id="ulimit-soft-above-hard",
    ),
    pytest.param(
        ec2(
            c(
                ulimits=[
                    {"name": "nofile", "softLimit": 1, "hardLimit": 2},
                    {"name": "nofile", "softLimit": 1, "hardLimit": 2},
                ]
            )
        ),
        "Invalid 'ulimits' setting for container 'app'. Ulimit 'nofile' is specified more than "
        "once.",
        id="ulimit-dup",
    ),
    pytest.param(
        ec2(c(ulimits=[{"name": "files", "softLimit": 1, "hardLimit": 2}])),
        "1 validation error detected: Value 'files' at 'ulimits.name' failed to satisfy "
        "constraint: "
        "Member must satisfy enum value set: [core, cpu, data, fsize, locks, memlock, msgqueue, "
        "nice, nofile, "
        "nproc, rss, rtprio, rttime, sigpending, stack]",
        id="ulimit-bad-name",
    ),
    pytest.param(
        ec2(c(restartPolicy={"enabled": True, "restartAttemptPeriod": 30})),
        "Invalid 'restartPolicy' setting for container 'app'. 'restartAttemptPeriod' must be "
        "between 60 and 1800 seconds.",
        id="restart-period-low",
    ),
    pytest.param(
        ec2(c(restartPolicy={"enabled": True, "ignoredExitCodes": list(range(51))})),
        "Invalid 'restartPolicy' setting for container 'app'. At most 50 'ignoredExitCodes' can be "
        "specified.",
        id="restart-too-many-codes",
    ),
    # logging
    pytest.param(
        ec2(c(logConfiguration={"logDriver": "awslogs"})),
        "Log driver awslogs requires options: awslogs-region, awslogs-group",
        id="awslogs-no-options",
    ),
    pytest.param(
        ec2(
            c(logConfiguration={"logDriver": "awslogs", "options": {"awslogs-region": "us-east-1"}})
        ),
        "Log driver awslogs requires options: awslogs-group",
        id="awslogs-no-group",
    ),
    pytest.param(
        ec2(c(logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "g"}})),
        "Log driver awslogs requires options: awslogs-region",
        id="awslogs-no-region",
    ),
    pytest.param(
        ec2(
            c(
                logConfiguration={
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "g",
                        "awslogs-region": "r",
                        "awslogs-create-group": "false",
                    },
                }
            )
        ),
        "Log driver awslogs option 'awslogs-create-group' should only be set to 'true', else omit "
        "option.",
        id="awslogs-create-group-false",
    ),
    pytest.param(
        ec2(c(logConfiguration={"logDriver": "loki"})),
        "1 validation error detected: Value 'loki' at 'logDriver' failed to satisfy constraint: "
        "Member must "
        "satisfy enum value set: [json-file, syslog, journald, gelf, fluentd, awslogs, splunk, "
        "awsfirelens]",
        id="bad-log-driver",
    ),
    # task-level enums and options
    pytest.param(
        ec2(networkMode="nat"),
        "1 validation error detected: Value 'nat' at 'networkMode' failed to satisfy constraint: "
        "Member must satisfy enum value set: [bridge, host, awsvpc, none]",
        id="bad-network-mode",
    ),
    pytest.param(
        ec2(requiresCompatibilities=["LAMBDA"]),
        "1 validation error detected: Value 'LAMBDA' at 'requiresCompatibilities' failed to "
        "satisfy constraint: "
        "Member must satisfy enum value set: [EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES]",
        id="bad-compatibility",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80, "protocol": "sctp"}])),
        "1 validation error detected: Value 'sctp' at 'protocol' failed to satisfy constraint: "
        "Member must satisfy enum value set: [tcp, udp]",
        id="bad-protocol",
    ),
    pytest.param(
        ec2(pidMode="container"),
        "1 validation error detected: Value 'container' at 'pidMode' failed to satisfy constraint: "
        "Member must satisfy enum value set: [host, task]",
        id="bad-pid-mode",
    ),
    pytest.param(
        ec2(placementConstraints=[{"type": "distinctInstance"}]),
        "Invalid placement constraint type 'distinctInstance' for a task definition. Only "
        "'memberOf' is supported.",
        id="placement-distinct",
    ),
    pytest.param(
        ec2(placementConstraints=[{"type": "memberOf"}]),
        "Invalid placement constraint expression for type 'memberOf'.",
        id="placement-no-expression",
    ),
    pytest.param(
        ec2(placementConstraints=[{"type": "memberOf", "expression": "attribute:x == y"}] * 11),
        "Too many placement constraints. The maximum is 10.",
        id="placement-too-many",
    ),
    pytest.param(
        ec2(ephemeralStorage={"sizeInGiB": 20}),
        "Invalid 'ephemeralStorage' setting for task. 'sizeInGiB' must be between 21 and 200.",
        id="ephemeral-small",
    ),
    pytest.param(
        ec2(proxyConfiguration={"type": "APPMESH", "containerName": "envoy"}),
        "Unknown container 'envoy' in proxyConfiguration.",
        id="proxy-unknown-container",
    ),
    # requiresCompatibilities: FARGATE
    pytest.param(
        fargate(networkMode=None),
        "Fargate only supports network mode ‘awsvpc’.",
        id="fargate-default-mode",
    ),
    pytest.param(
        fargate(networkMode="bridge"),
        "Fargate only supports network mode ‘awsvpc’.",
        id="fargate-bridge",
    ),
    pytest.param(
        fargate(networkMode="host"),
        "Fargate only supports network mode ‘awsvpc’.",
        id="fargate-host",
    ),
    pytest.param(
        fargate(cpu=None),
        "Fargate requires that 'cpu' be defined at the task level.",
        id="fargate-no-cpu",
    ),
    pytest.param(
        fargate(c(), memory=None),
        "Fargate requires that 'memory' be defined at the task level.",
        id="fargate-no-memory",
    ),
    pytest.param(
        fargate(pidMode="host"),
        "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value "
        "for pidMode is 'task'.",
        id="fargate-pid-host",
    ),
    pytest.param(
        fargate(ipcMode="task"),
        "Tasks using the Fargate launch type do not support ipcMode.",
        id="fargate-ipc",
    ),
    pytest.param(
        fargate(volumes=[{"name": "v", "host": {"sourcePath": "/data"}}]),
        "Fargate compatible task definitions do not support sourcePath",
        id="fargate-host-volume",
    ),
    pytest.param(
        fargate(volumes=[{"name": "v", "dockerVolumeConfiguration": {"scope": "task"}}]),
        "Fargate compatible task definitions do not support dockerVolumeConfiguration",
        id="fargate-docker-volume",
    ),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "privileged": True}),
        "Fargate compatible task definitions do not support privileged containers",
        id="fargate-privileged",
    ),
    pytest.param(
        fargate(
            {
                "name": "app",
                "image": "nginx",
                "linuxParameters": {"devices": [{"hostPath": "/dev/fuse"}]},
            }
        ),
        "Fargate compatible task definitions do not support linuxParameters.devices",
        id="fargate-devices",
    ),
    pytest.param(
        fargate(
            {
                "name": "app",
                "image": "nginx",
                "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}},
            }
        ),
        "Fargate compatible task definitions do not support adding kernel capabilities other than "
        "SYS_PTRACE",
        id="fargate-capabilities",
    ),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "stopTimeout": 121}),
        "Invalid 'stopTimeout' setting for container 'app'. The valid values for Fargate are 2-120 "
        "seconds.",
        id="fargate-stop-timeout-high",
    ),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "stopTimeout": 1}),
        "Invalid 'stopTimeout' setting for container 'app'. The valid values for Fargate are 2-120 "
        "seconds.",
        id="fargate-stop-timeout-low",
    ),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "startTimeout": 300}),
        "Invalid 'startTimeout' setting for container 'app'. The valid values for Fargate are "
        "2-120 seconds.",
        id="fargate-start-timeout-high",
    ),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "logConfiguration": {"logDriver": "json-file"}}),
        "Fargate compatible task definitions do not support log driver 'json-file'",
        id="fargate-json-file",
    ),
    pytest.param(
        fargate(
            {
                "name": "app",
                "image": "nginx",
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "g", "awslogs-region": "r"},
                },
            }
        ),
        "Log driver awslogs requires options: awslogs-stream-prefix",
        id="fargate-awslogs-no-prefix",
    ),
    pytest.param(
        fargate(
            {"name": "app", "image": "nginx", "logConfiguration": AWSLOGS}, executionRoleArn=None
        ),
        "Fargate requires task definition to have execution role ARN to support log driver "
        "awslogs.",
        id="fargate-awslogs-no-role",
    ),
    pytest.param(
        fargate({"name": "app", "image": ECR_IMAGE}, executionRoleArn=None),
        "Fargate requires task definition to have execution role ARN to support ECR images.",
        id="fargate-ecr-no-role",
    ),
    pytest.param(
        fargate(
            cpu="512",
            memory="1024",
            runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"},
        ),
        "No Fargate configuration exists for given values: 512 CPU, 1024 memory. See the Amazon "
        "ECS documentation for the valid values.",
        id="fargate-windows-small",
    ),
    # requiresCompatibilities: EXTERNAL and MANAGED_INSTANCES
    pytest.param(
        ec2(networkMode="awsvpc", requiresCompatibilities=["EXTERNAL"]),
        "Tasks using the EXTERNAL launch type do not support network mode 'awsvpc'. "
        "The supported network modes are 'bridge', 'host' and 'none'.",
        id="external-awsvpc",
    ),
    pytest.param(
        ec2(
            c("app"),
            c("envoy"),
            requiresCompatibilities=["EXTERNAL"],
            proxyConfiguration={"type": "APPMESH", "containerName": "envoy"},
        ),
        "Tasks using the EXTERNAL launch type do not support proxyConfiguration.",
        id="external-proxy",
    ),
    pytest.param(
        ec2(requiresCompatibilities=["MANAGED_INSTANCES"]),
        "Tasks using the MANAGED_INSTANCES launch type do not support network mode 'bridge'. "
        "The supported network modes are 'awsvpc', 'host' and 'none'.",
        id="managed-default-mode",
    ),
    pytest.param(
        ec2(networkMode="bridge", requiresCompatibilities=["EC2", "MANAGED_INSTANCES"]),
        "Tasks using the MANAGED_INSTANCES launch type do not support network mode 'bridge'. "
        "The supported network modes are 'awsvpc', 'host' and 'none'.",
        id="managed-bridge",
    ),
]


@pytest.mark.parametrize(("request_body", "message"), CLIENT_ERRORS)
def test_client_errors(request_body: dict[str, Any], message: str) -> None:
    err = raises(request_body)
    assert (err.code, err.message, err.status) == ("ClientException", message, 400)


# ------------------------------------------------------------------------------------------
# Valid definitions that look suspicious but ECS accepts.

ACCEPTED = [
    pytest.param(ec2(c(memory=None, memoryReservation=64)), id="reservation-only"),
    pytest.param(ec2(c(memory=128, memoryReservation=128)), id="reservation-equals-memory"),
    pytest.param(ec2(c(memory=None), memory="512"), id="task-memory-only"),
    pytest.param(
        ec2(c("a", memory=512), c("b", memory=512), memory="1024"), id="memory-sum-equals-task"
    ),
    pytest.param(ec2(c("a", cpu=128), c("b", cpu=128), cpu="256"), id="cpu-sum-equals-task"),
    pytest.param(ec2(c("a", essential=False), c("b")), id="one-essential-enough"),
    pytest.param(
        ec2(c(portMappings=[{"containerPort": 80}, {"containerPort": 80}])),
        id="bridge-dynamic-ports-repeat",
    ),
    pytest.param(
        ec2(
            c(
                portMappings=[
                    {"containerPort": 80, "hostPort": 0},
                    {"containerPort": 81, "hostPort": 0},
                ]
            )
        ),
        id="bridge-host-port-0",
    ),
    pytest.param(
        ec2(
            c(
                portMappings=[
                    {"containerPort": 53, "hostPort": 53},
                    {"containerPort": 53, "hostPort": 53, "protocol": "udp"},
                ]
            )
        ),
        id="tcp-and-udp-same-port",
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "8000-8100"}])), id="port-range-bridge"
    ),
    pytest.param(
        ec2(c(portMappings=[{"containerPortRange": "8000-8100"}]), networkMode="awsvpc"),
        id="port-range-awsvpc",
    ),
    pytest.param(ec2(c("a", links=["b:db"]), c("b")), id="link-with-alias"),
    pytest.param(ec2(c("a", links=["b"]), c("b", links=["c"]), c("c")), id="link-chain"),
    pytest.param(
        ec2(
            c("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
            c("init", essential=False),
        ),
        id="depends-success-non-essential",
    ),
    pytest.param(
        ec2(
            c(
                "app",
                dependsOn=[
                    {"containerName": "db", "condition": "HEALTHY"},
                    {"containerName": "cache", "condition": "START"},
                ],
            ),
            c("db"),
            c("cache"),
        ),
        id="depends-diamond-free",
    ),
    pytest.param(ec2(c("a", volumesFrom=[{"sourceContainer": "b"}]), c("b")), id="volumes-from"),
    pytest.param(
        ec2(
            c(mountPoints=[{"sourceVolume": "data", "containerPath": "/d"}]),
            volumes=[{"name": "data", "host": {}}],
        ),
        id="mount-bind",
    ),
    pytest.param(ec2(c(stopTimeout=600, startTimeout=600)), id="ec2-long-timeouts"),
    pytest.param(
        ec2(
            c(
                healthCheck={
                    "command": ["CMD", "true"],
                    "interval": 5,
                    "timeout": 2,
                    "retries": 1,
                    "startPeriod": 0,
                }
            )
        ),
        id="hc-minimums",
    ),
    pytest.param(
        ec2(
            c(
                healthCheck={
                    "command": ["CMD", "true"],
                    "interval": 300,
                    "timeout": 60,
                    "retries": 10,
                    "startPeriod": 300,
                }
            )
        ),
        id="hc-maximums",
    ),
    pytest.param(
        ec2(
            c(
                logConfiguration={
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "g",
                        "awslogs-region": "r",
                        "awslogs-create-group": "true",
                    },
                }
            )
        ),
        id="awslogs-ec2-no-prefix",
    ),
    pytest.param(ec2(c(logConfiguration={"logDriver": "json-file"})), id="json-file-ec2"),
    pytest.param(
        ec2(
            placementConstraints=[
                {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"}
            ]
        ),
        id="member-of",
    ),
    pytest.param(ec2(networkMode="host", pidMode="host", ipcMode="host"), id="host-namespaces"),
    pytest.param(
        fargate(
            {
                "name": "app",
                "image": "nginx",
                "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"]}},
            }
        ),
        id="fargate-ptrace",
    ),
    pytest.param(fargate(volumes=[{"name": "scratch", "host": {}}]), id="fargate-bind-mount"),
    pytest.param(fargate(pidMode="task"), id="fargate-pid-task"),
    pytest.param(
        fargate({"name": "app", "image": "nginx", "stopTimeout": 120, "startTimeout": 2}),
        id="fargate-timeout-edges",
    ),
    pytest.param(
        fargate({"name": "app", "image": ECR_IMAGE, "logConfiguration": AWSLOGS}),
        id="fargate-ecr-awslogs-with-role",
    ),
    pytest.param(fargate(cpu="1 vCPU", memory="2 GB"), id="fargate-units"),
    pytest.param(
        fargate(
            cpu="1024",
            memory="2048",
            runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"},
        ),
        id="fargate-windows-1vcpu",
    ),
    pytest.param(
        ec2(networkMode="host", requiresCompatibilities=["EC2", "EXTERNAL", "MANAGED_INSTANCES"]),
        id="host-everywhere",
    ),
    pytest.param(
        ec2(networkMode="awsvpc", requiresCompatibilities=["MANAGED_INSTANCES"]),
        id="managed-awsvpc",
    ),
    pytest.param(ec2(c("a", memory=8), tags=[{"key": "team", "value": "x"}]), id="tags-ignored"),
    pytest.param(ec2(c(image="nginx@sha256:" + "a" * 64)), id="image-digest"),
]


@pytest.mark.parametrize("request_body", ACCEPTED)
def test_accepted(request_body: dict[str, Any]) -> None:
    before = copy.deepcopy(request_body)
    td = normalize_task_definition(request_body)
    assert request_body == before  # the caller's request is never mutated
    assert "tags" not in td
    assert not _has_none(td)


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return False


# ------------------------------------------------------------------------------------------
# Normalised output


def test_minimal_ec2_definition_matches_ecs_output() -> None:
    # aws-cli's register-task-definition example (sleep360), as ECS describes it.
    request = ec2(
        {
            "name": "sleep",
            "image": "busybox",
            "cpu": 10,
            "command": ["sleep", "360"],
            "memory": 10,
            "essential": True,
        },
        family="sleep360",
    )
    assert normalize_task_definition(request) == {
        "containerDefinitions": [
            {
                "name": "sleep",
                "image": "busybox",
                "cpu": 10,
                "memory": 10,
                "portMappings": [],
                "essential": True,
                "command": ["sleep", "360"],
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": [],
            }
        ],
        "family": "sleep360",
        "volumes": [],
        "requiresAttributes": [],
        "placementConstraints": [],
        "compatibilities": ["EXTERNAL", "EC2"],
        "enableFaultInjection": False,
    }


def test_fargate_definition_matches_ecs_output() -> None:
    # Shape of a real Fargate definition (tetris-game-ecs-ui) as DescribeTaskDefinition returns it.
    request = {
        "family": "tetris-game-ecs-ui",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1 vCPU",
        "memory": "2GB",
        "taskRoleArn": TASK_ROLE,
        "executionRoleArn": EXEC_ROLE,
        "containerDefinitions": [
            {
                "name": "application",
                "image": "makbanov/tetris-game:latest",
                "portMappings": [
                    {
                        "containerPort": 80,
                        "protocol": "tcp",
                        "name": "application",
                        "appProtocol": "http",
                    }
                ],
                "essential": True,
                "linuxParameters": {"initProcessEnabled": True},
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                    "interval": 10,
                    "startPeriod": 60,
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "tetris",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "ui",
                    },
                },
            }
        ],
    }
    td = normalize_task_definition(request)
    assert td == {
        "containerDefinitions": [
            {
                "name": "application",
                "image": "makbanov/tetris-game:latest",
                "cpu": 0,
                "portMappings": [
                    {
                        "name": "application",
                        "containerPort": 80,
                        "hostPort": 80,
                        "protocol": "tcp",
                        "appProtocol": "http",
                    }
                ],
                "essential": True,
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "linuxParameters": {"initProcessEnabled": True},
                "logConfiguration": request["containerDefinitions"][0]["logConfiguration"],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                    "interval": 10,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 60,
                },
                "systemControls": [],
            }
        ],
        "family": "tetris-game-ecs-ui",
        "taskRoleArn": TASK_ROLE,
        "executionRoleArn": EXEC_ROLE,
        "networkMode": "awsvpc",
        "volumes": [],
        # Exactly the list (and order) the real response carried.
        "requiresAttributes": [
            {"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"},
            {"name": "ecs.capability.execution-role-awslogs"},
            {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.19"},
            {"name": "com.amazonaws.ecs.capability.task-iam-role"},
            {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.25"},
            {"name": "ecs.capability.container-health-check"},
            {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"},
            {"name": "ecs.capability.task-eni"},
            {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.29"},
        ],
        "placementConstraints": [],
        "compatibilities": ["EC2", "FARGATE", "MANAGED_INSTANCES"],
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "enableFaultInjection": False,
    }
    assert list(td) == [
        "containerDefinitions",
        "family",
        "taskRoleArn",
        "executionRoleArn",
        "networkMode",
        "volumes",
        "requiresAttributes",
        "placementConstraints",
        "compatibilities",
        "requiresCompatibilities",
        "cpu",
        "memory",
        "enableFaultInjection",
    ]


@pytest.mark.parametrize(
    ("request_body", "attributes"),
    [
        pytest.param(
            # ContainerHandsOn: private ECR image, execution role, no logging.
            fargate({"name": "app", "image": ECR_IMAGE, "portMappings": [{"containerPort": 80}]}),
            [
                "com.amazonaws.ecs.capability.ecr-auth",
                "ecs.capability.execution-role-ecr-pull",
                "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                "ecs.capability.task-eni",
            ],
            id="fargate-ecr",
        ),
        pytest.param(
            # xray-user-service-task: ECR + awslogs non-blocking mode + task role + sidecar.
            fargate(
                {
                    "name": "app",
                    "image": ECR_IMAGE,
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            **AWSLOGS["options"],
                            "mode": "non-blocking",
                            "max-buffer-size": "25m",
                        },
                    },
                },
                {
                    "name": "xray",
                    "image": "amazon/aws-xray-daemon",
                    "essential": False,
                    "memory": 256,
                    "logConfiguration": AWSLOGS,
                },
                cpu="512",
                memory="1024",
                taskRoleArn=TASK_ROLE,
            ),
            [
                "com.amazonaws.ecs.capability.logging-driver.awslogs",
                "ecs.capability.execution-role-awslogs",
                "com.amazonaws.ecs.capability.ecr-auth",
                "com.amazonaws.ecs.capability.docker-remote-api.1.19",
                "com.amazonaws.ecs.capability.docker-remote-api.1.28",
                "com.amazonaws.ecs.capability.task-iam-role",
                "ecs.capability.execution-role-ecr-pull",
                "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                "ecs.capability.task-eni",
                "com.amazonaws.ecs.capability.docker-remote-api.1.29",
            ],
            id="fargate-xray",
        ),
        pytest.param(
            # agent: memoryReservation brings docker-remote-api 1.21.
            fargate(
                {"name": "app", "image": ECR_IMAGE, "logConfiguration": AWSLOGS},
                {
                    "name": "redis",
                    "image": "redis",
                    "essential": False,
                    "memoryReservation": 1024,
                    "logConfiguration": AWSLOGS,
                },
                cpu="1024",
                memory="2048",
            ),
            [
                "com.amazonaws.ecs.capability.logging-driver.awslogs",
                "ecs.capability.execution-role-awslogs",
                "com.amazonaws.ecs.capability.ecr-auth",
                "com.amazonaws.ecs.capability.docker-remote-api.1.19",
                "com.amazonaws.ecs.capability.docker-remote-api.1.21",
                "ecs.capability.execution-role-ecr-pull",
                "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                "ecs.capability.task-eni",
                "com.amazonaws.ecs.capability.docker-remote-api.1.29",
            ],
            id="fargate-agent",
        ),
        pytest.param(ec2(), [], id="plain-bridge"),
        pytest.param(
            ec2(
                c(
                    healthCheck={"command": ["CMD", "true"]},
                    dependsOn=[{"containerName": "b", "condition": "START"}],
                ),
                c("b"),
            ),
            ["ecs.capability.container-health-check", "ecs.capability.container-ordering"],
            id="health-and-ordering",
        ),
        pytest.param(
            ec2(networkMode="host", taskRoleArn=TASK_ROLE),
            [
                "com.amazonaws.ecs.capability.task-iam-role",
                "com.amazonaws.ecs.capability.task-iam-role-network-host",
            ],
            id="task-role-host-network",
        ),
        pytest.param(
            ec2(c(privileged=True, logConfiguration={"logDriver": "json-file"})),
            [
                "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                "com.amazonaws.ecs.capability.logging-driver.json-file",
                "com.amazonaws.ecs.capability.privileged-container",
            ],
            id="privileged-json-file",
        ),
        pytest.param(
            ec2(
                c(
                    secrets=[
                        {
                            "name": "A",
                            "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:a",
                        },
                        {"name": "B", "valueFrom": "/app/b"},
                    ]
                )
            ),
            [
                "ecs.capability.secrets.asm.environment-variables",
                "ecs.capability.secrets.ssm.environment-variables",
            ],
            id="secrets",
        ),
        pytest.param(
            ec2(volumes=[{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
            [
                "com.amazonaws.ecs.capability.docker-remote-api.1.25",
                "ecs.capability.efsAuth",
                "ecs.capability.efs",
            ],
            id="efs",
        ),
        pytest.param(
            ec2(
                volumes=[
                    {
                        "name": "v",
                        "dockerVolumeConfiguration": {"scope": "shared", "driver": "rexray/ebs"},
                    }
                ]
            ),
            ["ecs.capability.docker-plugin.rexray/ebs"],
            id="docker-plugin",
        ),
        pytest.param(
            ec2(c(portMappings=[{"containerPortRange": "8000-8100"}])),
            ["ecs.capability.network.container-port-range"],
            id="port-range",
        ),
    ],
)
def test_required_attributes(request_body: dict[str, Any], attributes: list[str]) -> None:
    td = normalize_task_definition(request_body)
    assert [a["name"] for a in td["requiresAttributes"]] == attributes


@pytest.mark.parametrize(
    ("request_body", "compatibilities"),
    [
        pytest.param(ec2(), ["EXTERNAL", "EC2"], id="bridge-default"),
        pytest.param(ec2(networkMode="bridge"), ["EXTERNAL", "EC2"], id="bridge-explicit"),
        pytest.param(ec2(networkMode="host"), ["EXTERNAL", "EC2", "MANAGED_INSTANCES"], id="host"),
        pytest.param(
            ec2(c(portMappings=[]), networkMode="none"),
            ["EXTERNAL", "EC2", "MANAGED_INSTANCES"],
            id="none",
        ),
        pytest.param(
            ec2(networkMode="awsvpc"), ["EC2", "MANAGED_INSTANCES"], id="awsvpc-no-task-size"
        ),
        pytest.param(
            # wpp-server: no requiresCompatibilities, still computed as Fargate-ready.
            ec2(
                c(memory=None),
                networkMode="awsvpc",
                cpu="1024",
                memory="3072",
                executionRoleArn=EXEC_ROLE,
            ),
            ["EC2", "FARGATE", "MANAGED_INSTANCES"],
            id="awsvpc-fargate-shaped",
        ),
        pytest.param(
            ec2(networkMode="awsvpc", cpu="256", memory="1024"),
            ["EC2", "FARGATE", "MANAGED_INSTANCES"],
            id="awsvpc-valid-size",
        ),
        pytest.param(
            ec2(networkMode="awsvpc", cpu="256", memory="4096"),
            ["EC2", "MANAGED_INSTANCES"],
            id="awsvpc-bad-size",
        ),
        pytest.param(
            ec2(c(privileged=True), networkMode="awsvpc", cpu="256", memory="512"),
            ["EC2", "MANAGED_INSTANCES"],
            id="privileged",
        ),
        pytest.param(
            ec2(c(logConfiguration=AWSLOGS), networkMode="awsvpc", cpu="256", memory="512"),
            ["EC2", "MANAGED_INSTANCES"],
            id="awslogs-without-execution-role",
        ),
        pytest.param(
            ec2(
                c("app"),
                c("envoy"),
                networkMode="host",
                proxyConfiguration={"type": "APPMESH", "containerName": "envoy"},
            ),
            ["EC2", "MANAGED_INSTANCES"],
            id="appmesh-not-external",
        ),
        pytest.param(fargate(), ["EC2", "FARGATE", "MANAGED_INSTANCES"], id="fargate"),
        pytest.param(ec2(requiresCompatibilities=["EC2"]), ["EXTERNAL", "EC2"], id="requires-ec2"),
    ],
)
def test_compatibilities(request_body: dict[str, Any], compatibilities: list[str]) -> None:
    assert normalize_task_definition(request_body)["compatibilities"] == compatibilities


@pytest.mark.parametrize(
    ("mode", "mapping", "expected"),
    [
        ("awsvpc", {"containerPort": 80}, {"containerPort": 80, "hostPort": 80, "protocol": "tcp"}),
        (
            "awsvpc",
            {"containerPort": 80, "hostPort": 0},
            {"containerPort": 80, "hostPort": 80, "protocol": "tcp"},
        ),
        (
            "awsvpc",
            {"containerPort": 80, "hostPort": 80},
            {"containerPort": 80, "hostPort": 80, "protocol": "tcp"},
        ),
        (
            "awsvpc",
            {"containerPort": 53, "protocol": "udp"},
            {"containerPort": 53, "hostPort": 53, "protocol": "udp"},
        ),
        (
            "host",
            {"containerPort": 8080},
            {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"},
        ),
        (
            "host",
            {"containerPort": 8080, "hostPort": 0},
            {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"},
        ),
        ("bridge", {"containerPort": 80}, {"containerPort": 80, "protocol": "tcp"}),
        (
            "bridge",
            {"containerPort": 80, "hostPort": 0},
            {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
        ),
        (
            "bridge",
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
        ),
        (None, {"containerPort": 80}, {"containerPort": 80, "protocol": "tcp"}),
        (
            "awsvpc",
            {"containerPortRange": "8000-8100"},
            {"protocol": "tcp", "containerPortRange": "8000-8100"},
        ),
        (
            "awsvpc",
            {"containerPort": 80, "name": "web", "appProtocol": "http2"},
            {
                "name": "web",
                "containerPort": 80,
                "hostPort": 80,
                "protocol": "tcp",
                "appProtocol": "http2",
            },
        ),
    ],
)
def test_port_mapping_normalisation(
    mode: str | None, mapping: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = (
        ec2(c(portMappings=[mapping]), networkMode=mode) if mode else ec2(c(portMappings=[mapping]))
    )
    (out,) = normalize_task_definition(request)["containerDefinitions"][0]["portMappings"]
    assert out == expected
    assert list(out) == list(expected)  # stable member order


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"command": ["CMD", "true"]},
            {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3},
        ),
        (
            {"command": ["CMD-SHELL", "exit 0"], "retries": 5, "startPeriod": 10},
            {
                "command": ["CMD-SHELL", "exit 0"],
                "interval": 30,
                "timeout": 5,
                "retries": 5,
                "startPeriod": 10,
            },
        ),
        (
            {
                "startPeriod": 0,
                "timeout": 10,
                "interval": 60,
                "retries": 2,
                "command": ["CMD", "x"],
            },
            {
                "command": ["CMD", "x"],
                "interval": 60,
                "timeout": 10,
                "retries": 2,
                "startPeriod": 0,
            },
        ),
    ],
)
def test_health_check_defaults(given: dict[str, Any], expected: dict[str, Any]) -> None:
    out = normalize_task_definition(ec2(c(healthCheck=given)))["containerDefinitions"][0][
        "healthCheck"
    ]
    assert out == expected
    assert list(out) == list(expected)


@pytest.mark.parametrize(
    ("field", "given", "default"),
    [
        ("essential", None, True),
        ("essential", False, False),
        ("cpu", None, 0),
        ("cpu", 512, 512),
        ("environment", None, []),
        ("environment", [{"name": "A", "value": "1"}], [{"name": "A", "value": "1"}]),
        ("mountPoints", None, []),
        ("volumesFrom", None, []),
        ("portMappings", None, []),
        ("systemControls", None, []),
        (
            "systemControls",
            [{"namespace": "net.core.somaxconn", "value": "1024"}],
            [{"namespace": "net.core.somaxconn", "value": "1024"}],
        ),
    ],
)
def test_container_defaults(field: str, given: Any, default: Any) -> None:
    request = ec2(c("a", **{field: given}), c("b")) if given is not None else ec2(c("a"), c("b"))
    assert normalize_task_definition(request)["containerDefinitions"][0][field] == default


@pytest.mark.parametrize(
    ("task", "present", "absent"),
    [
        (
            {},
            {"volumes": [], "placementConstraints": [], "enableFaultInjection": False},
            ["networkMode", "cpu", "memory", "requiresCompatibilities"],
        ),
        ({"networkMode": "bridge"}, {"networkMode": "bridge"}, ["cpu"]),
        ({"cpu": "0.5 vCPU", "memory": "1GB"}, {"cpu": "512", "memory": "1024"}, ["networkMode"]),
        (
            {"requiresCompatibilities": ["EC2"]},
            {"requiresCompatibilities": ["EC2"]},
            ["networkMode"],
        ),
        ({"enableFaultInjection": True}, {"enableFaultInjection": True}, []),
        (
            {"runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}},
            {"runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}},
            [],
        ),
        (
            {"taskRoleArn": TASK_ROLE, "executionRoleArn": EXEC_ROLE},
            {"taskRoleArn": TASK_ROLE, "executionRoleArn": EXEC_ROLE},
            [],
        ),
        ({"pidMode": "task", "ipcMode": "none"}, {"pidMode": "task", "ipcMode": "none"}, []),
        ({"ephemeralStorage": {"sizeInGiB": 50}}, {"ephemeralStorage": {"sizeInGiB": 50}}, []),
        ({"tags": [{"key": "k", "value": "v"}]}, {}, ["tags"]),
        ({"networkMode": None, "cpu": None}, {}, ["networkMode", "cpu"]),
        (
            {"volumes": [{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]},
            {
                "volumes": [
                    {
                        "name": "efs",
                        "efsVolumeConfiguration": {"fileSystemId": "fs-1", "rootDirectory": "/"},
                    }
                ]
            },
            [],
        ),
        (
            {
                "volumes": [
                    {
                        "name": "efs",
                        "efsVolumeConfiguration": {"fileSystemId": "fs-1", "rootDirectory": "/a"},
                    }
                ]
            },
            {
                "volumes": [
                    {
                        "name": "efs",
                        "efsVolumeConfiguration": {"fileSystemId": "fs-1", "rootDirectory": "/a"},
                    }
                ]
            },
            [],
        ),
    ],
)
def test_task_level_members(
    task: dict[str, Any], present: dict[str, Any], absent: list[str]
) -> None:
    td = normalize_task_definition(ec2(**task))
    for key, value in present.items():
        assert td[key] == value
    for key in absent:
        assert key not in td
    for key in ("taskDefinitionArn", "revision", "status", "registeredAt", "registeredBy"):
        assert key not in td  # the caller adds these


def test_none_members_are_dropped_everywhere() -> None:
    request = ec2(
        {
            "name": "app",
            "image": "nginx",
            "memory": 64,
            "memoryReservation": None,
            "links": None,
            "portMappings": [{"containerPort": 80, "hostPort": None}],
            "healthCheck": None,
        },
        networkMode=None,
        taskRoleArn=None,
    )
    td = normalize_task_definition(request)
    assert not _has_none(td)
    assert td["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 80, "protocol": "tcp"}
    ]


def test_container_member_order_is_stable() -> None:
    request = ec2(
        {
            "healthCheck": {"command": ["CMD", "true"]},
            "essential": True,
            "image": "nginx",
            "memory": 64,
            "name": "app",
            "command": ["run"],
            "environment": [{"name": "A", "value": "1"}],
        }
    )
    (container,) = normalize_task_definition(request)["containerDefinitions"]
    assert list(container) == [
        "name",
        "image",
        "cpu",
        "memory",
        "portMappings",
        "essential",
        "command",
        "environment",
        "mountPoints",
        "volumesFrom",
        "healthCheck",
        "systemControls",
    ]


def test_normalising_twice_is_stable() -> None:
    # Re-registering a described definition (minus computed members) must give the same body.
    first = normalize_task_definition(
        fargate({"name": "app", "image": ECR_IMAGE, "logConfiguration": AWSLOGS})
    )
    again = {k: v for k, v in first.items() if k not in ("compatibilities", "requiresAttributes")}
    assert normalize_task_definition(again) == first


def test_first_problem_is_reported() -> None:
    # Bridge mode and missing cpu are both wrong for Fargate; ECS reports the network mode first.
    err = raises(fargate(networkMode="bridge", cpu=None))
    assert err.message == "Fargate only supports network mode ‘awsvpc’."


# ------------------------------------------------------------------------------------------
# check_launch_type / container_memory_reservation


@pytest.mark.parametrize(
    ("compatibilities", "launch_type", "ok"),
    [
        (["EXTERNAL", "EC2"], "EC2", True),
        (["EXTERNAL", "EC2"], "EXTERNAL", True),
        (["EXTERNAL", "EC2"], "FARGATE", False),
        (["EC2", "FARGATE"], "FARGATE", True),
        (["EC2", "FARGATE"], "EXTERNAL", False),
        (["EC2", "FARGATE", "MANAGED_INSTANCES"], "MANAGED_INSTANCES", True),
        ([], "EC2", False),
        (None, "EC2", False),
    ],
)
def test_check_launch_type(compatibilities: list[str] | None, launch_type: str, ok: bool) -> None:
    td = {} if compatibilities is None else {"compatibilities": compatibilities}
    if ok:
        check_launch_type(td, launch_type)
        return
    with pytest.raises(ApiError) as info:
        check_launch_type(td, launch_type)
    assert (info.value.code, info.value.message) == (
        "InvalidParameterException",
        f"Task definition does not support launch_type {launch_type}.",
    )


def test_check_launch_type_on_normalised_definitions() -> None:
    check_launch_type(normalize_task_definition(fargate()), "FARGATE")
    with pytest.raises(ApiError, match="does not support launch_type FARGATE"):
        check_launch_type(normalize_task_definition(ec2()), "FARGATE")


@pytest.mark.parametrize(
    ("container", "reserved"),
    [
        ({"memory": 512}, 512),
        ({"memoryReservation": 256}, 256),
        ({"memory": 512, "memoryReservation": 256}, 256),
        ({"memory": 512, "memoryReservation": None}, 512),
        ({}, None),
        ({"memory": None}, None),
    ],
)
def test_container_memory_reservation(container: dict[str, Any], reserved: int | None) -> None:
    assert container_memory_reservation(container) == reserved
