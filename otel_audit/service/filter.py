"""The ``filter`` expression of ``GET /v1/events``: SCIM filter syntax (RFC 7644 §3.4.2.2, as Okta's
System Log uses it), parsed to a small AST, compiled to a parameterised SQL condition for the store and
to a Python predicate for alerts on live events. Both give the same answer for every row.

Syntax::

    user.id eq "alice" and (event sw "gen_ai." or not (client.address eq "10.0.0.0/8"))
    time ge "2026-12-01T00:00:00Z" and gen_ai.usage.input_tokens gt 1000 and session.id pr

* comparisons ``path op value`` with ``eq ne co sw ew gt ge lt le``, and ``path pr`` (present);
  ``and``, ``or``, ``not (...)`` (``not`` takes a parenthesised filter, as in RFC 7644), parentheses.
  Precedence ``not`` > ``and`` > ``or``; ``and``/``or`` group to the left. Operators and logical
  words are case-insensitive (RFC 7644), so are ``true false null``.
* a path is a dotted name, ``[A-Za-z_][A-Za-z0-9_-]*`` per part (``audit.actor.id``). The words
  ``and or not true false null`` and the operators are not paths. A path is looked up exactly in the
  ``fields`` mapping, then case-insensitively when that finds exactly one (RFC 7644: attribute names are
  case-insensitive). SCIM value filters (``emails[type eq "work"]``) and schema URN prefixes are not
  supported.
* values: JSON strings (double quotes, JSON escapes; a raw control character, a lone surrogate and
  NUL, raw or ``\\u0000``, are refused: PostgreSQL text cannot hold NUL), JSON numbers (an integer must
  fit 64 bits, a float must be finite), ``true false null``.
* whitespace is space, tab, CR, LF.
* limits: ``MAX_LENGTH`` characters, ``MAX_COMPARISONS`` comparisons (``pr`` included), ``MAX_DEPTH``
  nested parentheses. Every problem is a `FilterError` with the 0-based character offset where it was
  found and what was expected there; no input makes the parser raise anything else.

Semantics (`compile_sql` and `to_python` agree on each point; the tests check it row by row):

* every comparison is two-valued: a row without the attribute (NULL) does not match a positive
  comparison, so it matches ``ne`` and ``not (...)``: ``user.id ne "x"`` selects rows with no user.
* ``text`` fields: ``eq``/``ne`` are exact and case-sensitive (ids, event names and outcomes are
  exact values; SCIM's caseExact=false would make ``user.id eq "Alice"`` match ``alice``, which for an
  audit trail is a different principal). ``co``/``sw``/``ew`` ignore case by default
  (``case_insensitive=True``): ASCII letters fold; other letters fold as the database's ``LOWER``
  does (SQLite: A–Z only, as `to_python`; PostgreSQL: per its locale). With ``case_insensitive=False``
  they are exact. ``gt ge lt le`` compare strings in the database's order (SQLite and Python: code
  point order; PostgreSQL: the column's collation, use ``COLLATE "C"`` columns to match).
  ``pr`` means not NULL and not ``""``; ``eq null`` is the opposite of ``pr``, ``ne null`` is ``pr``.
* ``int`` fields: numbers (int or float); ``eq ne gt ge lt le``; ``pr`` is not NULL; ``eq null``
  is NULL. A fraction is compiled to the integer comparison it equals (``gt 0.5`` is ``gt 0``,
  ``eq 0.5`` matches nothing), so only integers are bound; int columns should be 64-bit (``BIGINT``),
  as a parameter PostgreSQL types from an ``INTEGER`` column cannot exceed 32 bits.
* ``time`` fields (integer unix nanoseconds): an integer of nanoseconds or an RFC 3339 date-time
  string (``"2026-12-01T10:00:00Z"``, ``"2026-12-01t10:00:00.123456789+02:00"``, at most 9 fraction
  digits, offset required, no leap second); operators as ``int``.
* ``ip`` fields: a text column with the address as received and a second column ``<column>_key``
  holding `ip_key` of it (written by the store). ``eq "10.0.0.0/8"`` / ``eq "2001:db8::/32"`` (a CIDR
  network, host bits must be zero) is "inside the network", a range test on the key; ``eq`` with an
  address compares keys, so ``2001:DB8::1`` equals ``2001:db8:0::1``; ``eq`` with anything else
  compares the text. ``gt ge lt le`` take an address and compare numerically (an IPv4 address orders
  as its IPv4-mapped IPv6 form, ``::ffff:a.b.c.d``). ``co sw ew pr`` work on the text.
  An IPv4 address and its IPv4-mapped IPv6 form are the same host: dual-stack sockets report IPv4
  clients as ``::ffff:10.1.2.3``, and ``10.0.0.0/8`` matches them. A zone (``fe80::1%eth0``) is not
  part of the key.
* a literal of the wrong type for the field (``time gt "yesterday"``, ``co`` on an ``int``, a number
  on a ``text`` field, ``true``/``false`` on any of the four kinds, ``gt null``) is a `FilterError`
  naming the path, operator and value, raised by `compile_sql` / `to_python` before any row is read.

SQL: only bound parameters carry values; column names come from `Field` (checked identifiers,
double-quoted); the text is the same for any literal of the same shape. ``co sw ew`` use ``LIKE ...
ESCAPE '\\'`` with ``%``, ``_`` and ``\\`` escaped, valid in SQLite and PostgreSQL. ``placeholder`` is
``"?"`` (sqlite3) or ``"%s"`` (psycopg); the SQL holds no other ``%``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from otel_audit.errors import AuditError

__all__ = [
    "KINDS",
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "OPERATORS",
    "And",
    "Compare",
    "Field",
    "FilterError",
    "Node",
    "Not",
    "Or",
    "Present",
    "Value",
    "compile_sql",
    "ip_key",
    "parse",
    "parse_time",
    "render",
    "to_python",
]

MAX_LENGTH = 4096
"""Longest filter text accepted, in characters."""
MAX_COMPARISONS = 64
"""Most comparisons (``pr`` included) in one filter."""
MAX_DEPTH = 16
"""Deepest nesting of parentheses (``not (...)`` counts its parentheses)."""

OPERATORS = ("eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le")
"""Every comparison operator, in the order messages list them."""
KINDS = ("text", "int", "time", "ip")
"""The kinds of `Field`."""

_COMPARE_OPS = frozenset(OPERATORS) - {"pr"}
_ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
_MATCH_OPS = frozenset({"co", "sw", "ew"})
_LITERAL_WORDS = frozenset({"true", "false", "null"})
_RESERVED = frozenset({"and", "or", "not"}) | _LITERAL_WORDS | frozenset(OPERATORS)
_OPS_TEXT = " ".join(OPERATORS)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Value = str | int | float | bool | None
"""A literal: a JSON string, number, ``true``/``false`` or ``null``."""


class FilterError(AuditError, ValueError):
    """A filter that cannot be used: bad syntax, over a limit, an unknown path or a literal of the wrong type.

    ``position`` is the 0-based character offset into the filter text where the problem was found
    (None for a hand-built AST that did not come from `parse`); ``reason`` is the message without the
    ``filter: at N:`` prefix.
    """

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        where = f"at {position}: " if position is not None else ""
        super().__init__(f"filter: {where}{reason}")


# -- the AST ---------------------------------------------------------------------------------------
# ``position`` (offset of the path in the text) is kept for messages and left out of ==, hash and repr.


@dataclass(frozen=True)
class Compare:
    """``path op value``; ``op`` is lower case, one of ``eq ne co sw ew gt ge lt le``."""

    path: str
    op: str
    value: Value
    position: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Present:
    """``path pr``."""

    path: str
    position: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    node: Node


Node = Compare | Present | And | Or | Not
"""A parsed filter."""


# -- lexing ----------------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "(" ")" "word" "string" "number" "end"
    text: str  # the source text of the token
    pos: int
    value: Value


_WS = frozenset(" \t\r\n")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_WORD = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_PATH = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_RUN = re.compile(r"[-+.0-9A-Za-z_]*")
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPES_TEXT = '\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX'


def _show(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message: cut to ``limit`` characters, unprintable characters escaped."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    shown = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in cut)
    return f"'{shown}'"


def _describe(token: _Token) -> str:
    return "the end of the filter" if token.kind == "end" else _show(token.text)


def _scan_string(text: str, start: int) -> tuple[str, int]:
    """The JSON string whose opening quote is at ``start``: its value and the offset after it."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise FilterError("unterminated string: no closing '\"' for the string that starts here", start)
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                raise FilterError("unterminated string: no closing '\"' for the string that starts here", start)
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e != "u":
                raise FilterError(f"bad escape {_show(chr(92) + e)} in a string (JSON escapes: {_ESCAPES_TEXT})", i)
            hex1 = text[i + 2 : i + 6]
            if not _HEX4.fullmatch(hex1):
                raise FilterError("bad escape: \\u takes four hex digits (\\u00e9)", i)
            cp = int(hex1, 16)
            if 0xDC00 <= cp <= 0xDFFF:
                raise FilterError(f"bad escape: lone low surrogate \\u{hex1}", i)
            if 0xD800 <= cp <= 0xDBFF:
                hex2 = text[i + 8 : i + 12]
                if text[i + 6 : i + 8] != "\\u" or not _HEX4.fullmatch(hex2) or not 0xDC00 <= int(hex2, 16) <= 0xDFFF:
                    raise FilterError(
                        f"bad escape: high surrogate \\u{hex1} is not followed by a low surrogate \\uDC00-\\uDFFF", i
                    )
                cp = 0x10000 + ((cp - 0xD800) << 10) + (int(hex2, 16) - 0xDC00)
                i += 12
            else:
                if cp == 0:
                    raise FilterError("NUL (\\u0000) is not allowed in a string", i)
                i += 6
            out.append(chr(cp))
            continue
        if ord(c) < 0x20:
            raise FilterError(f"control character U+{ord(c):04X} in a string: write it as an escape (\\n, \\u0009)", i)
        out.append(c)
        i += 1


