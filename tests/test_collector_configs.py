"""The collector configs in collector-config/ are valid for the collector the manifest builds.

Starts the real collector binary (built once by collector-config/build.sh) in `validate` mode:
it decodes every component's configuration, as at startup, without opening any port. Also
checks, from the YAML alone, the delivery guarantees the audit pipelines promise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from collector import CONFIG_DIR, MANIFEST, collector_binary, validate

#: Builder manifests are inputs of build.sh, not collector configs.
MANIFESTS = frozenset({"builder-config.yaml", "builder-config-datadog.yaml"})
#: Overlays merged over a base config (`--config=base --config=overlay`), with what they need.
OVERLAYS = {"agent-datadog.yaml": "agent.yaml"}
#: Collector configs that need the datadog exporter, absent from the default build.
NEEDS_DATADOG = frozenset({"agent-datadog.yaml"})

CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.y*ml") if p.name not in MANIFESTS)

#: Values for the variables the configs require (those without a ':-' default). Syntactically
#: right (a URL where a URL goes), pointing nowhere: `validate` opens no connection.
DUMMY_ENV = {
    "SPLUNK_HEC_ENDPOINT": "https://splunk.invalid:8088/services/collector",
    "SPLUNK_HEC_TOKEN": "00000000-0000-0000-0000-000000000000",
    "ELASTICSEARCH_ENDPOINT": "https://elasticsearch.invalid:9200",
    "ELASTICSEARCH_API_KEY": "ZHVtbXk6ZHVtbXk=",
    "AUDIT_OTLP_ENDPOINT": "https://audit.invalid:4318",
    "AUDIT_OTLP_AUTHORIZATION": "Bearer dummy",
    "TELEMETRY_OTLP_ENDPOINT": "telemetry.invalid:4317",
    "OTEL_AUDIT_BACKENDS": "[audit-0.invalid:4317, audit-1.invalid:4317]",
    "DD_API_KEY": "0" * 32,
}

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def required_env(text: str) -> set[str]:
    """Names of the ${env:NAME} references that have no ':-default'."""
    return {m.group(1) for m in _ENV_REF.finditer(text) if m.group(2) is None}


def dummy_env(*paths: Path) -> dict[str, str]:
    """DUMMY_ENV values for every variable the files require; fails naming any it lacks."""
    need: set[str] = set()
    for p in paths:
        need |= required_env(p.read_text(encoding="utf-8"))
    unknown = sorted(need - DUMMY_ENV.keys())
    assert not unknown, f"{[p.name for p in paths]} require {unknown}: add a dummy value to DUMMY_ENV"
    return {k: DUMMY_ENV[k] for k in need}


def _merge(base: Any, over: Any) -> Any:
    """The collector's merge of repeated --config: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base[k], over[k]) if k in base and k in over else over.get(k, base.get(k))
                for k in {**base, **over}}
    return over


def load(name: str) -> dict[str, Any]:
    """A config by file name; 'a.yaml+b.yaml' is b merged over a."""
    doc: Any = None
    for part in name.split("+"):
        d = yaml.safe_load((CONFIG_DIR / part).read_text(encoding="utf-8"))
        assert isinstance(d, dict), part
        doc = d if doc is None else _merge(doc, d)
    return doc


