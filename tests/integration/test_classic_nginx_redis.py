"""The classic ECS example: nginx in front of redis in one awsvpc task, on real images."""

from __future__ import annotations

import urllib.request
from typing import Any

import docker
import pytest

from .conftest import NGINX, REDIS, wait_task_status

AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-12345"], "assignPublicIp": "DISABLED"}}


@pytest.fixture(scope="module", autouse=True)
def images(docker_client: docker.DockerClient) -> None:
    for image in (NGINX, REDIS):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"{image} is missing; run scripts/setup --test-images")


def test_nginx_reaches_redis_on_localhost_and_stops_cleanly(
        ecs: Any, cluster: str, docker_client: docker.DockerClient) -> None:
    td = ecs.register_task_definition(
        family="nginx-redis",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "redis", "image": REDIS, "essential": True,
             "portMappings": [{"containerPort": 6379}], "stopTimeout": 5},
            {"name": "nginx", "image": NGINX, "essential": True,
             "portMappings": [{"containerPort": 80}],
             "dependsOn": [{"containerName": "redis", "condition": "START"}], "stopTimeout": 5},
        ],
    )["taskDefinition"]
    assert td["compatibilities"] == ["EC2", "FARGATE", "MANAGED_INSTANCES"]
    assert td["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 6379

    task = ecs.run_task(cluster=cluster, taskDefinition="nginx-redis", launchType="FARGATE",
                        networkConfiguration=AWSVPC)["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING"
    running = wait_task_status(ecs, cluster, task["taskArn"], "RUNNING")

    eni = running["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    details = {d["name"]: d["value"] for d in eni["details"]}
    ip = details["privateIPv4Address"]
    assert details["subnetId"] == "subnet-12345"
    assert details["networkInterfaceId"].startswith("eni-")
    containers = {c["name"]: c for c in running["containers"]}
    for c in containers.values():
        assert c["lastStatus"] == "RUNNING"
        assert c["runtimeId"]
        assert c["networkInterfaces"][0]["privateIpv4Address"] == ip

    # nginx reaches redis at localhost:6379, as in ECS's awsvpc mode.
    nginx = docker_client.containers.get(containers["nginx"]["runtimeId"])
    result = nginx.exec_run(["redis-cli", "-h", "localhost", "-p", "6379", "ping"])
    assert result.output.strip() == b"PONG"
    # And the task's own IP serves nginx to the host.
    with urllib.request.urlopen(f"http://{ip}/", timeout=5) as r:
        assert r.status == 200 and b"nginx" in r.read()

    ecs.stop_task(cluster=cluster, task=task["taskArn"])
    stopped = wait_task_status(ecs, cluster, task["taskArn"], "STOPPED", timeout=30)
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "Task stopped by user"
    codes = {c["name"]: c["exitCode"] for c in stopped["containers"]}
    assert codes == {"redis": 0, "nginx": 0}  # both exit cleanly on SIGTERM well within 5 s
    assert stopped["attachments"][0]["status"] == "DELETED"
