"""Create real containers from galley.agent.docker_config's arguments and inspect them.

Skipped when no Docker engine answers. Uses `galley-test/busybox:latest` (static busybox in a
FROM scratch image), building it only when the tag is missing; the image is never removed. Every
container and volume made here is removed in a `finally`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from galley.agent import docker_config as dc

pytestmark = pytest.mark.docker

IMAGE = "galley-test/busybox:latest"
BUSYBOX = "/usr/bin/busybox"
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENTRYPOINT []
CMD ["sh"]
"""
MIB = 1024 * 1024
S = 1_000_000_000


@pytest.fixture(scope="module")
def client() -> Any:
    try:
        c = docker.from_env(timeout=30)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        pytest.skip(f"no Docker engine: {exc}")
    _ensure_image(c)
    yield c
    c.close()


def _ensure_image(client: Any) -> None:
    """Build the busybox test image unless the tag already exists (another test may share it)."""
    try:
        client.images.get(IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    if not Path(BUSYBOX).is_file():
        pytest.skip(f"{IMAGE} missing and no {BUSYBOX} to build it from")
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy2(BUSYBOX, Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(DOCKERFILE)
        try:
            client.images.build(path=ctx, tag=IMAGE, rm=True, forcerm=True)
        except docker.errors.BuildError:
            # Lost a race with a concurrent identical build: fine if the tag now exists.
            client.images.get(IMAGE)


class Resources:
    """Containers and volumes to remove at the end of a test."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.containers: list[Any] = []
        self.volumes: list[Any] = []

    def create(self, kwargs: dict) -> Any:
        container = self.client.containers.create(**kwargs)
        self.containers.append(container)
        return container

    def cleanup(self) -> None:
        for container in reversed(self.containers):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        for volume in self.volumes:
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                pass


def _spec(containers: list[dict], volumes: list[dict], **extra: Any) -> dc.TaskSpec:
    task_id = uuid.uuid4().hex
    return dc.TaskSpec.from_dict(
        {
            "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/itest/{task_id}",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/itest",
            "family": "itest",
            "revision": 4,
            "launchType": "EC2",
            "containers": containers,
            "volumes": volumes,
            **extra,
        }
    )


def _wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_bridge_task_rich_definition(client: Any) -> None:
    host_dir = Path(tempfile.mkdtemp(prefix="galley-dc-"))
    (host_dir / "hello.txt").write_text("hi")
    db = {
        "name": "db",
        "image": IMAGE,
        "command": ["sleep", "300"],
        "mountPoints": [{"sourceVolume": "shared-data", "containerPath": "/data"}],
        "stopTimeout": 1,  # PID 1 `sleep` ignores SIGTERM: keep the SIGKILL wait short
    }
    app = {
        "name": "app",
        "image": IMAGE,
        "entryPoint": ["/bin/sh", "-c"],
        "command": ["sleep 300"],
        "environment": [{"name": "GREETING", "value": "hello"}, {"name": "EMPTY", "value": ""}],
        "workingDirectory": "/work",
        "user": "0:0",
        "cpu": 256,
        "memory": 64,
        "memoryReservation": 32,
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "readonlyRootFilesystem": True,
        "dockerLabels": {"team": "core"},
        "hostname": "apphost",
        "extraHosts": [{"hostname": "db.internal", "ipAddress": "10.1.2.3"}],
        "dnsServers": ["9.9.9.9"],
        "dnsSearchDomains": ["corp.example"],
        "linuxParameters": {
            "initProcessEnabled": True,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
            "tmpfs": [{"containerPath": "/scratch", "size": 16, "mountOptions": ["noexec"]}],
            "sharedMemorySize": 32,
        },
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "511"}],
        "pseudoTerminal": True,
        "interactive": True,
        "healthCheck": {
            "command": ["CMD-SHELL", "test -f /host/hello.txt"],
            "interval": 5,
            "timeout": 2,
            "retries": 2,
            "startPeriod": 1,
        },
        "portMappings": [
            {"containerPort": 80, "protocol": "tcp"},
            {"containerPort": 53, "hostPort": 0, "protocol": "udp"},
        ],
        "links": ["db:database"],
        "mountPoints": [
            {"sourceVolume": "hostdir", "containerPath": "/host", "readOnly": True},
            {"sourceVolume": "scratchvol", "containerPath": "/cache"},
        ],
        "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
        "dependsOn": [{"containerName": "db", "condition": "START"}],
        "stopTimeout": 2,
    }
    volumes = [
        {"name": "hostdir", "host": {"sourcePath": str(host_dir)}},
        {"name": "scratchvol", "host": {}},
        {
            "name": "shared-data",
            "dockerVolumeConfiguration": {"scope": "task", "driver": "local", "labels": {"x": "y"}},
        },
    ]
    spec = _spec([app, db], volumes, networkMode="bridge", memory="512")
    res = Resources(client)
    try:
        plans = dc.volume_plan(spec, agent_id="itest-agent")
        assert {p.volume for p in plans} == {"scratchvol", "shared-data"}
        for plan in plans:
            res.volumes.append(
                client.volumes.create(
                    name=plan.name,
                    driver=plan.driver,
                    driver_opts=plan.driver_opts,
                    labels=plan.labels,
                )
            )

        order = dc.dependency_order(spec.containers)
        assert order == ["db", "app"]
        made = {}
        for name in order:
            kwargs = dc.create_kwargs(
                spec, spec.container(name), agent_id="itest-agent", sandbox_id=None
            )
            made[name] = res.create(kwargs)

        attrs = client.api.inspect_container(made["app"].id)
        hc, cfg = attrs["HostConfig"], attrs["Config"]
        app_name = dc.container_name(spec, "app")
        db_name = dc.container_name(spec, "db")
        assert attrs["Name"] == f"/{app_name}"
        assert attrs["State"]["Status"] == "created"

        # Config
        assert cfg["Image"] == IMAGE
        assert cfg["Entrypoint"] == ["/bin/sh", "-c"]
        assert cfg["Cmd"] == ["sleep 300"]
        assert "GREETING=hello" in cfg["Env"] and "EMPTY=" in cfg["Env"]
        assert cfg["WorkingDir"] == "/work"
        assert cfg["User"] == "0:0"
        assert cfg["Hostname"] == "apphost"
        assert cfg["Tty"] is True and cfg["OpenStdin"] is True
        assert cfg["Healthcheck"] == {
            "Test": ["CMD-SHELL", "test -f /host/hello.txt"],
            "Interval": 5 * S,
            "Timeout": 2 * S,
            "Retries": 2,
            "StartPeriod": 1 * S,
        }
        labels = cfg["Labels"]
        assert labels["team"] == "core"
        assert labels[dc.LABEL_AGENT] == "itest-agent"
        assert labels[dc.LABEL_TASK] == spec.task_arn
        assert labels[dc.LABEL_CONTAINER] == "app"
        assert labels[dc.LABEL_ROLE] == "app"
        assert labels["com.amazonaws.ecs.task-definition-family"] == "itest"
        assert labels["com.amazonaws.ecs.task-definition-version"] == "4"
        assert labels["com.amazonaws.ecs.cluster"] == spec.cluster_arn
        assert cfg.get("StopTimeout") is None  # the SDK cannot pass it; see dc.stop_timeout
        assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"}

        # HostConfig
        assert hc["Memory"] == 64 * MIB
        assert hc["MemoryReservation"] == 32 * MIB
        assert hc["CpuShares"] == 256
        assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert hc["ReadonlyRootfs"] is True
        assert hc["Init"] is True
        assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["MKNOD"]
        assert hc["Tmpfs"] == {"/scratch": "noexec,size=16m"}
        assert hc["ShmSize"] == 32 * MIB
        assert hc["Sysctls"] == {"net.core.somaxconn": "511"}
        assert hc["Dns"] == ["9.9.9.9"] and hc["DnsSearch"] == ["corp.example"]
        assert hc["ExtraHosts"] == ["db.internal:10.1.2.3"]
        assert hc["NetworkMode"] == "bridge"
        assert hc["PortBindings"] == {
            "80/tcp": [{"HostIp": "", "HostPort": ""}],
            "53/udp": [{"HostIp": "", "HostPort": ""}],
        }
        assert hc["Links"] == [f"/{db_name}:/{app_name}/database"]
        assert hc["VolumesFrom"] == [f"{db_name}:ro"]
        task_vol = dc.task_volume_name(spec, "scratchvol")
        assert sorted(hc["Binds"]) == sorted([f"{host_dir}:/host:ro", f"{task_vol}:/cache:rw"])
        assert not hc.get("LogConfig", {}).get("Type") or hc["LogConfig"]["Type"] == "json-file"

        # db: no healthCheck → image health checks disabled; cpu absent → 2 shares;
        # no container memory → task memory.
        db_attrs = client.api.inspect_container(made["db"].id)
        assert db_attrs["Config"]["Healthcheck"] == {"Test": ["NONE"]}
        assert db_attrs["HostConfig"]["CpuShares"] == 2
        assert db_attrs["HostConfig"]["Memory"] == 512 * MIB
        assert db_attrs["HostConfig"]["Binds"] == [
            f"{dc.task_volume_name(spec, 'shared-data')}:/data:rw"
        ]

        # Start in dependency order; dynamic host ports get assigned.
        for name in order:
            made[name].start()
        made["app"].reload()
        assert made["app"].status == "running", made["app"].logs()
        ports = made["app"].attrs["NetworkSettings"]["Ports"]
        for key in ("80/tcp", "53/udp"):
            assert ports[key], ports
            assert int(ports[key][0]["HostPort"]) > 0

        mounts = {m["Destination"]: m for m in made["app"].attrs["Mounts"]}
        assert mounts["/host"]["Type"] == "bind" and mounts["/host"]["RW"] is False
        assert mounts["/cache"]["Type"] == "volume" and mounts["/cache"]["Name"] == task_vol
        assert mounts["/data"]["RW"] is False  # via volumesFrom db:ro

        exit_code, out = made["app"].exec_run(["cat", "/host/hello.txt"])
        assert (exit_code, out) == (0, b"hi")
        exit_code, _ = made["app"].exec_run(["touch", "/rootfs-is-read-only"])
        assert exit_code != 0
        exit_code, out = made["app"].exec_run(["cat", "/proc/sys/net/core/somaxconn"])
        assert out.strip() == b"511"

        def healthy() -> bool:
            made["app"].reload()
            return made["app"].attrs["State"]["Health"]["Status"] == "healthy"

        assert _wait_for(healthy), made["app"].attrs["State"]["Health"]

        # Stop in reverse order with each container's own timeout.
        for name in dc.stop_order(spec.containers):
            made[name].stop(timeout=dc.stop_timeout(spec.container(name)))
    finally:
        res.cleanup()
        shutil.rmtree(host_dir, ignore_errors=True)


def test_awsvpc_task_joins_sandbox(client: Any) -> None:
    app = {
        "name": "app",
        "image": IMAGE,
        "command": ["sleep", "302"],
        "hostname": "ignored",
        "dnsServers": ["9.9.9.9"],
        "extraHosts": [{"hostname": "x", "ipAddress": "10.0.0.1"}],
        "portMappings": [{"containerPort": 8080, "hostPort": 8080}],
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "600"}],
        "memory": 32,
    }
    spec = _spec([app], [], networkMode="awsvpc", pidMode="task", ipcMode="task")
    res = Resources(client)
    try:
        sb_kwargs = dc.sandbox_kwargs(spec, agent_id="itest-agent", image=IMAGE, network="bridge")
        assert sb_kwargs["ipc_mode"] == "shareable"
        # The real sandbox image's entrypoint is /pause; busybox needs a command to stay up.
        sandbox = res.create({**sb_kwargs, "command": ["sleep", "301"]})
        sandbox.start()

        kwargs = dc.create_kwargs(spec, app, agent_id="itest-agent", sandbox_id=sandbox.id)
        container = res.create(kwargs)
        hc = client.api.inspect_container(container.id)["HostConfig"]
        assert hc["NetworkMode"] == f"container:{sandbox.id}"
        assert hc["PidMode"] == f"container:{sandbox.id}"
        assert hc["IpcMode"] == f"container:{sandbox.id}"
        assert not hc.get("PortBindings") and not hc.get("Dns") and not hc.get("ExtraHosts")
        container.start()
        container.reload()
        assert container.status == "running", container.logs()

        sandbox.reload()
        assert sandbox.labels[dc.LABEL_ROLE] == "sandbox"
        assert sandbox.labels["com.amazonaws.ecs.container-name"] == "~internal~ecs~pause"
        sandbox_ip = sandbox.attrs["NetworkSettings"]["IPAddress"]
        _, out = container.exec_run(["ip", "-4", "addr"])
        assert sandbox_ip and sandbox_ip.encode() in out
        _, out = container.exec_run(["ps"])
        assert b"sleep 301" in out  # the sandbox's process: shared PID namespace
        _, out = container.exec_run(["cat", "/proc/sys/net/core/somaxconn"])
        assert out.strip() == b"600"
    finally:
        res.cleanup()
