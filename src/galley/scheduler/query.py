"""The ECS cluster query language: parse an expression, evaluate it against an instance (pure).

Grammar [DG cluster-query-language]::

    expr    := and ( ('||' | 'or') and )*
    and     := unary ( ('&&' | 'and') unary )*
    unary   := ('!' | 'not') unary | '(' expr ')' | atom
    atom    := subject operator [argument]
    subject := agentConnected | agentVersion | attribute:<name> | ec2InstanceId
             | registeredAt | runningTasksCount | task:group

Keywords, operators and subject names are case-insensitive; attribute names and values are not.
Arguments are bare words or single/double-quoted strings; `in` / `not_in` take a list written
`[a, b]` or `(a, b)`. A bare (unquoted) argument of `==`, `!=`, `in` or `not_in` that contains
`*` is a wildcard pattern. `=~` / `!~` take a regular expression that must match the whole value.

Negated operators are exact complements of their positive forms: `attribute:x != v` is true
when the attribute is absent, and `task:group != g` is true when no task on the instance is in
group `g`. Ordering comparisons are false when the value is absent. `registeredAt` takes an ISO
date-time (naive means UTC), a date (the whole UTC day: `<=` means before the day ends, `==` means
during that day) or epoch seconds.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

MAX_EXPRESSION_LENGTH = 2000


class QueryError(ValueError):
    """A malformed cluster query expression; the message suits an InvalidParameterException."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        suffix = f" (at position {position})" if position is not None else ""
        super().__init__(f"Invalid cluster query expression: {message}{suffix}.")


@dataclass(frozen=True)
class Subject:
    """What an expression can look at: one container instance."""

    attributes: Mapping[str, str | None] = field(default_factory=dict)
    ec2_instance_id: str = ""
    agent_connected: bool = True
    agent_version: str = ""
    registered_at: float = 0.0  # epoch seconds
    running_tasks_count: int = 0
    task_groups: frozenset[str] = frozenset()  # groups of the tasks on the instance


class Op(Enum):
    """Comparison operators, valued by their canonical spelling."""

    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EXISTS = "exists"
    NOT_EXISTS = "!exists"
    IN = "in"
    NOT_IN = "!in"
    MATCHES = "=~"
    NOT_MATCHES = "!~"


_NEGATED = {Op.NE: Op.EQ, Op.NOT_IN: Op.IN, Op.NOT_MATCHES: Op.MATCHES, Op.NOT_EXISTS: Op.EXISTS}
_ORDERING = {Op.GT, Op.GE, Op.LT, Op.LE}

# Symbolic operators, longest first; the word forms need a word boundary after them.
_SYMBOL_OPS = [
    ("!exists", Op.NOT_EXISTS),
    ("!in", Op.NOT_IN),
    ("==", Op.EQ),
    ("!=", Op.NE),
    (">=", Op.GE),
    ("<=", Op.LE),
    ("=~", Op.MATCHES),
    ("!~", Op.NOT_MATCHES),
    (">", Op.GT),
    ("<", Op.LT),
]
_WORD_OPS = {
    "equals": Op.EQ,
    "not_equals": Op.NE,
    "greater_than": Op.GT,
    "greater_than_equal": Op.GE,
    "less_than": Op.LT,
    "less_than_equal": Op.LE,
    "exists": Op.EXISTS,
    "not_exists": Op.NOT_EXISTS,
    "in": Op.IN,
    "not_in": Op.NOT_IN,
    "matches": Op.MATCHES,
    "not_matches": Op.NOT_MATCHES,
}

_EQUALITY = {Op.EQ, Op.NE, Op.IN, Op.NOT_IN}
_REGEX = {Op.MATCHES, Op.NOT_MATCHES}
_PRESENCE = {Op.EXISTS, Op.NOT_EXISTS}
# Canonical subject spelling -> operators it accepts.
_SUBJECTS: dict[str, frozenset[Op]] = {
    "agentConnected": frozenset(_EQUALITY | _REGEX),
    "agentVersion": frozenset(_EQUALITY | _REGEX | _ORDERING),
    "ec2InstanceId": frozenset(_EQUALITY | _REGEX),
    "registeredAt": frozenset(_EQUALITY | _ORDERING),
    "runningTasksCount": frozenset(_EQUALITY | _ORDERING),
    "task:group": frozenset(_EQUALITY | _REGEX | _PRESENCE),
    "attribute": frozenset(Op),
}
_SUBJECT_BY_LOWER = {name.lower(): name for name in _SUBJECTS if name != "attribute"}

