"""A small, local evaluator for the AWS IoT SQL subset the rules use (version 2016-03-23).

Theory of operation
-------------------
IoT Core never runs in tests (moto stores rules but never evaluates them), so the same rule text
that goes into the CloudFormation template is parsed and evaluated here. Only a deliberately
small subset is accepted; anything else is rejected when the rule is *defined*, with a
:class:`~edge_core.errors.ConfigError` naming the offending token, so a rule that would behave
differently in AWS never reaches the template.

Accepted grammar (keywords case-insensitive)::

    statement  := SELECT select_list FROM 'topic/filter' [WHERE expr]
    select_list:= item (',' item)*
    item       := '*' | expr [AS name]
    expr       := and_expr (OR and_expr)*
    and_expr   := not_expr (AND not_expr)*
    not_expr   := NOT not_expr | comparison
    comparison := operand [('=' | '<>' | '!=' | '<' | '<=' | '>' | '>=') operand
                           | [NOT] IN '(' literal (',' literal)* ')']
    operand    := 'string' | number | TRUE | FALSE | NULL | call | field('.' field)* | '(' expr ')'
    call       := topic([n]) | timestamp() | newuuid() | encode(*, 'base64')
                  | parse_time('pattern', expr[, 'UTC'])

Payload semantics follow IoT Core: a payload that parses as a JSON object is a JSON document;
anything else is binary, and for binary payloads only ``*`` and functions (``encode(*, ...)``,
``topic()``, ``timestamp()``) may be used. A field reference against a binary payload is an
evaluation error (:class:`RuleEvaluationError`); IoT Core then skips the rule's actions and runs
its error action, and so does the local runner. ``timestamp()`` is in **milliseconds** since the
epoch, as in IoT Core.

Substitution templates (``${topic(3)}`` in an S3 key) use the same expression grammar.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge_core.errors import AmiError, ConfigError

__all__ = [
    "SQL_VERSION",
    "Query",
    "RuleEvaluationError",
    "SelectResult",
    "check_template",
    "filter_covers",
    "filters_overlap",
    "match_topic",
    "parse_sql",
    "render_template",
    "validate_filter",
]

SQL_VERSION = "2016-03-23"

_KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "IN", "TRUE", "FALSE", "NULL"}
_FUNCTIONS = {"topic", "timestamp", "newuuid", "encode", "parse_time"}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[(),*.])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


class RuleEvaluationError(AmiError):
    """A rule could not be evaluated on a message (e.g. a field of a binary payload)."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # str, num, op, punct, kw, name, end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace left
            break
        kind = m.lastgroup or "bad"
        value = m.group(kind)
        if kind == "bad":
            raise ConfigError(f"unsupported character {value!r} at {m.start(kind)} in {text!r}")
        if kind == "name" and value.upper() in _KEYWORDS:
            out.append(_Tok("kw", value.upper(), m.start(kind)))
        else:
            out.append(_Tok(kind, value, m.start(kind)))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


# --- expression tree -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    topic: str
    doc: Mapping[str, Any] | None  # None: binary payload
    payload: bytes
    timestamp_ms: int
    uuid_factory: Callable[[], str]


