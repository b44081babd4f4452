"""Galley across several hosts: three real `galley agent` processes, each its own container
instance with its own resources and identity, running real containers on the engine.

Placement (spread, binpack, memberOf on custom attributes), StartTask, DRAINING (service tasks
move within the deployment bounds, standalone tasks stay), DAEMON services following their
instances, and an agent that is lost and comes back. One Galley for the module with fast knobs:
a task counts as healthy after 2 s RUNNING and a silent agent is disconnected after 3 s.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from botocore.exceptions import ClientError

from .conftest import BUSYBOX, wait_for, wait_task_status
from .galley_process import GalleyProcess

DRAINING_REASON = "Container instance is being drained."
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


class Fleet:
    """The module's Galley and its agents (name -> process, data dir, instance ARN)."""

    def __init__(self, galley: GalleyProcess, root: Path) -> None:
        self.galley = galley
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.arns: dict[str, str] = {}

    def start(self, cluster: str, name: str, *args: str) -> str:
        data_dir = self.root / cluster / name
        self.procs[f"{cluster}/{name}"] = self.galley.agent(
            cluster, data_dir, "--poll-seconds", "1", *args)
        arn = json.loads((data_dir / "instance.json").read_text())["containerInstanceArn"]
        self.arns[f"{cluster}/{name}"] = arn
        return str(arn)

    def kill(self, cluster: str, name: str) -> None:
        proc = self.procs.pop(f"{cluster}/{name}")
        proc.kill()
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
          ) -> Iterator[Fleet]:
    galley = GalleyProcess(tmp_path_factory.mktemp("galley-fleet"),
                           GALLEY_SERVICE_SETTLE_SECONDS="2", GALLEY_AGENT_TIMEOUT_SECONDS="3",
                           GALLEY_LAUNCH_BACKOFF_SECONDS="1", GALLEY_SANDBOX_POOL="0").start()
    fleet = Fleet(galley, tmp_path_factory.mktemp("agents"))
    try:
        yield fleet
    finally:
        ecs = galley.client()
        for cluster in ecs.list_clusters()["clusterArns"]:
            for arn in ecs.list_services(cluster=cluster, maxResults=100)["serviceArns"]:
                ecs.delete_service(cluster=cluster, service=arn, force=True)
            for arn in ecs.list_tasks(cluster=cluster)["taskArns"]:
                ecs.stop_task(cluster=cluster, task=arn)
        # Give the agents a moment to stop their containers; what is left is removed below.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                _live_containers(docker_client, a) for a in fleet.arns.values()):
            time.sleep(0.5)
        fleet.stop_all()
        for arn in fleet.arns.values():
            for c in _containers(docker_client, arn):
                c.remove(force=True)
        galley.cleanup()


def _containers(docker_client: docker.DockerClient, instance_arn: str) -> list[Any]:
    return list(docker_client.containers.list(
        all=True, filters={"label": f"galley.agent={instance_arn.rsplit('/', 1)[1]}"}))


def _live_containers(docker_client: docker.DockerClient, instance_arn: str) -> list[Any]:
    return [c for c in _containers(docker_client, instance_arn) if c.status == "running"]


@pytest.fixture
def ecs(fleet: Fleet) -> Any:
    return fleet.galley.client()


@pytest.fixture
def three(fleet: Fleet, ecs: Any, request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """A fresh cluster with three agents: 1024 CPU units and 512 MiB each, one per zone."""
    cluster = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60] + "-" + secrets.token_hex(3)
    ecs.create_cluster(clusterName=cluster)
    arns = [fleet.start(cluster, f"host{i}", "--cpu", "1024", "--memory", "512",
                        "--attribute", f"ecs.availability-zone={zone}",
                        "--attribute", f"rack=r{i}")
            for i, zone in enumerate(ZONES)]
    register_sleeper(ecs)
    return cluster, arns


def register_sleeper(ecs: Any, family: str = "sleeper", memory: int = 64) -> None:
    ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "app", "image": BUSYBOX, "memory": memory, "stopTimeout": 1,
         "command": ["sleep", "3600"]}])


def live_tasks(ecs: Any, cluster: str, **filters: Any) -> list[dict[str, Any]]:
    arns = ecs.list_tasks(cluster=cluster, **filters)["taskArns"]
    if not arns:
        return []
    return [t for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
            if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]


