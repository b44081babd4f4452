"""Scale: 1,000 simulated container instances, 10,000 tasks placed through services.

A `galley server` (the control plane alone, no built-in capacity) on a fresh data directory, one
cluster, and a fleet of simulated hosts (`galley.agent.simulated`, one process: instances
registered through the signed ECS API, desired tasks over the same channel as `galley agent`,
but a runtime that only reports states, like Kubernetes' kubemark). Then --services EC2 services
of one bridge-mode task definition, desiredCount totalling --tasks, half with placementStrategy
binpack(memory) and half with spread(attribute:ecs.availability-zone) + spread(instanceId), are
created back to back. Measured, from just before the first CreateService:

    placements/s       tasks / (last task's createdAt - t0): every task placed on an instance
    all RUNNING        last task's startedAt - t0
    peak RSS           VmHWM of the server process (/proc/<pid>/status) at the end
    DescribeTasks      latency of DescribeTasks of the next 100 task ARNs (ListTasks of the
                       cluster, paged round and round) from one client sampling every
                       --sample-interval while the tasks are placed and started

See bench/README.md for the details and how to read the figures.

    python3 bench/scale.py [--instances 1000] [--tasks 10000] [--services 10] [--json]
                           [--profile]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    GalleyProcess,
    emit_json,
    load_note,
    machine_load,
    print_table,
    summary,
    terminate_on_signals,
)
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from galley.agent.simulated import ECS_TARGET, SignedChannel  # noqa: E402

CLUSTER = "scale"
FAMILY = "scale-web"
TARGET_PLACEMENTS = 1000.0
TARGET_RSS_MB = 500.0
REGISTER_TIMEOUT = 300.0
BINPACK = [{"type": "binpack", "field": "memory"}]
SPREAD = [{"type": "spread", "field": "attribute:ecs.availability-zone"},
          {"type": "spread", "field": "instanceId"}]
TASK_DEFINITION = {
    "family": FAMILY, "networkMode": "bridge", "requiresCompatibilities": ["EC2"],
    "containerDefinitions": [{"name": "web", "image": "galley-test/busybox:latest",
                              "cpu": 128, "memory": 256, "essential": True,
                              "command": ["httpd", "-f", "-p", "8080"],
                              "portMappings": [{"containerPort": 8080, "hostPort": 0}]}],
}


class Server(GalleyProcess):
    """`galley server` (optionally under the sampling profiler) instead of `galley up`."""

    def __init__(self, data_dir: Path, profile: Path | None = None, **env: str) -> None:
        super().__init__(data_dir, **env)
        self.profile = profile

    def start(self) -> Server:
        head = [sys.executable, "-m", "galley.cli"] if self.profile is None else \
            [sys.executable, str(Path(__file__).with_name("_profile_server.py")),
             str(self.profile)]
        self.launch([*head, "--log-level", "WARNING", "server"])
        return self


def proc_status(pid: int, key: str) -> float:
    """A /proc/<pid>/status memory figure (VmHWM, VmRSS) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    """Signed ECS calls over one keep-alive connection (light on the client's CPU)."""

    def __init__(self, endpoint: str) -> None:
        self.channel = SignedChannel(endpoint, REGION, Credentials(ACCESS_KEY, SECRET_KEY))

    def __call__(self, operation: str, **params: Any) -> dict[str, Any]:
        return self.channel.call(ECS_TARGET + operation, params, timeout=60)


def start_fleet(server: Server, args: argparse.Namespace) -> tuple[subprocess.Popen[str], float]:
    """The simulated fleet in its own process; returns once every instance is registered."""
    env = {**server.cli_env(), "PYTHONPATH": server.env["PYTHONPATH"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "galley.agent.simulated", "--endpoint", server.endpoint,
         "--cluster", CLUSTER, "--instances", str(args.instances), "--workers",
         str(args.sim_workers), "--pollers", str(args.sim_pollers), "--seed", str(args.seed)],
        env=env, stdout=subprocess.PIPE, stderr=open(server.data_dir / "sim.log", "ab"),
        text=True)
    t0 = time.perf_counter()
    assert proc.stdout is not None
    line = ""
    if select.select([proc.stdout], [], [], REGISTER_TIMEOUT)[0]:
        line = proc.stdout.readline()  # the fleet exits on any registration error
    if not line.startswith("registered"):
        proc.kill()
        raise RuntimeError("simulated fleet did not register its instances: "
                           + (server.data_dir / "sim.log").read_text()[-3000:])
    return proc, time.perf_counter() - t0


