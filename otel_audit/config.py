"""Configuration in the OpenTelemetry Collector's shape, and the pipeline it builds.

    resource:                    # the producer's resource attributes (optional)
      service.name: llm-gateway
    processors:
      redaction:   {mode: hmac, hmac_key: "${env:OTEL_AUDIT_HMAC_KEY}"}
      signing:     {keys_dir: ./keys, state_dir: ./state, checkpoint_every: 1000, checkpoint_interval: 5s}
    exporters:
      file:        {path: ./archive/audit.jsonl}
      otlp:        {endpoint: "localhost:4317", tls: {insecure: true}}
    service:
      pipelines:
        logs/audit:
          processors: [redaction, signing]
          exporters: [file, otlp]

Component ids are `type` or `type/name`, as in the collector, so an exporter block moves between
this file and a collector's unchanged. `${env:VAR}`, `${env:VAR:-default}` and `${VAR}` are
substituted in every string. Errors name the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from otel_audit.errors import ConfigError

_ENV_RE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_KEYS = ("resource", "processors", "exporters", "service", "extensions", "receivers", "connectors")


# -- loading --------------------------------------------------------------------------------------


def _substitute(node: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        full = _ENV_RE.fullmatch(node)

        def value(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set; export it or write ${{env:{name}:-default}}")

        if full:
            raw = value(full)
            # a value that is one substitution is typed like YAML, as the collector does
            try:
                typed = yaml.safe_load(raw) if raw else raw
            except yaml.YAMLError:
                return raw
            return typed if isinstance(typed, (int, float, bool, str)) else raw
        return _ENV_RE.sub(value, node)
    if isinstance(node, dict):
        return {k: _substitute(v, f"{where}.{k}" if where else str(k), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{where}[{i}]", env) for i, v in enumerate(node)]
    return node


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse a YAML or JSON config file, substitute env vars, and check its top-level shape."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    try:
        if p.suffix == ".json":
            doc = orjson.loads(text)
        else:
            doc = yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: the top level must be a mapping with processors/exporters/service, got {type(doc).__name__}")
    for k in doc:
        if k not in _TOP_KEYS:
            raise ConfigError(f"{p}: unknown top-level key {k!r}; valid keys: {', '.join(_TOP_KEYS)}")
    return _substitute(doc, "", os.environ if env is None else env)  # type: ignore[no-any-return]


# -- the registry of component types --------------------------------------------------------------


@dataclass
class Built:
    """What a config describes, built: a LoggerProvider and its parts."""

    provider: Any
    signing: Any
    exporters: dict[str, Any] = field(default_factory=dict)
    processors: dict[str, Any] = field(default_factory=dict)


def _exporter_factories() -> dict[str, Callable[[Mapping[str, Any], str], Any]]:
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.exporters.otlp import create_otlp_exporter

    return {
        "file": lambda cfg, where: FileLogRecordExporter.from_config(cfg, where=where),
        "otlp": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="grpc"),
        "otlphttp": lambda cfg, where: create_otlp_exporter(cfg, where=where, protocol="http"),
    }


_QUEUE_KEYS = ("sending_queue", "batch", "retry_on_failure")


def _split_queue(cfg: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take the delivery settings (sending_queue, batch) out of an exporter block."""
    from otel_audit.exporters.file import parse_duration

    rest = {k: v for k, v in cfg.items() if k not in _QUEUE_KEYS}
    opts: dict[str, Any] = {}
    q = cfg.get("sending_queue") or {}
    if not isinstance(q, Mapping):
        raise ConfigError(f"{where}.sending_queue: expected a mapping (queue_size, enabled)")
    for k, v in q.items():
        if k == "queue_size":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where}.sending_queue.queue_size: expected a positive integer, got {v!r}")
            opts["max_queue_size"] = v
        elif k == "enabled":
            if v is False:
                raise ConfigError(
                    f"{where}.sending_queue.enabled: false is not allowed for audit records; "
                    "a queue is what keeps them through a slow exporter"
                )
        elif k not in ("num_consumers", "storage", "blocking", "sizer"):
            raise ConfigError(f"{where}.sending_queue.{k}: unknown key; valid keys: queue_size, enabled")
    b = cfg.get("batch") or {}
    if not isinstance(b, Mapping):
        raise ConfigError(f"{where}.batch: expected a mapping (max_size, flush_timeout)")
    for k, v in b.items():
        if k in ("max_size", "send_batch_size"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where}.batch.{k}: expected a positive integer, got {v!r}")
            opts["max_export_batch_size"] = v
        elif k in ("flush_timeout", "timeout"):
            opts["schedule_delay_millis"] = parse_duration(v, where=f"{where}.batch.{k}") * 1000
        else:
            raise ConfigError(f"{where}.batch.{k}: unknown key; valid keys: max_size, flush_timeout")
    r = cfg.get("retry_on_failure") or {}
    if not isinstance(r, Mapping):
        raise ConfigError(f"{where}.retry_on_failure: expected a mapping (enabled, initial_interval, ...)")
    for k, v in r.items():
        if k == "enabled" and v is False:
            raise ConfigError(f"{where}.retry_on_failure.enabled: false would drop audit records on the first error")
        if k in ("initial_interval", "max_interval", "max_elapsed_time", "randomization_factor", "multiplier"):
            continue  # the exporter's own retry policy applies; accepted so collector blocks load unchanged
        if k != "enabled":
            raise ConfigError(f"{where}.retry_on_failure.{k}: unknown key")
    if "max_queue_size" in opts and opts.get("max_export_batch_size", 512) > opts["max_queue_size"]:
        opts["max_export_batch_size"] = opts["max_queue_size"]
    return rest, opts


