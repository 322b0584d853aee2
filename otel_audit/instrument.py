"""The `opentelemetry-instrument` way in: a configurator that makes the audit pipeline the global LoggerProvider.

    OTEL_PYTHON_CONFIGURATOR=otel_audit OTEL_AUDIT_CONFIG=/etc/audit/audit.yaml \\
        opentelemetry-instrument python app.py

`otel_audit.configurator.AuditConfigurator` (entry point `otel_audit`, group `opentelemetry_configurator`)
builds the pipeline `otel_audit.configure()` builds — from the file in `OTEL_AUDIT_CONFIG`, or from the env-only
variables (`OTEL_AUDIT_KEYS_DIR`, ...) — and sets its provider as the global LoggerProvider, so
`otel_audit.AuditLogger()` in the app writes redacted, signed (and, from a config file, spooled)
records. Traces and metrics stay the SDK configurator's: it runs as it would, with the logs signal
taken away from it (its OTEL_LOGS_EXPORTER is hidden while it runs, so no exporter is built twice or
outside the pipeline). `pipeline()` gives the app the AuditPipeline; the provider seals the stream
at exit as every SDK provider shuts down at exit.

Why a configurator and no distro: `opentelemetry-instrument` loads the first installed distro when
OTEL_PYTHON_DISTRO is unset, so a distro of ours could silently replace opentelemetry-distro's
defaults (OTLP for traces and metrics). A configurator is also taken first-come when
OTEL_PYTHON_CONFIGURATOR is unset; then, and with no audit settings in the environment, this one
does exactly what the SDK's configurator does (opentelemetry-distro's is the SDK's unchanged), so
installing otel-audit changes nothing for a service that does not ask for it. Named explicitly
without any audit settings it refuses: the service asked for signed audit records and would get none.

Unsigned paths say so at start. Our exporters are also `opentelemetry_logs_exporter` entry points;
built by the SDK's own configurator (OTEL_LOGS_EXPORTER=otel_audit_file without this configurator)
they would write records with no redaction and no signature. `warn_if_plain_sdk` (called by each
exporter's constructor) logs one WARNING naming the fix. It warns rather than refuses: an exception
there aborts the whole auto-instrumentation (traces and metrics too, logged and swallowed by
`opentelemetry-instrument`), and the exporters are legitimate for plain logs; `otel-audit verify`
reports such records as unsigned in any case.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

_log = logging.getLogger(__name__)

NAME = "otel_audit"
ENV_CONFIGURATOR = "OTEL_PYTHON_CONFIGURATOR"
_SDK_CONFIGURATION = "opentelemetry.sdk._configuration"
_SDK_INIT_LOGGING = "_init_logging"  # the SDK function that builds the OTEL_LOGS_EXPORTER exporters

_pipeline: Any = None
_warned_plain = False


def pipeline() -> Any:
    """The AuditPipeline the configurator built (None when it built none): force_flush / shutdown / stream_id."""
    return _pipeline


def audit_settings(env: Mapping[str, str]) -> bool:
    """Whether `env` asks for the audit pipeline (a config file or a keys folder)."""
    from otel_audit import config

    return bool(env.get(config.ENV_CONFIG) or env.get(config.ENV_KEYS_DIR))


def _built_by_sdk_configurator() -> bool:
    """Whether the SDK's own configurator (its _init_logging) is constructing the caller's caller. Our configurator
    also runs inside the SDK's module (its configure()), so the function is checked, not only the module."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(12):  # _init_logging -> exporter_class() -> Exporter.__init__ -> (base __init__) -> here
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == _SDK_CONFIGURATION and frame.f_code.co_name == _SDK_INIT_LOGGING:
            return True
        frame = frame.f_back
    return False


def warn_if_plain_sdk(exporter: object) -> None:
    """Log once, at WARNING, when the SDK's own configurator builds one of our exporters outside the audit pipeline."""
    global _warned_plain
    if _warned_plain or not _built_by_sdk_configurator():
        return
    _warned_plain = True
    _log.warning(
        "%s was built by the OpenTelemetry SDK's own configurator (%s): the records it exports are NOT "
        "redacted and NOT signed, and otel-audit verify will not prove them. To get the audit pipeline "
        "(redaction, signing, spool) under opentelemetry-instrument, set %s=%s and %s (a config file) or "
        "OTEL_AUDIT_KEYS_DIR (env-only)",
        type(exporter).__name__, "OTEL_LOGS_EXPORTER", ENV_CONFIGURATOR, NAME, "OTEL_AUDIT_CONFIG",
    )
