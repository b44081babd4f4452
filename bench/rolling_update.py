"""Rolling update of a 10-task Galley service: UpdateService to a new revision until it is done.

A FARGATE awsvpc service of --tasks (10) busybox `sleep 3600` tasks (cpu 256 / memory 512, one
essential container, stopTimeout 2), default deployment configuration (maximumPercent 200,
minimumHealthyPercent 100), on a Galley started with GALLEY_SERVICE_SETTLE_SECONDS (--settle,
default 2 s: a task without health checks counts as healthy once it has been RUNNING that long,
and old tasks are only stopped as new ones become healthy). The service is created, the boto3
ServicesStable waiter (1 s delay) and its first deployment's COMPLETED rolloutState are awaited,
then each round registers the next revision of the family (revision 2 first; the revisions differ
in one environment variable) and calls UpdateService. DescribeServices is polled every 20 ms; a
round measures, from just before the UpdateService call:

    rollout done:    deployments has length 1, runningCount is 10 and the PRIMARY deployment
                     (the new revision) has rolloutState COMPLETED
    ServicesStable:  the ServicesStable waiter's own success expression (read from botocore's
                     waiter model) first holds; the real waiter polls every 15 s, which would
                     measure its delay rather than Galley

plus, from the tasks' timestamps, when the last new task was RUNNING (startedAt) and the last old
task STOPPED (stoppedAt).

    python3 bench/rolling_update.py [--settle 2] [--tasks 10] [--rounds 1] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import docker
import jmespath
from _common import (
    BUSYBOX,
    emit_json,
    galley_process,
    load_note,
    machine_load,
    print_table,
    summary,
    terminate_on_signals,
)

POLL = 0.020
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0bench0000000000"],
                                   "securityGroups": ["sg-0bench0000000000"],
                                   "assignPublicIp": "DISABLED"}}


def task_definition(family: str, revision_note: int) -> dict[str, Any]:
    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": BUSYBOX,
                                      "command": ["sleep", "3600"], "essential": True,
                                      "stopTimeout": 2,
                                      "environment": [{"name": "BENCH_REVISION",
                                                       "value": str(revision_note)}]}]}


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None


def stable_expression(ecs: Any) -> Any:
    """The ServicesStable waiter's success acceptor, compiled, straight from botocore's model."""
    waiter = ecs.get_waiter("services_stable")
    acceptor = next(a for a in waiter.config.acceptors
                    if a.state == "success" and a.matcher == "path")
    return jmespath.compile(acceptor.argument), acceptor.expected


def rollout_done(service: dict[str, Any], desired: int, td_arn: str) -> bool:
    deployments = service["deployments"]
    if len(deployments) != 1 or service["runningCount"] != desired:
        return False
    primary = deployments[0]
    return (primary["status"] == "PRIMARY" and primary["taskDefinition"] == td_arn
            and primary.get("rolloutState") == "COMPLETED")


def tasks_of(ecs: Any, cluster: str, deployment_id: str, status: str) -> list[dict[str, Any]]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, startedBy=deployment_id, desiredStatus=status):
        arns += page["taskArns"]
    out = []
    for i in range(0, len(arns), 100):
        out += ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100])["tasks"]
    return out


def wait_completed(ecs: Any, cluster: str, service: str, desired: int, td_arn: str,
                   timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
        if rollout_done(svc, desired, td_arn):
            return
        time.sleep(0.1)
    raise RuntimeError(f"service {service} not COMPLETED after {timeout:.0f} s")


def update_round(ecs: Any, cluster: str, service: str, family: str, revision_note: int,
                 desired: int, expression: Any, expected: Any) -> dict[str, Any]:
    td_arn = ecs.register_task_definition(**task_definition(family, revision_note))[
        "taskDefinition"]["taskDefinitionArn"]
    before = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    old_id = before["deployments"][0]["id"]
    t0_wall = time.time()
    t0 = time.perf_counter()
    answer = ecs.update_service(cluster=cluster, service=service, taskDefinition=td_arn)
    t_call = time.perf_counter() - t0
    new_id = answer["service"]["deployments"][0]["id"]
    marks: dict[str, float] = {}
    polls = 0
    next_poll = t0
    max_running_new = 0
    while "done" not in marks or "stable" not in marks:
        if time.perf_counter() - t0 > 600:
            raise RuntimeError(f"rollout to {td_arn} not done after 600 s ({marks})")
        next_poll += POLL
        time.sleep(max(0.0, next_poll - time.perf_counter()))
        resp = ecs.describe_services(cluster=cluster, services=[service])
        polls += 1
        at = time.perf_counter() - t0
        svc = resp["services"][0]
        new = next((d for d in svc["deployments"] if d["id"] == new_id), None)
        if new is not None:
            max_running_new = max(max_running_new, new["runningCount"])
            if new["runningCount"] == desired:
                marks.setdefault("new_all_running_seen", at)
        if expression.search(resp) == expected:
            marks.setdefault("stable", at)
        if rollout_done(svc, desired, td_arn):
            marks.setdefault("done", at)
    # Server-side timeline from the tasks themselves (same host clock as t0_wall).
    new_tasks = tasks_of(ecs, cluster, new_id, "RUNNING")
    old_tasks = tasks_of(ecs, cluster, old_id, "STOPPED")
    started = [_epoch(t.get("startedAt")) for t in new_tasks]
    created = [_epoch(t.get("createdAt")) for t in new_tasks]
    stopping = [_epoch(t.get("stoppingAt")) for t in old_tasks]
    stopped = [_epoch(t.get("stoppedAt")) for t in old_tasks]

    def last(values: list[float | None]) -> float:
        got = [v for v in values if v is not None]
        return max(got) - t0_wall if got else float("nan")

    def first(values: list[float | None]) -> float:
        got = [v for v in values if v is not None]
        return min(got) - t0_wall if got else float("nan")

    return {"revision": td_arn.rsplit(":", 1)[1], "done": marks["done"], "stable": marks["stable"],
            "update_call": t_call, "polls": polls,
            "new_all_running_seen": marks.get("new_all_running_seen", float("nan")),
            "first_new_created": first(created), "last_new_created": last(created),
            "first_new_started": first(started), "last_new_started": last(started),
            "first_old_stopping": first(stopping), "last_old_stopped": last(stopped),
            "new_tasks": len(new_tasks), "old_tasks_stopped": len(old_tasks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=2.0,
                        help="GALLEY_SERVICE_SETTLE_SECONDS for the Galley under test (2)")
    parser.add_argument("--tasks", type=int, default=10, help="the service's desiredCount (10)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="updates in a row (revision 2, 3, ...), each from a COMPLETED state")
    parser.add_argument("--json", action="store_true", help="also print a JSON result line")
    args = parser.parse_args()
    if not 1 <= args.tasks <= 100 or not 1 <= args.rounds <= 100 or args.settle < 0:
        parser.error("--tasks must be 1..100, --rounds 1..100 and --settle >= 0")
    terminate_on_signals()
    began = time.perf_counter()
    load_before = machine_load()
    print(load_note(load_before), flush=True)
    print(f"settle: GALLEY_SERVICE_SETTLE_SECONDS={args.settle:g} s"
          f"{' (the default here; --settle changes it)' if args.settle == 2.0 else ''}",
          flush=True)
    docker.from_env().images.get(BUSYBOX)  # fail early if the test image is missing
    run_id = uuid.uuid4().hex[:8]
    rounds: list[dict[str, Any]] = []
    with galley_process(GALLEY_SERVICE_SETTLE_SECONDS=f"{args.settle:g}") as galley:
        ecs = galley.client()
        expression, expected = stable_expression(ecs)
        cluster, service, family = f"bench-rolling-{run_id}", "rolling", f"bench-rolling-{run_id}"
        ecs.create_cluster(clusterName=cluster)
        td1 = ecs.register_task_definition(**task_definition(family, 1))["taskDefinition"][
            "taskDefinitionArn"]
        t0 = time.perf_counter()
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=td1,
                           desiredCount=args.tasks, launchType="FARGATE",
                           networkConfiguration=NETWORK)
        ecs.get_waiter("services_stable").wait(cluster=cluster, services=[service],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 600})
        t_stable = time.perf_counter() - t0
        wait_completed(ecs, cluster, service, args.tasks, td1)
        t_completed = time.perf_counter() - t0
        print(f"created {args.tasks}-task service: ServicesStable (waiter, 1 s delay) after "
              f"{t_stable:.1f} s, first deployment COMPLETED after {t_completed:.1f} s",
              flush=True)
        for n in range(args.rounds):
            r = update_round(ecs, cluster, service, family, n + 2, args.tasks, expression,
                             expected)
            rounds.append(r)
            print(f"round {n + 1}/{args.rounds} (-> revision {r['revision']}): rollout done "
                  f"{r['done']:.2f} s, ServicesStable {r['stable']:.2f} s "
                  f"(last new task RUNNING {r['last_new_started']:.2f} s, last old task "
                  f"STOPPED {r['last_old_stopped']:.2f} s; {r['polls']} polls)", flush=True)
            wait_completed(ecs, cluster, service, args.tasks,
                           f"{td1.rsplit(':', 1)[0]}:{r['revision']}")
    elapsed = time.perf_counter() - began
    load_after = machine_load()
    keys = [("done", "rollout done (1 deployment, 10 running, COMPLETED)"),
            ("stable", "ServicesStable (waiter expression)"),
            ("update_call", "  UpdateService call"),
            ("first_new_created", "  first new task createdAt"),
            ("last_new_created", "  last new task createdAt"),
            ("first_new_started", "  first new task startedAt"),
            ("last_new_started", "  last new task startedAt"),
            ("first_old_stopping", "  first old task stoppingAt"),
            ("last_old_stopped", "  last old task stoppedAt")]
    stats = {k: summary([r[k] for r in rounds]) for k, _ in keys}
    print()
    print(f"rolling update of a {args.tasks}-task service, settle {args.settle:g} s, "
          f"{args.rounds} round(s), seconds from the UpdateService call")
    cols = ("median", "max", "min")
    print_table(["measure", *cols], [[label, *(stats[k][c] for c in cols)] for k, label in keys])
    print(f"elapsed {elapsed:.1f} s; {load_note(load_after)}")
    print(f"rollout done: {stats['done']['median']:.2f} s (median), "
          f"ServicesStable: {stats['stable']['median']:.2f} s (median), "
          f"settle {args.settle:g} s")
    if args.json:
        emit_json({"benchmark": "rolling_update", "tasks": args.tasks, "rounds": args.rounds,
                   "settle_seconds": args.settle, "create_stable_s": t_stable,
                   "create_completed_s": t_completed, "seconds": stats, "elapsed_s": elapsed,
                   "load_before": load_before, "load_after": load_after,
                   "round_details": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
