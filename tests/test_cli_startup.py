"""The start of `otel-audit verify` and `otel-audit --help`: what they import, not how long they take.

A small archive is verified in a fresh process (as a user runs it) and the modules it loaded are checked
against the ones it must not need: a module-level import that pulls one of them back in fails here, on any
machine, however fast. What the verify path may not import:

* cryptography's serialization package (its ssh module pulls every cipher, RSA, DSA, EC and bcrypt): verify
  checks Ed25519 signatures with public keys only (otel_audit.keys imports it where a private key is used);
* the SIEM readers (otel_audit.sources.*) with their field mappings (siem_fields), the event catalog and
  csv: a line of an OTLP archive is a request no reader may claim (otel_audit.readers._Deferred);
* the OpenTelemetry SDK, the pipeline (config, logger, processors, exporters) and HTTP clients;
* secrets, random and tempfile (with shutil): the reorder window's scratch folder imports them when an archive
  spills, its run key is os.urandom.

`otel-audit --help` imports none of that, nor typing, urllib.parse (ipaddress) or anything of verification.
Only the modules the command loaded count: an editable install's import finder loads some (urllib.parse,
pathlib) when the interpreter starts, before otel_audit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env, write_archive

from otel_audit import cli, readers

#: never imported by `otel-audit verify` of a plain OTLP archive (a module, or a package and everything in it)
VERIFY_NEVER = (
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.primitives.serialization.ssh",
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "bcrypt",
    "otel_audit.sources",
    "otel_audit.siem_fields",
    "otel_audit.catalog",
    "otel_audit.otlpjson",
    "otel_audit.config",
    "otel_audit.logger",
    "otel_audit.log_bridges",
    "otel_audit.processors",
    "otel_audit.exporters",
    "otel_audit.pseudonym",
    "otel_audit.demo",
    "opentelemetry",
    "csv",
    "difflib",
    "requests",
    "urllib3",
    "yaml",
    "secrets",
    "random",
    "tempfile",
)

#: never imported by `otel-audit --help`: nothing of verification at all
HELP_NEVER = (
    *VERIFY_NEVER,
    "cryptography",
    "orjson",
    "otel_audit.keys",
    "otel_audit.note",
    "otel_audit.decoding",
    "otel_audit.canonical",
    "otel_audit.verify",
    "otel_audit.readers",
    "gzip",
    "dataclasses",
    "inspect",
    "typing",
    "urllib.parse",
    "ipaddress",
    "hashlib",
    "json",
    "uuid",
    "pathlib",
    "datetime",
)


_CHILD = """
import sys
before = set(sys.modules)
try:
    from otel_audit.cli import main
    code = main(sys.argv[2:])
except SystemExit as exc:  # --help: argparse prints it and exits; the modules are written all the same
    code = exc.code
sys.stdout.flush()
mods = sorted(set(sys.modules) - before)
with open(sys.argv[1], "w") as fh:
    fh.write(chr(10).join(mods))
sys.exit(code)
"""


def _loaded(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `otel-audit ARGV` in a fresh interpreter; (the process, the modules it loaded: those not already
    loaded when the interpreter had started)."""
    out = tmp_path / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), *argv], capture_output=True, text=True,
                          timeout=120, env=child_env(), check=False)
    return proc, set(out.read_text().split("\n")) if out.exists() else set()


