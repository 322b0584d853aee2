"""Tests for otel_audit.logger: AuditLogger through a real SDK LoggerProvider and in-memory exporter."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import opentelemetry._logs._internal as logs_internal
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit import catalog
from otel_audit.errors import MissingAttributeError, UnknownEventError
from otel_audit.logger import AuditLogger


class Pipeline:
    """A real SDK pipeline: provider -> simple processor -> in-memory exporter."""

    def __init__(self) -> None:
        self.exporter = InMemoryLogRecordExporter()
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))

    def records(self) -> list[ReadableLogRecord]:
        return list(self.exporter.get_finished_logs())

    def one(self) -> ReadableLogRecord:
        records = self.records()
        assert len(records) == 1
        return records[0]


@pytest.fixture
def pipe() -> Iterator[Pipeline]:
    pipeline = Pipeline()
    yield pipeline
    pipeline.provider.shutdown()


@pytest.fixture
def audit(pipe: Pipeline) -> AuditLogger:
    return AuditLogger(pipe.provider)


def attrs(record: ReadableLogRecord) -> dict[str, object]:
    return dict(record.log_record.attributes or {})


USER_EVENTS = [s for s in catalog.EVENTS.values() if s.category != "integrity"]


def sample_value(key: str) -> object:
    """A value of the catalog type of ``key`` (a str for an untyped key), as the record carries it."""
    t = catalog.attribute_type(key)
    kind = t.kind if t is not None else "string"
    return {"string": f"v-{key}", "int": 1, "double": 0.5, "boolean": True, "string[]": (f"v-{key}",)}[kind]


@pytest.mark.parametrize("spec", USER_EVENTS, ids=lambda s: s.name)
def test_every_event_emits_with_only_its_required_attributes(
    spec: catalog.EventSpec, pipe: Pipeline, audit: AuditLogger
) -> None:
    """Each catalog event emits with just its required attributes, plus category, action and outcome."""
    given = {key: sample_value(key) for key in spec.required}
    audit.emit(spec.name, given)
    record = pipe.one().log_record
    assert record.event_name == spec.name
    assert record.body == spec.description
    expected_outcome = spec.cadf_outcome if spec.cadf_outcome != "pending" else "unknown"
    assert attrs(pipe.one()) == {
        **given,
        "audit.category": spec.category,
        "audit.action": spec.cadf_action,
        "audit.outcome": expected_outcome,
    }
    assert record.severity_text == spec.severity
    assert record.severity_number == SeverityNumber[spec.severity]


def test_record_carries_timestamp_and_scope(pipe: Pipeline, audit: AuditLogger) -> None:
    """A record gets the given timestamp, or now by default, under the otel_audit scope."""
    audit.emit("authentication.login.succeeded", {"user.id": "u1"}, timestamp_ns=1_700_000_000_123_456_789)
    before = time.time_ns()
    audit.emit("authentication.login.succeeded", {"user.id": "u1"})
    after = time.time_ns()
    first, second = pipe.records()
    assert first.log_record.timestamp == 1_700_000_000_123_456_789
    assert second.log_record.timestamp is not None
    assert before <= second.log_record.timestamp <= after
    assert first.instrumentation_scope is not None
    assert first.instrumentation_scope.name == "otel_audit"


def test_scope_name_is_configurable(pipe: Pipeline) -> None:
    """The name argument becomes the instrumentation scope name."""
    AuditLogger(pipe.provider, name="gateway.audit").logout("u1")
    scope = pipe.one().instrumentation_scope
    assert scope is not None and scope.name == "gateway.audit"


def test_caller_body_replaces_the_default(pipe: Pipeline, audit: AuditLogger) -> None:
    """A body given by the caller is emitted as is, structured bodies included."""
    audit.emit("authentication.logout.succeeded", {"user.id": "u1"}, body={"msg": "bye", "n": 1})
    assert pipe.one().log_record.body == {"msg": "bye", "n": 1}


def test_failure_outcome_raises_severity_to_warn(pipe: Pipeline, audit: AuditLogger) -> None:
    """An INFO event emitted with outcome failure is recorded at WARN with audit.outcome failure."""
    audit.emit("authentication.mfa.verified", {"user.id": "u1"}, outcome="failure")
    record = pipe.one()
    assert record.log_record.severity_number == SeverityNumber.WARN
    assert record.log_record.severity_text == "WARN"
    assert attrs(record)["audit.outcome"] == "failure"


def test_failure_outcome_keeps_a_higher_severity(pipe: Pipeline, audit: AuditLogger) -> None:
    """A failure outcome never lowers an ERROR event's severity."""
    audit.emit(
        "security.api_key_abuse.detected",
        {"audit.virtual_key.id": "vk", "audit.reason": "geo"},
        outcome="failure",
    )
    assert pipe.one().log_record.severity_number == SeverityNumber.ERROR


