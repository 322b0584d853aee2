"""Keys: generating, loading, rotating and exporting keyrings; signer selection; validity."""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

import orjson
import pytest

from otel_audit import keys
from otel_audit.errors import KeyringError
from otel_audit.keys import InvalidSignature, Keyring, PublicKey, Signer, check_name

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def test_generate_writes_keyring_and_private_key(tmp_path: Path) -> None:
    """generate() writes keyring.json and private/<name>.pem (0600, folder 0700) and returns the public key."""
    before = time.time_ns()
    pub = keys.generate(tmp_path / "k", "alpha")
    assert pub.name == "alpha" and len(pub.public_key) == 32
    assert pub.not_before is not None and before <= pub.not_before <= time.time_ns()
    pem = tmp_path / "k" / "private" / "alpha.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(pem.parent.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in pem.read_bytes()
    ring = Keyring.load(tmp_path / "k" / "keyring.json")
    assert [(k.name, k.public_key) for k in ring] == [("alpha", pub.public_key)]


def test_generate_default_name(tmp_path: Path) -> None:
    """Without a name the key is named <prefix>-<UTC time>."""
    pub = keys.generate(tmp_path, prefix="gw")
    assert pub.name.startswith("gw-") and pub.name.endswith("Z")


def test_generate_refuses_an_existing_name(tmp_path: Path) -> None:
    """A second key of the same name raises KeyringError naming the key."""
    keys.generate(tmp_path, "alpha")
    with pytest.raises(KeyringError, match="alpha"):
        keys.generate(tmp_path, "alpha")


@pytest.mark.parametrize("name", ["", "a b", "a+b", "-x", ".x", "x" * 129, "caf\u00e9", "a\nb", "ab\n", None])
def test_bad_key_names(name: object) -> None:
    """Names with spaces, '+', a leading punctuation mark, non-ASCII, a newline (also a trailing one, which a
    signed note's signature line cannot hold) or over 128 chars raise KeyringError."""
    with pytest.raises(KeyringError):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "gw-2024", "log.example.com:v1", "A_b", "x" * 128])
def test_good_key_names(name: str) -> None:
    """Letters, digits, '.', '_', ':' and '-' up to 128 characters are valid names."""
    assert check_name(name) == name


def test_keyring_json_round_trip(tmp_path: Path) -> None:
    """A keyring written by to_json loads back with the same keys, ids and validity (to the microsecond)."""
    a = Signer.generate("a").public(not_before=1_700_000_000_123_456_000, not_after=1_800_000_000_000_001_000)
    b = Signer.generate("b").public()
    (tmp_path / "keyring.json").write_bytes(Keyring([a, b]).to_json())
    doc = orjson.loads((tmp_path / "keyring.json").read_bytes())
    assert doc["format"] == keys.FORMAT
    entry = next(e for e in doc["keys"] if e["name"] == "a")
    assert entry["not_before"] == "2023-11-14T22:13:20.123456Z"
    assert entry["key_id"] == a.key_id.hex() and entry["vkey"].startswith(f"a+{a.key_id.hex()}+")
    ring = Keyring.load(tmp_path)
    assert ring.lookup("a", a.key_id) == a
    assert ring.lookup("b", b.key_id) == b
    assert ring.lookup("a", b.key_id) is None


def test_vkey_file_loads(tmp_path: Path) -> None:
    """A .vkey file of Go note verifier keys loads; the key id is checked."""
    (tmp_path / "peter.vkey").write_text(GO_VKEY + "\n\n")
    ring = Keyring.load(tmp_path / "peter.vkey")
    (k,) = list(ring)
    assert k.name == "PeterNeumann" and k.key_id.hex() == "c74f20a3"
    assert k.not_before is None and k.valid_at(0)


def test_vkey_whose_base64_contains_a_plus(tmp_path: Path) -> None:
    """A verifier key whose base64 holds a '+' loads (the transparency-dev/formats test key TEST+7997405c).

    Regression: keys._parse_vkey once split on every '+' instead of the first two.
    """
    (tmp_path / "plus.vkey").write_text("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6\n")
    (k,) = list(Keyring.load(tmp_path / "plus.vkey"))
    assert (k.name, k.key_id.hex()) == ("TEST", "7997405c")


