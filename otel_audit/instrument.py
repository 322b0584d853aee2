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

`AuditLogger()` without a provider writes through the global LoggerProvider, and `check_provider` looks at
it when audit settings are present (`OTEL_AUDIT_CONFIG` / `OTEL_AUDIT_KEYS_DIR`, or this configurator named
or run). When that provider is not an audit pipeline (no `SigningProcessor`: another distro set it first,
or our configurator refused) or none is set by the first emit:
* if this configurator was asked for (`OTEL_PYTHON_CONFIGURATOR=otel_audit`, or it ran and failed), the
  `AuditLogger` refuses with a ConfigError: the service asked for signed audit records and would send
  them unsigned (or nowhere), and `opentelemetry-instrument` swallowed the configurator's own error;
* otherwise (the SDK's configurator chosen, or code that set a provider of its own) it logs one WARNING
  that the audit events are NOT redacted and NOT signed, as the plain SDK path's exporters do.
With an explicit provider `AuditLogger(provider)` is unchanged (the plain SDK components of the README).
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from otel_audit.errors import ConfigError

_log = logging.getLogger(__name__)

NAME = "otel_audit"
ENV_CONFIGURATOR = "OTEL_PYTHON_CONFIGURATOR"

_pipeline: Any = None
_warned_plain = False
_warned_global = False
_attempted = False  # this configurator began building the audit pipeline (set by otel_audit.configurator)
_audit_providers: weakref.WeakSet[Any] = weakref.WeakSet()  # providers of the pipelines otel_audit.config built


def pipeline() -> Any:
    """The AuditPipeline the configurator built (None when it built none): force_flush / shutdown / stream_id."""
    return _pipeline


def audit_settings(env: Mapping[str, str]) -> bool:
    """Whether `env` asks for the audit pipeline (a config file or a keys folder)."""
    from otel_audit import config

    return bool(env.get(config.ENV_CONFIG) or env.get(config.ENV_KEYS_DIR))


def _built_by_sdk_configurator() -> bool:
    """Whether the SDK's own configurator (its logs setup) is constructing the caller's caller."""
    from otel_audit._sdk_compat import built_by_sdk_log_setup

    # _init_logging -> exporter_class() -> Exporter.__init__ -> (base __init__) -> here
    return built_by_sdk_log_setup(sys._getframe(2))


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


# -- AuditLogger() and the global provider ----------------------------------------------------------------


def mark_audit_provider(provider: Any) -> None:
    """Record `provider` as the LoggerProvider of an audit pipeline (otel_audit.config builds them)."""
    _audit_providers.add(provider)


def is_audit_pipeline(provider: Any) -> bool:
    """Whether records emitted through `provider` are signed: a provider otel_audit.config built, or an SDK
    LoggerProvider with a SigningProcessor added (README, "Plain OpenTelemetry SDK components")."""
    try:
        if provider in _audit_providers:
            return True
    except TypeError:  # not weak-referenceable: not one of ours
        pass
    from otel_audit import _sdk_compat
    from otel_audit.processors.signing import SigningProcessor

    return any(isinstance(p, SigningProcessor) for p in _sdk_compat.provider_processors(provider))


def check_provider(provider: Any, logger: Any, *, implicit: bool, at_emit: bool = False) -> bool:
    """Check what an `AuditLogger` writes through; True when it must be checked again at its first emit.

    `implicit`: the AuditLogger was given no provider (the global one). Raises ConfigError where audit
    events would be dropped or leave unsigned although the signed pipeline was asked for; warns once
    where audit settings are present but another pipeline was chosen (module docstring)."""
    from opentelemetry._logs import NoOpLogger

    from otel_audit import _sdk_compat

    if logger is not None and isinstance(logger, NoOpLogger) and is_audit_pipeline(provider):
        raise ConfigError(
            "AuditLogger: the audit pipeline's LoggerProvider hands out no-op loggers (OTEL_SDK_DISABLED=true), "
            "so every audit event would be dropped; build the pipeline with otel_audit.configure(), which keeps "
            "the audit trail on, or unset OTEL_SDK_DISABLED"
        )
    if not implicit:
        return False
    env = os.environ
    asked = env.get(ENV_CONFIGURATOR, "").strip() == NAME or _attempted
    if not (asked or audit_settings(env)):
        return False  # no audit settings: AuditLogger over whatever provider the application set
    if _sdk_compat.is_proxy_provider(provider):
        if not at_emit:
            return True  # nothing set yet; opentelemetry-instrument or the app may set it before the first emit
        problem = "no global LoggerProvider is set, so its audit events go nowhere"
    elif is_audit_pipeline(provider):
        return False
    else:
        kind = f"{type(provider).__module__}.{type(provider).__qualname__}"
        problem = (f"the global LoggerProvider ({kind}) is not an otel-audit pipeline (it has no SigningProcessor), "
                   "so its audit events are exported NOT redacted and NOT signed")
    if asked:
        raise ConfigError(
            f"AuditLogger(): {ENV_CONFIGURATOR}={NAME} asks for the signed audit pipeline, but {problem}; the "
            f"{NAME} configurator did not install it (opentelemetry-instrument logged its error at start: fix "
            "that), or emit through a pipeline of your own: otel_audit.configure().logger"
        )
    global _warned_global
    if not _warned_global:
        _warned_global = True
        from otel_audit import config

        given = config.ENV_CONFIG if env.get(config.ENV_CONFIG) else config.ENV_KEYS_DIR
        chosen = env.get(ENV_CONFIGURATOR, "").strip()
        _log.warning(
            "AuditLogger(): %s, although %s is set for signed audit records (%s is %s). Under "
            "opentelemetry-instrument set %s=%s; in code, emit through otel_audit.configure().logger",
            problem, given, ENV_CONFIGURATOR, repr(chosen) if chosen else "unset", ENV_CONFIGURATOR, NAME,
        )
    return False
