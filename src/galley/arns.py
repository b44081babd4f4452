"""ECS ARNs: building them, and resolving the names-or-ARNs users pass in."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:([a-z0-9-]+):(\d{12}):(.+)$")


@dataclass(frozen=True)
class Scope:
    """Where a request lives: the region it was signed for and the account Galley serves."""

    region: str
    account: str
    # The URL the client reached Galley at (from its Host header), for DiscoverPollEndpoint.
    endpoint: str = field(default="", compare=False)

    def arn(self, resource: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:{resource}"

    def cluster_arn(self, name: str) -> str:
        return self.arn(f"cluster/{name}")

    def task_definition_arn(self, family: str, revision: int) -> str:
        return self.arn(f"task-definition/{family}:{revision}")

    def task_arn(self, cluster: str, task_id: str) -> str:
        return self.arn(f"task/{cluster}/{task_id}")

    def container_arn(self, cluster: str, task_id: str, container_id: str) -> str:
        return self.arn(f"container/{cluster}/{task_id}/{container_id}")

    def service_arn(self, cluster: str, name: str) -> str:
        return self.arn(f"service/{cluster}/{name}")

    def container_instance_arn(self, cluster: str, instance_id: str) -> str:
        return self.arn(f"container-instance/{cluster}/{instance_id}")

    def instance_arn_for(self, cluster: str, ref: str) -> str:
        """The ARN a container instance reference (its id or its ARN) names in `cluster`."""
        return ref if is_arn(ref) else self.container_instance_arn(cluster, ref)


def new_id() -> str:
    """A task or container-instance id: 32 lowercase hex characters, as ECS makes them."""
    return secrets.token_hex(16)


def parse(arn: str) -> tuple[str, str, str] | None:
    """(region, account, resource) of an ECS ARN, or None when it is not one."""
    m = _ARN.match(arn)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def is_arn(value: str) -> bool:
    return value.startswith("arn:")


def resource_kind(arn: str) -> str | None:
    """'cluster', 'task', 'task-definition', ... for an ECS ARN."""
    p = parse(arn)
    return p[2].split("/", 1)[0] if p else None


def last_part(value: str) -> str:
    """The name or id at the end of a name-or-ARN (`cluster/x` -> `x`)."""
    if is_arn(value):
        p = parse(value)
        if p:
            return p[2].rsplit("/", 1)[-1]
    return value
