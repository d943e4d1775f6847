"""Per-feature time-series CSVs and the combined Parquet file, checked against the cubes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer
from shapely.geometry import Point

from sitsflow.core.grid import Grid
from sitsflow.outputs.timeseries import (
    COLUMNS,
    combine_timeseries,
    feature_timeseries,
    pixel_under_point,
    read_timeseries_csv,
)
from sitsflow.outputs.write import open_cube
from sitsflow.pixels.cube_model import build_dataset, provenance_attrs
from sitsflow.testing.settings import settings_for
from tests.helpers import ARCHIVE_FEATURES, BANDS, EMPTY_FEATURE, INDICES


@pytest.fixture(scope="module")
def run(netcdf_run):
    return netcdf_run


def load_cube(path) -> xr.Dataset:
    with open_cube(path) as cube:
        return cube.load()


def by_band(table: pd.DataFrame, band: str) -> pd.DataFrame:
    return table[table["band"] == band].sort_values("time").reset_index(drop=True)


def expected_pixel(cube: xr.Dataset, lon: float, lat: float) -> tuple[int, int]:
    """Independently of sitsflow: the pixel whose centre is nearest to the projected point."""
    to_grid = Transformer.from_crs(4326, cube.rio.crs.to_epsg(), always_xy=True)
    x, y = to_grid.transform(lon, lat)
    return int(np.abs(cube["y"].values - y).argmin()), int(np.abs(cube["x"].values - x).argmin())


def test_point_csv_is_the_pixel_under_the_point(run):
    cube = load_cube(run / "results" / "cubes" / "p1.nc")
    table = read_timeseries_csv(run / "results" / "timeseries" / "p1.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["id"]) == {"p1"}
    assert list(dict.fromkeys(table["band"])) == BANDS + INDICES
    point = ARCHIVE_FEATURES["p1"]
    row, col = expected_pixel(cube, point.x, point.y)
    for band in BANDS + INDICES:
        series = by_band(table, band)
        np.testing.assert_array_equal(series["time"].to_numpy(), cube["time"].values)
        assert series["value"].dtype == np.float32
        np.testing.assert_array_equal(series["value"].to_numpy(), cube[band].values[:, row, col])
        np.testing.assert_array_equal(series["observed"], cube["observed"].values[:, row, col])
    assert set(table["observed"]) <= {0.0, 1.0}


def test_polygon_csv_is_the_median_of_the_pixels_inside(run):
    cube = load_cube(run / "results" / "cubes" / "poly.nc")
    table = read_timeseries_csv(run / "results" / "timeseries" / "poly.csv")
    steps = cube.sizes["time"]
    assert steps > 0 and len(table) == steps * len(BANDS + INDICES)
    inside = cube["inside"].values.astype(bool)
    assert 0 < inside.sum() < inside.size  # the polygon's edge pixels lie outside it
    share = cube["observed"].values[:, inside].mean(axis=1)
    assert (share < 1).any(), "the archive should have clouds over the polygon"
    for band in BANDS + INDICES:
        series = by_band(table, band)
        median = np.nanmedian(cube[band].values[:, inside], axis=1).astype(np.float32)
        np.testing.assert_array_equal(series["value"].to_numpy(), median)
        np.testing.assert_allclose(series["observed"], share, atol=1e-6)
        counts = np.isfinite(cube[band].values[:, inside]).sum(axis=1)
        np.testing.assert_array_equal(series["n_pixels"].to_numpy(), counts)


def test_feature_without_items_has_an_empty_csv(run):
    text = (run / "results" / "timeseries" / f"{EMPTY_FEATURE[0]}.csv").read_text()
    assert text.splitlines() == [",".join(COLUMNS)]


def test_parquet_holds_every_csv_row(run):
    paths = sorted((run / "results" / "timeseries").glob("*.csv"))
    table = pd.read_parquet(run / "results" / "timeseries.parquet")
    assert list(table.columns) == COLUMNS
    assert len(table) == sum(len(read_timeseries_csv(path)) for path in paths) > 0
    assert table["id"].dtype == "string" and table["value"].dtype == np.float32
    assert str(table["time"].dtype) == "datetime64[ns]"
    expected = combine_timeseries(paths).sort_values(["id", "band", "time"], ignore_index=True)
    got = table.sort_values(["id", "band", "time"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)


def test_median_method_for_points(zarr_run):
    workdir = zarr_run
    cube = load_cube(workdir / "results" / "cubes" / "p1.zarr")
    table = read_timeseries_csv(workdir / "results" / "timeseries" / "p1.csv")
    steps = cube.sizes["time"]
    for band in BANDS:
        median = np.nanmedian(cube[band].values.reshape(steps, -1), axis=1).astype(np.float32)
        np.testing.assert_array_equal(by_band(table, band)["value"].to_numpy(), median)


SMALL_GRID = Grid(32632, 10.0, (500000.0, 5500000.0, 500030.0, 5500040.0))


def small_grid_cube(
    geometry_wkt: str, observed: np.ndarray, inside: np.ndarray | None = None, values=None
) -> xr.Dataset:
    """A 2-date, 4 x 3 pixel cube on SMALL_GRID whose B04 value encodes its pixel (100 * row +
    col, unless `values` says otherwise)."""
    if values is None:
        rows, cols = np.mgrid[0:4, 0:3]
        values = np.broadcast_to(100.0 * rows + cols, (2, 1, 4, 3)).copy()
    return build_dataset(
        grid=SMALL_GRID,
        times=np.array(["2024-01-01", "2024-01-06"], dtype="datetime64[ns]"),
        bands=["B04"],
        reflectance=values,
        classification=None,
        classification_bands=["SCL"],
        observed=observed,
        inside=inside,
        attrs=provenance_attrs(feature_id="t", geometry_wkt=geometry_wkt),
    )


def small_cube(point_lonlat: Point) -> xr.Dataset:
    """The small cube of a point, with one pixel gap-filled on the second date."""
    observed = np.ones((2, 4, 3))
    observed[1, 2, 1] = 0
    return small_grid_cube(point_lonlat.wkt, observed)


def lonlat_of(x: float, y: float, epsg: int = 32632) -> Point:
    return Point(Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y))


def test_pixel_under_point_is_the_pixel_containing_it():
    # x 500012 is in column 1 (500010..500020); y 5500018 in row 2 (5500020..5500010).
    cube = small_cube(lonlat_of(500012.0, 5500018.0))
    assert pixel_under_point(cube) == (2, 1)
    table = feature_timeseries(cube, settings_for().timeseries)
    assert table["value"].tolist() == [201.0, 201.0]
    assert table["observed"].tolist() == [1.0, 0.0]
    assert table["n_pixels"].tolist() == [1, 1]


@pytest.mark.parametrize("epsg", [32632, 3035])
@pytest.mark.parametrize("west", [500000.0, 500003.3, -1234567.891])
def test_grid_read_without_rioxarray_is_rioxarrays(epsg, west):
    """`cube_crs` and `cube_transform` (the time series and summary rows use them, not to load
    rioxarray and dask in every job) give what `cube.rio` gives, exactly, on cubes written
    and read back; without a GeoTransform they leave it to rioxarray (None)."""
    import rioxarray  # noqa: F401 (registers the .rio accessor)

    from sitsflow.outputs.summary import _crs_text
    from sitsflow.pixels.cube_model import GRID_MAPPING, cube_crs, cube_transform

    grid = Grid(epsg, 10.0, (west, 5500000.0, west + 30.0, 5500040.0))
    cube = build_dataset(
        grid=grid,
        times=np.array(["2024-01-01"], dtype="datetime64[ns]"),
        bands=["B04"],
        reflectance=np.zeros((1, 1, 4, 3)),
        classification=None,
        classification_bands=["SCL"],
        observed=np.ones((1, 4, 3)),
        attrs=provenance_attrs(feature_id="t", geometry_wkt="POINT (8 50)"),
    )
    for read in (cube, write_and_open(cube)):
        assert cube_crs(read) == read.rio.crs
        assert tuple(cube_transform(read)) == tuple(read.rio.transform())
        assert _crs_text(read) == read.rio.crs.to_string() == f"EPSG:{epsg}"
    bare = cube.copy()
    bare.coords[GRID_MAPPING].attrs.pop("GeoTransform")
    assert cube_transform(bare) is None


def test_a_batch_builds_a_cube_and_its_time_series_without_rioxarray_or_dask(netcdf_run, tmp_path):
    """What a batch does for each member (`build_cube`, then the time series and summary row
    of the cube just built), in a fresh interpreter: rioxarray and dask, which it does not
    need, cost each job 0.4 s of CPU to import. Opening a file with xarray imports rioxarray
    (xarray's backend plugins load), making an xarray variable imports dask (xarray's probe
    for dask arrays): a batch does neither, it takes the time series from the arrays it
    wrote."""
    import subprocess
    import sys

    script = f"""
