"""RunTask-to-RUNNING latency of a two-container awsvpc FARGATE task, against plain Docker.

Galley: RunTask, then DescribeTasks every 10 ms until lastStatus is RUNNING; the round's latency
is from just before the RunTask call to the DescribeTasks answer saying RUNNING. Each task is then
stopped (stopTimeout 2) and waited for STOPPED before the next round, so rounds never overlap.

Docker baseline (what a careful user does without Galley, docker SDK): create+start the first
container on the default bridge network, then create+start the second one joining its network
namespace (network_mode="container:<id>"); latency is until both start() calls returned. The
containers are then force-removed.

    python3 bench/run_task_latency.py [--rounds 10] [--warmup 2] [--json]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import uuid
from typing import Any

import docker
import docker.errors
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

TARGET = 1.25
POLL = 0.010
BENCH_LABEL = "galley-bench.run"


def task_definition(family: str) -> dict[str, Any]:
    def container(name: str) -> dict[str, Any]:
        return {"name": name, "image": BUSYBOX, "command": ["sleep", "3600"],
                "essential": True, "stopTimeout": 2}

    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [container("app"), container("sidecar")]}


NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0bench0000000000"],
                                   "securityGroups": ["sg-0bench0000000000"],
                                   "assignPublicIp": "DISABLED"}}


# ---- Galley -----------------------------------------------------------------------------------


def galley_round(ecs: Any, cluster: str, td_arn: str) -> dict[str, Any]:
    """One task: RunTask -> RUNNING (polled every 10 ms), then StopTask -> STOPPED."""
    t0 = time.perf_counter()
    resp = ecs.run_task(cluster=cluster, taskDefinition=td_arn, launchType="FARGATE", count=1,
                        networkConfiguration=NETWORK)
    t_run = time.perf_counter()
    if resp.get("failures") or not resp.get("tasks"):
        raise RuntimeError(f"RunTask failed: {resp.get('failures')}")
    arn = resp["tasks"][0]["taskArn"]
    polls = 0
    deadline = t0 + 60
    next_poll = time.perf_counter()
    task: dict[str, Any] = {}
    while True:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        polls += 1
        if task["lastStatus"] == "RUNNING":
            t1 = time.perf_counter()
            break
        if task["lastStatus"] in ("STOPPED", "DEPROVISIONING", "STOPPING"):
            raise RuntimeError(f"task {arn} stopped before RUNNING: {task.get('stoppedReason')}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"task {arn} not RUNNING after 60 s (last {task['lastStatus']})")
        next_poll += POLL
        time.sleep(max(0.0, next_poll - time.perf_counter()))
    # Server-side view (ms precision), without the client's polling: createdAt -> startedAt, and
    # its phases: agent pickup (-> pullStartedAt), images + sandbox (-> connectivityAt),
    # containers created and started (-> startedAt).
    stamps = [task.get(k) for k in ("createdAt", "pullStartedAt", "connectivityAt", "startedAt")]
    if all(stamps):
        c, p, n, s = (x.timestamp() for x in stamps)
        server, phases = s - c, {"pickup": p - c, "sandbox": n - p, "containers": s - n}
    else:
        server, phases = float("nan"), {}
    t_stop = time.perf_counter()
    ecs.stop_task(cluster=cluster, task=arn, reason="benchmark round done")
    while ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] != "STOPPED":
        if time.perf_counter() - t_stop > 60:
            raise RuntimeError(f"task {arn} not STOPPED 60 s after StopTask")
        time.sleep(0.05)
    return {"latency": t1 - t0, "run_task_call": t_run - t0, "server": server, "polls": polls,
            "stop": time.perf_counter() - t_stop, **phases}


# ---- Docker baseline --------------------------------------------------------------------------


def docker_round(client: docker.DockerClient, run_id: str, n: int) -> dict[str, Any]:
    labels = {BENCH_LABEL: run_id}
    common = {"image": BUSYBOX, "command": ["sleep", "3600"], "labels": labels,
              "mem_limit": "512m", "detach": True}
    ids: list[str] = []
    try:
        t0 = time.perf_counter()
        first = client.containers.create(name=f"galley-bench-{run_id}-{n}-app",
                                         network_mode="bridge", **common)
        ids.append(first.id)
        first.start()
        second = client.containers.create(name=f"galley-bench-{run_id}-{n}-sidecar",
                                          network_mode=f"container:{first.id}", **common)
        ids.append(second.id)
        second.start()
        t1 = time.perf_counter()
    finally:
        t_rm = time.perf_counter()
        for cid in reversed(ids):
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
    return {"latency": t1 - t0, "remove": time.perf_counter() - t_rm}


def remove_labelled(client: docker.DockerClient, run_id: str) -> int:
    gone = 0
    for c in client.api.containers(all=True, filters={"label": f"{BENCH_LABEL}={run_id}"}):
        try:
            client.api.remove_container(c["Id"], force=True)
            gone += 1
        except docker.errors.NotFound:
            pass
    return gone


# ---- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per side")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds per side first")
    parser.add_argument("--json", action="store_true", help="also print a JSON result line")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000 or not 0 <= args.warmup <= 100:
        parser.error("--rounds must be 1..1000 and --warmup 0..100")
    terminate_on_signals()
    began = time.perf_counter()
    load_before = machine_load()
    print(load_note(load_before), flush=True)
    client = docker.from_env()
    client.images.get(BUSYBOX)  # fail early if the test image is missing
    run_id = uuid.uuid4().hex[:8]
    galley_rounds: list[dict[str, Any]] = []
    docker_rounds: list[dict[str, Any]] = []
    try:
        with galley_process() as galley:
            ecs = galley.client()
            cluster = f"bench-latency-{run_id}"
            ecs.create_cluster(clusterName=cluster)
            td_arn = ecs.register_task_definition(**task_definition(f"bench-latency-{run_id}"))[
                "taskDefinition"]["taskDefinitionArn"]
            # Interleave the two sides so drift in the engine's load hits both equally.
            for i in range(args.warmup):
                galley_round(ecs, cluster, td_arn)
                docker_round(client, run_id, -1 - i)
            for i in range(args.rounds):
                g = galley_round(ecs, cluster, td_arn)
                d = docker_round(client, run_id, i)
                galley_rounds.append(g)
                docker_rounds.append(d)
                print(f"round {i + 1:3d}/{args.rounds}: galley {g['latency'] * 1000:7.1f} ms "
                      f"(server {g['server'] * 1000:6.0f} ms, {g['polls']:3d} polls)   "
                      f"docker {d['latency'] * 1000:7.1f} ms", flush=True)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            remove_labelled(client, run_id)
        finally:
            signal.signal(signal.SIGINT, old)

    g = summary([r["latency"] * 1000 for r in galley_rounds])
    gs = summary([r["server"] * 1000 for r in galley_rounds])
    gc = summary([r["run_task_call"] * 1000 for r in galley_rounds])
    d = summary([r["latency"] * 1000 for r in docker_rounds])
    ph = {k: summary([r[k] * 1000 for r in galley_rounds if k in r])
          for k in ("pickup", "sandbox", "containers")}
    print()
    print(f"RunTask -> RUNNING, 2 x busybox awsvpc FARGATE task, {args.rounds} rounds "
          f"({args.warmup} warm-up), times in ms")
    cols = ("median", "p90", "max", "min")
    print_table(["side", *cols], [
        ["galley (client, 10 ms polls)", g["median"], g["p90"], g["max"], g["min"]],
        ["  galley createdAt->startedAt", gs["median"], gs["p90"], gs["max"], gs["min"]],
        ["    agent pickup (->pullStartedAt)", *(ph["pickup"][k] for k in cols)],
        ["    image+sandbox (->connectivityAt)", *(ph["sandbox"][k] for k in cols)],
        ["    containers (->startedAt)", *(ph["containers"][k] for k in cols)],
        ["  galley RunTask call alone", gc["median"], gc["p90"], gc["max"], gc["min"]],
        ["docker SDK (bridge + container:)", d["median"], d["p90"], d["max"], d["min"]],
    ])
    ratio = g["median"] / d["median"]
    elapsed = time.perf_counter() - began
    load_after = machine_load()
    print(f"elapsed {elapsed:.1f} s; {load_note(load_after)}")
    print(f"ratio galley/docker (median): {ratio:.2f} (target <= {TARGET})")
    if args.json:
        emit_json({"benchmark": "run_task_latency", "rounds": args.rounds, "warmup": args.warmup,
                   "galley_ms": g, "galley_server_ms": gs, "galley_phases_ms": ph,
                   "galley_run_task_call_ms": gc,
                   "docker_ms": d, "ratio_median": ratio, "target": TARGET,
                   "meets_target": ratio <= TARGET, "elapsed_s": elapsed,
                   "load_before": load_before, "load_after": load_after,
                   "galley_rounds": galley_rounds, "docker_rounds": docker_rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
