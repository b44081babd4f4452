"""ECS services on real containers: replicas, rolling updates, circuit breaker, backoff, deletion.

One Galley for the module with fast scheduler knobs: a task counts as healthy after 2 s RUNNING
(ECS: 40 s), the launch backoff starts at 1 s, and the circuit breaker trips after 3 failures.
Every test gets its own cluster (with a random suffix so Docker label checks stay ours).
"""

from __future__ import annotations

import math
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from botocore.exceptions import ClientError

from .conftest import AWSVPC, BUSYBOX, register_fargate, wait_for, wait_task_status
from .galley_process import GalleyProcess

DEPLOYMENT_ID = re.compile(r"^ecs-svc/\d{19}$")
MISSING_IMAGE = "galley-test/missing:1"
WAIT_FAST = {"Delay": 1, "MaxAttempts": 60}


# ---- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def svc_galley(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
               ) -> Iterator[GalleyProcess]:
    proc = GalleyProcess(tmp_path_factory.mktemp("galley-services"),
                         GALLEY_SERVICE_SETTLE_SECONDS="2",
                         GALLEY_LAUNCH_BACKOFF_SECONDS="1",
                         GALLEY_BREAKER_MINIMUM="3").start()
    yield proc
    proc.cleanup()


@pytest.fixture
def ecs(svc_galley: GalleyProcess) -> Any:
    return svc_galley.client()


@pytest.fixture
def cluster(svc_galley: GalleyProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh cluster for the test; its services are force-deleted afterwards."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:180] + "-" + secrets.token_hex(3)
    client = svc_galley.client()
    client.create_cluster(clusterName=name)
    yield name
    if svc_galley.proc is None:  # a test that restarts Galley failed half way
        svc_galley.start()
    try:
        for arn in list_all(client.list_services, "serviceArns", cluster=name):
            client.delete_service(cluster=name, service=arn, force=True)
        for arn in list_all(client.list_tasks, "taskArns", cluster=name):
            client.stop_task(cluster=name, task=arn)
    except ClientError:
        pass


# ---- helpers ----------------------------------------------------------------------------------

def sleeper(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "command": ["sleep", "3600"], "stopTimeout": 2,
            **extra}


def crasher(name: str = "app") -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", "exit 1"]}


def list_all(call: Any, key: str, **params: Any) -> list[str]:
    out: list[str] = []
    while True:
        page = call(**params)
        out += page[key]
        if not page.get("nextToken"):
            return out
        params["nextToken"] = page["nextToken"]


def create_service(ecs: Any, cluster: str, name: str, task_definition: str, desired: int,
                   **extra: Any) -> dict[str, Any]:
    return ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=task_definition,
                              desiredCount=desired, launchType="FARGATE",
                              networkConfiguration=AWSVPC, **extra)["service"]


def describe_service(ecs: Any, cluster: str, name: str) -> dict[str, Any]:
    result = ecs.describe_services(cluster=cluster, services=[name])
    assert result["failures"] == [], result["failures"]
    return result["services"][0]


def describe_many(ecs: Any, cluster: str, arns: list[str], **extra: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(0, len(arns), 100):
        result = ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100], **extra)
        assert result["failures"] == [], result["failures"]
        out += result["tasks"]
    return out


def service_task_arns(ecs: Any, cluster: str, name: str) -> set[str]:
    """Every task of the service: desiredStatus RUNNING first, then STOPPED (no gap between)."""
    arns: set[str] = set()
    for status in ("RUNNING", "STOPPED"):
        arns |= set(list_all(ecs.list_tasks, "taskArns", cluster=cluster, serviceName=name,
                             desiredStatus=status))
    return arns


def running_tasks(ecs: Any, cluster: str, name: str) -> list[dict[str, Any]]:
    arns = list_all(ecs.list_tasks, "taskArns", cluster=cluster, serviceName=name)
    return [t for t in describe_many(ecs, cluster, arns) if t["lastStatus"] == "RUNNING"]


def messages(service: dict[str, Any]) -> list[str]:
    """Event messages oldest first (ECS lists them newest first)."""
    return [e["message"] for e in reversed(service["events"])]


def wait_stable(ecs: Any, cluster: str, name: str) -> dict[str, Any]:
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                           WaiterConfig=WAIT_FAST)
    return describe_service(ecs, cluster, name)


