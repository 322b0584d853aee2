"""What every HTTP exporter of otel-audit shares: settings in the collector's shape, TLS, gzip,
retries with backoff and jitter that honour Retry-After, and an export() that never raises.

A vendor exporter subclasses `HttpLogExporter` and provides
  * `_requests(batch)`: the HTTP requests one batch becomes (each a `Request` naming the
    positions in the batch of the records it carries), and
  * `_judge(request, response)`: a `Verdict` — which records were delivered, what to retry
    (maybe after N seconds), which records were refused for good with the vendor's reason, and
    which smaller requests to send instead (a split, so that a refusal lands on single records).

The refusal policy, the same for every exporter of otel-audit (a durable spool relies on it):

* after each `export(batch)`, `last_rejected` is the tuple of the positions in `batch` of the
  records refused for good: ones the destination judged malformed (a 400 for that record, an
  Elasticsearch mapping error, a Datadog entry too large to send), or that cannot be encoded at
  all. Each is logged with the reason and counted in `counters.rejected`. `()` when none;
* `export` returns SUCCESS only when every record of the batch was delivered or is in
  `last_rejected`; otherwise FAILURE, and a spool sends the whole batch again later (duplicates
  are fine: the verifier accepts them);
* a refusal of the credentials (401, 403, a revoked token) or of the configuration (a redirect,
  404, an unknown index) says nothing about the records: it is retried per `retry_on_failure`,
  then the export returns FAILURE and the records stay in the spool. It is never a rejection;
* a content refusal of a request of several records that does not say which record is to blame
  (a 400, a 413) splits the request in halves (`_split`) until the blame lands on single
  records; those that go through on their own are delivered.

Fork safety: after `os.fork()` (gunicorn `--preload`, multiprocessing's fork start method) the
child must not use the parent's pooled connections, locks or threads. Every exporter registers an
`os.register_at_fork(after_in_child=...)` hook that holds only a weak reference to it; in the
child it gets a fresh `ExporterSession` (same TLS, proxies and headers, no connections) and fresh
locks (`_after_fork_in_child`, which subclasses extend).
"""

from __future__ import annotations

import email.utils
import gzip
import ipaddress
import logging
import random
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_audit import lifecycle
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.safe import guard_third_party_loggers, redact_text

_log = logging.getLogger(__name__)
guard_third_party_loggers()  # urllib3's DEBUG lines name the path and query of each request

#: Statuses worth another try: throttling, and the server's or a proxy's transient failures.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses that refuse the credentials, never the records: retried, then FAILURE, never a rejection.
CREDENTIAL_STATUSES = frozenset({401, 403, 407})


# -- settings -------------------------------------------------------------------------------------


def duration(value: Any, where: str) -> float:
    return _settings.parse_duration(value, where=where)


def whole_number(value: Any, where: str, least: int, most: int) -> int:
    """A whole number from `least` to `most` (not a boolean, not text); ConfigError naming the range else."""
    if isinstance(value, str):  # the shared parser takes numeric text; this older helper does not
        raise ConfigError(f"{where}: expected a whole number from {least} to {most}, got {value!r}")
    return int(_settings.Whole(least, most)(value, where))


MAX_COUNT = 100_000_000  # the largest count an exporter setting may give (as otel_audit.config's)
MAX_MULTIPLIER = _settings.MAX_MULTIPLIER


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
        return _settings.Retry()(cfg, where)  # type: ignore[no-any-return]

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
    #: the lowest / highest TLS version ("1.0" to "1.3"), as the collector's configtls; None: Python's
    min_version: str | None = None
    max_version: str | None = None

    def __post_init__(self) -> None:
        for key in ("min_version", "max_version"):
            value = getattr(self, key)
            if value is not None:
                _settings.tls_version(value, f"tls.{key}")  # "1.0" to "1.3", else a ConfigError naming it

    @classmethod
    def from_config(cls, cfg: Any, where: str) -> TlsSettings:
        return _settings.Tls()(cfg, where)  # type: ignore[no-any-return]

    def apply(self, session: requests.Session) -> None:
        # trust_env=False (ExporterSession) keeps REQUESTS_CA_BUNDLE from overriding an explicit ca_file
        if self.insecure_skip_verify:
            session.verify = False
        elif self.ca_file:
            session.verify = self.ca_file
        if self.cert_file:
            # (cert_file, None): a certificate file that holds its key too, as requests reads it
            session.cert = (self.cert_file, self.key_file)  # type: ignore[assignment]
        if self.min_version or self.max_version:
            session.mount("https://", TlsVersionAdapter(_TLS_VERSION.get((self.min_version or "").strip()),
                                                        _TLS_VERSION.get((self.max_version or "").strip())))


