"""Stored subtree hashes ("tiles") so a proof reads a few hundred hashes instead of a whole stream.

Level 1: the root of each complete, aligned block of 256 leaves of a stream; level 2: of each 65,536 (256 level-1
tiles). They are derived (verify on ingest writes them as the linked prefix grows) and never trusted: a proof built
from a wrong tile does not fold to the signed root, so it fails its offline check instead of passing.

An RFC 6962 tree splits a range at the largest power of two below its size, so every perfect subtree on an
inclusion path of 256 leaves or more is aligned to its size and made of whole blocks: its hash is the tree hash
of its tiles. `node(lo, hi)` uses them where they exist and falls back to the leaves where they do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otel_audit import merkle

BLOCK = 256
LEVELS = (1, 2)  # level L covers BLOCK ** L leaves


def _perfect(lo: int, hi: int) -> bool:
    s = hi - lo
    return s > 0 and s & (s - 1) == 0 and lo % s == 0


class Tree:
    """The tree head of any range of a stream's leaves, from tiles where possible.

    `leaves(lo, hi)` gives the leaf hashes lo..hi-1; `tiles(level, lo, hi)` the level's tile hashes of index
    lo..hi-1 that exist (a shorter list, or None entries, where they do not)."""

    def __init__(self, leaves: Callable[[int, int], Sequence[bytes]],
                 tiles: Callable[[int, int, int], Sequence[bytes | None]]) -> None:
        self._leaves = leaves
        self._tiles = tiles

    def node(self, lo: int, hi: int) -> bytes:
        """The tree head of leaves lo..hi-1."""
        s = hi - lo
        if s <= 0:
            return merkle.EMPTY_ROOT
        if _perfect(lo, hi) and s >= BLOCK:
            for level in (2, 1):
                width = BLOCK ** level
                if s >= width:
                    got = list(self._tiles(level, lo // width, hi // width))
                    if len(got) == s // width and all(h is not None for h in got):
                        return merkle.root([h for h in got if h is not None])
            if s > BLOCK:  # tiles missing (an older store): from halves
                mid = lo + s // 2
                return merkle.node_hash(self.node(lo, mid), self.node(mid, hi))
        elif s > BLOCK:
            k = 1 << ((s - 1).bit_length() - 1)
            return merkle.node_hash(self.node(lo, lo + k), self.node(lo + k, hi))
        return merkle.root(list(self._leaves(lo, hi)))

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1: the audit path of leaf `index` in the tree of `size` leaves, leaf sibling first."""
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        frames: list[bytes] = []
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if m < k:
                frames.append(self.node(lo + k, hi))
                hi = lo + k
            else:
                frames.append(self.node(lo, lo + k))
                lo, m = lo + k, m - k
        path.extend(reversed(frames))
        return path


def new_tiles(length_before: int, length_after: int) -> list[tuple[int, int]]:
    """(level, index) of the tiles a linked prefix growing from `length_before` to `length_after` completes,
    level 1 before level 2 (a level-2 tile is folded from the level-1 tiles under it)."""
    out = []
    for level in LEVELS:
        width = BLOCK ** level
        out += [(level, i) for i in range(length_before // width, length_after // width)]
    return out