_WORD_RE = re.compile(r"[A-Za-z0-9_:]+")
_OP_WORD_RE = re.compile(r"[A-Za-z_]+")
_ATTR_PREFIX_RE = re.compile(r"attribute:", re.IGNORECASE)
_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9_./\-]+")
_KEYWORD_END = re.compile(r"(?![A-Za-z0-9_:.\-])")
_INT_RE = re.compile(r"[+-]?\d+")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_VERSION_RE = re.compile(r"v?\d+(\.\d+)*", re.IGNORECASE)
_DAY = 86400.0


# --- arguments ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument as written: its text and whether it was quoted."""

    text: str
    quoted: bool = False

    def __str__(self) -> str:
        if not self.quoted:
            return self.text
        return "'" + self.text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    @property
    def is_wildcard(self) -> bool:
        return not self.quoted and "*" in self.text


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _compare_text(value: str, arg: str) -> int:
    """Three-way compare for attributes/versions: numeric, then version-wise, then textual."""
    if _NUMBER_RE.fullmatch(value) and _NUMBER_RE.fullmatch(arg):
        return _sign(float(value) - float(arg))
    if _VERSION_RE.fullmatch(value) and _VERSION_RE.fullmatch(arg):
        a, b = _version_key(value), _version_key(arg)
        return (a > b) - (a < b)
    return (value > arg) - (value < arg)


def _parse_time(text: str, pos: int) -> tuple[float, float]:
    """An instant as [lo, hi): a date is its whole UTC day, anything else a single point."""
    if _DATE_RE.fullmatch(text):
        try:
            day = _dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=_dt.UTC)
        except ValueError:
            raise QueryError(f"invalid date '{text}'", pos) from None
        return day.timestamp(), day.timestamp() + _DAY
    if _NUMBER_RE.fullmatch(text):
        return float(text), float(text)
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            f"invalid date '{text}'; use e.g. 2018-06-18T22:28:28+00:00, "
            "2018-06-18T22:28:28Z, 2018-06-18T22:28:28 or 2018-06-18",
            pos,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp(), moment.timestamp()


def _compare_time(value: float, span: tuple[float, float]) -> int:
    lo, hi = span
    if lo == hi:
        return _sign(value - lo)
    return -1 if value < lo else (0 if value < hi else 1)


# --- expression tree ------------------------------------------------------------------------------


class Node:
    """An expression node."""

    precedence = 3

    def matches(self, subject: Subject) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Atom(Node):
    """`subject operator [argument]`, compiled to a predicate at parse time."""

    subject: str  # canonical subject name ("attribute" for attributes)
    name: str  # attribute name, else ""
    op: Op
    args: tuple[Arg, ...]
    is_list: bool
    test: Callable[[Subject], bool]

    def matches(self, subject: Subject) -> bool:
        return self.test(subject)

    def __str__(self) -> str:
        lhs = f"attribute:{self.name}" if self.subject == "attribute" else self.subject
        if self.op in _PRESENCE:
            return f"{lhs} {self.op.value}"
        rhs = f"[{', '.join(map(str, self.args))}]" if self.is_list else str(self.args[0])
        return f"{lhs} {self.op.value} {rhs}"


@dataclass(frozen=True, eq=False)
class Not(Node):
    """Logical negation."""

    operand: Node

    def matches(self, subject: Subject) -> bool:
        return not self.operand.matches(subject)

    def __str__(self) -> str:
        return f"not {_wrap(self.operand, 3)}"


@dataclass(frozen=True, eq=False)
class And(Node):
    """Logical conjunction."""

    left: Node
    right: Node
    precedence = 2

    def matches(self, subject: Subject) -> bool:
        return self.left.matches(subject) and self.right.matches(subject)

    def __str__(self) -> str:
        return f"{_wrap(self.left, 2)} and {_wrap(self.right, 3)}"


@dataclass(frozen=True, eq=False)
class Or(Node):
    """Logical disjunction."""

    left: Node
    right: Node
    precedence = 1

    def matches(self, subject: Subject) -> bool:
        return self.left.matches(subject) or self.right.matches(subject)

    def __str__(self) -> str:
        return f"{_wrap(self.left, 1)} or {_wrap(self.right, 2)}"


def _wrap(node: Node, at_least: int) -> str:
    return str(node) if node.precedence >= at_least else f"({node})"


class Query:
    """A parsed expression; `matches` evaluates it, `str` gives a canonical equivalent form."""

    def __init__(self, expression: str, root: Node) -> None:
        self.expression = expression
        self.root = root

    def matches(self, subject: Subject) -> bool:
        """Whether `subject` satisfies the expression."""
        return self.root.matches(subject)

    def __str__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"Query({self.expression!r})"


# --- predicates -----------------------------------------------------------------------------------


