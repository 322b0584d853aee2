"""The query API's SCIM filter (otel_audit.service.filter): parsing, errors, SQL on a real SQLite table, and
the Python evaluator as the independent oracle (the rows the SQL selects are the rows the predicate accepts)."""

from __future__ import annotations

import ipaddress
import random
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_audit.service.filter import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    Field,
    FilterError,
    Node,
    Not,
    Or,
    Present,
    compile_sql,
    ip_key,
    parse,
    parse_time,
    render,
    to_python,
)

FIELDS = {
    "event": Field("event_name", "text"),
    "time": Field("time_ns", "time"),
    "user.id": Field("user_id", "text"),
    "audit.actor.id": Field("actor_id", "text"),
    "audit.outcome": Field("outcome", "text"),
    "client.address": Field("client_address", "ip"),
    "gen_ai.usage.input_tokens": Field("input_tokens", "int"),
    "severity": Field("severity", "int"),
}
KIND_PATHS = {kind: [p for p, f in FIELDS.items() if f.kind == kind] for kind in ("text", "int", "time", "ip")}
BASE_NS = 1_796_083_200_000_000_000  # 2026-12-01T00:00:00Z

USERS = [
    "alice",
    "Alice",
    "ALICE",
    "bob",
    "carol",
    "dave_1",
    "dave-1",
    "e%ve",
    "e_ve",
    "back\\slash",
    'quo"te',
    "it's",
    "Élodie",
    "élodie",
    "über",
    "",
    None,
]
EVENTS = [
    "user.login",
    "user.logout",
    "gen_ai.chat",
    "gen_ai.embeddings",
    "audit.query",
    "audit.export",
    "key.create",
    "Key.Create",
    None,
]
OUTCOMES = ["success", "failure", "unknown", "", None]
ADDRESSES = [
    "10.0.0.1",
    "10.1.2.3",
    "10.255.255.255",
    "11.0.0.0",
    "9.255.255.255",
    "192.168.1.20",
    "8.8.8.8",
    "0.0.0.0",
    "255.255.255.255",
    "::ffff:10.1.2.3",
    "::ffff:c0a8:0114",
    "::10.0.0.1",
    "::1",
    "::",
    "2001:db8::1",
    "2001:DB8:0:0::2",
    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db9::1",
    "fe80::1%eth0",
    "unknown",
    "10.0.0.1:443",
    " 10.0.0.1",
    "",
    None,
]


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(20261201)
    rows = []
    for i in range(400):
        address = rng.choice(ADDRESSES)
        when = (
            None
            if rng.random() < 0.08
            else BASE_NS
            + rng.randrange(-3 * 86400, 3 * 86400) * 10**9
            + rng.choice([0, 0, 123_456_789, 999_999_999, rng.randrange(10**9)])
        )
        rows.append(
            {
                "id": i,
                "event_name": rng.choice(EVENTS),
                "time_ns": when,
                "user_id": rng.choice(USERS),
                "actor_id": rng.choice(USERS[:6] + [None]),
                "outcome": rng.choice(OUTCOMES),
                "client_address": address,
                "client_address_key": ip_key(address) if address is not None else None,
                "input_tokens": None
                if rng.random() < 0.15
                else rng.choice([0, 1, 5, 999, 1000, 1001, rng.randrange(5000)]),
                "severity": rng.choice([None, 9, 13, 17, 21]),
            }
        )
    return rows


ROWS = _rows()
COLUMNS = list(ROWS[0])


class _Postgres:
    """The seeded table in a real PostgreSQL database (the store's column types: BIGINT, text COLLATE "C"),
    read through the same ``execute(sql, params)`` as a sqlite3 connection; the SQL is compiled with ``%s``."""

    placeholder = "%s"

    def __init__(self, server: Any) -> None:
        import psycopg

        db = server.database()
        self.con = psycopg.connect(db.owner_url, autocommit=True)
        self.con.execute(
            'CREATE TABLE filter_events (id BIGINT PRIMARY KEY, event_name TEXT COLLATE "C", time_ns BIGINT, '
            'user_id TEXT COLLATE "C", actor_id TEXT COLLATE "C", outcome TEXT COLLATE "C", client_address TEXT '
            'COLLATE "C", client_address_key TEXT COLLATE "C", input_tokens BIGINT, severity BIGINT)')
        with self.con.cursor() as cur:
            cur.executemany(f"INSERT INTO filter_events ({', '.join(COLUMNS)}) VALUES "
                            f"({', '.join(['%s'] * len(COLUMNS))})",
                            [tuple(row[c] for c in COLUMNS) for row in ROWS])

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.con.execute(sql.replace("FROM events", "FROM filter_events"), params)

    def close(self) -> None:
        self.con.close()