def _offending(loaded: set[str], never: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in never))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(keyring.json, archive): one producer, one record, sealed by its end checkpoint."""
    from otel_audit.keys import Keyring, Signer

    d = tmp_path_factory.mktemp("tiny")
    signer = Signer.generate("tiny")
    ring = d / "keyring.json"
    ring.write_bytes(Keyring([signer.public()]).to_json())
    written = write_archive(d / "audit.jsonl", signer, 1)
    return ring, Path(written.path)


def test_verify_of_an_otlp_archive_imports_no_serialization_siem_reader_or_sdk(
        tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    ring, archive = tiny
    proc, loaded = _loaded(tmp_path, "verify", "--keys", str(ring), "--no-progress", str(archive))
    assert proc.returncode == 0, proc.stderr
    assert "result: VERIFIED" in proc.stdout
    assert "otel_audit.verify.prove" in loaded and "cryptography.hazmat.primitives.asymmetric.ed25519" in loaded
    assert _offending(loaded, VERIFY_NEVER) == []


def test_verify_json_output_imports_no_more(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    ring, archive = tiny
    proc, loaded = _loaded(tmp_path, "verify", "--keys", str(ring), "--no-progress", "--format", "json",
                           str(archive))
    assert proc.returncode == 0, proc.stderr
    assert _offending(loaded, VERIFY_NEVER) == []


def test_help_imports_nothing_of_verification(tmp_path: Path) -> None:
    proc, loaded = _loaded(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "verify" in proc.stdout
    assert {"otel_audit.cli", "argparse"} <= loaded  # the list is of this run (an exit by --help writes it too)
    assert _offending(loaded, HELP_NEVER) == []


def test_a_siem_export_still_loads_its_reader(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    """The deferral is of the import only: a line that is not an OTLP request is still read by its reader."""
    ring, _ = tiny
    export = tmp_path / "export.json"
    export.write_text('{"results": []}\n')
    proc, loaded = _loaded(tmp_path, "verify", "--keys", str(ring), "--no-progress", str(export))
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    assert "otel_audit.sources.splunk" in loaded


# -- what the deferrals must keep -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(readers._BUILTIN))
def test_a_deferred_reader_is_the_reader_it_stands_for(kind: str) -> None:
    """Before it is loaded, a built-in reader says what the reader itself says: its kind and label, no
    findings; an OTLP request is no reader's (Reader.claims), so answering it unloaded changes nothing."""
    spec, _ = readers._BUILTIN[kind]
    real = readers._load_factory(spec)()
    deferred = readers.create(kind)
    assert isinstance(deferred, readers.Reader)
    assert (deferred.kind, deferred.label) == (real.kind, real.label) == (kind, real.label)
    assert (deferred.problems, deferred.mismatches, deferred.records, deferred.skipped) == (
        real.problems, real.mismatches, real.records, real.skipped)
    requests: list[Any] = [{"resourceLogs": v} for v in ([], [{}], {}, None, "x", 1, [{"scopeLogs": []}])]
    for doc in requests:
        assert real.claims(doc) is False, doc
        assert deferred.claims(doc) is False, doc
    assert deferred._reader is None  # nothing above loaded it
    # anything else is the real reader's answer
    for doc in ({"result": {}}, {"_source": {}}, {"data": []}, {"resourceLogs": [], "_raw": "x"}, [], {}):
        assert deferred.claims(doc) == real.claims(doc), doc
    assert deferred._reader is not None


def test_a_reader_registered_under_a_builtin_kind_is_not_deferred() -> None:
    class Mine:
        kind, label = "splunk", "mine"
        problems: list[str] = []
        mismatches: list[str] = []
        records = skipped = 0

        def claims(self, doc: Any) -> bool:
            return True

        def claims_text(self, first_line: bytes) -> bool:
            return False

        def records_in(self, source: Any, where: str | None = None) -> Any:
            return iter(())

    saved = dict(readers._REGISTERED)
    try:
        readers.register("splunk", Mine)
        assert type(readers.create("splunk")) is Mine
    finally:
        readers._REGISTERED.clear()
        readers._REGISTERED.update(saved)


def _all_help(p: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """The help of a parser and of each of its sub-parsers, by command path."""
    out = {path: p.format_help()}
    for action in p._actions:
        for name, sub in (getattr(action, "_name_parser_map", None) or {}).items():
            out.update(_all_help(sub, (*path, name)))
    return out


@pytest.mark.parametrize("command", [name for name, _, _ in cli._COMMANDS])
def test_the_parser_built_for_one_command_is_the_full_one_for_it(command: str) -> None:
    """`_parser(argv)` adds the arguments of the command argv runs only; that command's help (and every
    sub-command's of it) and the top-level help are those of the parser with all of them."""
    full = _all_help(cli._parser())
    for argv in ([command], ["-x", command, "--y"], ["--", command]):
        one = _all_help(cli._parser(argv))
        assert one[()] == full[()]
        mine = {k: v for k, v in full.items() if k[:1] == (command,)}
        assert mine and {k: one[k] for k in mine} == mine