class DescribeSampler(threading.Thread):
    """DescribeTasks of the next page of 100 tasks (ListTasks of the cluster, paged round and
    round), every `interval` seconds; only the DescribeTasks call is timed."""

    def __init__(self, endpoint: str, interval: float) -> None:
        super().__init__(name="describe-sampler", daemon=True)
        self.client = Client(endpoint)
        self.interval = interval
        self.latencies: list[float] = []
        self.sizes: list[int] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        next_at = time.perf_counter()
        token: str | None = None
        while not self.stop.is_set():
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.perf_counter()))
            try:
                page = self.client("ListTasks", cluster=CLUSTER, maxResults=100,
                                   **({"nextToken": token} if token else {}))
                token = page.get("nextToken")
                if not page["taskArns"]:
                    continue
                t = time.perf_counter()
                answer = self.client("DescribeTasks", cluster=CLUSTER, tasks=page["taskArns"])
                self.latencies.append(time.perf_counter() - t)
                self.sizes.append(len(answer["tasks"]))
            except Exception:
                self.errors += 1


def all_tasks(client: Client) -> list[dict[str, Any]]:
    arns: list[str] = []
    token = None
    while True:
        page = client("ListTasks", cluster=CLUSTER, maxResults=100,
                      **({"nextToken": token} if token else {}))
        arns += page["taskArns"]
        token = page.get("nextToken")
        if not token:
            break
    out = []
    for i in range(0, len(arns), 100):
        out += client("DescribeTasks", cluster=CLUSTER, tasks=arns[i:i + 100])["tasks"]
    return out


