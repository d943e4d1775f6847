"""Build one feature's cube: normalise items, load, mask, gap-fill, describe."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import xarray as xr

from sitsflow.catalog.providers import normalise_items, resolve_provider
from sitsflow.catalog.s3 import S3Access
from sitsflow.outputs.write import build_dataset, provenance_attrs
from sitsflow.pixels.gapfill import gapfill
from sitsflow.pixels.indices import add_indices
from sitsflow.pixels.load import load_reflectance
from sitsflow.pixels.mask import apply_mask
from sitsflow.workflow.aoi import BboxRecord, grid_of
from sitsflow.workflow.settings import CubeSettings

log = logging.getLogger(__name__)


def make_cube(
    record: BboxRecord,
    items: list[dict[str, Any]],
    search_info: dict[str, Any],
    settings: CubeSettings,
) -> xr.Dataset:
    """The cube of the feature described by `record` (a bbox record) from its searched items."""
    fid = record["properties"]["feature_id"]
    grid = grid_of(record)
    reflectance_bands = settings.reflectance_bands
    all_bands = [*reflectance_bands, settings.mask.band]
    started = time.perf_counter()
    provider = resolve_provider(
        settings.provider,
        catalog=search_info.get("catalog", ""),
        collection=search_info.get("collection", ""),
        assets=settings.assets,
        items=items,
    )
    provider.check_bands(all_bands)
    log.info("feature %s: provider %s", fid, provider.describe())
    # on_missing_asset: skip -> items with an unreadable asset are left out and listed here
    skipped: list[dict] | None = [] if settings.on_missing_asset == "skip" else None
    normalised = normalise_items(items, all_bands, provider, skipped)
    longitude = record["properties"]["centroid_lonlat"][0]
    data, times, step_items = load_reflectance(
        normalised,
        all_bands,
        grid,
        longitude=longitude,
        sign_hrefs=provider.signs_hrefs,
        skipped=skipped,
        s3=S3Access(settings.s3_access, settings.s3_endpoint),
        read_overviews=settings.read_overviews,
    )
    read_ids = {item_id for step in step_items for item_id in step}
    used_ids = [item["id"] for item in normalised if item["id"] in read_ids]
    loaded = time.perf_counter()
    log.info(
        "feature %s: read %d items -> %d time steps of %dx%d px in %.1f s",
        fid,
        len(items),
        len(times),
        grid.width,
        grid.height,
        loaded - started,
    )

    reflectance, classification = data[:, :-1], data[:, -1]
    masked, observed = apply_mask(reflectance, classification, settings.mask.classes)
    valid_fraction = float(observed.mean()) if observed.size else 0.0
    filled = (
        np.stack(
            [
                gapfill(masked[:, i], times, settings.gapfill.method, settings.gapfill.max_gap_days)
                for i in range(len(reflectance_bands))
            ],
            axis=1,
        )
        if len(times)
        else masked
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
        search_datetime=search_info.get("datetime"),
        query=search_info.get("query"),
        filter=search_info.get("filter"),
        item_ids=used_ids,
        skipped_items=[entry["item"] for entry in skipped] if skipped is not None else None,
        time_step_item_ids=step_items,
        radiometry=_radiometry_summary(normalised, reflectance_bands),
        bands=reflectance_bands,
        mask_band=settings.mask.band,
        mask_classes=list(settings.mask.classes),
        gapfill_method=settings.gapfill.method,
        gapfill_max_gap_days=settings.gapfill.max_gap_days,
        n_items=len(used_ids),
        n_time_steps=len(times),
        valid_fraction=round(valid_fraction, 6),
        status="ok" if used_ids else "no_items",
        resampling="nearest",
    )
    dataset = build_dataset(
        grid=grid,
        times=times,
        bands=reflectance_bands,
        reflectance=filled,
        classification=classification,
        classification_band=settings.mask.band,
        observed=observed,
        attrs=attrs,
    )
    # Spectral indices (sitsflow.pixels.indices): extra variables from the gap-filled reflectance.
    return add_indices(dataset, list(settings.indices))


def _wkt(record: BboxRecord) -> str:
    from shapely import wkt
    from shapely.geometry import shape

    return wkt.dumps(shape(record["geometry"]), rounding_precision=7)


def _radiometry_summary(items: list[dict], bands: list[str]) -> dict[str, int]:
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
