"""Config files in the collector's shape, and the env-only path, building real pipelines.

Every pipeline here is the real one (LoggerProvider -> redaction -> signing -> a batch processor
per exporter -> file exporter writing OTLP JSON lines); what it writes is checked with the
verifier and the public keyring alone. No network, no child processes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import KEY_NAME

import otel_audit
from otel_audit import config, keys
from otel_audit.errors import ConfigError
from otel_audit.keys import Keyring
from otel_audit.verify import iter_records, verify_paths

HMAC_KEY = "hex:" + "5e" * 32
EMAIL = "carol@example.com"


def q(path: Path | str) -> str:
    """A path as a double-quoted YAML (and JSON) string."""
    return json.dumps(str(path))


def yaml_config(keys_dir: Path, archive: Path, *, state: Path | None = None, exporter_extra: str = "") -> str:
    state_line = f"\n    state_dir: {q(state)}" if state else ""
    return f"""\
resource:
  service.name: config-tests
processors:
  redaction:
    mode: hmac
    hmac_key: {HMAC_KEY}
  signing:
    keys_dir: {q(keys_dir)}{state_line}
    checkpoint_every: 10
    checkpoint_interval: 1h
exporters:
  file:
    path: {q(archive)}
    fsync: never{exporter_extra}
service:
  pipelines:
    logs/audit:
      processors: [redaction, signing]
      exporters: [file]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def emit_some(audit: otel_audit.AuditPipeline, n: int = 5) -> None:
    """Emit n login events (one carrying an e-mail in its body) and a config change, then seal."""
    for i in range(n):
        audit.logger.login_succeeded(f"user-{i}", client_address="203.0.113.7", session_id=f"s-{i}")
    audit.logger.emit("data_access.logs.queried", {"audit.actor.id": "admin"}, body=f"ask {EMAIL}")
    audit.shutdown()


def assert_verifies(archive: Path | list[Path], keys_dir: Path, streams: int = 1) -> None:
    paths = archive if isinstance(archive, list) else [archive]
    rep = verify_paths(paths, Keyring.load(keys_dir), progress=False)
    assert rep.ok, [s.problems for s in rep.streams] + rep.problems
    assert len(rep.streams) == streams
    assert all(s.state == "closed" for s in rep.streams)


def event_names(archive: Path) -> list[str]:
    return [rec.get("eventName", "") for _, rec in iter_records([archive])]


def our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


# -- pipelines that work ---------------------------------------------------------------------------


def test_yaml_config_builds_a_pipeline_that_verifies(tmp_path: Path, shared_keys: Path) -> None:
    """A YAML config builds redaction -> signing -> file; its archive verifies and holds no plain e-mail."""
    archive = tmp_path / "archive" / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive))
    audit = otel_audit.configure(cfg)
    emit_some(audit)
    assert_verifies(archive, shared_keys)
    text = archive.read_text()
    assert EMAIL not in text and "hmac-sha256:" in text
    assert event_names(archive).count("authentication.login.succeeded") == 5


