"""AuditLogger's call-site checks against the real pipeline (issue 9, item 4).

Every pipeline here is the real one: an SDK LoggerProvider (with low attribute limits where the
test is about limits) -> RedactionProcessor -> SigningProcessor -> SimpleLogRecordProcessor into
the SDK's InMemoryLogRecordExporter and our FileLogRecordExporter; the archive file is verified
with the public keyring. A refused call must raise one of our errors and emit nothing; an
accepted one must arrive whole and verify.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import opentelemetry._logs._internal as logs_internal
import pytest
from conftest import assert_clean, only_stream, verify
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit import canonical, catalog, decoding
from otel_audit.canonical import DIGEST, RECORD, STREAM_SEQ
from otel_audit.errors import (
    AttributeTypeError,
    AttributeValueError,
    AuditError,
    EmitError,
    EmitTypeError,
    EmitValueError,
    MissingAttributeError,
    UnknownEventError,
)
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring
from otel_audit.logger import MAX_DEPTH, MAX_JSON_DEPTH, MAX_VALUES, AuditLogger
from otel_audit.processors import redaction
from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.signing import SigningProcessor

LOGIN = "authentication.login.succeeded"
LOW_LIMITS = LogRecordLimits(max_attributes=4, max_attribute_length=8)
LIMIT_ENV = {
    "OTEL_ATTRIBUTE_COUNT_LIMIT": "5",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "10",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT": "3",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT": "6",
}


class Pipeline:
    """LoggerProvider -> redaction -> signing -> [in-memory exporter, archive file]."""

    def __init__(self, tmp_path: Path, keys_dir: Path, *, limits: LogRecordLimits | None = None,
                 embed_record: bool = False) -> None:
        self.path = tmp_path / "audit.jsonl"
        self.memory = InMemoryLogRecordExporter()
        self.provider = LoggerProvider(log_record_limits=limits)
        self.provider.add_log_record_processor(RedactionProcessor(mode="hmac", hmac_key=bytes(range(32))))
        self.signing = SigningProcessor(
            keys_dir,
            downstream=[SimpleLogRecordProcessor(self.memory),
                        SimpleLogRecordProcessor(FileLogRecordExporter(self.path, fsync="never"))],
            checkpoint_interval=3600,
            embed_record=embed_record,
            handle_signals=False,
        )
        self.provider.add_log_record_processor(self.signing)
        self.audit = AuditLogger(self.provider)
        self.closed = False

    def events(self) -> list[ReadableLogRecord]:
        """The records handed on, without the signing processor's checkpoints."""
        return [r for r in self.memory.get_finished_logs() if r.log_record.event_name != canonical.CHECKPOINT_EVENT]

    def one(self) -> dict[str, Any]:
        (record,) = self.events()
        assert record.dropped_attributes == 0
        return dict(record.log_record.attributes or {})

    def close_and_verify(self, shared_keys: Path, events: int) -> None:
        self.provider.shutdown()
        self.closed = True
        report = verify(self.path, Keyring.load(shared_keys))
        assert report.ok, report
        s = only_stream(report)
        assert_clean(s)
        assert s.events == events
        assert s.state == "closed"


@pytest.fixture
def pipe(tmp_path: Path, shared_keys: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, shared_keys)
    yield p
    if not p.closed:
        p.provider.shutdown()


@pytest.fixture
def low(tmp_path: Path, shared_keys: Path) -> Iterator[Pipeline]:
    """A pipeline whose LoggerProvider allows 4 attributes of at most 8 characters."""
    p = Pipeline(tmp_path, shared_keys, limits=LOW_LIMITS)
    yield p
    if not p.closed:
        p.provider.shutdown()


