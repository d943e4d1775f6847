"""Landsat Collection 2 Level-2 on two real Landsat 8 OLI scenes (tests/fixtures/landsat,
decimated to 512 px by the stactools-landsat test suite; real DNs, QA_PIXEL and QA_RADSAT):
radiometry, QA_PIXEL masking bit by bit, QA_RADSAT saturation, item layouts (Planetary Computer
/ stactools, USGS), requester-pays hrefs, and both readers alike. Neither scene's files are
COGs: one scene's are a single 512 px tile without overviews, the other's strips of 8 rows
(which the reader hands to GDAL).

The decimated files have non-square pixels (448 x 456 m); the tests read copies whose
georeferencing says 30 m square pixels (Landsat's own), bytes and layout otherwise unchanged,
so that a cube grid (square pixels) is exactly the file's grid.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sitsflow.catalog.providers import normalise_item, resolve_provider
from sitsflow.catalog.s3 import S3Access
from sitsflow.core.bands import QA_PIXEL, QA_RADSAT, canonical_band, item_family
from sitsflow.core.errors import InputError
from sitsflow.core.grid import Grid
from sitsflow.pixels.cube import read_and_mosaic, read_groups
from sitsflow.pixels.cube_model import QA_CLASS_OFFSET, class_variable
from sitsflow.pixels.qa import QA_PIXEL_BITS
from sitsflow.pixels.read import make_loader
from sitsflow.testing.settings import cube_settings

FIXTURES = Path(__file__).parent / "fixtures" / "landsat"
SCENES = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
BANDS = ["red", "nir08"]
FILE_BANDS = {"red": "SR_B4", "nir08": "SR_B5", QA_PIXEL: "QA_PIXEL", QA_RADSAT: "QA_RADSAT"}
RADSAT_BIT = {"red": 3, "nir08": 4}  # file band n -> bit n-1
TERRAIN_OCCLUSION_BIT = 11
DEFAULT_BITS = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")


SQUARE = 30.0


def scene_file(scene: str, band: str) -> Path:
    return SQUARED / scene / f"{scene}_{FILE_BANDS[band]}.TIF"


@pytest.fixture(scope="module", autouse=True)
def squared_copies(tmp_path_factory: pytest.TempPathFactory):
    """The scenes' files with 30 m square pixels (see the module docstring)."""
    global SQUARED
    SQUARED = tmp_path_factory.mktemp("landsat")
    for scene in SCENES:
        (SQUARED / scene).mkdir()
        for file_band in FILE_BANDS.values():
            name = f"{scene}_{file_band}.TIF"
            (SQUARED / scene / name).write_bytes((FIXTURES / scene / name).read_bytes())
            path = SQUARED / scene / name
            with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:
                left, top = dataset.transform.c, dataset.transform.f
                dataset.transform = rasterio.Affine(SQUARE, 0, left, 0, -SQUARE, top)


SQUARED = FIXTURES


def stactools_item(scene: str) -> dict:
    """The Planetary Computer layout (stactools-landsat) of `scene`, its hrefs, shape and
    transform those of the decimated files, and only the assets the tests read."""
    item = json.loads((FIXTURES / scene / "stactools-landsat_item.json").read_text())
    keys = {"red": "red", "nir08": "nir08", QA_PIXEL: "qa_pixel", QA_RADSAT: "qa_radsat"}
    with rasterio.open(scene_file(scene, "red")) as dataset:
        shape, transform = [dataset.height, dataset.width], list(dataset.transform)[:6]
    item["properties"].update({"proj:shape": shape, "proj:transform": transform})
    item["assets"] = {
        key: {**item["assets"][key], "href": str(scene_file(scene, band))}
        for band, key in keys.items()
    }
    return item


def usgs_item(scene: str) -> dict:
    """USGS's own item of the scene (STAC 0.7, assets keyed by file), hrefs made local."""
    item = json.loads((FIXTURES / scene / f"{scene}_SR_stac.json").read_text())
    for band, file_band in FILE_BANDS.items():
        item["assets"][f"{file_band}.TIF"]["href"] = str(scene_file(scene, band))
    return item


