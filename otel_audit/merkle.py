"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

Leaf hash SHA-256(0x00 || data), node hash SHA-256(0x01 || left || right); the root of n leaves
splits at the largest power of two below n. No OpenTelemetry imports: verifiers use this alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from otel_audit import _native

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The right edge of a growing tree: one hash per perfect subtree, O(log n) memory."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash (already SHA-256(0x00 || data))."""
        stack = self._stack
        stack.append(leaf)
        n = self.size
        self.size = n + 1
        while n & 1:
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            n >>= 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Add many leaf hashes, one tree level at a time (the same result as append, faster)."""
        nodes = list(leaves)
        if not nodes:
            return
        fold = _native.function("merkle_extend")
        if fold is not None and all(len(x) == 32 for x in nodes):
            self._stack = fold(self._stack, self.size, b"".join(nodes))
            self.size += len(nodes)
            return
        stack = self._stack
        start = self.size
        self.size = start + len(nodes)
        leftovers: list[bytes] = []  # the last, unpaired node of each level, lowest level last
        level = 0
        while nodes:
            if (start >> level) & 1:  # the stack's top is the left sibling of nodes[0]
                nxt = [_sha256(b"\x01" + stack.pop() + nodes[0]).digest()]
                rest = nodes[1:]
            else:
                nxt = []
                rest = nodes
            if len(rest) & 1:
                leftovers.append(rest.pop())
            nxt += [_sha256(b"\x01" + rest[i] + rest[i + 1]).digest() for i in range(0, len(rest), 2)]
            nodes = nxt
            level += 1
        stack.extend(reversed(leftovers))

    def extend_bytes(self, leaves: bytes) -> None:
        """`extend` with the leaf hashes concatenated (32 bytes each); the native core folds them when active."""
        if len(leaves) % 32:
            raise ValueError("leaf hashes are 32 bytes each")
        fold = _native.function("merkle_extend")
        if fold is not None:
            self._stack = fold(self._stack, self.size, leaves)
            self.size += len(leaves) // 32
        else:
            self.extend([leaves[i:i + 32] for i in range(0, len(leaves), 32)])

    def to_bytes(self) -> bytes:
        """The range's hashes concatenated (32 bytes each); `from_bytes(data, size)` restores it."""
        return b"".join(self._stack)

    @classmethod
    def from_bytes(cls, data: bytes, size: int) -> CompactRange:
        """The range of `size` leaves that `to_bytes` gave `data` for; ValueError if they cannot match."""
        if len(data) % 32 or len(data) // 32 != size.bit_count():
            raise ValueError(f"{len(data)} bytes are not the compact range of {size} leaves")
        cr = cls()
        cr._stack = [data[i:i + 32] for i in range(0, len(data), 32)]
        cr.size = size
        return cr

    def root(self) -> bytes:
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = _sha256(b"\x01" + h + r).digest()
        return r


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head of a list of leaf hashes."""
    cr = CompactRange()
    cr.extend(leaves)
    return cr.root()


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    return root(leaves[lo:hi])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf `index` in the tree of all `leaves` (RFC 9162 §2.1.3.1)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of size {n}")
    path: list[bytes] = []

    def walk(lo: int, hi: int, m: int) -> None:
        if hi - lo <= 1:
            return
        k = _split(hi - lo)
        if m < k:
            walk(lo, lo + k, m)
            path.append(_subtree_root(leaves, lo + k, hi))
        else:
            walk(lo + k, hi, m - k)
            path.append(_subtree_root(leaves, lo, lo + k))

    walk(0, n, index)
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: is `leaf` at `index` of the tree of `size` whose head is `expected_root`."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the tree of the first `old_size` leaves is a prefix of the tree of all (RFC 9162 §2.1.4.1)."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"old size {old_size} must be in 1..{n}")
    proof: list[bytes] = []

    def subproof(m: int, lo: int, hi: int, complete: bool) -> None:
        size = hi - lo
        if m == size:
            if not complete:
                proof.append(_subtree_root(leaves, lo, hi))
            return
        k = _split(size)
        if m <= k:
            subproof(m, lo, lo + k, complete)
            proof.append(_subtree_root(leaves, lo + k, hi))
        else:
            subproof(m - k, lo + k, hi, False)
            proof.append(_subtree_root(leaves, lo, lo + k))

    if old_size < n:
        subproof(old_size, 0, n, True)
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, including the check that the proof is fully consumed."""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
