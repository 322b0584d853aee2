"""Hostile keys folders and a filling disk, through the real command line in child processes.

A named pipe (or any non-regular file) where a keyring, private key or state file is expected is refused at
once (exit 2, naming the path) instead of blocking forever; every keys write is whole or not at all (a full
disk, simulated with RLIMIT_FSIZE in the child, leaves the old files as they were and no stray temporary or
empty private key file); inputs such as --grace are checked before anything is written; keyring files are
read strictly (a member given twice, a vkey contradicting its entry, a window that ends before it starts,
a file of many MiB are errors).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Archive, child_env

TIMEOUT = 60  # a hang (the bug) fails the test by TimeoutExpired instead of blocking the suite


def run_cli(*args: str, fsize: int | None = None, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`python -m otel_audit.cli ARGS`; with `fsize`, no file of the child may grow past that many bytes (a full
    disk: writes beyond it fail with EFBIG, SIGXFSZ ignored)."""
    pre: Callable[[], None] | None = None
    if fsize is not None:
        def pre() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=child_env(), check=False, preexec_fn=pre, pass_fds=pass_fds)


def assert_exit_2(proc: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in proc.stderr, (part, proc.stderr)
    return proc.stderr


def listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def make_keys(d: Path, *names: str) -> Path:
    assert run_cli("keys", "generate", "--dir", str(d), "--name", names[0]).returncode == 0
    for n in names[1:]:
        assert run_cli("keys", "rotate", "--dir", str(d), "--name", n, "--grace", "1h").returncode == 0
    return d


@pytest.fixture
def auditor_keys(tmp_path: Path, shared_keys: Path) -> Path:
    """An auditor's keys folder: the shared keyring.json alone (it verifies the `archive` fixture)."""
    d = tmp_path / "auditor"
    d.mkdir()
    shutil.copyfile(shared_keys / "keyring.json", d / "keyring.json")
    return d


# -- 1. never open anything but regular files ---------------------------------------------------------------


@pytest.mark.parametrize("fifo_name", ["extra.vkey", "x.json", "keyring.json"])
def test_fifo_in_keys_folder_exits_2_naming_it(auditor_keys: Path, archive: Archive, fifo_name: str) -> None:
    """A named pipe among a keys folder's files makes verify and keys list exit 2 naming it, not hang."""
    fifo = auditor_keys / fifo_name
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    assert_exit_2(run_cli("verify", "--keys", str(auditor_keys), str(archive.path)), str(fifo), "named pipe")
    assert_exit_2(run_cli("keys", "list", "--dir", str(auditor_keys)), str(fifo), "named pipe")


def test_fifo_or_shell_pipe_as_keys_exits_2(auditor_keys: Path, archive: Archive, tmp_path: Path) -> None:
    """--keys naming a FIFO, or a shell pipe <(cat keyring.json) (/dev/fd/N), says it is a pipe (not 'Not a
    directory') and asks for a file."""
    fifo = tmp_path / "ring.json"
    os.mkfifo(fifo)
    assert_exit_2(run_cli("verify", "--keys", str(fifo), str(archive.path)), str(fifo), "pipe", "regular file")
    r, w = os.pipe()
    try:
        os.write(w, (auditor_keys / "keyring.json").read_bytes()[:4096])
        err = assert_exit_2(run_cli("verify", "--keys", f"/dev/fd/{r}", str(archive.path), pass_fds=(r,)),
                            f"/dev/fd/{r}", "pipe", "regular file")
        assert "Not a directory" not in err
    finally:
        os.close(r)
        os.close(w)


def test_fifo_state_file_exits_2(auditor_keys: Path, archive: Archive, tmp_path: Path) -> None:
    """verify --state naming a FIFO exits 2 naming it, not hang; the pipe is left in place."""
    state = tmp_path / "s.json"
    os.mkfifo(state)
    assert_exit_2(run_cli("verify", "--keys", str(auditor_keys), "--state", str(state), str(archive.path)),
                  str(state), "named pipe", "not a state file")
    assert state.is_fifo()


def test_fifo_private_key_refused(tmp_path: Path) -> None:
    """A named pipe in place of private/<name>.pem is refused by name when a producer loads its signer."""
    from otel_audit import keys
    from otel_audit.errors import KeyringError

    d = make_keys(tmp_path / "k", "k1")
    pem = d / "private" / "k1.pem"
    pem.unlink()
    os.mkfifo(pem)
    with pytest.raises(KeyringError, match="named pipe") as exc:
        keys.Signer.from_keys_dir(d, "k1")
    assert str(pem) in str(exc.value)


# -- 2. writes are whole or not at all ----------------------------------------------------------------------


def test_export_over_existing_on_full_disk_keeps_the_old_keyring(tmp_path: Path) -> None:
    """keys export --out EXISTING where the new keyring does not fit: exit 2 naming the path, the old file
    byte for byte intact, no temporary file left."""
    d = make_keys(tmp_path / "keys", "k0")
    out = tmp_path / "auditor.json"
    assert run_cli("keys", "export", "--dir", str(d), "--out", str(out)).returncode == 0
    before = out.read_bytes()
    for i in range(1, 8):
        assert run_cli("keys", "rotate", "--dir", str(d), "--name", f"k{i}", "--grace", "1h").returncode == 0
    assert (d / "keyring.json").stat().st_size > 2 * len(before)
    proc = run_cli("keys", "export", "--dir", str(d), "--out", str(out), fsize=len(before) + 100)
    assert_exit_2(proc, str(out), "File too large", "left as it was")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auditor.json", "keys"]
    # with room, the export replaces it whole and it verifies what the new keyring does
    assert run_cli("keys", "export", "--dir", str(d), "--out", str(out)).returncode == 0
    assert out.read_bytes() == (d / "keyring.json").read_bytes()


def test_export_refuses_to_write_into_a_fifo(tmp_path: Path) -> None:
    d = make_keys(tmp_path / "keys", "k0")
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    assert_exit_2(run_cli("keys", "export", "--dir", str(d), "--out", str(fifo)), str(fifo), "named pipe")
    assert fifo.is_fifo()


@pytest.mark.parametrize("fsize", [40, 300])  # 40: the private key fails; 300: the key fits, the keyring not
def test_failed_generate_leaves_nothing_and_the_name_free(tmp_path: Path, fsize: int) -> None:
    """keys generate on a full disk: exit 2 naming the file that failed, no (empty) private key, no keyring,
    no temporary file; the same name then generates fine."""
    d = tmp_path / "keys"
    proc = run_cli("keys", "generate", "--dir", str(d), "--name", "k1", fsize=fsize)
    failed = d / ("private/k1.pem" if fsize < 100 else "keyring.json")
    assert_exit_2(proc, str(failed), "File too large")
    assert listing(d) == {}
    assert run_cli("keys", "generate", "--dir", str(d), "--name", "k1").returncode == 0
    assert sorted(listing(d)) == ["keyring.json", "private/k1.pem"]


def test_failed_rotate_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """keys rotate on a full disk: the keyring and private keys unchanged, no new private key, no
    keyring.json.tmp; the old key stays open-ended."""
    d = make_keys(tmp_path / "keys", "k1")
    before = listing(d)
    proc = run_cli("keys", "rotate", "--dir", str(d), "--name", "k2", fsize=len(before["keyring.json"]) + 50)
    assert_exit_2(proc, str(d / "keyring.json"), "File too large")
    assert listing(d) == before
    assert sorted(p.name for p in d.iterdir()) == ["keyring.json", "private"]
    assert run_cli("keys", "rotate", "--dir", str(d), "--name", "k2").returncode == 0


def test_empty_private_key_left_by_an_old_failure_is_explained(tmp_path: Path) -> None:
    d = make_keys(tmp_path / "keys", "k1")
    (d / "private" / "k2.pem").write_bytes(b"")
    assert_exit_2(run_cli("keys", "rotate", "--dir", str(d), "--name", "k2"),
                  str(d / "private" / "k2.pem"), "empty", "failed earlier write")


# -- 3. inputs checked before writing -----------------------------------------------------------------------


@pytest.mark.parametrize("grace", ["100000000h", "-1h", "nan", "1e300"])
def test_rotate_bad_grace_writes_nothing(tmp_path: Path, grace: str) -> None:
    """An absurd --grace is exit 2 with a clear message, and the folder is unchanged (no new key, old one
    still the only current key)."""
    d = make_keys(tmp_path / "keys", "k1")
    before = listing(d)
    err = assert_exit_2(run_cli("keys", "rotate", "--dir", str(d), "--name", "k2", f"--grace={grace}"), "--grace")
    assert "out of range" not in err
    assert listing(d) == before


def test_rotate_longest_grace_works(tmp_path: Path) -> None:
    d = make_keys(tmp_path / "keys", "k1")
    assert run_cli("keys", "rotate", "--dir", str(d), "--name", "k2", "--grace", "876000h").returncode == 0
    proc = run_cli("keys", "list", "--dir", str(d))
    assert proc.returncode == 0 and "21" in proc.stdout.split("k1")[1].split("\n")[0], proc.stdout


def test_invalid_name_creates_no_folder(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    assert_exit_2(run_cli("keys", "generate", "--dir", str(d), "--name", "bad name"), "not allowed")
    assert not d.exists()


# -- 4. strict keyring files --------------------------------------------------------------------------------


def _ring(d: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    f = d / "keyring.json"
    return f, json.loads(f.read_bytes())


def test_duplicate_keys_member_refused(tmp_path: Path) -> None:
    """{"format": ..., "keys": [A], "keys": [B]}: ambiguous (last wins in some readers): exit 2."""
    d = make_keys(tmp_path / "a", "k1")
    f, doc = _ring(d)
    entry = json.dumps(doc["keys"])
    f.write_text(f'{{"format": "{doc["format"]}", "keys": [], "keys": {entry}}}')
    assert_exit_2(run_cli("keys", "list", "--dir", str(f)), str(f), "duplicate-member", "keys")


def test_vkey_contradicting_entry_refused(tmp_path: Path) -> None:
    d = make_keys(tmp_path / "a", "k1")
    other = make_keys(tmp_path / "b", "k1")
    f, doc = _ring(d)
    doc["keys"][0]["vkey"] = _ring(other)[1]["keys"][0]["vkey"]
    f.write_text(json.dumps(doc))
    assert_exit_2(run_cli("keys", "list", "--dir", str(f)), str(f), "keys[0].vkey", "does not match")


def test_window_ending_before_it_starts_refused(tmp_path: Path) -> None:
    d = make_keys(tmp_path / "a", "k1")
    f, doc = _ring(d)
    doc["keys"][0]["not_before"] = "2026-01-02T00:00:00Z"
    doc["keys"][0]["not_after"] = "2026-01-01T00:00:00Z"
    f.write_text(json.dumps(doc))
    assert_exit_2(run_cli("keys", "list", "--dir", str(f)), str(f), "keys[0]", "before not_before")


def test_oversized_keyring_file_refused(auditor_keys: Path, archive: Archive) -> None:
    """A 100 MiB junk .json in a keys folder is refused by its size, before it is read."""
    junk = auditor_keys / "junk.json"
    with junk.open("wb") as fh:
        fh.truncate(100 * 2**20)  # sparse: costs no disk
    err = assert_exit_2(run_cli("verify", "--keys", str(auditor_keys), str(archive.path)), str(junk), "too large")
    assert "16 MiB" in err
    junk.unlink()
    assert run_cli("verify", "--keys", str(auditor_keys), str(archive.path)).returncode == 0
