"""Ed25519 signing keys and the public keyring a verifier needs.

A keys directory holds

    keyring.json          public keys with their validity: give this file (or the folder without
                          private/) to auditors; `otel-audit keys export` writes it alone
    private/<name>.pem    PKCS#8 private keys, mode 0600, never leave the producer

Rotation adds a new key and ends the validity of the old one after a grace period; old public
keys stay in the keyring so that old checkpoints keep verifying.

A keyring only grows in meaning: loading several files (a folder of keyring.json, *.json and
*.vkey) can never widen a key's validity. A key (name, key id) given twice must be given the
same (public key and window), else loading fails naming both places; a `.vkey` line, which has
no window, takes the window a JSON entry gives the same key. The same holds for one Ed25519 public
key under several names: every entry of it must give the same window (else loading fails naming
both), and a `.vkey` line of a public key a JSON entry gives under another name takes that entry's
window. Two different public keys under one name are two keys (two producers may each name theirs
`gw`); the verifier names every key with its id and warns where a stream's signer shares its name.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from otel_audit.errors import KeyringError
from otel_audit.note import Signature, SignedNote, key_id, vkey

KEYRING_FILE = "keyring.json"
PRIVATE_DIR = "private"
FORMAT = "otel-audit-keyring/v1"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise KeyringError(
            f"key name {name!r} is not allowed: use 1-128 letters, digits, '.', '_', ':' or '-' "
            "(no spaces or '+', as signed notes require)"
        )
    return name


def _ts(ns: int | None) -> str | None:
    if ns is None:
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(value: object, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyringError(f"{where}: expected an RFC 3339 time string or null, got {type(value).__name__}")
    try:
        dt = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise KeyringError(f"{where}: {value!r} is not an RFC 3339 time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return int(dt.timestamp() * 1_000_000) * 1000


@dataclass(frozen=True)
class PublicKey:
    """One entry of the keyring: a name, its Ed25519 key and the times it may sign in."""

    name: str
    public_key: bytes
    not_before: int | None = None  # unix ns
    not_after: int | None = None  # unix ns

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def valid_at(self, time_ns: int) -> bool:
        if self.not_before is not None and time_ns < self.not_before:
            return False
        return not (self.not_after is not None and time_ns > self.not_after)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raises cryptography's InvalidSignature when the signature does not match."""
        Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)

    def to_json(self) -> dict[str, object]:
        import base64

        return {
            "name": self.name,
            "key_id": self.key_id.hex(),
            "algorithm": "ed25519",
            "public_key": base64.b64encode(self.public_key).decode(),
            "vkey": vkey(self.name, self.public_key),
            "not_before": _ts(self.not_before),
            "not_after": _ts(self.not_after),
        }


@dataclass(frozen=True)
class NoteCheck:
    """What the keyring says of a signed note's signatures.

    status: "ok" (a signature by a known key valid at the note's time verifies, and no signature by
    a known key fails), "bad" (a signature by a known key does not verify: always a failure, however
    many others verify), "expired" (only keys outside their validity signed it), "unknown" (no key of
    the keyring signed it).
    """

    status: str
    good: tuple[PublicKey, ...] = ()
    expired: tuple[PublicKey, ...] = ()
    bad: tuple[PublicKey, ...] = ()
    unknown: tuple[Signature, ...] = ()


def describe(key: PublicKey) -> str:
    """A key as messages name it: `name (id 1a2b3c4d, valid <from> .. <to>)`."""
    return (f"{key.name} (id {key.key_id.hex()}, valid {_ts(key.not_before) or '-'} .. "
            f"{_ts(key.not_after) or 'open'})")


