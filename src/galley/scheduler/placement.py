"""Task placement on container instances: constraints filter, strategies rank (pure).

`place_tasks` mirrors ECS EC2 placement: an instance is eligible when it is ACTIVE, its agent is
connected, every `memberOf` expression matches, `distinctInstance` holds and the task's resources
fit. Eligible instances are ranked by the placement strategies in order (the first strategy
decides, later ones break its ties) and tasks are placed one at a time, so each placement sees
the capacity and group counts left by the previous one. The query language is not imported:
`memberOf` expressions are evaluated by the `member_of` callable the caller passes in.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from galley.scheduler.resources import Capacity, Need

MemberOf = Callable[[str, "Candidate"], bool]

# The ECS default for services: spread over AZs, then fewest tasks per instance [DG ecs_services].
DEFAULT_STRATEGIES: tuple[dict[str, str], ...] = (
    {"type": "spread", "field": "attribute:ecs.availability-zone"},
    {"type": "spread", "field": "instanceId"},
)
MAX_STRATEGIES = 5
MAX_CONSTRAINTS = 10

# Failure reasons as ECS reports them in RunTask/StartTask `failures[].reason`.
REASON_AGENT = "AGENT"
REASON_MEMBER_OF = "MemberOf placement constraint unsatisfied."
REASON_DISTINCT = "DistinctInstance placement constraint unsatisfied."

# How far an instance got through the checks (higher = closer to fitting); for failure order.
_STAGE = {REASON_AGENT: 1, REASON_MEMBER_OF: 2, REASON_DISTINCT: 3}
_RESOURCE_STAGE = 4


@dataclass
class Candidate:
    """One container instance as placement sees it (capacity and groups mutate on placement)."""

    arn: str
    status: str  # ACTIVE | DRAINING | INACTIVE | ...
    agent_connected: bool
    capacity: Capacity  # remaining resources
    attributes: dict[str, str | None] = field(default_factory=dict)
    host: str = ""  # ec2InstanceId, for spread field "host"
    groups: Counter[str] = field(default_factory=Counter)  # task group -> tasks on the instance


@dataclass(frozen=True)
class Placement:
    """Instance ARNs chosen (one per placed task, in order) and ECS-shaped failures."""

    chosen: list[str]
    failures: list[dict[str, str]]


# ---------------------------------------------------------------------------------------------
# Strategy and constraint parsing

# A compiled strategy: ("random", ""), ("cpu"|"memory", ""), ("instance", ""), ("host", ""),
# or ("attribute", name).
_Level = tuple[str, str]


def compile_strategies(strategies: Sequence[Mapping[str, Any]]) -> list[_Level]:
    """Validate placement strategies (ECS shape) into ranking levels; [] means the default."""
    if len(strategies) > MAX_STRATEGIES:
        raise ValueError(f"at most {MAX_STRATEGIES} placement strategies are allowed")
    levels: list[_Level] = []
    for s in strategies or DEFAULT_STRATEGIES:
        kind = str(s.get("type", "")).lower()
        fld = str(s.get("field") or "")
        if kind == "random":
            levels.append(("random", ""))
        elif kind == "binpack":
            if fld.lower() not in ("cpu", "memory"):
                raise ValueError(f"binpack field must be cpu or memory, not {fld!r}")
            levels.append((fld.lower(), ""))
        elif kind == "spread":
            if fld.lower() == "instanceid":
                levels.append(("instance", ""))
            elif fld.lower() == "host":
                levels.append(("host", ""))
            elif fld.startswith("attribute:") and len(fld) > len("attribute:"):
                levels.append(("attribute", fld[len("attribute:"):]))
            else:
                raise ValueError(f"invalid spread field {fld!r}")
        else:
            raise ValueError(f"unknown placement strategy type {s.get('type')!r}")
    return levels


def _compile_constraints(
    constraints: Sequence[Mapping[str, Any]], member_of: MemberOf | None
) -> tuple[bool, list[str]]:
    """(distinctInstance?, memberOf expressions) from ECS-shaped placement constraints."""
    if len(constraints) > MAX_CONSTRAINTS:
        raise ValueError(f"at most {MAX_CONSTRAINTS} placement constraints are allowed")
    distinct = False
    exprs: list[str] = []
    for c in constraints:
        kind = str(c.get("type", ""))
        if kind.lower() == "distinctinstance":
            if c.get("expression"):
                raise ValueError("distinctInstance takes no expression")
            distinct = True
        elif kind.lower() == "memberof":
            if not c.get("expression"):
                raise ValueError("memberOf needs an expression")
            if member_of is None:
                raise ValueError("memberOf constraints need a member_of matcher")
            exprs.append(str(c["expression"]))
        else:
            raise ValueError(f"unknown placement constraint type {kind!r}")
    return distinct, exprs


# ---------------------------------------------------------------------------------------------
# Ranking state shared by placement and scale-in


class _Ranker:
    """Per-call ranking keys: remaining cpu/memory, group tasks per instance and per value."""

    def __init__(self, cands: Sequence[Candidate], levels: list[_Level], tasks: list[int]) -> None:
        self.levels = levels
        kinds = {kind for kind, _ in levels}
        self.cpu = [c.capacity.cpu for c in cands] if "cpu" in kinds else []
        self.mem = [c.capacity.memory for c in cands] if "memory" in kinds else []
        self.tasks = tasks  # this group's tasks on each instance
        # For value spreads (host / attribute): value id per instance and tasks per value id.
        self.vid: dict[int, list[int]] = {}
        self.vcount: dict[int, list[int]] = {}
        for n, (kind, name) in enumerate(levels):
            if kind not in ("host", "attribute"):
                continue
            ids: dict[str | None, int] = {}
            if kind == "host":
                values: list[str | None] = [c.host or c.arn for c in cands]
            else:
                values = [c.attributes.get(name) for c in cands]
            vid = [ids.setdefault(v, len(ids)) for v in values]
            counts = [0] * len(ids)
            for i, v in enumerate(vid):
                counts[v] += tasks[i]
            self.vid[n], self.vcount[n] = vid, counts
        # Indexes over the eligible instances, so that a placement looks at the few distinct
        # values or keys rather than scanning every instance (lists stay in input order):
        # when the first level is a value spread, the instances by value; when it is numeric
        # (binpack cpu/memory, spread instanceId), by key; when a value spread is followed by
        # a numeric level, by key within each value.
        self.buckets: dict[int, list[int]] | None = None
        self.keyed: _KeyIndex | None = None
        self.sub: dict[int, _KeyIndex] | None = None

    def _key(self, n: int, i: int) -> int:
        kind = self.levels[n][0]
        return self.cpu[i] if kind == "cpu" else self.mem[i] if kind == "memory" \
            else self.tasks[i]

    def partition(self, eligible: list[int]) -> None:
        """Index `eligible` for the first levels (nothing when the first level is random)."""
        numeric = ("cpu", "memory", "instance")
        if 0 in self.vid:
            vid = self.vid[0]
            self.buckets = {}
            for i in eligible:
                self.buckets.setdefault(vid[i], []).append(i)
            if len(self.levels) > 1 and self.levels[1][0] in numeric:
                self.sub = {}
                for i in eligible:
                    self.sub.setdefault(vid[i], _KeyIndex()).add(i, self._key(1, i))
        elif self.levels and self.levels[0][0] in numeric:
            self.keyed = _KeyIndex()
            for i in eligible:
                self.keyed.add(i, self._key(0, i))

    def drop(self, i: int) -> None:
        """Instance `i` is no longer eligible."""
        if self.buckets is not None:
            v = self.vid[0][i]
            self.buckets[v].remove(i)
            if not self.buckets[v]:
                del self.buckets[v]
            if self.sub is not None:
                self.sub[v].remove(i)
                if not self.sub[v].lists:
                    del self.sub[v]
        if self.keyed is not None:
            self.keyed.remove(i)

    def add(self, i: int, delta: int, need: Need) -> None:
        """Record `delta` tasks (+1 placed, -1 stopped) of the group on instance `i`."""
        self.tasks[i] += delta
        if self.cpu:
            self.cpu[i] -= delta * need.cpu
        if self.mem:
            self.mem[i] -= delta * need.memory
        for n, vid in self.vid.items():
            self.vcount[n][vid[i]] += delta
        if self.keyed is not None:
            self.keyed.move(i, self._key(0, i))
        if self.sub is not None:
            index = self.sub.get(self.vid[0][i])
            if index is not None:
                index.move(i, self._key(1, i))

    def narrow(
        self, surv: list[int], pick: Callable[..., int], rand: random.Random | None
    ) -> list[list[int]]:
        """The instances best by every level in turn (`pick` is min to place, max to stop).

        `surv` is in input order. The result is disjoint parts, each in input order (lists the
        ranker may keep: do not mutate them); `_tie` chooses among them without merging. With
        `partition` in effect, `surv` must be the partitioned eligible list.
        """
        parts = [surv]
        skip = -1
        for n, (kind, _) in enumerate(self.levels):
            if n == skip:
                continue
            if len(parts) > 1:  # this level looks at each instance: merge first
                parts = [sorted(i for part in parts for i in part)]
            surv = parts[0]
            if len(surv) <= 1:
                break
            if n == 0 and self.keyed is not None:
                parts = [self.keyed.lists[pick(self.keyed.lists)]]
                continue
            if kind == "random":
                assert rand is not None
                return [[surv[rand.randrange(len(surv))]]]
            if kind in ("host", "attribute"):
                vid, vcount = self.vid[n], self.vcount[n]
                if n == 0 and self.buckets is not None:
                    buckets = self.buckets
                    target = pick([vcount[v] for v in buckets])
                    keep = [v for v in buckets if vcount[v] == target]
                    if self.sub is not None:  # the next level at once, from the key indexes
                        subs = [self.sub[v].lists for v in keep]
                        best = pick(pick(lists) for lists in subs)
                        parts = [lists[best] for lists in subs if best in lists]
                        skip = 1
                    elif len(keep) == 1:
                        parts = [buckets[keep[0]]]
                    elif len(keep) < len(buckets):
                        parts = [buckets[v] for v in keep]
                    continue
                present = set(map(vid.__getitem__, surv))
                if len(present) == 1:
                    continue
                target = pick([vcount[v] for v in present])
                keep_set = {v for v in present if vcount[v] == target}
                if len(keep_set) < len(present):
                    parts = [[i for i in surv if vid[i] in keep_set]]
                continue
            keys = self.cpu if kind == "cpu" else self.mem if kind == "memory" else self.tasks
            target = pick(map(keys.__getitem__, surv))
            parts = [[i for i in surv if keys[i] == target]]
        return parts


class _KeyIndex:
    """Instances (indexes) grouped by an integer key; each group's list in ascending order."""

    def __init__(self) -> None:
        self.lists: dict[int, list[int]] = {}
        self.key_of: dict[int, int] = {}

    def add(self, i: int, key: int) -> None:
        self.key_of[i] = key
        insort(self.lists.setdefault(key, []), i)

    def remove(self, i: int) -> None:
        key = self.key_of.pop(i, None)
        if key is None:
            return
        group = self.lists[key]
        del group[bisect_left(group, i)]
        if not group:
            del self.lists[key]

    def move(self, i: int, key: int) -> None:
        """Instance `i` now has `key` (nothing happens for an instance not indexed)."""
        old = self.key_of.get(i)
        if old is not None and old != key:
            self.remove(i)
            self.add(i, key)


