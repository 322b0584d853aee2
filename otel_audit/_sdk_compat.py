"""The one place that touches OpenTelemetry internals (DESIGN: "Private SDK access lives in one
compatibility module"; docs/compatibility.md has the pin policy).

Every function below names the SDK releases it was checked against and what happens when the
private thing is gone: a public fallback where one exists, else an `SdkCompatError` that names the
installed SDK and what to do. tests/test_sdk_compat.py fails when any other module of the package
reaches into a private OpenTelemetry name.

Modules whose name starts with an underscore but that are the SDK's only, documented home of an
API are not private here: `opentelemetry._logs` (the Logs API), `opentelemetry.sdk._logs` and
`opentelemetry.sdk._logs.export` (the Logs SDK) and the OTLP exporters' `..._log_exporter`
modules. Only the names in their ``__all__`` are used (the test checks that too).

Checked against opentelemetry-api/-sdk/-exporter-otlp 1.40.0 (the lowest allowed; tests/run-lowest.sh
runs the tests that cover this module on it) and 1.45.2 (the highest, the main test run), and read
against the sources of 1.39.1, 1.41.1, 1.42.1, 1.43.0 and 1.44.0.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import Logger as SDKLogger
from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.util.types import AnyValue

# SdkConfigurator (the SDK configurator's base class) is made on first access, see __getattr__.
__all__ = [
    "SdkCompatError",
    "attributes_view",
    "batch_default_max_queue_size",
    "built_by_sdk_log_setup",
    "enable_provider",
    "is_proxy_provider",
    "logger_scope",
    "otlp_grpc_exporter_base",
    "otlp_http_exporter_base",
    "provider_processors",
    "sdk_logger",
    "sdk_version",
    "severity_int",
    "unlimited_limits",
    "writable_attributes",
]

_log = logging.getLogger(__name__)

TESTED = "1.40.0 to 1.45.2"
#: The range pyproject.toml allows for opentelemetry-api/-sdk/-exporter-otlp (a test keeps them equal).
SUPPORTED = ">=1.40,<1.46"


class SdkCompatError(RuntimeError):
    """The installed OpenTelemetry SDK lacks something otel-audit relies on (say which, and what to do)."""


def sdk_version() -> str:
    """The installed opentelemetry-sdk version, for messages."""
    from importlib import metadata

    try:
        return metadata.version("opentelemetry-sdk")
    except metadata.PackageNotFoundError:  # pragma: no cover - the SDK imported above
        return "unknown"


def _unsupported(what: str) -> SdkCompatError:
    return SdkCompatError(
        f"opentelemetry-sdk {sdk_version()} has no {what}; otel-audit is tested with {TESTED}: "
        f"install opentelemetry-sdk{SUPPORTED} (pip install otel-audit resolves one)"
    )


# -- severity ---------------------------------------------------------------------------------------
# SeverityNumber is an enum.Enum; `.value` is the public spelling, but on CPython 3.11 the enum
# property costs ~120-220 ns a read against ~30-70 ns through a C attrgetter over the member's
# `_value_` slot (`python bench/run.py --only sdk_compat`). The signing and spool processors read it
# for every record: ~0.2-0.3 us a record, about a tenth of what signing adds to the SDK's own cost
# (the signing_overhead_ratio goal is <= 1.10), so `_value_` is kept, after checking at import that
# it agrees with `.value` for every member. Checked against 1.40.0 - 1.45.2 (SeverityNumber unchanged).

def _severity_reader() -> Callable[[SeverityNumber], int]:
    fast = operator.attrgetter("_value_")
    try:
        if all(fast(s) == s.value and type(s.value) is int for s in SeverityNumber):
            return fast
    except AttributeError:
        pass
    _log.debug("SeverityNumber has no _value_ slot; reading .value")
    return operator.attrgetter("value")


#: severity_int(SeverityNumber.INFO) == 9: the number of a SeverityNumber (not None).
severity_int: Callable[[SeverityNumber], int] = _severity_reader()


# -- attributes -------------------------------------------------------------------------------------
# The SDK wraps a record's attributes in opentelemetry.attributes.BoundedAttributes: a Mapping whose
# methods take a lock and re-check limits, and whose backing dict is `_dict` (1.40.0 - 1.45.2: a
# dict, or an OrderedDict, both dict subclasses). Walking it is ~5x faster than walking the mapping
# (~1.5-2.3 us for 8 attributes, ~5% of a signed record; bench sdk_compat); writing it is how the
# signing processor adds its integrity attributes past the record limits (a truncated or evicted
# digest would make the record unverifiable).

def attributes_view(attrs: Any) -> Mapping[str, AnyValue]:
    """Read-only: the plain dict behind `attrs` (BoundedAttributes), `attrs` itself if it is a dict or
    another mapping, {} for None. Fallback without `_dict`: the mapping itself (slower, same content)."""
    if attrs is None:
        return {}
    inner = getattr(attrs, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return attrs if isinstance(attrs, Mapping) else dict(attrs)


def writable_attributes(log_record: Any) -> MutableMapping[str, AnyValue]:
    """The dict to write `log_record`'s attributes into without the SDK's limits (an API LogRecord).
    Fallback without `_dict`: the record's attributes are replaced by a plain dict copy (public: the
    SDK and its exporters accept any mapping there)."""
    attrs = log_record.attributes
    inner = getattr(attrs, "_dict", None)
    if isinstance(inner, dict):
        return inner
    if type(attrs) is dict:
        return attrs
    d: dict[str, AnyValue] = dict(attrs or {})
    log_record.attributes = d
    return d


# -- limits -------------------------------------------------------------------------------------------
# "No limits" for a ReadWriteLogRecord. 1.45 spells it LogRecordLimits.UNSET (and adds the
# max_log_record_* names in 1.44); 1.40 - 1.44 have no UNSET and always fill in a default of 128
# attributes, but ReadWriteLogRecord reads the limits' public attributes, where None means unlimited
# (BoundedAttributes(maxlen=None)). Public API in every version: only the spelling differs.

_LIMIT_NAMES = ("max_attributes", "max_attribute_length", "max_log_record_attributes",
                "max_log_record_attribute_length")


def unlimited_limits() -> LogRecordLimits:
    """LogRecordLimits under which the SDK drops or truncates no attribute (ignoring OTEL_*_LIMIT)."""
    import inspect

    # UNSET (1.45) or an explicit 0 (1.40 - 1.44) keeps the constructor from reading OTEL_*_LIMIT, which
    # raises on a bad value; the limits are then lifted through the public attributes.
    names = [n for n in _LIMIT_NAMES if n in inspect.signature(LogRecordLimits).parameters]
    limits = LogRecordLimits(**dict.fromkeys(names, getattr(LogRecordLimits, "UNSET", 0)))
    for name in _LIMIT_NAMES:
        if hasattr(limits, name):
            setattr(limits, name, None)
    return limits


# -- the batch processor's default queue -------------------------------------------------------------
# BatchLogRecordProcessor's default max_queue_size is OTEL_BLRP_MAX_QUEUE_SIZE or 2048, computed by its
# private static _default_max_queue_size() (1.40.0 - 1.45.2; a bad env value logs and gives 2048).
# Fallback without it: the same rule, from the spec's variable and default.

def batch_default_max_queue_size() -> int:
    """The queue size a BatchLogRecordProcessor built without max_queue_size gets."""
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    default = getattr(BatchLogRecordProcessor, "_default_max_queue_size", None)
    if callable(default):
        return int(default())
    try:  # pragma: no cover - the SDK's method exists in every checked version
        return int(os.environ.get("OTEL_BLRP_MAX_QUEUE_SIZE", "2048"))
    except ValueError:  # pragma: no cover
        return 2048


# -- the logger behind the API's proxy ------------------------------------------------------------
# opentelemetry._logs.get_logger() before set_logger_provider() returns a ProxyLogger
# (opentelemetry._logs._internal, 1.40.0 - 1.45.2) whose `_logger` property is the logger it
# forwards to right now: the SDK Logger once a provider is set, a NoOpLogger before. The API has no
# public way to ask. Fallback without it: None, so AuditLogger emits through the public Logger.emit
# (records then get the provider's limits; it logs that once).

try:
    from opentelemetry._logs._internal import ProxyLogger as _ProxyLogger
except ImportError:  # pragma: no cover - present in every checked version
    _ProxyLogger = None  # type: ignore[assignment,misc]

_warned_proxy = False


def sdk_logger(logger: object) -> SDKLogger | None:
    """The OpenTelemetry SDK Logger that `logger` emits into (itself, or the one behind the API's
    proxy), or None when it is some other Logger (no-op, or another implementation)."""
    global _warned_proxy
    if isinstance(logger, SDKLogger):
        return logger
    if _ProxyLogger is None:  # pragma: no cover
        if not _warned_proxy:
            _warned_proxy = True
            _log.warning("opentelemetry-api %s has no ProxyLogger; an AuditLogger made before the global "
                         "LoggerProvider was set emits with the provider's attribute limits", sdk_version())
        return None
    if isinstance(logger, _ProxyLogger):
        real = logger._logger
        return real if isinstance(real, SDKLogger) else None
    return None


def logger_scope(logger: SDKLogger) -> Any:
    """The InstrumentationScope of an SDK Logger: the public `instrumentation_scope` property
    (1.41 and later), else its `_instrumentation_scope` attribute (1.40)."""
    try:
        return logger.instrumentation_scope
    except AttributeError:
        pass
    try:
        return logger._instrumentation_scope
    except AttributeError:
        raise _unsupported("Logger.instrumentation_scope") from None


# -- the audit provider: enabled, and its processors ---------------------------------------------
# OTEL_SDK_DISABLED=true: the SDK LoggerProvider reads it at construction into its private `_disabled`
# (1.40.0 - 1.45.2) and then hands out NoOpLoggers; it has no parameter to say otherwise. A provider's
# processors are held by its private `_multi_log_record_processor` (Synchronous- or Concurrent-
# MultiLogRecordProcessor) in `_log_record_processors` (1.40.0 - 1.45.2); there is no public accessor.
# Fallbacks without them: the provider stays disabled (otel_audit.config then refuses with a ConfigError
# rather than drop every audit event), and no processor is seen (AuditLogger() through a global provider
# counts only the providers otel_audit.config built as audit pipelines).


def enable_provider(provider: Any) -> None:
    """Make an SDK LoggerProvider hand out real loggers although OTEL_SDK_DISABLED=true (for the audit
    pipeline only: the caller checks the result with a fresh get_logger())."""
    if hasattr(provider, "_disabled"):
        provider._disabled = False


def provider_processors(provider: object) -> tuple[Any, ...]:
    """The LogRecordProcessors added to an SDK LoggerProvider, in order; () for another provider."""
    multi = getattr(provider, "_multi_log_record_processor", None)
    procs = getattr(multi, "_log_record_processors", ())
    return tuple(procs) if isinstance(procs, (tuple, list)) else ()


# The global provider before set_logger_provider(): the API's ProxyLoggerProvider
# (opentelemetry._logs._internal, 1.40.0 - 1.45.2), not exported. Fallback without it: by class name.
try:
    from opentelemetry._logs._internal import ProxyLoggerProvider as _ProxyLoggerProvider
except ImportError:  # pragma: no cover - present in every checked version
    _ProxyLoggerProvider = None  # type: ignore[assignment,misc]


def is_proxy_provider(provider: object) -> bool:
    """Whether `provider` is the API's placeholder for a global LoggerProvider not set yet."""
    if _ProxyLoggerProvider is None:  # pragma: no cover
        return type(provider).__name__ == "ProxyLoggerProvider"
    return isinstance(provider, _ProxyLoggerProvider)


