"""The control plane over the network, for `galley agent` on another host (or process).

The agent speaks the ECS API like Amazon's own agent, signed with the agent's AWS credentials:

    start:    RegisterContainerInstance (cli.py), then DiscoverPollEndpoint: where to poll
    desired:  GalleyAgent_v1.PollTasks at that endpoint (long poll, doubles as the heartbeat)
    reports:  SubmitTaskStateChange (task status, containers, pull/execution times) or, for a
              container alone, SubmitContainerStateChange; plus, only when there is any,
              GalleyAgent_v1.SubmitTaskHealthAndNetwork for what ECS's shapes cannot carry
              (container health, connectivity, the awsvpc attachment's details)

`wire_calls` turns one agent report (the shape `control.task_docs.apply_report` folds in) into
those calls; it is pure, so any agent runtime (this one, the simulated fleet) reports the same.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from galley import arns

log = logging.getLogger("galley.agent")

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
AGENT_TARGET = "GalleyAgent_v1."
_TASK_TIMESTAMPS = ("pullStartedAt", "pullStoppedAt", "executionStoppedAt")
_EXTENSION_KEYS = ("connectivity", "connectivityAt", "attachment")
# report container key -> ContainerStateChange member
_CONTAINER_MEMBERS = {"name": "containerName", "lastStatus": "status", "runtimeId": "runtimeId",
                      "exitCode": "exitCode", "reason": "reason",
                      "networkBindings": "networkBindings", "imageDigest": "imageDigest"}


class RemoteError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('__type')}: {body.get('message')}")
        self.status = status
        self.code = body.get("__type", "")


def _cluster_of(arn: str) -> str | None:
    """The cluster name in a long task or container-instance ARN (kind/cluster/id)."""
    parsed = arns.parse(arn)
    if parsed is None or parsed[2].count("/") != 2:
        return None
    return parsed[2].split("/")[1]


def wire_calls(instance_arn: str, report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(X-Amz-Target, body) of each call that delivers `report` for the task on `instance_arn`.

    The Galley extension call goes first: the status change is what completes a step (a task
    is never shown RUNNING before its IP, nor STOPPED with its interface still attached).
    stopCode is not sent: ECS has no member for it and derives it from the reason, as Galley
    does. Every Submit* carries `containerInstance`, so the server refuses to change a task
    that is not this instance's (control/state_changes.py).
    """
    task = report["taskArn"]
    calls: list[tuple[str, dict[str, Any]]] = []
    extension = {key: report[key] for key in _EXTENSION_KEYS if report.get(key) is not None}
    health = [{"containerName": c["name"], "healthStatus": c["healthStatus"]}
              for c in report.get("containers", [])
              if c.get("healthStatus") not in (None, "UNKNOWN")]
    if health:
        extension["containers"] = health
    if extension:
        calls.append((AGENT_TARGET + "SubmitTaskHealthAndNetwork",
                      {"containerInstanceArn": instance_arn, "taskArn": task, **extension}))
    base: dict[str, Any] = {"cluster": _cluster_of(task) or _cluster_of(instance_arn),
                            "task": task, "containerInstance": instance_arn}
    base = {k: v for k, v in base.items() if v is not None}
    containers = [{member: c[key] for key, member in _CONTAINER_MEMBERS.items()
                   if c.get(key) is not None} for c in report.get("containers", [])]
    if "lastStatus" in report or any(report.get(k) is not None for k in _TASK_TIMESTAMPS):
        change = dict(base)
        if report.get("lastStatus"):
            change["status"] = report["lastStatus"]
        if report.get("stoppedReason"):
            change["reason"] = report["stoppedReason"]
        for key in _TASK_TIMESTAMPS:
            if report.get(key) is not None:
                change[key] = report[key]
        if containers:
            change["containers"] = containers
        calls.append((ECS_TARGET + "SubmitTaskStateChange", change))
    else:
        calls += [(ECS_TARGET + "SubmitContainerStateChange", {**base, **c}) for c in containers]
    return calls


def _as_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + "/"