def nested(depth: int, leaf: Any = "x") -> Any:
    """``depth`` lists, one inside the other, around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def refused(pipe: Pipeline, call: Callable[[], object], error: type[Exception]) -> str:
    """Run ``call``; it must raise ``error`` (one of ours) and emit nothing. Returns the message."""
    before = len(pipe.events())
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, EmitError) and isinstance(info.value, AuditError)
    assert len(pipe.events()) == before
    return str(info.value)


# -- the SDK's attribute limits never drop or truncate what is signed ---------------------------------


def test_many_attributes_arrive_whole_and_verify_despite_low_provider_limits(low: Pipeline, shared_keys: Path) -> None:
    """300 attributes (required user.id first, long values, a secret redaction replaces by a longer
    pseudonym) through a provider limited to 4 attributes of 8 characters: all arrive whole, with
    redaction's and signing's attributes, and the archive verifies."""
    given: dict[str, Any] = {"user.id": "alice-with-a-long-id", "client.address": "203.0.113.77"}
    given |= {f"app.field_{i:03}": f"value number {i} longer than eight" for i in range(297)}
    given["app.password"] = "pw"  # replaced by hmac-sha256:<64 hex>, longer than both the value and the limit
    low.audit.emit(LOGIN, given, body="a body longer than the limit")
    got = low.one()
    for key, value in given.items():
        if key != "app.password":
            assert got[key] == value, key
    assert got["app.password"].startswith("hmac-sha256:") and len(got["app.password"]) == 76
    assert got["audit.redaction.rules"] == ("sensitive_key",) and got["audit.redaction.count"] == 1
    assert {"audit.stream.id", "audit.stream.seq", "audit.integrity.prev", "audit.integrity.digest"} <= set(got)
    assert len(got) == len(given) + 3 + 2 + 4  # + category/action/outcome, redaction's two, signing's four
    low.close_and_verify(shared_keys, events=1)


def test_env_limits_do_not_apply_to_audit_records_nor_checkpoints(
    tmp_path: Path, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_ATTRIBUTE_* / OTEL_LOGRECORD_ATTRIBUTE_* limits drop and truncate nothing of an audit
    record, nor of the signing processor's checkpoints (whose digests and embedded canonical record
    are far longer than 6 characters); the archive verifies."""
    for name, value in LIMIT_ENV.items():
        monkeypatch.setenv(name, value)
    assert LogRecordLimits().max_log_record_attributes == 3  # the SDK does read them
    p = Pipeline(tmp_path, shared_keys, embed_record=True)
    given = {"user.id": "bob-the-builder", "session.id": "session-0123456789", "audit.auth.method": "password"}
    given |= {f"app.k{i}": f"long value {i}" for i in range(20)}
    p.audit.emit(LOGIN, given)
    got = p.one()
    assert {k: got[k] for k in given} == given
    assert len(got[DIGEST]) == 64 and got[RECORD].startswith('["authentication.login.succeeded"')
    p.provider.shutdown()
    p.closed = True
    checkpoints = [r for r in p.memory.get_finished_logs() if r.log_record.event_name == canonical.CHECKPOINT_EVENT]
    assert [r.log_record.attributes["audit.checkpoint.kind"] for r in checkpoints] == ["start", "end"]
    for r in checkpoints:
        assert r.dropped_attributes == 0 and len(r.log_record.attributes[DIGEST]) == 64
    report = verify(p.path, Keyring.load(shared_keys))
    assert report.ok, report
    assert_clean(only_stream(report))