def wait_running(ecs: Any, cluster: str, n: int, timeout: float = 90, **filters: Any
                 ) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        running = live_tasks(ecs, cluster, **filters)
        return running if len(running) == n else None

    result = wait_for(enough, timeout=timeout)
    assert result is not None
    return result


def service(ecs: Any, cluster: str, name: str) -> dict[str, Any]:
    return dict(ecs.describe_services(cluster=cluster, services=[name])["services"][0])


def instance(ecs: Any, cluster: str, arn: str) -> dict[str, Any]:
    return dict(ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])[
        "containerInstances"][0])


def hosts_of(tasks: list[dict[str, Any]]) -> Counter[str]:
    return Counter(t["containerInstanceArn"] for t in tasks)


# ---- placement across real hosts ------------------------------------------------------------------

def test_three_agents_are_three_instances(ecs: Any, three: tuple[str, list[str]],
                                          docker_client: docker.DockerClient) -> None:
    cluster, arns = three
    assert sorted(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == \
        sorted(arns)
    for arn, zone in zip(arns, ZONES, strict=True):
        ci = instance(ecs, cluster, arn)
        assert ci["status"] == "ACTIVE" and ci["agentConnected"] is True
        attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
        assert attrs["ecs.availability-zone"] == zone
    found = ecs.list_container_instances(cluster=cluster,
                                         filter="attribute:rack in [r0, r2]")
    assert sorted(found["containerInstanceArns"]) == sorted([arns[0], arns[2]])


def test_spread_puts_one_task_per_zone_on_real_hosts(ecs: Any, three: tuple[str, list[str]],
                                                     docker_client: docker.DockerClient
                                                     ) -> None:
    cluster, arns = three
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition="sleeper",
                       desiredCount=3, launchType="EC2", placementStrategy=[
                           {"type": "spread", "field": "attribute:ecs.availability-zone"}])
    running = wait_running(ecs, cluster, 3)
    assert hosts_of(running) == Counter({arn: 1 for arn in arns})
    for task in running:  # each container runs under the agent of the instance it was placed on
        container = docker_client.containers.get(task["containers"][0]["runtimeId"])
        assert container.labels["galley.agent"] == task["containerInstanceArn"].rsplit("/", 1)[1]
        assert container.status == "running"
    counts = [instance(ecs, cluster, arn)["runningTasksCount"] for arn in arns]
    assert counts == [1, 1, 1]


def test_binpack_fills_the_fullest_instance_then_runs_out(ecs: Any,
                                                           three: tuple[str, list[str]]) -> None:
    cluster, arns = three
    register_sleeper(ecs, "big", memory=200)
    first = ecs.run_task(cluster=cluster, taskDefinition="big", launchType="EC2", count=1)
    home = first["tasks"][0]["containerInstanceArn"]
    more = ecs.run_task(cluster=cluster, taskDefinition="big", launchType="EC2", count=5,
                        placementStrategy=[{"type": "binpack", "field": "memory"}])
    # 512 MiB hosts take two 200 MiB tasks each: binpack tops up the first host, then the next.
    placed = hosts_of(more["tasks"])
    assert placed[home] == 1 and sum(placed.values()) == 5 and max(placed.values()) == 2
    refused = ecs.run_task(cluster=cluster, taskDefinition="big", launchType="EC2")
    assert refused["tasks"] == []
    assert {f["reason"] for f in refused["failures"]} == {"RESOURCE:MEMORY"}
    wait_running(ecs, cluster, 6, family="big")


