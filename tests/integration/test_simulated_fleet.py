"""The simulated fleet bench/scale.py uses: it speaks the real agent channel to a real Galley.

The simulated runtime is for scale figures only (every feature is verified on real containers);
this checks the simulator itself: registration through the signed ECS API, tasks placed on its
instances by services reported PENDING then RUNNING, and STOPPED once they are to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from galley.agent.simulated import SimulatedFleet, make_instances, simulated_reports

from .conftest import wait_for
from .galley_process import ACCESS_KEY, REGION, SECRET_KEY, GalleyProcess


@pytest.fixture
def fleet(galley: GalleyProcess, cluster: str) -> Iterator[SimulatedFleet]:
    sim = SimulatedFleet(galley.endpoint, REGION, Credentials(ACCESS_KEY, SECRET_KEY), cluster,
                         make_instances(6, seed=3), workers=2, heartbeat=2.0)
    sim.register()
    stop = threading.Event()
    runner = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    runner.start()
    yield sim
    stop.set()
    runner.join(timeout=30)


def services_running(ecs: Any, cluster: str, names: list[str]) -> int:
    return sum(s["runningCount"] for s in ecs.describe_services(
        cluster=cluster, services=names)["services"])


def test_services_placed_on_simulated_instances_run_and_stop(
        ecs: Any, cluster: str, fleet: SimulatedFleet) -> None:
    listed = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    assert sorted(listed) == sorted(i.arn for i in fleet.instances)
    ecs.register_task_definition(
        family="sim-web", networkMode="bridge", requiresCompatibilities=["EC2"],
        containerDefinitions=[{"name": "web", "image": "galley-test/busybox:latest",
                               "cpu": 128, "memory": 256,
                               "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])
    names = ["packed", "spread"]
    ecs.create_service(cluster=cluster, serviceName="packed", taskDefinition="sim-web",
                       desiredCount=6, launchType="EC2",
                       placementStrategy=[{"type": "binpack", "field": "memory"}])
    ecs.create_service(cluster=cluster, serviceName="spread", taskDefinition="sim-web",
                       desiredCount=6, launchType="EC2",
                       placementStrategy=[{"type": "spread",
                                           "field": "attribute:ecs.availability-zone"},
                                          {"type": "spread", "field": "instanceId"}])
    wait_for(lambda: services_running(ecs, cluster, names) == 12, timeout=60)
    arns = ecs.list_tasks(cluster=cluster, serviceName="spread")["taskArns"]
    described = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    assert len({t["containerInstanceArn"] for t in described}) == 6  # one per instance
    for task in described:
        assert task["lastStatus"] == "RUNNING" and "pullStartedAt" in task
        binding = task["containers"][0]["networkBindings"][0]
        assert binding["containerPort"] == 8080 and binding["hostPort"] >= 32768
    for name in names:
        ecs.update_service(cluster=cluster, service=name, desiredCount=0)
    wait_for(lambda: services_running(ecs, cluster, names) == 0
             and not ecs.list_tasks(cluster=cluster)["taskArns"], timeout=60)
    stopped = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    assert {t["lastStatus"] for t in stopped} == {"STOPPED"}
    assert {t["containers"][0]["exitCode"] for t in stopped} == {0}


def test_reports_follow_what_was_already_said() -> None:
    inst = make_instances(1)[0]
    spec = {"networkMode": "bridge",
            "containers": [{"name": "a", "portMappings": [{"containerPort": 80, "hostPort": 0},
                                                          {"containerPort": 81,
                                                           "hostPort": 9000}]}]}
    running = {"taskArn": "t1", "desiredStatus": "RUNNING", "spec": spec}
    first = simulated_reports(inst, running)
    assert [r["lastStatus"] for r in first] == ["PENDING", "RUNNING"]
    ports = [b["hostPort"] for b in first[1]["containers"][0]["networkBindings"]]
    assert ports[0] >= 32768 and ports[1] == 9000
    inst.reported["t1"] = "RUNNING"
    assert simulated_reports(inst, running) == []
    stopping = {**running, "desiredStatus": "STOPPED"}
    assert [r["lastStatus"] for r in simulated_reports(inst, stopping)] == ["STOPPING", "STOPPED"]
    # A task told to stop before it was ever started goes straight to STOPPED.
    assert [r["lastStatus"] for r in simulated_reports(inst, {**stopping, "taskArn": "t2"})] \
        == ["STOPPED"]
