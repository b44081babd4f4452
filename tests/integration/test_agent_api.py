"""The agent's side of the ECS API against a real server: DiscoverPollEndpoint,
SubmitTaskStateChange and SubmitContainerStateChange, called with boto3 as Amazon's agent calls
them, and a real `galley agent` that reports through them.

The Submit* tests register a container instance themselves (RegisterContainerInstance) and play
its agent, so they need no Docker; the last test runs real containers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import BUSYBOX, describe_task, run_fargate, wait_for, wait_task_status
from .galley_process import ACCESS_KEY, REGION, SECRET_KEY, GalleyProcess

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."


def register_instance(ecs: Any, cluster: str) -> str:
    return ecs.register_container_instance(cluster=cluster, totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048},
    ])["containerInstance"]["containerInstanceArn"]


def run_on_instance(ecs: Any, cluster: str, family: str = "played") -> dict[str, Any]:
    ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "web", "image": BUSYBOX, "memory": 32,
         "portMappings": [{"containerPort": 80, "hostPort": 0}]},
        {"name": "log", "image": BUSYBOX, "memory": 32, "essential": False}])
    result = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EC2")
    assert result["failures"] == []
    return dict(result["tasks"][0])


def signed_call(endpoint: str, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
    """An ECS call with members boto3 would refuse to send (Galley's `containerInstance`)."""
    raw = json.dumps(body).encode()
    request = AWSRequest(method="POST", url=endpoint + "/", data=raw, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ECS_TARGET + operation})
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecs", REGION).add_auth(request)
    r = requests.post(endpoint + "/", data=raw, headers=dict(request.headers.items()), timeout=30)
    return r.status_code, r.json()


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


# ---- DiscoverPollEndpoint ------------------------------------------------------------------


def test_discover_poll_endpoint_answers_this_server(galley: GalleyProcess, ecs: Any,
                                                    cluster: str) -> None:
    instance = register_instance(ecs, cluster)
    answer = ecs.discover_poll_endpoint(containerInstance=instance, cluster=cluster)
    url = galley.endpoint + "/"
    assert answer["endpoint"] == url
    assert answer["telemetryEndpoint"] == url and answer["serviceConnectEndpoint"] == url
    by_id = ecs.discover_poll_endpoint(containerInstance=instance.rsplit("/", 1)[1],
                                       cluster=cluster)
    assert by_id["endpoint"] == url
    assert ecs.discover_poll_endpoint(cluster=cluster)["endpoint"] == url


def test_discover_poll_endpoint_errors(ecs: Any, cluster: str) -> None:
    instance = register_instance(ecs, cluster)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.discover_poll_endpoint(containerInstance=instance, cluster="no-such-cluster")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.discover_poll_endpoint(containerInstance="0123456789abcdef0123456789abcdef",
                                   cluster=cluster)
    ecs.deregister_container_instance(cluster=cluster, containerInstance=instance)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.discover_poll_endpoint(containerInstance=instance, cluster=cluster)


# ---- SubmitTaskStateChange / SubmitContainerStateChange ------------------------------------


