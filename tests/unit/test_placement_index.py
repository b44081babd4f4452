"""Placement's indexes (instances grouped by value and key) against a plain reference ranking.

`place_tasks` keeps the eligible instances grouped by their first-level value or key so that a
placement does not scan every instance. These tests replay its choices against the definition:
each task goes to one of the instances that are best by every strategy level in turn, among the
instances where it fits; without an rng, the first of them in input order.
"""

from __future__ import annotations

import copy
import random
import time
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from galley.scheduler.placement import Candidate, compile_strategies, place_tasks, scale_in_order
from galley.scheduler.resources import Capacity, Need

GROUP = "service:web"
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
SPREAD_AZ = {"type": "spread", "field": "attribute:ecs.availability-zone"}
SPREAD_ID = {"type": "spread", "field": "instanceId"}
SPREAD_HOST = {"type": "spread", "field": "host"}
BINPACK_MEM = {"type": "binpack", "field": "memory"}
BINPACK_CPU = {"type": "binpack", "field": "cpu"}
STRATEGIES = [[], [SPREAD_AZ], [SPREAD_ID], [BINPACK_MEM], [BINPACK_CPU], [SPREAD_HOST],
              [SPREAD_AZ, SPREAD_ID], [SPREAD_AZ, BINPACK_MEM], [SPREAD_AZ, BINPACK_CPU],
              [BINPACK_MEM, SPREAD_AZ], [SPREAD_ID, BINPACK_CPU],
              [SPREAD_AZ, SPREAD_ID, BINPACK_MEM], [SPREAD_AZ, BINPACK_CPU, SPREAD_ID],
              [SPREAD_HOST, BINPACK_MEM]]


def best(cands: list[Candidate], need: Need, strategies: list[dict[str, Any]]) -> list[int]:
    """Indexes of the instances a task may go to next, in input order (the definition)."""
    surv = [i for i, c in enumerate(cands) if c.status == "ACTIVE" and c.agent_connected
            and c.capacity.shortfall(need) is None]
    for kind, name in compile_strategies(strategies):
        if not surv:
            break
        if kind in ("host", "attribute"):
            def value(c: Candidate, kind: str = kind, name: str = name) -> str | None:
                return (c.host or c.arn) if kind == "host" else c.attributes.get(name)
            per_value: Counter[str | None] = Counter()
            for c in cands:  # a value's count includes the tasks on instances that are full
                per_value[value(c)] += c.groups[GROUP]
            keys = [per_value[value(cands[i])] for i in surv]
        elif kind == "cpu":
            keys = [cands[i].capacity.cpu for i in surv]
        elif kind == "memory":
            keys = [cands[i].capacity.memory for i in surv]
        else:
            keys = [cands[i].groups[GROUP] for i in surv]
        low = min(keys)
        surv = [i for i, k in zip(surv, keys, strict=True) if k == low]
    return surv


@st.composite
def fleets(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(1, 25))
    shapes = draw(st.lists(st.tuples(st.sampled_from([512, 1024, 2048]),
                                     st.sampled_from([1024, 2048, 4096])), min_size=1,
                           max_size=3))
    out = []
    for k in range(n):
        cpu, mem = draw(st.sampled_from(shapes))
        out.append(Candidate(
            arn=f"i{k}", status=draw(st.sampled_from(["ACTIVE"] * 5 + ["DRAINING"])),
            agent_connected=draw(st.sampled_from([True] * 5 + [False])),
            capacity=Capacity(cpu=cpu - draw(st.sampled_from([0, 0, 256])), memory=mem),
            attributes={"ecs.availability-zone": draw(st.sampled_from(AZS))},
            host=f"h{draw(st.integers(0, 6))}",
            groups=Counter({GROUP: draw(st.integers(0, 3))})))
    return out


NEEDS = st.sampled_from([Need(256, 512), Need(128, 256), Need(0, 512), Need(512, 128)])


