"""What every HTTP exporter of otel-audit shares: settings in the collector's shape, TLS, gzip,
retries with backoff and jitter that honour Retry-After, and an export() that never raises.

A vendor exporter subclasses `HttpLogExporter` and provides
  * `_requests(batch)`: the HTTP requests one batch becomes (each a `Request`), and
  * `_judge(request, response)`: a `Verdict` — delivered, retry (maybe after N seconds), or a
    permanent rejection with the vendor's reason. Partial failures return a smaller request to
    retry (e.g. the Elasticsearch items that got 429).
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_audit.errors import ConfigError

_log = logging.getLogger(__name__)

#: Statuses worth another try: throttling, and the server's or a proxy's transient failures.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


# -- settings -------------------------------------------------------------------------------------


def duration(value: Any, where: str) -> float:
    from otel_audit.exporters.file import parse_duration

    return parse_duration(value, where=where)


@dataclass(frozen=True)
class RetrySettings:
    """The collector's `retry_on_failure` (configretry): exponential backoff with jitter."""

    enabled: bool = True
    initial_interval: float = 5.0
    max_interval: float = 30.0
    max_elapsed_time: float = 300.0  # 0: never give up
    multiplier: float = 1.5
    randomization_factor: float = 0.5

    @classmethod
    def from_config(cls, cfg: Any, where: str) -> RetrySettings:
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping (enabled, initial_interval, max_interval, max_elapsed_time)")
        kw: dict[str, Any] = {}
        for k, v in cfg.items():
            w = f"{where}.{k}"
            if k == "enabled":
                if not isinstance(v, bool):
                    raise ConfigError(f"{w}: expected true or false")
                kw[k] = v
            elif k in ("initial_interval", "max_interval", "max_elapsed_time"):
                kw[k] = duration(v, w)
            elif k in ("multiplier", "randomization_factor"):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ConfigError(f"{w}: expected a non-negative number")
                kw[k] = float(v)
            else:
                raise ConfigError(f"{w}: unknown key; valid keys: enabled, initial_interval, max_interval, "
                                  "max_elapsed_time, multiplier, randomization_factor")
        return cls(**kw)

    def delays(self) -> Any:
        """Successive waits, jittered; stops when max_elapsed_time would be passed."""
        interval = self.initial_interval
        while True:
            r = self.randomization_factor
            yield interval * (1 + random.uniform(-r, r))
            interval = min(interval * self.multiplier, self.max_interval)


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @classmethod
    def from_config(cls, cfg: Any, where: str) -> TlsSettings:
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping (ca_file, cert_file, key_file, insecure_skip_verify)")
        kw: dict[str, Any] = {}
        for k, v in cfg.items():
            if k in ("ca_file", "cert_file", "key_file"):
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"{where}.{k}: expected a file path")
                kw[k] = v
            elif k in ("insecure_skip_verify", "insecure"):
                if not isinstance(v, bool):
                    raise ConfigError(f"{where}.{k}: expected true or false")
                if k == "insecure_skip_verify":
                    kw[k] = v
            else:
                raise ConfigError(f"{where}.{k}: unknown key; valid keys: ca_file, cert_file, key_file, insecure_skip_verify")
        if ("cert_file" in kw) != ("key_file" in kw):
            raise ConfigError(f"{where}: cert_file and key_file go together")
        return cls(**kw)

    def apply(self, session: requests.Session) -> None:
        # trust_env=False below keeps REQUESTS_CA_BUNDLE from overriding an explicit ca_file
        if self.insecure_skip_verify:
            session.verify = False
        elif self.ca_file:
            session.verify = self.ca_file
        if self.cert_file:
            session.cert = (self.cert_file, self.key_file)  # type: ignore[assignment]


