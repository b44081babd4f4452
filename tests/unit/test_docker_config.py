"""Unit tests for galley.agent.docker_config (pure: no Docker engine needed)."""

from __future__ import annotations

import dataclasses
from typing import Any

import docker
import docker.models.containers as sdk_containers
import pytest
from docker.types import Ulimit

from galley.agent import docker_config as dc

TASK_ID = "0123456789abcdef0123456789abcdef"
TASK_ARN = f"arn:aws:ecs:us-east-1:123456789012:task/prod/{TASK_ID}"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
SANDBOX = "f" * 64
AGENT = "agent-1"
PREFIX = f"galley-{TASK_ID[:12]}-"


def make_spec(
    containers: list[dict] | None = None,
    *,
    network_mode: str = "bridge",
    volumes: list[dict] | None = None,
    **extra: Any,
) -> dc.TaskSpec:
    return dc.TaskSpec(
        task_arn=TASK_ARN,
        task_id=TASK_ID,
        cluster_arn=CLUSTER_ARN,
        family="web",
        revision=7,
        network_mode=network_mode,
        launch_type="EC2",
        containers=containers if containers is not None else [{"name": "app", "image": "x"}],
        volumes=volumes or [],
        **extra,
    )


def kwargs_for(container: dict, *, sandbox_id: str | None = None, **spec_kw: Any) -> dict:
    container = {"name": "app", "image": "img:1", **container}
    spec = make_spec([container], **spec_kw)
    if spec.network_mode == "awsvpc" and sandbox_id is None:
        sandbox_id = SANDBOX
    return dc.create_kwargs(spec, container, agent_id=AGENT, sandbox_id=sandbox_id)


MISSING = object()


# ------------------------------------------------------------------------------------------
# TaskSpec
# ------------------------------------------------------------------------------------------


def test_from_dict_full() -> None:
    spec = dc.TaskSpec.from_dict(
        {
            "taskArn": TASK_ARN,
            "clusterArn": CLUSTER_ARN,
            "family": "web",
            "revision": 3,
            "networkMode": "awsvpc",
            "launchType": "FARGATE",
            "containers": [{"name": "a", "image": "i"}],
            "volumes": [{"name": "v"}],
            "cpu": "512",
            "memory": "1024",
            "pidMode": "task",
            "ipcMode": "host",
        }
    )
    assert spec == dc.TaskSpec(
        task_arn=TASK_ARN,
        task_id=TASK_ID,
        cluster_arn=CLUSTER_ARN,
        family="web",
        revision=3,
        network_mode="awsvpc",
        launch_type="FARGATE",
        containers=[{"name": "a", "image": "i"}],
        volumes=[{"name": "v"}],
        cpu=512,
        memory=1024,
        pid_mode="task",
        ipc_mode="host",
    )
    assert spec.container("a") == {"name": "a", "image": "i"}
    with pytest.raises(KeyError):
        spec.container("zzz")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.family = "other"  # type: ignore[misc]


def test_from_dict_minimal_defaults() -> None:
    spec = dc.TaskSpec.from_dict(
        {
            "taskArn": "arn:aws:ecs:us-east-1:1:task/legacyid",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/fam:12",
        }
    )
    assert (spec.task_id, spec.family, spec.revision) == ("legacyid", "fam", 12)
    assert (spec.network_mode, spec.launch_type, spec.cluster_arn) == ("bridge", "EC2", "")
    assert (spec.containers, spec.volumes) == ([], [])
    assert (spec.cpu, spec.memory, spec.pid_mode, spec.ipc_mode) == (None, None, None, None)


@pytest.mark.parametrize(
    "cpu, memory, want_cpu, want_memory",
    [
        (None, None, None, None),
        (256, 512, 256, 512),
        ("256", "512", 256, 512),
        ("", "", None, None),
    ],
)
def test_from_dict_task_cpu_memory(cpu, memory, want_cpu, want_memory) -> None:
    spec = dc.TaskSpec.from_dict({"taskArn": TASK_ARN, "cpu": cpu, "memory": memory})
    assert (spec.cpu, spec.memory) == (want_cpu, want_memory)