def test_attributes_steer_placement(ecs: Any, three: tuple[str, list[str]]) -> None:
    cluster, arns = three
    target = arns[1]
    put = ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "role", "value": "db", "targetId": target.rsplit("/", 1)[1]}])
    assert put["attributes"] == [{"name": "role", "value": "db",
                                  "targetType": "container-instance", "targetId": target}]
    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                 attributeName="role")["attributes"]
    assert listed == [{"name": "role", "value": "db", "targetType": "container-instance",
                       "targetId": target}]
    constraint = [{"type": "memberOf", "expression": "attribute:role == db"}]
    result = ecs.run_task(cluster=cluster, taskDefinition="sleeper", launchType="EC2", count=3,
                          placementConstraints=constraint)
    assert hosts_of(result["tasks"]) == Counter({target: 3})

    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "role", "targetId": target}])
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance",
                               attributeName="role")["attributes"] == []
    refused = ecs.run_task(cluster=cluster, taskDefinition="sleeper", launchType="EC2",
                           placementConstraints=constraint)
    assert refused["tasks"] == []
    assert {f["reason"] for f in refused["failures"]} == {
        "MemberOf placement constraint unsatisfied."}

    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": f"a{i}", "value": "x", "targetId": target} for i in range(11)])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    # Several attributes on one target in one call; at most 10 custom ones per instance (the
    # agent registered one, rack=r1, so 9 more fill it).
    many = ecs.put_attributes(cluster=cluster, attributes=[
        {"name": f"a{i}", "value": "x", "targetId": target} for i in range(9)])["attributes"]
    assert [a["targetId"] for a in many] == [target] * 9
    assert len(ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                   attributeValue="x", attributeName="a3")["attributes"]) == 1
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": "one-too-many", "value": "x", "targetId": target}])
    assert e.value.response["Error"]["Code"] == "AttributeLimitExceededException"
    assert not any(a["name"] == "one-too-many" for a in ecs.list_attributes(
        cluster=cluster, targetType="container-instance")["attributes"])
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": "role", "value": "db", "targetId": "0123456789abcdef"}])
    assert e.value.response["Error"]["Code"] == "TargetNotFoundException"


def test_start_task_runs_on_the_named_instance(ecs: Any, three: tuple[str, list[str]],
                                               docker_client: docker.DockerClient) -> None:
    cluster, arns = three
    missing = arns[0].rsplit("/", 1)[0] + "/00000000000000000000000000000000"
    result = ecs.start_task(cluster=cluster, taskDefinition="sleeper", startedBy="ops",
                            containerInstances=[arns[2].rsplit("/", 1)[1], missing])
    assert [t["containerInstanceArn"] for t in result["tasks"]] == [arns[2]]
    assert result["failures"] == [{"arn": missing, "reason": "MISSING"}]
    task = wait_task_status(ecs, cluster, result["tasks"][0]["taskArn"], "RUNNING")
    assert task["startedBy"] == "ops" and task["launchType"] == "EC2"
    container = docker_client.containers.get(task["containers"][0]["runtimeId"])
    assert container.labels["galley.agent"] == arns[2].rsplit("/", 1)[1]

    register_sleeper(ecs, "huge", memory=1024)
    refused = ecs.start_task(cluster=cluster, taskDefinition="huge", containerInstances=[arns[0]])
    assert refused["tasks"] == []
    assert refused["failures"] == [{"arn": arns[0], "reason": "RESOURCE:MEMORY"}]


def test_scale_in_follows_binpack(ecs: Any, three: tuple[str, list[str]]) -> None:
    """Binpack scales in where the most memory is left afterwards, not the newest task."""
    cluster, arns = three
    binpack = [{"type": "binpack", "field": "memory"}]
    ecs.create_service(cluster=cluster, serviceName="packed", taskDefinition="sleeper",
                       desiredCount=1, launchType="EC2", placementStrategy=binpack)
    first = wait_running(ecs, cluster, 1, serviceName="packed")[0]
    other = next(a for a in arns if a != first["containerInstanceArn"])
    register_sleeper(ecs, "ballast", memory=300)
    ecs.start_task(cluster=cluster, taskDefinition="ballast", containerInstances=[other])
    ecs.update_service(cluster=cluster, service="packed", desiredCount=2)
    newest = next(t for t in wait_running(ecs, cluster, 2, serviceName="packed")
                  if t["taskArn"] != first["taskArn"])
    assert newest["containerInstanceArn"] == other  # the fuller host, by binpack
    # Once both count as healthy (a task still settling would be the first to go anyway):
    wait_for(lambda: "steady state" in service(ecs, cluster, "packed")["events"][0]["message"],
             timeout=30)
    ecs.update_service(cluster=cluster, service="packed", desiredCount=1)
    wait_task_status(ecs, cluster, first["taskArn"], "STOPPED")
    assert [t["taskArn"] for t in wait_running(ecs, cluster, 1, serviceName="packed")] == [
        newest["taskArn"]]


# ---- draining ------------------------------------------------------------------------------------

