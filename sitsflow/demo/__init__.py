"""A synthetic, Sentinel-2-shaped L2A archive for the features of a vector file (`make demo`).

Real STAC item layouts (Planetary Computer or Earth Search Collection 1), UTM tiles on the MGRS
naming scheme, tiled DEFLATE COGs with overviews, an SCL band, processing baselines and the
+1000 DN offset: what the workflow meets in a real archive, generated offline.
"""

from sitsflow.demo.archive import (
    LAYOUTS,
    archive_size,
    features_from_vector,
    generate_archive,
    tile_bounds_utm,
    tile_name,
)

__all__ = [
    "LAYOUTS",
    "archive_size",
    "features_from_vector",
    "generate_archive",
    "tile_bounds_utm",
    "tile_name",
]
