"""Resource accounting for placement: what a task needs, what an instance has left (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Ports ECS reserves on every container instance [API PortMapping.hostPort].
DEFAULT_RESERVED_PORTS = (22, 2375, 2376, 51678, 51679)


@dataclass(frozen=True)
class Need:
    """What one task reserves on an instance."""

    cpu: int = 0
    memory: int = 0
    tcp_ports: frozenset[int] = frozenset()
    udp_ports: frozenset[int] = frozenset()


@dataclass
class Capacity:
    """An instance's registered resources minus what its tasks reserve."""

    cpu: int
    memory: int
    tcp_ports: set[int] = field(default_factory=set)  # ports in use or reserved
    udp_ports: set[int] = field(default_factory=set)

    def take(self, need: Need) -> None:
        self.cpu -= need.cpu
        self.memory -= need.memory
        self.tcp_ports |= need.tcp_ports
        self.udp_ports |= need.udp_ports

    def shortfall(self, need: Need) -> str | None:
        """The ECS failure reason if `need` does not fit, else None."""
        if need.cpu > self.cpu:
            return "RESOURCE:CPU"
        if need.memory > self.memory:
            return "RESOURCE:MEMORY"
        if need.tcp_ports & self.tcp_ports:
            return "RESOURCE:PORTS_TCP"
        if need.udp_ports & self.udp_ports:
            return "RESOURCE:PORTS_UDP"
        return None


def task_need(task_def: dict[str, Any], overrides: dict[str, Any] | None = None) -> Need:
    """Task-level cpu/memory when set, else the containers' sum; static host ports."""
    overrides = overrides or {}
    containers = task_def["containerDefinitions"]
    by_name = {o.get("name"): o for o in overrides.get("containerOverrides", [])}

    def value(c: dict[str, Any], key: str) -> int | None:
        return by_name.get(c["name"], {}).get(key, c.get(key))

    cpu = overrides.get("cpu") or task_def.get("cpu")
    memory = overrides.get("memory") or task_def.get("memory")
    cpu_units = int(cpu) if cpu else sum(value(c, "cpu") or 0 for c in containers)
    if memory:
        mem = int(memory)
    else:
        mem = sum(value(c, "memoryReservation") or value(c, "memory") or 0 for c in containers)
    tcp: set[int] = set()
    udp: set[int] = set()
    if task_def.get("networkMode", "bridge") in ("bridge", "host"):
        for c in containers:
            for p in c.get("portMappings", []):
                host_port = p.get("hostPort")
                if task_def.get("networkMode") == "host":
                    host_port = host_port or p.get("containerPort")
                if host_port:
                    (udp if p.get("protocol") == "udp" else tcp).add(int(host_port))
    return Need(cpu_units, mem, frozenset(tcp), frozenset(udp))


def registered_capacity(resources: Iterable[dict[str, Any]]) -> Capacity:
    """Capacity from ECS `registeredResources` (CPU, MEMORY, PORTS, PORTS_UDP)."""
    cap = Capacity(cpu=0, memory=0)
    for r in resources:
        name = r["name"]
        if name == "CPU":
            cap.cpu = int(r.get("integerValue", 0))
        elif name == "MEMORY":
            cap.memory = int(r.get("integerValue", 0))
        elif name == "PORTS":
            cap.tcp_ports |= {int(p) for p in r.get("stringSetValue", [])}
        elif name == "PORTS_UDP":
            cap.udp_ports |= {int(p) for p in r.get("stringSetValue", [])}
    return cap


def remaining_resources(cap: Capacity) -> list[dict[str, Any]]:
    """Capacity in ECS's `remainingResources` shape."""
    return [
        {"name": "CPU", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0,
         "integerValue": cap.cpu},
        {"name": "MEMORY", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0,
         "integerValue": cap.memory},
        {"name": "PORTS", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0,
         "integerValue": 0, "stringSetValue": [str(p) for p in sorted(cap.tcp_ports)]},
        {"name": "PORTS_UDP", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0,
         "integerValue": 0, "stringSetValue": [str(p) for p in sorted(cap.udp_ports)]},
    ]
