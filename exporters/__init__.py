"""OTel LogRecordExporters of otel-audit."""

from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.exporters.otlp import create_otlp_exporter

__all__ = ["FileLogRecordExporter", "create_otlp_exporter"]
