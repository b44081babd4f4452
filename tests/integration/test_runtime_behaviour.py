"""What a user sees of running tasks: dependsOn ordering, health checks, stopTimeout, container
fields, awsvpc networking, and task timestamps/states, checked through DescribeTasks and Docker."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from .conftest import BUSYBOX, describe_task, wait_for, wait_task_status
from .galley_process import GalleyProcess

MiB = 1024 * 1024
SUBNET = "subnet-12345"
NETWORK = {"awsvpcConfiguration": {"subnets": [SUBNET]}}
TASK_STATES = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING",
               "DEPROVISIONING", "STOPPED"]


# ---- helpers --------------------------------------------------------------------------------




def assert_never_started(docker_client: docker.DockerClient, container: dict[str, Any]) -> None:
    """The task's container (as DescribeTasks shows it) was never started in Docker, if it was
    created at all."""
    if container.get("runtimeId"):
        try:
            assert never_started(inspect(docker_client, container["runtimeId"]))
        except docker.errors.NotFound:
            pass

def sandbox_of(docker_client: docker.DockerClient, container_id: str) -> str:
    """The id of the awsvpc sandbox whose network namespace a task container joined."""
    mode = inspect(docker_client, container_id)["HostConfig"]["NetworkMode"]
    assert mode.startswith("container:"), mode
    return str(mode.split(":", 1)[1])

def register_fargate(ecs: Any, family: str, containers: list[dict[str, Any]], **extra: Any) -> str:
    return ecs.register_task_definition(
        family=family, containerDefinitions=containers, networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        **extra)["taskDefinition"]["taskDefinitionArn"]


def run_fargate(ecs: Any, cluster: str, td: str, **extra: Any) -> list[dict[str, Any]]:
    return ecs.run_task(cluster=cluster, taskDefinition=td, launchType="FARGATE",
                        networkConfiguration=NETWORK, **extra)["tasks"]


def sleeper(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 2,
            **extra}


def by_name(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in task["containers"]}


def inspect(docker_client: docker.DockerClient, runtime_id: str) -> dict[str, Any]:
    return docker_client.api.inspect_container(runtime_id)


def docker_time(value: str) -> datetime:
    """Docker's RFC 3339 nanosecond timestamps as aware datetimes."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", value)
    assert m, value
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz)


def never_started(info: dict[str, Any]) -> bool:
    return info["State"]["StartedAt"].startswith("0001-01-01")


def exec_out(docker_client: docker.DockerClient, runtime_id: str, cmd: Any,
             **kw: Any) -> tuple[int, str]:
    code, out = docker_client.containers.get(runtime_id).exec_run(cmd, **kw)
    return code, out.decode(errors="replace").strip()


def eni_details(task: dict[str, Any]) -> dict[str, str]:
    eni = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"]
    assert len(eni) == 1, task["attachments"]
    return {d["name"]: d["value"] for d in eni[0]["details"]}


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def stop_and_time(ecs: Any, cluster: str, arn: str, timeout: float = 30.0
                  ) -> tuple[float, dict[str, Any]]:
    """StopTask, then poll DescribeTasks every 0.1 s; (seconds until STOPPED, final task)."""
    t0 = time.monotonic()
    ecs.stop_task(cluster=cluster, task=arn)
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=timeout)
    return time.monotonic() - t0, final


# ---- 1. dependsOn ---------------------------------------------------------------------------


