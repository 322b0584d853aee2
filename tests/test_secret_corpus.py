"""No raw secret of the corpus (tests/secret_corpus.py) reaches anything the product writes.

One real pipeline run per module, built from a config file by `otel_audit.configure` (the
product's own wiring): redaction (hmac mode) -> signing -> delivery spool -> the file archive,
Splunk HEC, Datadog, Elasticsearch and webhook exporters (pointed at the stand-ins) and the
OTLP/HTTP exporter (pointed at a loopback server here). Every SIEM and OTLP connection goes
through a recording TCP relay, so what is checked is every byte a client sent: request line (URL),
headers and the decoded body, whatever the stand-in keeps of it.

Every kind of the corpus is emitted in every placement, each with its own sample (so a finding
names the placement): the body, an ordinary attribute, a nested map, a map key, a list,
`config_changed` before and after (a value under a neutral key, and inside a nested object), and an
`exception.message` / `error.message`. Then no secret part (as is, JSON-escaped, percent-encoded)
may appear in the archive, the spool (all bytes, also while records were in it), the signing
state, any log line of any logger (root at DEBUG, urllib3 included), or any request. The archive
must still verify, and the words around each secret must survive (redaction is not "replace
everything").

The second half checks the product's own error messages that could echo an input: AuditLogger
with a bad value next to a secret, config loading with a bad value next to a secret, and
`otel-audit check-config` with a secret in an endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import socket
import threading
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import Archive, attr_value, verify
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from secret_corpus import KINDS, SECRET_PARTS, Sample, forms, sample
from standins.datadog import DEFAULT_API_KEY as DD_API_KEY
from standins.datadog import DatadogStandIn
from standins.elastic import DEFAULT_API_KEY as ES_API_KEY
from standins.elastic import ElasticStandIn
from standins.splunk import DEFAULT_TOKEN as HEC_TOKEN
from standins.splunk import SplunkHecStandIn
from standins.webhook import WebhookReceiver

import otel_audit
from otel_audit import cli, config
from otel_audit.errors import AuditError, ConfigError
from otel_audit.keys import KEYRING_FILE, Keyring

WHSEC = "whsec_" + base64.b64encode(b"corpus-webhook-signing-secret-32").decode()
HMAC_KEY = "base64:" + base64.b64encode(b"corpus-redaction-hmac-key-32byte").decode()

PLACEMENTS = (
    "body", "attribute", "nested_map", "map_key", "list",
    "config_before", "config_after", "config_before_nested", "config_after_nested",
    "exception_message", "error_message",
)
SIEMS = ("splunk_hec", "datadog", "elasticsearch", "webhook", "otlphttp")
OUTPUTS = ("archive", "spool", "state", "logs", *SIEMS)

EVENT = "authentication.attempt.failed"
CONFIG_EVENT = "configuration.guardrail.changed"
CASE_KEY = "audit.case"  # names each record's kind/placement; no secret in it
REASON = "upstream rejected the request"
BODY_BEFORE = "Rotating the credential of the nightly export job:"
BODY_AFTER = "was found in the deploy log and revoked."


def _sample(kind: str, placement: str) -> Sample:
    return sample(kind, f"e2e/{placement}")


def kind_placement(kind: str, placement: str) -> str:
    """The value of CASE_KEY on the record of that cell."""
    return f"{kind}/{placement}"


# -- capturing what goes over the wire ------------------------------------------------------------


class Tap:
    """A loopback TCP relay in front of a server: forwards both ways, records every byte clients send."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._sent: list[bytearray] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"tap-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            buf = bytearray()
            with self._lock:
                self._sent.append(buf)
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, buf), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, buf: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if buf is not None:
                    buf.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._socks:
                s.close()

    def captured(self) -> bytes:
        """Everything clients sent, raw, followed by each request's head and decoded body."""
        with self._lock:
            streams = [bytes(b) for b in self._sent]
        out = list(streams)
        for data in streams:
            for head, body in _http_requests(data):
                out += [head, body]
        return b"\n".join(out)

    def requests(self) -> int:
        with self._lock:
            streams = [bytes(b) for b in self._sent]
        return sum(len(_http_requests(d)) for d in streams)


