"""Typed settings per stage, built once from the validated config.

Defaults live in `schemas/config.schema.yaml` only: Snakemake's `validate` fills them in before
`Settings.from_config` runs, and every `from_config` reads the keys it needs without a fallback
(a missing key is a bug, not a default). A stage's settings reach its rule as a plain dict
(`to_params`, shaped like the config keys it came from) so that Snakemake's params rerun
trigger sees exactly the values the stage uses; the rule script rebuilds them with
`from_config`, which accepts that dict as well as the whole config. Values keep the types the
schema guarantees (an integer `buffer_m` stays an integer), so params stay as the config
wrote them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

Mode = Literal["image", "patch"]
GapfillMethod = Literal["linear", "nearest", "none"]
OnMissingAsset = Literal["error", "skip"]
S3AccessMode = Literal["auto", "http"]
LoaderName = Literal["sitsflow", "stackstac"]
CubeFormat = Literal["netcdf", "zarr"]
CubeCompression = Literal["zlib", "zstd"]
TimeseriesMethod = Literal["pixel", "median"]
PolygonMethod = Literal["median", "mean"]
TimeseriesLayout = Literal["long", "wide"]
CompositeMethod = Literal["median", "first", "max_ndvi"]
Bandpass = Literal["none", "hls"]
ProviderSetting = Literal[
    "auto",
    "earth-search-v1",
    "earth-search-c1",
    "planetary-computer",
    "copernicus-data-space",
    "generic",
]
DemoLayout = Literal["planetary-computer", "earth-search-c1"]

CUBE_EXTENSIONS: dict[CubeFormat, str] = {"netcdf": "nc", "zarr": "zarr"}


def _plain(value: Any) -> Any:
    """`value` as JSON-like data (tuples as lists), the form Snakemake params compare."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class StageSettings:
    """Shared by the settings dataclasses: their params form.

    `SECTION` names the config object a class reads its fields from (`mask:`), None for
    top-level keys; `to_params` nests the fields the same way, so `from_config` reads both.
    """

    SECTION: ClassVar[str | None] = None

    def to_params(self) -> dict[str, Any]:
        """The settings as the plain dict a rule's `params:` carries (config-shaped)."""
        fields = cast(dict[str, Any], _plain(dataclasses.asdict(cast(Any, self))))
        return {self.SECTION: fields} if self.SECTION else fields


@dataclass(frozen=True)
class GridSettings(StageSettings):
    """The `bbox` stage: area of interest and cube grid."""

    buffer_m: float
    crs: str
    resolution: float
    mode: Mode
    # Only in patch mode; None in image mode so that editing it reruns nothing there.
    patch_size: tuple[int, int] | None
    max_pixels: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GridSettings:
        mode = cast(Mode, config["mode"])
        patch = config["patch_size"] if mode == "patch" else None
        return cls(
            buffer_m=config["buffer_m"],
            crs=str(config["crs"]),
            resolution=config["resolution"],
            mode=mode,
            patch_size=(patch[0], patch[1]) if patch is not None else None,
            max_pixels=config["max_pixels"],
        )


@dataclass(frozen=True)
class SearchSettings(StageSettings):
    """The `search` stage: where and what to search."""

    catalog: str
    # One collection, or several read onto one time axis (`collections` lists them either way).
    collection: str | tuple[str, ...]
    start: str
    end: str
    query: dict[str, Any] | None
    # CQL2 text, or CQL2 JSON
    filter: str | dict[str, Any] | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchSettings:
        query = config["query"]
        return cls(
            catalog=str(config["catalog"]),
            collection=collection_setting(config["collection"]),
            start=str(config["start"]),
            end=str(config["end"]),
            query=dict(query) if query is not None else None,
            filter=config["filter"],
        )

    @property
    def collections(self) -> tuple[str, ...]:
        return collection_list(self.collection)


def collection_setting(value: str | list[str] | tuple[str, ...]) -> str | tuple[str, ...]:
    """Config `collection` as settings hold it: a string for one collection (as it always
    was, so a run's params stay what they were), a tuple for several."""
    if isinstance(value, str):
        return value
    names = tuple(str(name) for name in value)
    return names[0] if len(names) == 1 else names


def collection_list(value: str | Sequence[str]) -> tuple[str, ...]:
    """The collections of a `collection` value (config or settings): always a tuple."""
    return (value,) if isinstance(value, str) else tuple(str(name) for name in value)


@dataclass(frozen=True)
class StacSettings(StageSettings):
    """The search job's use of the STAC API: groups, concurrency, rate, pages, timeouts."""

    SECTION: ClassVar[str | None] = "stac"

    group_degrees: float
    max_concurrent: int
    max_requests_per_s: float
    page_size: int
    timeout_s: float
    connect_timeout_s: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StacSettings:
        stac = config["stac"]
        return cls(
            group_degrees=stac["group_degrees"],
            max_concurrent=stac["max_concurrent"],
            max_requests_per_s=stac["max_requests_per_s"],
            page_size=stac["page_size"],
            timeout_s=stac["timeout_s"],
            connect_timeout_s=stac["connect_timeout_s"],
        )