_TLS_VERSION = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
                "1.3": ssl.TLSVersion.TLSv1_3}


class TlsVersionAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose HTTPS connections (direct or through a proxy) keep to a TLS version range
    (urllib3's ssl_minimum_version / ssl_maximum_version)."""

    __attrs__ = [*requests.adapters.HTTPAdapter.__attrs__, "minimum", "maximum"]  # kept when pickled

    def __init__(self, minimum: ssl.TLSVersion | None, maximum: ssl.TLSVersion | None) -> None:
        self.minimum, self.maximum = minimum, maximum  # before super().__init__, which makes the pool manager
        super().__init__()

    def _versions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.minimum is not None:
            out["ssl_minimum_version"] = self.minimum
        if self.maximum is not None:
            out["ssl_maximum_version"] = self.maximum
        return out

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **{**pool_kwargs, **self._versions()})

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return super().proxy_manager_for(proxy, **{**proxy_kwargs, **self._versions()})


def transport_settings(prefix: str, *, timeout: float, tls_env: bool = False, ca_env: str = "",
                       headers: bool = True) -> list[_settings.Setting]:
    """The settings every HTTP exporter shares, as the collector's confighttp names them.

    `prefix` is the exporter's environment prefix (OTEL_AUDIT_<EXPORTER>_); `tls_env` adds
    <prefix>TLS_CA_FILE / TLS_INSECURE_SKIP_VERIFY (read into `tls` when it is not given)."""
    S = _settings.Setting
    out = [
        S("timeout", _settings.Duration(), timeout, (prefix + "TIMEOUT",), "how long one request may take"),
        S("tls", _settings.Tls(), None, (), "TLS of the connection (see the shared blocks above)"),
        S("retry", _settings.Retry(), None, (), "retries with backoff and jitter (see the shared blocks above)",
          key="retry_on_failure"),
    ]
    if headers:
        out.append(S("headers", _settings.StrMap(), None, (), "extra HTTP headers of every request "
                     "(values may be credentials: never shown)", secret=True))
    out.append(S("proxy_from_env", _settings.Bool(), True, (), "use HTTP_PROXY / HTTPS_PROXY / NO_PROXY "
                 "as requests does (never for a loopback destination); false ignores them"))
    if ca_env:
        out.append(S("tls_ca_file", _settings.Text(nonempty=True, what="a file path"), None, (ca_env,),
                     "tls.ca_file when tls is not given", key=""))
    if tls_env:
        out += [
            S("tls_ca_file", _settings.Text(nonempty=True, what="a file path"), None, (prefix + "TLS_CA_FILE",),
              "tls.ca_file when tls is not given", key=""),
            S("tls_insecure_skip_verify", _settings.Bool(), False, (prefix + "TLS_INSECURE_SKIP_VERIFY",),
              "tls.insecure_skip_verify when tls is not given", key=""),
        ]
    return out