class RemoteControlPlane:
    """ControlPlane for one container instance, over HTTP."""

    def __init__(self, endpoint: str, region: str, instance_arn: str = "",
                 session: botocore.session.Session | None = None) -> None:
        self.endpoint = _as_url(endpoint)
        self.region = region
        self.instance_arn = instance_arn
        self.botocore = session or botocore.session.get_session()
        credentials = self.botocore.get_credentials()
        if credentials is None:
            raise SystemExit("galley agent: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY to the pair `galley up` printed).")
        self.credentials = credentials
        self.http = requests.Session()
        self.poll_endpoint: str | None = None  # from DiscoverPollEndpoint, at the first poll
        self._tasks: list[dict[str, Any]] | None = None

    def ecs(self) -> Any:
        """A botocore ECS client pointed at Galley."""
        return self.botocore.create_client("ecs", region_name=self.region,
                                           endpoint_url=self.endpoint)

    def call(self, target: str, payload: dict[str, Any], timeout: float = 30.0,
             endpoint: str | None = None) -> dict[str, Any]:
        url = endpoint or self.endpoint
        body = json.dumps(payload).encode()
        request = AWSRequest(method="POST", url=url, data=body, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
        SigV4Auth(self.credentials.get_frozen_credentials(), "ecs", self.region).add_auth(request)
        response = self.http.post(url, data=body, headers=dict(request.headers),
                                  timeout=timeout)
        doc = response.json() if response.content else {}
        if response.status_code != 200:
            raise RemoteError(response.status_code, doc)
        return dict(doc)

    # ---- desired state ------------------------------------------------------------------------

    def discover_poll_endpoint(self) -> str:
        """Ask the API where the desired-state channel is (Amazon's agent asks for its ACS
        endpoint the same way); a server without DiscoverPollEndpoint means the API endpoint."""
        payload = {"containerInstance": self.instance_arn}
        cluster = _cluster_of(self.instance_arn)
        if cluster:
            payload["cluster"] = cluster
        try:
            answer = self.call(ECS_TARGET + "DiscoverPollEndpoint", payload)
        except RemoteError as e:
            if e.status >= 500:
                raise
            log.warning("DiscoverPollEndpoint refused (%s); polling %s", e, self.endpoint)
            return self.endpoint
        return _as_url(answer.get("endpoint") or self.endpoint)

    def _poll(self, version: int, wait: float) -> int:
        if self.poll_endpoint is None:
            self.poll_endpoint = self.discover_poll_endpoint()
            log.info("polling desired tasks at %s", self.poll_endpoint)
        endpoint = self.poll_endpoint
        try:
            result = self.call(AGENT_TARGET + "PollTasks", {
                "containerInstanceArn": self.instance_arn, "version": version,
                "waitSeconds": wait}, timeout=wait + 30, endpoint=endpoint)
        except requests.ConnectionError:
            # The server may name itself by an address this host cannot reach (it listens on
            # a wildcard address); the URL this agent was given does reach it.
            if endpoint != self.endpoint:
                log.warning("poll endpoint %s does not connect; polling %s instead", endpoint,
                            self.endpoint)
                self.poll_endpoint = self.endpoint
            raise
        self._tasks = result["tasks"]
        return int(result["version"])

    def desired_tasks(self) -> list[dict[str, Any]]:
        if self._tasks is None:
            self._poll(-1, 0)
        return list(self._tasks or [])

    def wait_for_change(self, since: int, timeout: float) -> int:
        return self._poll(since, timeout)

    # ---- reports ------------------------------------------------------------------------------

    def report(self, report: dict[str, Any]) -> None:
        """Deliver a report through the ECS calls `wire_calls` names, each retried through short
        outages (they are idempotent: the server only moves a task forward)."""
        for target, payload in wire_calls(self.instance_arn, report):
            self._deliver(target, payload, report["taskArn"])

    def _deliver(self, target: str, payload: dict[str, Any], task_arn: str) -> None:
        delay = 0.2
        for attempt in range(40):
            try:
                self.call(target, payload)
                return
            except (requests.RequestException, RemoteError) as e:
                if isinstance(e, RemoteError) and e.status < 500:
                    log.warning("%s for %s refused: %s", target, task_arn, e)
                    return
                log.warning("%s failed (attempt %d): %s", target, attempt + 1, e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise RuntimeError("control plane unreachable; report not delivered")