class Keyring:
    """Public keys by (name, key id); what `otel-audit verify --keys` loads.

    Append-only in meaning: a second entry for a key already held must be the same entry
    (`add` raises KeyringError otherwise), so that no file can widen a key's validity.
    """

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        self._keys: dict[tuple[str, bytes], PublicKey] = {}
        self._where: dict[tuple[str, bytes], str] = {}
        # public key -> the first entry that gave it: one Ed25519 key under several names must have one window,
        # else a retired key's holder could sign under a fresh name with a wider window
        self._by_public: dict[bytes, PublicKey] = {}
        for k in keys:
            self.add(k)

    def add(self, key: PublicKey, where: str = "") -> None:
        ident = (key.name, key.key_id)
        held = self._keys.get(ident)
        if held is None:
            other = self._by_public.get(key.public_key)
            if other is not None and (other.not_before, other.not_after) != (key.not_before, key.not_after):
                first = self._where.get((other.name, other.key_id)) or "an earlier entry"
                raise KeyringError(
                    f"conflicting keyring entries for one public key: {first} gives it as {describe(other)}, "
                    f"{where or 'a later entry'} as {describe(key)}; the same Ed25519 key under another name "
                    "with another window would widen its validity (a retired key signing again under a new "
                    "name): remove the entry that was not exported by the key's producer"
                )
            self._keys[ident] = key
            self._where[ident] = where
            self._by_public.setdefault(key.public_key, key)
            return
        if held == key:
            return
        first = self._where.get(ident) or "an earlier entry"
        what = ("two different public keys" if held.public_key != key.public_key
                else "different validity windows")
        raise KeyringError(
            f"conflicting keyring entries for key {key.name} (id {key.key_id.hex()}): {first} and "
            f"{where or 'a later entry'} give it {what} ({_window(held)} vs {_window(key)}); a keyring may "
            "only grow, no file may change or widen a key's validity: keep one copy of each key (the newest "
            "export of the producer's keyring)"
        )

    def lookup(self, name: str, kid: bytes) -> PublicKey | None:
        return self._keys.get((name, kid))

    def by_public(self, public_key: bytes) -> PublicKey | None:
        """The first entry that gave this Ed25519 public key (under any name)."""
        return self._by_public.get(public_key)

    def same_name(self, name: str) -> list[PublicKey]:
        """Every key of the keyring named `name`: more than one is two different public keys under one name,
        which messages must tell apart by key id (and the report warns of)."""
        return [k for (n, _), k in self._keys.items() if n == name]

    def where(self, key: PublicKey) -> str:
        """The file (and entry) the key was loaded from, or "" when it was added in memory."""
        return self._where.get((key.name, key.key_id), "")

    def check_note(self, sn: SignedNote) -> NoteCheck:
        """Check every signature of a signed note against the keyring (see NoteCheck)."""
        msg = sn.text.encode("utf-8")
        t = sn.checkpoint.time_ns
        good: list[PublicKey] = []
        expired: list[PublicKey] = []
        bad: list[PublicKey] = []
        unknown: list[Signature] = []
        for s in sn.signatures:
            key = self.lookup(s.name, s.key_id)
            if key is None:
                unknown.append(s)
                continue
            try:
                key.verify(s.signature, msg)
            except InvalidSignature:
                bad.append(key)
                continue
            (good if key.valid_at(t) else expired).append(key)
        status = "bad" if bad else "ok" if good else "expired" if expired else "unknown"
        return NoteCheck(status, tuple(good), tuple(expired), tuple(bad), tuple(unknown))

    def current(self, now_ns: int | None = None) -> list[PublicKey]:
        """The keys valid now."""
        now = time.time_ns() if now_ns is None else now_ns
        return [k for k in self._keys.values() if k.valid_at(now)]

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def to_json(self) -> bytes:
        keys = sorted(self._keys.values(), key=lambda k: (k.not_before or 0, k.name))
        return orjson.dumps({"format": FORMAT, "keys": [k.to_json() for k in keys]}, option=orjson.OPT_INDENT_2)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Load a keyring file, or every keyring.json / *.json / *.vkey under a folder.

        JSON entries are taken first, then `.vkey` lines: a verifier key without a window for a key a
        JSON entry gives takes that entry's window; two entries for one key that differ raise
        KeyringError naming both files and the key.
        """
        p = Path(path)
        if not p.exists():
            raise KeyringError(f"{p}: no such keyring file or folder; pass --keys <folder or keyring.json>")
        files = [p] if p.is_file() else sorted(x for x in p.iterdir() if x.suffix in (".json", ".vkey"))
        if not files:
            raise KeyringError(f"{p}: folder holds no keyring.json; run 'otel-audit keys export' on the producer")
        ring = cls()
        windowless: list[tuple[PublicKey, str]] = []
        for f in files:
            for key, where in _read_keyring_file(f):
                if f.suffix == ".vkey":
                    windowless.append((key, where))
                else:
                    ring.add(key, where)
        for key, where in windowless:
            held = ring.lookup(key.name, key.key_id)
            if held is not None and held.public_key == key.public_key:
                continue  # the same key: the window a keyring gives it stands
            other = ring.by_public(key.public_key)
            if other is not None:  # the same public key under another name: it takes that entry's window
                key = PublicKey(key.name, key.public_key, other.not_before, other.not_after)
            ring.add(key, where)
        if not ring:
            raise KeyringError(f"{p}: the keyring holds no keys")
        return ring


def _window(key: PublicKey) -> str:
    return f"key {key.public_key.hex()[:16]}..., valid {_ts(key.not_before) or '-'} .. {_ts(key.not_after) or 'open'}"


def _read_keyring_file(f: Path) -> list[tuple[PublicKey, str]]:
    import base64

    try:
        raw = f.read_bytes()
    except OSError as exc:
        raise KeyringError(f"{f}: cannot read keyring: {exc.strerror}") from exc
    if f.suffix == ".vkey":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyringError(f"{f}: not a text file of verifier keys (not UTF-8)") from None
        return [(_parse_vkey(line.strip(), f"{f}:{n}"), f"{f}:{n}")
                for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeyringError(f"{f}: not valid JSON ({exc}); expected an otel-audit keyring") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("keys"), list):
        raise KeyringError(f"{f}: not an otel-audit keyring (expected {{\"format\": \"{FORMAT}\", \"keys\": [...]}})")
    out: list[tuple[PublicKey, str]] = []
    for i, entry in enumerate(doc["keys"]):
        where = f"{f}: keys[{i}]"
        if not isinstance(entry, dict):
            raise KeyringError(f"{where}: expected an object")
        if entry.get("algorithm", "ed25519") != "ed25519":
            raise KeyringError(f"{where}.algorithm: only ed25519 is supported")
        name = entry.get("name")
        try:
            check_name(name)  # type: ignore[arg-type]
        except KeyringError as exc:
            raise KeyringError(f"{where}.name: {exc}") from None
        try:
            pub = base64.b64decode(entry.get("public_key", ""), validate=True)
        except (ValueError, TypeError) as exc:
            raise KeyringError(f"{where}.public_key: not base64") from exc
        if len(pub) != 32:
            raise KeyringError(f"{where}.public_key: an Ed25519 key is 32 bytes, got {len(pub)}")
        key = PublicKey(name, pub, _parse_ts(entry.get("not_before"), f"{where}.not_before"),
                        _parse_ts(entry.get("not_after"), f"{where}.not_after"))
        if "key_id" in entry and entry["key_id"] != key.key_id.hex():
            raise KeyringError(f"{where}.key_id: does not match the name and public key")
        out.append((key, where))
    return out


def _parse_vkey(line: str, where: str) -> PublicKey:
    import base64

    parts = line.split("+", 2)  # the base64 key data may itself hold '+'
    if len(parts) != 3:
        raise KeyringError(f"{where}: a verifier key is '<name>+<hex id>+<base64 key>'")
    name, hid, b64 = parts
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError as exc:
        raise KeyringError(f"{where}: key data is not base64") from exc
    if len(raw) != 33 or raw[0] != 0x01:
        raise KeyringError(f"{where}: only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
    key = PublicKey(check_name(name), raw[1:])
    if key.key_id.hex() != hid.lower():
        raise KeyringError(f"{where}: key id does not match the name and key")
    return key


class Signer:
    """An Ed25519 private key with its signed-note name; signs checkpoint bodies."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = check_name(name)
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(name, self.public_key)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()})"

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> Signature:
        return Signature(self.name, self.key_id, self._key.sign(message))

    def public(self, not_before: int | None = None, not_after: int | None = None) -> PublicKey:
        return PublicKey(self.name, self.public_key, not_before, not_after)

    @classmethod
    def from_keys_dir(cls, keys_dir: str | os.PathLike[str], name: str | None = None) -> Signer:
        """The named key, or else the newest key in the keyring that is valid now and has a private file."""
        d = Path(keys_dir)
        ring_file = d / KEYRING_FILE
        if not ring_file.is_file():
            raise KeyringError(f"{d}: no {KEYRING_FILE}; create keys with 'otel-audit keys generate --dir {d}'")
        ring = Keyring.load(ring_file)
        now = time.time_ns()
        candidates = [k for k in ring if (name is None or k.name == name)]
        if name is not None and not candidates:
            raise KeyringError(f"{ring_file}: no key named {name!r}")
        if name is None:
            candidates = [k for k in candidates if k.valid_at(now) and (d / PRIVATE_DIR / f"{k.name}.pem").is_file()]
        if not candidates:
            raise KeyringError(
                f"{d}: no signing key is valid now; run 'otel-audit keys rotate --dir {d}' to make a new one"
            )
        best = max(candidates, key=lambda k: (k.not_before or 0, k.name))
        signer = cls(best.name, _load_private(d / PRIVATE_DIR / f"{best.name}.pem"))
        if signer.public_key != best.public_key:
            raise KeyringError(f"{d}: private key {best.name}.pem does not match its public key in {KEYRING_FILE}")
        return signer


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read private key: {exc.strerror}") from exc
    password = os.environ.get("OTEL_AUDIT_KEY_PASSWORD")
    try:
        key = serialization.load_pem_private_key(data, password=password.encode() if password else None)
    except (ValueError, TypeError) as exc:
        # The message of the library may quote nothing secret, but keep ours generic anyway.
        raise KeyringError(f"{path}: not a readable PEM private key (wrong format or password)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path}: not an Ed25519 key")
    return key


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    password = os.environ.get("OTEL_AUDIT_KEY_PASSWORD")
    enc = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _write_ring(d: Path, ring: Keyring) -> None:
    tmp = d / (KEYRING_FILE + ".tmp")
    tmp.write_bytes(ring.to_json() + b"\n")
    os.replace(tmp, d / KEYRING_FILE)


