"""Tests for the pure service scheduler step (`galley.scheduler.service_step`).

Two layers:

* table-driven tests of `step`, `task_stopped`, `add_events` and the small helpers, each
  checking one rule of ecs-semantics.md section 4 with the exact ECS strings;
* hypothesis property tests that run a tiny in-test simulator of a service over many ticks.
  The simulator plays the part of the controller (`controllers/services.py`) and the agents:
  started tasks go PROVISIONING -> PENDING -> RUNNING over a tick or two, tasks told to stop go
  STOPPED one to three ticks later (RUNNING ones pass through STOPPING), health checks report a few ticks after RUNNING, and the report hook
  feeds every stopped task that the scheduler did not scale away to `task_stopped`, exactly as
  `on_task_report` does. Invariants are checked at every tick.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galley.scheduler.service_step import (
    DRAINING_REASON,
    PENDING_STATES,
    Plan,
    Settings,
    TaskView,
    add_events,
    breaker_threshold,
    is_healthy,
    max_tasks,
    min_healthy,
    new_deployment,
    step,
    task_stopped,
)

NAME = "web"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/demo"
TD1 = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"
TD2 = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
TD_BAD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
T0 = 1_700_000_000.0

HC_REASON = "Task failed container health checks"
STEADY = f"(service {NAME}) has reached a steady state."
UNABLE = (f"service {NAME} was unable to stop or start tasks during a deployment because of the "
          "service deployment configuration. Update the minimumHealthyPercent or maximumPercent "
          "value and try again.")
CONSISTENTLY = (f"(service {NAME}) is unable to consistently start tasks successfully. For more "
                "information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


def scaling(deployment_id: str) -> str:
    return f"Scaling activity initiated by (deployment {deployment_id})"


def completed_event(deployment_id: str) -> str:
    return f"(service {NAME}) (deployment {deployment_id}) deployment completed."


def failed_event(deployment_id: str) -> str:
    return f"(service {NAME}) (deployment {deployment_id}) deployment failed: tasks failed to start."


def rollback_event(deployment_id: str) -> str:
    return f"(service {NAME}) rolling back to deployment {deployment_id}."


def hc_event(task_id: str) -> str:
    return f"(service {NAME}) (task {task_id}) failed container health checks."


def arn(n: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/demo/{n:032x}"


def short(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[1]


# ---- builders ---------------------------------------------------------------------------------

def make_service(desired: int = 2, *, maximum: int = 200, minimum: int = 100,
                 enable: bool = False, rollback: bool = False, grace: int = 0,
                 td: str = TD1, deployment_id: str = "ecs-svc/1",
                 at: float = T0) -> dict[str, Any]:
    """A service document shaped like `control.services.create_service` makes it."""
    doc: dict[str, Any] = {
        "serviceArn": f"arn:aws:ecs:us-east-1:123456789012:service/demo/{NAME}",
        "serviceName": NAME,
        "clusterArn": CLUSTER,
        "loadBalancers": [],
        "serviceRegistries": [],
        "status": "ACTIVE",
        "desiredCount": desired,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "platformFamily": "Linux",
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": enable, "rollback": rollback},
            "maximumPercent": maximum, "minimumHealthyPercent": minimum},
        "events": [],
        "createdAt": at,
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "healthCheckGracePeriodSeconds": grace,
        "taskDefinition": td,
    }
    doc["deployments"] = [new_deployment(deployment_id, td, doc, at)]
    return doc


def deploy(service: dict[str, Any], td: str, deployment_id: str, at: float) -> None:
    """What `control.services.update_service` does for a new task definition."""
    for d in service["deployments"]:
        d["status"] = "ACTIVE"
    service["taskDefinition"] = td
    service["deployments"].insert(0, new_deployment(deployment_id, td, service, at))
    service["_launchFailures"] = 0
    service["_nextLaunchAt"] = 0


def complete(service: dict[str, Any]) -> None:
    """Mark the only deployment COMPLETED as a finished rollout would."""
    d = service["deployments"][0]
    d["rolloutState"] = "COMPLETED"
    d["rolloutStateReason"] = f"ECS deployment {d['id']} completed."
    service["_lastCompleted"] = {"id": d["id"], "taskDefinition": d["taskDefinition"]}


def tv(n: int, deployment: str = "ecs-svc/1", status: str = "RUNNING", *,
       desired: str = "RUNNING", health: str = "UNKNOWN", hc: bool = False,
       created: float | None = None, started: float | None = None,
       draining: bool = False) -> TaskView:
    """A TaskView; RUNNING tasks default to having started long ago (so they are settled)."""
    created = T0 + n if created is None else created
    if started is None and status == "RUNNING":
        started = created + 1
    return TaskView(arn=arn(n), deployment_id=deployment, last_status=status,
                    desired_status=desired, health_status=health, has_health_check=hc,
                    created_at=created, started_at=started, draining=draining)


NOW = T0 + 10_000  # a time at which every default RUNNING task is long settled
S = Settings()


# ---- helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("desired, percent, expected", [
    (0, 200, 0), (1, 100, 1), (1, 150, 1), (1, 200, 2), (3, 150, 4), (3, 133, 3),
    (4, 125, 5), (10, 200, 20), (7, 2000, 140),
])
def test_max_tasks(desired: int, percent: int, expected: int) -> None:
    assert max_tasks(desired, percent) == expected


@pytest.mark.parametrize("desired, percent, expected", [
    (0, 100, 0), (1, 0, 0), (1, 1, 1), (1, 50, 1), (1, 100, 1), (3, 50, 2), (4, 50, 2),
    (5, 75, 4), (10, 100, 10), (10, 0, 0),
])
def test_min_healthy(desired: int, percent: int, expected: int) -> None:
    assert min_healthy(desired, percent) == expected


@pytest.mark.parametrize("desired, minimum, expected", [
    (0, 3, 3), (1, 3, 3), (5, 3, 3), (6, 3, 3), (7, 3, 4), (10, 3, 5), (11, 3, 6),
    (10, 10, 10), (30, 10, 15), (399, 3, 200), (400, 3, 200), (1000, 3, 200),
])
def test_breaker_threshold(desired: int, minimum: int, expected: int) -> None:
    assert breaker_threshold(desired, minimum) == expected


@pytest.mark.parametrize("task, now, expected", [
    (tv(1, status="PENDING"), NOW, False),
    (tv(1, status="RUNNING", started=NOW - 39.9), NOW, False),
    (tv(1, status="RUNNING", started=NOW - 40), NOW, True),
    (tv(1, status="RUNNING", hc=True, health="UNKNOWN"), NOW, False),
    (tv(1, status="RUNNING", hc=True, health="UNHEALTHY"), NOW, False),
    (tv(1, status="RUNNING", hc=True, health="HEALTHY", started=NOW - 1), NOW, True),
    (tv(1, status="DEACTIVATING", hc=True, health="HEALTHY"), NOW, False),
    (TaskView(arn(1), "d", "RUNNING", "RUNNING", "HEALTHY", True, T0, None), NOW, False),
])
def test_is_healthy(task: TaskView, now: float, expected: bool) -> None:
    assert is_healthy(task, now, S) is expected


def test_new_deployment_shape() -> None:
    service = make_service(3)
    service["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    d = new_deployment("ecs-svc/9", TD2, service, T0 + 5)
    assert d == {
        "id": "ecs-svc/9", "status": "PRIMARY", "taskDefinition": TD2, "desiredCount": 3,
        "pendingCount": 0, "runningCount": 0, "failedTasks": 0, "createdAt": T0 + 5,
        "updatedAt": T0 + 5, "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": "ECS deployment ecs-svc/9 in progress.",
        "launchType": "FARGATE", "platformVersion": "LATEST", "platformFamily": "Linux",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
    }


# ---- step: one tick, table driven --------------------------------------------------------------

def stops(plan: Plan) -> dict[str, str]:
    return dict(plan.stop)


def test_fresh_service_starts_desired_tasks() -> None:
    service = make_service(3)
    plan = step(service, [], T0 + 1, S)
    assert plan.start == {"ecs-svc/1": 3}
    assert plan.stop == [] and plan.events == []
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"


@pytest.mark.parametrize("desired, maximum, old, stopping, expected", [
    (4, 200, 4, 0, 4),   # room 8 - 4
    (4, 150, 4, 0, 2),   # room 6 - 4
    (4, 125, 4, 0, 1),   # room 5 - 4
    (4, 100, 4, 0, 0),   # no room at all
    (4, 200, 4, 3, 1),   # tasks still stopping count toward the ceiling
    (4, 200, 0, 6, 2),
    (3, 200, 0, 0, 3),   # want caps the start
])
def test_start_is_bounded_by_maximum_percent(desired: int, maximum: int, old: int,
                                              stopping: int, expected: int) -> None:
    service = make_service(desired, maximum=maximum, minimum=100)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(i, "ecs-svc/1", health="HEALTHY") for i in range(old)]
    tasks += [tv(100 + i, "ecs-svc/1", desired="STOPPED") for i in range(stopping)]
    plan = step(service, tasks, NOW, S)
    assert plan.start.get("ecs-svc/2", 0) == expected
    assert sum(plan.start.values()) + len(tasks) <= max_tasks(desired, maximum)


@pytest.mark.parametrize("desired, minimum, healthy_new, expected_stops", [
    (4, 100, 0, 0),
    (4, 100, 2, 2),
    (4, 50, 0, 2),
    (4, 75, 1, 2),
    (4, 0, 0, 4),
    (4, 100, 4, 4),
])
def test_old_running_tasks_stop_bounded_by_minimum_healthy(desired: int, minimum: int,
                                                           healthy_new: int,
                                                           expected_stops: int) -> None:
    service = make_service(desired, maximum=200, minimum=minimum)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(i, "ecs-svc/1") for i in range(desired)]
    tasks += [tv(100 + i, "ecs-svc/2") for i in range(healthy_new)]
    plan = step(service, tasks, NOW, S)
    stopped = stops(plan)
    assert len(stopped) == expected_stops
    assert all(reason == scaling("ecs-svc/2") for reason in stopped.values())
    assert all(a in {t.arn for t in tasks if t.deployment_id == "ecs-svc/1"} for a in stopped)
    assert len(tasks) - expected_stops >= min_healthy(desired, minimum)


def test_old_tasks_that_never_ran_are_stopped_freely_and_first() -> None:
    service = make_service(2, maximum=200, minimum=100)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(1, "ecs-svc/1", "PENDING"), tv(2, "ecs-svc/1", "PROVISIONING"),
             tv(3, "ecs-svc/1"), tv(4, "ecs-svc/1")]
    plan = step(service, tasks, NOW, S)
    # floor 2 and only 2 healthy: the RUNNING ones stay, the pending ones go
    assert stops(plan) == {arn(1): scaling("ecs-svc/2"), arn(2): scaling("ecs-svc/2")}


def test_scale_in_follows_the_placement_rank_before_age() -> None:
    service = make_service(1)
    complete(service)
    tasks = [replace(tv(1), scale_in_rank=2), replace(tv(2), scale_in_rank=0),
             replace(tv(3), scale_in_rank=1), tv(4, status="PENDING")]
    plan = step(service, tasks, NOW, S)
    assert [a for a, _ in plan.stop] == [arn(4), arn(2), arn(3)]


# ---- tasks on DRAINING container instances ------------------------------------------------------

def test_draining_task_is_replaced_before_it_stops_at_minimum_100() -> None:
    service = make_service(2, maximum=200, minimum=100)
    complete(service)
    tasks = [tv(1), tv(2, draining=True)]
    plan = step(service, tasks, NOW, S)
    assert plan.start == {"ecs-svc/1": 1}
    assert plan.stop == []  # stopping it now would leave 1 healthy task, below the floor of 2
    tasks.append(tv(3))  # the replacement runs and is healthy
    plan = step(service, tasks, NOW, S)
    assert plan.start == {}
    assert stops(plan) == {arn(2): DRAINING_REASON}


def test_pending_task_on_a_draining_instance_stops_at_once() -> None:
    service = make_service(2, maximum=200, minimum=100)
    plan = step(service, [tv(1), tv(2, status="PENDING", draining=True)], NOW, S)
    assert plan.start == {"ecs-svc/1": 1}
    assert stops(plan) == {arn(2): DRAINING_REASON}


@pytest.mark.parametrize("minimum, maximum, expected_start, expected_stops", [
    (0, 100, 0, 2),    # no headroom above desired: stop first, start next tick
    (50, 100, 0, 1),
    (50, 200, 2, 1),
    (100, 200, 2, 0),
    (100, 100, 0, 0),  # the bounds forbid both: the deployment-configuration event says so
])
def test_draining_bounded_by_the_deployment_configuration(minimum: int, maximum: int,
                                                          expected_start: int,
                                                          expected_stops: int) -> None:
    service = make_service(2, maximum=maximum, minimum=minimum)
    complete(service)
    tasks = [tv(1, draining=True), tv(2, draining=True)]
    plan = step(service, tasks, NOW, S)
    assert plan.start.get("ecs-svc/1", 0) == expected_start
    assert len(plan.stop) == expected_stops
    assert len(tasks) + expected_start <= max_tasks(2, maximum)
    assert len(tasks) - expected_stops >= min_healthy(2, minimum)
    if minimum == 100 and maximum == 100:
        assert any("deployment configuration" in e for e in plan.events)


def test_no_steady_state_while_a_draining_task_is_live() -> None:
    service = make_service(1, maximum=200, minimum=100)
    complete(service)
    tasks = [tv(1, draining=True, desired="STOPPED"), tv(2)]
    plan = step(service, tasks, NOW, S)
    assert not any("steady state" in e for e in plan.events)
    plan = step(service, [tv(2)], NOW, S)
    assert f"(service {NAME}) has reached a steady state." in plan.events


def test_old_running_task_still_settling_is_not_counted_healthy() -> None:
    service = make_service(2, maximum=200, minimum=50)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(1, "ecs-svc/1"), tv(2, "ecs-svc/1", started=NOW - 5)]
    plan = step(service, tasks, NOW, S)
    # floor 1, one healthy old task; the settling one is not healthy and cannot be spared
    assert stops(plan) == {}
    assert plan.start == {"ecs-svc/2": 2}


@pytest.mark.parametrize("tasks, desired, expected", [
    # pending before running
    ([tv(1), tv(2), tv(3, status="PENDING")], 2, [3]),
    ([tv(1), tv(2, status="PROVISIONING"), tv(3, status="PENDING")], 1, [3, 2]),
    # unhealthy (settling) running before healthy running
    ([tv(1), tv(2, started=NOW - 5), tv(3)], 2, [2]),
    ([tv(1, hc=True, health="HEALTHY"), tv(2, hc=True, health="UNKNOWN"),
      tv(3, hc=True, health="HEALTHY")], 2, [2]),
    # pending, then unhealthy, then the newest healthy
    ([tv(1), tv(2), tv(3, started=NOW - 5), tv(4, status="PENDING"), tv(5)], 1, [4, 3, 5, 2]),
    # all healthy: newest first
    ([tv(1), tv(2), tv(3)], 1, [3, 2]),
    # to zero: everything
    ([tv(1), tv(2, status="PENDING")], 0, [2, 1]),
])
def test_scale_in_order(tasks: list[TaskView], desired: int, expected: list[int]) -> None:
    service = make_service(desired)
    complete(service)
    plan = step(service, tasks, NOW, S)
    assert [a for a, _ in plan.stop] == [arn(n) for n in expected]
    assert all(r == scaling("ecs-svc/1") for _, r in plan.stop)
    assert plan.start == {}


def test_scale_out() -> None:
    service = make_service(2)
    complete(service)
    tasks = [tv(1), tv(2)]
    assert step(copy.deepcopy(service), tasks, NOW, S).start == {}
    service["desiredCount"] = 5
    plan = step(service, tasks, NOW, S)
    assert plan.start == {"ecs-svc/1": 3}
    assert service["deployments"][0]["desiredCount"] == 5 and plan.changed


@pytest.mark.parametrize("grace, age, replaced", [
    (0, 0, True), (0, 5, True), (60, 59, False), (60, 60, True), (60, 600, True),
    (2_147_483_647, 10_000, False),
])
def test_unhealthy_tasks_replaced_after_grace_period(grace: int, age: float,
                                                     replaced: bool) -> None:
    service = make_service(2, grace=grace)
    complete(service)
    sick = tv(1, hc=True, health="UNHEALTHY", started=NOW - age)
    well = tv(2, hc=True, health="HEALTHY")
    plan = step(service, [sick, well], NOW, S)
    if replaced:
        assert stops(plan) == {sick.arn: HC_REASON}
        assert hc_event(short(sick.arn)) in plan.events
        assert plan.start == {"ecs-svc/1": 1}  # headroom: the replacement starts at once
    else:
        assert stops(plan) == {}
        assert not any("failed container health checks" in e for e in plan.events)
        assert plan.start == {}


def test_unhealthy_replacement_without_headroom_still_stops_it() -> None:
    service = make_service(2, maximum=100, minimum=50)
    complete(service)
    sick = tv(1, hc=True, health="UNHEALTHY")
    plan = step(service, [sick, tv(2, hc=True, health="HEALTHY")], NOW, S)
    assert stops(plan) == {sick.arn: HC_REASON}
    assert plan.start == {}  # the stopping task still counts toward the ceiling


def test_rollout_completes_with_exact_strings() -> None:
    service = make_service(2)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(1, "ecs-svc/2"), tv(2, "ecs-svc/2")]
    plan = step(service, tasks, NOW, S)
    primary = service["deployments"][0]
    assert [d["id"] for d in service["deployments"]] == ["ecs-svc/2"]
    assert primary["rolloutState"] == "COMPLETED"
    assert primary["rolloutStateReason"] == "ECS deployment ecs-svc/2 completed."
    assert plan.events == [completed_event("ecs-svc/2"), STEADY]
    assert plan.changed
    assert service["_lastCompleted"] == {"id": "ecs-svc/2", "taskDefinition": TD2}
    # next tick: only the steady state again (add_events de-duplicates it)
    plan = step(service, tasks, NOW + 1, S)
    assert plan.events == [STEADY] and not plan.changed


def test_old_deployment_kept_until_its_last_task_is_stopped() -> None:
    service = make_service(1)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(1, "ecs-svc/1", desired="STOPPED"), tv(2, "ecs-svc/2")]
    plan = step(service, tasks, NOW, S)
    assert [d["id"] for d in service["deployments"]] == ["ecs-svc/2", "ecs-svc/1"]
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert STEADY not in plan.events
    plan = step(service, tasks[1:], NOW + 1, S)
    assert [d["id"] for d in service["deployments"]] == ["ecs-svc/2"]
    assert plan.events == [completed_event("ecs-svc/2"), STEADY]


def test_desired_one_max_100_min_100_cannot_deploy() -> None:
    service = make_service(1, maximum=100, minimum=100)
    complete(service)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    plan = step(service, [tv(1, "ecs-svc/1")], NOW, S)
    assert plan.start == {} and plan.stop == []
    assert plan.events == [UNABLE]


def test_draining_stops_everything_then_goes_inactive() -> None:
    service = make_service(2)
    complete(service)
    service["desiredCount"] = 0
    service["status"] = "DRAINING"
    tasks = [tv(1), tv(2, status="PENDING")]
    plan = step(service, tasks, NOW, S)
    assert {a for a, _ in plan.stop} == {arn(1), arn(2)}
    assert plan.start == {}
    assert service["status"] == "DRAINING"
    assert STEADY not in plan.events
    stopping = [tv(1, desired="STOPPED"), tv(2, status="PENDING", desired="STOPPED")]
    plan = step(service, stopping, NOW + 1, S)
    assert plan.stop == [] and service["status"] == "DRAINING"
    plan = step(service, [], NOW + 2, S)
    assert service["status"] == "INACTIVE" and plan.changed
    assert STEADY not in plan.events


def test_draining_stops_old_deployment_tasks_not_yet_healthy_at_once() -> None:
    """desiredCount 0 leaves nothing to keep healthy: every task is told to stop on the first tick.

    (A DeleteService --force in the middle of a rollout must not wait for the old deployment's
    tasks to settle or for a long health check grace period to run out.)"""
    service = make_service(2, grace=3600)
    complete(service)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    service["desiredCount"] = 0
    service["status"] = "DRAINING"
    tasks = [tv(1, "ecs-svc/1", started=NOW - 5),  # settling
             tv(2, "ecs-svc/1", hc=True, health="UNHEALTHY", started=NOW - 10),  # in grace
             tv(3, "ecs-svc/2", status="PENDING")]
    plan = step(service, tasks, NOW, S)
    assert {a for a, _ in plan.stop} == {t.arn for t in tasks}


def test_failed_primary_launches_nothing() -> None:
    service = make_service(2, enable=True)
    service["deployments"][0]["rolloutState"] = "FAILED"
    plan = step(service, [], NOW, S)
    assert plan.start == {}


@pytest.mark.parametrize("next_at, now, launches", [
    (0, NOW, True), (NOW + 1, NOW, False), (NOW, NOW, True), (NOW - 1, NOW, True),
])
def test_launch_backoff_gates_starts(next_at: float, now: float, launches: bool) -> None:
    service = make_service(2)
    service["_nextLaunchAt"] = next_at
    service["_launchFailures"] = 2
    plan = step(service, [], now, S)
    assert (plan.start == {"ecs-svc/1": 2}) is launches


def test_healthy_primary_resets_failed_tasks_and_backoff() -> None:
    service = make_service(2)
    service["deployments"][0]["failedTasks"] = 2
    service["_launchFailures"] = 4
    service["_nextLaunchAt"] = NOW + 100
    plan = step(service, [tv(1)], NOW, S)
    assert service["deployments"][0]["failedTasks"] == 0
    assert service["_launchFailures"] == 0 and service["_nextLaunchAt"] == 0
    assert plan.changed
    assert step(service, [tv(1)], NOW + 1, S).start == {"ecs-svc/1": 1}  # no longer gated


# ---- task_stopped: circuit breaker and launch backoff -----------------------------------------

def rollout_service(desired: int, *, enable: bool = True, rollback: bool = True,
                    completed: bool = True) -> dict[str, Any]:
    service = make_service(desired, enable=enable, rollback=rollback)
    if completed:
        complete(service)
    deploy(service, TD_BAD, "ecs-svc/2", T0 + 100)
    return service


def fail(service: dict[str, Any], n: int = 1, *, deployment: str = "ecs-svc/2",
         at: float = NOW, became_healthy: bool = False, health_failure: bool = False,
         settings_: Settings = S, new_id: str = "ecs-svc/3") -> list[str]:
    events: list[str] = []
    for _ in range(n):
        events += task_stopped(service, deployment, became_healthy, health_failure, at,
                               settings_, new_id)
    return events


@pytest.mark.parametrize("desired, minimum", [(1, 3), (4, 3), (6, 3), (7, 3), (10, 3), (20, 3),
                                              (4, 1), (4, 10), (30, 10)])
def test_breaker_trips_exactly_at_threshold(desired: int, minimum: int) -> None:
    settings_ = Settings(breaker_minimum=minimum)
    threshold = breaker_threshold(desired, minimum)
    service = rollout_service(desired, rollback=False)
    fail(service, threshold - 1, settings_=settings_)
    d = service["deployments"][0]
    assert d["rolloutState"] == "IN_PROGRESS" and d["failedTasks"] == threshold - 1
    events = fail(service, 1, settings_=settings_, at=NOW + 1)
    assert d["rolloutState"] == "FAILED"
    assert d["rolloutStateReason"] == BREAKER_REASON
    assert d["failedTasks"] == threshold and d["updatedAt"] == NOW + 1
    assert failed_event("ecs-svc/2") in events
    assert [x["id"] for x in service["deployments"]] == ["ecs-svc/2", "ecs-svc/1"]


def test_breaker_rollback_to_last_completed() -> None:
    service = rollout_service(2)
    events = fail(service, 3, new_id="ecs-svc/7")
    ids = [d["id"] for d in service["deployments"]]
    assert ids == ["ecs-svc/7", "ecs-svc/2", "ecs-svc/1"]
    rollback, failed, _ = service["deployments"]
    assert rollback["status"] == "PRIMARY" and rollback["taskDefinition"] == TD1
    assert rollback["rolloutState"] == "IN_PROGRESS"
    assert rollback["rolloutStateReason"] == (
        "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.")
    assert failed["status"] == "ACTIVE" and failed["rolloutState"] == "FAILED"
    assert failed["rolloutStateReason"] == BREAKER_REASON
    assert service["taskDefinition"] == TD1
    assert service["_launchFailures"] == 0 and service["_nextLaunchAt"] == 0
    assert events[-2:] == [failed_event("ecs-svc/2"), rollback_event("ecs-svc/1")]
    # more failures of the failed (now ACTIVE) deployment change nothing
    before = copy.deepcopy(service["deployments"])
    fail(service, 5, new_id="ecs-svc/8")
    assert service["deployments"] == before


@pytest.mark.parametrize("enable, rollback, completed, state, rolled_back", [
    (False, False, True, "IN_PROGRESS", False),
    (False, True, True, "IN_PROGRESS", False),
    (True, False, True, "FAILED", False),
    (True, True, True, "FAILED", True),
    (True, True, False, "FAILED", False),  # nothing ever completed: nothing to roll back to
])
def test_breaker_configurations(enable: bool, rollback: bool, completed: bool, state: str,
                                rolled_back: bool) -> None:
    service = rollout_service(4, enable=enable, rollback=rollback, completed=completed)
    events = fail(service, 10)
    failed = next(d for d in service["deployments"] if d["id"] == "ecs-svc/2")
    assert failed["rolloutState"] == state
    assert (service["deployments"][0]["id"] == "ecs-svc/3") is rolled_back
    assert (rollback_event("ecs-svc/1") in events) is rolled_back
    assert (failed_event("ecs-svc/2") in events) is (state == "FAILED")
    assert events.count(failed_event("ecs-svc/2")) <= 1


def test_first_deployment_failing_has_no_rollback() -> None:
    service = make_service(2, enable=True, rollback=True)
    events = fail(service, 3, deployment="ecs-svc/1")
    assert [d["id"] for d in service["deployments"]] == ["ecs-svc/1"]
    assert service["deployments"][0]["rolloutState"] == "FAILED"
    assert not any("rolling back" in e for e in events)


def test_breaker_ignores_old_deployments_and_completed_primary() -> None:
    service = rollout_service(2)
    fail(service, 5, deployment="ecs-svc/1")
    assert all(d["rolloutState"] != "FAILED" for d in service["deployments"])
    assert service["deployments"][0]["failedTasks"] == 0
    done = make_service(2, enable=True, rollback=True)
    complete(done)
    fail(done, 10, deployment="ecs-svc/1")
    assert done["deployments"][0]["rolloutState"] == "COMPLETED"


@pytest.mark.parametrize("became_healthy, health_failure, counts, throttles", [
    (True, False, False, False),   # a good task that was stopped: nothing
    (True, True, True, False),     # replaced for health checks after being healthy
    # never healthy, then replaced for health checks: it did reach RUNNING, and the reference
    # throttles only tasks that never reached RUNNING; task_stopped cannot tell, so not asserted
    (False, True, True, None),
    (False, False, True, True),    # never started / never became healthy
])
def test_what_counts_as_a_failure(became_healthy: bool, health_failure: bool, counts: bool,
                                  throttles: bool | None) -> None:
    service = rollout_service(10)
    fail(service, 1, became_healthy=became_healthy, health_failure=health_failure)
    assert service["deployments"][0]["failedTasks"] == int(counts)
    if throttles is not None:
        assert service.get("_launchFailures", 0) == int(throttles)


@pytest.mark.parametrize("base, cap", [(10.0, 900.0), (1.0, 8.0), (5.0, 5.0), (0.5, 1000.0)])
def test_launch_backoff_delays_double_from_base(base: float, cap: float) -> None:
    """Consecutive failures to start delay the next launch base, 2*base, 4*base... up to the cap.

    Whether the very first failure is retried at once is left open; the first delay that is
    applied must be `backoff_base_seconds` (Settings: "first delay after a failed launch")."""
    settings_ = Settings(backoff_base_seconds=base, backoff_max_seconds=cap)
    service = make_service(50)
    delays = []
    t = NOW
    for _ in range(12):
        fail(service, 1, deployment="ecs-svc/1", at=t, settings_=settings_)
        if service["_nextLaunchAt"]:
            delays.append(service["_nextLaunchAt"] - t)
        t += 10_000
    assert delays, "no launch delay at all"
    expected = [min(base * 2 ** i, cap) for i in range(len(delays))]
    assert delays == expected


def test_launch_backoff_is_capped() -> None:
    settings_ = Settings(backoff_base_seconds=10, backoff_max_seconds=900)
    service = make_service(50)
    fail(service, 30, deployment="ecs-svc/1", settings_=settings_)
    assert service["_nextLaunchAt"] - NOW == 900


def test_unable_to_consistently_start_event_once_at_third_failure() -> None:
    service = make_service(50)
    per_call = [task_stopped(service, "ecs-svc/1", False, False, NOW + i, S, "x")
                for i in range(8)]
    assert [CONSISTENTLY in e for e in per_call] == [False, False, True] + [False] * 5
    assert per_call[2] == [CONSISTENTLY]


def test_backoff_reset_by_new_deployment_and_by_healthy_task() -> None:
    service = make_service(2)
    fail(service, 4, deployment="ecs-svc/1")
    assert service["_launchFailures"] == 4 and service["_nextLaunchAt"] > NOW
    deploy(service, TD2, "ecs-svc/2", NOW)
    assert service["_launchFailures"] == 0 and service["_nextLaunchAt"] == 0
    fail(service, 4, deployment="ecs-svc/2")
    step(service, [tv(1, "ecs-svc/2", hc=True, health="HEALTHY")], NOW, S)
    assert service["_launchFailures"] == 0 and service["_nextLaunchAt"] == 0
    # and the event can be emitted again after a reset
    events = fail(service, 3, deployment="ecs-svc/2")
    assert CONSISTENTLY in events


# ---- add_events ----------------------------------------------------------------------------------

def ids() -> Any:
    counter = itertools.count(1)
    return lambda: next(counter)


def test_events_newest_first_with_ids() -> None:
    service: dict[str, Any] = {}
    new_id = ids()
    assert add_events(service, ["a", "b"], T0, new_id)
    assert add_events(service, ["c"], T0 + 1, new_id)
    assert [e["message"] for e in service["events"]] == ["c", "b", "a"]
    assert [e["id"] for e in service["events"]] == ["3", "2", "1"]
    assert [e["createdAt"] for e in service["events"]] == [T0 + 1, T0, T0]


@pytest.mark.parametrize("gap, added", [(0, False), (60, False), (6 * 3600 - 1, False),
                                        (6 * 3600, True), (7 * 3600, True)])
def test_identical_events_deduplicated_for_six_hours(gap: float, added: bool) -> None:
    service: dict[str, Any] = {}
    new_id = ids()
    add_events(service, [STEADY], T0, new_id)
    assert add_events(service, [STEADY], T0 + gap, new_id) is added
    assert [e["message"] for e in service["events"]].count(STEADY) == 1 + added


def test_a_message_comes_back_after_another_one() -> None:
    service: dict[str, Any] = {}
    new_id = ids()
    add_events(service, [STEADY], T0, new_id)
    add_events(service, ["(service web) has started 1 tasks: (task t1)."], T0 + 1, new_id)
    assert add_events(service, [STEADY], T0 + 2, new_id)
    assert [e["message"] for e in service["events"]].count(STEADY) == 2


def test_duplicates_within_one_batch() -> None:
    service: dict[str, Any] = {}
    assert add_events(service, ["x", "x", "y"], T0, ids())
    assert [e["message"] for e in service["events"]] == ["y", "x"]
    assert not add_events(service, ["y"], T0 + 5, ids())
    assert not add_events(service, [], T0 + 5, ids())


def test_events_capped_at_100() -> None:
    service: dict[str, Any] = {}
    new_id = ids()
    for i in range(250):
        add_events(service, [f"m{i}"], T0 + i, new_id)
    assert len(service["events"]) == 100
    assert service["events"][0]["message"] == "m249"
    assert service["events"][-1]["message"] == "m150"


# ---- the simulator ---------------------------------------------------------------------------------

@dataclass
class SimTask:
    arn: str
    deployment_id: str
    task_definition: str
    created_at: float
    has_health_check: bool
    pending_ticks: int
    health_ticks: int
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    health_status: str = "UNKNOWN"
    started_at: float | None = None
    ever_healthy: bool = False
    stopped_reason: str = ""
    stop_ticks: int = 1  # agent passes between "told to stop" and STOPPED
    sick: bool = False
    draining: bool = False  # its container instance was set to DRAINING

    def view(self) -> TaskView:
        return TaskView(arn=self.arn, deployment_id=self.deployment_id,
                        last_status=self.last_status, desired_status=self.desired_status,
                        health_status=self.health_status, has_health_check=self.has_health_check,
                        created_at=self.created_at, started_at=self.started_at,
                        draining=self.draining)


class Sim:
    """A service, its tasks and a clock; `tick` is one agent pass plus one scheduler pass."""

    def __init__(self, service: dict[str, Any], settings_: Settings, rng: random.Random, *,
                 health_check: bool = False, bad_start: frozenset[str] = frozenset()) -> None:
        self.service = service
        self.settings = settings_
        self.rng = rng
        self.health_check = health_check
        self.bad_start = set(bad_start)  # task definitions whose tasks never reach RUNNING
        self.now = service["createdAt"]
        self.tasks: dict[str, SimTask] = {}
        self.stopped: list[SimTask] = []
        self.task_seq = itertools.count(1)
        self.deployment_seq = itertools.count(2)
        self.event_seq = itertools.count(1)
        self.launches: Counter[str] = Counter()  # deployment id -> tasks launched
        self.plans: list[tuple[float, Plan]] = []
        self.strict_ceiling = True  # desiredCount and the configuration never change
        self.failures_injected = False
        self.healthy_floor_reached = False

    # -- the world ------------------------------------------------------------------------------

    def next_deployment_id(self) -> str:
        return f"ecs-svc/{next(self.deployment_seq)}"

    def update(self, td: str) -> str:
        deployment_id = self.next_deployment_id()
        deploy(self.service, td, deployment_id, self.now)
        return deployment_id

    def views(self) -> list[TaskView]:
        return [t.view() for t in self.tasks.values()]

    def healthy_live(self) -> set[str]:
        return {v.arn for v in self.views() if v.live and is_healthy(v, self.now, self.settings)}

    def _stop(self, t: SimTask, reason: str) -> None:
        """The task reaches STOPPED; the report hook of the controller runs."""
        t.last_status = "STOPPED"
        t.desired_status = "STOPPED"
        t.stopped_reason = reason
        del self.tasks[t.arn]
        self.stopped.append(t)
        if reason.startswith("Scaling activity"):
            return
        if t.has_health_check:
            became_healthy = t.ever_healthy
        else:
            became_healthy = t.started_at is not None and \
                self.now - t.started_at >= self.settings.settle_seconds
        events = task_stopped(self.service, t.deployment_id, became_healthy, reason == HC_REASON,
                              self.now, self.settings, self.next_deployment_id())
        add_events(self.service, events, self.now, lambda: next(self.event_seq))

    def advance(self, dt: float) -> None:
        self.now += dt
        for t in list(self.tasks.values()):
            if t.desired_status == "STOPPED":
                t.stop_ticks -= 1
                if t.stop_ticks <= 0 or t.last_status in PENDING_STATES:
                    self._stop(t, t.stopped_reason)
                else:
                    t.last_status = "STOPPING"
            elif t.last_status in PENDING_STATES:
                t.pending_ticks -= 1
                if t.pending_ticks > 0:
                    t.last_status = "PENDING"
                elif t.task_definition in self.bad_start:
                    self._stop(t, "CannotPullContainerError: pull image manifest has been "
                                  "retried 1 time(s)")
                else:
                    t.last_status = "RUNNING"
                    t.started_at = self.now
            elif t.last_status == "RUNNING" and t.has_health_check and \
                    t.health_status == "UNKNOWN":
                t.health_ticks -= 1
                if t.health_ticks <= 0:
                    t.health_status = "UNHEALTHY" if t.sick else "HEALTHY"
                    t.ever_healthy = t.ever_healthy or t.health_status == "HEALTHY"

    def kill(self, k: int) -> None:
        """Essential containers of up to k random live RUNNING tasks exit."""
        self.failures_injected = True
        victims = [t for t in self.tasks.values()
                   if t.last_status == "RUNNING" and t.desired_status == "RUNNING"]
        for t in self.rng.sample(victims, min(k, len(victims))):
            self._stop(t, "Essential container in task exited")

    def drain(self, k: int) -> list[str]:
        """The instances of up to k random live tasks are set to DRAINING."""
        cands = [t for t in self.tasks.values() if t.desired_status == "RUNNING"]
        chosen = self.rng.sample(cands, min(k, len(cands)))
        for t in chosen:
            t.draining = True
        return [t.arn for t in chosen]

    def sicken(self, k: int) -> None:
        """Up to k random HEALTHY tasks start failing their container health checks."""
        self.failures_injected = True
        cands = [t for t in self.tasks.values()
                 if t.health_status == "HEALTHY" and t.desired_status == "RUNNING"]
        for t in self.rng.sample(cands, min(k, len(cands))):
            t.health_status = "UNHEALTHY"
            t.sick = True

    # -- the scheduler pass ------------------------------------------------------------------------

    def tick(self, dt: float) -> Plan:
        self.advance(dt)
        return self.schedule()

    def schedule(self) -> Plan:
        service = self.service
        before = self.views()
        before_count = len(before)
        healthy_before = {v.arn for v in before
                          if v.live and is_healthy(v, self.now, self.settings)}
        config = service["deploymentConfiguration"]
        active = service["status"] == "ACTIVE"
        desired = service["desiredCount"] if active else 0
        ceiling = max_tasks(desired, config["maximumPercent"])
        floor = min_healthy(desired, config["minimumHealthyPercent"])
        grace = service.get("healthCheckGracePeriodSeconds", 0)
        primary_before = service["deployments"][0]
        failed_before = primary_before.get("rolloutState") == "FAILED"
        gated = self.now < service.get("_nextLaunchAt", 0)

        plan = step(service, before, self.now, self.settings)
        self.plans.append((self.now, plan))
        add_events(service, plan.events, self.now, lambda: next(self.event_seq))

        # -- plan-level invariants --
        by_arn = {v.arn: v for v in before}
        stop_arns = [a for a, _ in plan.stop]
        assert len(stop_arns) == len(set(stop_arns)), "a task stopped twice in one plan"
        for a, reason in plan.stop:
            assert a in by_arn and by_arn[a].live, "stopped a task that was not live"
            v = by_arn[a]
            if reason == HC_REASON:
                assert v.health_status == "UNHEALTHY" and v.started_at is not None
                assert self.now - v.started_at >= grace, "health replacement inside grace"
                assert hc_event(short(a)) in plan.events
            elif v.draining:
                assert reason == DRAINING_REASON, reason
            else:
                assert reason == scaling(service["deployments"][0]["id"]), reason
        for v in before:  # every UNHEALTHY live task past its grace period is replaced
            if v.live and v.health_status == "UNHEALTHY" and v.started_at is not None:
                past = self.now - v.started_at >= grace
                assert (dict(plan.stop).get(v.arn) == HC_REASON) is past
        healthy_stopped = healthy_before & set(stop_arns)
        if healthy_stopped:
            assert len(healthy_before) - len(healthy_stopped) >= floor, (
                f"a scheduler stop took healthy tasks from {len(healthy_before)} to "
                f"{len(healthy_before) - len(healthy_stopped)} below {floor}")
        if plan.start:
            assert set(plan.start) == {primary_before["id"]}
            assert all(n > 0 for n in plan.start.values())
            assert not failed_before, "a FAILED deployment launched tasks"
            assert not gated, "launched while the launch backoff is running"
            assert active
            assert before_count + sum(plan.start.values()) <= ceiling

        # -- apply the plan (what controllers/services.py _apply does) --
        for a, reason in plan.stop:
            t = self.tasks[a]
            t.desired_status = "STOPPED"
            t.stopped_reason = reason
            t.stop_ticks = self.rng.randint(1, 3)
        for deployment_id, n in plan.start.items():
            deployment = next(d for d in service["deployments"] if d["id"] == deployment_id)
            for _ in range(n):
                task_arn = arn(next(self.task_seq))
                self.tasks[task_arn] = SimTask(
                    arn=task_arn, deployment_id=deployment_id,
                    task_definition=deployment["taskDefinition"], created_at=self.now,
                    has_health_check=self.health_check,
                    pending_ticks=self.rng.randint(1, 2), health_ticks=self.rng.randint(1, 3))
            self.launches[deployment_id] += n

        # -- state invariants --
        deployments = service["deployments"]
        assert deployments[0]["status"] == "PRIMARY"
        assert all(d["status"] == "ACTIVE" for d in deployments[1:])
        listed = {d["id"] for d in deployments}
        assert len(listed) == len(deployments)
        assert {t.deployment_id for t in self.tasks.values()} <= listed, \
            "a deployment with unfinished tasks was dropped"
        assert deployments[0]["taskDefinition"] == service["taskDefinition"]
        assert deployments[0]["desiredCount"] == desired
        if self.strict_ceiling and active and desired > 0:
            assert len(self.tasks) <= ceiling, f"{len(self.tasks)} unfinished > {ceiling}"
        healthy_now = self.healthy_live()
        if active and not self.failures_injected:
            if self.healthy_floor_reached:
                assert len(healthy_now) >= floor, "healthy tasks dropped below the floor"
            self.healthy_floor_reached = self.healthy_floor_reached or len(healthy_now) >= floor
        check_events(service)
        return plan

    # -- convergence --------------------------------------------------------------------------------

    def converged(self) -> bool:
        s = self.service
        desired = s["desiredCount"] if s["status"] == "ACTIVE" else 0
        primary = s["deployments"][0]
        views = self.views()
        return (len(s["deployments"]) == 1 and primary["rolloutState"] == "COMPLETED"
                and len(views) == desired
                and all(v.deployment_id == primary["id"] and v.live and v.last_status == "RUNNING"
                        and not v.draining and is_healthy(v, self.now, self.settings)
                        for v in views))

    def run_until_converged(self, max_ticks: int = 2000) -> int:
        for i in range(max_ticks):
            self.tick(self.rng.uniform(1, 15))
            if self.converged():
                return i
        raise AssertionError(f"did not converge: {summary(self)}")


def summary(sim: Sim) -> str:
    s = sim.service
    return (f"status={s['status']} desired={s['desiredCount']} "
            f"deployments={[(d['id'], d['taskDefinition'][-5:], d['rolloutState'], d.get('failedTasks')) for d in s['deployments']]} "
            f"tasks={[(t.deployment_id, t.last_status, t.desired_status, t.health_status) for t in sim.tasks.values()]} "
            f"backoff={s.get('_launchFailures')},{s.get('_nextLaunchAt', 0) - sim.now:.0f}")


def check_events(service: dict[str, Any]) -> None:
    events = service["events"]
    assert len(events) <= 100
    times = [e["createdAt"] for e in events]
    assert times == sorted(times, reverse=True), "events are not newest first"
    # A message never immediately repeats itself within 6 h (it may come back after others).
    for newer, older in zip(events, events[1:], strict=False):
        if newer["message"] == older["message"]:
            assert newer["createdAt"] - older["createdAt"] >= 6 * 3600, \
                f"repeated within 6 h: {newer['message']}"


def messages(service: dict[str, Any]) -> list[str]:
    return [e["message"] for e in service["events"]]


def assert_converged_on(sim: Sim, td: str) -> None:
    s = sim.service
    primary = s["deployments"][0]
    assert sim.converged()
    assert primary["taskDefinition"] == td == s["taskDefinition"]
    assert primary["rolloutState"] == "COMPLETED"
    assert primary["rolloutStateReason"] == f"ECS deployment {primary['id']} completed."
    assert completed_event(primary["id"]) in messages(s)
    assert STEADY in messages(s)
    assert sum(1 for v in sim.views()
               if v.deployment_id == primary["id"] and v.last_status == "RUNNING"
               and is_healthy(v, sim.now, sim.settings)) == s["desiredCount"]
    # steady state holds: further ticks neither start nor stop anything
    for _ in range(3):
        plan = sim.tick(sim.rng.uniform(1, 15))
        assert plan.start == {} and plan.stop == []


def blocked(desired: int, maximum: int, minimum: int) -> bool:
    """A rolling update can neither start nor stop a task (e.g. desired=1, max=100, min=100)."""
    return desired > 0 and max_tasks(desired, maximum) <= desired and \
        min_healthy(desired, minimum) >= desired


def fast_settings(rng: random.Random) -> Settings:
    return Settings(settle_seconds=rng.choice([0.0, 5.0, 20.0, 40.0]),
                    breaker_minimum=rng.choice([1, 2, 3, 5]),
                    backoff_base_seconds=rng.choice([1.0, 2.0, 5.0, 10.0]),
                    backoff_max_seconds=rng.choice([10.0, 30.0, 60.0]))


class SeededRandom(random.Random):
    """A plain PRNG (hypothesis draws only the seed: cheap, and the repr reproduces it)."""

    def __init__(self, x: int) -> None:
        super().__init__(x)
        self._x = x

    def __repr__(self) -> str:
        return f"SeededRandom({self._x})"


rngs = st.integers(0, 2**32 - 1).map(SeededRandom)
PROPS = settings(max_examples=200, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
percent_max = st.sampled_from([100, 110, 125, 133, 150, 175, 200, 250, 300])
percent_min = st.sampled_from([0, 10, 25, 33, 50, 66, 75, 90, 100])


# ---- properties ------------------------------------------------------------------------------------

@PROPS
@given(desired=st.integers(1, 8), maximum=percent_max, minimum=percent_min,
       health_check=st.booleans(), rng=rngs)
def test_rolling_update_keeps_bounds_and_converges(desired: int, maximum: int, minimum: int,
                                                    health_check: bool,
                                                    rng: random.Random) -> None:
    service = make_service(desired, maximum=maximum, minimum=minimum)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    sim.run_until_converged()
    assert_converged_on(sim, TD1)
    first = service["deployments"][0]["id"]
    assert service["_lastCompleted"] == {"id": first, "taskDefinition": TD1}

    new_id = sim.update(TD2)
    if blocked(desired, maximum, minimum):
        for _ in range(10):
            plan = sim.tick(rng.uniform(1, 15))
            assert plan.start == {} and plan.stop == []
        assert UNABLE in messages(service)
        assert [d["id"] for d in service["deployments"]] == [new_id, first]
        return
    sim.run_until_converged()
    assert_converged_on(sim, TD2)
    assert service["deployments"][0]["id"] == new_id
    assert sim.launches[new_id] == desired  # no failures: exactly one launch per slot
    assert service["deployments"][0]["failedTasks"] == 0
    # every old task was stopped by the scheduler with the scaling reason
    olds = [t for t in sim.stopped if t.deployment_id == first]
    assert len(olds) == desired
    assert all(t.stopped_reason == scaling(new_id) for t in olds)


@PROPS
@given(desired=st.integers(1, 8), maximum=percent_max, minimum=percent_min,
       health_check=st.booleans(), drained=st.integers(1, 8), rng=rngs)
def test_draining_replaces_tasks_within_bounds(desired: int, maximum: int, minimum: int,
                                               health_check: bool, drained: int,
                                               rng: random.Random) -> None:
    """Tasks on DRAINING instances are replaced without leaving the max/min bounds (the
    simulator checks them on every tick) and all end stopped with the draining reason."""
    service = make_service(desired, maximum=maximum, minimum=minimum)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    sim.run_until_converged()
    gone = sim.drain(drained)
    if blocked(desired, maximum, minimum):
        plan = sim.tick(rng.uniform(1, 15))
        assert plan.start == {} and plan.stop == []
        return
    sim.run_until_converged()
    assert_converged_on(sim, TD1)
    stopped = {t.arn: t.stopped_reason for t in sim.stopped}
    assert all(stopped.get(a) == DRAINING_REASON for a in gone)


@PROPS
@given(desired=st.integers(1, 6), maximum=percent_max, minimum=percent_min,
       rng=rngs)
def test_rolling_update_without_failures_never_reports_unable_to_stop_or_start(
        desired: int, maximum: int, minimum: int, rng: random.Random) -> None:
    """The "unable to stop or start tasks ... because of the service deployment configuration"
    event is for deployments the configuration really blocks, not for a tick that is merely
    waiting for in-flight tasks (stopping tasks to reach STOPPED, new ones to become healthy)."""
    service = make_service(desired, maximum=maximum, minimum=minimum)
    sim = Sim(service, fast_settings(rng), rng, health_check=rng.random() < 0.5)
    sim.run_until_converged()
    sim.update(TD2)
    if blocked(desired, maximum, minimum):
        return
    sim.run_until_converged()
    assert UNABLE not in messages(service), summary(sim)


@pytest.mark.parametrize("desired, maximum, minimum", [(2, 150, 50), (3, 100, 50), (4, 125, 75)])
def test_in_flight_stop_is_not_a_configuration_deadlock(desired: int, maximum: int,
                                                        minimum: int) -> None:
    """Deterministic form of the property above: tick after the first old task was told to stop."""
    service = make_service(desired, maximum=maximum, minimum=minimum)
    complete(service)
    deploy(service, TD2, "ecs-svc/2", T0 + 100)
    tasks = [tv(i, "ecs-svc/1") for i in range(desired)]
    plan = step(service, tasks, NOW, S)
    assert plan.stop, "the first tick stops an old task (there is a spare healthy one)"
    told = {a for a, _ in plan.stop}
    tasks = [TaskView(t.arn, t.deployment_id, t.last_status,
                      "STOPPED" if t.arn in told else "RUNNING", t.health_status,
                      t.has_health_check, t.created_at, t.started_at) for t in tasks]
    tasks += [tv(100 + i, "ecs-svc/2", "PENDING") for i in range(plan.start.get("ecs-svc/2", 0))]
    plan = step(service, tasks, NOW + 1, S)
    assert UNABLE not in plan.events


@PROPS
@given(desired=st.integers(0, 6), health_check=st.booleans(), grace=st.sampled_from([0, 20, 90]),
       minimum=percent_min, maximum=st.sampled_from([200, 250, 300]),
       ops=st.lists(st.one_of(
           st.tuples(st.just("tick"), st.floats(0.5, 30)),
           st.tuples(st.just("wait"), st.floats(60, 2000)),
           st.tuples(st.just("scale"), st.integers(0, 8)),
           st.tuples(st.just("deploy"), st.sampled_from([TD1, TD2])),
           st.tuples(st.just("kill"), st.integers(1, 3)),
           st.tuples(st.just("sicken"), st.integers(1, 3))), min_size=1, max_size=40),
       rng=rngs)
def test_random_operations_keep_invariants_and_converge(
        desired: int, health_check: bool, grace: int, minimum: int, maximum: int,
        ops: list[tuple[str, Any]], rng: random.Random) -> None:
    service = make_service(desired, maximum=maximum, minimum=minimum, grace=grace)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    sim.strict_ceiling = False  # desiredCount changes; the per-plan ceiling check still applies
    td = TD1
    for op, arg in ops:
        if op in ("tick", "wait"):
            sim.tick(arg)
        elif op == "scale":
            service["desiredCount"] = arg
            sim.failures_injected = True  # the healthy floor moves; only per-plan checks apply
            sim.schedule()
        elif op == "deploy":
            td = arg
            sim.update(arg)
            sim.schedule()
        elif op == "kill":
            sim.kill(arg)
            sim.schedule()
        else:
            sim.sicken(arg)
            sim.schedule()
    sim.run_until_converged()
    assert_converged_on(sim, td)
    replaced = [t for t in sim.stopped if t.stopped_reason == HC_REASON]
    for t in replaced:
        assert hc_event(short(t.arn)) in messages(service) or len(service["events"]) == 100


@PROPS
@given(desired=st.integers(1, 6), k=st.integers(1, 6), health_check=st.booleans(),
       rng=rngs)
def test_deaths_are_replaced(desired: int, k: int, health_check: bool,
                             rng: random.Random) -> None:
    service = make_service(desired)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    sim.run_until_converged()
    launched = sim.launches[service["deployments"][0]["id"]]
    sim.kill(k)
    killed = min(k, desired)
    sim.tick(0.1)  # the very next pass relaunches (healthy tasks that die are not throttled)
    assert sim.launches[service["deployments"][0]["id"]] == launched + killed
    sim.run_until_converged()
    assert_converged_on(sim, TD1)


@PROPS
@given(desired=st.integers(1, 6), grace=st.sampled_from([0, 30, 120, 600]),
       rng=rngs)
def test_unhealthy_tasks_replaced_only_after_grace(desired: int, grace: int,
                                                   rng: random.Random) -> None:
    service = make_service(desired, grace=grace)
    sim = Sim(service, fast_settings(rng), rng, health_check=True)
    sim.run_until_converged()
    # pick a task whose grace period runs out in the future (or is already over)
    sim.sicken(1)
    sick = next(t for t in sim.tasks.values() if t.sick)
    deadline = sick.started_at + grace
    while True:
        dt = rng.uniform(1, 40)
        plan = sim.tick(dt)
        reason = dict(plan.stop).get(sick.arn)
        if sim.now < deadline:
            assert reason is None, "replaced inside the grace period"
        else:
            assert reason == HC_REASON
            assert hc_event(short(sick.arn)) in plan.events
            break
    sim.run_until_converged()
    assert_converged_on(sim, TD1)
    assert hc_event(short(sick.arn)) in messages(service)


@PROPS
@given(desired=st.integers(0, 6), health_check=st.booleans(), during_rollout=st.booleans(),
       rng=rngs)
def test_scale_to_zero_then_delete(desired: int, health_check: bool, during_rollout: bool,
                                   rng: random.Random) -> None:
    service = make_service(desired)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    sim.run_until_converged()
    if during_rollout:
        sim.update(TD2)
        for _ in range(rng.randint(1, 4)):
            sim.tick(rng.uniform(1, 10))
    service["desiredCount"] = 0
    sim.strict_ceiling = False
    sim.run_until_converged()
    assert not sim.tasks and service["status"] == "ACTIVE"
    assert service["deployments"][0]["desiredCount"] == 0
    # DeleteService
    service["status"] = "DRAINING"
    for _ in range(3):
        sim.tick(rng.uniform(1, 10))
    assert service["status"] == "INACTIVE"


@PROPS
@given(desired=st.integers(1, 6), health_check=st.booleans(), rng=rngs)
def test_force_delete_drains_to_inactive(desired: int, health_check: bool,
                                         rng: random.Random) -> None:
    service = make_service(desired)
    sim = Sim(service, fast_settings(rng), rng, health_check=health_check)
    for _ in range(rng.randint(0, 10)):
        sim.tick(rng.uniform(1, 10))
    service["desiredCount"] = 0
    service["status"] = "DRAINING"
    sim.strict_ceiling = False
    for _ in range(300):
        plan = sim.tick(rng.uniform(1, 10))
        assert plan.start == {}
        assert STEADY not in plan.events  # a DRAINING service is never "steady"
        if service["status"] == "INACTIVE":
            break
    assert service["status"] == "INACTIVE" and not sim.tasks


@PROPS
@given(desired=st.integers(1, 8), maximum=st.sampled_from([150, 200, 300]),
       minimum=st.sampled_from([0, 50, 100]), rollback=st.booleans(),
       health_check=st.booleans(), rng=rngs)
def test_circuit_breaker(desired: int, maximum: int, minimum: int, rollback: bool,
                         health_check: bool, rng: random.Random) -> None:
    if blocked(desired, maximum, minimum):
        return
    service = make_service(desired, maximum=maximum, minimum=minimum, enable=True,
                           rollback=rollback)
    settings_ = fast_settings(rng)
    sim = Sim(service, settings_, rng, health_check=health_check, bad_start=frozenset({TD_BAD}))
    sim.run_until_converged()
    first = service["deployments"][0]["id"]
    bad = sim.update(TD_BAD)
    d = service["deployments"][0]  # kept by reference: it may leave the list once drained
    threshold = breaker_threshold(desired, settings_.breaker_minimum)
    for _ in range(3000):
        sim.tick(rng.uniform(1, 15))
        if d["rolloutState"] == "FAILED":
            break
    else:
        raise AssertionError(f"breaker never tripped: {summary(sim)}")
    assert d["failedTasks"] >= threshold
    assert d["rolloutStateReason"] == BREAKER_REASON
    assert failed_event(bad) in messages(service)
    if rollback:
        primary = service["deployments"][0]
        assert primary["id"] != bad and primary["taskDefinition"] == TD1
        assert primary["rolloutStateReason"] == (
            f"ECS deployment circuit breaker: rolling back to deploymentId {first}.")
        assert d["status"] == "ACTIVE"
        assert d not in service["deployments"][:1]
        assert rollback_event(first) in messages(service)
        assert messages(service).index(rollback_event(first)) < \
            messages(service).index(failed_event(bad))
        sim.run_until_converged()
        assert_converged_on(sim, TD1)
        assert service["deployments"][0]["id"] == primary["id"]
    else:
        assert service["deployments"][0]["id"] == bad
        launched = sim.launches[bad]
        for _ in range(100):
            plan = sim.tick(rng.uniform(1, 60))
            assert bad not in plan.start
        assert sim.launches[bad] == launched
        assert service["deployments"][0]["rolloutState"] == "FAILED"
        assert not any("rolling back" in m for m in messages(service))


@PROPS
@given(desired=st.integers(1, 6), rollback=st.booleans(), rng=rngs)
def test_circuit_breaker_without_a_completed_deployment(desired: int, rollback: bool,
                                                        rng: random.Random) -> None:
    service = make_service(desired, td=TD_BAD, enable=True, rollback=rollback)
    sim = Sim(service, fast_settings(rng), rng, bad_start=frozenset({TD_BAD}))
    for _ in range(3000):
        sim.tick(rng.uniform(1, 15))
        if service["deployments"][0]["rolloutState"] == "FAILED":
            break
    assert service["deployments"][0]["rolloutState"] == "FAILED"
    assert [d["id"] for d in service["deployments"]] == ["ecs-svc/1"]
    for _ in range(50):
        assert sim.tick(rng.uniform(1, 60)).start == {}
    assert len(service["deployments"]) == 1
    assert not any("rolling back" in m for m in messages(service))


@PROPS
@given(desired=st.integers(1, 5), failures=st.integers(1, 8), health_check=st.booleans(),
       rng=rngs)
def test_launch_backoff_in_simulation(desired: int, failures: int, health_check: bool,
                                      rng: random.Random) -> None:
    """A task definition that fails to start `failures` times, then works."""
    service = make_service(desired)
    settings_ = fast_settings(rng)
    sim = Sim(service, settings_, rng, health_check=health_check, bad_start=frozenset({TD1}))
    failed_at: list[float] = []
    for _ in range(5000):
        if len([t for t in sim.stopped if t.stopped_reason.startswith("CannotPull")]) >= failures:
            sim.bad_start.clear()
        before = len(sim.stopped)
        sim.tick(rng.uniform(0.5, 5))
        failed_at += [sim.now] * (len(sim.stopped) - before)
        n = service.get("_launchFailures", 0)
        next_at = service.get("_nextLaunchAt", 0)
        if n >= 2 and next_at:
            assert next_at - sim.now <= settings_.backoff_max_seconds
        if sim.converged():
            break
    assert_converged_on(sim, TD1)
    assert service["_launchFailures"] == 0 and service["_nextLaunchAt"] == 0
    bursts = [m for m in messages(service) if m == CONSISTENTLY]
    total_failures = len([t for t in sim.stopped if t.stopped_reason.startswith("CannotPull")])
    assert len(bursts) == (1 if total_failures >= 3 else 0)


def test_launch_backoff_timeline() -> None:
    """One task, always failing: the gaps between launches follow the backoff exactly."""
    settings_ = Settings(backoff_base_seconds=10, backoff_max_seconds=80, settle_seconds=0)
    service = make_service(1)
    sim = Sim(service, settings_, random.Random(0), bad_start=frozenset({TD1}))
    launch_times = []
    for _ in range(2000):
        plan = sim.tick(1)
        if plan.start:
            launch_times.append(sim.now)
        if len(launch_times) == 8:
            break
    gaps = [b - a for a, b in zip(launch_times, launch_times[1:], strict=False)]
    # each launch fails 1-2 ticks later; the next launch waits for the backoff of that failure
    # a launch fails 1 or 2 ticks (seconds) later; the next launch waits for that failure's delay
    delays = [{g - 1, g - 2} for g in gaps]
    retry_first = [0] + [min(10 * 2 ** i, 80) for i in range(len(gaps) - 1)]
    delay_first = [min(10 * 2 ** i, 80) for i in range(len(gaps))]
    assert all(e in d for e, d in zip(retry_first, delays, strict=True)) or \
        all(e in d for e, d in zip(delay_first, delays, strict=True)), (gaps, retry_first, delay_first)
    assert CONSISTENTLY in messages(service)


def test_steady_state_event_follows_each_completed_deployment() -> None:
    """ECS prints "deployment completed" and then "has reached a steady state." for every rollout,
    so the newest steady-state event is newer than the newest completed event."""
    rng = random.Random(1)
    service = make_service(2)
    sim = Sim(service, Settings(settle_seconds=5), rng)
    sim.run_until_converged()
    sim.update(TD2)
    sim.run_until_converged()
    msgs = messages(service)
    assert msgs.index(STEADY) < msgs.index(completed_event(service["deployments"][0]["id"])), msgs


@pytest.mark.parametrize("desired, minimum", [(2, 100), (4, 50)])
def test_failed_deployment_without_rollback_is_not_a_configuration_deadlock(
        desired: int, minimum: int) -> None:
    """A FAILED deployment launches nothing by design; that is not the configuration's fault."""
    service = rollout_service(desired, rollback=False)
    service["deploymentConfiguration"]["minimumHealthyPercent"] = minimum
    fail(service, 10)
    assert service["deployments"][0]["rolloutState"] == "FAILED"
    plan = step(service, [tv(i, "ecs-svc/1") for i in range(min_healthy(desired, minimum))],
                NOW, S)
    assert plan.start == {}
    assert UNABLE not in plan.events


