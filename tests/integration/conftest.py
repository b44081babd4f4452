"""Integration fixtures: one real Galley for the session, real Docker, boto3 clients."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from .galley_process import GalleyProcess

BUSYBOX = "galley-test/busybox:latest"
NGINX = "galley-test/nginx:latest"
REDIS = "galley-test/redis:latest"


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # the README's test command sets the engine up; say so plainly
        pytest.exit(f"No Docker engine answers ({e}); run scripts/test, which starts one.", 2)
    for image in (BUSYBOX,):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.exit(f"Test image {image} is missing; run scripts/setup --test-images.", 2)
    return client


@pytest.fixture(scope="session")
def galley(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
           ) -> Iterator[GalleyProcess]:
    proc = GalleyProcess(tmp_path_factory.mktemp("galley-data")).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def ecs(galley: GalleyProcess) -> Any:
    return galley.client()


@pytest.fixture
def cluster(ecs: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh cluster named for the test; its tasks are stopped afterwards."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:200]
    ecs.create_cluster(clusterName=name)
    yield name
    arns = ecs.list_tasks(cluster=name)["taskArns"]
    for arn in arns:
        ecs.stop_task(cluster=name, task=arn)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")


def describe_task(ecs: Any, cluster: str, arn: str) -> dict[str, Any]:
    return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]


def wait_task_status(ecs: Any, cluster: str, arn: str, status: str, timeout: float = 60.0
                     ) -> dict[str, Any]:
    return wait_for(lambda: (t := describe_task(ecs, cluster, arn))["lastStatus"] == status and t,
                    timeout)


AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-12345"]}}


def register_fargate(ecs: Any, family: str, containers: list[dict[str, Any]], **extra: Any
                     ) -> str:
    """Register an awsvpc FARGATE task definition (cpu 256, memory 512); return its ARN."""
    return ecs.register_task_definition(
        family=family, containerDefinitions=containers, networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], cpu="256", memory="512", **extra,
    )["taskDefinition"]["taskDefinitionArn"]


def run_fargate(ecs: Any, cluster: str, task_definition: str, **extra: Any) -> dict[str, Any]:
    """RunTask on the built-in FARGATE capacity; return the task as RunTask answered it."""
    result = ecs.run_task(cluster=cluster, taskDefinition=task_definition, launchType="FARGATE",
                          networkConfiguration=AWSVPC, **extra)
    assert result["failures"] == [], result["failures"]
    return result["tasks"][0]
