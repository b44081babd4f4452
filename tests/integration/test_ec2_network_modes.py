"""EC2 launch type through a real `galley agent`: bridge, host and none network modes."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from .conftest import BUSYBOX, wait_for, wait_task_status
from .galley_process import GalleyProcess

CLUSTER = "ec2-network-modes"


@pytest.fixture(scope="module")
def ec2_cluster(galley: GalleyProcess, tmp_path_factory: pytest.TempPathFactory,
                docker_client: docker.DockerClient) -> Iterator[str]:
    ecs = galley.client()
    ecs.create_cluster(clusterName=CLUSTER)
    data_dir: Path = tmp_path_factory.mktemp("agent")
    agent = galley.agent(CLUSTER, data_dir, "--cpu", "2048", "--memory", "2048",
                         "--attribute", "ecs.availability-zone=us-east-1b",
                         "--attribute", "stage=blue")
    instance_id = json.loads((data_dir / "instance.json").read_text())[
        "containerInstanceArn"].rsplit("/", 1)[1]
    yield CLUSTER
    for arn in ecs.list_tasks(cluster=CLUSTER)["taskArns"]:
        ecs.stop_task(cluster=CLUSTER, task=arn)
    agent.terminate()
    agent.wait(timeout=30)
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"galley.agent={instance_id}"}):
        c.remove(force=True)


def run(ecs: Any, family: str, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    ecs.register_task_definition(family=family, containerDefinitions=containers, **extra)
    result = ecs.run_task(cluster=CLUSTER, taskDefinition=family, launchType="EC2")
    assert result["failures"] == []
    return wait_task_status(ecs, CLUSTER, result["tasks"][0]["taskArn"], "RUNNING")


def http_get(port: int, host: str = "127.0.0.1") -> bytes:
    with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=5) as r:
        return bytes(r.read())


def web(port: int, **mapping: Any) -> dict[str, Any]:
    """busybox httpd serving an index.html that names the port."""
    return {"name": "web", "image": BUSYBOX, "memory": 32, "stopTimeout": 1,
            "command": ["sh", "-c", f"mkdir -p /www && echo port-{port} > /www/index.html && "
                                    f"exec httpd -f -p {port} -h /www"],
            "portMappings": [{"containerPort": port, **mapping}]}


def test_instance_registered_and_described(ecs: Any, ec2_cluster: str) -> None:
    arns = ecs.list_container_instances(cluster=ec2_cluster)["containerInstanceArns"]
    assert len(arns) == 1
    ci = ecs.describe_container_instances(cluster=ec2_cluster,
                                          containerInstances=arns)["containerInstances"][0]
    assert ci["status"] == "ACTIVE" and ci["agentConnected"] is True
    registered = {r["name"]: r for r in ci["registeredResources"]}
    assert registered["CPU"]["integerValue"] == 2048
    assert registered["MEMORY"]["integerValue"] == 2048
    assert "22" in registered["PORTS"]["stringSetValue"]
    cluster = ecs.describe_clusters(clusters=[ec2_cluster])["clusters"][0]
    assert cluster["registeredContainerInstancesCount"] == 1


def test_bridge_dynamic_host_port_is_reachable_and_reported(ecs: Any, ec2_cluster: str) -> None:
    task = run(ecs, "bridge-dynamic", [web(8080, hostPort=0)])
    binding = task["containers"][0]["networkBindings"][0]
    assert binding["containerPort"] == 8080 and binding["protocol"] == "tcp"
    assert binding["hostPort"] >= 32768
    assert http_get(binding["hostPort"]).strip() == b"port-8080"
    assert task["containerInstanceArn"].startswith("arn:aws:ecs:")
    assert ecs.list_tasks(cluster=ec2_cluster,
                          containerInstance=task["containerInstanceArn"])["taskArns"] \
        == [task["taskArn"]] or task["taskArn"] in ecs.list_tasks(
            cluster=ec2_cluster, containerInstance=task["containerInstanceArn"])["taskArns"]


def test_bridge_static_port_is_exclusive_per_instance(ecs: Any, ec2_cluster: str) -> None:
    port = _free_port()
    task = run(ecs, "bridge-static", [web(80, hostPort=port)])
    assert task["containers"][0]["networkBindings"][0]["hostPort"] == port
    assert http_get(port).strip() == b"port-80"
    second = ecs.run_task(cluster=ec2_cluster, taskDefinition="bridge-static", launchType="EC2")
    assert second["tasks"] == []
    assert second["failures"][0]["reason"] == "RESOURCE:PORTS_TCP"


def test_bridge_links_resolve_the_linked_container(ecs: Any, ec2_cluster: str,
                                                   docker_client: docker.DockerClient) -> None:
    task = run(ecs, "bridge-links", [
        web(8081),
        {"name": "client", "image": BUSYBOX, "memory": 32, "stopTimeout": 1,
         "links": ["web:backend"], "command": ["sleep", "3600"]},
    ])
    client = next(c for c in task["containers"] if c["name"] == "client")
    container = docker_client.containers.get(client["runtimeId"])
    target = docker_client.containers.get(
        next(c for c in task["containers"] if c["name"] == "web")["runtimeId"])
    # The link is resolved when the linking container starts: its target must be up first.
    assert container.attrs["State"]["StartedAt"] > target.attrs["State"]["StartedAt"]
    # httpd may still be starting inside the linked container: poll, as a user would.
    wait_for(lambda: container.exec_run(["wget", "-qO-", "http://backend:8081/index.html"])
             .output.strip() == b"port-8081", timeout=15)


def test_host_network_mode_binds_on_the_host(ecs: Any, ec2_cluster: str) -> None:
    port = _free_port()
    task = run(ecs, "host-mode", [web(port)], networkMode="host")
    binding = task["containers"][0]["networkBindings"][0]
    assert binding["containerPort"] == port and binding["hostPort"] == port
    assert http_get(port).strip() == f"port-{port}".encode()


def test_none_network_mode_has_only_loopback(ecs: Any, ec2_cluster: str,
                                             docker_client: docker.DockerClient) -> None:
    task = run(ecs, "none-mode", [{"name": "app", "image": BUSYBOX, "memory": 32,
                                   "stopTimeout": 1, "command": ["sleep", "3600"]}],
               networkMode="none")
    container = docker_client.containers.get(task["containers"][0]["runtimeId"])
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    links = container.exec_run(["ls", "/sys/class/net"]).output.split()
    assert links == [b"lo"]


def test_memory_that_does_not_fit_is_a_placement_failure(ecs: Any, ec2_cluster: str) -> None:
    ecs.register_task_definition(family="too-big", containerDefinitions=[
        {"name": "app", "image": BUSYBOX, "memory": 4096, "command": ["true"]}])
    result = ecs.run_task(cluster=ec2_cluster, taskDefinition="too-big", launchType="EC2")
    assert result["tasks"] == []
    assert result["failures"][0]["reason"] == "RESOURCE:MEMORY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stopping_releases_the_instance_resources(ecs: Any, ec2_cluster: str) -> None:
    ci_arn = ecs.list_container_instances(cluster=ec2_cluster)["containerInstanceArns"][0]

    def remaining_memory() -> int:
        ci = ecs.describe_container_instances(cluster=ec2_cluster,
                                              containerInstances=[ci_arn])["containerInstances"][0]
        return next(r["integerValue"] for r in ci["remainingResources"] if r["name"] == "MEMORY")

    before = remaining_memory()
    task = run(ecs, "reserve-memory", [{"name": "app", "image": BUSYBOX, "memory": 256,
                                        "stopTimeout": 1, "command": ["sleep", "3600"]}])
    assert remaining_memory() == before - 256
    ecs.stop_task(cluster=ec2_cluster, task=task["taskArn"])
    wait_task_status(ecs, ec2_cluster, task["taskArn"], "STOPPED")
    wait_for(lambda: remaining_memory() == before)


def test_list_container_instances_filter_uses_the_cluster_query_language(
        ecs: Any, ec2_cluster: str) -> None:
    arns = ecs.list_container_instances(cluster=ec2_cluster)["containerInstanceArns"]

    def listed(expression: str) -> list[str]:
        return ecs.list_container_instances(cluster=ec2_cluster,
                                            filter=expression)["containerInstanceArns"]

    assert listed("attribute:ecs.os-type == linux") == arns
    assert listed("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]") == arns
    assert listed("attribute:stage == blue and agentConnected == true") == arns
    assert listed("attribute:stage exists and not(attribute:stage =~ gr.*)") == arns
    assert listed("attribute:ecs.availability-zone == us-east-1d") == []
    assert listed("attribute:ecs.cpu-architecture == x86_64 or runningTasksCount > 100") == arns
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_container_instances(cluster=ec2_cluster, filter="(attribute:stage == blue")


def test_placement_constraints_and_strategies_apply(ecs: Any, ec2_cluster: str) -> None:
    ecs.register_task_definition(family="placed", containerDefinitions=[
        {"name": "app", "image": BUSYBOX, "memory": 16, "stopTimeout": 1,
         "command": ["sleep", "3600"]}])
    kw = {"cluster": ec2_cluster, "taskDefinition": "placed", "launchType": "EC2"}
    nowhere = ecs.run_task(**kw, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:stage == green"}])
    assert nowhere["tasks"] == []
    assert nowhere["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied."
    here = ecs.run_task(**kw, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:stage == blue"}],
        placementStrategy=[{"type": "binpack", "field": "memory"}])
    assert len(here["tasks"]) == 1
    # One instance, distinctInstance, two tasks of the same group: only one can be placed.
    both = ecs.run_task(**kw, count=2, group="unique",
                        placementConstraints=[{"type": "distinctInstance"}])
    assert len(both["tasks"]) == 1
    assert both["failures"][0]["reason"] == "DistinctInstance placement constraint unsatisfied."
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(**kw, placementConstraints=[
            {"type": "memberOf", "expression": "(attribute:stage == blue"}])
    for task in here["tasks"] + both["tasks"]:
        ecs.stop_task(cluster=ec2_cluster, task=task["taskArn"])
