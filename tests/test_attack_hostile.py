"""Hostile-operator probes (attack2): each failed when written; the symlink breaks were then fixed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OA = [str(Path(sys.executable).with_name("otel-audit"))]


def _archive(tmp: Path) -> tuple[Path, Path]:
    keys = tmp / "keys"
    subprocess.run(OA + ["keys", "generate", "--dir", str(keys)], check=True, capture_output=True)
    (tmp / "audit.yaml").write_text(
        "resource: {service.name: t}\n"
        "processors:\n  signing: {keys_dir: keys, state_dir: state}\n"
        "exporters:\n  file: {path: archive/audit.jsonl}\n"
        "service:\n  pipelines:\n    logs/audit: {processors: [signing], exporters: [file]}\n")
    code = ("import otel_audit, sys\n"
            "p = otel_audit.configure(sys.argv[1])\n"
            "p.logger.login_succeeded('alice')\n"
            "p.shutdown()\n")
    subprocess.run([sys.executable, "-c", code, str(tmp / "audit.yaml")], check=True, capture_output=True)
    return keys, tmp / "archive"


def test_verify_state_temp_file_follows_planted_symlink(tmp_path):
    """`verify --state` writes its temporary file `.NAME.tmp-<pid>` next to the state file with
    O_CREAT|O_TRUNC but neither O_EXCL nor O_NOFOLLOW.  Where the state file lives in (or is a
    symlink into) a folder other users can write -- the brief's "state file symlinked elsewhere" --
    anyone can plant `.st.json.tmp-<pid>` as a symlink to a file of the auditor's: the run
    truncates and overwrites that file with the state JSON.  Expected: the temp file is created
    exclusively (O_EXCL / mkstemp), so a planted name is never followed and the victim is intact.
    """
    keys, archive = _archive(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)           # a folder others can write (not sticky)
    victim = tmp_path / "auditor-private.txt"
    victim.write_text("precious auditor data\n")
    link = tmp_path / "vst.json"
    link.symlink_to(shared / "st.json")   # a state file symlinked elsewhere (documented as supported)
    proc = subprocess.Popen(OA + ["verify", "--keys", str(keys), "--state", str(link), str(archive)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the attacker: the pid is public (ps), the name is predictable
    (shared / f".st.json.tmp-{proc.pid}").symlink_to(victim)
    out, err = proc.communicate(timeout=120)
    assert victim.read_text() == "precious auditor data\n", (
        "verify --state followed a planted symlink and overwrote " + str(victim))


def test_signing_state_temp_file_follows_planted_symlink(tmp_path):
    """The producer rewrites `state_dir/state.json` through a fixed-name temporary file
    `state_dir/state.tmp`, opened O_CREAT|O_TRUNC without O_EXCL/O_NOFOLLOW (spool.json.tmp and
    cursors/*.json.tmp likewise).  An existing `state_dir` keeps its mode (README, *Files on
    disk*), so in one others can write, a planted `state.tmp` symlink makes the producer truncate
    and overwrite any file the service account can write.  Expected: the victim is untouched
    (exclusive temp file, or refusal to follow a link)."""
    keys, _ = _archive(tmp_path)
    state = tmp_path / "state"
    os.chmod(state, 0o777)
    victim = tmp_path / "service-owned.conf"
    victim.write_text("do not touch\n")
    (state / "state.tmp").symlink_to(victim)
    code = ("import otel_audit, sys\n"
            "p = otel_audit.configure(sys.argv[1])\n"
            "p.logger.login_succeeded('bob')\n"
            "p.shutdown()\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "audit.yaml")], capture_output=True, timeout=120)
    assert victim.read_text() == "do not touch\n", "producer followed a planted state.tmp symlink"
