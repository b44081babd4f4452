"""Heal time of a 3-task Galley service after one task's container is killed, against Docker Swarm.

Galley: a FARGATE awsvpc service of 3 busybox `sleep 3600` tasks (cpu 256 / memory 512, one
essential container, stopTimeout 2), on a Galley started with GALLEY_SERVICE_SETTLE_SECONDS
(--settle, 2 s). Each round kills (docker SDK, the same call as `docker kill`) the essential
container of one of the three tasks; the heal time is from just before the kill until a task that
was not there before shows lastStatus RUNNING in DescribeTasks. The client polls ListTasks
(serviceName) every 10 ms and describes the task ARNs it has not seen yet. The round's
server-side timeline comes from the two tasks' timestamps, all from just before the kill: the kill
noticed (old task stoppingAt), replacement created (createdAt), the agent picked it up
(pullStartedAt), its network sandbox up (connectivityAt), replacement RUNNING (startedAt).

Swarm baseline, same engine: `docker swarm init --advertise-addr 127.0.0.1` unless the engine is
already a manager (left again at the end only if this script initialised it), then
`docker service create --name galley-bench-heal --replicas 3 --restart-delay 0s
--restart-condition any galley-test/busybox:latest sleep 3600` (plus --detach, --no-resolve-image
so nothing is looked up on a registry, and --stop-grace-period 2s like the tasks' stopTimeout).
Each round kills one replica's container and polls `docker ps` (SDK, label
com.docker.swarm.service.name=galley-bench-heal, status running) every 10 ms until a container
that was not there before runs.

Before every round each side waits until it is steady: 3 running tasks/containers, none younger
than settle + --pause seconds (a Galley task killed before it settled counts as a failed launch and
would trigger the service's launch backoff), the previous victim fully STOPPED. The two sides'
rounds are interleaved so drift in the host's load hits both equally.

    python3 bench/heal.py [--rounds 10] [--warmup 1] [--settle 2] [--pause 1] [--json]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
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

TARGET = 1.0
POLL = 0.010
REPLICAS = 3
PHASES = ("noticed", "created", "picked_up", "connected", "started")
SWARM_SERVICE = "galley-bench-heal"
SWARM_LABEL = f"com.docker.swarm.service.name={SWARM_SERVICE}"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0bench0000000000"],
                                   "securityGroups": ["sg-0bench0000000000"],
                                   "assignPublicIp": "DISABLED"}}


def task_definition(family: str) -> dict[str, Any]:
    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": BUSYBOX,
                                      "command": ["sleep", "3600"], "essential": True,
                                      "stopTimeout": 2}]}


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.perf_counter()))


# ---- Galley -----------------------------------------------------------------------------------


class GalleySide:
    def __init__(self, ecs: Any, dock: docker.DockerClient, cluster: str, service: str,
                 settle: float, pause: float, rng: random.Random) -> None:
        self.ecs, self.dock = ecs, dock
        self.cluster, self.service = cluster, service
        self.settle, self.pause, self.rng = settle, pause, rng
        self.last_victim: str | None = None

    def _listed(self) -> list[str]:
        return self.ecs.list_tasks(cluster=self.cluster, serviceName=self.service)["taskArns"]

    def _describe(self, arns: list[str]) -> list[dict[str, Any]]:
        if not arns:
            return []
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]

    def wait_steady(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """3 RUNNING tasks, each RUNNING for settle + pause seconds; the last victim STOPPED."""
        deadline = time.monotonic() + timeout
        why = "not checked yet"
        while time.monotonic() < deadline:
            tasks = self._describe(self._listed())
            svc = self.ecs.describe_services(cluster=self.cluster,
                                             services=[self.service])["services"][0]
            victim_done = self.last_victim is None or self._describe(
                [self.last_victim])[0]["lastStatus"] == "STOPPED"
            running = [t for t in tasks if t["lastStatus"] == "RUNNING"]
            youngest = max((_epoch(t.get("startedAt")) or time.time() for t in running),
                           default=time.time())
            age = time.time() - youngest
            if (len(tasks) == REPLICAS and len(running) == REPLICAS and victim_done
                    and len(svc["deployments"]) == 1 and svc["runningCount"] == REPLICAS
                    and svc["pendingCount"] == 0 and age >= self.settle + self.pause):
                return running
            why = (f"{len(running)}/{len(tasks)} running, youngest {age:.1f} s old, "
                   f"last victim stopped: {victim_done}, deployments {len(svc['deployments'])}")
            time.sleep(0.1)
        raise RuntimeError(f"Galley service not steady after {timeout:.0f} s: {why}")

    def round(self) -> dict[str, Any]:
        tasks = self.wait_steady()
        victim = self.rng.choice(tasks)
        cid = next(c["runtimeId"] for c in victim["containers"] if c["name"] == "app")
        known = set(self._listed()) | {t["taskArn"] for t in tasks}
        polls = 0
        t0_wall = time.time()
        t0 = time.perf_counter()
        self.dock.api.kill(cid)
        self.last_victim = victim["taskArn"]
        next_poll = t0
        replacement: dict[str, Any] | None = None
        while replacement is None:
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("no replacement task RUNNING 120 s after the kill")
            next_poll += POLL
            _sleep_until(next_poll)
            polls += 1
            new = [a for a in self._listed() if a not in known]
            for task in self._describe(new):
                if task["lastStatus"] == "RUNNING":
                    replacement = task
                    break
        t1 = time.perf_counter()
        heal = t1 - t0
        # The server's own timeline of the round (same host clock as t0_wall).
        old = self._describe([victim["taskArn"]])[0]
        marks = {"noticed": _epoch(old.get("stoppingAt")),
                 "created": _epoch(replacement.get("createdAt")),
                 "picked_up": _epoch(replacement.get("pullStartedAt")),
                 "connected": _epoch(replacement.get("connectivityAt")),
                 "started": _epoch(replacement.get("startedAt"))}
        phases = {k: (v - t0_wall if v is not None else float("nan")) for k, v in marks.items()}
        return {"heal": heal, "polls": polls, "victim": victim["taskArn"],
                "replacement": replacement["taskArn"], **phases}


# ---- Docker Swarm -----------------------------------------------------------------------------


def _docker_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


class SwarmSide:
    def __init__(self, dock: docker.DockerClient, pause: float, rng: random.Random) -> None:
        self.dock, self.pause, self.rng = dock, pause, rng
        self.initialised = False  # this script ran `docker swarm init`
        self.created = False
        self.networks_before: set[str] = set()

    def setup(self) -> str | None:
        """Become a manager and create the service; returns why not, or None when ready."""
        state = self.dock.info().get("Swarm", {})
        if state.get("LocalNodeState") == "active" and not state.get("ControlAvailable"):
            return "this engine is a swarm worker, not a manager; it cannot create services"
        if state.get("LocalNodeState") != "active":
            self.networks_before = {n["Name"] for n in self.dock.api.networks()}
            r = _docker_cli("swarm", "init", "--advertise-addr", "127.0.0.1")
            if r.returncode != 0:
                return f"`docker swarm init --advertise-addr 127.0.0.1` failed: " \
                       f"{(r.stderr or r.stdout).strip()}"
            self.initialised = True
        if any(s.get("Spec", {}).get("Name") == SWARM_SERVICE for s in self.dock.api.services()):
            print(f"removing a leftover swarm service {SWARM_SERVICE}", flush=True)
            _docker_cli("service", "rm", SWARM_SERVICE)
            self._wait_gone()
        r = _docker_cli("service", "create", "--detach", "--no-resolve-image",
                        "--name", SWARM_SERVICE, "--replicas", str(REPLICAS),
                        "--restart-delay", "0s", "--restart-condition", "any",
                        "--stop-grace-period", "2s", BUSYBOX, "sleep", "3600")
        if r.returncode != 0:
            return f"`docker service create` failed: {(r.stderr or r.stdout).strip()}"
        self.created = True
        return None

    def _running(self) -> list[dict[str, Any]]:
        return self.dock.api.containers(filters={"label": SWARM_LABEL, "status": "running"})

    def wait_steady(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """3 running containers, none younger than --pause seconds, nothing else in flight."""
        deadline = time.monotonic() + timeout
        why = "not checked yet"
        while time.monotonic() < deadline:
            every = self.dock.api.containers(all=True, filters={"label": SWARM_LABEL})
            running = [c for c in every if c["State"] == "running"]
            in_flight = [c for c in every if c["State"] in ("created", "restarting")]
            if len(running) == REPLICAS and not in_flight:
                ages = []
                for c in running:
                    started = self.dock.api.inspect_container(c["Id"])["State"]["StartedAt"]
                    ages.append(time.time() - _parse_docker_time(started))
                if min(ages) >= self.pause:
                    return running
                why = f"youngest replica {min(ages):.1f} s old"
            else:
                why = f"{len(running)} running, {len(in_flight)} starting"
            time.sleep(0.1)
        raise RuntimeError(f"swarm service not steady after {timeout:.0f} s: {why}")

    def round(self) -> dict[str, Any]:
        running = self.wait_steady()
        victim = self.rng.choice(running)["Id"]
        known = {c["Id"] for c in self.dock.api.containers(all=True,
                                                           filters={"label": SWARM_LABEL})}
        polls = 0
        t0 = time.perf_counter()
        self.dock.api.kill(victim)
        next_poll = t0
        while True:
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("no replacement swarm container running 120 s after the kill")
            next_poll += POLL
            _sleep_until(next_poll)
            polls += 1
            if any(c["Id"] not in known for c in self._running()):
                break
        return {"heal": time.perf_counter() - t0, "polls": polls}

    def _wait_gone(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.dock.api.containers(all=True, filters={"label": SWARM_LABEL}):
                return
            time.sleep(0.2)

    def teardown(self) -> None:
        if self.created:
            r = _docker_cli("service", "rm", SWARM_SERVICE)
            if r.returncode != 0:
                print(f"warning: docker service rm: {r.stderr.strip()}", file=sys.stderr)
            self._wait_gone()
        for c in self.dock.api.containers(all=True, filters={"label": SWARM_LABEL}):
            try:
                self.dock.api.remove_container(c["Id"], force=True)
            except docker.errors.APIError:
                pass
        if self.initialised:
            r = _docker_cli("swarm", "leave", "--force")
            if r.returncode != 0:
                print(f"warning: docker swarm leave --force: {r.stderr.strip()}", file=sys.stderr)
            # swarm init made docker_gwbridge; remove it again if it was not there before.
            for name in ("docker_gwbridge",):
                if name in self.networks_before:
                    continue
                try:
                    self.dock.api.remove_network(name)
                except docker.errors.APIError:
                    pass


def _parse_docker_time(text: str) -> float:
    # 2024-11-25T01:51:08.123456789Z -> microseconds are enough.
    base, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(base + "+00:00").timestamp()
    return stamp + (float("0." + frac[:6]) if frac else 0.0)


# ---- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per side")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds per side first")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="GALLEY_SERVICE_SETTLE_SECONDS for the Galley under test (2)")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="extra seconds every task must have run before a round (1)")
    parser.add_argument("--seed", type=int, default=None, help="victim choice seed")
    parser.add_argument("--json", action="store_true", help="also print a JSON result line")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000 or not 0 <= args.warmup <= 100:
        parser.error("--rounds must be 1..1000 and --warmup 0..100")
    if args.settle < 0 or args.pause < 0:
        parser.error("--settle and --pause must be >= 0")
    terminate_on_signals()
    began = time.perf_counter()
    load_before = machine_load()
    print(load_note(load_before), flush=True)
    dock = docker.from_env()
    dock.images.get(BUSYBOX)  # fail early if the test image is missing
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    galley_rounds: list[dict[str, Any]] = []
    swarm_rounds: list[dict[str, Any]] = []
    swarm = SwarmSide(dock, args.pause, rng)
    swarm_error: str | None = None
    try:
        with galley_process(GALLEY_SERVICE_SETTLE_SECONDS=f"{args.settle:g}") as galley:
            ecs = galley.client()
            cluster, service = f"bench-heal-{run_id}", "heal"
            ecs.create_cluster(clusterName=cluster)
            td_arn = ecs.register_task_definition(**task_definition(f"bench-heal-{run_id}"))[
                "taskDefinition"]["taskDefinitionArn"]
            ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=td_arn,
                               desiredCount=REPLICAS, launchType="FARGATE",
                               networkConfiguration=NETWORK)
            side = GalleySide(ecs, dock, cluster, service, args.settle, args.pause, rng)
            try:
                swarm_error = swarm.setup()
            except (docker.errors.APIError, OSError, subprocess.SubprocessError) as e:
                swarm_error = f"swarm setup failed: {e}"
            if swarm_error:
                print(f"swarm baseline unavailable: {swarm_error}", flush=True)
            for i in range(-args.warmup, args.rounds):
                g = side.round()
                s = swarm.round() if not swarm_error else None
                label = f"warm-up {i + args.warmup + 1}" if i < 0 else \
                    f"round {i + 1:3d}/{args.rounds}"
                line = (f"{label}: galley {g['heal'] * 1000:7.1f} ms (noticed "
                        f"{g['noticed'] * 1000:5.0f}, created {g['created'] * 1000:5.0f}, "
                        f"started {g['started'] * 1000:5.0f} ms; {g['polls']:3d} polls)")
                if s is not None:
                    line += f"   swarm {s['heal'] * 1000:7.1f} ms ({s['polls']:3d} polls)"
                print(line, flush=True)
                if i >= 0:
                    galley_rounds.append(g)
                    if s is not None:
                        swarm_rounds.append(s)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            swarm.teardown()
        finally:
            signal.signal(signal.SIGINT, old)

    g = summary([r["heal"] * 1000 for r in galley_rounds])
    ph = {k: summary([r[k] * 1000 for r in galley_rounds]) for k in PHASES}
    s = summary([r["heal"] * 1000 for r in swarm_rounds]) if swarm_rounds else None
    print()
    print(f"heal time: docker kill of one of {REPLICAS} tasks -> replacement running, "
          f"{args.rounds} rounds ({args.warmup} warm-up), settle {args.settle:g} s, times in ms")
    cols = ("median", "p90", "max", "min")
    rows = [["galley (client, 10 ms polls)", *(g[k] for k in cols)],
            ["  kill noticed (old stoppingAt)", *(ph["noticed"][k] for k in cols)],
            ["  replacement createdAt", *(ph["created"][k] for k in cols)],
            ["  agent picked it up (pullStartedAt)", *(ph["picked_up"][k] for k in cols)],
            ["  sandbox up (connectivityAt)", *(ph["connected"][k] for k in cols)],
            ["  replacement startedAt", *(ph["started"][k] for k in cols)]]
    if s is not None:
        rows.append(["docker swarm (10 ms polls)", *(s[k] for k in cols)])
    print_table(["side", *cols], rows)
    elapsed = time.perf_counter() - began
    load_after = machine_load()
    print(f"elapsed {elapsed:.1f} s; {load_note(load_after)}")
    print(f"galley: median {g['median']:.1f} ms, max {g['max']:.1f} ms")
    ratio: float | None = None
    if s is not None:
        print(f"swarm:  median {s['median']:.1f} ms, max {s['max']:.1f} ms")
        ratio = g["median"] / s["median"]
        print(f"ratio galley/swarm (median): {ratio:.2f} (target <= {TARGET})")
    else:
        print(f"swarm:  not measured ({swarm_error})")
        print("ratio galley/swarm (median): n/a (no swarm baseline)")
    if args.json:
        emit_json({"benchmark": "heal", "rounds": args.rounds, "warmup": args.warmup,
                   "settle_seconds": args.settle, "pause_seconds": args.pause,
                   "galley_ms": g, "galley_phases_ms": ph, "swarm_ms": s,
                   "swarm_error": swarm_error, "ratio_median": ratio, "target": TARGET,
                   "meets_target": ratio is not None and ratio <= TARGET,
                   "elapsed_s": elapsed, "load_before": load_before, "load_after": load_after,
                   "galley_rounds": galley_rounds, "swarm_rounds": swarm_rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