import sys
from sitsflow.testing.settings import settings_for
from sitsflow.workflow.stages import build_cube, cube_timeseries

settings = settings_for(bands={BANDS!r}, crs="utm", resolution=10)
for fid in ("p1", "poly"):
    output = {str(tmp_path)!r} + f"/{{fid}}.nc"
    built = build_cube({str(netcdf_run / "results")!r} + f"/bbox/{{fid}}.geojson",
                       {str(netcdf_run / "results")!r} + f"/items/{{fid}}.json",
                       settings.cube, output)
    series = cube_timeseries(output, settings.timeseries, built)
    assert len(series.table) and series.summary_row["crs"].startswith("EPSG:")
print(sorted(m for m in ("dask", "rioxarray") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def write_and_open(cube: xr.Dataset) -> xr.Dataset:
    import tempfile

    from sitsflow.outputs.write import write_netcdf

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/c.nc"
        write_netcdf(cube, path)
        return open_cube(path).load()


def test_point_outside_the_grid_is_an_error():
    cube = small_cube(lonlat_of(500045.0, 5500018.0))
    with pytest.raises(ValueError, match="outside the cube grid"):
        pixel_under_point(cube)


def small_polygon_cube(all_touched: bool = False) -> xr.Dataset:
    """A 2-date, 4 x 3 pixel cube (B04 = 100 * row + col) of a triangle over half its window,
    with its `inside` pixels as rasterio's geometry_mask gives them."""
    from rasterio.features import geometry_mask
    from shapely.geometry import Polygon

    corners = [(500000.0, 5500040.0), (500000.0, 5500000.0), (500030.0, 5500000.0)]
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    lonlat = Polygon([to_lonlat.transform(x, y) for x, y in corners])
    inside = geometry_mask(
        [Polygon(corners)], (4, 3), SMALL_GRID.transform, all_touched=all_touched, invert=True
    )
    rows, cols = np.mgrid[0:4, 0:3]
    values = np.broadcast_to(100.0 * rows + cols, (2, 1, 4, 3)).copy()
    values[1, 0, 3, 0] = np.nan  # one pixel without a value on the second date
    return small_grid_cube(lonlat.wkt, np.isfinite(values[:, 0]), inside, values)


@pytest.mark.parametrize("method", ["median", "mean"])
def test_polygon_statistics_use_the_pixels_inside_only(method):
    cube = small_polygon_cube()
    inside = cube["inside"].values.astype(bool)
    assert 0 < inside.sum() < inside.size  # a triangle: part of its bounding box
    settings = settings_for(timeseries={"polygon_method": method}).timeseries
    table = feature_timeseries(cube, settings)
    reduce = np.nanmedian if method == "median" else np.nanmean
    values = cube["B04"].values
    expected = [reduce(values[step][inside]) for step in range(2)]
    whole_window = [reduce(values[step]) for step in range(2)]
    np.testing.assert_allclose(table["value"], expected, rtol=1e-6)
    assert not np.allclose(expected, whole_window)  # the bounding box would differ
    n_inside = int(inside.sum())
    missing = int(inside[3, 0])
    assert table["n_pixels"].tolist() == [n_inside, n_inside - missing]
    expected_share = [1.0, (n_inside - missing) / n_inside]
    np.testing.assert_allclose(table["observed"], expected_share, atol=1e-6)  # rounded


def test_all_touched_counts_more_pixels_inside():
    assert small_polygon_cube(True)["inside"].sum() > small_polygon_cube(False)["inside"].sum()


def build_again(run, fid: str, indices: list[str], output: str):
    """`build_cube` for a feature of `run` (its bbox and items), into `output`; the cube it
    returns."""
    from sitsflow.workflow.stages import build_cube

    settings = settings_for(bands=BANDS, indices=indices, crs="utm", resolution=10)
    return build_cube(
        str(run / f"results/bbox/{fid}.geojson"),
        str(run / f"results/items/{fid}.json"),
        settings.cube,
        output,
    )


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("fid", "indices", "suffix"),
    [
        ("p1", [], ".nc"),
        ("poly", [], ".nc"),
        # the other shapes in the full suite (`make test`)
        pytest.param("p1", INDICES, ".nc", marks=SLOW),
        pytest.param("poly", INDICES, ".nc", marks=SLOW),
        pytest.param(EMPTY_FEATURE[0], [], ".nc", marks=SLOW),
        pytest.param(EMPTY_FEATURE[0], INDICES, ".nc", marks=SLOW),
        pytest.param("p1", [], ".zarr", marks=SLOW),
    ],
)
def test_a_cube_just_built_gives_the_time_series_of_its_file(
    netcdf_run, tmp_path, fid, indices, suffix
):
    """A batch takes a member's time series and summary row from the cube its cube stage just
    built, not from the file it wrote: the two must be equal, for cubes built as arrays (read
    as they are, without xarray) or as a Dataset (spectral indices), netCDF or Zarr, points,
    polygons and empty cubes, in every method and layout."""
    from sitsflow.workflow.stages import cube_timeseries

    output = str(tmp_path / f"{fid}{suffix}")
    built = build_again(netcdf_run, fid, indices, output)
    for method, layout in [("pixel", "long"), ("median", "wide"), ("pixel", "wide")]:
        timeseries = settings_for(timeseries={"method": method, "layout": layout}).timeseries
        from_memory = cube_timeseries(output, timeseries, built)
        from_file = cube_timeseries(output, timeseries)
        pd.testing.assert_frame_equal(from_memory.table, from_file.table)
        assert from_memory.method == from_file.method
        assert from_memory.summary_row == from_file.summary_row
        assert len(from_file.table) or fid == EMPTY_FEATURE[0]


@pytest.mark.parametrize(
    ("fid", "indices"), [("p1", []), pytest.param("poly", INDICES, marks=SLOW)]
)
def test_a_cube_just_built_draws_the_quicklook_of_its_file(netcdf_run, tmp_path, fid, indices):
    """As above, for the quicklook a batch draws from the cube it just built."""
    from sitsflow.workflow.stages import render_quicklook_file

    output = str(tmp_path / f"{fid}.nc")
    built = build_again(netcdf_run, fid, indices, output)
    render_quicklook_file(output, str(tmp_path / "memory.png"), built)
    render_quicklook_file(output, str(tmp_path / "file.png"))
    assert (tmp_path / "memory.png").read_bytes() == (tmp_path / "file.png").read_bytes()
