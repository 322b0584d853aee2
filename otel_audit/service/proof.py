"""Per-event inclusion proofs in the C2SP tlog-proof@v1 text form, and their offline check.

A proof says: the event at index ``seq`` of its producer's stream is in the tree the checkpoint signs::

    c2sp.org/tlog-proof@v1
    extra <base64 of prev digest (32 bytes) || the event's canonical bytes>
    index <seq>
    <base64 hash>           the RFC 6962 inclusion path, leaf sibling first
    ...
    <blank line>
    <the producer's signed checkpoint note, verbatim, with the service's witness cosignature line>

``extra`` is unauthenticated by itself (as the format says) but not trusted: the leaf hash is
SHA-256(0x00 || extra) — the record's chained digest — so the path only folds to the signed root when
``extra`` is exactly the signed content. The canonical bytes are ``["v1","<stream>",<seq>,...]``
(docs/canonical-form.md): the event, its time, severity, body and attributes, readable from the proof alone.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from otel_audit import merkle
from otel_audit.canonical import SIGNED_AT_INGEST, SIGNED_BY
from otel_audit.keys import Keyring
from otel_audit.note import NoteError, SignedNote, parse_note

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_BYTES = 1 << 20


class ProofError(ValueError):
    """A proof file that cannot be read, or that does not prove what it claims (says which part)."""


class Proof(NamedTuple):
    leaf_index: int
    hashes: list[bytes]
    note: str  # the checkpoint note, verbatim (signatures and cosignatures included)
    extra: bytes  # prev digest || canonical bytes

    def text(self) -> str:
        lines = [HEADER, "extra " + base64.b64encode(self.extra).decode(), f"index {self.leaf_index}"]
        lines += [base64.b64encode(h).decode() for h in self.hashes]
        return "\n".join(lines) + "\n\n" + self.note


def build(path: Sequence[bytes], index: int, note: str, prev: bytes, canonical: bytes, cosignature: str) -> Proof:
    """The proof of leaf `index` with its inclusion `path` in the checkpoint's tree."""
    full = note if note.endswith("\n") else note + "\n"
    return Proof(index, list(path), full + cosignature, prev + canonical)


def signed_at(canonical: bytes) -> str:
    """Where the event was signed, as its signed content says: "at ingest" (by the audit service, for a producer
    that cannot sign: the content carries audit.signed_by = ingest) or "at source" (by its producer)."""
    try:
        attrs = orjson.loads(canonical)[8]
    except (orjson.JSONDecodeError, IndexError, TypeError):
        return "at source"
    return "at ingest" if isinstance(attrs, dict) and attrs.get(SIGNED_BY) == SIGNED_AT_INGEST else "at source"


