"""`opentelemetry_configurator` entry point `otel_audit`: the audit pipeline for logs, the SDK's configurator
for traces and metrics. See otel_audit.instrument for what it does and why (kept apart so that the exporters,
which import otel_audit.instrument, do not import the SDK's configuration module)."""

from __future__ import annotations

import logging
import os
from typing import Any

from otel_audit import instrument
from otel_audit._sdk_compat import SdkConfigurator
from otel_audit.errors import ConfigError

_log = logging.getLogger("otel_audit.instrument")


class AuditConfigurator(SdkConfigurator):  # type: ignore[misc]  # built at run time from the SDK class
    """`opentelemetry_configurator` entry point `otel_audit`: the audit pipeline for logs, the SDK's for the rest."""

    def configure_pipeline(self, **kwargs: Any) -> None:
        chosen = os.environ.get(instrument.ENV_CONFIGURATOR, "").strip() == instrument.NAME
        if not instrument.audit_settings(os.environ):
            if chosen:
                from otel_audit import config

                raise ConfigError(
                    f"{instrument.ENV_CONFIGURATOR}={instrument.NAME} but neither {config.ENV_CONFIG} "
                    f"(a config file) nor {config.ENV_KEYS_DIR} (env-only) is set, so there is no "
                    "audit pipeline to build; "
                    "set one of them (see 'otel-audit keys generate')"
                )
            # taken first-come, not asked for: behave exactly as the SDK's configurator
            self.configure_sdk(**kwargs)
            return
        from opentelemetry._logs import get_logger_provider, set_logger_provider

        import otel_audit

        instrument._attempted = True  # should this fail, AuditLogger() refuses rather than emit unsigned (instrument)
        audit = otel_audit.configure()  # raises ConfigError naming what is wrong: no unsigned fallback
        set_logger_provider(audit.provider)
        if get_logger_provider() is not audit.provider:
            audit.shutdown()
            raise ConfigError("a global LoggerProvider was already set before the otel_audit configurator ran, "
                              "so audit events would not go through the audit pipeline; remove the code that sets it")
        instrument._pipeline = audit
        if os.environ.get("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "").strip().lower() == "true":
            _log.warning("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED is ignored under the %s configurator: "
                         "stdlib logging is not routed into the signed audit stream; emit audit events with "
                         "otel_audit.AuditLogger()", instrument.NAME)
        self.configure_sdk_without_logs(**kwargs)  # the logs signal is ours: the SDK builds no log exporter
