"""Task placement: constraints, strategies, failure reasons, scale-in order."""

from __future__ import annotations

import copy
import random
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galley.scheduler.placement import (
    REASON_DISTINCT,
    REASON_MEMBER_OF,
    Candidate,
    Placement,
    closest_failure,
    compile_strategies,
    place_tasks,
    scale_in_order,
)
from galley.scheduler.resources import Capacity, Need

GROUP = "service:web"
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
SPREAD_AZ = {"type": "spread", "field": "attribute:ecs.availability-zone"}
BINPACK_MEM = {"type": "binpack", "field": "memory"}
BINPACK_CPU = {"type": "binpack", "field": "cpu"}
ECS_REASONS = {"AGENT", "DRAINING", "INACTIVE", "RESOURCE:CPU", "RESOURCE:MEMORY",
               "RESOURCE:PORTS_TCP", "RESOURCE:PORTS_UDP", REASON_MEMBER_OF, REASON_DISTINCT}


def cand(arn: str, az: str = "us-east-1a", cpu: int = 1024, mem: int = 2048, *,
         status: str = "ACTIVE", agent: bool = True, itype: str = "t3.micro",
         groups: dict[str, int] | None = None, ports: set[int] | None = None,
         host: str | None = None) -> Candidate:
    return Candidate(
        arn=arn, status=status, agent_connected=agent,
        capacity=Capacity(cpu=cpu, memory=mem, tcp_ports=set(ports or ())),
        attributes={"ecs.availability-zone": az, "ecs.instance-type": itype},
        host=host if host is not None else f"i-{arn}", groups=Counter(groups or {}))


def attr_equals(expression: str, c: Candidate) -> bool:
    """A stand-in for the query language: only `attribute:<name> == <value>`."""
    subject, _, value = expression.partition(" == ")
    return c.attributes.get(subject.removeprefix("attribute:")) == value


def place(cands: list[Candidate], count: int, strategies: list[dict[str, Any]] | None = None,
          constraints: list[dict[str, Any]] | None = None, need: Need | None = None,
          **kw: Any) -> Placement:
    return place_tasks(cands, need or Need(cpu=128, memory=256), count, GROUP,
                       strategies or [], constraints or [], **kw)


# ---------------------------------------------------------------------------------------------
# Strategies (table-driven)

STRATEGY_CASES = [
    pytest.param(  # default: spread AZ, then instanceId
        [cand("a1", "us-east-1a"), cand("a2", "us-east-1a"), cand("b1", "us-east-1b"),
         cand("c1", "us-east-1c")], 4, [],
        {"a1": 1, "a2": 1, "b1": 1, "c1": 1}, id="default-spread-az-then-instance"),
    pytest.param(
        [cand("a1", "us-east-1a", groups={GROUP: 2}), cand("b1", "us-east-1b"),
         cand("c1", "us-east-1c")], 2, [SPREAD_AZ],
        {"b1": 1, "c1": 1}, id="spread-counts-existing-group-tasks"),
    pytest.param(
        [cand("a1", "us-east-1a", groups={"service:other": 5}), cand("b1", "us-east-1b")], 2,
        [SPREAD_AZ], {"a1": 1, "b1": 1}, id="spread-ignores-other-groups"),
    pytest.param(
        [cand("x", mem=4096), cand("y", mem=1024), cand("z", mem=2048)], 3, [BINPACK_MEM],
        {"y": 3}, id="binpack-memory-least-remaining-first"),
    pytest.param(
        [cand("x", mem=4096), cand("y", mem=300), cand("z", mem=2048)], 2, [BINPACK_MEM],
        {"y": 1, "z": 1}, id="binpack-memory-moves-on-when-full"),
    pytest.param(
        [cand("x", cpu=2048), cand("y", cpu=512), cand("z", cpu=100)], 2, [BINPACK_CPU],
        {"y": 2}, id="binpack-cpu-skips-instances-that-do-not-fit"),
    pytest.param(
        [cand("x", itype="m5"), cand("y", itype="m5"), cand("z", itype="c5")], 2,
        [{"type": "spread", "field": "attribute:ecs.instance-type"}],
        {"x": 1, "z": 1}, id="spread-custom-attribute"),
    pytest.param(
        [cand("x", host="i-1"), cand("y", host="i-1"), cand("z", host="i-2")], 2,
        [{"type": "spread", "field": "host"}], {"x": 1, "z": 1}, id="spread-host"),
    pytest.param(
        [cand("x"), cand("y", groups={GROUP: 1}), cand("z")], 3,
        [{"type": "spread", "field": "instanceId"}], {"x": 2, "z": 1}, id="spread-instance"),
    pytest.param(  # spread decides, binpack breaks ties inside the AZ
        [cand("a1", "us-east-1a", mem=4096), cand("a2", "us-east-1a", mem=1024),
         cand("b1", "us-east-1b", mem=8192), cand("b2", "us-east-1b", mem=2048)], 4,
        [SPREAD_AZ, BINPACK_MEM], {"a2": 2, "b2": 2}, id="spread-then-binpack"),
    pytest.param(
        [cand("x"), cand("y")], 2, [{"type": "BINPACK", "field": "MEMORY"}], {"x": 2},
        id="strategy-names-case-insensitive"),
]