@dataclass(frozen=True)
class ReadSettings(StageSettings):
    """How sitsflow's reader fetches byte ranges of COGs."""

    SECTION: ClassVar[str | None] = "reads"

    max_in_flight: int
    timeout_s: float
    retries: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReadSettings:
        reads = config["reads"]
        return cls(
            max_in_flight=reads["max_in_flight"],
            timeout_s=reads["timeout_s"],
            retries=reads["retries"],
        )


@dataclass(frozen=True)
class RangeCacheSettings:
    """The run-wide disk cache of fetched byte ranges (`sitsflow.catalog.range_cache`): where,
    and how large it may grow (`max_bytes` 0: no cache). Not a stage's setting: it changes
    what is fetched, never a value, so it reruns nothing."""

    directory: str
    max_bytes: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RangeCacheSettings:
        cache = config["range_cache"]
        return cls(directory=str(cache["directory"]), max_bytes=int(cache["max_gb"] * 1e9))


@dataclass(frozen=True)
class MaskSettings(StageSettings):
    """Cloud masking: the classification band, the classes that are masked (presets:
    `sitsflow.pixels.mask.MASK_PRESETS`), and how far clouds are grown."""

    SECTION: ClassVar[str | None] = "mask"

    band: str
    classes: tuple[int, ...]
    dilate_m: float
    # Landsat items: the QA_PIXEL bits masked (`sitsflow.pixels.qa.QA_PIXEL_BITS`), and
    # whether QA_RADSAT's saturated bands lose their value.
    qa_pixel: tuple[str, ...]
    radsat: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MaskSettings:
        from sitsflow.core.bands import canonical_band

        mask = config["mask"]
        return cls(
            band=canonical_band(mask["band"]),
            classes=tuple(mask["classes"]),
            dilate_m=mask["dilate_m"],
            qa_pixel=tuple(mask["qa_pixel"]),
            radsat=bool(mask["radsat"]),
        )


@dataclass(frozen=True)
class GapfillSettings(StageSettings):
    """Gap-filling along time."""

    SECTION: ClassVar[str | None] = "gapfill"

    method: GapfillMethod
    max_gap_days: float | None
    max_edge_days: float | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GapfillSettings:
        gapfill = config["gapfill"]
        return cls(
            method=cast(GapfillMethod, gapfill["method"]),
            max_gap_days=gapfill["max_gap_days"],
            max_edge_days=gapfill["max_edge_days"],
        )


@dataclass(frozen=True)
class TimeseriesSettings(StageSettings):
    """Which pixels a feature's series is read from, and how they are summarised: a point's
    pixel or window median (`method`), a polygon's median or mean over the pixels inside it
    (`polygon_method`), inside meaning centre inside or, with `all_touched`, touched; and the
    tables' shape (`layout`: a row per date and band, or per date with a column per band)."""

    SECTION: ClassVar[str | None] = "timeseries"

    method: TimeseriesMethod
    polygon_method: PolygonMethod
    all_touched: bool
    layout: TimeseriesLayout

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TimeseriesSettings:
        timeseries = config["timeseries"]
        return cls(
            method=cast(TimeseriesMethod, timeseries["method"]),
            polygon_method=cast(PolygonMethod, timeseries["polygon_method"]),
            all_touched=bool(timeseries["all_touched"]),
            layout=cast(TimeseriesLayout, timeseries["layout"]),
        )


@dataclass(frozen=True)
class InsideSettings(StageSettings):
    """Which pixels of a polygon feature's window its statistics use (the cube's `inside`):
    centre inside, or touched (`timeseries.all_touched`)."""

    SECTION: ClassVar[str | None] = "timeseries"

    all_touched: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InsideSettings:
        return cls(all_touched=bool(config["timeseries"]["all_touched"]))


