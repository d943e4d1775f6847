"""Composites: the solar-day time steps of each interval of a regular axis, as one layer.

With `time_step` every cube gets the run's regular axis (`sitsflow.pixels.timeaxis`); this
module makes each interval's layer from the solar-day steps that fall in it, after each day was
masked and mosaicked (`sitsflow.pixels.mosaic`), and before gap-filling. Only observed (clear)
values count, per pixel:

* `median` (default): the median of the observed values, band by band (with an even number of
  observations the mean of the middle two, numpy's median). Robust to a cloud or shadow the
  classification missed, which is why R `sits`, openEO and xcube default to it. The class
  (SCL) is the most frequent class among those observations (the lower class number on a
  tie): a median of class numbers is no class.
* `first`: the first observation in the interval, every band and the class from that day.
* `max_ndvi`: the observation with the highest NDVI, (B08 - B04) / (B08 + B04), every band and
  the class from that day (the earlier day on a tie): the greenest, least hazy view of the
  interval, as in maximum-value compositing for vegetation. Needs B04 and B08 among the bands.

A pixel without any observation in an interval has no value (gap-filled afterwards along the
regular axis) and the class of the interval's first day with data, as the mosaic does within
a day; 0 (no data) where no day had data. The count of observations behind each composite
pixel becomes the cube's `observed` (0: gap-filled or missing): a training sample can weigh a
composite of six clear days above one of a single day.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sitsflow.core.bands import NDVI_BANDS
from sitsflow.core.settings import CompositeMethod
from sitsflow.pixels.mosaic import Mosaic
from sitsflow.pixels.timeaxis import TimeAxis

METHODS: tuple[CompositeMethod, ...] = ("median", "first", "max_ndvi")


@dataclass
class Composite:
    """One layer per interval: reflectance NaN where nothing was observed, `classification`
    NaN where no day had data, `count` the observations behind each pixel, `times` the
    interval starts, `step_items` per interval the solar days used with their pixel counts."""

    reflectance: np.ndarray  # float32 (interval, band, y, x)
    classification: np.ndarray  # float32 (interval, y, x)
    count: np.ndarray  # uint8 or uint16 (interval, y, x)
    times: np.ndarray  # datetime64[ns]
    step_items: list[list[dict[str, Any]]]


def count_dtype(longest_days: int) -> type[np.unsignedinteger[Any]]:
    """uint8 when an interval holds at most 255 days (every step up to `P36W`), else uint16:
    a composite counts at most one observation per solar day."""
    return np.uint8 if longest_days <= np.iinfo(np.uint8).max else np.uint16


def composite_steps(
    reflectance: np.ndarray,
    classification: np.ndarray,
    observed: np.ndarray,
    method: CompositeMethod,
    ndvi_bands: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Composite the steps of one interval: `reflectance` (step, band, y, x), `classification`
    and `observed` (step, y, x). `ndvi_bands` are the band positions of B04 and B08 (for
    `max_ndvi`). Returns the values (band, y, x), the class (y, x; NaN: no day had data), the
    count of observations (y, x) and which steps each pixel used (step, y, x)."""
    steps, n_bands, height, width = reflectance.shape
    count = observed.sum(axis=0)
    seen = count > 0
    values = np.full((n_bands, height, width), np.nan, dtype=np.float32)
    if steps == 0:
        return values, np.full((height, width), np.nan, np.float32), count, observed.copy()
    if method == "median":
        kept = np.where(observed[:, None], reflectance, np.nan)
        with warnings.catch_warnings():  # an unobserved pixel is a NaN median, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            values[:] = np.nanmedian(kept, axis=0)
        used = observed.copy()
        classes = most_frequent_class(classification, observed)
    else:
        chosen = _chosen_step(reflectance, observed, method, ndvi_bands)
        used = (np.arange(steps)[:, None, None] == chosen[None]) & seen[None]
        picked = np.take_along_axis(reflectance, chosen[None, None], axis=0)[0]
        values[:] = np.where(seen[None], picked, np.nan)
        classes = np.take_along_axis(classification, chosen[None], axis=0)[0]
    classes = np.where(seen, classes, _first_with_data(classification)).astype(np.float32)
    return values, classes, count, used


