"""Files and folders the product makes are private whatever the umask, and check-config says which are not.

Every producer runs in a child process started with the umask under test (0o022, the usual one;
0o000, which leaves everything open; 0o277, which would also take the owner's write bit away): the
real CLI (`otel-audit keys`, `demo`, `verify --state`, `check-config`) and a real pipeline
(`otel_audit.configure`) with signing state, a durable spool and a rotating, gzipping file
exporter. Then the tree is walked: every folder is 0700 and every file 0600, except the public
keyring (keyring.json 0644, the folder `keys export` makes 0755). A folder that existed keeps its
mode, and `check-config` names it with its mode and the chmod that fixes it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import child_env

UMASKS = [0o022, 0o000, 0o277]
TIMEOUT = 180
PUBLIC_FILES = {"keyring.json"}


def run(*argv: str, umask: int = 0o022, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A child Python process with `umask`, without OTEL_AUDIT_* settings of the environment."""
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          check=False, cwd=cwd, preexec_fn=lambda: os.umask(umask))


def cli(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return run("-m", "otel_audit.cli", *args, umask=umask)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def modes(root: Path) -> dict[str, str]:
    """Every path under `root` (and root), relative, with its mode in octal."""
    out = {".": oct(mode(root))}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = oct(mode(p))
    return out


def not_private(root: Path, public: set[str] = PUBLIC_FILES, public_dirs: tuple[str, ...] = ()) -> dict[str, str]:
    """The paths under `root` that are not 0700 folders / 0600 files (public ones: 0644 files, 0755 folders)."""
    bad = {}
    for rel, m in modes(root).items():
        p = root / rel
        public_mode = (rel in public_dirs) if p.is_dir() else (p.name in public)
        want = {(True, True): 0o755, (True, False): 0o700, (False, True): 0o644, (False, False): 0o600}[
            (p.is_dir(), public_mode)]
        if int(m, 8) != want:
            bad[rel] = f"{m} (want {oct(want)})"
    return bad


def config(tmp: Path, keys: Path, *, rotation: str = "", extra_exporter: str = "") -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        processors:
          signing: {{keys_dir: {json.dumps(str(keys))}, state_dir: {json.dumps(str(tmp / "state"))},
                     checkpoint_every: 5}}
          delivery: {{directory: {json.dumps(str(tmp / "spool"))}, fsync_interval: 10ms}}
        exporters:
          file: {{path: {json.dumps(str(tmp / "archive" / "audit.jsonl"))}{rotation}{extra_exporter}}}
        service:
          pipelines:
            logs: {{processors: [signing, delivery], exporters: [file]}}
        """))
    os.chmod(cfg, 0o600)
    return cfg


PRODUCER = textwrap.dedent("""\
    import sys
    import otel_audit

    with otel_audit.configure(sys.argv[1]) as audit:
        for i in range(int(sys.argv[2])):
            audit.logger.emit("authentication.login.succeeded",
                              {"user.id": f"user-{i}", "client.address": "203.0.113.7", "session.id": f"s{i}"})
    """)


def produce(cfg: Path, n: int = 40, umask: int = 0o022) -> None:
    proc = run("-c", PRODUCER, str(cfg), str(n), umask=umask)
    assert proc.returncode == 0, proc.stderr


# -- what the product makes -----------------------------------------------------------------------


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_keys_generate_makes_a_private_keys_folder(tmp_path: Path, umask: int) -> None:
    """`keys generate` into a new folder: the folder and private/ are 0700, the key 0600, keyring.json 0644;
    `keys rotate` adds a second 0600 key, `keys export` a 0644 keyring in 0755 folders it made."""
    keys = tmp_path / "new" / "keys"
    proc = cli("keys", "generate", "--dir", str(keys), "--name", "k1", umask=umask)
    assert proc.returncode == 0, proc.stderr
    proc = cli("keys", "rotate", "--dir", str(keys), "--name", "k2", umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert not_private(tmp_path / "new") == {}, modes(tmp_path / "new")
    assert mode(keys / "private" / "k2.pem") == 0o600
    proc = cli("keys", "export", "--dir", str(keys), "--out", str(tmp_path / "pub" / "for-auditors") + "/",
               umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert modes(tmp_path / "pub") == {".": "0o755", "for-auditors": "0o755", "for-auditors/keyring.json": "0o644"}


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_a_pipeline_makes_private_state_spool_and_archive(tmp_path: Path, shared_keys: Path, umask: int) -> None:
    """Signing state (state.json, lock), the spool (segments, cursors, manifest, lock) and the archive with its
    rotated and gzipped backups are 0600 in 0700 folders, also across a restart."""
    rotation = ", rotation: {max_megabytes: 0.002, max_backups: 50}, compression: gzip"
    cfg = config(tmp_path, shared_keys, rotation=rotation)
    produce(cfg, umask=umask)
    produce(cfg, umask=umask)  # a restart rewrites state.json and adds segments
    archive = tmp_path / "archive"
    assert any(p.name.endswith(".jsonl.gz") for p in archive.iterdir()), sorted(os.listdir(archive))
    assert (tmp_path / "state" / "state.json").is_file() and (tmp_path / "spool" / "cursors" / "file.json").is_file()
    for d in ("state", "spool", "archive"):
        assert not_private(tmp_path / d) == {}, (d, modes(tmp_path / d))


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_the_demo_makes_private_files(tmp_path: Path, umask: int) -> None:
    """The demo's folder is 0700 with 0600 files; only the public keyring folder (keys/) is 0755 / 0644."""
    out = tmp_path / "demo"
    proc = cli("demo", "--out", str(out), umask=umask)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not_private(out, public_dirs=("keys",)) == {}, modes(out)
    assert mode(out / "signing-keys" / "hmac.key") == 0o600


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_verify_state_file_is_private(tmp_path: Path, umask: int) -> None:
    """`verify --state FILE` makes FILE and FILE.lock 0600; an existing state file keeps the auditor's mode."""
    demo = tmp_path / "demo"
    assert cli("demo", "--out", str(demo)).returncode == 0
    audits = tmp_path / "audits"
    audits.mkdir(mode=0o700)
    state = audits / "state.json"
    args = ("verify", "--keys", str(demo / "keys"), "--state", str(state), str(demo / "archive"))
    proc = cli(*args, umask=umask)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert modes(audits) == {".": "0o700", "state.json": "0o600", "state.json.lock": "0o600"}
    state.chmod(0o640)  # shared with the auditors' group on purpose
    assert cli(*args, umask=umask).returncode == 0
    assert mode(state) == 0o640


def test_state_json_written_0644_by_an_older_version_becomes_0600(tmp_path: Path, shared_keys: Path) -> None:
    """state.json is the product's own and rewritten at every checkpoint: a 0644 one left by an earlier version
    is 0600 after the next run (the folder the user made keeps its mode)."""
    cfg = config(tmp_path, shared_keys)
    produce(cfg)
    state = tmp_path / "state" / "state.json"
    state.chmod(0o644)
    produce(cfg)
    assert mode(state) == 0o600


# -- folders the user made ------------------------------------------------------------------------


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]