def _split_id(cid: Any, where: str) -> str:
    if not isinstance(cid, str) or not cid or cid.count("/") > 1 or cid.startswith("/"):
        raise ConfigError(f"{where}: component id {cid!r} must be 'type' or 'type/name'")
    return cid.split("/", 1)[0]


def _block(doc: Mapping[str, Any], section: str, cid: str, src: str) -> dict[str, Any]:
    sec = doc.get(section) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"{src}: {section}: expected a mapping of component ids")
    if cid not in sec:
        raise ConfigError(
            f"{src}: service.pipelines uses {section[:-1]} {cid!r}, which {section}: does not define "
            f"(defined: {', '.join(map(str, sec)) or 'none'})"
        )
    cfg = sec[cid]
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{src}: {section}.{cid}: expected a mapping of settings, got {type(cfg).__name__}")
    return dict(cfg)


def _pipeline(doc: Mapping[str, Any], src: str) -> tuple[list[str], list[str]]:
    svc = doc.get("service")
    if not isinstance(svc, Mapping) or not isinstance(svc.get("pipelines"), Mapping):
        raise ConfigError(f"{src}: service.pipelines is missing; add a logs pipeline with processors and exporters")
    pipes = {k: v for k, v in svc["pipelines"].items() if _split_id(k, f"{src}: service.pipelines") == "logs"}
    if len(pipes) != 1:
        raise ConfigError(
            f"{src}: service.pipelines must hold exactly one logs pipeline (found {len(pipes)}); "
            "one process writes one audit stream"
        )
    (name, pipe), = pipes.items()
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
    types = [_split_id(p, f"{where}.processors") for p in procs]
    if types.count("signing") != 1:
        raise ConfigError(f"{where}.processors: exactly one 'signing' processor is needed, found {types.count('signing')}")
    if types[-1] != "signing":
        raise ConfigError(
            f"{where}.processors: 'signing' must come last; a processor after it would change signed records"
        )
    for t, p in zip(types, procs):
        if t not in ("signing", "redaction"):
            raise ConfigError(f"{where}.processors: unknown processor type {t!r} in {p!r}; known: redaction, signing")
    return [str(p) for p in procs], [str(e) for e in exps]