@pytest.fixture(scope="module", params=["like-ignores-case", "like-exact", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[sqlite3.Connection]:
    """The seeded table, three times: SQLite's own LIKE (ASCII case ignored), LIKE made case-sensitive as
    PostgreSQL's is (``PRAGMA case_sensitive_like``), so the SQL must not lean on either, and a real PostgreSQL
    server (the store's other back end)."""
    if request.param == "postgres":
        pg = _Postgres(request.getfixturevalue("pg_server"))
        yield pg  # type: ignore[misc]
        pg.close()
        return
    conn = sqlite3.connect(":memory:")
    if request.param == "like-exact":
        conn.execute("PRAGMA case_sensitive_like = ON")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, event_name TEXT, time_ns INTEGER, user_id TEXT, actor_id TEXT,"
        " outcome TEXT, client_address TEXT, client_address_key TEXT, input_tokens INTEGER, severity INTEGER)"
    )
    conn.executemany(
        f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [tuple(row[c] for c in COLUMNS) for row in ROWS],
    )
    yield conn
    conn.close()


def sql_ids(db: sqlite3.Connection, node: Node, case_insensitive: bool = True) -> list[int]:
    placeholder = getattr(db, "placeholder", "?")
    sql, params = compile_sql(node, FIELDS, placeholder=placeholder, case_insensitive=case_insensitive)
    assert sql.count(placeholder) == len(params)
    return [r[0] for r in db.execute(f"SELECT id FROM events WHERE {sql} ORDER BY id", params)]


def py_ids(node: Node, case_insensitive: bool = True) -> list[int]:
    predicate = to_python(node, FIELDS, case_insensitive=case_insensitive)
    return [row["id"] for row in ROWS if predicate(row)]


def both(db: sqlite3.Connection, text: str, case_insensitive: bool = True) -> list[int]:
    node = parse(text)
    selected = sql_ids(db, node, case_insensitive)
    if isinstance(db, _Postgres) and case_insensitive and not text.isascii():
        return selected  # co sw ew fold non-ASCII letters as PostgreSQL's LOWER does (the module docstring)
    assert selected == py_ids(node, case_insensitive), text
    return selected


def rows_where(condition: Any) -> list[int]:
    return [row["id"] for row in ROWS if condition(row)]


# -- SQL and the oracle agree, and both mean what the docs say -------------------------------------------

EXPRESSIONS = [
    'user.id eq "alice"',
    'user.id ne "alice"',
    'not (user.id eq "alice")',
    'user.id eq ""',
    "user.id pr",
    "not (user.id pr)",
    "user.id eq null",
    "user.id ne null",
    'user.id co "LIC"',
    'user.id sw "a"',
    'user.id ew "E"',
    'user.id co "%"',
    'user.id co "_"',
    'user.id co "\\\\"',
    'user.id co "\\""',
    'user.id co "\'"',
    'user.id sw "dave_"',
    'user.id co ""',
    'user.id co "é"',
    'user.id sw "É"',
    'user.id gt "bob"',
    'user.id le "Alice"',
    'event sw "gen_ai."',
    'event ew ".create"',
    'event co "." and not (event sw "user.")',
    'audit.actor.id eq "bob" or user.id eq "bob"',
    'audit.outcome eq "failure" and (user.id sw "a" or user.id sw "b")',
    'audit.outcome pr and audit.outcome ne "success"',
    "gen_ai.usage.input_tokens gt 1000",
    "gen_ai.usage.input_tokens ge 1000 and gen_ai.usage.input_tokens le 1000",
    "gen_ai.usage.input_tokens eq 1000.0",
    "gen_ai.usage.input_tokens lt 999.5",
    "gen_ai.usage.input_tokens ne 0",
    "gen_ai.usage.input_tokens eq null",
    "gen_ai.usage.input_tokens pr",
    "severity ge 17 or severity lt 10",
    *(
        f"gen_ai.usage.input_tokens {op} {v}"
        for op in ("eq", "ne", "gt", "ge", "lt", "le")
        for v in (
            "0.5",
            "-0.5",
            "999.5",
            "1000.0",
            "-0.0",
            "1e300",
            "-1e300",
            "9.3e18",
            "9223372036854775807.0",
            "-9223372036854775808.0",
            "5e-324",
        )
    ),
    'time ge "2026-12-01T00:00:00Z"',
    'time lt "2026-12-01T02:00:00+02:00"',
    'time gt "2026-11-30T12:30:00.5-01:30" and time le "2026-12-02t00:00:00.999999999z"',
    f"time ge {BASE_NS} and time lt {BASE_NS + 3600 * 10**9}",
    "time ne null",
    "time eq null or time ne null",
    'client.address eq "10.0.0.0/8"',
    'client.address ne "10.0.0.0/8"',
    'not (client.address eq "10.0.0.0/8")',
    'client.address eq "0.0.0.0/0"',
    'client.address eq "::/0"',
    'client.address eq "::ffff:0:0/96"',
    'client.address eq "2001:db8::/32"',
    'client.address eq "2001:db8::1/128"',
    'client.address eq "192.168.0.0/16"',
    'client.address eq "10.1.2.3"',
    'client.address eq "::ffff:a01:203"',
    'client.address eq "2001:db8::2"',
    'client.address eq "fe80::1"',
    'client.address eq "unknown"',
    'client.address ne "unknown"',
    'client.address eq ""',
    "client.address pr",
    "client.address eq null",
    'client.address sw "10."',
    'client.address co "DB8"',
    'client.address gt "10.0.0.1"',
    'client.address le "::ffff:10.255.255.255"',
    'client.address ge "2001:db8::"',
    'user.id eq "alice" or user.id eq "bob" and audit.outcome eq "failure"',
    '(user.id eq "alice" or user.id eq "bob") and audit.outcome eq "failure"',
    'not (not (user.id ne "x"))',
    'not (user.id eq "alice" or client.address eq "10.0.0.0/8") and time pr',
    'USER.ID EQ "alice" AND Not (Event Sw "user.") OR severity Gt 13',
]


@pytest.mark.parametrize("text", EXPRESSIONS)
@pytest.mark.parametrize("case_insensitive", [True, False])
def test_sql_selects_what_python_selects(db: sqlite3.Connection, text: str, case_insensitive: bool) -> None:
    both(db, text, case_insensitive)


def test_semantics_spelled_out(db: sqlite3.Connection) -> None:
    """Not just agreement: each rule of the module docstring, checked against the seeded rows directly."""
    # eq is exact and case-sensitive; ne and not() take the rows without the attribute.
    assert both(db, 'user.id eq "alice"') == rows_where(lambda r: r["user_id"] == "alice")
    assert both(db, 'user.id ne "alice"') == rows_where(lambda r: r["user_id"] != "alice")
    assert both(db, 'not (user.id eq "alice")') == both(db, 'user.id ne "alice"')
    assert rows_where(lambda r: r["user_id"] is None)[0] in both(db, 'user.id ne "alice"')
    # pr: not NULL and not ""; eq null is its opposite.
    assert both(db, "user.id pr") == rows_where(lambda r: r["user_id"] not in (None, ""))
    assert both(db, "user.id eq null") == rows_where(lambda r: r["user_id"] in (None, ""))
    assert both(db, "gen_ai.usage.input_tokens pr") == rows_where(lambda r: r["input_tokens"] is not None)
    # co/sw/ew: ASCII case folds by default, other letters do not (SQLite LOWER, as to_python); exact if asked.
    assert both(db, 'user.id co "LIC"') == rows_where(lambda r: (r["user_id"] or "").lower() in ("alice",))
    assert both(db, 'user.id co "LIC"', case_insensitive=False) == rows_where(lambda r: r["user_id"] == "ALICE")
    assert both(db, 'user.id sw "A"', case_insensitive=False) == rows_where(
        lambda r: r["user_id"] in ("Alice", "ALICE")
    )
    assert both(db, 'user.id sw "é"') == rows_where(lambda r: r["user_id"] == "élodie")
    # LIKE metacharacters are literal.
    assert both(db, 'user.id co "%"') == rows_where(lambda r: r["user_id"] == "e%ve")
    assert both(db, 'user.id co "_"') == rows_where(lambda r: r["user_id"] in ("dave_1", "e_ve"))
    assert both(db, 'user.id co "\\\\"') == rows_where(lambda r: r["user_id"] == "back\\slash")
    assert both(db, 'user.id ew "_1"') == rows_where(lambda r: r["user_id"] == "dave_1")
    # time: RFC 3339 with offset and fraction, or ns; both are the same instant.
    assert both(db, 'time ge "2026-12-01T02:00:00+02:00"') == both(db, f"time ge {BASE_NS}")
    assert both(db, f"time ge {BASE_NS}") == rows_where(lambda r: r["time_ns"] is not None and r["time_ns"] >= BASE_NS)
    # ip: CIDR is containment, IPv4-mapped addresses are their IPv4 host, other v6 forms are not.
    ten = both(db, 'client.address eq "10.0.0.0/8"')
    inside = {"10.0.0.1", "10.1.2.3", "10.255.255.255", "::ffff:10.1.2.3"}
    assert ten == rows_where(lambda r: r["client_address"] in inside) and ten
    assert both(db, 'client.address eq "2001:db8::/32"') == rows_where(
        lambda r: r["client_address"] in ("2001:db8::1", "2001:DB8:0:0::2", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
    )
    assert both(db, 'client.address eq "2001:db8::2"') == rows_where(lambda r: r["client_address"] == "2001:DB8:0:0::2")
    assert both(db, 'client.address eq "192.168.1.20"') == rows_where(
        lambda r: r["client_address"] in ("192.168.1.20", "::ffff:c0a8:0114")
    )
    assert both(db, 'client.address eq "fe80::1"') == rows_where(lambda r: r["client_address"] == "fe80::1%eth0")
    assert both(db, 'client.address eq "unknown"') == rows_where(lambda r: r["client_address"] == "unknown")
    assert both(db, 'client.address ne "10.0.0.0/8"') == [r["id"] for r in ROWS if r["id"] not in ten]
    everything_ip = rows_where(lambda r: ip_key(r["client_address"] or "") is not None)
    assert both(db, 'client.address eq "::/0"') == everything_ip
    assert both(db, 'client.address eq "0.0.0.0/0"') == both(db, 'client.address eq "::ffff:0:0/96"')
    # precedence: not > and > or.
    assert both(db, 'user.id eq "alice" or user.id eq "bob" and audit.outcome eq "failure"') == rows_where(
        lambda r: r["user_id"] == "alice" or (r["user_id"] == "bob" and r["outcome"] == "failure")
    )


# -- generated ASTs ---------------------------------------------------------------------------------------

_TEXTS = st.one_of(
    st.sampled_from([u for u in USERS if u is not None] + [e for e in EVENTS if e is not None] + OUTCOMES[:3]),
    st.text(alphabet="aAlLiIcCeE%_\\\"'é.É-1 ", max_size=5),
)
_ADDRS = st.one_of(
    st.sampled_from([a for a in ADDRESSES if a and ip_key(a)]),
    st.ip_addresses().map(str),
)


@st.composite
def _cidr(draw: st.DrawFn) -> str:
    address = draw(
        st.one_of(st.ip_addresses(), st.sampled_from(ADDRESSES[:4] + ["2001:db8::1"]).map(ipaddress.ip_address))
    )
    bits = 32 if address.version == 4 else 128
    prefix = draw(st.integers(0, bits))
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@st.composite
def _rfc3339(draw: st.DrawFn) -> str:
    ns = BASE_NS + draw(st.integers(-4 * 86400, 4 * 86400)) * 10**9 + draw(st.sampled_from([0, 123_456_789, 5 * 10**8]))
    minutes = draw(st.sampled_from([0, 0, 120, -90, 330, -720]))
    tz = timezone(timedelta(minutes=minutes))
    moment = datetime.fromtimestamp(ns // 10**9, tz)
    fraction = ns % 10**9
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction:09d}".rstrip("0") if fraction else "")
    return text + (
        "Z" if minutes == 0 and draw(st.booleans()) else moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]
    )


def _leaf(kind: str) -> st.SearchStrategy[Node]:
    paths = st.sampled_from(KIND_PATHS[kind])
    present = st.builds(Present, paths)
    null = st.builds(Compare, paths, st.sampled_from(["eq", "ne"]), st.none())
    if kind == "text":
        values: st.SearchStrategy[Any] = _TEXTS
        ops = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
        compare = st.builds(Compare, paths, ops, values)
    elif kind == "int":
        values = st.one_of(
            st.sampled_from([0, 1, 5, 999, 1000, 1001, 9, 13, 17, 21]),
            st.integers(-10, 6000),
            st.floats(-10, 6000, allow_nan=False),
            st.floats(allow_nan=False, allow_infinity=False),
        )
        compare = st.builds(Compare, paths, st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), values)
    elif kind == "time":
        values = st.one_of(
            _rfc3339(),
            st.integers(BASE_NS - 4 * 86400 * 10**9, BASE_NS + 4 * 86400 * 10**9),
            st.sampled_from([r["time_ns"] for r in ROWS[:20] if r["time_ns"]]),
        )
        compare = st.builds(Compare, paths, st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), values)
    else:
        compare = st.one_of(
            st.builds(Compare, paths, st.sampled_from(["eq", "ne"]), st.one_of(_cidr(), _ADDRS, _TEXTS)),
            st.builds(Compare, paths, st.sampled_from(["gt", "ge", "lt", "le"]), _ADDRS),
            st.builds(Compare, paths, st.sampled_from(["co", "sw", "ew"]), st.one_of(_ADDRS, _TEXTS)),
        )
    return st.one_of(compare, present, null)


