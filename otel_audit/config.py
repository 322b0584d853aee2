"""Configuration in the OpenTelemetry Collector's shape, and the pipeline it builds.

    resource:                    # the producer's resource attributes (optional)
      service.name: llm-gateway
    processors:
      redaction:   {mode: hmac, hmac_key: "${env:OTEL_AUDIT_HMAC_KEY}"}
      signing:     {keys_dir: ./keys, state_dir: ./state, checkpoint_every: 1000, checkpoint_interval: 5s}
      delivery:    {directory: ./spool, max_size_mib: 1024, mode: fail_closed, shutdown_timeout: 5s}
    exporters:
      file:        {path: ./archive/audit.jsonl}
      otlp:        {endpoint: "localhost:4317", tls: {insecure: true}}
    service:
      pipelines:
        logs/audit:
          processors: [redaction, signing, delivery]
          exporters: [file, otlp]

Component ids are `type` or `type/name`, as in the collector, so an exporter block moves between
this file and a collector's unchanged. `${env:VAR}`, `${env:VAR:-default}` and `${VAR}` are
substituted in every string, `$$` stands for one `$`; a value that is one substitution is typed
(`true`, `42`, `1.5`) as the collector types it, except in settings that are always text (paths,
endpoints, keys, tokens, header values, resource attributes), which keep the variable's text.
Relative paths are relative to the config file's folder. Errors name the file, the key and what
is wrong.

Limits, checked before anything is built: a config file is at most 1 MiB (`MAX_CONFIG_BYTES`, checked
before it is parsed), nests at most 64 levels deep (`MAX_DEPTH`), and uses no YAML aliases (`*name`,
so also no `<<: *name` merges): an alias can make a few hundred bytes expand to gigabytes. An
environment variable's name is what the collector accepts, `[A-Za-z_][A-Za-z0-9_]*`; `${env:1X}` is
an error, not literal text. Numbers are checked to be finite and in range (no `.inf`, `.nan`,
negative or absurdly large values).

`build(doc, dry_run=True)` checks a config as far as it can without side effects: every block
is validated (each exporter is constructed by its own factory, then shut down unused), the
signing key is loaded; no thread starts, no file is opened for writing, nothing connects.

A config that works but cannot keep the "nothing lost" promise (no delivery processor, no
signing state_dir, delivery mode fail_open, a spool larger than its filesystem's free space)
gets warnings, each `<file>: <key>: <what to do>`, in `Built.warnings`; a real build also logs
them at WARNING. So does a configured folder or file that exists and that other users can read or
change (the keys folder, private/ and its key files, a redaction `hmac_key: file:PATH`, the
signing state, the spool, the file exporter's archive folder and files): it names the path, its
mode and the `chmod` that fixes it. The product makes them private itself (otel_audit.filemodes)
but never changes a folder the user made. A keys folder, private/ or private key file that every
user may change is an error: anyone could put their own signing key in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from otel_audit import filemodes
from otel_audit.errors import AuditError, ConfigError, KeyringError
from otel_audit.safe import guard_sdk_loggers

_log = logging.getLogger(__name__)

# `${env:NAME}`, `${NAME}`, with an optional `:-default`; the name is matched loosely so that a bad
# one is reported (the collector's rule, checked by _ENV_NAME_RE) instead of staying literal text.
_ENV_RE = re.compile(r"\$\$|\$\{(?:env:)?([^}:]*)(?::-([^}]*))?\}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MAX_CONFIG_BYTES = 1 << 20  # a config file larger than 1 MiB is refused before it is parsed
MAX_DEPTH = 64  # mappings and lists nested deeper than this are refused
_TOP_KEYS = ("resource", "processors", "exporters", "service", "extensions", "receivers", "connectors")

# Whole-value substitutions are typed like YAML 1.2's core schema: no yes/no/on/off booleans, no
# octal or sexagesimal numbers, and a leading zero keeps a value text, so '007' stays '007'.
_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}

# Settings that are always text: a substituted value keeps the variable's text there, so that a
# token or key made of digits is not turned into a number (as the collector keeps the original).
_TEXT_KEYS = frozenset({
    "path", "endpoint", "logs_endpoint", "hmac_key", "keys_dir", "state_dir", "key_name", "origin",
    "ca_file", "cert_file", "key_file", "token", "api_key", "app_key", "password", "username", "index",
    "source", "sourcetype", "compression", "fsync", "mode", "format",
})
_TEXT_SECTIONS = frozenset({"headers", "resource"})


class EnvInt(int):
    """An int made by a whole-value `${env:VAR}`; `text` is the variable's text."""

    text: str


class EnvFloat(float):
    """A float made by a whole-value `${env:VAR}`; `text` is the variable's text."""

    text: str


def _typed(raw: str) -> Any:
    if raw in _BOOLS:
        return _BOOLS[raw]
    if _INT_RE.fullmatch(raw):
        i = EnvInt(raw)
        i.text = raw
        return i
    if _FLOAT_RE.fullmatch(raw):
        f = EnvFloat(raw)
        f.text = raw
        return f
    return raw


def _text(value: Any) -> Any:
    """The text a substituted value came from (a value that was never a substitution is returned as is)."""
    if isinstance(value, (EnvInt, EnvFloat)):
        return value.text
    return value


def _plain(node: Any, key: str = "", text: bool = False) -> Any:
    """Settings as the components expect them: text where a setting is text, plain ints and floats elsewhere."""
    if isinstance(node, dict):
        inner = text or key in _TEXT_SECTIONS
        return {k: _plain(v, str(k), inner) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, key, text) for v in node]
    if isinstance(node, (EnvInt, EnvFloat)):
        if text or key in _TEXT_KEYS:
            return node.text
        return int(node) if isinstance(node, EnvInt) else float(node)
    return node


# -- loading --------------------------------------------------------------------------------------


def _substitute(node: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):

        def value(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if not _ENV_NAME_RE.fullmatch(name):
                raise ConfigError(
                    f"{where}: {m.group(0)!r}: {name!r} is not a valid environment variable name; "
                    "a name is letters, digits and _, not starting with a digit (e.g. ${env:AUDIT_DIR})"
                )
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set; export it, or write ${{env:{name}:-default}}"
            )

        full = _ENV_RE.fullmatch(node)
        if full and full.group(0) != "$$":
            return _typed(value(full))  # one whole substitution is typed, as the collector does
        return _ENV_RE.sub(value, node)
    if isinstance(node, dict):
        return {k: _substitute(v, f"{where}.{k}", env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{where}[{i}]", env) for i, v in enumerate(node)]
    return node


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (two `signing:` blocks),
    any alias (`*name`: the billion-laughs expansion) and nesting deeper than MAX_DEPTH."""

    _depth = 0

    if TYPE_CHECKING:  # unannotated in PyYAML's stubs; its events' marks are typed two ways there

        def peek_event(self) -> Any: ...

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None,
                f"alias *{event.anchor} is not allowed in a config (YAML aliases and anchors can expand a "
                "small file into gigabytes); write the value out where it is used",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep; a config needs far fewer",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} is given twice in one mapping; keep one",
                        key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} is given twice in one object; keep one")
        out[k] = v
    return out


def _check_depth(doc: Any, p: Path) -> None:
    """Refuse nesting deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise ConfigError(f"{p}: nested more than {MAX_DEPTH} levels deep; a config needs far fewer")
                stack.append((child, depth + 1))


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse a YAML or JSON config file, substitute env vars, and check its top-level shape."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_CONFIG_BYTES:
                raise ConfigError(
                    f"{p}: {os.fstat(f.fileno()).st_size} bytes is larger than a config file may be "
                    f"({MAX_CONFIG_BYTES} bytes, 1 MiB); give the audit pipeline's config file"
                )
            raw = f.read(MAX_CONFIG_BYTES + 1)  # a FIFO or a growing file has no size to check first
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: larger than a config file may be ({MAX_CONFIG_BYTES} bytes, 1 MiB)")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found; check the path (or OTEL_AUDIT_CONFIG)") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder; give the config file (YAML or JSON) in it") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (not UTF-8); give a YAML or JSON config file") from None
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(text, object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except ValueError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{p}: nested more than {MAX_DEPTH} levels deep; a config needs far fewer") from None
        _check_depth(doc, p)
    else:
        try:
            doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{p}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping with processors, exporters and service, "
            f"got {type(doc).__name__}"
        )
    for k in doc:
        if k not in _TOP_KEYS:
            raise ConfigError(f"{p}: unknown top-level key {k!r}; valid keys: {', '.join(_TOP_KEYS)}")
    env = os.environ if env is None else env
    return {k: _substitute(v, f"{p}: {k}", env) for k, v in doc.items()}


