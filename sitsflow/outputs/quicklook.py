"""Quicklook PNGs: what a cube holds at a glance (the overview map of all features:
`sitsflow.outputs.overview`).

A feature's quicklook has two parts:

* a strip of thumbnails, one per time step (at most `MAX_THUMBNAILS`, evenly chosen), in true
  colour (B04/B03/B02), else false colour (B08/B04/B03), else greyscale of the first band, with
  one contrast stretch (1st..99th percentile, same for all bands and dates) so dates compare;
  each labelled with its date and the share of pixels that were gap-filled;
* the window's median reflectance per band along time (for a polygon, of the pixels inside it:
  the cube's `inside` variable), and below it NDVI when B04 and B08 are present, plus the
  cube's spectral indices, with filled markers on observed dates (at least half of those
  pixels observed) and open markers on mostly gap-filled ones, and the masked (gap-filled)
  fraction per date as grey bars on a secondary axis.

Plain matplotlib with the Agg canvas (no display, no pyplot state, no web basemap: offline).
The thumbnails are one image (a mosaic) in one axes and the layout is fixed, not
`constrained`: 24 axes and a constrained layout took 0.9 s per quicklook, a run-wide job over
thousands of features pays that for each; the mosaic takes ~0.25 s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from sitsflow.core.bands import NDVI_BANDS
from sitsflow.outputs.overview import DPI  # one resolution for every PNG of a run
from sitsflow.outputs.timeseries import observed_share, value_variables, window_medians

MAX_THUMBNAILS = 24
THUMBNAIL_MAX_SIDE = 256
THUMBNAILS_PER_ROW = 12
STRETCH_PERCENTILES = (1, 99)
DEFAULT_STRETCH = (0.0, 0.3)
OBSERVED_DATE_SHARE = 0.5  # a date counts as observed when at least half the window was
MISSING_PIXEL_GREY = 0.85
THUMBNAIL_GAP = 0.08  # white space between thumbnails, as a share of a thumbnail's side
LABEL_BAND = 0.45  # room above each thumbnail row for its labels, as a share of its height
PNG_OPTIONS = {"compress_level": 3}  # zlib's fastest good level: 1/3 of the time of 6
WIDTH_INCHES = 14
BAND_COLOURS = {
    "B01": "#6a3d9a",
    "B02": "#1f78b4",
    "B03": "#33a02c",
    "B04": "#e31a1c",
    "B05": "#fb9a99",
    "B06": "#fdbf6f",
    "B07": "#ff7f00",
    "B08": "#8c2d04",
    "B8A": "#b15928",
    "B09": "#cab2d6",
    "B11": "#666666",
    "B12": "#000000",
}


@dataclass(frozen=True)
class Display:
    """How thumbnails are drawn: which bands go to red, green, blue (one band: greyscale)."""

    name: str
    bands: tuple[str, ...]


def choose_display(bands: Sequence[str]) -> Display:
    """True colour if B04/B03/B02 are there, else false colour B08/B04/B03, else greyscale."""
    present = set(bands)
    # Sentinel-2 names, or the common names of a run with Landsat
    for true, false in ((("B04", "B03", "B02"), ("B08", "B04", "B03")),
                        (("red", "green", "blue"), ("nir08", "red", "green"))):  # fmt: skip
        if set(true) <= present:
            return Display(f"true colour {'/'.join(true)}", true)
        if set(false) <= present:
            return Display(f"false colour {'/'.join(false)}", false)
    return Display(f"greyscale {bands[0]}", (bands[0],))


def thumbnail_steps(n_steps: int, limit: int = MAX_THUMBNAILS) -> np.ndarray:
    """Indices of at most `limit` time steps, evenly spread, first and last included."""
    if n_steps <= limit:
        return np.arange(n_steps)
    return np.unique(np.round(np.linspace(0, n_steps - 1, limit)).astype(int))


def reflectance_bands(cube: xr.Dataset) -> list[str]:
    """The cube's reflectance bands (its float variables minus the spectral indices)."""
    indices = set(cube_indices(cube))
    return [name for name in value_variables(cube) if name not in indices]


def cube_indices(cube: xr.Dataset) -> list[str]:
    names: list[str] = json.loads(cube.attrs.get("indices", "[]"))
    return names


def stretch_limits(stack: np.ndarray) -> tuple[float, float]:
    """One (low, high) for all bands: 1st and 99th percentiles of the per-pixel time median.

    One range for all bands keeps colours balanced (a per-band stretch tints the image); the
    median over time leaves out clouds the mask missed, so one bright date does not darken
    every thumbnail. (0, 0.3) when there is no finite value.
    """
    typical = time_median(stack)
    finite = typical[np.isfinite(typical)]
    if not finite.size:
        return DEFAULT_STRETCH
    low, high = (float(v) for v in np.percentile(finite, STRETCH_PERCENTILES))
    return low, max(high, low + 1e-6)