def test_json_config_builds_the_same_pipeline(tmp_path: Path, shared_keys: Path) -> None:
    """The same config written as JSON builds an equivalent pipeline whose archive verifies."""
    archive = tmp_path / "archive" / "audit.jsonl"
    doc = {
        "resource": {"service.name": "config-tests"},
        "processors": {
            "redaction": {"mode": "hmac", "hmac_key": HMAC_KEY},
            "signing": {"keys_dir": str(shared_keys), "checkpoint_every": 10, "checkpoint_interval": "1h"},
        },
        "exporters": {"file": {"path": str(archive), "fsync": "never"}},
        "service": {"pipelines": {"logs/audit": {"processors": ["redaction", "signing"], "exporters": ["file"]}}},
    }
    cfg = write(tmp_path / "audit.json", json.dumps(doc, indent=2))
    yaml_doc = config.load(write(tmp_path / "same.yaml", yaml_config(shared_keys, archive)))
    assert config.load(cfg) == yaml_doc
    emit_some(otel_audit.configure(cfg))
    assert_verifies(archive, shared_keys)
    assert EMAIL not in archive.read_text()


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys_dir, state_dir, the archive path and a file: HMAC key are relative to the config file's folder."""
    conf = tmp_path / "conf"
    keys.generate(conf / "keys", KEY_NAME)
    write(conf / "secrets" / "hmac.key", HMAC_KEY + "\n")
    cfg = write(conf / "audit.yaml", """\
processors:
  redaction: {mode: hmac, hmac_key: "file:secrets/hmac.key"}
  signing: {keys_dir: keys, state_dir: state}
exporters:
  file: {path: archive/audit.jsonl, fsync: never}
service:
  pipelines:
    logs: {processors: [redaction, signing], exporters: [file]}
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    emit_some(otel_audit.configure(Path("..") / "conf" / "audit.yaml"))
    assert (conf / "state" / "state.json").is_file()
    assert_verifies(conf / "archive" / "audit.jsonl", conf / "keys")
    assert list(elsewhere.iterdir()) == []
    assert cfg.is_file()


def test_component_ids_with_names(tmp_path: Path, shared_keys: Path) -> None:
    """Component ids 'type/name' (file/archive, redaction/pii, signing/main) work as in the collector."""
    archive = tmp_path / "a" / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", f"""\
processors:
  redaction/pii: {{mode: mask}}
  signing/main: {{keys_dir: {q(shared_keys)}}}
exporters:
  file/archive: {{path: {q(archive)}, fsync: never}}
service:
  pipelines:
    logs/audit:
      processors: [redaction/pii, signing/main]
      exporters: [file/archive]
""")
    audit = otel_audit.configure(cfg)
    assert set(audit.exporters) == {"file/archive"}
    emit_some(audit)
    assert_verifies(archive, shared_keys)
    assert "[REDACTED:email]" in archive.read_text()


def test_two_file_exporters_both_get_every_record(tmp_path: Path, shared_keys: Path) -> None:
    """Two file exporters each receive every record, checkpoints included, and each archive verifies alone."""
    a, b = tmp_path / "a" / "audit.jsonl", tmp_path / "b" / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", f"""\
processors:
  signing: {{keys_dir: {q(shared_keys)}, checkpoint_every: 3}}
exporters:
  file/a: {{path: {q(a)}, fsync: never}}
  file/b: {{path: {q(b)}, fsync: always, rotation: {{max_megabytes: 10}}}}
service:
  pipelines:
    logs/audit: {{processors: [signing], exporters: [file/a, file/b]}}
""")
    emit_some(otel_audit.configure(cfg), n=12)
    assert_verifies(a, shared_keys)
    assert_verifies(b, shared_keys)

    def digests(p: Path) -> list[Any]:
        return sorted(kv["value"]["stringValue"] for _, rec in iter_records([p])
                      for kv in rec["attributes"] if kv["key"] == "audit.integrity.digest")

    assert digests(a) == digests(b) and len(digests(a)) >= 13


def test_collector_delivery_settings_are_accepted_and_applied(tmp_path: Path, shared_keys: Path) -> None:
    """sending_queue.queue_size, batch.max_size/flush_timeout, retry_on_failure load as the collector writes them."""
    archive = tmp_path / "audit.jsonl"
    extra = """
    sending_queue:
      enabled: true
      num_consumers: 2
      queue_size: 5000
    batch:
      max_size: 4
      flush_timeout: 1h
    retry_on_failure:
      enabled: true
      initial_interval: 5s
      max_interval: 30s
      max_elapsed_time: 300s"""
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive, exporter_extra=extra))
    emit_some(otel_audit.configure(cfg), n=20)
    assert_verifies(archive, shared_keys)
    sizes = [sum(len(sl["logRecords"]) for rl in orjson.loads(line)["resourceLogs"] for sl in rl["scopeLogs"])
             for line in archive.read_bytes().splitlines()]
    assert max(sizes) <= 4 and sum(sizes) >= 21


def test_collector_batch_inside_sending_queue_is_accepted(tmp_path: Path, shared_keys: Path) -> None:
    """The newer collector form sending_queue.batch.{max_size, flush_timeout} is accepted too."""
    archive = tmp_path / "audit.jsonl"
    extra = """
    sending_queue:
      queue_size: 100
      batch: {flush_timeout: 200ms, max_size: 3}"""
    built = config.build_from_file(
        write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive, exporter_extra=extra)), dry_run=True
    )
    assert set(built.exporters) == {"file"}


# -- env substitution --------------------------------------------------------------------------------


def test_env_substitution_forms(tmp_path: Path) -> None:
    """${env:VAR}, ${env:VAR:-default}, ${VAR} and $$ are substituted; a whole-value substitution is typed."""
    cfg = write(tmp_path / "c.yaml", """\
resource:
  plain: ${env:NAME}
  bare: ${NAME}
  inner: "pre-${env:NAME}-post"
  dflt: ${env:NOT_SET_ANYWHERE:-fallback}
  empty_default: "${env:NOT_SET_ANYWHERE:-}"
  escaped: "$${env:NAME}"
processors:
  signing:
    checkpoint_every: ${env:EVERY}
    checkpoint_interval: ${env:INTERVAL:-2.5}
    flag: ${env:FLAG}
    zero: ${env:ZERO_LEAD}
    word: ${env:WORD}
""")
    env = {"NAME": "gw", "EVERY": "500", "FLAG": "true", "ZERO_LEAD": "007", "WORD": "yes"}
    doc = config.load(cfg, env)
    res, sig = doc["resource"], doc["processors"]["signing"]
    assert res == {"plain": "gw", "bare": "gw", "inner": "pre-gw-post", "dflt": "fallback",
                   "empty_default": "", "escaped": "${env:NAME}"}
    assert sig["checkpoint_every"] == 500 and isinstance(sig["checkpoint_every"], int)
    assert sig["checkpoint_interval"] == 2.5 and isinstance(sig["checkpoint_interval"], float)
    assert sig["flag"] is True
    assert sig["zero"] == "007"  # a leading zero keeps it text
    assert sig["word"] == "yes"  # YAML 1.2: only true/false are booleans


def test_substituted_numbers_stay_text_where_a_setting_is_text(tmp_path: Path, shared_keys: Path) -> None:
    """A numeric env value used as a header token, a resource attribute or an HMAC key keeps its text."""
    cfg = write(tmp_path / "c.yaml", f"""\
resource:
  service.version: ${{env:VERSION}}
processors:
  redaction: {{mode: hmac, hmac_key: "${{env:DIGITS_KEY}}"}}
  signing: {{keys_dir: {q(shared_keys)}, checkpoint_every: "${{env:EVERY}}"}}
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls: {{insecure: "${{env:INSECURE}}"}}
    headers: {{authorization: "${{env:TOKEN}}"}}
service:
  pipelines:
    logs: {{processors: [redaction, signing], exporters: [otlp]}}
""")
    env = {"VERSION": "1.10", "DIGITS_KEY": "12345678901234567890", "EVERY": "50", "INSECURE": "true",
           "TOKEN": "31415926535"}
    doc = config.load(cfg, env)
    built = config.build(doc, src=str(cfg), base_dir=tmp_path, dry_run=True)
    assert set(built.exporters) == {"otlp"} and built.key_name == KEY_NAME
    assert config._resource(doc, str(cfg)) == {"service.version": "1.10"}


def test_unset_env_var_names_file_key_and_variable(tmp_path: Path) -> None:
    """An unset variable without a default is an error naming the file, the key path and the variable."""
    cfg = write(tmp_path / "c.yaml", "exporters:\n  file:\n    path: ${env:AUDIT_TEST_UNSET_VAR}/a.jsonl\n")
    with pytest.raises(ConfigError) as err:
        config.load(cfg, {})
    msg = str(err.value)
    assert str(cfg) in msg and "exporters.file.path" in msg and "AUDIT_TEST_UNSET_VAR" in msg


# -- errors: each names the file and the key ----------------------------------------------------------

SIGNING = "  signing: {keys_dir: KEYS}\n"
PIPE = "service:\n  pipelines:\n    logs/audit: {processors: [signing], exporters: [file]}\n"
FILE = "exporters:\n  file: {path: ARCHIVE}\n"

ERROR_CASES: list[tuple[str, str, list[str]]] = [
    ("invalid_yaml", "processors:\n  signing: {keys_dir: [unclosed\n" + FILE + PIPE, ["line 3, column", "YAML"]),
    ("top_level_list", "- processors\n- exporters\n", ["top level must be a mapping"]),
    ("unknown_top_key", "pipelines: {}\n" + FILE + PIPE, ["unknown top-level key 'pipelines'"]),
    ("duplicate_key", "processors:\n" + SIGNING + SIGNING + FILE + PIPE, ["line 3", "'signing' is given twice"]),
    ("unknown_exporter_type", "processors:\n" + SIGNING + "exporters:\n  kafka: {}\n"
     "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [kafka]}\n",
     ["exporters.kafka", "unknown exporter type 'kafka'"]),
    ("undefined_exporter", "processors:\n" + SIGNING + FILE
     + "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [file/missing]}\n",
     ["service.pipelines", "'file/missing'"]),
    ("no_signing", "processors:\n  redaction: {mode: mask}\n" + FILE
     + "service:\n  pipelines:\n    logs: {processors: [redaction], exporters: [file]}\n",
     ["service.pipelines.logs.processors", "exactly one 'signing'"]),
    ("signing_not_last", "processors:\n  redaction: {mode: mask}\n" + SIGNING + FILE
     + "service:\n  pipelines:\n    logs: {processors: [signing, redaction], exporters: [file]}\n",
     ["service.pipelines.logs.processors", "must come last"]),
    ("missing_keys_dir", "processors:\n  signing: {checkpoint_every: 5}\n" + FILE + PIPE,
     ["processors.signing.keys_dir", "required"]),
    ("bad_checkpoint_every", "processors:\n  signing: {keys_dir: KEYS, checkpoint_every: -3}\n" + FILE + PIPE,
     ["processors.signing.checkpoint_every", "-3"]),
    ("bad_duration", "processors:\n  signing: {keys_dir: KEYS, checkpoint_interval: 5 minutes}\n" + FILE + PIPE,
     ["processors.signing.checkpoint_interval", "not a duration"]),
    ("bad_flush_timeout", "processors:\n" + SIGNING
     + "exporters:\n  file: {path: ARCHIVE, batch: {flush_timeout: soon}}\n" + PIPE,
     ["exporters.file.batch.flush_timeout"]),
    ("unset_env_var", "processors:\n" + SIGNING + "exporters:\n  file: {path: '${env:AUDIT_TEST_UNSET}/a'}\n" + PIPE,
     ["exporters.file.path", "environment variable AUDIT_TEST_UNSET is not set"]),
    ("unknown_file_key", "processors:\n" + SIGNING + "exporters:\n  file: {path: ARCHIVE, bogus: 1}\n" + PIPE,
     ["exporters.file.bogus", "unknown key"]),
    ("queue_disabled", "processors:\n" + SIGNING
     + "exporters:\n  file: {path: ARCHIVE, sending_queue: {enabled: false}}\n" + PIPE,
     ["exporters.file.sending_queue.enabled", "not allowed"]),
    ("hmac_without_key", "processors:\n  redaction: {mode: hmac}\n" + SIGNING + FILE
     + "service:\n  pipelines:\n    logs: {processors: [redaction, signing], exporters: [file]}\n",
     ["processors.redaction.hmac_key", "required"]),
    ("keys_dir_without_keys", "processors:\n  signing: {keys_dir: EMPTY}\n" + FILE + PIPE,
     ["processors.signing.keys_dir", "keys generate"]),
    ("same_file_twice", "processors:\n" + SIGNING
     + "exporters:\n  file/a: {path: ARCHIVE}\n  file/b: {path: ARCHIVE}\n"
     "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [file/a, file/b]}\n",
     ["exporters.file/b.path", "same file"]),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["build", "dry_run"])
@pytest.mark.parametrize(("name", "text", "expected"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_config_errors_name_the_file_and_the_key(
    tmp_path: Path, shared_keys: Path, name: str, text: str, expected: list[str], dry_run: bool
) -> None:
    """Each broken config raises one ConfigError naming the file and the key; nothing is written or left running."""
    (tmp_path / "empty-keys").mkdir()
    archive = tmp_path / "archive" / "audit.jsonl"
    text = (text.replace("KEYS", q(shared_keys)).replace("ARCHIVE", q(archive))
            .replace("EMPTY", q(tmp_path / "empty-keys")))
    cfg = write(tmp_path / "audit.yaml", text)
    before = our_threads()
    with pytest.raises(ConfigError) as err:
        config.build_from_file(cfg, {}, dry_run=dry_run)
    msg = str(err.value)
    assert str(cfg) in msg, msg
    for part in expected:
        assert part in msg, (part, msg)
    assert "\n" not in msg
    assert not (tmp_path / "archive").exists()
    assert our_threads() <= before


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        config.build_from_file(tmp_path / "nope.yaml")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    """Broken JSON is reported with the file, line and column."""
    cfg = write(tmp_path / "c.json", '{\n  "processors": {,}\n}\n')
    with pytest.raises(ConfigError, match=r"c\.json: not valid JSON at line 2, column"):
        config.load(cfg)


def test_secret_never_in_an_error_message(tmp_path: Path, shared_keys: Path) -> None:
    """A too-short HMAC key from the environment is refused without the key appearing in the message."""
    archive = tmp_path / "audit.jsonl"
    text = yaml_config(shared_keys, archive).replace(HMAC_KEY, "${env:SHORT_KEY}")
    cfg = write(tmp_path / "audit.yaml", text)
    with pytest.raises(ConfigError) as err:
        config.build_from_file(cfg, {"SHORT_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(err.value) and "processors.redaction.hmac_key" in str(err.value)


def test_a_state_dir_in_use_gives_the_second_pipeline_its_own_slot(tmp_path: Path, shared_keys: Path) -> None:
    """A second pipeline on a state_dir another holder has locked takes the slot state_dir/worker-1, with a
    stream and chain state of its own; both archives verify."""
    state = tmp_path / "state"
    first = otel_audit.configure(write(tmp_path / "one.yaml", yaml_config(shared_keys, tmp_path / "one.jsonl",
                                                                         state=state)))
    try:
        second = otel_audit.configure(write(tmp_path / "two.yaml", yaml_config(shared_keys, tmp_path / "two.jsonl",
                                                                               state=state)))
        try:
            assert second.stream_id != first.stream_id
            assert (state / "worker-1" / "state.json").exists()
        finally:
            second.shutdown()
    finally:
        first.shutdown()
    assert_verifies(tmp_path / "one.jsonl", shared_keys)
    assert_verifies(tmp_path / "two.jsonl", shared_keys)


# -- dry run -------------------------------------------------------------------------------------------


def test_dry_run_checks_without_side_effects(tmp_path: Path, shared_keys: Path) -> None:
    """A dry run loads the key and checks every block but creates no archive, no state and no thread."""
    archive = tmp_path / "archive" / "audit.jsonl"
    state = tmp_path / "state"
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive, state=state))
    before = our_threads()
    built = config.build_from_file(cfg, dry_run=True)
    assert built.dry_run and built.provider is None and built.key_name == KEY_NAME
    assert list(built.processors) == ["redaction", "signing"] and list(built.exporters) == ["file"]
    assert not archive.parent.exists() and not state.exists()
    assert our_threads() <= before


# -- the env-only path ----------------------------------------------------------------------------------


def test_env_only_pipeline_with_the_file_exporter(tmp_path: Path, shared_keys: Path) -> None:
    """build_from_env with OTEL_LOGS_EXPORTER=otel_audit_file writes a redacted archive that verifies."""
    archive = tmp_path / "env" / "audit.jsonl"
    env = {
        "OTEL_AUDIT_KEYS_DIR": str(shared_keys),
        "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"),
        "OTEL_AUDIT_HMAC_KEY": HMAC_KEY,
        "OTEL_LOGS_EXPORTER": "otel_audit_file",
        "OTEL_AUDIT_FILE_PATH": str(archive),
        "OTEL_AUDIT_CHECKPOINT_EVERY": "4",
        "OTEL_AUDIT_CHECKPOINT_INTERVAL": "not-a-number",  # warned about, default used
    }
    built = config.build_from_env(env)
    assert set(built.exporters) == {"otel_audit_file"} and built.key_name == KEY_NAME
    emit_some(otel_audit.AuditPipeline(built))
    assert_verifies(archive, shared_keys)
    text = archive.read_text()
    assert EMAIL not in text and "hmac-sha256:" in text
    assert (tmp_path / "state" / "state.json").is_file()


def resources_and_records(archive: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes as plain values, log record) for every record of an OTLP JSON lines archive."""
    out = []
    for line in archive.read_text().splitlines():
        for rl in orjson.loads(line)["resourceLogs"]:
            res = {a["key"]: next(iter(a["value"].values())) for a in rl.get("resource", {}).get("attributes", [])}
            out.extend((res, rec) for sl in rl["scopeLogs"] for rec in sl["logRecords"])
    return out


def producer_lines(archive: Path) -> list[dict[str, Any]]:
    """The `producer` line of every signed checkpoint in the archive, parsed."""
    return [json.loads(line[len("producer "):]) for _, rec in resources_and_records(archive)
            for line in rec.get("body", {}).get("stringValue", "").splitlines() if line.startswith("producer ")]


def test_every_record_carries_the_redacted_resource_of_a_config_file(tmp_path: Path, shared_keys: Path) -> None:
    """Secrets in `resource:` are redacted on events and on the signing processor's own checkpoints alike, the
    checkpoints' producer line names the redacted service.name, and the archive still verifies."""
    archive = tmp_path / "archive" / "audit.jsonl"
    text = yaml_config(shared_keys, archive).replace(
        "  service.name: config-tests\n",
        '  service.name: "gw password=Res0urceSecretA"\n  db.url: "postgres://app:Res0urceSecretB@db/x"\n')
    audit = otel_audit.configure(write(tmp_path / "audit.yaml", text))
    emit_some(audit)
    records = resources_and_records(archive)
    kinds = {rec.get("eventName") for _, rec in records}
    assert {"audit.checkpoint", "authentication.login.succeeded"} <= kinds
    assert "Res0urceSecret" not in archive.read_text()
    (resource,) = {json.dumps(res, sort_keys=True) for res, _ in records}  # one resource for every record
    assert json.loads(resource)["service.name"].startswith("gw password=hmac-sha256:")
    assert {p["service.name"] for p in producer_lines(archive)} == {json.loads(resource)["service.name"]}
    assert_verifies(archive, shared_keys)


def test_every_record_carries_the_redacted_resource_of_the_env_only_mode(tmp_path: Path, shared_keys: Path) -> None:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES holding secrets: every record of the env-only pipeline,
    checkpoints and their producer line included, carries them redacted, and the archive verifies."""
    archive = tmp_path / "env" / "audit.jsonl"
    built = config.build_from_env({
        "OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_LOGS_EXPORTER": "otel_audit_file",
        "OTEL_AUDIT_FILE_PATH": str(archive), "OTEL_SERVICE_NAME": "gw password=Res0urceSecretC",
        "OTEL_RESOURCE_ATTRIBUTES": "db.password=Res0urceSecretD,url.full=https://u:Res0urceSecretE@db.example/x"})
    assert "Res0urceSecret" not in json.dumps(dict(built.provider.resource.attributes))
    emit_some(otel_audit.AuditPipeline(built))
    records = resources_and_records(archive)
    assert "Res0urceSecret" not in archive.read_text()
    assert {res["db.password"] for res, _ in records} == {"[REDACTED:sensitive_key]"}
    assert {p["service.name"] for p in producer_lines(archive)} == {"gw password=[REDACTED:password]"}
    assert_verifies(archive, shared_keys)


@pytest.mark.parametrize("var,value,named", [
    ("OTEL_SERVICE_NAME", "caf\udce9", "OTEL_SERVICE_NAME: "),  # a Latin-1 byte, as os.environ decodes it
    ("OTEL_RESOURCE_ATTRIBUTES", "team=caf\udce9", "OTEL_RESOURCE_ATTRIBUTES (team): "),
    ("OTEL_RESOURCE_ATTRIBUTES", "host.name=h\udcc3", "OTEL_RESOURCE_ATTRIBUTES (host.name): "),
], ids=["service-name", "resource-attribute", "host-name"])
def test_resource_text_that_is_not_utf8_is_a_config_error(tmp_path: Path, shared_keys: Path, var: str, value: str,
                                                          named: str) -> None:
    """A resource value no OTLP record or checkpoint can carry (a non-UTF-8 byte in the environment, a lone
    surrogate in the file) is a ConfigError naming its variable or key, from configure() and check-config alike,
    not a traceback out of the producer line or a stream whose every record is refused by the exporter."""
    archive = tmp_path / "a.jsonl"
    before = our_threads()
    with pytest.raises(ConfigError) as err:
        config.build_from_env({"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_LOGS_EXPORTER": "otel_audit_file",
                               "OTEL_AUDIT_FILE_PATH": str(archive), var: value})
    assert str(err.value).startswith(var) and "not valid UTF-8" in str(err.value), (named, str(err.value))
    assert not archive.exists() and our_threads() <= before
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive).replace(
        "service.name: config-tests", 'service.name: "svc\\ud800"'))
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=r"audit\.yaml: resource\.service\.name: .*not valid UTF-8"):
            config.build_from_file(cfg, dry_run=dry_run)
    assert not archive.exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_LOGS_EXPORTER": "nope"}, "OTEL_LOGS_EXPORTER: unknown exporter 'nope'"),
        ({"OTEL_LOGS_EXPORTER": "none"}, "OTEL_LOGS_EXPORTER names no exporter"),
        ({"OTEL_AUDIT_KEYS_DIR": ""}, "OTEL_AUDIT_KEYS_DIR is not set"),
        ({"OTEL_AUDIT_KEYS_DIR": "EMPTY"}, "OTEL_AUDIT_KEYS_DIR: "),
        ({"OTEL_AUDIT_HMAC_KEY": "sh0rt-s3cret"}, "OTEL_AUDIT_HMAC_KEY: "),
    ],
    ids=["unknown_exporter", "none", "no_keys_dir", "keys_dir_without_keys", "short_hmac_key"],
)
def test_env_only_errors_name_the_variable(
    tmp_path: Path, shared_keys: Path, env: dict[str, str], expected: str
) -> None:
    """A bad env value is a ConfigError naming the variable, and nothing is written or left running."""
    (tmp_path / "empty").mkdir()
    full = {"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_AUDIT_FILE_PATH": str(tmp_path / "a.jsonl")}
    full.update({k: (str(tmp_path / "empty") if v == "EMPTY" else v) for k, v in env.items()})
    before = our_threads()
    with pytest.raises(ConfigError) as err:
        config.build_from_env(full)
    assert expected in str(err.value)
    assert "sh0rt-s3cret" not in str(err.value)
    assert not (tmp_path / "a.jsonl").exists()
    assert our_threads() <= before


def test_configure_reads_otel_audit_config(tmp_path: Path, shared_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() without a path builds from the file named by OTEL_AUDIT_CONFIG."""
    archive = tmp_path / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive))
    monkeypatch.setenv("OTEL_AUDIT_CONFIG", str(cfg))
    monkeypatch.delenv("OTEL_AUDIT_KEYS_DIR", raising=False)
    with otel_audit.configure() as audit:
        assert len(audit.stream_id) == 32
        audit.logger.login_succeeded("alice")
    assert_verifies(archive, shared_keys)


