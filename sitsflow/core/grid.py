"""The pixel grid of a feature's cube: which CRS, which bounds, how many pixels.

Grids are anchored at (0, 0) of the output CRS, so cubes of neighbouring features share pixel
edges and can be compared or mosaicked without resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from affine import Affine
from shapely import segmentize
from shapely.geometry.base import BaseGeometry

from sitsflow.core.projection import epsg_transformer, reproject

# Densify lon/lat edges (degrees) before projecting so long edges follow the projection's curvature.
DENSIFY_DEGREES = 0.005


class GridRecord(TypedDict):
    """A cube grid as stored in a bbox record (`Grid.to_dict`)."""

    epsg: int
    resolution: float
    bounds: list[float]
    width: int
    height: int


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: `bounds` = (minx, miny, maxx, maxy) in `epsg`, pixel edges."""

    epsg: int
    resolution: float
    bounds: tuple[float, float, float, float]

    @property
    def width(self) -> int:
        return round((self.bounds[2] - self.bounds[0]) / self.resolution)

    @property
    def height(self) -> int:
        return round((self.bounds[3] - self.bounds[1]) / self.resolution)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.bounds[0], 0.0, -self.resolution, self.bounds[3])

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> GridRecord:
        return {
            "epsg": self.epsg,
            "resolution": self.resolution,
            "bounds": list(self.bounds),
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: GridRecord) -> Grid:
        minx, miny, maxx, maxy = data["bounds"]
        return cls(int(data["epsg"]), float(data["resolution"]), (minx, miny, maxx, maxy))

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """Bounding box of the grid in EPSG:4326, densified so it contains the whole grid."""
        to_lonlat = epsg_transformer(self.epsg, 4326)
        minx, miny, maxx, maxy = to_lonlat.transform_bounds(*self.bounds, densify_pts=21)
        return (minx, miny, maxx, maxy)


def project_geometry(geometry_lonlat: BaseGeometry, epsg: int) -> BaseGeometry:
    """Project a lon/lat geometry to `epsg`, densifying edges first."""
    return reproject(segmentize(geometry_lonlat, DENSIFY_DEGREES), 4326, epsg)


def image_grid(aoi_lonlat: BaseGeometry, epsg: int, resolution: float) -> Grid:
    """The smallest grid covering the area of interest: its bounds snapped outward."""
    minx, miny, maxx, maxy = project_geometry(aoi_lonlat, epsg).bounds
    snapped = (
        math.floor(minx / resolution) * resolution,
        math.floor(miny / resolution) * resolution,
        math.ceil(maxx / resolution) * resolution,
        math.ceil(maxy / resolution) * resolution,
    )
    return Grid(epsg, float(resolution), snapped)


def patch_grid(
    feature_lonlat: BaseGeometry, epsg: int, resolution: float, size: tuple[int, int]
) -> Grid:
    """Exactly `size` = (nx, ny) pixels centred on the feature's centroid (within half a pixel)."""
    nx, ny = size
    centroid = project_geometry(feature_lonlat, epsg).centroid
    left = round(centroid.x / resolution - nx / 2) * resolution
    bottom = round(centroid.y / resolution - ny / 2) * resolution
    return Grid(
        epsg, float(resolution), (left, bottom, left + nx * resolution, bottom + ny * resolution)
    )


def outline_lonlat(grid: Grid) -> BaseGeometry:
    """The grid's outline in EPSG:4326, its edges densified to follow the projection."""
    from shapely import segmentize
    from shapely.geometry import box

    minx, miny, maxx, maxy = grid.bounds
    outline = segmentize(box(minx, miny, maxx, maxy), grid.resolution * 10)
    return reproject(outline, grid.epsg, 4326)
