"""The issue-13 benchmark's own logic: the seed's STAC URL patch, href aliases in the test
server, the lower bound with blocks shared between features, the floor's reading of a COG's
layout from its IFDs, and the pure pieces of the full-size archive.

All small and fast: COGs of a few hundred pixels written here, servers in this process.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Point

from benchmarks import full_archive
from benchmarks.bound import _Counter, batches_of, lower_bound
from benchmarks.cogbytes import Level, read_layout
from benchmarks.seed_reference import PATCHED, patch_stac_url
from benchmarks.seed_workload import check_outputs, job_name
from benchmarks.workload import default_config
from sitsflow.core.features import Feature
from sitsflow.testing.stac_server import StacServer, load_aliases
from sitsflow.workflow.batch import AUTO_BATCH_SIZE

# ---- (s): the seed's URL patch ----------------------------------------------------------------


class FakeStacAttack:
    """What sits 0.8.0's StacAttack.__init__ does with its providers (sits/sits.py)."""

    def __init__(self, provider: str = "mpc", collection: str = "sentinel-2-l2a") -> None:
        self.prov_stac = {
            "mpc": {"stac": "https://planetarycomputer.example/api/stac/v1", "coll": collection,
                    "modifier": "sign_inplace", "patch_url": "sign"},
            "aws": {"stac": "https://earth-search.example/v1/", "coll": collection,
                    "modifier": None, "patch_url": None},
        }  # fmt: skip
        self.stac = self.prov_stac[provider]


def test_patch_replaces_only_the_url_of_the_provider_in_use() -> None:
    class StacAttack(FakeStacAttack):
        pass

    patch_stac_url(StacAttack, "http://127.0.0.1:1/api")
    searched = StacAttack()
    assert searched.stac["stac"] == "http://127.0.0.1:1/api"
    assert searched.prov_stac["mpc"] is searched.stac
    assert searched.stac["modifier"] == "sign_inplace" and searched.stac["patch_url"] == "sign"
    assert searched.prov_stac["aws"]["stac"] == "https://earth-search.example/v1/"
    assert StacAttack(provider="aws").stac["stac"] == "http://127.0.0.1:1/api"
    assert StacAttack(collection="other").stac["coll"] == "other"  # arguments pass through


def test_patching_twice_keeps_one_wrapper_with_the_last_url() -> None:
    class StacAttack(FakeStacAttack):
        pass

    patch_stac_url(StacAttack, "http://a/api")
    patch_stac_url(StacAttack, "http://b/api")
    assert getattr(StacAttack.__init__, PATCHED) == "http://b/api"
    assert StacAttack.__init__.__wrapped__ is FakeStacAttack.__init__
    assert StacAttack().stac["stac"] == "http://b/api"


def test_seed_worker_processes_are_named() -> None:
    assert job_name(["-c", "--multiprocessing-fork"]) == "worker (multiprocessing)"
    assert job_name(["/repo/benchmarks/seed_reference.py", "--catalog", "x"]) == ("seed_reference")


# ---- href aliases in the test server ----------------------------------------------------------

UTM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_540_000.0)  # EPSG:32632, about 9 E 50 N