@dataclass
class Request:
    """One HTTP request an exporter wants sent; `indices` are the positions, in the batch given to
    export(), of the audit records it carries."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]
    indices: tuple[int, ...]
    context: Any = None  # the subclass's own bookkeeping (e.g. which items are in it)

    @property
    def records(self) -> int:
        return len(self.indices)


@dataclass
class Verdict:
    delivered: Sequence[int] = ()  # batch positions now safely at the destination (incl. duplicates)
    retry: Request | None = None  # what to send again; None: nothing
    retry_after: float | None = None  # seconds the server asked us to wait
    rejected: Sequence[int] = ()  # batch positions refused for good (malformed for the destination)
    reason: str = ""  # the vendor's words, for the log and the counters
    split: Sequence[Request] = ()  # smaller requests to send instead, each with its own retries


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


class _Outcome:
    """What became of the records of one export() call, by position in its batch."""

    __slots__ = ("delivered", "rejected")

    def __init__(self) -> None:
        self.delivered: set[int] = set()
        self.rejected: set[int] = set()


def register_after_fork(obj: Any, method: str = "_after_fork_in_child") -> None:
    """Call `obj.<method>()` in the child after every os.fork() (otel_audit.lifecycle.after_fork_in_child)."""
    lifecycle.after_fork_in_child(obj, method)


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` (a URL's hostname, IPv6 without brackets or with) is `localhost` or a loopback
    address (127.0.0.0/8, ::1, ::ffff:127.x.y.z): Go's net/http (the collector) never sends such a
    destination through a proxy named by the environment (golang.org/x/net/http/httpproxy), and
    neither does otel-audit: a sidecar collector on loopback is reached directly."""
    if not host:
        return False
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is not loopback anyway
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def url_host(url: str) -> str | None:
    """The hostname of `url`, or None when it has none or cannot be parsed."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def environ_proxies(url: str) -> dict[str, str]:
    """The proxies for `url` from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (either case), none when NO_PROXY
    covers its host, exactly as requests picks them (`requests.utils.get_environ_proxies`), and none
    for a loopback destination (`is_loopback_host`), as the collector does. The one place every HTTP
    exporter of otel-audit (and the otlphttp exporter's session) decides the environment's proxies."""
    if is_loopback_host(url_host(url)):
        return {}
    return requests.utils.get_environ_proxies(url)


class ExporterSession(requests.Session):
    """The exporters' session: of the environment, it reads the proxy variables and nothing else.

    requests' own `trust_env` would also add credentials from ~/.netrc to requests without a word,
    and let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a configured `tls.ca_file`; so `trust_env`
    is off, and each request takes its proxy from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (either case),
    bypassed for hosts in NO_PROXY and for loopback destinations (`environ_proxies`), unless
    `proxy_from_env` is False (the exporters' `proxy_from_env: false`) or the session has proxies of
    its own (`proxy_url`), which then win (for every destination, as the collector's proxy_url).
    Credentials in a proxy URL are how requests authenticates to the proxy (Proxy-Authorization);
    nothing else is added.
    """

    def __init__(self, proxy_from_env: bool = True) -> None:
        super().__init__()
        self.trust_env = False
        self.proxy_from_env = proxy_from_env

    # (unannotated: the parameter types are private aliases of the requests stubs)
    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.proxy_from_env and not settings.get("proxies"):
            settings["proxies"] = environ_proxies(url)
        return settings


class EnvironmentSession(requests.Session):
    """requests' own session, environment and all (`trust_env`: proxies, REQUESTS_CA_BUNDLE, netrc), as
    the SDK's OTLP/HTTP exporter builds it, with two differences: a loopback destination never goes
    through a proxy from the environment (`environ_proxies`), and with `pin_verify` the session's own
    `verify` (a configured CA file, or False) is not replaced by REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
    (psf/requests#3829)."""

    def __init__(self, pin_verify: bool = False) -> None:
        super().__init__()
        self.pin_verify = pin_verify

    # (unannotated: the parameter types are private aliases of the requests stubs)
    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        given = dict(proxies or {})  # requests adds the environment's proxies to `proxies` in place
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.pin_verify and verify is None:
            settings["verify"] = self.verify
        if self.trust_env and is_loopback_host(url_host(url)):
            # only what the request and the session name themselves, not the environment's
            settings["proxies"] = {**self.proxies, **given}
        return settings


def fresh_session(old: requests.Session) -> requests.Session:
    """A new session with the settings of `old` (TLS, proxies, headers, auth) and none of its connections."""
    new: requests.Session
    if isinstance(old, ExporterSession):
        new = ExporterSession(old.proxy_from_env)
    elif isinstance(old, EnvironmentSession):
        new = EnvironmentSession(old.pin_verify)
    else:
        new = requests.Session()
    new.headers.clear()
    new.headers.update(old.headers)
    for attr in ("auth", "proxies", "verify", "cert", "trust_env", "max_redirects", "params", "stream"):
        setattr(new, attr, getattr(old, attr))
    if isinstance(new.proxies, dict):
        new.proxies = dict(new.proxies)
    versions = old.adapters.get("https://")
    if isinstance(versions, TlsVersionAdapter):
        new.mount("https://", TlsVersionAdapter(versions.minimum, versions.maximum))
    return new


class HttpLogExporter(LogRecordExporter):
    """Base of the vendor exporters. Subclasses set `name` and implement _requests and _judge
    (and `_split` when a content refusal of several records can be narrowed down).

    Proxies: by default each request goes through the proxy HTTP_PROXY / HTTPS_PROXY / ALL_PROXY
    names unless NO_PROXY covers its host or it is a loopback destination, as with requests and the
    collector; `proxy_from_env=False`
    ignores those variables, a subclass's `proxy_url` wins over them (see `ExporterSession`).
    ~/.netrc and REQUESTS_CA_BUNDLE are never read."""

    name = "http"

    def __init__(
        self,
        *,
        timeout: float | str = 10.0,
        tls: TlsSettings | Mapping[str, Any] | None = None,
        retry: RetrySettings | Mapping[str, Any] | None = None,
        compression: bool = True,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        proxy_from_env: bool | str = True,
    ) -> None:
        from otel_audit.instrument import warn_if_plain_sdk

        warn_if_plain_sdk(self)  # built by the SDK's own configurator: nothing it exports is signed
        # the collector's forms as well as the typed ones: timeout="10s", tls={"ca_file": ...}
        timeout = _settings.Duration()(timeout, "timeout")
        proxy_from_env = _settings.Bool()(proxy_from_env, "proxy_from_env")
        self.timeout = float(timeout)
        self.retry = _settings.Retry()(retry, "retry")
        self.compression = compression
        self.extra_headers = _settings.StrMap()(headers or {}, "headers")
        # A session passed in is used as it is (its proxies included), without the environment.
        self.session = session or ExporterSession(proxy_from_env)
        self.session.trust_env = False
        _settings.Tls()(tls, "tls").apply(self.session)
        self.counters = Counters()
        #: positions in the last export()'s batch of the records refused for good (see the module docstring)
        self.last_rejected: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._calls = threading.local()
        register_after_fork(self)

    # subclass hooks

    def _requests(self, batch: Sequence[Any]) -> list[Request]:
        raise NotImplementedError

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        raise NotImplementedError

    def _split(self, request: Request) -> list[Request]:
        """Smaller requests carrying the records of `request` (halves), or [] when it cannot be split."""
        return []

    # fork safety

    def _after_fork_in_child(self) -> None:
        """In a forked child: no connection, lock or thread-local state of the parent is used again."""
        self._renew_session()
        self._lock = threading.Lock()
        self._calls = threading.local()
        stopped = self._stop.is_set()
        self._stop = threading.Event()
        if stopped:
            self._stop.set()

    def _renew_session(self) -> None:
        self.session = fresh_session(self.session)

    # shared machinery

    def gzip(self, body: bytes, headers: dict[str, str]) -> bytes:
        if not self.compression:
            return body
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body, compresslevel=6)

    def _outcome(self) -> _Outcome:
        out = getattr(self._calls, "outcome", None)
        if out is None:  # used outside export() (e.g. a subclass's own request): kept, not reported
            out = self._calls.outcome = _Outcome()
        return out

    def _delivered(self, indices: Sequence[int]) -> None:
        if indices:
            self.counters.delivered += len(indices)
            self._outcome().delivered.update(indices)

    def _rejected(self, indices: Sequence[int], reason: str) -> None:
        """Records refused for good: counted, logged with the reason, reported in last_rejected."""
        if not indices:
            return
        self.counters.rejected += len(indices)
        self._outcome().rejected.update(indices)
        self._reason(reason)
        _log.error("%s rejected %d audit record(s) for good: %s", self.name, len(indices), reason)

    def _blame(self, request: Request, reason: str) -> Verdict:
        """A refusal of the content of `request`: its single record is rejected; several are split
        (so the blame lands on single records and the others are delivered)."""
        if request.records > 1:
            parts = self._split(request)
            if parts:
                _log.warning("%s: %s for %d records; sending them in smaller requests to find the one(s) "
                             "refused", self.name, reason, request.records)
                return Verdict(split=parts, reason=reason)
        return Verdict(rejected=request.indices, reason=reason)

    def _begin(self) -> _Outcome:
        self.last_rejected = ()
        out = self._calls.outcome = _Outcome()
        return out

    def _finish(self, out: _Outcome, size: int) -> LogRecordExportResult:
        self._calls.outcome = None
        rejected = out.rejected - out.delivered
        self.last_rejected = tuple(sorted(rejected))
        done = len(out.delivered | rejected)
        return LogRecordExportResult.SUCCESS if done >= size else LogRecordExportResult.FAILURE

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        out = self._begin()
        if self._stop.is_set():
            _log.error("%s exporter is shut down; %d audit record(s) not sent", self.name, len(batch))
            self.counters.failed += len(batch)
            return self._finish(out, max(1, len(batch)))
        try:
            reqs = self._requests(batch)
        except Exception as exc:  # a bug, not a judgement of the records: loud, kept, never a raise
            _log.error("%s exporter cannot encode a batch of %d audit record(s): %s", self.name, len(batch), exc)
            self.counters.failed += len(batch)
            return self._finish(out, max(1, len(batch)))
        for req in reqs:
            self._send(req)
        return self._finish(out, len(batch))

    def _send(self, req: Request) -> bool:
        """Send one request with retries, then whatever it was split into; False if records were given up."""
        delays = self.retry.delays()
        started = time.monotonic()
        current: Request | None = req
        ok = True
        split: list[Request] = []
        while current is not None:
            try:
                resp = self.session.request(current.method, current.url, data=current.body,
                                            headers=current.headers, timeout=self.timeout)
                verdict = self._judge(current, resp)
            except requests.RequestException as exc:
                verdict = Verdict(retry=current, reason=f"{type(exc).__name__}: {_short(exc)}")
            self._delivered(verdict.delivered)
            self._rejected(verdict.rejected, verdict.reason)
            split.extend(verdict.split)
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
                _log.error("%s gave up on %d audit record(s) after %.0fs (they are not delivered; a durable "
                           "spool keeps them): %s", self.name, current.records, elapsed, verdict.reason)
                ok = False
                break
            self.counters.retries += 1
            _log.warning("%s: %s; retrying %d record(s) in %.1fs", self.name, verdict.reason, current.records, wait)
            if self._stop.wait(wait):
                self.counters.failed += current.records
                _log.error("%s shut down while retrying; %d audit record(s) not delivered", self.name, current.records)
                ok = False
                break
        for part in split:
            if self._stop.is_set():
                self.counters.failed += part.records
                ok = False
                continue
            ok = self._send(part) and ok
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
    if isinstance(exc, requests.exceptions.InvalidHeader):
        # requests quotes the header's value, which may be a credential (a token pasted with its newline)
        return "a request header cannot be sent as it is (its value is not shown: it may be a secret)"
    text = redact_text(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def common_settings(cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """timeout, tls, retry_on_failure, headers and proxy_from_env of a block, as the collector names them
    (proxy_from_env default true: HTTP(S)_PROXY / NO_PROXY apply, as in requests and the collector)."""
    model = _settings.Model("http", transport_settings("", timeout=10.0))
    kw = model.read_block({k: v for k, v in cfg.items() if k in model.top_keys()}, where)
    kw.setdefault("tls", TlsSettings())
    kw.setdefault("retry", RetrySettings())
    return kw


COMMON_KEYS = ("timeout", "tls", "retry_on_failure", "headers", "sending_queue", "batch", "proxy_from_env")
