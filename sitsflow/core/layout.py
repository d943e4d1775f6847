"""Where every file of a run goes, and which stage makes which file from which: the one
description of the pipeline's shape. The rules (`rules/*.smk`) take their paths from here, and
batch mode (`sitsflow.workflow.batch`) runs the same stages in the same order on the same
paths, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One per-feature stage: the file it makes (a pattern in `{fid}`) and the stages whose
    files it reads."""

    name: str
    output: str
    upstream: tuple[str, ...]


# In order: every stage comes after its upstream stages.
STAGES: tuple[Stage, ...] = (
    Stage("bbox", "results/bbox/{fid}.geojson", ()),
    Stage("search", "results/items/{fid}.json", ("bbox",)),
    Stage("cube", "results/cubes/{fid}.{ext}", ("bbox", "search")),
    Stage("quicklook", "results/quicklooks/{fid}.png", ("cube",)),
    Stage("timeseries", "results/timeseries/{fid}.csv", ("cube",)),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
UPSTREAM: dict[str, tuple[str, ...]] = {stage.name: stage.upstream for stage in STAGES}
LOG = "logs/{stage}/{fid}.log"

# The search job's: one search result per group of nearby features (sitsflow.catalog.groups),
# each a hard link to its entry in the cache, and the index of the groups.
GROUP_SEARCH = "results/searches/{group}.json"
SEARCH_INDEX = "results/searches/index.json"
SEARCH_CACHE = "results/searches/cache"

# Files over all features.
SUMMARY = "results/summary.csv"
SUMMARY_HTML = "results/summary.html"
TIMESERIES_TABLE = "results/timeseries.parquet"
OVERVIEW = "results/overview.png"
# `dataset: true` (sitsflow/outputs/dataset.py): every cube stacked along `feature`, updated in
# place, and the `dataset` job's manifest (its declared output: rules/dataset.smk says why).
DATASET = "results/dataset.zarr"
DATASET_MANIFEST = "results/dataset.json"
# `snakemake plan` (sitsflow/workflow/plan.py): the cost of the run, from its searches.
PLAN = "results/plan.json"
PLAN_TEXT = "results/plan.txt"
RUN_LOG = "logs/{rule}.log"

# Batch mode: the declared outputs of a `batch` job and each member's stage fingerprints.
BATCH_MANIFEST = "results/batches/{batch}.json"
BATCH_TIMESERIES = "results/batches/{batch}.timeseries.parquet"
BATCH_LOG = "logs/batch/{batch}.log"
BATCH_STATE = "results/batches/state/{fid}.json"


@dataclass(frozen=True)
class Layout:
    """The paths of one run; they depend on the cube format's extension (`nc`, `zarr`)."""

    cube_extension: str = "nc"

    def pattern(self, stage: str) -> str:
        """The stage's output pattern in `{fid}` (a Snakemake output)."""
        for candidate in STAGES:
            if candidate.name == stage:
                return candidate.output.replace("{ext}", self.cube_extension)
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGE_NAMES}")

    def path(self, stage: str, fid: str) -> str:
        return self.pattern(stage).format(fid=fid)

    def paths(self, stage: str, fids: Iterable[str]) -> list[str]:
        pattern = self.pattern(stage)
        return [pattern.format(fid=fid) for fid in fids]

    @staticmethod
    def log_pattern(stage: str) -> str:
        return LOG.replace("{stage}", stage)

    @staticmethod
    def log(stage: str, fid: str) -> str:
        return LOG.format(stage=stage, fid=fid)

    @staticmethod
    def state(fid: str) -> str:
        return BATCH_STATE.format(fid=fid)

    @staticmethod
    def group_search(group: str) -> str:
        return GROUP_SEARCH.format(group=group)

    @staticmethod
    def group_searches(groups: Iterable[str]) -> list[str]:
        return [GROUP_SEARCH.format(group=group) for group in groups]

    @staticmethod
    def manifests(batches: Iterable[str]) -> list[str]:
        return [BATCH_MANIFEST.format(batch=batch) for batch in batches]

    @staticmethod
    def batch_timeseries(batches: Iterable[str]) -> list[str]:
        return [BATCH_TIMESERIES.format(batch=batch) for batch in batches]
