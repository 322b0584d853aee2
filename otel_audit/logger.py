"""`AuditLogger`: emit catalog events as OTel log records through any `LoggerProvider`.

The logger checks every call against the catalog at the call site, so a mistake fails in the code
that made it rather than later in a processor or a SIEM, and what the signing processor signs is
exactly what the caller passed:

* the event: a catalog name (`UnknownEventError`), not one of the signing processor's own;
* the attributes: a mapping with non-empty str keys, none reserved for the signing processor or
  set from the catalog; every required one present (`MissingAttributeError`); every value an
  OTel AnyValue the canonical form can sign (`AttributeTypeError`, `AttributeValueError`: no lone
  surrogate in a string or key, no int outside int64, no empty key in a nested mapping, which
  the SDK would drop); every attribute the catalog types of its catalog type (``user.id`` a str,
  ``audit.risk.score`` a number in [0, 1]; bool is not a number);
* bounds, so that a hostile call costs bounded work: containers nested at most `MAX_DEPTH` deep
  (what the canonical form and the strict decoder accept), at most `MAX_VALUES` values in all;
* outcome, severity and timestamp (`EmitValueError` / `EmitTypeError`).

Every exception a caller can see from `AuditLogger` on a bad argument is an
`otel_audit.errors.EmitError`, and a `TypeError` or `ValueError` as before. Messages name the
event, the key or argument, what was expected and what was given, never an attribute's value.

**Attribute limits.** The OTel SDK bounds a record's attributes (128 by default;
``OTEL_ATTRIBUTE_COUNT_LIMIT``, ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``,
``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``, ``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT``, or
``LoggerProvider(log_record_limits=...)``) by silently dropping the oldest attributes and
truncating strings, after our checks and before the signing processor, which would then sign
what is left. Records of `AuditLogger` are exempt from those limits: through an SDK `Logger` it
hands the SDK a record with no attribute limits, so every attribute arrives whole, including
what the redaction processor adds or lengthens (``audit.redaction.*``, pseudonyms longer than
the value they replace) and what the signing processor adds (``audit.integrity.*``,
``audit.stream.*``). Refusing at the call site instead could not be exact: what redaction adds
depends on what it finds, and an audit call must not fail because of a limit set for traces.
The bounds above take the limits' place. With a Logs SDK other than OpenTelemetry's, that SDK's
own rules apply.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from opentelemetry._logs import Logger, LoggerProvider, SeverityNumber, get_logger_provider
from opentelemetry._logs import LogRecord as _APILogRecord
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.util.types import AnyValue

from otel_audit import _sdk_compat, canonical, catalog, instrument
from otel_audit.catalog import AttributeType, EventSpec
from otel_audit.errors import (
    AttributeTypeError,
    AttributeValueError,
    EmitTypeError,
    EmitValueError,
    MissingAttributeError,
)
from otel_audit.safe import describe_key

__all__ = ["MAX_DEPTH", "MAX_JSON_DEPTH", "MAX_VALUES", "AttrValue", "AuditLogger", "RESERVED_PREFIXES"]

#: An attribute value: str, bool, int, float, bytes, or sequences / mappings of those (None inside
#: a container is the empty value; a top-level None means "absent").
AttrValue = AnyValue

#: Attribute prefixes owned by the signing processor; callers may not set them.
RESERVED_PREFIXES: tuple[str, ...] = ("audit.integrity.", "audit.stream.")

#: Containers (lists, mappings) nested in one attribute value or body, at most: the canonical
#: form (otel_audit.canonical.MAX_DEPTH counts from 0) and the strict decoder accept no more.
MAX_DEPTH = canonical.MAX_DEPTH + 1
#: Values (scalars and containers, each attribute counted) in one call's attributes and body.
MAX_VALUES = 10_000
#: Containers nested in ``before``/``after`` of `AuditLogger.config_changed`, at most: the
#: redaction processor redacts JSON text by structure only up to this depth (deeper text it only
#: scans by pattern, so a sensitive key's value deeper down would not be replaced).
MAX_JSON_DEPTH = 64
#: OTLP's time_unix_nano is a fixed64.
_UINT64_MAX = 2**64 - 1
_INT53 = 2**53

# Set from the catalog and the call's arguments, never from the attributes mapping.
_MANAGED = {"audit.category": "the catalog", "audit.action": "the catalog", "audit.outcome": "outcome="}
_SYSTEM_EVENTS = frozenset({"audit.checkpoint", "audit.spool.backlog_dropped"})
_SCALARS = (str, bool, int, float, bytes)
_TYPES = catalog.ATTRIBUTE_TYPES
# A record handed to the SDK with these limits keeps every attribute and every string whole.
_NO_LIMITS = _sdk_compat.unlimited_limits()


def _version() -> str | None:
    try:
        return metadata.version("otel-audit")
    except metadata.PackageNotFoundError:
        return None


class AuditLogger:
    """Emit catalog audit events as OTel log records.

    ``actor`` gives default actor attributes for every event, as short keys (``id``,
    ``type``, ``name``) or full ``audit.actor.*`` names; attributes of a call override them.
    ``name`` is the instrumentation scope name. Bad arguments raise `EmitTypeError` /
    `EmitValueError` (or, for an actor value, `AttributeTypeError` / `AttributeValueError`).
    Without ``logger_provider`` it writes through the global provider, and where audit settings ask
    for the signed pipeline but that provider is not one, it raises `ConfigError` (here or at the
    first emit) or warns that its events are not signed (`otel_audit.instrument.check_provider`).
    """

    def __init__(
        self,
        logger_provider: LoggerProvider | None = None,
        *,
        name: str = "otel_audit",
        actor: Mapping[str, object] | None = None,
    ) -> None:
        provider = logger_provider if logger_provider is not None else get_logger_provider()
        if not callable(getattr(provider, "get_logger", None)):
            raise EmitTypeError(
                f"AuditLogger(logger_provider=...) takes an OTel LoggerProvider, got {type(provider).__name__}"
            )
        if not isinstance(name, str):
            raise EmitTypeError(f"AuditLogger(name=...) must be a str (the scope name), got {type(name).__name__}")
        if not name or _surrogate_at(name) is not None:
            raise EmitValueError(
                "AuditLogger(name=...) must be a non-empty str without lone surrogates (the scope name)"
            )
        if actor is not None and not isinstance(actor, Mapping):
            raise EmitTypeError(
                f"AuditLogger(actor=...) must be a mapping such as {{'id': 'admin-7'}}, got {type(actor).__name__}"
            )
        self._defaults: dict[str, AnyValue] = _actor_attributes(actor or {})
        self._logger: Logger = provider.get_logger(name, _version())
        # Is it an audit pipeline? Refused or warned about where audit settings ask for one (otel_audit.instrument);
        # the global proxy is looked at again at the first emit.
        self._recheck = instrument.check_provider(provider, self._logger, implicit=logger_provider is None)

    # --- the generic call --------------------------------------------------------------

    def emit(
        self,
        event_name: str,
        attributes: Mapping[str, AttrValue] | None = None,
        *,
        body: AttrValue | None = None,
        outcome: str | None = None,
        timestamp_ns: int | None = None,
        severity: str | None = None,
    ) -> None:
        """Validate ``event_name`` and ``attributes`` against the catalog and emit one record.

        Raises (all `otel_audit.errors.EmitError`, nothing emitted): `UnknownEventError`;
        `MissingAttributeError`; `AttributeTypeError` (a ``TypeError``: a value that is no OTel
        AnyValue or not its catalog type, a non-str key); `AttributeValueError` (a ``ValueError``:
        a value the signed record could not carry as given, see the module docstring);
        `EmitTypeError` (attributes not a mapping, severity not a str); `EmitValueError` (a
        reserved or catalog-managed key, a system event, a bad outcome, severity or timestamp).
        A ``DeliveryError`` from the pipeline (fail-closed delivery, a shut-down pipeline) passes
        through. The record is exempt from the SDK's attribute limits (module docstring).
        """
        spec = catalog.get(event_name)
        if spec.name in _SYSTEM_EVENTS:
            raise EmitValueError(f"{spec.name!r} is emitted by the signing processor, not through AuditLogger")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise EmitTypeError(
                f"{spec.name}: attributes must be a mapping of str keys to values (a dict), "
                f"got {type(attributes).__name__}; for a list of (key, value) pairs pass dict(pairs)"
            )
        budget = _Budget(spec.name)
        attrs = dict(self._defaults)
        if attributes:
            attrs.update(_clean_attributes(spec, attributes, budget))
        _check_required(spec, attrs)
        audit_outcome = _outcome(spec, outcome)
        attrs["audit.category"] = spec.category
        attrs["audit.action"] = spec.cadf_action
        attrs["audit.outcome"] = audit_outcome
        if body is not None:
            body = _clean_value(spec.name, "the body", body, budget)
        if timestamp_ns is not None and (
            isinstance(timestamp_ns, bool)
            or not isinstance(timestamp_ns, int)
            or not 0 <= timestamp_ns <= _UINT64_MAX
        ):
            raise EmitValueError(
                f"{spec.name}: timestamp_ns must be an int of ns since the epoch, 0 .. 2**64-1 "
                f"(OTLP's fixed64), got {_describe(timestamp_ns)}"
            )
        severity_text, severity_number = _severity(spec, audit_outcome, severity)
        self._send(
            spec.name,
            spec.description if body is None else body,
            attrs,
            severity_number,
            severity_text,
            time.time_ns() if timestamp_ns is None else int(timestamp_ns),
        )

    def _send(
        self,
        event_name: str,
        body: AnyValue,
        attrs: dict[str, AnyValue],
        severity_number: SeverityNumber,
        severity_text: str,
        timestamp: int,
    ) -> None:
        if self._recheck:
            self._recheck = instrument.check_provider(get_logger_provider(), None, implicit=True, at_emit=True)
        # An SDK Logger (perhaps behind the global proxy) gets a record without attribute limits,
        # so that none of them is dropped or truncated before it is signed (module docstring).
        target = _sdk_compat.sdk_logger(self._logger)  # perhaps the one behind the API's proxy, right now
        if target is not None:
            record = ReadWriteLogRecord(
                log_record=_APILogRecord(
                    timestamp=timestamp,
                    severity_text=severity_text,
                    severity_number=severity_number,
                    body=body,
                    attributes=attrs,
                    event_name=event_name,
                ),
                resource=target.resource,
                instrumentation_scope=_sdk_compat.logger_scope(target),
                limits=_NO_LIMITS,
            )
            if record.dropped_attributes:  # cannot happen after the checks above: say so if it does
                raise AttributeValueError(
                    f"{event_name}: the OTel SDK dropped {record.dropped_attributes} attribute(s) of this "
                    "record; it was not emitted"
                )
            # (the SDK's Logger.emit takes a ReadWriteLogRecord as it is, though annotated with LogRecord)
            target.emit(record)  # type: ignore[arg-type]
            return
        self._logger.emit(
            event_name=event_name,
            body=body,
            attributes=attrs,
            severity_number=severity_number,
            severity_text=severity_text,
            timestamp=timestamp,
        )

    # --- typed helpers for the common events ---------------------------------------------

    def login_succeeded(
        self,
        user_id: str,
        *,
        client_address: str | None = None,
        session_id: str | None = None,
        method: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authentication.login.succeeded``; ``method`` is e.g. ``password``, ``sso``."""
        self._helper(
            "authentication.login.succeeded",
            attributes,
            {
                "user.id": user_id,
                "client.address": client_address,
                "session.id": session_id,
                "audit.auth.method": method,
            },
        )

    def login_failed(
        self,
        user_id: str,
        *,
        reason: str,
        client_address: str | None = None,
        method: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authentication.login.failed`` with the reason (never the submitted secret)."""
        self._helper(
            "authentication.login.failed",
            attributes,
            {
                "user.id": user_id,
                "audit.reason": reason,
                "client.address": client_address,
                "audit.auth.method": method,
            },
        )

    def logout(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        client_address: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authentication.logout.succeeded``."""
        self._helper(
            "authentication.logout.succeeded",
            attributes,
            {"user.id": user_id, "session.id": session_id, "client.address": client_address},
        )

    def permission_denied(
        self,
        actor: str,
        resource: str,
        action: str,
        reason: str,
        *,
        resource_type: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authorization.permission.denied``: ``actor`` may not do ``action`` on ``resource``."""
        self._helper(
            "authorization.permission.denied",
            attributes,
            {
                "audit.actor.id": actor,
                "audit.target.id": resource,
                "audit.requested_action": action,
                "audit.reason": reason,
                "audit.target.type": resource_type,
            },
        )

    def virtual_key_used(
        self,
        key_id: str,
        *,
        model: str,
        provider: str,
        user_id: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authorization.virtual_key.used`` for a request made with virtual key ``key_id``."""
        self._helper(
            "authorization.virtual_key.used",
            attributes,
            {
                "audit.virtual_key.id": key_id,
                "gen_ai.request.model": model,
                "gen_ai.provider.name": provider,
                "user.id": user_id,
            },
        )

    def config_changed(
        self,
        event_name: str,
        target_id: str,
        before: Mapping[str, object] | None,
        after: Mapping[str, object] | None,
        actor: str | None = None,
        *,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit a ``configuration.*`` event; ``before``/``after`` become JSON text with sorted keys.

        Pass None for a side that does not exist (``before`` of a creation, ``after`` of a
        deletion). ``actor`` defaults to the logger's actor. A redaction processor in the
        pipeline redacts this JSON text field by field (sensitive keys at any depth).
        """
        spec = catalog.get(event_name)
        if spec.category != "configuration":
            raise EmitValueError(
                f"config_changed() takes a configuration.* event, got {event_name!r}; use emit() for it"
            )
        self._helper(
            spec.name,
            attributes,
            {
                "audit.target.id": target_id,
                "audit.target.type": spec.name.split(".")[1],
                "audit.change.before": _json_text(spec.name, "before", before),
                "audit.change.after": _json_text(spec.name, "after", after),
                "audit.actor.id": actor,
            },
        )

    def prompt_injection(
        self,
        user_id: str,
        *,
        score: float,
        model: str | None = None,
        snippet: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``security.prompt_injection.detected`` with the detector's risk ``score`` (0..1)."""
        self._helper(
            "security.prompt_injection.detected",
            attributes,
            {
                "user.id": user_id,
                "audit.risk.score": score,
                "gen_ai.request.model": model,
                "audit.prompt.snippet": snippet,
            },
        )

    def rate_limit_exceeded(
        self,
        limit: int,
        *,
        metric: str | None = None,
        window_seconds: float | None = None,
        current: int | float | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        client_address: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``authorization.rate_limit.exceeded``; ``metric`` is e.g. ``requests`` or ``tokens``."""
        self._helper(
            "authorization.rate_limit.exceeded",
            attributes,
            {
                "audit.rate_limit.limit": limit,
                "audit.rate_limit.metric": metric,
                "audit.rate_limit.window_seconds": window_seconds,
                "audit.rate_limit.current": current,
                "audit.virtual_key.id": key_id,
                "user.id": user_id,
                "client.address": client_address,
            },
        )

    def rate_limit_violated(self, limit: int, **kwargs: Any) -> None:
        """Deprecated name of `rate_limit_exceeded` (it emits ``authorization.rate_limit.exceeded``,
        not the catalog's ``security.rate_limit.violated``); kept so existing callers work."""
        warnings.warn(
            "AuditLogger.rate_limit_violated() is renamed rate_limit_exceeded(), after the event it emits "
            "(authorization.rate_limit.exceeded)", DeprecationWarning, stacklevel=2,
        )
        self.rate_limit_exceeded(limit, **kwargs)

    def suspicious_ip(
        self,
        client_address: str,
        reason: str,
        *,
        score: float | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> None:
        """Emit ``security.suspicious_ip.detected`` for ``client_address``."""
        self._helper(
            "security.suspicious_ip.detected",
            attributes,
            {"client.address": client_address, "audit.reason": reason, "audit.risk.score": score},
        )

    def _helper(
        self,
        event_name: str,
        extra: Mapping[str, AttrValue] | None,
        named: Mapping[str, AttrValue],
    ) -> None:
        # Explicit parameters win over the free-form mapping; None means "not given".
        if extra is not None and not isinstance(extra, Mapping):
            raise EmitTypeError(
                f"{event_name}: attributes must be a mapping of str keys to values (a dict), "
                f"got {type(extra).__name__}"
            )
        merged = dict(extra or {})
        merged.update({k: v for k, v in named.items() if v is not None})
        self.emit(event_name, merged)


# --- validation ------------------------------------------------------------------------


class _Budget:
    """The values one call may still hold (MAX_VALUES), and the event it is for."""

    __slots__ = ("event", "left")

    def __init__(self, event: str, left: int = MAX_VALUES) -> None:
        self.event = event
        self.left = left

    def take(self, where: str, path: str = "") -> None:
        self.left -= 1
        if self.left < 0:
            raise AttributeValueError(
                f"{self.event}: more than {MAX_VALUES} values in this call (at {_at(where, path)}); an audit record "
                "is no place for bulk data: record a count or a reference instead"
            )


def _actor_attributes(actor: Mapping[str, object]) -> dict[str, AnyValue]:
    out: dict[str, AnyValue] = {}
    budget = _Budget("AuditLogger(actor=...)")
    for key, value in actor.items():
        if not isinstance(key, str) or not key or ("." in key and not key.startswith("audit.actor.")):
            raise EmitValueError(
                f"actor key {_safe_repr(key)} must be a short name (id, type, name) or audit.actor.*"
            )
        full = key if key.startswith("audit.actor.") else f"audit.actor.{key}"
        _check_key("AuditLogger(actor=...)", full)
        if value is None:
            continue
        out[full] = _clean_attribute("AuditLogger(actor=...)", full, value, budget)
    return out


def _clean_attributes(spec: EventSpec, attributes: Mapping[Any, object], budget: _Budget) -> dict[str, AnyValue]:
    out: dict[str, AnyValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise AttributeTypeError(
                f"{spec.name}: attribute keys must be non-empty str, got {type(key).__name__} {_safe_repr(key)}"
            )
        if not key:
            raise AttributeValueError(f"{spec.name}: attribute keys must be non-empty str, got ''")
        if key.startswith(RESERVED_PREFIXES):
            raise EmitValueError(
                f"{spec.name}: attribute {key!r} is reserved for the signing processor "
                f"({', '.join(p + '*' for p in RESERVED_PREFIXES)}); remove it"
            )
        if key in _MANAGED:
            raise EmitValueError(f"{spec.name}: attribute {key!r} is set by {_MANAGED[key]}, not in attributes")
        _check_key(spec.name, key)
        if value is None:  # None means "absent", which lets callers pass optional values through
            continue
        out[key] = _clean_attribute(spec.name, key, value, budget)
    return out


def _clean_attribute(event: str, key: str, value: object, budget: _Budget) -> AnyValue:
    """``value`` as the record carries it, checked against the key's catalog type if it has one."""
    t = type(value)  # the type ignores below: mypy does not narrow `value` through `t`
    if t is str or t is bool or t is float:  # the common case, checked without the walk
        budget.take(_attr(key))
        if t is str and not value.isascii():  # type: ignore[attr-defined]
            _check_text(event, _attr(key), value)  # type: ignore[arg-type]
        clean: AnyValue = value  # type: ignore[assignment]
    else:
        clean = _clean_value(event, _attr(key), value, budget)
    spec_type = _TYPES.get(key)
    return clean if spec_type is None else _typed(event, key, spec_type, clean)


def _attr(key: str) -> str:
    return f"attribute {key[:200]!r}"


def _at(where: str, path: str) -> str:
    return f"{where} at {path[:200]!r}" if path else where


def _clean_value(event: str, where: str, value: object, budget: _Budget, path: str = "", depth: int = 0) -> AnyValue:
    """Walk ``value`` (``where`` says what it is, ``path`` where inside it we are): raise for what
    the signed record could not carry as given, else return it as the record will carry it
    (bytearray and memoryview as bytes; containers as new lists and dicts, so that a later change
    by the caller does not change the record)."""
    budget.take(where, path)
    t = type(value)  # the type ignores below: mypy does not narrow `value` through `t`
    if t is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_text(event, _at(where, path), value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if t is int:
        return _check_int(event, _at(where, path), value)  # type: ignore[arg-type]
    if t is bool or t is float or t is bytes or value is None:
        return value  # type: ignore[return-value]
    if isinstance(value, str):  # a str subclass: its text, as a str
        text = str.__str__(value)
        if not text.isascii():
            _check_text(event, _at(where, path), text)
        return text
    if isinstance(value, int):  # an int subclass (IntEnum ...): its number (bool was handled above)
        return _check_int(event, _at(where, path), int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # The SDK would turn a bytearray or memoryview into a list of ints; the caller meant bytes.
        return bytes(value)
    if isinstance(value, Mapping):
        _check_depth(event, _at(where, path), depth)
        out: dict[str, AnyValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise AttributeTypeError(
                    f"{event}: {_at(where, path)}: mapping keys must be str, got {type(k).__name__}"
                )
            if not k:
                raise AttributeValueError(
                    f"{event}: {_at(where, path)}: a mapping key is empty, and the OTel SDK would drop "
                    "its entry; give it a name"
                )
            if not k.isascii():
                _check_text(event, f"a mapping key in {_at(where, path)}", k)
            out[k] = _clean_value(event, where, v, budget, _join(path, k), depth + 1)
        return out
    if isinstance(value, Sequence):
        _check_depth(event, _at(where, path), depth)
        return [_clean_value(event, where, v, budget, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise AttributeTypeError(
        f"{event}: {_at(where, path)} has unsupported type {type(value).__name__}; use str, bool, int, "
        "float, bytes, or a list / mapping of those"
    )


def _typed(event: str, key: str, spec_type: AttributeType, value: AnyValue) -> AnyValue:
    """Check ``value`` (already cleaned) against the catalog type of ``key``; a double as a float."""
    kind = spec_type.kind
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "string[]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    elif not isinstance(value, bool) and isinstance(value, (int, float)) and (kind == "double" or type(value) is int):
        number: int | float = value
        if kind == "double" and type(value) is int:
            if abs(value) > _INT53:
                raise AttributeValueError(
                    f"{event}: attribute {key!r} is a double (catalog type {spec_type.describe()}); "
                    f"an int this large has no exact double; pass a float"
                )
            number = float(value)
        if isinstance(number, float) and not math.isfinite(number):
            raise AttributeValueError(
                f"{event}: attribute {key!r} must be a finite number (catalog type {spec_type.describe()}), "
                f"got {number!r}"
            )
        lo, hi = spec_type.minimum, spec_type.maximum
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise AttributeValueError(
                f"{event}: attribute {key!r} must be {spec_type.describe()} (catalog type), got {number!r}"
            )
        return number
    raise AttributeTypeError(
        f"{event}: attribute {key!r} must be {_kind_text(kind)} (catalog type {spec_type.describe()}), "
        f"got {_type_text(value)}"
    )


def _kind_text(kind: str) -> str:
    return {
        "string": "a str",
        "int": "an int (not a bool)",
        "double": "a float or an int (not a bool)",
        "boolean": "a bool",
        "string[]": "a list of str",
    }[kind]


def _type_text(value: object) -> str:
    if isinstance(value, list):
        inner = sorted({type(v).__name__ for v in value})
        return f"a list of {', '.join(inner)}" if inner else "an empty list"
    return type(value).__name__


def _check_int(event: str, where: str, value: int) -> int:
    if not canonical.INT64_MIN <= value <= canonical.INT64_MAX:
        raise AttributeValueError(
            f"{event}: {where} is an int of {value.bit_length()} bits, outside int64 "
            "(-2**63 .. 2**63-1), which OTLP cannot carry and the canonical form cannot sign; pass it as a str"
        )
    return value


def _check_depth(event: str, where: str, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise AttributeValueError(
            f"{event}: {where}: containers nest more than {MAX_DEPTH} deep, "
            "which the canonical form cannot sign; flatten the value"
        )


def _check_key(event: str, key: str) -> None:
    if not key.isascii():
        _check_text(event, f"attribute key {key[:200]!r}", key)


def _check_text(event: str, where: str, text: str) -> None:
    at = _surrogate_at(text)
    if at is not None:
        raise AttributeValueError(
            f"{event}: {where} has a lone surrogate (U+{ord(text[at]):04X}) at index {at}, which UTF-8 "
            "cannot encode, so the record could not be signed; fix the text (e.g. decode bytes with "
            "errors='replace')"
        )


def _surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text`` (a code point UTF-8 cannot encode), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _join(path: str, key: str) -> str:
    # A nested key is caller data and may be a secret: describe_key shows it only if it reads
    # like a field name.
    shown = describe_key(key)
    return f"{path}.{shown}" if path else shown


def _safe_repr(value: object) -> str:
    """repr of a small str or number; the type name of anything else (a huge int has no cheap repr)."""
    if isinstance(value, str) and len(value) <= 100:
        return repr(value)
    return _describe(value)


def _describe(value: object) -> str:
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
    return type(value).__name__


def _check_required(spec: EventSpec, attrs: Mapping[str, object]) -> None:
    missing = [k for k in spec.required if attrs.get(k) is None or attrs.get(k) == ""]
    if missing:
        raise MissingAttributeError(
            f"event {spec.name!r} is missing required attribute(s) {', '.join(missing)} "
            f"(required: {', '.join(spec.required)}); pass them in attributes="
        )


def _outcome(spec: EventSpec, outcome: str | None) -> str:
    if outcome is None:
        # CADF "pending" has no ECS equivalent; ECS readers see "unknown".
        return spec.cadf_outcome if spec.cadf_outcome in catalog.OUTCOMES else "unknown"
    if not isinstance(outcome, str) or outcome not in catalog.OUTCOMES:
        raise EmitValueError(
            f"{spec.name}: outcome must be one of {', '.join(catalog.OUTCOMES)}, got {_safe_repr(outcome)}"
        )
    return outcome


def _severity(spec: EventSpec, outcome: str, severity: str | None) -> tuple[str, SeverityNumber]:
    if severity is not None:
        if not isinstance(severity, str):
            raise EmitTypeError(
                f"{spec.name}: severity must be a str, one of {', '.join(catalog.SEVERITIES)}, "
                f"got {type(severity).__name__}"
            )
        name = severity.upper()
        if name not in SeverityNumber.__members__ or name == "UNSPECIFIED":
            raise EmitValueError(
                f"{spec.name}: unknown severity {_safe_repr(severity)}; use one of {', '.join(catalog.SEVERITIES)}"
            )
        return name, SeverityNumber[name]
    name = spec.severity
    if outcome == "failure" and SeverityNumber[name].value < SeverityNumber.WARN.value:
        name = "WARN"  # a failed or denied action is worth a look even when the event usually is not
    return name, SeverityNumber[name]


def _json_text(event: str, side: str, value: Mapping[str, object] | None) -> str | None:
    """``before``/``after`` of config_changed as JSON text with sorted keys, or None.

    Only what JSON writes as it is: str keys; str (no lone surrogate), int (int64), finite float,
    bool, None, lists and mappings, at most MAX_JSON_DEPTH containers deep, MAX_VALUES values.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise EmitTypeError(f"{event}: {side} must be a mapping or None, got {type(value).__name__}")
    plain = _json_plain(event, side, value, _Budget(event), 0)
    return json.dumps(plain, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_plain(event: str, where: str, value: object, budget: _Budget, depth: int) -> object:
    budget.take(where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = str.__str__(value)
        if not text.isascii():
            _check_json_text(event, where, text)
        return text
    if isinstance(value, int):
        if not canonical.INT64_MIN <= value <= canonical.INT64_MAX:
            raise AttributeValueError(
                f"{event}: {where!r} is an int of {value.bit_length()} bits, outside int64; pass it as a str"
            )
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AttributeValueError(
                f"{event}: {where[:200]!r} is {float(value)!r}, which JSON cannot write; pass a finite number "
                "or a str"
            )
        return float(value)
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_JSON_DEPTH:
            raise AttributeValueError(
                f"{event}: {where[:200]!r}: containers nest more than {MAX_JSON_DEPTH} deep, deeper than the "
                "redaction processor redacts JSON by structure; flatten the value"
            )
        if isinstance(value, Mapping):
            out: dict[str, object] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise EmitTypeError(
                        f"{event}: {where[:200]!r}: JSON object keys must be str, got {type(k).__name__}"
                    )
                if not k.isascii():
                    _check_json_text(event, f"a key in {where[:200]!r}", k)
                out[str.__str__(k)] = _json_plain(event, _join(where, k), v, budget, depth + 1)
            return out
        return [_json_plain(event, f"{where}[{i}]", v, budget, depth + 1) for i, v in enumerate(value)]
    raise EmitTypeError(
        f"{event}: {where[:200]!r} cannot be written as JSON: {type(value).__name__} is not a str, int, "
        "float, bool, None, list or mapping"
    )


def _check_json_text(event: str, where: str, text: str) -> None:
    at = _surrogate_at(text)
    if at is not None:
        raise AttributeValueError(
            f"{event}: {where[:200]!r} has a lone surrogate (U+{ord(text[at]):04X}) at index {at}, which "
            "UTF-8 cannot encode; fix the text"
        )
