"""The synthetic demo archive: valid STAC, real COGs, pixels consistent with the metadata.

Every check reads the written files back (rasterio, pystac) rather than trusting the
generator's own bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from shapely.geometry import Point, box, shape

from sitsflow.core.projection import reproject
from sitsflow.demo import generate_archive, tile_bounds_utm
from tests.conftest import REPO

REFLECTANCE_KEYS = ["B02", "B03", "B04", "B08", "B11"]
PC_KEYS = {*REFLECTANCE_KEYS, "SCL"}
ES_KEYS = {"blue", "green", "red", "nir", "swir16", "scl"}
CLEAR_CLASSES = [4, 5, 6]
CLOUD_CLASSES = [8, 9, 10]
# 2022-01-20 (baseline 03.01) .. 2022-02-04: straddles the 04.00 switch of 2022-01-25.
START, END = "2022-01-20", "2022-02-04"
FEATURES = [
    ("p1", Point(8.491383, 49.854370)),
    ("poly", box(-1.27, 44.54, -1.25, 44.56)),
]


def items_of(items_path: Path) -> list[dict]:
    return json.loads(items_path.read_text())["features"]


def read(archive: Path, item: dict, key: str) -> np.ndarray:
    with rasterio.open(archive / item["assets"][key]["href"]) as src:
        return src.read(1)


def upsample(scl: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)


def pixel_arrays(archive: Path) -> dict[str, np.ndarray]:
    """Every asset's pixels keyed by href, for exact comparisons between archives."""
    arrays = {}
    for item in items_of(archive / "items.json"):
        for asset in item["assets"].values():
            with rasterio.open(archive / asset["href"]) as src:
                arrays[asset["href"]] = src.read()
    return arrays


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_archive(FEATURES, root, START, END, seed=3)
    return root


@pytest.fixture(scope="module")
def items(archive) -> list[dict]:
    return items_of(archive / "items.json")


def test_items_form_a_pystac_item_collection(archive, items):
    collection = pystac.ItemCollection.from_file(str(archive / "items.json"))
    assert len(collection.items) == len(items) == 2 * 4
    ids = [item.id for item in collection.items]
    assert len(set(ids)) == len(ids)
    pattern = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T\d{2}[C-X][A-Z]{2}_\d{8}T\d{6}$")
    assert all(pattern.match(item_id) for item_id in ids)
    order = [(i["properties"]["sitsflow:demo_feature"], i["properties"]["datetime"]) for i in items]
    assert order == sorted(order, key=lambda key: (["p1", "poly"].index(key[0]), key[1]))
    for item in collection.items:
        props = item.properties
        assert item.collection_id == "sentinel-2-l2a"
        assert set(item.assets) == PC_KEYS
        assert props["constellation"] == "Sentinel 2" and props["instruments"] == ["msi"]
        assert props["platform"] in ("Sentinel-2A", "Sentinel-2B")
        assert props["s2:mgrs_tile"] in item.id and props["s2:product_type"] == "S2MSI2A"
        assert item.datetime.tzinfo is not None
        for asset in item.assets.values():
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset.roles == ["data"]
            assert "raster:bands" not in asset.extra_fields  # Planetary Computer has none
            assert not Path(asset.href).is_absolute()
    platforms = [i["properties"]["platform"] for i in items[:4]]
    assert platforms[0] != platforms[1] and platforms[0] == platforms[2]


def test_cogs_are_tiled_with_overviews_and_match_their_asset(archive, items):
    for item in items:
        for key, asset in item["assets"].items():
            with rasterio.open(archive / asset["href"]) as src:
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert src.block_shapes == [(128, 128)] and src.width > 128  # tiled
                assert src.overviews(1), f"{asset['href']} has no overview"
                assert src.compression.name == "deflate"
                assert src.nodata == 0
                assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                assert src.crs.to_epsg() == item["properties"]["proj:epsg"]
                assert list(src.shape) == asset["proj:shape"]
                assert list(src.transform)[:6] == asset["proj:transform"]
                assert src.res[0] == asset["gsd"]
                assert src.read(1).min() > 0  # 0 is reserved for nodata