def _scan_number(text: str, start: int) -> tuple[int | float, int]:
    match = _NUMBER.match(text, start)
    end = match.end() if match else start
    run = _NUMBER_RUN.match(text, start)
    assert run is not None  # the pattern matches the empty string
    if match is None or run.end() > end:
        raise FilterError(
            f"malformed number {_show(text[start : max(run.end(), start + 1)])} (JSON numbers: -12, 0.5, 1e9)", start
        )
    literal = match.group()
    if any(c in literal for c in ".eE"):
        number = float(literal)
        if not math.isfinite(number):
            raise FilterError(f"number {_show(literal)} is out of range", start)
        return number, end
    integer = int(literal)
    if not _INT64_MIN <= integer <= _INT64_MAX:
        raise FilterError(f"integer {_show(literal)} does not fit in 64 bits", start)
    return integer, end


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            tokens.append(_Token("end", "", n, None))
            return tokens
        c = text[i]
        if c in "()":
            tokens.append(_Token(c, c, i, None))
            i += 1
        elif c == '"':
            value, end = _scan_string(text, i)
            tokens.append(_Token("string", text[i:end], i, value))
            i = end
        elif c == "-" or "0" <= c <= "9":
            number, end = _scan_number(text, i)
            tokens.append(_Token("number", text[i:end], i, number))
            i = end
        elif match := _WORD.match(text, i):
            end = match.end()
            if end < n and text[end] == ".":
                raise FilterError(f"expected a name after '.' in {_show(text[i : end + 1])}", end + 1)
            tokens.append(_Token("word", match.group(), i, None))
            i = end
        elif c == "[":
            raise FilterError("'[' is not supported: SCIM value filters (emails[type eq \"work\"]) are not", i)
        elif c == "'":
            raise FilterError('strings are written in double quotes ("alice"), not single quotes', i)
        elif c in "=!<>":
            raise FilterError(f"unexpected {_show(c)}: compare with an operator ({_OPS_TEXT})", i)
        else:
            raise FilterError(f"unexpected character {_show(c)} (U+{ord(c):04X})", i)


