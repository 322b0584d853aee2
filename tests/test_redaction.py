"""Redaction processor and keyed pseudonyms, through a real OTel logs pipeline.

Every test wires ``LoggerProvider`` + ``RedactionProcessor`` + ``SimpleLogRecordProcessor``
over an ``InMemoryLogRecordExporter``, emits, and looks at what the exporter received.
"""

from __future__ import annotations

import base64
import logging
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit.errors import ConfigError
from otel_audit.processors.redaction import (
    BUILTIN_RULES,
    PII_EVENT_NAME,
    RedactionProcessor,
)
from otel_audit.pseudonym import MIN_KEY_BYTES, SecretBytes, hmac_value, load_hmac_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
HMAC_RE = re.compile(r"hmac-sha256:[0-9a-f]{64}")


# -- helpers --------------------------------------------------------------------------------


class Pipeline:
    """A LoggerProvider whose first processor is a RedactionProcessor, exporting to memory."""

    def __init__(self, *, pii_events: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("hmac_key", KEY)
        self.provider = LoggerProvider()
        self.exporter = InMemoryLogRecordExporter()
        if pii_events:
            kwargs["pii_event_logger"] = self.provider.get_logger("otel_audit.redaction")
        self.processor = RedactionProcessor(**kwargs)
        self.provider.add_log_record_processor(self.processor)
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        self.logger = self.provider.get_logger("t")

    def emit(
        self, body: Any = None, attributes: Mapping[str, Any] | None = None, event_name: str = "test.event"
    ) -> None:
        self.logger.emit(event_name=event_name, body=body, attributes=attributes)

    def records(self) -> list[ReadableLogRecord]:
        self.provider.force_flush()
        return list(self.exporter.get_finished_logs())

    def one(self, body: Any = None, attributes: Mapping[str, Any] | None = None, event_name: str = "test.event") -> Any:
        """Emit one record and return the exported OTel LogRecord."""
        self.exporter.clear()
        self.emit(body, attributes, event_name)
        (record,) = self.records()
        return record.log_record


@pytest.fixture
def hmac_pipe() -> Iterator[Pipeline]:
    p = Pipeline(mode="hmac")
    yield p
    p.provider.shutdown()


@pytest.fixture
def mask_pipe() -> Iterator[Pipeline]:
    p = Pipeline(mode="mask")
    yield p
    p.provider.shutdown()


def attrs(record: Any) -> dict[str, Any]:
    return dict(record.attributes or {})


def with_luhn_digit(partial: str) -> str:
    """Append the Luhn check digit to a digit string (test-side, independent of the code)."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return partial + str((10 - total % 10) % 10)


# -- findings by pattern: positives ---------------------------------------------------------

SECRETS_BY_RULE = [
    # (rule, text holding the secret, the secret itself)
    ("api_key", "key is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z end", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
    (
        "api_key",
        "anthropic sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AA",
        "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AA",
    ),
    ("api_key", "openai=sk-" + "a1B2c3D4e5" * 4 + "x", "sk-" + "a1B2c3D4e5" * 4 + "x"),
    ("api_key", "aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a for ci", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        "api_key",
        "pat github_pat_11ABCDEFG0123456789_KLMNOPQRSTUVWXYZ0123456789",
        "github_pat_11ABCDEFG0123456789_KLMNOPQRSTUVWXYZ0123456789",
    ),
    ("api_key", "maps AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY ok", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("api_key", "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKl", "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"),
    ("api_key", "GET /v1?api_key=q7w8e9r0t1&x=1", "q7w8e9r0t1"),
    ("api_key", '{"apiKey": "k-4f1b2c"}', "k-4f1b2c"),
    ("bearer_token", "Authorization: Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"),
    ("bearer_token", "auth: bearer abcDEF123456ghi==", "abcDEF123456ghi=="),
    (
        "bearer_token",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("bearer_token", "callback?access_token=xyzzy42&state=1", "xyzzy42"),
    ("bearer_token", "{'refreshToken': 'r3fr3sh'}", "r3fr3sh"),
    ("password", "login password=hunter2 user=bob", "hunter2"),
    ("password", '{"password": "correct horse"}', "correct horse"),
    ("password", "passwd: s3same", "s3same"),
    ("password", "pwd=letmein;", "letmein"),
    ("password", "DB_PASSWORD=Tr0ub4dor", "Tr0ub4dor"),
    ("password", "userPassword='p@ss w0rd'", "p@ss w0rd"),
    ("password", "client_secret=cs-77aa", "cs-77aa"),
    ("password", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"),
    ("password", "dsn postgres://app:Sup3rS3cret@db.internal:5432/audit", "Sup3rS3cret"),
    (
        "private_key",
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nQ29tZSBvbg==\n-----END RSA PRIVATE KEY-----\nbye",
        "MIIEowIBAAKCAQEA7bq",
    ),
    (
        "private_key",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06",
        "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06",
    ),
    ("email", "contact alice.smith+audit@example.co.uk today", "alice.smith+audit@example.co.uk"),
    ("email", "<bob@corp.example>", "bob@corp.example"),
    ("phone", "call +14155550132 now", "+14155550132"),
    ("phone", "call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("phone", "us +1 (415) 555-0132.", "+1 (415) 555-0132"),
    ("phone", "office (415) 555-0132", "(415) 555-0132"),
    ("phone", "cell 415-555-0132", "415-555-0132"),
    ("phone", "london 020 7946 0958", "020 7946 0958"),
    ("card", "visa 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
    ("card", "mc 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ("card", "plain 4012888888881881.", "4012888888881881"),
    ("card", "amex 3782 822463 10005", "3782 822463 10005"),
]


@pytest.mark.parametrize(
    ("rule", "text", "secret"), SECRETS_BY_RULE, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(SECRETS_BY_RULE)]
)
def test_each_rule_masks_its_finding(mask_pipe: Pipeline, rule: str, text: str, secret: str) -> None:
    """A finding of a rule is replaced by [REDACTED:<rule>], and the record says which rule fired."""
    record = mask_pipe.one(body=text, attributes={"note": text})
    assert secret not in record.body
    assert f"[REDACTED:{rule}]" in record.body
    assert attrs(record)["note"] == record.body
    assert attrs(record)["audit.redaction.rules"] == (rule,)
    assert attrs(record)["audit.redaction.count"] == 2


@pytest.mark.parametrize(
    ("rule", "text", "secret"), SECRETS_BY_RULE, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(SECRETS_BY_RULE)]
)
def test_each_rule_finds_its_finding_inside_long_text(mask_pipe: Pipeline, rule: str, text: str, secret: str) -> None:
    """Long strings take another search path; every finding is still found in the middle of 2 KB of prose."""
    filler = "The user asked about the weather in Paris and got a long answer. " * 16
    record = mask_pipe.one(body=f"{filler}\n{text}\n{filler}")
    assert secret not in record.body
    assert f"[REDACTED:{rule}]" in record.body
    # A private key without its END line runs to the end of the string (it was cut short).
    truncated_key = "-----BEGIN" in text and "-----END" not in text
    assert record.body.count("weather in Paris") == (16 if truncated_key else 32)


def test_key_value_rules_keep_the_key_and_replace_only_the_value(mask_pipe: Pipeline) -> None:
    """For key=value findings only the value is replaced, so the reader still sees what it was."""
    record = mask_pipe.one(body='user=bob password=hunter2 {"api_key": "abc123"} Bearer tok.en-123456')
    assert record.body == (
        'user=bob password=[REDACTED:password] {"api_key": "[REDACTED:api_key]"} Bearer [REDACTED:bearer_token]'
    )


# -- findings by pattern: negatives ---------------------------------------------------------

CLEAN_TEXTS = [
    "4111 1111 1111 1112",  # fails Luhn
    "4111111111111112",  # fails Luhn
    "1234 5678 9012 3456",  # fails Luhn
    "order 1234567890123456 shipped",  # fails Luhn
    with_luhn_digit("171800000012345678"),  # a Luhn-valid nanosecond timestamp: issuer digit 1
    with_luhn_digit("171800000012"),  # a Luhn-valid millisecond timestamp
    "2024-06-01T12:30:45.123456Z",
    "at 2024-06-01 12:30:45 +0000",
    "ts=1718000000 took 12345678 ns",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "from 192.168.100.200 and 10.0.0.1",
    "version 1.2.3 build 20240601",
    "offset +02:00",
    "secretary=John",
    "bypass=true",
    "passport=X1234567",
    "max_tokens=100 input_tokens: 5",
    "task-scheduler-configuration-v2-prod",
    "disk-usage-monitoring-service-eu-west",
    "the bearer of bad news",
    "sk-short",
    "user@localhost",
    "GET /v1/chat/completions 200",
    "gpt-4o-mini",
    "tel 555-0132",
    "+1234",
]


@pytest.mark.parametrize("text", CLEAN_TEXTS)
def test_text_without_findings_is_left_alone(hmac_pipe: Pipeline, text: str) -> None:
    """Look-alikes (Luhn-failing digits, timestamps, ids, versions, words) are not redacted and get no annotation."""
    record = hmac_pipe.one(body=text, attributes={"note": text})
    assert record.body == text
    assert attrs(record) == {"note": text}


def test_non_string_values_are_untouched(hmac_pipe: Pipeline) -> None:
    """Numbers, booleans and bytes without text findings under ordinary keys pass as they are."""
    values = {"n": 4111111111111111, "f": 1.5, "b": True, "raw": b"\x00\xff\x10binary", "t": b"plain words"}
    record = hmac_pipe.one(body=4111111111111111, attributes=values)
    assert record.body == 4111111111111111
    assert attrs(record) == values


def test_text_in_bytes_is_scanned_and_stays_bytes(hmac_pipe: Pipeline) -> None:
    """A bytes value is scanned as text (UTF-8; other bytes round-trip) and stays bytes."""
    record = hmac_pipe.one(attributes={"raw": b"\xff\x00 password=hunter2 \xfe"})
    raw = attrs(record)["raw"]
    assert isinstance(raw, bytes) and b"hunter2" not in raw
    assert raw.startswith(b"\xff\x00 password=hmac-sha256:") and raw.endswith(b" \xfe")


# -- pseudonyms -----------------------------------------------------------------------------


def test_hmac_mode_replaces_with_the_searchable_pseudonym(hmac_pipe: Pipeline) -> None:
    """In hmac mode the replacement is exactly hmac_value(key, secret), so `otel-audit hash` finds it."""
    record = hmac_pipe.one(body="password=hunter2 mail bob@example.com")
    assert record.body == f"password={hmac_value(KEY, 'hunter2')} mail {hmac_value(KEY, 'bob@example.com')}"


def test_hmac_is_deterministic_per_key() -> None:
    """The same secret gives the same pseudonym in every record under one key, and another under another key."""
    a, b = Pipeline(mode="hmac"), Pipeline(mode="hmac", hmac_key=OTHER_KEY)
    first = a.one(body="sk-" + "Q" * 40).body
    second = a.one(attributes={"x": "sk-" + "Q" * 40}).attributes["x"]
    other = b.one(body="sk-" + "Q" * 40).body
    assert first == second == hmac_value(KEY, "sk-" + "Q" * 40)
    assert other == hmac_value(OTHER_KEY, "sk-" + "Q" * 40) != first


def test_mask_mode_names_the_rule(mask_pipe: Pipeline) -> None:
    """In mask mode each finding becomes [REDACTED:<rule>]."""
    record = mask_pipe.one(body="a@b.example / 4111111111111111 / +14155550132")
    assert record.body == "[REDACTED:email] / [REDACTED:card] / [REDACTED:phone]"
    assert attrs(record)["audit.redaction.rules"] == ("card", "email", "phone")
    assert attrs(record)["audit.redaction.count"] == 3


def test_redacting_twice_changes_nothing() -> None:
    """A second redaction processor (or a re-run) leaves pseudonyms and masks as they are."""
    body = 'password=hunter2 {"token": "t0k3n"} see https://u:pw1@db.example.org/ x@y.example'
    for mode in ("hmac", "mask"):
        provider = LoggerProvider()
        exporter = InMemoryLogRecordExporter()
        provider.add_log_record_processor(RedactionProcessor(mode=mode, hmac_key=KEY))
        provider.add_log_record_processor(RedactionProcessor(mode=mode, hmac_key=KEY))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        provider.get_logger("t").emit(event_name="e", body=body, attributes={"password": "hunter2"})
        (twice,) = exporter.get_finished_logs()
        once = Pipeline(mode=mode).one(body=body, attributes={"password": "hunter2"})
        assert twice.log_record.body == once.body
        assert attrs(twice.log_record) == attrs(once)
        assert attrs(once)["audit.redaction.count"] == 5


# -- structure ------------------------------------------------------------------------------


def test_nested_bodies_are_scanned_recursively_and_keep_their_shape(mask_pipe: Pipeline) -> None:
    """Lists and mappings at any depth are scanned; types and non-string leaves are kept."""
    body = {
        "messages": [
            {"role": "user", "content": "my card is 4111 1111 1111 1111"},
            {"role": "assistant", "content": ["ok", {"note": "mail me at a@b.example"}]},
        ],
        "n": 3,
        "ok": True,
        "raw": b"\x00\x01",
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "*/*"},
        "nothing": None,
    }
    record = mask_pipe.one(body=body)
    assert record.body == {
        "messages": [
            {"role": "user", "content": "my card is [REDACTED:card]"},
            {"role": "assistant", "content": ["ok", {"note": "mail me at [REDACTED:email]"}]},
        ],
        "n": 3,
        "ok": True,
        "raw": b"\x00\x01",
        "headers": {"Authorization": "[REDACTED:sensitive_key]", "Accept": "*/*"},
        "nothing": None,
    }
    assert attrs(record)["audit.redaction.rules"] == ("card", "email", "sensitive_key")


def test_nested_attribute_values_are_scanned(mask_pipe: Pipeline) -> None:
    """Sequence and mapping attribute values are scanned element by element."""
    record = mask_pipe.one(
        attributes={"recipients": ["a@b.example", "nobody"], "ctx": {"dsn": "mysql://root:toor@db/x"}}
    )
    assert attrs(record)["recipients"] == ("[REDACTED:email]", "nobody")
    assert attrs(record)["ctx"] == {"dsn": "mysql://root:[REDACTED:password]@db/x"}


def test_unchanged_record_is_not_rewritten(hmac_pipe: Pipeline) -> None:
    """A record without findings keeps its very body object and gets no redaction attributes."""
    body = {"a": ["x", {"b": "y"}]}
    record = hmac_pipe.one(body=body, attributes={"user.id": "u-1"})
    assert record.body is body
    assert "audit.redaction.rules" not in attrs(record)


def test_non_ascii_text_is_scanned_with_the_right_offsets(mask_pipe: Pipeline) -> None:
    """Characters whose lower case is longer ("İ") do not shift what gets replaced."""
    record = mask_pipe.one(body="İİİ Password=hunter2 İ a@b.example ÅßÇ")
    assert record.body == "İİİ Password=[REDACTED:password] İ [REDACTED:email] ÅßÇ"


def test_long_strings_are_redacted_like_short_ones(mask_pipe: Pipeline) -> None:
    """A secret inside a long text (prompt, request body) is found as in a short string."""
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit 2024-01-01. " * 40
    text = filler + "here: password=hunter2 and sk-" + "z" * 30 + " and 4111-1111-1111-1111\n" + filler
    record = mask_pipe.one(body=text)
    assert "hunter2" not in record.body and "z" * 30 not in record.body and "4111" not in record.body
    assert attrs(record)["audit.redaction.rules"] == ("api_key", "card", "password")
    assert record.body.count("Lorem ipsum") == 80


# -- keys -----------------------------------------------------------------------------------


def test_sensitive_keys_have_their_whole_value_replaced(hmac_pipe: Pipeline) -> None:
    """An attribute whose key, or last dotted segment, is sensitive (any case, - or _) is replaced whole."""
    record = hmac_pipe.one(
        attributes={
            "password": "plain words",
            "http.request.header.authorization": ("Basic dXNlcjpwYXNz",),
            "http.response.header.Set-Cookie": ["sid=1", "theme=dark"],
            "gen_ai.provider_key": b"\x01\x02secret-bytes",
            "user.pin.token": 123456,
            "TOKEN": "",
            "gen_ai.usage.input_tokens": 42,
            "token_count": "7",
        }
    )
    a = attrs(record)
    assert a["password"] == hmac_value(KEY, "plain words")
    assert a["http.request.header.authorization"] == (hmac_value(KEY, "Basic dXNlcjpwYXNz"),)
    assert a["http.response.header.Set-Cookie"] == (hmac_value(KEY, "sid=1"), hmac_value(KEY, "theme=dark"))
    assert a["gen_ai.provider_key"] == hmac_value(KEY, b"\x01\x02secret-bytes")
    assert a["user.pin.token"] == hmac_value(KEY, "123456")
    assert a["TOKEN"] == ""  # nothing to hide
    assert a["gen_ai.usage.input_tokens"] == 42
    assert a["token_count"] == "7"
    assert a["audit.redaction.rules"] == ("sensitive_key",)
    assert a["audit.redaction.count"] == 6


def test_custom_sensitive_keys_replace_the_defaults() -> None:
    """sensitive_keys=... sets the list of keys whose values are replaced."""
    p = Pipeline(mode="mask", sensitive_keys=["ssn"])
    a = attrs(p.one(attributes={"user.ssn": "078-05-1120", "password": "plain words"}))
    assert a["user.ssn"] == "[REDACTED:sensitive_key]"
    assert a["password"] == "plain words"


def test_allow_keys_are_never_touched() -> None:
    """Attributes named in allow_keys pass unredacted, patterns and sensitive keys alike."""
    p = Pipeline(mode="mask", allow_keys=["support.email", "password"])
    a = attrs(p.one(attributes={"support.email": "help@corp.example", "password": "x", "user.email": "a@b.example"}))
    assert a["support.email"] == "help@corp.example"
    assert a["password"] == "x"
    assert a["user.email"] == "[REDACTED:email]"


def test_integrity_attributes_are_never_touched(mask_pipe: Pipeline) -> None:
    """audit.integrity.* and audit.stream.* attributes pass as they are, whatever they hold."""
    values = {
        "audit.integrity.digest": "password=abc",
        "audit.integrity.token": "sk-" + "A" * 30,
        "audit.stream.id": "a@b.example",
    }
    assert attrs(mask_pipe.one(attributes=values)) == values


def test_signed_checkpoint_records_are_never_touched(mask_pipe: Pipeline) -> None:
    """A checkpoint the signing processor made (it carries audit.integrity.digest) passes unchanged."""
    signed = {"password": "x", "audit.integrity.digest": "ab" * 32, "audit.stream.note": "password=y"}
    record = mask_pipe.one(
        body="origin\n4111 1111 1111 1111\npassword=x", attributes=signed, event_name="audit.checkpoint"
    )
    assert record.body == "origin\n4111 1111 1111 1111\npassword=x"
    assert attrs(record) == signed


def test_a_record_merely_named_audit_checkpoint_is_redacted(mask_pipe: Pipeline) -> None:
    """Any other record is redacted, its name and its audit.stream.* attributes notwithstanding."""
    record = mask_pipe.one(body="password=x", attributes={"audit.stream.note": "password=y"},
                           event_name="audit.checkpoint")
    assert record.body == "password=[REDACTED:password]"
    assert attrs(record)["audit.stream.note"] == "password=[REDACTED:password]"


def test_client_ip_is_redacted_only_when_asked() -> None:
    """IP addresses in client/source/peer address attributes are replaced only with redact_client_ip=True."""
    values = {
        "client.address": "203.0.113.7",
        "source.address": "2001:db8::1",
        "network.peer.address": "198.51.100.20",
        "server.address": "203.0.113.9",
    }
    assert attrs(Pipeline(mode="mask").one(attributes=values)) == values
    a = attrs(Pipeline(mode="hmac", redact_client_ip=True).one(attributes={**values, "client.port": 443}))
    assert a["client.address"] == hmac_value(KEY, "203.0.113.7")
    assert a["source.address"] == hmac_value(KEY, "2001:db8::1")
    assert a["network.peer.address"] == hmac_value(KEY, "198.51.100.20")
    assert a["server.address"] == "203.0.113.9"
    assert a["client.port"] == 443
    assert a["audit.redaction.rules"] == ("client_ip",)


def test_client_ip_leaves_host_names() -> None:
    """A host name in client.address is not an IP and stays."""
    p = Pipeline(mode="mask", redact_client_ip=True)
    assert attrs(p.one(attributes={"client.address": "gateway.example.com"})) == {
        "client.address": "gateway.example.com"
    }


def test_rules_select_what_is_looked_for() -> None:
    """rules=[...] enables only the named built-in rules; key-based redaction stays on."""
    p = Pipeline(mode="mask", rules=["email"])
    record = p.one(body="a@b.example password=x 4111111111111111", attributes={"secret": "s"})
    assert record.body == "[REDACTED:email] password=x 4111111111111111"
    assert attrs(record)["secret"] == "[REDACTED:sensitive_key]"
    with_ip = Pipeline(mode="mask", rules=["email"], redact_client_ip=True)
    assert attrs(with_ip.one(attributes={"client.address": "::1"}))["client.address"] == "[REDACTED:client_ip]"
    assert attrs(Pipeline(mode="mask", rules=[]).one(body="a@b.example")) == {}


def test_custom_patterns_add_named_rules() -> None:
    """custom_patterns adds rules by name; a group named 'value' limits what is replaced."""
    p = Pipeline(mode="mask", custom_patterns={"ticket": r"TICKET-\d{4,}", "ssn": r"ssn=(?P<value>\d{3}-\d{2}-\d{4})"})
    record = p.one(body="see TICKET-12345, ssn=078-05-1120")
    assert record.body == "see [REDACTED:ticket], ssn=[REDACTED:ssn]"
    assert attrs(record)["audit.redaction.rules"] == ("ssn", "ticket")


# -- PII event ------------------------------------------------------------------------------


def test_pii_finding_emits_one_data_access_event() -> None:
    """Personal data in a record emits exactly one data_access.pii.detected event, and no event about that event."""
    p = Pipeline(mode="hmac", pii_events=True, redact_client_ip=True)
    p.emit(body="mail a@b.example or +14155550132, again c@d.example", attributes={"client.address": "203.0.113.7"})
    records = p.records()
    assert [r.log_record.event_name for r in records] == [PII_EVENT_NAME, "test.event"]
    event = records[0].log_record
    assert attrs(event) == {
        "audit.category": "data_access",
        "audit.action": "pii.detected",
        "audit.outcome": "success",
        "audit.pii.types": ("client_ip", "email", "phone"),
        "audit.pii.count": 4,
        "audit.pii.handling": "hmac",
    }


def test_secrets_alone_emit_no_pii_event() -> None:
    """A record with only secrets (no personal data) emits no PII event."""
    p = Pipeline(mode="mask", pii_events=True)
    p.emit(body="password=hunter2", attributes={"authorization": "Bearer x"})
    assert [r.log_record.event_name for r in p.records()] == ["test.event"]


# -- nothing leaks --------------------------------------------------------------------------

LEAK_SECRETS = [
    "hunter2-Very-Secret",
    "sk-proj-LeakLeakLeakLeakLeak1234567890",
    "alice.leak@example.org",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "eyJhbGciOiJIUzI1NiJ9.eyJsZWFrIjoxfQ.c2lnbmF0dXJl",
    "MIIEowLeakyPrivateKeyBody",
]


@pytest.mark.parametrize("mode", ["hmac", "mask"])
def test_no_secret_reaches_the_exported_record_or_the_logs(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """No secret appears in repr(), str() or to_json() of the exported record, nor in any log line, nor the key."""
    caplog.set_level(logging.DEBUG)
    p = Pipeline(mode=mode, pii_events=True)
    p.emit(
        body={
            "prompt": f"password={LEAK_SECRETS[0]} key {LEAK_SECRETS[1]} mail {LEAK_SECRETS[2]}",
            "card": LEAK_SECRETS[3],
            "list": [f"call {LEAK_SECRETS[4]}", f"Bearer {LEAK_SECRETS[5]}"],
            "pem": f"-----BEGIN EC PRIVATE KEY-----\n{LEAK_SECRETS[6]}\n-----END EC PRIVATE KEY-----",
        },
        attributes={
            "user.email": LEAK_SECRETS[2],
            "http.request.header.authorization": f"Bearer {LEAK_SECRETS[5]}",
            "password": LEAK_SECRETS[0],
        },
    )
    records = p.records()
    assert len(records) == 2
    seen = " ".join([repr(r) + str(r) + r.to_json() + repr(r.log_record) for r in records])
    seen += caplog.text + repr(p.processor) + str(vars(p.processor))
    for secret in LEAK_SECRETS:
        assert secret not in seen
    assert KEY.hex() not in seen and repr(KEY) not in seen


def test_a_failing_value_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    """If a value cannot be walked, the record still goes on with its values replaced, and the log says so."""

    class Broken(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("password=hunter2")

        def __len__(self) -> int:
            return 1

    p = Pipeline(mode="mask")
    record = p.one(body=Broken(), attributes={"user.email": "a@b.example", "audit.integrity.seq": "7", "ok": True})
    assert record.body == "[REDACTION_FAILED]"
    assert attrs(record) == {
        "user.email": "[REDACTION_FAILED]",
        "audit.integrity.seq": "7",
        "ok": True,
        "audit.redaction.error": "RuntimeError",
    }
    assert "RuntimeError" in caplog.text and "hunter2" not in caplog.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    sep=st.sampled_from([" ", "\n", "\t", "=", ":", '"', "'", ",", "(", "/", "key: ", "Bearer ", "api_key="]),
    key=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=40, max_size=40),
    mode=st.sampled_from(["hmac", "mask"]),
)
def test_property_an_embedded_api_key_never_survives(before: str, after: str, sep: str, key: str, mode: str) -> None:
    """For any text around a generated sk- key (after a delimiter), neither body nor attribute output holds the key."""
    assume(key not in before and key not in after)
    secret = "sk-" + key
    text = before + sep + secret + after
    p = _PROPERTY_PIPES[mode]
    record = p.one(body=text, attributes={"note": text, "nested": {"k": [text]}})
    out = repr(record.body) + repr(attrs(record))
    assert secret not in out
    assert key not in out


_PROPERTY_PIPES = {"hmac": Pipeline(mode="hmac"), "mask": Pipeline(mode="mask")}
_PIECES = [
    "sk-", "AKIA", "ghp_", "AIza", "xoxb-", "api_key", "password", "Pwd", "secret", "token", "Bearer ", "eyJ", ".",
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "://", "@", "example.com", "x", "K", "İ",
    "0", "+", "(", ")", "-", "_", " ", "\n", "=", ":", '"', "'", "&", "hmac-sha256:", "[REDACTED:x]",
]  # fmt: skip
_FILLERS = ["", "x" * 25, "20240601", "4111111111111111", "14155550132"]
_TOKEN_RE = re.compile(r"hmac-sha256:[0-9a-f]{64}|\[REDACTED:[a-z_]+\]")


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(_FILLERS)), max_size=30),
    mode=st.sampled_from(["hmac", "mask"]),
)
def test_property_redacting_again_never_alters_a_pseudonym(parts: list[tuple[str, str]], mode: str) -> None:
    """Redacting redacted output keeps every pseudonym and mask of the first pass, in order."""
    p = _PROPERTY_PIPES[mode]
    once = p.one(body="".join(a + b for a, b in parts)).body
    twice = p.one(body=once).body
    remaining = iter(_TOKEN_RE.findall(twice))
    assert all(any(t == u for u in remaining) for t in _TOKEN_RE.findall(once))


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "hash"}, "mode must be 'hmac' or 'mask'"),
        ({"mode": "hmac", "hmac_key": None}, "needs hmac_key"),
        ({"mode": "hmac", "hmac_key": b"short"}, "shorter than the minimum"),
        ({"mode": "mask", "rules": ["email", "ssn"]}, "unknown rule(s) 'ssn'"),
        ({"mode": "mask", "rules": "email"}, "expected a list of strings"),
        ({"mode": "mask", "rules": ["client_ip"]}, "only with redact_client_ip=True"),
        ({"mode": "mask", "sensitive_keys": [""]}, "non-empty string"),
        ({"mode": "mask", "allow_keys": "user.email"}, "expected a list of strings"),
        ({"mode": "mask", "custom_patterns": {"bad": "(unclosed"}}, "not a valid regular expression"),
        ({"mode": "mask", "custom_patterns": {"empty": "x*"}}, "matches the empty string"),
        ({"mode": "mask", "custom_patterns": {"email": "x"}}, "built-in rule name"),
        ({"mode": "mask", "custom_patterns": {"a b": "x"}}, "rule name must be"),
        ({"mode": "mask", "pii_event_logger": object()}, "expected an OpenTelemetry Logger"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    """A wrong argument raises ConfigError (a ValueError) at construction, saying what is wrong."""
    kwargs.setdefault("hmac_key", None)
    with pytest.raises(ConfigError) as info:
        RedactionProcessor(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_processor_lifecycle_and_repr() -> None:
    """force_flush returns True, shutdown is harmless, and repr names the mode and rules but not the key."""
    p = RedactionProcessor(mode="hmac", hmac_key=KEY, redact_client_ip=True)
    assert p.force_flush() is True
    p.shutdown()
    assert repr(p) == f"RedactionProcessor(mode='hmac', rules={BUILTIN_RULES!r}, custom=[])"


# -- otel_audit.pseudonym -------------------------------------------------------------------


def test_hmac_value_known_answer() -> None:
    """hmac_value matches RFC 4231 test case 2 and prefixes Vault's 'hmac-sha256:'."""
    expected = "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_value(b"Jefe", "what do ya want for nothing?") == expected
    assert hmac_value(SecretBytes(b"Jefe"), b"what do ya want for nothing?") == expected


def test_hmac_value_encodes_text_as_utf8() -> None:
    """A str value is hashed as its UTF-8 bytes."""
    assert hmac_value(KEY, "žluťoučký") == hmac_value(KEY, "žluťoučký".encode())


def test_hmac_value_rejects_wrong_types() -> None:
    """A key or value of the wrong type raises TypeError."""
    with pytest.raises(TypeError):
        hmac_value("not bytes", "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hmac_value(KEY, 5)  # type: ignore[arg-type]


def test_load_hmac_key_forms(tmp_path: Path) -> None:
    """Raw bytes, base64 (standard or URL-safe, padding optional), hex, file: and plain strings all load."""
    raw = bytes(range(250, 256)) + bytes(range(26))
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(b"  a-long-enough-plain-key-in-a-file\n")
    hex_file = tmp_path / "hmac.hex"
    hex_file.write_text("hex:" + raw.hex() + "\n")
    assert load_hmac_key(raw, where="t") == raw
    assert load_hmac_key(SecretBytes(raw), where="t") == raw
    assert load_hmac_key("base64:" + base64.b64encode(raw).decode(), where="t") == raw
    assert load_hmac_key("base64:" + base64.urlsafe_b64encode(raw).decode().rstrip("="), where="t") == raw
    assert load_hmac_key("hex:" + raw.hex().upper(), where="t") == raw
    assert load_hmac_key(f"file:{key_file}", where="t") == b"a-long-enough-plain-key-in-a-file"
    assert load_hmac_key(f"file:{hex_file}", where="t") == raw
    assert load_hmac_key("correct horse battery staple", where="t") == b"correct horse battery staple"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (None, "no HMAC key was given"),
        ("", "is empty"),
        (b"", "is empty"),
        ("tooShortKey-1234"[:15], "15 bytes, shorter than the minimum of 16"),
        ("base64:c2VjcmV0LWtleS0x!!!", "not valid base64"),
        ("base64:" + base64.b64encode(b"secret-key-1").decode(), "12 bytes"),
        ("hex:secret-key-not-hex-000000000", "not valid hexadecimal"),
        ("file:", "not followed by a path"),
        (12345678901234567890, "must be a string or bytes, not int"),
    ],
)
def test_load_hmac_key_errors_name_the_source_but_never_the_key(spec: Any, problem: str) -> None:
    """Each bad key raises ConfigError naming `where` and the problem, with no part of the key in it."""
    with pytest.raises(ConfigError) as info:
        load_hmac_key(spec, where="config.yaml: processors.redaction.hmac_key")
    message = str(info.value)
    assert message.startswith("config.yaml: processors.redaction.hmac_key: ")
    assert problem in message
    assert "secrets.token_hex" in message  # says what to do
    if isinstance(spec, str) and len(spec) > 8:
        body = spec.partition(":")[2] or spec
        assert body not in message and body[:8] not in message
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_load_hmac_key_missing_file_names_the_path(tmp_path: Path) -> None:
    """A key file that cannot be read gives a ConfigError with its path and the reason."""
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=r"cannot read key file .*nope\.key.*No such file"):
        load_hmac_key(f"file:{missing}", where="--key")