def _tie(parts: list[list[int]], rng: random.Random | None) -> int:
    """Break a final tie among `narrow`'s parts: first in input order without an rng, else
    uniformly at random."""
    if len(parts) == 1:
        surv = parts[0]
        return surv[0] if rng is None or len(surv) == 1 else surv[rng.randrange(len(surv))]
    if rng is None:
        return min(part[0] for part in parts)
    k = rng.randrange(sum(map(len, parts)))
    for part in parts:
        if k < len(part):
            return part[k]
        k -= len(part)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Placement


def place_tasks(
    candidates: list[Candidate],
    need: Need,
    count: int,
    group: str,
    strategies: list[dict[str, Any]],
    constraints: list[dict[str, Any]],
    member_of: MemberOf | None = None,
    rng: random.Random | None = None,
) -> Placement:
    """Place up to `count` tasks of `group`, one at a time, mutating the chosen candidates.

    `strategies` empty means the ECS service default (spread AZ, then instanceId). Remaining
    ties go to the first candidate in input order unless `rng` is given, which also drives the
    `random` strategy; a seeded rng makes the outcome reproducible. When fewer than `count`
    tasks fit, `failures` lists every candidate with its first blocking reason, closest first.
    Raises ValueError for malformed strategies or constraints.
    """
    levels = compile_strategies(strategies)
    distinct, exprs = _compile_constraints(constraints, member_of)
    if count <= 0:
        return Placement([], [])
    rand = rng if rng is not None else random.Random() if ("random", "") in levels else None

    def blocked(c: Candidate) -> str | None:
        if c.status != "ACTIVE":
            return c.status
        if not c.agent_connected:
            return REASON_AGENT
        if exprs:
            assert member_of is not None
            for e in exprs:
                if not member_of(e, c):
                    return REASON_MEMBER_OF
        if distinct and c.groups.get(group):
            return REASON_DISTINCT
        return c.capacity.shortfall(need)

    if exprs or distinct or need.tcp_ports or need.udp_ports:
        eligible = [i for i, c in enumerate(candidates) if blocked(c) is None]
    else:  # the common case, without a call per instance
        cpu, mem = need.cpu, need.memory
        eligible = [i for i, c in enumerate(candidates)
                    if c.status == "ACTIVE" and c.agent_connected
                    and c.capacity.cpu >= cpu and c.capacity.memory >= mem]
    ranker = _Ranker(candidates, levels, [c.groups.get(group, 0) for c in candidates])
    ranker.partition(eligible)
    chosen: list[str] = []
    while len(chosen) < count and eligible:
        i = _tie(ranker.narrow(eligible, min, rand), rng)
        c = candidates[i]
        c.capacity.take(need)
        c.groups[group] += 1
        ranker.add(i, 1, need)
        chosen.append(c.arn)
        if blocked(c) is not None:
            eligible.remove(i)
            ranker.drop(i)
    if len(chosen) == count:
        return Placement(chosen, [])
    # Nothing is eligible now, and instances not chosen are as they were: ask each why.
    failed = [(c, blocked(c) or "") for c in candidates]
    failed.sort(key=lambda cr: _closeness(cr[0].capacity, cr[1], need))
    return Placement(chosen, [{"arn": c.arn, "reason": r} for c, r in failed])