def test_configure_without_config_uses_env_vars(
    tmp_path: Path, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() without a path or OTEL_AUDIT_CONFIG builds from OTEL_AUDIT_* env vars alone."""
    archive = tmp_path / "audit.jsonl"
    monkeypatch.delenv("OTEL_AUDIT_CONFIG", raising=False)
    monkeypatch.delenv("OTEL_AUDIT_HMAC_KEY", raising=False)
    monkeypatch.setenv("OTEL_AUDIT_KEYS_DIR", str(shared_keys))
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otel_audit_file")
    monkeypatch.setenv("OTEL_AUDIT_FILE_PATH", str(archive))
    emit_some(otel_audit.configure())
    assert_verifies(archive, shared_keys)
    assert "[REDACTED:email]" in archive.read_text()


@pytest.mark.parametrize("how", ["file", "env"])
def test_otel_sdk_disabled_does_not_turn_the_audit_trail_off(
    tmp_path: Path, shared_keys: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """OTEL_SDK_DISABLED=true (the SDK's no-op loggers) does not drop audit events: the pipeline, from a file or
    from env vars, writes and signs every event and logs a WARNING naming the variable."""
    archive = tmp_path / "audit.jsonl"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.delenv("OTEL_AUDIT_CONFIG", raising=False)
    caplog.set_level(logging.WARNING, logger="otel_audit.config")
    if how == "file":
        audit = otel_audit.configure(write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive)))
    else:
        monkeypatch.setenv("OTEL_AUDIT_KEYS_DIR", str(shared_keys))
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otel_audit_file")
        monkeypatch.setenv("OTEL_AUDIT_FILE_PATH", str(archive))
        audit = otel_audit.configure()
    emit_some(audit)
    assert_verifies(archive, shared_keys)
    assert event_names(archive).count("authentication.login.succeeded") == 5
    assert any("OTEL_SDK_DISABLED=true turns the OpenTelemetry SDK off, but not the audit pipeline" in r.getMessage()
               for r in caplog.records)


def test_restart_from_the_same_config_links_streams(tmp_path: Path, shared_keys: Path) -> None:
    """Two runs of one config with a state_dir make two streams, the second naming the first."""
    archive = tmp_path / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive, state=tmp_path / "state"))
    emit_some(otel_audit.configure(cfg))
    emit_some(otel_audit.configure(cfg))
    rep = verify_paths([archive], Keyring.load(shared_keys), progress=False)
    assert rep.ok and len(rep.streams) == 2
    ids = {s.stream_id for s in rep.streams}
    links = [(s.stream_id, s.predecessor) for s in rep.streams if s.predecessor]
    assert len(links) == 1 and links[0][1] in ids - {links[0][0]}


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests here decide the OTEL_AUDIT_* environment themselves."""
    for name in list(os.environ):
        if name.startswith(("OTEL_AUDIT_", "OTEL_BLRP_")) or name == "OTEL_LOGS_EXPORTER":
            monkeypatch.delenv(name, raising=False)


def test_copied_demo_style_folder_is_relocatable(tmp_path: Path, shared_keys: Path) -> None:
    """A config folder with relative paths still works after being moved elsewhere."""
    conf = tmp_path / "one"
    shutil.copytree(shared_keys, conf / "keys")
    write(conf / "audit.yaml", "processors:\n  signing: {keys_dir: keys}\nexporters:\n  file: {path: out/a.jsonl}\n"
          "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [file]}\n")
    moved = tmp_path / "two"
    conf.rename(moved)
    emit_some(otel_audit.configure(moved / "audit.yaml"))
    assert_verifies(moved / "out" / "a.jsonl", moved / "keys")


def delivery_config(keys_dir: Path, archive: Path, spool: Path, extra: str = "") -> str:
    return yaml_config(keys_dir, archive).replace(
        "processors: [redaction, signing]", "processors: [redaction, signing, delivery]"
    ).replace(
        "exporters:\n  file:",
        f"  delivery:\n    directory: {q(spool)}\n    fsync_interval: 10ms{extra}\nexporters:\n  file:",
    )


def test_delivery_processor_puts_the_durable_spool_in_front_of_the_exporters(tmp_path: Path, shared_keys: Path) -> None:
    """processors.delivery after signing ships through the disk spool; the archive verifies and the spool empties."""
    archive = tmp_path / "archive" / "audit.jsonl"
    cfg = write(tmp_path / "audit.yaml", delivery_config(shared_keys, archive, tmp_path / "spool"))
    audit = otel_audit.configure(cfg)
    from otel_audit.processors.spool import SpoolProcessor

    assert isinstance(audit.signing._downstream[0], SpoolProcessor)
    emit_some(audit, 50)
    audit.shutdown()
    assert_verifies(archive, shared_keys)
    assert (tmp_path / "spool" / "segments").is_dir()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("\n    mode: sometimes", "processors.delivery.mode"),
        ("\n    max_size_mib: -1", "processors.delivery.max_size_mib"),
        ("\n    colour: blue", "processors.delivery.colour"),
        ("\n    block_timeout: soon", "processors.delivery.block_timeout"),
    ],
)
def test_delivery_errors_name_the_key(tmp_path: Path, shared_keys: Path, extra: str, needle: str) -> None:
    """A bad delivery block gives a ConfigError naming the file and the key."""
    cfg = write(tmp_path / "audit.yaml", delivery_config(shared_keys, tmp_path / "a.jsonl", tmp_path / "spool", extra))
    with pytest.raises(ConfigError) as exc:
        config.build_from_file(cfg, dry_run=True)
    assert str(cfg) in str(exc.value) and needle in str(exc.value)