def _http_requests(data: bytes) -> list[tuple[bytes, bytes]]:
    """The HTTP/1.1 requests in one connection's client bytes: (request line + headers, decoded body)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos:end]
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        pos = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                body += data[pos:pos + size]
                pos += size + 2
                if size == 0:
                    break
            raw = bytes(body)
        else:
            n = int(headers.get(b"content-length", b"0"))
            raw, pos = data[pos:pos + n], pos + n
        encoding = headers.get(b"content-encoding", b"").lower()
        if encoding == b"gzip":
            raw = gzip.decompress(raw)
        elif encoding == b"deflate":
            raw = zlib.decompress(raw)
        out.append((head, raw))
    return out


@dataclass
class OtlpSink:
    """A loopback OTLP/HTTP logs receiver: answers 200 and counts the log records it decoded."""

    records: int = 0
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OtlpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                request = ExportLogsServiceRequest()
                request.ParseFromString(body)
                with sink.lock:
                    sink.records += sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
                payload = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Capture(logging.Handler):
    """Every log record of every logger, formatted, with its args' repr and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # noqa: BLE001 - a bad log call is still captured as it stands
            text = f"{record.name} {record.msg!r} {exc!r}"
        with self._guard:
            self.lines.append(f"{text} args={record.args!r}")


# -- the one pipeline run -------------------------------------------------------------------------


def _emit_case(audit: otel_audit.AuditPipeline, kind: str, placement: str) -> None:
    s = _sample(kind, placement).text
    case = {CASE_KEY: kind_placement(kind, placement)}
    log = audit.logger
    if placement == "body":
        log.emit(EVENT, {**case, "audit.reason": REASON}, body=f"{BODY_BEFORE} {s} {BODY_AFTER}")
    elif placement == "attribute":
        log.emit(EVENT, {**case, "audit.reason": s, "audit.note": "nightly export"})
    elif placement == "nested_map":
        log.emit(EVENT, {**case, "audit.reason": REASON,
                         "audit.details": {"job": "nightly-export", "upstream": {"note": s, "region": "eu-west-1"}}})
    elif placement == "map_key":
        log.emit(EVENT, {**case, "audit.reason": REASON, "audit.usage_by_credential": {s: 12, "total": 12}})
    elif placement == "list":
        log.emit(EVENT, {**case, "audit.reason": REASON, "audit.notes": ["nightly-export", s, "retry 3"]})
    elif placement.startswith("config_"):
        def side(text: str, limit: int) -> dict[str, object]:
            if placement.endswith("_nested"):
                return {"upstream": {"settings": {"note": text}, "region": "eu-west-1"}, "limit": limit}
            return {"description": text, "limit": limit}

        in_before = placement.startswith("config_before")
        before = side(s if in_before else "rotated", 100)
        after = side("rotated" if in_before else s, 250)
        log.config_changed(CONFIG_EVENT, "guardrail-7", before, after, actor="admin", attributes=case)
    elif placement == "exception_message":
        log.emit(EVENT, {**case, "audit.reason": REASON, "exception.type": "ValueError",
                         "exception.message": f"ValueError: rejected {s}"})
    elif placement == "error_message":
        log.emit(EVENT, {**case, "audit.reason": REASON, "error.type": "ValueError",
                         "error.message": f"ValueError: rejected {s}"})
    else:
        raise AssertionError(placement)


