"""Capacity provider strategies: validation and how many tasks each provider gets (pure).

A strategy is ECS's list of {capacityProvider, base, weight}. The provider with a base takes the
first `base` tasks; every further task goes to the provider furthest below its weighted share
(counting the tasks it already has), so 9 tasks over FARGATE base 1 weight 1 and FARGATE_SPOT
weight 3 split 3 / 6, and a service keeps that proportion as it scales. A weight-0 provider gets
nothing beyond its base.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_ITEMS = 20
MAX_BASE = 100_000
MAX_WEIGHT = 1_000
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")  # built in: Galley supplies their capacity

NOT_ASSOCIATED = (
    "The specified capacity provider strategy cannot contain a capacity provider that is not "
    "associated with the cluster. Associate the capacity provider with the cluster or specify a "
    "valid capacity provider and try again.")


class StrategyError(ValueError):
    """A strategy ECS refuses; the message suits an InvalidParameterException."""


def no_weight_message(default: bool) -> str:
    if default:
        return ("There are no capacity providers with a weight value greater than zero defined "
                "in the default capacity provider strategy. At least one capacity provider must "
                "have a weight value greater than zero specified. Update the cluster's default "
                "capacity provider strategy or specify a valid capacity provider strategy and "
                "try again.")
    return ("There are no capacity providers with a weight value greater than zero specified in "
            "the capacity provider strategy. At least one capacity provider must have a weight "
            "value greater than zero specified. Specify a valid capacity provider strategy and "
            "try again.")


def check_strategy(strategy: Sequence[Mapping[str, Any]], associated: Sequence[str], *,
                   default: bool = False) -> None:
    """Refuse a malformed strategy, or one naming providers the cluster does not have."""
    if len(strategy) > MAX_ITEMS:
        raise StrategyError(f"A capacity provider strategy can hold at most {MAX_ITEMS} items.")
    names = [str(item.get("capacityProvider", "")) for item in strategy]
    if len(set(names)) != len(names):
        raise StrategyError("A capacity provider strategy cannot name a capacity provider "
                            "more than once.")
    for item in strategy:
        if not 0 <= item.get("base", 0) <= MAX_BASE:
            raise StrategyError(f"The base of a capacity provider must be between 0 and "
                                f"{MAX_BASE}.")
        if not 0 <= item.get("weight", 0) <= MAX_WEIGHT:
            raise StrategyError(f"The weight of a capacity provider must be between 0 and "
                                f"{MAX_WEIGHT}.")
    if sum(1 for item in strategy if item.get("base", 0) > 0) > 1:
        raise StrategyError("Only one capacity provider in a capacity provider strategy can "
                            "have a base defined.")
    if any(name not in associated for name in names):
        raise StrategyError(NOT_ASSOCIATED)
    if strategy and not any(item.get("weight", 0) > 0 for item in strategy):
        raise StrategyError(no_weight_message(default))


def normalized(strategy: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A strategy as ECS shows it back: base and weight always present (0 when not given)."""
    return [{"base": 0, "weight": 0, **item} for item in strategy]


def check_cluster(providers: Sequence[str], default_strategy: Sequence[Mapping[str, Any]]
                  ) -> None:
    """A cluster's capacityProviders (only the built-in ones exist) and default strategy."""
    for name in providers:
        if name not in FARGATE_PROVIDERS:
            raise StrategyError(
                f"The specified capacity provider {name} does not exist. Galley provides "
                f"{' and '.join(FARGATE_PROVIDERS)}; EC2 capacity comes from container "
                "instances.")
    check_strategy(default_strategy, providers, default=True)


def split(strategy: Sequence[Mapping[str, Any]], count: int,
          existing: Mapping[str, int] | None = None) -> dict[str, int]:
    """How many of `count` new tasks each provider gets, given the tasks each already has.

    Providers appear in strategy order; ties go to the earlier one. Assumes `check_strategy`.
    """
    have = {str(i["capacityProvider"]): (existing or {}).get(str(i["capacityProvider"]), 0)
            for i in strategy}
    out = {name: 0 for name in have}
    for _ in range(count):
        below_base = [str(i["capacityProvider"]) for i in strategy
                      if have[str(i["capacityProvider"])] < i.get("base", 0)]
        if below_base:
            name = below_base[0]
        else:
            weighted = [i for i in strategy if i.get("weight", 0) > 0]
            if not weighted:
                break

            def load(item: Mapping[str, Any]) -> float:
                beyond = have[str(item["capacityProvider"])] - item.get("base", 0)
                return (max(beyond, 0) + 1) / item["weight"]

            name = str(min(weighted, key=load)["capacityProvider"])
        have[name] += 1
        out[name] += 1
    return {name: n for name, n in out.items() if n}