# -- the SDK's configurator -----------------------------------------------------------------------
# opentelemetry.sdk._configuration._OTelSDKConfigurator (1.40.0 - 1.45.2) is the class the SDK tells
# distros to subclass ("distros should subclass this Configurator"); its hook is `_configure(**kw)`,
# which runs _initialize_components(**kw) (kw: setup_logging_handler, ...). The SDK builds its logs
# pipeline in _init_logging (same module), from the OTEL_LOGS_EXPORTER names, and installs a
# LoggerProvider there, which the API refuses with a warning on logger
# "opentelemetry._logs._internal" when one is already set.

_SDK_CONFIGURATION = "opentelemetry.sdk._configuration"
_SDK_INIT_LOGGING = "_init_logging"
_API_LOGS_LOGGER = "opentelemetry._logs._internal"
_configurator: type | None = None


def __getattr__(name: str) -> Any:
    # SdkConfigurator is built on first use: importing the SDK's configuration module pulls in the
    # trace and metrics SDKs, which the exporters and the CLI (importers of this module) do not need.
    if name == "SdkConfigurator":
        return _sdk_configurator()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sdk_configurator() -> type:
    global _configurator
    if _configurator is not None:
        return _configurator
    import importlib

    try:
        module = importlib.import_module(_SDK_CONFIGURATION)
        base: Any = module._OTelSDKConfigurator
    except (ImportError, AttributeError) as exc:  # pragma: no cover - present in every checked version
        raise ImportError(f"opentelemetry-sdk {sdk_version()} has no {_SDK_CONFIGURATION}._OTelSDKConfigurator, "
                          f"which the otel_audit configurator extends; otel-audit is tested with {TESTED}: install "
                          f"opentelemetry-sdk{SUPPORTED}") from exc
    if not callable(getattr(module, _SDK_INIT_LOGGING, None)):  # pragma: no cover
        _log.warning("opentelemetry-sdk %s has no %s.%s: the warning for an otel_audit exporter built by the "
                     "SDK's own configurator (outside the audit pipeline) is not given", sdk_version(),
                     _SDK_CONFIGURATION, _SDK_INIT_LOGGING)

    class SdkConfigurator(base):  # type: ignore[misc]  # base is the SDK class found at run time
        """The SDK's configurator with its private hook under public names: a subclass overrides
        `configure_pipeline(**kwargs)` and calls `configure_sdk(**kwargs)` or `configure_sdk_without_logs`."""

        def _configure(self, **kwargs: Any) -> None:
            self.configure_pipeline(**kwargs)

        def configure_pipeline(self, **kwargs: Any) -> None:
            """What `opentelemetry-instrument` runs; by default exactly the SDK's configuration."""
            self.configure_sdk(**kwargs)

        def configure_sdk(self, **kwargs: Any) -> None:
            """The SDK's own configuration of traces, metrics and logs."""
            super()._configure(**kwargs)

        def configure_sdk_without_logs(self, **kwargs: Any) -> None:
            """The SDK's configuration of traces and metrics; its logs part builds no exporter and no logging
            handler, and its LoggerProvider is refused (one is already set) without the API's warning."""
            kwargs["setup_logging_handler"] = False
            saved = os.environ.get("OTEL_LOGS_EXPORTER")
            os.environ["OTEL_LOGS_EXPORTER"] = "none"
            try:
                with _quiet_provider_override():
                    super()._configure(**kwargs)
            finally:
                if saved is None:
                    os.environ.pop("OTEL_LOGS_EXPORTER", None)
                else:
                    os.environ["OTEL_LOGS_EXPORTER"] = saved

    SdkConfigurator.__module__ = __name__
    _configurator = SdkConfigurator
    return SdkConfigurator