def file_grid(scene: str) -> Grid:
    with rasterio.open(scene_file(scene, "red")) as dataset:
        left, bottom, right, top = dataset.bounds
        return Grid(dataset.crs.to_epsg(), dataset.transform.a, (left, bottom, right, top))


def raw(scene: str, band: str) -> np.ndarray:
    with rasterio.open(scene_file(scene, band)) as dataset:
        return dataset.read(1)


def mosaic_of(scene: str, item: dict, loader_name: str = "sitsflow", **mask: object):
    settings = cube_settings(
        collection="landsat-c2-l2", bands=BANDS, loader=loader_name, mask=dict(mask)
    )
    groups = read_groups([item], {"catalog": str(FIXTURES)}, settings, None)
    loader = make_loader(settings)
    try:
        grid = file_grid(scene)
        return read_and_mosaic(groups, BANDS, settings.mask, grid, -60.0, loader)
    finally:
        loader.close()


def expected_clear(scene: str, bits: tuple[str, ...] = DEFAULT_BITS) -> np.ndarray:
    qa = raw(scene, QA_PIXEL).astype(np.int64)
    radsat = raw(scene, QA_RADSAT).astype(np.int64)
    flags = 0
    for name in ("fill", *bits):
        flags |= 1 << QA_PIXEL_BITS[name]
    clear = (qa & flags) == 0
    clear &= (radsat & (1 << TERRAIN_OCCLUSION_BIT)) == 0
    for band, bit in RADSAT_BIT.items():
        clear &= (radsat & (1 << bit)) == 0
        clear &= raw(scene, band) != 0
    return clear


@pytest.mark.parametrize("loader_name", ["sitsflow", "stackstac"])
@pytest.mark.parametrize("scene", SCENES)
def test_clear_pixels_are_dn_times_scale_plus_offset_exactly(scene, loader_name):
    stacks, _, mosaic = mosaic_of(scene, stactools_item(scene), loader_name)
    clear = expected_clear(scene)
    assert 1000 < clear.sum() < clear.size  # the scene has clear and masked pixels
    np.testing.assert_array_equal(mosaic.observed[0], clear)
    for index, band in enumerate(BANDS):
        dn = raw(scene, band).astype(np.float32)
        # what to_reflectance computes, in float32: DN * 2.75e-05 - 0.2
        exact = dn * np.float32(2.75e-05) + np.float32(-0.2)
        values = mosaic.reflectance[0, index]
        np.testing.assert_array_equal(values[clear], exact[clear])
        np.testing.assert_allclose(values[clear], dn[clear] * 2.75e-05 - 0.2, atol=1e-7)
        assert np.isnan(values[~clear]).all()
    if loader_name == "sitsflow":  # striped files go to GDAL; one 512 px tile is read as is
        with rasterio.open(scene_file(scene, "red")) as dataset:
            striped = dataset.block_shapes[0][0] < dataset.height
        through_gdal = stacks.through_gdal.get(stactools_item(scene)["id"], {})
        assert ("red" in through_gdal) == striped
        assert striped == (scene == SCENES[1])


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("bit", ["dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow"])
def test_each_qa_pixel_bit_masks_its_pixels_and_only_when_asked(scene, bit):
    qa = raw(scene, QA_PIXEL).astype(np.int64)
    has_bit = ((qa & (1 << QA_PIXEL_BITS[bit])) != 0) & ((qa & 1) == 0)
    alone = mosaic_of(scene, stactools_item(scene), qa_pixel=[bit])[2].observed[0]
    without = mosaic_of(scene, stactools_item(scene), qa_pixel=[])[2].observed[0]
    np.testing.assert_array_equal(alone, expected_clear(scene, (bit,)))
    np.testing.assert_array_equal(without, expected_clear(scene, ()))
    assert not alone[has_bit].any()
    if has_bit.any():  # the bit's pixels are observed when it is not masked (unless saturated)
        assert without[has_bit].sum() == expected_clear(scene, ())[has_bit].sum() > 0


