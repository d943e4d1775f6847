"""Which reader reads a feature's items: sitsflow's own (`loader: sitsflow`,
`sitsflow.pixels.tiles`) or stackstac's (`loader: stackstac`, `sitsflow.pixels.load`). Both give
the same `ItemStack`, value for value (tested on the demo archive).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from sitsflow.catalog.s3 import S3Access
from sitsflow.core.grid import Grid
from sitsflow.core.settings import CubeSettings, RangeCacheSettings
from sitsflow.core.types import StacItem
from sitsflow.pixels.stack import ItemStack


class Loader(Protocol):
    """Reads items' bands onto a grid."""

    def read(
        self,
        items: list[StacItem],
        bands: list[str],
        grid: Grid,
        *,
        class_bands: Sequence[str],
        read_overviews: bool,
        skipped: list[dict[str, Any]] | None,
        sign_hrefs: bool,
    ) -> ItemStack: ...

    def close(self) -> None: ...


class StackstacLoader:
    """stackstac through GDAL's warper (`sitsflow.pixels.load.read_items`)."""

    def __init__(self, s3: S3Access) -> None:
        self.s3 = s3

    def read(
        self,
        items: list[StacItem],
        bands: list[str],
        grid: Grid,
        *,
        class_bands: Sequence[str],
        read_overviews: bool,
        skipped: list[dict[str, Any]] | None,
        sign_hrefs: bool,
    ) -> ItemStack:
        from sitsflow.pixels.load import read_items

        return read_items(
            items,
            bands,
            grid,
            class_bands=class_bands,
            sign_hrefs=sign_hrefs,
            skipped=skipped,
            s3=self.s3,
            read_overviews=read_overviews,
        )

    def close(self) -> None:
        return None


def make_loader(
    settings: CubeSettings,
    *,
    range_cache: RangeCacheSettings | None = None,
    batch: bool = False,
) -> Loader:
    """The loader `settings.loader` names; one per job, so that a batch shares its
    connections. sitsflow's reader keeps a throttled store's pause run-wide
    (`sitsflow.catalog.pauses`) and the byte ranges it fetches in `range_cache`, the run's
    disk cache (`sitsflow.catalog.range_cache`); without one, a `batch` job keeps them in a
    cache of its own, for the batch's later reads."""
    if settings.loader == "stackstac":
        return StackstacLoader(S3Access(settings.s3_access, settings.s3_endpoint))
    from sitsflow.catalog.pauses import SharedPause
    from sitsflow.catalog.range_cache import RangeCache
    from sitsflow.catalog.ranges import RangeStore
    from sitsflow.pixels.tiles import TileReader

    reads = settings.reads
    cache = None
    if range_cache is not None and range_cache.max_bytes > 0:
        cache = RangeCache(os.path.expandvars(range_cache.directory), range_cache.max_bytes)
    elif batch:
        cache = RangeCache()
    store = RangeStore(
        max_in_flight=reads.max_in_flight,
        read_timeout_s=reads.timeout_s,
        max_retries=reads.retries,
        cache=cache,
        shared_pause=SharedPause(),
    )
    return TileReader(
        s3_endpoint=settings.s3_endpoint,
        s3=S3Access(settings.s3_access, settings.s3_endpoint),
        max_in_flight=reads.max_in_flight,
        store=store,
    )
