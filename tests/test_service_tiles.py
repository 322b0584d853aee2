"""Inclusion paths from stored subtree hashes (otel_audit.service.tiles) against the reference Merkle code:
the same path as merkle.inclusion_proof, valid against merkle.root, for sizes around every tile boundary, with
all tiles present, the level-2 ones missing, or none."""

from __future__ import annotations

import hashlib
import random

import pytest

from otel_audit import merkle
from otel_audit.service.tiles import BLOCK, Tree, new_tiles


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 65537, 70000, 140001])
@pytest.mark.parametrize("present", ["all", "level1", "none"])
def test_paths_from_tiles_are_the_reference_paths(n: int, present: str) -> None:
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    t1 = {i: merkle.root(leaves[i * BLOCK:(i + 1) * BLOCK]) for i in range(n // BLOCK)}
    t2 = {i: merkle.root([t1[j] for j in range(i * BLOCK, (i + 1) * BLOCK)]) for i in range(n // BLOCK ** 2)}
    tiles = {"all": {1: t1, 2: t2}, "level1": {1: t1, 2: {}}, "none": {1: {}, 2: {}}}[present]
    tree = Tree(lambda lo, hi: leaves[lo:hi], lambda level, lo, hi: [tiles[level].get(i) for i in range(lo, hi)])
    root = merkle.root(leaves)
    rnd = random.Random(n)
    for idx in sorted({0, n - 1, n // 2, rnd.randrange(n), min(n - 1, BLOCK), min(n - 1, BLOCK ** 2)}):
        path = tree.inclusion_path(idx, n)
        assert merkle.verify_inclusion(leaves[idx], idx, n, path, root), (n, idx)
        if n <= 1000:
            assert path == merkle.inclusion_proof(leaves, idx)
        assert tree.node(0, n) == root
    assert merkle.root(leaves) == root


def test_a_wrong_tile_gives_a_path_that_does_not_verify() -> None:
    n = 3000
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    t1 = {i: merkle.root(leaves[i * BLOCK:(i + 1) * BLOCK]) for i in range(n // BLOCK)}
    t1[3] = bytes(32)
    tree = Tree(lambda lo, hi: leaves[lo:hi], lambda level, lo, hi: [t1.get(i) if level == 1 else None
                                                                      for i in range(lo, hi)])
    assert not merkle.verify_inclusion(leaves[100], 100, n, tree.inclusion_path(100, n), merkle.root(leaves))


def test_new_tiles_lists_every_completed_block_once() -> None:
    assert new_tiles(0, 255) == []
    assert new_tiles(0, 256) == [(1, 0)]
    assert new_tiles(250, 600) == [(1, 0), (1, 1)]
    assert new_tiles(65530, 65536) == [(1, 255), (2, 0)]
    got = [t for a, b in ((0, 1000), (1000, 70000), (70000, 140000)) for t in new_tiles(a, b)]
    assert got.count((2, 0)) == 1 and len([t for t in got if t[0] == 1]) == 140000 // BLOCK