@settings(max_examples=300, deadline=None)
@given(fleets(), NEEDS, st.integers(1, 60), st.sampled_from(STRATEGIES))
def test_without_rng_every_choice_is_the_first_best(
        cands: list[Candidate], need: Need, count: int, strategies: list[dict[str, Any]]) -> None:
    replay = copy.deepcopy(cands)
    result = place_tasks(cands, need, count, GROUP, strategies, [])
    for arn in result.chosen:
        options = best(replay, need, strategies)
        assert options, "placed where nothing fits"
        assert arn == replay[options[0]].arn
        chosen = replay[options[0]]
        chosen.capacity.take(need)
        chosen.groups[GROUP] += 1
    assert len(result.chosen) == count or best(replay, need, strategies) == []


@settings(max_examples=300, deadline=None)
@given(fleets(), NEEDS, st.integers(1, 60), st.sampled_from(STRATEGIES), st.integers(0, 2**32))
def test_with_rng_every_choice_is_among_the_best(
        cands: list[Candidate], need: Need, count: int, strategies: list[dict[str, Any]],
        seed: int) -> None:
    replay = copy.deepcopy(cands)
    by_arn = {c.arn: n for n, c in enumerate(replay)}
    result = place_tasks(cands, need, count, GROUP, strategies, [], rng=random.Random(seed))
    for arn in result.chosen:
        assert by_arn[arn] in best(replay, need, strategies)
        replay[by_arn[arn]].capacity.take(need)
        replay[by_arn[arn]].groups[GROUP] += 1
    assert len(result.chosen) == count or best(replay, need, strategies) == []


def test_ties_across_zones_are_drawn_uniformly() -> None:
    """Spread AZ then instanceId: a tie spanning zones picks any of the tied instances."""
    seen: Counter[str] = Counter()
    for seed in range(600):
        cands = [Candidate(arn=f"i{k}", status="ACTIVE", agent_connected=True,
                           capacity=Capacity(1024, 2048),
                           attributes={"ecs.availability-zone": AZS[k % 3]})
                 for k in range(6)]
        seen[place_tasks(cands, Need(128, 128), 1, GROUP, [SPREAD_AZ, SPREAD_ID], [],
                         rng=random.Random(seed)).chosen[0]] += 1
    assert set(seen) == {f"i{k}" for k in range(6)}
    assert min(seen.values()) > 600 / 6 / 2


def test_scale_in_is_unchanged_by_the_indexes() -> None:
    cands = [Candidate(arn=f"i{k}", status="ACTIVE", agent_connected=True,
                       capacity=Capacity(1024, 2048),
                       attributes={"ecs.availability-zone": AZS[k % 3]}) for k in range(9)]
    tasks = {f"i{k}": k % 4 for k in range(9)}
    order = scale_in_order(cands, tasks, [SPREAD_AZ, SPREAD_ID])
    assert Counter(order) == +Counter(tasks)
    assert order[0] == "i3"  # the zone with the most tasks, then its fullest instance


def test_speed_one_service_of_1000_over_1000_instances() -> None:
    """1,000 tasks in one call over 1,000 instances, per strategy (was ~0.1 s each)."""
    shapes = [(2048, 4096), (4096, 8192), (4096, 16384), (8192, 32768)]
    for strategies in ([BINPACK_MEM], [SPREAD_AZ, SPREAD_ID], [SPREAD_ID]):
        cands = [Candidate(arn=f"i{k}", status="ACTIVE", agent_connected=True,
                           capacity=Capacity(*shapes[k % 4]),
                           attributes={"ecs.availability-zone": AZS[k % 3]}, host=f"h{k}")
                 for k in range(1000)]
        start = time.perf_counter()
        result = place_tasks(cands, Need(128, 256), 1000, GROUP, strategies, [],
                             rng=random.Random(1))
        elapsed = time.perf_counter() - start
        assert len(result.chosen) == 1000
        print(f"\n{strategies}: 1,000 placements in {elapsed * 1000:.1f} ms")
        assert elapsed < 1.0  # generous: a loaded CI host; about 10 ms when idle