class _DropOverride(logging.Filter):
    """Drops the API's 'Overriding of current LoggerProvider is not allowed'."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LoggerProvider" not in record.getMessage()


@contextmanager
def _quiet_provider_override() -> Iterator[None]:
    api_log = logging.getLogger(_API_LOGS_LOGGER)
    quiet = _DropOverride()
    api_log.addFilter(quiet)
    try:
        yield
    finally:
        api_log.removeFilter(quiet)


def built_by_sdk_log_setup(frame: FrameType | None, depth: int = 12) -> bool:
    """Whether `frame` or one of its `depth` callers is the SDK configurator's _init_logging (the SDK
    building the OTEL_LOGS_EXPORTER exporters). Our own configurator also runs inside that module, so
    the function is checked, not only the module."""
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == _SDK_CONFIGURATION and frame.f_code.co_name == _SDK_INIT_LOGGING:
            return True
        frame = frame.f_back
    return False


# -- the OTLP log exporters (opentelemetry-exporter-otlp-proto-http / -grpc) --------------------------
# The exporters return SUCCESS or FAILURE and keep the status that made them fail to themselves;
# otel_audit.exporters.otlp needs it (a 400/413 or INVALID_ARGUMENT judges the data, anything else
# does not), and after os.fork() it needs a fresh transport. Both are private:
#   HTTP 1.40 - 1.44: self._export(data, timeout) -> requests.Response; the session is self._session and
#                     each POST passes verify=self._certificate_file.
#   HTTP 1.45:        self._client.export(data) -> a result with .status_code (opentelemetry-exporter-
#                     otlp-common's _OTLPHTTPClient); the session is self._client._transport._session.
#   gRPC 1.40 - 1.45: the stub is self._client, built (and rebuilt on reconnection) by
#                     self._initialize_channel_and_stub(); self._shutdown says it is shut down.
# 1.39's gRPC exporter has no _initialize_channel_and_stub (so no way to give a forked child a new
# channel without re-deriving the SDK's channel settings): that is why the lowest allowed is 1.40.

def otlp_http_exporter_base() -> type:
    """The SDK's OTLP/HTTP OTLPLogExporter with two public hooks: `on_answer(answer)` is called with
    every HTTP answer (it has `.status_code`), `renew_session(make)` replaces the requests session
    with `make(old)` (after a fork)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    class ObservedHttpExporter(OTLPLogExporter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            client = getattr(self, "_client", None)
            if client is not None and callable(getattr(client, "export", None)):  # 1.45
                # a wrapper that forwards everything to the client and records each answer
                self._client = _AnswerRecordingClient(client, self.on_answer)  # type: ignore[assignment]
            elif callable(getattr(self, "_export", None)) and hasattr(self, "_session"):  # 1.40 - 1.44
                inner: Callable[..., Any] = self._export  # type: ignore[has-type]  # 1.40 - 1.44 only

                def export(*a: Any, **kw: Any) -> Any:
                    answer = inner(*a, **kw)
                    self.on_answer(answer)
                    return answer

                self._export = export
            else:  # pragma: no cover
                raise _unsupported("OTLP/HTTP log exporter transport that otel-audit can observe")

        def on_answer(self, answer: Any) -> None:
            """Called with every HTTP answer of an export; override."""

        def skip_tls_verify(self, session: Any) -> None:
            """Do not verify the server's certificate (tls.insecure_skip_verify) on `session`, the requests
            session the exporter was given. 1.45 sets the session's verify once, at construction; 1.40 - 1.44
            pass verify=self._certificate_file with every POST."""
            session.verify = False
            if hasattr(self, "_certificate_file") and not hasattr(self, "_client"):
                self._certificate_file = False

        def renew_session(self, make: Callable[[Any], Any]) -> None:
            """Replace the exporter's requests.Session by make(old_session)."""
            client = getattr(self, "_client", None)
            holder = getattr(getattr(client, "_inner", client), "_transport", None)
            if holder is None:
                holder = self  # 1.40 - 1.44: the exporter holds the session
            session = getattr(holder, "_session", None)
            if session is not None:
                holder._session = make(session)  # type: ignore[union-attr]  # the SDK's client or exporter

    ObservedHttpExporter.__module__ = __name__
    return ObservedHttpExporter


class _AnswerRecordingClient:
    """The OTLP/HTTP exporter's client (1.45), passing each answer to a callback."""

    def __init__(self, inner: Any, on_answer: Callable[[Any], None]) -> None:
        self._inner = inner
        self._on_answer = on_answer

    def export(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        answer = self._inner.export(data, *args, **kwargs)
        self._on_answer(answer)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def otlp_grpc_exporter_base() -> type:
    """The SDK's OTLP/gRPC OTLPLogExporter with public hooks: `on_rpc_error(error)` is called with every
    failed Export call's grpc.RpcError, `renew_channel()` builds a new channel and stub (after a fork,
    the old one left alone), `is_shut_down()`."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    if not callable(getattr(OTLPLogExporter, "_initialize_channel_and_stub", None)):  # pragma: no cover
        raise _unsupported("OTLPLogExporter._initialize_channel_and_stub (gRPC; added in 1.40)")

    class ObservedGrpcExporter(OTLPLogExporter):
        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]  # unannotated in the SDK
            # a wrapper that forwards the stub's calls and records each failed Export
            self._client = _ErrorRecordingStub(self._client, self.on_rpc_error)  # type: ignore[assignment]

        def on_rpc_error(self, error: Exception) -> None:
            """Called with every failed Export call's grpc.RpcError; override."""

        def renew_channel(self) -> None:
            """A new channel and stub; the old channel is neither used nor closed."""
            self._initialize_channel_and_stub()

        def is_shut_down(self) -> bool:
            return bool(self._shutdown)

    ObservedGrpcExporter.__module__ = __name__
    return ObservedGrpcExporter


class _ErrorRecordingStub:
    """The SDK's gRPC LogsService stub, passing the error of each failed call to a callback."""

    def __init__(self, inner: Any, on_error: Callable[[Exception], None]) -> None:
        self._inner = inner
        self._on_error = on_error

    def Export(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - the stub's name
        import grpc

        try:
            return self._inner.Export(*args, **kwargs)
        except grpc.RpcError as error:
            self._on_error(error)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
