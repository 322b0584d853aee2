"""The stdlib `logging` handler and the structlog processor that route catalog events into `AuditLogger`.

Every test runs the real pipeline that `otel_audit.configure` builds from a config file
(redaction -> signing -> delivery spool -> file archive) under a real stdlib logging or structlog setup, and
checks what the archive holds with the verifier and the public keyring alone.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import verify

import otel_audit
from otel_audit.keys import Keyring
from otel_audit.verify import decode_value, iter_records

# A secret the redaction processor knows (an OpenAI-style API key) and a test can look for.
SECRET = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
WARNINGS = "otel_audit.log_bridges"


def _config(tmp_path: Path, keys_dir: Path) -> tuple[Path, Path]:
    archive = tmp_path / "archive" / "audit.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(f"""\
resource:
  service.name: bridge-tests
processors:
  redaction:
    mode: hmac
    hmac_key: hex:{"5e" * 32}
  signing:
    keys_dir: {json.dumps(str(keys_dir))}
    state_dir: {json.dumps(str(tmp_path / "state"))}
    checkpoint_every: 10
    checkpoint_interval: 1h
  delivery:
    directory: {json.dumps(str(tmp_path / "spool"))}
exporters:
  file:
    path: {json.dumps(str(archive))}
    fsync: never
service:
  pipelines:
    logs/audit:
      processors: [redaction, signing, delivery]
      exporters: [file]
""")
    return cfg, archive


@pytest.fixture
def pipeline(tmp_path: Path, shared_keys: Path) -> Iterator[tuple[otel_audit.AuditPipeline, Path]]:
    cfg, archive = _config(tmp_path, shared_keys)
    audit = otel_audit.configure(cfg)
    yield audit, archive
    audit.shutdown()  # a second shutdown is a no-op


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A stdlib logger of the 'application', detached from the root logger's handlers."""
    log = logging.getLogger("bridge-tests.app")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def records(archive: Path) -> list[dict[str, Any]]:
    """The archive's audit records (checkpoints left out), attributes and body decoded."""
    out = []
    for _, rec in iter_records([archive]):
        name = rec.get("eventName", "")
        if name.startswith("audit."):
            continue
        attrs = {a["key"]: decode_value(a["value"]) for a in rec.get("attributes", [])}
        body = decode_value(rec["body"]) if "body" in rec else None
        out.append({"event": name, "attrs": attrs, "body": body, "severity": rec.get("severityText")})
    return out


def assert_proven(archive: Path, keys_dir: Path) -> None:
    rep = verify(archive, Keyring.load(keys_dir))
    assert rep.ok, [s.problems for s in rep.streams] + rep.problems
    assert len(rep.streams) == 1 and rep.streams[0].state == "closed"


# -- stdlib logging ----------------------------------------------------------------------------------


def test_stdlib_logging_app_emits_signed_redacted_catalog_events(
    pipeline: tuple[otel_audit.AuditPipeline, Path], app_logger: logging.Logger, shared_keys: Path
) -> None:
    """Records carrying audit_event become signed catalog records; a secret in an attribute is redacted;
    a record without an audit event is ignored; the archive verifies."""
    audit, archive = pipeline
    handler = otel_audit.AuditHandler(audit.logger)
    app_logger.addHandler(handler)

    app_logger.info("an ordinary log line, not an audit event")
    app_logger.info("user %s signed in", "alice", extra={
        "audit_event": "authentication.login.succeeded",
        "audit_attributes": {"user.id": "alice", "client.address": "203.0.113.7"},
    })
    app_logger.warning("sign-in refused", extra={
        "audit_event": "authentication.login.failed",
        "audit_attributes": {"user.id": "bob", "audit.reason": f"bad credentials, key {SECRET}"},
        "audit_outcome": "failure",
        "audit_severity": "ERROR",
    })
    audit.shutdown()

    assert handler.rejected == 0
    assert_proven(archive, shared_keys)
    assert SECRET not in archive.read_text()
    got = records(archive)
    assert [r["event"] for r in got] == ["authentication.login.succeeded", "authentication.login.failed"]
    ok, failed = got
    assert ok["body"] == "user alice signed in"
    assert ok["attrs"]["user.id"] == "alice"
    assert ok["attrs"]["audit.outcome"] == "success"
    assert failed["attrs"]["audit.outcome"] == "failure"
    assert failed["severity"] == "ERROR"
    assert failed["attrs"]["audit.reason"].startswith("bad credentials, key hmac-sha256:")  # pseudonymised