def write_cog(path: Path, size: int = 512, block: int = 128, value: int | None = None) -> None:
    """A uint16 COG with 2 overview levels (nearest); random values, or `value` everywhere."""
    rng = np.random.default_rng(3)
    data = (
        np.full((size, size), value, np.uint16)
        if value is not None
        else rng.integers(1, 60000, (size, size), dtype=np.uint16)
    )
    profile = {
        "driver": "COG", "width": size, "height": size, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32632", "transform": UTM, "blocksize": block, "compress": "DEFLATE",
        "overview_resampling": "nearest", "overview_count": 2, "nodata": 0,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


@pytest.fixture()
def aliased_archive(tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    write_cog(archive / "files" / "T1" / "B04.tif")
    (archive / "items.json").write_text('{"type": "FeatureCollection", "features": []}')
    aliases = {
        "items/a/B04.tif": "files/T1/B04.tif",
        "items/b/B04.tif": "files/T1/B04.tif",
        "items/evil/B04.tif": "../outside.tif",
        "items/gone/B04.tif": "files/T1/missing.tif",
    }
    (archive / "aliases.json").write_text(json.dumps(aliases))
    (tmp_path / "outside.tif").write_bytes(b"secret")
    return archive


def test_aliased_hrefs_serve_the_physical_file_with_ranges_and_counters(
    aliased_archive: Path,
) -> None:
    physical = (aliased_archive / "files" / "T1" / "B04.tif").read_bytes()
    with StacServer(aliased_archive) as server:
        for name in ("a", "b"):
            assert get(f"{server.data_url}/items/{name}/B04.tif") == (200, physical)
        status, body = get(f"{server.data_url}/items/a/B04.tif", {"Range": "bytes=10-19"})
        assert (status, body) == (206, physical[10:20])
        assert get(f"{server.data_url}/items/b/B04.tif", method="HEAD")[0] == 200
        assert get(f"{server.data_url}/files/T1/B04.tif")[1] == physical  # the file itself
        stats = server.reset_stats()
        assert stats["data_requests"] == 5 and stats["head_requests"] == 1
        assert stats["range_requests"] == 1
        assert stats["data_bytes"] == 3 * len(physical) + 10
        assert get(f"{server.data_url}/items/evil/B04.tif")[0] == 403  # outside the archive
        assert get(f"{server.data_url}/items/gone/B04.tif")[0] == 404
        assert get(f"{server.data_url}/items/c/B04.tif")[0] == 404  # no alias, no file


def test_aliases_can_be_given_and_are_checked(aliased_archive: Path, tmp_path: Path) -> None:
    with StacServer(aliased_archive, aliases={}) as server:  # given: the file is not read
        assert get(f"{server.data_url}/items/a/B04.tif")[0] == 404
    assert load_aliases(tmp_path / "nowhere") == {}
    (aliased_archive / "aliases.json").write_text('{"items/a.tif": 3}')
    with pytest.raises(ValueError, match="relative hrefs"):
        load_aliases(aliased_archive)


# ---- the lower bound with shared blocks -------------------------------------------------------


def test_counter_counts_each_header_and_tile_once_per_href() -> None:
    offsets = np.array([[100, 200], [300, 400]])
    sizes = np.array([[10, 20], [30, 0]])
    level = Level(256, 256, 128, 128, UTM, offsets, sizes)

    class Layout:
        header_bytes = 100
        levels = (level,)

    counter = _Counter()
    assert counter.add("d1/B04.tif", Layout, 0, [(0, 0), (0, 1)]) == 2  # type: ignore[arg-type]
    assert counter.add("d1/B04.tif", Layout, 0, [(0, 1), (1, 0)]) == 1  # type: ignore[arg-type]
    assert counter.add("d2/B04.tif", Layout, 0, [(0, 1)]) == 1  # type: ignore[arg-type]
    assert counter.bytes == 100 + 10 + 20 + 30 + 100 + 20


def test_batches_follow_sitsflow_batch_size_and_groups() -> None:
    def points(n: int, lon: float) -> list[Feature]:
        return [Feature(f"f{lon:g}-{i}", Point(lon + i * 1e-4, 45.0)) for i in range(n)]

    few = points(50, 5.0)
    assert batches_of(few) == {f.fid: f.fid for f in few}  # one job per feature: no sharing
    many = points(300, 5.0) + points(20, 9.0)  # two 2-degree groups
    batch_of = batches_of(many)
    members: dict[str, list[str]] = {}
    for fid, batch in batch_of.items():
        members.setdefault(batch, []).append(fid)
    # batches of at most AUTO_BATCH_SIZE neighbours, each within one group
    assert all(len(fids) <= AUTO_BATCH_SIZE for fids in members.values()) and len(members) >= 3
    assert len({fid.split("-")[0] for fids in members.values() for fid in fids[:1]}) == 2
    assert all(len({fid.split("-")[0] for fid in fids}) == 1 for fids in members.values())
    assert batch_of["f9-0"] == batch_of["f9-19"] != batch_of["f5-299"]
    assert batch_of["f5-0"] == batch_of["f5-1"]  # neighbours share a batch


def bound_archive(tmp_path: Path, dates: int = 2) -> Path:
    """One physical COG per band (5.12 km at 10 m) whose items for `dates` days alias it."""
    archive = tmp_path / "archive"
    config = default_config()
    bands = [*config["bands"], config["mask"]["band"]]
    for band in bands:
        write_cog(archive / "files" / f"{band}.tif", size=512, block=128)
    items, aliases = [], {}
    for day in range(dates):
        assets = {}
        for band in bands:
            href = f"items/{day}/{band}.tif"
            aliases[href] = f"files/{band}.tif"
            assets[band] = {"href": href}
        items.append({
            "type": "Feature", "id": f"i{day}", "collection": config["collection"],
            "bbox": [8.9, 49.9, 9.1, 50.1],
            "geometry": {"type": "Polygon", "coordinates": [[[8.9, 49.9], [9.1, 49.9],
                         [9.1, 50.1], [8.9, 50.1], [8.9, 49.9]]]},
            "properties": {"datetime": f"2024-05-0{day + 1}T10:00:00Z", "eo:cloud_cover": 1.0},
            "assets": assets,
        })  # fmt: skip
    (archive / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    (archive / "aliases.json").write_text(json.dumps(aliases))
    return archive


def points_file(path: Path, points: list[tuple[float, float]]) -> Path:
    path.write_text(json.dumps(full_archive.points_geojson(points)))
    return path


def test_lower_bound_counts_shared_blocks_once(tmp_path: Path) -> None:
    archive = bound_archive(tmp_path, dates=2)
    transform = UTM
    # two points 100 m apart (the same blocks), one 2.5 km away; all inside the 5.12 km COG
    lon_lat = [full_archive.reproject_point(transform.c + x, transform.f - y, 32632, 4326)
               for x, y in ((1500, 1500), (1600, 1500), (3800, 3600))]  # fmt: skip
    bound = lower_bound(archive, points_file(tmp_path / "pts.geojson", lon_lat), default_config())
    assert bound["features"] == 3 and bound["items"] == 6 and bound["files"] == 24
    assert bound["batches"] == 3  # one job per feature: the batch bound is the per-feature one
    assert bound["batch_tiles"] == bound["tiles"]
    # exact tile sizes, where the per-feature ranges also hold the 8 bytes between tiles
    assert 0 <= bound["bytes"] - bound["batch_bytes"] < 16 * bound["tiles"]
    assert bound["shared_tiles"] < bound["tiles"]
    assert bound["shared_bytes"] < bound["batch_bytes"]
    # two dates: each date's href is counted on its own, as if they were different files
    one_date = lower_bound(
        bound_archive(tmp_path / "one", dates=1), tmp_path / "pts.geojson", default_config()
    )
    assert bound["shared_tiles"] == 2 * one_date["shared_tiles"]
    assert bound["tiles"] == 2 * one_date["tiles"]
    assert sum(bound["tile_kinds"].values()) == bound["batch_tiles"]


# ---- (f): the floor's layout from the IFDs ----------------------------------------------------


def test_floor_layout_from_ifds_equals_gdals(tmp_path: Path) -> None:
    import asyncio

    from async_tiff import TIFF
    from obstore.store import LocalStore

    from benchmarks.floor_reference import contiguous_runs, layout_from_ifds

    write_cog(tmp_path / "b.tif", size=400, block=128)
    expected = read_layout(tmp_path / "b.tif")

    async def ifds() -> list:
        tiff = await TIFF.open("b.tif", store=LocalStore(prefix=tmp_path))
        return tiff.ifds

    layout = layout_from_ifds(asyncio.run(ifds()))
    assert layout.crs == expected.crs
    assert len(layout.levels) == len(expected.levels) == 3
    for ours, gdal in zip(layout.levels, expected.levels, strict=True):
        assert (ours.width, ours.height, ours.tile_width) == (gdal.width, gdal.height, 128)
        assert ours.transform.almost_equals(gdal.transform)
        np.testing.assert_array_equal(ours.offsets, gdal.offsets)
        np.testing.assert_array_equal(ours.sizes, gdal.sizes)
    full = layout.levels[0]  # 4 x 4 tiles, written row by row
    assert contiguous_runs(full, [(1, 1), (0, 0), (0, 1), (2, 3)]) == [
        [(0, 0), (0, 1)],
        [(1, 1)],
        [(2, 3)],
    ]
    assert contiguous_runs(full, [(0, 3), (1, 0)]) == [[(0, 3), (1, 0)]]  # row ends run on


# ---- the full-size archive's pieces -----------------------------------------------------------


def test_tiles_start_on_the_60_m_grid_and_hold_their_point() -> None:
    for lon, lat in ((8.49138, 49.85437), (23.79724, 40.06894), (-3.7, 40.4)):
        tile = full_archive.tile_of(lon, lat)
        x, y = full_archive.reproject_point(lon, lat, 4326, tile.epsg)
        left, bottom, right, top = tile.bounds
        assert left % 60 == 0 and top % 60 == 0
        assert left <= x < right and bottom < y <= top
        assert right - left == full_archive.TILE_M and tile.size(10) == 10980
        assert tile.size(20) == 5490
    assert full_archive.tile_of(8.49, 49.85) == full_archive.tile_of(8.5, 49.86)


def test_texture_and_scene_classes() -> None:
    tile = full_archive.tile_of(8.49, 49.85)
    red = full_archive.bigearthnet_patches("B04")
    nir = full_archive.bigearthnet_patches("B08")
    assert red.shape == (48, 120, 120)
    layout = full_archive.cell_layout(tile, 0, len(red))
    a, b = full_archive.texture(red, layout, 300), full_archive.texture(nir, layout, 300)
    assert a.shape == (300, 300) and a.dtype == np.uint16 and a.min() >= 1
    assert (a > full_archive.BASELINE_OFFSET_DN).mean() > 0.99
    np.testing.assert_array_equal(a, full_archive.texture(red, layout, 300))  # deterministic
    scl = full_archive.scene_classes(a, b, tile, 0)
    assert scl.shape == (150, 150) and set(np.unique(scl)) <= {3, 4, 5, 6, 8, 9, 10}


def test_clustered_points_are_deterministic_and_inside_their_tiles() -> None:
    centres = [(8.49138, 49.85437), (8.41277, 53.14555)]
    points = full_archive.clustered_points(centres, 101, seed=0)
    assert len(points) == 101 and points == full_archive.clustered_points(centres, 101, seed=0)
    first, second = points[:51], points[51:]
    for cluster, centre in ((first, centres[0]), (second, centres[1])):
        tile = full_archive.tile_of(*centre)
        assert {full_archive.tile_of(*p) for p in cluster} == {tile}
    geojson = full_archive.points_geojson(points)
    assert geojson["features"][0]["properties"]["id"] == "c0001"


def test_tile_items_alias_every_date_to_the_tile_files() -> None:
    from datetime import date

    tile = full_archive.tile_of(8.49, 49.85)
    days = [date(2024, 1, 1), date(2024, 1, 6), date(2024, 1, 11)]
    scl = np.full((50, 50), 4, np.uint8)
    items, aliases = full_archive.tile_items(tile, days, 5, scl, 0, clear_fraction=0.5)
    assert len(items) == 3 and len(aliases) == 12
    for item in items:
        assert sorted(item["assets"]) == ["B03", "B04", "B08", "SCL"]
        for band, asset in item["assets"].items():
            assert aliases[asset["href"]] == tile.file(band)
        assert item["assets"]["B04"]["proj:shape"] == [10980, 10980]
        assert item["assets"]["SCL"]["proj:shape"] == [5490, 5490]
    covers = [item["properties"]["eo:cloud_cover"] for item in items]
    assert all(c == 0.0 or c >= 20 for c in covers)  # clear: the SCL's own (no cloud here)


# ---- the output check -------------------------------------------------------------------------


def test_check_outputs_summarises_the_cubes(tmp_path: Path) -> None:
    import pandas as pd
    import xarray as xr

    cubes = tmp_path / "cubes"
    cubes.mkdir()
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    values[0, 0, 0] = np.nan
    time = pd.date_range("2024-01-01", periods=2)
    xr.Dataset({"B04": (("time", "y", "x"), values)}, coords={"time": time}).to_netcdf(
        cubes / "1.nc"
    )
    out = check_outputs("notebook", tmp_path)
    assert out == {"files": 1, "checked": 1, "dates": 2, "pixels": 12,
                   "missing": round(1 / 24, 4), "b04_median": 12.0}  # fmt: skip
    assert check_outputs("floor", tmp_path) == {}