# ---- wake_at: nothing changes with time alone before it ------------------------------------------

@st.composite
def snapshots(draw: Any) -> tuple[dict[str, Any], list[TaskView], Settings]:
    """A service mid-rollout (or not) and an arbitrary set of its unfinished tasks at NOW."""
    desired = draw(st.integers(0, 6))
    service = make_service(desired, maximum=draw(percent_max), minimum=draw(percent_min),
                           grace=draw(st.sampled_from([0, 30, 300])))
    complete(service)
    deployments = ["ecs-svc/1"]
    if draw(st.booleans()):
        deploy(service, TD2, "ecs-svc/2", T0 + 50)
        deployments.append("ecs-svc/2")
    if draw(st.booleans()):
        service["_launchFailures"] = draw(st.integers(1, 5))
        service["_nextLaunchAt"] = NOW + draw(st.sampled_from([-5.0, 0.0, 3.0, 100.0]))
    if draw(st.booleans()):
        service["status"] = "DRAINING"
    settings_ = Settings(settle_seconds=draw(st.sampled_from([0.0, 10.0, 40.0])))
    tasks = []
    for i in range(draw(st.integers(0, 8))):
        status = draw(st.sampled_from(["PROVISIONING", "PENDING", "RUNNING", "RUNNING"]))
        hc = draw(st.booleans())
        started = NOW - draw(st.sampled_from([0.0, 2.0, 15.0, 35.0, 100.0, 1000.0])) \
            if status == "RUNNING" else None
        tasks.append(TaskView(
            arn=arn(i + 1), deployment_id=draw(st.sampled_from(deployments)), last_status=status,
            desired_status=draw(st.sampled_from(["RUNNING", "RUNNING", "STOPPED"])),
            health_status=draw(st.sampled_from(["UNKNOWN", "HEALTHY", "UNHEALTHY"]))
            if hc and status == "RUNNING" else "UNKNOWN",
            has_health_check=hc, created_at=NOW - 2000 + i, started_at=started))
    return service, tasks, settings_


def decision(plan: Plan) -> tuple[dict[str, int], set[tuple[str, str]]]:
    return plan.start, set(plan.stop)


@settings(max_examples=200, deadline=None, database=None)
@given(snapshot=snapshots(), fractions=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=4))
def test_wake_at_is_the_next_time_the_decision_can_change(
        snapshot: tuple[dict[str, Any], list[TaskView], Settings],
        fractions: list[float]) -> None:
    """Plan.wake_at: "when time alone will change the decision (settle, backoff)". Until then a
    step over the same tasks must decide the same launches and stops (a grace period running
    out is time alone, too)."""
    service, tasks, settings_ = snapshot
    plan = step(copy.deepcopy(service), tasks, NOW, settings_)
    if plan.wake_at is not None:
        assert plan.wake_at > NOW
    horizon = plan.wake_at if plan.wake_at is not None else NOW + 10**7
    for f in fractions:
        later = NOW + (horizon - NOW) * f
        assert decision(step(copy.deepcopy(service), tasks, later, settings_)) == \
            decision(plan), f"decision changed at NOW+{later - NOW:.1f} before wake_at"