def wait_completed(ecs: Any, cluster: str, name: str, timeout: float = 60) -> dict[str, Any]:
    """ServicesStable passes, then the PRIMARY rollout reaches COMPLETED (healthy = settled)."""
    wait_stable(ecs, cluster, name)
    return wait_for(lambda: (s := describe_service(ecs, cluster, name))["deployments"][0][
        "rolloutState"] == "COMPLETED" and len(s["deployments"]) == 1 and s, timeout, 0.2)


def wait_running(ecs: Any, cluster: str, name: str, count: int, timeout: float = 60
                 ) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        tasks = running_tasks(ecs, cluster, name)
        svc = describe_service(ecs, cluster, name)
        ok = len(tasks) == count and svc["runningCount"] == count and svc["pendingCount"] == 0
        return tasks if ok else None
    return wait_for(check, timeout, 0.2)


def error_of(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**params)
    err = info.value.response["Error"]
    return err["Code"], err["Message"]


class Watcher:
    """Polls DescribeServices + ListTasks + DescribeTasks and keeps every snapshot."""

    def __init__(self, ecs: Any, cluster: str, name: str) -> None:
        self.ecs, self.cluster, self.name = ecs, cluster, name
        self.known: set[str] = set()
        self.snaps: list[tuple[float, dict[str, Any], list[dict[str, Any]]]] = []
        self.deployments: dict[str, list[dict[str, Any]]] = {}  # id -> every state seen

    def poll(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        svc = describe_service(self.ecs, self.cluster, self.name)
        self.known |= service_task_arns(self.ecs, self.cluster, self.name)
        tasks = describe_many(self.ecs, self.cluster, sorted(self.known)) if self.known else []
        self.snaps.append((time.monotonic(), svc, tasks))
        for d in svc["deployments"]:
            self.deployments.setdefault(d["id"], []).append(d)
        return svc, tasks

    def until(self, predicate: Any, timeout: float, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while True:
            svc, tasks = self.poll()
            if predicate(svc, tasks):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; deployments={svc['deployments']!r} "
                    f"tasks={[(t['taskArn'][-8:], t.get('startedBy'), t['lastStatus'], t['desiredStatus']) for t in tasks]!r} "  # noqa: E501
                    f"events={messages(svc)[-8:]!r}")
            time.sleep(interval)

    def deployment_shapes(self) -> list[list[tuple[str, str]]]:
        return [[(d["id"], d["status"]) for d in svc["deployments"]] for _, svc, _ in self.snaps]

    def check_bounds(self, desired: int, maximum: int, minimum: int | None) -> None:
        ceiling = math.floor(desired * maximum / 100)
        for _, svc, tasks in self.snaps:
            unfinished = [t for t in tasks if t["lastStatus"] != "STOPPED"]
            assert len(unfinished) <= ceiling, (
                f"{len(unfinished)} unfinished tasks > maximumPercent ceiling {ceiling}: "
                f"{[(t['startedBy'], t['lastStatus'], t['desiredStatus']) for t in unfinished]}")
            assert svc["runningCount"] + svc["pendingCount"] <= ceiling, svc
            if minimum is not None:
                floor = math.ceil(desired * minimum / 100)
                serving = [t for t in tasks
                           if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]
                assert len(serving) >= floor, (
                    f"only {len(serving)} RUNNING tasks < minimumHealthyPercent floor {floor}: "
                    f"{[(t['startedBy'], t['lastStatus'], t['desiredStatus']) for t in tasks if t['lastStatus'] != 'STOPPED']}")  # noqa: E501


def rollout_done(primary_td: str, desired: int) -> Any:
    def check(svc: dict[str, Any], tasks: list[dict[str, Any]]) -> bool:
        live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        return (len(svc["deployments"]) == 1
                and svc["deployments"][0]["taskDefinition"] == primary_td
                and svc["deployments"][0]["rolloutState"] == "COMPLETED"
                and svc["runningCount"] == desired and svc["pendingCount"] == 0
                and len(live) == desired
                and all(t["taskDefinitionArn"] == primary_td and t["lastStatus"] == "RUNNING"
                        for t in live))
    return check


# ---- 1. create and reach a steady state -------------------------------------------------------

def test_create_service_runs_tasks_and_reaches_steady_state(
        ecs: Any, cluster: str, svc_galley: GalleyProcess) -> None:
    td = register_fargate(ecs, "svc-basic", [sleeper()])
    created = create_service(ecs, cluster, "web", td, 3)
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 3
    assert created["taskDefinition"] == td
    [deployment] = created["deployments"]
    dep_id = deployment["id"]
    assert DEPLOYMENT_ID.match(dep_id), dep_id
    assert deployment["status"] == "PRIMARY" and deployment["rolloutState"] == "IN_PROGRESS"
    assert deployment["rolloutStateReason"] == f"ECS deployment {dep_id} in progress."

    tasks = wait_running(ecs, cluster, "web", 3)
    wait_stable(ecs, cluster, "web")

    cli = subprocess.run(
        [sys.executable, "-m", "awscli", "ecs", "wait", "services-stable", "--cluster", cluster,
         "--services", "web"], env=svc_galley.cli_env(), capture_output=True, text=True,
        timeout=120)
    assert cli.returncode == 0, cli.stderr

    for t in tasks:
        assert t["group"] == "service:web"
        assert t["startedBy"] == dep_id
        assert t["taskDefinitionArn"] == td
        assert t["launchType"] == "FARGATE"
    listed = list_all(ecs.list_tasks, "taskArns", cluster=cluster, serviceName="web")
    assert sorted(listed) == sorted(t["taskArn"] for t in tasks)

    info = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert info["activeServicesCount"] == 1
    assert info["runningTasksCount"] == 3

    svc = wait_completed(ecs, cluster, "web")
    assert svc["runningCount"] == 3 and svc["pendingCount"] == 0
    [deployment] = svc["deployments"]
    assert deployment["id"] == dep_id
    assert deployment["rolloutState"] == "COMPLETED"
    assert deployment["rolloutStateReason"] == f"ECS deployment {dep_id} completed."
    assert deployment["runningCount"] == 3

    events = messages(svc)
    ids = sorted(t["taskArn"].rsplit("/", 1)[1] for t in tasks)
    started = [m for m in events if m.startswith("(service web) has started 3 tasks:")]
    assert len(started) == 1, events
    assert re.fullmatch(r"\(service web\) has started 3 tasks: \(task \w+\) \(task \w+\) "
                        r"\(task \w+\)\.", started[0]), started[0]
    assert sorted(re.findall(r"\(task (\w+)\)", started[0])) == ids
    steady = "(service web) has reached a steady state."
    assert steady in events
    assert events.index(started[0]) < events.index(steady)
    assert f"(service web) (deployment {dep_id}) deployment completed." in events


# ---- 2. a dead task is replaced ---------------------------------------------------------------

def test_killed_container_is_replaced(ecs: Any, cluster: str,
                                      docker_client: docker.DockerClient) -> None:
    td = register_fargate(ecs, "svc-kill", [sleeper()])
    create_service(ecs, cluster, "kill", td, 3)
    tasks = wait_running(ecs, cluster, "kill", 3)
    victim = tasks[0]["taskArn"]
    [container] = [c for c in docker_client.containers.list(
        filters={"label": f"galley.task-arn={victim}"})
        if c.labels.get("galley.container-name") == "app"]
    container.kill()

    stopped = wait_task_status(ecs, cluster, victim, "STOPPED", timeout=30)
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["stopCode"] == "EssentialContainerExited"

    now_running = wait_running(ecs, cluster, "kill", 3, timeout=30)
    arns = {t["taskArn"] for t in now_running}
    assert victim not in arns
    assert len(arns - {t["taskArn"] for t in tasks}) == 1  # exactly one replacement
    svc = wait_stable(ecs, cluster, "kill")
    assert svc["runningCount"] == 3


# ---- 3. rolling updates -----------------------------------------------------------------------

@pytest.mark.parametrize(("desired", "maximum", "minimum"), [(3, 200, 100), (4, 150, 50)])
def test_rolling_update_respects_bounds(ecs: Any, cluster: str, desired: int, maximum: int,
                                        minimum: int) -> None:
    td1 = register_fargate(ecs, "svc-roll", [sleeper(environment=[{"name": "V", "value": "1"}])])
    td2 = register_fargate(ecs, "svc-roll", [sleeper(environment=[{"name": "V", "value": "2"}])])
    create_service(ecs, cluster, "roll", td1, desired,
                   deploymentConfiguration={"maximumPercent": maximum,
                                            "minimumHealthyPercent": minimum})
    wait_running(ecs, cluster, "roll", desired)
    old_id = wait_completed(ecs, cluster, "roll")["deployments"][0]["id"]

    watch = Watcher(ecs, cluster, "roll")
    watch.poll()
    updated = ecs.update_service(cluster=cluster, service="roll", taskDefinition=td2)["service"]
    new_id = updated["deployments"][0]["id"]
    assert DEPLOYMENT_ID.match(new_id) and new_id != old_id
    assert [(d["id"], d["status"]) for d in updated["deployments"]] == \
        [(new_id, "PRIMARY"), (old_id, "ACTIVE")]
    assert updated["taskDefinition"] == td2
    assert updated["deployments"][0]["rolloutState"] == "IN_PROGRESS"

    watch.until(rollout_done(td2, desired), timeout=60)
    watch.check_bounds(desired, maximum, minimum)

    # Old and new tasks overlapped: both RUNNING at some observed moment.
    assert any({t["startedBy"] for t in tasks if t["lastStatus"] == "RUNNING"} >= {old_id, new_id}
               for _, _, tasks in watch.snaps), "old and new tasks never ran side by side"
    shapes = watch.deployment_shapes()
    assert [(new_id, "PRIMARY"), (old_id, "ACTIVE")] in shapes
    assert shapes[-1] == [(new_id, "PRIMARY")]
    first_single = shapes.index([(new_id, "PRIMARY")])
    assert all(s == [(new_id, "PRIMARY")] for s in shapes[first_single:])

    final_tasks = watch.snaps[-1][2]
    old_tasks = [t for t in final_tasks if t["startedBy"] == old_id]
    assert len(old_tasks) == desired
    for t in old_tasks:
        assert t["lastStatus"] == "STOPPED"
        assert t["stoppedReason"] == f"Scaling activity initiated by (deployment {new_id})"
        assert t["stopCode"] == "ServiceSchedulerInitiated"

    svc = wait_stable(ecs, cluster, "roll")
    assert svc["deployments"][0]["rolloutStateReason"] == f"ECS deployment {new_id} completed."
    assert f"(service roll) (deployment {new_id}) deployment completed." in messages(svc)

    # These bounds leave headroom (maximumPercent > 100) and slack (minimumHealthyPercent < 100
    # or spare capacity), so the deployment was never blocked by its configuration; waiting for
    # a task to settle or to finish stopping is not the "unable to stop or start" deadlock.
    deadlock = [m for m in messages(svc)
                if "was unable to stop or start tasks during a deployment" in m]
    assert deadlock == [], deadlock


# ---- 4. circuit breaker with rollback ---------------------------------------------------------

@pytest.mark.parametrize("desired", [3, 1])
def test_circuit_breaker_rolls_back(ecs: Any, cluster: str, desired: int) -> None:
    """desired 3: three bad tasks fail at once; desired 1: they fail one after another, so the
    failing deployment has no task left in flight when the breaker trips."""
    good = register_fargate(ecs, "svc-breaker", [sleeper()])
    bad = register_fargate(ecs, "svc-breaker", [crasher()])
    create_service(ecs, cluster, "brk", good, desired, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200, "minimumHealthyPercent": 100})
    wait_running(ecs, cluster, "brk", desired)
    svc = wait_completed(ecs, cluster, "brk")
    old_id = svc["deployments"][0]["id"]
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED"

    bad_id = ecs.update_service(cluster=cluster, service="brk", taskDefinition=bad)["service"][
        "deployments"][0]["id"]
    watch = Watcher(ecs, cluster, "brk")

    def rolled_back(svc: dict[str, Any], tasks: list[dict[str, Any]]) -> bool:
        return svc["deployments"][0]["id"] not in (old_id, bad_id) and \
            rollout_done(good, desired)(svc, tasks)
    watch.until(rolled_back, timeout=90, interval=0.1)
    watch.check_bounds(desired, 200, 100)

    final = watch.snaps[-1][1]
    [rollback] = final["deployments"]
    assert rollback["status"] == "PRIMARY" and rollback["taskDefinition"] == good
    assert DEPLOYMENT_ID.match(rollback["id"])
    first_seen = watch.deployments[rollback["id"]][0]
    assert first_seen["rolloutStateReason"] == \
        f"ECS deployment circuit breaker: rolling back to deploymentId {old_id}."
    assert final["taskDefinition"] == good

    events = messages(describe_service(ecs, cluster, "brk"))
    failed_msg = f"(service brk) (deployment {bad_id}) deployment failed: tasks failed to start."
    rollback_msg = f"(service brk) rolling back to deployment {old_id}."
    assert failed_msg in events and rollback_msg in events, events
    assert events.index(failed_msg) <= events.index(rollback_msg)

    running = running_tasks(ecs, cluster, "brk")
    assert len(running) == desired and all(t["taskDefinitionArn"] == good for t in running)
    wait_stable(ecs, cluster, "brk")

    # The crash loop did not hammer Docker.
    bad_tasks = list_all(ecs.list_tasks, "taskArns", cluster=cluster, startedBy=bad_id,
                         desiredStatus="STOPPED")
    assert 3 <= len(bad_tasks) <= 10, len(bad_tasks)
    assert list_all(ecs.list_tasks, "taskArns", cluster=cluster, startedBy=bad_id) == []

    # The failed deployment, as last seen while it was still listed. ECS keeps it (ACTIVE,
    # rolloutState FAILED) in deployments[] until the rollback deployment completes.
    seen_bad = watch.deployments.get(bad_id, [])
    assert seen_bad, "the failing deployment was never observed"
    last_bad = seen_bad[-1]
    assert last_bad["rolloutState"] == "FAILED", (
        f"the failing deployment was last seen as {last_bad!r}; it left deployments[] "
        f"before the rollback completed, so nobody could see it FAILED")
    assert last_bad["rolloutStateReason"] == \
        "ECS deployment circuit breaker: tasks failed to start."
    assert last_bad["failedTasks"] >= 3
    assert last_bad["status"] == "ACTIVE"

    # With maximumPercent 200 the bounds never block a deployment: the launch backoff and the
    # FAILED rollout hold launches back, which is not a deployment-configuration deadlock.
    deadlock = [m for m in events if "was unable to stop or start tasks during a deployment"
                in m]
    assert deadlock == [], deadlock


