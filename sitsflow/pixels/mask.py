"""Cloud masking with the Sentinel-2 scene classification (SCL) band."""

from __future__ import annotations

import numpy as np

SCL_CLASSES = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
DEFAULT_MASK_CLASSES = (0, 1, 3, 8, 9, 10)


def clear_pixels(
    classification: np.ndarray, mask_classes: list[int] | tuple[int, ...]
) -> np.ndarray:
    """True where the pixel has a class (not NaN) that is not one of `mask_classes`."""
    finite = np.isfinite(classification)
    masked = np.isin(np.where(finite, classification, 0).astype(np.int64), list(mask_classes))
    return finite & ~masked


def apply_mask(
    reflectance: np.ndarray, classification: np.ndarray, mask_classes: list[int] | tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Set reflectance to NaN where the pixel is masked; return (masked, observed).

    reflectance is (time, band, y, x), classification (time, y, x). `observed` is True where
    the pixel is clear *and* every band has a value, so all bands share one validity pattern
    (a later gap-fill then treats bands alike).
    """
    observed = clear_pixels(classification, mask_classes)
    observed &= np.isfinite(reflectance).all(axis=1)
    masked = np.where(observed[:, None, :, :], reflectance, np.float32("nan")).astype(np.float32)
    return masked, observed
