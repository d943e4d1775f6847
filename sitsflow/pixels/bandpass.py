"""Sentinel-2 MSI reflectance adjusted to Landsat 8 OLI's bandpasses (config `bandpass: hls`).

MSI and OLI measure slightly different bands; the Harmonized Landsat Sentinel-2 (HLS) v2.0
product adjusts MSI's surface reflectance to OLI's with one linear fit per band and platform,
OLI = slope * MSI + offset, fitted on 500 Hyperion spectra (NASA GSFC, "HLS bandpass
adjustment", https://hls.gsfc.nasa.gov/algorithms/bandpass-adjustment/; Claverie et al. 2018,
Remote Sensing of Environment 219, 145-161). Only the bands both sensors measure are adjusted.
HLS lists Sentinel-2A and 2B; a later platform (Sentinel-2C) takes 2B's coefficients, and the
cube's `bandpass_adjustment` attribute says so.
"""

from __future__ import annotations

import numpy as np

HLS_SOURCE = (
    "HLS v2.0 bandpass adjustment, OLI = slope * MSI + offset "
    "(https://hls.gsfc.nasa.gov/algorithms/bandpass-adjustment/; Claverie et al. 2018, "
    "Remote Sensing of Environment 219, 145-161)"
)
# run band -> (slope, offset), per Sentinel-2 platform
HLS_COEFFICIENTS: dict[str, dict[str, tuple[float, float]]] = {
    "sentinel-2a": {
        "coastal": (0.9959, -0.0002),
        "blue": (0.9778, -0.004),
        "green": (1.0053, -0.0009),
        "red": (0.9765, 0.0009),
        "nir08": (0.9983, -0.0001),
        "swir16": (0.9987, -0.0011),
        "swir22": (1.003, -0.0012),
    },
    "sentinel-2b": {
        "coastal": (0.9959, -0.0002),
        "blue": (0.9778, -0.004),
        "green": (1.0075, -0.0008),
        "red": (0.9761, 0.001),
        "nir08": (0.9966, 0.0),
        "swir16": (1.0, -0.0003),
        "swir22": (0.9867, 0.0004),
    },
}
FALLBACK_PLATFORM = "sentinel-2b"


def coefficients_for(platform: str) -> tuple[str, dict[str, tuple[float, float]]]:
    """The platform whose coefficients a Sentinel-2 item of `platform` takes, and them."""
    chosen = platform if platform in HLS_COEFFICIENTS else FALLBACK_PLATFORM
    return chosen, HLS_COEFFICIENTS[chosen]


def adjust_to_oli(reflectance: np.ndarray, bands: list[str], platform: str) -> str:
    """Adjust one Sentinel-2 item's `reflectance` (band, y, x), in place, to OLI's bandpasses;
    return which platform's coefficients were used."""
    chosen, table = coefficients_for(platform)
    for index, band in enumerate(bands):
        if band in table:
            slope, offset = table[band]
            layer = reflectance[index]
            layer *= np.float32(slope)
            layer += np.float32(offset)
    return chosen
