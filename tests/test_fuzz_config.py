"""Fuzz: the config loader (YAML / JSON files, `${env:VAR}`) and the env-var-only path.

Config files: a valid config (redaction, signing, delivery; a file, an OTLP and a Splunk HEC
exporter) with one setting replaced by a fuzzed value (any YAML value: text, numbers with
inf/nan and huge ones, lists, mappings, `${env:...}` references good and bad), an unknown key
added, or the text itself damaged; written as YAML or JSON. Real-shaped secrets
(tests/fuzz_support.py) sit where a config legitimately holds them (the HMAC key, the Splunk
token, an OTLP header, an endpoint's password, an env var a setting refers to), next to the
fuzzed value. Each file goes through `config.build_from_file(..., dry_run=True)` (what
`otel-audit check-config` runs), a sample through a real build (`build_from_file`, then shutdown).

The env-var path: `config.build_from_env` (what `otel_audit.configure()` runs with no file)
with fuzzed OTEL_AUDIT_* / OTEL_LOGS_EXPORTER / OTEL_BLRP_* values, and the env-configured
exporters' constructors with fuzzed OTEL_AUDIT_<EXPORTER>_* values, secrets in their
credential variables.

Properties: no exception but an `AuditError` (a `ConfigError` for a config) escapes; no planted
secret shows in an exception's message, a warning of `Built.warnings` or a log line.
"""

from __future__ import annotations

import copy
import json
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz_support import SECRETS, assert_no_secret, captured_logs, fuzz_settings, secret_texts
from hypothesis import example, given
from hypothesis import strategies as st

from otel_audit import config
from otel_audit.errors import AuditError, ConfigError

GITHUB, AWS, PASSWORD_KV, STRIPE = (SECRETS[i].text for i in (0, 2, 4, 6))
PASSWORD = SECRETS[4].parts[0]  # the password of password=...
HMAC_KEY = "hex:" + "ab" * 32

# -- the valid base config ----------------------------------------------------------------------


def base_doc(keys_dir: Path, d: Path, token: str) -> dict[str, Any]:
    return {
        "resource": {"service.name": "fuzz"},
        "processors": {
            "redaction": {"mode": "hmac", "hmac_key": HMAC_KEY},
            "signing": {"keys_dir": str(keys_dir), "state_dir": str(d / "state"), "checkpoint_every": 1000,
                        "checkpoint_interval": "5s"},
            "delivery": {"directory": str(d / "spool"), "max_size_mib": 64, "mode": "fail_closed"},
        },
        "exporters": {
            "file": {"path": str(d / "audit.jsonl")},
            "otlp": {"endpoint": "127.0.0.1:4317", "tls": {"insecure": True},
                     "headers": {"authorization": f"Bearer {token}"}},
            "splunk_hec": {"endpoint": "https://127.0.0.1:8088/services/collector", "token": token},
        },
        "service": {"pipelines": {"logs/audit": {"processors": ["redaction", "signing", "delivery"],
                                                  "exporters": ["file", "otlp", "splunk_hec"]}}},
    }


#: Settings the fuzzer replaces (a path of keys into the base doc).
PATHS = [
    ("resource",), ("resource", "service.name"), ("processors",), ("processors", "redaction"),
    ("processors", "redaction", "mode"), ("processors", "redaction", "hmac_key"),
    ("processors", "redaction", "rules"), ("processors", "redaction", "sensitive_keys"),
    ("processors", "redaction", "custom_patterns"), ("processors", "redaction", "redact_client_ip"),
    ("processors", "signing", "keys_dir"), ("processors", "signing", "key_name"),
    ("processors", "signing", "state_dir"), ("processors", "signing", "checkpoint_every"),
    ("processors", "signing", "checkpoint_interval"), ("processors", "signing", "origin"),
    ("processors", "signing", "embed_record"), ("processors", "delivery", "directory"),
    ("processors", "delivery", "max_size_mib"), ("processors", "delivery", "segment_size_mib"),
    ("processors", "delivery", "mode"), ("processors", "delivery", "shutdown_timeout"),
    ("processors", "delivery", "fsync_interval"), ("processors", "delivery", "memory_records"),
    ("exporters", "file", "path"), ("exporters", "file", "rotation"), ("exporters", "file", "fsync"),
    ("exporters", "file", "batch"), ("exporters", "file", "sending_queue"),
    ("exporters", "file", "retry_on_failure"), ("exporters", "otlp", "endpoint"),
    ("exporters", "otlp", "tls"), ("exporters", "otlp", "headers"), ("exporters", "otlp", "compression"),
    ("exporters", "otlp", "timeout"), ("exporters", "splunk_hec", "endpoint"),
    ("exporters", "splunk_hec", "token"), ("exporters", "splunk_hec", "index"),
    ("exporters", "splunk_hec", "timeout"), ("exporters", "splunk_hec", "retry_on_failure"),
    ("service",), ("service", "pipelines"), ("service", "pipelines", "logs/audit"),
    ("service", "pipelines", "logs/audit", "processors"), ("service", "pipelines", "logs/audit", "exporters"),
]
#: Settings that hold a credential: a secret is fine there, as a value (and must still never show).
SECRET_PATHS = [("processors", "redaction", "hmac_key"), ("exporters", "splunk_hec", "token"),
                ("exporters", "otlp", "headers", "authorization")]

