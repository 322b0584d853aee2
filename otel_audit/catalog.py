"""The audit event catalog: every event otel-audit knows, as data.

Each event is an OTel log record whose ``event_name`` is the catalog name. The catalog says
which attributes an event must and may carry, its default severity, and how it maps to CADF
(DMTF DSP0262: action, outcome) and ECS (``event.category``, ``event.type``). It imports no
OpenTelemetry code, so the CLI, the verifier and exporters can read it cheaply.

Every attribute the catalog names has one type (`ATTRIBUTE_TYPES`), whatever the event: the OTel
semantic-convention type where the name is a semantic-convention one (``user.id`` string,
``http.response.status_code`` int, ``gen_ai.usage.input_tokens`` int), else ours. `AuditLogger`
enforces it at the call site, so a SIEM never sees ``user.id`` as a number in one record and a
string in the next.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from otel_audit.errors import EmitTypeError, UnknownEventError

__all__ = [
    "ATTRIBUTE_TYPES",
    "AttributeType",
    "CATEGORIES",
    "EVENTS",
    "OUTCOMES",
    "SEVERITIES",
    "EventSpec",
    "attribute_type",
    "categories",
    "get",
    "render_json",
    "render_markdown",
]

#: Categories in display order; ``integrity`` holds only the signing processor's checkpoint.
CATEGORIES: tuple[str, ...] = (
    "authentication",
    "authorization",
    "configuration",
    "data_access",
    "security",
    "integrity",
)

#: Values of ``audit.outcome``; the same set as ECS ``event.outcome``.
OUTCOMES: tuple[str, ...] = ("success", "failure", "unknown")

#: Severity names a spec may use (OTel log data model short names).
SEVERITIES: tuple[str, ...] = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


@dataclass(frozen=True)
class EventSpec:
    """One catalog event: its name, attributes, default severity and CADF / ECS mapping."""

    name: str
    category: str
    description: str
    cadf_action: str
    cadf_outcome: str
    ecs_category: tuple[str, ...]
    ecs_type: tuple[str, ...]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    severity: str

    def to_dict(self) -> dict[str, object]:
        """Return the spec as plain JSON-ready data (tuples become lists), with ``attribute_types``:
        the type of each attribute it names (`AttributeType.to_dict`)."""
        out: dict[str, object] = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["attribute_types"] = {
            k: t.to_dict() for k in (*self.required, *self.optional) if (t := ATTRIBUTE_TYPES.get(k)) is not None
        }
        return out


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


#: Kinds of `AttributeType`, named as OTel attribute types are.
ATTRIBUTE_KINDS: tuple[str, ...] = ("string", "int", "double", "boolean", "string[]")


@dataclass(frozen=True)
class AttributeType:
    """The type of a catalog attribute: an OTel attribute type (``kind``) and, for numbers, a range.

    ``double`` takes a float or an int (bool is neither); `AuditLogger` records an int as the
    float of the same value, so every record carries the one type. Numbers of a catalog type are
    finite. ``note`` says what the value means (unit, format).
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ATTRIBUTE_KINDS:
            raise ValueError(f"attribute kind {self.kind!r} is not one of {', '.join(ATTRIBUTE_KINDS)}")

    def describe(self) -> str:
        """A short text for people: ``int >= 0``, ``double in [0, 1]``, ``string[]``."""
        lo, hi = _num(self.minimum), _num(self.maximum)
        if lo is not None and hi is not None:
            return f"{self.kind} in [{lo}, {hi}]"
        if lo is not None:
            return f"{self.kind} >= {lo}"
        if hi is not None:
            return f"{self.kind} <= {hi}"
        return self.kind

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``type`` and, when set, ``minimum``, ``maximum`` and ``note``."""
        out: dict[str, object] = {"type": self.kind}
        for key in ("minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = _num(getattr(self, key))
        if self.note:
            out["note"] = self.note
        return out


def _num(value: float | None) -> int | float | None:
    return int(value) if isinstance(value, float) and value.is_integer() else value


_STR = AttributeType("string")
_ID = AttributeType("string", note="an identifier")
_COUNT = AttributeType("int", minimum=0)
_SECONDS = AttributeType("double", minimum=0, note="seconds")
_TIME_NS = AttributeType("int", minimum=0, note="nanoseconds since the Unix epoch")
_MONEY = AttributeType("double", note="an amount in audit.budget.currency")
_JSON = AttributeType("string", note="JSON text, keys sorted (AuditLogger.config_changed writes it)")

#: The type of every attribute the catalog names, by name (one type per name, across all events).
ATTRIBUTE_TYPES: Mapping[str, AttributeType] = MappingProxyType(
    {
        # OTel semantic conventions (their types)
        "client.address": AttributeType("string", note="IP address or host name (semconv)"),
        "db.query.text": _STR,
        "error.type": _STR,
        "gen_ai.provider.name": _STR,
        "gen_ai.request.model": _STR,
        "gen_ai.usage.input_tokens": _COUNT,
        "gen_ai.usage.output_tokens": _COUNT,
        "host.name": _STR,
        "http.request.method": _STR,
        "http.response.status_code": AttributeType("int", minimum=100, maximum=599),
        "session.id": _ID,
        "url.path": _STR,
        "user.email": _STR,
        "user.id": _ID,
        "user.name": _STR,
        "user_agent.original": _STR,
        # ours: set by AuditLogger from the catalog and outcome=
        "audit.action": AttributeType("string", note="the CADF action (set by AuditLogger)"),
        "audit.category": AttributeType("string", note="the catalog category (set by AuditLogger)"),
        "audit.outcome": AttributeType("string", note="success, failure or unknown (set by AuditLogger)"),
        # ours
        "audit.actor.id": _ID,
        "audit.actor.type": _STR,
        "audit.auth.failure_count": _COUNT,
        "audit.auth.method": _STR,
        "audit.auth.window_seconds": _SECONDS,
        "audit.budget.currency": AttributeType("string", note="ISO 4217 code, e.g. USD"),
        "audit.budget.id": _ID,
        "audit.budget.limit": _MONEY,
        "audit.budget.scope": _STR,
        "audit.budget.spend": _MONEY,
        "audit.change.after": _JSON,
        "audit.change.before": _JSON,
        "audit.customer.id": _ID,
        "audit.export.format": _STR,
        "audit.export.sha256": AttributeType("string", note="hex SHA-256 of the exported file"),
        "audit.export.status": AttributeType("string", note="requested, done or failed"),
        "audit.finding.evidence_sha256": AttributeType("string", note="hex SHA-256 of the evidence the finding keeps"),
        "audit.finding.kind": AttributeType("string", note="digest, link, checkpoint, variant, fork or decode"),
        "audit.finding.seq": AttributeType("int", minimum=0, note="the stream seq the finding is about"),
        "audit.export.record_count": _COUNT,
        "audit.guardrail.action": _STR,
        "audit.guardrail.name": _STR,
        "audit.lockout.duration_seconds": _SECONDS,
        "audit.lockout.failed_attempts": _COUNT,
        "audit.mfa.method": _STR,
        "audit.pii.action": _STR,
        "audit.pii.count": _COUNT,
        "audit.pii.location": _STR,
        "audit.pii.types": AttributeType("string[]", note="rule names, e.g. email, phone"),
        "audit.prompt.snippet": _STR,
        "audit.provider_key.fingerprint": _STR,
        "audit.provisioning.source": _STR,
        "audit.query.result_count": _COUNT,
        "audit.rate_limit.current": AttributeType("double", minimum=0, note="in audit.rate_limit.metric units"),
        "audit.rate_limit.limit": AttributeType("int", minimum=0, note="in audit.rate_limit.metric units"),
        "audit.rate_limit.metric": AttributeType("string", note="e.g. requests, tokens"),
        "audit.rate_limit.violation_count": _COUNT,
        "audit.rate_limit.window_seconds": _SECONDS,
        "audit.reason": _STR,
        "audit.requested_action": _STR,
        "audit.risk.score": AttributeType("double", minimum=0, maximum=1),
        "audit.session.duration_seconds": _SECONDS,
        "audit.session.expires_at": _TIME_NS,
        "audit.spool.bytes": _COUNT,
        "audit.spool.dropped_at": _TIME_NS,
        "audit.spool.exporter": _STR,
        "audit.spool.records": _COUNT,
        "audit.sso.protocol": AttributeType("string", note="saml or oidc"),
        "audit.sso.provider": _STR,
        "audit.target.id": _ID,
        "audit.target.type": _STR,
        "audit.team.id": _ID,
        "audit.virtual_key.id": _ID,
    }
)


def attribute_type(name: str) -> AttributeType | None:
    """The catalog type of attribute ``name``, or None for an attribute the catalog does not name."""
    return ATTRIBUTE_TYPES.get(name)


# Attribute groups shared by many events. OTel semantic-convention names where one exists.
_CLIENT = ("client.address", "user_agent.original")
_HTTP = ("http.request.method", "url.path", "http.response.status_code")
_ACTOR = ("audit.actor.id", "audit.actor.type")
_SUBJECT = ("user.id", "audit.virtual_key.id", "audit.team.id", "audit.customer.id")
_GEN_AI = ("gen_ai.request.model", "gen_ai.provider.name")
_RATE = (
    "audit.rate_limit.metric",
    "audit.rate_limit.limit",
    "audit.rate_limit.window_seconds",
    "audit.rate_limit.current",
)
_DETECTION = ("audit.risk.score", "audit.reason", "user.id", "session.id", *_GEN_AI, *_CLIENT)


def _event(
    name: str,
    description: str,
    cadf: tuple[str, str],
    ecs: tuple[tuple[str, ...], tuple[str, ...]],
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    severity: str = "INFO",
    category: str | None = None,
) -> EventSpec:
    # Any event can be emitted with outcome="failure": each can then say why, as error.type
    # (OTel's general attribute for the class of an error).
    if not name.startswith("audit."):
        optional = (*optional, "error.type")
    optional = tuple(dict.fromkeys(k for k in optional if k not in required))
    return EventSpec(
        name=name,
        category=category or name.split(".", 1)[0],
        description=description,
        cadf_action=cadf[0],
        cadf_outcome=cadf[1],
        ecs_category=ecs[0],
        ecs_type=ecs[1],
        required=required,
        optional=optional,
        severity=severity,
    )


def _config(
    obj: str,
    verb: str,
    description: str,
    cadf_action: str,
    ecs: tuple[tuple[str, ...], tuple[str, ...]],
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    require_change: bool = True,
) -> EventSpec:
    """A configuration change: who changed which object, with before/after JSON text."""
    change = (
        {
            "create": ("audit.change.after",),
            "update": ("audit.change.before", "audit.change.after"),
            "delete": ("audit.change.before",),
        }[cadf_action]
        if require_change
        else ()
    )
    return _event(
        f"configuration.{obj}.{verb}",
        description,
        (cadf_action, "success"),
        ecs,
        required=("audit.actor.id", "audit.target.id", *change, *required),
        optional=(
            "audit.target.type",
            "audit.actor.type",
            "audit.change.before",
            "audit.change.after",
            "audit.reason",
            *optional,
            *_CLIENT,
        ),
    )


_CFG_IAM = ("configuration", "iam")

_SPECS: tuple[EventSpec, ...] = (
    # --- authentication -------------------------------------------------------------------
    _event(
        "authentication.login.succeeded",
        "A user logged in.",
        ("authenticate/login", "success"),
        (("authentication", "session"), ("start",)),
        required=("user.id",),
        optional=("user.name", "user.email", "session.id", "audit.auth.method", *_CLIENT, *_HTTP),
    ),
    _event(
        "authentication.login.failed",
        "A login attempt failed.",
        ("authenticate/login", "failure"),
        (("authentication",), ("start",)),
        required=("user.id", "audit.reason"),
        optional=("user.name", "user.email", "audit.auth.method", "error.type", *_CLIENT, *_HTTP),
        severity="WARN",
    ),
    _event(
        "authentication.logout.succeeded",
        "A user logged out.",
        ("authenticate/logout", "success"),
        (("authentication", "session"), ("end",)),
        required=("user.id",),
        optional=("user.name", "session.id", *_CLIENT),
    ),
    _event(
        "authentication.session.created",
        "A session was created for a user.",
        ("create", "success"),
        (("session",), ("start",)),
        required=("session.id", "user.id"),
        optional=("audit.session.expires_at", "audit.auth.method", *_CLIENT),
    ),
    _event(
        "authentication.session.expired",
        "A session expired.",
        ("stop", "success"),
        (("session",), ("end",)),
        required=("session.id",),
        optional=("user.id", "audit.reason", "audit.session.duration_seconds"),
    ),
    _event(
        "authentication.mfa.verified",
        "A second authentication factor was verified; audit.outcome says whether it passed.",
        ("authenticate", "success"),
        (("authentication",), ("info",)),
        required=("user.id",),
        optional=("audit.mfa.method", "session.id", "audit.reason", *_CLIENT),
    ),
    _event(
        "authentication.password.changed",
        "A user's password was changed or reset.",
        ("update", "success"),
        (("iam",), ("user", "change")),
        required=("user.id",),
        optional=(*_ACTOR, "audit.reason", *_CLIENT),
    ),
    _event(
        "authentication.attempt.failed",
        "A request failed authentication (bad or expired credential, token or key).",
        ("authenticate", "failure"),
        (("authentication",), ("start",)),
        required=("audit.reason",),
        optional=("user.id", "audit.virtual_key.id", "audit.auth.method", "error.type", *_CLIENT, *_HTTP),
        severity="WARN",
    ),
    _event(
        "authentication.account.locked",
        "An account was locked out after repeated failures or by an administrator.",
        ("disable", "success"),
        (("iam",), ("user", "change")),
        required=("user.id", "audit.reason"),
        optional=(*_ACTOR, "audit.lockout.failed_attempts", "audit.lockout.duration_seconds", *_CLIENT),
        severity="WARN",
    ),
    _event(
        "authentication.sso.redirected",
        "A user was redirected to a SAML or OIDC identity provider to sign in.",
        ("authenticate", "pending"),
        (("authentication",), ("start",)),
        required=("audit.sso.provider",),
        optional=("audit.sso.protocol", "user.email", "session.id", *_CLIENT),
    ),
    # --- authorization --------------------------------------------------------------------
    _event(
        "authorization.model.accessed",
        "A principal tried to use a model; audit.outcome says whether access was granted.",
        ("evaluate", "success"),
        (("api",), ("access",)),
        required=("gen_ai.request.model",),
        optional=("gen_ai.provider.name", *_SUBJECT, "audit.reason", *_CLIENT, *_HTTP),
    ),
    _event(
        "authorization.provider.checked",
        "Access to an LLM provider was checked; audit.outcome says whether it was granted.",
        ("evaluate", "success"),
        (("api",), ("access",)),
        required=("gen_ai.provider.name",),
        optional=("gen_ai.request.model", *_SUBJECT, "audit.reason"),
    ),
    _event(
        "authorization.virtual_key.used",
        "A virtual key authorized a request to a model.",
        ("allow", "success"),
        (("api",), ("access", "allowed")),
        required=("audit.virtual_key.id", "gen_ai.request.model"),
        optional=(
            "gen_ai.provider.name",
            "user.id",
            "audit.team.id",
            "audit.customer.id",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            *_CLIENT,
        ),
    ),
    _event(
        "authorization.budget.checked",
        "Spend was checked against a budget; failure means the budget is exhausted.",
        ("evaluate", "success"),
        (("api",), ("info",)),
        required=("audit.budget.limit", "audit.budget.spend"),
        optional=("audit.budget.id", "audit.budget.scope", "audit.budget.currency", *_SUBJECT),
    ),
    _event(
        "authorization.rate_limit.exceeded",
        "A request was throttled because it exceeded a rate limit.",
        ("deny", "failure"),
        (("api",), ("denied",)),
        required=("audit.rate_limit.limit",),
        optional=(*_RATE, *_SUBJECT, *_CLIENT),
        severity="WARN",
    ),
    _event(
        "authorization.permission.denied",
        "A principal was denied an action on a resource.",
        ("deny", "failure"),
        (("api",), ("denied",)),
        required=("audit.actor.id", "audit.target.id", "audit.requested_action"),
        optional=("audit.actor.type", "audit.target.type", "audit.reason", "user.id", *_CLIENT, *_HTTP),
        severity="WARN",
    ),
    # --- configuration (before/after values as JSON text) --------------------------------
    _config(
        "virtual_key",
        "created",
        "A virtual key was created.",
        "create",
        (_CFG_IAM, ("creation",)),
        optional=("audit.team.id", "user.id"),
    ),
    _config(
        "virtual_key",
        "modified",
        "A virtual key was modified.",
        "update",
        (_CFG_IAM, ("change",)),
        optional=("audit.team.id", "user.id"),
    ),
    _config(
        "virtual_key",
        "deleted",
        "A virtual key was deleted or revoked.",
        "delete",
        (_CFG_IAM, ("deletion",)),
        optional=("audit.team.id", "user.id"),
    ),
    _config("team", "created", "A team was created.", "create", (_CFG_IAM, ("group", "creation"))),
    _config("team", "updated", "A team was updated.", "update", (_CFG_IAM, ("group", "change"))),
    _config("customer", "created", "A customer was created.", "create", (("configuration",), ("creation",))),
    _config("customer", "updated", "A customer was updated.", "update", (("configuration",), ("change",))),
    _config(
        "user",
        "provisioned",
        "A user account was provisioned.",
        "create",
        (("iam",), ("user", "creation")),
        optional=("user.id", "user.name", "user.email", "audit.provisioning.source"),
    ),
    _config(
        "user",
        "deprovisioned",
        "A user account was deprovisioned.",
        "delete",
        (("iam",), ("user", "deletion")),
        optional=("user.id", "user.name", "user.email", "audit.provisioning.source"),
    ),
    _config(
        "budget",
        "adjusted",
        "A budget limit was adjusted.",
        "update",
        (("configuration",), ("change",)),
        optional=("audit.budget.scope", "audit.budget.currency", *_SUBJECT),
    ),
    _config(
        "rate_limit",
        "changed",
        "A rate limit was changed.",
        "update",
        (("configuration",), ("change",)),
        optional=("audit.rate_limit.metric", *_SUBJECT),
    ),
    _config(
        "provider_key",
        "updated",
        "An LLM provider credential was updated (never the secret itself).",
        "update",
        (("configuration",), ("change",)),
        required=("gen_ai.provider.name",),
        optional=("audit.provider_key.fingerprint",),
        # The interesting values are secrets: before/after may carry fingerprints, never keys.
        require_change=False,
    ),
    _config(
        "guardrail",
        "changed",
        "A guardrail configuration was changed.",
        "update",
        (("configuration",), ("change",)),
        optional=("audit.guardrail.name",),
    ),
    _config(
        "saml",
        "updated",
        "SAML single sign-on settings were updated.",
        "update",
        (_CFG_IAM, ("change",)),
        optional=("audit.sso.provider",),
    ),
    _config(
        "oidc",
        "updated",
        "OIDC single sign-on settings were updated.",
        "update",
        (_CFG_IAM, ("change",)),
        optional=("audit.sso.provider",),
    ),
    # --- data access ----------------------------------------------------------------------
    _event(
        "data_access.pii.detected",
        "Personal data was detected and masked, hashed or blocked.",
        ("monitor", "success"),
        (("api",), ("info",)),
        required=("audit.pii.types",),
        optional=("audit.pii.count", "audit.pii.action", "audit.pii.location", "user.id", *_GEN_AI),
    ),
    _event(
        "data_access.data.exported",
        "Data was exported from the system.",
        ("read", "success"),
        (("database",), ("access",)),
        required=("audit.actor.id", "audit.target.type"),
        optional=(
            "audit.actor.type",
            "audit.target.id",
            "audit.export.format",
            "audit.export.record_count",
            "audit.export.sha256",
            "audit.export.status",
            "audit.reason",
            "db.query.text",
            *_CLIENT,
        ),
    ),
    _event(
        "data_access.logs.queried",
        "Logs or audit records were read or queried.",
        ("read", "success"),
        (("database",), ("access",)),
        required=("audit.actor.id",),
        optional=(
            "audit.actor.type",
            "audit.target.type",
            "db.query.text",
            "audit.query.result_count",
            *_CLIENT,
        ),
    ),
    _event(
        "data_access.sensitive_config.accessed",
        "Sensitive configuration was read.",
        ("read", "success"),
        (("configuration",), ("access",)),
        required=("audit.actor.id", "audit.target.id"),
        optional=("audit.actor.type", "audit.target.type", *_CLIENT, *_HTTP),
    ),
    _event(
        "data_access.api_key.exposure_attempted",
        "An attempt to reveal an API key was detected (blocked unless audit.outcome says otherwise).",
        ("read", "failure"),
        (("intrusion_detection",), ("denied",)),
        required=("audit.target.type",),
        optional=(*_ACTOR, "audit.target.id", "audit.virtual_key.id", "audit.reason", "user.id", *_CLIENT),
        severity="WARN",
    ),
    # --- security -------------------------------------------------------------------------
    _event(
        "security.prompt_injection.detected",
        "A prompt injection attempt was detected.",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.risk.score",),
        optional=(*_DETECTION, "audit.prompt.snippet", "audit.guardrail.name", "audit.guardrail.action"),
        severity="WARN",
    ),
    _event(
        "security.integrity.violated",
        "Audit records failed verification on ingest: modified after signing, removed, forged, a variant of a "
        "stored record or a forked stream (audit.reason says which and where).",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.reason", "audit.target.id"),
        optional=("audit.target.type", "client.address", "audit.finding.kind", "audit.finding.seq",
                  "audit.finding.evidence_sha256"),
        severity="ERROR",
    ),
    _event(
        "security.jailbreak.detected",
        "A jailbreak attempt was detected.",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.risk.score",),
        optional=(*_DETECTION, "audit.prompt.snippet", "audit.guardrail.name", "audit.guardrail.action"),
        severity="WARN",
    ),
    _event(
        "security.unusual_access.detected",
        "An unusual access pattern was detected.",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.reason",),
        optional=(*_DETECTION, "audit.virtual_key.id"),
        severity="WARN",
    ),
    _event(
        "security.auth_failures.detected",
        "Multiple failed authentication attempts crossed a threshold.",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.auth.failure_count",),
        optional=(
            "audit.auth.window_seconds",
            "user.id",
            "audit.virtual_key.id",
            "audit.risk.score",
            *_CLIENT,
        ),
        severity="WARN",
    ),
    _event(
        "security.api_key_abuse.detected",
        "An API key is being abused (used from unexpected places or beyond its purpose).",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.virtual_key.id", "audit.reason"),
        optional=("audit.risk.score", "user.id", "audit.team.id", *_CLIENT),
        severity="ERROR",
    ),
    _event(
        "security.rate_limit.violated",
        "A principal kept violating rate limits, a possible abuse or denial-of-service pattern.",
        ("monitor", "success"),
        (("intrusion_detection",), ("info",)),
        required=("audit.rate_limit.violation_count",),
        optional=(*_RATE, *_SUBJECT, "audit.risk.score", *_CLIENT),
        severity="WARN",
    ),
    _event(
        "security.suspicious_ip.detected",
        "A request came from a suspicious IP address.",
        ("monitor", "success"),
        (("threat",), ("indicator",)),
        required=("client.address", "audit.reason"),
        optional=("audit.risk.score", "user.id", "audit.virtual_key.id", "user_agent.original"),
        severity="WARN",
    ),
    _event(
        "security.guardrail.violated",
        "Content violated a guardrail.",
        ("evaluate", "failure"),
        (("intrusion_detection",), ("info",)),
        required=("audit.guardrail.name",),
        optional=(*_DETECTION, "audit.guardrail.action", "audit.virtual_key.id"),
        severity="WARN",
    ),
    # --- integrity (emitted by the signing processor only) --------------------------------
    _event(
        "audit.checkpoint",
        "A signed checkpoint committing to a stream's size and Merkle root.",
        ("monitor", "success"),
        (("process",), ("info",)),
        category="integrity",
    ),
    _event(
        "audit.spool.backlog_dropped",
        "An operator gave up an exporter's undelivered backlog in the delivery spool (otel-audit spool drop); "
        "the records it held did not reach that destination.",
        ("delete", "success"),
        (("configuration",), ("deletion",)),
        required=("audit.actor.id", "audit.reason", "audit.spool.exporter", "audit.spool.records"),
        optional=("audit.spool.bytes", "host.name", "audit.spool.dropped_at"),
        severity="WARN",
        category="integrity",
    ),
)

EVENTS: Mapping[str, EventSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})


def get(name: str) -> EventSpec:
    """Return the spec of ``name``; raise `UnknownEventError` with close matches if unknown."""
    if not isinstance(name, str):
        raise EmitTypeError(f"event name must be str, not {type(name).__name__}")
    try:
        return EVENTS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, list(EVENTS), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownEventError(
        f"unknown audit event {name!r}; {hint}run `otel-audit catalog` to list every event"
    ) from None


def categories() -> list[str]:
    """Return the categories that have events, in display order."""
    present = {spec.category for spec in EVENTS.values()}
    return [c for c in CATEGORIES if c in present]


def render_json(events: Iterable[EventSpec] | None = None) -> str:
    """Render specs (default: the whole catalog) as stable JSON: keyed by name, keys sorted."""
    specs = EVENTS.values() if events is None else events
    data = {spec.name: spec.to_dict() for spec in specs}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render_markdown(events: Iterable[EventSpec] | None = None) -> str:
    """Render specs (default: the whole catalog) as Markdown, one table per category."""
    specs = sorted(EVENTS.values() if events is None else events, key=lambda s: s.name)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    lines = ["# Audit event catalog", ""]
    for category in sorted({s.category for s in specs}, key=lambda c: (order.get(c, len(order)), c)):
        lines += [
            f"## {category}",
            "",
            "| event | description | severity | CADF action / outcome | ECS category / type "
            "| required | optional |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in (s for s in specs if s.category == category):
            cells: tuple[str, ...] = (
                f"`{s.name}`",
                s.description,
                s.severity,
                f"{s.cadf_action} / {s.cadf_outcome}",
                f"{', '.join(s.ecs_category)} / {', '.join(s.ecs_type)}",
                _codes(s.required),
                _codes(s.optional),
            )
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    named = sorted({k for s in specs for k in (*s.required, *s.optional)})
    if named:
        lines += [
            "# Attribute types",
            "",
            "One type per attribute name, in every event; `AuditLogger` refuses a value of another type.",
            "",
            "| attribute | type | note |",
            "|---|---|---|",
        ]
        for k in named:
            t = ATTRIBUTE_TYPES.get(k)
            cells = (f"`{k}`", t.describe() if t else "any", t.note if t else "")
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _codes(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{k}`" for k in keys) if keys else "—"
