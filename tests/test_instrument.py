"""Every way in signs: an app under the real `opentelemetry-instrument` with OTEL_PYTHON_CONFIGURATOR=otel_audit
writes records that `otel-audit verify` proves, from a config file or from env vars alone; the SDK's plain
pipeline (OTEL_LOGS_EXPORTER=otel_audit_file, no configurator of ours) says loudly that it signs nothing; and
configure(set_global=True) under a global provider it cannot replace says so instead of doing nothing.

Each app is a real child process started by the installed console script, as a service would be."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SECRET = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
BIN = Path(sys.executable).parent

APP = textwrap.dedent(f"""
    import otel_audit
    from otel_audit import instrument

    audit = otel_audit.AuditLogger()  # the global provider: what opentelemetry-instrument set up
    for i in range(4):
        audit.login_succeeded(f"user-{{i}}", client_address="203.0.113.7", session_id=f"s-{{i}}")
    audit.login_succeeded("leaky", client_address="203.0.113.7", session_id="{SECRET}")
    built = instrument.pipeline()
    print("PIPELINE", None if built is None else built.stream_id)
""")


def run_instrumented(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    instrument = BIN / "opentelemetry-instrument"
    assert instrument.exists(), "opentelemetry-instrument is installed with the test extras"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    full = {**base, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **env}
    return subprocess.run([str(instrument), sys.executable, str(app)], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def verify(keys: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "otel-audit"), "verify", "--keys", str(keys), "--no-progress", str(archive)],
                          capture_output=True, text=True, timeout=120)


def records(archive: Path) -> list[dict[str, object]]:
    out = []
    for path in sorted(archive.parent.glob(archive.name + "*")):
        for line in path.read_text().splitlines():
            for rl in json.loads(line)["resourceLogs"]:
                for sl in rl["scopeLogs"]:
                    out.extend(sl["logRecords"])
    return out


def assert_proven(res: subprocess.CompletedProcess[str], keys: Path, archive: Path) -> None:
    assert res.returncode == 0, res.stderr
    assert "PIPELINE " in res.stdout and "PIPELINE None" not in res.stdout, res.stdout + res.stderr
    assert "NOT signed" not in res.stderr
    v = verify(keys, archive)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "VERIFIED" in v.stdout
    text = "".join(p.read_text() for p in archive.parent.glob(archive.name + "*"))
    assert SECRET not in text, "the secret in session_id reached the archive unredacted"
    logins = [r for r in records(archive) if r.get("eventName") == "authentication.login.succeeded"]
    assert len(logins) == 5
    assert SECRET not in res.stdout + res.stderr


def test_instrumented_app_with_a_config_file_writes_records_verify_proves(tmp_path: Path, shared_keys: Path) -> None:
    """OTEL_PYTHON_CONFIGURATOR=otel_audit + OTEL_AUDIT_CONFIG: redaction -> signing -> spool -> file archive."""
    archive = tmp_path / "archive" / "audit.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        resource:
          service.name: instrumented-app
        processors:
          redaction: {{mode: mask}}
          signing: {{keys_dir: {json.dumps(str(shared_keys))}, state_dir: ./state, checkpoint_every: 100}}
          delivery: {{directory: ./spool}}
        exporters:
          file: {{path: ./archive/audit.jsonl, fsync: never}}
        service:
          pipelines:
            logs/audit:
              processors: [redaction, signing, delivery]
              exporters: [file]
    """))
    res = run_instrumented(tmp_path, {"OTEL_PYTHON_CONFIGURATOR": "otel_audit", "OTEL_AUDIT_CONFIG": str(cfg)})
    assert_proven(res, shared_keys, archive)


def test_instrumented_app_with_env_vars_alone_writes_records_verify_proves(tmp_path: Path, shared_keys: Path) -> None:
    """OTEL_PYTHON_CONFIGURATOR=otel_audit + OTEL_AUDIT_KEYS_DIR: OTEL_LOGS_EXPORTER names our exporter, built once,
    inside the signed pipeline (the SDK's configurator does not build it a second time)."""
    archive = tmp_path / "archive" / "audit.jsonl"
    res = run_instrumented(tmp_path, {
        "OTEL_PYTHON_CONFIGURATOR": "otel_audit",
        "OTEL_AUDIT_KEYS_DIR": str(shared_keys),
        "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"),
        "OTEL_LOGS_EXPORTER": "otel_audit_file",
        "OTEL_AUDIT_FILE_PATH": str(archive),
    })
    assert_proven(res, shared_keys, archive)


def test_configurator_named_without_audit_settings_refuses(tmp_path: Path) -> None:
    """Asked for by name with neither OTEL_AUDIT_CONFIG nor OTEL_AUDIT_KEYS_DIR, it builds nothing unsigned, and the
    app's AuditLogger() refuses at its first emit instead of sending the event nowhere."""
    res = run_instrumented(tmp_path, {"OTEL_PYTHON_CONFIGURATOR": "otel_audit", "OTEL_LOGS_EXPORTER": "otel_audit_file",
                                      "OTEL_AUDIT_FILE_PATH": str(tmp_path / "a.jsonl")})
    assert "OTEL_PYTHON_CONFIGURATOR=otel_audit but neither OTEL_AUDIT_CONFIG" in res.stderr
    assert res.returncode == 1 and "PIPELINE" not in res.stdout, res.stdout + res.stderr
    assert "ConfigError: AuditLogger(): OTEL_PYTHON_CONFIGURATOR=otel_audit asks for the signed audit pipeline, but " \
           "no global LoggerProvider is set" in res.stderr, res.stderr
    assert not (tmp_path / "a.jsonl").exists() or (tmp_path / "a.jsonl").read_text() == ""