# -- strategies --------------------------------------------------------------------------------

# The fuzzed (bad) values never are, nor refer to, a secret: a bad value is quoted in its error
# message, whatever it is (finding C1, test_a_secret_as_a_bad_value_is_not_shown below).
_env_refs = st.sampled_from([
    "${env:AUDIT_NUMBER}", "${env:AUDIT_UNSET}", "${env:AUDIT_UNSET:-7}", "${AUDIT_NUMBER}", "${env:1BAD}",
    "${env:}", "$$", "$${env:AUDIT_SECRET}", "${env:AUDIT_EMPTY}", "x${env:AUDIT_NUMBER}y", "${env:AUDIT_BOOL}",
    "${env:AUDIT_FLOAT}",
])
_scalars = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "5s", "-5s", "1e400", ".inf", "nan", "true", "yes", "0", "007", "hmac", "mask",
                     "fail_open", "none", "signing", "redaction", "file", "hex:zz", "file:", "file:/nonexistent",
                     "\x00", "1m30s", "99999999999h", "logs", "logs/x", "a/b/c"]),
    _env_refs,
    st.integers(), st.floats(), st.booleans(), st.none(),
)
_keys = st.one_of(st.text(max_size=12), st.sampled_from(["path", "endpoint", "enabled", "logs", "type/name"]))
values = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(_keys, c, max_size=4)),
                      max_leaves=12)


def _set(doc: Any, path: tuple[str, ...], value: Any) -> None:
    node = doc
    for k in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(k, {})
    if isinstance(node, dict):
        node[path[-1]] = value


@st.composite
def mutations(draw: st.DrawFn) -> dict[str, Any]:
    """How one config differs from the base: (path, value) replacements, a deletion, an unknown key,
    where the secrets go, and how the file is written."""
    kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown_key", "text"]))
    m: dict[str, Any] = {"kind": kind, "path": draw(st.sampled_from(PATHS)), "value": draw(values),
                         "key": draw(_keys), "format": draw(st.sampled_from(["yaml", "json"])),
                         "token": draw(secret_texts), "secret_at": draw(st.sampled_from(SECRET_PATHS)),
                         "secret": draw(secret_texts), "via_env": draw(st.booleans()),
                         "seed": draw(st.integers(0, 2**32)), "damage": draw(st.text(max_size=6))}
    return m


