"""Fuzz: the redaction processor (hmac and mask modes) over arbitrary bodies and attributes.

Records of every OTel AnyValue shape (nested lists and mappings, bytes, big and small numbers,
any text, JSON text of a nested value) with real-shaped secrets (tests/fuzz_support.py) planted
anywhere: a string value, a nested value, a mapping key, a JSON text, the value of a sensitive
key. Each record goes through a real pipeline (LoggerProvider -> RedactionProcessor ->
SimpleLogRecordProcessor -> InMemoryLogRecordExporter), and the properties are:

* redaction never fails: nothing raises, no record is failed closed (``audit.redaction.error``,
  ``[REDACTION_FAILED]``), no ``redaction failed`` log line;
* no planted secret is left in the exported record (any string of it, keys included), nor in a
  log line;
* redaction is idempotent: redacting the redacted record again changes nothing;
* a redacted record still signs and verifies (a sample, through the real signing processor and
  file exporter, then `otel_audit.verify`), and the archive holds no planted secret.

Secrets are set off by separators (a space, ``=``, quotes, brackets ...): glued to letters they
would be another token, which no pattern can tell from text. They are not planted in bytes
values, which the processor replaces only under a sensitive key (its documented scope: strings).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_clean, only_stream, verify
from fuzz_support import SECRETS, assert_no_secret, captured_logs, embedded_secret, fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring
from otel_audit.processors.redaction import ERROR_ATTRIBUTE, RedactionProcessor
from otel_audit.processors.signing import SigningProcessor

KEY = bytes(range(32))
GITHUB = SECRETS[0].text  # a classic GitHub PAT, for the explicit examples

# -- strategies --------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_sensitive_keys = st.sampled_from(
    ["password", "db_password", "api_key", "apiKey", "x-api-key", "authorization", "token", "client_secret",
     "http.request.header.authorization", "private_key", "Cookie"])
_plain_keys = st.sampled_from(["user.id", "note", "message", "gen_ai.prompt", "k", "url", "headers", "detail"])
_keys = st.one_of(_plain_keys, _sensitive_keys, _text.filter(bool), embedded_secret())

_leaves = st.one_of(
    _text,
    embedded_secret(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=16),
)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=bool(len(str(value)) % 2), allow_nan=False)


def _jsonable(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, bytes):
        return False
    if isinstance(v, list):
        return all(_jsonable(x) for x in v)
    if isinstance(v, dict):
        return all(_jsonable(x) for x in v.values())
    return True


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(st.one_of(children, st.none()), max_size=5),
        st.dictionaries(_keys, st.one_of(children, st.none()), max_size=5),
        # JSON text of a nested value, as AuditLogger.config_changed writes it (or a client sends it)
        st.dictionaries(_keys, children, max_size=4).filter(_jsonable).map(_json_text),
        st.lists(children, max_size=4).filter(_jsonable).map(_json_text),
    )


values = st.recursive(_leaves, _containers, max_leaves=25)
# Top-level attribute keys hold no planted secret: the processor does not scan them (finding R1,
# test_top_level_attribute_key_secret_is_redacted below); nested mapping keys do.
_attribute_keys = st.one_of(_plain_keys, _sensitive_keys, _text.filter(bool))
attributes = st.dictionaries(_attribute_keys, values, max_size=8)
bodies = st.one_of(st.none(), values)

# -- the pipeline ------------------------------------------------------------------------------


class Pipe:
    """LoggerProvider -> RedactionProcessor -> SimpleLogRecordProcessor -> memory."""

    def __init__(self, **kw: Any) -> None:
        self.provider = LoggerProvider()
        self.exporter = InMemoryLogRecordExporter()
        self.provider.add_log_record_processor(RedactionProcessor(**kw))
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        self.logger = self.provider.get_logger("fuzz")

    def redact(
        self, body: Any, attrs: Mapping[str, Any] | None, event: str = "fuzz.event"
    ) -> tuple[Any, dict[str, Any]]:
        self.exporter.clear()
        self.logger.emit(event_name=event, body=body, attributes=attrs)
        (out,) = self.exporter.get_finished_logs()
        rec = out.log_record
        return rec.body, dict(rec.attributes or {})


@pytest.fixture(scope="module", params=["hmac", "mask"])
def pipe(request: pytest.FixtureRequest) -> Iterator[Pipe]:
    p = Pipe(mode="hmac", hmac_key=KEY) if request.param == "hmac" else Pipe(mode="mask")
    yield p
    p.provider.shutdown()


def strings(value: Any) -> Iterator[str]:
    """Every string in `value`: values and mapping keys, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and a tuple equal to the list of its items."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def check_redacted(body: Any, attrs: Mapping[str, Any], logs: list[str]) -> None:
    assert ERROR_ATTRIBUTE not in attrs, ("redaction failed closed", attrs[ERROR_ATTRIBUTE])
    assert not any("redaction failed" in line for line in logs), logs
    assert "[REDACTION_FAILED]" not in list(strings([body, attrs])), (body, attrs)
    assert_no_secret("redacted record", strings([body, attrs]))
    assert_no_secret("log line", logs)


