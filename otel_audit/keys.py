"""Ed25519 signing keys and the public keyring a verifier needs.

A keys directory holds

    keyring.json          public keys with their validity: give this file (or the folder without
                          private/) to auditors; `otel-audit keys export` writes it alone
    private/<name>.pem    PKCS#8 private keys, mode 0600, never leave the producer

Modes, whatever the umask (otel_audit.filemodes): the keys folder and private/ are made 0700 and a
private key file 0600; keyring.json is 0644, as it is public by design (inside a 0700 keys folder
no other user reaches it; `keys export` writes a 0644 copy for auditors, in folders it makes 0755).
A folder that exists keeps its mode: `otel-audit check-config` warns when others can read it, and
refuses a keys folder, private/ or private key file that every user may change.

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

import contextlib
import datetime as _dt
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from otel_audit.decoding import DecodeError
from otel_audit.decoding import loads as _strict_json
from otel_audit.errors import KeyringError
from otel_audit.filemodes import DIR_MODE, FILE_MODE, PUBLIC_DIR_MODE, PUBLIC_FILE_MODE, make_dirs
from otel_audit.note import Signature, SignedNote, key_id, vkey

KEYRING_FILE = "keyring.json"
PRIVATE_DIR = "private"
FORMAT = "otel-audit-keyring/v1"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: the largest keyring file (.json or .vkey) or private key file read: a keyring of thousands of keys is
#: well under 1 MiB; anything larger is not a keyring (and would cost memory many times its size to parse)
MAX_FILE_BYTES = 16 * 1024 * 1024
#: the longest --grace of `rotate`: an old key valid for a century more is not a rotation
MAX_GRACE_S = 100 * 365 * 86400.0


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
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
        try:
            mode = os.stat(p).st_mode
        except FileNotFoundError:
            raise KeyringError(f"{p}: no such keyring file or folder; pass --keys <folder or keyring.json>") from None
        except OSError as exc:
            raise KeyringError(f"{p}: cannot read keyring: {exc.strerror}") from exc
        if stat.S_ISDIR(mode):
            try:
                files = sorted(x for x in p.iterdir() if x.suffix in (".json", ".vkey"))
            except OSError as exc:
                raise KeyringError(f"{p}: cannot list the keyring folder: {exc.strerror}") from exc
        elif stat.S_ISREG(mode):
            files = [p]
        else:
            raise KeyringError(f"{p}: {_not_regular(mode, 'keyring file')}")
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


def _not_regular(mode: int, what: str) -> str:
    """What a path that is not a regular file is, for messages ("a named pipe, not a keyring file: ...")."""
    if stat.S_ISFIFO(mode):
        kind = "a named pipe (or a shell pipe such as <(...))"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISDIR(mode):
        kind = "a folder"
    else:
        kind = "not a regular file"
    return f"{kind}, not a {what}: give a regular file (a pipe or device is never read, it could block forever)"


def _read_regular(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; KeyringError naming `path` otherwise.

    Opened non-blocking and checked with fstat before any read, so that a named pipe put in place of the
    file (even between a check and the open) is refused at once instead of blocking the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"{path}: {_not_regular(st.st_mode, what)}")
        if st.st_size > limit:
            raise KeyringError(f"{path}: {st.st_size} bytes is too large for a {what} (at most {limit // 2**20} "
                               "MiB); this is not an otel-audit keyring: remove it from the keys folder")
        chunks: list[bytes] = []
        n = 0
        while True:
            b = os.read(fd, min(1 << 20, limit + 1 - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
            if n > limit:  # grew since fstat
                raise KeyringError(f"{path}: larger than {limit // 2**20} MiB, too large for a {what}")
        return b"".join(chunks)
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can fsync a folder; the rename stands
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_file(path: Path, data: bytes, what: str, *, mode: int = PUBLIC_FILE_MODE, replace: bool = True) -> None:
    """Write `data` to `path` whole or not at all: a temporary file in the same folder, fsync, then a rename
    over `path` (`replace`) or a hard link that fails if `path` exists (not `replace`). On any failure (a
    full disk, a file size limit) the temporary file is removed, `path` is left as it was, and KeyringError
    names `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        raise KeyringError(f"{path}: cannot write the {what}: {exc.strerror} (creating {tmp.name}); "
                           "nothing was changed") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # not narrowed or widened by the umask
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: exists was checked before
                if path.exists():
                    raise FileExistsError(17, "File exists", str(path)) from None
                os.replace(tmp, path)
            else:
                tmp.unlink()
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KeyringError(f"{path}: cannot write the {what}: {exc.strerror or exc}; it is left as it "
                           "was") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _window(key: PublicKey) -> str:
    return f"key {key.public_key.hex()[:16]}..., valid {_ts(key.not_before) or '-'} .. {_ts(key.not_after) or 'open'}"


def _read_keyring_file(f: Path) -> list[tuple[PublicKey, str]]:
    import base64

    raw = _read_regular(f, "keyring file")
    if f.suffix == ".vkey":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyringError(f"{f}: not a text file of verifier keys (not UTF-8)") from None
        return [(_parse_vkey(line.strip(), f"{f}:{n}"), f"{f}:{n}")
                for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    try:
        doc = _strict_json(raw)  # strict: a member given twice ("keys" twice, last wins elsewhere) is refused
    except DecodeError as exc:
        what = "not valid JSON" if exc.rule == "not-json" else "ambiguous JSON"
        raise KeyringError(f"{f}: {what} ({exc}); expected an otel-audit keyring") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("keys"), list):
        raise KeyringError(f"{f}: not an otel-audit keyring (expected {{\"format\": \"{FORMAT}\", \"keys\": [...]}})")
    out: list[tuple[PublicKey, str]] = []
    for i, entry in enumerate(doc["keys"]):
        where = f"{f}: keys[{i}]"
        if not isinstance(entry, dict):
            raise KeyringError(f"{where}: expected an object")
        if entry.get("algorithm", "ed25519") != "ed25519":
            raise KeyringError(f"{where}.algorithm: only ed25519 is supported")
        try:
            name = check_name(entry.get("name"))
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
        if "vkey" in entry and entry["vkey"] != vkey(name, pub):
            raise KeyringError(f"{where}.vkey: does not match the name and public key of the entry ({name}, id "
                               f"{key.key_id.hex()}); an entry must say one key only: fix or remove the entry")
        if key.not_before is not None and key.not_after is not None and key.not_after < key.not_before:
            raise KeyringError(f"{where}: not_after {entry.get('not_after')} is before not_before "
                               f"{entry.get('not_before')}; a key's validity must not end before it starts")
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
        # imported here, as in _load_private and _private_pem: cryptography's serialization package (with
        # its ssh module and every cipher) is most of the import time of `otel-audit verify`, which only
        # verifies with public keys (Ed25519PublicKey.from_public_bytes)
        from cryptography.hazmat.primitives import serialization

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
    from cryptography.hazmat.primitives import serialization

    data = _read_regular(path, "private key file")
    password = os.environ.get("OTEL_AUDIT_KEY_PASSWORD")
    try:
        key = serialization.load_pem_private_key(data, password=password.encode() if password else None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # A flipped bit or a cut file reads as a wrong format or an unknown algorithm. The message of
        # the library may quote nothing secret, but keep ours generic anyway.
        raise KeyringError(
            f"{path}: not a readable PEM private key (damaged, truncated, wrong format or wrong password); "
            "restore it from a backup, or rotate to a new key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path}: not an Ed25519 private key ({type(key).__name__.lstrip('_')}); "
                           "give the Ed25519 key made by 'otel-audit keys generate'")
    return key


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    password = os.environ.get("OTEL_AUDIT_KEY_PASSWORD")
    enc = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a new private key file (never over an existing one), whole or not at all."""
    try:
        make_dirs(path.parent, DIR_MODE)  # 0700 when made here; one that exists keeps its mode
    except OSError as exc:
        raise KeyringError(f"{path.parent}: cannot make the private key folder: {exc.strerror}") from exc
    _write_file(path, _private_pem(key), "private key file", mode=FILE_MODE, replace=False)


def _write_ring(d: Path, ring: Keyring) -> None:
    _write_file(d / KEYRING_FILE, ring.to_json() + b"\n", "keyring")


def _default_name(prefix: str, d: Path, ring: Keyring) -> str:
    """`<prefix>-<UTC time to the second>`, with `-2`, `-3`, ... when a key of that second is in the folder
    (a `keys rotate` right after `keys generate` must not need a --name)."""
    base = f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    taken = {k.name for k in ring}
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        if name not in taken and not os.path.lexists(d / PRIVATE_DIR / f"{name}.pem"):
            return name
    return base  # a thousand keys in one second: _check_unused names the clash


def _load_dir_ring(d: Path) -> Keyring:
    f = d / KEYRING_FILE
    if not os.path.lexists(f):
        return Keyring()
    return Keyring.load(f)


def _check_unused(d: Path, ring: Keyring, name: str) -> Path:
    """The private key path of a new key `name`; KeyringError if the name is in use."""
    pem = d / PRIVATE_DIR / f"{name}.pem"
    if any(k.name == name for k in ring):
        raise KeyringError(f"{d}: a key named {name!r} exists already; choose another --name")
    if os.path.lexists(pem):
        try:
            empty = pem.is_file() and pem.stat().st_size == 0
        except OSError:
            empty = False
        hint = (" (it is empty and not in the keyring: left by a failed earlier write; remove it to reuse the name)"
                if empty else "")
        raise KeyringError(f"{pem}: a private key of that name exists already{hint}; choose another --name")
    return pem


def _new_key(d: Path, ring: Keyring, name: str, not_before: int) -> tuple[Ed25519PrivateKey, PublicKey, Path]:
    """A new key named `name` for folder `d` (nothing written yet); refuses a name in use."""
    pem = _check_unused(d, ring, name)
    private = Ed25519PrivateKey.generate()
    return private, Signer(name, private).public(not_before=not_before), pem


def _commit(d: Path, private: Ed25519PrivateKey, pem: Path, ring: Keyring) -> None:
    """Write the new private key, then the keyring that holds it; a failed keyring write removes the private key
    again (a private key not in the keyring would only block its name)."""
    _write_private(pem, private)
    try:
        _write_ring(d, ring)
    except BaseException:
        with contextlib.suppress(OSError):
            pem.unlink()
        raise


def generate(keys_dir: str | os.PathLike[str], name: str | None = None, *, prefix: str = "otel-audit",
             refuse_current: bool = False) -> PublicKey:
    """Create a new key in keys_dir (creating the folder and keyring as needed).

    With `refuse_current` (what `otel-audit keys generate` does unless given --add), a folder that
    already holds a key valid now is refused: replacing a key is `rotate`, which ends the old one.
    Every check is made before anything is written; a failed write leaves no file of the new key.
    """
    d = Path(keys_dir)
    if name is not None:
        check_name(name)
    if os.path.lexists(d) and not d.is_dir():
        raise KeyringError(f"{d}: not a folder; --dir takes the keys folder (keyring.json + private/)")
    ring = _load_dir_ring(d)
    name = check_name(name or _default_name(prefix, d, ring))
    _check_unused(d, ring, name)
    current = ring.current()
    if refuse_current and current:
        raise KeyringError(
            f"{d}: already holds a current signing key ({', '.join(describe(k) for k in current)}); a second "
            f"one would make two keys valid at once: run 'otel-audit keys rotate --dir {d}' to replace it (the "
            "old key then ends after a grace period), or pass --add to add another current key on purpose"
        )
    private, pub, pem = _new_key(d, ring, name, time.time_ns())
    ring.add(pub)
    try:
        make_dirs(d, DIR_MODE)  # the keys folder holds private/: 0700 when made here
    except OSError as exc:
        raise KeyringError(f"{d}: cannot make the keys folder: {exc.strerror}") from exc
    _commit(d, private, pem, ring)
    return pub


def check_grace(grace_s: float) -> float:
    """A rotation's grace period in seconds: finite, zero or more, at most MAX_GRACE_S (100 years)."""
    if not isinstance(grace_s, (int, float)) or isinstance(grace_s, bool) or not (0 <= grace_s <= MAX_GRACE_S):
        raise KeyringError(
            f"--grace {grace_s!r}s is not a grace period: give zero or more and at most 100 years (876000h); "
            "the old keys stay valid that long after the rotation"
        )
    return float(grace_s)


def rotate(keys_dir: str | os.PathLike[str], name: str | None = None, *, grace_s: float = 3600.0,
           prefix: str = "otel-audit") -> PublicKey:
    """Add a new key and end the validity of the keys valid now after `grace_s` seconds.

    Everything is checked before anything is written, and the keyring is written once (the new key and the
    ended old ones together): a failed write leaves the keys folder as it was."""
    d = Path(keys_dir)
    grace_s = check_grace(grace_s)
    if name is not None:
        check_name(name)
    if not os.path.lexists(d / KEYRING_FILE):
        raise KeyringError(f"{d}: no keyring to rotate; run 'otel-audit keys generate --dir {d}' first")
    ring = Keyring.load(d / KEYRING_FILE)
    name = check_name(name or _default_name(prefix, d, ring))
    start = time.time_ns()
    private, new, pem = _new_key(d, ring, name, start)
    end = start + int(grace_s * 1e9)
    updated = Keyring()
    for k in ring:
        if k.not_after is None or k.not_after > end:
            k = PublicKey(k.name, k.public_key, k.not_before, max(end, k.not_before or end))
        updated.add(k)
    updated.add(new)
    _commit(d, private, pem, updated)
    return new


def export(keys_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the public keyring alone (no private keys) to `out` (a file, or a folder to hold keyring.json).

    Written whole or not at all (a temporary file renamed over `out`): an existing `out` (the auditor's
    keyring) is never left torn; a symlink `out` is followed (its target is replaced)."""
    ring = Keyring.load(Path(keys_dir) / KEYRING_FILE)
    o = Path(out)
    try:
        if o.is_dir() or str(out).endswith(os.sep):
            make_dirs(o, PUBLIC_DIR_MODE)  # the public keyring's folder: readable, never writable by others
            o = o / KEYRING_FILE
        o = Path(os.path.realpath(o))
        make_dirs(o.parent, PUBLIC_DIR_MODE)
    except OSError as exc:
        raise KeyringError(f"{exc.filename or o}: cannot make the folder for the keyring: {exc.strerror}") from exc
    mode = PUBLIC_FILE_MODE
    try:
        st = os.stat(o)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KeyringError(f"{o}: cannot write the keyring: {exc.strerror}") from exc
    else:
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"{o}: {_not_regular(st.st_mode, 'keyring file to replace')}")
        mode = stat.S_IMODE(st.st_mode)
    _write_file(o, ring.to_json() + b"\n", "keyring", mode=mode)
    return o


__all__ = [
    "InvalidSignature",
    "Keyring",
    "PublicKey",
    "Signer",
    "NoteCheck",
    "check_grace",
    "check_name",
    "describe",
    "export",
    "generate",
    "rotate",
]
