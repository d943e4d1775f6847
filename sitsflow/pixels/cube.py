"""Build one feature's cube: normalise items, read, mask, mosaic, composite onto the regular
axis (with a `time_step`), gap-fill, describe."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from sitsflow.catalog.providers import Provider, normalise_items, resolve_provider
from sitsflow.core.bbox import BboxRecord, grid_of
from sitsflow.core.features import AREA_TYPES
from sitsflow.core.grid import Grid, project_geometry
from sitsflow.core.settings import CubeSettings, MaskSettings
from sitsflow.core.types import StacItem
from sitsflow.pixels.composite import composite_mosaic
from sitsflow.pixels.cube_model import CubeArrays, cube_arrays, provenance_attrs
from sitsflow.pixels.gapfill import gapfill
from sitsflow.pixels.mask import clear_pixels
from sitsflow.pixels.mosaic import MOSAIC_ORDER, Mosaic, mosaic_by_solar_day
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
) -> xr.Dataset:
    """`make_cube_arrays` as an xarray Dataset, with the spectral indices `settings` asks for."""
    arrays = make_cube_arrays(record, items, search_info, settings, loader, attributes)
    dataset = arrays.to_dataset()
    if not settings.indices:
        return dataset
    # Spectral indices (sitsflow.pixels.indices, which imports spyndex: only when asked for):
    # extra variables from the gap-filled reflectance.
    from sitsflow.pixels.indices import add_indices

    return add_indices(dataset, list(settings.indices))


def make_cube_arrays(
    record: BboxRecord,
    items: list[dict[str, Any]],
    search_info: dict[str, Any],
    settings: CubeSettings,
    loader: Loader | None = None,
    attributes: dict[str, Any] | None = None,
) -> CubeArrays:
    """The cube of the feature described by `record` (a bbox record) from its searched items:
    read each item, invalid DNs out, reflectance, mask each item, mosaic per solar day, with a
    `time_step` composite the days of each interval of the run's regular axis, then gap-fill
    along time (module `sitsflow.pixels.mosaic` says why in that order). `loader` (default:
    the one `settings.loader` names, for this cube only) reads the files. `attributes` (the
    feature's vector-file columns) are recorded as `feature_attributes`. Without the spectral
    indices (`make_cube` adds them)."""
    fid = record["properties"]["feature_id"]
    grid = grid_of(record)
    reflectance_bands = settings.reflectance_bands
    mask_band = settings.mask.band
    all_bands = [*reflectance_bands, mask_band]
    started = time.perf_counter()
    # on_missing_asset: skip -> items with an unreadable asset are left out and listed here
    skipped: list[dict[str, Any]] | None = [] if settings.on_missing_asset == "skip" else None
    provider, normalised = _normalised(items, search_info, settings, skipped)
    log.info("feature %s: provider %s", fid, provider.describe())
    own_loader = loader is None
    loader = loader or make_loader(settings)
    try:
        stack, invalid, mosaic = read_and_mosaic(
            normalised,
            reflectance_bands,
            settings.mask,
            grid,
            record["properties"]["centroid_lonlat"][0],
            loader,
            sign_hrefs=provider.signs_hrefs,
            skipped=skipped,
            read_overviews=settings.read_overviews,
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
    filled = (
        np.stack(
            [
                gapfill(
                    reflectance[:, i],
                    times,
                    settings.gapfill.method,
                    settings.gapfill.max_gap_days,
                    settings.gapfill.max_edge_days,
                )
                for i in range(len(reflectance_bands))
            ],
            axis=1,
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
        provider=provider.name,
        provider_detected_by=provider.detected_by,
        read_overviews=str(settings.read_overviews).lower(),
        loader=settings.loader,
        # sitsflow's reader: the files it left to GDAL, item -> band -> why (none: it read all)
        read_through_gdal=stack.through_gdal or None,
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
        mask_band=mask_band,
        mask_classes=list(settings.mask.classes),
        mask_dilate_m=settings.mask.dilate_m,
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
        classification_band=mask_band,
        observed=observed,
        inside=inside,
        sources={band: _describe(stack.sources[band]) for band in all_bands},
        attrs=attrs,
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


def read_and_mosaic(
    items: list[dict[str, Any]],
    reflectance_bands: list[str],
    mask: MaskSettings,
    grid: Grid,
    longitude: float,
    loader: Loader,
    *,
    read_overviews: bool = True,
    skipped: list[dict[str, Any]] | None = None,
    sign_hrefs: bool = False,
) -> tuple[ItemStack, dict[str, int], Mosaic]:
    """Read normalised `items` (the reflectance bands and the mask band) with `loader`, set
    invalid DNs to NaN, scale to reflectance, mask each item, mosaic per solar day at
    `longitude`. Returns what was read, the invalid DNs per band and the mosaic."""
    stack = loader.read(
        items,
        [*reflectance_bands, mask.band],
        grid,
        class_bands=[mask.band],
        read_overviews=read_overviews,
        skipped=skipped,
        sign_hrefs=sign_hrefs,
    )
    invalid = mark_invalid(stack)
    to_reflectance(stack, reflectance_bands)
    reflectance, classification = stack.data[:, :-1], stack.data[:, -1]
    clear = clear_pixels(classification, mask.classes, mask.dilate_m / grid.resolution)
    clear &= np.isfinite(reflectance).all(axis=1)
    mosaic = mosaic_by_solar_day(reflectance, classification, clear, stack.items, longitude)
    return stack, invalid, mosaic


def _normalised(
    items: list[StacItem],
    search_info: dict[str, Any],
    settings: CubeSettings,
    skipped: list[dict[str, Any]] | None,
) -> tuple[Provider, list[StacItem]]:
    """The items' provider and the items with assets keyed by band (the bands and the mask
    band), as the loader reads them."""
    provider = resolve_provider(
        settings.provider,
        catalog=search_info.get("catalog", ""),
        collection=search_info.get("collection", ""),
        assets=settings.assets,
        items=items,
    )
    all_bands = [*settings.reflectance_bands, settings.mask.band]
    provider.check_bands(all_bands)
    return provider, normalise_items(items, all_bands, provider, skipped)


def read_request(
    record: BboxRecord,
    items: list[StacItem],
    search_info: dict[str, Any],
    settings: CubeSettings,
) -> tuple[ReadRequest, bool]:
    """What `make_cube` will ask its loader to read for this feature, and whether hrefs are
    signed: a batch reads several features' requests together beforehand
    (`sitsflow.pixels.tiles.TileReader.prefetch`)."""
    from sitsflow.pixels.tiles import ReadRequest

    provider, normalised = _normalised(items, search_info, settings, [])
    request = ReadRequest(
        normalised,
        [*settings.reflectance_bands, settings.mask.band],
        grid_of(record),
        (settings.mask.band,),
        settings.read_overviews,
    )
    return request, provider.signs_hrefs


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