@pytest.mark.parametrize(
    ("spool", "state", "needle"),
    [
        ("KEYS", None, "processors.delivery.directory"),
        ("KEYS/private", None, "processors.delivery.directory"),
        ("spool", "KEYS", "processors.signing.state_dir"),
        ("state/spool", "state", "processors.delivery.directory"),
        ("spool", "spool", "processors.delivery.directory"),
    ],
    ids=["spool-is-keys", "spool-in-private", "state-is-keys", "spool-in-state", "spool-is-state"],
)
def test_keys_state_and_spool_folders_must_not_overlap(
    tmp_path: Path, shared_keys: Path, spool: str, state: str | None, needle: str
) -> None:
    """The keys, chain state and spool folders are each a folder of their own: sharing one is a ConfigError."""
    def where(s: str) -> Path:
        return Path(s.replace("KEYS", str(shared_keys))) if s.startswith("KEYS") else tmp_path / s

    text = delivery_config(shared_keys, tmp_path / "a.jsonl", where(spool))
    if state is not None:
        text = text.replace("    checkpoint_every: 10", f"    state_dir: {q(where(state))}\n    checkpoint_every: 10")
    cfg = write(tmp_path / "audit.yaml", text)
    with pytest.raises(ConfigError) as exc:
        config.build_from_file(cfg, dry_run=True)
    assert str(cfg) in str(exc.value) and needle in str(exc.value), str(exc.value)
    assert "folder of their own" in str(exc.value)


