"""OTel LogRecordProcessors of otel-audit: redaction, then signing, then delivery."""

from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor

__all__ = ["RedactionProcessor", "SigningProcessor", "SpoolProcessor"]