def test_submitted_state_changes_move_the_task(ecs: Any, cluster: str) -> None:
    register_instance(ecs, cluster)
    task = run_on_instance(ecs, cluster)
    arn = task["taskArn"]
    assert task["lastStatus"] == "PENDING"
    ack = ecs.submit_task_state_change(cluster=cluster, task=arn, status="PENDING",
                                       pullStartedAt=1700000000, pullStoppedAt=1700000001)
    assert "acknowledgment" in ack
    ecs.submit_task_state_change(cluster=cluster, task=arn.rsplit("/", 1)[1], status="RUNNING",
                                 containers=[
        {"containerName": "web", "status": "RUNNING", "runtimeId": "a" * 64,
         "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 32801,
                              "protocol": "tcp"}]},
        {"containerName": "log", "status": "RUNNING", "runtimeId": "b" * 64}])
    running = describe_task(ecs, cluster, arn)
    assert running["lastStatus"] == "RUNNING" and "startedAt" in running
    assert running["pullStartedAt"].timestamp() == 1700000000
    assert running["pullStoppedAt"].timestamp() == 1700000001
    web, log = running["containers"]
    assert web["runtimeId"] == "a" * 64 and web["lastStatus"] == "RUNNING"
    assert web["networkBindings"] == [{"bindIP": "0.0.0.0", "containerPort": 80,
                                       "hostPort": 32801, "protocol": "tcp"}]

    ecs.submit_container_state_change(cluster=cluster, task=arn, containerName="log",
                                      runtimeId="b" * 64, status="STOPPED", exitCode=3,
                                      reason="it was done")
    log = describe_task(ecs, cluster, arn)["containers"][1]
    assert (log["lastStatus"], log["exitCode"], log["reason"]) == ("STOPPED", 3, "it was done")
    assert describe_task(ecs, cluster, arn)["lastStatus"] == "RUNNING"

    ecs.submit_task_state_change(cluster=cluster, task=arn, status="STOPPING",
                                 reason="Essential container in task exited",
                                 executionStoppedAt=1700000100)
    assert describe_task(ecs, cluster, arn)["desiredStatus"] == "STOPPED"
    ecs.submit_task_state_change(cluster=cluster, task=arn, status="STOPPED",
                                 containers=[{"containerName": "web", "status": "STOPPED",
                                              "exitCode": 1}])
    stopped = describe_task(ecs, cluster, arn)
    assert stopped["lastStatus"] == "STOPPED" and stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["executionStoppedAt"].timestamp() == 1700000100
    assert [c["exitCode"] for c in stopped["containers"]] == [1, 3]

    # A late or repeated report never moves the task back nor replaces the first reason.
    ecs.submit_task_state_change(cluster=cluster, task=arn, status="RUNNING",
                                 reason="CannotStartContainerError: late")
    ecs.submit_task_state_change(cluster=cluster, task=arn, status="STOPPED", reason="later")
    again = describe_task(ecs, cluster, arn)
    assert again["lastStatus"] == "STOPPED" and again["version"] == stopped["version"]
    assert again["stoppedReason"] == "Essential container in task exited"


def test_state_change_errors_are_ecs_errors_and_change_nothing(ecs: Any, cluster: str) -> None:
    register_instance(ecs, cluster)
    arn = run_on_instance(ecs, cluster, "erring")["taskArn"]
    before = describe_task(ecs, cluster, arn)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("submit_task_state_change", {"cluster": "no-such-cluster", "task": arn,
                                      "status": "RUNNING"}, "ClusterNotFoundException"),
        ("submit_task_state_change", {"cluster": cluster,
                                      "task": "0123456789abcdef0123456789abcdef",
                                      "status": "RUNNING"}, "InvalidParameterException"),
        ("submit_task_state_change", {"cluster": cluster, "status": "RUNNING"},
         "InvalidParameterException"),
        ("submit_task_state_change", {"cluster": cluster, "task": arn, "status": "FINISHED"},
         "InvalidParameterException"),
        ("submit_task_state_change", {"cluster": cluster, "task": arn, "status": "RUNNING",
                                      "containers": [{"containerName": "nope",
                                                      "status": "RUNNING"}]},
         "InvalidParameterException"),
        ("submit_task_state_change", {"cluster": cluster, "task": arn, "containers": [
            {"containerName": "web", "status": "EXITED"}]}, "InvalidParameterException"),
        ("submit_container_state_change", {"cluster": "no-such-cluster", "task": arn,
                                           "containerName": "web", "status": "RUNNING"},
         "ClusterNotFoundException"),
        ("submit_container_state_change", {"cluster": cluster,
                                           "task": "0123456789abcdef0123456789abcdef",
                                           "containerName": "web", "status": "RUNNING"},
         "InvalidParameterException"),
        ("submit_container_state_change", {"cluster": cluster, "task": arn,
                                           "containerName": "web", "status": "UP"},
         "InvalidParameterException"),
        ("submit_container_state_change", {"cluster": cluster, "task": arn,
                                           "status": "RUNNING"}, "InvalidParameterException"),
    ]
    for method, params, code in cases:
        with pytest.raises(ecs.exceptions.ClientError) as e:
            getattr(ecs, method)(**params)
        assert error_code(e) == code, (method, params, e.value)
    assert describe_task(ecs, cluster, arn) == before