def time_median(stack: np.ndarray) -> np.ndarray:
    """`np.nanmedian(stack, axis=0)`, the same values, ~8 times faster for a cube's few dates
    and many pixels (NumPy takes a masked-array path there): sorted along time, NaNs last,
    the middle of each pixel's finite values. NaN where a pixel has none."""
    ordered = np.sort(stack, axis=0)
    count = np.isfinite(stack).sum(axis=0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], axis=0)[0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], axis=0)[0]
    return np.where(count > 0, (low + high) / 2, np.nan).astype(stack.dtype)


def thumbnails(cube: xr.Dataset, display: Display, steps: np.ndarray) -> np.ndarray:
    """(step, y, x, 3) RGB in 0..1 for the chosen steps; missing pixels light grey.

    Large windows are subsampled (every n-th pixel) to at most `THUMBNAIL_MAX_SIDE` pixels a
    side: a thumbnail is ~1 inch wide, and a 2000 x 2000 cube would cost gigabytes here.
    """
    stride = max(1, math.ceil(max(cube.sizes["y"], cube.sizes["x"]) / THUMBNAIL_MAX_SIDE))
    stack = np.stack(
        [cube[band].values[steps, ::stride, ::stride] for band in display.bands], axis=-1
    )
    low, high = stretch_limits(stack)
    scaled = np.clip((stack - low) / (high - low), 0.0, 1.0)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    missing = ~np.isfinite(stack).all(axis=-1)
    scaled[missing] = MISSING_PIXEL_GREY
    return scaled


def date_statistics(cube: xr.Dataset) -> pd.DataFrame:
    """Per time step: median of each band and index over the statistics pixels (a polygon's
    inside; NDVI added from B04/B08 when both exist and the cube has none), and the masked
    (gap-filled) fraction."""
    bands = reflectance_bands(cube)
    indices = cube_indices(cube)
    table = pd.DataFrame(window_medians(cube, bands + indices), index=cube["time"].values)
    red_name, nir_name = NDVI_BANDS["red" in bands]
    if "NDVI" not in indices and {red_name, nir_name} <= set(bands):
        red = cube[red_name].values.astype(np.float64)
        nir = cube[nir_name].values.astype(np.float64)
        with np.errstate(all="ignore"):
            ndvi = (nir - red) / (nir + red)
        ndvi_cube = cube.assign(NDVI=(("time", "y", "x"), ndvi))
        table["NDVI"] = window_medians(ndvi_cube, ["NDVI"])["NDVI"]
    table["masked_fraction"] = 1.0 - observed_share(cube)
    return table


def render_quicklook(cube: xr.Dataset, path: str | Path) -> None:
    """Write the feature's quicklook PNG (see `quicklook_figure`)."""
    quicklook_figure(cube).savefig(path, dpi=DPI, format="png", pil_kwargs=PNG_OPTIONS)


def quicklook_figure(cube: xr.Dataset) -> Figure:
    """The feature's quicklook (see module docstring); a notice if it has no time step."""
    fid = str(cube.attrs.get("feature_id", "?"))
    bands = reflectance_bands(cube)
    if cube.sizes["time"] == 0 or not bands:
        return notice_figure(f"feature {fid}", _no_data_message(cube))
    display = choose_display(bands)
    steps = thumbnail_steps(cube.sizes["time"])
    images = thumbnails(cube, display, steps)
    statistics = date_statistics(cube)
    index_columns = [c for c in statistics.columns if c not in bands and c != "masked_fraction"]

    thumb_rows = math.ceil(len(steps) / THUMBNAILS_PER_ROW)
    heights = [1.25 * thumb_rows, 3.2] + ([2.2] if index_columns else [])
    total = sum(heights) + 1.4
    figure = Figure(figsize=(WIDTH_INCHES, total), dpi=DPI)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(
        len(heights), 1, height_ratios=heights, left=0.06, right=0.94,
        top=1 - 0.45 / total, bottom=0.45 / total, hspace=0.3,
    )  # fmt: skip
    _draw_thumbnails(figure.add_subplot(grid[0]), images, cube, steps, statistics)
    reflectance_axes = figure.add_subplot(grid[1])
    _draw_series(reflectance_axes, statistics, bands, "median reflectance")
    _draw_masked_bars(reflectance_axes, statistics)
    if index_columns:
        index_axes = figure.add_subplot(grid[2], sharex=reflectance_axes)
        _draw_series(index_axes, statistics, index_columns, "median index")
        reflectance_axes.tick_params(labelbottom=False)
    figure.suptitle(_title(cube, fid, display), fontsize=11)
    return figure


def _draw_thumbnails(
    axes: Axes,
    images: np.ndarray,
    cube: xr.Dataset,
    steps: np.ndarray,
    statistics: pd.DataFrame,
) -> None:
    """The thumbnails as one mosaic image, `THUMBNAILS_PER_ROW` a row, each labelled with its
    date and gap-filled share (red when mostly gap-filled); the axes is labelled
    `thumbnails`, each label is a text of it."""
    axes.set_label("thumbnails")
    mosaic, origins = thumbnail_mosaic(images)
    axes.imshow(mosaic, interpolation="nearest", aspect="equal")
    axes.set_axis_off()
    masked = statistics["masked_fraction"].to_numpy()
    width = images.shape[2]
    for (top, left), step in zip(origins, steps, strict=True):
        date = str(cube["time"].values[step])[:10]
        mostly_filled = masked[step] > 1 - OBSERVED_DATE_SHARE
        axes.text(
            left + width / 2,
            top - 1,
            f"{date}\n{masked[step]:.0%} gap-filled",
            ha="center",
            va="bottom",
            fontsize=7,
            color="#b2182b" if mostly_filled else "black",
        )


