"""Checkpoints in the C2SP tlog-checkpoint form, as C2SP signed notes signed with Ed25519.

A checkpoint body is

    <origin>
    <tree size>
    <base64 tree root>
    chain <base64 chained digest of record size-1>
    time <unix nanoseconds>
    kind <start|size|time|heartbeat|flush|end>
    [interval <nanoseconds>]
    producer <JSON object: service.name, host.name, process.pid ...>
    [prev <stream id> <size> <base64 root> <base64 chain> <clean|crash>]
    [parent <stream id> <size> <base64 root> <base64 chain>]
    [end]

followed by a blank line and one signature line per key, `— <key name> <base64(key id || sig)>`,
where key id = SHA-256(name || 0x0A || 0x01 || public key)[:4] (the signed-note Ed25519 type).
`prev` names the stream this one follows on the same producer (a restart); `parent` (start
checkpoints of a forked child only) names the stream of the process it was forked from and that
stream's last checkpoint before the fork (size, root, chain). `interval` is the producer's promise:
another checkpoint follows within that many nanoseconds (its heartbeat, `checkpoint_interval`);
notes written before it existed have none. A note may carry several signatures (a key handover
is cosigned by the old and the new key). docs/canonical-form.md §4 and docs/checkpoints.md
have the details.
No OpenTelemetry imports: verifiers use this alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

ED25519_TYPE = 0x01
SIG_PREFIX = "\u2014 "
KINDS = frozenset({"start", "size", "time", "heartbeat", "flush", "end"})


class NoteError(ValueError):
    """A checkpoint note is malformed; the message says which line and why."""


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte signed-note key id of an Ed25519 public key."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """The verifier key string `<name>+<hex key id>+<base64(type || key)>` used by golang.org/x/mod/sumdb/note."""
    kid = key_id(name, public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([ED25519_TYPE]) + public_key).decode()}"


@dataclass(frozen=True)
class Predecessor:
    """What a new stream says of the one before it on the same producer."""

    stream_id: str
    size: int
    root: bytes
    chain: bytes
    closed: bool


@dataclass(frozen=True)
class Parent:
    """What a forked child's stream says of its parent's stream: its last checkpoint before the fork."""

    stream_id: str
    size: int
    root: bytes
    chain: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's signed body, parsed: the tree size, root and chain it commits to, and what it says of its
    stream."""

    origin: str
    size: int
    root: bytes
    chain: bytes
    time_ns: int
    kind: str
    producer: Mapping[str, Any] = field(default_factory=dict)
    prev: Predecessor | None = None
    end: bool = False
    parent: Parent | None = None
    interval_ns: int | None = None  # the heartbeat promised: the next checkpoint within this many ns

    def body(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            "chain " + base64.b64encode(self.chain).decode(),
            f"time {self.time_ns}",
            f"kind {self.kind}",
            *([f"interval {self.interval_ns}"] if self.interval_ns is not None else []),
            "producer " + orjson.dumps(dict(self.producer), option=orjson.OPT_SORT_KEYS).decode(),
        ]
        if self.prev is not None:
            p = self.prev
            lines.append(
                f"prev {p.stream_id} {p.size} {base64.b64encode(p.root).decode()} "
                f"{base64.b64encode(p.chain).decode()} {'clean' if p.closed else 'crash'}"
            )
        if self.parent is not None:
            q = self.parent
            lines.append(f"parent {q.stream_id} {q.size} {base64.b64encode(q.root).decode()} "
                         f"{base64.b64encode(q.chain).decode()}")
        if self.end:
            lines.append("end")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Signature:
    """One signature line of a note: the key's name and id, and the Ed25519 signature."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    """A signed note: its text, its signatures and the checkpoint its text is."""

    text: str  # the signed body, ending in "\n"
    signatures: tuple[Signature, ...]
    checkpoint: Checkpoint


def format_note(body: str, signatures: Sequence[Signature]) -> str:
    lines = "".join(
        f"{SIG_PREFIX}{s.name} {base64.b64encode(s.key_id + s.signature).decode()}\n" for s in signatures
    )
    return body + "\n" + lines


def _b64(value: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if size is not None and len(raw) != size:
        raise NoteError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _int(value: str, what: str) -> int:
    if not (value.isascii() and value.isdigit()) or (len(value) > 1 and value[0] == "0"):
        raise NoteError(f"{what} must be a decimal integer without leading zeros, got {value[:40]!r}")
    return int(value)


def parse_note(note: str) -> SignedNote:
    """Split and parse a signed checkpoint note; raises NoteError naming the bad line."""
    if not isinstance(note, str):
        raise NoteError("checkpoint body is not a string")
    head, sep, sigblock = note.partition("\n\n")
    if not sep:
        raise NoteError("no blank line between checkpoint text and signatures")
    text = head + "\n"
    sigs: list[Signature] = []
    for n, line in enumerate(sigblock.split("\n"), 1):
        if not line:
            continue
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"signature line {n} does not start with an em dash")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not parts[0]:
            raise NoteError(f"signature line {n} is not '— <name> <base64>'")
        raw = _b64(parts[1], f"signature line {n}")
        if len(raw) < 5:
            raise NoteError(f"signature line {n} is too short")
        sigs.append(Signature(parts[0], raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("checkpoint has no signature lines")
    lines = head.split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, size and root lines")
    origin = lines[0]
    size = _int(lines[1], "line 2 (tree size)")
    root = _b64(lines[2], "line 3 (root hash)", 32)
    ext: dict[str, str] = {}
    for n, line in enumerate(lines[3:], 4):
        key, _, value = line.partition(" ")
        if key in ext:
            raise NoteError(f"line {n}: '{key}' appears twice")
        ext[key] = value
    for required in ("chain", "time", "kind", "producer"):
        if required not in ext:
            raise NoteError(f"checkpoint has no '{required}' line")
    kind = ext["kind"]
    if kind not in KINDS:
        raise NoteError(f"unknown checkpoint kind {kind!r}")
    try:
        producer = orjson.loads(ext["producer"])
    except orjson.JSONDecodeError as exc:
        raise NoteError("producer line is not a JSON object") from exc
    if not isinstance(producer, dict):
        raise NoteError("producer line is not a JSON object")
    prev = None
    if "prev" in ext:
        parts = ext["prev"].split(" ")
        if len(parts) != 5 or parts[4] not in ("clean", "crash"):
            raise NoteError("prev line must be '<stream> <size> <root> <chain> clean|crash'")
        prev = Predecessor(
            parts[0],
            _int(parts[1], "prev size"),
            _b64(parts[2], "prev root", 32),
            _b64(parts[3], "prev chain", 32),
            parts[4] == "clean",
        )
    parent = None
    if "parent" in ext:
        parts = ext["parent"].split(" ")
        if len(parts) != 4 or not parts[0]:
            raise NoteError("parent line must be '<stream> <size> <root> <chain>'")
        parent = Parent(parts[0], _int(parts[1], "parent size"), _b64(parts[2], "parent root", 32),
                        _b64(parts[3], "parent chain", 32))
    interval = None
    if "interval" in ext:
        interval = _int(ext["interval"], "interval line")
        if interval == 0:
            raise NoteError("interval line must be a positive number of nanoseconds")
    if "end" in ext and ext["end"]:
        raise NoteError("end line takes no value")
    cp = Checkpoint(
        origin=origin,
        size=size,
        root=root,
        chain=_b64(ext["chain"], "chain line", 32),
        time_ns=_int(ext["time"], "time line"),
        kind=kind,
        producer=producer,
        prev=prev,
        end="end" in ext,
        parent=parent,
        interval_ns=interval,
    )
    return SignedNote(text, tuple(sigs), cp)