def test_explicit_severity_wins(pipe: Pipeline, audit: AuditLogger) -> None:
    """A severity given by the caller overrides the catalog default, case-insensitively."""
    audit.emit("authentication.login.succeeded", {"user.id": "u1"}, severity="debug")
    record = pipe.one().log_record
    assert record.severity_number == SeverityNumber.DEBUG
    assert record.severity_text == "DEBUG"


def test_bad_severity_and_outcome_are_value_errors(pipe: Pipeline, audit: AuditLogger) -> None:
    """An unknown severity or outcome raises ValueError and emits nothing."""
    with pytest.raises(ValueError, match="severity"):
        audit.emit("authentication.login.succeeded", {"user.id": "u1"}, severity="LOUD")
    with pytest.raises(ValueError, match="outcome"):
        audit.emit("authentication.login.succeeded", {"user.id": "u1"}, outcome="ok")
    with pytest.raises(ValueError, match="timestamp_ns"):
        audit.emit("authentication.login.succeeded", {"user.id": "u1"}, timestamp_ns=-1)
    assert pipe.records() == []


def test_unknown_event_name_lists_suggestions(pipe: Pipeline, audit: AuditLogger) -> None:
    """A misspelt event name raises UnknownEventError with close matches at the call site."""
    with pytest.raises(UnknownEventError) as info:
        audit.emit("authorization.permision.denied", {})
    assert "authorization.permission.denied" in str(info.value)
    assert "otel-audit catalog" in str(info.value)
    assert pipe.records() == []


def test_missing_required_attribute_names_event_and_keys(pipe: Pipeline, audit: AuditLogger) -> None:
    """A missing required attribute raises MissingAttributeError naming the event, key and list."""
    with pytest.raises(MissingAttributeError) as info:
        audit.emit("authorization.permission.denied", {"audit.actor.id": "a", "audit.target.id": ""})
    message = str(info.value)
    assert "authorization.permission.denied" in message
    assert "missing required attribute(s) audit.target.id, audit.requested_action" in message
    assert "required: audit.actor.id, audit.target.id, audit.requested_action" in message
    assert pipe.records() == []


def test_unsupported_value_type_is_a_type_error_naming_the_key(audit: AuditLogger) -> None:
    """Values outside str/bool/int/float/bytes and lists or mappings of them raise TypeError."""
    for bad in (object(), {1, 2}, [1, object()], {"a": {"b": object()}}):
        with pytest.raises(TypeError, match="audit.reason"):
            audit.emit("authentication.login.failed", {"user.id": "u", "audit.reason": bad})
    with pytest.raises(TypeError, match="mapping keys must be str"):
        audit.emit("authentication.login.failed", {"user.id": "u", "audit.reason": {1: "x"}})
    with pytest.raises(TypeError, match="body"):
        audit.emit("authentication.logout.succeeded", {"user.id": "u"}, body=object())  # type: ignore[arg-type]


def test_supported_value_types_pass_through(pipe: Pipeline, audit: AuditLogger) -> None:
    """Primitive, list and mapping values reach the record; None values are treated as absent."""
    audit.emit(
        "data_access.pii.detected",
        {
            "audit.pii.types": ["email", "phone"],
            "audit.pii.count": 2,
            "audit.risk.score": 0.5,
            "audit.flag": True,
            "audit.raw": b"\x00\x01",
            "audit.detail": {"field": "prompt", "offsets": [1, 2]},
            "user.id": None,
        },
    )
    got = attrs(pipe.one())
    assert got["audit.pii.types"] == ("email", "phone")
    assert got["audit.pii.count"] == 2
    assert got["audit.risk.score"] == 0.5
    assert got["audit.flag"] is True
    assert got["audit.raw"] == b"\x00\x01"
    assert got["audit.detail"] == {"field": "prompt", "offsets": (1, 2)}
    assert "user.id" not in got


@pytest.mark.parametrize("key", ["audit.integrity.digest", "audit.stream.seq", "audit.stream.id"])
def test_reserved_attributes_are_rejected(key: str, pipe: Pipeline, audit: AuditLogger) -> None:
    """Attributes owned by the signing processor cannot be set by callers."""
    with pytest.raises(ValueError, match="reserved"):
        audit.emit("authentication.login.succeeded", {"user.id": "u", key: "x"})
    assert pipe.records() == []