@pytest.mark.parametrize("field, value", [("cpu", "lots"), ("memory", "1 TB-ish")])
def test_from_dict_bad_units(field, value) -> None:
    with pytest.raises(ValueError):
        dc.TaskSpec.from_dict({"taskArn": TASK_ARN, field: value})


def test_task_id_explicit_wins() -> None:
    spec = dc.TaskSpec.from_dict({"taskArn": TASK_ARN, "taskId": "other"})
    assert spec.task_id == "other"


# ------------------------------------------------------------------------------------------
# Names and labels
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, arg, want",
    [
        (dc.container_name, "app", f"{PREFIX}app"),
        (dc.container_name, "log_router-1", f"{PREFIX}log_router-1"),
        (dc.container_name, "we ird/na:me", f"{PREFIX}we-ird-na-me"),
        (dc.task_volume_name, "data", f"galley-{TASK_ID}-data"),
        (dc.task_volume_name, "my vol", f"galley-{TASK_ID}-my-vol"),
    ],
)
def test_names(fn, arg, want) -> None:
    assert fn(make_spec(), arg) == want


def test_sandbox_name() -> None:
    assert dc.sandbox_name(make_spec()) == f"{PREFIX}sandbox"


def test_labels_for() -> None:
    container = {
        "name": "app",
        "dockerLabels": {"team": "core", dc.LABEL_TASK: "spoofed", "n": 1},
    }
    assert dc.labels_for(make_spec(), container, AGENT) == {
        "team": "core",
        "n": "1",
        "galley.agent": AGENT,
        "galley.task-arn": TASK_ARN,
        "galley.container-name": "app",
        "galley.role": "app",
        "com.amazonaws.ecs.task-arn": TASK_ARN,
        "com.amazonaws.ecs.container-name": "app",
        "com.amazonaws.ecs.cluster": CLUSTER_ARN,
        "com.amazonaws.ecs.task-definition-family": "web",
        "com.amazonaws.ecs.task-definition-version": "7",
    }


# ------------------------------------------------------------------------------------------
# create_kwargs: field-by-field table
# ------------------------------------------------------------------------------------------

