"""A simulated agent runtime for scale figures (like Kubernetes' kubemark): no Docker at all.

A `SimulatedFleet` is many container instances in one process. Each is registered through the
real, SigV4-signed ECS API (RegisterContainerInstance) and gets its desired tasks over the same
`GalleyAgent_v1` channel as `galley agent` (PollTasks); instead of running containers it reports
at once what a real agent would report: PENDING (image pulled), then RUNNING with a made-up
runtime id and host ports, and STOPPING then STOPPED when a task's desired status is STOPPED.

It is for measuring the control plane at scale only; every feature is verified on real
containers. 1,000 instances must not cost 1,000 connections or 1,000 blocked server threads, so
the fleet does not long-poll per instance:

    watcher:   one long poll (waitSeconds 20) on one instance, only to learn that desired state
               changed somewhere (the poll answers when the server's desired-state version
               moves)
    sweep:     on such a change, and at least every `heartbeat` seconds (an instance that does
               not poll for GALLEY_AGENT_TIMEOUT_SECONDS is shown disconnected), every instance
               is polled once with waitSeconds 0 by `pollers` connections; changes during a
               sweep cause one more
    reporters: `workers` connections deliver the reports the polls called for, each task's in
               order; a sweep does not wait for them, so polls (heartbeats) go on under a
               backlog of reports, and nothing is queued twice

Run it on its own (credentials from the environment, as for `galley agent`):

    python -m galley.agent.simulated --endpoint http://127.0.0.1:7070 --cluster scale \
        --instances 1000 [--workers 4] [--pollers 2] [--seed 1]

It prints one line `registered N` once every instance is registered, then runs until SIGTERM or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import queue
import random
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from galley.agent.remote import RemoteError, wire_calls

log = logging.getLogger("galley.simulated")

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
AGENT_TARGET = "GalleyAgent_v1."
WATCH_WAIT_SECONDS = 20.0
DYNAMIC_PORTS = (32768, 60999)


class SignedChannel:
    """One keep-alive HTTP connection carrying SigV4-signed AWS JSON 1.1 calls."""

    def __init__(self, endpoint: str, region: str, credentials: Credentials) -> None:
        parts = urlsplit(endpoint)
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.netloc = parts.netloc
        self.signer = SigV4Auth(credentials, "ecs", region)
        self.conn: http.client.HTTPConnection | None = None

    def call(self, target: str, payload: dict[str, Any], timeout: float = 30.0
             ) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        request = AWSRequest("POST", self.url, data=body, headers={
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        self.signer.add_auth(request)
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.netloc, timeout=timeout)
        self.conn.timeout = timeout
        if self.conn.sock is not None:
            self.conn.sock.settimeout(timeout)
        try:
            self.conn.request("POST", "/", body=body, headers=dict(request.headers.items()))
            response = self.conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            self.close()  # a fresh connection on the next call
            raise
        doc = json.loads(answer) if answer else {}
        if response.status != 200:
            raise RemoteError(response.status, doc)
        return dict(doc)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def submit_report(channel: SignedChannel, instance_arn: str, report: dict[str, Any]) -> None:
    """Deliver one task state report for `instance_arn` as `galley agent` does: through
    SubmitTaskStateChange / SubmitContainerStateChange (`remote.wire_calls`). `report` is the
    agent's report shape (`control.task_docs.apply_report`): taskArn, lastStatus, containers..."""
    for target, payload in wire_calls(instance_arn, report):
        channel.call(target, payload)


@dataclass
class SimulatedInstance:
    """One container instance: what it offers and what it has reported of its tasks."""

    cpu: int
    memory: int
    attributes: dict[str, str] = field(default_factory=dict)
    arn: str = ""
    reported: dict[str, str] = field(default_factory=dict)  # task ARN -> last status reported
    next_port: int = DYNAMIC_PORTS[0]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def registration(self, cluster: str) -> dict[str, Any]:
        return {
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": self.cpu},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": self.memory},
            ],
            "versionInfo": {"agentVersion": "simulated", "dockerVersion": "DockerVersion: none"},
            "attributes": [{"name": k, "value": v} for k, v in self.attributes.items()],
        }

    def host_port(self) -> int:
        port = self.next_port
        self.next_port = port + 1 if port < DYNAMIC_PORTS[1] else DYNAMIC_PORTS[0]
        return port