@pytest.mark.parametrize("key", ["audit.category", "audit.action", "audit.outcome"])
def test_catalog_managed_attributes_are_rejected(key: str, audit: AuditLogger) -> None:
    """Category, action and outcome come from the catalog and outcome=, never from attributes."""
    with pytest.raises(ValueError, match=key):
        audit.emit("authentication.login.succeeded", {"user.id": "u", key: "x"})


def test_checkpoint_cannot_be_emitted(pipe: Pipeline, audit: AuditLogger) -> None:
    """audit.checkpoint belongs to the signing processor and is refused by AuditLogger."""
    with pytest.raises(ValueError, match="signing processor"):
        audit.emit("audit.checkpoint")
    assert pipe.records() == []


def test_actor_defaults_apply_and_can_be_overridden(pipe: Pipeline) -> None:
    """Constructor actor attributes go on every record unless a call sets its own."""
    audit = AuditLogger(pipe.provider, actor={"id": "admin-7", "audit.actor.type": "user"})
    audit.emit("data_access.logs.queried")
    audit.emit("data_access.logs.queried", {"audit.actor.id": "svc-1"})
    first, second = (attrs(r) for r in pipe.records())
    assert first["audit.actor.id"] == "admin-7" and first["audit.actor.type"] == "user"
    assert second["audit.actor.id"] == "svc-1" and second["audit.actor.type"] == "user"


def test_bad_actor_keys_are_rejected_at_construction(pipe: Pipeline) -> None:
    """Actor keys must be short names or audit.actor.*; other dotted keys raise ValueError."""
    with pytest.raises(ValueError, match="actor key"):
        AuditLogger(pipe.provider, actor={"user.id": "u"})
    with pytest.raises(TypeError):
        AuditLogger(pipe.provider, actor={"id": object()})


