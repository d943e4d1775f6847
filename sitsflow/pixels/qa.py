"""Masking Landsat Collection 2 items with their QA_PIXEL bits, and their QA_RADSAT saturation.

QA_PIXEL (USGS, Landsat 4-9 Collection 2 Level-2): bit 0 fill, 1 dilated cloud, 2 cirrus,
3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water (8-15: confidences). A pixel of an item is
clear when it has a QA value, no bit of `mask.qa_pixel` is set, no masked cloud, cirrus or
shadow bit is set within `mask.dilate_m`, and every band has a value. Fill (bit 0, QA value 1:
outside the scene, Landsat 7's SLC-off stripes) is no data: such a pixel is unobserved whatever
`mask.qa_pixel` says, so another item of the same day can fill it.

QA_RADSAT: bit n-1 set where file band n saturated (bands 1-7 on every instrument); bit 9 a
dropped pixel (TM, ETM+), bit 11 terrain occlusion (OLI). With `mask.radsat`, a saturated
band has no value at that pixel (so the pixel is not clear, as Sentinel-2's DN 65535 is not),
and a dropped or occluded pixel has no value in any band.
"""

from __future__ import annotations

import numpy as np

from sitsflow.core.bands import landsat_file_band
from sitsflow.pixels.mask import dilate

QA_PIXEL_BITS = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "water": 7,
}
# `mask.qa_pixel` presets, as `sitsflow.pixels.mask.MASK_PRESETS` for SCL.
QA_PIXEL_PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow"),
    "strict": ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow"),
}
# The bits `mask.dilate_m` grows (as SCL's clouds, cirrus and shadows).
DILATED_BITS = ("cirrus", "cloud", "cloud_shadow")
FILL_VALUE = 1
# QA_RADSAT bits that void every band of the pixel, by instrument.
RADSAT_ALL_BANDS = {"tm": 9, "etm": 9, "oli": 11}


def _bits_set(qa: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """True where `qa` (an integer array) has any of the bits `names`."""
    flags = 0
    for name in names:
        flags |= 1 << QA_PIXEL_BITS[name]
    found: np.ndarray = (qa & flags) != 0
    return found


def qa_masked(qa_pixel: np.ndarray, bits: tuple[str, ...], dilate_px: float = 0.0) -> np.ndarray:
    """True where a pixel is masked: no QA value (NaN), fill, one of `bits` set, or (with
    `dilate_px`) within that many pixels of a masked cloud, cirrus or shadow bit. `qa_pixel` is
    (..., y, x) float (NaN: no data)."""
    finite = np.isfinite(qa_pixel)
    qa = np.where(finite, qa_pixel, FILL_VALUE).astype(np.int64)
    masked: np.ndarray = ~finite | _bits_set(qa, ["fill", *bits])
    grown = [name for name in DILATED_BITS if name in bits]
    if dilate_px > 0 and grown:
        masked |= dilate(_bits_set(qa, grown) & finite, dilate_px)
    return masked


def fill_to_nan(qa_pixel: np.ndarray) -> None:
    """Fill pixels (bit 0) have no QA value: NaN, in place, so that they count as no data."""
    finite = np.isfinite(qa_pixel)
    qa = np.where(finite, qa_pixel, 0).astype(np.int64)
    qa_pixel[finite & ((qa & 1) != 0)] = np.nan


def saturated(radsat: np.ndarray, band: str, instrument: str) -> np.ndarray:
    """True where run band `band` has no value by QA_RADSAT on `instrument`: the band's own
    saturation bit (file bands 1-7; the thermal band of TM and ETM+ is band 6), or a pixel
    dropped (TM, ETM+) or terrain-occluded (OLI). `radsat` is (..., y, x) float (NaN: no
    data: nothing is flagged there)."""
    finite = np.isfinite(radsat)
    flags = np.where(finite, radsat, 0).astype(np.int64)
    voided: np.ndarray = (flags & (1 << RADSAT_ALL_BANDS[instrument])) != 0
    file_band = landsat_file_band(band, instrument)
    number = int(file_band.rsplit("B", 1)[1])
    if number <= 7:
        voided |= (flags & (1 << (number - 1))) != 0
    return voided
