"""The paths a `filter=` expression (otel_audit.service.filter) may name, and the event columns they read.

Attribute names as the catalog spells them (docs/events.md), plus a few names of the event itself."""

from __future__ import annotations

from otel_audit.service.filter import Field

FIELDS: dict[str, Field] = {
    "event": Field("event", "text"),
    "event.name": Field("event", "text"),
    "time": Field("ts", "time"),
    "observed_time": Field("observed_ts", "time"),
    "ingest_time": Field("ingest_ts", "time"),
    "severity": Field("severity", "int"),
    "severity_text": Field("severity_text", "text"),
    "body": Field("body", "text"),
    "actor": Field("actor", "text"),
    "user.id": Field("user_id", "text"),
    "audit.category": Field("category", "text"),
    "audit.outcome": Field("outcome", "text"),
    "audit.target.type": Field("target_type", "text"),
    "audit.target.id": Field("target_id", "text"),
    "client.address": Field("client_address", "ip"),
    "service.name": Field("service", "text"),
    "session.id": Field("session_id", "text"),
    "trace_id": Field("trace_id", "text"),
    "audit.stream.id": Field("stream_id", "text"),
    "audit.stream.seq": Field("stream_seq", "int"),
}
