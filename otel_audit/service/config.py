"""The service's configuration file (service.yaml): where it listens, its store, the producers' keyring,
its witness key and its API tokens. Paths are relative to the file's folder; errors name the key."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from otel_audit.errors import ConfigError

SCOPES = ("ingest", "audit:read", "audit:export", "audit:admin")
DEFAULT_ENDPOINT = "127.0.0.1:4318"
DEFAULT_MAX_REQUEST = 16 * 1024 * 1024
_KNOWN = {"http", "grpc", "store", "keys", "witness_keys", "tokens", "limits", "sign_at_ingest"}
DEFAULT_INGEST_EVERY = 1000
DEFAULT_INGEST_INTERVAL = 5.0


class Token(NamedTuple):
    name: str
    sha256: bytes
    scopes: frozenset[str]


class SignAtIngest(NamedTuple):
    """Signing at ingest (docs/service.md §2a): whether unsigned records are chained and checkpointed by the
    service with its key, and how often it checkpoints each producer's stream."""

    enabled: bool
    checkpoint_every: int = DEFAULT_INGEST_EVERY
    checkpoint_interval: float = DEFAULT_INGEST_INTERVAL  # seconds


class ServiceConfig(NamedTuple):
    host: str
    port: int
    store: str
    keys: Path
    witness_keys: Path | None
    tokens: tuple[Token, ...]
    max_request_bytes: int
    max_inflight: int
    source: str
    grpc: tuple[str, int] | None = None  # the OTLP/gRPC receiver's host and port, when configured
    facet_max_rows: int = 1_000_000  # GET /v1/facets counts the newest this many matching rows at most
    query_timeout_s: int = 10  # facets, counts and filter data give up after this long (503)
    sign_at_ingest: SignAtIngest = SignAtIngest(False)
    max_exports: int = 2  # POST /v1/exports running at once; beyond it 429
    export_page: int = 1000  # events an export reads from the store at a time (its memory bound)

    def token(self, presented: str) -> Token | None:
        """The configured token a presented bearer token is (compared by hash, in constant time)."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for t in self.tokens:
            if hmac.compare_digest(t.sha256, digest):
                found = t
        return found


def _path(base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(f"{key}: expected a path, got {type(value).__name__}")
    p = Path(value)  # as written: a $NAME in a path is part of the name (docs/service.md §1)
    return p if p.is_absolute() else base / p


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ConfigError(f"{key}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


def parse_endpoint(value: Any, key: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key}: expected host:port (e.g. {DEFAULT_ENDPOINT}), got {value!r}")
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: port {port!r} is not a number from 0 to 65535")
    if not host:
        raise ConfigError(f"{key}: no host in {value!r} (use 0.0.0.0 to listen on every address)")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: str | os.PathLike[str]) -> ServiceConfig:
    import yaml

    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where}: not valid YAML") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{p}: expected a mapping of settings ({', '.join(sorted(_KNOWN))})")
    try:
        return from_mapping(doc, p.parent.resolve(), str(p))  # absolute: the own stream runs in another folder
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def from_mapping(doc: Mapping[str, Any], base: Path, source: str = "<config>") -> ServiceConfig:
    unknown = sorted(str(k) for k in doc if k not in _KNOWN)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(_KNOWN))})")
    http = doc.get("http") or {}
    if not isinstance(http, Mapping) or set(http) - {"endpoint"}:
        raise ConfigError("http: expected a mapping with endpoint: host:port")
    host, port = parse_endpoint(http.get("endpoint", DEFAULT_ENDPOINT), "http.endpoint")
    grpc_cfg = doc.get("grpc")
    grpc_at = None
    if grpc_cfg is not None:
        if not isinstance(grpc_cfg, Mapping) or set(grpc_cfg) - {"endpoint"}:
            raise ConfigError("grpc: expected a mapping with endpoint: host:port (e.g. 127.0.0.1:4317)")
        grpc_at = parse_endpoint(grpc_cfg.get("endpoint", "127.0.0.1:4317"), "grpc.endpoint")
    store = doc.get("store", "audit.db")
    if not isinstance(store, str) or not store:
        raise ConfigError("store: expected a store URL such as sqlite:///var/lib/otel-audit/audit.db or a path")
    if "://" not in store and not store.startswith("sqlite:"):
        store = str(_path(base, store, "store"))
    elif store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        store = "sqlite:///" + str(_path(base, store[len("sqlite:///"):], "store"))
    if "keys" not in doc:
        raise ConfigError("keys: required: the producers' public keyring (a keyring.json or a folder)")
    keys = _path(base, doc["keys"], "keys")
    witness = _path(base, doc["witness_keys"], "witness_keys") if doc.get("witness_keys") is not None else None
    tokens = []
    raw_tokens = doc.get("tokens") or []
    if not isinstance(raw_tokens, list):
        raise ConfigError("tokens: expected a list of {name, sha256, scopes}")
    for i, t in enumerate(raw_tokens):
        k = f"tokens[{i}]"
        if not isinstance(t, Mapping) or set(t) - {"name", "sha256", "scopes"}:
            raise ConfigError(f"{k}: expected a mapping with name, sha256 and scopes")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{k}.name: required, a text")
        h = t.get("sha256")
        if not isinstance(h, str) or len(h) != 64 or not all(c in "0123456789abcdef" for c in h):
            raise ConfigError(f"{k}.sha256: expected the token's SHA-256 as 64 lower-case hex digits "
                              "(otel-audit serve token prints it); never the token itself")
        scopes = t.get("scopes")
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise ConfigError(f"{k}.scopes: expected a list of {', '.join(SCOPES)}")
        tokens.append(Token(name, bytes.fromhex(h), frozenset(scopes)))
    limits = doc.get("limits") or {}
    limit_keys = {"max_request_bytes", "max_inflight", "facet_max_rows", "query_timeout", "max_exports",
                  "export_page"}
    if not isinstance(limits, Mapping) or set(limits) - limit_keys:
        raise ConfigError(f"limits: expected a mapping with some of {', '.join(sorted(limit_keys))}")
    max_req = _int(limits.get("max_request_bytes", DEFAULT_MAX_REQUEST), "limits.max_request_bytes", 1024,
                   1 << 30)
    inflight = _int(limits.get("max_inflight", 8), "limits.max_inflight", 1, 1024)
    facet_rows = _int(limits.get("facet_max_rows", 1_000_000), "limits.facet_max_rows", 1, 1 << 40)
    timeout = _int(limits.get("query_timeout", 10), "limits.query_timeout", 1, 3600)
    max_exports = _int(limits.get("max_exports", 2), "limits.max_exports", 1, 64)
    export_page = _int(limits.get("export_page", 1000), "limits.export_page", 1, 10000)
    for key, h in (("http.endpoint", host), ("grpc.endpoint", grpc_at[0] if grpc_at else "127.0.0.1")):
        if not tokens and not _loopback(h):
            raise ConfigError(f"{key}: {h} is not a loopback address and no tokens are configured: anyone could "
                              "write and read audit records; add tokens (otel-audit token)")
    sign = _sign_at_ingest(doc.get("sign_at_ingest"), witness is not None)
    return ServiceConfig(host, port, store, keys, witness, tuple(tokens), max_req, inflight, source, grpc_at,
                         facet_rows, timeout, sign, max_exports, export_page)


def _sign_at_ingest(value: Any, has_key: bool) -> SignAtIngest:
    """`sign_at_ingest`: true / false, or {enabled, checkpoint_every, checkpoint_interval}; on by default when the
    service has a signing key (witness_keys)."""
    if value is None or type(value) is bool:
        cfg: Mapping[str, Any] = {} if value is None else {"enabled": value}
    elif isinstance(value, Mapping) and not set(value) - {"enabled", "checkpoint_every", "checkpoint_interval"}:
        cfg = value
    else:
        raise ConfigError("sign_at_ingest: expected true, false or a mapping with enabled, checkpoint_every and/or "
                          "checkpoint_interval")
    enabled = cfg.get("enabled", has_key)
    if type(enabled) is not bool:
        raise ConfigError(f"sign_at_ingest.enabled: expected true or false, got {enabled!r}")
    if enabled and not has_key:
        raise ConfigError("sign_at_ingest: needs the service's signing key: set witness_keys (a keys folder, "
                          "otel-audit keys generate)")
    every = _int(cfg.get("checkpoint_every", DEFAULT_INGEST_EVERY), "sign_at_ingest.checkpoint_every", 1, 1 << 30)
    from otel_audit.exporters._settings import parse_duration

    interval = parse_duration(cfg.get("checkpoint_interval", DEFAULT_INGEST_INTERVAL),
                              where="sign_at_ingest.checkpoint_interval")
    if not 0.01 <= interval <= 86400:
        raise ConfigError(f"sign_at_ingest.checkpoint_interval: expected 10ms to 24h, got {interval:g}s")
    return SignAtIngest(enabled, every, interval)