@pytest.mark.parametrize(
    "line",
    ["PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
     "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type byte
     "PeterNeumann+c74f20a3",
     "PeterNeumann+c74f20a3+!!!"],
)
def test_bad_vkey_lines(tmp_path: Path, line: str) -> None:
    """A malformed verifier key raises KeyringError naming the file and line."""
    f = tmp_path / "bad.vkey"
    f.write_text(line + "\n")
    with pytest.raises(KeyringError, match="bad.vkey:1"):
        Keyring.load(f)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"format": "other", "keys": []}', "not an otel-audit keyring"),
        (b'{"format": "otel-audit-keyring/v1", "keys": [1]}', "expected an object"),
        (b'{"format": "otel-audit-keyring/v1", "keys": [{"name": "a", "public_key": "AAAA"}]}', "32 bytes"),
        (b'{"format": "otel-audit-keyring/v1", "keys": [{"name": "a b", "public_key": ""}]}', "name"),
        (b'{"format": "otel-audit-keyring/v1", "keys": [{"name": "a", "algorithm": "rsa"}]}', "ed25519"),
        (b'{"format": "otel-audit-keyring/v1", "keys": [{"name": "a", "public_key": "%%%"}]}', "base64"),
        (b'{"format": "otel-audit-keyring/v1", "keys": []}', "holds no keys"),
    ],
)
def test_bad_keyring_files(tmp_path: Path, content: bytes, message: str) -> None:
    """A malformed keyring raises KeyringError that names the file and what is wrong."""
    f = tmp_path / "keyring.json"
    f.write_bytes(content)
    with pytest.raises(KeyringError, match=message) as info:
        Keyring.load(f)
    assert "keyring.json" in str(info.value)


def test_keyring_entry_checks(tmp_path: Path) -> None:
    """A key_id that does not match, or a time that is not RFC 3339, raises KeyringError."""
    pub = base64.b64encode(bytes(32)).decode()
    f = tmp_path / "keyring.json"
    for extra, message in (({"key_id": "00000000"}, "key_id"), ({"not_before": "soon"}, "not_before"),
                           ({"not_after": 5}, "not_after")):
        f.write_bytes(orjson.dumps({"format": keys.FORMAT, "keys": [{"name": "a", "public_key": pub, **extra}]}))
        with pytest.raises(KeyringError, match=message):
            Keyring.load(f)


def test_missing_or_empty_keyring_paths(tmp_path: Path) -> None:
    """A path that does not exist, or a folder without keyrings, raises KeyringError saying what to pass."""
    with pytest.raises(KeyringError, match="--keys"):
        Keyring.load(tmp_path / "nope")
    with pytest.raises(KeyringError, match="keys export"):
        Keyring.load(tmp_path)


def test_validity_window() -> None:
    """valid_at is inclusive at not_before and not_after and false outside."""
    k = PublicKey("a", bytes(32), not_before=100, not_after=200)
    assert [k.valid_at(t) for t in (99, 100, 150, 200, 201)] == [False, True, True, True, False]
    assert PublicKey("a", bytes(32)).valid_at(0)


def test_sign_and_verify() -> None:
    """A signature verifies under the signer's public key; a changed message raises InvalidSignature."""
    s = Signer.generate("a")
    sig = s.sign(b"msg")
    assert sig.name == "a" and sig.key_id == s.key_id and len(sig.signature) == 64
    s.public().verify(sig.signature, b"msg")
    with pytest.raises(InvalidSignature):
        s.public().verify(sig.signature, b"msh")
    with pytest.raises(InvalidSignature):
        Signer.generate("a").public().verify(sig.signature, b"msg")


def test_signer_from_keys_dir(tmp_path: Path) -> None:
    """from_keys_dir loads the named key, or the newest valid key that has a private file."""
    a = keys.generate(tmp_path, "a")
    assert Signer.from_keys_dir(tmp_path).public_key == a.public_key
    b = keys.generate(tmp_path, "b")
    assert Signer.from_keys_dir(tmp_path).name == "b"
    assert Signer.from_keys_dir(tmp_path, "a").public_key == a.public_key
    (tmp_path / "private" / "b.pem").unlink()
    assert Signer.from_keys_dir(tmp_path).name == "a"
    assert b.name == "b"
    with pytest.raises(KeyringError, match="no key named"):
        Signer.from_keys_dir(tmp_path, "zzz")
    with pytest.raises(KeyringError, match="keys generate"):
        Signer.from_keys_dir(tmp_path / "empty")


