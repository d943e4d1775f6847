"""What a batch's per-feature stages share: every stage's settings (`BatchSettings`, also the
rules' params) and the batch's context (`BatchContext`: settings, its group's search result, one
loader). Apart from `sitsflow.workflow.batch`, which runs the stages, and
`sitsflow.workflow.stages`, which defines them: both use these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sitsflow.core.layout import Layout
from sitsflow.core.pipeline import STAGE_NAMES, stage_named
from sitsflow.core.settings import (
    CubeSettings,
    GridSettings,
    RangeCacheSettings,
    SearchSettings,
    Settings,
    TimeseriesSettings,
)

if TYPE_CHECKING:
    import xarray as xr

    from sitsflow.core.types import JsonObject, StacItem
    from sitsflow.pixels.cube import PlannedRead
    from sitsflow.pixels.cube_model import CubeArrays
    from sitsflow.pixels.read import Loader
    from sitsflow.pixels.tiles import ReadRequest
    from sitsflow.workflow.stages import CubeTimeseries


@dataclass(frozen=True)
class BatchSettings:
    """Every stage's settings, as the per-feature rules get them in `params:`."""

    grid: GridSettings
    search: SearchSettings
    cube: CubeSettings
    timeseries: TimeseriesSettings
    cube_extension: str
    # the stages the run makes (`Settings.stages`): every one, or all but the quicklook
    stages: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings, batch_mode: bool) -> BatchSettings:
        return cls(
            settings.grid,
            settings.search,
            settings.cube,
            settings.timeseries,
            settings.cube_extension,
            settings.stages(batch_mode),
        )

    def to_params(self) -> dict[str, Any]:
        """The plain dict of the batch rule's `params:` (a change reruns the batches): every
        stage's settings section, the cube format's extension and the stages made."""
        return {
            **self.rule_params(*STAGE_NAMES),
            "cube_extension": self.cube_extension,
            "stages": list(self.stages),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BatchSettings:
        return cls(
            grid=GridSettings.from_config(params["grid"]),
            search=SearchSettings.from_config(params["search"]),
            cube=CubeSettings.from_config(params["cube"]),
            timeseries=TimeseriesSettings.from_config(params["timeseries"]),
            cube_extension=str(params["cube_extension"]),
            stages=tuple(params["stages"]),
        )

    @property
    def layout(self) -> Layout:
        return Layout(self.cube_extension)

    def stage_params(self, name: str) -> object:
        """The settings a stage's output depends on besides its input files (a fingerprint's
        input): its section's params (`sitsflow.core.pipeline.Stage.settings`), or None."""
        section = stage_named(name).settings
        return None if section is None else getattr(self, section).to_params()

    def rule_params(self, *names: str) -> dict[str, object]:
        """The `params:` of a rule making the stages `names`: each one's settings section under
        the section's name (`grid`, `search` ...), the values batch fingerprints digest."""
        return {
            section: self.stage_params(name)
            for name in names
            if (section := stage_named(name).settings) is not None
        }


@dataclass(frozen=True)
class FeatureItems:
    """What a batch job knows of a feature's items file, valid while the file's `stamp`
    (modification time in ns, size) is unchanged: its items and search record (None: parse
    the file; kept only when they are the group's parsed items, which cost no memory of their
    own) and its read groups (`sitsflow.pixels.cube.plan_read`), once the reads are planned."""

    stamp: tuple[int, int]
    items: list[StacItem] | None
    info: JsonObject
    planned: PlannedRead | None = None


@dataclass
class BatchContext:
    """What a batch's stages share: the settings, the search result of the batch's group, and
    one loader for every cube (its connections, and the reads of features read together)."""

    settings: BatchSettings
    group_search: str
    # the run's disk cache of fetched byte ranges (config `range_cache`; not a stage setting)
    range_cache: RangeCacheSettings | None = None
    loader: Loader | None = None
    # each feature's reads, one per sensor family (`sitsflow.pixels.cube.read_request`)
    requests: dict[str, list[ReadRequest]] = field(default_factory=dict)
    # what the items stage wrote and the read plan worked out per feature, for its cube stage
    known_items: dict[str, FeatureItems] = field(default_factory=dict)
    signs_hrefs: bool = False
    # each feature whose time series this job wrote: its table and its cube's summary row,
    # the batch's share of the run-wide tables (`write_batch_results`)
    tables: dict[str, CubeTimeseries] = field(default_factory=dict)
    # the cube each member's cube stage just wrote, for its quicklook and time series (the
    # same values as the file's: `stages.as_written`), dropped once the member's stages are
    # done
    built: dict[str, CubeArrays | xr.Dataset] = field(default_factory=dict)
    # CPU seconds by stage (and `read`: the rounds' reads), for the batch's log
    cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def layout(self) -> Layout:
        return self.settings.layout

    def shared_loader(self) -> Loader:
        """The batch's loader, made on first use (with a disk cache of the tiles it fetched:
        the run's, or one of its own)."""
        if self.loader is None:
            from sitsflow.pixels.read import make_loader

            self.loader = make_loader(self.settings.cube, range_cache=self.range_cache, batch=True)
        return self.loader