@pytest.mark.parametrize("var", ["OTEL_AUDIT_SPOOL_DIR", "OTEL_AUDIT_STATE_DIR"])
def test_env_spool_or_state_in_the_keys_folder_is_a_config_error(shared_keys: Path, var: str) -> None:
    """Env-only: OTEL_AUDIT_SPOOL_DIR or OTEL_AUDIT_STATE_DIR naming the keys folder is refused, naming the variable."""
    with pytest.raises(ConfigError, match=var):
        config.build_from_env({"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_LOGS_EXPORTER": "otel_audit_file",
                               var: str(shared_keys)})


@pytest.mark.parametrize(
    ("path", "needle"),
    [("'archive/'", "names a folder"), ('"archive/\\u0000audit.jsonl"', "NUL"), ("/dev/null", "not a regular file")],
    ids=["trailing-slash", "nul", "device"],
)
def test_file_path_that_cannot_be_an_archive_file_is_a_config_error(
    tmp_path: Path, shared_keys: Path, path: str, needle: str
) -> None:
    """exporters.file.path ending in /, holding a NUL or naming a device is a ConfigError naming the key."""
    text = yaml_config(shared_keys, tmp_path / "a.jsonl").replace(f"path: {q(tmp_path / 'a.jsonl')}", f"path: {path}")
    cfg = write(tmp_path / "audit.yaml", text)
    with pytest.raises(ConfigError) as exc:
        config.build_from_file(cfg, dry_run=True)
    assert f"{cfg}: exporters.file.path:" in str(exc.value) and needle in str(exc.value), str(exc.value)