def _depth(node: Node) -> int:
    """Nesting of parentheses in the text of ``node`` (as render writes it)."""
    if isinstance(node, Not):
        return 1 + _depth(node.node)
    if isinstance(node, And):
        return max(
            _depth(node.left) + isinstance(node.left, Or), _depth(node.right) + isinstance(node.right, (And, Or))
        )
    if isinstance(node, Or):
        return max(_depth(node.left), _depth(node.right) + isinstance(node.right, Or))
    return 0


def _trees(leaves: st.SearchStrategy[Node], max_leaves: int) -> st.SearchStrategy[Node]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)),
        max_leaves=max_leaves,
    ).filter(lambda n: _depth(n) <= MAX_DEPTH)


VALID_TREES = _trees(st.one_of(*(_leaf(k) for k in ("text", "int", "time", "ip"))), 12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(node=VALID_TREES, case_insensitive=st.booleans())
def test_generated_filters_sql_equals_python(db: sqlite3.Connection, node: Node, case_insensitive: bool) -> None:
    text = render(node)
    parsed = parse(text)
    assert shape(parsed) == shape(node)
    assert sql_ids(db, parsed, case_insensitive) == py_ids(parsed, case_insensitive), text


def shape(node: Node) -> Any:
    """``node`` as nested tuples that also tell 1 from 1.0 from True (== on the dataclasses does not)."""
    if isinstance(node, Compare):
        return ("cmp", node.path, node.op, type(node.value).__name__, node.value)
    if isinstance(node, Present):
        return ("pr", node.path)
    if isinstance(node, Not):
        return ("not", shape(node.node))
    return (type(node).__name__, shape(node.left), shape(node.right))


_RESERVED = {"and", "or", "not", "true", "false", "null", "eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le"}
ANY_PATH = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}(\.[A-Za-z_][A-Za-z0-9_-]{0,6}){0,3}", fullmatch=True).filter(
    lambda p: p.lower() not in _RESERVED
)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
)
ANY_LEAF = st.one_of(
    st.builds(Compare, ANY_PATH, st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]), ANY_VALUE),
    st.builds(Present, ANY_PATH),
)