# ---- 5. launch backoff without breaker --------------------------------------------------------

@pytest.mark.parametrize("container", [crasher(), {"name": "app", "image": MISSING_IMAGE}],
                         ids=["exit-1", "missing-image"])
def test_launch_backoff_grows(ecs: Any, cluster: str, container: dict[str, Any]) -> None:
    td = register_fargate(ecs, "svc-backoff", [container])
    create_service(ecs, cluster, "flaky", td, 1)
    event = ("(service flaky) is unable to consistently start tasks successfully. For more "
             "information, see the Troubleshooting section of the Amazon ECS Developer Guide.")

    def four_launches() -> list[dict[str, Any]] | None:
        arns = list(service_task_arns(ecs, cluster, "flaky"))
        tasks = describe_many(ecs, cluster, arns) if arns else []
        return tasks if len(tasks) >= 4 else None
    tasks = sorted(wait_for(four_launches, timeout=40, interval=0.25),
                   key=lambda t: t["createdAt"])
    for t in tasks[:3]:
        assert t["lastStatus"] == "STOPPED"
        assert t["group"] == "service:flaky"
    created = [t["createdAt"].timestamp() for t in tasks[:4]]
    gaps = [b - a for a, b in zip(created, created[1:], strict=False)]
    # The launch-to-launch gap includes how long each task took to fail (noisy under load), so
    # compare the ends; the wait between one task's stop and the next launch must grow each time.
    assert gaps[2] - gaps[0] >= 2.0, gaps
    # The backoff runs from the moment a launch failed (its essential container exited, which
    # executionStoppedAt records), not from the end of the failed task's teardown.
    waits = [tasks[i + 1]["createdAt"].timestamp() - tasks[i]["executionStoppedAt"].timestamp()
             for i in range(3)]
    # Two consecutive failures: the next launch waits the backoff (2 x 1 s here); it must not
    # start in the same window as the failure.
    assert waits[1] >= 1.0, (
        f"launch 3 came {waits[1]:.2f}s after launch 2 failed (waits={waits}, "
        f"gaps={gaps}); the backoff lets a second task through each window")
    assert waits[0] < waits[1] < waits[2], waits
    wait_for(lambda: event in messages(describe_service(ecs, cluster, "flaky")), timeout=15)
    assert messages(describe_service(ecs, cluster, "flaky")).count(event) == 1


