"""Build one feature's cube: normalise items, read, mask, mosaic, composite onto the regular
axis (with a `time_step`), gap-fill, describe."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sitsflow.catalog.providers import Provider, normalise_items, resolve_provider
from sitsflow.core.bands import (
    LANDSAT,
    QA_PIXEL,
    QA_RADSAT,
    SENTINEL_2,
    collection_family,
    item_family,
    item_platform,
    landsat_instrument,
    s2_band,
)
from sitsflow.core.bbox import BboxRecord, grid_of
from sitsflow.core.features import AREA_TYPES
from sitsflow.core.grid import Grid, project_geometry
from sitsflow.core.settings import CubeSettings, MaskSettings, collection_list
from sitsflow.core.types import StacItem
from sitsflow.pixels.bandpass import HLS_SOURCE, adjust_to_oli
from sitsflow.pixels.composite import composite_mosaic
from sitsflow.pixels.cube_model import QA_CLASS_OFFSET, CubeArrays, cube_arrays, provenance_attrs
from sitsflow.pixels.gapfill import gapfill
from sitsflow.pixels.mask import clear_pixels
from sitsflow.pixels.mosaic import MOSAIC_ORDER, Mosaic, mosaic_by_solar_day
from sitsflow.pixels.qa import fill_to_nan, qa_masked, saturated
from sitsflow.pixels.read import Loader, make_loader
from sitsflow.pixels.stack import ItemStack
from sitsflow.pixels.timeaxis import TimeAxis, regular_axis
from sitsflow.pixels.values import mark_invalid, to_reflectance

if TYPE_CHECKING:
    import xarray as xr

    from sitsflow.pixels.tiles import ReadRequest

log = logging.getLogger(__name__)


def make_cube(
    record: BboxRecord,
    items: list[dict[str, Any]],
    search_info: dict[str, Any],
    settings: CubeSettings,
    loader: Loader | None = None,
    attributes: dict[str, Any] | None = None,
    planned: PlannedRead | None = None,
) -> xr.Dataset:
    """`make_cube_arrays` as an xarray Dataset, with the spectral indices `settings` asks for."""
    arrays = make_cube_arrays(record, items, search_info, settings, loader, attributes, planned)
    dataset = arrays.to_dataset()
    if not settings.indices:
        return dataset
    # Spectral indices (sitsflow.pixels.indices, which imports spyndex: only when asked for):
    # extra variables from the gap-filled reflectance.
    from sitsflow.pixels.indices import add_indices

    return add_indices(dataset, list(settings.indices), LANDSAT in settings.families)


def make_cube_arrays(
    record: BboxRecord,
    items: list[dict[str, Any]],
    search_info: dict[str, Any],
    settings: CubeSettings,
    loader: Loader | None = None,
    attributes: dict[str, Any] | None = None,
    planned: PlannedRead | None = None,
) -> CubeArrays:
    """The cube of the feature described by `record` (a bbox record) from its searched items:
    read each item, invalid DNs out, reflectance, mask each item, mosaic per solar day, with a
    `time_step` composite the days of each interval of the run's regular axis, then gap-fill
    along time (module `sitsflow.pixels.mosaic` says why in that order). `loader` (default:
    the one `settings.loader` names, for this cube only) reads the files. `attributes` (the
    feature's vector-file columns) are recorded as `feature_attributes`. `planned`: the read
    groups of these items and settings (`plan_read`), when a batch worked them out already.
    Without the spectral indices (`make_cube` adds them)."""
    fid = record["properties"]["feature_id"]
    grid = grid_of(record)
    reflectance_bands = settings.reflectance_bands
    started = time.perf_counter()
    # on_missing_asset: skip -> items with an unreadable asset are left out and listed here
    skipped: list[dict[str, Any]] | None = [] if settings.on_missing_asset == "skip" else None
    if planned is not None and (skipped is not None or not planned.skipped):
        groups = planned.groups
        if skipped is not None:
            skipped.extend(planned.skipped)
    else:  # (an item lacking an asset fails the cube here, without `on_missing_asset: skip`)
        groups = read_groups(items, search_info, settings, skipped)
    for group in groups:
        log.info("feature %s: %s provider %s", fid, group.family, group.provider.describe())
    own_loader = loader is None
    loader = loader or make_loader(settings)
    try:
        stack, invalid, mosaic = read_and_mosaic(
            groups,
            reflectance_bands,
            settings.mask,
            grid,
            record["properties"]["centroid_lonlat"][0],
            loader,
            skipped=skipped,
            read_overviews=settings.read_overviews,
            bandpass=settings.bandpass if len(settings.families) > 1 else "none",
        )
    finally:
        if own_loader:
            loader.close()
    times, observed = mosaic.times, mosaic.observed
    reflectance, classification = mosaic.reflectance, mosaic.classification
    step_items: list[list[dict[str, Any]]] = mosaic.step_items
    step_item_ids = [[entry["id"] for entry in step] for step in mosaic.step_items]
    axis = time_axis(search_info, settings)
    if axis is not None:
        composite = composite_mosaic(
            mosaic, axis, settings.composite or "median", reflectance_bands
        )
        times, observed = composite.times, composite.count
        reflectance, classification = composite.reflectance, composite.classification
        step_items = composite.step_items
        step_item_ids = [
            [entry["id"] for day in interval for entry in day["items"]]
            for interval in composite.step_items
        ]
    used_ids = [item["id"] for item in stack.items]
    loaded = time.perf_counter()
    log.info(
        "feature %s: read %d items -> %d solar days -> %d time steps of %dx%d px in %.1f s; "
        "invalid DNs %s",
        fid,
        len(items),
        len(mosaic.times),
        len(times),
        grid.width,
        grid.height,
        loaded - started,
        invalid,
    )

    inside = inside_pixels(record, grid, settings.timeseries.all_touched)
    valid_fraction = (
        float((observed[:, inside] > 0).mean()) if observed.size and inside.any() else 0.0
    )
    # every band at once: gapfill works along the first axis, whatever follows it
    filled = (
        gapfill(
            reflectance,
            times,
            settings.gapfill.method,
            settings.gapfill.max_gap_days,
            settings.gapfill.max_edge_days,
        )
        if len(times)
        else reflectance
    )
    log.info(
        "feature %s: valid fraction before gap-fill %.3f; %s gap-fill in %.2f s",
        fid,
        valid_fraction,
        settings.gapfill.method,
        time.perf_counter() - loaded,
    )

    attrs = provenance_attrs(
        feature_id=fid,
        geometry_wkt=record["properties"]["feature_wkt"],
        aoi_wkt=_wkt(record),
        catalog=search_info.get("catalog"),
        collection=search_info.get("collection"),
        provider=" + ".join(dict.fromkeys(group.provider.name for group in groups)),
        provider_detected_by=" + ".join(
            dict.fromkeys(group.provider.detected_by for group in groups)
        ),
        read_overviews=str(settings.read_overviews).lower(),
        loader=settings.loader,
        # sitsflow's reader: the files it left to GDAL, item -> band -> why (none: it read all)
        read_through_gdal={
            item: dict(sorted(bands.items())) for item, bands in sorted(stack.through_gdal.items())
        }
        or None,
        search_datetime=search_info.get("datetime"),
        query=search_info.get("query"),
        filter=search_info.get("filter"),
        item_ids=used_ids,
        skipped_items=[entry["item"] for entry in skipped] if skipped is not None else None,
        dropped_items=search_info.get("dropped") or None,
        time_step_item_ids=step_item_ids,
        time_step_items=step_items,
        mosaic_order=MOSAIC_ORDER,
        time_step=axis.duration.iso if axis is not None else None,
        time_axis=describe_axis(axis),
        composite=settings.composite if axis is not None else None,
        feature_attributes=attributes or None,
        radiometry=_radiometry_summary(stack.items, reflectance_bands),
        invalid_values=invalid,
        bands=reflectance_bands,
        mask_band=" + ".join(settings.class_bands),
        mask_classes=list(settings.mask.classes) if SENTINEL_2 in settings.families else None,
        mask_qa_pixel=list(settings.mask.qa_pixel) if LANDSAT in settings.families else None,
        mask_radsat=str(settings.mask.radsat).lower() if LANDSAT in settings.families else None,
        mask_dilate_m=settings.mask.dilate_m,
        bandpass_adjustment=stack.bandpass,
        platforms=sorted({item_platform(item) for item in stack.items})
        if LANDSAT in settings.families
        else None,
        gapfill_method=settings.gapfill.method,
        gapfill_max_gap_days=settings.gapfill.max_gap_days,
        gapfill_max_edge_days=settings.gapfill.max_edge_days,
        inside_all_touched=str(settings.timeseries.all_touched).lower(),
        n_items=len(used_ids),
        n_time_steps=len(times),
        valid_fraction=round(valid_fraction, 6),
        status="ok" if used_ids else "no_items",
        resampling="nearest",
    )
    cube = cube_arrays(
        grid=grid,
        times=times,
        bands=reflectance_bands,
        reflectance=filled,
        classification=classification,
        classification_bands=settings.class_bands,
        observed=observed,
        inside=inside,
        sources={band: _describe(counts) for band, counts in stack.sources.items()},
        attrs=attrs,
        platforms=step_platforms(step_item_ids, stack.items)
        if LANDSAT in settings.families
        else None,
    )
    if axis is not None:
        cube.coords["time"].attrs["long_name"] = (
            f"start of each {axis.duration.iso} compositing interval (local solar date)"
        )
    return cube


def time_axis(search_info: dict[str, Any], settings: CubeSettings) -> TimeAxis | None:
    """The run's regular axis (`time_step` intervals over the search's start..end, which the
    items' search record holds as `datetime`), or None for the acquisition dates."""
    if settings.time_step is None:
        return None
    window = str(search_info.get("datetime") or "")
    if "/" not in window:
        raise ValueError(
            "a time_step axis runs over the search's start/end, but the items' search record "
            f"has no datetime interval ({window!r}); rerun the search"
        )
    start, end = window.split("/", 1)
    return regular_axis(start[:10], end[:10], settings.time_step)


def describe_axis(axis: TimeAxis | None) -> str:
    """The `time_axis` attribute: which dates the time steps are."""
    if axis is None:
        return "acquisition: the first acquisition time (UTC) of each local solar day"
    return (
        f"regular: {len(axis.starts)} intervals of {axis.duration.iso} from "
        f"{axis.starts[0] if axis.starts else '-'}, each labelled by its start (local solar "
        "date); the solar days of an interval are composited into one value per pixel"
    )


@dataclass
class ReadGroup:
    """The items of one sensor family, normalised by their provider, and the bands read from
    each: the run's value bands, the family's classification band (and Landsat's QA_RADSAT)."""

    family: str
    provider: Provider
    items: list[StacItem]
    bands: list[str]
    class_bands: tuple[str, ...]

    def request(self, grid: Grid, read_overviews: bool) -> ReadRequest:
        from sitsflow.pixels.tiles import ReadRequest

        return ReadRequest(self.items, self.bands, grid, self.class_bands, read_overviews)


@dataclass
class ReadStacks:
    """What the reads of a feature's groups gave, for the cube's provenance: the items read
    (in group order), the levels read per band, the files left to GDAL, and which bandpass
    adjustment was applied (None: none)."""

    items: list[StacItem]
    sources: dict[str, Counter[str]]
    through_gdal: dict[str, dict[str, str]]
    bandpass: str | None = None


def read_and_mosaic(
    groups: list[ReadGroup],
    reflectance_bands: list[str],
    mask: MaskSettings,
    grid: Grid,
    longitude: float,
    loader: Loader,
    *,
    read_overviews: bool = True,
    skipped: list[dict[str, Any]] | None = None,
    bandpass: str = "none",
) -> tuple[ReadStacks, dict[str, int], Mosaic]:
    """Read each group's items (their value bands and classification band) with `loader`, set
    invalid DNs to NaN, scale to reflectance (kelvin for thermal bands), mask each item by its
    family's classification, then mosaic the items of every group per solar day at
    `longitude`. Returns what was read, the invalid DNs per band and the mosaic.

    With several families, the classification layer holds each item's own band: Landsat's
    QA_PIXEL values are shifted by QA_CLASS_OFFSET so that no value means two things, and the
    cube splits them back (`sitsflow.pixels.cube_model`). `bandpass: hls` adjusts Sentinel-2
    reflectance to OLI's bandpasses (`sitsflow.pixels.bandpass`)."""
    reflectance_parts, class_parts, clear_parts = [], [], []
    summary = ReadStacks([], {}, {})
    invalid: dict[str, int] = {}
    adjusted: dict[str, str] = {}
    for group in groups:
        stack = loader.read(
            group.items,
            group.bands,
            grid,
            class_bands=group.class_bands,
            read_overviews=read_overviews,
            skipped=skipped,
            sign_hrefs=group.provider.signs_hrefs,
        )
        for band, count in mark_invalid(stack).items():
            invalid[band] = invalid.get(band, 0) + count
        to_reflectance(stack, reflectance_bands)
        values = len(reflectance_bands)
        reflectance, classification = stack.data[:, :values], stack.data[:, values]
        if group.family == LANDSAT:
            clear = _landsat_clear(
                stack, reflectance, classification, reflectance_bands, mask, grid
            )
            classification = classification + np.float32(QA_CLASS_OFFSET)
        else:
            clear = clear_pixels(classification, mask.classes, mask.dilate_m / grid.resolution)
            if bandpass == "hls":
                for index, item in enumerate(stack.items):
                    platform = item_platform(item)
                    used = adjust_to_oli(reflectance[index], reflectance_bands, platform)
                    adjusted[platform or "unknown"] = used
        clear &= np.isfinite(reflectance).all(axis=1)
        reflectance_parts.append(reflectance)
        class_parts.append(classification)
        clear_parts.append(clear)
        summary.items.extend(stack.items)
        for band, counts in stack.sources.items():
            summary.sources.setdefault(band, Counter()).update(counts)
        summary.through_gdal.update(stack.through_gdal)
    if adjusted:
        summary.bandpass = f"{HLS_SOURCE}; coefficients: " + ", ".join(
            f"{platform} <- {used}" for platform, used in sorted(adjusted.items())
        )
    if len(groups) == 1:  # no copy
        reflectance, classification, clear = reflectance_parts[0], class_parts[0], clear_parts[0]
    else:
        reflectance = _concatenate(
            reflectance_parts, (len(reflectance_bands), grid.height, grid.width)
        )
        classification = _concatenate(class_parts, (grid.height, grid.width))
        clear = (
            np.concatenate(clear_parts)
            if clear_parts
            else np.zeros((0, grid.height, grid.width), dtype=bool)
        )
    mosaic = mosaic_by_solar_day(reflectance, classification, clear, summary.items, longitude)
    return summary, invalid, mosaic


def _concatenate(parts: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _landsat_clear(
    stack: ItemStack,
    reflectance: np.ndarray,
    qa_pixel: np.ndarray,
    reflectance_bands: list[str],
    mask: MaskSettings,
    grid: Grid,
) -> np.ndarray:
    """Landsat items: fill is no data, saturated bands (QA_RADSAT) lose their value, and the
    clear pixels are those `mask.qa_pixel` does not mask (`sitsflow.pixels.qa`). In place."""
    fill_to_nan(qa_pixel)
    if mask.radsat and QA_RADSAT in stack.bands:
        radsat = stack.data[:, stack.bands.index(QA_RADSAT)]
        for index, item in enumerate(stack.items):
            instrument = landsat_instrument(item)
            for band_index, band in enumerate(reflectance_bands):
                layer = reflectance[index, band_index]
                layer[saturated(radsat[index], band, instrument)] = np.nan
    return ~qa_masked(qa_pixel, mask.qa_pixel, mask.dilate_m / grid.resolution)


def read_groups(
    items: list[StacItem],
    search_info: dict[str, Any],
    settings: CubeSettings,
    skipped: list[dict[str, Any]] | None,
) -> list[ReadGroup]:
    """The feature's items by sensor family (Sentinel-2 first), each normalised by its own
    provider (resolved for the family's collection) with the bands its items are read with.
    A Sentinel-2 run reads every item as Sentinel-2 (one group, as always)."""
    if LANDSAT not in settings.families:
        by_family = {SENTINEL_2: list(items)}
    else:
        by_family = {}
        for item in items:
            by_family.setdefault(item_family(item), []).append(item)
    collections = collection_list(settings.collection)
    groups = []
    for family in (SENTINEL_2, LANDSAT):
        if family not in by_family and not (family in settings.families and not items):
            continue
        members = by_family.get(family, [])
        collection = next(
            (name for name in collections if collection_family(name) == family),
            str(search_info.get("collection", "")),
        )
        provider = resolve_provider(
            settings.provider,
            catalog=search_info.get("catalog", ""),
            collection=collection,
            assets=settings.assets,
            items=members,
            requester_pays=settings.requester_pays,
        )
        class_band = settings.mask.band if family == SENTINEL_2 else QA_PIXEL
        bands = [*settings.reflectance_bands, class_band]
        class_bands: tuple[str, ...] = (class_band,)
        if family == LANDSAT and settings.mask.radsat:
            bands.append(QA_RADSAT)
            class_bands = (class_band, QA_RADSAT)
        if family == SENTINEL_2:
            provider.check_bands([s2_band(band) for band in bands])
        groups.append(
            ReadGroup(
                family,
                provider,
                normalise_items(members, bands, provider, skipped),
                bands,
                class_bands,
            )
        )
    return groups


@dataclass(frozen=True)
class PlannedRead:
    """A feature's read groups (`read_groups`) and the items left out for lacking an asset: a
    batch works them out when it plans its reads, and the cube stage takes them from there
    (`make_cube_arrays`) instead of normalising the same items again."""

    groups: list[ReadGroup]
    skipped: list[dict[str, Any]]


def plan_read(
    items: list[StacItem], search_info: dict[str, Any], settings: CubeSettings
) -> PlannedRead:
    """The read groups of `items` with the items lacking an asset left out (and listed)."""
    skipped: list[dict[str, Any]] = []
    return PlannedRead(read_groups(items, search_info, settings, skipped), skipped)


def read_request(
    record: BboxRecord,
    items: list[StacItem],
    search_info: dict[str, Any],
    settings: CubeSettings,
    planned: PlannedRead | None = None,
) -> tuple[list[ReadRequest], bool]:
    """What `make_cube` will ask its loader to read for this feature (a request per sensor
    family), and whether hrefs are signed: a batch reads several features' requests together
    beforehand (`sitsflow.pixels.tiles.TileReader.prefetch`). `planned`: `plan_read` of these
    items, if worked out already."""
    groups = (planned or plan_read(items, search_info, settings)).groups
    requests = [group.request(grid_of(record), settings.read_overviews) for group in groups]
    return requests, any(group.provider.signs_hrefs for group in groups)


def step_platforms(step_item_ids: list[list[str]], items: list[StacItem]) -> list[str]:
    """Each time step's platforms (`landsat-8`, `sentinel-2b+landsat-9`): those of the items it
    took pixels from, in the order of first use; empty for a step without any."""
    platform_of = {str(item["id"]): item_platform(item) or "unknown" for item in items}
    return [
        "+".join(dict.fromkeys(platform_of[i] for i in ids if i in platform_of))
        for ids in step_item_ids
    ]


def inside_pixels(record: BboxRecord, grid: Grid, all_touched: bool) -> np.ndarray:
    """The pixels a polygon feature's statistics use: centre inside the polygon (or, with
    `all_touched`, touched by it). Every pixel for points and lines, whose statistics use the
    whole window around them."""
    from rasterio.features import geometry_mask
    from shapely import wkt

    geometry = wkt.loads(record["properties"]["feature_wkt"])
    if geometry.geom_type not in AREA_TYPES:
        return np.ones((grid.height, grid.width), dtype=bool)
    projected = project_geometry(geometry, grid.epsg)
    return np.asarray(
        geometry_mask(
            [projected],
            out_shape=(grid.height, grid.width),
            transform=grid.transform,
            all_touched=all_touched,
            invert=True,
        ),
        dtype=bool,
    )


def _describe(counts: Counter[str]) -> str:
    """`full resolution (12 files)`; levels by decreasing number of files."""
    if not counts:
        return "nothing read"
    return "; ".join(f"{level} ({n} files)" for level, n in counts.most_common())


def _wkt(record: BboxRecord) -> str:
    from shapely import wkt
    from shapely.geometry import shape

    return str(wkt.dumps(shape(record["geometry"]), rounding_precision=7))


def _radiometry_summary(items: list[StacItem], bands: list[str]) -> dict[str, int]:
    """How many items used each DN -> reflectance rule (provenance of the scaling)."""
    counts: dict[str, int] = {}
    for item in items:
        for band in bands[:1]:
            asset = item["assets"][band]
            rule = (
                f"{asset['sitsflow:rule']} (scale {asset['sitsflow:scale']:g}, "
                f"offset {asset['sitsflow:offset']:g})"
            )
            counts[rule] = counts.get(rule, 0) + 1
    return counts