def test_plain_sdk_pipeline_with_our_exporter_warns_loudly(tmp_path: Path, shared_keys: Path) -> None:
    """OTEL_LOGS_EXPORTER=otel_audit_file through the SDK's own configurator writes unsigned records: it says so,
    once, at start, naming the fix; and verify does not prove what it wrote."""
    archive = tmp_path / "plain.jsonl"
    res = run_instrumented(tmp_path, {"OTEL_PYTHON_CONFIGURATOR": "configurator",  # opentelemetry-distro's (the SDK's)
                                      "OTEL_LOGS_EXPORTER": "otel_audit_file", "OTEL_AUDIT_FILE_PATH": str(archive)})
    assert res.returncode == 0, res.stderr
    assert "PIPELINE None" in res.stdout
    assert res.stderr.count("FileLogRecordExporter was built by the OpenTelemetry SDK's own configurator") == 1
    assert "NOT redacted and NOT signed" in res.stderr
    assert "OTEL_PYTHON_CONFIGURATOR=otel_audit" in res.stderr
    assert SECRET in archive.read_text()  # what the warning is about: nothing redacted it
    assert verify(shared_keys, archive).returncode != 0


def test_constructing_our_exporters_directly_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only the SDK's configurator triggers the warning: a pipeline of one's own is the user's choice."""
    from otel_audit.exporters import FileLogRecordExporter

    with caplog.at_level(logging.WARNING, logger="otel_audit.instrument"):
        FileLogRecordExporter(tmp_path / "a.jsonl").shutdown()
    assert not [r for r in caplog.records if r.name == "otel_audit.instrument"]


def test_configure_set_global_when_a_global_provider_is_set_warns(tmp_path: Path, shared_keys: Path) -> None:
    """configure(set_global=True) after something else set the global LoggerProvider says what to do instead."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        import logging
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider
        import otel_audit

        logging.basicConfig(level=logging.WARNING)
        set_logger_provider(LoggerProvider())
        audit = otel_audit.configure(set_global=True)
        audit.shutdown()
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_AUDIT_FILE_PATH": str(tmp_path / "a.jsonl")})
    res = subprocess.run([sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "configure(set_global=True): a global LoggerProvider is already set" in res.stderr
    assert "OTEL_PYTHON_CONFIGURATOR=otel_audit" in res.stderr


# -- AuditLogger() through a global provider that is not the audit pipeline ---------------------------------


_PLAIN_DISTRO = """\
import json, os
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor

class Plain(LogRecordExporter):
    def export(self, batch):
        with open(os.environ["PLAIN_OUT"], "a") as f:
            for r in batch:
                f.write(json.dumps(dict(r.log_record.attributes or {}), default=str) + "\\n")
        return LogRecordExportResult.SUCCESS
    def shutdown(self):
        pass
    def force_flush(self, timeout_millis=30000):
        return True

class PlainDistro(BaseDistro):
    def _configure(self, **kw):
        p = LoggerProvider()
        p.add_log_record_processor(SimpleLogRecordProcessor(Plain()))
        set_logger_provider(p)