@pytest.mark.parametrize("scene", SCENES)
def test_fill_is_no_data_and_the_qa_variable_keeps_the_bits(scene):
    _, _, mosaic = mosaic_of(scene, stactools_item(scene), qa_pixel=[])
    qa = raw(scene, QA_PIXEL)
    fill = (qa & 1) != 0
    assert fill.any()
    assert not mosaic.observed[0][fill].any()
    assert np.isnan(mosaic.classification[0][fill]).all()  # no data: another item may fill it
    variable = class_variable(QA_PIXEL, mosaic.classification, ("time", "y", "x"))
    np.testing.assert_array_equal(variable.data[0][~fill], qa[~fill])
    assert (variable.data[0][fill] == 1).all()
    assert (mosaic.classification[0][~fill] >= QA_CLASS_OFFSET).all()
    assert (class_variable("SCL", mosaic.classification, ("time", "y", "x")).data == 0).all()


def red_saturated(radsat: np.ndarray) -> np.ndarray:
    return (radsat & (1 << RADSAT_BIT["red"])) != 0


def test_saturated_bands_and_occluded_pixels_have_no_value():
    """Scene 1 has QA_RADSAT 16 (band 5), 24 and 26 (bands 4 and 5); scene 2 terrain
    occlusion (bit 11). A pixel with a saturated band is not clear (as Sentinel-2's DN 65535);
    with `mask.radsat: false` it is."""
    first, second = SCENES
    radsat = raw(first, QA_RADSAT).astype(np.int64)
    nir_saturated = (radsat & (1 << RADSAT_BIT["nir08"])) != 0
    # saturated pixels are bright clouds: masked by QA_PIXEL anyway; with fill masked only,
    # QA_RADSAT alone decides
    item = stactools_item(first)
    unmasked = mosaic_of(first, item, qa_pixel=[], radsat=False)[2].observed[0]
    clear = mosaic_of(first, item, qa_pixel=[])[2].observed[0]
    assert nir_saturated.sum() >= 20
    assert unmasked[nir_saturated].all()
    assert not clear[nir_saturated].any()
    np.testing.assert_array_equal(clear, unmasked & ~nir_saturated & ~red_saturated(radsat))
    occluded = (raw(second, QA_RADSAT).astype(np.int64) & (1 << TERRAIN_OCCLUSION_BIT)) != 0
    assert occluded.sum() == 5
    assert not mosaic_of(second, stactools_item(second))[2].observed[0][occluded].any()


@pytest.mark.parametrize("scene", SCENES)
def test_the_usgs_layout_reads_the_same_values(scene):
    """USGS's STAC 0.7 item: assets keyed by file (`SR_B4.TIF`), no raster extension (the
    product definition gives scale and offset), platform `LANDSAT_8`."""
    item = usgs_item(scene)
    assert item_family(item) == "landsat"
    provider = resolve_provider(items=[item])
    assert provider.name == "usgs-landsat"
    normalised = normalise_item(item, [*BANDS, QA_PIXEL, QA_RADSAT], provider)
    assert normalised["assets"]["red"]["sitsflow:asset_key"] == "SR_B4.TIF"
    assert normalised["assets"]["red"]["sitsflow:rule"].startswith("Landsat Collection 2")
    usgs = mosaic_of(scene, item)[2]
    stactools = mosaic_of(scene, stactools_item(scene))[2]
    np.testing.assert_array_equal(usgs.observed, stactools.observed)
    np.testing.assert_array_equal(usgs.reflectance, stactools.reflectance)


def test_usgs_s3_hrefs_are_read_only_when_the_user_pays():
    item = usgs_item(SCENES[0])
    s3 = "s3://usgs-landsat/collection02/level-2/standard/oli-tirs/2019/001/070/x_SR_B4.TIF"
    item["assets"]["SR_B4.TIF"]["alternate"] = {"s3": {"href": s3}}
    free = normalise_item(item, ["red"], resolve_provider(items=[item]))
    paid = normalise_item(item, ["red"], resolve_provider(items=[item], requester_pays=True))
    assert free["assets"]["red"]["href"] == str(scene_file(SCENES[0], "red"))
    assert paid["assets"]["red"]["href"] == s3
    rewrites, options = S3Access().plan([s3])
    assert rewrites == {s3: s3}
    assert options["AWS_REQUEST_PAYER"] == "requester"
    assert options["AWS_NO_SIGN_REQUEST"] == "NO"  # signed, with the environment's keys
    assert options["AWS_REGION"] == "us-west-2"