# ---- 6. scale to zero and delete --------------------------------------------------------------

def test_scale_down_delete_and_reuse_name(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "svc-delete", [sleeper()])
    svc = create_service(ecs, cluster, "gone", td, 2)
    arn = svc["serviceArn"]
    assert arn.endswith(f":service/{cluster}/gone")
    tasks = wait_running(ecs, cluster, "gone", 2)

    updated = ecs.update_service(cluster=cluster, service="gone", desiredCount=0)["service"]
    assert updated["desiredCount"] == 0
    for t in tasks:
        stopped = wait_task_status(ecs, cluster, t["taskArn"], "STOPPED", timeout=30)
        assert stopped["stopCode"] == "ServiceSchedulerInitiated"
        assert stopped["stoppedReason"].startswith("Scaling activity initiated by (deployment")
    wait_for(lambda: describe_service(ecs, cluster, "gone")["runningCount"] == 0)

    deleted = ecs.delete_service(cluster=cluster, service="gone")["service"]
    assert deleted["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["gone"],
                                             WaiterConfig=WAIT_FAST)
    assert arn not in list_all(ecs.list_services, "serviceArns", cluster=cluster)
    result = ecs.describe_services(cluster=cluster, services=["gone"])
    assert result["failures"] == []
    assert result["services"][0]["status"] == "INACTIVE"
    assert result["services"][0]["serviceArn"] == arn
    info = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert info["activeServicesCount"] == 0

    # The name of an INACTIVE service can be reused.
    again = create_service(ecs, cluster, "gone", td, 1)
    assert again["status"] == "ACTIVE" and again["serviceArn"] == arn
    assert again["events"] == []
    [task] = wait_running(ecs, cluster, "gone", 1)
    assert list_all(ecs.list_services, "serviceArns", cluster=cluster) == [arn]

    assert error_of(ecs.delete_service, cluster=cluster, service="gone") == (
        "InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
    forced = ecs.delete_service(cluster=cluster, service="gone", force=True)["service"]
    assert forced["status"] == "DRAINING" and forced["desiredCount"] == 0
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["gone"],
                                             WaiterConfig=WAIT_FAST)
    final = wait_task_status(ecs, cluster, task["taskArn"], "STOPPED", timeout=30)
    assert final["stopCode"] == "ServiceSchedulerInitiated"