def test_global_proxy_logger_gets_the_same_exemption(
    tmp_path: Path, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AuditLogger made before the global provider is set (a ProxyLogger) emits through it, unlimited."""
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", None)
    audit = AuditLogger()  # the global proxy: no provider yet
    p = Pipeline(tmp_path, shared_keys, limits=LOW_LIMITS)
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", p.provider)
    given = {"user.id": "carol-the-long-named"} | {f"app.k{i}": f"value {i} is long" for i in range(200)}
    audit.emit(LOGIN, given)
    got = p.one()
    assert {k: got[k] for k in given} == given
    p.close_and_verify(shared_keys, events=1)


def test_a_provider_that_is_not_the_sdk_still_works() -> None:
    """Through a non-SDK LoggerProvider (the API's no-op one) emit checks and emits as before."""
    audit = AuditLogger(NoOpLoggerProvider())
    audit.emit(LOGIN, {"user.id": "u"})
    with pytest.raises(AttributeTypeError):
        audit.emit(LOGIN, {"user.id": 7})


# -- catalog attribute types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "key", "value", "got"),
    [
        (LOGIN, "user.id", 42, "int"),
        (LOGIN, "user.id", ["a", "b"], "a list of str"),
        (LOGIN, "user.id", True, "bool"),
        (LOGIN, "user.id", b"alice", "bytes"),
        (LOGIN, "client.address", {"ip": "203.0.113.7"}, "dict"),
        ("authorization.rate_limit.exceeded", "audit.rate_limit.limit", True, "bool"),
        ("authorization.rate_limit.exceeded", "audit.rate_limit.limit", 10.0, "float"),
        ("authorization.rate_limit.exceeded", "audit.rate_limit.limit", "10", "str"),
        ("security.prompt_injection.detected", "audit.risk.score", False, "bool"),
        ("security.prompt_injection.detected", "audit.risk.score", "0.9", "str"),
        ("data_access.pii.detected", "audit.pii.types", "email", "str"),
        ("data_access.pii.detected", "audit.pii.types", ["email", 3], "a list of int, str"),
        ("authorization.model.accessed", "http.response.status_code", "403", "str"),
        ("authorization.virtual_key.used", "gen_ai.usage.input_tokens", 1.5, "float"),
    ],
)
def test_a_value_not_of_its_catalog_type_is_refused(pipe: Pipeline, event: str, key: str, value: Any, got: str) -> None:
    """A catalog-typed attribute of another type raises AttributeTypeError (a TypeError) naming the
    event, the key, the expected and the given type; bool is not a number."""
    spec = catalog.get(event)
    given: dict[str, Any] = {k: _sample(k) for k in spec.required}
    given[key] = value
    message = refused(pipe, lambda: pipe.audit.emit(event, given), AttributeTypeError)
    assert isinstance(ValueError, type) and issubclass(AttributeTypeError, TypeError)
    expected = catalog.attribute_type(key)
    assert expected is not None
    assert event in message and repr(key) in message
    assert expected.describe() in message and message.endswith(f"got {got}")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("audit.risk.score", 1.5),
        ("audit.risk.score", -0.01),
        ("audit.risk.score", math.nan),
        ("audit.risk.score", math.inf),
        ("audit.risk.score", 2**60),
    ],
)
def test_a_number_out_of_its_catalog_range_is_refused(pipe: Pipeline, key: str, value: float) -> None:
    """audit.risk.score is a finite double in [0, 1]: AttributeValueError (a ValueError) otherwise."""
    message = refused(pipe, lambda: pipe.audit.emit("security.jailbreak.detected", {key: value}), AttributeValueError)
    assert "security.jailbreak.detected" in message and repr(key) in message


def test_typed_values_arrive_as_the_catalog_says_and_verify(pipe: Pipeline, shared_keys: Path) -> None:
    """An int for a double is recorded as a float (one type per attribute in every record); ints,
    lists of str and semconv ints pass; the archive verifies."""
    pipe.audit.emit("security.jailbreak.detected", {"audit.risk.score": 1, "user.id": "u"})
    pipe.audit.emit("data_access.pii.detected", {"audit.pii.types": ("email", "phone"), "audit.pii.count": 2})
    pipe.audit.emit("authorization.model.accessed",
                    {"gen_ai.request.model": "gpt-4o", "http.response.status_code": 403}, outcome="failure")
    pipe.audit.rate_limit_exceeded(100, current=101, window_seconds=60, user_id="u")
    jail, pii, model, rate = (dict(r.log_record.attributes or {}) for r in pipe.events())
    assert jail["audit.risk.score"] == 1.0 and type(jail["audit.risk.score"]) is float
    assert pii["audit.pii.types"] == ("email", "phone") and pii["audit.pii.count"] == 2
    assert model["http.response.status_code"] == 403
    assert rate["audit.rate_limit.limit"] == 100
    assert type(rate["audit.rate_limit.current"]) is float and type(rate["audit.rate_limit.window_seconds"]) is float
    pipe.close_and_verify(shared_keys, events=4)


