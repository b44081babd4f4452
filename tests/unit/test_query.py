"""Cluster query language: parsing, evaluation, errors and algebraic properties."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galley.scheduler.query import QueryError, Subject, parse


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


SMALL_A = Subject(
    attributes={
        "ecs.instance-type": "t2.small",
        "ecs.availability-zone": "us-east-1a",
        "ecs.os-type": "linux",
        "stack": "prod",
        "flag": None,
        "disk": "100",
    },
    ec2_instance_id="i-abcd1234",
    agent_connected=True,
    agent_version="1.20.0",
    registered_at=_ts("2014-06-01T12:00:00"),
    running_tasks_count=1,
    task_groups=frozenset({"service:production", "family:web"}),
)
GPU_B = Subject(
    attributes={
        "ecs.instance-type": "g2.2xlarge",
        "ecs.availability-zone": "us-east-1b",
        "disk": "20",
    },
    ec2_instance_id="i-wxyx7890",
    agent_connected=False,
    agent_version="1.9.0",
    registered_at=_ts("2018-06-18T22:28:28"),
    running_tasks_count=0,
    task_groups=frozenset({"database"}),
)
GPU_D = Subject(
    attributes={"ecs.instance-type": "g2.8xlarge", "ecs.availability-zone": "us-east-1d"},
    ec2_instance_id="i-00000001",
    agent_version="1.30.0",
    registered_at=_ts("2015-01-01T00:00:00"),
    running_tasks_count=5,
)
ALL = {"A": SMALL_A, "B": GPU_B, "D": GPU_D}

# expression -> names of the subjects in ALL it matches
CASES: list[tuple[str, set[str]]] = [
    # documented examples
    ("attribute:ecs.instance-type == t2.small", {"A"}),
    ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", {"A", "B"}),
    (
        "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
        {"B"},
    ),
    ("not(task:group == database)", {"A", "D"}),
    ("runningTasksCount == 1", {"A"}),
    ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", {"A", "B"}),
    ("attribute:ecs.os-type exists", {"A"}),
    ("agentConnected == true", {"A", "D"}),
    ("registeredAt < 2015-01-01", {"A"}),
    ("task:group == service:production", {"A"}),
    # word operators and case-insensitivity
    ("attribute:ecs.instance-type equals t2.small", {"A"}),
    ("attribute:ecs.instance-type EQUALS t2.small", {"A"}),
    ("attribute:ecs.instance-type not_equals t2.small", {"B", "D"}),
    ("attribute:ecs.instance-type matches 'g2\\..*'", {"B", "D"}),
    ("attribute:ecs.instance-type not_matches g2.*", {"A"}),
    ("attribute:ecs.instance-type !~ g2.*", {"A"}),
    ("attribute:ecs.os-type not_exists", {"B", "D"}),
    ("attribute:ecs.os-type !exists", {"B", "D"}),
    ("attribute:flag exists", {"A"}),
    ("attribute:flag == ''", set()),
    ("attribute:ecs.availability-zone not_in (us-east-1a, us-east-1b)", {"D"}),
    ("attribute:ecs.availability-zone !in [us-east-1a]", {"B", "D"}),
    ("AgentConnected == FALSE", {"B"}),
    ("agentConnected != true", {"B"}),
    ("agentConnected in [false]", {"B"}),
    ("agentConnected =~ t.*", {"A", "D"}),
    # wildcards and regexes
    ("attribute:ecs.instance-type == g2.*", {"B", "D"}),
    ("attribute:ecs.instance-type == 'g2.*'", set()),
    ("attribute:ecs.instance-type in [t2.*, g2.8*]", {"A", "D"}),
    ("ec2InstanceId == i-*", {"A", "B", "D"}),
    ("ec2InstanceId =~ i-(abcd|wxyx).*", {"A", "B"}),
    ("not(ec2InstanceId =~ i-(abcd|wxyx).*)", {"D"}),
    ("attribute:ecs.instance-type =~ g2", set()),  # whole-value match
    ('attribute:ecs.instance-type =~ "g2\\.[0-2]xlarge"', {"B"}),
    # numbers, versions, dates
    ("runningTasksCount > 0", {"A", "D"}),
    ("runningTasksCount >= 1 and runningTasksCount <= 1", {"A"}),
    ("runningTasksCount < 1", {"B"}),
    ("runningTasksCount greater_than 4", {"D"}),
    ("runningTasksCount less_than_equal 1", {"A", "B"}),
    ("runningTasksCount in [0, 5]", {"B", "D"}),
    ("runningTasksCount != 0", {"A", "D"}),
    ("agentVersion < 1.10.0", {"B"}),
    ("agentVersion >= 1.20.0", {"A", "D"}),
    ("agentVersion == 1.9.0", {"B"}),
    ("registeredAt >= 2015-01-01", {"B", "D"}),
    ("registeredAt == 2015-01-01", {"D"}),  # a date covers its whole day
    ("registeredAt <= 2014-06-01", {"A"}),
    ("registeredAt > 2014-06-01", {"B", "D"}),
    ("registeredAt == 2018-06-18T22:28:28Z", {"B"}),
    ("registeredAt == 2018-06-18T22:28:28+00:00", {"B"}),
    ("registeredAt < 2018-06-18T22:28:28", {"A", "D"}),
    ("registeredAt > 1420070400", {"B"}),
    ("attribute:disk > 50", {"A"}),  # numeric, not lexicographic
    ("attribute:disk < 50", {"B"}),
    ("attribute:stack >= prod", {"A"}),
    # task groups
    ("task:group != database", {"A", "D"}),
    ("task:group in [database, family:web]", {"A", "B"}),
    ("task:group =~ family:.*", {"A"}),
    ("task:group exists", {"A", "B"}),
    ("task:group not_exists", {"D"}),
    # combinators, precedence, grouping
    ("runningTasksCount == 0 || runningTasksCount == 5", {"B", "D"}),
    ("runningTasksCount == 0 OR runningTasksCount == 5 AND agentConnected == false", {"B"}),
    ("(runningTasksCount == 0 or runningTasksCount == 5) and agentConnected == true", {"D"}),
    ("runningTasksCount == 1 or runningTasksCount == 0 and agentConnected == true", {"A"}),
    ("!attribute:ecs.os-type exists && ! (runningTasksCount > 3)", {"B"}),
    ("not not agentConnected == true", {"A", "D"}),
    ("NOT (agentConnected == true) or task:group == service:production", {"A", "B"}),
    ("((attribute:stack == prod))", {"A"}),
    ("  attribute:stack==prod  ", {"A"}),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression_table(expression: str, expected: set[str]) -> None:
    query = parse(expression)
    assert {name for name, s in ALL.items() if query.matches(s)} == expected
    # The canonical rendering parses back to an equivalent query.
    again = parse(str(query))
    assert {name for name, s in ALL.items() if again.matches(s)} == expected


BAD: list[tuple[str, str]] = [
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 2001, "longer than 2000"),
    ("foo == bar", "unknown subject 'foo'"),
    ("attribute: == x", "attribute name"),
    ("attribute:x", "expected an operator"),
    ("attribute:x ~= y", "expected an operator"),
    ("attribute:x ==", "needs an argument"),
    ("attribute:x == )", "needs an argument"),
    ("attribute:x in a", "needs a list"),
    ("attribute:x in [a, b", "expected ',' or ']'"),
    ("attribute:x in [a,", "unterminated argument list"),
    ("attribute:x in []", "expected a list item"),
    ("attribute:x == 'abc", "unterminated quoted string"),
    ("attribute:x =~ 'a(b'", "invalid regular expression"),
    ("(attribute:x exists", "expected ')'"),
    ("attribute:x exists)", "unexpected"),
    ("attribute:x exists and", "expected a subject"),
    ("attribute:x exists attribute:y exists", "unexpected"),
    ("runningTasksCount == one", "needs an integer"),
    ("runningTasksCount =~ 1", "not valid for runningTasksCount"),
    ("ec2InstanceId > i-1", "not valid for ec2InstanceId"),
    ("agentConnected == yes", "true or false"),
    ("registeredAt < yesterday", "invalid date"),
    ("registeredAt < 2015-13-01", "invalid date"),
    ("agentConnected exists", "not valid for agentConnected"),
    ("not", "expected a subject"),
]


@pytest.mark.parametrize(("expression", "fragment"), BAD, ids=[b[0][:40] for b in BAD])
def test_syntax_errors(expression: str, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(expression)
    message = str(info.value)
    assert message.startswith("Invalid cluster query expression: ")
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_error_reports_position() -> None:
    with pytest.raises(QueryError) as info:
        parse("attribute:x exists and foo == 1")
    assert info.value.position == 23
    assert "(at position 23)" in str(info.value)


def test_max_length_is_inclusive() -> None:
    expr = "attribute:x == " + "a" * (2000 - len("attribute:x == "))
    assert len(expr) == 2000
    assert parse(expr).matches(Subject(attributes={"x": "a" * 1985}))


def test_quoted_arguments_and_escapes() -> None:
    s = Subject(attributes={"note": "it's a b", "path": "a\\b"})
    assert parse("attribute:note == 'it\\'s a b'").matches(s)
    assert parse('attribute:note == "it\'s a b"').matches(s)
    assert parse("attribute:path == 'a\\\\b'").matches(s)
    assert parse(str(parse("attribute:note == 'it\\'s a b'"))).matches(s)


def test_defaults_and_missing_values() -> None:
    empty = Subject(attributes={})
    assert parse("attribute:x != y").matches(empty)
    assert not parse("attribute:x == y").matches(empty)
    assert not parse("attribute:x > 1").matches(empty)
    assert not parse("attribute:x < 1").matches(empty)
    assert parse("attribute:x !in [a]").matches(empty)
    assert not parse("task:group == g").matches(empty)
    assert parse("task:group != g").matches(empty)


# --- properties -------------------------------------------------------------------------------

Pred = Callable[[Subject], bool]

ATOMS: list[tuple[str, Pred]] = [
    ("attribute:zone == a", lambda s: s.attributes.get("zone") == "a"),
    ("attribute:zone != b", lambda s: s.attributes.get("zone") != "b"),
    ("attribute:zone in [a, c]", lambda s: s.attributes.get("zone") in ("a", "c")),
    ("attribute:zone exists", lambda s: "zone" in s.attributes),
    ("attribute:zone =~ [ab]", lambda s: s.attributes.get("zone") in ("a", "b")),
    ("attribute:kind == g2.*", lambda s: (s.attributes.get("kind") or "").startswith("g2.")),
    ("runningTasksCount > 1", lambda s: s.running_tasks_count > 1),
    ("runningTasksCount <= 0", lambda s: s.running_tasks_count <= 0),
    ("agentConnected == true", lambda s: s.agent_connected),
    ("ec2InstanceId == i-1", lambda s: s.ec2_instance_id == "i-1"),
    ("task:group == web", lambda s: "web" in s.task_groups),
    ("task:group not_in [db]", lambda s: "db" not in s.task_groups),
    ("registeredAt < 1000", lambda s: s.registered_at < 1000),
]


@dataclass(frozen=True)
class Tree:
    """A test-side expression tree: ('atom', i) | ('not', t) | ('and'|'or', l, r)."""

    kind: str
    parts: tuple

    def eval(self, s: Subject) -> bool:
        if self.kind == "atom":
            return ATOMS[self.parts[0]][1](s)
        if self.kind == "not":
            return not self.parts[0].eval(s)
        left, right = self.parts
        if self.kind == "and":
            return left.eval(s) and right.eval(s)
        return left.eval(s) or right.eval(s)


PREC = {"or": 1, "and": 2, "not": 3, "atom": 4}


def render(tree: Tree, style: tuple[bool, ...], parent: int = 0, right: bool = False) -> str:
    """Text for `tree`, with minimal parentheses; `style` flags pick spellings/extra parens."""
    symbolic, upper, extra = style
    if tree.kind == "atom":
        text = ATOMS[tree.parts[0]][0]
    elif tree.kind == "not":
        word = "!" if symbolic else ("NOT" if upper else "not")
        text = f"{word} {render(tree.parts[0], style, PREC['not'])}"
    else:
        words = {"and": ("&&", "AND", "and"), "or": ("||", "OR", "or")}[tree.kind]
        word = words[0] if symbolic else (words[1] if upper else words[2])
        mine = PREC[tree.kind]
        left = render(tree.parts[0], style, mine)
        rhs = render(tree.parts[1], style, mine, right=True)
        text = f"{left} {word} {rhs}"
    prec = PREC[tree.kind]
    if prec < parent or (right and prec == parent) or (extra and tree.kind != "atom"):
        return f"({text})"
    return text


trees = st.recursive(
    st.builds(lambda i: Tree("atom", (i,)), st.integers(0, len(ATOMS) - 1)),
    lambda kids: st.one_of(
        st.builds(lambda t: Tree("not", (t,)), kids),
        st.builds(lambda a, b: Tree("and", (a, b)), kids, kids),
        st.builds(lambda a, b: Tree("or", (a, b)), kids, kids),
    ),
    max_leaves=8,
)

subjects = st.builds(
    Subject,
    attributes=st.dictionaries(
        st.sampled_from(["zone", "kind"]),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c", "g2.large", "t2.micro"])),
        max_size=2,
    ),
    ec2_instance_id=st.sampled_from(["", "i-1", "i-2"]),
    agent_connected=st.booleans(),
    registered_at=st.sampled_from([0.0, 999.0, 1000.0, 5000.0]),
    running_tasks_count=st.integers(0, 3),
    task_groups=st.frozensets(st.sampled_from(["web", "db", "batch"]), max_size=2),
)
styles = st.tuples(st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(trees, st.lists(subjects, min_size=1, max_size=4), styles)
def test_parse_matches_direct_evaluation(tree: Tree, subs: list[Subject], style) -> None:
    text = render(tree, style)
    query = parse(text)
    canonical = parse(str(query))
    for s in subs:
        assert query.matches(s) == tree.eval(s), text
        assert canonical.matches(s) == tree.eval(s), str(query)


@settings(max_examples=200, deadline=None)
@given(trees, trees, subjects, styles)
def test_not_and_de_morgan(a: Tree, b: Tree, s: Subject, style) -> None:
    ta, tb = render(a, style, 9), render(b, style, 9)  # fully parenthesised operands
    pa = parse(ta).matches(s)
    pb = parse(tb).matches(s)
    assert parse(f"not {ta}").matches(s) == (not pa)
    assert parse(f"!(!{ta})").matches(s) == pa
    assert parse(f"not ({ta} and {tb})").matches(s) == parse(f"not {ta} or not {tb}").matches(s)
    assert parse(f"!({ta} || {tb})").matches(s) == parse(f"!{ta} && !{tb}").matches(s)
    assert parse(f"not ({ta} or {tb})").matches(s) == (not pa and not pb)