@pytest.mark.parametrize(("path", "needle"), [("DIR/", "names a folder"), ("/dev/null", "not a regular file")],
                         ids=["trailing-slash", "device"])
def test_env_file_path_that_cannot_be_an_archive_file_names_the_variable(
    tmp_path: Path, shared_keys: Path, path: str, needle: str
) -> None:
    """Env-only: OTEL_AUDIT_FILE_PATH ending in / or naming a device is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=f"^OTEL_AUDIT_FILE_PATH: .*{needle}"):
        config.build_from_env({"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_LOGS_EXPORTER": "otel_audit_file",
                               "OTEL_AUDIT_FILE_PATH": path.replace("DIR", str(tmp_path / "archive"))})
    assert not (tmp_path / "archive").exists()


def test_delivery_must_come_last(tmp_path: Path, shared_keys: Path) -> None:
    """delivery before signing is refused: it must receive the signed records."""
    text = delivery_config(shared_keys, tmp_path / "a.jsonl", tmp_path / "spool").replace(
        "[redaction, signing, delivery]", "[redaction, delivery, signing]")
    cfg = write(tmp_path / "audit.yaml", text)
    with pytest.raises(ConfigError, match="delivery"):
        config.build_from_file(cfg, dry_run=True)


# -- warnings about setups that can lose records, and the spool's sizes -------------------------------------


def test_configure_logs_the_check_config_warnings(
    tmp_path: Path, shared_keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """configure() without delivery and state_dir logs both warnings at WARNING, naming file and key."""
    archive = tmp_path / "a.jsonl"
    cfg = write(tmp_path / "audit.yaml", yaml_config(shared_keys, archive))
    with caplog.at_level("WARNING", logger="otel_audit.config"):
        audit = otel_audit.configure(cfg)
    emit_some(audit)
    ours = [r for r in caplog.records if r.name == "otel_audit.config"]
    assert all(r.levelname == "WARNING" for r in ours)
    assert [r.getMessage().split(": ")[:2] for r in ours] == [
        [str(cfg), "processors.signing.state_dir"], [str(cfg), "service.pipelines.logs/audit.processors"]]
    assert_verifies(archive, shared_keys)  # usable all the same


def test_dry_run_returns_the_warnings_and_logs_none(
    tmp_path: Path, shared_keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dry run returns the warnings in Built.warnings without logging them (check-config prints them itself)."""
    cfg = write(tmp_path / "audit.yaml", delivery_config(shared_keys, tmp_path / "a.jsonl", tmp_path / "spool",
                                                         "\n    mode: fail_open"))
    with caplog.at_level("WARNING"):
        built = config.build_from_file(cfg, dry_run=True)
    assert [w.split(": ")[1] for w in built.warnings] == ["processors.signing.state_dir", "processors.delivery.mode"]
    assert not [r for r in caplog.records if r.name == "otel_audit.config"]


