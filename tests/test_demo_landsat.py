"""Landsat Collection 2 Level-2 scenes of the demo archive (collections with `landsat-c2-l2`).

As tests/test_demo.py, every check reads the written files back rather than trusting the
generator's bookkeeping.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from shapely.geometry import Point, box, shape

from sitsflow.demo import generate_archive
from tests.conftest import REPO

LANDSAT = ["landsat-c2-l2"]
BOTH = ["sentinel-2-l2a", "landsat-c2-l2"]
FEATURES = [
    ("p1", Point(8.491383, 49.854370)),
    ("poly", box(-1.27, 44.54, -1.25, 44.56)),
]
START, END = "2024-04-01", "2024-05-10"
OLI_KEYS = {
    "coastal",
    "blue",
    "green",
    "red",
    "nir08",
    "swir16",
    "swir22",
    "lwir11",
    "qa_pixel",
    "qa_radsat",
}
TM_ETM_KEYS = OLI_KEYS - {"coastal", "lwir11"} | {"lwir"}
SR_KEYS = ["blue", "green", "red", "nir08", "swir16", "swir22"]
ID_PATTERN = re.compile(r"^L[CET]0[5789]_L2SP_\d{6}_\d{8}_02_T[12]$")
FILL, DILATED, CIRRUS, CLOUD, SHADOW, SNOW, CLEAR, WATER = (1 << n for n in range(8))


def items_of(archive: Path) -> list[dict]:
    return json.loads((archive / "items.json").read_text())["features"]


def read(archive: Path, item: dict, key: str) -> np.ndarray:
    with rasterio.open(archive / item["assets"][key]["href"]) as src:
        return src.read(1)


def reflectance(dn: np.ndarray) -> np.ndarray:
    return dn.astype(float) * 2.75e-05 - 0.2


def file_hashes(archive: Path) -> dict[str, str]:
    return {
        str(path.relative_to(archive)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(archive.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landsat")
    generate_archive(FEATURES, root, START, END, seed=3, collections=LANDSAT)
    return root


@pytest.fixture(scope="module")
def items(archive) -> list[dict]:
    return items_of(archive)


def test_landsat_items_have_the_planetary_computer_layout(archive, items):
    collection = pystac.ItemCollection.from_file(str(archive / "items.json"))
    assert len(collection.items) == len(items) > 10
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids)
    for item in items:
        props = item["properties"]
        assert item["collection"] == "landsat-c2-l2"
        assert ID_PATTERN.match(item["id"]), item["id"]
        assert props["platform"] in ("landsat-8", "landsat-9")
        assert props["instruments"] == ["oli", "tirs"]
        assert item["id"].startswith("LC08" if props["platform"] == "landsat-8" else "LC09")
        assert re.match(r"^EPSG:32[67]\d\d$", props["proj:code"])
        assert props["landsat:collection_number"] == "02"
        assert props["landsat:correction"] == "L2SP"
        assert props["landsat:collection_category"] in ("T1", "T2")
        path, row = props["landsat:wrs_path"], props["landsat:wrs_row"]
        assert item["id"][10:16] == path + row and len(path) == len(row) == 3
        assert 0 <= props["eo:cloud_cover"] <= 100
        assert 0 < props["view:sun_elevation"] < 90
        assert set(item["assets"]) == OLI_KEYS
        for key, asset in item["assets"].items():
            assert not Path(asset["href"]).is_absolute()
            with rasterio.open(archive / asset["href"]) as src:
                assert src.dtypes[0] == "uint16" and src.count == 1
                assert f"EPSG:{src.crs.to_epsg()}" == props["proj:code"]
                assert list(src.shape) == props["proj:shape"]
                assert list(src.transform)[:6] == props["proj:transform"]
                assert src.res == (30.0, 30.0)
            raster = asset["raster:bands"][0]
            assert raster["data_type"] == "uint16" and raster["spatial_resolution"] == 30
            if key in SR_KEYS or key == "coastal":
                assert (raster["scale"], raster["offset"], raster["nodata"]) == (2.75e-05, -0.2, 0)
                assert asset["roles"] == ["data", "reflectance"]
                assert asset["eo:bands"][0]["common_name"] == key
            if key == "lwir11":
                assert (raster["scale"], raster["offset"]) == (0.00341802, 149.0)
                assert asset["eo:bands"][0]["name"] == "TIRS_B10"
        assert item["assets"]["red"]["eo:bands"][0]["name"] == "OLI_B4"
        assert item["assets"]["nir08"]["href"].endswith("_SR_B5.TIF")
        fields = item["assets"]["qa_pixel"]["classification:bitfields"]
        assert [(f["name"], f["offset"]) for f in fields][:8] == [
            ("fill", 0),
            ("dilated_cloud", 1),
            ("cirrus", 2),
            ("cloud", 3),
            ("cloud_shadow", 4),
            ("snow", 5),
            ("clear", 6),
            ("water", 7),
        ]
        assert item["assets"]["qa_pixel"]["raster:bands"][0]["nodata"] == 1
        # 30 m grid with pixel corners at 15 m modulo 30 m, as USGS grids
        transform = props["proj:transform"]
        assert transform[2] % 30 == 15 and transform[5] % 30 == 15


def test_geometry_is_the_whole_rotated_scene(items):
    features = dict(FEATURES)
    for item in items:
        footprint = shape(item["geometry"])
        corners = item["geometry"]["coordinates"][0]
        assert len(corners) == 5
        west, south, east, north = footprint.bounds
        assert 1.8 < north - south < 2.2  # ~180 km along track
        # rotated: the northernmost corner is not the westernmost one
        assert max(corners, key=lambda c: c[1]) != min(corners, key=lambda c: c[0])
        assert footprint.contains(features[item["properties"]["sitsflow:demo_feature"]].centroid)


def test_qa_pixel_bits_agree_with_the_pixels(archive, items):
    seen = collections.Counter()
    for item in items:
        qa = read(archive, item, "qa_pixel")
        sr = {key: read(archive, item, key) for key in SR_KEYS}
        kelvin = read(archive, item, "lwir11").astype(float) * 0.00341802 + 149.0
        fill = qa == 1
        for key, dn in sr.items():
            assert (dn[fill] == 0).all(), key
            assert (dn[~fill] > 0).all() and dn.max() < 65535, key
        data = ~fill
        assert not (qa[data] & FILL).any()
        cloud = data & (qa & CLOUD > 0)
        clear = data & (qa & CLEAR > 0)
        # clear = neither cloud nor dilated cloud
        assert (clear == (data & (qa & (CLOUD | DILATED) == 0))).all()
        assert ((qa[cloud] >> 8) & 3 == 3).all()  # cloud confidence high
        plain = clear & (qa & (CIRRUS | SHADOW | SNOW) == 0)
        for key, dn in sr.items():
            values = reflectance(dn)
            assert values[plain].min() >= 0.005 - 1e-4 and values[plain].max() <= 0.7 + 1e-4
            if cloud.any():
                assert values[cloud].min() >= 0.3 - 1e-4, key
        water = plain & (qa & WATER > 0)
        if water.any():
            assert reflectance(sr["nir08"])[water].max() < 0.05
        assert kelvin[data].min() > 230 and kelvin[data].max() < 330
        seen.update(
            cloud=int(cloud.sum()),
            clear=int(plain.sum()),
            fill=int(fill.sum()),
            water=int(water.sum()),
        )
        cover = 100.0 * cloud.sum() / max(data.sum(), 1)
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(cover, abs=0.01)
    assert all(seen[name] > 0 for name in ("cloud", "clear", "fill", "water")), seen


def test_qa_radsat_marks_a_few_bright_pixels(archive, items):
    saturated = 0
    for item in items:
        radsat = read(archive, item, "qa_radsat")
        qa = read(archive, item, "qa_pixel")
        flagged = radsat > 0
        assert not (radsat & ~np.uint16(0b1110)).any()  # OLI blue, green, red: bits 1-3
        assert (qa[flagged] & CLOUD > 0).all()
        assert flagged.mean() < 0.05
        assert (read(archive, item, "blue")[flagged] < 65535).all()
        saturated += int(flagged.sum())
    assert saturated > 0


def test_files_are_cogs_or_striped_geotiffs(archive, items):
    layouts = collections.Counter()
    for item in items:
        for asset in item["assets"].values():
            with rasterio.open(archive / asset["href"]) as src:
                if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG":
                    assert src.compression.name == "deflate"
                    assert src.block_shapes[0] == (256, 256)
                    assert src.overviews(1)
                    layouts["cog"] += 1
                else:
                    assert src.block_shapes == [(8, src.width)]  # strips of 8 rows
                    assert src.compression.name == "lzw"
                    assert not src.overviews(1)
                    layouts["striped"] += 1
    total = sum(layouts.values())
    assert 0.3 < layouts["cog"] / total < 0.7, layouts


def test_two_rows_of_a_path_cover_the_feature_on_the_same_day(archive, items):
    by_day = collections.defaultdict(list)
    for item in items:
        props = item["properties"]
        by_day[props["sitsflow:demo_feature"], props["datetime"][:10]].append(item)
    pairs = [group for group in by_day.values() if len(group) == 2]
    singles = [group for group in by_day.values() if len(group) == 1]
    assert pairs and singles  # the two rows on some dates, the next path alone on others
    for first, second in pairs:
        a, b = first["properties"], second["properties"]
        assert a["landsat:wrs_path"] == b["landsat:wrs_path"]
        assert int(b["landsat:wrs_row"]) == int(a["landsat:wrs_row"]) + 1
        assert a["platform"] == b["platform"]
        assert a["proj:transform"] == b["proj:transform"] and a["proj:shape"] == b["proj:shape"]
    qa_differs = 0
    for first, second in pairs:
        qa1, qa2 = read(archive, first, "qa_pixel"), read(archive, second, "qa_pixel")
        both = (qa1 != 1) & (qa2 != 1)
        assert both.any()
        qa_differs += int((qa1[both] != qa2[both]).sum())
        # the same surface on both: clear land pixels of both have the same reflectance
        clear = both & (qa1 == 21824) & (qa2 == 21824)
        red1, red2 = read(archive, first, "red"), read(archive, second, "red")
        assert (red1[clear] == red2[clear]).all()
    assert qa_differs > 0


def test_platforms_alternate_every_eight_days(items):
    days = collections.defaultdict(set)
    for item in items:
        props = item["properties"]
        if props["sitsflow:demo_feature"] == "p1":
            days[props["platform"], props["landsat:wrs_path"]].add(props["datetime"][:10])
    for dates in days.values():
        ordinals = sorted(date.fromisoformat(d).toordinal() for d in dates)
        assert all(b - a == 16 for a, b in zip(ordinals, ordinals[1:], strict=False))
    path = min(p for _, p in days)
    l8 = min(date.fromisoformat(d).toordinal() for d in days["landsat-8", path])
    l9 = min(date.fromisoformat(d).toordinal() for d in days["landsat-9", path])
    assert abs(l8 - l9) == 8


def test_landsat_7_has_the_etm_layout_and_slc_off_gaps(tmp_path):
    generate_archive(
        [FEATURES[0]], tmp_path, "2016-06-01", "2016-06-30", seed=1, collections=LANDSAT
    )
    items = items_of(tmp_path)
    etm = [item for item in items if item["properties"]["platform"] == "landsat-7"]
    assert etm and any(item["properties"]["platform"] == "landsat-8" for item in items)
    for item in etm:
        assert item["id"].startswith("LE07_")
        assert set(item["assets"]) == TM_ETM_KEYS
        assert item["properties"]["instruments"] == ["etm"]
        assert item["assets"]["red"]["href"].endswith("_SR_B3.TIF")
        assert item["assets"]["lwir"]["href"].endswith("_ST_B6.TIF")
        qa = read(tmp_path, item, "qa_pixel")
        gaps = qa == 1
        assert 0.05 < gaps.mean() < 0.5  # stripes, not the whole window
        assert (read(tmp_path, item, "red")[gaps] == 0).all()
        # diagonal stripes: every row and every column crosses some gap
        assert gaps.any(axis=0).all() and gaps.any(axis=1).all()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    feature = [FEATURES[0]]
    generate_archive(feature, one, START, "2024-04-20", seed=5, collections=BOTH, workers=1)
    generate_archive(feature, two, START, "2024-04-20", seed=5, collections=BOTH, workers=2)
    assert file_hashes(one) == file_hashes(two)
    before = file_hashes(one)
    generate_archive(feature, one, START, "2024-04-20", seed=5, collections=BOTH)  # all reused
    assert file_hashes(one) == before
    manifest = json.loads((one / "manifest.json").read_text())
    assert set(manifest["landsat"]) == {"p1"} and set(manifest["features"]) == {"p1"}


def test_sentinel_2_only_archives_are_left_alone(tmp_path):
    s2, both = tmp_path / "s2", tmp_path / "both"
    feature = [FEATURES[0]]
    generate_archive(feature, s2, START, "2024-04-20", seed=5)
    generate_archive(feature, both, START, "2024-04-20", seed=5, collections=BOTH)
    manifest = json.loads((s2 / "manifest.json").read_text())
    assert set(manifest) == {"generator", "generator_version", "features"}
    assert not (s2 / "landsat").exists()
    assert {item["collection"] for item in items_of(s2)} == {"sentinel-2-l2a"}
    # the Sentinel-2 part of an archive with Landsat is the Sentinel-2-only archive
    s2_items = [item for item in items_of(both) if item["collection"] == "sentinel-2-l2a"]
    assert s2_items == items_of(s2)
    assert json.loads((both / "manifest.json").read_text())["features"] == manifest["features"]
    s2_files = file_hashes(s2)
    both_files = file_hashes(both)
    for name, digest in s2_files.items():
        if name.startswith("tiles/"):
            assert both_files[name] == digest
    assert {i["collection"] for i in items_of(both)} == {"sentinel-2-l2a", "landsat-c2-l2"}


def test_landsat_only_archive_has_no_sentinel_2(archive, items):
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["features"] == {}
    assert set(manifest["landsat"]) == {"p1", "poly"}
    assert not (archive / "tiles").exists()


def test_the_landsat_config_names_its_own_archive_with_both_collections():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_demo_archive
    finally:
        sys.path.remove(str(REPO / "tools"))
    found = make_demo_archive.settings_from_config(REPO / "config" / "landsat.yaml")
    assert found["collections"] == BOTH
    assert found["out"] != Path("resources/demo/sentinel-2-l2a")
    assert make_demo_archive.schema_defaults()["collections"] == ["sentinel-2-l2a"]
    default = make_demo_archive.settings_from_config(REPO / "config" / "config.yaml")
    assert default["collections"] == ["sentinel-2-l2a"]
