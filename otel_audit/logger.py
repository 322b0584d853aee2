"""`AuditLogger`: emit catalog events as OTel log records through any `LoggerProvider`.

The logger checks every call against the catalog at the call site (unknown name, missing
required attribute, unsupported value type, reserved key), so a mistake fails in the code
that made it rather than later in a processor or a SIEM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from importlib import metadata

from opentelemetry._logs import Logger, LoggerProvider, SeverityNumber, get_logger_provider
from opentelemetry.util.types import AnyValue

from otel_audit import catalog
from otel_audit.catalog import EventSpec
from otel_audit.errors import MissingAttributeError

__all__ = ["AttrValue", "AuditLogger", "RESERVED_PREFIXES"]

#: An attribute value: str, bool, int, float, bytes, or sequences / mappings of those.
AttrValue = AnyValue

#: Attribute prefixes owned by the signing processor; callers may not set them.
RESERVED_PREFIXES: tuple[str, ...] = ("audit.integrity.", "audit.stream.")

# Set from the catalog and the call's arguments, never from the attributes mapping.
_MANAGED = {"audit.category": "the catalog", "audit.action": "the catalog", "audit.outcome": "outcome="}
_SYSTEM_EVENTS = frozenset({"audit.checkpoint", "audit.spool.backlog_dropped"})
_PRIMITIVES = (str, bool, int, float, bytes)


def _version() -> str | None:
    try:
        return metadata.version("otel-audit")
    except metadata.PackageNotFoundError:
        return None


class AuditLogger:
    """Emit catalog audit events as OTel log records.

    ``actor`` gives default actor attributes for every event, as short keys (``id``,
    ``type``, ``name``) or full ``audit.actor.*`` names; attributes of a call override them.
    """

    def __init__(
        self,
        logger_provider: LoggerProvider | None = None,
        *,
        name: str = "otel_audit",
        actor: Mapping[str, object] | None = None,
    ) -> None:
        provider = logger_provider if logger_provider is not None else get_logger_provider()
        self._logger: Logger = provider.get_logger(name, _version())
        self._defaults: dict[str, AnyValue] = _actor_attributes(actor or {})

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

        Raises `UnknownEventError`, `MissingAttributeError`, `TypeError` (a value of an
        unsupported type, named by key) or `ValueError` (reserved key, bad outcome/severity).
        """
        spec = catalog.get(event_name)
        if spec.name in _SYSTEM_EVENTS:
            raise ValueError(f"{spec.name!r} is emitted by the signing processor, not through AuditLogger")
        attrs = dict(self._defaults)
        attrs.update(_clean_attributes(spec, attributes or {}))
        _check_required(spec, attrs)
        audit_outcome = _outcome(spec, outcome)
        attrs["audit.category"] = spec.category
        attrs["audit.action"] = spec.cadf_action
        attrs["audit.outcome"] = audit_outcome
        if body is not None:
            _check_value("body", body)
        if timestamp_ns is not None and (
            isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, int) or timestamp_ns < 0
        ):
            raise ValueError(
                f"timestamp_ns must be a non-negative int (ns since epoch), got {timestamp_ns!r}"
            )
        severity_text, severity_number = _severity(spec, audit_outcome, severity)
        self._logger.emit(
            event_name=spec.name,
            body=spec.description if body is None else body,
            attributes=attrs,
            severity_number=severity_number,
            severity_text=severity_text,
            timestamp=time.time_ns() if timestamp_ns is None else timestamp_ns,
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
            raise ValueError(
                f"config_changed() takes a configuration.* event, got {event_name!r}; use emit() for it"
            )
        self._helper(
            spec.name,
            attributes,
            {
                "audit.target.id": target_id,
                "audit.target.type": spec.name.split(".")[1],
                "audit.change.before": _json_text("before", before),
                "audit.change.after": _json_text("after", after),
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

    def rate_limit_violated(
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
        merged = dict(extra or {})
        merged.update({k: v for k, v in named.items() if v is not None})
        self.emit(event_name, merged)


# --- validation ------------------------------------------------------------------------


def _actor_attributes(actor: Mapping[str, object]) -> dict[str, AnyValue]:
    out: dict[str, AnyValue] = {}
    for key, value in actor.items():
        if not isinstance(key, str) or not key or ("." in key and not key.startswith("audit.actor.")):
            raise ValueError(f"actor key {key!r} must be a short name (id, type, name) or audit.actor.*")
        full = key if key.startswith("audit.actor.") else f"audit.actor.{key}"
        _check_value(full, value)
        out[full] = value  # type: ignore[assignment]  # checked just above
    return out


def _clean_attributes(spec: EventSpec, attributes: Mapping[str, object]) -> dict[str, AnyValue]:
    out: dict[str, AnyValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{spec.name}: attribute keys must be non-empty str, got {key!r}")
        if key.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"{spec.name}: attribute {key!r} is reserved for the signing processor "
                f"({', '.join(p + '*' for p in RESERVED_PREFIXES)}); remove it"
            )
        if key in _MANAGED:
            raise ValueError(f"{spec.name}: attribute {key!r} is set by {_MANAGED[key]}, not in attributes")
        if value is None:  # None means "absent", which lets callers pass optional values through
            continue
        _check_value(key, value)
        out[key] = value  # type: ignore[assignment]  # checked just above
    return out


def _check_value(key: str, value: object) -> None:
    if isinstance(value, _PRIMITIVES):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"attribute {key!r}: mapping keys must be str, got {type(k).__name__}")
            _check_value(f"{key}.{k}", v)
        return
    if isinstance(value, Sequence):
        for i, v in enumerate(value):
            _check_value(f"{key}[{i}]", v)
        return
    raise TypeError(
        f"attribute {key!r} has unsupported type {type(value).__name__}; use str, bool, int, float, "
        "bytes, or a list / mapping of those"
    )


def _check_required(spec: EventSpec, attrs: Mapping[str, object]) -> None:
    missing = [k for k in spec.required if attrs.get(k) in (None, "")]
    if missing:
        raise MissingAttributeError(
            f"event {spec.name!r} is missing required attribute(s) {', '.join(missing)} "
            f"(required: {', '.join(spec.required)}); pass them in attributes="
        )


def _outcome(spec: EventSpec, outcome: str | None) -> str:
    if outcome is None:
        # CADF "pending" has no ECS equivalent; ECS readers see "unknown".
        return spec.cadf_outcome if spec.cadf_outcome in catalog.OUTCOMES else "unknown"
    if outcome not in catalog.OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(catalog.OUTCOMES)}, got {outcome!r}")
    return outcome


def _severity(spec: EventSpec, outcome: str, severity: str | None) -> tuple[str, SeverityNumber]:
    if severity is not None:
        name = severity.upper()
        if name not in SeverityNumber.__members__ or name == "UNSPECIFIED":
            raise ValueError(f"unknown severity {severity!r}; use one of {', '.join(catalog.SEVERITIES)}")
        return name, SeverityNumber[name]
    name = spec.severity
    if outcome == "failure" and SeverityNumber[name].value < SeverityNumber.WARN.value:
        name = "WARN"  # a failed or denied action is worth a look even when the event usually is not
    return name, SeverityNumber[name]


def _json_text(side: str, value: Mapping[str, object] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{side} must be a mapping or None, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{side} cannot be written as JSON: {exc}") from exc
