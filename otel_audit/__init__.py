"""otel-audit: tamper-evident audit logging on OpenTelemetry.

    import otel_audit
    audit = otel_audit.configure("audit.yaml")
    audit.logger.login_succeeded("alice", client_address="203.0.113.7")
    ...
    audit.shutdown()   # seals the stream with an end-of-stream checkpoint
"""

from __future__ import annotations

import logging
import os

from otel_audit import safe as _safe
from otel_audit.errors import (
    AttributeTypeError,
    AttributeValueError,
    AuditError,
    ConfigError,
    DeliveryError,
    EmitError,
    EmitTypeError,
    EmitValueError,
    InputError,
    KeyringError,
    MissingAttributeError,
    UnknownEventError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: every CLI start imports this module
if TYPE_CHECKING:
    from typing import Any

    from otel_audit.log_bridges import AuditHandler, AuditProcessor
    from otel_audit.logger import AuditLogger

__version__ = "0.1.0"

# Loaded on first use (PEP 562): they import the OpenTelemetry SDK, which the CLI (`otel-audit
# verify`, `--help`) does not need, and which is most of the package's import time.
_LAZY = {
    "AuditLogger": "otel_audit.logger",
    "AuditHandler": "otel_audit.log_bridges",
    "AuditProcessor": "otel_audit.log_bridges",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_audit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

_log = logging.getLogger(__name__)

# Before the SDK is imported (its import already reads OTEL_RESOURCE_ATTRIBUTES): its warnings about a malformed
# OTEL_* variable quote the value, which may be a credential (otel_audit.safe.guard_sdk_loggers).
_safe.guard_sdk_loggers()


class AuditPipeline:
    """A configured pipeline: `logger` to emit, `shutdown()` to seal the stream."""

    def __init__(self, built: Any) -> None:
        self._built = built
        self.provider = built.provider
        self.signing = built.signing
        self.exporters = built.exporters
        from otel_audit.logger import AuditLogger

        self.logger = AuditLogger(self.provider)

    @property
    def stream_id(self) -> str:
        return str(self.signing.stream_id)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.provider.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Seal the stream, then shut the pipeline down; with timeout_millis, within that time
        (the delivery spool keeps what it could not deliver for the next start). Later emits raise
        DeliveryError."""
        if timeout_millis is not None:
            self.signing.shutdown(timeout_millis=timeout_millis)
        self.provider.shutdown()

    def __enter__(self) -> AuditPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def configure(path: str | os.PathLike[str] | None = None, *, set_global: bool = False) -> AuditPipeline:
    """Build the audit pipeline from a YAML/JSON file, or from `OTEL_AUDIT_CONFIG`, or from env vars alone.

    With set_global=True the provider also becomes the global OTel LoggerProvider; when one is already set
    (the API sets it once) that is logged at WARNING with what to do instead.
    """
    from otel_audit import config

    if path is None:
        path = os.environ.get(config.ENV_CONFIG) or None
    built = config.build_from_file(path) if path is not None else config.build_from_env()
    if set_global:
        from opentelemetry._logs import get_logger_provider, set_logger_provider

        set_logger_provider(built.provider)
        if get_logger_provider() is not built.provider:  # set once: the API refused it
            _log.warning(
                "configure(set_global=True): a global LoggerProvider is already set (by opentelemetry-instrument's "
                "configurator or earlier code), so this pipeline is NOT the global one and AuditLogger() without a "
                "provider writes through the other, unredacted and unsigned. Emit with the returned pipeline's "
                "logger (audit.logger, or AuditLogger(audit.provider)); under opentelemetry-instrument set "
                "OTEL_PYTHON_CONFIGURATOR=otel_audit and OTEL_AUDIT_CONFIG instead of calling configure()"
            )
    return AuditPipeline(built)


__all__ = [
    "AttributeTypeError",
    "AttributeValueError",
    "AuditError",
    "AuditHandler",
    "AuditLogger",
    "AuditPipeline",
    "AuditProcessor",
    "ConfigError",
    "DeliveryError",
    "EmitError",
    "EmitTypeError",
    "EmitValueError",
    "InputError",
    "KeyringError",
    "MissingAttributeError",
    "UnknownEventError",
    "__version__",
    "configure",
]