def test_draining_moves_service_tasks_and_leaves_standalone_ones(
        ecs: Any, three: tuple[str, list[str]]) -> None:
    cluster, arns = three
    drained = arns[0]
    standalone = ecs.start_task(cluster=cluster, taskDefinition="sleeper",
                                containerInstances=[drained])["tasks"][0]["taskArn"]
    ecs.create_service(cluster=cluster, serviceName="api", taskDefinition="sleeper",
                       desiredCount=3, launchType="EC2",
                       deploymentConfiguration={"maximumPercent": 200,
                                                "minimumHealthyPercent": 100})
    before = wait_running(ecs, cluster, 3, serviceName="api")
    assert hosts_of(before)[drained] == 1
    moved = next(t["taskArn"] for t in before if t["containerInstanceArn"] == drained)

    ecs.update_container_instances_state(cluster=cluster, containerInstances=[drained],
                                         status="DRAINING")
    stopped = wait_task_status(ecs, cluster, moved, "STOPPED", timeout=90)
    assert stopped["stoppedReason"] == DRAINING_REASON
    after = wait_running(ecs, cluster, 3, serviceName="api")
    assert hosts_of(after)[drained] == 0
    # min 100 %: the replacement was RUNNING before the drained task was told to stop
    replacement = next(t for t in after if t["taskArn"] not in {b["taskArn"] for b in before})
    assert replacement["startedAt"] <= stopped["stoppingAt"]
    assert wait_task_status(ecs, cluster, standalone, "RUNNING")["desiredStatus"] == "RUNNING"
    ci = instance(ecs, cluster, drained)
    assert ci["status"] == "DRAINING" and ci["runningTasksCount"] == 1
    refused = ecs.run_task(cluster=cluster, taskDefinition="sleeper", launchType="EC2",
                           placementConstraints=[{"type": "memberOf",
                                                  "expression": "attribute:rack == r0"}])
    assert refused["tasks"] == []

    ecs.update_container_instances_state(cluster=cluster, containerInstances=[drained],
                                         status="ACTIVE")
    assert instance(ecs, cluster, drained)["status"] == "ACTIVE"


# ---- DAEMON ------------------------------------------------------------------------------------

def test_daemon_runs_one_task_per_instance_and_follows_them(
        ecs: Any, fleet: Fleet, three: tuple[str, list[str]]) -> None:
    cluster, arns = three
    ecs.create_service(cluster=cluster, serviceName="logs", taskDefinition="sleeper",
                       schedulingStrategy="DAEMON", launchType="EC2")
    running = wait_running(ecs, cluster, 3, serviceName="logs")
    assert hosts_of(running) == Counter({arn: 1 for arn in arns})
    wait_for(lambda: service(ecs, cluster, "logs")["desiredCount"] == 3, timeout=10)

    fourth = fleet.start(cluster, "host3", "--cpu", "1024", "--memory", "512",
                         "--attribute", "rack=r3")
    running = wait_running(ecs, cluster, 4, serviceName="logs")
    assert hosts_of(running)[fourth] == 1
    assert service(ecs, cluster, "logs")["desiredCount"] == 4

    ecs.update_container_instances_state(cluster=cluster, containerInstances=[arns[1]],
                                         status="DRAINING")
    gone = next(t["taskArn"] for t in running if t["containerInstanceArn"] == arns[1])
    assert wait_task_status(ecs, cluster, gone, "STOPPED")["stoppedReason"] == DRAINING_REASON
    wait_for(lambda: service(ecs, cluster, "logs")["desiredCount"] == 3, timeout=10)
    assert hosts_of(wait_running(ecs, cluster, 3, serviceName="logs"))[arns[1]] == 0

    # A memberOf constraint narrows the daemon to the instances that match, and it follows
    # attribute changes.
    ecs.update_service(cluster=cluster, service="logs", placementConstraints=[
        {"type": "memberOf", "expression": "attribute:rack != r3"}])
    stopped_on_fourth = next(t["taskArn"] for t in running if t["containerInstanceArn"] == fourth)
    wait_task_status(ecs, cluster, stopped_on_fourth, "STOPPED")
    assert hosts_of(wait_running(ecs, cluster, 2, serviceName="logs")) == Counter(
        {arns[0]: 1, arns[2]: 1})

    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service="logs", desiredCount=5)
    assert "does not support a desired count" in e.value.response["Error"]["Message"]
    ecs.delete_service(cluster=cluster, service="logs")  # no scale-down first for a daemon
    wait_for(lambda: not live_tasks(ecs, cluster, serviceName="logs"), timeout=60)


