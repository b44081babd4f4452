"""Agent state changes: ECS Submit* requests <-> agent reports, both directions, pure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from galley.agent.remote import AGENT_TARGET, ECS_TARGET, wire_calls
from galley.arns import Scope
from galley.control.state_changes import (
    container_state_change_report,
    epoch_seconds,
    health_and_network_report,
    stop_code_for,
    task_state_change_report,
)
from galley.control.task_docs import apply_report, new_task
from galley.errors import ApiError

SCOPE = Scope("eu-west-1", "123456789012")
INSTANCE = SCOPE.container_instance_arn("c", "0123456789abcdef0123456789abcdef")


def make(network_mode: str = "bridge") -> tuple[dict[str, Any], dict[str, Any]]:
    task_def = {
        "taskDefinitionArn": SCOPE.task_definition_arn("web", 1), "family": "web", "revision": 1,
        "networkMode": network_mode,
        "containerDefinitions": [
            {"name": "app", "image": "img", "essential": True, "memory": 64,
             "healthCheck": {"command": ["CMD", "true"]}},
            {"name": "side", "image": "img", "essential": False, "memory": 64},
        ],
    }
    network = {"awsvpcConfiguration": {"subnets": ["subnet-9"]}} \
        if network_mode == "awsvpc" else None
    doc, spec = new_task(SCOPE, cluster_arn=SCOPE.cluster_arn("c"), cluster_name="c",
                         task_def=task_def, launch_type="EC2", overrides={}, group="family:web",
                         started_by=None, network_configuration=network,
                         capacity_provider=None, created_at=100.0)
    doc["containerInstanceArn"] = INSTANCE
    return doc, spec


def invalid(fn: Any, *args: Any) -> str:
    with pytest.raises(ApiError) as e:
        fn(*args)
    assert e.value.code == "InvalidParameterException"
    return e.value.message


# ---- SubmitTaskStateChange -----------------------------------------------------------------


def test_task_state_change_becomes_a_report() -> None:
    doc, _ = make()
    report = task_state_change_report({
        "cluster": "c", "task": doc["taskArn"], "status": "RUNNING",
        "pullStartedAt": 101.0001, "pullStoppedAt": "2024-01-02T03:04:05.678+00:00",
        "containers": [{"containerName": "app", "status": "RUNNING", "runtimeId": "abc",
                        "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80,
                                             "hostPort": 32768, "protocol": "tcp"}]}],
        "managedAgents": [{"containerName": "app", "managedAgentName": "ExecuteCommandAgent",
                           "status": "RUNNING"}],
    }, doc)
    assert report == {
        "taskArn": doc["taskArn"], "lastStatus": "RUNNING", "pullStartedAt": 101.0,
        "pullStoppedAt": 1704164645.678,
        "containers": [{"name": "app", "lastStatus": "RUNNING", "runtimeId": "abc",
                        "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80,
                                             "hostPort": 32768, "protocol": "tcp"}]}],
    }


@pytest.mark.parametrize(("reason", "code"), [
    ("Essential container in task exited", "EssentialContainerExited"),
    ("CannotPullContainerError: pull image manifest has been retried", "TaskFailedToStart"),
    ("CannotStartContainerError: dependency db exited with code 1", "TaskFailedToStart"),
    ("ContainerRuntimeError: boom", "TaskFailedToStart"),
])
def test_stop_reason_and_code_come_with_a_stopping_status(reason: str, code: str) -> None:
    doc, _ = make()
    report = task_state_change_report({"status": "STOPPING", "reason": reason,
                                       "executionStoppedAt": 5}, doc)
    assert report["stoppedReason"] == reason and report["stopCode"] == code
    assert report["executionStoppedAt"] == 5.0
    assert stop_code_for(reason) == code


def test_reason_with_a_live_status_is_not_a_stop_reason() -> None:
    doc, _ = make()
    report = task_state_change_report({"status": "RUNNING", "reason": "just because"}, doc)
    assert "stoppedReason" not in report and "stopCode" not in report


@pytest.mark.parametrize("params", [
    {"status": "RUNNIN"},
    {"status": "running"},
    {"containers": [{"containerName": "app", "status": "EXITED"}]},
    {"containers": [{"containerName": "nope", "status": "RUNNING"}]},
    {"containers": [{"status": "RUNNING"}]},
    {"containers": [{}]},
    {"attachments": [{"attachmentArn": "arn:aws:ecs:eu-west-1:1:attachment/x",
                      "status": "ATTACHED"}]},
    {"pullStartedAt": "yesterday"},
])
def test_bad_task_state_changes_are_invalid_parameters(params: dict[str, Any]) -> None:
    doc, _ = make()
    invalid(task_state_change_report, params, doc)


def test_attachment_state_change_names_the_tasks_interface() -> None:
    doc, _ = make("awsvpc")
    att = doc["attachments"][0]["id"]
    for ref in (att, SCOPE.arn(f"attachment/{att}")):
        report = task_state_change_report(
            {"attachments": [{"attachmentArn": ref, "status": "ATTACHED"}]}, doc)
        assert report["attachment"] == {"status": "ATTACHED"}
    assert "must be one of" in invalid(task_state_change_report, {
        "attachments": [{"attachmentArn": att, "status": "GLUED"}]}, doc)


def test_timestamps_accept_epoch_numbers_and_iso_strings() -> None:
    assert epoch_seconds(1.23456, "x") == 1.235
    assert epoch_seconds(7, "x") == 7.0
    assert epoch_seconds("1970-01-01T00:01:00", "x") == 60.0  # naive means UTC
    assert epoch_seconds("1970-01-01T01:01:00+01:00", "x") == 60.0
    for bad in (True, "soon", [1], None):
        invalid(epoch_seconds, bad, "x")


# ---- SubmitContainerStateChange and the extension ------------------------------------------


def test_container_state_change_becomes_a_report() -> None:
    doc, _ = make()
    report = container_state_change_report({
        "cluster": "c", "task": doc["taskArn"], "containerName": "side", "status": "STOPPED",
        "exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage",
        "runtimeId": "def", "networkBindings": []}, doc)
    assert report == {"taskArn": doc["taskArn"], "containers": [{
        "name": "side", "lastStatus": "STOPPED", "exitCode": 137, "runtimeId": "def",
        "reason": "OutOfMemoryError: Container killed due to memory usage",
        "networkBindings": []}]}
    assert "containerName" in invalid(container_state_change_report, {"status": "RUNNING"}, doc)
    invalid(container_state_change_report, {"containerName": "app", "status": "DEAD"}, doc)


def test_extension_carries_only_health_connectivity_and_attachment() -> None:
    doc, _ = make("awsvpc")
    report = health_and_network_report({
        "containerInstanceArn": INSTANCE, "taskArn": doc["taskArn"],
        "containers": [{"containerName": "app", "healthStatus": "HEALTHY",
                        "status": "STOPPED"}],
        "connectivity": "CONNECTED", "connectivityAt": 12.5,
        "attachment": {"status": "ATTACHED", "details": {"privateIPv4Address": "10.0.0.2"}},
        "lastStatus": "STOPPED", "stoppedReason": "sneaky", "pullStartedAt": 1,
    }, doc)
    assert report == {
        "taskArn": doc["taskArn"], "containers": [{"name": "app", "healthStatus": "HEALTHY"}],
        "connectivity": "CONNECTED", "connectivityAt": 12.5,
        "attachment": {"status": "ATTACHED", "details": {"privateIPv4Address": "10.0.0.2"}},
    }


@pytest.mark.parametrize("params", [
    {"containers": "app"},
    {"containers": ["app"]},
    {"containers": [{"containerName": "nope", "healthStatus": "HEALTHY"}]},
    {"containers": [{"containerName": "app", "healthStatus": ["HEALTHY"]}]},
    {"connectivity": "MAYBE"},
    {"connectivityAt": "later"},
    {"attachment": "ATTACHED"},
    {"attachment": {"status": "ATTACHED", "details": {"ip": 10}}},
    {"attachment": {"details": {}}},
])
def test_bad_extension_calls_are_invalid_parameters(params: dict[str, Any]) -> None:
    doc, _ = make("awsvpc")
    invalid(health_and_network_report, params, doc)


# ---- the agent's side: wire_calls ------------------------------------------------------------


def test_container_only_report_is_a_container_state_change() -> None:
    doc, _ = make()
    calls = wire_calls(INSTANCE, {"taskArn": doc["taskArn"], "containers": [
        {"name": "app", "lastStatus": "STOPPED", "exitCode": 1, "healthStatus": "UNKNOWN",
         "networkBindings": [], "runtimeId": "abc"}]})
    assert calls == [(ECS_TARGET + "SubmitContainerStateChange", {
        "cluster": "c", "task": doc["taskArn"], "containerInstance": INSTANCE,
        "containerName": "app", "status": "STOPPED", "exitCode": 1, "networkBindings": [],
        "runtimeId": "abc"})]


def test_health_and_network_go_first_on_the_extension_call() -> None:
    doc, _ = make("awsvpc")
    attachment = {"status": "ATTACHED", "details": {"privateIPv4Address": "10.0.0.2"}}
    calls = wire_calls(INSTANCE, {
        "taskArn": doc["taskArn"], "lastStatus": "PENDING", "pullStartedAt": 1.0,
        "connectivity": "CONNECTED", "connectivityAt": 2.0, "attachment": attachment,
        "containers": [{"name": "app", "lastStatus": "RUNNING", "healthStatus": "HEALTHY"}]})
    assert [target for target, _ in calls] == [AGENT_TARGET + "SubmitTaskHealthAndNetwork",
                                               ECS_TARGET + "SubmitTaskStateChange"]
    assert calls[0][1] == {"containerInstanceArn": INSTANCE, "taskArn": doc["taskArn"],
                           "connectivity": "CONNECTED", "connectivityAt": 2.0,
                           "attachment": attachment,
                           "containers": [{"containerName": "app", "healthStatus": "HEALTHY"}]}
    assert calls[1][1] == {"cluster": "c", "task": doc["taskArn"],
                           "containerInstance": INSTANCE, "status": "PENDING",
                           "pullStartedAt": 1.0,
                           "containers": [{"containerName": "app", "status": "RUNNING"}]}


def test_stop_code_is_not_sent_and_empty_reports_send_nothing() -> None:
    doc, _ = make()
    calls = wire_calls(INSTANCE, {"taskArn": doc["taskArn"], "lastStatus": "STOPPING",
                                  "stoppedReason": "Essential container in task exited",
                                  "stopCode": "EssentialContainerExited",
                                  "executionStoppedAt": 9.0})
    assert calls == [(ECS_TARGET + "SubmitTaskStateChange", {
        "cluster": "c", "task": doc["taskArn"], "containerInstance": INSTANCE,
        "status": "STOPPING", "reason": "Essential container in task exited",
        "executionStoppedAt": 9.0})]
    assert wire_calls(INSTANCE, {"taskArn": doc["taskArn"]}) == []


# ---- both directions together: the wire path folds in exactly what a local agent's would ---

TRANSLATE = {
    ECS_TARGET + "SubmitTaskStateChange": task_state_change_report,
    ECS_TARGET + "SubmitContainerStateChange": container_state_change_report,
    AGENT_TARGET + "SubmitTaskHealthAndNetwork": health_and_network_report,
}


def _life(network_mode: str, stop_reason: str | None) -> list[dict[str, Any]]:
    """The reports a TaskRunner sends over one task's life (timestamps in whole ms)."""
    reason = {"stoppedReason": stop_reason,
              "stopCode": stop_code_for(stop_reason), "executionStoppedAt": 50.5} \
        if stop_reason else {}
    app = {"name": "app", "lastStatus": "RUNNING", "healthStatus": "UNKNOWN",
           "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 32768,
                                "protocol": "tcp"}], "runtimeId": "a" * 64}
    side = {"name": "side", "lastStatus": "RUNNING", "healthStatus": "UNKNOWN",
            "networkBindings": [], "runtimeId": "b" * 64}
    pending: dict[str, Any] = {"lastStatus": "PENDING", "pullStartedAt": 10.25,
                               "pullStoppedAt": 11.5}
    if network_mode == "awsvpc":
        pending.update(connectivity="CONNECTED", connectivityAt=12.125, attachment={
            "status": "ATTACHED", "details": {"networkInterfaceId": "eni-1",
                                              "privateIPv4Address": "172.17.0.9"}})
    reports = [
        pending,
        {"lastStatus": "RUNNING", "containers": [app, side]},
        {"containers": [{**app, "healthStatus": "HEALTHY"}]},
        {"containers": [{**side, "lastStatus": "STOPPED", "exitCode": 0}]},
        {"lastStatus": "STOPPING", **reason},
    ]
    final: dict[str, Any] = {
        "lastStatus": "STOPPED", "executionStoppedAt": 60.0, "containers": [
            {**app, "lastStatus": "STOPPED", "exitCode": 137, "healthStatus": "HEALTHY",
             "reason": "OutOfMemoryError: Container killed due to memory usage"},
            {**side, "lastStatus": "STOPPED", "exitCode": 0}], **reason}
    if network_mode == "awsvpc":
        reports.append({"lastStatus": "DEPROVISIONING"})
        final["attachment"] = {"status": "DELETED"}
    return [*reports, final]