def _default_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def generate(keys_dir: str | os.PathLike[str], name: str | None = None, *, prefix: str = "otel-audit",
             refuse_current: bool = False) -> PublicKey:
    """Create a new key in keys_dir (creating the folder and keyring as needed).

    With `refuse_current` (what `otel-audit keys generate` does unless given --add), a folder that
    already holds a key valid now is refused: replacing a key is `rotate`, which ends the old one.
    """
    d = Path(keys_dir)
    d.mkdir(parents=True, exist_ok=True)
    ring = Keyring.load(d / KEYRING_FILE) if (d / KEYRING_FILE).exists() else Keyring()
    name = check_name(name or _default_name(prefix))
    if any(k.name == name for k in ring) or (d / PRIVATE_DIR / f"{name}.pem").exists():
        raise KeyringError(f"{d}: a key named {name!r} exists already; choose another --name")
    current = ring.current()
    if refuse_current and current:
        raise KeyringError(
            f"{d}: already holds a current signing key ({', '.join(describe(k) for k in current)}); a second "
            f"one would make two keys valid at once: run 'otel-audit keys rotate --dir {d}' to replace it (the "
            "old key then ends after a grace period), or pass --add to add another current key on purpose"
        )
    private = Ed25519PrivateKey.generate()
    signer = Signer(name, private)
    _write_private(d / PRIVATE_DIR / f"{name}.pem", private)
    pub = signer.public(not_before=time.time_ns())
    ring.add(pub)
    _write_ring(d, ring)
    return pub