def test_helpers_enforce_the_catalog_types(pipe: Pipeline) -> None:
    """The typed helpers go through the same checks: a wrong type names the attribute."""
    a = pipe.audit
    assert "'user.id'" in refused(pipe, lambda: a.login_succeeded(5), AttributeTypeError)  # type: ignore[arg-type]
    assert "'audit.risk.score'" in refused(
        pipe, lambda: a.prompt_injection("u", score="high"), AttributeTypeError)  # type: ignore[arg-type]
    assert "'audit.rate_limit.limit'" in refused(
        pipe, lambda: a.rate_limit_exceeded("10"), AttributeTypeError)  # type: ignore[arg-type]
    assert "'audit.target.id'" in refused(
        pipe, lambda: a.config_changed("configuration.team.updated", 7, {}, {}, "admin"),  # type: ignore[arg-type]
        AttributeTypeError)
    assert "'audit.actor.id'" in refused(
        pipe, lambda: a.permission_denied(["u"], "r", "read", "no"), AttributeTypeError)  # type: ignore[arg-type]


def test_every_catalog_attribute_has_a_type_and_the_docs_show_it() -> None:
    """Each attribute an event names has a type; JSON and Markdown renderings carry it."""
    named = {k for s in catalog.EVENTS.values() for k in (*s.required, *s.optional)}
    assert named <= set(catalog.ATTRIBUTE_TYPES)
    data = json.loads(catalog.render_json())
    assert data[LOGIN]["attribute_types"]["user.id"] == {"type": "string", "note": "an identifier"}
    assert data["security.jailbreak.detected"]["attribute_types"]["audit.risk.score"] == {
        "type": "double", "minimum": 0, "maximum": 1}
    text = catalog.render_markdown()
    assert "\n# Attribute types\n" in text
    for k in named:
        t = catalog.ATTRIBUTE_TYPES[k]
        assert f"| `{k}` | {t.describe()} |" in text


# -- values the canonical form cannot sign are refused, everything it can sign passes -----------------


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.emit(LOGIN, {"user.id": "al\ud800ice"}),
        lambda a: a.emit(LOGIN, {"user.id": "u", "app.note": "x\udfff"}),
        lambda a: a.emit(LOGIN, {"user.id": "u", "app.deep": {"k": ["ok", "bad \ud83d"]}}),
        lambda a: a.emit(LOGIN, {"user.id": "u", "app.deep": {"k\ud800": 1}}),
        lambda a: a.emit(LOGIN, {"user.id": "u", "app.\ud800": 1}),
        lambda a: a.emit(LOGIN, {"user.id": "u"}, body="bo\udc00dy"),
        lambda a: a.emit(LOGIN, {"user.id": "u"}, body={"m": "\ud800"}),
        lambda a: a.config_changed("configuration.team.updated", "t", {"k": "\ud800"}, {}, "admin"),
    ],
    ids=["required", "free-form", "nested", "mapping-key", "top-key", "body", "nested-body", "config"],
)
def test_lone_surrogates_are_refused(pipe: Pipeline, call: Callable[[AuditLogger], None]) -> None:
    """A lone surrogate anywhere (value, key, body, before/after) raises AttributeValueError (a
    ValueError) saying where and which code point, instead of a placeholder in the signed record."""
    message = refused(pipe, lambda: call(pipe.audit), AttributeValueError)
    assert "lone surrogate" in message and "U+D" in message


def test_ints_outside_int64_are_refused_and_the_bounds_pass(pipe: Pipeline, shared_keys: Path) -> None:
    """An int outside int64 anywhere raises AttributeValueError without printing it; -2**63 and
    2**63-1 pass and verify."""
    for bad in (2**63, -(2**63) - 1, 10**5000):
        assert "bits, outside int64" in refused(
            pipe, lambda b=bad: pipe.audit.emit(LOGIN, {"user.id": "u", "app.n": b}), AttributeValueError)
        refused(pipe, lambda b=bad: pipe.audit.emit(LOGIN, {"user.id": "u", "app.n": {"x": [b]}}), AttributeValueError)
        refused(pipe, lambda b=bad: pipe.audit.emit(LOGIN, {"user.id": "u"}, body=b), AttributeValueError)
    pipe.audit.emit(LOGIN, {"user.id": "u", "app.max": 2**63 - 1, "app.min": -(2**63)}, body=[2**63 - 1])
    got = pipe.one()
    assert got["app.max"] == 2**63 - 1 and got["app.min"] == -(2**63)
    pipe.close_and_verify(shared_keys, events=1)


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