def test_a_task_of_another_instance_is_not_changed(galley: GalleyProcess, ecs: Any,
                                                   cluster: str) -> None:
    mine = register_instance(ecs, cluster)
    arn = run_on_instance(ecs, cluster, "owned")["taskArn"]
    other = register_instance(ecs, cluster)
    assert describe_task(ecs, cluster, arn)["containerInstanceArn"] == mine
    for operation, body in (
            ("SubmitTaskStateChange", {"status": "RUNNING"}),
            ("SubmitContainerStateChange", {"containerName": "web", "status": "RUNNING"})):
        status, doc = signed_call(galley.endpoint, operation, {
            "cluster": cluster, "task": arn, "containerInstance": other, **body})
        assert (status, doc["__type"]) == (400, "InvalidParameterException"), doc
        assert "not assigned to this container instance" in doc["message"]
    assert describe_task(ecs, cluster, arn)["lastStatus"] == "PENDING"
    status, doc = signed_call(galley.endpoint, "SubmitTaskStateChange", {
        "cluster": cluster, "task": arn, "containerInstance": mine.rsplit("/", 1)[1],
        "status": "RUNNING"})
    assert status == 200, doc
    assert describe_task(ecs, cluster, arn)["lastStatus"] == "RUNNING"


def test_built_in_fargate_tasks_are_not_reported_through_the_api(ecs: Any, cluster: str
                                                                 ) -> None:
    td = ecs.register_task_definition(
        family="fargate-own", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=[
            {"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
             "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
    arn = run_fargate(ecs, cluster, td)["taskArn"]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.submit_task_state_change(cluster=cluster, task=arn, status="STOPPED",
                                     reason="forged")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.submit_container_state_change(cluster=cluster, task=arn, containerName="app",
                                          status="STOPPED", exitCode=0)
    assert "stoppedReason" not in describe_task(ecs, cluster, arn)


# ---- a real `galley agent` -----------------------------------------------------------------


@pytest.fixture
def agent_cluster(galley: GalleyProcess, tmp_path: Path, docker_client: docker.DockerClient
                  ) -> Iterator[tuple[str, Path]]:
    name = "agent-api"
    ecs = galley.client()
    ecs.create_cluster(clusterName=name)
    data_dir = tmp_path / "agent"
    agent = galley.agent(name, data_dir, "--cpu", "1024", "--memory", "1024")
    instance_id = json.loads((data_dir / "instance.json").read_text())[
        "containerInstanceArn"].rsplit("/", 1)[1]
    try:
        yield name, data_dir
    finally:
        for arn in ecs.list_tasks(cluster=name)["taskArns"]:
            ecs.stop_task(cluster=name, task=arn)
        agent.terminate()
        agent.wait(timeout=30)
        for c in docker_client.containers.list(
                all=True, filters={"label": f"galley.agent={instance_id}"}):
            c.remove(force=True)


def test_galley_agent_reports_a_bridge_task_through_the_ecs_api(
        galley: GalleyProcess, ecs: Any, agent_cluster: tuple[str, Path]) -> None:
    name, data_dir = agent_cluster
    ecs.register_task_definition(family="agent-api-web", containerDefinitions=[
        {"name": "web", "image": BUSYBOX, "memory": 32, "stopTimeout": 1,
         "command": ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"],
         "portMappings": [{"containerPort": 8080, "hostPort": 0}],
         "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "startPeriod": 0,
                         "retries": 1}}])
    ecs.register_task_definition(family="agent-api-exit", containerDefinitions=[
        {"name": "job", "image": BUSYBOX, "memory": 16, "command": ["sh", "-c", "exit 3"]}])
    web = ecs.run_task(cluster=name, taskDefinition="agent-api-web", launchType="EC2")
    job = ecs.run_task(cluster=name, taskDefinition="agent-api-exit", launchType="EC2")
    web_arn, job_arn = web["tasks"][0]["taskArn"], job["tasks"][0]["taskArn"]

    running = wait_task_status(ecs, name, web_arn, "RUNNING")
    container = running["containers"][0]
    assert len(container["runtimeId"]) == 64 and "pullStartedAt" in running
    assert container["networkBindings"][0]["hostPort"] >= 1024
    # Health has no member in ECS's shapes: it comes through Galley's extension call.
    wait_for(lambda: describe_task(ecs, name, web_arn)["healthStatus"] == "HEALTHY", timeout=30)

    exited = wait_task_status(ecs, name, job_arn, "STOPPED")
    assert exited["stopCode"] == "EssentialContainerExited"
    assert exited["stoppedReason"] == "Essential container in task exited"
    assert exited["containers"][0]["exitCode"] == 3 and "executionStoppedAt" in exited

    ecs.stop_task(cluster=name, task=web_arn)
    stopped = wait_task_status(ecs, name, web_arn, "STOPPED")
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["containers"][0]["lastStatus"] == "STOPPED"

    log = (data_dir / "agent.log").read_text()
    assert f"polling desired tasks at {galley.endpoint}/" in log  # DiscoverPollEndpoint's answer
    assert "refused" not in log, log[-3000:]