def test_logger_prefix_names_the_event(
    pipeline: tuple[otel_audit.AuditPipeline, Path], app_logger: logging.Logger, shared_keys: Path
) -> None:
    """With logger_prefix='audit.', a logger named audit.<event> emits that event; audit_event in extra wins."""
    audit, archive = pipeline
    handler = otel_audit.AuditHandler(audit.logger, logger_prefix="audit.")
    by_name = logging.getLogger("audit.authentication.logout.succeeded")
    by_name.propagate = False
    by_name.setLevel(logging.INFO)
    by_name.addHandler(handler)
    try:
        by_name.info("bye", extra={"audit_attributes": {"user.id": "alice"}})
        by_name.info("override", extra={"audit_event": "authentication.login.succeeded",
                                        "audit_attributes": {"user.id": "carol"}})
    finally:
        by_name.removeHandler(handler)
    audit.shutdown()

    assert handler.rejected == 0
    assert_proven(archive, shared_keys)
    assert [r["event"] for r in records(archive)] == ["authentication.logout.succeeded",
                                                      "authentication.login.succeeded"]


def test_stdlib_bad_events_are_reported_counted_and_not_raised(
    pipeline: tuple[otel_audit.AuditPipeline, Path],
    app_logger: logging.Logger,
    shared_keys: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused events never raise into the logging call: each is counted, warned about on the
    otel_audit.log_bridges logger (without attribute values) and handed to handleError; the good
    events around them are emitted and verify."""
    audit, archive = pipeline
    handler = otel_audit.AuditHandler(audit.logger)
    app_logger.addHandler(handler)
    caplog.set_level(logging.WARNING, logger=WARNINGS)

    app_logger.info("before", extra={"audit_event": "authentication.logout.succeeded",
                                     "audit_attributes": {"user.id": "alice"}})
    app_logger.info("unknown", extra={"audit_event": "authentication.login.succeded",
                                      "audit_attributes": {"user.id": SECRET}})
    app_logger.info("missing", extra={"audit_event": "authentication.login.failed",
                                      "audit_attributes": {"user.id": "bob", "client.address": SECRET}})
    app_logger.info("mistyped", extra={"audit_event": "authentication.login.succeeded",
                                       "audit_attributes": {"user.id": ["alice", SECRET]}})
    app_logger.info("not a mapping", extra={"audit_event": "authentication.login.succeeded",
                                            "audit_attributes": [("user.id", SECRET)]})
    app_logger.info("not a name", extra={"audit_event": 42})
    app_logger.info("after", extra={"audit_event": "authentication.logout.succeeded",
                                    "audit_attributes": {"user.id": "alice"}})
    audit.shutdown()

    assert handler.rejected == 5
    warnings = [r for r in caplog.records if r.name == WARNINGS]
    assert len(warnings) == 5
    texts = [r.getMessage() for r in warnings]
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "UnknownEventError" in texts[0] and "authentication.login.succeded" in texts[0]
    assert "MissingAttributeError" in texts[1] and "audit.reason" in texts[1]
    assert "AttributeTypeError" in texts[2] and "user.id" in texts[2]
    assert "EmitTypeError" in texts[3]
    assert "EmitTypeError" in texts[4] and "<int>" in texts[4]
    assert all("bridge-tests.app" in t and "test_log_bridges.py" in t for t in texts)
    assert [t.split("(")[1].split(" ")[0] for t in texts] == ["1", "2", "3", "4", "5"]  # the running count
    stderr = capsys.readouterr().err  # logging.Handler.handleError's report, once per refusal
    assert stderr.count("--- Logging error ---") == 5
    assert SECRET not in stderr and all(SECRET not in t for t in texts)

    assert_proven(archive, shared_keys)
    assert [r["body"] for r in records(archive)] == ["before", "after"]
    assert SECRET not in archive.read_text()


def test_handle_error_report_holds_no_message_argument_or_source_line(tmp_path: Path, shared_keys: Path) -> None:
    """A refusal's handleError report (in a child process: stderr as the service sees it) names the error, the
    call site and the event, and holds neither the record's message nor its arguments nor the source line of
    the logging call, all three of which stdlib's report prints; logging.raiseExceptions=False keeps it quiet."""
    cfg, _ = _config(tmp_path, shared_keys)
    app = tmp_path / "app.py"
    app.write_text(f"""\
import logging, sys, otel_audit
audit = otel_audit.configure(sys.argv[1])
log = logging.getLogger("bridge-app")
log.propagate = False
handler = otel_audit.AuditHandler(audit.logger)
log.addHandler(handler)
log.warning("refused for %s", "hunter2-argument-HE5", extra={{"audit_event": "no.such.event"}})
log.warning("token {SECRET} hunter2-literal-HE6", extra={{
    "audit_event": "authentication.login.failed", "audit_attributes": {{"user.id": "bob"}}}})
log.warning("bad format %d", "hunter2-format-HE7", extra={{"audit_event": "authentication.logout.succeeded",
                                                          "audit_attributes": {{"user.id": "x"}}}})
logging.raiseExceptions = False
log.warning("quiet", extra={{"audit_event": "no.such.event"}})
print(handler.rejected)
audit.shutdown()
""")
    r = subprocess.run([sys.executable, str(app), str(cfg)], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4"]  # two refusals, the event lost to a format error, the quiet one
    err = r.stderr
    assert err.count("--- Logging error ---") == 3
    for secret in ("hunter2-argument-HE5", "hunter2-literal-HE6", SECRET, "hunter2-format-HE7", "bad format"):
        assert secret not in err, err
    assert "Message:" not in err and "Arguments:" not in err
    assert "otel_audit.errors.UnknownEventError: unknown audit event 'no.such.event'" in err
    assert "otel_audit.errors.MissingAttributeError: " in err and "audit.reason" in err
    assert "TypeError (its message is not shown" in err and "in getMessage" in err  # by class, with its frames
    assert "audit event authentication.logout.succeeded from logger 'bridge-app'" in err  # the lost one, counted
    assert "(3 so far): its log message cannot be formatted with its arguments (TypeError)" in err
    assert err.count("Logged from logger 'bridge-app' at ") == 3 and f"{app}:7, audit event no.such.event;" in err
    assert "Call stack:\n" in err and f'File "{app}", line 8, in <module>' in err


def test_stdlib_event_after_shutdown_is_counted_not_raised(
    pipeline: tuple[otel_audit.AuditPipeline, Path], app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """A pipeline that can no longer take records (shut down: DeliveryError) is reported like a refusal."""
    audit, _ = pipeline
    handler = otel_audit.AuditHandler(audit.logger)
    app_logger.addHandler(handler)
    audit.shutdown()
    caplog.set_level(logging.WARNING, logger=WARNINGS)
    previous, logging.raiseExceptions = logging.raiseExceptions, False  # handleError then stays quiet
    try:
        app_logger.info("late", extra={"audit_event": "authentication.logout.succeeded",
                                       "audit_attributes": {"user.id": "alice"}})
    finally:
        logging.raiseExceptions = previous
    assert handler.rejected == 1
    (warning,) = [r for r in caplog.records if r.name == WARNINGS]
    assert "DeliveryError" in warning.getMessage()


def test_handler_arguments_are_checked() -> None:
    with pytest.raises(otel_audit.EmitTypeError, match=r"pass its \.logger"):
        otel_audit.AuditHandler(_FakePipeline())  # type: ignore[arg-type]
    with pytest.raises(otel_audit.EmitTypeError, match="logger_prefix"):
        otel_audit.AuditHandler(logger_prefix="")
    with pytest.raises(otel_audit.EmitTypeError, match="drop"):
        otel_audit.AuditProcessor(drop="yes")  # type: ignore[arg-type]


class _FakePipeline:
    """Something with a .logger that is an AuditLogger, as an AuditPipeline has (not our code mocked)."""

    logger = otel_audit.AuditLogger()


# -- structlog -----------------------------------------------------------------------------------------


def test_structlog_app_emits_signed_redacted_catalog_events(
    pipeline: tuple[otel_audit.AuditPipeline, Path], shared_keys: Path
) -> None:
    """Through structlog.configure, audit_event= calls become signed records; the rendered log line goes
    on without the attributes (the renderer would print the secret); other calls pass untouched."""
    audit, archive = pipeline
    processor = otel_audit.AuditProcessor(audit.logger)
    structlog.configure(
        processors=[structlog.processors.add_log_level, processor, structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger().bind(request_id="r-1")
        plain = log.info("ordinary line", user="alice")
        ok = log.info("alice signed in", audit_event="authentication.login.succeeded",
                      audit_attributes={"user.id": "alice", "client.address": "203.0.113.7"})
        failed = log.warning("sign-in refused", audit_event="authentication.login.failed",
                             audit_attributes={"user.id": "bob", "audit.reason": f"token {SECRET}"},
                             audit_outcome="failure")
    finally:
        structlog.reset_defaults()
    audit.shutdown()

    assert json.loads(plain) == {"event": "ordinary line", "user": "alice", "request_id": "r-1", "level": "info"}
    assert json.loads(ok) == {"event": "alice signed in", "audit_event": "authentication.login.succeeded",
                              "audit_emitted": True, "request_id": "r-1", "level": "info"}
    assert SECRET not in failed and "audit_attributes" not in failed
    assert processor.rejected == 0
    assert_proven(archive, shared_keys)
    assert SECRET not in archive.read_text()
    got = records(archive)
    assert [r["event"] for r in got] == ["authentication.login.succeeded", "authentication.login.failed"]
    assert got[0]["body"] == "alice signed in"
    assert "request_id" not in got[0]["attrs"]  # bound context is not an audit attribute
    assert got[1]["attrs"]["audit.outcome"] == "failure"
    assert got[1]["attrs"]["audit.reason"].startswith("token hmac-sha256:")


def test_structlog_drop_sends_audit_events_only_to_the_pipeline(
    pipeline: tuple[otel_audit.AuditPipeline, Path], shared_keys: Path
) -> None:
    audit, archive = pipeline
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[otel_audit.AuditProcessor(audit.logger, drop=True), structlog.processors.JSONRenderer()],
    )
    assert log.info("bye", audit_event="authentication.logout.succeeded",
                    audit_attributes={"user.id": "alice"}) is None
    assert json.loads(log.info("ordinary")) == {"event": "ordinary"}
    audit.shutdown()
    assert_proven(archive, shared_keys)
    assert [r["event"] for r in records(archive)] == ["authentication.logout.succeeded"]


def test_structlog_bad_event_is_reported_counted_passed_on_and_not_raised(
    pipeline: tuple[otel_audit.AuditPipeline, Path], shared_keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused event does not raise into the structlog call, is counted and warned about (no values),
    and goes on to the renderer with audit_error, even with drop=True."""
    audit, archive = pipeline
    processor = otel_audit.AuditProcessor(audit.logger, drop=True)
    log = structlog.wrap_logger(
        structlog.ReturnLogger(), processors=[processor, structlog.processors.JSONRenderer()]
    )
    caplog.set_level(logging.WARNING, logger=WARNINGS)
    line = log.info("sign-in refused", audit_event="authentication.login.failed",
                    audit_attributes={"user.id": "bob", "client.address": SECRET})
    log.info("bye", audit_event="authentication.logout.succeeded", audit_attributes={"user.id": "alice"})
    audit.shutdown()

    assert json.loads(line) == {"event": "sign-in refused", "audit_event": "authentication.login.failed",
                                "audit_error": "MissingAttributeError"}
    assert processor.rejected == 1
    (warning,) = [r for r in caplog.records if r.name == WARNINGS]
    text = warning.getMessage()
    assert "structlog info()" in text and "MissingAttributeError" in text and SECRET not in text
    assert_proven(archive, shared_keys)
    assert [r["event"] for r in records(archive)] == ["authentication.logout.succeeded"]


def test_structlog_over_stdlib_with_both_bridges_emits_once(
    pipeline: tuple[otel_audit.AuditPipeline, Path],
    shared_keys: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """structlog -> render_to_log_kwargs -> a stdlib logger with an AuditHandler: an event the processor emitted
    or refused is not taken by the handler for a second audit call; the handler still takes stdlib audit calls."""
    audit, archive = pipeline
    handler = otel_audit.AuditHandler(audit.logger, logger_prefix="audit.")
    stdlib = logging.getLogger("audit.authentication.logout.succeeded")  # the handler's prefix names an event too
    stdlib.setLevel(logging.INFO)
    stdlib.propagate = False
    stdlib.addHandler(handler)
    processor = otel_audit.AuditProcessor(audit.logger)
    structlog.configure(processors=[processor, structlog.stdlib.render_to_log_kwargs],
                        logger_factory=structlog.stdlib.LoggerFactory(),
                        wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=False)
    caplog.set_level(logging.WARNING, logger=WARNINGS)
    try:
        log = structlog.get_logger("audit.authentication.logout.succeeded")
        log.info("alice signed in", audit_event="authentication.login.succeeded", audit_attributes={"user.id": "alice"})
        log.info("bob refused", audit_event="authentication.login.failed", audit_attributes={"user.id": "bob"})
        stdlib.info("carol left", extra={"audit_attributes": {"user.id": "carol"}})  # stdlib's own audit call
    finally:
        structlog.reset_defaults()
        stdlib.removeHandler(handler)
    audit.shutdown()
    assert (processor.rejected, handler.rejected) == (1, 0)
    assert len([r for r in caplog.records if r.name == WARNINGS]) == 1  # the structlog refusal, reported once
    assert "--- Logging error ---" not in capsys.readouterr().err
    assert [r["event"] for r in records(archive)] == ["authentication.login.succeeded",
                                                      "authentication.logout.succeeded"]
    assert_proven(archive, shared_keys)


def test_structlog_processor_after_the_renderer_reports_and_does_not_raise(
    pipeline: tuple[otel_audit.AuditPipeline, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A chain with the renderer before AuditProcessor: the call returns the rendered line, and one naming an
    audit event is counted and warned about (it cannot be emitted from a str); other lines pass untouched."""
    audit, _ = pipeline
    processor = otel_audit.AuditProcessor(audit.logger)
    log = structlog.wrap_logger(structlog.ReturnLogger(),
                                processors=[structlog.processors.JSONRenderer(), processor])
    caplog.set_level(logging.WARNING, logger=WARNINGS)
    line = log.info("alice signed in", audit_event="authentication.login.succeeded",
                    audit_attributes={"user.id": SECRET})
    assert json.loads(line)["audit_event"] == "authentication.login.succeeded"
    assert json.loads(log.info("ordinary")) == {"event": "ordinary"}
    assert processor.rejected == 1
    (warning,) = [r for r in caplog.records if r.name == WARNINGS]
    assert "put it before the renderer" in warning.getMessage() and SECRET not in warning.getMessage()