def test_grids_align_and_scl_matches_10m_pixels(archive, items):
    for item in items:
        transforms = {key: a["proj:transform"] for key, a in item["assets"].items()}
        for transform in transforms.values():
            assert transform[2] % 60 == 0 and transform[5] % 60 == 0
        assert transforms["B04"][2] == transforms["SCL"][2]
        assert transforms["B04"][5] == transforms["SCL"][5]
        shape10, shape20 = item["assets"]["B04"]["proj:shape"], item["assets"]["SCL"]["proj:shape"]
        assert shape10 == [2 * n for n in shape20]
        scl = upsample(read(archive, item, "SCL"))
        offset = 1000 if float(item["properties"]["s2:processing_baseline"]) >= 4 else 0
        for key in ("B02", "B03", "B04", "B08"):
            reflectance = (read(archive, item, key).astype(float) - offset) / 1e4
            cloudy = np.isin(scl, [8, 9])
            if cloudy.any():
                assert reflectance[cloudy].min() >= 0.3 - 1e-9
            clear = np.isin(scl, CLEAR_CLASSES)
            assert reflectance[clear].min() >= 0.005 and reflectance[clear].max() <= 0.7
        water = scl == 6
        nir = (read(archive, item, "B08").astype(float) - offset) / 1e4
        assert water.any() and nir[water].max() < 0.05


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # stackstac's own affine use
def test_stackstac_reads_the_archive_on_the_tile_grid(archive, items):
    import stackstac

    chosen = [json.loads(json.dumps(item)) for item in items[:2]]
    for item in chosen:
        for asset in item["assets"].values():
            asset["href"] = str(archive / asset["href"])
    bounds = tuple(chosen[0]["assets"]["B04"]["proj:bbox"])
    epsg = chosen[0]["properties"]["proj:epsg"]
    for resolution in (10, 20):
        stack = stackstac.stack(
            chosen,
            assets=["B04", "B11", "SCL"],
            epsg=epsg,
            resolution=resolution,
            bounds=bounds,
            dtype="float64",
            rescale=False,
            fill_value=np.nan,
        )
        data = stack.values
        for t, item in enumerate(items[:2]):
            b04, b11, scl = (read(archive, item, key) for key in ("B04", "B11", "SCL"))
            if resolution == 10:
                b11, scl = upsample(b11), upsample(scl)
            else:
                b04 = b04[::2, ::2]  # nearest from 10 m (or from the nearest overview)
            np.testing.assert_array_equal(data[t, 0], b04)
            np.testing.assert_array_equal(data[t, 1], b11)
            np.testing.assert_array_equal(data[t, 2], scl)


def test_cloud_cover_is_the_scl_cloud_percentage(archive, items):
    for item in items:
        scl = read(archive, item, "SCL")
        props = item["properties"]
        expected = 100.0 * np.isin(scl, CLOUD_CLASSES).sum() / scl.size
        assert props["eo:cloud_cover"] == pytest.approx(expected, abs=1e-9)
        assert props["s2:high_proba_clouds_percentage"] == pytest.approx(
            100.0 * (scl == 9).sum() / scl.size, abs=1e-9
        )
        assert props["s2:cloud_shadow_percentage"] == pytest.approx(
            100.0 * (scl == 3).sum() / scl.size, abs=1e-9
        )


def test_dn_offset_exactly_from_baseline_04_00(archive, items):
    p1 = {
        i["properties"]["datetime"][:10]: i
        for i in items
        if i["properties"]["sitsflow:demo_feature"] == "p1"
    }
    before, after = p1["2022-01-20"], p1["2022-01-30"]
    assert before["properties"]["s2:processing_baseline"] == "03.01"
    assert after["properties"]["s2:processing_baseline"] == "04.00"
    medians, dark = [], []
    for item, offset in ((before, 0), (after, 1000)):
        clear = np.isin(upsample(read(archive, item, "SCL")), CLEAR_CLASSES)
        dn = read(archive, item, "B04")[clear].astype(int)
        assert clear.mean() > 0.3
        assert dn.min() >= 50 + offset and dn.max() <= 7000 + offset
        medians.append(np.median(dn) - offset)
        dark.append((dn < 1000).mean())
    # Same landscape five days apart: without the offset the medians would differ by ~1000.
    assert abs(medians[1] - medians[0]) < 300
    assert dark[0] > 0.02 and dark[1] == 0  # water and forest red DN < 1000 only without offset


