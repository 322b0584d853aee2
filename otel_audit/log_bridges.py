"""Bridges from stdlib `logging` and from structlog into `AuditLogger`, so that a service that
already logs through them can emit catalog events that are checked, redacted and signed.

Both bridges only route: every audit record goes through `AuditLogger.emit`, so it meets the
same catalog checks, and then the same pipeline (redaction, signing, spool), as a direct call.
Log records that name no audit event are not theirs and pass untouched.

**The contract** (the same keys for both):

* ``audit_event``: the catalog event name (``otel-audit catalog`` lists them). Required: a
  record without it is ignored by the bridge.
* ``audit_attributes``: a mapping of the event's attributes (``{"user.id": "alice"}``). Only
  these become attributes of the audit record: the rest of the log record (structlog's bound
  context, stdlib's other ``extra`` keys) does not, so nothing reaches the signed record that
  the caller did not name.
* ``audit_outcome`` (``success`` / ``failure`` / ``unknown``) and ``audit_severity`` (``INFO``,
  ``WARN`` ...), optional; without them the catalog decides, as for `AuditLogger.emit`. The
  logging level decides only whether the record reaches the bridge (logger and handler levels);
  the severity the audit record carries is the catalog's unless ``audit_severity`` says otherwise.
* the body is the log message (``record.getMessage()``; structlog's ``event``), the timestamp
  the time of the logging call.

With stdlib logging the keys are ``extra=`` of the call::

    log.info("alice signed in", extra={"audit_event": "authentication.login.succeeded",
                                       "audit_attributes": {"user.id": "alice"}})

`AuditHandler(logger_prefix="audit.")` also takes the event from the logger name:
``logging.getLogger("audit.authentication.login.succeeded").info(...)`` (``audit_event`` in
``extra`` wins). The prefix is off by default, so that an existing logger that happens to be
named ``audit.something`` is not mistaken for a catalog event.

With structlog, the keys are keyword arguments of the call, and `AuditProcessor` goes in the
processor chain before the renderer::

    structlog.configure(processors=[..., otel_audit.AuditProcessor(audit.logger), ...renderer])
    log.info("alice signed in", audit_event="authentication.login.succeeded",
             audit_attributes={"user.id": "alice"})

The processor then removes ``audit_attributes``, ``audit_outcome`` and ``audit_severity`` from
the event dict it passes on (the renderer would print attribute values unredacted, and they may
be secrets), keeping ``audit_event`` and adding ``audit_emitted=True``; with ``drop=True`` it
drops an emitted event instead (structlog's ``DropEvent``), so only the audit pipeline sees it.

**Both bridges in one service** (structlog over stdlib with ``render_to_log_kwargs``, an
`AuditHandler` on the stdlib side for the service's stdlib audit calls): the event dict arrives
at the handler as ``extra``. A record carrying ``audit_emitted`` or ``audit_error`` was handled
by the structlog processor already, so the handler neither emits it a second time nor reports it.

**A refused call is reported, counted and never raised.** A logging call must not fail because
of its handler, so neither bridge raises: when `AuditLogger.emit` refuses the event (an
`EmitError`: unknown event, missing or mistyped attribute ...) or the pipeline cannot take it (a
`DeliveryError`, fail-closed delivery or a shut-down pipeline), or the event is lost on the way (a
stdlib message that cannot be formatted with its arguments; a structlog event already rendered to
a str by a renderer placed before the processor), the bridge

1. adds one to its ``rejected`` counter,
2. logs a WARNING on the ``otel_audit.log_bridges`` logger naming the event, where the logging
   call was, and what was wrong (the `EmitError` message, which never holds an attribute value),
   and never the attributes or the message,
3. and, for the stdlib handler, calls `logging.Handler.handleError` as every handler does on a
   failure (a report on stderr while ``logging.raiseExceptions`` is true, the default). Its report
   is the stdlib one without what could hold a secret: the traceback and the call stack without
   their source lines (a line such as ``log.warning("token sk-...")`` would repeat a literal), the
   error's message only for an `AuditError` (scrubbed; other errors by class), the logger, call
   site and event, and never the record's message or arguments (stdlib prints both verbatim). The
   structlog processor passes the event dict on (never dropped, even with ``drop=True``), with
   ``audit_error`` naming the error class, so the service's own log shows it too.

A service that must stop when an audit record cannot be written (fail-closed) should call
`AuditLogger` directly: only a direct call can raise `DeliveryError` into the code that acts.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import FrameType, TracebackType
from typing import Any

from opentelemetry._logs import LoggerProvider

from otel_audit.errors import AuditError, EmitTypeError
from otel_audit.logger import AttrValue, AuditLogger
from otel_audit.safe import describe_key, scrub

__all__ = ["AUDIT_KEYS", "AuditHandler", "AuditProcessor"]

#: The keys of the contract (module docstring), in a stdlib ``extra`` or a structlog event dict.
EVENT_KEY = "audit_event"
ATTRIBUTES_KEY = "audit_attributes"
OUTCOME_KEY = "audit_outcome"
SEVERITY_KEY = "audit_severity"
AUDIT_KEYS = (EVENT_KEY, ATTRIBUTES_KEY, OUTCOME_KEY, SEVERITY_KEY)
#: What the structlog processor adds to the event dict it passes on: the event was emitted, or the error class
#: of its refusal. An `AuditHandler` skips a record carrying either (the event was handled already).
EMITTED_KEY = "audit_emitted"
ERROR_KEY = "audit_error"

_log = logging.getLogger(__name__)


def _audit_logger(audit_logger: AuditLogger | None, logger_provider: LoggerProvider | None, who: str) -> AuditLogger:
    if audit_logger is not None and logger_provider is not None:
        raise EmitTypeError(f"{who}: pass audit_logger= or logger_provider=, not both")
    if audit_logger is None:
        return AuditLogger(logger_provider)
    if not isinstance(audit_logger, AuditLogger):
        hint = " (an AuditPipeline: pass its .logger)" if isinstance(getattr(audit_logger, "logger", None),
                                                                     AuditLogger) else ""
        raise EmitTypeError(
            f"{who}(audit_logger=...) takes an otel_audit.AuditLogger, got {type(audit_logger).__name__}{hint}"
        )
    return audit_logger


def _shown_event(event: object) -> str:
    """The event name as a warning may show it: a str that reads like a name, else its shape."""
    if isinstance(event, str):
        return describe_key(event[:200]) if event else "''"
    return f"<{type(event).__name__}>"


class _Router:
    """What both bridges share: emit through the AuditLogger, count and report what it refused."""

    def __init__(self, audit_logger: AuditLogger, kind: str) -> None:
        self.audit_logger = audit_logger
        self._kind = kind
        self._lock = threading.Lock()
        self.rejected = 0

    def route(
        self,
        source: Mapping[str, Any],
        body: AttrValue | None,  # as given; AuditLogger.emit refuses a value that is no AnyValue
        timestamp_ns: int | None,
        where: str,
        on_error: Callable[[], None] | None = None,
    ) -> Exception | None:
        """Emit the event ``source`` names; on a refusal count, warn, call ``on_error`` while the
        error is being handled (as `logging.Handler.handleError` needs), and return the error."""
        event = source.get(EVENT_KEY)
        try:
            if not isinstance(event, str):
                raise EmitTypeError(f"{EVENT_KEY} must be a str, a catalog event name, got {type(event).__name__}")
            self.audit_logger.emit(
                event,
                source.get(ATTRIBUTES_KEY),
                body=body,
                outcome=source.get(OUTCOME_KEY),
                severity=source.get(SEVERITY_KEY),
                timestamp_ns=timestamp_ns,
            )
        except Exception as exc:  # a logging call must not fail because of its handler
            # EmitError: refused; DeliveryError: the pipeline could not take it; anything else: a
            # fault in the pipeline, whose message could quote record content, so only its class.
            detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, AuditError) else type(exc).__name__
            self.report(_shown_event(event), where, detail, on_error)
            return exc
        return None

    def report(self, event: str, where: str, detail: str, on_error: Callable[[], None] | None = None) -> None:
        """Count one audit event that was not emitted, warn naming it (``event``, as `_shown_event` shows it), the
        call site and ``detail``, and call ``on_error`` (while the error, if any, is being handled)."""
        with self._lock:
            self.rejected += 1
            count = self.rejected
        # Never the attributes or the message: they may hold secrets. EmitError messages are
        # written not to quote values (and scrubbed); a DeliveryError's names no record content.
        _log.warning(
            "otel-audit %s: audit event %s from %s was not emitted (%s so far): %s",
            self._kind, event, where, count, detail,
        )
        if on_error is not None:
            on_error()


class AuditHandler(logging.Handler):
    """A `logging.Handler` that emits the log records naming a catalog event through `AuditLogger`.

    ``audit_logger`` is the `AuditLogger` to emit through (``otel_audit.configure(...).logger``);
    without it, a new `AuditLogger` over ``logger_provider`` (the global provider if None).
    ``logger_prefix`` (e.g. ``"audit."``) also takes the event from the logger name. Records
    naming no event are ignored; refused ones are counted in ``rejected`` and reported (module
    docstring), never raised.
    """

    def __init__(
        self,
        audit_logger: AuditLogger | None = None,
        *,
        logger_provider: LoggerProvider | None = None,
        logger_prefix: str | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        if logger_prefix is not None and (not isinstance(logger_prefix, str) or not logger_prefix):
            raise EmitTypeError(
                f"AuditHandler(logger_prefix=...) must be a non-empty str such as 'audit.', or None, "
                f"got {type(logger_prefix).__name__}"
            )
        super().__init__(level)
        self._router = _Router(_audit_logger(audit_logger, logger_provider, "AuditHandler"), "logging handler")
        self.logger_prefix = logger_prefix

    @property
    def audit_logger(self) -> AuditLogger:
        return self._router.audit_logger

    @property
    def rejected(self) -> int:
        """Audit records this handler could not emit (each one reported by a warning)."""
        return self._router.rejected

    def _source(self, record: logging.LogRecord) -> Mapping[str, Any] | None:
        fields = record.__dict__
        if EMITTED_KEY in fields or ERROR_KEY in fields:
            return None  # the structlog processor emitted (or reported) it on its way here
        if EVENT_KEY in fields:
            return fields
        prefix = self.logger_prefix
        if prefix is not None and record.name.startswith(prefix) and len(record.name) > len(prefix):
            return {**{k: fields[k] for k in AUDIT_KEYS if k in fields}, EVENT_KEY: record.name[len(prefix):]}
        return None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            source = self._source(record)
            if source is None:
                return
            created_ns = getattr(record, "created_ns", None)  # Python 3.13+; exact, unlike created
            timestamp_ns = created_ns if isinstance(created_ns, int) else int(record.created * 1e9)
            where = f"logger {record.name!r} at {record.pathname}:{record.lineno}"
            try:
                body = record.getMessage()
            except Exception as exc:  # a %-format mistake in the call: the event is lost, so it is counted
                detail = f"its log message cannot be formatted with its arguments ({type(exc).__name__})"
                event = _shown_event(source.get(EVENT_KEY))
                self._router.report(event, where, detail, lambda: self.handleError(record))
                return
            self._router.route(source, body, timestamp_ns, where, lambda: self.handleError(record))
        except Exception:  # a handler must not raise into the logging call
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """`logging.Handler.handleError` (a report on stderr while ``logging.raiseExceptions`` is true, else
        nothing) without what could hold a secret: no message or arguments of the record (stdlib prints both
        verbatim), no source lines in the traceback or the call stack (the logging call's line may hold a
        literal credential), the error's message only for an `AuditError` (whose messages never quote a
        value), and the whole report through `otel_audit.safe.scrub`."""
        if not (logging.raiseExceptions and sys.stderr):
            return
        t, v, tb = sys.exc_info()
        try:
            sys.stderr.write(_refusal_report(record, v, tb))
        except OSError:  # stderr gone, as stdlib ignores it
            pass
        finally:
            del t, v, tb


class AuditProcessor:
    """A structlog processor that emits the event dicts naming a catalog event through `AuditLogger`.

    ``audit_logger`` and ``logger_provider`` as for `AuditHandler`. An emitted event dict goes on
    without ``audit_attributes``, ``audit_outcome`` and ``audit_severity`` (their values could be
    secrets the renderer would print), or with ``drop=True`` is dropped (``structlog.DropEvent``).
    Refused ones are counted in ``rejected``, reported, and passed on with ``audit_error``.
    structlog itself is needed only for ``drop=True``.
    """

    def __init__(
        self,
        audit_logger: AuditLogger | None = None,
        *,
        logger_provider: LoggerProvider | None = None,
        drop: bool = False,
    ) -> None:
        if not isinstance(drop, bool):
            raise EmitTypeError(f"AuditProcessor(drop=...) must be a bool, got {type(drop).__name__}")
        self._router = _Router(_audit_logger(audit_logger, logger_provider, "AuditProcessor"), "structlog processor")
        self.drop = drop
        if drop:
            _drop_event()  # fail at configuration, not at the first event, when structlog is missing

    @property
    def audit_logger(self) -> AuditLogger:
        return self._router.audit_logger

    @property
    def rejected(self) -> int:
        """Audit events this processor could not emit (each one reported by a warning)."""
        return self._router.rejected

    def __call__(self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not isinstance(event_dict, MutableMapping):
            # A renderer before this processor made the event a str (or bytes): nothing to emit from. One that
            # names an audit event is counted and reported, as a refusal is; every other line passes untouched.
            if isinstance(event_dict, (str, bytes, bytearray)) and (
                    EVENT_KEY in event_dict if isinstance(event_dict, str) else EVENT_KEY.encode() in event_dict):
                self._router.report(
                    "(in a rendered line)", f"structlog {method_name}()",
                    f"AuditProcessor received a rendered {type(event_dict).__name__}, not an event dict: put it "
                    "before the renderer in structlog's processors")
            return event_dict
        if EVENT_KEY not in event_dict:
            return event_dict
        name = event_dict.get("logger")
        where = f"structlog {method_name}()" + (f" of logger {_shown_event(name)}" if name is not None else "")
        error = self._router.route(event_dict, event_dict.get("event"), None, where)
        for key in (ATTRIBUTES_KEY, OUTCOME_KEY, SEVERITY_KEY):
            event_dict.pop(key, None)
        if error is not None:
            event_dict[ERROR_KEY] = type(error).__name__
            return event_dict
        if self.drop:
            raise _drop_event()
        event_dict[EMITTED_KEY] = True  # an AuditHandler downstream (render_to_log_kwargs) must not emit it again
        return event_dict


def _frames(summary: Iterable[traceback.FrameSummary]) -> str:
    """Frames as a traceback shows them, without their source lines."""
    return "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in summary)


def _refusal_report(record: logging.LogRecord, error: BaseException | None, tb: TracebackType | None) -> str:
    """`AuditHandler.handleError`'s report: stdlib's shape, without the record's message, arguments or source."""
    out = ["--- Logging error ---\n"]
    if error is not None:
        out.append("Traceback (most recent call last):\n")
        out.append(_frames(traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False)))
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        # An AuditError's message names the event, key and types, never a value; any other error's could quote
        # the record (a failing __str__ of an argument, a fault in the pipeline): its class only, as the warning.
        out.append(f"{name}: {error}\n" if isinstance(error, AuditError) else
                   f"{name} (its message is not shown: it may quote the record)\n")
    frame: FrameType | None = tb.tb_frame if tb is not None else None
    if frame is not None:
        out.append("Call stack:\n")
        stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
        stack.reverse()
        out.append(_frames(stack))
    fields = record.__dict__
    event = _shown_event(fields[EVENT_KEY]) if EVENT_KEY in fields else "from the logger name"
    out.append(f"Logged from logger {record.name!r} at {record.pathname}:{record.lineno}, audit event "
               f"{event}; its message and arguments are not shown (they may hold secrets)\n")
    return scrub("".join(out))


def _drop_event() -> BaseException:
    try:
        from structlog import DropEvent
    except ImportError:
        raise ImportError("AuditProcessor(drop=True) needs structlog installed (pip install structlog)") from None
    return DropEvent()
