"""Capacity provider strategies: validation and the base/weight split (pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galley.scheduler.capacity import NOT_ASSOCIATED, StrategyError, check_strategy, split

BOTH = ("FARGATE", "FARGATE_SPOT")


def item(name: str, weight: int = 0, base: int = 0) -> dict[str, Any]:
    return {"capacityProvider": name, "weight": weight, "base": base}


@pytest.mark.parametrize("strategy, count, expected", [
    ([item("FARGATE", 1)], 4, {"FARGATE": 4}),
    ([item("FARGATE", 1, base=1), item("FARGATE_SPOT", 3)], 9, {"FARGATE": 3, "FARGATE_SPOT": 6}),
    ([item("FARGATE", 0, base=2), item("FARGATE_SPOT", 1)], 5, {"FARGATE": 2, "FARGATE_SPOT": 3}),
    ([item("FARGATE", 0, base=2), item("FARGATE_SPOT", 1)], 1, {"FARGATE": 1}),
    ([item("FARGATE", 1), item("FARGATE_SPOT", 1)], 3, {"FARGATE": 2, "FARGATE_SPOT": 1}),
    ([item("FARGATE", 2), item("FARGATE_SPOT", 1)], 6, {"FARGATE": 4, "FARGATE_SPOT": 2}),
    ([item("FARGATE", 1)], 0, {}),
])
def test_split(strategy: list[dict[str, Any]], count: int, expected: dict[str, int]) -> None:
    assert split(strategy, count) == expected


def test_split_counts_the_tasks_providers_already_have() -> None:
    strategy = [item("FARGATE", 1, base=1), item("FARGATE_SPOT", 1)]
    assert split(strategy, 2, {"FARGATE": 1, "FARGATE_SPOT": 0}) == {"FARGATE_SPOT": 1,
                                                                      "FARGATE": 1}
    assert split(strategy, 1, {"FARGATE": 3, "FARGATE_SPOT": 0}) == {"FARGATE_SPOT": 1}


@pytest.mark.parametrize("strategy, message", [
    ([item("FARGATE", 1), item("FARGATE", 2)], "more than once"),
    ([item("FARGATE", 1, base=1), item("FARGATE_SPOT", 1, base=1)], "Only one capacity"),
    ([item("FARGATE", 1001)], "weight"),
    ([item("FARGATE", 1, base=100_001)], "base"),
    ([item("FARGATE", 0), item("FARGATE_SPOT", 0)], "no capacity providers with a weight"),
    ([item("FARGATE", 1)] * 21, "at most 20"),
    ([item("MY_ASG", 1)], NOT_ASSOCIATED),
])
def test_check_strategy_refuses(strategy: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(StrategyError, match=re.escape(message)):
        check_strategy(strategy, BOTH)


def test_not_associated_with_the_cluster() -> None:
    with pytest.raises(StrategyError) as e:
        check_strategy([item("FARGATE_SPOT", 1)], ["FARGATE"])
    assert str(e.value) == NOT_ASSOCIATED
    check_strategy([item("FARGATE_SPOT", 1)], BOTH)
    check_strategy([], [])


strategies = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=2,
).map(lambda pairs: [item(BOTH[i], weight=w, base=b if i == 0 else 0)
                     for i, (w, b) in enumerate(pairs)])


@settings(max_examples=300, deadline=None)
@given(strategy=strategies, count=st.integers(0, 60), existing=st.integers(0, 10))
def test_split_properties(strategy: list[dict[str, Any]], count: int, existing: int) -> None:
    if not any(i["weight"] for i in strategy):
        return
    have = {"FARGATE": existing}
    out = split(strategy, count, have)
    assert sum(out.values()) == count
    total = {i["capacityProvider"]: have.get(i["capacityProvider"], 0)
             + out.get(i["capacityProvider"], 0) for i in strategy}
    base = strategy[0]["base"]
    if count + existing >= base:  # the base is always filled first
        assert total["FARGATE"] >= min(base, count + existing)
    for i in strategy:  # weight 0: nothing beyond the base
        if i["weight"] == 0:
            assert out.get(i["capacityProvider"], 0) <= max(i["base"] - have.get(
                i["capacityProvider"], 0), 0)
    if len(strategy) == 2 and existing == 0 and all(i["weight"] for i in strategy):
        # beyond the base, each provider is within one task of its weighted share
        rest = count - min(base, count)
        w0, w1 = strategy[0]["weight"], strategy[1]["weight"]
        share0 = rest * w0 / (w0 + w1)
        assert abs((total["FARGATE"] - min(base, count)) - share0) <= 1
