"""The order in which a board visits a round's training windows (device/nucleo/shuffle.py, docs/protocol.md
§5.4), with exact expected orders.

The literal orders below were taken once from the firmware's own ``odl_perm`` (firmware/core/train.c, built
with the host gcc and run outside Python), not from the code under test: the emulated board and the real board
must visit the windows in the same order, byte for byte, or a host cannot replay a round.
"""

from __future__ import annotations

import numpy as np
import pytest

from device.nucleo.shuffle import epoch_order, perm

# (seed, epoch, n) -> the firmware's whole order (odl_perm for i = 0 .. n-1)
FIRMWARE_ORDERS = {
    (0, 0, 2): [0, 1],
    (1, 0, 2): [1, 0],  # two windows are shuffled too
    (2, 0, 2): [1, 0],
    (0, 0, 3): [2, 1, 0],
    (1, 0, 5): [3, 0, 1, 2, 4],
    (1, 1, 5): [3, 2, 4, 0, 1],
    (2, 0, 5): [3, 2, 1, 0, 4],
    (12345, 0, 4): [2, 1, 0, 3],
    (12345, 2, 15): [9, 8, 4, 5, 7, 14, 0, 1, 3, 2, 12, 13, 11, 10, 6],
    (42, 0, 16): [13, 9, 8, 0, 2, 14, 6, 1, 15, 3, 5, 12, 7, 10, 4, 11],
    (42, 1, 16): [10, 11, 0, 15, 12, 4, 14, 9, 8, 1, 2, 13, 7, 6, 5, 3],
    (42, 0, 17): [0, 12, 5, 9, 15, 3, 14, 1, 10, 16, 8, 7, 2, 13, 4, 11, 6],
    (7, 3, 20): [15, 18, 14, 3, 9, 16, 10, 1, 19, 17, 4, 5, 2, 12, 0, 8, 11, 6, 7, 13],
    (4294967295, 7, 10): [9, 7, 0, 1, 3, 6, 4, 5, 2, 8],
    (4294967295, 0, 6): [1, 4, 3, 2, 5, 0],
    # epoch + 0x9E3779B9 wraps past 2^32 (the firmware's uint32 arithmetic)
    (5, 4294967295, 10): [9, 5, 4, 6, 3, 1, 0, 8, 2, 7],
    # epoch + 0x9E3779B9 == 2^32 exactly: fmix(0)
    (5, 1640531527, 10): [4, 5, 6, 7, 3, 9, 1, 0, 2, 8],
}

# (seed, epoch, n) -> the firmware's first positions of a longer order
FIRMWARE_PREFIXES = {
    (3, 0, 256): [63, 30, 40, 42, 110, 151, 230, 177, 163, 131, 4, 139],
    (3, 0, 257): [89, 63, 27, 138, 164, 163, 141, 239, 17, 5, 209, 210],
    (99, 4, 1000): [162, 656, 646, 472, 159, 512, 703, 783, 677, 491, 870, 670],
    (1, 1, 65535): [59418, 14468, 29655, 27221, 39242, 2820, 16582, 4983],
}


@pytest.mark.parametrize(("seed", "epoch", "n"), list(FIRMWARE_ORDERS))
def test_epoch_order_is_the_firmwares_order(seed, epoch, n):
    """A round's visiting order is exactly the one the firmware computes (odl_perm)."""
    want = FIRMWARE_ORDERS[(seed, epoch, n)]
    got = epoch_order(seed, epoch, n)
    assert got.dtype == np.int64 and got.shape == (n,)
    assert got.tolist() == want
    assert [perm(seed, epoch, n, i) for i in range(n)] == want


@pytest.mark.parametrize(("seed", "epoch", "n"), list(FIRMWARE_PREFIXES))
def test_long_orders_start_like_the_firmwares(seed, epoch, n):
    """For n = 256, 257, 1000 and 65,535 (Feistel halves of 4, 5 and 8 bits) the first positions are the
    firmware's."""
    want = FIRMWARE_PREFIXES[(seed, epoch, n)]
    assert [perm(seed, epoch, n, i) for i in range(len(want))] == want


def test_positions_past_the_end_are_returned_unchanged():
    """perm(seed, epoch, n, i) = i when i >= n (the firmware does the same: odl_perm printed n, n+1)."""
    for seed, epoch, n in list(FIRMWARE_ORDERS) + list(FIRMWARE_PREFIXES):
        assert perm(seed, epoch, n, n) == n
        assert perm(seed, epoch, n, n + 1) == n + 1
    assert perm(42, 0, 16, 1000) == 1000


def test_zero_and_one_window_are_in_stored_order():
    """n <= 1: nothing to shuffle, whatever the seed and epoch."""
    assert epoch_order(42, 3, 0).tolist() == []
    assert epoch_order(42, 3, 0).dtype == np.int64
    assert epoch_order(42, 3, 1).tolist() == [0]
    assert perm(42, 3, 1, 0) == 0
    assert perm(42, 3, 0, 0) == 0
    assert perm(42, 3, 1, 5) == 5


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 15, 16, 17, 255, 256, 257])
def test_every_epoch_order_is_a_permutation(n):
    """Each window is visited exactly once per epoch, for n on both sides of each Feistel width."""
    for seed, epoch in [(0, 0), (1, 0), (1, 1), (2**32 - 1, 9), (123456789, 4)]:
        order = epoch_order(seed, epoch, n)
        assert sorted(order.tolist()) == list(range(n))


def test_different_epochs_and_seeds_give_different_orders():
    """A new epoch (and a new seed) visits the windows in a new order."""
    orders = {tuple(epoch_order(seed, epoch, 64).tolist()) for seed in (0, 1, 2) for epoch in range(4)}
    assert len(orders) == 12
    assert epoch_order(7, 0, 64).tolist() != list(range(64))


def test_seed_is_taken_modulo_2_to_the_32():
    """The board's seed is a uint32: a host seed >= 2^32 gives the order of its low 32 bits."""
    for seed in (7, 42, 2**32 - 1):
        for n in (5, 16, 20):
            assert epoch_order(seed + 2**32, 3, n).tolist() == epoch_order(seed, 3, n).tolist()
            assert epoch_order(seed + 5 * 2**32, 3, n).tolist() == epoch_order(seed, 3, n).tolist()
    assert epoch_order(2**32 + 7, 3, 20).tolist() == FIRMWARE_ORDERS[(7, 3, 20)]
