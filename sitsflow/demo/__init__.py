"""A synthetic, Sentinel-2-shaped L2A archive for the features of a vector file (`make demo`).

Real STAC item layouts (Planetary Computer or Earth Search Collection 1), UTM tiles on the MGRS
naming scheme, tiled DEFLATE COGs with overviews, an SCL band, processing baselines and the
+1000 DN offset: what the workflow meets in a real archive, generated offline.

One module per concern: `tiles` (tile bounds, MGRS-like names, acquisition days, orbits and
baselines), `landscape` (parcels, phenology, surface reflectance), `clouds` (sky and SCL),
`scene` (one acquisition's DN), `cogs` (COG bytes), `catalog` (STAC items of both layouts),
`archive` (`generate_archive`: planning, reuse, workers, manifest); `bands` and `fields` hold
the band definitions and the seeded random fields they share; `options` the departures from the
kind default that real archives make (issue 12), all off by default.
"""

from sitsflow.demo.archive import archive_size, features_from_vector, generate_archive
from sitsflow.demo.catalog import LAYOUTS
from sitsflow.demo.tiles import tile_bounds_utm, tile_name

__all__ = [
    "LAYOUTS",
    "archive_size",
    "features_from_vector",
    "generate_archive",
    "tile_bounds_utm",
    "tile_name",
]
