"""OTel LogRecordExporters of otel-audit."""

from otel_audit.exporters.datadog import DatadogLogExporter
from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.exporters.otlp import create_otlp_exporter
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.exporters.webhook import WebhookLogExporter

__all__ = [
    "DatadogLogExporter",
    "ElasticLogExporter",
    "FileLogRecordExporter",
    "SplunkHecLogExporter",
    "WebhookLogExporter",
    "create_otlp_exporter",
]
