"""The per-feature stages, each declared once: its name, the file it makes, the stages whose
files it reads, the settings section and the feature's own values its file depends on, and the
function that runs it.

Everything that needs to know the stages is derived from `STAGES`: the paths
(`sitsflow.core.layout`), the rules' `params:` and the batch fingerprints
(`sitsflow.workflow.batch.BatchSettings`), batch mode's `run_stage`, and the summary's chain of
jobs up to a cube (`sitsflow.outputs.summary`). A stage added here is run, fingerprinted and
summarised everywhere; forgetting one of those places is no longer possible.

The function is named by `module:function` (resolved by `sitsflow.workflow.batch.run_stage`):
the foundations import nothing above them, and a job imports only the stages it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FeatureValue = Literal["geometry", "attributes"]


@dataclass(frozen=True)
class Stage:
    """One per-feature stage.

    `output`: the file it makes, a pattern in `{fid}` (`{ext}`: the cube format's extension);
    `upstream`: the stages whose files it reads; `settings`: the section of the settings
    (`sitsflow.core.settings.Settings`) its file depends on, None if only on its input files;
    `feature_values`: what of the feature itself its file depends on (its `geometry`, its
    `attributes` columns); `runner`: `module:function` that makes the file for one feature.
    """

    name: str
    output: str
    upstream: tuple[str, ...]
    settings: str | None
    feature_values: tuple[FeatureValue, ...]
    runner: str


_RUNNERS = "sitsflow.workflow.stages"

# In order: every stage comes after its upstream stages.
STAGES: tuple[Stage, ...] = (
    Stage(
        "bbox",
        "results/bbox/{fid}.geojson",
        upstream=(),
        settings="grid",
        feature_values=("geometry",),
        runner=f"{_RUNNERS}:run_bbox",
    ),
    Stage(
        "items",
        "results/items/{fid}.json",
        upstream=("bbox",),
        settings="search",
        feature_values=(),
        runner=f"{_RUNNERS}:run_items",
    ),
    Stage(
        "cube",
        "results/cubes/{fid}.{ext}",
        upstream=("bbox", "items"),
        settings="cube",
        feature_values=("attributes",),
        runner=f"{_RUNNERS}:run_cube",
    ),
    Stage(
        "quicklook",
        "results/quicklooks/{fid}.png",
        upstream=("cube",),
        settings=None,
        feature_values=(),
        runner=f"{_RUNNERS}:run_quicklook",
    ),
    Stage(
        "timeseries",
        "results/timeseries/{fid}.csv",
        upstream=("cube",),
        settings="timeseries",
        feature_values=(),
        runner=f"{_RUNNERS}:run_timeseries",
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
UPSTREAM: dict[str, tuple[str, ...]] = {stage.name: stage.upstream for stage in STAGES}
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage_named(name: str) -> Stage:
    """The stage called `name`; ValueError naming the stages otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {STAGE_NAMES}") from None


def chain_to(name: str) -> tuple[str, ...]:
    """`name` and every stage it depends on, directly or not, in pipeline order: the jobs a
    feature's file of that stage waits for (`chain_to("cube")`: bbox, items, cube)."""
    needed = {name}
    for candidate in reversed(STAGES):
        if candidate.name in needed:
            needed.update(candidate.upstream)
    return tuple(candidate.name for candidate in STAGES if candidate.name in needed)