# -- properties --------------------------------------------------------------------------------


@fuzz_settings(150)
@given(body=bodies, attrs=attributes)
@example(body=f"Authorization: Bearer {GITHUB}", attrs={"note": {"deep": [GITHUB]}})
@example(body={GITHUB: 1}, attrs={"k": {f"x {GITHUB}": "a nested key"}})
@example(body=json.dumps({"a": {"password": "hunter2-Sup3rS3cret"}, "b": [GITHUB]}), attrs={})
def test_redaction_removes_planted_secrets_and_is_idempotent(pipe: Pipe, body: Any, attrs: dict[str, Any]) -> None:
    with captured_logs() as logs:
        body1, attrs1 = pipe.redact(body, attrs)
        check_redacted(body1, attrs1, logs)
        body2, attrs2 = pipe.redact(body1, attrs1)
    assert _same(body2, body1), (body1, body2)
    assert _same(attrs2, attrs1), (attrs1, attrs2)
    assert not any("redaction failed" in line for line in logs), logs


@fuzz_settings(60)
@given(secret=st.sampled_from(SECRETS), key=_sensitive_keys, value=values)
def test_sensitive_key_value_is_replaced_whole(pipe: Pipe, secret: Any, key: str, value: Any) -> None:
    """Whatever the value under a sensitive key (any shape, a secret planted in it), no secret is left."""
    with captured_logs() as logs:
        body, attrs = pipe.redact(None, {key: [value, secret.text], "nested": {key: {"v": secret.text}}})
    check_redacted(body, attrs, logs)


@fuzz_settings(20)
@given(records=st.lists(st.tuples(bodies, attributes), min_size=1, max_size=3), mode=st.sampled_from(["hmac", "mask"]))
@example(records=[(GITHUB, {"password": "x"})], mode="mask")
def test_redacted_records_sign_and_verify(shared_keys: Path, keyring: Keyring,
                                          records: list[tuple[Any, dict[str, Any]]], mode: str) -> None:
    """Redaction -> signing -> file: the archive verifies clean and holds no planted secret."""
    with tempfile.TemporaryDirectory(prefix="fuzz-redaction-") as d, captured_logs() as logs:
        path = Path(d) / "audit.jsonl"
        resource = Resource.create({"service.name": "fuzz"})
        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(
            RedactionProcessor(mode="hmac", hmac_key=KEY) if mode == "hmac" else RedactionProcessor(mode="mask"))
        provider.add_log_record_processor(SigningProcessor(
            shared_keys, downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path, fsync="never")),
            checkpoint_every=1000, checkpoint_interval=3600.0, resource=resource))
        logger = provider.get_logger("fuzz")
        for body, attrs in records:
            logger.emit(event_name="fuzz.event", body=body, attributes=attrs)
        provider.shutdown()
        report = verify(path, keyring)
        s = only_stream(report)
        assert_clean(s)
        assert s.events == len(records), s
        assert_no_secret("archive", [path.read_text(encoding="utf-8")])
        assert_no_secret("log line", logs)


# -- findings kept as regression tests ---------------------------------------------------------


def test_top_level_attribute_key_secret_is_redacted(pipe: Pipe) -> None:
    """Minimal example the fuzzer found: an attribute whose key is a credential keeps it in clear.
    The processor scans mapping keys inside values and bodies (``{GITHUB: 1}`` is redacted), but
    `on_emit` never looks at the record's own attribute keys."""
    body, attrs = pipe.redact(None, {GITHUB: "v"})
    assert_no_secret("redacted record", strings([body, attrs]))