"""


def test_audit_logger_refuses_when_another_distro_set_the_provider_first(tmp_path: Path, shared_keys: Path) -> None:
    """Another distro sets a plain global LoggerProvider before our configurator (which refuses, and
    opentelemetry-instrument swallows that): the app's AuditLogger() raises ConfigError at construction and no
    audit event leaves through the other provider unsigned."""
    site = tmp_path / "site"
    (site / "plain_distro").mkdir(parents=True)
    (site / "plain_distro" / "__init__.py").write_text(_PLAIN_DISTRO)
    info = site / "plain_distro-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plain-distro\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[opentelemetry_distro]\nplain = plain_distro:PlainDistro\n")
    plain = tmp_path / "plain.jsonl"
    res = run_instrumented(tmp_path, {
        "PYTHONPATH": str(site), "PLAIN_OUT": str(plain), "OTEL_PYTHON_DISTRO": "plain",
        "OTEL_PYTHON_CONFIGURATOR": "otel_audit", "OTEL_AUDIT_KEYS_DIR": str(shared_keys),
        "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"), "OTEL_LOGS_EXPORTER": "otel_audit_file",
        "OTEL_AUDIT_FILE_PATH": str(tmp_path / "audit.jsonl")})
    assert "a global LoggerProvider was already set" in res.stderr  # the configurator's own refusal
    assert res.returncode == 1 and "PIPELINE" not in res.stdout, res.stdout + res.stderr
    assert "ConfigError: AuditLogger(): OTEL_PYTHON_CONFIGURATOR=otel_audit asks for the signed audit pipeline, " \
           "but the global LoggerProvider (opentelemetry.sdk._logs._internal.LoggerProvider) is not an otel-audit " \
           "pipeline" in res.stderr, res.stderr
    assert not plain.exists() or "audit.category" not in plain.read_text()


def test_sdk_configurator_with_audit_settings_warns_that_audit_events_are_not_signed(
        tmp_path: Path, shared_keys: Path) -> None:
    """The SDK's configurator chosen (OTEL_LOGS_EXPORTER=console) while OTEL_AUDIT_KEYS_DIR asks for signing: the
    app runs, and one WARNING says its audit events are NOT redacted and NOT signed, naming the fix."""
    res = run_instrumented(tmp_path, {
        "OTEL_PYTHON_CONFIGURATOR": "configurator", "OTEL_AUDIT_KEYS_DIR": str(shared_keys),
        "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"), "OTEL_LOGS_EXPORTER": "console"})
    assert res.returncode == 0 and "PIPELINE None" in res.stdout, res.stderr
    assert res.stderr.count("are exported NOT redacted and NOT signed, although OTEL_AUDIT_KEYS_DIR is set") == 1, \
        res.stderr
    assert "set OTEL_PYTHON_CONFIGURATOR=otel_audit" in res.stderr


@pytest.fixture
def global_provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets the global LoggerProvider for one test (the API sets it once per process otherwise)."""
    import opentelemetry._logs._internal as logs_internal

    from otel_audit import instrument

    for var in ("OTEL_PYTHON_CONFIGURATOR", "OTEL_AUDIT_CONFIG", "OTEL_AUDIT_KEYS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(instrument, "_warned_global", False)
    monkeypatch.setattr(instrument, "_attempted", False)

    def set_it(provider: Any) -> None:
        monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", provider)

    set_it(None)
    return set_it


def test_audit_logger_over_plain_sdk_components_needs_no_configurator(
        tmp_path: Path, shared_keys: Path, global_provider: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """AuditLogger() through a global SDK provider that has a SigningProcessor (README, plain SDK components) neither
    warns nor refuses, even with OTEL_PYTHON_CONFIGURATOR=otel_audit; an explicit provider is never checked."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    import otel_audit
    from otel_audit.processors import SigningProcessor

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    signing = SigningProcessor(shared_keys, downstream=SimpleLogRecordProcessor(memory), handle_signals=False)
    provider.add_log_record_processor(signing)
    global_provider(provider)
    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "otel_audit")
    monkeypatch.setenv("OTEL_AUDIT_KEYS_DIR", str(shared_keys))
    with caplog.at_level(logging.WARNING, logger="otel_audit.instrument"):
        otel_audit.AuditLogger().login_succeeded("alice")
        otel_audit.AuditLogger(LoggerProvider(shutdown_on_exit=False)).login_succeeded("bob")  # explicit: unchecked
    signing.shutdown()
    assert not caplog.records
    assert [r.log_record.attributes["user.id"] for r in memory.get_finished_logs() if r.log_record.attributes
            and "user.id" in r.log_record.attributes] == ["alice"]


def test_audit_logger_made_before_the_provider_is_set_checks_at_its_first_emit(
        global_provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An AuditLogger() made while no global provider is set is checked at its first emit: with the otel_audit
    configurator named and still no provider (or a plain one), it raises ConfigError instead of dropping the event."""
    from opentelemetry.sdk._logs import LoggerProvider

    import otel_audit

    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "otel_audit")
    early = otel_audit.AuditLogger()  # nothing set yet: not refused here
    with pytest.raises(otel_audit.ConfigError, match="no global LoggerProvider is set, so its audit events go nowhere"):
        early.login_succeeded("alice")
    later = otel_audit.AuditLogger()
    global_provider(LoggerProvider(shutdown_on_exit=False))
    with pytest.raises(otel_audit.ConfigError, match="is not an otel-audit pipeline"):
        later.login_succeeded("alice")


def test_audit_logger_without_audit_settings_is_unchanged(global_provider: Any) -> None:
    """Without audit settings in the environment AuditLogger() writes through any global provider, as before."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    import otel_audit

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    global_provider(provider)
    otel_audit.AuditLogger().login_succeeded("alice")
    assert len(memory.get_finished_logs()) == 1


def test_audit_logger_over_a_disabled_plain_sdk_audit_pipeline_refuses(
        shared_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain SDK LoggerProvider with a SigningProcessor under OTEL_SDK_DISABLED=true hands out no-op loggers:
    AuditLogger(provider) raises ConfigError naming the variable instead of dropping every audit event."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    import otel_audit
    from otel_audit.processors import SigningProcessor

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = LoggerProvider(shutdown_on_exit=False)
    signing = SigningProcessor(shared_keys, downstream=SimpleLogRecordProcessor(InMemoryLogRecordExporter()),
                               handle_signals=False)
    provider.add_log_record_processor(signing)
    try:
        with pytest.raises(otel_audit.ConfigError, match="OTEL_SDK_DISABLED=true"):
            otel_audit.AuditLogger(provider)
    finally:
        signing.shutdown()
