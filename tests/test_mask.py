"""Cloud masking (sitsflow/pixels/mask.py): classes, presets, dilation."""

import numpy as np
import pytest

from sitsflow.pixels.mask import (
    DEFAULT_MASK_CLASSES,
    MASK_PRESETS,
    clear_pixels,
    dilate,
    masked_classes,
)
from sitsflow.testing.settings import settings_for


def test_clear_pixels_default_classes():
    scl = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, np.nan], dtype=np.float32)
    clear = clear_pixels(scl, DEFAULT_MASK_CLASSES)
    expected_clear = {2, 4, 5, 6, 7, 11}
    assert [bool(c) for c in clear] == [k in expected_clear for k in range(12)] + [False]


def test_custom_classes_keep_cirrus():
    scl = np.array([10, 3], dtype=np.float32)
    assert clear_pixels(scl, [3]).tolist() == [True, False]


def test_presets():
    assert MASK_PRESETS["default"] == (0, 1, 3, 8, 9, 10)
    assert set(MASK_PRESETS["strict"]) - set(MASK_PRESETS["default"]) == {2, 7, 11}
    assert settings_for().cube.mask.classes == MASK_PRESETS["default"]
    strict = settings_for(mask={"classes": list(MASK_PRESETS["strict"])})
    assert strict.cube.mask.classes == MASK_PRESETS["strict"]


def disk(radius: float, size: int = 21) -> np.ndarray:
    """What a disk dilation of one centre pixel must give, by distance."""
    rows, cols = np.mgrid[:size, :size] - size // 2
    return rows**2 + cols**2 <= radius**2


@pytest.mark.parametrize("radius", [1, 1.5, 2.9, 4, 7.3])
def test_dilation_of_one_pixel_is_a_disk(radius):
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    np.testing.assert_array_equal(dilate(mask, radius), disk(radius))


def test_dilation_at_the_edges_and_of_stacks():
    mask = np.zeros((2, 6, 7), dtype=bool)
    mask[0, 0, 0] = True
    mask[1, 5, 6] = True
    grown = dilate(mask, 2)
    assert grown[0, :3, :3].sum() == 3 + 2 + 1  # the disk's quarter in the corner
    assert grown[0].sum() == 6 and grown[1].sum() == 6  # each layer on its own
    assert not grown[0, 5, 6] and grown[1, 5, 6]
    np.testing.assert_array_equal(dilate(mask, 0.5), mask)


@pytest.mark.parametrize("top", [12, 256, 70000])
def test_masked_classes_are_the_chosen_ones_whatever_their_range(top):
    """The lookup table of 8-bit classes and `np.isin` beyond agree, NaN masked."""
    rng = np.random.default_rng(top)
    classes = rng.integers(-3 if top > 256 else 0, top, (3, 20, 20)).astype(np.float32)
    classes[0, 0, 0] = np.nan
    chosen = [0, 3, 9, 255, 300]
    expected = np.isin(classes, chosen) | np.isnan(classes)
    np.testing.assert_array_equal(masked_classes(classes, chosen), expected)


def test_dilation_grows_clouds_and_shadows_only():
    scl = np.full((9, 9), 4, dtype=np.float32)
    scl[4, 4] = 9  # a cloud: grown
    scl[0, 0] = 0  # no data: masked, not grown
    scl[8, 8] = 11  # snow, masked by the strict preset: not grown
    masked = masked_classes(scl, MASK_PRESETS["strict"], dilate_px=2)
    expected = np.zeros((9, 9), dtype=bool)
    expected[2:7, 2:7] = disk(2, 5)
    expected[0, 0] = expected[8, 8] = True
    np.testing.assert_array_equal(masked, expected)
    assert masked_classes(scl, MASK_PRESETS["strict"]).sum() == 3  # no dilation by default