def test_load_hmac_key_non_utf8_file_content_stays_out_of_the_error(tmp_path: Path) -> None:
    """A file that says 'hex:' but holds non-ASCII bytes fails without its bytes in the message or chain."""
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"hex:\xff\xfe-secret-material")
    with pytest.raises(ConfigError) as info:
        load_hmac_key(f"file:{bad}", where="t")
    assert "secret-material" not in str(info.value)
    assert info.value.__context__ is None


def test_minimum_key_length_is_sixteen_bytes() -> None:
    """Keys of exactly MIN_KEY_BYTES load; the constant is 16."""
    assert MIN_KEY_BYTES == 16
    assert load_hmac_key(b"k" * 16, where="t") == b"k" * 16


def test_secret_bytes_never_show_themselves() -> None:
    """SecretBytes prints as SecretBytes(***) in repr, str and f-strings, refuses pickling, compares by value."""
    s = SecretBytes(b"super-secret-key-material")
    assert repr(s) == str(s) == f"{s}" == f"{s!r}" == "SecretBytes(***)"
    assert "super" not in repr([s]) and "super" not in repr({"k": s})
    assert s.reveal() == b"super-secret-key-material" and len(s) == 25
    assert s == SecretBytes(b"super-secret-key-material") and s != SecretBytes(b"other")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        SecretBytes("text")  # type: ignore[arg-type]


# -- the resource ------------------------------------------------------------------------------


def test_redact_resource_is_what_records_are_exported_under() -> None:
    """redact_resource gives the redacted copy a record's resource becomes (the same object when it is clean)."""
    from opentelemetry.sdk.resources import Resource

    red = RedactionProcessor(mode="mask")
    clean = Resource({"service.name": "gw"})
    assert red.redact_resource(clean) is clean
    dirty = Resource({"service.name": "gw", "db.password": "hunter2-resource", "note": "token=hunter2-resource"})
    redacted = red.redact_resource(dirty)
    assert dict(redacted.attributes) == {"service.name": "gw", "db.password": "[REDACTED:sensitive_key]",
                                         "note": "token=[REDACTED:bearer_token]"}
    assert red.redact_resource(redacted) is redacted  # already redacted: nothing more to find
    provider = LoggerProvider(resource=dirty)
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(red)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("t").emit(event_name="test.event", body="x")
    (record,) = exporter.get_finished_logs()
    assert dict(record.resource.attributes) == dict(redacted.attributes)
    with pytest.raises(TypeError):
        red.redact_resource({"service.name": "gw"})  # type: ignore[arg-type]