# -- parsing ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    @staticmethod
    def word(token: _Token) -> str | None:
        return token.text.lower() if token.kind == "word" else None

    def filter(self) -> Node:
        node = self.conjunction()
        while self.word(self.peek()) == "or":
            self.advance()
            node = Or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.word(self.peek()) == "and":
            self.advance()
            node = And(node, self.unary())
        return node

    def unary(self) -> Node:
        token = self.peek()
        word = self.word(token)
        if token.kind == "(":
            return self.group()
        if word == "not":
            self.advance()
            if self.peek().kind != "(":
                raise FilterError(
                    f"expected '(' after 'not' (write not (user.id eq \"x\")), found {_describe(self.peek())}",
                    self.peek().pos,
                )
            return Not(self.group())
        if word is not None and word not in _RESERVED:
            return self.comparison()
        raise FilterError(f"expected an attribute path (user.id), '(' or 'not', found {_describe(token)}", token.pos)

    def group(self) -> Node:
        opening = self.advance()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"parentheses nest deeper than the limit of {MAX_DEPTH} (MAX_DEPTH)", opening.pos)
        node = self.filter()
        closing = self.peek()
        if closing.kind != ")":
            raise FilterError(
                f"expected 'and', 'or' or ')' to close the '(' at {opening.pos}, found {_describe(closing)}",
                closing.pos,
            )
        self.advance()
        self.depth -= 1
        return node

    def comparison(self) -> Node:
        path = self.advance()
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(f"more than the limit of {MAX_COMPARISONS} comparisons (MAX_COMPARISONS)", path.pos)
        operator = self.peek()
        op = self.word(operator)
        if op not in OPERATORS:
            raise FilterError(
                f"expected an operator ({_OPS_TEXT}) after {_show(path.text)}, found {_describe(operator)}",
                operator.pos,
            )
        self.advance()
        if op == "pr":
            return Present(path.text, position=path.pos)
        literal = self.peek()
        word = self.word(literal)
        value: Value
        if literal.kind in ("string", "number"):
            value = literal.value
        elif word in _LITERAL_WORDS:
            value = {"true": True, "false": False, "null": None}[word]
        else:
            raise FilterError(
                f'expected a value (a "string", a number, true, false or null) after {_show(operator.text)},'
                f" found {_describe(literal)}",
                literal.pos,
            )
        self.advance()
        return Compare(path.text, op, value, position=path.pos)


