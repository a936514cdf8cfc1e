"""The order in which a board visits the training windows of a round (TRAIN_START flags bit 0).

docs/protocol.md §5.4: a keyed permutation that needs no memory on the board, so a board holding 65,535
windows shuffles them without a 128 KiB index: window position ``i`` of epoch ``e`` (counted from the start
of the round, warm-up epochs included) is window ``perm(seed, e, n, i)``, a 4-round Feistel network over
the smallest even-width power of two >= n, with cycle walking into [0, n).  The firmware
(``firmware/core/train.c: odl_perm``) and the Python emulated board compute the same order, so a host can
replay a round exactly (tests compare the downloaded weights with the reference engine's).
"""

from __future__ import annotations

import numpy as np

__all__ = ["perm", "epoch_order"]

M32 = 0xFFFFFFFF


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def perm(seed: int, epoch: int, n: int, i: int) -> int:
    """Index of the window visited at position ``i`` of epoch ``epoch`` (0 <= i < n)."""
    if n <= 1 or i >= n:
        return i
    bits = 2
    while (1 << bits) < n:
        bits += 2
    half = bits // 2
    mask = (1 << half) - 1
    key = _fmix((seed & M32) ^ _fmix((epoch + 0x9E3779B9) & M32))
    y = i
    while True:
        left, right = y >> half, y & mask
        for rnd in range(4):
            f = _fmix(right ^ _fmix((key + rnd) & M32)) & mask
            left, right = right, left ^ f
        y = (left << half) | right
        if y < n:
            return y


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The whole visiting order of one epoch (a permutation of 0..n-1)."""
    return np.fromiter((perm(seed, epoch, n, i) for i in range(n)), dtype=np.int64, count=n)