@settings(max_examples=400)
@given(node=_trees(ANY_LEAF, 20))
def test_round_trip(node: Node) -> None:
    text = render(node)
    assert shape(parse(text)) == shape(node)
    assert render(parse(text)) == text


def test_keywords_are_case_insensitive() -> None:
    assert parse('user.id EQ "a" AND NOT (x Pr) oR y LE 1 and z eq TRUE or w ne Null') == Or(
        Or(And(Compare("user.id", "eq", "a"), Not(Present("x"))), And(Compare("y", "le", 1), Compare("z", "eq", True))),
        Compare("w", "ne", None),
    )


def test_strings_numbers_and_escapes() -> None:
    def value(literal: str) -> Any:
        node = parse(f"a eq {literal}")
        assert isinstance(node, Compare)
        return node.value

    assert value('"\\"\\\\\\/\\b\\f\\n\\r\\t"') == '"\\/\b\f\n\r\t'
    assert value('"\\u00e9\\u00C9"') == "éÉ"
    assert value('"\\ud83d\\ude00"') == "\U0001f600"
    assert value('"😀 ü"') == "😀 ü"
    assert value("-0") == 0 and isinstance(value("-0"), int)
    assert value("12") == 12 and isinstance(value("12"), int)
    assert value("1.5e3") == 1500.0 and isinstance(value("1.5e3"), float)
    assert value("-9223372036854775808") == -(2**63)
    assert value("false") is False
    assert parse('a eq"x"and(b pr)') == And(Compare("a", "eq", "x"), Present("b"))
    assert parse(" \t\r\na-b_c.d1 pr\n") == Present("a-b_c.d1")