def test_depends_on_success_starts_app_after_init_finished(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-dep-success", [
        {"name": "init", "image": BUSYBOX, "essential": False,
         "command": ["sh", "-c", "sleep 1; echo done > /shared/x; exit 0"],
         "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared"}]},
        sleeper("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}],
                mountPoints=[{"sourceVolume": "shared", "containerPath": "/shared"}]),
    ], volumes=[{"name": "shared"}])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    cs = by_name(task)
    assert cs["app"]["lastStatus"] == "RUNNING"
    init = wait_for(lambda: (c := by_name(describe_task(ecs, cluster, arn))["init"])[
        "lastStatus"] == "STOPPED" and c)
    assert init["exitCode"] == 0

    init_info = inspect(docker_client, init["runtimeId"])
    app_info = inspect(docker_client, cs["app"]["runtimeId"])
    assert init_info["State"]["ExitCode"] == 0
    assert app_info["State"]["Running"]
    assert docker_time(app_info["State"]["StartedAt"]) >= \
        docker_time(init_info["State"]["FinishedAt"])
    # What init wrote is there for the app.
    assert exec_out(docker_client, cs["app"]["runtimeId"], ["cat", "/shared/x"]) == (0, "done")


def test_depends_on_start_and_complete_order(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-dep-start-complete", [
        sleeper("b", dependsOn=[{"containerName": "a", "condition": "START"}]),
        sleeper("a"),
        {"name": "job", "image": BUSYBOX, "essential": False,
         "command": ["sh", "-c", "sleep 1; exit 3"]},
        sleeper("after", dependsOn=[{"containerName": "job", "condition": "COMPLETE"}]),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    cs = by_name(task)
    for name in ("a", "b", "after"):
        assert cs[name]["lastStatus"] == "RUNNING", cs[name]
    job = wait_for(lambda: (c := by_name(describe_task(ecs, cluster, arn))["job"])[
        "lastStatus"] == "STOPPED" and c)
    assert job["exitCode"] == 3
    info = {n: inspect(docker_client, c["runtimeId"]) for n, c in cs.items()}
    assert docker_time(info["b"]["State"]["StartedAt"]) >= \
        docker_time(info["a"]["State"]["StartedAt"])
    # COMPLETE is met by any exit code: "after" started once job had exited 3.
    assert docker_time(info["after"]["State"]["StartedAt"]) >= \
        docker_time(info["job"]["State"]["FinishedAt"])
    assert info["job"]["State"]["ExitCode"] == 3


def test_depends_on_healthy_waits_for_the_health_check(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-dep-healthy", [
        {"name": "db", "image": BUSYBOX, "stopTimeout": 2,
         "command": ["sh", "-c", "sleep 2; touch /tmp/ready; sleep 3600"],
         "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5,
                         "timeout": 2, "retries": 3, "startPeriod": 1}},
        sleeper("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    # Before db is healthy the app has not started.
    pending = wait_for(lambda: (t := describe_task(ecs, cluster, arn)).get("containers")
                       and by_name(t)["db"].get("runtimeId") and t, timeout=30)
    if pending["lastStatus"] != "RUNNING":
        assert by_name(pending)["app"]["lastStatus"] == "PENDING"

    task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    cs = by_name(task)
    assert cs["db"]["healthStatus"] == "HEALTHY"
    assert cs["app"]["lastStatus"] == "RUNNING"
    db = inspect(docker_client, cs["db"]["runtimeId"])
    app = inspect(docker_client, cs["app"]["runtimeId"])
    assert db["State"]["Health"]["Status"] == "healthy"
    first_healthy = min(docker_time(entry["End"]) for entry in db["State"]["Health"]["Log"]
                        if entry["ExitCode"] == 0)
    app_started = docker_time(app["State"]["StartedAt"])
    assert app_started >= first_healthy
    # /tmp/ready exists only 2 s after db started, so nothing can be healthy before that.
    assert (app_started - docker_time(db["State"]["StartedAt"])).total_seconds() >= 2


def test_failed_success_dependency_stops_task_without_starting_dependent(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-dep-success-fails", [
        {"name": "init", "image": BUSYBOX, "essential": False,
         "command": ["sh", "-c", "exit 1"]},
        sleeper("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=60)
    assert final["stopCode"] == "TaskFailedToStart"
    reason = final["stoppedReason"]
    assert "init" in reason and "app" in reason, reason
    assert "startedAt" not in final
    cs = by_name(final)
    assert cs["init"]["exitCode"] == 1
    assert cs["app"]["lastStatus"] == "STOPPED"
    assert "exitCode" not in cs["app"], cs["app"]
    assert_never_started(docker_client, cs["app"])


def test_start_timeout_on_healthy_dependency_stops_task(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-dep-timeout", [
        {"name": "db", "image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 2,
         "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/never"], "interval": 5,
                         "timeout": 2, "retries": 10}},
        sleeper("app", startTimeout=3,
                dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
    ])
    t0 = time.monotonic()
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=45)
    elapsed = time.monotonic() - t0
    assert elapsed >= 3, elapsed
    assert final["stopCode"] == "TaskFailedToStart"
    reason = final["stoppedReason"]
    assert re.search(r"time(d)?[ -]?out", reason, re.I) and "app" in reason, reason
    assert "startedAt" not in final
    cs = by_name(final)
    assert "exitCode" not in cs["app"], cs["app"]
    assert_never_started(docker_client, cs["app"])


# ---- 2. health checks -----------------------------------------------------------------------


def test_passing_health_check_makes_container_and_task_healthy(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-health-ok", [
        sleeper("web", healthCheck={"command": ["CMD-SHELL", "true"], "interval": 5,
                                    "timeout": 2, "retries": 2, "startPeriod": 0}),
        sleeper("side", essential=False),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    running = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    web_id = by_name(running)["web"]["runtimeId"]
    hc = inspect(docker_client, web_id)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD-SHELL", "true"]
    assert hc["Interval"] == 5 * 10**9 and hc["Timeout"] == 2 * 10**9 and hc["Retries"] == 2
    task = wait_for(lambda: (t := describe_task(ecs, cluster, arn))["healthStatus"] == "HEALTHY"
                    and t, timeout=30)
    cs = by_name(task)
    assert cs["web"]["healthStatus"] == "HEALTHY"
    assert cs["side"]["healthStatus"] == "UNKNOWN"
    assert inspect(docker_client, web_id)["State"]["Health"]["Status"] == "healthy"


def test_failing_health_check_makes_container_and_task_unhealthy(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-health-bad", [
        sleeper("web", healthCheck={"command": ["CMD-SHELL", "exit 1"], "interval": 5,
                                    "timeout": 2, "retries": 1}),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    running = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    assert running["healthStatus"] == "UNKNOWN"  # no verdict yet
    task = wait_for(lambda: (t := describe_task(ecs, cluster, arn))["healthStatus"] == "UNHEALTHY"
                    and t, timeout=30)
    web = by_name(task)["web"]
    assert web["healthStatus"] == "UNHEALTHY"
    assert inspect(docker_client, web["runtimeId"])["State"]["Health"]["Status"] == "unhealthy"


@pytest.fixture
def image_with_healthcheck(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[str]:
    tag = f"galley-test/busybox-hc:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD true\n")
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    yield tag
    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.APIError:
        pass


def test_no_health_check_reports_unknown_and_image_healthcheck_is_ignored(
        ecs: Any, cluster: str, docker_client: docker.DockerClient,
        image_with_healthcheck: str) -> None:
    assert docker_client.images.get(image_with_healthcheck).attrs["Config"]["Healthcheck"][
        "Test"] == ["CMD-SHELL", "true"]
    td = register_fargate(ecs, "rt-health-none", [
        {**sleeper("app"), "image": image_with_healthcheck},
        sleeper("plain"),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    running = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    time.sleep(3.5)  # the image's 1 s HEALTHCHECK would have reported by now
    task = describe_task(ecs, cluster, arn)
    assert task["healthStatus"] == "UNKNOWN"
    for c in task["containers"]:
        assert c["healthStatus"] == "UNKNOWN", c
    info = inspect(docker_client, by_name(running)["app"]["runtimeId"])
    assert info["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert "Health" not in info["State"] or info["State"]["Health"] is None


# ---- 3. stopTimeout -------------------------------------------------------------------------


def test_stop_timeout_kills_a_container_ignoring_sigterm(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-stop-ignore", [sleeper("app", stopTimeout=3)])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    running = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    elapsed, final = stop_and_time(ecs, cluster, arn)
    assert 3 <= elapsed < 3 + 6, elapsed
    app = by_name(final)["app"]
    assert app["exitCode"] == 137
    assert inspect(docker_client, by_name(running)["app"]["runtimeId"])["State"]["ExitCode"] == 137


def test_container_trapping_sigterm_stops_promptly(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    # A long stopTimeout, so a SIGKILL after it could not pass for a prompt stop.
    td = register_fargate(ecs, "rt-stop-trap", [{
        "name": "app", "image": BUSYBOX, "stopTimeout": 10,
        "command": ["sh", "-c", 'trap "exit 42" TERM; while true; do sleep 0.2; done']}])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    running = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    elapsed, final = stop_and_time(ecs, cluster, arn)
    assert elapsed < 3, elapsed
    assert by_name(final)["app"]["exitCode"] == 42
    assert inspect(docker_client, by_name(running)["app"]["runtimeId"])["State"]["ExitCode"] == 42


# ---- 4. container fields --------------------------------------------------------------------


def test_container_fields_and_run_task_overrides_are_honoured(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-fields", [{
        "name": "app", "image": BUSYBOX, "stopTimeout": 2,
        "entryPoint": ["sh", "-c"], "command": ["exec sleep 3600"],
        "environment": [{"name": "FOO", "value": "foo"}, {"name": "KEEP", "value": "keep"}],
        "workingDirectory": "/tmp", "user": "65534",
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "dockerLabels": {"team": "galley", "tier": "backend"},
        "memory": 128, "memoryReservation": 64, "cpu": 128,
    }])
    command = ["echo started-$FOO > /tmp/marker; exec sleep 3600"]
    overrides = {"containerOverrides": [{
        "name": "app", "command": command,
        "environment": [{"name": "FOO", "value": "bar"}, {"name": "NEW", "value": "new"}]}]}
    task = run_fargate(ecs, cluster, td, overrides=overrides)[0]
    assert task["overrides"]["containerOverrides"][0]["command"] == command
    running = wait_task_status(ecs, cluster, task["taskArn"], "RUNNING", timeout=60)
    app = by_name(running)["app"]
    assert app["cpu"] == "128" and app["memory"] == "128" and app["memoryReservation"] == "64"
    rid = app["runtimeId"]
    info = inspect(docker_client, rid)
    config, host = info["Config"], info["HostConfig"]

    assert config["Entrypoint"] == ["sh", "-c"]
    assert config["Cmd"] == command
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["FOO"] == "bar" and env["KEEP"] == "keep" and env["NEW"] == "new"
    assert config["WorkingDir"] == "/tmp"
    assert config["User"] == "65534"
    assert config["Labels"]["team"] == "galley" and config["Labels"]["tier"] == "backend"
    assert config["Labels"]["com.amazonaws.ecs.container-name"] == "app"
    assert config["Labels"]["com.amazonaws.ecs.task-arn"] == running["taskArn"]
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in host["Ulimits"]] == [("nofile", 1024, 2048)]
    assert host["Memory"] == 128 * MiB
    assert host["MemoryReservation"] == 64 * MiB
    assert host["CpuShares"] == 128

    # And inside the running container.
    assert exec_out(docker_client, rid, ["sh", "-c", "echo $FOO $KEEP $NEW"]) == (0, "bar keep new")
    assert exec_out(docker_client, rid, ["id", "-u"]) == (0, "65534")
    assert exec_out(docker_client, rid, ["pwd"]) == (0, "/tmp")
    assert exec_out(docker_client, rid, ["sh", "-c", "ulimit -n"]) == (0, "1024")
    assert exec_out(docker_client, rid, ["sh", "-c", "ulimit -Hn"]) == (0, "2048")
    assert wait_for(lambda: exec_out(docker_client, rid, ["cat", "/tmp/marker"])
                    == (0, "started-bar"), timeout=10)


def test_volumes_mount_points_volumes_from_and_read_only(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-volumes", [
        sleeper("writer", command=["sh", "-c", "echo hello > /data/msg; exec sleep 3600"],
                mountPoints=[{"sourceVolume": "data", "containerPath": "/data"}]),
        sleeper("reader", readonlyRootFilesystem=True,
                mountPoints=[{"sourceVolume": "data", "containerPath": "/data",
                              "readOnly": True}]),
        sleeper("borrower", volumesFrom=[{"sourceContainer": "writer", "readOnly": True}]),
    ], volumes=[{"name": "data"}])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    ids = {n: c["runtimeId"] for n, c in by_name(task).items()}
    info = {n: inspect(docker_client, i) for n, i in ids.items()}

    # One task-scoped docker volume, mounted rw in the writer and ro in the reader.
    w_mounts = [m for m in info["writer"]["Mounts"] if m["Destination"] == "/data"]
    r_mounts = [m for m in info["reader"]["Mounts"] if m["Destination"] == "/data"]
    assert len(w_mounts) == 1 and len(r_mounts) == 1
    assert w_mounts[0]["Type"] == "volume" and w_mounts[0]["RW"] is True
    assert r_mounts[0]["Name"] == w_mounts[0]["Name"] and r_mounts[0]["RW"] is False
    assert info["reader"]["HostConfig"]["ReadonlyRootfs"] is True
    assert info["writer"]["HostConfig"]["ReadonlyRootfs"] is False
    assert [v.split(":")[-1] for v in info["borrower"]["HostConfig"]["VolumesFrom"]] == ["ro"]

    assert wait_for(lambda: exec_out(docker_client, ids["reader"], ["cat", "/data/msg"])
                    == (0, "hello"), timeout=10)
    assert exec_out(docker_client, ids["borrower"], ["cat", "/data/msg"]) == (0, "hello")
    assert exec_out(docker_client, ids["writer"], ["touch", "/data/w"])[0] == 0
    assert exec_out(docker_client, ids["reader"], ["touch", "/data/r"])[0] != 0  # ro mount
    assert exec_out(docker_client, ids["borrower"], ["touch", "/data/b"])[0] != 0  # ro volumesFrom
    assert exec_out(docker_client, ids["reader"], ["touch", "/rootfile"])[0] != 0  # ro rootfs
    assert exec_out(docker_client, ids["writer"], ["touch", "/rootfile"])[0] == 0


def test_privileged_is_refused_for_fargate(ecs: Any) -> None:
    with pytest.raises(ecs.exceptions.ClientException):
        register_fargate(ecs, "rt-privileged", [sleeper("app", privileged=True)])


@pytest.fixture
def ec2_agent(galley: GalleyProcess, ecs: Any, cluster: str, docker_client: docker.DockerClient,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `galley agent` registered into the test's cluster (host volumes need EC2 capacity)."""
    data = tmp_path_factory.mktemp("galley-agent")
    env = {**galley.env, **galley.cli_env()}
    log = open(data / "agent.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "galley.cli", "--log-level", "INFO", "agent",
         "--endpoint", galley.endpoint, "--cluster", cluster, "--data-dir", str(data),
         "--poll-seconds", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        arns = wait_for(lambda: proc.poll() is None
                        and ecs.list_container_instances(cluster=cluster)["containerInstanceArns"],
                        timeout=30)
        yield arns[0].rsplit("/", 1)[1]
    finally:
        for arn in ecs.list_tasks(cluster=cluster)["taskArns"]:
            ecs.stop_task(cluster=cluster, task=arn)
            try:
                wait_task_status(ecs, cluster, arn, "STOPPED", timeout=30)
            except AssertionError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if proc.returncode not in (0, -15):
            print((data / "agent.log").read_text()[-3000:])


def test_host_bind_volume_is_visible_inside(
        ecs: Any, cluster: str, docker_client: docker.DockerClient, ec2_agent: str,
        tmp_path: Path) -> None:
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from-the-host\n")
    td = ecs.register_task_definition(
        family="rt-host-volume", requiresCompatibilities=["EC2"],
        volumes=[{"name": "hostdir", "host": {"sourcePath": str(host_dir)}}],
        containerDefinitions=[{
            "name": "app", "image": BUSYBOX, "memory": 64, "stopTimeout": 2,
            "command": ["sh", "-c", "cat /hostdir/in.txt > /hostdir/out.txt; exec sleep 3600"],
            "mountPoints": [{"sourceVolume": "hostdir", "containerPath": "/hostdir"}]}],
    )["taskDefinition"]["taskDefinitionArn"]
    arn = ecs.run_task(cluster=cluster, taskDefinition=td, launchType="EC2")["tasks"][0]["taskArn"]
    try:
        task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
        rid = by_name(task)["app"]["runtimeId"]
        mounts = [m for m in inspect(docker_client, rid)["Mounts"]
                  if m["Destination"] == "/hostdir"]
        assert len(mounts) == 1
        assert mounts[0]["Type"] == "bind" and mounts[0]["Source"] == str(host_dir)
        assert exec_out(docker_client, rid, ["cat", "/hostdir/in.txt"]) == (0, "from-the-host")
        assert wait_for(lambda: (host_dir / "out.txt").exists()
                        and (host_dir / "out.txt").read_text() == "from-the-host\n", timeout=10)
    finally:
        ecs.stop_task(cluster=cluster, task=arn)
        wait_task_status(ecs, cluster, arn, "STOPPED", timeout=30)
        for c in docker_client.containers.list(all=True,
                                               filters={"label": f"galley.task-arn={arn}"}):
            c.remove(force=True)


# ---- 5. awsvpc networking -------------------------------------------------------------------


WEB_7000 = ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html"
            " && exec httpd -f -p 7000 -h /www"]


def test_awsvpc_containers_share_localhost_and_the_task_ip(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-awsvpc", [
        {"name": "web", "image": BUSYBOX, "stopTimeout": 2, "command": WEB_7000,
         "portMappings": [{"containerPort": 7000, "protocol": "tcp"}]},
        sleeper("client"),
    ])
    arn = run_fargate(ecs, cluster, td)[0]["taskArn"]
    task = wait_task_status(ecs, cluster, arn, "RUNNING", timeout=60)
    details = eni_details(task)
    ip = details.get("privateIPv4Address")
    assert ip and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip), details
    assert details["subnetId"] == SUBNET
    assert details["networkInterfaceId"].startswith("eni-")
    assert details.get("macAddress")
    assert task["connectivity"] == "CONNECTED"
    eni = next(a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface")
    assert eni["status"] == "ATTACHED"
    cs = by_name(task)
    for c in cs.values():
        assert c["networkInterfaces"] == [{"attachmentId": eni["id"], "privateIpv4Address": ip}]

    # Both containers live in the sandbox's network namespace, whose address is the ENI's.
    sandbox = inspect(docker_client, sandbox_of(docker_client, cs["client"]["runtimeId"]))
    assert sandbox["Name"] == f"/galley-{arn.rsplit('/', 1)[1][:12]}-sandbox"
    assert ip in [n["IPAddress"] for n in sandbox["NetworkSettings"]["Networks"].values()]
    for c in cs.values():
        assert inspect(docker_client, c["runtimeId"])["HostConfig"]["NetworkMode"] == \
            f"container:{sandbox['Id']}"

    # localhost between containers of the task (busybox wget -T crashes this build: not used)
    assert wait_for(lambda: exec_out(docker_client, cs["client"]["runtimeId"],
                                     ["wget", "-qO-", "http://localhost:7000/"])
                    == (0, "hello-from-web"), timeout=15)
    # and the task IP from this host
    assert wait_for(lambda: _try_get(f"http://{ip}:7000/"), timeout=15) == "hello-from-web\n"


def _try_get(url: str) -> str | None:
    try:
        return http_get(url)
    except OSError:
        return None


def test_two_tasks_listen_on_the_same_port_each_with_its_own_ip(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-awsvpc-pair", [{
        "name": "web", "image": BUSYBOX, "stopTimeout": 2,
        "portMappings": [{"containerPort": 8080}],
        "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html"
                    " && exec httpd -f -p 8080 -h /www"]}])
    tasks = run_fargate(ecs, cluster, td, count=2)
    assert len(tasks) == 2
    running = [wait_task_status(ecs, cluster, t["taskArn"], "RUNNING", timeout=60) for t in tasks]
    ips = [eni_details(t)["privateIPv4Address"] for t in running]
    assert len(set(ips)) == 2, ips
    answers = []
    for task, ip in zip(running, ips, strict=True):
        rid = by_name(task)["web"]["runtimeId"]
        assert inspect(docker_client, rid)["State"]["Running"]
        answers.append(wait_for(lambda ip=ip: _try_get(f"http://{ip}:8080/"), timeout=15))
    assert len(set(answers)) == 2, answers  # two different sandboxes answered
    for task in running:
        assert describe_task(ecs, cluster, task["taskArn"])["lastStatus"] == "RUNNING"


# ---- 6. timestamps and states ---------------------------------------------------------------


def test_timestamps_states_and_version_through_the_life_of_a_task(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "rt-timestamps", [sleeper("app"), sleeper("side", essential=False)])
    created = run_fargate(ecs, cluster, td)[0]
    arn = created["taskArn"]
    assert created["lastStatus"] == "PROVISIONING" and created["desiredStatus"] == "RUNNING"
    assert created["version"] == 1

    seen = [created["lastStatus"]]
    versions = [created["version"]]

    def observe(status: str) -> dict[str, Any] | None:
        t = describe_task(ecs, cluster, arn)
        if t["lastStatus"] != seen[-1]:
            seen.append(t["lastStatus"])
        versions.append(t["version"])
        return t if t["lastStatus"] == status else None

    running = wait_for(lambda: observe("RUNNING"), timeout=60)
    assert running["connectivity"] == "CONNECTED"
    assert running["createdAt"] <= running["pullStartedAt"] <= running["pullStoppedAt"] \
        <= running["startedAt"]
    assert running["createdAt"] <= running["connectivityAt"] <= running["startedAt"]
    assert running["version"] > created["version"]
    for key in ("stoppingAt", "executionStoppedAt", "stoppedAt", "stopCode", "stoppedReason"):
        assert key not in running, key
    runtime_ids = {c["name"]: c["runtimeId"] for c in running["containers"]}
    sandbox_id = sandbox_of(docker_client, running["containers"][0]["runtimeId"])
    for c in running["containers"]:
        assert c["lastStatus"] == "RUNNING" and "exitCode" not in c

    ecs.stop_task(cluster=cluster, task=arn)
    final = wait_for(lambda: observe("STOPPED"), timeout=30)
    assert final["desiredStatus"] == "STOPPED"
    assert final["startedAt"] <= final["stoppingAt"] <= final["executionStoppedAt"] \
        <= final["stoppedAt"]
    assert final["version"] > running["version"]
    assert versions == sorted(versions), versions
    order = [TASK_STATES.index(s) for s in seen]
    assert order == sorted(order), seen
    assert final["stopCode"] == "UserInitiated"
    for c in final["containers"]:
        assert c["lastStatus"] == "STOPPED"
        assert isinstance(c.get("exitCode"), int), c
        st = inspect(docker_client, runtime_ids[c["name"]])["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == c["exitCode"]
    eni = next(a for a in final["attachments"] if a["type"] == "ElasticNetworkInterface")
    assert eni["status"] == "DELETED"
    with pytest.raises(docker.errors.NotFound):  # the sandbox is removed with the task
        docker_client.api.inspect_container(sandbox_id)