def _check_keys(cfg: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    for k in cfg:
        if k not in valid:
            raise ConfigError(f"{where}.{k}: unknown key; valid keys: {', '.join(valid)}")


_SIGNING_KEYS = ("keys_dir", "key_name", "state_dir", "checkpoint_every", "checkpoint_interval", "origin")
_REDACTION_KEYS = ("mode", "hmac_key", "rules", "redact_client_ip", "sensitive_keys", "allow_keys",
                   "custom_patterns", "pii_event")


def _relative(base: Path, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a path string, got {value!r}")
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


def build(doc: Mapping[str, Any], *, src: str = "config", base_dir: str | os.PathLike[str] = ".") -> Built:
    """Build a LoggerProvider with redaction -> signing -> one batch processor per exporter."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from otel_audit.exporters.file import parse_duration
    from otel_audit.processors.signing import SigningProcessor

    base = Path(base_dir)
    procs, exps = _pipeline(doc, src)
    res = doc.get("resource") or {}
    if not isinstance(res, Mapping):
        raise ConfigError(f"{src}: resource: expected a mapping of attribute names to values")
    resource = Resource.create(dict(res))
    provider = LoggerProvider(resource=resource)
    factories = _exporter_factories()
    built_exporters: dict[str, Any] = {}
    batchers = []
    for eid in exps:
        where = f"{src}: exporters.{eid}"
        etype = _split_id(eid, where)
        if etype not in factories:
            raise ConfigError(f"{where}: unknown exporter type {etype!r}; known: {', '.join(sorted(factories))}")
        cfg, qopts = _split_queue(_block(doc, "exporters", eid, src), where)
        if etype == "file" and "path" in cfg:
            cfg["path"] = _relative(base, cfg["path"], f"{where}.path")
        exporter = factories[etype](cfg, where)
        built_exporters[eid] = exporter
        batchers.append(BatchLogRecordProcessor(exporter, **qopts))
    built_procs: dict[str, Any] = {}
    signing_id = procs[-1]
    for pid in procs[:-1]:
        where = f"{src}: processors.{pid}"
        cfg = _block(doc, "processors", pid, src)
        _check_keys(cfg, _REDACTION_KEYS, where)
        built_procs[pid] = _redaction(cfg, where, provider)
        provider.add_log_record_processor(built_procs[pid])
    where = f"{src}: processors.{signing_id}"
    cfg = _block(doc, "processors", signing_id, src)
    _check_keys(cfg, _SIGNING_KEYS, where)
    if "keys_dir" not in cfg:
        raise ConfigError(f"{where}.keys_dir: required; the folder made by 'otel-audit keys generate --dir DIR'")
    every = cfg.get("checkpoint_every", 1000)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"{where}.checkpoint_every: expected a positive integer, got {every!r}")
    interval = parse_duration(cfg.get("checkpoint_interval", 5.0), where=f"{where}.checkpoint_interval")
    if interval <= 0:
        raise ConfigError(f"{where}.checkpoint_interval: must be more than zero")
    state_dir = cfg.get("state_dir")
    try:
        signing = SigningProcessor(
            _relative(base, cfg["keys_dir"], f"{where}.keys_dir"),
            downstream=batchers,
            checkpoint_every=every,
            checkpoint_interval=interval,
            state_dir=_relative(base, state_dir, f"{where}.state_dir") if state_dir is not None else None,
            origin=str(cfg.get("origin", "otel-audit")),
            resource=resource,
            key_name=cfg.get("key_name"),
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from None
    except Exception as exc:
        from otel_audit.errors import KeyringError

        if isinstance(exc, KeyringError):
            raise ConfigError(f"{where}.keys_dir: {exc}") from None
        raise
    built_procs[signing_id] = signing
    provider.add_log_record_processor(signing)
    return Built(provider, signing, built_exporters, built_procs)


def _redaction(cfg: Mapping[str, Any], where: str, provider: Any) -> Any:
    from otel_audit.processors.redaction import RedactionProcessor
    from otel_audit.pseudonym import load_hmac_key

    kwargs = {k: v for k, v in cfg.items() if k not in ("hmac_key", "pii_event")}
    mode = cfg.get("mode", "hmac")
    if "hmac_key" in cfg and cfg["hmac_key"] not in (None, ""):
        kwargs["hmac_key"] = load_hmac_key(cfg["hmac_key"], where=f"{where}.hmac_key")
    elif mode == "hmac":
        raise ConfigError(
            f"{where}.hmac_key: required with mode hmac (e.g. hmac_key: ${{env:OTEL_AUDIT_HMAC_KEY}}), "
            "or set mode: mask"
        )
    if cfg.get("pii_event", True):
        kwargs["pii_event_logger"] = provider.get_logger("otel_audit.redaction")
    try:
        return RedactionProcessor(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def build_from_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Built:
    doc = load(path, env)
    return build(doc, src=str(path), base_dir=Path(path).resolve().parent)


ENV_CONFIG = "OTEL_AUDIT_CONFIG"
ENV_KEYS_DIR = "OTEL_AUDIT_KEYS_DIR"
ENV_STATE_DIR = "OTEL_AUDIT_STATE_DIR"
ENV_HMAC_KEY = "OTEL_AUDIT_HMAC_KEY"


def build_from_env(env: Mapping[str, str] | None = None) -> Built:
    """The env-only path: OTEL_AUDIT_KEYS_DIR (required), OTEL_AUDIT_STATE_DIR, OTEL_AUDIT_HMAC_KEY,
    OTEL_LOGS_EXPORTER (comma list of `opentelemetry_logs_exporter` entry point names, default
    otel_audit_file), OTEL_AUDIT_CHECKPOINT_EVERY and OTEL_AUDIT_CHECKPOINT_INTERVAL."""
    from importlib.metadata import entry_points

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from otel_audit.processors.signing import SigningProcessor

    e = os.environ if env is None else env
    keys_dir = e.get(ENV_KEYS_DIR)
    if not keys_dir:
        raise ConfigError(
            f"{ENV_KEYS_DIR} is not set: point it at a keys folder ('otel-audit keys generate --dir DIR'), "
            f"or give a config file in {ENV_CONFIG}"
        )
    names = [n.strip() for n in e.get("OTEL_LOGS_EXPORTER", "otel_audit_file").split(",") if n.strip()]
    eps = {ep.name: ep for ep in entry_points(group="opentelemetry_logs_exporter")}
    batchers = []
    exporters = {}
    for n in names:
        if n == "none":
            continue
        if n not in eps:
            raise ConfigError(f"OTEL_LOGS_EXPORTER: unknown exporter {n!r}; installed: {', '.join(sorted(eps))}")
        exp = eps[n].load()()
        exporters[n] = exp
        batchers.append(BatchLogRecordProcessor(exp))
    if not batchers:
        raise ConfigError("OTEL_LOGS_EXPORTER names no exporter: audit records would go nowhere")
    resource = Resource.create({})
    provider = LoggerProvider(resource=resource)
    procs = {}
    hk = e.get(ENV_HMAC_KEY)
    from otel_audit.processors.redaction import RedactionProcessor
    from otel_audit.pseudonym import load_hmac_key

    if hk:
        red = RedactionProcessor(mode="hmac", hmac_key=load_hmac_key(hk, where=ENV_HMAC_KEY),
                                 pii_event_logger=provider.get_logger("otel_audit.redaction"))
    else:
        red = RedactionProcessor(mode="mask", pii_event_logger=provider.get_logger("otel_audit.redaction"))
    provider.add_log_record_processor(red)
    procs["redaction"] = red

    def _num(name: str, default: float, cast: Callable[[str], Any]) -> Any:
        raw = e.get(name)
        if raw is None:
            return default
        try:
            v = cast(raw)
            if v <= 0:
                raise ValueError
            return v
        except ValueError:
            import logging

            logging.getLogger(__name__).warning("%s=%r is not a positive number; using %s", name, raw, default)
            return default

    signing = SigningProcessor(
        keys_dir,
        downstream=batchers,
        checkpoint_every=_num("OTEL_AUDIT_CHECKPOINT_EVERY", 1000, int),
        checkpoint_interval=_num("OTEL_AUDIT_CHECKPOINT_INTERVAL", 5.0, float),
        state_dir=e.get(ENV_STATE_DIR) or None,
        resource=resource,
    )
    provider.add_log_record_processor(signing)
    procs["signing"] = signing
    return Built(provider, signing, exporters, procs)
