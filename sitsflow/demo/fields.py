"""Deterministic randomness and the random fields the landscape and the sky are drawn from.

Every random number of the archive comes from a generator seeded by a stable hash of what it
depends on (seed, feature id, day ...), never from Python's salted hash() or a shared global
generator: pixels then depend only on the feature's own parameters, in any worker process and
in any order. The fields are smooth (interpolated lattices) so that thresholding them gives
compact blobs (forest stands, clouds) rather than noise.
"""

from __future__ import annotations

import hashlib

import numpy as np


def digest(*parts: object) -> int:
    """A stable 64-bit integer from `parts` (Python's hash() is salted per process)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def seeded_rng(*parts: object) -> np.random.Generator:
    """A random generator seeded from `parts` only: same parts, same numbers, in any process."""
    return np.random.default_rng(digest(*parts))


def _interpolate_axis(lattice: np.ndarray, n: int, cell: float, axis: int) -> np.ndarray:
    """Resample `lattice` along `axis` to `n` pixels, nodes `cell` pixels apart (smoothstep).

    Plain indexing rather than an interpolation-matrix product: the product would go through
    BLAS, whose threads spin and steal the CPU from the other worker processes.
    """
    position = (np.arange(n) + 0.5) / cell
    lower = np.floor(position).astype(int)
    fraction = position - lower
    fraction = fraction * fraction * (3 - 2 * fraction)
    shape = [1, 1]
    shape[axis] = n
    fraction = fraction.reshape(shape)
    below = np.take(lattice, lower, axis=axis)
    above = np.take(lattice, lower + 1, axis=axis)
    return np.asarray(below * (1 - fraction) + above * fraction)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A smooth random field with features about `cell` pixels across, zero mean, unit std."""
    height, width = shape
    lattice = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2))
    field = _interpolate_axis(_interpolate_axis(lattice, height, cell, 0), width, cell, 1)
    return np.asarray((field - field.mean()) / (field.std() + 1e-12))


def top_fraction(field: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the round(fraction * size) largest values of `field` (exact pixel count)."""
    count = int(round(fraction * field.size))
    mask = np.zeros(field.size, dtype=bool)
    if count > 0:
        mask[np.argpartition(field.ravel(), field.size - count)[field.size - count :]] = True
    return mask.reshape(field.shape)


def upsample2(array: np.ndarray) -> np.ndarray:
    """Each 20 m pixel as its 2 x 2 block of 10 m pixels."""
    return np.repeat(np.repeat(array, 2, axis=0), 2, axis=1)


def shift_mask(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`mask` moved by (rows, cols) pixels (positive = south, east), vacated cells False."""
    height, width = mask.shape
    out = np.zeros_like(mask)
    if abs(rows) >= height or abs(cols) >= width:
        return out
    src_r = slice(max(0, -rows), height - max(0, rows))
    dst_r = slice(max(0, rows), height - max(0, -rows))
    src_c = slice(max(0, -cols), width - max(0, cols))
    dst_c = slice(max(0, cols), width - max(0, -cols))
    out[dst_r, dst_c] = mask[src_r, src_c]
    return out