def thumbnail_mosaic(images: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(step, y, x, 3) thumbnails laid out `THUMBNAILS_PER_ROW` a row on white, with a band
    for labels above each row: the mosaic, and each thumbnail's (top, left) pixel in it."""
    count, height, width = images.shape[:3]
    gap = max(1, round(THUMBNAIL_GAP * max(height, width)))
    band = max(1, round(LABEL_BAND * height))
    rows = math.ceil(count / THUMBNAILS_PER_ROW)
    columns = min(count, THUMBNAILS_PER_ROW)
    mosaic = np.ones((rows * (band + height), columns * (width + gap) - gap, 3), images.dtype)
    origins = []
    for position in range(count):
        row, column = divmod(position, THUMBNAILS_PER_ROW)
        top, left = row * (band + height) + band, column * (width + gap)
        mosaic[top : top + height, left : left + width] = images[position]
        origins.append((top, left))
    return mosaic, origins


def _draw_series(axes: Axes, statistics: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    """One line per column; filled markers on observed dates, open markers on gap-filled."""
    times = statistics.index.to_numpy()
    observed = statistics["masked_fraction"].to_numpy() < 1 - OBSERVED_DATE_SHARE
    palette = mpl.colormaps["tab10"]
    for number, column in enumerate(columns):
        colour = BAND_COLOURS.get(column, palette(number % 10))
        values = statistics[column].to_numpy()
        axes.plot(times, values, color=colour, linewidth=1.2, label=column, zorder=3)
        axes.plot(times[observed], values[observed], "o", color=colour, markersize=4, zorder=4)
        axes.plot(
            times[~observed],
            values[~observed],
            "o",
            markerfacecolor="white",
            markeredgecolor=colour,
            markersize=4,
            zorder=4,
        )
    axes.plot([], [], "o", color="grey", markersize=4, label="observed date")
    axes.plot([], [], "o", markerfacecolor="white", markeredgecolor="grey", label="gap-filled")
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
    axes.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1),
        fontsize=7,
        ncols=len(columns) + 2,
        frameon=False,
        borderaxespad=0.2,
    )
    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _draw_masked_bars(axes: Axes, statistics: pd.DataFrame) -> None:
    """Masked (gap-filled) fraction per date as grey bars on a secondary axis (0..1)."""
    secondary = axes.twinx()
    times = statistics.index.to_numpy()
    gaps = np.diff(times).astype("timedelta64[s]").astype(float) / 86400 if len(times) > 1 else []
    width = 0.7 * float(np.min(gaps)) if len(gaps) and np.min(gaps) > 0 else 2.0
    # one collection of rectangles: `Axes.bar` makes and autoscales a patch per date
    centres = mdates.date2num(times)
    heights = statistics["masked_fraction"].to_numpy(dtype=float)
    bars = PolyCollection(
        [
            [(c - width / 2, 0.0), (c - width / 2, h), (c + width / 2, h), (c + width / 2, 0.0)]
            for c, h in zip(centres, heights, strict=True)
        ],
        facecolors="grey",
        edgecolors="none",
        alpha=0.25,
        label="masked fraction",
    )
    secondary.add_collection(bars)
    secondary.autoscale_view()
    secondary.set_ylim(0, 1)
    secondary.set_ylabel("masked (gap-filled) fraction", color="dimgrey")
    axes.set_zorder(secondary.get_zorder() + 1)  # lines above bars
    axes.patch.set_visible(False)


def _title(cube: xr.Dataset, fid: str, display: Display) -> str:
    times = cube["time"].values
    valid = cube.attrs.get("valid_fraction")
    valid_text = f", {float(valid):.0%} of pixels observed" if valid is not None else ""
    return (
        f"feature {fid}: {len(times)} time steps {str(times[0])[:10]} .. {str(times[-1])[:10]}"
        f"{valid_text}; thumbnails: {display.name}"
    )


def _no_data_message(cube: xr.Dataset) -> str:
    window = cube.attrs.get("search_datetime", "the requested dates")
    collection = cube.attrs.get("collection", "the collection")
    status = cube.attrs.get("status", "no_items")
    return (
        f"no time steps (status {status}): no item of {collection} matched the search for "
        f"{window}.\nCheck start/end, query (e.g. eo:cloud_cover) and the catalog."
    )


def notice_figure(title: str, message: str) -> Figure:
    """A small figure that says why there is nothing to show."""
    figure = Figure(figsize=(8, 2.5), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.7, title, ha="center", va="center", fontsize=14, weight="bold")
    figure.text(0.5, 0.35, message, ha="center", va="center", fontsize=10, wrap=True)
    return figure