# -- parse errors: where, and what was expected --------------------------------------------------------------

BAD = [
    ("", 0, "empty filter"),
    ("   ", 3, "empty filter"),
    ('(user.id eq "a"', 15, "expected 'and', 'or' or ')' to close the '(' at 0, found the end of the filter"),
    ("((user.id pr) or x pr", 21, "to close the '(' at 0"),
    ('user.id eq "a")', 14, "unbalanced ')'"),
    (")", 0, "expected an attribute path (user.id), '(' or 'not', found ')'"),
    ("()", 1, "expected an attribute path (user.id), '(' or 'not', found ')'"),
    ('user.id equals "a"', 8, "expected an operator (eq ne co sw ew pr gt ge lt le) after 'user.id', found 'equals'"),
    (
        'event eq "x" and user.id equals "y"',
        25,
        "at 25: expected an operator (eq ne co sw ew pr gt ge lt le) after 'user.id', found 'equals'",
    ),
    ("user.id", 7, "expected an operator (eq ne co sw ew pr gt ge lt le) after 'user.id', found the end of the filter"),
    ("user.id eq", 10, "expected a value (a \"string\", a number, true, false or null) after 'eq', found the end"),
    (
        "user.id eq alice",
        11,
        "expected a value (a \"string\", a number, true, false or null) after 'eq', found 'alice'",
    ),
    ('user.id eq "abc', 11, "unterminated string"),
    ('user.id eq "abc\\', 11, "unterminated string"),
    ('user.id eq "a\\x41"', 13, "bad escape '\\x'"),
    ('user.id eq "\\u12"', 12, "\\u takes four hex digits"),
    ('user.id eq "\\ud800"', 12, "high surrogate \\ud800 is not followed by a low surrogate"),
    ('user.id eq "\\ud800\\u0041"', 12, "not followed by a low surrogate"),
    ('user.id eq "\\udc00"', 12, "lone low surrogate"),
    ('user.id eq "\\u0000"', 12, "NUL (\\u0000) is not allowed"),
    ('user.id eq "a\nb"', 13, "control character U+000A in a string"),
    ('user.id eq "a\x00"', 13, "NUL character (U+0000) is not allowed"),
    ("\x00", 0, "NUL character"),
    ('user.id eq "\ud800"', 12, "lone surrogate U+D800"),
    ("user.id pr user.id pr", 11, "expected 'and', 'or' or the end of the filter, found 'user.id'"),
    ('user.id eq "a" "b"', 15, "expected 'and', 'or' or the end of the filter, found '\"b\"'"),
    ('user.id eq "a" and', 18, "expected an attribute path (user.id), '(' or 'not', found the end of the filter"),
    ("and user.id pr", 0, "found 'and'"),
    ('eq "x"', 0, "expected an attribute path (user.id), '(' or 'not', found 'eq'"),
    ("true eq 1", 0, "found 'true'"),
    ("user.id pr or or x pr", 14, "found 'or'"),
    ("not user.id pr", 4, "expected '(' after 'not'"),
    ("not", 3, "expected '(' after 'not'"),
    ("user.id eq 'a'", 11, "double quotes"),
    ('user.id = "a"', 8, "unexpected '='"),
    ('emails[type eq "work"]', 6, "'[' is not supported"),
    ("a eq 01", 5, "malformed number '01'"),
    ("a eq 1.", 5, "malformed number '1.'"),
    ("a eq 1e", 5, "malformed number '1e'"),
    ("a eq -", 5, "malformed number '-'"),
    ("a eq 12abc", 5, "malformed number '12abc'"),
    ("a eq +1", 5, "unexpected character '+'"),
    ("a eq .5", 5, "unexpected character '.'"),
    ("a eq 1e400", 5, "out of range"),
    ("a eq 9223372036854775808", 5, "does not fit in 64 bits"),
    ("a. eq 1", 2, "expected a name after '.' in 'a.'"),
    ("a..b eq 1", 2, "expected a name after '.'"),
    ("a\u00a0eq 1", 1, "unexpected character '\\u00a0' (U+00A0)"),
    ("urn:x:y eq 1", 3, "unexpected character ':'"),
    ("x" * (MAX_LENGTH + 1), MAX_LENGTH, f"over the limit of {MAX_LENGTH} (MAX_LENGTH)"),
    ("a pr and " * 10**5 + "a pr", MAX_LENGTH, "MAX_LENGTH"),
    (" or ".join(["a pr"] * (MAX_COMPARISONS + 1)), 8 * MAX_COMPARISONS, "MAX_COMPARISONS"),
    ("(" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1), MAX_DEPTH, f"deeper than the limit of {MAX_DEPTH}"),
    ("not (" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1), MAX_DEPTH * 5 + 4, "MAX_DEPTH"),
]