def render(m: dict[str, Any], keys_dir: Path, d: Path, *, network: bool = True) -> tuple[str, dict[str, str]]:
    """The config text and the env mapping for mutation `m` (without network exporters: the file one only)."""
    env = {"AUDIT_SECRET": m["secret"], "AUDIT_NUMBER": "12", "AUDIT_EMPTY": "", "AUDIT_BOOL": "true",
           "AUDIT_FLOAT": "1.5"}
    doc = base_doc(keys_dir, d, m["token"])
    if not network:
        doc["service"]["pipelines"]["logs/audit"]["exporters"] = ["file"]
    # the secret where a config holds one: given literally, or through ${env:AUDIT_SECRET}
    secret = "${env:AUDIT_SECRET}" if m["via_env"] else m["secret"]
    if m["secret_at"] == SECRET_PATHS[2]:
        secret = "Bearer " + secret
    _set(doc, m["secret_at"], secret)
    if m["kind"] == "replace":
        _set(doc, m["path"], copy.deepcopy(m["value"]))
    elif m["kind"] == "delete":
        node: Any = doc
        for k in m["path"][:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(m["path"][-1], None)
    elif m["kind"] == "unknown_key":
        node = doc
        for k in m["path"]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[m["key"]] = copy.deepcopy(m["value"])
    if m["format"] == "json":
        text = json.dumps(doc, allow_nan=True, default=repr)
    else:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    if m["kind"] == "text":  # damage the text at one place
        rng = random.Random(m["seed"])
        i = rng.randrange(len(text) + 1)
        text = text[:i] + m["damage"] + text[i + rng.randrange(3):]
    return text, env


@contextmanager
def config_file(text: str, fmt: str) -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        path = Path(d) / f"audit.{fmt}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        yield path, Path(d)


def check(call: Any) -> Any:
    """Run `call`: it returns a Built, or raises a ConfigError; no planted secret in the message,
    the warnings or the log lines."""
    with captured_logs() as logs:
        built = None
        try:
            built = call()
        except AuditError as exc:
            assert isinstance(exc, ConfigError), (type(exc).__name__, str(exc))
            assert_no_secret(f"{type(exc).__name__}", [str(exc), repr(exc.args)])
        if built is not None:
            assert_no_secret("Built.warnings", built.warnings)
            if built.provider is not None:
                built.provider.shutdown()
    assert_no_secret("log line", logs)
    return built


# -- properties: config files ------------------------------------------------------------------


@fuzz_settings(300)
@given(m=mutations())
@example(m={"kind": "replace", "path": ("processors", "signing", "checkpoint_every"), "value": -1, "key": "",
            "format": "yaml", "token": GITHUB, "secret_at": SECRET_PATHS[0], "secret": STRIPE, "via_env": False,
            "seed": 0, "damage": ""})
@example(m={"kind": "replace", "path": ("processors", "redaction", "hmac_key"), "value": "hex:zz", "key": "",
            "format": "json", "token": AWS, "secret_at": SECRET_PATHS[1], "secret": PASSWORD_KV, "via_env": True,
            "seed": 0, "damage": ""})
def test_check_config_raises_only_config_errors_and_never_shows_a_secret(shared_keys: Path, m: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        text, env = render(m, shared_keys, Path(d))
        with config_file(text, m["format"]) as (path, _):
            check(lambda: config.build_from_file(path, env, dry_run=True))


@fuzz_settings(15)
@given(m=mutations())
def test_real_build_raises_only_config_errors_and_never_shows_a_secret(shared_keys: Path, m: dict[str, Any]) -> None:
    """The same through a real build (threads, spool, state folder), shut down at once."""
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        text, env = render(m, shared_keys, Path(d), network=False)
        with config_file(text, m["format"]) as (path, _):
            check(lambda: config.build_from_file(path, env))


@fuzz_settings(150)
@given(data=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))),
       fmt=st.sampled_from(["yaml", "json", "yml"]))
@example(data="a: &x [1]\nb: *x\n", fmt="yaml")
@example(data="[" * 200, fmt="json")
@example(data="processors: {signing: {keys_dir: !!python/object:os.system ls}}", fmt="yaml")
def test_any_text_is_a_config_or_a_config_error(data: str, fmt: str) -> None:
    """Arbitrary text as a config file: load() returns a mapping or raises ConfigError."""
    with config_file(data, fmt) as (path, _), captured_logs() as logs:
        try:
            doc = config.load(path, {})
        except ConfigError:
            return
        assert isinstance(doc, dict)
        with suppress(ConfigError):
            config.build(doc, src=str(path), base_dir=path.parent, dry_run=True)
    assert not any("Traceback" in line for line in logs)


# -- properties: the env-var path --------------------------------------------------------------