def test_tile_covers_the_geometry_plus_margin(items):
    for fid, geometry in FEATURES:
        epsg, bounds = tile_bounds_utm(geometry, 1920.0)
        needed = reproject(geometry, 4326, epsg).buffer(1920.0, quad_segs=4).envelope
        assert box(*bounds).contains(needed)
        assert all(b % 60 == 0 for b in bounds)
        # ... snapped outward by less than one 60 m step (plus the bounds of the curved edges).
        assert box(*bounds).area < needed.buffer(60 * 1.5, join_style="mitre").area
        feature_items = [i for i in items if i["properties"]["sitsflow:demo_feature"] == fid]
        for item in feature_items:
            assert item["properties"]["proj:epsg"] == epsg
            assert item["assets"]["B04"]["proj:bbox"] == list(bounds)
            footprint = shape(item["geometry"])
            assert footprint.contains(geometry)
            assert footprint.exterior.is_ccw
            assert shapely.box(*item["bbox"]).contains(footprint.envelope)


def test_deterministic_and_independent_of_workers_and_other_features(archive, tmp_path):
    twin = tmp_path / "twin"
    generate_archive(FEATURES, twin, START, END, seed=3, workers=2)
    assert (twin / "items.json").read_bytes() == (archive / "items.json").read_bytes()
    reference, parallel = pixel_arrays(archive), pixel_arrays(twin)
    assert reference.keys() == parallel.keys()
    for href, pixels in reference.items():
        np.testing.assert_array_equal(parallel[href], pixels, err_msg=href)

    alone = tmp_path / "alone"
    generate_archive(FEATURES[1:], alone, START, END, seed=3)
    for href, pixels in pixel_arrays(alone).items():
        np.testing.assert_array_equal(pixels, reference[href], err_msg=href)

    other_seed = tmp_path / "seed4"
    generate_archive(FEATURES[1:], other_seed, START, END, seed=4)
    first = items_of(other_seed / "items.json")[0]
    same_day = items_of(alone / "items.json")[0]
    assert not np.array_equal(read(other_seed, first, "B04"), read(alone, same_day, "B04"))


def test_incremental_rerun(tmp_path):
    first = [FEATURES[0]]
    generate_archive(first, tmp_path, START, "2022-01-25")
    files = sorted((tmp_path / "tiles").rglob("*.tif"))
    mtimes = {path: path.stat().st_mtime_ns for path in files}

    moved = ("moved", Point(9.2, 48.7))
    generate_archive([*first, moved], tmp_path, START, "2022-01-25")
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes  # reused, not rewritten
    items = items_of(tmp_path / "items.json")
    assert [i["properties"]["sitsflow:demo_feature"] for i in items] == [
        "p1",
        "p1",
        "moved",
        "moved",
    ]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert list(manifest["features"]) == ["p1", "moved"]
    assert manifest["features"]["moved"]["params"]["geometry_wkt"].startswith("POINT (9.2")
    assert manifest["features"]["p1"]["items"] == [i["id"] for i in items[:2]]

    # Changed parameters regenerate that feature only; unlisted features leave items.json.
    moved_again = ("moved", Point(9.3, 48.7))
    generate_archive([moved_again], tmp_path, START, "2022-01-25")
    items = items_of(tmp_path / "items.json")
    assert {i["properties"]["sitsflow:demo_feature"] for i in items} == {"moved"}
    epsg, bounds = tile_bounds_utm(moved_again[1])
    assert all(i["assets"]["B04"]["proj:bbox"] == list(bounds) for i in items)
    assert list(json.loads((tmp_path / "manifest.json").read_text())["features"]) == ["moved"]
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes  # old files stay
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_tile_names_stay_unique_when_hashes_collide(tmp_path):
    from sitsflow.demo import tile_name

    # Find two ids whose first-choice grid square is the same in one zone and band.
    seen: dict[str, str] = {}
    for n in range(2000):
        name = tile_name(f"f{n}", 32, 49.8)
        if name in seen:
            pair = [seen[name], f"f{n}"]
            break
        seen[name] = f"f{n}"
    features = [(pair[0], Point(8.5, 49.8)), (pair[1], Point(8.6, 49.8))]
    generate_archive(features, tmp_path, START, START)
    items = items_of(tmp_path / "items.json")
    tiles = [i["properties"]["s2:mgrs_tile"] for i in items]
    assert tiles[0] == name and tiles[1] != name and tiles[1][:3] == "32U"
    assert len({i["id"] for i in items}) == 2