@pytest.mark.parametrize("network_mode", ["bridge", "awsvpc"])
@pytest.mark.parametrize("stop_reason", [None, "Essential container in task exited",
                                         "CannotStartContainerError: no"])
def test_wire_path_equals_the_in_process_path(network_mode: str, stop_reason: str | None
                                              ) -> None:
    local, spec = make(network_mode)
    remote = copy.deepcopy(local)
    for at, body in enumerate(_life(network_mode, stop_reason), start=100):
        report = {"taskArn": local["taskArn"], **body}
        apply_report(local, spec, copy.deepcopy(report), float(at))
        for target, payload in wire_calls(INSTANCE, report):
            apply_report(remote, spec, TRANSLATE[target](payload, remote), float(at))
        assert {**remote, "version": 0} == {**local, "version": 0}, body
    assert remote["lastStatus"] == "STOPPED"
    assert remote["containers"][0]["healthStatus"] == "HEALTHY"
    if stop_reason:
        assert remote["stopCode"] == stop_code_for(stop_reason)


def test_served_endpoint_is_a_url_agents_can_use() -> None:
    from galley.control.agent_channel import served_endpoint

    assert served_endpoint("127.0.0.1", 7070) == "http://127.0.0.1:7070/"
    assert served_endpoint("::1", 7070) == "http://[::1]:7070/"
    wildcard = served_endpoint("0.0.0.0", 7070)
    assert wildcard.startswith("http://") and "0.0.0.0" not in wildcard