@dataclass
class Request:
    """One HTTP request an exporter wants sent; `records` is how many audit records it carries."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]
    records: int
    context: Any = None  # the subclass's own bookkeeping (e.g. which items are in it)


@dataclass
class Verdict:
    delivered: int = 0  # records now safely at the destination (incl. duplicates it already had)
    retry: Request | None = None  # what to send again; None: nothing
    retry_after: float | None = None  # seconds the server asked us to wait
    rejected: int = 0  # records refused for good
    reason: str = ""  # the vendor's words, for the log and the counters


@dataclass
class Counters:
    """What an exporter did, for tests, logs and metrics."""

    delivered: int = 0
    retries: int = 0
    rejected: int = 0
    failed: int = 0  # given up after retries (outage longer than max_elapsed_time)
    reasons: list[str] = field(default_factory=list)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpLogExporter(LogRecordExporter):
    """Base of the vendor exporters. Subclasses set `name` and implement _requests and _judge."""

    name = "http"

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        tls: TlsSettings | None = None,
        retry: RetrySettings | None = None,
        compression: bool = True,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be more than zero seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.retry = retry or RetrySettings()
        self.compression = compression
        self.extra_headers = dict(headers or {})
        self.session = session or requests.Session()
        self.session.trust_env = False
        (tls or TlsSettings()).apply(self.session)
        self.counters = Counters()
        self.last_permanent = False  # did the last failed export fail only on permanent rejections?
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # subclass hooks

    def _requests(self, batch: Sequence[Any]) -> list[Request]:
        raise NotImplementedError

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        raise NotImplementedError

    # shared machinery

    def gzip(self, body: bytes, headers: dict[str, str]) -> bytes:
        if not self.compression:
            return body
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body, compresslevel=6)

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        if self._stop.is_set():
            _log.error("%s exporter is shut down; %d audit record(s) not sent", self.name, len(batch))
            self.counters.failed += len(batch)
            return LogRecordExportResult.FAILURE
        try:
            reqs = self._requests(batch)
        except Exception as exc:  # a record we cannot encode: loud, counted, never a raise
            _log.error("%s exporter cannot encode a batch of %d audit record(s): %s", self.name, len(batch), exc)
            self.counters.rejected += len(batch)
            return LogRecordExportResult.FAILURE
        ok = True
        failed_before = self.counters.failed
        for req in reqs:
            ok = self._send(req) and ok
        # FAILURE with nothing given up on means: the rest was refused for good (counted, logged);
        # a durable spool then moves on instead of retrying forever
        self.last_permanent = not ok and self.counters.failed == failed_before
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def _send(self, req: Request) -> bool:
        delays = self.retry.delays()
        started = time.monotonic()
        current: Request | None = req
        ok = True
        while current is not None:
            try:
                resp = self.session.request(current.method, current.url, data=current.body,
                                            headers=current.headers, timeout=self.timeout)
                verdict = self._judge(current, resp)
            except requests.RequestException as exc:
                verdict = Verdict(retry=current, reason=f"{type(exc).__name__}: {_short(exc)}")
            self.counters.delivered += verdict.delivered
            if verdict.rejected:
                ok = False
                self.counters.rejected += verdict.rejected
                self._reason(verdict.reason)
                _log.error("%s rejected %d audit record(s) for good: %s", self.name, verdict.rejected, verdict.reason)
            current = verdict.retry
            if current is None:
                break
            wait = next(delays)
            if verdict.retry_after is not None:
                wait = max(wait, verdict.retry_after)
            elapsed = time.monotonic() - started
            limit = self.retry.max_elapsed_time
            if not self.retry.enabled or (limit and elapsed + wait > limit):
                self.counters.failed += current.records
                self._reason(verdict.reason)
                _log.error("%s gave up on %d audit record(s) after %.0fs: %s", self.name, current.records,
                           elapsed, verdict.reason)
                return False
            self.counters.retries += 1
            _log.warning("%s: %s; retrying %d record(s) in %.1fs", self.name, verdict.reason, current.records, wait)
            if self._stop.wait(wait):
                self.counters.failed += current.records
                _log.error("%s shut down while retrying; %d audit record(s) not delivered", self.name, current.records)
                return False
        return ok

    def _reason(self, reason: str) -> None:
        with self._lock:
            if len(self.counters.reasons) < 50:
                self.counters.reasons.append(reason)

    def shutdown(self) -> None:
        self._stop.set()
        self.session.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def common_settings(cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """timeout, tls, retry_on_failure, headers and compression, as the collector names them."""
    out: dict[str, Any] = {}
    if "timeout" in cfg:
        out["timeout"] = duration(cfg["timeout"], f"{where}.timeout")
    out["tls"] = TlsSettings.from_config(cfg.get("tls"), f"{where}.tls")
    out["retry"] = RetrySettings.from_config(cfg.get("retry_on_failure"), f"{where}.retry_on_failure")
    headers = cfg.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError(f"{where}.headers: expected a mapping of header names to strings")
        out["headers"] = dict(headers)
    return out


COMMON_KEYS = ("timeout", "tls", "retry_on_failure", "headers", "sending_queue", "batch")