# -- what a config builds -------------------------------------------------------------------------


@dataclass
class Built:
    """What a config describes, built: a LoggerProvider and its parts.

    After a dry run `provider` and `signing` are None, `processors` maps the signing processor's
    id to None, and `exporters` hold exporters that were constructed (so their settings were
    checked) and shut down without having been used.
    """

    provider: Any
    signing: Any
    exporters: dict[str, Any] = field(default_factory=dict)
    processors: dict[str, Any] = field(default_factory=dict)
    key_name: str = ""  # the signing key the stream starts with
    dry_run: bool = False
    #: setups that work but cannot keep the "nothing lost" promise, each "<file>: <key>: <what>"
    warnings: list[str] = field(default_factory=list)


def _exporter_factories() -> dict[str, Callable[[Mapping[str, Any], str], Any]]:
    from otel_audit.exporters.datadog import DatadogLogExporter
    from otel_audit.exporters.elastic import ElasticLogExporter
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.exporters.otlp import create_otlp_exporter
    from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
    from otel_audit.exporters.webhook import WebhookLogExporter

    return {
        "file": lambda cfg, where: FileLogRecordExporter.from_config(cfg, where=where),
        "otlp": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="grpc"),
        "otlphttp": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="http"),
        # the collector's current names for the same two exporters (otlp and otlphttp stay accepted)
        "otlp_grpc": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="grpc"),
        "otlp_http": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="http"),
        "splunk_hec": lambda cfg, where: SplunkHecLogExporter.from_config(cfg, where=where),
        "datadog": lambda cfg, where: DatadogLogExporter.from_config(cfg, where=where),
        "elasticsearch": lambda cfg, where: ElasticLogExporter.from_config(cfg, where=where),
        "webhook": lambda cfg, where: WebhookLogExporter.from_config(cfg, where=where),
    }


#: exporters that apply `retry_on_failure` themselves (the shared HTTP base); the others get it checked only
_OWN_RETRY = frozenset({"splunk_hec", "datadog", "elasticsearch", "webhook"})


_QUEUE_KEYS = ("sending_queue", "batch", "retry_on_failure")
_RETRY_DURATIONS = ("initial_interval", "max_interval", "max_elapsed_time")


_MAX_COUNT = 100_000_000  # the largest count (queue size, batch size, checkpoint_every) a config may give
_MAX_CONSUMERS = 10_000  # sending_queue.num_consumers: goroutines in the collector, far fewer in practice


def _positive_int(v: Any, where: str, most: int = _MAX_COUNT) -> int:
    if isinstance(v, str) and _INT_RE.fullmatch(v.strip()) and len(v.strip()) <= 20:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: expected a positive integer (a whole number from 1 to {most}), got {v!r}")
    if v > most:
        raise ConfigError(f"{where}: {v} is more than the largest value accepted here ({most}); "
                          f"give a whole number from 1 to {most}")
    return int(v)


def _number(v: Any, where: str, least: float, most: float, what: str) -> float:
    """A finite int or float in [least, most] (not a boolean, not text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: expected {what} from {least:g} to {most:g}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{where}: {v!r} is not a finite number; expected {what} from {least:g} to {most:g}")
    if not least <= v <= most:
        raise ConfigError(f"{where}: {v!r} is out of range; expected {what} from {least:g} to {most:g}")
    return v


def _boolean(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ConfigError(f"{where}: must be true or false, got {v!r}")


def _mapping(v: Any, where: str, what: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({what}), got {type(v).__name__}")
    return v


def _batch_settings(b: Mapping[str, Any], where: str, opts: dict[str, Any]) -> None:
    from otel_audit.exporters.file import parse_duration

    for k, v in b.items():
        if k in ("max_size", "send_batch_size", "send_batch_max_size"):
            opts["max_export_batch_size"] = _positive_int(v, f"{where}.{k}")
        elif k in ("flush_timeout", "timeout"):
            seconds = parse_duration(v, where=f"{where}.{k}")
            if seconds <= 0 or seconds > _MAX_INTERVAL:
                raise ConfigError(f"{where}.{k}: must be more than zero and at most a year, e.g. 200ms")
            opts["schedule_delay_millis"] = seconds * 1000
        elif k == "min_size":
            if v != 0:
                _positive_int(v, f"{where}.{k}")  # accepted; a batch goes when full or when due
        elif k == "sizer":
            if v not in ("items", "requests"):
                raise ConfigError(f"{where}.sizer: only items (log records) is supported, got {v!r}")
        else:
            raise ConfigError(f"{where}.{k}: unknown key; valid keys: max_size, flush_timeout")


def _split_queue(cfg: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take the delivery settings (sending_queue, batch, retry_on_failure) out of an exporter block.

    They are the collector's exporterhelper settings; here they configure the exporter's
    BatchLogRecordProcessor. Returns (the exporter's own settings, BatchLogRecordProcessor kwargs).
    """
    from otel_audit import _sdk_compat
    from otel_audit.exporters.file import parse_duration

    rest = {k: v for k, v in cfg.items() if k not in _QUEUE_KEYS}
    opts: dict[str, Any] = {}
    q = _mapping(cfg.get("sending_queue"), f"{where}.sending_queue", "queue_size, enabled")
    for k, v in q.items():
        w = f"{where}.sending_queue.{k}"
        if k == "queue_size":
            opts["max_queue_size"] = _positive_int(v, w)
        elif k == "enabled":
            if not _boolean(v, w):
                raise ConfigError(
                    f"{w}: false is not allowed for audit records; "
                    "a queue is what keeps them through a slow exporter (remove the key)"
                )
        elif k == "batch":
            _batch_settings(_mapping(v, w, "max_size, flush_timeout"), w, opts)
        elif k == "storage":
            _log.warning("%s: persistent queue storage is not supported here; the queue is in memory", w)
        elif k == "sizer":
            if v not in ("items", "requests"):
                raise ConfigError(f"{w}: only items (log records) is supported, got {v!r}")
        elif k == "num_consumers":  # the collector's; here one batch processor per exporter: checked, unused
            _positive_int(v, w, _MAX_CONSUMERS)
        elif k in ("blocking", "block_on_overflow", "wait_for_result"):
            _boolean(v, w)  # the collector's; checked, unused
        else:
            raise ConfigError(f"{w}: unknown key; valid keys: queue_size, enabled, batch")
    _batch_settings(_mapping(cfg.get("batch"), f"{where}.batch", "max_size, flush_timeout"), f"{where}.batch", opts)
    r = _mapping(cfg.get("retry_on_failure"), f"{where}.retry_on_failure", "enabled, initial_interval, ...")
    for k, v in r.items():
        w = f"{where}.retry_on_failure.{k}"
        if k == "enabled":
            if not _boolean(v, w):
                raise ConfigError(f"{w}: false would drop audit records on the first error; remove the key")
        elif k in _RETRY_DURATIONS:
            parse_duration(v, where=w)  # checked; the exporter's own retry policy applies
        elif k == "randomization_factor":  # [0, 1] as the collector's configretry: more makes waits negative
            _number(v, w, 0, 1, "a fraction")
        elif k == "multiplier":
            _number(v, w, 0, 1000, "a number")
        else:
            from otel_audit.exporters._settings import RETRY_KEYS  # the one list of the shared block's keys

            raise ConfigError(f"{w}: unknown key; valid keys: {', '.join(RETRY_KEYS)}")
    if "max_queue_size" in opts:
        # a small queue takes batches that fit in it, as the collector's queue would
        opts["max_export_batch_size"] = min(opts.get("max_export_batch_size", 512), opts["max_queue_size"])
    elif opts.get("max_export_batch_size", 0) > (queue := _sdk_compat.batch_default_max_queue_size()):
        raise ConfigError(
            f"{where}.batch.max_size: {opts['max_export_batch_size']} is more than the queue holds "
            f"({queue}); set sending_queue.queue_size as well"
        )
    return rest, opts


_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:/[^/\s]+)?")


def _split_id(cid: Any, where: str) -> str:
    if not isinstance(cid, str) or not _ID_RE.fullmatch(cid):
        raise ConfigError(f"{where}: component id {cid!r} must be 'type' or 'type/name'")
    return cid.split("/", 1)[0]


