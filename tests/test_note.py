"""Checkpoint notes: the C2SP signed-note wire form, the Go known answer, and strict parsing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otel_audit.keys import Signer
from otel_audit.note import (
    Checkpoint,
    NoteError,
    Predecessor,
    Signature,
    format_note,
    key_id,
    parse_note,
    vkey,
)

# golang.org/x/mod/sumdb/note: the example key pair and signed note of its documentation and tests.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann "
           "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

SID = "0123456789abcdef0123456789abcdef"
ROOT = bytes(range(32))
CHAIN = bytes(range(32, 64))


def go_signer() -> Signer:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 0x01
    return Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def checkpoint(**kw: object) -> Checkpoint:
    fields: dict[str, object] = dict(origin=f"otel-audit/{SID}", size=50, root=ROOT, chain=CHAIN,
                                     time_ns=1700000000123456789, kind="size",
                                     producer={"service.name": "gw", "process.pid": 7})
    fields.update(kw)
    return Checkpoint(**fields)  # type: ignore[arg-type]


def signed(cp: Checkpoint, signer: Signer | None = None) -> str:
    s = signer or go_signer()
    body = cp.body()
    return format_note(body, [s.sign(body.encode())])


def test_go_key_id_and_verifier_key() -> None:
    """key_id and vkey reproduce the Go note package's verifier key for its example key."""
    s = go_signer()
    assert s.key_id.hex() == "c74f20a3"
    assert key_id("PeterNeumann", s.public_key).hex() == "c74f20a3"
    assert vkey("PeterNeumann", s.public_key) == GO_VKEY


def test_go_signed_note_is_reproduced_byte_for_byte() -> None:
    """Signing the Go example text with its key gives the published note exactly (Ed25519 is deterministic)."""
    note = format_note(GO_TEXT, [go_signer().sign(GO_TEXT.encode())])
    assert note == GO_NOTE


def test_checkpoint_body_layout() -> None:
    """The body is origin, size, root, then chain/time/kind/producer lines, each ending in a newline."""
    body = checkpoint().body()
    assert body == (
        f"otel-audit/{SID}\n50\n{base64.b64encode(ROOT).decode()}\n"
        f"chain {base64.b64encode(CHAIN).decode()}\ntime 1700000000123456789\nkind size\n"
        'producer {"process.pid":7,"service.name":"gw"}\n'
    )


def test_prev_and_end_lines() -> None:
    """A predecessor adds 'prev <id> <size> <root> <chain> clean|crash' and an end checkpoint ends in 'end'."""
    prev = Predecessor("f" * 32, 17, ROOT, CHAIN, False)
    body = checkpoint(kind="end", end=True, prev=prev).body()
    lines = body.splitlines()
    assert lines[-2] == (f"prev {'f' * 32} 17 {base64.b64encode(ROOT).decode()} "
                         f"{base64.b64encode(CHAIN).decode()} crash")
    assert lines[-1] == "end"
    assert "clean" in checkpoint(prev=Predecessor("f" * 32, 1, ROOT, CHAIN, True)).body()


@pytest.mark.parametrize("kind", ["start", "size", "time", "heartbeat", "flush", "end"])
def test_round_trip(kind: str) -> None:
    """parse_note(format_note(body, sigs)) returns the same checkpoint, text and signatures."""
    cp = checkpoint(kind=kind, end=kind == "end", prev=Predecessor("a" * 32, 3, ROOT, CHAIN, kind == "end"))
    note = signed(cp)
    sn = parse_note(note)
    assert sn.checkpoint == cp
    assert sn.text == cp.body()
    assert len(sn.signatures) == 1
    sig = sn.signatures[0]
    assert (sig.name, sig.key_id.hex()) == ("PeterNeumann", "c74f20a3")
    go_signer().public().verify(sig.signature, sn.text.encode())


