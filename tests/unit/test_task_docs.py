"""Task documents: building a task, folding agent reports in, task health."""

from __future__ import annotations

from typing import Any

import pytest

from galley.arns import Scope
from galley.control.task_docs import apply_report, merge_overrides, new_task, task_health

SCOPE = Scope("eu-west-1", "123456789012")


def task_def(network_mode: str = "awsvpc", **container: Any) -> dict[str, Any]:
    return {
        "taskDefinitionArn": SCOPE.task_definition_arn("web", 3),
        "family": "web",
        "revision": 3,
        "networkMode": network_mode,
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {"name": "app", "image": "img", "essential": True, "cpu": 0,
             "environment": [{"name": "A", "value": "1"}], **container},
            {"name": "side", "image": "img", "essential": False, "cpu": 0},
        ],
    }


def make(network_mode: str = "awsvpc", overrides: dict[str, Any] | None = None,
         **container: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return new_task(SCOPE, cluster_arn=SCOPE.cluster_arn("c"), cluster_name="c",
                    task_def=task_def(network_mode, **container), launch_type="FARGATE",
                    overrides=overrides or {}, group="family:web", started_by="me",
                    network_configuration={"awsvpcConfiguration": {"subnets": ["subnet-9"]}},
                    capacity_provider=None, created_at=100.0)


def test_new_awsvpc_task_looks_like_ecs() -> None:
    doc, spec = make()
    task_id = doc["taskArn"].rsplit("/", 1)[1]
    assert doc["taskArn"] == f"arn:aws:ecs:eu-west-1:123456789012:task/c/{task_id}"
    assert len(task_id) == 32 and int(task_id, 16) >= 0
    assert doc["lastStatus"] == "PROVISIONING" and doc["desiredStatus"] == "RUNNING"
    assert doc["platformVersion"] == "1.4.0" and doc["launchType"] == "FARGATE"
    assert doc["attachments"][0]["type"] == "ElasticNetworkInterface"
    assert doc["attachments"][0]["details"] == [{"name": "subnetId", "value": "subnet-9"}]
    assert [c["lastStatus"] for c in doc["containers"]] == ["PENDING", "PENDING"]
    assert doc["containers"][0]["containerArn"].startswith(
        f"arn:aws:ecs:eu-west-1:123456789012:container/c/{task_id}/")
    assert spec["taskArn"] == doc["taskArn"] and spec["cpu"] == 256 and spec["memory"] == 512
    assert doc["overrides"]["containerOverrides"] == [{"name": "app"}, {"name": "side"}]


def test_bridge_task_starts_pending_without_attachment() -> None:
    doc, _ = make("bridge")
    assert doc["lastStatus"] == "PENDING" and doc["attachments"] == []


def test_overrides_replace_command_and_merge_environment_by_name() -> None:
    merged = merge_overrides(task_def()["containerDefinitions"], {"containerOverrides": [
        {"name": "app", "command": ["x"], "memory": 64,
         "environment": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]}]})
    app = merged[0]
    assert app["command"] == ["x"] and app["memory"] == 64
    assert app["environment"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]
    assert merged[1] == task_def()["containerDefinitions"][1]


def test_reports_move_forward_only_and_set_timestamps() -> None:
    doc, spec = make()
    assert apply_report(doc, spec, {"lastStatus": "PENDING", "pullStartedAt": 101.0}, 101.5)
    assert apply_report(doc, spec, {"lastStatus": "RUNNING", "containers": [
        {"name": "app", "lastStatus": "RUNNING", "runtimeId": "abc"}]}, 102.0)
    assert doc["startedAt"] == 102.0 and doc["pullStartedAt"] == 101.0
    version = doc["version"]
    assert not apply_report(doc, spec, {"lastStatus": "PENDING"}, 103.0)  # no going back
    assert doc["lastStatus"] == "RUNNING" and doc["version"] == version
    assert doc["containers"][0]["runtimeId"] == "abc"


def test_stopping_sets_desired_stopped_at_once_and_first_reason_wins() -> None:
    doc, spec = make()
    apply_report(doc, spec, {"lastStatus": "RUNNING"}, 102.0)
    apply_report(doc, spec, {"lastStatus": "STOPPING", "stoppedReason":
                             "Essential container in task exited",
                             "stopCode": "EssentialContainerExited"}, 103.0)
    assert doc["desiredStatus"] == "STOPPED" and doc["stoppingAt"] == 103.0
    apply_report(doc, spec, {"lastStatus": "STOPPED", "stoppedReason": "something else",
                             "stopCode": "UserInitiated", "containers": [
                                 {"name": "app", "lastStatus": "STOPPED", "exitCode": 1}]},
                 104.0)
    assert doc["stoppedReason"] == "Essential container in task exited"
    assert doc["stopCode"] == "EssentialContainerExited"
    assert doc["stoppedAt"] == 104.0 and doc["executionStoppedAt"] == 104.0
    assert {c["name"]: c["lastStatus"] for c in doc["containers"]} == {
        "app": "STOPPED", "side": "STOPPED"}
    assert doc["containers"][0]["exitCode"] == 1


def test_attachment_report_fills_eni_details_and_container_interfaces() -> None:
    doc, spec = make()
    apply_report(doc, spec, {"attachment": {"status": "ATTACHED", "details": {
        "privateIPv4Address": "172.17.0.9", "networkInterfaceId": "eni-1"}}}, 101.0)
    details = {d["name"]: d["value"] for d in doc["attachments"][0]["details"]}
    assert details == {"subnetId": "subnet-9", "privateIPv4Address": "172.17.0.9",
                       "networkInterfaceId": "eni-1"}
    assert doc["containers"][1]["networkInterfaces"] == [
        {"attachmentId": doc["attachments"][0]["id"], "privateIpv4Address": "172.17.0.9"}]


@pytest.mark.parametrize("app_health, expected", [
    ("HEALTHY", "HEALTHY"), ("UNHEALTHY", "UNHEALTHY"), ("UNKNOWN", "UNKNOWN")])
def test_task_health_follows_essential_checked_containers(app_health: str,
                                                          expected: str) -> None:
    doc, spec = make(healthCheck={"command": ["CMD", "true"]})
    doc["containers"][0]["healthStatus"] = app_health
    doc["containers"][1]["healthStatus"] = "UNHEALTHY"  # not essential: ignored
    assert task_health(doc, spec) == expected


def test_task_health_unknown_without_checks() -> None:
    doc, spec = make()
    doc["containers"][0]["healthStatus"] = "HEALTHY"
    assert task_health(doc, spec) == "UNKNOWN"