def placement_quality(client: Client, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """How the strategies spread the tasks: instances used, tasks per AZ."""
    arns = sorted({t["containerInstanceArn"] for t in tasks})
    zone = {}
    for i in range(0, len(arns), 100):
        for ci in client("DescribeContainerInstances", cluster=CLUSTER,
                         containerInstances=arns[i:i + 100])["containerInstances"]:
            attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
            zone[ci["containerInstanceArn"]] = attrs.get("ecs.availability-zone")
    out: dict[str, Any] = {}
    for kind in ("binpack", "spread"):
        mine = [t for t in tasks if t["group"].startswith(f"service:scale-{kind}")]
        per_instance = Counter(t["containerInstanceArn"] for t in mine)
        per_zone = Counter(zone[t["containerInstanceArn"]] for t in mine)
        out[kind] = {"tasks": len(mine), "instances": len(per_instance),
                     "max_per_instance": max(per_instance.values(), default=0),
                     "per_zone": dict(sorted(per_zone.items()))}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="galley-bench-scale-"))
    profile = tmp / "profile.txt" if args.profile else None
    server = Server(tmp, profile=profile)
    fleet = None
    sampler = None
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        client = Client(server.endpoint)
        client("CreateCluster", clusterName=CLUSTER)
        fleet, t_register = start_fleet(server, args)
        td = client("RegisterTaskDefinition", **TASK_DEFINITION)["taskDefinition"]
        names = [f"scale-{'binpack' if n % 2 == 0 else 'spread'}-{n}"
                 for n in range(args.services)]
        counts = [args.tasks // args.services + (n < args.tasks % args.services)
                  for n in range(args.services)]
        rss_before = proc_status(pid, "VmRSS")
        cpu_before = cpu_seconds(pid)
        fleet_cpu_before = cpu_seconds(fleet.pid)
        sampler = DescribeSampler(server.endpoint, args.sample_interval)
        t0_wall = time.time()
        t0 = time.perf_counter()
        for name, count in zip(names, counts, strict=True):
            client("CreateService", cluster=CLUSTER, serviceName=name,
                   taskDefinition=td["taskDefinitionArn"], desiredCount=count,
                   launchType="EC2",
                   placementStrategy=BINPACK if "binpack" in name else SPREAD)
        t_created = time.perf_counter() - t0
        sampler.start()
        timeline: list[tuple[float, int, int]] = []
        rss_peak_seen = 0.0
        next_mark = 0.0
        while True:
            at = time.perf_counter() - t0
            if at > args.timeout:
                raise RuntimeError(f"not all tasks RUNNING after {args.timeout:.0f} s: "
                                   f"{timeline[-1] if timeline else 'none'}")
            running = pending = 0
            for i in range(0, len(names), 10):
                for svc in client("DescribeServices", cluster=CLUSTER,
                                  services=names[i:i + 10])["services"]:
                    running += svc["runningCount"]
                    pending += svc["pendingCount"]
            rss_peak_seen = max(rss_peak_seen, proc_status(pid, "VmRSS"))
            if at >= next_mark or running == args.tasks:
                timeline.append((at, running + pending, running))
                next_mark += 1.0
            if running == args.tasks:
                break
            time.sleep(0.2)
        sampler.stop.set()
        sampler.join(timeout=120)
        cpu_used = cpu_seconds(pid) - cpu_before
        fleet_cpu = cpu_seconds(fleet.pid) - fleet_cpu_before
        wall = time.perf_counter() - t0
        hwm = proc_status(pid, "VmHWM")
        tasks = all_tasks(client)
        created = max(float(t["createdAt"]) for t in tasks) - t0_wall
        started = max(float(t["startedAt"]) for t in tasks) - t0_wall
        to_running = [float(t["startedAt"]) - float(t["createdAt"]) for t in tasks]
        quality = placement_quality(client, tasks)
        return {
            "instances": args.instances, "tasks": len(tasks), "services": args.services,
            "register_s": t_register, "create_services_s": t_created,
            "placed_s": created, "placements_per_s": len(tasks) / created,
            "all_running_s": started, "created_to_running": summary(to_running),
            "peak_rss_mb": hwm, "rss_before_mb": rss_before, "rss_peak_sampled_mb": rss_peak_seen,
            "server_cpu_s": cpu_used, "server_cpu_pct": 100 * cpu_used / wall,
            "fleet_cpu_s": fleet_cpu, "fleet_cpu_pct": 100 * fleet_cpu / wall,
            "describe_tasks": summary(sampler.latencies), "describe_errors": sampler.errors,
            "describe_sizes": summary(sampler.sizes),
            "timeline": timeline, "placement": quality,
            "profile": profile.read_text() if profile and profile.exists() else None,
        }
    finally:
        if sampler is not None:
            sampler.stop.set()
        if fleet is not None and fleet.poll() is None:
            fleet.terminate()
            try:
                out, _ = fleet.communicate(timeout=30)
                if args.verbose and out:
                    print("fleet: " + out.strip())
            except subprocess.TimeoutExpired:
                fleet.kill()
        try:
            server.stop()
        except Exception:
            server.stop(kill=True)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--sim-workers", type=int, default=4,
                        help="connections the simulated fleet reports over")
    parser.add_argument("--sim-pollers", type=int, default=2,
                        help="connections the simulated fleet polls over")
    parser.add_argument("--sample-interval", type=float, default=0.05,
                        help="seconds between DescribeTasks samples")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="run the server under a sampling profiler and print its top")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    terminate_on_signals()
    before = machine_load()
    print(f"scale: {args.instances} simulated instances, {args.services} EC2 services "
          f"(binpack(memory) / spread(AZ)+spread(instanceId), alternating), {args.tasks} tasks")
    print(load_note(before))
    sys.stdout.flush()
    try:
        r = run(args)
    except KeyboardInterrupt:
        print("interrupted: the server and the simulated fleet are stopped, the data is removed")
        return 130
    after = machine_load()
    d = r["describe_tasks"]
    print(f"registration: {args.instances} instances in {r['register_s']:.1f} s "
          f"({args.instances / r['register_s']:.0f}/s); "
          f"{args.services} CreateService calls in {r['create_services_s']:.2f} s")
    print()
    print_table(["figure", "value", "target"], [
        ["placements/s (tasks / last createdAt)", r["placements_per_s"],
         f">= {TARGET_PLACEMENTS:.0f}"],
        ["all placed (s)", r["placed_s"], ""],
        ["all RUNNING (s)", r["all_running_s"], ""],
        ["createdAt -> startedAt median (s)", r["created_to_running"]["median"], ""],
        ["createdAt -> startedAt p99 (s)", r["created_to_running"]["p99"], ""],
        ["control plane peak RSS, VmHWM (MB)", r["peak_rss_mb"], f"<= {TARGET_RSS_MB:.0f}"],
        ["  RSS before the services (MB)", r["rss_before_mb"], ""],
        ["DescribeTasks p50 (ms)", 1000 * d["median"], ""],
        ["DescribeTasks p99 (ms)", 1000 * d["p99"], ""],
        ["DescribeTasks max (ms)", 1000 * d["max"], ""],
        ["DescribeTasks samples (errors)", f"{d['n']} ({r['describe_errors']})", ""],
        ["server CPU during the run (s, % of a core)",
         f"{r['server_cpu_s']:.1f} ({r['server_cpu_pct']:.0f}%)", ""],
        ["simulated fleet CPU (s, % of a core)",
         f"{r['fleet_cpu_s']:.1f} ({r['fleet_cpu_pct']:.0f}%)", ""],
    ])
    print()
    for kind, q in r["placement"].items():
        print(f"{kind}: {q['tasks']} tasks on {q['instances']} instances "
              f"(at most {q['max_per_instance']} per instance), per AZ {q['per_zone']}")
    print("timeline (s: placed / running): " + ", ".join(
        f"{t:.0f}: {p}/{n}" for t, p, n in r["timeline"]))
    print(load_note(after))
    ok = r["placements_per_s"] >= TARGET_PLACEMENTS and r["peak_rss_mb"] <= TARGET_RSS_MB
    print(f"result: {r['placements_per_s']:.0f} placements/s (target >= "
          f"{TARGET_PLACEMENTS:.0f}), peak RSS {r['peak_rss_mb']:.0f} MB (target <= "
          f"{TARGET_RSS_MB:.0f}), DescribeTasks p99 {1000 * d['p99']:.0f} ms, all RUNNING "
          f"after {r['all_running_s']:.1f} s: {'met' if ok else 'NOT met'}")
    if r["profile"]:
        print()
        print("server profile (sampled):")
        print(r["profile"])
    if args.json:
        emit_json({k: v for k, v in r.items() if k != "profile"}
                  | {"load_before": before, "load_after": after})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
