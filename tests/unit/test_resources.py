"""Placement resource accounting."""

from __future__ import annotations

from galley.scheduler.resources import (
    DEFAULT_RESERVED_PORTS,
    Capacity,
    Need,
    registered_capacity,
    remaining_resources,
    task_need,
)


def test_task_level_cpu_memory_win_over_containers() -> None:
    need = task_need({"cpu": "512", "memory": "1024", "containerDefinitions": [
        {"name": "a", "cpu": 100, "memory": 64}]})
    assert (need.cpu, need.memory) == (512, 1024)


def test_containers_sum_reservation_before_memory() -> None:
    need = task_need({"containerDefinitions": [
        {"name": "a", "cpu": 100, "memory": 256, "memoryReservation": 128},
        {"name": "b", "cpu": 28, "memory": 64}]})
    assert (need.cpu, need.memory) == (128, 192)


def test_overrides_change_the_need() -> None:
    need = task_need({"containerDefinitions": [{"name": "a", "memory": 64}]},
                     {"containerOverrides": [{"name": "a", "memory": 512}]})
    assert need.memory == 512


def test_static_host_ports_only_in_bridge_and_host() -> None:
    containers = [{"name": "a", "memory": 8, "portMappings": [
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 0},
        {"containerPort": 53, "hostPort": 53, "protocol": "udp"}]}]
    bridge = task_need({"networkMode": "bridge", "containerDefinitions": containers})
    assert bridge.tcp_ports == {8080} and bridge.udp_ports == {53}
    host = task_need({"networkMode": "host", "containerDefinitions": [
        {"name": "a", "memory": 8, "portMappings": [{"containerPort": 9000}]}]})
    assert host.tcp_ports == {9000}
    awsvpc = task_need({"networkMode": "awsvpc", "containerDefinitions": containers})
    assert awsvpc.tcp_ports == frozenset()


def test_shortfall_reasons_in_ecs_order() -> None:
    cap = Capacity(cpu=1024, memory=512, tcp_ports={22, 8080})
    assert cap.shortfall(Need(cpu=2048, memory=1024)) == "RESOURCE:CPU"
    assert cap.shortfall(Need(cpu=10, memory=1024)) == "RESOURCE:MEMORY"
    assert cap.shortfall(Need(tcp_ports=frozenset({8080}))) == "RESOURCE:PORTS_TCP"
    assert cap.shortfall(Need(cpu=1024, memory=512)) is None
    cap.take(Need(cpu=1000, memory=500, tcp_ports=frozenset({9000})))
    assert (cap.cpu, cap.memory, 9000 in cap.tcp_ports) == (24, 12, True)


def test_registered_and_remaining_round_trip() -> None:
    cap = registered_capacity([
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
        {"name": "PORTS", "type": "STRINGSET",
         "stringSetValue": [str(p) for p in DEFAULT_RESERVED_PORTS]}])
    remaining = {r["name"]: r for r in remaining_resources(cap)}
    assert remaining["CPU"]["integerValue"] == 2048
    assert remaining["MEMORY"]["integerValue"] == 4096
    assert remaining["PORTS"]["stringSetValue"] == ["22", "2375", "2376", "51678", "51679"]