def _block(doc: Mapping[str, Any], section: str, cid: str, src: str) -> dict[str, Any]:
    sec = doc.get(section) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"{src}: {section}: expected a mapping of component ids to settings")
    if cid not in sec:
        raise ConfigError(
            f"{src}: service.pipelines uses {section[:-1]} {cid!r}, which {section}: does not define "
            f"(defined: {', '.join(map(str, sec)) or 'none'}); add a block {section}: {cid}: ... or fix the name"
        )
    cfg = sec[cid]
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{src}: {section}.{cid}: expected a mapping of settings, got {type(cfg).__name__}")
    return dict(cfg)


def _pipeline(doc: Mapping[str, Any], src: str) -> tuple[list[str], list[str], str]:
    svc = doc.get("service")
    if not isinstance(svc, Mapping) or not isinstance(svc.get("pipelines"), Mapping):
        raise ConfigError(f"{src}: service.pipelines is missing; add a logs pipeline with processors and exporters")
    pipes = {k: v for k, v in svc["pipelines"].items() if _split_id(k, f"{src}: service.pipelines") == "logs"}
    if len(pipes) != 1:
        raise ConfigError(
            f"{src}: service.pipelines must hold exactly one logs pipeline (found {len(pipes)}); "
            "one process writes one audit stream"
        )
    ((name, pipe),) = pipes.items()
    where = f"{src}: service.pipelines.{name}"
    if not isinstance(pipe, Mapping):
        raise ConfigError(f"{where}: expected a mapping with processors and exporters")
    for k in pipe:
        if k not in ("processors", "exporters", "receivers"):
            raise ConfigError(f"{where}.{k}: unknown key; valid keys: processors, exporters")
    procs = pipe.get("processors") or []
    exps = pipe.get("exporters") or []
    if not isinstance(procs, list) or not isinstance(exps, list):
        raise ConfigError(f"{where}: processors and exporters must be lists of component ids")
    if not exps:
        raise ConfigError(f"{where}.exporters: at least one exporter is needed, or the audit records go nowhere")
    for kind, ids in (("processors", procs), ("exporters", exps)):
        for i, cid in enumerate(ids):
            _split_id(cid, f"{where}.{kind}[{i}]")
            if ids.index(cid) != i:
                raise ConfigError(f"{where}.{kind}: {cid!r} is listed twice; list each component once")
    types = [p.split("/", 1)[0] for p in procs]
    for t, p in zip(types, procs, strict=True):
        if t not in ("signing", "redaction", "delivery"):
            hint = "; batching is set per exporter here (exporters.<id>.batch)" if t == "batch" else ""
            raise ConfigError(
                f"{where}.processors: unknown processor type {t!r} in {p!r}; known: redaction, signing, delivery{hint}"
            )
    if "delivery" in types:
        if types.count("delivery") != 1 or types[-1] != "delivery":
            raise ConfigError(
                f"{where}.processors: one 'delivery' processor at most, and it comes last (after signing)"
            )
        types = types[:-1]
    if types.count("signing") != 1:
        raise ConfigError(
            f"{where}.processors: exactly one 'signing' processor is needed, found {types.count('signing')}; "
            "add signing as the last processor"
        )
    if types[-1] != "signing":
        raise ConfigError(
            f"{where}.processors: 'signing' must come last; a processor after it would change signed records"
        )
    return [str(p) for p in procs], [str(e) for e in exps], str(name)


_DELIVERY_KEYS = ("directory", "fsync_interval", "max_size_mib", "segment_size_mib", "mode", "block_timeout",
                  "memory_records", "shutdown_timeout")
_MIB = 1 << 20
_DEFAULT_MAX_BYTES = 1 << 30  # the spool's own default (max_size_mib: 1024)
_MAX_SEGMENT_BYTES = 32 << 20  # the default segment size of a large spool
_PAGE = 4096
_DEFAULT_SHUTDOWN_TIMEOUT = 5.0
_MAX_SHUTDOWN_TIMEOUT = 600.0
_MAX_SPOOL_MIB = 1 << 30  # 1 EiB: past any disk, short of what overflows
_MAX_INTERVAL = 86400.0 * 365  # durations past a year are a typo, and overflow timers


def default_segment_bytes(max_bytes: int) -> int:
    """The segment size of a spool of `max_bytes` when none is configured: at most 32 MiB and an
    eighth of the spool, rounded down to 4 KiB, so that a full spool is always several segments."""
    return min(_MAX_SEGMENT_BYTES, max_bytes // 8) // _PAGE * _PAGE


def _mib(n: float) -> str:
    """Bytes as MiB the way a config writes them: 1024, 0.5, 0.0625."""
    return f"{n / _MIB:.4f}".rstrip("0").rstrip(".")


def _delivery_plan(cfg: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """The durable spool's settings (processors.delivery)."""
    from otel_audit.exporters.file import parse_duration
    from otel_audit.processors.spool import MODES

    _check_keys(cfg, _DELIVERY_KEYS, where)
    if "directory" not in cfg:
        raise ConfigError(
            f"{where}.directory: required; a folder of its own for the spool (e.g. /var/lib/otel-audit/spool)"
        )
    kw: dict[str, Any] = {"directory": _relative(base, cfg["directory"], f"{where}.directory")}
    for key in ("fsync_interval", "block_timeout"):
        if key in cfg:
            kw[key] = parse_duration(cfg[key], where=f"{where}.{key}")
            if kw[key] > _MAX_INTERVAL:
                raise ConfigError(f"{where}.{key}: more than a year ({kw[key]:g} s); e.g. 1s")
    raw_timeout = cfg.get("shutdown_timeout", _DEFAULT_SHUTDOWN_TIMEOUT)
    accepted = ("must be more than zero and at most 10m (how long shutdown waits for the exporters to take what "
                "is spooled)")
    try:
        timeout = parse_duration(raw_timeout, where=f"{where}.shutdown_timeout")
    except ConfigError:
        if str(raw_timeout).strip().startswith("-"):  # say the range once, not "zero or more" first
            raise ConfigError(
                f"{where}.shutdown_timeout: {raw_timeout!r} is negative; it {accepted}; e.g. 5s"
            ) from None
        raise
    if not 0 < timeout <= _MAX_SHUTDOWN_TIMEOUT:
        raise ConfigError(f"{where}.shutdown_timeout: {accepted}, got {raw_timeout!r}; e.g. 5s")
    kw["shutdown_timeout"] = float(timeout)
    for key, arg in (("max_size_mib", "max_bytes"), ("segment_size_mib", "segment_bytes")):
        if key in cfg:
            v = cfg[key]
            finite = isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))
            if isinstance(v, bool) or not finite or not v > 0:
                raise ConfigError(f"{where}.{key}: expected a positive number of MiB, got {v!r}")
            if v > _MAX_SPOOL_MIB:
                raise ConfigError(
                    f"{where}.{key}: {v!r} MiB is more than the largest spool accepted ({_MAX_SPOOL_MIB} MiB, 1 EiB)"
                )
            kw[arg] = int(v * _MIB)
    if "memory_records" in cfg:
        kw["memory_records"] = _positive_int(cfg["memory_records"], f"{where}.memory_records")
    if "mode" in cfg:
        if cfg["mode"] not in MODES:
            raise ConfigError(f"{where}.mode: expected one of {', '.join(MODES)}, got {cfg['mode']!r}")
        kw["mode"] = cfg["mode"]
    max_bytes = kw.get("max_bytes", _DEFAULT_MAX_BYTES)
    if max_bytes < 1 << 16:
        raise ConfigError(f"{where}.max_size_mib: must be at least 0.0625 (64 KiB), got {cfg['max_size_mib']!r}")
    if "segment_bytes" in kw:
        if kw["segment_bytes"] < _PAGE:
            raise ConfigError(
                f"{where}.segment_size_mib: must be at least 0.004 (4 KiB), got {cfg['segment_size_mib']!r}"
            )
        if kw["segment_bytes"] * 2 > max_bytes:
            size = f"{'' if 'max_bytes' in kw else 'the default '}max_size_mib ({_mib(max_bytes)})"
            raise ConfigError(
                f"{where}.segment_size_mib: {_mib(kw['segment_bytes'])} MiB is more than half of {size}; the spool "
                "needs at least two segments (it frees space a whole delivered segment at a time, so with one it "
                f"stays full and refuses records); set segment_size_mib to at most {_mib(max_bytes // 2)}, or "
                "remove it to get a fitting size"
            )
    else:
        kw["segment_bytes"] = default_segment_bytes(max_bytes)
    return kw


def _free_bytes(directory: str) -> tuple[str, int] | None:
    """(the folder measured, bytes free to us) on the filesystem that holds or will hold `directory`,
    counting what a spool already there occupies as usable (it is part of max_size_mib); None if unknown."""
    p = Path(directory)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if os.path.isdir(directory):
        for root, _, files in os.walk(directory):
            for name in files:
                with contextlib.suppress(OSError):
                    free += os.lstat(os.path.join(root, name)).st_blocks * 512
    return str(p), free