@pytest.mark.parametrize(
    ("max_size_mib", "segment_bytes"),
    [(None, 32 << 20), (1024, 32 << 20), (256, 32 << 20), (100, 13_107_200),
     (1, 128 << 10), (0.0625, 8192), (0.1, 12_288)],
)
def test_default_segment_size_fits_the_spool(
    tmp_path: Path, shared_keys: Path, max_size_mib: float | None, segment_bytes: int
) -> None:
    """Without segment_size_mib the spool gets min(32 MiB, max_bytes // 8) rounded down to 4 KiB."""
    extra = "" if max_size_mib is None else f"\n    max_size_mib: {max_size_mib}"
    spool = tmp_path / "spool"
    cfg = write(tmp_path / "audit.yaml", delivery_config(shared_keys, tmp_path / "a.jsonl", spool, extra))
    kw = config._plan(config.load(cfg), str(cfg), tmp_path).delivery[1]  # type: ignore[index]
    max_bytes = kw.get("max_bytes", 1 << 30)
    assert kw["segment_bytes"] == segment_bytes == config.default_segment_bytes(max_bytes)
    assert kw["segment_bytes"] % 4096 == 0 and kw["segment_bytes"] * 8 <= max_bytes


@pytest.mark.parametrize(("text", "seconds"), [(None, 5.0), ("2500ms", 2.5), ("1m", 60.0), ("10m", 600.0), (3, 3.0)])
def test_shutdown_timeout_is_passed_as_seconds(
    tmp_path: Path, shared_keys: Path, text: str | int | None, seconds: float
) -> None:
    """delivery.shutdown_timeout (default 5s) reaches the SpoolProcessor kwargs as a float of seconds."""
    extra = "" if text is None else f"\n    shutdown_timeout: {text}"
    spool = tmp_path / "spool"
    cfg = write(tmp_path / "audit.yaml", delivery_config(shared_keys, tmp_path / "a.jsonl", spool, extra))
    kw = config._plan(config.load(cfg), str(cfg), tmp_path).delivery[1]  # type: ignore[index]
    assert type(kw["shutdown_timeout"]) is float and kw["shutdown_timeout"] == seconds