@pytest.mark.parametrize(("text", "position", "message"), BAD, ids=[repr(b[0][:30]) for b in BAD])
def test_parse_errors(text: str, position: int, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert caught.value.position == position, str(caught.value)
    assert str(caught.value).startswith(f"filter: at {position}: ")
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_at_the_limits_is_accepted() -> None:
    assert parse("(" * MAX_DEPTH + "a pr" + ")" * MAX_DEPTH) == Present("a")
    assert parse(" or ".join(["a pr"] * MAX_COMPARISONS))
    text = 'a eq "' + "x" * (MAX_LENGTH - 7) + '"'
    assert len(text) == MAX_LENGTH and parse(text)


def test_error_messages_quote_input_safely() -> None:
    with pytest.raises(FilterError) as caught:
        parse('a eq 1 "\u202ebidi' + "z" * 100 + '"')
    message = str(caught.value)
    assert "\u202e" not in message and "\u0007" not in message and "…" in message and len(message) < 200
    with pytest.raises(FilterError, match="a filter is a string"):
        parse(None)  # type: ignore[arg-type]


_ALPHABET = st.sampled_from(
    list("()\"\\ .-+eE019aZ_né😀\x00\ud800\n\t[='") + ["and", "or", "not", " eq ", " pr", "\\u"]
)


@settings(max_examples=500)
@given(text=st.one_of(st.text(max_size=60), st.lists(_ALPHABET, max_size=30).map("".join)))
def test_parse_raises_only_filter_errors(text: str) -> None:
    try:
        node = parse(text)
    except FilterError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
        assert str(error).startswith(f"filter: at {error.position}: ")
    else:
        assert shape(parse(render(node))) == shape(node)


@settings(max_examples=300)
@given(node=_trees(ANY_LEAF, 6), data=st.data())
def test_mutated_filters_raise_only_filter_errors(node: Node, data: st.DataObject) -> None:
    text = render(node)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.sampled_from(["", "(", ")", '"', "\\", " and", " not ", "x", "\x00", "1"]))
    mutated = text[:at] + insert + text[at + cut :]
    try:
        parse(mutated)
    except FilterError as error:
        assert error.position is not None and 0 <= error.position <= len(mutated)


# -- compile errors: unknown paths, literals of the wrong type ----------------------------------------------

COMPILE_BAD = [
    (
        'usr.id eq "x"',
        0,
        "unknown attribute 'usr.id'; the known ones are: audit.actor.id, audit.outcome, "
        "client.address, event, gen_ai.usage.input_tokens, severity, time, user.id",
    ),
    (
        'user.id eq "a" and time gt "yesterday"',
        19,
        "'time gt \"yesterday\"': time is a time field: it takes an RFC 3339",
    ),
    ('time gt "2026-12-01"', 0, "RFC 3339"),
    ('time gt "2026-12-01T10:00:00"', 0, "offset required"),
    ('time gt "2026-02-30T10:00:00Z"', 0, "RFC 3339"),
    ('time gt "2026-12-01T10:00:60Z"', 0, "RFC 3339"),
    ('time gt "2026-12-01T10:00:00.1234567891Z"', 0, "at most 9 fraction digits"),
    ('time gt "2263-01-01T00:00:00Z"', 0, "2262-04-11"),
    ("time gt 1.5", 0, "not a fraction"),
    (
        'gen_ai.usage.input_tokens co "1"',
        0,
        "'gen_ai.usage.input_tokens co \"1\"': gen_ai.usage.input_tokens is an int field: co works on text and ip",
    ),
    ('gen_ai.usage.input_tokens gt "5"', 0, "it takes a number"),
    ("user.id eq 5", 0, "'user.id eq 5': user.id is a text field: it takes a \"string\""),
    ("user.id co 5", 0, 'co takes a "string"'),
    ("user.id eq true", 0, "true and false compare with no field"),
    ("severity ne false", 0, "true and false"),
    ("user.id gt null", 0, "null compares only with eq or ne"),
    ('client.address eq "10.0.0.1/8"', 0, "'10.0.0.1/8' is not a CIDR network (10.0.0.1/8 has host bits set)"),
    ('client.address eq "10.0.0.0/33"', 0, "is not a CIDR network"),
    ('client.address eq "nope/8"', 0, "is not a CIDR network"),
    ('client.address gt "10.0.0.0/8"', 0, "a CIDR network compares only with eq or ne"),
    ('client.address lt "unknown"', 0, "lt takes an address"),
    ("client.address eq 10", 0, "it takes an address"),
]