def test_daemon_task_is_the_last_to_leave_a_draining_instance(
        ecs: Any, three: tuple[str, list[str]]) -> None:
    cluster, arns = three
    ecs.create_service(cluster=cluster, serviceName="agentd", taskDefinition="sleeper",
                       schedulingStrategy="DAEMON", launchType="EC2")
    ecs.create_service(cluster=cluster, serviceName="app", taskDefinition="sleeper",
                       desiredCount=3, launchType="EC2")
    daemons = wait_running(ecs, cluster, 3, serviceName="agentd")
    apps = wait_running(ecs, cluster, 3, serviceName="app")
    drained = arns[2]
    app_task = next(t["taskArn"] for t in apps if t["containerInstanceArn"] == drained)
    daemon_task = next(t["taskArn"] for t in daemons if t["containerInstanceArn"] == drained)
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[drained],
                                         status="DRAINING")
    app_stopped = wait_task_status(ecs, cluster, app_task, "STOPPED", timeout=90)
    daemon_stopped = wait_task_status(ecs, cluster, daemon_task, "STOPPED", timeout=60)
    assert daemon_stopped["stoppingAt"] >= app_stopped["stoppedAt"]


def test_daemon_refusals(ecs: Any, three: tuple[str, list[str]]) -> None:
    cluster, _ = three
    cases: list[tuple[dict[str, Any], str]] = [
        ({"desiredCount": 2, "launchType": "EC2"}, "does not support a desired count"),
        ({"launchType": "EC2", "placementStrategy": [{"type": "random"}]},
         "does not support placement strategies"),
        ({"launchType": "EC2", "deploymentConfiguration": {"maximumPercent": 200}},
         "must be 100"),
    ]
    for extra, message in cases:
        with pytest.raises(ClientError) as e:
            ecs.create_service(cluster=cluster, serviceName="bad", taskDefinition="sleeper",
                               schedulingStrategy="DAEMON", **extra)
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
        assert message in e.value.response["Error"]["Message"]
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []


# ---- an agent lost and back ----------------------------------------------------------------------

def test_lost_agent_keeps_its_tasks_and_re_adopts_them(
        ecs: Any, fleet: Fleet, three: tuple[str, list[str]],
        docker_client: docker.DockerClient) -> None:
    cluster, arns = three
    ecs.create_service(cluster=cluster, serviceName="svc", taskDefinition="sleeper",
                       desiredCount=3, launchType="EC2")
    running = wait_running(ecs, cluster, 3, serviceName="svc")
    lost = arns[1]
    task = next(t for t in running if t["containerInstanceArn"] == lost)

    def connected() -> bool:
        return bool(instance(ecs, cluster, lost)["agentConnected"])

    fleet.kill(cluster, "host1")
    wait_for(lambda: not connected(), timeout=30)
    # As in ECS: the instance's tasks are not replaced while its agent is away (their
    # containers may well still run), but nothing new is placed there.
    assert wait_task_status(ecs, cluster, task["taskArn"], "RUNNING")["desiredStatus"] == \
        "RUNNING"
    assert len(live_tasks(ecs, cluster, serviceName="svc")) == 3
    refused = ecs.start_task(cluster=cluster, taskDefinition="sleeper", containerInstances=[lost])
    assert refused["failures"] == [{"arn": lost, "reason": "AGENT"}]

    fleet.start(cluster, "host1")  # same data directory: the same instance comes back
    wait_for(connected, timeout=30)
    again = wait_task_status(ecs, cluster, task["taskArn"], "RUNNING")
    assert again["containers"][0]["runtimeId"] == task["containers"][0]["runtimeId"]
    assert len(docker_client.containers.list(  # re-adopted, not duplicated
        filters={"label": f"galley.task-arn={task['taskArn']}"})) == 1

    # Deregistering it with force stops its tasks; the service replaces them elsewhere.
    fleet.kill(cluster, "host1")
    ecs.deregister_container_instance(cluster=cluster, containerInstance=lost, force=True)
    wait_for(lambda: not any(t["containerInstanceArn"] == lost
                             for t in live_tasks(ecs, cluster, serviceName="svc")), timeout=30)
    moved = wait_running(ecs, cluster, 3, serviceName="svc")
    assert lost not in hosts_of(moved)
    for c in _containers(docker_client, lost):  # its agent is gone for good: clean up by hand
        c.remove(force=True)