def test_default_provider_is_the_global_one(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a provider, AuditLogger emits through the global OTel LoggerProvider."""
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", pipe.provider)
    AuditLogger().login_succeeded("u1")
    assert pipe.one().log_record.event_name == "authentication.login.succeeded"


def test_login_helpers(pipe: Pipeline, audit: AuditLogger) -> None:
    """login_succeeded, login_failed and logout map their parameters to semantic attributes."""
    audit.login_succeeded("u1", client_address="10.0.0.1", session_id="s1", method="sso")
    audit.login_failed(
        "u2", reason="bad_password", client_address="10.0.0.2", attributes={"user.name": "bob"}
    )
    audit.logout("u1", session_id="s1")
    ok, failed, out = pipe.records()
    assert {k: attrs(ok)[k] for k in ("user.id", "client.address", "session.id", "audit.auth.method")} == {
        "user.id": "u1",
        "client.address": "10.0.0.1",
        "session.id": "s1",
        "audit.auth.method": "sso",
    }
    assert failed.log_record.event_name == "authentication.login.failed"
    assert failed.log_record.severity_number == SeverityNumber.WARN
    assert attrs(failed)["audit.reason"] == "bad_password"
    assert attrs(failed)["user.name"] == "bob"
    assert attrs(failed)["audit.outcome"] == "failure"
    assert out.log_record.event_name == "authentication.logout.succeeded"
    assert attrs(out)["audit.action"] == "authenticate/logout"


def test_permission_denied_helper(pipe: Pipeline, audit: AuditLogger) -> None:
    """permission_denied records actor, resource, requested action and reason at WARN."""
    audit.permission_denied("user:alice", "team:42", "keys:create", "not a team admin", resource_type="team")
    record = pipe.one()
    assert record.log_record.event_name == "authorization.permission.denied"
    assert record.log_record.severity_number == SeverityNumber.WARN
    got = attrs(record)
    assert got["audit.actor.id"] == "user:alice"
    assert got["audit.target.id"] == "team:42"
    assert got["audit.target.type"] == "team"
    assert got["audit.requested_action"] == "keys:create"
    assert got["audit.reason"] == "not a team admin"
    assert got["audit.action"] == "deny"
    assert got["audit.outcome"] == "failure"


def test_virtual_key_used_helper(pipe: Pipeline, audit: AuditLogger) -> None:
    """virtual_key_used records the key id, model and provider with gen_ai.* names."""
    audit.virtual_key_used("vk-1", model="gpt-4o", provider="openai", user_id="u1")
    got = attrs(pipe.one())
    assert got["audit.virtual_key.id"] == "vk-1"
    assert got["gen_ai.request.model"] == "gpt-4o"
    assert got["gen_ai.provider.name"] == "openai"
    assert got["user.id"] == "u1"


def test_config_changed_serializes_before_and_after(pipe: Pipeline) -> None:
    """config_changed writes before/after as JSON text with sorted keys and the target type."""
    audit = AuditLogger(pipe.provider, actor={"id": "admin-1"})
    audit.config_changed("configuration.budget.adjusted", "team-9", {"max": 10, "cur": "USD"}, {"max": 20})
    got = attrs(pipe.one())
    assert got["audit.change.before"] == '{"cur":"USD","max":10}'
    assert json.loads(str(got["audit.change.after"])) == {"max": 20}
    assert got["audit.target.id"] == "team-9"
    assert got["audit.target.type"] == "budget"
    assert got["audit.actor.id"] == "admin-1"
    assert got["audit.action"] == "update"


def test_config_changed_creation_and_explicit_actor(pipe: Pipeline, audit: AuditLogger) -> None:
    """A creation needs no before value, and an explicit actor is recorded."""
    audit.config_changed(
        "configuration.virtual_key.created", "vk-2", None, {"models": ["a"]}, actor="admin-2"
    )
    got = attrs(pipe.one())
    assert "audit.change.before" not in got
    assert got["audit.change.after"] == '{"models":["a"]}'
    assert got["audit.actor.id"] == "admin-2"


def test_config_changed_enforces_catalog_rules(audit: AuditLogger) -> None:
    """config_changed refuses non-configuration events, missing sides and non-JSON values."""
    with pytest.raises(ValueError, match="configuration"):
        audit.config_changed("authentication.login.succeeded", "x", None, None, actor="a")
    with pytest.raises(MissingAttributeError, match="audit.change.before"):
        audit.config_changed("configuration.team.updated", "t1", None, {"name": "b"}, actor="a")
    with pytest.raises(MissingAttributeError, match="audit.actor.id"):
        audit.config_changed("configuration.team.updated", "t1", {"name": "a"}, {"name": "b"})
    with pytest.raises(TypeError, match="after"):
        audit.config_changed("configuration.team.updated", "t1", {}, {"x": object()}, actor="a")


def test_security_helpers(pipe: Pipeline, audit: AuditLogger) -> None:
    """prompt_injection, rate_limit_exceeded and suspicious_ip emit their catalog events."""
    audit.prompt_injection("u1", score=0.93, model="gpt-4o", snippet="ignore previous")
    audit.rate_limit_exceeded(100, metric="requests", window_seconds=60, current=101, key_id="vk-1")
    audit.suspicious_ip("203.0.113.9", "tor exit node", score=0.7)
    injection, limited, ip = pipe.records()
    assert injection.log_record.event_name == "security.prompt_injection.detected"
    assert injection.log_record.severity_number == SeverityNumber.WARN
    assert attrs(injection)["audit.risk.score"] == 0.93
    assert attrs(injection)["audit.prompt.snippet"] == "ignore previous"
    assert limited.log_record.event_name == "authorization.rate_limit.exceeded"
    assert attrs(limited)["audit.rate_limit.limit"] == 100
    assert attrs(limited)["audit.rate_limit.current"] == 101
    assert attrs(limited)["audit.virtual_key.id"] == "vk-1"
    assert ip.log_record.event_name == "security.suspicious_ip.detected"
    assert attrs(ip)["client.address"] == "203.0.113.9"
    assert attrs(ip)["audit.reason"] == "tor exit node"


def test_helper_parameters_win_over_the_attributes_mapping(pipe: Pipeline, audit: AuditLogger) -> None:
    """An explicit helper parameter overrides the same key given in attributes=."""
    audit.login_succeeded("u1", attributes={"user.id": "other", "user.email": "u1@example.com"})
    got = attrs(pipe.one())
    assert got["user.id"] == "u1"
    assert got["user.email"] == "u1@example.com"


def test_rate_limit_violated_is_a_deprecated_name_of_rate_limit_exceeded() -> None:
    """The old helper name still emits authorization.rate_limit.exceeded, and says it is renamed."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    audit = AuditLogger(provider)
    with pytest.warns(DeprecationWarning, match="rate_limit_exceeded"):
        audit.rate_limit_violated(100, current=101)
    (record,) = exporter.get_finished_logs()
    assert record.log_record.event_name == "authorization.rate_limit.exceeded"