def test_everything_the_canonical_form_signs_passes_and_verifies(pipe: Pipeline, shared_keys: Path) -> None:
    """NaN and infinities, bytes, bytearray / memoryview (as bytes), None inside containers, empty
    strings and containers, IntEnum and str subclasses, and containers nested MAX_DEPTH deep are
    accepted, arrive as the canonical form signs them, and verify."""
    values: dict[str, Any] = {
        "app.nan": math.nan, "app.inf": math.inf, "app.ninf": -math.inf, "app.negzero": -0.0,
        "app.bytes": b"\x00\xff", "app.empty_bytes": b"", "app.bytearray": bytearray(b"ab"),
        "app.memoryview": memoryview(b"cd"), "app.nones": [None, 1, None], "app.empty": "",
        "app.empty_list": [], "app.empty_map": {}, "app.enum": Level.HIGH, "app.text": Text("sub"),
        "app.unicode": "żółw 🐢", "app.deepest": nested(MAX_DEPTH), "app.map": {"a": {"b": [1, 2.5, True]}},
    }
    pipe.audit.emit(LOGIN, {"user.id": "u", **values}, body={"b": nested(MAX_DEPTH - 1)})
    got = pipe.one()
    assert math.isnan(got["app.nan"]) and got["app.inf"] == math.inf and got["app.ninf"] == -math.inf
    assert got["app.bytearray"] == b"ab" and type(got["app.bytearray"]) is bytes
    assert got["app.memoryview"] == b"cd" and type(got["app.memoryview"]) is bytes
    assert got["app.nones"] == (None, 1, None)
    assert got["app.enum"] == 3 and type(got["app.enum"]) is int
    assert got["app.text"] == "sub" and type(got["app.text"]) is str
    pipe.close_and_verify(shared_keys, events=1)


def test_max_depth_is_what_the_canonical_form_and_the_decoder_accept() -> None:
    """MAX_DEPTH containers encode; one more does not, in the canonical form as at the call site."""
    assert MAX_DEPTH == canonical.MAX_DEPTH + 1 == decoding.MAX_DEPTH + 1
    canonical.encode_value(nested(MAX_DEPTH))
    with pytest.raises(canonical.CanonicalError):
        canonical.encode_value(nested(MAX_DEPTH + 1))
    assert MAX_JSON_DEPTH == redaction._JSON_MAX_DEPTH  # noqa: SLF001 - the bound we align with


def test_mapping_keys_must_be_non_empty_str(pipe: Pipeline) -> None:
    """A nested mapping key that is not a str is a TypeError; an empty one (the SDK drops it) a ValueError."""
    assert "mapping keys must be str" in refused(
        pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.m": {1: "x"}}), AttributeTypeError)
    assert "empty" in refused(
        pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.m": {"ok": {"": "dropped"}}}), AttributeValueError)
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", 5: "x"}), AttributeTypeError)  # type: ignore[dict-item]
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "": "x"}), AttributeValueError)


# -- shapes and bounds ---------------------------------------------------------------------------------


def test_attributes_must_be_a_mapping(pipe: Pipeline) -> None:
    """A list of pairs (or anything not a mapping) is an EmitTypeError (a TypeError), for emit and helpers."""
    pairs = [("user.id", "u")]
    message = refused(pipe, lambda: pipe.audit.emit(LOGIN, pairs), EmitTypeError)  # type: ignore[arg-type]
    assert "attributes must be a mapping" in message and "got list" in message and "dict(pairs)" in message
    refused(pipe, lambda: pipe.audit.emit(LOGIN, "user.id=u"), EmitTypeError)  # type: ignore[arg-type]
    refused(pipe, lambda: pipe.audit.login_succeeded("u", attributes=pairs), EmitTypeError)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2_000, 100_000])
def test_deep_nesting_is_refused_not_a_recursion_error(pipe: Pipeline, depth: int) -> None:
    """Deeper than MAX_DEPTH, in an attribute or the body, is AttributeValueError naming the bound."""
    message = refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.deep": nested(depth)}),
                      AttributeValueError)
    assert f"more than {MAX_DEPTH} deep" in message and "'app.deep'" in message
    deep_map: Any = "x"
    for _ in range(depth):
        deep_map = {"k": deep_map}
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u"}, body=deep_map), AttributeValueError)