def test_segment_size_over_half_the_spool_is_a_config_error(tmp_path: Path, shared_keys: Path) -> None:
    """segment_size_mib * 2 > max_size_mib is a ConfigError naming file and key, in a real build too."""
    cfg = write(tmp_path / "audit.yaml", delivery_config(
        shared_keys, tmp_path / "a.jsonl", tmp_path / "spool", "\n    max_size_mib: 8\n    segment_size_mib: 5"))
    with pytest.raises(ConfigError) as err:
        otel_audit.configure(cfg)
    assert f"{cfg}: processors.delivery.segment_size_mib: " in str(err.value)
    assert not (tmp_path / "spool").exists() and not (tmp_path / "a.jsonl").exists()


def test_delivery_pipeline_wires_shutdown_timeout_on_reject_and_segment_size(
    tmp_path: Path, shared_keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A durable config wires shutdown_timeout, on_reject and a fitting segment into the spool, warning-free."""
    archive = tmp_path / "archive" / "audit.jsonl"
    extra = "\n    max_size_mib: 1\n    shutdown_timeout: 2s"
    text = delivery_config(shared_keys, archive, tmp_path / "spool", extra).replace(
        "    checkpoint_every: 10", f"    state_dir: {q(tmp_path / 'state')}\n    checkpoint_every: 10")
    cfg = write(tmp_path / "audit.yaml", text)
    with caplog.at_level("WARNING", logger="otel_audit.config"):
        audit = otel_audit.configure(cfg)
    try:
        assert not [r for r in caplog.records if r.name == "otel_audit.config"]
        spool = audit.signing._downstream[0]
        assert spool.on_reject == audit.signing.record_rejected
        assert spool.on_drop == audit.signing.record_gap
        assert spool.segment_bytes == 128 << 10
        assert spool.shutdown_timeout == 2.0
        emit_some(audit, 20)
    finally:
        audit.shutdown()
    assert_verifies(archive, shared_keys)


# -- resource text that is not UTF-8 ------------------------------------------------------------------------


@pytest.mark.parametrize(("var", "value"), [
    ("OTEL_RESOURCE_ATTRIBUTES", "team=caf" + os.fsdecode(b"\xe9")),  # Latin-1, surrogate-escaped by Python
    ("OTEL_SERVICE_NAME", os.fsdecode(b"caf\xe9")),
    ("OTEL_RESOURCE_ATTRIBUTES", "host.name=h" + os.fsdecode(b"\xc3")),
])
def test_env_resource_that_is_not_utf8_is_a_config_error(tmp_path: Path, shared_keys: Path, var: str,
                                                          value: str) -> None:
    """A non-UTF-8 byte in a resource variable is a ConfigError naming it, before anything is written."""
    env = {"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_AUDIT_FILE_PATH": str(tmp_path / "a.jsonl"), var: value}
    with pytest.raises(ConfigError, match=rf"^{var}: character \d+ is not valid UTF-8"):
        config.build_from_env(env)
    assert not (tmp_path / "a.jsonl").exists()


def test_config_resource_value_with_a_lone_surrogate_is_a_config_error(tmp_path: Path, shared_keys: Path) -> None:
    """A `resource:` value holding a lone surrogate fails the dry run (check-config) naming the key."""
    text = yaml_config(shared_keys, tmp_path / "a.jsonl").replace("service.name: config-tests",
                                                                  'service.name: "svc\\ud800"')
    doc = config.load(write(tmp_path / "audit.yaml", text))
    with pytest.raises(ConfigError, match=r"resource\.service\.name: character 4 is not valid UTF-8"):
        config.build(doc, src="audit.yaml", base_dir=tmp_path, dry_run=True)


def test_config_file_refuses_a_non_utf8_resource_variable(tmp_path: Path, shared_keys: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a config file, OTEL_RESOURCE_ATTRIBUTES (merged by the SDK's Resource.create) is checked too."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=caf" + os.fsdecode(b"\xe9"))
    doc = config.load(write(tmp_path / "audit.yaml", yaml_config(shared_keys, tmp_path / "a.jsonl")))
    with pytest.raises(ConfigError, match=r"^OTEL_RESOURCE_ATTRIBUTES: character 9 is not valid UTF-8"):
        config.build(doc, src="audit.yaml", base_dir=tmp_path, dry_run=True)