def test_planetary_computer_landsat_is_signed_and_keyed_by_common_name():
    provider = resolve_provider(
        catalog="https://planetarycomputer.microsoft.com/api/stac/v1", collection="landsat-c2-l2"
    )
    assert provider.name == "planetary-computer" and provider.signs_hrefs
    item = stactools_item(SCENES[0])
    normalised = normalise_item(item, ["red"], provider)
    assert normalised["assets"]["red"]["sitsflow:asset_key"] == "red"
    assert normalised["assets"]["red"]["sitsflow:scale"] == 2.75e-05


def test_surface_temperature_is_in_kelvin():
    item = copy.deepcopy(stactools_item(SCENES[0]))
    full = json.loads((FIXTURES / SCENES[0] / "stactools-landsat_item.json").read_text())
    item["assets"]["lwir11"] = full["assets"]["lwir11"]
    normalised = normalise_item(item, ["lwir11"], resolve_provider(items=[item]))
    assert normalised["assets"]["lwir11"]["sitsflow:scale"] == pytest.approx(0.00341802)
    assert normalised["assets"]["lwir11"]["sitsflow:offset"] == pytest.approx(149.0)
    tm = copy.deepcopy(item)
    tm["properties"]["platform"] = "landsat-5"
    tm["assets"] = {"lwir": {**full["assets"]["lwir11"]}}
    tm["assets"]["lwir"].pop("raster:bands")
    rule = normalise_item(tm, ["lwir11"], resolve_provider(items=[tm]))["assets"]["lwir11"]
    assert rule["sitsflow:asset_key"] == "lwir"
    assert (rule["sitsflow:scale"], rule["sitsflow:offset"]) == (0.00341802, 149.0)


def test_band_names_of_a_run_with_landsat():
    assert [canonical_band(b, landsat=True) for b in ["B04", "nir", "SWIR16", "qa_pixel"]] == [
        "red",
        "nir08",
        "swir16",
        QA_PIXEL,
    ]
    assert canonical_band("red") == "B04"  # a Sentinel-2 run, as always
    with pytest.raises(InputError, match="measured by Sentinel-2 only"):
        canonical_band("B05", landsat=True)
    with pytest.raises(InputError, match="not measured by Landsat TM"):
        normalise_item(
            {**stactools_item(SCENES[0]), "properties": {"platform": "landsat-5"}},
            ["coastal"],
            resolve_provider(),
        )


@pytest.mark.integration
def test_a_run_of_sentinel_2_and_landsat_gives_one_cube_with_both_platforms(
    tmp_path, make_workdir, snakemake
):
    """Both collections of the demo archive onto one axis: one cube per feature, steps from
    both sensors, the SCL and QA_PIXEL variables, each step's platforms."""
    from shapely.geometry import Point

    from sitsflow.demo.archive import generate_archive
    from sitsflow.outputs.write import open_cube

    point = Point(8.5, 49.8)
    items = generate_archive(
        [("p", point)],
        tmp_path / "archive",
        "2024-05-01",
        "2024-05-31",
        collections=["sentinel-2-l2a", "landsat-c2-l2"],
    )
    workdir = make_workdir(
        "landsat",
        {"p": point},
        catalog=str(items),
        collection=["sentinel-2-l2a", "landsat-c2-l2"],
        start="2024-05-01",
        end="2024-05-31",
        bands=["green", "red"],
        resolution=30,
        crs="utm",
        query=None,
        bandpass="hls",
    )
    snakemake(workdir)
    with open_cube(workdir / "results" / "cubes" / "p.nc") as opened:
        cube = opened.load()
    platforms = {name for step in cube["platform"].values for name in str(step).split("+")}
    assert any(name.startswith("landsat") for name in platforms)
    assert any(name.startswith("sentinel-2") for name in platforms)
    assert {"green", "red", "SCL", "QA_PIXEL"} <= set(cube.data_vars)
    from_landsat = cube["QA_PIXEL"].values != 1
    assert (cube["SCL"].values[from_landsat] == 0).all()  # a pixel comes from one item
    assert cube.attrs["status"] == "ok" and 0 < cube.attrs["valid_fraction"] <= 1
    assert cube.attrs["bandpass_adjustment"].startswith("HLS v2.0 bandpass adjustment")
    assert "sentinel-2" in cube.attrs["bandpass_adjustment"].split("coefficients:")[1]


