"""The verifier: reads archives, orders records by (stream, seq) and proves each stream.

It needs only the public keyring and the data. For every stream it reports what is verified,
which seq was modified, which ranges are missing, conflicting or inserted records, duplicates
(allowed: delivery is at least once), an unsealed tail, and bad, unknown or expired signatures.
No OpenTelemetry SDK imports.

By role: `inputs` reads files, folders and SIEM exports (each line by the reader whose shape it has;
the SIEM readers, `otel_audit.sources`, behind the protocol of `otel_audit.readers`);
`otel_audit.decoding` decodes OTLP/JSON strictly; `prove` proves streams; `report` holds what was
found; `render` writes it for people.
"""

from __future__ import annotations

from otel_audit.decoding import decode_value
from otel_audit.verify.inputs import (
    ARCHIVE_SUFFIXES,
    CANONICAL,
    MAX_LINE,
    SOURCES,
    Progress,
    add_findings,
    expand_paths,
    feed,
    iter_records,
    kinds_of,
    scan,
    verify_export,
    verify_paths,
    verify_reader,
)
from otel_audit.verify.prove import OLD_GAP_REASON, Verifier, _gap_claim
from otel_audit.verify.render import render_text
from otel_audit.verify.report import Report, StreamReport

__all__ = [
    "ARCHIVE_SUFFIXES",
    "CANONICAL",
    "MAX_LINE",
    "OLD_GAP_REASON",
    "SOURCES",
    "Progress",
    "Report",
    "StreamReport",
    "Verifier",
    "_gap_claim",
    "add_findings",
    "decode_value",
    "expand_paths",
    "feed",
    "iter_records",
    "kinds_of",
    "render_text",
    "scan",
    "verify_export",
    "verify_paths",
    "verify_reader",
]
