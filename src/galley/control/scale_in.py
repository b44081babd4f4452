"""Which of a service's tasks a scale-in stops first, on EC2/EXTERNAL instances.

ECS scales in by the service's placement strategies: binpack stops the task on the instance
that will have the most resources left, spread keeps the spread balanced. The order itself is
pure (`placement.scale_in_order`); this module feeds it the instances the tasks run on and turns
its answer (instance ARNs, best first) into a rank per task, newest first within an instance.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Connection, select

from galley.control import fleet
from galley.scheduler.placement import scale_in_order
from galley.scheduler.resources import task_need
from galley.store import schema as s

INST = s.container_instances


def ranks(conn: Connection, service: dict[str, Any], task_def: dict[str, Any],
          tasks: list[tuple[str, str, float]]) -> dict[str, int]:
    """task ARN -> rank (0 stops first) for (task ARN, instance ARN, createdAt) triples."""
    on: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for arn, instance, created in tasks:
        on[instance].append((created, arn))
    rows = conn.execute(select(INST).where(INST.c.arn.in_(list(on)))).all()
    order = scale_in_order(fleet.candidates(rows, fleet.usage(conn, rows)), Counter({i: len(ts) for i, ts in on.items()}),
                           service.get("placementStrategy", []), need=task_need(task_def))
    newest_first = {i: sorted(ts, reverse=True) for i, ts in on.items()}
    out: dict[str, int] = {}
    for rank, instance in enumerate(order):
        if newest_first.get(instance):
            out[newest_first[instance].pop(0)[1]] = rank
    return out