def _closeness(cap: Capacity, reason: str, need: Need) -> tuple[int, float]:
    """Sort key, smallest first: instances that passed more checks, then smallest shortfall."""
    if not reason.startswith("RESOURCE:"):
        return (-_STAGE.get(reason, 0), 0.0)
    short = max(need.cpu - cap.cpu, 0) / max(need.cpu, 1)
    short += max(need.memory - cap.memory, 0) / max(need.memory, 1)
    return (-_RESOURCE_STAGE, short)


def closest_failure(placement: Placement) -> dict[str, str] | None:
    """The failure ECS names in "The closest matching container-instance ..." events."""
    return placement.failures[0] if placement.failures else None


# ---------------------------------------------------------------------------------------------
# Scale-in


def scale_in_order(
    candidates: list[Candidate],
    tasks_by_instance: Mapping[str, int],
    strategies: list[dict[str, Any]],
    *,
    need: Need | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    """Instance ARNs to stop tasks on, one entry per task, best first (take the first k).

    `tasks_by_instance` maps instance ARN -> tasks of the group there. Tasks on instances not
    among `candidates` (gone) come first. Then, per strategy: binpack stops on the instance that
    will have the most of its field left (`need` is the per-task reservation given back);
    spread stops on the field value with the most tasks, keeping the spread balanced; random
    picks any. Candidates are not mutated.
    """
    levels = compile_strategies(strategies)
    rand = rng if rng is not None else random.Random() if ("random", "") in levels else None
    need = need or Need()
    known = {c.arn for c in candidates}
    order = [arn for arn, n in tasks_by_instance.items() if arn not in known for _ in range(n)]
    ranker = _Ranker(candidates, levels, [max(tasks_by_instance.get(c.arn, 0), 0)
                                          for c in candidates])
    loaded = [i for i, n in enumerate(ranker.tasks) if n > 0]
    while loaded:
        i = _tie(ranker.narrow(loaded, max, rand), rng)
        ranker.add(i, -1, need)
        order.append(candidates[i].arn)
        if ranker.tasks[i] == 0:
            loaded.remove(i)
    return order


def check_constraints(constraints: Sequence[Mapping[str, Any]]) -> list[str]:
    """Validate ECS-shaped placement constraints; returns the memberOf expressions (unparsed)."""
    return _compile_constraints(constraints, lambda _expression, _candidate: True)[1]
