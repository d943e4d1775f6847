"""sitsflow's reader on every file layout GDAL reads (issue 20): right alone and beside other
layouts of the same grid, or handed to GDAL; never silently no data.

Each layout of `sitsflow.testing.layouts` holds the same real BigEarthNet pixels (B04 at 10 m,
B11 at 20 m, a class band at 20 m). Every read is compared value for value with stackstac's
(GDAL's warper), on the file's UTM grid at 10 and 20 m (overviews) and on EPSG:3035.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from sitsflow.core.errors import AssetError
from sitsflow.core.grid import Grid
from sitsflow.pixels.gdal_reads import GridTarget, read_file_with_gdal
from sitsflow.pixels.load import read_items
from sitsflow.pixels.tiles import TileReader
from sitsflow.testing.layouts import LAYOUTS, class_band, source_band, write_layout
from sitsflow.testing.stac_server import StacServer

PATCH = Path(__file__).parents[2] / "shared/data/bigearthnet-s2/S2A_MSIL2A_20170613T101031_87_48"
BANDS = ["B04", "B11", "SCL"]
# a plain GeoTIFF often has no nodata tag: zeros are values to GDAL, and to sitsflow's reader
WITHOUT_NODATA_TAG = {"tiled-512-ifd-last", "striped"}


def item_for(name: str, hrefs: dict[str, str], epsg: int, shapes: dict, transforms: dict) -> dict:
    """A STAC item of one layout (normalised: assets keyed by band, `proj:epsg` set)."""
    west, north = transforms["B04"][2], transforms["B04"][5]
    east, south = west + 6000, north - 6000
    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    lons, lats = to_lonlat.transform([west, east, east, west], [south, south, north, north])
    ring = [[lon, lat] for lon, lat in zip(lons, lats, strict=True)]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "properties": {"datetime": "2017-06-13T10:10:31Z", "proj:epsg": epsg},
        "assets": {
            band: {
                "href": href,
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "proj:shape": shapes[band],
                "proj:transform": transforms[band],
            }
            for band, href in hrefs.items()
        },
        "links": [],
    }


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, dict[str, dict], int]:
    """Every layout's item (local hrefs), the archive directory and the files' EPSG code."""
    if not PATCH.is_dir():
        pytest.skip(f"{PATCH} is missing (../shared beside the checkout)")
    root = tmp_path_factory.mktemp("layouts")
    red, red_transform, epsg = source_band(next(PATCH.glob("*_B04.tif")), 600)
    swir, swir_transform, _ = source_band(next(PATCH.glob("*_B11.tif")), 300)
    classes = class_band(swir)
    red[:40, :40] = 0  # a no-data corner
    swir[:20, :20] = classes[:20, :20] = 0
    values = {"B04": red, "B11": swir, "SCL": classes}
    transforms = {"B04": red_transform, "B11": swir_transform, "SCL": swir_transform}
    items = {}
    for name in LAYOUTS:
        nodata = None if name in WITHOUT_NODATA_TAG else 0
        hrefs = {
            band: str(
                write_layout(
                    name, values[band], transforms[band], epsg, root / f"{name}_{band}", nodata
                )
            )
            for band in BANDS
        }
        shapes = {band: list(values[band].shape) for band in BANDS}
        gdal_transforms = {band: list(transforms[band])[:6] for band in BANDS}
        items[name] = item_for(name, hrefs, epsg, shapes, gdal_transforms)
    return root, items, epsg


def grids(epsg: int) -> dict[str, Grid]:
    west, north = 404400.0, 5342400.0  # the BigEarthNet patch's corner
    inner = (west + 1000, north - 5000, west + 4000, north - 1000)
    to_laea = Transformer.from_crs(epsg, 3035, always_xy=True)
    xs, ys = to_laea.transform([inner[0], inner[2]], [inner[1], inner[3]])
    laea = (
        np.ceil(min(xs) / 20) * 20,
        np.ceil(min(ys) / 20) * 20,
        np.floor(max(xs) / 20) * 20,
        np.floor(max(ys) / 20) * 20,
    )
    return {
        "utm-10m": Grid(epsg, 10.0, inner),
        "utm-20m": Grid(epsg, 20.0, inner),
        "laea-20m": Grid(3035, 20.0, tuple(float(v) for v in laea)),
        # the files' top rows, with the no-data corner: some tiles hold the nodata value
        "utm-10m-corner": Grid(epsg, 10.0, (west, north - 3000, west + 6000, north)),
    }


def gdal_reference(items: list[dict], grid: Grid) -> np.ndarray:
    return read_items(items, BANDS, grid).data


@pytest.mark.parametrize("grid_name", ["utm-10m", "utm-20m", "laea-20m", "utm-10m-corner"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_alone_reads_as_gdal_reads_it(archive, layout, grid_name):
    _, items, epsg = archive
    grid = grids(epsg)[grid_name]
    with TileReader() as reader:
        stack = reader.read([items[layout]], BANDS, grid)
    np.testing.assert_array_equal(stack.data, gdal_reference([items[layout]], grid))
    assert np.isfinite(stack.data).mean() > 0.9  # the data, not no data
    if LAYOUTS[layout].fast:
        assert stack.through_gdal == {}
    else:
        assert set(stack.through_gdal[layout]) == set(BANDS)


@pytest.mark.parametrize("grid_name", ["utm-10m", "utm-20m", "laea-20m"])
def test_layouts_mixed_in_one_read_each_read_as_alone(archive, grid_name):
    """What the reader derives from one file (levels, pixel maps) never serves another file
    whose layout differs: COGs first, then every other layout of the same grid."""
    _, items, epsg = archive
    grid = grids(epsg)[grid_name]
    everything = list(items.values())
    with TileReader() as reader:
        mixed = reader.read(everything, BANDS, grid)
    np.testing.assert_array_equal(mixed.data, gdal_reference(everything, grid))
    gdal_read = {name for name, spec in LAYOUTS.items() if not spec.fast}
    assert set(mixed.through_gdal) == gdal_read
    # and read together with the batch's prefetch, in two features of one grid
    with TileReader() as reader:
        from sitsflow.pixels.tiles import ReadRequest

        requests = [
            ReadRequest(everything, BANDS, grid),
            ReadRequest(everything[::-1], BANDS, grid),
        ]
        assert reader.prefetch(requests) == 2
        first = reader.read(everything, BANDS, grid)
        second = reader.read(everything[::-1], BANDS, grid)
    np.testing.assert_array_equal(first.data, mixed.data)
    np.testing.assert_array_equal(second.data, mixed.data[::-1])
    assert set(first.through_gdal) == gdal_read


@pytest.mark.parametrize("layout", [name for name, spec in LAYOUTS.items() if spec.fast])
def test_the_gdal_path_gives_what_the_fast_path_gives(archive, layout):
    """Whichever path reads a file, the cube is the same: the same level, the same pixels."""
    _, items, epsg = archive
    grid = grids(epsg)["utm-20m"]
    with TileReader() as reader:
        fast = reader.read([items[layout]], BANDS, grid)
    for index, band in enumerate(BANDS):
        target = GridTarget(
            grid, np.full((grid.height, grid.width), np.nan, np.float32), band == "SCL", True
        )
        read_file_with_gdal(items[layout]["assets"][band]["href"], [target])
        np.testing.assert_array_equal(target.out, fast.data[0, index])
        assert (target.description,) == tuple(fast.sources[band])


def test_jpeg2000_and_striped_files_are_read_over_http_through_gdal(archive):
    root, items, epsg = archive
    grid = grids(epsg)["utm-20m"]
    served = {}
    for name in ("jp2-lossless", "striped", "cog"):
        served[name] = json.loads(json.dumps(items[name]))
        for asset in served[name]["assets"].values():
            asset["href"] = Path(asset["href"]).name
    (root / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": list(served.values())})
    )
    with StacServer(root) as server:
        for item in served.values():
            for asset in item["assets"].values():
                asset["href"] = f"{server.data_url}/{asset['href']}"
        with TileReader() as reader:
            stack = reader.read(list(served.values()), BANDS, grid)
    local = [items[name] for name in served]
    np.testing.assert_array_equal(stack.data, gdal_reference(local, grid))
    assert "JPEG 2000" in stack.through_gdal["jp2-lossless"]["B04"]
    assert "striped" in stack.through_gdal["striped"]["B04"]
    assert "cog" not in stack.through_gdal


def corrupted_copy(source: str, target: Path) -> Path:
    """`source` with the bytes of its first tile garbled (a damaged block)."""
    import rasterio

    shutil.copyfile(source, target)
    with rasterio.open(target) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    with open(target, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    return target


def test_errors_say_what_happened(archive, tmp_path):
    _, items, epsg = archive
    grid = grids(epsg)["utm-10m"]

    def failure(href: str) -> str:
        item = json.loads(json.dumps(items["cog"]))
        item["assets"]["B04"]["href"] = href
        with TileReader() as reader, pytest.raises(AssetError) as raised:
            reader.read([item], ["B04"], grid)
        return str(raised.value)

    missing = failure(str(tmp_path / "gone.tif"))
    assert "asset 'B04' of item 'cog'" in missing and "unreachable" in missing
    assert "rerun later" in missing
    text = tmp_path / "notes.tif"
    text.write_text("not a raster at all\n" * 100)
    unreadable = failure(str(text))
    assert "not a raster sitsflow or GDAL can read" in unreadable
    assert "not a GeoTIFF" in unreadable and "GDAL cannot read it either" in unreadable
    damaged = corrupted_copy(items["cog"]["assets"]["B04"]["href"], tmp_path / "damaged.tif")
    corrupt = failure(str(damaged))
    assert "corrupt data" in corrupt and "tile column 0, row 0 of the image" in corrupt
    assert "damaged at the provider" in corrupt


def test_a_pixel_map_is_never_placed_on_another_layout(archive):
    """The check behind the mixed reads: a map made for 256 px tiles refuses 512 px tiles."""
    from dataclasses import replace

    from sitsflow.pixels.tiles import Level, _place, pixel_map

    _, _, epsg = archive
    grid = grids(epsg)["utm-10m"]
    level = Level(
        0, 600, 600, 256, 256, __import__("affine").Affine(10, 0, 404400, 0, -10, 5342400), epsg
    )
    pixels = pixel_map(level, grid)
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    with pytest.raises(RuntimeError, match="pixel map made for"):
        _place(out, pixels, replace(level, tile_width=512, tile_height=512), {})


def test_a_cube_from_every_layout_is_the_cube_gdal_reads(archive):
    """The whole cube (normalise, read, mask, mosaic, gap-fill) over items of every layout, one
    date each: the same values with sitsflow's reader as with stackstac, and the cube says
    which items went through GDAL and why."""
    from shapely.geometry import Point

    from sitsflow.core.bbox import make_aoi_record
    from sitsflow.core.features import Feature
    from sitsflow.pixels.cube import make_cube
    from sitsflow.testing.settings import cube_settings, grid_settings

    _, items, epsg = archive
    dated = []
    for day, item in enumerate(items.values(), start=1):
        item = json.loads(json.dumps(item))
        item["properties"].update(
            {
                "datetime": f"2017-06-{day:02d}T10:10:31Z",
                "platform": "sentinel-2a",
                "eo:cloud_cover": 1.0,
                "s2:processing_baseline": "02.14",
            }
        )
        dated.append(item)
    centre = Transformer.from_crs(epsg, 4326, always_xy=True).transform(407400, 5339400)
    record = make_aoi_record(
        Feature("f", Point(*centre)), grid_settings(crs="utm", resolution=20, buffer_m=1000)
    )
    info = {"catalog": "layouts", "collection": "sentinel-2-l2a"}
    cubes = {
        loader: make_cube(
            record,
            dated,
            info,
            cube_settings(
                bands=["B04", "B11"], start="2017-06-01", end="2017-06-30", loader=loader
            ),
        )
        for loader in ("sitsflow", "stackstac")
    }
    ours, theirs = cubes["sitsflow"], cubes["stackstac"]
    assert ours.sizes["time"] == len(LAYOUTS) and float(ours.attrs["valid_fraction"]) > 0.2
    for name in ("B04", "B11", "SCL", "observed"):
        np.testing.assert_array_equal(ours[name].values, theirs[name].values)
    through_gdal = json.loads(ours.attrs["read_through_gdal"])
    assert set(through_gdal) == {name for name, spec in LAYOUTS.items() if not spec.fast}
    assert "read_through_gdal" not in theirs.attrs


def test_directories_after_the_data_go_to_gdal_beyond_the_limit(archive):
    """async-tiff reads a file's directories as one run from its start: a directory far in
    would cost every byte before it, so such a file is GDAL's (at any limit, values equal)."""
    from sitsflow.pixels.tiles import directories_far_in

    _, items, _ = archive
    head = {
        name: Path(item["assets"]["B04"]["href"]).read_bytes()[:4096]
        for name, item in items.items()
        if name != "jp2-lossless"
    }
    assert directories_far_in(head["cog"], limit=4096) is None
    assert directories_far_in(head["bigtiff"], limit=4096) is None
    for name in ("tiled-512-ifd-last", "tiled-512-ifd-last-overviews"):
        assert "after the data" in directories_far_in(head[name], limit=4096)
        assert directories_far_in(head[name]) is None  # within the first MB: read as a run
    assert directories_far_in(b"\x00\x00\x00\x0cjP  \r\n") is None  # not a TIFF: the parser
