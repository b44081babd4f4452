"""Read-API throughput of Galley against moto's server, on a store holding 1,000 tasks.

For each server, 1,000 tasks are put in its store (Galley: RunTask count=10 x 100 of a quick-exit
awsvpc FARGATE task, paced so that at most --window tasks are in flight on the Docker engine, then
waited for until every one is STOPPED; moto: the same RunTask calls, then StopTask on each, so
both stores answer the same ListTasks(desiredStatus=STOPPED)). Then for each call

    DescribeClusters(clusters=[cluster])
    ListTasks(cluster, desiredStatus=STOPPED, maxResults=100)
    DescribeTasks(cluster, tasks=<100 task ARNs>)      (workers rotate over the 10 chunks)

8 worker processes, each with its own signed client and keep-alive connection, call it in a
closed loop for --seconds. The client is the same for both servers: by default (`--client raw`)
botocore's SigV4 signer over one http.client connection and json.loads of the answer; with
`--client boto3` a boto3 client. The light client is the default because a boto3 client spends
about 2.4 ms of CPU on each small call (serialising, signing, parsing), which on a 2-CPU host,
where the 8 clients share the cores with the server, caps the measurable ratio at about 3.5x
whatever the server does. The table shows requests/second (successful answers / duration), p50
and p99 latency, errors, and where the CPU went: the server process's CPU (% of one core and ms
per request, read from /proc) and the client processes' CPU per request.
moto's ListTasks ignores maxResults and answers all 1,000 ARNs in one page; Galley answers 100.

    python3 bench/api_throughput.py [--seconds 10] [--workers 8] [--tasks 1000]
                                    [--client raw|boto3] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from _common import (
    ACCESS_KEY,
    BUSYBOX,
    REGION,
    SECRET_KEY,
    emit_json,
    free_port,
    galley_process,
    load_note,
    machine_load,
    percentile,
    print_table,
    terminate_on_signals,
)
from botocore.config import Config

RPS_TARGET = 5.0
OPERATIONS = ("DescribeClusters", "ListTasks", "DescribeTasks")
CLUSTER = "bench-throughput"
FAMILY = "bench-quick-exit"


def make_client(endpoint: str) -> Any:
    return boto3.client(
        "ecs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=2,
                      connect_timeout=10, read_timeout=60))


TASK_DEFINITION = {
    "family": FAMILY, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    # moto needs a container-level memory figure; 512 is the task's own limit anyway.
    "containerDefinitions": [{"name": "job", "image": BUSYBOX, "essential": True, "memory": 512,
                              "command": ["sh", "-c", "exit 0"], "stopTimeout": 2}],
}


# ---- the measuring workers (separate processes) -----------------------------------------------

class RawClient:
    """The light signed client (`--client raw`, the default): every request is signed by
    botocore's own SigV4Auth (the signature covers the method, path, Host, X-Amz-Date,
    X-Amz-Target, Content-Type and the SHA-256 of the body, exactly as boto3 signs it) and sent
    over one keep-alive http.client connection; the answer must be HTTP 200 and is decoded with
    json.loads. What it leaves out is boto3's request serialisation and validation and its
    response parsing (shapes, timestamps), so that on a small host the clients take less of the
    CPU the servers need. Galley verifies every signature, so a wrongly signed request would
    show up as errors."""

    TARGET = "AmazonEC2ContainerServiceV20141113."

    def __init__(self, endpoint: str) -> None:
        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self.endpoint = endpoint.rstrip("/") + "/"
        self.host = endpoint.split("://", 1)[1].rstrip("/")
        self.signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecs", REGION)
        self.conn = http.client.HTTPConnection(self.host, timeout=60)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.awsrequest import AWSRequest

        body = json.dumps(params).encode()
        request = AWSRequest("POST", self.endpoint, data=body, headers={
            "X-Amz-Target": self.TARGET + operation,
            "Content-Type": "application/x-amz-json-1.1"})
        self.signer.add_auth(request)
        try:
            self.conn.request("POST", "/", body=body, headers=dict(request.headers.items()))
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect on the next call
            raise
        if response.status != 200:
            raise RuntimeError(f"{operation}: HTTP {response.status}: {payload[:300]!r}")
        return json.loads(payload)  # type: ignore[no-any-return]

    def describe_clusters(self, **params: Any) -> dict[str, Any]:
        return self.call("DescribeClusters", params)

    def list_tasks(self, **params: Any) -> dict[str, Any]:
        return self.call("ListTasks", params)

    def describe_tasks(self, **params: Any) -> dict[str, Any]:
        return self.call("DescribeTasks", params)


_CLIENTS: dict[tuple[str, str], Any] = {}


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us


def _call(ecs: Any, op: str, arg: Any, i: int) -> None:
    if op == "DescribeClusters":
        r = ecs.describe_clusters(clusters=[CLUSTER])
        if not r["clusters"]:
            raise RuntimeError("cluster missing")
    elif op == "ListTasks":
        r = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED", maxResults=100)
        if not r["taskArns"]:
            raise RuntimeError("no tasks listed")
    else:
        chunk = arg[i % len(arg)]
        r = ecs.describe_tasks(cluster=CLUSTER, tasks=chunk)
        if len(r["tasks"]) != len(chunk):
            raise RuntimeError(f"described {len(r['tasks'])} of {len(chunk)}")


def _worker(endpoint: str, kind: str, op: str, arg: Any, worker: int, start_at: float,
            seconds: float) -> dict[str, Any]:
    """Closed loop on one operation from `start_at` for `seconds`; returns latencies in ms."""
    ecs = _CLIENTS.get((endpoint, kind))
    if ecs is None:
        ecs = make_client(endpoint) if kind == "boto3" else RawClient(endpoint)
        _CLIENTS[(endpoint, kind)] = ecs
    _call(ecs, op, arg, worker)  # connection up, botocore model loaded: not measured
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    end = time.perf_counter() + seconds
    cpu0 = time.process_time()
    calls = 0  # every call made, also the last one (ending after `end`) and failed ones
    latencies: list[float] = []
    errors = 0
    first_error = ""
    i = worker
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        calls += 1
        try:
            _call(ecs, op, arg, i)
            t1 = time.perf_counter()
            if t1 <= end:
                latencies.append((t1 - t0) * 1000)
        except Exception as e:  # counted, never fatal: a failing server scores low
            errors += 1
            first_error = first_error or repr(e)[:300]
        i += 1
    return {"latencies": latencies, "errors": errors, "first_error": first_error,
            "calls": calls, "cpu": time.process_time() - cpu0}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pool: Any, endpoint: str, server_pid: int, kind: str, op: str, arg: Any,
            workers: int, seconds: float) -> dict[str, Any]:
    start_at = time.time() + 1.5  # every worker has its client and first answer by then
    job = pool.starmap_async(_worker, [(endpoint, kind, op, arg, w, start_at, seconds)
                                       for w in range(workers)])
    # The server's CPU from just before the loops start until every worker is done (the server
    # is idle before and after), divided by every call the loops made: this holds even when a
    # busy host wakes this process or a worker late.
    time.sleep(max(0.0, start_at - 0.1 - time.time()))
    cpu0, wall0 = process_cpu(server_pid), time.perf_counter()
    results = job.get(timeout=seconds + 600)
    server_cpu = process_cpu(server_pid) - cpu0
    wall = time.perf_counter() - wall0
    latencies = [x for r in results for x in r["latencies"]]
    errors = sum(r["errors"] for r in results)
    n = max(1, sum(r["calls"] for r in results))
    return {"requests": len(latencies), "rps": len(latencies) / seconds,
            # Where the time goes: the server process's CPU (% of one core, ms per request) and
            # the clients' (signing, HTTP, parsing), both on the same host.
            "server_cpu_pct": 100 * server_cpu / wall, "server_cpu_ms": 1000 * server_cpu / n,
            "client_cpu_ms": 1000 * sum(r["cpu"] for r in results) / n,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else float("nan"), "errors": errors,
            "first_error": next((r["first_error"] for r in results if r["first_error"]), "")}


# ---- populating the stores --------------------------------------------------------------------


def populate_galley(ecs: Any, n_tasks: int, window: int, timeout: float) -> tuple[list[str], float]:
    """RunTask count=10 until n_tasks exist, never more than `window` unfinished at a time."""
    ecs.create_cluster(clusterName=CLUSTER)
    td = ecs.register_task_definition(**TASK_DEFINITION)["taskDefinition"]["taskDefinitionArn"]
    began = time.perf_counter()
    deadline = began + timeout
    arns: list[str] = []
    unfinished: list[str] = []
    last_print = 0.0
    while len(arns) < n_tasks or unfinished:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"populating Galley took over {timeout:.0f} s "
                               f"({len(arns)} started, {len(unfinished)} unfinished)")
        while len(arns) < n_tasks and len(unfinished) + 10 <= max(window, 10):
            count = min(10, n_tasks - len(arns))
            r = ecs.run_task(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE",
                             count=count, networkConfiguration=NETWORK)
            if r.get("failures"):
                raise RuntimeError(f"RunTask failures: {r['failures']}")
            new = [t["taskArn"] for t in r["tasks"]]
            arns += new
            unfinished += new
        time.sleep(0.25)
        still: list[str] = []
        for i in range(0, len(unfinished), 100):
            chunk = unfinished[i:i + 100]
            for t in ecs.describe_tasks(cluster=CLUSTER, tasks=chunk)["tasks"]:
                if t["lastStatus"] != "STOPPED":
                    still.append(t["taskArn"])
                elif t.get("stopCode") != "EssentialContainerExited":
                    raise RuntimeError(f"task {t['taskArn']} stopped with {t.get('stopCode')}: "
                                       f"{t.get('stoppedReason')}")
        unfinished = still
        now = time.perf_counter()
        if now - last_print >= 10:
            last_print = now
            print(f"  galley: {len(arns) - len(unfinished)}/{n_tasks} tasks STOPPED "
                  f"after {now - began:.0f} s", flush=True)
    return arns, time.perf_counter() - began


NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0bench0000000000"],
                                   "securityGroups": ["sg-0bench0000000000"],
                                   "assignPublicIp": "DISABLED"}}


def populate_moto(endpoint: str, n_tasks: int) -> tuple[list[str], float]:
    """The same cluster, task definition and tasks in moto (its awsvpc tasks need a real subnet
    in its EC2 backend, in a VPC with DNS hostnames, for the ENI), then StopTask on each so desiredStatus is STOPPED."""
    began = time.perf_counter()
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto's ECS reads the ENI's private DNS name, which it only sets with DNS hostnames on.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="bench", Description="bench", VpcId=vpc)["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg],
                                       "assignPublicIp": "DISABLED"}}
    ecs = make_client(endpoint)
    ecs.create_cluster(clusterName=CLUSTER)
    td = ecs.register_task_definition(**TASK_DEFINITION)["taskDefinition"]["taskDefinitionArn"]
    arns: list[str] = []
    while len(arns) < n_tasks:
        r = ecs.run_task(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE",
                         count=min(10, n_tasks - len(arns)), networkConfiguration=network)
        arns += [t["taskArn"] for t in r["tasks"]]
    for arn in arns:
        ecs.stop_task(cluster=CLUSTER, task=arn, reason="benchmark population")
    listed = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
    if len(listed) < n_tasks:
        raise RuntimeError(f"moto lists {len(listed)} STOPPED tasks, expected {n_tasks}")
    return arns, time.perf_counter() - began


class moto_server:  # noqa: N801 - context manager
    """`python -m moto.server` on 127.0.0.1 and a free port, as users run it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="moto-bench-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> moto_server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("moto server did not answer within 60 s")

    def __exit__(self, *_exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


# ---- main -------------------------------------------------------------------------------------


def run_calls(pool: Any, endpoint: str, server_pid: int, arns: list[str],
              args: argparse.Namespace, label: str) -> dict[str, dict[str, Any]]:
    chunks = [arns[i:i + 100] for i in range(0, len(arns), 100)]
    out = {}
    for op in OPERATIONS:
        out[op] = measure(pool, endpoint, server_pid, args.client, op,
                          chunks if op == "DescribeTasks" else None, args.workers, args.seconds)
        r = out[op]
        print(f"  {label:6s} {op:16s} {r['rps']:8.1f} rps  p50 {r['p50']:7.1f} ms  "
              f"p99 {r['p99']:7.1f} ms  server CPU {r['server_cpu_pct']:3.0f}% "
              f"({r['server_cpu_ms']:.1f} ms/req)  errors {r['errors']}", flush=True)
        if r["first_error"]:
            print(f"    first error: {r['first_error']}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration per call per server")
    parser.add_argument("--workers", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in each store")
    parser.add_argument("--window", type=int, default=30,
                        help="max unfinished Galley tasks while populating (Docker load)")
    parser.add_argument("--populate-timeout", type=float, default=1200.0,
                        help="give up populating Galley after this many seconds")
    parser.add_argument("--skip-moto", action="store_true", help="measure Galley only")
    parser.add_argument("--client", choices=("raw", "boto3"), default="raw",
                        help="raw: SigV4-signed (botocore's signer) http.client calls, the "
                             "default, which leave a small host's CPU to the servers; boto3: "
                             "boto3 clients (about 2.4 ms of client CPU per small call)")
    parser.add_argument("--json", action="store_true", help="also print a JSON result line")
    args = parser.parse_args()
    if not (0.5 <= args.seconds <= 600 and 1 <= args.workers <= 64
            and 100 <= args.tasks <= 5000 and 10 <= args.window <= 500):
        parser.error("out of range: --seconds 0.5..600, --workers 1..64, --tasks 100..5000, "
                     "--window 10..500")
    terminate_on_signals()
    began = time.perf_counter()
    load_before = machine_load()
    print(load_note(load_before), flush=True)
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    ctx = mp.get_context("spawn")  # clean workers: no inherited sockets, locks or boto3 state
    with ctx.Pool(args.workers, initializer=_worker_init) as pool:
        print(f"Galley: populating {args.tasks} quick-exit tasks (window {args.window})...",
              flush=True)
        with galley_process() as galley:
            arns, timings["galley_populate_s"] = populate_galley(
                galley.client(), args.tasks, args.window, args.populate_timeout)
            print(f"  galley: {len(arns)} tasks STOPPED in {timings['galley_populate_s']:.0f} s "
                  f"({len(arns) / timings['galley_populate_s']:.1f} tasks/s)", flush=True)
            assert galley.proc is not None
            results["galley"] = run_calls(pool, galley.endpoint, galley.proc.pid, arns, args,
                                          "galley")
        if not args.skip_moto:
            print(f"moto: populating {args.tasks} tasks...", flush=True)
            with moto_server() as moto:
                arns, timings["moto_populate_s"] = populate_moto(moto.endpoint, args.tasks)
                print(f"  moto: {len(arns)} tasks in {timings['moto_populate_s']:.0f} s",
                      flush=True)
                assert moto.proc is not None
                results["moto"] = run_calls(pool, moto.endpoint, moto.proc.pid, arns, args,
                                            "moto")
        pool.close()
        pool.join()

    elapsed = time.perf_counter() - began
    print()
    print(f"{args.workers} concurrent signed {args.client} clients (processes), "
          f"{args.seconds:g} s per call, "
          f"{args.tasks} tasks in each store; latencies in ms")
    servers = ["galley"] + ([] if args.skip_moto else ["moto"])
    rows = []
    for op in OPERATIONS:
        for srv in servers:
            r = results[srv][op]
            rows.append([op, srv, r["rps"], r["p50"], r["p99"], r["max"], r["errors"],
                         f"{r['server_cpu_pct']:.0f}%", r["server_cpu_ms"], r["client_cpu_ms"]])
    print_table(["call", "server", "rps", "p50", "p99", "max", "errors", "srv CPU",
                 "srv ms/req", "client ms/req"], rows)
    ratios: dict[str, dict[str, float]] = {}
    if not args.skip_moto:
        print()
        for op in OPERATIONS:
            g, m = results["galley"][op], results["moto"][op]
            rps_ratio = g["rps"] / m["rps"] if m["rps"] else float("inf")
            p99_ratio = m["p99"] / g["p99"] if g["p99"] else float("nan")
            ratios[op] = {"rps": rps_ratio, "p99_moto_over_galley": p99_ratio}
            print(f"ratio galley/moto rps {op}: {rps_ratio:.2f}x (target >= {RPS_TARGET:g}x); "
                  f"p99 moto/galley: {p99_ratio:.2f}x")
    load_after = machine_load()
    print(f"elapsed {elapsed:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); "
          f"{load_note(load_after)}")
    if ratios:
        worst = min(ratios, key=lambda op: ratios[op]["rps"])
        print(f"ratio galley/moto rps (worst call, {worst}): {ratios[worst]['rps']:.2f}x "
              f"(target >= {RPS_TARGET:g}x)")
    if args.json:
        emit_json({"benchmark": "api_throughput", "workers": args.workers, "client": args.client,
                   "seconds": args.seconds, "tasks": args.tasks,
                   "results": {s: results[s] for s in servers}, "ratios": ratios,
                   "rps_target": RPS_TARGET,
                   "meets_target": bool(ratios) and all(r["rps"] >= RPS_TARGET
                                                        for r in ratios.values()),
                   "timings_s": timings, "elapsed_s": elapsed,
                   "load_before": load_before, "load_after": load_after})
    return 0


if __name__ == "__main__":
    sys.exit(main())
