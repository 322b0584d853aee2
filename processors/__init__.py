"""OTel LogRecordProcessors of otel-audit: redaction, then signing."""

from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.signing import SigningProcessor

__all__ = ["RedactionProcessor", "SigningProcessor"]