def test_several_signatures() -> None:
    """A note may carry several signature lines; all are parsed in order."""
    body = checkpoint().body()
    a, b = Signer.generate("a"), Signer.generate("b")
    sn = parse_note(format_note(body, [a.sign(body.encode()), b.sign(body.encode())]))
    assert [s.name for s in sn.signatures] == ["a", "b"]


def _replace_line(note: str, index: int, new: str | None) -> str:
    text, _, sigs = note.partition("\n\n")
    lines = text.split("\n")
    if new is None:
        del lines[index]
    else:
        lines[index] = new
    return "\n".join(lines) + "\n\n" + sigs


GOOD = signed(checkpoint())


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (GOOD.replace("\n\n", "\n"), "no blank line"),
        (GOOD.partition("\n\n")[0] + "\n\n", "no signature"),
        (GOOD.replace("\u2014 ", "- "), "em dash"),
        (GOOD.replace("\u2014 PeterNeumann ", "\u2014 PeterNeumann x "), "not '\u2014 <name> <base64>'"),
        (GOOD.rsplit(" ", 1)[0] + " !!!!\n", "not valid base64"),
        (GOOD.rsplit(" ", 1)[0] + " AAAA\n", "too short"),
        (_replace_line(GOOD, 1, "050"), "leading zeros"),
        (_replace_line(GOOD, 1, "-5"), "decimal integer"),
        (_replace_line(GOOD, 1, "5.0"), "decimal integer"),
        (_replace_line(GOOD, 2, base64.b64encode(b"x" * 31).decode()), "32 bytes"),
        (_replace_line(GOOD, 2, "not base64!"), "base64"),
        (_replace_line(GOOD, 3, None), "'chain'"),
        (_replace_line(GOOD, 4, None), "'time'"),
        (_replace_line(GOOD, 5, None), "'kind'"),
        (_replace_line(GOOD, 6, None), "'producer'"),
        (_replace_line(GOOD, 5, "kind weekly"), "unknown checkpoint kind"),
        (_replace_line(GOOD, 6, "producer [1]"), "JSON object"),
        (_replace_line(GOOD, 6, "producer {"), "JSON object"),
        (_replace_line(GOOD, 5, "kind size\nkind end"), "appears twice"),
        (_replace_line(GOOD, 5, "kind size\nprev abc 1"), "prev line"),
        (_replace_line(GOOD, 5, "kind size\nend now"), "end line takes no value"),
        (_replace_line(GOOD, 4, "time 1e9"), "decimal integer"),
        ("o\n1\n\n\u2014 k AAAAAAAA\n", "needs origin, size and root"),
    ],
)
def test_malformed_notes_raise_note_error(bad: str, why: str) -> None:
    """Each malformed note raises NoteError whose message says what is wrong."""
    with pytest.raises(NoteError) as info:
        parse_note(bad)
    assert why in str(info.value)


def test_not_a_string() -> None:
    """A body that is not a string (bytes, a map) raises NoteError."""
    with pytest.raises(NoteError):
        parse_note(GOOD.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("digits", ["\u0665", "\u00b2", "\uff15", "1\u00b9"])
def test_non_ascii_digits_raise_note_error(digits: str) -> None:
    """Sizes, times and prev sizes accept ASCII digits only; anything else raises NoteError.

    Regression: note._int once checked str.isdigit() alone, which is true for Arabic-Indic and
    full-width digits (parsed as numbers) and for superscripts (int() then raised a bare
    ValueError that the verifier did not catch).
    """
    with pytest.raises(NoteError):
        parse_note(_replace_line(GOOD, 1, digits))
    with pytest.raises(NoteError):
        parse_note(_replace_line(GOOD, 4, "time " + digits))


def test_signature_parts() -> None:
    """A signature line splits into name, 4-byte key id and signature bytes."""
    sig = Signature("k", b"\x01\x02\x03\x04", b"s" * 64)
    note = format_note(checkpoint().body(), [sig])
    assert note.endswith(f"\u2014 k {base64.b64encode(sig.key_id + sig.signature).decode()}\n")
    assert parse_note(note).signatures == (sig,)
