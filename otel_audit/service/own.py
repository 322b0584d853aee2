"""The service's own audit stream: every query, event read and proof it answers, and every integrity finding of
verify on ingest, is a catalog event signed by the service's key — through the product's own pipeline
(redaction -> signing -> durable spool -> OTLP/HTTP), into the service itself, like any producer's records.

So the service's stream is stored, verified on ingest, queried and proven like every other, its records survive
a crash (the spool), and an auditor sees who read what with the same `otel-audit verify --store`. Built after the
HTTP socket is bound (the exporter needs its port); it presents a token made at start, known only to this
process (with tokens configured, one with the ``ingest`` scope alone): only requests carrying it may write records
as the audit service (resource ``service.name`` = SERVICE_NAME) or into a stream whose stored records say so —
a client's are refused as forged, whichever instance of a cluster they reach.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from otel_audit.errors import AuditError

_log = logging.getLogger("otel_audit.service")
SERVICE_NAME = "otel-audit-service"
INTERNAL = "otel-audit-service (its own stream)"


class OwnStream:
    """The pipeline and a logger for the service's events; every emit is best effort for the answer (a failure
    is logged loudly and counted; the answer is not refused) and durable once emitted (the spool)."""

    def __init__(self, keys_dir: Path, data_dir: Path, url: str, token: str | None) -> None:
        from otel_audit import config
        from otel_audit.filemodes import make_dirs
        from otel_audit.logger import AuditLogger

        make_dirs(data_dir)  # 0700 exactly, whatever the umask (a mkdir under umask 0277 made it 0500: unwritable)
        exporter: dict[str, Any] = {"endpoint": url, "timeout": "10s"}
        if token is not None:
            exporter["headers"] = {"authorization": f"Bearer {token}"}
        doc = {
            "resource": {"service.name": SERVICE_NAME},
            "processors": {
                "redaction": {"mode": "mask"},
                "signing": {"keys_dir": str(keys_dir), "state_dir": str(data_dir / "state"), "checkpoint_every": 100,
                            "checkpoint_interval": "10s"},
                "delivery": {"directory": str(data_dir / "spool")},
            },
            "exporters": {"otlphttp": exporter},
            "service": {"pipelines": {"logs/audit": {"processors": ["redaction", "signing", "delivery"],
                                                     "exporters": ["otlphttp"]}}},
        }
        self.built = config.build(doc, src="the service's own stream", base_dir=str(data_dir))
        self.logger = AuditLogger(self.built.provider)
        self.failed = 0

    def emit(self, event: str, attributes: dict[str, Any], outcome: str | None = None) -> None:
        try:
            self.logger.emit(event, {k: v for k, v in attributes.items() if v is not None}, outcome=outcome)
        except AuditError as exc:
            self.failed += 1
            _log.error("the service's own audit event %s was not recorded: %s", event, exc)

    def shutdown(self) -> None:
        try:
            self.built.provider.shutdown()
        except Exception:  # noqa: BLE001 - at exit: said, never raised over the rest of the shutdown
            _log.exception("the service's own stream did not shut down cleanly; its spool keeps what is left")


def internal_token() -> str:
    return "oa_internal_" + secrets.token_urlsafe(32)
