import math

import pytest
from pyproj import Geod
from shapely.geometry import Point, box

from sitsflow.core.features import Feature, search_geometry
from sitsflow.core.grid import image_grid, patch_grid, project_geometry

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, 70.0])
def test_point_buffer_is_metres_at_any_latitude(lat):
    aoi = search_geometry(Feature("p", Point(10.0, lat)), 1000.0)
    minx, miny, maxx, maxy = aoi.bounds
    east_west = GEOD.inv(minx, lat, maxx, lat)[2]
    north_south = GEOD.inv(10.0, miny, 10.0, maxy)[2]
    assert east_west == pytest.approx(2000.0, rel=0.01)
    assert north_south == pytest.approx(2000.0, rel=0.01)


def test_polygon_keeps_its_own_geometry():
    polygon = box(-1.3, 44.5, -1.2, 44.6)
    assert search_geometry(Feature("poly", polygon), 1000.0).equals(polygon)


@pytest.mark.parametrize("epsg,res", [(3035, 20.0), (32632, 10.0), (3035, 30.0)])
def test_image_grid_covers_aoi_and_is_snapped(epsg, res):
    aoi = search_geometry(Feature("p", Point(8.49, 49.85)), 1000.0)
    grid = image_grid(aoi, epsg, res)
    projected = project_geometry(aoi, epsg)
    assert box(*grid.bounds).contains(projected)
    for value in grid.bounds:
        assert value / res == pytest.approx(round(value / res))
    # snapped outward by less than one pixel on each side
    pminx, pminy, pmaxx, pmaxy = projected.bounds
    assert pminx - grid.bounds[0] < res and grid.bounds[2] - pmaxx < res
    assert pminy - grid.bounds[1] < res and grid.bounds[3] - pmaxy < res
    assert grid.width == round((grid.bounds[2] - grid.bounds[0]) / res)


@pytest.mark.parametrize("size", [(64, 64), (33, 17), (1, 1)])
def test_patch_grid_exact_size_and_centred(size):
    point = Point(11.17, 50.01)
    grid = patch_grid(point, 3035, 20.0, size)
    assert (grid.width, grid.height) == size
    centre = project_geometry(point, 3035)
    cx = (grid.bounds[0] + grid.bounds[2]) / 2
    cy = (grid.bounds[1] + grid.bounds[3]) / 2
    assert abs(cx - centre.x) <= 10.0 and abs(cy - centre.y) <= 10.0
    assert grid.transform.a == 20.0 and grid.transform.e == -20.0


def test_bounds_lonlat_contains_grid_corners():
    grid = image_grid(search_geometry(Feature("p", Point(25.0, 60.0)), 1000.0), 3035, 20.0)
    minx, miny, maxx, maxy = grid.bounds_lonlat()
    assert maxx - minx > 0.03  # ~2 km at 60 N is ~0.036 deg of longitude
    assert math.isclose((miny + maxy) / 2, 60.0, abs_tol=0.01)