def simulated_reports(instance: SimulatedInstance, task: dict[str, Any]) -> list[dict[str, Any]]:
    """The reports a real agent would send next for `task` ({taskArn, desiredStatus, spec}),
    given what this instance already reported; [] when there is nothing new to say."""
    arn = task["taskArn"]
    seen = instance.reported.get(arn)
    at = time.time()
    if task["desiredStatus"] == "STOPPED":
        if seen == "STOPPED":
            return []  # said (or queued); a failed delivery is forgotten and said again
        containers = [{"name": c["name"], "lastStatus": "STOPPED", "exitCode": 0}
                      for c in task["spec"]["containers"]]
        out: list[dict[str, Any]] = []
        if seen is not None:
            out.append({"taskArn": arn, "lastStatus": "STOPPING"})
        out.append({"taskArn": arn, "lastStatus": "STOPPED", "executionStoppedAt": at,
                    "containers": containers})
        return out
    if seen == "RUNNING":
        return []
    containers = []
    for c in task["spec"]["containers"]:
        bindings = []
        if task["spec"].get("networkMode", "bridge") in ("bridge", "host"):
            for p in c.get("portMappings", []):
                host = p.get("hostPort") or (p.get("containerPort")
                                             if task["spec"].get("networkMode") == "host"
                                             else instance.host_port())
                bindings.append({"bindIP": "0.0.0.0", "containerPort": p.get("containerPort"),
                                 "hostPort": host, "protocol": p.get("protocol", "tcp")})
        containers.append({"name": c["name"], "lastStatus": "RUNNING",
                           "runtimeId": secrets.token_hex(32), "healthStatus": "UNKNOWN",
                           "networkBindings": bindings})
    return [{"taskArn": arn, "lastStatus": "PENDING", "pullStartedAt": at, "pullStoppedAt": at},
            {"taskArn": arn, "lastStatus": "RUNNING", "containers": containers}]


@dataclass
class FleetStats:
    polls: int = 0
    reports: int = 0
    sweeps: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, polls: int = 0, reports: int = 0, errors: int = 0) -> None:
        with self.lock:
            self.polls += polls
            self.reports += reports
            self.errors += errors