@dataclass(frozen=True)
class CubeSettings(StageSettings):
    """The `cube` stage: what to read and how, masking, compositing onto a regular axis,
    gap-filling, indices, and which pixels count as inside a polygon.

    `time_step` (an ISO 8601 duration, or None for the acquisition dates) and `composite`
    shape the time axis; `composite` is None without a time step, so that editing it reruns
    nothing then. The axis runs over the search's `start`..`end`, which the cube reads from
    its items' search record (a change of either reruns the search and the cubes anyway).
    `compression` is the netCDF codec, None for Zarr stores (which keep Zarr's own), so that
    editing it reruns nothing there.
    """

    collection: str | tuple[str, ...]
    bands: tuple[str, ...]
    mask: MaskSettings
    bandpass: Bandpass
    time_step: str | None
    composite: CompositeMethod | None
    gapfill: GapfillSettings
    timeseries: InsideSettings
    indices: tuple[str, ...]
    provider: ProviderSetting
    assets: dict[str, str]
    on_missing_asset: OnMissingAsset
    s3_access: S3AccessMode
    s3_endpoint: str | None
    requester_pays: bool
    read_overviews: bool
    loader: LoaderName
    reads: ReadSettings
    compression: CubeCompression | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CubeSettings:
        from sitsflow.core.bands import LANDSAT, canonical_band, run_families

        time_step = config["time_step"]
        collection = collection_setting(config["collection"])
        landsat = LANDSAT in run_families(collection_list(collection))
        return cls(
            collection=collection,
            bands=tuple(canonical_band(band, landsat) for band in config["bands"]),
            mask=MaskSettings.from_config(config),
            bandpass=cast(Bandpass, config["bandpass"]),
            time_step=str(time_step) if time_step is not None else None,
            composite=(
                cast(CompositeMethod, config["composite"]) if time_step is not None else None
            ),
            gapfill=GapfillSettings.from_config(config),
            timeseries=InsideSettings.from_config(config),
            indices=tuple(config["indices"]),
            provider=cast(ProviderSetting, config["provider"]),
            assets={str(band): str(key) for band, key in config["assets"].items()},
            on_missing_asset=cast(OnMissingAsset, config["on_missing_asset"]),
            s3_access=cast(S3AccessMode, config["s3_access"]),
            s3_endpoint=config["s3_endpoint"],
            requester_pays=bool(config["requester_pays"]),
            read_overviews=bool(config["read_overviews"]),
            loader=cast(LoaderName, config["loader"]),
            reads=ReadSettings.from_config(config),
            compression=cast(CubeCompression | None, config["compression"]),
        )

    @property
    def families(self) -> tuple[str, ...]:
        """The sensor families the run reads (`sentinel-2`, `landsat`), by its collections."""
        from sitsflow.core.bands import run_families

        return run_families(collection_list(self.collection))

    @property
    def class_bands(self) -> list[str]:
        """The classification band of each family read: `SCL` (`mask.band`) for Sentinel-2,
        `QA_PIXEL` for Landsat; the items of each are masked with their own."""
        from sitsflow.core.bands import FAMILY_CLASS_BAND, SENTINEL_2

        return [
            self.mask.band if family == SENTINEL_2 else FAMILY_CLASS_BAND[family]
            for family in self.families
        ]

    @property
    def reflectance_bands(self) -> list[str]:
        """The bands written as values (the classification bands are kept as classes)."""
        from sitsflow.core.bands import CLASSIFICATION_BANDS

        skipped = {self.mask.band, *CLASSIFICATION_BANDS}
        return [band for band in self.bands if band not in skipped]


@dataclass(frozen=True)
class DemoSettings(StageSettings):
    """The synthetic demo archive `make demo` writes for the run's features."""

    SECTION: ClassVar[str | None] = "demo"

    layout: DemoLayout
    seed: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DemoSettings:
        demo = config["demo"]
        return cls(layout=cast(DemoLayout, demo["layout"]), seed=int(demo["seed"]))


@dataclass(frozen=True)
class Settings:
    """Every setting of a run, by stage."""

    vector: str
    id_column: str
    # Columns of the vector file carried into cubes, tables and the dataset (`Feature`).
    attributes: tuple[str, ...]
    grid: GridSettings
    search: SearchSettings
    stac: StacSettings
    cube: CubeSettings
    timeseries: TimeseriesSettings
    format: CubeFormat
    # results/dataset.zarr: every cube stacked along `feature` (sitsflow.outputs.dataset)
    dataset: bool
    batch_size: int | Literal["auto"]
    # each feature's quicklook PNG: always, never, or `auto`: in per-feature mode only
    quicklooks: bool | Literal["auto"]
    demo: DemoSettings
    range_cache: RangeCacheSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        batch_size = config["batch_size"]
        cube = CubeSettings.from_config(config)
        if config["format"] != "netcdf":  # Zarr keeps its own codec: editing it reruns nothing
            cube = dataclasses.replace(cube, compression=None)
        return cls(
            vector=str(config["vector"]),
            id_column=str(config["id_column"]),
            attributes=tuple(str(column) for column in config["attributes"]),
            grid=GridSettings.from_config(config),
            search=SearchSettings.from_config(config),
            stac=StacSettings.from_config(config),
            cube=cube,
            timeseries=TimeseriesSettings.from_config(config),
            format=cast(CubeFormat, config["format"]),
            dataset=bool(config["dataset"]),
            batch_size="auto" if batch_size == "auto" else int(batch_size),
            quicklooks="auto" if config["quicklooks"] == "auto" else bool(config["quicklooks"]),
            demo=DemoSettings.from_config(config),
            range_cache=RangeCacheSettings.from_config(config),
        )

    @property
    def cube_extension(self) -> str:
        return CUBE_EXTENSIONS[self.format]

    def stages(self, batch_mode: bool) -> tuple[str, ...]:
        """The per-feature stages the run makes (`sitsflow.core.pipeline`): all of them, but
        the quicklook only when drawn (`quicklooks`; `auto`: outside batch mode, as a
        quicklook costs more CPU than the rest of a feature's stages together)."""
        from sitsflow.core.pipeline import STAGE_NAMES

        draws = not batch_mode if self.quicklooks == "auto" else self.quicklooks
        return tuple(name for name in STAGE_NAMES if draws or name != "quicklook")