def parse(text: str) -> Node:
    """The AST of a filter; a `FilterError` with the offset and what was expected there if it is not one."""
    if not isinstance(text, str):
        raise FilterError(f"a filter is a string, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise FilterError(
            f"the filter is {len(text)} characters long, over the limit of {MAX_LENGTH} (MAX_LENGTH)", MAX_LENGTH
        )
    forbidden = _FORBIDDEN.search(text)
    if forbidden:
        c = forbidden.group()
        what = "NUL character (U+0000)" if c == "\x00" else f"lone surrogate U+{ord(c):04X} (not a character)"
        raise FilterError(f"{what} is not allowed in a filter", forbidden.start())
    tokens = _lex(text)
    if tokens[0].kind == "end":
        raise FilterError('empty filter: expected an expression such as user.id eq "alice"', tokens[0].pos)
    parser = _Parser(tokens)
    node = parser.filter()
    rest = parser.peek()
    if rest.kind == ")":
        raise FilterError("unbalanced ')': there is no '(' for it to close", rest.pos)
    if rest.kind != "end":
        raise FilterError(f"expected 'and', 'or' or the end of the filter, found {_describe(rest)}", rest.pos)
    return node


# -- checking and rendering an AST ------------------------------------------------------------------

_MAX_NODES = 4096


def _check(node: object) -> None:
    """Raise unless ``node`` is an AST `parse` could have produced (types, paths, operators, literals, limits)."""
    stack: list[tuple[object, int]] = [(node, 0)]
    nodes = comparisons = 0
    while stack:
        item, level = stack.pop()
        nodes += 1
        if nodes > _MAX_NODES or level > 2 * MAX_COMPARISONS + MAX_DEPTH:
            raise FilterError(f"the filter is deeper than the limit of {MAX_DEPTH} (MAX_DEPTH)")
        if isinstance(item, (And, Or)):
            stack.append((item.left, level + 1))
            stack.append((item.right, level + 1))
        elif isinstance(item, Not):
            stack.append((item.node, level + 1))
        elif isinstance(item, (Compare, Present)):
            comparisons += 1
            if comparisons > MAX_COMPARISONS:
                raise FilterError(f"more than the limit of {MAX_COMPARISONS} comparisons (MAX_COMPARISONS)")
            _check_comparison(item)
        else:
            raise TypeError(f"not a filter node: {type(item).__name__}")
    depth = _depth(node)  # type: ignore[arg-type]  # checked above: every item is a Node
    if depth > MAX_DEPTH:
        raise FilterError(f"parentheses nest deeper than the limit of {MAX_DEPTH} (MAX_DEPTH)")


def _check_comparison(item: Compare | Present) -> None:
    if not isinstance(item.path, str) or not _PATH.fullmatch(item.path) or item.path.lower() in _RESERVED:
        raise FilterError(f"not an attribute path: {item.path!r}", item.position)
    if isinstance(item, Present):
        return
    if item.op not in _COMPARE_OPS:
        raise FilterError(f"not a comparison operator: {item.op!r} (one of {_OPS_TEXT})", item.position)
    value = item.value
    if isinstance(value, str):
        if _FORBIDDEN.search(value):
            raise FilterError(f"NUL or a lone surrogate in the value of {item.path}", item.position)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{item.path} {item.op}: a number must be finite, not {value!r}", item.position)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise FilterError(f"{item.path} {item.op}: integer {value} does not fit in 64 bits", item.position)
    elif value is not None and not isinstance(value, bool):
        raise TypeError(f"not a filter value: {type(value).__name__}")