def _delivery_warnings(cfg: Mapping[str, Any], kw: Mapping[str, Any], where: str) -> list[str]:
    out = []
    if kw.get("mode") == "fail_open":
        out.append(
            f"{where}.mode: fail_open drops records when the spool is full or cannot be written (each loss is "
            "declared by a signed audit.gap marker, but the records are gone); use fail_closed to keep every "
            "record (emit then raises DeliveryError instead)"
        )
    max_bytes = kw.get("max_bytes", _DEFAULT_MAX_BYTES)
    measured = _free_bytes(kw["directory"])
    if measured is not None and max_bytes > measured[1]:
        folder, free = measured
        size = f"{_mib(max_bytes)} MiB" if "max_size_mib" in cfg else f"{_mib(max_bytes)} MiB (the default)"
        out.append(
            f"{where}.max_size_mib: {size} is more than the {free // _MIB} MiB free on the filesystem holding "
            f"{folder}, so the disk fills before the spool reaches its limit; free space there, or lower "
            "max_size_mib to what the disk holds"
        )
    return out


def _check_keys(cfg: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    for k in cfg:
        if k not in valid:
            raise ConfigError(f"{where}.{k}: unknown key; valid keys: {', '.join(valid)}")


_SIGNING_KEYS = ("keys_dir", "key_name", "state_dir", "checkpoint_every", "checkpoint_interval", "origin",
                 "embed_record")
_REDACTION_KEYS = ("mode", "hmac_key", "rules", "redact_client_ip", "sensitive_keys", "allow_keys",
                   "custom_patterns", "pii_event")
_TLS_FILES = ("ca_file", "cert_file", "key_file")


def _relative(base: Path, value: Any, where: str) -> str:
    value = _text(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a path string, got {value!r}")
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


@dataclass
class _Plan:
    """A config checked and resolved, nothing built yet."""

    resource: dict[str, Any]
    redactions: list[tuple[str, dict[str, Any], bool]]  # (id, RedactionProcessor kwargs, pii events)
    signing_id: str
    signing: dict[str, Any]  # SigningProcessor kwargs, keys folder first
    key_name: str
    exporters: list[tuple[str, str, dict[str, Any], dict[str, Any]]]  # (id, type, settings, batch kwargs)
    delivery: tuple[str, dict[str, Any]] | None = None  # (id, SpoolProcessor kwargs)
    warnings: list[str] = field(default_factory=list)  # "<file>: <key>: <what>"


def _utf8(text: str, where: str) -> None:
    """ConfigError naming `where` when `text` cannot be written as UTF-8: a byte the environment did not
    decode (Python keeps it as a surrogate escape) or a lone surrogate ("\\ud800" in YAML). Such a
    resource value could be neither signed (the checkpoint's producer line) nor encoded as OTLP JSON, so
    every record would be lost. The message gives the position only: the value may be a credential."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{where}: character {exc.start + 1} is not valid UTF-8 (an undecodable byte or a lone "
                          "surrogate); write the value in UTF-8") from None


def _check_env_resource(e: Mapping[str, str]) -> None:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME of `e` are UTF-8 text (the SDK's Resource.create
    reads them from the process environment too, under a config file's resource)."""
    for var in (ENV_RESOURCE_ATTRIBUTES, ENV_SERVICE_NAME):
        raw = e.get(var)
        if raw:
            _utf8(raw, var)


def _resource(doc: Mapping[str, Any], src: str) -> dict[str, Any]:
    res = doc.get("resource") or {}
    if not isinstance(res, Mapping):
        raise ConfigError(f"{src}: resource: expected a mapping of attribute names to values")
    out: dict[str, Any] = {}
    for k, v in _plain(dict(res), "resource").items():
        ok = isinstance(v, (str, bool, int, float)) or (
            isinstance(v, list) and all(isinstance(x, (str, bool, int, float)) for x in v)
        )
        if not isinstance(k, str) or not ok:
            raise ConfigError(
                f"{src}: resource.{k}: an attribute value must be a string, number, boolean or a list of them"
            )
        _utf8(k, f"{src}: resource: an attribute name")
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str):
                _utf8(item, f"{src}: resource.{k}")
        out[k] = v
    _check_env_resource(os.environ)  # Resource.create adds these to the config's resource
    return out


def _exporter_plan(
    doc: Mapping[str, Any], eid: str, src: str, base: Path, factories: Mapping[str, Any]
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    where = f"{src}: exporters.{eid}"
    etype = eid.split("/", 1)[0]
    if etype not in factories:
        raise ConfigError(f"{where}: unknown exporter type {etype!r}; known: {', '.join(sorted(factories))}")
    block = _plain(_block(doc, "exporters", eid, src))
    cfg, qopts = _split_queue(block, where)
    if etype in _OWN_RETRY and "retry_on_failure" in block:
        cfg["retry_on_failure"] = block["retry_on_failure"]
    if etype == "file" and cfg.get("path") is not None:
        from otel_audit.exporters.file import SETTINGS as FILE_SETTINGS
        from otel_audit.exporters.file import check_regular_file

        raw = _text(cfg["path"])
        if isinstance(raw, str) and raw.strip():  # a NUL or a trailing / is lost once joined to the base
            FILE_SETTINGS.read_block({"path": raw}, where)
        cfg["path"] = _relative(base, cfg["path"], f"{where}.path")
        try:
            check_regular_file(cfg["path"])
        except ConfigError as exc:
            raise ConfigError(f"{where}.path: {exc}") from None
    tls = cfg.get("tls")
    if isinstance(tls, Mapping):
        cfg["tls"] = {k: (_relative(base, v, f"{where}.tls.{k}") if k in _TLS_FILES and isinstance(v, str) and v
                          else v) for k, v in tls.items()}
    return eid, etype, cfg, qopts


def _redaction_plan(cfg: Mapping[str, Any], where: str, base: Path) -> tuple[dict[str, Any], bool]:
    from otel_audit.pseudonym import load_hmac_key

    _check_keys(cfg, _REDACTION_KEYS, where)
    kwargs = {k: v for k, v in cfg.items() if k not in ("hmac_key", "pii_event")}
    mode = cfg.get("mode", "hmac")
    if mode not in ("hmac", "mask"):
        raise ConfigError(f"{where}.mode: {mode!r} is not a mode; use hmac or mask")
    if "redact_client_ip" in cfg:
        kwargs["redact_client_ip"] = _boolean(cfg["redact_client_ip"], f"{where}.redact_client_ip")
    spec = cfg.get("hmac_key")
    if spec not in (None, ""):
        if isinstance(spec, str) and spec.startswith("file:") and spec[5:]:
            spec = "file:" + _relative(base, spec[5:], f"{where}.hmac_key")
        kwargs["hmac_key"] = load_hmac_key(spec, where=f"{where}.hmac_key")
    elif mode == "hmac":
        raise ConfigError(
            f"{where}.hmac_key: required with mode hmac (e.g. hmac_key: ${{env:OTEL_AUDIT_HMAC_KEY}}), "
            "or set mode: mask"
        )
    return kwargs, _boolean(cfg.get("pii_event", True), f"{where}.pii_event")


def _signing_plan(cfg: Mapping[str, Any], where: str, base: Path) -> tuple[dict[str, Any], str]:
    from otel_audit.exporters.file import parse_duration
    from otel_audit.keys import Signer

    _check_keys(cfg, _SIGNING_KEYS, where)
    if cfg.get("keys_dir") in (None, ""):
        raise ConfigError(f"{where}.keys_dir: required; the folder made by 'otel-audit keys generate --dir DIR'")
    keys_dir = _relative(base, cfg["keys_dir"], f"{where}.keys_dir")
    every = _positive_int(cfg.get("checkpoint_every", 1000), f"{where}.checkpoint_every")
    interval = parse_duration(cfg.get("checkpoint_interval", 5.0), where=f"{where}.checkpoint_interval")
    if interval <= 0:
        raise ConfigError(f"{where}.checkpoint_interval: must be more than zero, e.g. 5s")
    if interval > _MAX_INTERVAL:
        raise ConfigError(f"{where}.checkpoint_interval: more than a year ({interval:g} s); e.g. 5s")
    origin = _text(cfg.get("origin", "otel-audit"))
    if not isinstance(origin, str) or not origin or any(c.isspace() for c in origin):
        raise ConfigError(f"{where}.origin: must be a non-empty string without spaces, got {origin!r}")
    key_name = _text(cfg.get("key_name"))
    if key_name is not None and not isinstance(key_name, str):
        raise ConfigError(f"{where}.key_name: must be a key name, got {key_name!r}")
    state_dir = None
    if cfg.get("state_dir") is not None:
        state_dir = _relative(base, cfg["state_dir"], f"{where}.state_dir")
        if os.path.exists(state_dir) and not os.path.isdir(state_dir):
            raise ConfigError(f"{where}.state_dir: {state_dir} exists and is not a folder; name a folder")
    _check_keys_not_world_writable(keys_dir, f"{where}.keys_dir")
    try:
        signer = Signer.from_keys_dir(keys_dir, key_name)  # fails here, before anything is started
    except KeyringError as exc:
        raise ConfigError(f"{where}.keys_dir: {exc}") from None
    kwargs = {"signer": keys_dir, "checkpoint_every": every, "checkpoint_interval": interval,
              "state_dir": state_dir, "origin": origin, "key_name": key_name,
              "embed_record": _boolean(cfg.get("embed_record", False), f"{where}.embed_record")}
    return kwargs, signer.name


def _plan(doc: Mapping[str, Any], src: str, base: Path) -> _Plan:
    procs, exps, pipe_name = _pipeline(doc, src)
    resource = _resource(doc, src)
    factories = _exporter_factories()
    exporters = [_exporter_plan(doc, eid, src, base, factories) for eid in exps]
    paths = [(eid, cfg["path"]) for eid, etype, cfg, _ in exporters if etype == "file" and "path" in cfg]
    for i, (eid, path) in enumerate(paths):
        for other, path2 in paths[:i]:
            if os.path.abspath(path) == os.path.abspath(path2):
                raise ConfigError(
                    f"{src}: exporters.{eid}.path: the same file as exporters.{other}.path; "
                    "two writers would interleave and rotate one file: give each its own path"
                )
    delivery = None
    warnings: list[str] = []
    if procs[-1].split("/", 1)[0] == "delivery":
        did = procs.pop()
        dcfg, dwhere = _plain(_block(doc, "processors", did, src)), f"{src}: processors.{did}"
        delivery = (did, _delivery_plan(dcfg, dwhere, base))
        warnings += _delivery_warnings(dcfg, delivery[1], dwhere)
    else:
        warnings.append(
            f"{src}: service.pipelines.{pipe_name}.processors: no delivery processor, so records wait in memory "
            "on their way to the exporters and a burst or a crash loses them; add a delivery processor last "
            "(processors: delivery: {directory: /var/lib/otel-audit/spool}) for a durable spool on disk"
        )
    redactions = []
    for pid in procs[:-1]:
        rcfg = _plain(_block(doc, "processors", pid, src))
        kwargs, pii = _redaction_plan(rcfg, f"{src}: processors.{pid}", base)
        redactions.append((pid, kwargs, pii))
        spec = _text(rcfg.get("hmac_key"))
        if isinstance(spec, str) and spec.startswith("file:") and spec[5:]:  # the pseudonymisation key
            key_file = Path(_relative(base, spec[5:], f"{src}: processors.{pid}.hmac_key"))
            found = filemodes.loose(key_file)
            if found is not None and not found[1]:
                warnings.append(f"{src}: processors.{pid}.hmac_key: " + filemodes.loose_message(
                    key_file, found[0], False, "the HMAC key (whoever reads it can test guesses against every "
                    "pseudonymised value)"))
    signing_id = procs[-1]
    swhere = f"{src}: processors.{signing_id}"
    signing, key_name = _signing_plan(_plain(_block(doc, "processors", signing_id, src)), swhere, base)
    _check_own_folders([
        (f"{swhere}.keys_dir", signing["signer"], "the keys"),
        (f"{swhere}.state_dir", signing["state_dir"], "the chain state"),
        (f"{src}: processors.{delivery[0]}.directory" if delivery else "", delivery[1]["directory"] if delivery
         else None, "the spool"),
    ])
    warnings += _private_path_warnings(src, signing_id, signing, delivery, exporters)
    if signing["state_dir"] is None:
        warnings.insert(0,
            f"{swhere}.state_dir: not set, so a restart cannot name the previous stream and a deleted tail "
            "cannot be told from a crash; set state_dir to a folder of its own (e.g. /var/lib/otel-audit/state)"
        )
    return _Plan(resource, redactions, signing_id, signing, key_name, exporters, delivery, warnings)


# -- who else can read what the pipeline keeps on disk ------------------------------------------------

_KEYS_HOLD = "the private signing keys (whoever reads them can sign as this producer)"
_STATE_HOLD = "the signing chain state (whoever changes it breaks the link between restarts)"
_SPOOL_HOLD = "audit records on their way to the exporters"
_ARCHIVE_HOLD = "the audit archive (pseudonymised audit records)"
_GROUP_ABOVE = 3  # more loose files than this in one folder are named in one warning


def _loose_tree(out: list[str], where: str, folder: Path, holds: str, *,
                names: list[str] | None = None, match: re.Pattern[str] | None = None) -> None:
    """Warnings for `folder` and the files directly in it (`names`, or those `match` matches, or all)
    that other users can read or change."""
    found = filemodes.loose(folder)
    if found is not None and found[1]:
        out.append(f"{where}: {filemodes.loose_message(folder, found[0], True, holds)}")
    if not folder.is_dir():
        return
    files = [(p, m) for p, m in filemodes.loose_files(folder, names) if match is None or match.fullmatch(p.name)]
    if len(files) > _GROUP_ABOVE:
        first, mode = files[0]
        out.append(
            f"{where}: {len(files)} files in {folder} can be read or changed by other users (e.g. {first.name}, "
            f"mode {mode:04o}); they hold {holds}; fix: find {shlex.quote(str(folder))} -maxdepth 1 -type f "
            "-exec chmod 600 {} +"
        )
        return
    for p, mode in files:
        out.append(f"{where}: {filemodes.loose_message(p, mode, False, holds)}")


def _check_own_folders(folders: list[tuple[str, str | None, str]]) -> None:
    """ConfigError when two of the keys folder, the chain state folder and the spool folder ((key, path,
    what it holds), in that order) are the same folder or one is inside the other; the later key is named.
    Each keeps files of its own beside whatever else is there: a spool in the keys folder leaves spool.json
    next to keyring.json, and `otel-audit verify --keys` (what auditors are given) then refuses the folder."""
    real = [(key, os.path.realpath(path), path, what) for key, path, what in folders if path]
    for i, (key, rp, path, what) in enumerate(real):
        for where, orp, opath, owhat in real[:i]:
            okey = where.rsplit(": ", 1)[-1]  # the file is named once, before the key
            if rp == orp:
                how = f"is the same folder as {okey} ({opath})"
            elif os.path.commonpath([rp, orp]) == orp:
                how = f"is inside {okey} ({opath})"
            elif os.path.commonpath([rp, orp]) == rp:
                how = f"holds {okey} ({opath})"
            else:
                continue
            why = ""
            if owhat == "the keys":
                why = " (the keys folder is what auditors get for 'otel-audit verify --keys')"
            raise ConfigError(f"{key}: {path} {how}; {what} and {owhat} each need a folder of their own{why}: "
                              "name another folder")


def _check_keys_not_world_writable(keys_dir: str, where: str) -> None:
    """ConfigError if every user may change the keys folder, private/ or a private key file: anyone could
    put their own key (or keyring) in place, and the producer would sign with it."""
    from otel_audit.keys import PRIVATE_DIR

    d = Path(keys_dir)
    private = d / PRIVATE_DIR
    paths = [d, private]
    if private.is_dir():
        with contextlib.suppress(OSError):
            paths += sorted(p for p in private.iterdir() if p.suffix == ".pem")
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue  # absent: loading the key says what is missing
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_IWOTH:
            is_dir = stat.S_ISDIR(st.st_mode)
            raise ConfigError(
                f"{where}: {'folder ' if is_dir else ''}{p} can be changed by every user (mode {mode:04o}), so "
                "anyone could put their own signing key or keyring in place; fix: "
                f"chmod {'700' if is_dir else '600'} {shlex.quote(str(p))}"
            )


def _private_path_warnings(src: str, signing_id: str, signing: Mapping[str, Any],
                           delivery: tuple[str, Mapping[str, Any]] | None,
                           exporters: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> list[str]:
    """A warning for each configured folder or file that exists and that other users can read or change."""
    from otel_audit.keys import KEYRING_FILE, PRIVATE_DIR
    from otel_audit.slots import slots

    out: list[str] = []
    swhere = f"{src}: processors.{signing_id}"
    keys_dir = Path(signing["signer"])
    _loose_tree(out, f"{swhere}.keys_dir", keys_dir, _KEYS_HOLD, names=[])
    _loose_tree(out, f"{swhere}.keys_dir", keys_dir / PRIVATE_DIR, _KEYS_HOLD)
    ring = filemodes.loose(keys_dir / KEYRING_FILE, public=True)  # public by design: only writing matters
    if ring is not None:
        who = filemodes.describe_mode(ring[0] & filemodes.OTHERS_W)
        out.append(f"{swhere}.keys_dir: {keys_dir / KEYRING_FILE} {who} (mode {ring[0]:04o}), so others could add "
                   f"a key or end one; fix: chmod 644 {shlex.quote(str(keys_dir / KEYRING_FILE))}")
    if signing.get("state_dir"):
        for d in slots(Path(signing["state_dir"])):
            _loose_tree(out, f"{swhere}.state_dir", d, _STATE_HOLD)
    if delivery is not None:
        did, kw = delivery
        for d in slots(Path(kw["directory"])):
            _loose_tree(out, f"{src}: processors.{did}.directory", d, _SPOOL_HOLD)
            for sub in ("segments", "cursors", "quarantine"):
                if (d / sub).is_dir():
                    _loose_tree(out, f"{src}: processors.{did}.directory", d / sub, _SPOOL_HOLD)
    for eid, etype, cfg, _ in exporters:
        if etype == "file" and isinstance(cfg.get("path"), str):
            path = Path(cfg["path"])
            stem, ext = re.escape(path.stem), re.escape(path.suffix)
            # the archive, its rotated and gzipped backups, a forked child's file, a torn tail set aside
            mine = re.compile(rf"{stem}(\.\d+)?(-[0-9T.-]+)?{ext}(\.gz|\.gz\.tmp|\.torn-[^/]*)?")
            _loose_tree(out, f"{src}: exporters.{eid}.path", path.parent, _ARCHIVE_HOLD, match=mine)
    return out


def _redaction_processor(kwargs: Mapping[str, Any], where: str, logger: Any) -> Any:
    from otel_audit.processors.redaction import RedactionProcessor

    try:
        return RedactionProcessor(**kwargs, pii_event_logger=logger)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


class _LatePIILogger:
    """A redaction processor's `pii_event_logger` made before its provider, which takes the resource the
    processor redacts: the provider's `otel_audit.redaction` logger once `bind` is called (before any record)."""

    def __init__(self) -> None:
        self._logger: Any = None

    def bind(self, provider: Any) -> None:
        self._logger = provider.get_logger("otel_audit.redaction")

    def emit(self, *args: Any, **kwargs: Any) -> None:
        if self._logger is not None:
            self._logger.emit(*args, **kwargs)


def _redacted_resource(resource: Any, processors: Iterable[Any]) -> Any:
    """`resource` through each redaction processor in pipeline order. The resource is fixed per provider, so it is
    redacted once, here: the provider (whose records then carry it), the signing processor (its checkpoints, gap
    markers and the checkpoints' producer line) and so every exported record hold the same redacted values, which
    is what the verifier compares a record's resource with."""
    for rp in processors:
        resource = rp.redact_resource(resource)
    return resource


def _shutdown_all(parts: list[Any]) -> None:
    """Shut down parts built before an error; none has seen a record, so none writes one."""
    for part in reversed(parts):
        try:
            part.shutdown()
        except Exception:  # the error being raised matters more
            _log.debug("shutdown of %r after a config error failed", part, exc_info=True)


class _Collect(logging.Handler):
    """Keeps the text of each WARNING (or worse) record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _exporter_warnings() -> Iterator[list[str]]:
    """The warnings the exporters log meanwhile (a Datadog site not known, an ignored setting): a dry run
    returns them as its own warnings, so check-config prints each once in its form and --strict fails on
    them, instead of letting them through as log lines."""
    log = logging.getLogger("otel_audit.exporters")
    collect = _Collect()
    propagate = log.propagate
    log.addHandler(collect)
    log.propagate = False
    try:
        yield collect.messages
    finally:
        log.removeHandler(collect)
        log.propagate = propagate


def build(
    doc: Mapping[str, Any], *, src: str = "config", base_dir: str | os.PathLike[str] = ".", dry_run: bool = False
) -> Built:
    """Build a LoggerProvider with redaction -> signing -> one batch processor per exporter.

    With dry_run=True, check everything without side effects instead (see the module docstring).
    """
    plan = _plan(doc, src, Path(base_dir))
    factories = _exporter_factories()
    if dry_run:
        exporters: dict[str, Any] = {}
        warnings = list(plan.warnings)
        for eid, etype, cfg, _ in plan.exporters:
            where = f"{src}: exporters.{eid}"
            with _exporter_warnings() as said:
                exporter = factories[etype](cfg, where)
                exporter.shutdown()  # constructed to check its settings; never used
            exporters[eid] = exporter
            for msg in said:  # "<file>: <key>: <what to do>", as the plan's own warnings are; each once
                w = msg if msg.startswith(f"{src}: ") else f"{where}: {msg}"
                if w not in warnings:
                    warnings.append(w)
        procs: dict[str, Any] = {
            pid: _redaction_processor(kw, f"{src}: processors.{pid}", None) for pid, kw, _ in plan.redactions
        }
        procs[plan.signing_id] = None  # checked (the key loads, the settings are valid), not started
        if plan.delivery is not None:
            procs[plan.delivery[0]] = None
        return Built(None, None, exporters, procs, key_name=plan.key_name, dry_run=True, warnings=warnings)
    built = _construct(plan, src, factories)
    for w in plan.warnings:
        _log.warning("%s", w)
    return built


def _construct(plan: _Plan, src: str, factories: Mapping[str, Any]) -> Built:
    from opentelemetry.sdk.resources import Resource

    from otel_audit.processors.batch import BatchProcessor  # the SDK's, with a shutdown that keeps a deadline
    from otel_audit.processors.signing import SigningProcessor

    # The redaction processors come first: the provider's resource is the one they redact (_redacted_resource).
    procs: dict[str, Any] = {}
    late: list[_LatePIILogger] = []
    for pid, kwargs, pii in plan.redactions:
        logger = _LatePIILogger() if pii else None
        if logger is not None:
            late.append(logger)
        procs[pid] = _redaction_processor(kwargs, f"{src}: processors.{pid}", logger)
    guard_sdk_loggers()  # the SDK's loggers, now that it is imported: its lines quote malformed OTEL_* values
    # with OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as in the SDK (all checked as UTF-8 by _resource)
    raw = Resource.create(plan.resource)
    resource = _redacted_resource(raw, procs.values())
    provider = audit_provider(resource)
    for logger in late:
        logger.bind(provider)
    started: list[Any] = [provider]
    exporters: dict[str, Any] = {}
    batchers = []
    try:
        for eid, etype, cfg, qopts in plan.exporters:
            where = f"{src}: exporters.{eid}"
            exporter = factories[etype](cfg, where)
            exporters[eid] = exporter
            if plan.delivery is not None:
                started.append(exporter)
                continue  # the spool ships to it
            try:
                batcher = BatchProcessor(exporter, **qopts)
            except ValueError as exc:
                started.append(exporter)
                raise ConfigError(f"{where}: sending_queue/batch: {exc}") from None
            started.append(batcher)
            batchers.append(batcher)
        spool = None
        if plan.delivery is not None:
            from otel_audit.processors.spool import SpoolProcessor

            did, dkw = plan.delivery
            dkw = dict(dkw)
            try:
                spool = SpoolProcessor(dkw.pop("directory"), exporters, **dkw)
            except ValueError as exc:
                raise ConfigError(f"{src}: processors.{did}: {exc}") from None
            started.append(spool)
            procs[did] = spool
        where = f"{src}: processors.{plan.signing_id}"
        kw = dict(plan.signing)
        try:
            signing = SigningProcessor(kw.pop("signer"), downstream=spool if spool is not None else batchers,
                                       resource=resource, **kw)
        except KeyringError as exc:
            raise ConfigError(f"{where}.keys_dir: {exc}") from None
        except ValueError as exc:  # ConfigError too: the state_dir is in use or cannot be made
            raise ConfigError(f"{where}: {exc}") from None
        started.append(signing)  # it wires the spool to itself (on_drop, on_reject, on_lost)
    except BaseException:
        _shutdown_all(started)
        raise
    for pid, rp in procs.items():
        if plan.delivery is None or pid != plan.delivery[0]:
            provider.add_log_record_processor(rp)
    procs[plan.signing_id] = signing
    provider.add_log_record_processor(signing)
    return Built(provider, signing, exporters, procs, key_name=plan.key_name, warnings=list(plan.warnings))


def redaction_hmac_key(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key of the config file's redaction processor (what `otel-audit hash --config` uses)."""
    from otel_audit.pseudonym import load_hmac_key

    doc = load(path, env)
    base = Path(path).resolve().parent
    blocks = doc.get("processors") or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"{path}: processors: expected a mapping of component ids to settings")
    found = [
        (pid, b) for pid, b in blocks.items()
        if str(pid).split("/", 1)[0] == "redaction" and isinstance(b, Mapping) and b.get("hmac_key") not in (None, "")
    ]
    if not found:
        raise ConfigError(f"{path}: processors.redaction.hmac_key: not set, so there is no key to hash with; "
                          "pass --key, or set OTEL_AUDIT_HMAC_KEY")
    if len(found) > 1:
        raise ConfigError(f"{path}: processors: {len(found)} redaction processors have an hmac_key; pass --key")
    pid, block = found[0]
    where = f"{path}: processors.{pid}.hmac_key"
    spec = _text(block["hmac_key"])
    if isinstance(spec, str) and spec.startswith("file:") and spec[5:]:
        spec = "file:" + _relative(base, spec[5:], where)
    return load_hmac_key(spec, where=where)


def build_from_file(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, dry_run: bool = False
) -> Built:
    """Load a config file and build it (relative paths in it are relative to its folder)."""
    doc = load(path, env)
    return build(doc, src=str(path), base_dir=Path(path).resolve().parent, dry_run=dry_run)


ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"


def audit_provider(resource: Any) -> Any:
    """The pipeline's SDK LoggerProvider, enabled whatever OTEL_SDK_DISABLED says.

    OTEL_SDK_DISABLED=true makes the SDK's LoggerProvider hand out no-op loggers: the audit pipeline
    would be built, sign its checkpoints, and drop every audit event without a word, and the verifier
    would prove an empty stream. The variable turns telemetry off; an audit trail that was configured
    (OTEL_AUDIT_CONFIG, OTEL_AUDIT_KEYS_DIR, or configure()) is not telemetry to switch off with it, so
    the audit provider keeps working and a WARNING says so. Should the SDK offer no way to enable it,
    the pipeline refuses with a ConfigError instead of dropping records."""
    from opentelemetry._logs import NoOpLogger
    from opentelemetry.sdk._logs import LoggerProvider

    from otel_audit import instrument

    provider = LoggerProvider(resource=resource)
    instrument.mark_audit_provider(provider)  # AuditLogger() through the global provider checks it is one of these
    if not isinstance(provider.get_logger("otel_audit.config"), NoOpLogger):
        return provider
    from otel_audit import _sdk_compat

    _sdk_compat.enable_provider(provider)  # the SDK's switch has no public parameter
    if isinstance(provider.get_logger("otel_audit.config"), NoOpLogger):
        provider.shutdown()
        raise ConfigError(
            f"{ENV_SDK_DISABLED}=true: the OpenTelemetry SDK hands out no-op loggers, so every audit event "
            "would be dropped while the stream verifies empty; unset OTEL_SDK_DISABLED (it also turns traces "
            "and metrics off), or remove OTEL_AUDIT_CONFIG / OTEL_AUDIT_KEYS_DIR to run without an audit trail"
        )
    _log.warning(
        "%s=true turns the OpenTelemetry SDK off, but not the audit pipeline: audit events are still redacted, "
        "signed and exported, because an audit trail was configured; to run without one, remove "
        "OTEL_AUDIT_CONFIG / OTEL_AUDIT_KEYS_DIR (and do not call otel_audit.configure())", ENV_SDK_DISABLED,
    )
    return provider


ENV_CONFIG = "OTEL_AUDIT_CONFIG"
ENV_KEYS_DIR = "OTEL_AUDIT_KEYS_DIR"
ENV_STATE_DIR = "OTEL_AUDIT_STATE_DIR"
ENV_SPOOL_DIR = "OTEL_AUDIT_SPOOL_DIR"
ENV_DELIVERY_MODE = "OTEL_AUDIT_DELIVERY_MODE"
ENV_HMAC_KEY = "OTEL_AUDIT_HMAC_KEY"
ENV_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"
ENV_CHECKPOINT_EVERY = "OTEL_AUDIT_CHECKPOINT_EVERY"
ENV_CHECKPOINT_INTERVAL = "OTEL_AUDIT_CHECKPOINT_INTERVAL"
ENV_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_OTLP_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"

#: the SDK's rule (opentelemetry.sdk._configuration): OTEL_LOGS_EXPORTER=otlp is the entry point of the protocol
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_OTLP_NAMES = ("otlp", "otlp_proto_grpc", "otlp_proto_http")
_SDK_OTLP: dict[str, Literal["grpc", "http"]] = {"otlp_proto_grpc": "grpc", "otlp_proto_http": "http"}


def _otlp_entry_point(name: str, e: Mapping[str, str]) -> str:
    """The `opentelemetry_logs_exporter` entry point OTEL_LOGS_EXPORTER's `name` stands for, as the SDK
    picks it: `otlp` is gRPC unless OTEL_EXPORTER_OTLP_LOGS_PROTOCOL (else OTEL_EXPORTER_OTLP_PROTOCOL)
    says http/protobuf; an explicit otlp_proto_grpc / otlp_proto_http wins over the protocol (with a
    warning when they disagree). http/json is refused: the Python OTLP exporter cannot send it."""
    if name not in _OTLP_NAMES:
        return name
    var = ENV_OTLP_LOGS_PROTOCOL if (e.get(ENV_OTLP_LOGS_PROTOCOL) or "").strip() else ENV_OTLP_PROTOCOL
    protocol = (e.get(var) or "").strip()
    if not protocol:
        return _OTLP_BY_PROTOCOL["grpc"] if name == "otlp" else name
    if protocol not in _OTLP_BY_PROTOCOL:
        why = ("the Python OTLP exporter does not support http/json" if protocol == "http/json"
               else f"unknown OTLP protocol {protocol!r}")
        if name == "otlp":
            raise ConfigError(f"{var}={protocol}: {why}; set it to grpc or http/protobuf "
                              f"(or name otlp_proto_grpc / otlp_proto_http in {ENV_LOGS_EXPORTER})")
        _log.warning("%s=%s: %s; %s names %s, which is used", var, protocol, why, ENV_LOGS_EXPORTER, name)
        return name
    if name == "otlp":
        return _OTLP_BY_PROTOCOL[protocol]
    if _OTLP_BY_PROTOCOL[protocol] != name:
        _log.warning("%s=%s disagrees with %s=%s; using %s", var, protocol, ENV_LOGS_EXPORTER, name, name)
    return name


def _env_resource(e: Mapping[str, str]) -> dict[str, Any]:
    """OTEL_RESOURCE_ATTRIBUTES (key=value,... with percent-encoded values) and OTEL_SERVICE_NAME (which
    wins for service.name), read from `e` by the SDK's rules, so that a given mapping is the whole story."""
    from urllib.parse import unquote

    _check_env_resource(e)
    if e is not os.environ:
        _check_env_resource(os.environ)  # Resource.create reads the process's variables too
    out: dict[str, Any] = {}
    for item in (e.get(ENV_RESOURCE_ATTRIBUTES) or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Not the item itself: a value may be a credential.
            _log.warning("%s: an item (of %d characters) is not key=value; ignored", ENV_RESOURCE_ATTRIBUTES,
                         len(item))
            continue
        out[key.strip()] = unquote(value.strip())
    service = (e.get(ENV_SERVICE_NAME) or "").strip()
    if service:
        out["service.name"] = service
    return out


def _env_number(e: Mapping[str, str], name: str, default: float, parse: Callable[[str], Any]) -> Any:
    """A positive number from an env var; a bad value logs a warning and falls back, as the SDK does."""
    raw = e.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        v = parse(raw.strip())
        if isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(raw)
        return v
    except (ValueError, AuditError):
        # Not the value itself: a credential set in the wrong variable would be logged.
        _log.warning("%s (a value of %d characters) is not a positive number; using %s", name, len(raw), default)
        return default


def build_from_env(env: Mapping[str, str] | None = None) -> Built:
    """The env-only path: OTEL_AUDIT_KEYS_DIR (required), OTEL_AUDIT_STATE_DIR, OTEL_AUDIT_HMAC_KEY
    (hmac redaction; without it, mask), OTEL_LOGS_EXPORTER (comma list of `opentelemetry_logs_exporter`
    entry point names, default otel_audit_file, whose OTEL_AUDIT_FILE_PATH is read from `env`),
    OTEL_AUDIT_CHECKPOINT_EVERY and OTEL_AUDIT_CHECKPOINT_INTERVAL (seconds or a duration such as 5s),
    OTEL_AUDIT_SPOOL_DIR (the durable spool's folder; without it records wait in memory, and the
    returned `Built.warnings` and the log say so) and OTEL_AUDIT_DELIVERY_MODE (fail_closed, the default, or
    fail_open).

    As the SDK does: `otlp` is the gRPC exporter unless OTEL_EXPORTER_OTLP_LOGS_PROTOCOL (else
    OTEL_EXPORTER_OTLP_PROTOCOL) is http/protobuf (`_otlp_entry_point`), and the resource carries
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. The OTLP exporters themselves read their other
    OTEL_EXPORTER_OTLP_* settings (endpoint, headers, ...) from the process environment."""
    from importlib.metadata import entry_points

    from opentelemetry.sdk.resources import Resource

    from otel_audit.exporters.file import DEFAULT_PATH, ENV_PATH, FileLogRecordExporter, parse_duration
    from otel_audit.exporters.otlp import proxy_arguments as otlp_proxy_arguments
    from otel_audit.keys import Signer
    from otel_audit.processors.batch import BatchProcessor  # the SDK's, with a shutdown that keeps a deadline
    from otel_audit.processors.signing import SigningProcessor
    from otel_audit.pseudonym import load_hmac_key

    e = os.environ if env is None else env
    keys_dir = e.get(ENV_KEYS_DIR)
    if not keys_dir:
        raise ConfigError(
            f"{ENV_KEYS_DIR} is not set: point it at a keys folder ('otel-audit keys generate --dir DIR'), "
            f"or give a config file in {ENV_CONFIG}"
        )
    try:
        key_name = Signer.from_keys_dir(keys_dir).name
    except KeyringError as exc:
        raise ConfigError(f"{ENV_KEYS_DIR}: {exc}") from None
    state_dir = e.get(ENV_STATE_DIR) or None
    if state_dir is not None and os.path.exists(state_dir) and not os.path.isdir(state_dir):
        raise ConfigError(f"{ENV_STATE_DIR}: {state_dir} exists and is not a folder; name a folder")
    hk = e.get(ENV_HMAC_KEY)
    hmac_key = load_hmac_key(hk, where=ENV_HMAC_KEY) if hk else None
    names = [n.strip() for n in e.get(ENV_LOGS_EXPORTER, "otel_audit_file").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        raise ConfigError(f"{ENV_LOGS_EXPORTER} names no exporter: audit records would go nowhere; "
                          "use e.g. otel_audit_file or otlp")
    eps = {ep.name: ep for ep in entry_points(group="opentelemetry_logs_exporter")}
    chosen: dict[str, str] = {}  # name in OTEL_LOGS_EXPORTER -> the entry point used
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(f"{ENV_LOGS_EXPORTER}: {n!r} is named twice; name each exporter once")
        chosen[n] = _otlp_entry_point(n, e)
        if chosen[n] not in eps:
            if n != chosen[n]:
                raise ConfigError(
                    f"{ENV_LOGS_EXPORTER}: {n!r} with this OTLP protocol needs the {chosen[n]!r} exporter, which "
                    f"is not installed; pip install opentelemetry-exporter-{chosen[n].replace('_', '-')}"
                )
            raise ConfigError(
                f"{ENV_LOGS_EXPORTER}: unknown exporter {n!r}; installed: {', '.join(sorted(eps))}"
            )
    spool_dir = e.get(ENV_SPOOL_DIR) or None
    if spool_dir is not None and os.path.exists(spool_dir) and not os.path.isdir(spool_dir):
        raise ConfigError(f"{ENV_SPOOL_DIR}: {spool_dir} exists and is not a folder; name a folder of its own")
    _check_own_folders([(ENV_KEYS_DIR, keys_dir, "the keys"), (ENV_STATE_DIR, state_dir, "the chain state"),
                        (ENV_SPOOL_DIR, spool_dir, "the spool")])
    from otel_audit.processors.spool import MODES

    mode = (e.get(ENV_DELIVERY_MODE) or "fail_closed").strip()
    if mode not in MODES:
        raise ConfigError(f"{ENV_DELIVERY_MODE}: expected one of {', '.join(MODES)}, got {mode!r}")
    if spool_dir is None and e.get(ENV_DELIVERY_MODE):
        raise ConfigError(f"{ENV_DELIVERY_MODE} is set but {ENV_SPOOL_DIR} is not: the mode is the spool's; "
                          f"set {ENV_SPOOL_DIR} to a folder of its own")
    warnings: list[str] = []
    if spool_dir is None:
        warnings.append(f"{ENV_SPOOL_DIR}: not set, so records wait in memory on their way to the exporters and "
                        f"a burst, an outage or a crash loses them; set {ENV_SPOOL_DIR} to a folder of its own "
                        "for the durable spool on disk")
    if state_dir is None:
        warnings.append(f"{ENV_STATE_DIR}: not set, so a restart cannot name the previous stream and a deleted "
                        f"tail cannot be told from a crash; set {ENV_STATE_DIR} to a folder of its own")
    every = _env_number(e, ENV_CHECKPOINT_EVERY, 1000, int)
    interval = _env_number(e, ENV_CHECKPOINT_INTERVAL, 5.0,
                           lambda s: parse_duration(s, where=ENV_CHECKPOINT_INTERVAL))

    pii_logger = _LatePIILogger()
    red = _redaction_processor({"mode": "hmac" if hmac_key else "mask", "hmac_key": hmac_key}, ENV_HMAC_KEY, pii_logger)
    guard_sdk_loggers()  # the SDK's loggers, now that it is imported: its lines quote malformed OTEL_* values
    raw = Resource.create(_env_resource(e))  # checked as UTF-8 there, with the process's own variables
    resource = _redacted_resource(raw, [red])
    provider = audit_provider(resource)
    pii_logger.bind(provider)
    started: list[Any] = [provider]
    exporters: dict[str, Any] = {}
    batchers = []
    try:
        for n in names:
            try:
                factory = eps[chosen[n]].load()
                # the file exporter's path comes from `env` too, so that a given mapping is the whole story
                if factory is FileLogRecordExporter:
                    try:
                        exp = factory(path=e.get(ENV_PATH) or DEFAULT_PATH)
                    except ConfigError as exc:  # "path: ..." names the argument; here it is the variable
                        msg = str(exc)
                        raise ConfigError(f"{ENV_PATH}: {msg.removeprefix('path: ')}" if msg.startswith("path: ")
                                          else msg) from None
                elif chosen[n] in _SDK_OTLP:  # the SDK's exporter, with otel-audit's proxy decision
                    exp = factory(**otlp_proxy_arguments(_SDK_OTLP[chosen[n]]))
                else:
                    exp = factory()
            except AuditError:
                raise
            except Exception as exc:
                raise ConfigError(f"{ENV_LOGS_EXPORTER}: cannot create exporter {n!r}: {exc}") from None
            started.append(exp)
            exporters[n] = exp
            if spool_dir is not None:
                continue  # the spool ships to it
            try:
                batcher = BatchProcessor(exp)
            except ValueError as exc:
                raise ConfigError(f"OTEL_BLRP_* settings for exporter {n!r}: {exc}") from None
            started[-1] = batcher  # shutting the batcher down shuts its exporter down
            batchers.append(batcher)
        spool = None
        if spool_dir is not None:
            from otel_audit.processors.spool import SpoolProcessor

            try:
                spool = SpoolProcessor(spool_dir, exporters, mode=mode)
            except ValueError as exc:  # ConfigError too: the folder is in use or cannot be made
                raise ConfigError(f"{ENV_SPOOL_DIR}: {exc}") from None
            started.append(spool)
        try:
            signing = SigningProcessor(keys_dir, downstream=spool if spool is not None else batchers,
                                       checkpoint_every=every,
                                       checkpoint_interval=interval, state_dir=state_dir, resource=resource)
        except KeyringError as exc:
            raise ConfigError(f"{ENV_KEYS_DIR}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{ENV_STATE_DIR}: {exc}") from None
    except BaseException:
        _shutdown_all(started)
        raise
    provider.add_log_record_processor(red)
    provider.add_log_record_processor(signing)
    procs: dict[str, Any] = {"redaction": red, "signing": signing}
    if spool is not None:
        procs["delivery"] = spool
    for w in warnings:
        _log.warning("%s", w)
    return Built(provider, signing, exporters, procs, key_name=key_name, warnings=warnings)