def test_a_cyclic_value_is_refused(pipe: Pipeline) -> None:
    """A list that contains itself ends at the depth bound, not in a RecursionError."""
    loop: list[Any] = []
    loop.append(loop)
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.loop": loop}), AttributeValueError)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    refused(pipe, lambda: pipe.audit.config_changed("configuration.team.updated", "t", cyclic, {}, "a"),
            AttributeValueError)


def test_the_number_of_values_is_bounded(pipe: Pipeline, shared_keys: Path) -> None:
    """More than MAX_VALUES values in one call (attributes and body together) are refused; MAX_VALUES pass."""
    base = {"user.id": "u"}  # 1 value; the list itself is 1 more
    assert f"more than {MAX_VALUES} values" in refused(
        pipe, lambda: pipe.audit.emit(LOGIN, {**base, "app.ids": list(range(MAX_VALUES - 1))}), AttributeValueError)
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {**base, "app.ids": list(range(MAX_VALUES // 2))},
                                          body=list(range(MAX_VALUES // 2))), AttributeValueError)
    refused(pipe, lambda: pipe.audit.emit(LOGIN, {**base, **{f"app.k{i}": i for i in range(MAX_VALUES)}}),
            AttributeValueError)
    pipe.audit.emit(LOGIN, {**base, "app.ids": list(range(MAX_VALUES - 2))})
    assert len(pipe.one()["app.ids"]) == MAX_VALUES - 2
    pipe.close_and_verify(shared_keys, events=1)


# -- every exception a caller can see is ours -----------------------------------------------------------


BAD_CALLS: list[tuple[str, Callable[[AuditLogger], object], type[Exception]]] = [
    ("event name not str", lambda a: a.emit(42), EmitTypeError),  # type: ignore[arg-type]
    ("event name None", lambda a: a.emit(None), EmitTypeError),  # type: ignore[arg-type]
    ("unknown event", lambda a: a.emit("authentication.login.succeded"), UnknownEventError),
    ("system event", lambda a: a.emit("audit.checkpoint"), EmitValueError),
    ("missing required", lambda a: a.emit(LOGIN, {}), MissingAttributeError),
    ("reserved key", lambda a: a.emit(LOGIN, {"user.id": "u", "audit.stream.id": "x"}), EmitValueError),
    ("managed key", lambda a: a.emit(LOGIN, {"user.id": "u", "audit.outcome": "x"}), EmitValueError),
    ("severity not str", lambda a: a.emit(LOGIN, {"user.id": "u"}, severity=9), EmitTypeError),  # type: ignore[arg-type]
    ("severity unknown", lambda a: a.emit(LOGIN, {"user.id": "u"}, severity="loud"), EmitValueError),
    ("outcome not str", lambda a: a.emit(LOGIN, {"user.id": "u"}, outcome=1), EmitValueError),  # type: ignore[arg-type]
    ("outcome list", lambda a: a.emit(LOGIN, {"user.id": "u"}, outcome=["success"]), EmitValueError),  # type: ignore[arg-type]
    ("outcome unknown", lambda a: a.emit(LOGIN, {"user.id": "u"}, outcome="won"), EmitValueError),
    ("timestamp bool", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns=True), EmitValueError),
    ("timestamp float", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns=1.5e18), EmitValueError),  # type: ignore[arg-type]
    ("timestamp str", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns="1"), EmitValueError),  # type: ignore[arg-type]
    ("timestamp negative", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns=-1), EmitValueError),
    ("timestamp over uint64", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns=2**64), EmitValueError),
    ("timestamp huge", lambda a: a.emit(LOGIN, {"user.id": "u"}, timestamp_ns=10**5000), EmitValueError),
    ("body object", lambda a: a.emit(LOGIN, {"user.id": "u"}, body=object()), AttributeTypeError),  # type: ignore[arg-type]
    ("body set", lambda a: a.emit(LOGIN, {"user.id": "u"}, body={1, 2}), AttributeTypeError),  # type: ignore[arg-type]
    ("value generator", lambda a: a.emit(LOGIN, {"user.id": "u", "app.g": (i for i in [1])}), AttributeTypeError),
    ("config: not a config event", lambda a: a.config_changed(LOGIN, "t", {}, {}), EmitValueError),
    ("config: event not str", lambda a: a.config_changed(5, "t", {}, {}), EmitTypeError),  # type: ignore[arg-type]
    ("config: before list", lambda a: a.config_changed("configuration.team.updated", "t", [1], {}, "a"),  # type: ignore[arg-type]
     EmitTypeError),
    ("config: set inside", lambda a: a.config_changed("configuration.team.updated", "t", {"s": {1}}, {}, "a"),
     EmitTypeError),
    ("config: object inside", lambda a: a.config_changed("configuration.team.updated", "t", {}, {"o": object()}, "a"),
     EmitTypeError),
    ("config: bytes inside", lambda a: a.config_changed("configuration.team.updated", "t", {}, {"b": b"x"}, "a"),
     EmitTypeError),
    ("config: int key", lambda a: a.config_changed("configuration.team.updated", "t", {1: "x"}, {}, "a"),  # type: ignore[dict-item]
     EmitTypeError),
    ("config: NaN", lambda a: a.config_changed("configuration.team.updated", "t", {"x": math.nan}, {}, "a"),
     AttributeValueError),
    ("config: inf", lambda a: a.config_changed("configuration.team.updated", "t", {}, {"x": [math.inf]}, "a"),
     AttributeValueError),
    ("config: huge int", lambda a: a.config_changed("configuration.team.updated", "t", {}, {"x": 10**5000}, "a"),
     AttributeValueError),
    ("config: too deep", lambda a: a.config_changed("configuration.team.updated", "t", {}, {"x": nested(2_000)}, "a"),
     AttributeValueError),
    ("config: actor not str", lambda a: a.config_changed("configuration.team.updated", "t", {}, {}, 5),  # type: ignore[arg-type]
     AttributeTypeError),
    ("helper: attributes list", lambda a: a.logout("u", attributes=[("k", "v")]), EmitTypeError),  # type: ignore[arg-type]
    ("helper: user id None", lambda a: a.logout(None), MissingAttributeError),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("what", "call", "error"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_every_bad_call_raises_one_of_our_errors(
    pipe: Pipeline, what: str, call: Callable[[AuditLogger], object], error: type[Exception]
) -> None:
    """Each bad call raises the named EmitError subclass (also a TypeError or ValueError), emits nothing."""
    message = refused(pipe, lambda: call(pipe.audit), error)
    assert isinstance(error(), (TypeError, ValueError))
    assert "10000000000" not in message  # a huge number is described, never printed


BAD_CONSTRUCTIONS: list[tuple[str, Callable[[LoggerProvider], object], type[Exception]]] = [
    ("provider not a provider", lambda p: AuditLogger("provider"), EmitTypeError),  # type: ignore[arg-type]
    ("name not str", lambda p: AuditLogger(p, name=5), EmitTypeError),  # type: ignore[arg-type]
    ("name empty", lambda p: AuditLogger(p, name=""), EmitValueError),
    ("actor not a mapping", lambda p: AuditLogger(p, actor="alice"), EmitTypeError),  # type: ignore[arg-type]
    ("actor pairs", lambda p: AuditLogger(p, actor=[("id", "a")]), EmitTypeError),  # type: ignore[arg-type]
    ("actor key not str", lambda p: AuditLogger(p, actor={5: "a"}), EmitValueError),  # type: ignore[dict-item]
    ("actor key dotted", lambda p: AuditLogger(p, actor={"user.id": "a"}), EmitValueError),
    ("actor id int", lambda p: AuditLogger(p, actor={"id": 5}), AttributeTypeError),
    ("actor value object", lambda p: AuditLogger(p, actor={"name": object()}), AttributeTypeError),
    ("actor surrogate", lambda p: AuditLogger(p, actor={"id": "\ud800"}), AttributeValueError),
]


@pytest.mark.parametrize(("what", "make", "error"), BAD_CONSTRUCTIONS, ids=[c[0] for c in BAD_CONSTRUCTIONS])
def test_every_bad_construction_raises_one_of_our_errors(
    pipe: Pipeline, what: str, make: Callable[[LoggerProvider], object], error: type[Exception]
) -> None:
    """Bad constructor arguments raise the named EmitError subclass."""
    with pytest.raises(error) as info:
        make(pipe.provider)
    assert isinstance(info.value, EmitError)


def test_compatibility_with_callers_catching_type_and_value_errors(pipe: Pipeline) -> None:
    """Where TypeError or ValueError was raised before, it still is (as our subclass)."""
    with pytest.raises(TypeError, match="audit.reason"):
        pipe.audit.emit("authentication.login.failed", {"user.id": "u", "audit.reason": object()})
    with pytest.raises(ValueError, match="timestamp_ns"):
        pipe.audit.emit(LOGIN, {"user.id": "u"}, timestamp_ns=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        pipe.audit.emit(LOGIN, {"user.id": "u", "audit.integrity.digest": "x"})
    with pytest.raises(TypeError, match="after"):
        pipe.audit.config_changed("configuration.team.updated", "t", {}, "not a mapping", "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        catalog.get(42)  # type: ignore[arg-type]


def test_messages_never_carry_an_attribute_value(pipe: Pipeline) -> None:
    """A refused value is described by its type and place, never quoted: it may be a secret."""
    secret = "s3cr3t-hunter2"
    messages = [
        refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": [secret]}), AttributeTypeError),
        refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.pw": secret + "\ud800"}),
                AttributeValueError),
        refused(pipe, lambda: pipe.audit.emit(LOGIN, {"user.id": "u", "app.pw": {"k": object()}}), AttributeTypeError),
        refused(pipe, lambda: pipe.audit.config_changed("configuration.team.updated", "t", {"pw": secret + "\udc00"},
                                                        {}, "a"), AttributeValueError),
    ]
    for message in messages:
        assert secret not in message


# -- config_changed JSON is what the redaction processor redacts by structure ---------------------------


def test_config_json_at_the_depth_bound_is_redacted_by_structure(pipe: Pipeline, shared_keys: Path) -> None:
    """before/after nested MAX_JSON_DEPTH deep pass, and a password at the deepest level is replaced
    (one more level is refused: redaction would only scan that text by pattern)."""
    deep: Any = {"password": "pw-deepest"}
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = {"n": deep}
    pipe.audit.config_changed("configuration.team.updated", "team-1", {"v": 1}, deep, "admin")
    after = pipe.one()["audit.change.after"]
    assert "pw-deepest" not in after and "hmac-sha256:" in after
    assert json.loads(after) is not None
    refused(pipe, lambda: pipe.audit.config_changed("configuration.team.updated", "team-1", {}, {"n": deep}, "a"),
            AttributeValueError)
    pipe.close_and_verify(shared_keys, events=1)


def test_config_json_is_written_from_plain_values(pipe: Pipeline) -> None:
    """Mappings that are not dicts, tuples, IntEnum and str subclasses are written as plain JSON."""
    from types import MappingProxyType

    pipe.audit.config_changed("configuration.team.updated", "t", MappingProxyType({"b": (1, 2), "a": Level.HIGH}),
                              {"name": Text("x"), "ratio": 0.5, "on": True, "none": None}, "admin")
    got = pipe.one()
    assert got["audit.change.before"] == '{"a":3,"b":[1,2]}'
    assert got["audit.change.after"] == '{"name":"x","none":null,"on":true,"ratio":0.5}'


def _sample(key: str) -> Any:
    t = catalog.attribute_type(key)
    kind = t.kind if t is not None else "string"
    return {"string": f"v-{key}", "int": 1, "double": 0.5, "boolean": True, "string[]": [f"v-{key}"]}[kind]


def test_seq_of_a_refused_call_is_not_taken(pipe: Pipeline, shared_keys: Path) -> None:
    """A refused call takes no seq: the next good record follows the start checkpoint (seq 1)."""
    with pytest.raises(AttributeValueError):
        pipe.audit.emit(LOGIN, {"user.id": "u\ud800"})
    pipe.audit.emit(LOGIN, {"user.id": "u"})
    assert pipe.one()[STREAM_SEQ] == 1
    pipe.close_and_verify(shared_keys, events=1)