@pytest.mark.parametrize(("cands", "count", "strategies", "expected"), STRATEGY_CASES)
def test_strategies(cands: list[Candidate], count: int, strategies: list[dict[str, Any]],
                    expected: dict[str, int]) -> None:
    result = place(cands, count, strategies)
    assert Counter(result.chosen) == expected
    assert result.failures == []


def test_placement_mutates_capacity_and_groups() -> None:
    c = cand("x", cpu=1024, mem=2048)
    place([c], 2, need=Need(cpu=100, memory=200, tcp_ports=frozenset({8080})),
          constraints=[])
    assert (c.capacity.cpu, c.capacity.memory) == (1024 - 100, 2048 - 200)
    assert c.groups[GROUP] == 1 and 8080 in c.capacity.tcp_ports


def test_count_zero_places_nothing() -> None:
    assert place([cand("x")], 0) == Placement([], [])


def test_random_strategy_is_seeded() -> None:
    cands = [cand(f"i{n}", mem=100_000) for n in range(20)]
    runs = [place(copy.deepcopy(cands), 30, [{"type": "random"}], rng=random.Random(7)).chosen
            for _ in range(2)]
    assert runs[0] == runs[1] and len(set(runs[0])) > 5


# ---------------------------------------------------------------------------------------------
# Constraints and failures

FAILURE_CASES = [
    pytest.param(cand("x", status="DRAINING"), Need(1, 1), "DRAINING", id="draining"),
    pytest.param(cand("x", status="INACTIVE"), Need(1, 1), "INACTIVE", id="inactive"),
    pytest.param(cand("x", agent=False), Need(1, 1), "AGENT", id="agent"),
    pytest.param(cand("x", cpu=10), Need(cpu=20), "RESOURCE:CPU", id="cpu"),
    pytest.param(cand("x", mem=10), Need(memory=20), "RESOURCE:MEMORY", id="memory"),
    pytest.param(cand("x", ports={80}), Need(1, 1, frozenset({80})), "RESOURCE:PORTS_TCP",
                 id="ports"),
]


@pytest.mark.parametrize(("c", "need", "reason"), FAILURE_CASES)
def test_failure_reasons(c: Candidate, need: Need, reason: str) -> None:
    result = place([c], 1, need=need)
    assert result.chosen == [] and result.failures == [{"arn": "x", "reason": reason}]


def test_distinct_instance_counts_tasks_placed_in_this_call() -> None:
    cands = [cand("x"), cand("y"), cand("z", groups={GROUP: 1})]
    result = place(cands, 5, constraints=[{"type": "distinctInstance"}])
    assert sorted(result.chosen) == ["x", "y"]
    assert {f["reason"] for f in result.failures} == {REASON_DISTINCT}
    assert len(result.failures) == 3


def test_member_of_uses_the_matcher() -> None:
    cands = [cand("x", itype="t3.micro"), cand("y", itype="g4dn.xlarge")]
    constraint = {"type": "memberOf", "expression": "attribute:ecs.instance-type == g4dn.xlarge"}
    result = place(cands, 2, constraints=[constraint], member_of=attr_equals)
    assert result.chosen == ["y", "y"] and result.failures == []
    blocked = place([cand("z")], 1, constraints=[constraint], member_of=attr_equals)
    assert blocked.failures == [{"arn": "z", "reason": REASON_MEMBER_OF}]


def test_ports_allow_one_task_per_instance() -> None:
    need = Need(cpu=1, memory=1, tcp_ports=frozenset({8080}))
    result = place([cand("x"), cand("y")], 3, need=need)
    assert sorted(result.chosen) == ["x", "y"]
    assert [f["reason"] for f in result.failures] == ["RESOURCE:PORTS_TCP"] * 2