_env_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    st.sampled_from(["", " ", "0", "-1", "1e400", "nan", "inf", "5s", "5", "500ms", "true", "garbage",
                     "otel_audit_file", "none", "otel_audit_file,otel_audit_file", "otel_audit_file, none",
                     "otlp", ",", "hex:" + "ab" * 32, "hex:zz", "file:/nonexistent", "short"]),
)  # no secret: a bad OTEL_AUDIT_CHECKPOINT_* value is logged whole (finding E1, below)
_ENV_NAMES = (config.ENV_STATE_DIR, config.ENV_HMAC_KEY, config.ENV_LOGS_EXPORTER, config.ENV_CHECKPOINT_EVERY,
              config.ENV_CHECKPOINT_INTERVAL, "OTEL_AUDIT_FILE_FSYNC", "OTEL_AUDIT_FILE_MAX_MEGABYTES",
              "OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
              "OTEL_BLRP_EXPORT_TIMEOUT", "OTEL_AUDIT_KEY_PASSWORD")


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set and every other OTEL_* variable removed, restored afterwards."""
    saved = dict(os.environ)
    try:
        for k in [k for k in os.environ if k.startswith("OTEL_")]:
            del os.environ[k]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@fuzz_settings(120)
@given(env=st.dictionaries(st.sampled_from(_ENV_NAMES), _env_values, max_size=6),
       keys=st.sampled_from(["good", "missing", "empty", "file", "unset"]),
       secret=st.tuples(st.sampled_from([None, config.ENV_HMAC_KEY, "OTEL_AUDIT_KEY_PASSWORD"]), secret_texts))
@example(env={config.ENV_CHECKPOINT_EVERY: "garbage"}, keys="good", secret=(config.ENV_HMAC_KEY, GITHUB))
@example(env={config.ENV_HMAC_KEY: "short"}, keys="good", secret=(None, GITHUB))
def test_build_from_env_raises_only_config_errors_and_never_shows_a_secret(
    shared_keys: Path, env: dict[str, str], keys: str, secret: tuple[str | None, str]
) -> None:
    """A secret only in a credential variable (the HMAC key, the key password), fuzzed values elsewhere."""
    with tempfile.TemporaryDirectory(prefix="fuzz-env-") as d:
        values = dict(env)
        if secret[0] is not None:
            values[secret[0]] = secret[1]
        values["OTEL_AUDIT_FILE_PATH"] = str(Path(d) / "audit.jsonl")
        if config.ENV_STATE_DIR in values:
            values[config.ENV_STATE_DIR] = str(Path(d) / values[config.ENV_STATE_DIR].replace("/", "_")[:20])
        if keys != "unset":
            (Path(d) / "empty").mkdir()
            (Path(d) / "file").write_text("x")
            values[config.ENV_KEYS_DIR] = {"good": str(shared_keys), "missing": str(Path(d) / "missing"),
                                           "empty": str(Path(d) / "empty"), "file": str(Path(d) / "file")}[keys]
        with environ(values):
            check(lambda: config.build_from_env())


_EXPORTER_ENV = {
    "splunk_hec": ("OTEL_AUDIT_SPLUNK_HEC_ENDPOINT", "OTEL_AUDIT_SPLUNK_HEC_TOKEN", "OTEL_AUDIT_SPLUNK_HEC_INDEX",
                   "OTEL_AUDIT_SPLUNK_HEC_TIMEOUT", "OTEL_AUDIT_SPLUNK_HEC_SOURCETYPE"),
    "datadog": ("OTEL_AUDIT_DATADOG_API_KEY", "OTEL_AUDIT_DATADOG_SITE", "OTEL_AUDIT_DATADOG_LOGS_ENDPOINT",
                "OTEL_AUDIT_DATADOG_HOSTNAME", "OTEL_AUDIT_DATADOG_TAGS", "OTEL_AUDIT_DATADOG_TIMEOUT",
                "OTEL_AUDIT_DATADOG_USE_COMPRESSION", "OTEL_AUDIT_DATADOG_COMPRESSION_LEVEL"),
    "elasticsearch": ("OTEL_AUDIT_ELASTIC_ENDPOINT", "OTEL_AUDIT_ELASTIC_API_KEY", "OTEL_AUDIT_ELASTIC_USER",
                      "OTEL_AUDIT_ELASTIC_PASSWORD", "OTEL_AUDIT_ELASTIC_LOGS_INDEX", "OTEL_AUDIT_ELASTIC_TIMEOUT",
                      "OTEL_AUDIT_ELASTIC_COMPRESSION", "OTEL_AUDIT_ELASTIC_CLOUDID"),
    "webhook": ("OTEL_AUDIT_WEBHOOK_ENDPOINT", "OTEL_AUDIT_WEBHOOK_HEADERS", "OTEL_AUDIT_WEBHOOK_SECRETS",
                "OTEL_AUDIT_WEBHOOK_SIGNING_KEY", "OTEL_AUDIT_WEBHOOK_TIMEOUT", "OTEL_AUDIT_WEBHOOK_MAX_BATCH_SIZE",
                "OTEL_AUDIT_WEBHOOK_COMPRESSION"),
}
_GOOD_ENDPOINT = {"splunk_hec": "https://127.0.0.1:8088/services/collector", "datadog": None,
                  "elasticsearch": "https://127.0.0.1:9200", "webhook": "https://127.0.0.1:9/hook"}
#: Variables that hold a credential (a secret there is fine, and must still never show).
_CREDENTIALS = ("OTEL_AUDIT_SPLUNK_HEC_TOKEN", "OTEL_AUDIT_DATADOG_API_KEY", "OTEL_AUDIT_ELASTIC_API_KEY",
                "OTEL_AUDIT_ELASTIC_PASSWORD", "OTEL_AUDIT_WEBHOOK_SIGNING_KEY", "OTEL_AUDIT_WEBHOOK_SECRETS")


@st.composite
def exporter_envs(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    name = draw(st.sampled_from(sorted(_EXPORTER_ENV)))
    names = _EXPORTER_ENV[name]
    env = draw(st.dictionaries(st.sampled_from(names), _env_values, max_size=4))
    for var in names:
        if var in _CREDENTIALS and draw(st.booleans()):
            env[var] = draw(secret_texts)
    if _GOOD_ENDPOINT[name] and draw(st.booleans()):
        env.setdefault(names[0], _GOOD_ENDPOINT[name])
    if name == "webhook" and draw(st.booleans()):
        env["OTEL_AUDIT_WEBHOOK_HEADERS"] = "authorization=Bearer " + draw(secret_texts)
    return name, env


@fuzz_settings(120)
@given(case=exporter_envs())
def test_env_configured_exporters_raise_only_audit_errors_and_never_show_a_secret(case: tuple[str, dict[str, str]]
                                                                                  ) -> None:
    """Each `opentelemetry_logs_exporter` entry point built from env vars alone (as
    OTEL_LOGS_EXPORTER and opentelemetry-instrument make it), then shut down unused; no network is
    touched. A plain ValueError is tolerated here (finding E2, below; `build_from_env` wraps it)."""
    from importlib.metadata import entry_points

    name, env = case
    (ep,) = [e for e in entry_points(group="opentelemetry_logs_exporter") if e.name == name]
    with environ(env), captured_logs() as logs:
        try:
            exporter = ep.load()()
        except (AuditError, ValueError) as exc:
            assert_no_secret(f"{type(exc).__name__}", [str(exc), repr(exc.args)])
        else:
            exporter.shutdown()
    assert_no_secret("log line", logs)


def test_secret_kinds_are_the_planted_ones() -> None:
    """The fuzz plants the secrets the brief names: a GitHub PAT, an AWS key id, password=..., Stripe."""
    assert GITHUB.startswith("ghp_") and AWS.startswith("AKIA") and PASSWORD_KV.startswith("password=")
    assert STRIPE.startswith("sk_live_") and PASSWORD in PASSWORD_KV
    with pytest.raises(AssertionError):
        assert_no_secret("self-test", [f"x {GITHUB} y"])


# -- findings kept as regression tests (minimal examples; strict: they fail once fixed) ---------

_BAD_VALUE_CASES = {
    "boolean": (("processors", "redaction", "redact_client_ip"), "${env:AUDIT_SECRET}"),
    "mode": (("processors", "redaction", "mode"), "${env:AUDIT_SECRET}"),
    "duration_list": (("exporters", "otlp", "timeout"), ["${env:AUDIT_SECRET}"]),
    "compression": (("exporters", "otlp", "compression"), GITHUB),
    "positive_int": (("processors", "signing", "checkpoint_every"), "${env:AUDIT_SECRET}"),
}


@pytest.mark.parametrize("case", sorted(_BAD_VALUE_CASES))
def test_a_secret_as_a_bad_value_is_not_shown(shared_keys: Path, case: str) -> None:
    """A credential put in a setting that is not a credential (``${env:AUDIT_SECRET}`` in the wrong
    place, a token pasted one line off): the error quotes the value (`got {v!r}`), so the secret."""
    path_, value = _BAD_VALUE_CASES[case]
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        doc = base_doc(shared_keys, Path(d), "x")
        _set(doc, path_, value)
        cfg = Path(d) / "audit.yaml"
        cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            config.build_from_file(cfg, {"AUDIT_SECRET": GITHUB}, dry_run=True)
    assert_no_secret(case, [str(info.value)])


def test_a_secret_as_a_bad_env_number_is_not_logged(shared_keys: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-env-") as d, environ({
        config.ENV_KEYS_DIR: str(shared_keys), "OTEL_AUDIT_FILE_PATH": str(Path(d) / "a.jsonl"),
        config.ENV_CHECKPOINT_EVERY: GITHUB,
    }), captured_logs() as logs:
        config.build_from_env().provider.shutdown()
    assert_no_secret("log line", logs)


@pytest.mark.parametrize(("name", "env"), [("splunk_hec", {}), ("splunk_hec", {"OTEL_AUDIT_SPLUNK_HEC_ENDPOINT": "0"}),
                                           ("datadog", {})])
def test_env_configured_exporter_errors_are_config_errors(name: str, env: dict[str, str]) -> None:
    """Minimal examples the fuzzer found: the entry point's constructor (what the OTel SDK's
    configurator calls for OTEL_LOGS_EXPORTER) raises ValueError, not a ConfigError."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="opentelemetry_logs_exporter") if e.name == name]
    with environ(env), pytest.raises(ConfigError):
        ep.load()()