# (id, container fields, spec kwargs, kwarg key, expected value or MISSING)
FIELD_CASES: list[tuple[str, dict, dict, str, Any]] = [
    ("image", {"image": "nginx:1.25"}, {}, "image", "nginx:1.25"),
    ("name", {}, {}, "name", f"{PREFIX}app"),
    ("command", {"command": ["echo", "hi"]}, {}, "command", ["echo", "hi"]),
    ("command-absent", {}, {}, "command", MISSING),
    ("command-empty", {"command": []}, {}, "command", MISSING),
    ("entrypoint", {"entryPoint": ["/bin/sh", "-c"]}, {}, "entrypoint", ["/bin/sh", "-c"]),
    ("entrypoint-absent", {}, {}, "entrypoint", MISSING),
    (
        "environment",
        {"environment": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}, {"name": "C"}]},
        {},
        "environment",
        {"A": "1", "B": "", "C": ""},
    ),
    ("environment-absent", {}, {}, "environment", MISSING),
    ("working_dir", {"workingDirectory": "/srv"}, {}, "working_dir", "/srv"),
    ("user", {"user": "1000:1000"}, {}, "user", "1000:1000"),
    ("user-absent", {}, {}, "user", MISSING),
    ("stop_timeout-never-passed", {"stopTimeout": 5}, {}, "stop_timeout", MISSING),
    ("stop_signal-untouched", {}, {}, "stop_signal", MISSING),
    (
        "logging-untouched",
        {"logConfiguration": {"logDriver": "awslogs"}},
        {},
        "log_config",
        MISSING,
    ),
    # cpu → cpu_shares, with the ECS agent's minimum of 2.
    ("cpu-absent", {}, {}, "cpu_shares", 2),
    ("cpu-0", {"cpu": 0}, {}, "cpu_shares", 2),
    ("cpu-1", {"cpu": 1}, {}, "cpu_shares", 2),
    ("cpu-2", {"cpu": 2}, {}, "cpu_shares", 2),
    ("cpu-512", {"cpu": 512}, {}, "cpu_shares", 512),
    # memory
    ("memory", {"memory": 256}, {}, "mem_limit", "256m"),
    ("memory-absent", {}, {}, "mem_limit", MISSING),
    ("reservation", {"memoryReservation": 128}, {}, "mem_reservation", "128m"),
    (
        "reservation-only-no-limit",
        {"memoryReservation": 128},
        {"memory": 1024},
        "mem_limit",
        MISSING,
    ),
    ("memory-beats-task", {"memory": 256}, {"memory": 1024}, "mem_limit", "256m"),
    ("task-memory-fallback", {}, {"memory": 1024}, "mem_limit", "1024m"),
    # flags
    ("read_only", {"readonlyRootFilesystem": True}, {}, "read_only", True),
    ("read_only-false", {"readonlyRootFilesystem": False}, {}, "read_only", MISSING),
    ("privileged", {"privileged": True}, {}, "privileged", True),
    ("privileged-absent", {}, {}, "privileged", MISSING),
    ("tty", {"pseudoTerminal": True}, {}, "tty", True),
    ("stdin_open", {"interactive": True}, {}, "stdin_open", True),
    (
        "security_opt",
        {"dockerSecurityOptions": ["no-new-privileges"]},
        {},
        "security_opt",
        ["no-new-privileges"],
    ),
    ("network_disabled", {"disableNetworking": True}, {}, "network_disabled", True),
    # hostname, dns, hosts: honoured off awsvpc, dropped on awsvpc
    ("hostname-bridge", {"hostname": "web1"}, {}, "hostname", "web1"),
    ("hostname-host", {"hostname": "web1"}, {"network_mode": "host"}, "hostname", "web1"),
    ("hostname-awsvpc", {"hostname": "web1"}, {"network_mode": "awsvpc"}, "hostname", MISSING),
    (
        "extra_hosts",
        {
            "extraHosts": [
                {"hostname": "db", "ipAddress": "10.0.0.5"},
                {"hostname": "v6", "ipAddress": "fd00::1"},
            ]
        },
        {},
        "extra_hosts",
        ["db:10.0.0.5", "v6:fd00::1"],
    ),
    (
        "extra_hosts-awsvpc",
        {"extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}]},
        {"network_mode": "awsvpc"},
        "extra_hosts",
        MISSING,
    ),
    ("dns", {"dnsServers": ["1.1.1.1", "8.8.8.8"]}, {}, "dns", ["1.1.1.1", "8.8.8.8"]),
    ("dns-awsvpc", {"dnsServers": ["1.1.1.1"]}, {"network_mode": "awsvpc"}, "dns", MISSING),
    ("dns_search", {"dnsSearchDomains": ["corp.local"]}, {}, "dns_search", ["corp.local"]),
    (
        "dns_search-awsvpc",
        {"dnsSearchDomains": ["corp.local"]},
        {"network_mode": "awsvpc"},
        "dns_search",
        MISSING,
    ),
    # linuxParameters
    ("init", {"linuxParameters": {"initProcessEnabled": True}}, {}, "init", True),
    ("init-false", {"linuxParameters": {"initProcessEnabled": False}}, {}, "init", MISSING),
    (
        "cap_add",
        {"linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}},
        {},
        "cap_add",
        ["NET_ADMIN"],
    ),
    ("cap_drop", {"linuxParameters": {"capabilities": {"drop": ["ALL"]}}}, {}, "cap_drop", ["ALL"]),
    (
        "tmpfs",
        {
            "linuxParameters": {
                "tmpfs": [
                    {"containerPath": "/run", "size": 64, "mountOptions": ["noexec", "nosuid"]},
                    {"containerPath": "/scratch", "size": 16},
                ]
            }
        },
        {},
        "tmpfs",
        {"/run": "noexec,nosuid,size=64m", "/scratch": "size=16m"},
    ),
    ("shm_size", {"linuxParameters": {"sharedMemorySize": 128}}, {}, "shm_size", "128m"),
    (
        "devices",
        {
            "linuxParameters": {
                "devices": [
                    {"hostPath": "/dev/fuse"},
                    {
                        "hostPath": "/dev/null",
                        "containerPath": "/dev/mynull",
                        "permissions": ["read", "write"],
                    },
                ]
            }
        },
        {},
        "devices",
        ["/dev/fuse:/dev/fuse:rwm", "/dev/null:/dev/mynull:rw"],
    ),
    # systemControls
    (
        "sysctls",
        {
            "systemControls": [
                {"namespace": "net.core.somaxconn", "value": "1024"},
                {"namespace": "kernel.shmmax", "value": "65536"},
            ]
        },
        {},
        "sysctls",
        {"net.core.somaxconn": "1024", "kernel.shmmax": "65536"},
    ),
    (
        "sysctls-host-net-drops-net",
        {
            "systemControls": [
                {"namespace": "net.core.somaxconn", "value": "1024"},
                {"namespace": "kernel.shmmax", "value": "65536"},
            ]
        },
        {"network_mode": "host"},
        "sysctls",
        {"kernel.shmmax": "65536"},
    ),
    (
        "sysctls-host-ipc-drops-ipc",
        {
            "systemControls": [
                {"namespace": "net.core.somaxconn", "value": "1024"},
                {"namespace": "kernel.shmmax", "value": "65536"},
                {"namespace": "fs.mqueue.msg_max", "value": "20"},
            ]
        },
        {"ipc_mode": "host"},
        "sysctls",
        {"net.core.somaxconn": "1024"},
    ),
    ("sysctls-absent", {}, {}, "sysctls", MISSING),
    # network modes
    ("net-bridge", {}, {}, "network_mode", "bridge"),
    ("net-host", {}, {"network_mode": "host"}, "network_mode", "host"),
    ("net-none", {}, {"network_mode": "none"}, "network_mode", "none"),
    ("net-awsvpc", {}, {"network_mode": "awsvpc"}, "network_mode", f"container:{SANDBOX}"),
    # ports
    (
        "ports-bridge",
        {
            "portMappings": [
                {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
                {"containerPort": 53, "protocol": "udp"},
                {"containerPort": 443, "hostPort": 0},
                {"containerPortRange": "9000-9002", "protocol": "tcp"},
            ]
        },
        {},
        "ports",
        {
            "80/tcp": 8080,
            "53/udp": None,
            "443/tcp": None,
            "9000/tcp": None,
            "9001/tcp": None,
            "9002/tcp": None,
        },
    ),
    (
        "ports-awsvpc",
        {"portMappings": [{"containerPort": 80, "hostPort": 80}]},
        {"network_mode": "awsvpc"},
        "ports",
        MISSING,
    ),
    (
        "ports-host",
        {"portMappings": [{"containerPort": 80, "hostPort": 80}]},
        {"network_mode": "host"},
        "ports",
        MISSING,
    ),
    (
        "ports-none",
        {"portMappings": [{"containerPort": 80}]},
        {"network_mode": "none"},
        "ports",
        MISSING,
    ),
    # links
    (
        "links-bridge",
        {"links": ["db:database", "cache"]},
        {},
        "links",
        {f"{PREFIX}db": "database", f"{PREFIX}cache": "cache"},
    ),
    ("links-awsvpc", {"links": ["db:database"]}, {"network_mode": "awsvpc"}, "links", MISSING),
    # volumesFrom
    (
        "volumes_from",
        {
            "volumesFrom": [
                {"sourceContainer": "data", "readOnly": True},
                {"sourceContainer": "conf"},
            ]
        },
        {},
        "volumes_from",
        [f"{PREFIX}data:ro", f"{PREFIX}conf:rw"],
    ),
    # pid / ipc
    ("pid-host", {}, {"pid_mode": "host"}, "pid_mode", "host"),
    (
        "pid-task-sandbox",
        {},
        {"pid_mode": "task", "network_mode": "awsvpc"},
        "pid_mode",
        f"container:{SANDBOX}",
    ),
    ("pid-task-no-sandbox", {}, {"pid_mode": "task"}, "pid_mode", MISSING),
    ("pid-absent", {}, {}, "pid_mode", MISSING),
    ("ipc-host", {}, {"ipc_mode": "host"}, "ipc_mode", "host"),
    (
        "ipc-task-sandbox",
        {},
        {"ipc_mode": "task", "network_mode": "awsvpc"},
        "ipc_mode",
        f"container:{SANDBOX}",
    ),
    ("ipc-task-no-sandbox", {}, {"ipc_mode": "task"}, "ipc_mode", MISSING),
    ("ipc-none", {}, {"ipc_mode": "none"}, "ipc_mode", "none"),
    ("ipc-absent", {}, {}, "ipc_mode", MISSING),
]


@pytest.mark.parametrize(
    "container, spec_kw, key, want", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_create_kwargs_field(container, spec_kw, key, want) -> None:
    kw = kwargs_for(container, **spec_kw)
    if want is MISSING:
        assert key not in kw
    else:
        assert kw[key] == want


def test_bridge_with_sandbox_shares_pid_and_ipc() -> None:
    kw = kwargs_for({}, sandbox_id=SANDBOX, pid_mode="task", ipc_mode="task")
    assert kw["pid_mode"] == kw["ipc_mode"] == f"container:{SANDBOX}"
    assert kw["network_mode"] == "bridge"


def test_awsvpc_requires_sandbox() -> None:
    container = {"name": "app", "image": "x"}
    spec = make_spec([container], network_mode="awsvpc")
    with pytest.raises(ValueError, match="sandbox"):
        dc.create_kwargs(spec, container, agent_id=AGENT, sandbox_id=None)


def test_unknown_network_mode() -> None:
    with pytest.raises(ValueError, match="network mode"):
        kwargs_for({}, network_mode="nat")


def test_ulimits() -> None:
    kw = kwargs_for(
        {
            "ulimits": [
                {"name": "nofile", "softLimit": 1024, "hardLimit": 4096},
                {"name": "core", "softLimit": 0, "hardLimit": 0},
            ]
        }
    )
    assert all(isinstance(u, Ulimit) for u in kw["ulimits"])
    assert kw["ulimits"] == [
        Ulimit(name="nofile", soft=1024, hard=4096),
        Ulimit(name="core", soft=0, hard=0),
    ]
    assert "ulimits" not in kwargs_for({})


def test_labels_in_kwargs() -> None:
    kw = kwargs_for({"dockerLabels": {"a": "b"}})
    assert kw["labels"]["a"] == "b"
    assert kw["labels"][dc.LABEL_ROLE] == dc.ROLE_APP
    assert kw["labels"][dc.LABEL_AGENT] == AGENT


# ------------------------------------------------------------------------------------------
# Health checks
# ------------------------------------------------------------------------------------------

S = 1_000_000_000


@pytest.mark.parametrize(
    "health, want",
    [
        (None, {"test": ["NONE"]}),
        ({}, {"test": ["NONE"]}),
        (
            {
                "command": ["CMD", "curl", "-f", "http://localhost/"],
                "interval": 10,
                "timeout": 2,
                "retries": 5,
                "startPeriod": 15,
            },
            {
                "test": ["CMD", "curl", "-f", "http://localhost/"],
                "interval": 10 * S,
                "timeout": 2 * S,
                "retries": 5,
                "start_period": 15 * S,
            },
        ),
        (
            {"command": ["CMD-SHELL", "exit 0"]},
            {
                "test": ["CMD-SHELL", "exit 0"],
                "interval": 30 * S,
                "timeout": 5 * S,
                "retries": 3,
                "start_period": 0,
            },
        ),
    ],
    ids=["absent", "empty", "full", "defaults"],
)
def test_healthcheck(health, want) -> None:
    container = {} if health is None else {"healthCheck": health}
    assert kwargs_for(container)["healthcheck"] == want


# ------------------------------------------------------------------------------------------
# Volumes and mount points
# ------------------------------------------------------------------------------------------

VOLUMES = [
    {"name": "hostbind", "host": {"sourcePath": "/srv/data"}},
    {"name": "scratch", "host": {}},
    {"name": "bare"},
    {
        "name": "taskvol",
        "dockerVolumeConfiguration": {
            "scope": "task",
            "driver": "local",
            "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
            "labels": {"purpose": "cache"},
        },
    },
    {"name": "defaultscope", "dockerVolumeConfiguration": {}},
    {
        "name": "sharedauto",
        "dockerVolumeConfiguration": {
            "scope": "shared",
            "autoprovision": True,
            "driver": "local",
            "labels": {"k": "v"},
        },
    },
    {"name": "sharedmanual", "dockerVolumeConfiguration": {"scope": "shared"}},
]


@pytest.mark.parametrize(
    "volume, read_only, want",
    [
        ("hostbind", False, "/srv/data:/data:rw"),
        ("hostbind", True, "/srv/data:/data:ro"),
        ("scratch", False, f"galley-{TASK_ID}-scratch:/data:rw"),
        ("bare", True, f"galley-{TASK_ID}-bare:/data:ro"),
        ("taskvol", False, f"galley-{TASK_ID}-taskvol:/data:rw"),
        ("defaultscope", False, f"galley-{TASK_ID}-defaultscope:/data:rw"),
        ("sharedauto", False, "sharedauto:/data:rw"),
        ("sharedmanual", True, "sharedmanual:/data:ro"),
    ],
)
def test_mount_points(volume, read_only, want) -> None:
    container = {
        "name": "app",
        "image": "x",
        "mountPoints": [{"sourceVolume": volume, "containerPath": "/data", "readOnly": read_only}],
    }
    spec = make_spec([container], volumes=VOLUMES)
    kw = dc.create_kwargs(spec, container, agent_id=AGENT, sandbox_id=None)
    assert kw["volumes"] == [want]


def test_mount_point_unknown_volume() -> None:
    container = {
        "name": "app",
        "image": "x",
        "mountPoints": [{"sourceVolume": "nope", "containerPath": "/d"}],
    }
    with pytest.raises(ValueError, match="nope"):
        dc.create_kwargs(make_spec([container]), container, agent_id=AGENT, sandbox_id=None)


def test_no_mount_points_no_volumes_key() -> None:
    assert "volumes" not in kwargs_for({}, volumes=VOLUMES)


def test_volume_plan() -> None:
    spec = make_spec(volumes=VOLUMES)
    task_labels = {dc.LABEL_TASK: TASK_ARN, dc.LABEL_AGENT: AGENT}
    assert dc.volume_plan(spec, agent_id=AGENT) == [
        dc.VolumePlan(
            f"galley-{TASK_ID}-scratch",
            "local",
            {},
            {**task_labels, dc.LABEL_VOLUME: "scratch"},
            "task",
            "scratch",
        ),
        dc.VolumePlan(
            f"galley-{TASK_ID}-bare",
            "local",
            {},
            {**task_labels, dc.LABEL_VOLUME: "bare"},
            "task",
            "bare",
        ),
        dc.VolumePlan(
            f"galley-{TASK_ID}-taskvol",
            "local",
            {"type": "tmpfs", "device": "tmpfs"},
            {"purpose": "cache", **task_labels, dc.LABEL_VOLUME: "taskvol"},
            "task",
            "taskvol",
        ),
        dc.VolumePlan(
            f"galley-{TASK_ID}-defaultscope",
            "local",
            {},
            {**task_labels, dc.LABEL_VOLUME: "defaultscope"},
            "task",
            "defaultscope",
        ),
        dc.VolumePlan("sharedauto", "local", {}, {"k": "v"}, "shared", "sharedauto"),
    ]


def test_volume_plan_without_agent_id_and_empty() -> None:
    plans = dc.volume_plan(make_spec(volumes=[{"name": "v"}]))
    assert plans[0].labels == {dc.LABEL_TASK: TASK_ARN, dc.LABEL_VOLUME: "v"}
    assert dc.volume_plan(make_spec()) == []


def test_volume_plan_unsupported() -> None:
    spec = make_spec(volumes=[{"name": "e", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}])
    with pytest.raises(ValueError, match="efsVolumeConfiguration"):
        dc.volume_plan(spec)


# ------------------------------------------------------------------------------------------
# Helpers, sandbox, SDK compatibility
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "container, want",
    [({}, 30), ({"stopTimeout": 5}, 5), ({"stopTimeout": 120}, 120), ({"stopTimeout": None}, 30)],
)
def test_stop_timeout(container, want) -> None:
    assert dc.stop_timeout(container) == want
    assert dc.DEFAULT_STOP_TIMEOUT == 30


@pytest.mark.parametrize(
    "ipc_mode, want_ipc", [(None, MISSING), ("task", "shareable"), ("host", MISSING)]
)
def test_sandbox_kwargs(ipc_mode, want_ipc) -> None:
    spec = make_spec(network_mode="awsvpc", ipc_mode=ipc_mode)
    kw = dc.sandbox_kwargs(spec, agent_id=AGENT, image="galley/sandbox:1", network="galley-net")
    expected = {
        "image": "galley/sandbox:1",
        "name": f"{PREFIX}sandbox",
        "network": "galley-net",
        "labels": {
            dc.LABEL_AGENT: AGENT,
            dc.LABEL_TASK: TASK_ARN,
            dc.LABEL_ROLE: dc.ROLE_SANDBOX,
            "com.amazonaws.ecs.task-arn": TASK_ARN,
            "com.amazonaws.ecs.container-name": "~internal~ecs~pause",
            "com.amazonaws.ecs.cluster": CLUSTER_ARN,
            "com.amazonaws.ecs.task-definition-family": "web",
            "com.amazonaws.ecs.task-definition-version": "7",
        },
    }
    if want_ipc is not MISSING:
        expected["ipc_mode"] = want_ipc
    assert kw == expected


RICH = {
    "name": "app",
    "image": "img:1",
    "command": ["sleep", "1"],
    "entryPoint": ["/bin/sh", "-c"],
    "environment": [{"name": "A", "value": "1"}],
    "workingDirectory": "/",
    "user": "0",
    "cpu": 128,
    "memory": 64,
    "memoryReservation": 32,
    "ulimits": [{"name": "nofile", "softLimit": 10, "hardLimit": 20}],
    "readonlyRootFilesystem": True,
    "privileged": False,
    "hostname": "h",
    "extraHosts": [{"hostname": "a", "ipAddress": "1.2.3.4"}],
    "dnsServers": ["1.1.1.1"],
    "dnsSearchDomains": ["x"],
    "linuxParameters": {
        "initProcessEnabled": True,
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "tmpfs": [{"containerPath": "/t", "size": 8}],
        "sharedMemorySize": 8,
        "devices": [{"hostPath": "/dev/null"}],
    },
    "systemControls": [{"namespace": "net.core.somaxconn", "value": "512"}],
    "pseudoTerminal": True,
    "interactive": True,
    "portMappings": [{"containerPort": 80}],
    "links": ["db:d"],
    "volumesFrom": [{"sourceContainer": "db"}],
    "mountPoints": [{"sourceVolume": "bare", "containerPath": "/m"}],
    "healthCheck": {"command": ["CMD-SHELL", "true"]},
    "stopTimeout": 3,
}


@pytest.mark.parametrize("network_mode", ["bridge", "host", "none", "awsvpc"])
def test_kwargs_accepted_by_sdk(network_mode) -> None:
    """Every key is one `client.containers.create()` accepts (it would raise TypeError)."""
    spec = make_spec(
        [RICH, {"name": "db", "image": "x"}],
        network_mode=network_mode,
        volumes=VOLUMES,
        pid_mode="task",
        ipc_mode="task",
    )
    kw = dc.create_kwargs(spec, RICH, agent_id=AGENT, sandbox_id=SANDBOX)
    allowed = set(sdk_containers.RUN_CREATE_KWARGS) | set(sdk_containers.RUN_HOST_CONFIG_KWARGS)
    allowed |= {"ports", "volumes", "network"}
    assert set(kw) <= allowed
    # And the SDK can build its API payload from them without an engine.
    image = kw.pop("image")
    create_args = sdk_containers._create_container_args(dict(kw, image=image, version="1.41"))
    assert create_args["host_config"]["CpuShares"] == 128
    sb = dc.sandbox_kwargs(spec, agent_id=AGENT, image="i", network="n")
    assert set(sb) <= allowed
    sdk_containers._create_container_args(dict(sb, version="1.41"))


def test_sdk_refuses_stop_timeout() -> None:
    """Why create_kwargs has no stop_timeout: the SDK's create() refuses it."""
    client = docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.41")  # never contacted
    with pytest.raises(TypeError, match="stop_timeout"):
        client.containers.create(image="x", stop_timeout=3)


# ------------------------------------------------------------------------------------------
# Start / stop order
# ------------------------------------------------------------------------------------------


def c(name: str, *, depends: list[str] = (), links: list[str] = (), vfrom: list[str] = ()) -> dict:
    out: dict[str, Any] = {"name": name, "image": "x"}
    if depends:
        out["dependsOn"] = [{"containerName": d, "condition": "START"} for d in depends]
    if links:
        out["links"] = list(links)
    if vfrom:
        out["volumesFrom"] = [{"sourceContainer": v} for v in vfrom]
    return out


ORDER_CASES = [
    ("single", [c("a")], ["a"]),
    ("independent-keeps-declaration", [c("b"), c("a"), c("c")], ["b", "a", "c"]),
    ("depends-on", [c("app", depends=["db"]), c("db")], ["db", "app"]),
    ("links", [c("web", links=["api:backend"]), c("api")], ["api", "web"]),
    ("link-no-alias", [c("web", links=["api"]), c("api")], ["api", "web"]),
    ("volumes-from", [c("app", vfrom=["data"]), c("data")], ["data", "app"]),
    (
        "chain",
        [c("a", depends=["b"]), c("b", depends=["c"]), c("c")],
        ["c", "b", "a"],
    ),
    (
        "diamond-stable",
        [
            c("top", depends=["left", "right"]),
            c("left", depends=["base"]),
            c("right", depends=["base"]),
            c("base"),
            c("loner"),
        ],
        ["base", "left", "right", "top", "loner"],
    ),
    (
        "earliest-ready-first",
        [c("x", depends=["z"]), c("y"), c("z")],
        ["y", "z", "x"],
    ),
    (
        "mixed",
        [c("proxy", links=["app"]), c("app", depends=["init"], vfrom=["cfg"]), c("cfg"), c("init")],
        ["cfg", "init", "app", "proxy"],
    ),
    ("empty", [], []),
]


@pytest.mark.parametrize(
    "containers, want", [x[1:] for x in ORDER_CASES], ids=[x[0] for x in ORDER_CASES]
)
def test_dependency_and_stop_order(containers, want) -> None:
    assert dc.dependency_order(containers) == want
    assert dc.stop_order(containers) == list(reversed(want))


@pytest.mark.parametrize(
    "containers, match",
    [
        ([c("a", depends=["b"]), c("b", depends=["a"])], "cycle"),
        ([c("a", depends=["a"])], "cycle"),
        ([c("a", links=["b"]), c("b", depends=["c"]), c("c", vfrom=["a"])], "cycle"),
        ([c("a", depends=["ghost"])], "unknown"),
        ([c("a"), c("a")], "unique"),
    ],
    ids=["two-cycle", "self", "three-cycle-mixed", "unknown", "duplicate"],
)
def test_order_errors(containers, match) -> None:
    with pytest.raises(ValueError, match=match):
        dc.dependency_order(containers)
    with pytest.raises(ValueError, match=match):
        dc.stop_order(containers)
