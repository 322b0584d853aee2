"""RFC 6962 Merkle tree: published roots, known-answer proofs, exhaustive round trips, tampered proofs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from otel_audit import merkle
from otel_audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(merkle.__file__).parent / "testvectors" / "merkle.json").read_text("utf-8"))
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]
h = bytes.fromhex
MAX = 40
BIG = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX)]


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def test_hash_prefixes() -> None:
    """Leaves hash as SHA-256(0x00||d) and nodes as SHA-256(0x01||l||r); the empty tree is SHA-256("")."""
    assert leaf_hash(b"ab") == hashlib.sha256(b"\x00ab").digest()
    assert node_hash(b"l" * 32, b"r" * 32) == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    assert root([]) == merkle.EMPTY_ROOT == h(VECTORS["empty_root"])


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    """The roots of the first 1..8 classic RFC 6962 test leaves are the published ones."""
    assert root(LEAVES[:size]) == ROOTS[size - 1]


def test_compact_range_matches_root_at_every_size() -> None:
    """Appending leaves one by one, CompactRange.root() equals the full recomputation at every size."""
    cr = CompactRange()
    assert cr.root() == merkle.EMPTY_ROOT
    for n, leaf in enumerate(BIG, 1):
        cr.append(leaf)
        assert cr.size == n
        assert cr.root() == root(BIG[:n])


def test_published_inclusion_proofs() -> None:
    """Known-answer inclusion proofs from the RFC 6962 test data verify, and fail for another index."""
    proof = [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
             h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
             h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]
    assert inclusion_proof(LEAVES, 5) == proof
    assert verify_inclusion(LEAVES[5], 5, 8, proof, ROOTS[7])
    assert not verify_inclusion(LEAVES[5], 4, 8, proof, ROOTS[7])
    assert verify_inclusion(LEAVES[2], 2, 3, [ROOTS[1]], ROOTS[2])


def test_published_consistency_proofs() -> None:
    """Known-answer consistency proofs (6->8, 2->5) verify; a wrong old root fails."""
    p68 = [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
           h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
           h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]
    assert consistency_proof(LEAVES, 6) == p68
    assert verify_consistency(6, 8, ROOTS[5], ROOTS[7], p68)
    assert not verify_consistency(6, 8, ROOTS[4], ROOTS[7], p68)
    p25 = [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
           h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]
    assert consistency_proof(LEAVES[:5], 2) == p25
    assert verify_consistency(2, 5, ROOTS[1], ROOTS[4], p25)


@pytest.mark.parametrize("v", VECTORS["inclusion"], ids=lambda v: f"{v['index']}of{v['size']}")
def test_inclusion_vector(v: dict[str, Any]) -> None:
    """Every inclusion vector (all leaves of trees 1..8) is produced and accepted."""
    path = [h(x) for x in v["path"]]
    assert inclusion_proof(LEAVES[: v["size"]], v["index"]) == path
    assert verify_inclusion(h(v["leaf_hash"]), v["index"], v["size"], path, h(v["root"]))


@pytest.mark.parametrize("v", VECTORS["consistency"], ids=lambda v: f"{v['old_size']}to{v['new_size']}")
def test_consistency_vector(v: dict[str, Any]) -> None:
    """Every consistency vector (all size pairs up to 8) is produced and accepted."""
    proof = [h(x) for x in v["proof"]]
    assert consistency_proof(LEAVES[: v["new_size"]], v["old_size"]) == proof
    assert verify_consistency(v["old_size"], v["new_size"], h(v["old_root"]), h(v["new_root"]), proof)


def test_inclusion_round_trips_and_tampering_fails() -> None:
    """For every size up to 40 and every index, the proof verifies; any altered input does not."""
    for n in range(1, MAX + 1):
        r = root(BIG[:n])
        for i in range(n):
            p = inclusion_proof(BIG[:n], i)
            assert verify_inclusion(BIG[i], i, n, p, r), (i, n)
            assert not verify_inclusion(_flip(BIG[i]), i, n, p, r)
            assert not verify_inclusion(BIG[i], i, n, p, _flip(r))
            assert not verify_inclusion(BIG[i], i, n, [*p, BIG[0]], r), "extra element accepted"
            for other in range(i + 1, MAX + 1):
                # a proof whose length does not fit the claimed size is refused (sn must reach 0
                # exactly); equal-length paths of other sizes are structurally fine, their hashes opaque
                if len(inclusion_proof(BIG[:other], i)) != len(p):
                    assert not verify_inclusion(BIG[i], i, other, p, r), (i, n, other)
            if i + 1 < n:
                assert not verify_inclusion(BIG[i], i + 1, n, p, r)
            for j in range(len(p)):
                bad = list(p)
                bad[j] = _flip(bad[j])
                assert not verify_inclusion(BIG[i], i, n, bad, r)
            if p:
                assert not verify_inclusion(BIG[i], i, n, p[:-1], r), "short proof accepted"


def test_consistency_round_trips_and_tampering_fails() -> None:
    """For every pair of sizes up to 40 the proof verifies; altered proofs, roots or sizes do not."""
    roots = [root(BIG[:n]) for n in range(MAX + 1)]
    for n in range(1, MAX + 1):
        for m in range(1, n + 1):
            p = consistency_proof(BIG[:n], m)
            assert verify_consistency(m, n, roots[m], roots[n], p), (m, n)
            assert not verify_consistency(m, n, _flip(roots[m]), roots[n], p)
            assert not verify_consistency(m, n, roots[m], _flip(roots[n]), p)
            assert not verify_consistency(m, n, roots[m], roots[n], [*p, BIG[0]]), "extra element accepted"
            for j in range(len(p)):
                bad = list(p)
                bad[j] = _flip(bad[j])
                assert not verify_consistency(m, n, roots[m], roots[n], bad)
            if p:
                assert not verify_consistency(m, n, roots[m], roots[n], p[:-1]), "short proof accepted"


def test_second_size_must_be_fully_consumed() -> None:
    """A valid proof for (m, n) is refused for any other new size whose proof has another length.

    The trap of RFC 9162 section 2.1.4.2: without the final check that sn reached 0, the proof
    for (1, 2) would also 'prove' that the tree of size 4 (or 3, 5 ...) has the root of size 2.
    """
    roots = [root(BIG[:n]) for n in range(MAX + 1)]
    refused = 0
    for n in range(2, MAX + 1):
        for m in range(1, n):
            p = consistency_proof(BIG[:n], m)
            for other in range(m + 1, MAX + 1):
                if other == n:
                    continue
                assert not verify_consistency(m, other, roots[m], roots[other], p), (m, n, other)
                if len(consistency_proof(BIG[:other], m)) != len(p):
                    assert not verify_consistency(m, other, roots[m], roots[n], p), (m, n, other)
                    refused += 1
    assert refused > 1000
    # the classic instance: the proof of (1, 2) is one leaf hash; it must not extend to size 4
    p12 = consistency_proof(BIG[:2], 1)
    assert not verify_consistency(1, 4, roots[1], roots[2], p12)
    assert not verify_consistency(1, 3, roots[1], roots[2], p12)


def test_consistency_edge_cases() -> None:
    """Equal sizes need an empty proof and equal roots; size 0, or old > new, never verifies."""
    r4, r5 = root(BIG[:4]), root(BIG[:5])
    assert verify_consistency(4, 4, r4, r4, [])
    assert not verify_consistency(4, 4, r4, r4, [r4])
    assert not verify_consistency(4, 4, r4, r5, [])
    assert not verify_consistency(0, 4, merkle.EMPTY_ROOT, r4, [])
    assert not verify_consistency(5, 4, r5, r4, [])
    assert not verify_consistency(4, 5, r4, r5, [])
    assert consistency_proof(BIG[:4], 4) == []


def test_proof_arguments_are_checked() -> None:
    """Out-of-range indexes and sizes raise ValueError when proving and fail when verifying."""
    with pytest.raises(ValueError):
        inclusion_proof(BIG[:4], 4)
    with pytest.raises(ValueError):
        inclusion_proof(BIG[:4], -1)
    with pytest.raises(ValueError):
        consistency_proof(BIG[:4], 0)
    with pytest.raises(ValueError):
        consistency_proof(BIG[:4], 5)
    assert not verify_inclusion(BIG[0], 0, 0, [], merkle.EMPTY_ROOT)
    assert not verify_inclusion(BIG[0], -1, 4, [], root(BIG[:4]))
    assert verify_inclusion(BIG[0], 0, 1, [], root(BIG[:1]))