def test_existing_folders_keep_their_mode_and_check_config_names_them(tmp_path: Path) -> None:
    """Folders the user made with 0755 stay 0755 (nothing tightens them silently); what the product puts in them
    is private, and check-config names each folder with its mode and the chmod that fixes it; --strict fails."""
    keys, state, spool, archive = (tmp_path / n for n in ("keys", "state", "spool", "archive"))
    for d in (keys, state, spool, archive):
        d.mkdir()
        d.chmod(0o755)
    assert cli("keys", "generate", "--dir", str(keys), "--name", "k1").returncode == 0
    cfg = config(tmp_path, keys)
    produce(cfg)
    for d in (keys, state, spool, archive):
        assert mode(d) == 0o755, d
    assert mode(keys / "private") == 0o700 and mode(keys / "private" / "k1.pem") == 0o600
    assert mode(state / "state.json") == 0o600 and mode(archive / "audit.jsonl") == 0o600

    proc = cli("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    found = warnings_of(proc)
    for d, key in ((keys, "processors.signing.keys_dir"), (state, "processors.signing.state_dir"),
                   (spool, "processors.delivery.directory"), (archive, "exporters.file.path")):
        [line] = [w for w in found if f"folder {d} " in w]
        assert f"{cfg}: {key}: " in line and "(mode 0755)" in line, line
        assert line.endswith(f"fix: chmod 700 {d}"), line
    assert len(found) == 4, found
    strict = cli("check-config", "--strict", str(cfg))
    assert strict.returncode == 1 and "4 warning(s) and --strict" in strict.stderr, strict.stderr

    for line in found:  # the fix each warning names is the whole fix
        cmd = line.split("fix: ", 1)[1]
        assert subprocess.run(shlex.split(cmd), check=False).returncode == 0, cmd
    clean = cli("check-config", "--strict", str(cfg))
    assert (clean.returncode, warnings_of(clean)) == (0, []), clean.stderr


def test_check_config_names_loose_files(tmp_path: Path) -> None:
    """A private key, state.json, the spool's files and the archive that others can read are each named with their
    mode and `chmod 600`; a keyring.json others can change is named too, a readable one (public) is not."""
    keys = tmp_path / "keys"
    assert cli("keys", "generate", "--dir", str(keys), "--name", "k1").returncode == 0
    cfg = config(tmp_path, keys)
    produce(cfg)
    pem, state_json = keys / "private" / "k1.pem", tmp_path / "state" / "state.json"
    archive, cursor = tmp_path / "archive" / "audit.jsonl", tmp_path / "spool" / "cursors" / "file.json"
    for p in (pem, state_json, archive, cursor):
        p.chmod(0o640)
    (keys / "keyring.json").chmod(0o644)
    found = warnings_of(cli("check-config", str(cfg)))
    for p in (pem, state_json, archive, cursor):
        [line] = [w for w in found if f" {p} " in w]
        assert "can be read by its group (mode 0640)" in line and line.endswith(f"fix: chmod 600 {p}"), line
    assert len(found) == 4, found
    (keys / "keyring.json").chmod(0o666)
    [line] = [w for w in warnings_of(cli("check-config", str(cfg))) if "keyring.json" in w]
    assert "can be changed by its group and every user (mode 0666)" in line, line
    assert line.endswith(f"chmod 644 {keys / 'keyring.json'}"), line


def test_many_loose_files_in_one_folder_are_one_warning(tmp_path: Path, shared_keys: Path) -> None:
    """Spool segments left 0644 by an earlier version are counted in one warning with a find command that fixes them."""
    cfg = config(tmp_path, shared_keys)
    produce(cfg)
    segments = tmp_path / "spool" / "segments"
    for i in range(6):
        (segments / f"old-{i}").write_bytes(b"x")
        (segments / f"old-{i}").chmod(0o644)
    found = [w for w in warnings_of(cli("check-config", str(cfg))) if str(segments) in w]
    assert len(found) == 1, found
    assert re.search(rf"6 files in {re.escape(str(segments))} can be read or changed by other users \(e\.g\. old-0, "
                     r"mode 0644\)", found[0]), found[0]
    cmd = found[0].split("fix: ", 1)[1]
    assert subprocess.run(cmd, shell=True, check=False).returncode == 0  # noqa: S602 - the command we print
    assert all(mode(p) == 0o600 for p in segments.iterdir())


@pytest.mark.parametrize("target", ["keys", "private", "pem"])
def test_a_keys_folder_or_key_every_user_may_change_is_an_error(tmp_path: Path, target: str) -> None:
    """Anyone could put their own signing key in place: check-config (and so configure) refuses, naming the path,
    its mode and the fix; a group-writable keys folder is only a warning."""
    keys = tmp_path / "keys"
    assert cli("keys", "generate", "--dir", str(keys), "--name", "k1").returncode == 0
    cfg = config(tmp_path, keys)
    path = {"keys": keys, "private": keys / "private", "pem": keys / "private" / "k1.pem"}[target]
    path.chmod(0o777 if path.is_dir() else 0o606)
    proc = cli("check-config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    fix = "700" if path.is_dir() else "600"
    assert f"{cfg}: processors.signing.keys_dir: " in line and f"{path} can be changed by every user" in line, line
    assert line.endswith(f"fix: chmod {fix} {path}") and "Traceback" not in proc.stderr, line
    path.chmod(0o770 if path.is_dir() else 0o660)
    proc = cli("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert any(f" {path} can be read and changed by its group" in w for w in warnings_of(proc)), proc.stderr


def test_a_readable_hmac_key_file_is_named(tmp_path: Path) -> None:
    """The demo's config passes --strict as made; its `hmac_key: file:` made readable by others is named."""
    out = tmp_path / "demo"
    assert cli("demo", "--out", str(out)).returncode == 0
    cfg = out / "audit.yaml"
    proc = cli("check-config", "--strict", str(cfg))
    assert (proc.returncode, warnings_of(proc)) == (0, []), proc.stderr
    key = out / "signing-keys" / "hmac.key"
    key.chmod(0o644)
    [line] = warnings_of(cli("check-config", str(cfg)))
    assert line.startswith(f"warning: {cfg}: processors.redaction.hmac_key: {key} can be read by its group and every "
                           "user (mode 0644)") and line.endswith(f"fix: chmod 600 {key}"), line
    assert "hex:" not in line  # the key's value is never in a message