def _files(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@dataclass
class Run:
    outputs: dict[str, bytes]
    archive_dir: Path
    keys_dir: Path
    received: dict[str, int]
    events: int


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Iterator[Run]:
    d = tmp_path_factory.mktemp("corpus")
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    urllib3_log = logging.getLogger("urllib3")
    old_urllib3_level = urllib3_log.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    urllib3_log.setLevel(logging.DEBUG)
    # Loggers that do not propagate to the root get the handler themselves.
    quiet = [lg for lg in logging.Logger.manager.loggerDict.values()
             if isinstance(lg, logging.Logger) and not lg.propagate]
    for lg in quiet:
        lg.addHandler(capture)
    stack: list[Callable[[], None]] = []
    try:
        splunk = SplunkHecStandIn().start()
        stack.append(splunk.stop)
        datadog = DatadogStandIn().start()
        stack.append(datadog.stop)
        elastic = ElasticStandIn(api_keys=(ES_API_KEY,)).start()
        stack.append(elastic.stop)
        hook = WebhookReceiver(secrets=[WHSEC]).start()
        stack.append(hook.stop)
        otlp = OtlpSink().start()
        stack.append(otlp.stop)
        taps = {"splunk_hec": Tap(splunk.port), "datadog": Tap(datadog.port), "elasticsearch": Tap(elastic.port),
                "webhook": Tap(hook.port), "otlphttp": Tap(otlp.port)}
        stack += [t.close for t in taps.values()]
        fast = {"initial_interval": "10ms", "max_interval": "100ms", "max_elapsed_time": "10s"}
        doc = {
            "resource": {"service.name": "corpus-gateway"},
            "processors": {
                "redaction": {"mode": "hmac", "hmac_key": HMAC_KEY},
                "signing": {"keys_dir": str(shared_keys), "state_dir": "state", "checkpoint_every": 100,
                            "checkpoint_interval": "1h"},
                "delivery": {"directory": "spool", "max_size_mib": 8, "mode": "fail_closed",
                             "shutdown_timeout": "20s"},
            },
            "exporters": {
                "file": {"path": "archive/audit.jsonl"},
                "splunk_hec": {"endpoint": f"{taps['splunk_hec'].url}/services/collector", "token": HEC_TOKEN,
                               "index": "audit", "retry_on_failure": fast},
                "datadog": {"api": {"key": DD_API_KEY, "fail_on_invalid_key": False},
                            "logs": {"endpoint": taps["datadog"].url}, "metrics": {"endpoint": taps["datadog"].url},
                            "retry_on_failure": fast},
                "elasticsearch": {"endpoint": taps["elasticsearch"].url, "api_key": ES_API_KEY,
                                  "retry_on_failure": fast},
                "webhook": {"endpoint": f"{taps['webhook'].url}{hook.path}", "secrets": [WHSEC],
                            "retry_on_failure": fast},
                "otlphttp": {"endpoint": taps["otlphttp"].url, "timeout": "10s"},
            },
            "service": {"pipelines": {"logs/audit": {
                "processors": ["redaction", "signing", "delivery"],
                "exporters": ["file", *SIEMS]}}},
        }
        cfg = d / "audit.json"
        cfg.write_text(json.dumps(doc, indent=2))
        audit = otel_audit.configure(cfg)
        try:
            for kind in KINDS:
                for placement in PLACEMENTS:
                    _emit_case(audit, kind, placement)
            # On disk before emit returned: what the spool holds now, before anything was shipped away.
            spool_while_full = _files(d / "spool")
            assert audit.force_flush(60_000)
        finally:
            audit.shutdown()
        outputs = {
            "archive": _files(d / "archive"),
            "spool": spool_while_full + b"\n" + _files(d / "spool"),
            "state": _files(d / "state"),
            "logs": "\n".join(capture.lines).encode(),
            **{name: tap.captured() for name, tap in taps.items()},
        }
        received = {"splunk_hec": len(splunk.events()), "datadog": datadog.count(), "elasticsearch":
                    len(elastic.documents()), "webhook": len(hook.events()), "otlphttp": otlp.records}
        yield Run(outputs, d / "archive", shared_keys, received, len(KINDS) * len(PLACEMENTS))
    finally:
        for stop in reversed(stack):
            stop()
        root.removeHandler(capture)
        root.setLevel(old_level)
        urllib3_log.setLevel(old_urllib3_level)
        for lg in quiet:
            lg.removeHandler(capture)


def _leaks(blob: bytes, s: Sample) -> list[str]:
    """The spellings of `s`'s secret parts found in `blob`."""
    return [f for part in s.parts for f in forms(part) if f.encode() in blob]


def test_every_output_received_every_record(run: Run) -> None:
    """The checks below mean something only if every destination got every record."""
    for name, n in run.received.items():
        assert n >= run.events, f"{name} received {n} records, expected at least {run.events}"
    assert run.outputs["logs"], "nothing was logged: the log capture is not working"
    assert run.outputs["state"], "state: nothing was written"
    for name in ("archive", "spool", *SIEMS):
        # The records are there as searchable text (decoded, not compressed), so a miss is no accident.
        assert kind_placement("openai", "body").encode() in run.outputs[name], f"{name}: no record found"


def test_archive_verifies(run: Run) -> None:
    report = verify(run.archive_dir, Keyring.load(run.keys_dir / KEYRING_FILE))
    assert report.ok, report.problems or [s.problems for s in report.streams]
    assert report.proven >= run.events


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_no_secret_part_reaches_any_output(run: Run, kind: str) -> None:
    failing = []
    for placement in PLACEMENTS:
        s = _sample(kind, placement)
        for output in OUTPUTS:
            found = _leaks(run.outputs[output], s)
            if found:
                failing.append(f"{kind} x {placement} x {output}")
    if failing:
        pytest.fail(f"{len(failing)} leaking cell(s) (kind x placement x output):\n  " + "\n  ".join(failing))


# -- the words around each secret survive -----------------------------------------------------------


@pytest.fixture(scope="module")
def archived(run: Run) -> dict[str, dict[str, Any]]:
    """The archive's event records by their audit.case."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(run.archive_dir.rglob("*.jsonl*")):
        for rec in Archive.load(path).records():
            case = attr_value(rec, CASE_KEY)  # kind_placement(...)
            if isinstance(case, str):
                out[case] = rec
    return out


def _context_problem(rec: dict[str, Any], placement: str) -> str | None:
    """What of the record's non-secret content is gone, or None."""
    from otel_audit.verify import decode_value

    def attr(key: str) -> Any:
        return attr_value(rec, key)

    if placement == "body":
        body = decode_value(rec.get("body") or {})
        if not (isinstance(body, str) and body.startswith(BODY_BEFORE + " ") and body.endswith(" " + BODY_AFTER)):
            return f"body is {body!r}"
    elif placement == "attribute":
        if attr("audit.note") != "nightly export" or not attr("audit.reason"):
            return f"audit.note {attr('audit.note')!r}, audit.reason {attr('audit.reason')!r}"
    elif placement == "nested_map":
        details = attr("audit.details")
        if (not isinstance(details, dict) or details.get("job") != "nightly-export"
                or details.get("upstream", {}).get("region") != "eu-west-1"):
            return f"audit.details is {details!r}"
    elif placement == "map_key":
        usage = attr("audit.usage_by_credential")
        if not isinstance(usage, dict) or usage.get("total") != 12 or 12 not in usage.values() or len(usage) != 2:
            return f"audit.usage_by_credential is {usage!r}"
    elif placement == "list":
        notes = attr("audit.notes")
        if not isinstance(notes, list) or len(notes) != 3 or notes[0] != "nightly-export" or notes[2] != "retry 3":
            return f"audit.notes is {notes!r}"
    elif placement.startswith("config_"):
        for side, limit in (("before", 100), ("after", 250)):
            text = attr(f"audit.change.{side}")
            try:
                doc = json.loads(text)
            except (TypeError, ValueError):
                return f"audit.change.{side} is no JSON: {text!r}"
            if doc.get("limit") != limit:
                return f"audit.change.{side} lost its limit: {text!r}"
            if placement.endswith("_nested") and doc.get("upstream", {}).get("region") != "eu-west-1":
                return f"audit.change.{side} lost upstream.region: {text!r}"
    else:
        key = "exception.message" if placement == "exception_message" else "error.message"
        msg = attr(key)
        if not (isinstance(msg, str) and msg.startswith("ValueError: rejected ")):
            return f"{key} is {msg!r}"
    return None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_non_secret_context_survives(archived: dict[str, dict[str, Any]], kind: str) -> None:
    failing = []
    for placement in PLACEMENTS:
        rec = archived.get(kind_placement(kind, placement))
        problem = "record not in the archive" if rec is None else _context_problem(rec, placement)
        if problem:
            failing.append(f"{kind} x {placement}: {problem}")
    if failing:
        pytest.fail("\n".join(failing))


# -- error messages that could echo an input ---------------------------------------------------------


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


def _leaked_in(text: str, s: Sample) -> list[str]:
    return [f for part in s.parts for f in forms(part) if f in text]


def _masked(text: str, found: list[str]) -> str:
    """`text` with the secret spellings found in it replaced, for a failure message that shows none."""
    for f in sorted(found, key=len, reverse=True):
        text = text.replace(f, "<SECRET>")
    return text


class _Unsupported:
    """A value AuditLogger refuses (not str, bool, int, float, bytes, list or mapping)."""


def _emit_errors(kind: str) -> dict[str, Callable[[otel_audit.AuditLogger], None]]:
    s = _sample(kind, "emit-error").text
    bad = _Unsupported()
    return {
        "bad_type_next_to_secret": lambda lg: lg.emit(EVENT, {"audit.reason": s, "audit.attempts": bad}),  # type: ignore[dict-item]
        "bad_type_in_list_with_secret": lambda lg: lg.emit(EVENT, {"audit.reason": REASON, "audit.notes": [s, bad]}),  # type: ignore[list-item]
        "bad_type_under_secret_map_key": lambda lg: lg.emit(
            EVENT, {"audit.reason": REASON, "audit.usage_by_credential": {s: bad}}),  # type: ignore[dict-item]
        "missing_required_next_to_secret": lambda lg: lg.emit(EVENT, {"audit.note": s}),
        "config_changed_unserialisable_next_to_secret": lambda lg: lg.config_changed(
            CONFIG_EVENT, "guardrail-7", {"description": s}, {"limit": bad}, actor="admin"),
    }


_EMIT_ERROR_CASES = sorted(_emit_errors("openai"))


@pytest.mark.parametrize("case", _EMIT_ERROR_CASES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_audit_logger_error_hides_the_secret(kind: str, case: str) -> None:
    from opentelemetry.sdk._logs import LoggerProvider

    logger = otel_audit.AuditLogger(LoggerProvider())
    with pytest.raises((TypeError, ValueError, AuditError)) as info:
        _emit_errors(kind)[case](logger)
    found = _leaked_in(_exception_text(info.value), _sample(kind, "emit-error"))
    if found:  # pytest.fail: an assert would print the list of secrets found
        pytest.fail(f"{kind} x {case}: the error shows the secret: {_masked(str(info.value), found)}")


def _config_text(keys: Path, exporter: str, block: dict[str, Any], resource: dict[str, Any] | None = None,
                 signing: dict[str, Any] | None = None) -> str:
    doc = {
        "resource": resource or {"service.name": "corpus"},
        "processors": {"signing": {"keys_dir": str(keys), **(signing or {})}},
        "exporters": {exporter: block},
        "service": {"pipelines": {"logs": {"processors": ["signing"], "exporters": [exporter]}}},
    }
    return json.dumps(doc, indent=2)


def _config_errors(kind: str, keys: Path) -> dict[str, tuple[str, str]]:
    """Config cases: name -> (file suffix, text), each with a bad value next to (or being) a secret."""
    s = _sample(kind, "config-error").text
    return {
        "otlphttp_header_next_to_bad_timeout": (".json", _config_text(
            keys, "otlphttp", {"endpoint": "http://127.0.0.1:4318", "headers": {"x-upstream-credential": s},
                               "timeout": "soon"})),
        "splunk_token_next_to_bad_timeout": (".json", _config_text(
            keys, "splunk_hec", {"endpoint": "https://splunk.example.com:8088/services/collector", "token": s,
                                 "timeout": "-5s"})),
        "datadog_api_key_is_the_bad_value": (".json", _config_text(
            keys, "datadog", {"api": {"key": s}})),
        "elastic_password_next_to_bad_index": (".json", _config_text(
            keys, "elasticsearch", {"endpoint": "https://es.example.com:9200", "user": "elastic", "password": s,
                                    "logs_index": "BAD INDEX"})),
        "webhook_secret_is_the_bad_value": (".json", _config_text(
            keys, "webhook", {"endpoint": "https://hooks.example.com/audit", "secrets": [s]})),
        "resource_attribute_next_to_bad_signing_value": (".json", _config_text(
            keys, "file", {"path": "audit.jsonl"}, resource={"service.name": "corpus", "deployment.note": s},
            signing={"checkpoint_every": -1})),
        "yaml_syntax_error_on_the_secret_line": (".yaml", (
            "exporters:\n  splunk_hec:\n"
            f"    token: {json.dumps(s)} ]\n"
            "    endpoint: https://splunk.example.com:8088/services/collector\n")),
    }


_CONFIG_ERROR_CASES = sorted(_config_errors("openai", Path(".")))


@pytest.mark.parametrize("case", _CONFIG_ERROR_CASES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_config_error_hides_the_secret(tmp_path: Path, shared_keys: Path, kind: str, case: str) -> None:
    suffix, text = _config_errors(kind, shared_keys)[case]
    cfg = tmp_path / f"audit{suffix}"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.build_from_file(cfg, dry_run=True)
    message = _exception_text(info.value)
    assert str(cfg) in message, message  # it is the config's own error, naming the file
    found = _leaked_in(message, _sample(kind, "config-error"))
    if found:  # pytest.fail: an assert would print the list of secrets found
        pytest.fail(f"{kind} x {case}: the error shows the secret: {_masked(str(info.value), found)}")


def _endpoint_with(s: str) -> str:
    """An endpoint holding the sample: a URL kind as the URL itself, any other kind as a path segment.
    The scheme is ftp://, which the webhook exporter refuses, so check-config's error names the endpoint."""
    if "://" in s:
        return "ftp://" + s.split("://", 1)[1]
    return f"ftp://hooks.example.com/hooks/{quote(s, safe='')}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_check_config_endpoint_error_hides_the_secret(tmp_path: Path, shared_keys: Path, kind: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    s = _sample(kind, "check-config")
    cfg = tmp_path / "audit.json"
    cfg.write_text(_config_text(shared_keys, "webhook", {"endpoint": _endpoint_with(s.text), "secrets": [WHSEC]}))
    code = cli.main(["check-config", str(cfg)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "exporters.webhook.endpoint" in text, text
    found = _leaked_in(text, s)
    if found:  # pytest.fail: an assert would print the list of secrets found
        pytest.fail(f"{kind}: check-config shows the secret: {_masked(text, found)}")


def test_corpus_is_deterministic_and_distinct() -> None:
    """Each placement has its own sample, so a finding names one cell; the same call gives the same one."""
    parts = [p for kind in KINDS for pl in PLACEMENTS for p in _sample(kind, pl).parts]
    assert len(parts) == len(set(parts))
    assert _sample("jwt", "body") == _sample("jwt", "body")
    assert all(SECRET_PARTS[k] and all(p in KINDS[k] or k in ("basic_auth",) for p in SECRET_PARTS[k])
               for k in KINDS if k != "private_key_json")