def test_failures_list_the_closest_instance_first() -> None:
    cands = [cand("agent", agent=False), cand("drain", status="DRAINING"),
             cand("far", cpu=10, mem=10), cand("near", cpu=1000, mem=2000),
             cand("attr", itype="m5")]
    constraint = {"type": "memberOf", "expression": "attribute:ecs.instance-type == t3.micro"}
    result = place(cands, 1, constraints=[constraint], member_of=attr_equals,
                   need=Need(cpu=1024, memory=2048))
    assert [f["arn"] for f in result.failures] == ["near", "far", "attr", "agent", "drain"]
    assert closest_failure(result) == {"arn": "near", "reason": "RESOURCE:CPU"}


def test_partial_placement_reports_failures() -> None:
    result = place([cand("x", mem=600)], 3, need=Need(memory=256))
    assert result.chosen == ["x", "x"]
    assert result.failures == [{"arn": "x", "reason": "RESOURCE:MEMORY"}]


@pytest.mark.parametrize(("strategies", "constraints"), [
    ([{"type": "pack"}], []),
    ([{"type": "binpack", "field": "disk"}], []),
    ([{"type": "spread", "field": "zone"}], []),
    ([{"type": "spread", "field": "attribute:"}], []),
    ([{"type": "random"}] * 6, []),
    ([], [{"type": "memberOf"}]),
    ([], [{"type": "memberOf", "expression": "agentConnected == true"}]),  # no matcher
    ([], [{"type": "distinctInstance", "expression": "x"}]),
    ([], [{"type": "sameHost"}]),
])
def test_malformed_input_raises(strategies: list[dict[str, Any]],
                                constraints: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        place([cand("x")], 1, strategies, constraints)


def test_compile_default_strategies() -> None:
    assert compile_strategies([]) == [("attribute", "ecs.availability-zone"), ("instance", "")]


# ---------------------------------------------------------------------------------------------
# Scale-in


def test_scale_in_binpack_stops_where_most_is_left() -> None:
    cands = [cand("x", mem=100), cand("y", mem=3000), cand("z", mem=1000)]
    order = scale_in_order(cands, {"x": 1, "y": 1, "z": 2}, [BINPACK_MEM], need=Need(memory=500))
    assert order == ["y", "z", "z", "x"]


def test_scale_in_spread_keeps_azs_balanced() -> None:
    cands = [cand("a1", "us-east-1a"), cand("a2", "us-east-1a"), cand("b1", "us-east-1b")]
    order = scale_in_order(cands, {"a1": 2, "a2": 1, "b1": 2, "gone": 1}, [])
    assert order[0] == "gone"
    counts = {"us-east-1a": 3, "us-east-1b": 2}
    for arn in order[1:]:
        az = next(c.attributes["ecs.availability-zone"] for c in cands if c.arn == arn)
        assert counts[az] == max(counts.values())
        counts[az] -= 1
    assert Counter(order) == {"a1": 2, "a2": 1, "b1": 2, "gone": 1}


def test_scale_in_does_not_mutate_candidates() -> None:
    cands = [cand("x", mem=100)]
    scale_in_order(cands, {"x": 2}, [BINPACK_MEM], need=Need(memory=50))
    assert cands[0].capacity.memory == 100 and not cands[0].groups


# ---------------------------------------------------------------------------------------------
# Properties

STRATEGY_CHOICES = [[], [SPREAD_AZ], [BINPACK_MEM], [BINPACK_CPU], [{"type": "random"}],
                    [SPREAD_AZ, BINPACK_CPU], [{"type": "spread", "field": "instanceId"}]]


@st.composite
def clusters(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(1, 12))
    return [cand(f"i{k}", draw(st.sampled_from(AZS)), draw(st.integers(0, 4096)),
                 draw(st.integers(0, 8192)),
                 status=draw(st.sampled_from(["ACTIVE"] * 4 + ["DRAINING"])),
                 agent=draw(st.booleans() | st.just(True)),
                 groups={GROUP: draw(st.integers(0, 2))})
            for k in range(n)]


needs = st.builds(Need, cpu=st.integers(0, 1024), memory=st.integers(1, 2048))


@settings(max_examples=200, deadline=None)
@given(clusters(), needs, st.integers(0, 40), st.sampled_from(STRATEGY_CHOICES),
       st.booleans(), st.integers(0, 2**32))
def test_never_overcommits_and_respects_distinct(
        cands: list[Candidate], need: Need, count: int, strategies: list[dict[str, Any]],
        distinct: bool, seed: int) -> None:
    before = {c.arn: (c.capacity.cpu, c.capacity.memory, c.groups[GROUP]) for c in cands}
    constraints = [{"type": "distinctInstance"}] if distinct else []
    result = place(cands, count, strategies, constraints, need, rng=random.Random(seed))
    placed = Counter(result.chosen)
    assert len(result.chosen) <= count
    for c in cands:
        cpu, mem, existing = before[c.arn]
        n = placed[c.arn]
        assert n * need.cpu <= cpu and n * need.memory <= mem
        if n:
            assert c.status == "ACTIVE" and c.agent_connected
        if distinct:
            assert n <= 1 and not (n and existing)
    if len(result.chosen) < count:
        assert sorted(f["arn"] for f in result.failures) == sorted(before)
        assert {f["reason"] for f in result.failures} <= ECS_REASONS
    else:
        assert result.failures == []


@settings(max_examples=200, deadline=None)
@given(clusters(), needs, st.integers(1, 40))
def test_spread_over_azs_is_balanced_among_azs_that_fit(
        cands: list[Candidate], need: Need, count: int) -> None:
    for c in cands:
        c.groups.clear()
    result = place(cands, count, [SPREAD_AZ], need=need)
    per_az = Counter(c.attributes["ecs.availability-zone"] for c in cands
                     for _ in range(Counter(result.chosen)[c.arn]))
    top = max(per_az.values(), default=0)
    still_fit = {c.attributes["ecs.availability-zone"] for c in cands
                 if c.status == "ACTIVE" and c.agent_connected
                 and c.capacity.shortfall(need) is None}
    for az in still_fit:
        assert top - per_az[az] <= 1


@settings(max_examples=200, deadline=None)
@given(clusters(), needs, st.integers(1, 15), st.sampled_from(["cpu", "memory"]))
def test_binpack_fills_the_fullest_fitting_instance_first(
        cands: list[Candidate], need: Need, count: int, fld: str) -> None:
    for _ in range(count):
        fits = [c for c in cands if c.status == "ACTIVE" and c.agent_connected
                and c.capacity.shortfall(need) is None]
        result = place(cands, 1, [{"type": "binpack", "field": fld}], need=need)
        if not fits:
            assert result.chosen == [] and result.failures
            return
        least = min(getattr(c.capacity, fld) for c in fits)
        first = next(c for c in fits if getattr(c.capacity, fld) == least)
        assert result.chosen == [first.arn]


@settings(max_examples=100, deadline=None)
@given(clusters(), needs, st.integers(0, 30), st.sampled_from(STRATEGY_CHOICES),
       st.integers(0, 2**32))
def test_seeded_rng_is_deterministic(cands: list[Candidate], need: Need, count: int,
                                     strategies: list[dict[str, Any]], seed: int) -> None:
    a = place(copy.deepcopy(cands), count, strategies, need=need, rng=random.Random(seed))
    b = place(copy.deepcopy(cands), count, strategies, need=need, rng=random.Random(seed))
    assert a == b


@settings(max_examples=100, deadline=None)
@given(clusters(), st.sampled_from(STRATEGY_CHOICES), st.integers(0, 2**32))
def test_scale_in_order_covers_every_task(cands: list[Candidate],
                                          strategies: list[dict[str, Any]], seed: int) -> None:
    tasks = {c.arn: c.groups[GROUP] for c in cands}
    order = scale_in_order(cands, tasks, strategies, need=Need(1, 1), rng=random.Random(seed))
    assert Counter(order) == +Counter(tasks)


# ---------------------------------------------------------------------------------------------
# Speed


def test_speed_10k_tasks_over_1k_instances() -> None:
    cands = [cand(f"i{k}", AZS[k % 3], cpu=8192, mem=32768) for k in range(1000)]
    need = Need(cpu=256, memory=512)
    rng = random.Random(1)
    start = time.perf_counter()
    for _ in range(1000):
        result = place_tasks(cands, need, 10, GROUP, [], [], rng=rng)
        assert len(result.chosen) == 10
    elapsed = time.perf_counter() - start
    print(f"\nplacement: 10,000 tasks over 1,000 instances in {elapsed:.3f}s "
          f"({10_000 / elapsed:,.0f} tasks/s)")
    per_az = Counter(c.attributes["ecs.availability-zone"] for c in cands
                     for _ in range(c.groups[GROUP]))
    assert sum(per_az.values()) == 10_000 and max(per_az.values()) - min(per_az.values()) <= 1
    assert max(c.groups[GROUP] for c in cands) - min(c.groups[GROUP] for c in cands) <= 2