def _build_test(subject: str, name: str, op: Op, args: tuple[Arg, ...], pos: int):
    """Compile an atom to a predicate over Subject, validating its argument(s)."""
    positive = _NEGATED.get(op)
    if positive is not None:
        inner = _build_test(subject, name, positive, args, pos)
        return lambda s: not inner(s)

    if subject == "runningTasksCount":
        for a in args:
            if not _INT_RE.fullmatch(a.text):
                raise QueryError(f"runningTasksCount needs an integer, not '{a.text}'", pos)
        nums = [int(a.text) for a in args]
        return _ordered(op, nums, lambda s: [s.running_tasks_count], lambda v, n: _sign(v - n))

    if subject == "registeredAt":
        spans = [_parse_time(a.text, pos) for a in args]
        return _ordered(op, spans, lambda s: [s.registered_at], _compare_time)

    if subject == "agentConnected" and op is not Op.MATCHES:
        flags = []
        for a in args:
            if a.text.lower() not in ("true", "false"):
                raise QueryError(f"agentConnected needs true or false, not '{a.text}'", pos)
            flags.append(a.text.lower() == "true")
        return lambda s: s.agent_connected in flags

    values = _string_values(subject, name)
    if op is Op.EXISTS:
        return lambda s: bool(values(s))
    if op is Op.MATCHES:
        try:
            pattern = re.compile(args[0].text)
        except re.error as exc:
            raise QueryError(f"invalid regular expression '{args[0].text}': {exc}", pos) from None
        return lambda s: any(v is not None and pattern.fullmatch(v) for v in values(s))
    if op in _ORDERING:
        text = args[0].text
        return _ordered(op, [text], lambda s: [v for v in values(s) if v], _compare_text)
    exact = frozenset(a.text for a in args if not a.is_wildcard)
    globs = [_glob(a.text) for a in args if a.is_wildcard]
    return lambda s: any(
        v is not None and (v in exact or any(g.fullmatch(v) for g in globs)) for v in values(s)
    )


def _string_values(subject: str, name: str) -> Callable[[Subject], list[str | None]]:
    """The subject's values as strings; an attribute without a value is [None], absent is []."""
    if subject == "attribute":
        return lambda s: [s.attributes[name]] if name in s.attributes else []
    if subject == "task:group":
        return lambda s: list(s.task_groups)
    if subject == "agentConnected":
        return lambda s: ["true" if s.agent_connected else "false"]
    if subject == "agentVersion":
        return lambda s: [s.agent_version]
    return lambda s: [s.ec2_instance_id]


def _ordered(op: Op, refs: list, get: Callable[[Subject], list], cmp: Callable) -> Callable:
    """A predicate from a three-way compare: true if any value relates to any reference by op."""
    check: Callable[[int], bool] = {
        Op.EQ: lambda c: c == 0,
        Op.IN: lambda c: c == 0,
        Op.GT: lambda c: c > 0,
        Op.GE: lambda c: c >= 0,
        Op.LT: lambda c: c < 0,
        Op.LE: lambda c: c <= 0,
    }[op]
    return lambda s: any(check(cmp(v, r)) for v in get(s) for r in refs)


# --- parser ---------------------------------------------------------------------------------------


