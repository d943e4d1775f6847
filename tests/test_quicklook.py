"""Quicklook and overview PNGs: what they draw, checked against the cubes and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PathCollection
from matplotlib.image import imread

from sitsflow.core.layout import Layout
from sitsflow.outputs.overview import overview_figure, overview_table
from sitsflow.outputs.quicklook import (
    choose_display,
    date_statistics,
    quicklook_figure,
    reflectance_bands,
    thumbnail_mosaic,
    thumbnail_steps,
    thumbnails,
)
from sitsflow.outputs.write import open_cube
from tests.helpers import ARCHIVE_FEATURES, BANDS, EMPTY_FEATURE


@pytest.fixture(scope="module")
def run(netcdf_run):
    return netcdf_run


def load_cube(run, fid: str) -> xr.Dataset:
    with open_cube(run / "results" / "cubes" / f"{fid}.nc") as cube:
        return cube.load()


@pytest.mark.parametrize(
    "bands,expected",
    [
        (["B02", "B03", "B04", "B08"], ("B04", "B03", "B02")),
        (["B03", "B04", "B08", "B11"], ("B08", "B04", "B03")),
        (["B11", "B12"], ("B11",)),
    ],
)
def test_display_bands(bands, expected):
    assert choose_display(bands).bands == expected


def test_thumbnail_steps_are_evenly_spread_and_bounded():
    assert thumbnail_steps(5).tolist() == [0, 1, 2, 3, 4]
    steps = thumbnail_steps(73)
    assert len(steps) == 24 and steps[0] == 0 and steps[-1] == 72
    assert np.ptp(np.diff(steps)) <= 1


def png_pixels(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def distinct_colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0))


def test_quicklook_png_of_each_feature(run):
    for fid in ARCHIVE_FEATURES:
        pixels = png_pixels(run / "results" / "quicklooks" / f"{fid}.png")
        height, width = pixels.shape[:2]
        assert width == 1400 and 700 < height < 1400, (fid, pixels.shape)
        assert distinct_colours(pixels) > 500, fid  # thumbnails and curves, not a blank page


def thumbnail_images(cube: xr.Dataset) -> np.ndarray:
    steps = thumbnail_steps(cube.sizes["time"])
    return thumbnails(cube, choose_display(reflectance_bands(cube)), steps)


def test_quicklook_draws_the_cube(run):
    cube = load_cube(run, "p1")
    figure = quicklook_figure(cube)
    steps = cube.sizes["time"]
    thumbnails = next(axes for axes in figure.axes if axes.get_label() == "thumbnails")
    labels = [text.get_text() for text in thumbnails.texts]
    assert len(labels) == min(steps, 24)
    dates = [str(t)[:10] for t in cube["time"].values]
    masked = 1 - cube["observed"].values.reshape(steps, -1).mean(axis=1)
    for label, date, fraction in zip(labels, dates, masked, strict=False):
        assert label == f"{date}\n{fraction:.0%} gap-filled"
    # the thumbnails, each under its label: the cube's pixels, stretched
    images = thumbnail_images(cube)
    mosaic, origins = thumbnail_mosaic(images)
    np.testing.assert_array_equal(np.asarray(thumbnails.images[0].get_array()), mosaic)
    height, width = images.shape[1:3]
    for text, (top, left), image in zip(thumbnails.texts, origins, images, strict=True):
        assert text.get_position() == (left + width / 2, top - 1)
        np.testing.assert_array_equal(mosaic[top : top + height, left : left + width], image)
    assert np.ptp(images[0]) > 0.3  # stretched, not flat

    reflectance = next(axes for axes in figure.axes if axes.get_ylabel() == "median reflectance")
    lines = {line.get_label(): line for line in reflectance.get_lines()}
    for band in BANDS:
        median = np.nanmedian(cube[band].values.reshape(steps, -1), axis=1)
        np.testing.assert_allclose(lines[band].get_ydata(), median, rtol=1e-6)
    secondary = next(a for a in figure.axes if a.get_ylabel() == "masked (gap-filled) fraction")
    (collection,) = secondary.collections  # one rectangle per date
    bars = [path.vertices[:, 1].max() for path in collection.get_paths()]
    np.testing.assert_allclose(sorted(bars), sorted(masked), atol=1e-9)

    index_axes = next(axes for axes in figure.axes if axes.get_ylabel() == "median index")
    ndvi = {line.get_label(): line for line in index_axes.get_lines()}["NDVI"]
    np.testing.assert_allclose(
        ndvi.get_ydata(), np.nanmedian(cube["NDVI"].values.reshape(steps, -1), axis=1), rtol=1e-6
    )


def test_ndvi_is_added_when_red_and_nir_exist(run):
    cube = load_cube(run, "poly").drop_vars(["NDVI", "NDWI", "EVI"])
    cube.attrs.pop("indices")
    statistics = date_statistics(cube)
    red, nir = cube["B04"].values.astype(float), cube["B08"].values.astype(float)
    inside = cube["inside"].values.astype(bool)  # a polygon: the pixels inside it
    ndvi = ((nir - red) / (nir + red))[:, inside]
    np.testing.assert_allclose(statistics["NDVI"], np.nanmedian(ndvi, axis=1), rtol=1e-9)


def test_many_time_steps_show_24_thumbnails(run):
    cube = load_cube(run, "p1")
    # xarray's present defaults, spelt out (its default for data_vars is changing)
    long = xr.concat(
        [cube] * 4, dim="time", data_vars="all", coords="different", compat="equals", join="outer"
    )
    long["time"] = cube["time"].values[0] + np.arange(long.sizes["time"]) * np.timedelta64(1, "D")
    figure = quicklook_figure(long)
    thumbnails = next(axes for axes in figure.axes if axes.get_label() == "thumbnails")
    assert len(thumbnails.texts) == 24


def test_feature_without_items_gets_a_png_saying_so(run):
    fid = EMPTY_FEATURE[0]
    pixels = png_pixels(run / "results" / "quicklooks" / f"{fid}.png")
    assert distinct_colours(pixels) > 2  # text on white
    figure = quicklook_figure(load_cube(run, fid))
    texts = " ".join(text.get_text() for text in figure.texts)
    assert f"feature {fid}" in texts and "no time steps" in texts


def test_overview_png_and_its_table(run):
    pixels = png_pixels(run / "results" / "overview.png")
    assert pixels.shape[1] == 900 and distinct_colours(pixels) > 50
    table = overview_table(run / "results" / "summary.csv", Layout(), root=run).set_index(
        "feature_id"
    )
    assert set(table.index) == {*ARCHIVE_FEATURES, EMPTY_FEATURE[0]}
    summary = pd.read_csv(run / "results" / "summary.csv", dtype={"feature_id": str})
    for row in summary.itertuples():
        assert table.loc[row.feature_id, "valid_fraction"] == row.valid_fraction
    centroid = ARCHIVE_FEATURES["poly"].centroid
    assert table.loc["poly", ["lon", "lat"]].tolist() == pytest.approx([centroid.x, centroid.y])
    assert table.loc["poly", "geometry"].equals_exact(ARCHIVE_FEATURES["poly"], 1e-7)


def test_overview_places_and_colours_every_feature():
    features = pd.DataFrame(
        {
            "feature_id": ["a", "b", "c"],
            "lon": [8.5, 11.2, -30.0],
            "lat": [49.9, 50.0, 40.0],
            "valid_fraction": [0.25, 0.9, np.nan],
        }
    )
    figure = overview_figure(features)
    coloured, crosses = [c for c in figure.axes[0].collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(coloured.get_offsets(), [[8.5, 49.9], [11.2, 50.0]])
    np.testing.assert_allclose(coloured.get_array(), [0.25, 0.9])
    assert (coloured.norm.vmin, coloured.norm.vmax) == pytest.approx((0.25, 0.9))
    np.testing.assert_allclose(crosses.get_offsets(), [[-30.0, 40.0]])


def test_large_windows_get_subsampled_thumbnails():
    size = 600
    cube = xr.Dataset(
        {band: (("time", "y", "x"), np.full((2, size, size), 0.1, np.float32)) for band in BANDS},
        coords={"time": np.array(["2024-01-01", "2024-01-06"], dtype="datetime64[ns]")},
    )
    images = thumbnails(cube, choose_display(BANDS), np.array([0, 1]))
    assert images.shape == (2, 200, 200, 3)  # every 3rd pixel: 600 / 3 <= 256