class SimulatedFleet:
    """Many simulated container instances over a few signed connections."""

    def __init__(self, endpoint: str, region: str, credentials: Credentials, cluster: str,
                 instances: list[SimulatedInstance], *, workers: int = 4, pollers: int = 2,
                 heartbeat: float = 15.0) -> None:
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.cluster = cluster
        self.instances = instances
        self.workers = max(1, workers)  # connections delivering reports
        self.pollers = max(1, pollers)  # connections polling during a sweep
        self.heartbeat = heartbeat
        self.stats = FleetStats()
        self._dirty = threading.Event()
        self._reports: queue.Queue[tuple[SimulatedInstance, list[dict[str, Any]]]] = \
            queue.Queue()

    def channel(self) -> SignedChannel:
        return SignedChannel(self.endpoint, self.region, self.credentials)

    # ---- registration ---------------------------------------------------------------------

    def register(self) -> None:
        """RegisterContainerInstance for every instance (a few in parallel)."""
        todo: queue.Queue[SimulatedInstance] = queue.Queue()
        for inst in self.instances:
            todo.put(inst)
        failures: list[BaseException] = []

        def worker() -> None:
            channel = self.channel()
            try:
                while not failures:
                    try:
                        inst = todo.get_nowait()
                    except queue.Empty:
                        return
                    answer = channel.call(ECS_TARGET + "RegisterContainerInstance",
                                          inst.registration(self.cluster))
                    inst.arn = answer["containerInstance"]["containerInstanceArn"]
            except BaseException as e:
                failures.append(e)
            finally:
                channel.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch, sweep and report until `stop` is set."""
        threads = [threading.Thread(target=self._watch, args=(stop,), name="sim-watch",
                                    daemon=True)]
        threads += [threading.Thread(target=self._report_loop, args=(stop,),
                                     name=f"sim-report-{n}", daemon=True)
                    for n in range(self.workers)]
        for t in threads:
            t.start()
        channels = [self.channel() for _ in range(self.pollers)]
        try:
            while not stop.is_set():
                self._dirty.clear()
                self._sweep(channels, stop)
                self.stats.sweeps += 1
                self._dirty.wait(self.heartbeat)
        finally:
            for c in channels:
                c.close()

    def _watch(self, stop: threading.Event) -> None:
        """Long-poll one instance only to learn when desired state changes anywhere."""
        channel = self.channel()
        version = -1
        first = self.instances[0].arn
        while not stop.is_set():
            try:
                answer = channel.call(AGENT_TARGET + "PollTasks", {
                    "containerInstanceArn": first, "version": version,
                    "waitSeconds": WATCH_WAIT_SECONDS}, timeout=WATCH_WAIT_SECONDS + 30)
                if answer["version"] != version:
                    version = answer["version"]
                    self._dirty.set()
            except Exception as e:  # the server restarting, a timeout: try again shortly
                log.warning("watch poll failed: %s", e)
                self.stats.add(errors=1)
                stop.wait(1.0)
        channel.close()

    def _sweep(self, channels: list[SignedChannel], stop: threading.Event) -> None:
        """Poll every instance once (a few in parallel); queue the reports the answers call
        for."""
        todo: queue.Queue[SimulatedInstance] = queue.Queue()
        for inst in self.instances:
            todo.put(inst)

        def worker(channel: SignedChannel) -> None:
            while not stop.is_set():
                try:
                    inst = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    self.poll(channel, inst)
                except Exception as e:
                    log.warning("poll for %s failed: %s", inst.arn.rsplit("/", 1)[-1], e)
                    self.stats.add(errors=1)
                    self._dirty.set()  # again in the next sweep

        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in channels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def poll(self, channel: SignedChannel, inst: SimulatedInstance) -> None:
        """One poll for one instance (its heartbeat too); queue what there is to report."""
        answer = channel.call(AGENT_TARGET + "PollTasks", {
            "containerInstanceArn": inst.arn, "version": -1, "waitSeconds": 0})
        self.stats.add(polls=1)
        with inst.lock:
            listed = set()
            for task in answer["tasks"]:
                listed.add(task["taskArn"])
                reports = simulated_reports(inst, task)
                if reports:
                    # Said once queued: the next sweep must not queue the same reports again.
                    inst.reported[task["taskArn"]] = reports[-1]["lastStatus"]
                    self._reports.put((inst, reports))
            # Tasks no longer listed are STOPPED on the server: forget them.
            for arn in [a for a in inst.reported if a not in listed]:
                del inst.reported[arn]

    def _report_loop(self, stop: threading.Event) -> None:
        """Deliver queued reports, each task's in order, over one connection."""
        channel = self.channel()
        while not stop.is_set():
            try:
                inst, reports = self._reports.get(timeout=0.5)
            except queue.Empty:
                continue
            for report in reports:
                try:
                    submit_report(channel, inst.arn, report)
                    self.stats.add(reports=1)
                except RemoteError as e:
                    if e.status < 500:  # refused (e.g. the task is gone): nothing to retry
                        log.warning("report for %s refused: %s", report["taskArn"], e)
                        continue
                    self._unsaid(inst, report, e)
                    break
                except Exception as e:
                    self._unsaid(inst, report, e)
                    break
        channel.close()

    def _unsaid(self, inst: SimulatedInstance, report: dict[str, Any], error: Exception) -> None:
        log.warning("report for %s failed: %s", report["taskArn"], error)
        self.stats.add(errors=1)
        with inst.lock:
            inst.reported.pop(report["taskArn"], None)  # the next sweep says it again
        self._dirty.set()

    def backlog(self) -> int:
        """Task reports queued and not yet delivered."""
        return self._reports.qsize()


# ---- instance shapes and the command line -------------------------------------------------

# (CPU units, MiB): a mix of instance sizes, so binpack and spread pick different instances.
SHAPES = ((2048, 4096), (4096, 8192), (4096, 16384), (8192, 16384), (8192, 32768))
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def make_instances(count: int, seed: int = 1) -> list[SimulatedInstance]:
    """`count` instances of mixed shapes over three availability zones (reproducible)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        cpu, memory = rng.choice(SHAPES)
        out.append(SimulatedInstance(cpu=cpu, memory=memory, attributes={
            "ecs.availability-zone": ZONES[n % len(ZONES)],
            "ecs.instance-type": f"sim.{cpu // 1024}x{memory // 1024}",
            "ecs.cpu-architecture": "x86_64"}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m galley.agent.simulated",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cluster", default="default")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="connections for reports")
    parser.add_argument("--pollers", type=int, default=2, help="connections for polls")
    parser.add_argument("--heartbeat", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        sys.exit("simulated: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    fleet = SimulatedFleet(args.endpoint, region, Credentials(key, secret), args.cluster,
                           make_instances(args.instances, args.seed), workers=args.workers,
                           pollers=args.pollers, heartbeat=args.heartbeat)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    fleet.register()
    print(f"registered {len(fleet.instances)}", flush=True)
    runner = threading.Thread(target=fleet.run, args=(stop,), name="sim", daemon=True)
    runner.start()
    while not stop.wait(1.0):
        pass
    s = fleet.stats
    print(f"stopped: {s.sweeps} sweeps, {s.polls} polls, {s.reports} reports, "
          f"{s.errors} errors", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