class _Parser:
    """Recursive-descent parser over the raw text (argument lexing depends on the operator)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> QueryError:
        return QueryError(message, self.pos if pos is None else pos)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def eat_symbol(self, symbol: str) -> bool:
        self.skip_ws()
        if self.text.startswith(symbol, self.pos):
            self.pos += len(symbol)
            return True
        return False

    def eat_keyword(self, word: str) -> bool:
        self.skip_ws()
        end = self.pos + len(word)
        if self.text[self.pos : end].lower() == word and _KEYWORD_END.match(self.text, end):
            self.pos = end
            return True
        return False

    def describe_here(self) -> str:
        if self.pos >= len(self.text):
            return "end of expression"
        return f"'{self.text[self.pos : self.pos + 20]}'"

    # expr := and (or and)*
    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.eat_symbol("||") or self.eat_keyword("or"):
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.eat_symbol("&&") or self.eat_keyword("and"):
            node = And(node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.eat_symbol("!") or self.eat_keyword("not"):
            return Not(self.parse_unary())
        if self.eat_symbol("("):
            start = self.pos - 1
            node = self.parse_or()
            if not self.eat_symbol(")"):
                raise self.error(
                    f"expected ')' to close '(' at position {start}, found {self.describe_here()}"
                )
            return node
        return self.parse_atom()

    def parse_subject(self) -> tuple[str, str]:
        self.skip_ws()
        start = self.pos
        if prefix := _ATTR_PREFIX_RE.match(self.text, self.pos):
            self.pos = prefix.end()
            name = _ATTR_NAME_RE.match(self.text, self.pos)
            if not name:
                raise self.error("expected an attribute name after 'attribute:'")
            self.pos = name.end()
            return "attribute", name.group()
        word = _WORD_RE.match(self.text, self.pos)
        if not word:
            raise self.error(f"expected a subject, found {self.describe_here()}")
        canonical = _SUBJECT_BY_LOWER.get(word.group().lower())
        if canonical is None:
            raise self.error(
                f"unknown subject '{word.group()}'; expected one of agentConnected, agentVersion,"
                " attribute:<name>, ec2InstanceId, registeredAt, runningTasksCount, task:group",
                start,
            )
        self.pos = word.end()
        return canonical, ""

    def parse_operator(self, lhs: str) -> Op:
        self.skip_ws()
        for symbol, op in _SYMBOL_OPS:
            if self.text.startswith(symbol, self.pos):
                end = self.pos + len(symbol)
                if symbol[-1].isalpha() and not _KEYWORD_END.match(self.text, end):
                    continue
                self.pos = end
                return op
        word = _OP_WORD_RE.match(self.text, self.pos)
        if word and word.group().lower() in _WORD_OPS:
            self.pos = word.end()
            return _WORD_OPS[word.group().lower()]
        raise self.error(f"expected an operator after '{lhs}', found {self.describe_here()}")

    def parse_quoted(self) -> Arg:
        quote, start = self.text[self.pos], self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            nxt = self.text[self.pos + 1 : self.pos + 2]
            if c == "\\" and nxt in (quote, "\\"):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if c == quote:
                return Arg("".join(out), quoted=True)
            out.append(c)
        raise self.error("unterminated quoted string", start)

    def parse_single(self, op: Op) -> Arg:
        """A bare word runs to whitespace or an unbalanced ')' / ']'."""
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] in "'\"":
            return self.parse_quoted()
        start, depth = self.pos, 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c.isspace():
                break
            if c in "([":
                depth += 1
            elif c in ")]":
                if depth == 0:
                    break
                depth -= 1
            self.pos += 1
        if self.pos == start:
            raise self.error(f"operator '{op.value}' needs an argument")
        return Arg(self.text[start : self.pos])

    def parse_list(self, op: Op) -> tuple[Arg, ...]:
        self.skip_ws()
        opener = self.text[self.pos : self.pos + 1]
        if opener not in ("[", "("):
            raise self.error(f"operator '{op.value}' needs a list like [a, b]")
        closer = "]" if opener == "[" else ")"
        self.pos += 1
        items: list[Arg] = []
        while True:
            self.skip_ws()
            if self.pos >= len(self.text):
                raise self.error(f"unterminated argument list; expected '{closer}'")
            if self.text[self.pos] in "'\"":
                items.append(self.parse_quoted())
            else:
                start = self.pos
                while self.pos < len(self.text) and not (
                    self.text[self.pos].isspace() or self.text[self.pos] in ",[]()'\""
                ):
                    self.pos += 1
                if self.pos == start:
                    raise self.error(f"expected a list item, found {self.describe_here()}")
                items.append(Arg(self.text[start : self.pos]))
            self.skip_ws()
            if self.eat_symbol(","):
                continue
            if self.eat_symbol(closer):
                return tuple(items)
            raise self.error(f"expected ',' or '{closer}' in list, found {self.describe_here()}")

    def parse_atom(self) -> Atom:
        start = self.pos
        subject, name = self.parse_subject()
        lhs = f"attribute:{name}" if subject == "attribute" else subject
        op_pos = self.pos
        op = self.parse_operator(lhs)
        if op not in _SUBJECTS[subject]:
            raise self.error(f"operator '{op.value}' is not valid for {lhs}", op_pos)
        is_list = op in (Op.IN, Op.NOT_IN)
        if op in _PRESENCE:
            args: tuple[Arg, ...] = ()
        elif is_list:
            args = self.parse_list(op)
        else:
            args = (self.parse_single(op),)
        test = _build_test(subject, name, op, args, start)
        return Atom(subject, name, op, args, is_list, test)


def parse(expression: str) -> Query:
    """Parse a cluster query expression; raises QueryError on bad syntax."""
    if not isinstance(expression, str):
        raise QueryError("expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise QueryError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    parser = _Parser(expression)
    if parser.at_end():
        raise QueryError("expression is empty")
    root = parser.parse_or()
    if not parser.at_end():
        raise parser.error(f"unexpected {parser.describe_here()}")
    return Query(expression, root)