def _chosen_step(
    reflectance: np.ndarray,
    observed: np.ndarray,
    method: CompositeMethod,
    ndvi_bands: tuple[int, int] | None,
) -> np.ndarray:
    """Per pixel, the step `first` or `max_ndvi` takes (0 where nothing was observed)."""
    if method == "first":
        return np.asarray(np.argmax(observed, axis=0))
    if method != "max_ndvi":
        raise ValueError(f"composite method {method!r} not in {METHODS}")
    if ndvi_bands is None:
        raise ValueError("composite max_ndvi needs the positions of bands B04 and B08")
    red, nir = (reflectance[:, index].astype(np.float64) for index in ndvi_bands)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    # an observed day whose NDVI is undefined (0 / 0) is taken only when no other was observed
    score = np.where(
        observed, np.where(np.isfinite(ndvi), ndvi, -np.finfo(np.float64).max), -np.inf
    )
    return np.asarray(np.argmax(score, axis=0))


def most_frequent_class(classification: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per pixel, the most frequent class among the observed steps (the lower class on a tie;
    NaN where nothing was observed)."""
    best = np.full(classification.shape[1:], np.nan, dtype=np.float32)
    best_count = np.zeros(classification.shape[1:], dtype=np.int64)
    for value in np.unique(classification[observed & np.isfinite(classification)]):
        votes = (observed & (classification == value)).sum(axis=0)
        better = votes > best_count  # ascending values: a tie keeps the lower class
        best[better], best_count[better] = value, votes[better]
    return best


def _first_with_data(classification: np.ndarray) -> np.ndarray:
    """Per pixel, the class of the first step with data (NaN where none has)."""
    has_data = np.isfinite(classification)
    first = np.argmax(has_data, axis=0)
    classes = np.take_along_axis(classification, first[None], axis=0)[0]
    return np.where(has_data.any(axis=0), classes, np.nan)


def composite_mosaic(
    mosaic: Mosaic,
    axis: TimeAxis,
    method: CompositeMethod,
    bands: Sequence[str],
) -> Composite:
    """The mosaic's solar-day steps composited onto `axis`, every interval present (an
    interval without acquisitions has no value and a count of 0). `bands` name the mosaic's
    reflectance bands, in order (`max_ndvi` finds B04 and B08, or red and nir08, among them)."""
    n_bands, height, width = mosaic.reflectance.shape[1:]
    intervals = len(axis.starts)
    result = Composite(
        reflectance=np.full((intervals, n_bands, height, width), np.nan, dtype=np.float32),
        classification=np.full((intervals, height, width), np.nan, dtype=np.float32),
        count=np.zeros((intervals, height, width), dtype=count_dtype(axis.longest_days)),
        times=axis.times,
        step_items=[],
    )
    ndvi_bands = None
    if method == "max_ndvi":
        # B04/B08, or red/nir08 in a run with Landsat
        red, nir = NDVI_BANDS["red" in bands]
        ndvi_bands = (list(bands).index(red), list(bands).index(nir))
    where = axis.index_of(mosaic.days)
    for interval in range(intervals):
        members = np.flatnonzero(where == interval)
        values, classes, count, used = composite_steps(
            mosaic.reflectance[members],
            mosaic.classification[members],
            mosaic.observed[members],
            method,
            ndvi_bands,
        )
        result.reflectance[interval] = values
        result.classification[interval] = classes
        result.count[interval] = count
        result.step_items.append(
            [
                {
                    "date": mosaic.days[step].isoformat(),
                    "pixels": int(used[position].sum()),
                    "items": mosaic.step_items[step],
                }
                for position, step in enumerate(members)
            ]
        )
    return result
