"""The control plane over the network, for `galley agent` on another host (or process).

Registration uses the ECS API (RegisterContainerInstance); desired tasks and reports use the
`GalleyAgent_v1` channel. Every request is SigV4-signed with the agent's AWS credentials.
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

log = logging.getLogger("galley.agent")


class RemoteError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('__type')}: {body.get('message')}")
        self.status = status
        self.code = body.get("__type", "")


class RemoteControlPlane:
    """ControlPlane for one container instance, over HTTP."""

    def __init__(self, endpoint: str, region: str, instance_arn: str = "",
                 session: botocore.session.Session | None = None) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.region = region
        self.instance_arn = instance_arn
        self.botocore = session or botocore.session.get_session()
        credentials = self.botocore.get_credentials()
        if credentials is None:
            raise SystemExit("galley agent: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY to the pair `galley up` printed).")
        self.credentials = credentials
        self.http = requests.Session()
        self._tasks: list[dict[str, Any]] | None = None

    def ecs(self) -> Any:
        """A botocore ECS client pointed at Galley."""
        return self.botocore.create_client("ecs", region_name=self.region,
                                           endpoint_url=self.endpoint)

    def call(self, target: str, payload: dict[str, Any], timeout: float = 30.0
             ) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        request = AWSRequest(method="POST", url=self.endpoint, data=body, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
        SigV4Auth(self.credentials.get_frozen_credentials(), "ecs", self.region).add_auth(request)
        response = self.http.post(self.endpoint, data=body, headers=dict(request.headers),
                                  timeout=timeout)
        doc = response.json() if response.content else {}
        if response.status_code != 200:
            raise RemoteError(response.status_code, doc)
        return dict(doc)

    def _poll(self, version: int, wait: float) -> int:
        result = self.call("GalleyAgent_v1.PollTasks", {
            "containerInstanceArn": self.instance_arn, "version": version,
            "waitSeconds": wait}, timeout=wait + 30)
        self._tasks = result["tasks"]
        return int(result["version"])

    def desired_tasks(self) -> list[dict[str, Any]]:
        if self._tasks is None:
            self._poll(-1, 0)
        return list(self._tasks or [])

    def wait_for_change(self, since: int, timeout: float) -> int:
        return self._poll(since, timeout)

    def report(self, report: dict[str, Any]) -> None:
        """Deliver a report, retrying through short outages (reports are idempotent)."""
        delay = 0.2
        for attempt in range(40):
            try:
                self.call("GalleyAgent_v1.ReportTaskState",
                          {"containerInstanceArn": self.instance_arn, "report": report})
                return
            except (requests.RequestException, RemoteError) as e:
                if isinstance(e, RemoteError) and e.status < 500:
                    log.warning("report for %s refused: %s", report.get("taskArn"), e)
                    return
                log.warning("report failed (attempt %d): %s", attempt + 1, e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise RuntimeError("control plane unreachable; report not delivered")
