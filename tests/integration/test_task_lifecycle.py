"""Standalone tasks on real containers: RUNNING, StopTask, essential exits, failures."""

from __future__ import annotations

from typing import Any

import docker

from .conftest import (
    BUSYBOX,
    describe_task,
    register_fargate,
    run_fargate,
    wait_for,
    wait_task_status,
)


def sleeper(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "command": ["sleep", "3600"], **extra}


def test_bridge_task_runs_then_stops_as_ecs_reports_it(ecs: Any, cluster: str,
                                                       docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "lifecycle-sleep", [sleeper(stopTimeout=2)])
    task = run_fargate(ecs, cluster, td)
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["group"] == "family:lifecycle-sleep"
    arn = task["taskArn"]

    running = wait_task_status(ecs, cluster, arn, "RUNNING")
    container = running["containers"][0]
    assert container["lastStatus"] == "RUNNING"
    assert docker_client.containers.get(container["runtimeId"]).status == "running"
    assert running["startedAt"] >= running["createdAt"]
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == [arn]

    stopped = ecs.stop_task(cluster=cluster, task=arn)["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=30)
    assert final["stopCode"] == "UserInitiated"
    assert final["stoppedReason"] == "Task stopped by user"
    # busybox sleep as PID 1 ignores SIGTERM, so Docker kills it after the stopTimeout.
    assert final["containers"][0]["exitCode"] == 137
    assert final["stoppedAt"] >= final["startedAt"]
    assert ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == [arn]
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_essential_container_exit_stops_the_task(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "lifecycle-exit", [
        sleeper("sidecar", essential=False, stopTimeout=2),
        {"name": "job", "image": BUSYBOX, "command": ["sh", "-c", "sleep 1; exit 3"]},
    ])
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=30)
    assert final["stopCode"] == "EssentialContainerExited"
    assert final["stoppedReason"] == "Essential container in task exited"
    codes = {c["name"]: c.get("exitCode") for c in final["containers"]}
    assert codes["job"] == 3
    assert codes["sidecar"] == 137


def test_non_essential_exit_leaves_the_task_running(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "lifecycle-nonessential", [
        sleeper(stopTimeout=2),
        {"name": "once", "image": BUSYBOX, "essential": False,
         "command": ["sh", "-c", "exit 0"]},
    ])
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    wait_for(lambda: {c["name"]: c["lastStatus"] for c in describe_task(ecs, cluster, arn)[
        "containers"]} == {"app": "RUNNING", "once": "STOPPED"})
    task = describe_task(ecs, cluster, arn)
    assert task["lastStatus"] == "RUNNING"
    assert next(c for c in task["containers"] if c["name"] == "once")["exitCode"] == 0


def test_missing_image_fails_fast_with_cannot_pull(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "lifecycle-noimage", [
        {"name": "app", "image": "galley-test/does-not-exist:1", "memory": 64}])
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=60)
    assert final["stopCode"] == "TaskFailedToStart"
    assert final["stoppedReason"].startswith("CannotPullContainerError")


def test_oom_kill_is_reported(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "lifecycle-oom", [{
        "name": "hog", "image": BUSYBOX, "memory": 8,
        # Grows a shell variable until the 8 MiB limit kills it.
        "command": ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]}])
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=60)
    hog = final["containers"][0]
    assert hog["exitCode"] == 137
    assert hog["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert final["stopCode"] == "EssentialContainerExited"


def test_stop_before_start_and_stop_twice(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "lifecycle-quickstop", [sleeper(stopTimeout=2)])
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    first = ecs.stop_task(cluster=cluster, task=arn, reason="changed my mind")["task"]
    assert first["stoppedReason"] == "changed my mind"
    again = ecs.stop_task(cluster=cluster, task=arn)["task"]
    assert again["stoppedReason"] == "changed my mind"
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=30)
    assert final["stoppedReason"] == "changed my mind"
    assert final["stopCode"] == "UserInitiated"
