"""`GalleyAgent_v1`: what agents need beyond ECS's own agent calls, signed like any ECS call.

- PollTasks: the desired-state channel (long poll; doubles as the heartbeat). Agents find it
  with ECS's DiscoverPollEndpoint.
- SubmitTaskHealthAndNetwork: the part of a task's state that ECS's SubmitTaskStateChange and
  SubmitContainerStateChange have no members for: container healthStatus, the task's
  connectivity and connectivityAt, and the awsvpc attachment's details (ENI id, MAC address,
  private IP and DNS name). Amazon's agent hands these to ECS over its ACS/TACS channels, which
  Galley does not speak; everything ECS's shapes can carry goes through them instead.
"""

from __future__ import annotations

from typing import Any

from galley.api.server import Service
from galley.app import Galley
from galley.control import agent_channel, state_changes
from galley.errors import ApiError

TARGET_PREFIX = "GalleyAgent_v1"

# operation -> required members and their JSON types
_SHAPES: dict[str, dict[str, type]] = {
    "PollTasks": {"containerInstanceArn": str},
    "SubmitTaskHealthAndNetwork": {"containerInstanceArn": str, "taskArn": str},
}


class AgentModel:
    """Just enough of a service model for the router: a prefix, names and validation."""

    target_prefix = TARGET_PREFIX
    operation_names = frozenset(_SHAPES)

    def validate_input(self, operation: str, params: Any) -> None:
        if not isinstance(params, dict):
            raise ApiError("SerializationException", "The request body must be a JSON object.")
        for name, kind in _SHAPES[operation].items():
            if not isinstance(params.get(name), kind):
                raise ApiError("InvalidParameterException",
                               f"1 validation error detected: Value at '{name}' failed to "
                               f"satisfy constraint: Member must be a {kind.__name__}")


def agent_service(app: Galley) -> Service:
    def bind(op: Any) -> Any:
        return lambda req, params: op(app, req.scope, params)

    return Service(AgentModel(), {  # type: ignore[arg-type]
        "PollTasks": bind(agent_channel.poll_tasks),
        "SubmitTaskHealthAndNetwork": bind(state_changes.submit_health_and_network),
    })