def test_earth_search_c1_layout(tmp_path):
    generate_archive(FEATURES[:1], tmp_path, START, "2022-01-25", layout="earth-search-c1")
    # pystac reads it (migrating projection v1.1 to proj:code); check the file as written.
    assert len(pystac.ItemCollection.from_file(str(tmp_path / "items.json")).items) == 2
    for raw in items_of(tmp_path / "items.json"):
        props = raw["properties"]
        assert raw["collection"] == "sentinel-2-c1-l2a"
        assert re.match(r"^S2[AB]_T32U[A-Z]{2}_\d{8}T\d{6}_L2A$", raw["id"])
        assert set(raw["assets"]) == ES_KEYS
        assert props["s2:processing_baseline"] in ("05.10", "05.11")
        assert props["platform"] in ("sentinel-2a", "sentinel-2b")
        assert props["proj:epsg"] == 32632 and props["mgrs:utm_zone"] == 32
        assert props["grid:code"] == f"MGRS-32U{props['mgrs:grid_square']}"
        assert "earthsearch:payload_id" in props
        red = raw["assets"]["red"]
        assert red["raster:bands"] == [
            {
                "nodata": 0,
                "data_type": "uint16",
                "spatial_resolution": 10,
                "scale": 0.0001,
                "offset": -0.1,
            }
        ]
        assert raw["assets"]["swir16"]["raster:bands"][0]["spatial_resolution"] == 20
        scl_bands = raw["assets"]["scl"]["raster:bands"]
        assert scl_bands == [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
        for asset in raw["assets"].values():
            data = (tmp_path / asset["href"]).read_bytes()
            assert asset["file:size"] == len(data)
            assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
        # Collection 1 is reprocessed: every DN carries +1000, also before 2022-01-25.
        clear = np.isin(upsample(read(tmp_path, raw, "scl")), CLEAR_CLASSES)
        dn = read(tmp_path, raw, "red")[clear]
        assert dn.min() >= 1050 and dn.max() <= 8000


def test_clear_fraction_and_seasons(tmp_path):
    summer_winter = [FEATURES[0]]
    generate_archive(
        summer_winter, tmp_path, "2024-01-15", "2024-07-13", revisit_days=180, clear_fraction=1.0
    )
    january, july = items_of(tmp_path / "items.json")
    ndvi = []
    for item in (january, july):
        assert item["properties"]["eo:cloud_cover"] < 10
        clear = np.isin(upsample(read(tmp_path, item, "SCL")), [4, 5])
        red = read(tmp_path, item, "B04")[clear] - 1000.0
        nir = read(tmp_path, item, "B08")[clear] - 1000.0
        ndvi.append(np.median((nir - red) / (nir + red)))
    assert ndvi[1] > ndvi[0] + 0.2  # vegetation greens up in the northern summer

    cloudy = tmp_path / "cloudy"
    generate_archive(summer_winter, cloudy, START, END, clear_fraction=0.0)
    assert all(i["properties"]["eo:cloud_cover"] >= 12 for i in items_of(cloudy / "items.json"))


def test_command_line(tmp_path):
    vector = tmp_path / "points.geojson"
    vector.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": 7},
                        "geometry": {"type": "Point", "coordinates": [11.18, 50.01]},
                    },
                ],
            }
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"vector: {vector}\nid_column: id\ncatalog: {tmp_path / 'arch' / 'items.json'}\n"
        f"start: '{START}'\nend: '2022-01-25'\ndemo:\n  layout: earth-search-c1\n  seed: 1\n"
    )
    script = REPO / "tools" / "make_demo_archive.py"
    result = subprocess.run(
        [sys.executable, str(script), "--configfile", str(config), "--seed", "2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "2 items" in result.stdout and "MB" in result.stdout
    assert "feature 7 done (1/1)" in result.stderr
    manifest = json.loads((tmp_path / "arch" / "manifest.json").read_text())
    params = manifest["features"]["7"]["params"]
    assert params["layout"] == "earth-search-c1" and params["seed"] == 2


# --------------------------------------------------------------------------------------------
# Options for archives that differ from the kind default where real ones do (issue 12)

# A 1890 m margin gives p1 a tile of 192 x 192 pixels at 20 m: every overview pixel of every band
# is then exactly a 2 x 2 block (GDAL halves odd sizes downward, so 195 px would not be).
EVEN_MARGIN_M = 1890.0


def overview(archive: Path, item: dict, key: str) -> np.ndarray:
    """The pixels of an asset's first (2x) overview."""
    with rasterio.open(archive / item["assets"][key]["href"], overview_level=0) as src:
        return src.read(1)


def tags(archive: Path, item: dict, key: str) -> dict[str, str]:
    """An asset's default-domain metadata, where OVR_RESAMPLING_ALG lives."""
    with rasterio.open(archive / item["assets"][key]["href"]) as src:
        return src.tags()


def block_means(array: np.ndarray) -> np.ndarray:
    """Means of the 2 x 2 blocks of an array of even shape."""
    height, width = array.shape
    return array.reshape(height // 2, 2, width // 2, 2).astype(float).mean(axis=(1, 3))


def read_bounds(archive: Path, item: dict, key: str, bounds: tuple) -> np.ndarray:
    """An asset's pixels within UTM `bounds` on its grid (the overlap of two tiles)."""
    with rasterio.open(archive / item["assets"][key]["href"]) as src:
        window = rasterio.windows.from_bounds(*bounds, transform=src.transform)
        return src.read(1, window=window.round_offsets().round_lengths())


def test_default_archive_has_nearest_untagged_overviews_and_no_saturation(archive, items):
    for item in items:
        for key in PC_KEYS:
            assert "OVR_RESAMPLING_ALG" not in tags(archive, item, key)
        assert read(archive, item, "B04").max() < 65535
    np.testing.assert_array_equal(
        overview(archive, items[0], "B04"), read(archive, items[0], "B04")[::2, ::2]
    )


def test_averaged_reflectance_overviews_are_tagged_2x2_means(tmp_path):
    generate_archive(
        FEATURES[:1],
        tmp_path,
        START,
        "2022-01-25",
        margin_m=EVEN_MARGIN_M,
        overview_resampling="average",
    )
    for item in items_of(tmp_path / "items.json"):
        for key in REFLECTANCE_KEYS:
            assert tags(tmp_path, item, key)["OVR_RESAMPLING_ALG"] == "AVERAGE"
            # GDAL rounds integer means half up.
            expected = np.floor(block_means(read(tmp_path, item, key)) + 0.5)
            np.testing.assert_array_equal(overview(tmp_path, item, key), expected, err_msg=key)
        # The class band keeps nearest-neighbour overviews, untagged.
        assert "OVR_RESAMPLING_ALG" not in tags(tmp_path, item, "SCL")
        scl = read(tmp_path, item, "SCL")
        np.testing.assert_array_equal(overview(tmp_path, item, "SCL"), scl[::2, ::2])


def test_averaged_scl_overviews_of_a_checkerboard_invent_class_7(tmp_path):
    averaged, nearest = tmp_path / "averaged", tmp_path / "nearest"
    common = dict(margin_m=EVEN_MARGIN_M, clear_fraction=1.0, scl_pattern="checkerboard")
    generate_archive(
        FEATURES[:1], averaged, START, START, scl_overview_resampling="average", **common
    )
    generate_archive(FEATURES[:1], nearest, START, START, **common)
    item = items_of(averaged / "items.json")[0]
    scl = read(averaged, item, "SCL")
    rows, cols = np.indices(scl.shape)
    np.testing.assert_array_equal(scl, np.where((rows + cols) % 2 == 0, 5, 9))
    assert item["properties"]["eo:cloud_cover"] == pytest.approx(50.0)
    assert tags(averaged, item, "SCL")["OVR_RESAMPLING_ALG"] == "AVERAGE"
    assert "OVR_RESAMPLING_ALG" not in tags(averaged, item, "B04")
    # Every 2 x 2 mean of 5 and 9 is 7 ("unclassified"), a class no full-resolution pixel has.
    assert set(np.unique(overview(averaged, item, "SCL"))) == {7}
    nearest_item = items_of(nearest / "items.json")[0]
    np.testing.assert_array_equal(read(nearest, nearest_item, "SCL"), scl)
    assert set(np.unique(overview(nearest, nearest_item, "SCL"))) <= {5, 9}


def test_overlapping_tiles_share_the_surface_but_not_the_sky(tmp_path):
    generate_archive(FEATURES[:1], tmp_path, START, END, overlapping_tiles=True)
    items = items_of(tmp_path / "items.json")
    _, geometry = FEATURES[0]
    epsg, feature_tile = tile_bounds_utm(geometry)
    days: dict[str, list[dict]] = {}
    for item in items:
        days.setdefault(item["properties"]["datetime"], []).append(item)
    assert len(items) == 8 and len(days) == 4 and all(len(pair) == 2 for pair in days.values())
    both_clear = one_cloudy = 0
    for pair in days.values():
        tiles = [item["properties"]["s2:mgrs_tile"] for item in pair]
        assert tiles[0] != tiles[1] and tiles[0][:3] == tiles[1][:3] == "32U"
        assert len({item["id"] for item in pair}) == 2
        for item in pair:
            assert item["properties"]["proj:epsg"] == epsg
            assert shape(item["geometry"]).contains(geometry)
            assert box(*item["assets"]["B04"]["proj:bbox"]).contains(box(*feature_tile))
        # Over the overlap (the feature's tile): each item has its own SCL ...
        scl = [read_bounds(tmp_path, item, "SCL", feature_tile) for item in pair]
        assert scl[0].shape == (195, 195) and not np.array_equal(scl[0], scl[1])
        assert pair[0]["properties"]["eo:cloud_cover"] != pair[1]["properties"]["eo:cloud_cover"]
        # ... but where both are clear, the same reflectance.
        clear20 = np.isin(scl[0], CLEAR_CLASSES) & np.isin(scl[1], CLEAR_CLASSES)
        for key, mask in (("B04", upsample(clear20)), ("B11", clear20)):
            west, east = (read_bounds(tmp_path, item, key, feature_tile) for item in pair)
            np.testing.assert_array_equal(west[mask], east[mask], err_msg=key)
        both_clear += int(clear20.sum())
        # Where only one is clear, its reflectance is not the other's: mosaicking the bands
        # before masking with each item's own SCL mixes items.
        cloudy20 = np.isin(scl[0], CLEAR_CLASSES) & np.isin(scl[1], [8, 9])
        west, east = (read_bounds(tmp_path, item, "B11", feature_tile) for item in pair)
        if cloudy20.any():
            assert (west[cloudy20] != east[cloudy20]).mean() > 0.9
        one_cloudy += int(cloudy20.sum())
    assert both_clear > 10000 and one_cloudy > 1000

    parallel = tmp_path / "parallel"
    generate_archive(FEATURES[:1], parallel, START, END, overlapping_tiles=True, workers=2)
    assert (parallel / "items.json").read_bytes() == (tmp_path / "items.json").read_bytes()


def test_no_nodata_tag_over_a_swath_edge_of_dn_0(tmp_path):
    generate_archive(
        FEATURES[:1],
        tmp_path,
        START,
        "2022-01-25",
        layout="earth-search-c1",
        nodata_tag=False,
        swath_edge=True,
    )
    edge, whole = items_of(tmp_path / "items.json")
    assert edge["properties"]["platform"] == "sentinel-2b"  # the swath edge is on S2B dates
    assert whole["properties"]["platform"] == "sentinel-2a"
    for item in (edge, whole):
        for asset in item["assets"].values():
            with rasterio.open(tmp_path / asset["href"]) as src:
                assert src.nodata is None  # nothing in the file says 0 is no data ...
            assert asset["raster:bands"][0]["nodata"] == 0  # ... only the item does
    blank = read(tmp_path, edge, "scl") == 0
    assert 0.3 < blank.mean() < 0.7
    # No data east of one edge: along each row, data, then no data up to the tile's east side.
    assert all(row[-1] and (np.diff(row.astype(int)) >= 0).all() for row in blank)
    for key in ES_KEYS - {"scl"}:
        zero = read(tmp_path, edge, key) == 0
        np.testing.assert_array_equal(zero, blank if zero.shape == blank.shape else upsample(blank))
    red = read(tmp_path, edge, "red") * 0.0001 - 0.1  # raster:bands scale and offset
    assert np.allclose(red[upsample(blank)], -0.1)  # what a reader trusting the file gets
    props = edge["properties"]
    assert props["s2:nodata_pixel_percentage"] == pytest.approx(100.0 * blank.mean())
    footprint, tile = shape(edge["geometry"]), shape(whole["geometry"])
    # (the edge's ends lie on the tile's UTM edges, ~0.3 m off its lon/lat chords)
    assert tile.buffer(1e-5).contains(footprint) and 0.3 < footprint.area / tile.area < 0.7
    assert read(tmp_path, whole, "scl").min() > 0 and read(tmp_path, whole, "red").min() > 0

    # With the nodata tag (the default), the same strip is declared in the files; the
    # Planetary Computer layout declares no nodata in its items.
    tagged = tmp_path / "tagged"
    generate_archive(FEATURES[:1], tagged, START, START, swath_edge=True)
    item = items_of(tagged / "items.json")[0]
    for asset in item["assets"].values():
        assert "raster:bands" not in asset
        with rasterio.open(tagged / asset["href"]) as src:
            assert src.nodata == 0
    np.testing.assert_array_equal(read(tagged, item, "SCL") == 0, blank)


def test_saturated_fraction_of_unflagged_65535(tmp_path):
    generate_archive(FEATURES[:1], tmp_path, START, "2022-01-25", saturated_fraction=0.02)
    for item in items_of(tmp_path / "items.json"):
        scl = read(tmp_path, item, "SCL")
        assert not (scl == 1).any()  # the SCL flags none of them
        for key in REFLECTANCE_KEYS:
            saturated = read(tmp_path, item, key) == 65535
            assert saturated.mean() == pytest.approx(0.02, abs=1e-4)
            # Also among the pixels a mask by SCL keeps: there they pass as reflectance 6.45.
            clear = np.isin(scl if saturated.shape == scl.shape else upsample(scl), CLEAR_CLASSES)
            assert saturated[clear].mean() == pytest.approx(0.02, abs=0.005)


@pytest.mark.parametrize(
    "option",
    [
        {"overview_resampling": "average"},
        {"scl_overview_resampling": "average"},
        {"scl_pattern": "checkerboard"},
        {"overlapping_tiles": True},
        {"nodata_tag": False},
        {"swath_edge": True},
        {"saturated_fraction": 0.01},
    ],
    ids=lambda option: next(iter(option)),
)
def test_each_option_is_a_feature_parameter(tmp_path, option):
    def params() -> dict:
        return json.loads((tmp_path / "manifest.json").read_text())["features"]["p1"]["params"]

    def written() -> dict[Path, int]:
        return {path: path.stat().st_mtime_ns for path in (tmp_path / "tiles").rglob("*.tif")}

    ((name, value),) = option.items()
    generate_archive(FEATURES[:1], tmp_path, START, START)
    default = written()
    assert name not in params()
    generate_archive(FEATURES[:1], tmp_path, START, START, **option)
    assert params()[name] == value
    assert any(default.get(path) != mtime for path, mtime in written().items())  # regenerated
    with_option = written()
    generate_archive(FEATURES[:1], tmp_path, START, START, **option)
    assert written() == with_option  # unchanged options: reused
    generate_archive(FEATURES[:1], tmp_path, START, START)
    assert name not in params()
    assert any(with_option.get(path) != mtime for path, mtime in written().items())


def test_command_line_options(tmp_path):
    vector = tmp_path / "point.geojson"
    feature = {
        "type": "Feature",
        "properties": {"id": 1},
        "geometry": FEATURES[0][1].__geo_interface__,
    }
    vector.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    script = REPO / "tools" / "make_demo_archive.py"
    arguments = [
        "--vector", str(vector), "--out", str(tmp_path / "arch"), "--start", START, "--end", START,
        "--overview-resampling", "average", "--scl-overview-resampling", "average",
        "--scl-pattern", "checkerboard", "--overlapping-tiles", "--no-nodata-tag",
        "--swath-edge", "--saturated-fraction", "0.001",
    ]  # fmt: skip
    subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    manifest = json.loads((tmp_path / "arch" / "manifest.json").read_text())
    params = manifest["features"]["1"]["params"]
    assert params["overview_resampling"] == params["scl_overview_resampling"] == "average"
    assert params["scl_pattern"] == "checkerboard" and params["saturated_fraction"] == 0.001
    assert params["overlapping_tiles"] and params["swath_edge"] and not params["nodata_tag"]
    assert len(items_of(tmp_path / "arch" / "items.json")) == 2