@pytest.mark.parametrize(("text", "position", "message"), COMPILE_BAD, ids=[c[0] for c in COMPILE_BAD])
def test_compile_errors(text: str, position: int, message: str) -> None:
    node = parse(text)
    errors = []
    for compile_ in (lambda: compile_sql(node, FIELDS), lambda: to_python(node, FIELDS)):
        with pytest.raises(FilterError) as caught:
            compile_()
        errors.append(str(caught.value))
        assert caught.value.position == position
        assert message in str(caught.value), str(caught.value)
    assert errors[0] == errors[1]


def test_paths_match_exactly_then_case_insensitively() -> None:
    assert compile_sql(parse('User.ID eq "a"'), FIELDS) == compile_sql(parse('user.id eq "a"'), FIELDS)
    ambiguous = {"a.b": Field("x", "text"), "A.B": Field("y", "text")}
    assert compile_sql(parse("A.B pr"), ambiguous)[0] == '("y" IS NOT NULL AND "y" <> \'\')'
    with pytest.raises(FilterError, match="unknown attribute 'a.B'"):
        compile_sql(parse("a.B pr"), ambiguous)


def test_hand_built_asts_are_checked() -> None:
    deep: Node = Present("user.id")
    for _ in range(MAX_DEPTH + 1):
        deep = Not(deep)
    wide: Node = Present("user.id")
    for _ in range(MAX_COMPARISONS):
        wide = Or(wide, Present("user.id"))
    very_deep: Node = Present("user.id")
    for _ in range(100_000):
        very_deep = Not(very_deep)
    cases: list[tuple[Any, str]] = [
        (deep, "MAX_DEPTH"),
        (very_deep, "MAX_DEPTH"),
        (wide, "MAX_COMPARISONS"),
        (Compare("user.id", "EQ", "a"), "not a comparison operator"),
        (Compare("user.id", "pr", "a"), "not a comparison operator"),
        (Compare("user id", "eq", "a"), "not an attribute path"),
        (Compare("and", "eq", "a"), "not an attribute path"),
        (Compare("user.id", "eq", "a\x00"), "NUL"),
        (Compare("severity", "eq", float("nan")), "finite"),
        (Compare("severity", "eq", 2**64), "64 bits"),
    ]
    for node, message in cases:
        for use in (compile_sql, to_python, lambda n, _f: render(n)):
            with pytest.raises(FilterError, match=message):
                use(node, FIELDS)
    for use in (compile_sql, to_python):
        with pytest.raises(TypeError):
            use("user.id pr", FIELDS)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            use(Compare("user.id", "eq", b"x"), FIELDS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="placeholder"):
        compile_sql(Present("user.id"), FIELDS, placeholder="$1")


def test_fields_are_checked() -> None:
    for column in ("user id", 'a"b', "t.col", "", "1a", "a;DROP"):
        with pytest.raises(ValueError, match="plain SQL identifier"):
            Field(column, "text")
    with pytest.raises(ValueError, match="kind"):
        Field("a", "bool")


# -- SQL-shaped literals are data ----------------------------------------------------------------------------

NASTY = [
    "x' OR 1=1 --",
    'x" OR 1=1 --',
    "'; DROP TABLE events; --",
    "%' OR '1'='1",
    "\\'; SELECT 1; --",
    "?",
    "%s",
    "$1",
    "*/ OR 1=1 /*",
    "\\\\' OR ''='",
]


@pytest.mark.parametrize("nasty", NASTY)
@pytest.mark.parametrize("op", ["eq", "ne", "co", "sw", "ew", "gt"])
def test_sql_shaped_strings_are_only_parameters(db: sqlite3.Connection, nasty: str, op: str) -> None:
    import json

    node = parse(f"user.id {op} {json.dumps(nasty)}")
    benign = parse(f'user.id {op} "zz"')
    for placeholder in ("?", "%s"):
        for ci in (True, False):
            sql, params = compile_sql(node, FIELDS, placeholder=placeholder, case_insensitive=ci)
            assert sql == compile_sql(benign, FIELDS, placeholder=placeholder, case_insensitive=ci)[0]
            assert sql.replace(placeholder, "").count(placeholder[0]) == 0
            assert any(nasty in str(p) or nasty.lower() in str(p) for p in params) or op != "eq"
    selected = both(db, f"user.id {op} {json.dumps(nasty)}")
    if op in ("eq", "co", "sw", "ew"):
        assert selected == []
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == len(ROWS)