# ---- 7. errors --------------------------------------------------------------------------------

def test_service_errors(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "svc-errors", [sleeper(stopTimeout=6)])
    create_service(ecs, cluster, "dup", td, 0)
    assert error_of(create_service, ecs=ecs, cluster=cluster, name="dup", task_definition=td,
                    desired=0) == ("InvalidParameterException",
                                   "Creation of service was not idempotent.")

    # awsvpc without a network configuration
    assert error_of(ecs.create_service, cluster=cluster, serviceName="nonet", taskDefinition=td,
                    desiredCount=1, launchType="FARGATE") == (
        "InvalidParameterException",
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.")

    # A DRAINING service: its task takes ~6 s to stop (sleep ignores SIGTERM).
    create_service(ecs, cluster, "drain", td, 1)
    [task] = wait_running(ecs, cluster, "drain", 1)
    ecs.delete_service(cluster=cluster, service="drain", force=True)
    assert describe_service(ecs, cluster, "drain")["status"] == "DRAINING"
    assert error_of(create_service, ecs=ecs, cluster=cluster, name="drain", task_definition=td,
                    desired=1) == ("InvalidParameterException",
                                   "Unable to Start a service that is still Draining.")
    assert error_of(ecs.update_service, cluster=cluster, service="drain", desiredCount=2) == (
        "ServiceNotActiveException", "Service was not ACTIVE.")
    assert describe_service(ecs, cluster, "drain")["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["drain"],
                                             WaiterConfig=WAIT_FAST)
    assert error_of(ecs.update_service, cluster=cluster, service="drain", desiredCount=2) == (
        "ServiceNotActiveException", "Service was not ACTIVE.")
    wait_task_status(ecs, cluster, task["taskArn"], "STOPPED", timeout=30)

    # DescribeServices: at most 10; missing ones are failures.
    code, _ = error_of(ecs.describe_services, cluster=cluster,
                       services=[f"s{i}" for i in range(11)])
    assert code == "InvalidParameterException"
    result = ecs.describe_services(cluster=cluster, services=["dup", "nope"])
    assert [s["serviceName"] for s in result["services"]] == ["dup"]
    dup_arn = result["services"][0]["serviceArn"]
    assert result["failures"] == [{"arn": dup_arn.rsplit("/", 1)[0] + "/nope",
                                   "reason": "MISSING"}]

    # ListServices: default page of 10, then nextToken.
    for i in range(11):
        create_service(ecs, cluster, f"page-{i:02d}", td, 0)
    first = ecs.list_services(cluster=cluster)
    assert len(first["serviceArns"]) == 10 and first.get("nextToken")
    second = ecs.list_services(cluster=cluster, nextToken=first["nextToken"])
    assert len(second["serviceArns"]) == 2 and not second.get("nextToken")
    every = first["serviceArns"] + second["serviceArns"]
    assert len(set(every)) == 12
    assert {a.rsplit("/", 1)[1] for a in every} == {"dup"} | {f"page-{i:02d}" for i in range(11)}
    paged = [a for p in ecs.get_paginator("list_services").paginate(cluster=cluster)
             for a in p["serviceArns"]]
    assert paged == every

    # Unknown services.
    assert error_of(ecs.update_service, cluster=cluster, service="ghost", desiredCount=1)[0] == \
        "ServiceNotFoundException"
    assert error_of(ecs.delete_service, cluster=cluster, service="ghost")[0] == \
        "ServiceNotFoundException"
    assert error_of(ecs.list_tasks, cluster=cluster, serviceName="ghost")[0] == \
        "ServiceNotFoundException"

    # A cluster with ACTIVE services cannot be deleted.
    assert error_of(ecs.delete_cluster, cluster=cluster) == (
        "ClusterContainsServicesException",
        "The Cluster cannot be deleted while Services are active.")


# ---- 8. tags, forceNewDeployment, desired-count-only updates ----------------------------------

def tags_of(ecs: Any, cluster: str, arns: list[str]) -> list[dict[str, str]]:
    return [{t["key"]: t["value"] for t in task.get("tags", [])}
            for task in describe_many(ecs, cluster, arns, include=["TAGS"])]


def test_tags_force_new_deployment_and_scaling(ecs: Any, cluster: str) -> None:
    td = register_fargate(ecs, "svc-tags", [sleeper()],
                          tags=[{"key": "from", "value": "taskdef"}])
    create_service(ecs, cluster, "by-svc", td, 1, propagateTags="SERVICE",
                   tags=[{"key": "team", "value": "kitchen"}])
    create_service(ecs, cluster, "by-td", td, 1, propagateTags="TASK_DEFINITION",
                   tags=[{"key": "team", "value": "bakery"}])
    [svc_task] = wait_running(ecs, cluster, "by-svc", 1)
    [td_task] = wait_running(ecs, cluster, "by-td", 1)
    assert tags_of(ecs, cluster, [svc_task["taskArn"]]) == [{"team": "kitchen"}]
    assert tags_of(ecs, cluster, [td_task["taskArn"]]) == [{"from": "taskdef"}]
    described = ecs.describe_services(cluster=cluster, services=["by-svc"],
                                      include=["TAGS"])["services"][0]
    assert described["tags"] == [{"key": "team", "value": "kitchen"}]
    assert described["propagateTags"] == "SERVICE"

    first = wait_completed(ecs, cluster, "by-svc")["deployments"][0]["id"]
    # desiredCount only: no new deployment.
    scaled = ecs.update_service(cluster=cluster, service="by-svc", desiredCount=2)["service"]
    assert [d["id"] for d in scaled["deployments"]] == [first]
    assert scaled["desiredCount"] == 2
    tasks = wait_running(ecs, cluster, "by-svc", 2)
    svc = wait_stable(ecs, cluster, "by-svc")
    assert [d["id"] for d in svc["deployments"]] == [first]
    assert svc["deployments"][0]["desiredCount"] == 2
    assert all(t["startedBy"] == first for t in tasks)

    # forceNewDeployment: a new deployment of the same task definition.
    forced = ecs.update_service(cluster=cluster, service="by-svc",
                                forceNewDeployment=True)["service"]
    assert len(forced["deployments"]) == 2
    new, old = forced["deployments"]
    assert new["id"] != first and DEPLOYMENT_ID.match(new["id"])
    assert (new["status"], old["id"], old["status"]) == ("PRIMARY", first, "ACTIVE")
    assert new["taskDefinition"] == old["taskDefinition"] == td
    watch = Watcher(ecs, cluster, "by-svc")
    watch.until(rollout_done(td, 2), timeout=60)
    watch.check_bounds(2, 200, 100)
    final = running_tasks(ecs, cluster, "by-svc")
    assert sorted(t["startedBy"] for t in final) == [new["id"]] * 2
    assert tags_of(ecs, cluster, [t["taskArn"] for t in final]) == [{"team": "kitchen"}] * 2
    wait_stable(ecs, cluster, "by-svc")


# ---- 9. kill -9 in the middle of a rollout ----------------------------------------------------

def test_rollout_survives_galley_kill(svc_galley: GalleyProcess, cluster: str,
                                      docker_client: docker.DockerClient) -> None:
    ecs = svc_galley.client()
    td1 = register_fargate(ecs, "svc-persist", [sleeper(environment=[{"name": "V", "value": "1"}])])
    td2 = register_fargate(ecs, "svc-persist", [sleeper(environment=[{"name": "V", "value": "2"}])])
    create_service(ecs, cluster, "durable", td1, 4, deploymentConfiguration={
        "maximumPercent": 150, "minimumHealthyPercent": 50})
    wait_running(ecs, cluster, "durable", 4)
    wait_completed(ecs, cluster, "durable")

    watch = Watcher(ecs, cluster, "durable")
    new_id = ecs.update_service(cluster=cluster, service="durable", taskDefinition=td2)[
        "service"]["deployments"][0]["id"]

    def mid_rollout(svc: dict[str, Any], tasks: list[dict[str, Any]]) -> bool:
        new_running = [t for t in tasks if t["startedBy"] == new_id
                       and t["lastStatus"] == "RUNNING"]
        old_live = [t for t in tasks if t["startedBy"] != new_id and t["lastStatus"] != "STOPPED"]
        return bool(new_running) and len(old_live) >= 2
    watch.until(mid_rollout, timeout=30, interval=0.1)
    before_kill = set(watch.known)

    svc_galley.stop(kill=True)
    time.sleep(1)
    svc_galley.start()

    watch.until(rollout_done(td2, 4), timeout=90)
    watch.check_bounds(4, 150, None)  # the floor is not observable while Galley is down

    # No task was lost: everything seen before the kill is still there.
    described = describe_many(ecs, cluster, sorted(before_kill))
    assert {t["taskArn"] for t in described} == before_kill

    running = running_tasks(ecs, cluster, "durable")
    assert len(running) == 4
    assert all(t["taskDefinitionArn"] == td2 and t["startedBy"] == new_id for t in running)
    listed = list_all(ecs.list_tasks, "taskArns", cluster=cluster, serviceName="durable")
    assert sorted(listed) == sorted(t["taskArn"] for t in running)

    # Docker agrees: exactly one running app container for each of the 4 tasks, nothing else.
    def docker_tasks() -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in docker_client.containers.list(filters={"label": "galley.task-arn"}):
            arn = c.labels["galley.task-arn"]
            if f":task/{cluster}/" in arn and c.labels.get("galley.role") == "app":
                counts[arn] = counts.get(arn, 0) + 1
        return counts
    expected = {t["taskArn"]: 1 for t in running}
    wait_for(lambda: docker_tasks() == expected, timeout=20, interval=0.5)
    wait_stable(ecs, cluster, "durable")
    assert describe_service(ecs, cluster, "durable")["deployments"][0]["id"] == new_id