def _depth(node: Node) -> int:
    """How deep `render` nests parentheses for ``node``."""
    if isinstance(node, Not):
        return 1 + _depth(node.node)
    if isinstance(node, And):
        return max(
            _depth(node.left) + isinstance(node.left, Or), _depth(node.right) + isinstance(node.right, (And, Or))
        )
    if isinstance(node, Or):
        return max(_depth(node.left), _depth(node.right) + isinstance(node.right, Or))
    return 0


def _render_value(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _render(node: Node) -> str:
    if isinstance(node, Compare):
        return f"{node.path} {node.op} {_render_value(node.value)}"
    if isinstance(node, Present):
        return f"{node.path} pr"
    if isinstance(node, Not):
        return f"not ({_render(node.node)})"
    if isinstance(node, And):
        left, right = _render(node.left), _render(node.right)
        if isinstance(node.left, Or):
            left = f"({left})"
        if isinstance(node.right, (And, Or)):
            right = f"({right})"
        return f"{left} and {right}"
    left, right = _render(node.left), _render(node.right)
    if isinstance(node.right, Or):
        right = f"({right})"
    return f"{left} or {right}"


def render(node: Node) -> str:
    """The filter text of ``node``, with the fewest parentheses: ``parse(render(node)) == node``."""
    _check(node)
    return _render(node)


# -- fields and literals ------------------------------------------------------------------------------

_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Field:
    """Where a filter path lives in the store: a column and what it holds.

    ``kind``: ``"text"``; ``"int"``; ``"time"`` (integer unix nanoseconds); ``"ip"`` (text holding an
    address, with `ip_key` of it in the column ``<column>_key``). ``column`` is a plain SQL identifier
    (letters, digits, ``_``), emitted double-quoted; `to_python` reads the row's value under the same
    name.
    """

    column: str
    kind: str

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not _COLUMN.fullmatch(self.column):
            raise ValueError(f"Field column must be a plain SQL identifier, not {self.column!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Field kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def parse_time(text: str) -> int | None:
    """Unix nanoseconds of an RFC 3339 date-time (``2026-12-01T10:00:00.123456789+02:00``); None if it is
    not one (bad form or date, more than 9 fraction digits, a leap second, outside int64 nanoseconds:
    1677-09-21 to 2262-04-11)."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_hour, off_minute = match.groups()[6:]
    if hour > 23 or minute > 59 or second > 59 or (fraction is not None and len(fraction) > 9):
        return None
    try:
        days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    offset = 0
    if not zulu:
        if int(off_hour) > 23 or int(off_minute) > 59:
            return None
        offset = (int(off_hour) * 3600 + int(off_minute) * 60) * (1 if sign == "+" else -1)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    nanos = seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)
    return nanos if _INT64_MIN <= nanos <= _INT64_MAX else None


_MAPPED = 0xFFFF << 32


def _ip6(address: object) -> ipaddress.IPv6Address | None:
    """An address as IPv6 (IPv4 as its IPv4-mapped form, zone dropped); None if it is not an address."""
    if not isinstance(address, str):
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if parsed.version == 4:
        return ipaddress.IPv6Address(_MAPPED | int(parsed))
    return ipaddress.IPv6Address(int(parsed))


def _net6(text: str) -> ipaddress.IPv6Network:
    """A CIDR network as IPv6 (IPv4 as its IPv4-mapped range); ValueError if it is not one."""
    network = ipaddress.ip_network(text, strict=True)
    if network.version == 4:
        return ipaddress.IPv6Network((_MAPPED | int(network.network_address), 96 + network.prefixlen))
    return ipaddress.IPv6Network((int(network.network_address), network.prefixlen))


def ip_key(address: str) -> str | None:
    """The sortable key the store writes to ``<column>_key`` for an ``ip`` field; None for a non-address.

    32 lower-case hex digits of the 128-bit IPv6 address, an IPv4 address as its IPv4-mapped form
    (``10.1.2.3`` -> ``00000000000000000000ffff0a010203``, the same key as ``::ffff:10.1.2.3``). Fixed
    width, so text order is numeric order; no IPv4 address shares a key with an IPv6 address other than
    its own mapped form. A zone (``fe80::1%eth0``) is dropped.
    """
    parsed = _ip6(address)
    return None if parsed is None else f"{int(parsed):032x}"


# -- resolving comparisons against fields --------------------------------------------------------------


class _Leaf(NamedTuple):
    """A comparison resolved against its field: what both back ends evaluate."""

    column: str
    mode: str  # "text" "num" "ipkey" "ipnet" "absent" "present" "match"
    op: str  # eq ne gt ge lt le, or co sw ew for "match"
    value: Any  # str / int / float / IPv6Address / IPv6Network / None
    blank_is_absent: bool  # text columns: "" counts as absent for pr and eq null


def _field(path: str, fields: Mapping[str, Field], position: int | None) -> Field:
    found = fields.get(path)
    if found is None:
        folded = [key for key in fields if key.lower() == path.lower()]
        if len(folded) == 1:
            found = fields[folded[0]]
    if found is None:
        known = ", ".join(sorted(fields)) or "none"
        raise FilterError(f"unknown attribute {_show(path, 80)}; the known ones are: {known}", position)
    if not isinstance(found, Field):
        raise TypeError(f"fields[{path!r}] is a {type(found).__name__}, not a Field")
    return found


def _resolve(item: Compare | Present, fields: Mapping[str, Field]) -> _Leaf:
    spec = _field(item.path, fields, item.position)
    column, kind = spec.column, spec.kind
    textual = kind in ("text", "ip")
    if isinstance(item, Present):
        return _Leaf(column, "present", "pr", None, textual)
    op, value = item.op, item.value

    def wrong(expected: str) -> FilterError:
        shown = _show(_render(item), 80)
        article = "an" if kind in ("int", "ip") else "a"
        return FilterError(f"{shown}: {item.path} is {article} {kind} field: {expected}", item.position)

    if value is None:
        if op not in ("eq", "ne"):
            raise wrong(f"null compares only with eq or ne (or use pr), not with {op}")
        return _Leaf(column, "absent" if op == "eq" else "present", op, None, textual)
    if isinstance(value, bool):
        raise wrong("true and false compare with no field of this service (none holds booleans)")
    if op in _MATCH_OPS:
        if not textual:
            raise wrong(f"{op} works on text and ip fields; compare numbers with eq ne gt ge lt le")
        if not isinstance(value, str):
            raise wrong(f'{op} takes a "string"')
        return _Leaf(column, "match", op, value, True)
    if kind == "text":
        if not isinstance(value, str):
            raise wrong('it takes a "string"')
        return _Leaf(column, "text", op, value, True)
    if kind == "int":
        if isinstance(value, str):
            raise wrong("it takes a number")
        return _Leaf(column, "num", op, value, False)
    if kind == "time":
        if isinstance(value, float):
            raise wrong("it takes integer nanoseconds or an RFC 3339 date-time string, not a fraction")
        if isinstance(value, str):
            nanos = parse_time(value)
            if nanos is None:
                raise wrong(
                    'it takes an RFC 3339 date-time such as "2026-12-01T10:00:00Z" or'
                    ' "2026-12-01T10:00:00.123456789+02:00" (offset required, at most 9 fraction digits,'
                    " 1677-09-21 to 2262-04-11), or integer nanoseconds"
                )
            value = nanos
        return _Leaf(column, "num", op, value, False)
    # ip
    if not isinstance(value, str):
        raise wrong('it takes an address, a CIDR network ("10.0.0.0/8") or a "string"')
    if "/" in value:
        if op not in ("eq", "ne"):
            raise wrong(f"a CIDR network compares only with eq or ne, not with {op}")
        try:
            network = _net6(value)
        except ValueError as error:
            raise wrong(f"{_show(value)} is not a CIDR network ({error})") from None
        return _Leaf(column, "ipnet", op, network, True)
    address = _ip6(value)
    if address is not None:
        return _Leaf(column, "ipkey", op, address, True)
    if op in _ORDER_OPS:
        raise wrong(f"{op} takes an address (10.0.0.1, 2001:db8::1)")
    return _Leaf(column, "text", op, value, True)


# -- SQL ---------------------------------------------------------------------------------------------

_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_PLACEHOLDERS = ("?", "%s")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _quote(column: str) -> str:
    return f'"{column}"'  # a checked identifier (Field): no quote inside


def _compare_sql(column: str, op: str, bind: Callable[[Any], str], value: Any) -> str:
    """``column op value``, two-valued: NULL never matches eq/gt/..., always matches ne."""
    if op == "ne":
        return f"({column} IS NULL OR {column} <> {bind(value)})"
    return f"({column} IS NOT NULL AND {column} {_SQL_OPS[op]} {bind(value)})"


def _float_sql(column: str, op: str, bind: Callable[[Any], str], value: float) -> str:
    """An int column against a fraction, as the integer comparison it equals: no float parameter, whose type
    a database may infer from the column (PostgreSQL's PREPARE casts ``gt 0.5`` to ``gt 0``) or compare
    inexactly."""
    never, anything = "(1 = 0)", f"({column} IS NOT NULL)"
    if op in ("eq", "ne"):
        if value.is_integer() and _INT64_MIN <= value <= _INT64_MAX:
            return _compare_sql(column, op, bind, int(value))
        return never if op == "eq" else "(1 = 1)"
    # gt v is gt floor(v); ge v is ge ceil(v); lt v is lt ceil(v); le v is le floor(v)
    bound = math.floor(value) if op in ("gt", "le") else math.ceil(value)
    if bound > _INT64_MAX or (bound == _INT64_MAX and op == "gt"):
        return anything if op in ("lt", "le") else never
    if bound < _INT64_MIN or (bound == _INT64_MIN and op == "lt"):
        return anything if op in ("gt", "ge") else never
    return _compare_sql(column, op, bind, bound)


def _leaf_sql(leaf: _Leaf, bind: Callable[[Any], str], case_insensitive: bool) -> str:
    c = _quote(leaf.column)
    if leaf.mode == "present":
        return f"({c} IS NOT NULL AND {c} <> '')" if leaf.blank_is_absent else f"({c} IS NOT NULL)"
    if leaf.mode == "absent":
        return f"({c} IS NULL OR {c} = '')" if leaf.blank_is_absent else f"({c} IS NULL)"
    if leaf.mode == "num" and isinstance(leaf.value, float):
        return _float_sql(c, leaf.op, bind, leaf.value)
    if leaf.mode in ("text", "num"):
        return _compare_sql(c, leaf.op, bind, leaf.value)
    if leaf.mode == "ipkey":
        return _compare_sql(_quote(leaf.column + "_key"), leaf.op, bind, f"{int(leaf.value):032x}")
    if leaf.mode == "ipnet":
        k = _quote(leaf.column + "_key")
        low, high = f"{int(leaf.value.network_address):032x}", f"{int(leaf.value.broadcast_address):032x}"
        if leaf.op == "ne":
            return f"({k} IS NULL OR {k} < {bind(low)} OR {k} > {bind(high)})"
        return f"({k} IS NOT NULL AND {k} >= {bind(low)} AND {k} <= {bind(high)})"
    # match: co sw ew
    needle: str = leaf.value
    pattern = _like_escape(needle)
    pattern = {"co": f"%{pattern}%", "sw": f"{pattern}%", "ew": f"%{pattern}"}[leaf.op]
    if case_insensitive:
        return f"({c} IS NOT NULL AND LOWER({c}) LIKE LOWER({bind(pattern)}) ESCAPE '\\')"
    if not needle:
        return f"({c} IS NOT NULL)"
    # LIKE ignores ASCII case in SQLite (not in PostgreSQL): an exact test of the part makes it exact in both.
    like = f"{c} LIKE {bind(pattern)} ESCAPE '\\'"
    if leaf.op == "co":
        return f"({c} IS NOT NULL AND {like} AND replace({c}, {bind(needle)}, '') <> {c})"
    if leaf.op == "sw":
        return f"({c} IS NOT NULL AND {like} AND substr({c}, 1, CAST({bind(len(needle))} AS INTEGER)) = {bind(needle)})"
    return (
        f"({c} IS NOT NULL AND {like} AND substr({c}, length({c}) - CAST({bind(len(needle))} AS INTEGER) + 1)"
        f" = {bind(needle)})"
    )


def compile_sql(
    node: Node, fields: Mapping[str, Field], *, placeholder: str = "?", case_insensitive: bool = True
) -> tuple[str, list[Any]]:
    """A SQL boolean expression for ``node`` and its parameters, in order.

    ``fields`` maps each path a filter may use to its `Field`; an unknown path or a literal of the
    wrong type for its field is a `FilterError`. ``placeholder``: ``"?"`` (sqlite3) or ``"%s"``
    (psycopg). ``case_insensitive``: whether ``co sw ew`` ignore case. See the module docstring for the
    semantics.
    """
    if placeholder not in _PLACEHOLDERS:
        raise ValueError(f"placeholder must be one of {', '.join(_PLACEHOLDERS)}, not {placeholder!r}")
    _check(node)
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder

    def walk(item: Node) -> str:
        if isinstance(item, (And, Or)):
            # a chain of one operator flat, "(a OR b OR c ...)", not nested pairs: 64 comparisons nested two by
            # two overflowed SQLite's parser stack ("parser stack overflow")
            kind = type(item)
            operands: list[Node] = []
            todo: list[Node] = [item]
            while todo:
                n = todo.pop()
                if type(n) is kind:
                    todo += [n.right, n.left]  # same-operator chain, left first
                else:
                    operands.append(n)
            joiner = " AND " if kind is And else " OR "
            return "(" + joiner.join(walk(n) for n in operands) + ")"
        if isinstance(item, Not):
            return f"(NOT {walk(item.node)})"
        return _leaf_sql(_resolve(item, fields), bind, case_insensitive)

    return walk(node), params


# -- Python -------------------------------------------------------------------------------------------

_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
Predicate = Callable[[Mapping[str, Any]], bool]
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "gt": lambda a, b: bool(a > b),
    "ge": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "le": lambda a, b: bool(a <= b),
}


def _text(row: Mapping[str, Any], column: str) -> str | None:
    value = row.get(column)
    return value if isinstance(value, str) else None


def _number(row: Mapping[str, Any], column: str) -> int | float | None:
    value = row.get(column)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _leaf_python(leaf: _Leaf, case_insensitive: bool) -> Predicate:
    column, op, literal = leaf.column, leaf.op, leaf.value
    if leaf.mode in ("present", "absent"):
        if leaf.blank_is_absent:

            def present(row: Mapping[str, Any]) -> bool:
                value = _text(row, column)
                return value is not None and value != ""

        else:

            def present(row: Mapping[str, Any]) -> bool:
                return _number(row, column) is not None

        if leaf.mode == "present":
            return present
        return lambda row: not present(row)
    getter: Callable[[Mapping[str, Any], str], Any]
    if leaf.mode == "match":
        fold = case_insensitive
        needle = literal.translate(_FOLD) if fold else literal
        test: Callable[[str], bool] = {
            "co": lambda v: needle in v,
            "sw": lambda v: v.startswith(needle),
            "ew": lambda v: v.endswith(needle),
        }[op]

        def match(row: Mapping[str, Any]) -> bool:
            value = _text(row, column)
            return value is not None and test(value.translate(_FOLD) if fold else value)

        return match
    if leaf.mode in ("ipkey", "ipnet"):

        def getter(row: Mapping[str, Any], name: str) -> Any:
            return _ip6(row.get(name))

    else:
        getter = _text if leaf.mode == "text" else _number
    if leaf.mode == "ipnet":

        def inside(row: Mapping[str, Any]) -> bool:
            address = getter(row, column)
            return address is not None and address in literal

        return inside if op == "eq" else (lambda row: not inside(row))
    compare = _ORDER["eq" if op == "ne" else op]

    def positive(row: Mapping[str, Any]) -> bool:
        value = getter(row, column)
        return value is not None and compare(value, literal)

    return positive if op != "ne" else (lambda row: not positive(row))


def to_python(node: Node, fields: Mapping[str, Field], *, case_insensitive: bool = True) -> Predicate:
    """A predicate over a row of column values (``{column: value}``, a missing column is NULL) that
    gives what the SQL of `compile_sql` gives for that row; the same `FilterError` s, raised here.

    A value of the wrong type for its field (not a str for text, not an int or float for int and
    time) counts as NULL. For an ``ip`` field the address column is read (and parsed), not its key.
    """
    _check(node)

    def build(item: Node) -> Predicate:
        if isinstance(item, And):
            left_and, right_and = build(item.left), build(item.right)
            return lambda row: left_and(row) and right_and(row)
        if isinstance(item, Or):
            left_or, right_or = build(item.left), build(item.right)
            return lambda row: left_or(row) or right_or(row)
        if isinstance(item, Not):
            inner = build(item.node)
            return lambda row: not inner(row)
        return _leaf_python(_resolve(item, fields), case_insensitive)

    return build(node)