@dataclass(frozen=True, slots=True)
class _Lit:
    value: Any

    def eval(self, ctx: _Ctx) -> Any:
        return self.value

    @property
    def uses_fields(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Field:
    path: tuple[str, ...]

    def eval(self, ctx: _Ctx) -> Any:
        if ctx.doc is None:
            raise RuleEvaluationError(
                f"field {'.'.join(self.path)!r} referenced on a binary payload ({ctx.topic})"
            )
        cur: Any = ctx.doc
        for part in self.path:
            if not isinstance(cur, Mapping) or part not in cur:
                return None  # IoT SQL: undefined, which compares false
            cur = cur[part]
        return cur

    @property
    def uses_fields(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Star:
    def eval(self, ctx: _Ctx) -> Any:
        return ctx.doc if ctx.doc is not None else ctx.payload

    @property
    def uses_fields(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[Any, ...]

    def eval(self, ctx: _Ctx) -> Any:
        if self.name == "topic":
            if not self.args:
                return ctx.topic
            n = int(self.args[0].eval(ctx))
            levels = ctx.topic.split("/")
            return levels[n - 1] if 1 <= n <= len(levels) else None
        if self.name == "timestamp":
            return ctx.timestamp_ms
        if self.name == "newuuid":
            return ctx.uuid_factory()
        if self.name == "encode":
            return base64.b64encode(ctx.payload).decode("ascii")
        if self.name == "parse_time":
            pattern = str(self.args[0].eval(ctx))
            millis = int(self.args[1].eval(ctx))
            when = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
            return _java_time_format(pattern, when)
        raise RuleEvaluationError(f"unknown function {self.name}")  # unreachable: parser checks

    @property
    def uses_fields(self) -> bool:
        return any(getattr(a, "uses_fields", False) for a in self.args)


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # AND, OR, NOT
    args: tuple[Any, ...]

    def eval(self, ctx: _Ctx) -> Any:
        if self.op == "NOT":
            return not _truthy(self.args[0].eval(ctx))
        if self.op == "AND":
            return all(_truthy(a.eval(ctx)) for a in self.args)
        return any(_truthy(a.eval(ctx)) for a in self.args)

    @property
    def uses_fields(self) -> bool:
        return any(a.uses_fields for a in self.args)


@dataclass(frozen=True, slots=True)
class _Cmp:
    op: str
    left: Any
    right: Any

    def eval(self, ctx: _Ctx) -> Any:
        a, b = self.left.eval(ctx), self.right.eval(ctx)
        if a is None or b is None:
            return False  # undefined / null never compares true (<> included)
        if self.op == "=":
            return bool(a == b)
        if self.op in ("<>", "!="):
            return bool(a != b)
        try:
            if self.op == "<":
                return bool(a < b)
            if self.op == "<=":
                return bool(a <= b)
            if self.op == ">":
                return bool(a > b)
            return bool(a >= b)
        except TypeError:
            return False

    @property
    def uses_fields(self) -> bool:
        return bool(self.left.uses_fields or self.right.uses_fields)


@dataclass(frozen=True, slots=True)
class _In:
    operand: Any
    choices: tuple[Any, ...]
    negate: bool

    def eval(self, ctx: _Ctx) -> Any:
        v = self.operand.eval(ctx)
        if v is None:
            return False
        return (v in self.choices) != self.negate

    @property
    def uses_fields(self) -> bool:
        return bool(self.operand.uses_fields)


def _truthy(v: Any) -> bool:
    return v is True or (v not in (None, False, 0, "") and not isinstance(v, bool))


_JAVA_PATTERN = (
    ("yyyy", "%Y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
)


def _java_time_format(pattern: str, when: datetime) -> str:
    """The subset of Java DateTimeFormatter letters parse_time() patterns use here."""
    out = pattern
    for java, py in _JAVA_PATTERN:
        out = out.replace(java, py)
    if re.search(r"[A-Za-z]", re.sub(r"%[YmdHMS]", "", out)):
        raise RuleEvaluationError(f"unsupported parse_time pattern {pattern!r}")
    return when.strftime(out)


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    @property
    def cur(self) -> _Tok:
        return self.toks[self.i]

    def _err(self, what: str) -> ConfigError:
        tok = self.cur
        shown = tok.text or "end of statement"
        return ConfigError(f"{what}; got {shown!r} at {tok.pos} in {self.text!r}")

    def take(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.cur
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self._err(f"expected {text or kind}")
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> bool:
        tok = self.cur
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return True
        return False

    def expr(self) -> Any:
        args = [self.and_expr()]
        while self.accept("kw", "OR"):
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else _Bool("OR", tuple(args))

    def and_expr(self) -> Any:
        args = [self.not_expr()]
        while self.accept("kw", "AND"):
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else _Bool("AND", tuple(args))

    def not_expr(self) -> Any:
        if self.accept("kw", "NOT"):
            return _Bool("NOT", (self.not_expr(),))
        return self.comparison()

    def comparison(self) -> Any:
        left = self.operand()
        if self.cur.kind == "op":
            op = self.take("op").text
            return _Cmp(op, left, self.operand())
        negate = False
        if self.cur.kind == "kw" and self.cur.text == "NOT":
            nxt = self.toks[self.i + 1]
            if nxt.kind == "kw" and nxt.text == "IN":
                self.i += 1
                negate = True
        if self.accept("kw", "IN"):
            self.take("punct", "(")
            choices = [self.literal()]
            while self.accept("punct", ","):
                choices.append(self.literal())
            self.take("punct", ")")
            return _In(left, tuple(choices), negate)
        return left

    def literal(self) -> Any:
        node = self.operand()
        if not isinstance(node, _Lit):
            raise self._err("IN accepts literals only")
        return node.value

    def operand(self) -> Any:
        tok = self.cur
        if tok.kind == "str":
            self.i += 1
            return _Lit(tok.text[1:-1].replace("''", "'"))
        if tok.kind == "num":
            self.i += 1
            return _Lit(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE", "NULL"):
            self.i += 1
            return _Lit({"TRUE": True, "FALSE": False, "NULL": None}[tok.text])
        if self.accept("punct", "("):
            node = self.expr()
            self.take("punct", ")")
            return node
        if tok.kind == "name":
            self.i += 1
            if self.cur.kind == "punct" and self.cur.text == "(":
                return self.call(tok)
            path = [tok.text]
            while self.accept("punct", "."):
                path.append(self.take("name").text)
            return _Field(tuple(path))
        raise self._err("expected a value, field or function")

    def call(self, name_tok: _Tok) -> _Call:
        name = name_tok.text.lower()
        if name not in _FUNCTIONS:
            raise ConfigError(f"unsupported function {name_tok.text}() in {self.text!r}")
        self.take("punct", "(")
        args: list[Any] = []
        if name == "encode":
            self.take("punct", "*")
            self.take("punct", ",")
            enc = self.operand()
            if not (isinstance(enc, _Lit) and enc.value == "base64"):
                raise self._err("encode() supports encode(*, 'base64') only")
            self.take("punct", ")")
            return _Call(name, ())
        if not (self.cur.kind == "punct" and self.cur.text == ")"):
            args.append(self.expr())
            while self.accept("punct", ","):
                args.append(self.expr())
        self.take("punct", ")")
        arity = {"topic": (0, 1), "timestamp": (0, 0), "newuuid": (0, 0), "parse_time": (2, 3)}
        lo, hi = arity[name]
        if not lo <= len(args) <= hi:
            raise ConfigError(f"{name}() takes {lo}..{hi} arguments, got {len(args)}")
        if name == "parse_time" and len(args) == 3:
            tz = args[2]
            if not (isinstance(tz, _Lit) and tz.value == "UTC"):
                raise ConfigError("parse_time() supports the 'UTC' time zone only")
        return _Call(name, tuple(args))

    def select_item(self) -> tuple[str | None, Any]:
        if self.accept("punct", "*"):
            return None, _Star()
        node = self.expr()
        alias: str | None = None
        if self.accept("kw", "AS"):
            alias = self.take("name").text
        elif isinstance(node, _Field):
            alias = node.path[-1]
        else:
            raise self._err("a computed select item needs AS <name>")
        return alias, node


def validate_filter(topic_filter: str) -> None:
    """Raise ConfigError unless ``topic_filter`` is a valid MQTT filter (``+`` and ``#``)."""
    if not topic_filter:
        raise ConfigError("empty topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(f"'#' must be a whole, last level in {topic_filter!r}")
        if "+" in level and level != "+":
            raise ConfigError(f"'+' must be a whole level in {topic_filter!r}")


def match_topic(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching: ``+`` is one level, a trailing ``#`` is zero or more levels."""
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    for i, f in enumerate(flevels):
        if f == "#":
            return True
        if i >= len(tlevels):
            return False
        if f != "+" and f != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


def filter_covers(outer: str, inner: str) -> bool:
    """True when every topic matched by ``inner`` is matched by ``outer``."""
    a, b = outer.split("/"), inner.split("/")
    for i, la in enumerate(a):
        if la == "#":
            return True
        if i >= len(b) or b[i] == "#":
            return False
        if la != "+" and la != b[i]:
            return False
    return len(a) == len(b)


def filters_overlap(f1: str, f2: str) -> bool:
    """True when some topic matches both filters."""
    a, b = f1.split("/"), f2.split("/")
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            rest = b[i:] if i >= len(a) else a[i:]
            return rest == ["#"]
        la, lb = a[i], b[i]
        if "#" in (la, lb):
            return True
        if la != lb and "+" not in (la, lb):
            return False
    return True


@dataclass(frozen=True, slots=True)
class SelectResult:
    """The outcome of a matching rule on one message.

    ``payload`` is what an action receives: the raw bytes for ``SELECT *`` on a binary payload,
    otherwise the JSON document (a dict) built from the select list.
    """

    payload: bytes | dict[str, Any]

    def to_bytes(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed rule statement. Build with :func:`parse_sql`."""

    sql: str
    topic_filter: str
    items: tuple[tuple[str | None, Any], ...]
    where: Any = None
    _binary_safe: bool = field(default=True, compare=False)

    @property
    def binary_safe(self) -> bool:
        """True when the statement can run on binary payloads (no field references)."""
        return self._binary_safe

    def evaluate(
        self,
        topic: str,
        payload: bytes,
        *,
        timestamp_ms: int,
        uuid_factory: Callable[[], str] | None = None,
    ) -> SelectResult | None:
        """Run the statement on one message; None when the topic or WHERE does not match.

        Raises :class:`RuleEvaluationError` where IoT Core would fail the rule.
        """
        if not match_topic(self.topic_filter, topic):
            return None
        ctx = _Ctx(topic, _as_json(payload), payload, timestamp_ms, uuid_factory or _uuid)
        if self.where is not None and not _truthy(self.where.eval(ctx)):
            return None
        if len(self.items) == 1 and isinstance(self.items[0][1], _Star):
            if ctx.doc is None:
                return SelectResult(payload)
            return SelectResult(dict(ctx.doc))
        out: dict[str, Any] = {}
        for alias, node in self.items:
            if isinstance(node, _Star):
                if ctx.doc is None:
                    raise RuleEvaluationError(
                        f"SELECT *, ... on a binary payload ({topic}); use encode(*, 'base64')"
                    )
                out.update(ctx.doc)
            else:
                assert alias is not None
                out[alias] = node.eval(ctx)
        return SelectResult(out)


def _uuid() -> str:
    return str(uuid.uuid4())


def _as_json(payload: bytes) -> Mapping[str, Any] | None:
    if payload[:1] not in (b"{", b" ", b"\n", b"\t", b"\r"):
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def parse_sql(sql: str) -> Query:
    """Parse one IoT SQL statement of the supported subset; ConfigError on anything else."""
    p = _Parser(sql)
    p.take("kw", "SELECT")
    items = [p.select_item()]
    while p.accept("punct", ","):
        items.append(p.select_item())
    p.take("kw", "FROM")
    ftok = p.take("str")
    topic_filter = ftok.text[1:-1]
    validate_filter(topic_filter)
    where = None
    if p.accept("kw", "WHERE"):
        where = p.expr()
    if p.cur.kind != "end":
        raise p._err("unsupported clause")
    uses = any(getattr(n, "uses_fields", False) for _, n in items)
    uses = uses or bool(where is not None and where.uses_fields)
    return Query(sql, topic_filter, tuple(items), where, _binary_safe=not uses)


_SUBST = re.compile(r"\$\{([^}]*)\}")


def render_template(
    template: str,
    topic: str,
    payload: bytes,
    *,
    timestamp_ms: int,
    uuid_factory: Callable[[], str] | None = None,
) -> str:
    """Expand ``${expr}`` substitution templates (S3 keys, SQS attributes) for one message."""
    ctx = _Ctx(topic, _as_json(payload), payload, timestamp_ms, uuid_factory or _uuid)

    def one(m: re.Match[str]) -> str:
        p = _Parser(m.group(1))
        node = p.expr()
        if p.cur.kind != "end":
            raise p._err("unsupported template expression")
        value = node.eval(ctx)
        return "" if value is None else str(value)

    return _SUBST.sub(one, template)


def check_template(template: str) -> None:
    """Parse every ``${...}`` of a template (ConfigError on unsupported expressions)."""
    for m in _SUBST.finditer(template):
        p = _Parser(m.group(1))
        p.expr()
        if p.cur.kind != "end":
            raise p._err("unsupported template expression")
