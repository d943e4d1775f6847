import numpy as np

from sitsflow.pixels.mask import DEFAULT_MASK_CLASSES, apply_mask, clear_pixels


def test_clear_pixels_default_classes():
    scl = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, np.nan], dtype=np.float32)
    clear = clear_pixels(scl, DEFAULT_MASK_CLASSES)
    expected_clear = {2, 4, 5, 6, 7, 11}
    assert [bool(c) for c in clear] == [k in expected_clear for k in range(12)] + [False]


def test_apply_mask_sets_nan_in_all_bands_and_reports_observed():
    reflectance = np.ones((2, 3, 1, 2), dtype=np.float32)
    reflectance[1, 2, 0, 1] = np.nan  # one band missing: the pixel is not observed at all
    scl = np.array([[[4, 9]], [[8, 5]]], dtype=np.float32)
    masked, observed = apply_mask(reflectance, scl, [8, 9])
    assert observed.tolist() == [[[True, False]], [[False, False]]]
    assert np.isnan(masked[0, :, 0, 1]).all() and np.isnan(masked[1]).all()
    assert (masked[0, :, 0, 0] == 1).all()


def test_custom_classes_keep_cirrus():
    scl = np.array([10, 3], dtype=np.float32)
    assert clear_pixels(scl, [3]).tolist() == [True, False]