def test_psycopg_placeholders() -> None:
    sql, params = compile_sql(
        parse('user.id co "50%" and not (client.address eq "10.0.0.0/8")'),
        FIELDS,
        placeholder="%s",
        case_insensitive=False,
    )
    assert sql.count("%s") == len(params) == 4 and sql.replace("%s", "").count("%") == 0 and "?" not in sql
    assert params[0] == "%50\\%%"


# -- ip_key and parse_time -----------------------------------------------------------------------------------


def test_ip_key_examples() -> None:
    assert ip_key("10.1.2.3") == "00000000000000000000ffff0a010203" == ip_key("::ffff:10.1.2.3")
    assert ip_key("::10.1.2.3") == "0000000000000000000000000a010203" != ip_key("10.1.2.3")
    assert ip_key("2001:DB8::1") == ip_key("2001:db8:0:0::1") == "20010db8000000000000000000000001"
    assert ip_key("fe80::1%eth0") == ip_key("fe80::1")
    for bad in ("", "unknown", "10.0.0.1:443", " 10.0.0.1", "010.0.0.1", "10.0.0.0/8", "1.2.3", "::g", "１.2.3.4"):
        assert ip_key(bad) is None, bad
    assert ip_key(167772161) is None  # type: ignore[arg-type]  # an int is not an address here


@settings(max_examples=300)
@given(a=st.ip_addresses(), b=st.ip_addresses())
def test_ip_key_sorts_numerically_and_never_collides(a: Any, b: Any) -> None:
    def as6(address: Any) -> int:
        return int(address) | (0xFFFF << 32) if address.version == 4 else int(address)

    ka, kb = ip_key(str(a)), ip_key(str(b))
    assert ka is not None and kb is not None and len(ka) == len(kb) == 32
    assert (ka < kb) == (as6(a) < as6(b)) and (ka == kb) == (as6(a) == as6(b))
    if a.version == 4 and b.version == 6 and ka == kb:
        assert b.ipv4_mapped == a  # the one shared key: an IPv4 address and its own mapped form


def test_parse_time_examples() -> None:
    assert parse_time("2026-12-01T10:00:00Z") == BASE_NS + 10 * 3600 * 10**9
    assert parse_time("2026-12-01T10:00:00.123456789+02:00") == BASE_NS + 8 * 3600 * 10**9 + 123_456_789
    assert parse_time("2026-12-01t10:00:00.5z") == BASE_NS + 10 * 3600 * 10**9 + 500_000_000
    assert parse_time("2026-12-01 10:00:00-00:30") == BASE_NS + (10 * 3600 + 1800) * 10**9
    assert parse_time("1970-01-01T00:00:00Z") == 0
    assert parse_time("1969-12-31T23:59:59.999999999Z") == -1
    assert parse_time("2262-04-11T23:47:16.854775807Z") == 2**63 - 1
    assert parse_time("1677-09-21T00:12:43.145224192Z") == -(2**63)
    for bad in (
        "2262-04-11T23:47:16.854775808Z",
        "2026-12-01",
        "2026-12-01T10:00Z",
        "2026-12-01T10:00:00",
        "2026-13-01T00:00:00Z",
        "2026-12-01T24:00:00Z",
        "2026-12-01T10:00:00+24:00",
        "2026-12-01T10:00:00.Z",
        "2026-12-01T10:00:00+0200",
        "２026-12-01T10:00:00Z",
        "2026-12-01T10:00:00Z\n",
        "yesterday",
        "",
    ):
        assert parse_time(bad) is None, bad


@settings(max_examples=300)
@given(ns=st.integers(-(2**63), 2**63 - 1), minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_parse_time_round_trip(ns: int, minutes: int) -> None:
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    if not 1 <= local.year <= 9999:
        return
    sign, offset = ("+" if minutes >= 0 else "-"), abs(minutes)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{fraction:09d}{sign}{offset // 60:02d}:{offset % 60:02d}"
    assert parse_time(text) == ns


def test_fractions_against_int_fields_bind_integers() -> None:
    """An int column against 0.5 compiles to the integer comparison it equals, so no database casts the
    parameter to the column's type (PostgreSQL's inference would make ``gt 0.5`` ``gt 0``)."""
    cases = {
        "gt 0.5": ('("input_tokens" IS NOT NULL AND "input_tokens" > ?)', [0]),
        "ge 0.5": ('("input_tokens" IS NOT NULL AND "input_tokens" >= ?)', [1]),
        "lt -0.5": ('("input_tokens" IS NOT NULL AND "input_tokens" < ?)', [0]),
        "le -0.5": ('("input_tokens" IS NOT NULL AND "input_tokens" <= ?)', [-1]),
        "eq 2.0": ('("input_tokens" IS NOT NULL AND "input_tokens" = ?)', [2]),
        "eq 2.5": ("(1 = 0)", []),
        "ne 2.5": ("(1 = 1)", []),
        "gt 1e300": ("(1 = 0)", []),
        "lt 1e300": ('("input_tokens" IS NOT NULL)', []),
    }
    for literal, expected in cases.items():
        assert compile_sql(parse(f"gen_ai.usage.input_tokens {literal}"), FIELDS) == expected, literal