def test_the_plan_counts_a_striped_file_by_its_strips():
    """`make plan` probes each band's layout; a striped file (GDAL reads it strip by strip)
    is one level whose tiles are its strips."""
    from sitsflow.workflow.plan import probe

    striped = probe(str(FIXTURES / SCENES[1] / f"{SCENES[1]}_SR_B4.TIF"))
    assert [(level.tile_width, level.tile_height) for level in striped.levels] == [(512, 8)]
    assert striped.levels[0].mean_tile_bytes == pytest.approx(512 * 8 * 2, rel=0.01)
    tiled = probe(str(FIXTURES / SCENES[0] / f"{SCENES[0]}_SR_B4.TIF"))
    assert [(level.tile_width, level.tile_height) for level in tiled.levels] == [(512, 512)]


def test_hls_bandpass_adjustment_per_sentinel_2_platform():
    """OLI = slope * MSI + offset with HLS v2.0's coefficients, 2A's and 2B's apart; a platform
    HLS does not list takes 2B's and says so; bands without coefficients stay as they were."""
    from sitsflow.pixels.bandpass import HLS_COEFFICIENTS, adjust_to_oli

    msi = np.full((3, 2, 2), 0.3, np.float32)
    for platform, expected_platform in [
        ("sentinel-2a", "sentinel-2a"),
        ("sentinel-2b", "sentinel-2b"),
        ("sentinel-2c", "sentinel-2b"),
    ]:
        values = msi.copy()
        used = adjust_to_oli(values, ["red", "nir08", "lwir11"], platform)
        assert used == expected_platform
        for index, band in enumerate(["red", "nir08"]):
            slope, offset = HLS_COEFFICIENTS[expected_platform][band]
            np.testing.assert_allclose(values[index], 0.3 * slope + offset, rtol=1e-6)
        np.testing.assert_array_equal(values[2], msi[2])
    assert HLS_COEFFICIENTS["sentinel-2a"]["red"] == (0.9765, 0.0009)
    assert HLS_COEFFICIENTS["sentinel-2b"]["swir22"] == (0.9867, 0.0004)


def test_a_run_with_landsat_checks_and_computes_by_common_name():
    """Parse-time checks and the NDVI-based products speak the run's band names."""
    from sitsflow.pixels.indices import check_indices, compute_index
    from sitsflow.testing.settings import config_for

    config = config_for(
        collection=["sentinel-2-l2a", "landsat-c2-l2"],
        bands=["red", "nir08", "swir16"],
        indices=["NDVI", "NDMI"],
        time_step="P16D",
        composite="max_ndvi",
        attributes=[],
    )
    assert config["bands"] == ["red", "nir08", "swir16"]
    with pytest.raises(InputError, match="'lwir11' is not measured by Sentinel-2.*both sensors"):
        config_for(collection=["sentinel-2-l2a", "landsat-c2-l2"], bands=["red", "lwir11"])
    assert config_for(collection="landsat-c2-l2", bands=["red", "lwir11"])["bands"]
    with pytest.raises(InputError, match=r"from red and nir08; add \['nir08'\]"):
        config_for(
            collection="landsat-c2-l2", bands=["red"], time_step="P16D", composite="max_ndvi"
        )
    with pytest.raises(InputError, match="NDWI.*add nir08"):
        check_indices(["NDWI"], ["green"], landsat=True)
    red, nir = np.array([0.1], np.float32), np.array([0.5], np.float32)
    ndvi = compute_index("NDVI", {"red": red, "nir08": nir}, landsat=True)
    np.testing.assert_allclose(ndvi, (0.5 - 0.1) / (0.5 + 0.1), rtol=1e-6)
