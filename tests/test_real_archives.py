"""Right numbers where real Sentinel-2 archives differ from the kind demo (issue 12).

Each test builds a demo archive with one of the generator's realistic options (averaged
overviews, a checkerboard SCL, overlapping tiles of one pass with their own clouds, COGs
without a nodata tag, a swath edge, saturated pixels), shows what a naive read of it gives, and
checks what sitsflow's cube holds instead.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from sitsflow.catalog.providers import normalise_item, resolve_provider
from sitsflow.core.bbox import BboxRecord, grid_of, make_aoi_record
from sitsflow.core.features import Feature
from sitsflow.pixels.cube import make_cube, read_and_mosaic
from sitsflow.pixels.load import read_items
from sitsflow.pixels.tiles import TileReader
from sitsflow.testing.settings import cube_settings, grid_settings
from tests.helpers import feature_items, s2_group

START, END = "2022-06-01", "2022-06-30"
POINT = Point(8.491383, 49.854370)
BANDS = ["B04", "B08"]
ALL_BANDS = [*BANDS, "SCL"]
# 1890 m of margin gives tiles of 192 px at 20 m: overviews are exact 2 x 2 blocks.
EXACT_BLOCKS = {"margin_m": 1890.0}


def record_and_items(
    catalog: str, resolution: float, geometry=POINT
) -> tuple[BboxRecord, list[dict]]:
    record = make_aoi_record(
        Feature("f", geometry), grid_settings(crs="utm", resolution=resolution, buffer_m=300)
    )
    return record, feature_items(catalog, record, START, END)


def cube_of(catalog: str, resolution: float, **settings: object):
    record, items = record_and_items(catalog, resolution)
    info = {"catalog": catalog, "collection": "sentinel-2-l2a"}
    return make_cube(record, items, info, cube_settings(bands=ALL_BANDS, **settings))


def normalised(items: list[dict]) -> list[dict]:
    provider = resolve_provider("auto", items=items)
    return [normalise_item(item, ALL_BANDS, provider) for item in items]


# ---- 2. class bands are never read from averaged overviews ----------------------------------


@pytest.fixture(scope="module")
def averaged(make_archive) -> str:
    root = make_archive(
        [("f", POINT)], START, END, seed=3, clear_fraction=0.9, scl_pattern="checkerboard",
        overview_resampling="average", scl_overview_resampling="average", **EXACT_BLOCKS,
    )  # fmt: skip
    return str(root / "items.json")


def classes_by_date(layers: np.ndarray) -> list[set[int]]:
    return [set(np.unique(layer[np.isfinite(layer)]).astype(int).tolist()) for layer in layers]


def test_a_40m_cube_reads_scl_at_full_resolution_when_its_overviews_are_averaged(averaged):
    record, items = record_and_items(averaged, 40)
    found = normalised(items)
    # the classes the files hold over the window, from a 20 m (full-resolution) read
    record_20, _ = record_and_items(averaged, 20)
    full = classes_by_date(read_items(found, ["SCL"], grid_of(record_20)).data[:, 0])
    assert {5, 9} in full  # the checkerboard's dates
    # reading SCL from its 2x overview (as a reflectance band is) gives means of the
    # checkerboard's 5 and 9: class 7, which the files do not hold there
    naive = classes_by_date(
        read_items(found, ALL_BANDS, grid_of(record), class_bands=()).data[:, -1]
    )
    assert any(not read <= held for read, held in zip(naive, full, strict=True))
    cube = cube_of(averaged, 40)
    steps = classes_by_date(cube["SCL"].values.astype(np.float32))
    assert all(read <= held for read, held in zip(steps, full, strict=True))
    assert cube["SCL"].attrs["source_level"].startswith("full resolution")
    # the 10 m band's coarsest overview of these small tiles (x2, 20 m; a full-size file would
    # use its x4)
    assert cube["B04"].attrs["source_level"] == "overview 1 (x2, AVERAGE) (6 files)"


def test_reflectance_overviews_stay_in_use_and_say_how_they_were_made(make_archive):
    root = make_archive([("f", POINT)], START, END, seed=3, **EXACT_BLOCKS)
    cube = cube_of(str(root / "items.json"), 20)
    # GDAL before 3.12 writes no resampling tag: the level is used and said to be unknown
    assert cube["B04"].attrs["source_level"].startswith("overview 1 (x2, resampling not recorded)")
    assert cube["SCL"].attrs["source_level"].startswith("full resolution")


# ---- 3. mask, then mosaic ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def overlapping(make_archive) -> str:
    root = make_archive([("f", POINT)], START, END, seed=5, overlapping_tiles=True)
    return str(root / "items.json")


def test_overlapping_tiles_each_pixel_comes_whole_from_one_clear_item(overlapping):
    record, items = record_and_items(overlapping, 10)
    mask = cube_settings(bands=ALL_BANDS).mask
    grid, lon = grid_of(record), record["properties"]["centroid_lonlat"][0]
    found = normalised(items)
    with TileReader() as loader:
        _, _, mosaic = read_and_mosaic([s2_group(found, BANDS)], BANDS, mask, grid, lon, loader)
        alone = {
            item["id"]: read_and_mosaic([s2_group([item], BANDS)], BANDS, mask, grid, lon, loader)[
                2
            ]
            for item in found
        }
    by_day: dict[str, list[str]] = {}
    for item in found:  # sorted by time, as the mosaic's steps
        by_day.setdefault(item["properties"]["datetime"][:10], []).append(item["id"])
    assert len(by_day) == len(mosaic.times) and {len(ids) for ids in by_day.values()} == {2}
    disagreeing = lost_before = 0
    for step, ids in enumerate(by_day.values()):
        # band by band, the later tile on top wherever it has data (the mosaic before this
        # one), took the later tile's cloud over the earlier tile's clear pixel
        earlier, later = (alone[item_id] for item_id in ids)
        has_data = np.isfinite(later.classification[0])
        lost_before += int((earlier.observed[0] & has_data & ~later.observed[0]).sum())
        order = [entry["id"] for entry in mosaic.step_items[step]]
        first, second = (alone[item_id] for item_id in order + [i for i in ids if i not in order])
        disagreeing += int((first.observed[0] != second.observed[0]).sum())
        # observed where either tile is clear; a pixel's bands and class come from the first
        # tile clear there, in the mosaic's order
        np.testing.assert_array_equal(mosaic.observed[step], first.observed[0] | second.observed[0])
        from_first = first.observed[0]
        from_second = second.observed[0] & ~from_first
        for single, taken in ((first, from_first), (second, from_second)):
            bands = mosaic.reflectance[step][:, taken] == single.reflectance[0][:, taken]
            classes = mosaic.classification[step][taken] == single.classification[0][taken]
            assert bands.all() and classes.all()
    assert disagreeing > 0, "the tiles' clouds should disagree somewhere"
    assert lost_before > 0  # clear observations the mosaic before masking threw away


# ---- 4. invalid values ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untagged(make_archive) -> str:
    root = make_archive(
        [("f", POINT)], START, END, seed=2, clear_fraction=0.9, swath_edge=True, nodata_tag=False
    )
    return str(root / "items.json")


@pytest.fixture(scope="module")
def tagged(make_archive) -> str:
    root = make_archive([("f", POINT)], START, END, seed=2, clear_fraction=0.9, swath_edge=True)
    return str(root / "items.json")


def test_without_a_nodata_tag_dn_0_is_no_data_all_the_same(untagged, tagged):
    record, items = record_and_items(untagged, 10)
    raw = read_items(normalised(items), ALL_BANDS, grid_of(record)).data[:, 0]
    assert (raw == 0).any(), "the swath edge should cross the window: DN 0 there"
    # DN 0 scaled as reflectance would be 0 * 1e-4 - 0.1 (baseline >= 04.00): what the cube
    # held when only the file's tag said what no data is
    without_tag, with_tag = cube_of(untagged, 10), cube_of(tagged, 10)
    for name in (*BANDS, "SCL", "observed", "inside"):
        np.testing.assert_array_equal(without_tag[name].values, with_tag[name].values, name)
    assert json.loads(without_tag.attrs["invalid_values"])["B04"] > 0


def test_saturated_pixels_are_not_observed(make_archive):
    root = make_archive([("f", POINT)], START, END, seed=4, saturated_fraction=0.02)
    record, items = record_and_items(str(root / "items.json"), 10)
    found = normalised(items)
    raw = read_items(found, ALL_BANDS, grid_of(record)).data
    saturated = (raw[:, :2] == 65535).any(axis=1)
    assert saturated.any()
    mask = cube_settings(bands=ALL_BANDS).mask
    lon = record["properties"]["centroid_lonlat"][0]
    with TileReader() as loader:
        _, invalid, mosaic = read_and_mosaic(
            [s2_group(found, BANDS)], BANDS, mask, grid_of(record), lon, loader
        )
    assert not mosaic.observed[saturated].any()  # one item per day: steps are items
    assert np.nanmax(mosaic.reflectance) < 1.0  # no 6.45
    assert invalid["B04"] >= int((raw[:, 0] == 65535).sum())


# ---- 5. items stackstac leaves out, by id ----------------------------------------------------


def test_an_item_whose_assets_miss_the_grid_reads_as_no_data_not_a_crash(make_archive):
    root = make_archive([("f", POINT)], START, END, seed=1)
    record, items = record_and_items(str(root / "items.json"), 20)
    found = normalised(items)
    moved = copy.deepcopy(found)
    for asset in moved[1]["assets"].values():  # its files placed 500 km east
        transform = list(asset["proj:transform"])
        transform[2] += 500_000
        asset["proj:transform"] = transform
    grid = grid_of(record)
    reference = read_items(found, ALL_BANDS, grid)
    shifted = read_items(moved, ALL_BANDS, grid)
    assert [item["id"] for item in shifted.items] == [item["id"] for item in found]
    assert np.isnan(shifted.data[1]).all()
    np.testing.assert_array_equal(np.delete(shifted.data, 1, 0), np.delete(reference.data, 1, 0))


# ---- 6. cloud-mask dilation ---------------------------------------------------------------------


def test_dilation_masks_the_pixels_near_clouds(make_archive):
    root = make_archive([("f", POINT)], START, END, seed=9, clear_fraction=0.3)
    catalog = str(root / "items.json")
    plain, grown = cube_of(catalog, 10), cube_of(catalog, 10, mask={"dilate_m": 30})
    assert (grown["observed"] <= plain["observed"]).all()
    assert int(grown["observed"].sum()) < int(plain["observed"].sum())
    classes = plain["SCL"].values
    cloudy = np.isin(classes, [3, 8, 9, 10])
    rows, cols = np.mgrid[-3:4, -3:4]
    near = np.zeros_like(cloudy)
    height, width = cloudy.shape[1:]
    for dy, dx in zip(rows.ravel(), cols.ravel(), strict=True):
        if dy * dy + dx * dx > 9:
            continue
        shifted = np.zeros_like(cloudy)
        shifted[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = cloudy[
            :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
        ]
        near |= shifted
    assert not grown["observed"].values[near].any()
    # away from clouds the dilation changes nothing
    np.testing.assert_array_equal(grown["observed"].values[~near], plain["observed"].values[~near])


# ---- 1. polygons: statistics over the polygon ----------------------------------------------------


DIAGONAL = Polygon([(8.488, 49.852), (8.491, 49.852), (8.497, 49.858), (8.494, 49.858)])


def test_a_diagonal_parcel_s_series_is_its_own(make_archive, make_workdir, snakemake):
    from rasterio.features import geometry_mask

    from sitsflow.core.grid import project_geometry
    from sitsflow.outputs.timeseries import read_timeseries_csv
    from sitsflow.outputs.write import open_cube

    root = make_archive([("f", POINT)], START, END, seed=6, clear_fraction=0.6)
    workdir = make_workdir(
        "diagonal", {"parcel": DIAGONAL}, catalog=str(root / "items.json"), start=START,
        end=END, crs="utm", resolution=10, bands=BANDS, query=None,
    )  # fmt: skip
    snakemake(workdir)
    with open_cube(workdir / "results" / "cubes" / "parcel.nc") as cube:
        cube.load()
    inside = geometry_mask(
        [project_geometry(DIAGONAL, cube.rio.crs.to_epsg())],
        (cube.sizes["y"], cube.sizes["x"]),
        cube.rio.transform(),
        invert=True,
    )
    np.testing.assert_array_equal(cube["inside"].values.astype(bool), inside)
    assert 0.2 < inside.mean() < 0.8  # a diagonal strip: its bounding box is mostly not it
    table = read_timeseries_csv(workdir / "results" / "timeseries" / "parcel.csv")
    b04 = table[table["band"] == "B04"].sort_values("time")
    values = cube["B04"].values
    expected = np.array([np.nanmedian(layer[inside]) for layer in values], np.float32)
    window = np.array([np.nanmedian(layer) for layer in values], np.float32)
    np.testing.assert_array_equal(b04["value"].to_numpy(), expected)
    assert (b04["value"].to_numpy() != window).any()
    assert b04["n_pixels"].max() == inside.sum()
    observed = cube["observed"].values[:, inside]
    assert float(cube.attrs["valid_fraction"]) == pytest.approx(observed.mean(), abs=1e-6)


# ---- 8. CF ----------------------------------------------------------------------------------


def test_bands_name_their_ancillary_variable_and_standard_names(netcdf_run):
    from sitsflow.outputs.write import open_cube

    with open_cube(netcdf_run / "results" / "cubes" / "p1.nc") as cube:
        variables = {name: dict(cube[name].attrs) for name in cube.data_vars}
    indices = json.loads(cube.attrs["indices"])
    for name in [*json.loads(cube.attrs["bands"]), *indices]:
        assert variables[name]["ancillary_variables"] == "observed", name
    for band in json.loads(cube.attrs["bands"]):
        assert variables[band]["standard_name"] == "surface_bidirectional_reflectance"
    assert variables["SCL"]["standard_name"] == variables["observed"]["standard_name"]
    assert variables["observed"]["standard_name"] == "status_flag"
    assert variables["inside"]["flag_meanings"] == "outside inside"


# ---- 7. a feature outside the output CRS's area of use -----------------------------------------


def test_a_feature_outside_the_crs_area_of_use_is_named_with_the_remedy(make_workdir, snakemake):
    workdir = make_workdir("africa", {"europe": POINT, "kenya": Point(36.8, -1.3)}, crs="EPSG:3035")
    said = snakemake(workdir, "--dry-run")
    text = said.stdout + said.stderr
    assert "1 feature(s) lie outside the area of use of crs EPSG:3035" in text
    assert "['kenya']" in text and "crs: utm" in text
    quiet = snakemake(make_workdir("utm", {"kenya": Point(36.8, -1.3)}, crs="utm"), "--dry-run")
    assert "area of use" not in quiet.stdout + quiet.stderr