#: The configs whose audit pipelines must be lossless, overlays merged as the collector would.
AUDIT_CONFIGS = ["agent.yaml", "agent.yaml+agent-datadog.yaml", "gateway.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_collector_validate(path: Path) -> None:
    """Each config (merged over its base, for an overlay) passes `<collector> validate`."""
    base = CONFIG_DIR / OVERLAYS[path.name] if path.name in OVERLAYS else None
    if path.name in NEEDS_DATADOG:
        # the datadog variant (tests/run.sh builds it before the suite; cached by manifest hash)
        binary = collector_binary(CONFIG_DIR / "builder-config-datadog.yaml")
    else:
        binary = collector_binary()
    files = [base, path] if base else [path]
    result = validate(files[0], dummy_env(*files), extra_configs=files[1:], binary=binary)
    assert result.returncode == 0, f"{path.name} is invalid:\n{result.stdout}\n{result.stderr}"


def test_validate_rejects_a_broken_config() -> None:
    """A config with an unknown key fails `validate`, so a pass above means something."""
    text = (CONFIG_DIR / "agent.yaml").read_text(encoding="utf-8")
    broken = text.replace("      max_elapsed_time: 0", "      max_elapsed_tme: 0", 1)
    assert broken != text
    result = validate(broken, dummy_env(CONFIG_DIR / "agent.yaml"))
    assert result.returncode != 0
    assert "max_elapsed_tme" in result.stderr


def test_validate_rejects_a_missing_secret() -> None:
    """An unset required variable (here the Splunk endpoint) makes the agent config invalid."""
    env = dummy_env(CONFIG_DIR / "agent.yaml")
    env["SPLUNK_HEC_ENDPOINT"] = ""
    result = validate(CONFIG_DIR / "agent.yaml", env)
    assert result.returncode != 0, result.stderr


def _audit_pipelines(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pipelines = doc["service"]["pipelines"]
    return {name: p for name, p in pipelines.items() if name.startswith("logs/audit")}


@pytest.mark.parametrize("name", AUDIT_CONFIGS)
def test_audit_pipeline_never_drops_or_rewrites_signed_fields(name: str) -> None:
    """Audit pipelines have no sampling, filtering, memory_limiter, batch, or attribute-rewriting step."""
    doc = load(name)
    pipelines = _audit_pipelines(doc)
    assert pipelines, f"{name} has no logs/audit pipeline"
    for pname, p in pipelines.items():
        for proc in p.get("processors", []):
            kind = proc.split("/", 1)[0]
            assert kind in {"resource", "transform"}, f"{name} {pname}: processor {proc} may drop or alter records"
            if kind == "transform":
                # The one transform allowed sets the trace id (not signed) from the stream id.
                statements = [s for group in doc["processors"][proc]["log_statements"] for s in group["statements"]]
                assert all(s.startswith("set(trace_id.string,") for s in statements), statements


@pytest.mark.parametrize("name", AUDIT_CONFIGS)
def test_audit_exporters_queue_on_disk_and_retry_forever(name: str) -> None:
    """Every queued exporter of an audit pipeline has a file_storage queue that blocks when full and never gives up."""
    doc = load(name)
    for pname, p in _audit_pipelines(doc).items():
        for exp in p["exporters"]:
            cfg = doc["exporters"][exp] or {}
            kind = exp.split("/", 1)[0]
            if kind == "file":
                assert cfg.get("format") == "json", f"{exp}: the archive must be OTLP JSON lines"
                # append, or rotation (which appends): a restart must never truncate evidence
                assert cfg.get("append") is True or cfg.get("rotation"), f"{exp} would truncate on restart"
                continue
            queue = cfg.get("sending_queue") or {}
            storage = queue.get("storage", "")
            assert storage.split("/", 1)[0] == "file_storage", f"{name} {pname} {exp}: no persistent queue"
            assert storage in doc["service"]["extensions"], f"{exp}: {storage} is not enabled"
            assert queue.get("block_on_overflow") is True, f"{exp}: a full queue would reject data"
            if kind == "elasticsearch":
                assert cfg["retry"]["enabled"] is True and cfg["retry"]["max_retries"] >= 100_000, exp
            else:
                assert cfg["retry_on_failure"]["max_elapsed_time"] == 0, f"{exp}: gives up retrying"


def _modules(manifest: Path) -> set[str]:
    doc = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    return {m["gomod"] for kind in ("receivers", "processors", "exporters", "extensions", "providers")
            for m in doc.get(kind) or []}


def test_manifest_pins_one_collector_release() -> None:
    """Every module of the builder manifest is at one release (v0.x.y, and v1.x.y for stable modules)."""
    versions = {m.split()[1] for m in _modules(MANIFEST)}
    assert len({v for v in versions if v.startswith("v0.")}) == 1, versions
    assert len({v for v in versions if v.startswith("v1.")}) <= 1, versions


def test_datadog_manifest_is_the_default_one_plus_datadog() -> None:
    """builder-config-datadog.yaml lists the default manifest's modules and the datadog exporter, nothing else."""
    default = _modules(MANIFEST)
    extra = _modules(CONFIG_DIR / "builder-config-datadog.yaml") - default
    release = next(m.split()[1] for m in default if m.split()[1].startswith("v0."))
    assert default <= _modules(CONFIG_DIR / "builder-config-datadog.yaml")
    assert extra == {f"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/datadogexporter {release}"}


def test_collector_binary_is_cached() -> None:
    """A second build request returns the same binary (the cache keyed by the manifest's digest)."""
    first = collector_binary()
    collector_binary.cache_clear()
    assert collector_binary() == first
    assert MANIFEST.read_bytes() == (first.parent / "builder-config.yaml").read_bytes()
