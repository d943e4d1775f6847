"""Items of one solar day into one time step: mask each item, then take every pixel from one.

Where tiles overlap (neighbouring 109.8 km MGRS tiles on a 100 km grid: about one pixel in six)
or a scene was processed twice, several items cover a pixel on the same day. Each item is
masked first; then, per pixel, all bands and the class come from the first item in
`mosaic_order` that is clear there. Where none is clear, the class comes from the first item
that has data (the pixel stays unobserved). So a pixel's reflectance and SCL always come from
the same item, and a later tile's cloud never replaces an earlier tile's clear pixel.

Order within a day (`mosaic_order`): the item covering more of the feature's window first,
then the lower `eo:cloud_cover`, then the earlier acquisition, then the item id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import numpy as np

from sitsflow.core.solar import acquisition_moment, solar_day

MOSAIC_ORDER = (
    "window coverage (descending), eo:cloud_cover (ascending), datetime, id; per pixel the "
    "first item clear there"
)


@dataclass
class Mosaic:
    """One layer per solar day: reflectance NaN where not observed; `classification` the class
    of the item a pixel came from (NaN: no item has data); `observed` True where some item was
    clear; `step_items` the items each step took pixels from, in order, with pixel counts;
    `days` the solar day of each step (what a regular axis sorts steps by)."""

    reflectance: np.ndarray  # float32 (time, band, y, x)
    classification: np.ndarray  # float32 (time, y, x)
    observed: np.ndarray  # bool (time, y, x)
    times: np.ndarray  # datetime64[ns], the first acquisition of each day
    step_items: list[list[dict[str, Any]]]
    days: list[date]


def mosaic_order(
    items: Sequence[dict[str, Any]], indices: Sequence[int], coverage: np.ndarray
) -> list[int]:
    """`indices` (items of one day) in the order pixels are taken from (module docstring)."""

    def key(index: int) -> tuple[float, float, str, str]:
        properties = items[index]["properties"]
        cloud = properties.get("eo:cloud_cover")
        return (
            -float(coverage[index]),
            float(cloud) if isinstance(cloud, (int, float)) else 100.0,
            str(properties.get("datetime") or ""),
            str(items[index]["id"]),
        )

    return sorted(indices, key=key)


def mosaic_by_solar_day(
    reflectance: np.ndarray,
    classification: np.ndarray,
    clear: np.ndarray,
    items: Sequence[dict[str, Any]],
    longitude: float,
) -> Mosaic:
    """Mosaic per-item layers (`reflectance` (item, band, y, x), `classification` and `clear`
    (item, y, x)) into one time step per solar day at `longitude`."""
    n_bands, height, width = reflectance.shape[1:]
    # each item's datetime parsed once: its solar day, and the time of a step it is first in
    moments = [acquisition_moment(item["properties"]["datetime"]) for item in items]
    days = [solar_day(moment, longitude) for moment in moments]
    groups: dict[Any, list[int]] = {}
    for index in sorted(
        range(len(items)), key=lambda i: (days[i], items[i]["properties"]["datetime"])
    ):
        groups.setdefault(days[index], []).append(index)
    coverage = np.isfinite(classification).sum(axis=(1, 2))
    steps = len(groups)
    mosaic = Mosaic(
        reflectance=np.full((steps, n_bands, height, width), np.nan, dtype=np.float32),
        classification=np.full((steps, height, width), np.nan, dtype=np.float32),
        observed=np.zeros((steps, height, width), dtype=bool),
        times=np.empty(steps, dtype="datetime64[ns]"),
        step_items=[],
        days=list(groups),
    )
    for step, members in enumerate(groups.values()):
        order = mosaic_order(items, members, coverage)
        if len(order) == 1:  # most days: one item, its class wherever it has data
            only = order[0]
            observed = clear[only]
            # the pixels it gives: wherever it has data (no array of choices to count)
            pixels = np.array([np.count_nonzero(observed | np.isfinite(classification[only]))])
            mosaic.classification[step] = classification[only]
            bands = reflectance[only]
        else:
            layers = classification[order]
            chosen, observed = _choose(clear[order], np.isfinite(layers))
            # per pixel, the layer of the item it comes from: all bands and the class from one
            source = np.maximum(chosen, 0)[np.newaxis]
            picked = np.take_along_axis(layers, source, axis=0)[0]
            bands = np.take_along_axis(reflectance[order], source[np.newaxis], axis=0)[0]
            mosaic.classification[step] = np.where(chosen >= 0, picked, np.float32(np.nan))
            pixels = np.bincount(chosen[chosen >= 0], minlength=len(order))
        np.copyto(mosaic.reflectance[step], bands, where=observed[np.newaxis])
        mosaic.observed[step] = observed
        first = moments[members[0]]
        if first.tzinfo is not None:  # in UTC; a datetime without an offset is UTC already
            first = first.astimezone(UTC).replace(tzinfo=None)
        mosaic.times[step] = np.datetime64(first, "ns")
        mosaic.step_items.append(
            [
                {"id": items[index]["id"], "pixels": int(pixels[position])}
                for position, index in enumerate(order)
                if pixels[position]
            ]
        )
    return mosaic


def _choose(clear: np.ndarray, has_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the position (in order) of the item it is taken from (-1: none has data),
    and whether that item is clear there."""
    observed = np.asarray(clear.any(axis=0))
    first_clear = np.argmax(clear, axis=0)
    first_data = np.where(has_data.any(axis=0), np.argmax(has_data, axis=0), -1)
    return np.where(observed, first_clear, first_data), observed