def rotate(keys_dir: str | os.PathLike[str], name: str | None = None, *, grace_s: float = 3600.0,
           prefix: str = "otel-audit") -> PublicKey:
    """Add a new key and end the validity of the keys valid now after `grace_s` seconds."""
    d = Path(keys_dir)
    if not (d / KEYRING_FILE).exists():
        raise KeyringError(f"{d}: no keyring to rotate; run 'otel-audit keys generate --dir {d}' first")
    new = generate(d, name, prefix=prefix)
    ring = Keyring.load(d / KEYRING_FILE)
    end = new.not_before + int(grace_s * 1e9)  # type: ignore[operator]
    updated = Keyring()
    for k in ring:
        if k.name != new.name and (k.not_after is None or k.not_after > end):
            k = PublicKey(k.name, k.public_key, k.not_before, end)
        updated.add(k)
    _write_ring(d, updated)
    return new


def export(keys_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the public keyring alone (no private keys) to `out` (a file, or a folder to hold keyring.json)."""
    ring = Keyring.load(Path(keys_dir) / KEYRING_FILE)
    o = Path(out)
    if o.is_dir() or str(out).endswith(os.sep):
        o.mkdir(parents=True, exist_ok=True)
        o = o / KEYRING_FILE
    o.parent.mkdir(parents=True, exist_ok=True)
    o.write_bytes(ring.to_json() + b"\n")
    return o


__all__ = [
    "InvalidSignature",
    "Keyring",
    "PublicKey",
    "Signer",
    "NoteCheck",
    "check_name",
    "describe",
    "export",
    "generate",
    "rotate",
]