def test_signer_refuses_a_private_key_that_does_not_match(tmp_path: Path) -> None:
    """A private key file that does not belong to its keyring entry raises KeyringError."""
    keys.generate(tmp_path, "a")
    keys.generate(tmp_path / "other", "a")
    (tmp_path / "private" / "a.pem").unlink()
    (tmp_path / "private" / "a.pem").write_bytes((tmp_path / "other" / "private" / "a.pem").read_bytes())
    with pytest.raises(KeyringError, match="does not match"):
        Signer.from_keys_dir(tmp_path)


def test_signer_when_all_keys_expired(tmp_path: Path) -> None:
    """When no key is valid now, from_keys_dir raises KeyringError pointing at 'keys rotate'."""
    keys.generate(tmp_path, "a")
    keys.rotate(tmp_path, "b", grace_s=0)
    (tmp_path / "private" / "b.pem").unlink()
    time.sleep(0.01)
    with pytest.raises(KeyringError, match="keys rotate"):
        Signer.from_keys_dir(tmp_path)


def test_rotate_adds_a_key_and_ends_the_old_ones(tmp_path: Path) -> None:
    """rotate() adds a new key and sets not_after of the old keys to the new key's start plus the grace."""
    old = keys.generate(tmp_path, "old")
    new = keys.rotate(tmp_path, "new", grace_s=60)
    ring = Keyring.load(tmp_path)
    o = ring.lookup("old", old.key_id)
    n = ring.lookup("new", new.key_id)
    assert o is not None and n is not None
    assert o.not_after is not None and abs(o.not_after - (new.not_before + 60 * 10**9)) < 2000  # type: ignore[operator]
    assert n.not_after is None
    assert Signer.from_keys_dir(tmp_path).name == "new"


def test_rotate_needs_a_keyring(tmp_path: Path) -> None:
    """rotate() on a folder without a keyring raises KeyringError pointing at 'keys generate'."""
    with pytest.raises(KeyringError, match="keys generate"):
        keys.rotate(tmp_path)


def test_rotate_keeps_an_earlier_end(tmp_path: Path) -> None:
    """A key that already ends before the new grace period keeps its earlier end."""
    keys.generate(tmp_path, "a")
    keys.rotate(tmp_path, "b", grace_s=10)
    first = {k.name: k.not_after for k in Keyring.load(tmp_path)}
    keys.rotate(tmp_path, "c", grace_s=3600)
    second = {k.name: k.not_after for k in Keyring.load(tmp_path)}
    assert second["a"] == first["a"]
    assert second["b"] is not None and second["b"] > first["a"]  # type: ignore[operator]


def test_export_writes_public_keys_only(tmp_path: Path) -> None:
    """export() writes keyring.json alone to a folder or file, loadable, with no private material."""
    keys.generate(tmp_path / "k", "a")
    out = keys.export(tmp_path / "k", str(tmp_path / "pub") + os.sep)
    assert out == tmp_path / "pub" / "keyring.json"
    assert sorted(p.name for p in (tmp_path / "pub").iterdir()) == ["keyring.json"]
    assert b"PRIVATE" not in out.read_bytes()
    assert len(Keyring.load(tmp_path / "pub")) == 1
    f = keys.export(tmp_path / "k", tmp_path / "ring-for-auditors.json")
    assert len(Keyring.load(f)) == 1


def test_password_protected_private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_AUDIT_KEY_PASSWORD the key is encrypted; loading without it fails without quoting secrets."""
    monkeypatch.setenv("OTEL_AUDIT_KEY_PASSWORD", "s3cret-pass")
    keys.generate(tmp_path, "a")
    assert b"ENCRYPTED" in (tmp_path / "private" / "a.pem").read_bytes()
    assert Signer.from_keys_dir(tmp_path).name == "a"
    monkeypatch.setenv("OTEL_AUDIT_KEY_PASSWORD", "Xyzzy-not-it")
    with pytest.raises(KeyringError) as info:
        Signer.from_keys_dir(tmp_path)
    assert "s3cret" not in str(info.value) and "Xyzzy" not in str(info.value)


def test_signer_repr_hides_the_key() -> None:
    """repr(Signer) names the key and its id, never private material."""
    s = Signer.generate("a")
    assert repr(s) == f"Signer(name='a', key_id={s.key_id.hex()})"