def parse(text: str) -> Proof:
    if len(text) > MAX_PROOF_BYTES:
        raise ProofError(f"over {MAX_PROOF_BYTES} bytes: not a proof")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ProofError("no blank line between the proof and its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofError(f"line 1 is not {HEADER!r}")
    extra = b""
    i = 1
    if len(lines) > i and lines[i].startswith("extra "):
        try:
            extra = base64.b64decode(lines[i][6:], validate=True)
        except (binascii.Error, ValueError):
            raise ProofError("line 2: extra is not base64") from None
        i += 1
    if len(lines) <= i or not lines[i].startswith("index "):
        raise ProofError(f"line {i + 1}: expected 'index <n>'")
    raw = lines[i][6:]
    if not raw.isascii() or not raw.isdigit() or (len(raw) > 1 and raw[0] == "0") or len(raw) > 20:
        raise ProofError(f"line {i + 1}: the index is not a decimal number")
    hashes = []
    for n, line in enumerate(lines[i + 1:], i + 2):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ProofError(f"line {n}: not a base64 hash") from None
        if len(h) != 32:
            raise ProofError(f"line {n}: a hash of {len(h)} bytes, not 32")
        hashes.append(h)
    if len(hashes) > 64:
        raise ProofError("more than 64 hashes: no tree is that deep")
    return Proof(int(raw), hashes, note, extra)


def _cosignatures(note: str) -> tuple[SignedNote, list[tuple[str, bytes, int, bytes]]]:
    """The producer's signed note, and the cosignature lines (name, key id, time, signature) parse_note cannot
    tell from signatures: a line whose key id is a witness key's is checked as a cosignature."""
    try:
        sn = parse_note(note)
    except NoteError as exc:
        raise ProofError(f"checkpoint: {exc}") from None
    cos = []
    for s in sn.signatures:
        if len(s.signature) == 8 + 64:
            (t,) = struct.unpack(">Q", s.signature[:8])
            cos.append((s.name, s.key_id, t, s.signature[8:]))
    return sn, cos


def _witnessed(text: str, cos: list[tuple[str, bytes, int, bytes]], witnesses: Keyring) -> list[str]:
    """The names of the witnesses whose cosignature of checkpoint text `text` verifies; a cosignature by a key of
    the witness keyring that does not verify raises ProofError (a line of another witness is passed over)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from otel_audit.service.ingest import cosignature_key_id

    keys = {(k.name, cosignature_key_id(k.name, k.public_key)): k for k in witnesses}
    out = []
    for name, kid, t, sig in cos:
        k = keys.get((name, kid))
        if k is None:
            continue
        msg = f"cosignature/v1\ntime {t}\n{text}".encode()
        try:
            Ed25519PublicKey.from_public_bytes(k.public_key).verify(sig, msg)
        except InvalidSignature:
            raise ProofError(f"witness {name}: its cosignature does not verify") from None
        out.append(name)
    return out


def check_cosignature(text: str, line: str, witnesses: Keyring) -> list[str]:
    """Check a stored cosignature line (the service's, over checkpoint text `text`) with the witness keyring:
    the names of the witnesses it verifies for; raises ProofError when none does."""
    _, cos = _cosignatures(text + "\n" + line)
    names = _witnessed(text, cos, witnesses)
    if not names:
        raise ProofError("not by a key of the witness keyring (or not a cosignature at all)")
    return names


class Checked(NamedTuple):
    stream: str
    seq: int
    size: int
    content: list[Any]  # the canonical content: [event, time, severity, severity text, body, attributes]
    witnessed_by: list[str]
    checkpoint_time_ns: int
    signed: str = "at source"  # or "at ingest": by the audit service, the producer could not sign (signed_at)
    key: str = ""  # the name of the key whose checkpoint signature verified


def check(text: str, keyring: Keyring, witnesses: Keyring | None = None) -> Checked:
    """Check a proof offline: the checkpoint's signature by the producers' keyring, the witness cosignatures
    (when a witness keyring is given, at least one must verify), and that the path folds the event's leaf to the
    signed root. Raises ProofError naming what does not hold."""
    p = parse(text)
    sn, cos = _cosignatures(p.note)
    producer_sigs = tuple(s for s in sn.signatures if len(s.signature) == 64)
    base = SignedNote(sn.text, producer_sigs, sn.checkpoint)
    check_ = keyring.check_note(base)
    if check_.status != "ok":
        raise ProofError(f"checkpoint: not signed by a valid key of the keyring ({check_.status})")
    cp = sn.checkpoint
    if len(p.extra) < 33:
        raise ProofError("extra: no prev digest and canonical bytes in the proof")
    leaf = merkle.leaf_hash(p.extra)
    if not merkle.verify_inclusion(leaf, p.leaf_index, cp.size, p.hashes, cp.root):
        raise ProofError(f"the inclusion path does not lead from the event at index {p.leaf_index} to the root the "
                         f"checkpoint signs at size {cp.size}: the event is not the one logged there")
    canon = p.extra[32:]
    try:
        arr = orjson.loads(canon)
    except orjson.JSONDecodeError:
        raise ProofError("extra: the canonical bytes are not JSON") from None
    if not isinstance(arr, list) or len(arr) != 9 or arr[0] != "v1" or arr[2] != p.leaf_index:
        raise ProofError("extra: not canonical v1 bytes of the event at this index")
    stream = cp.origin.rsplit("/", 1)[-1]
    if arr[1] != stream:
        raise ProofError(f"extra: the event is of stream {arr[1]!r}, the checkpoint of {stream!r}")
    witnessed = []
    if witnesses is not None:
        witnessed = _witnessed(sn.text, cos, witnesses)
        if not witnessed:
            raise ProofError("no cosignature by a key of the witness keyring: the checkpoint was not witnessed")
    return Checked(stream, p.leaf_index, cp.size, arr[3:], witnessed, cp.time_ns, signed_at(canon),
                   producer_sigs[0].name if producer_sigs else "")
