"""kill -9 Galley and start it again: nothing lost, containers re-adopted, deaths noticed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from .conftest import BUSYBOX, register_fargate, run_fargate, wait_for, wait_task_status
from .galley_process import GalleyProcess


@pytest.fixture
def own_galley(tmp_path: Path, docker_client: docker.DockerClient):  # type: ignore[no-untyped-def]
    proc = GalleyProcess(tmp_path / "data").start()
    yield proc
    proc.cleanup()


def containers_of(docker_client: docker.DockerClient, task_arn: str
                  ) -> list[docker.models.containers.Container]:
    """The task's containers and its awsvpc sandbox (which may have come from the warm pool,
    so it is found by its name rather than by the task label)."""
    found = {c.id: c for c in docker_client.containers.list(
        all=True, filters={"label": f"galley.task-arn={task_arn}"})}
    sandbox = f"galley-{task_arn.rsplit('/', 1)[1][:12]}-sandbox"
    for c in docker_client.containers.list(all=True, filters={"name": sandbox}):
        found[c.id] = c
    return list(found.values())


def test_restart_readopts_running_tasks_and_reports_deaths(
        own_galley: GalleyProcess, docker_client: docker.DockerClient) -> None:
    ecs = own_galley.client()
    ecs.create_cluster(clusterName="restart")
    sleeper = {"image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 2}
    td = register_fargate(ecs, "restart-app", [{"name": "a", **sleeper}, {"name": "b", **sleeper}])
    # Let the warm sandbox pool fill, so the re-adopted task's sandbox is a pooled one.
    install = (own_galley.data_dir / "installation-id").read_text().strip()
    pool = {"label": f"galley.agent={install}-fargate", "name": "galley-pool-",
            "status": "running"}
    wait_for(lambda: len(docker_client.containers.list(filters=pool)) >= 2)
    keep = run_fargate(ecs, "restart", td, tags=[{"key": "team", "value": "kitchen"}])["taskArn"]
    doomed = run_fargate(ecs, "restart", td)["taskArn"]
    before = wait_task_status(ecs, "restart", keep, "RUNNING")
    wait_task_status(ecs, "restart", doomed, "RUNNING")
    started = {c.id: c.attrs["State"]["StartedAt"] for c in containers_of(docker_client, keep)}
    assert len(started) == 3  # two containers and the awsvpc sandbox

    own_galley.stop(kill=True)
    victim = next(c for c in containers_of(docker_client, doomed)
                  if c.labels.get("galley.container-name") == "a")
    victim.kill()  # dies while nobody is watching
    own_galley.start()

    after = wait_task_status(ecs, "restart", keep, "RUNNING")
    assert [c["runtimeId"] for c in after["containers"]] == \
        [c["runtimeId"] for c in before["containers"]]
    now = {c.id: c.attrs["State"]["StartedAt"] for c in containers_of(docker_client, keep)}
    assert now == started  # the same containers, not restarted, not duplicated
    assert all(c.status == "running" for c in containers_of(docker_client, keep))

    stopped = wait_task_status(ecs, "restart", doomed, "STOPPED", timeout=30)
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert {c["name"]: c["exitCode"] for c in stopped["containers"]}["a"] == 137

    # Clusters, task definitions, tasks and tags all survived.
    assert ecs.describe_clusters(clusters=["restart"])["clusters"][0]["status"] == "ACTIVE"
    assert ecs.describe_task_definition(taskDefinition="restart-app")["taskDefinition"][
        "revision"] == 1
    tagged = ecs.describe_tasks(cluster="restart", tasks=[keep], include=["TAGS"])["tasks"][0]
    assert tagged["tags"] == [{"key": "team", "value": "kitchen"}]


def test_cleanup_stops_every_task_and_removes_every_container(
        own_galley: GalleyProcess, docker_client: docker.DockerClient) -> None:
    ecs = own_galley.client()
    ecs.create_cluster(clusterName="cleanup")
    td = register_fargate(ecs, "cleanup-app", [
        {"name": "a", "image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 2}])
    arn = run_fargate(ecs, "cleanup", td)["taskArn"]
    wait_task_status(ecs, "cleanup", arn, "RUNNING")
    own_galley.stop()
    result = own_galley.galley("cleanup", "--data-dir", str(own_galley.data_dir))
    assert result.returncode == 0, result.stderr
    assert containers_of(docker_client, arn) == []
    own_galley.start()
    task = ecs.describe_tasks(cluster="cleanup", tasks=[arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED"


def test_galley_exits_promptly_while_a_task_is_stopping(own_galley: GalleyProcess) -> None:
    ecs = own_galley.client()
    ecs.create_cluster(clusterName="shutdown")
    td = register_fargate(ecs, "slow-stop", [
        {"name": "a", "image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 20}])
    arn = run_fargate(ecs, "shutdown", td)["taskArn"]
    wait_task_status(ecs, "shutdown", arn, "RUNNING")
    ecs.stop_task(cluster="shutdown", task=arn)  # a 20 s stop timeout is now in flight
    started = time.monotonic()
    own_galley.stop()
    assert time.monotonic() - started < 5  # containers outlive Galley; nothing to wait for
    own_galley.start()  # and the restarted Galley finishes the stop it inherited
    assert wait_task_status(ecs, "shutdown", arn, "STOPPED", timeout=60)["stopCode"] == \
        "UserInitiated"


def test_silent_agent_is_disconnected_and_comes_back_as_the_same_instance(
        tmp_path: Path, docker_client: docker.DockerClient) -> None:
    galley = GalleyProcess(tmp_path / "data", GALLEY_AGENT_TIMEOUT_SECONDS="3").start()
    agent = None
    try:
        ecs = galley.client()
        ecs.create_cluster(clusterName="hosts")
        agent_dir = tmp_path / "agent"
        agent = galley.agent("hosts", agent_dir, "--poll-seconds", "1")
        arn = ecs.list_container_instances(cluster="hosts")["containerInstanceArns"][0]
        ecs.register_task_definition(family="on-host", containerDefinitions=[
            {"name": "app", "image": BUSYBOX, "memory": 16, "stopTimeout": 1,
             "command": ["sleep", "3600"]}])
        task = ecs.run_task(cluster="hosts", taskDefinition="on-host",
                            launchType="EC2")["tasks"][0]
        running = wait_task_status(ecs, "hosts", task["taskArn"], "RUNNING")
        container_id = running["containers"][0]["runtimeId"]

        def connected() -> bool:
            return bool(ecs.describe_container_instances(
                cluster="hosts", containerInstances=[arn])["containerInstances"][0][
                "agentConnected"])

        agent.kill()  # the host's agent dies; its container keeps running
        agent.wait()
        wait_for(lambda: not connected(), timeout=20)
        refused = ecs.run_task(cluster="hosts", taskDefinition="on-host", launchType="EC2")
        assert refused["tasks"] == [] and refused["failures"][0]["reason"] == "AGENT"

        agent = galley.agent("hosts", agent_dir, "--poll-seconds", "1")  # same data dir
        wait_for(connected, timeout=20)
        assert ecs.list_container_instances(cluster="hosts")["containerInstanceArns"] == [arn]
        again = wait_task_status(ecs, "hosts", task["taskArn"], "RUNNING")
        assert again["containers"][0]["runtimeId"] == container_id  # re-adopted, not restarted
        assert len(docker_client.containers.list(
            filters={"label": f"galley.task-arn={task['taskArn']}"})) == 1
        ecs.stop_task(cluster="hosts", task=task["taskArn"])
        wait_task_status(ecs, "hosts", task["taskArn"], "STOPPED")
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=30)
        instance = tmp_path / "agent" / "instance.json"
        if instance.exists():
            agent_id = json.loads(instance.read_text())["containerInstanceArn"].rsplit("/", 1)[1]
            for c in docker_client.containers.list(
                    all=True, filters={"label": f"galley.agent={agent_id}"}):
                c.remove(force=True)
        galley.cleanup()
