"""The bands of the archive: five reflectance bands, the SCL and its classes, nodata.

Names are kept for both catalogs (`B04` on Planetary Computer, `red` on Earth Search) with the
`eo:bands` fields each one publishes; the SCL classes map to the `s2:*_percentage` properties
the items report, and classes 8, 9 and 10 make up `eo:cloud_cover`.
"""

from __future__ import annotations

from dataclasses import dataclass

NODATA = 0  # DN of pixels without data, in every band


@dataclass(frozen=True)
class Band:
    """One reflectance band: names on both catalogs, resolution and `eo:bands` fields."""

    name: str
    common_name: str
    gsd: int
    center_wavelength: float
    full_width_half_max: float
    description: str
    earth_search_title: str


REFLECTANCE_BANDS = (
    Band("B02", "blue", 10, 0.49, 0.098, "Band 2 - Blue", "Blue - 10m"),
    Band("B03", "green", 10, 0.56, 0.045, "Band 3 - Green", "Green - 10m"),
    Band("B04", "red", 10, 0.665, 0.038, "Band 4 - Red", "Red - 10m"),
    Band("B08", "nir", 10, 0.842, 0.145, "Band 8 - NIR", "NIR 1 - 10m"),
    Band("B11", "swir16", 20, 1.61, 0.143, "Band 11 - SWIR (1.6)", "SWIR 1.6\u03bcm - 20m"),
)
SCL_NAME = "SCL"

# Scene classification values and the property each one's percentage is reported under.
SCL_PERCENTAGES = {
    1: "s2:saturated_defective_pixel_percentage",
    2: "s2:dark_features_percentage",
    3: "s2:cloud_shadow_percentage",
    4: "s2:vegetation_percentage",
    5: "s2:not_vegetated_percentage",
    6: "s2:water_percentage",
    7: "s2:unclassified_percentage",
    8: "s2:medium_proba_clouds_percentage",
    9: "s2:high_proba_clouds_percentage",
    10: "s2:thin_cirrus_percentage",
    11: "s2:snow_ice_percentage",
}
CLOUD_CLASSES = (8, 9, 10)
