"""Where every file of a run goes: the per-feature stages' files (declared with their stages in
`sitsflow.core.pipeline`), their logs and the run-wide files. The rules (`rules/*.smk`) take
their paths from here, and batch mode (`sitsflow.workflow.batch`) writes the same files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sitsflow.core.pipeline import stage_named

# A per-feature job's log: of its rule in per-feature mode, of each stage in batch mode.
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
# per-feature mode: the settings each time-series CSV was written with, and the generation of
# the `timeseries` job (sitsflow.workflow.stages.refresh_timeseries)
TIMESERIES_STATE = "results/timeseries.state.json"
# Per-feature mode: the `quicklooks` job's record (its generation), and what it gives the report:
# a link to each feature's quicklook under its kind (Points, Polygons)
QUICKLOOK_STATE = "results/quicklooks.state.json"
REPORT_QUICKLOOKS = "results/report/quicklooks"
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

    def pattern(self, name: str) -> str:
        """The stage's output pattern in `{fid}` (a Snakemake output)."""
        return stage_named(name).output.replace("{ext}", self.cube_extension)

    def path(self, stage: str, fid: str) -> str:
        return self.pattern(stage).format(fid=fid)

    def paths(self, stage: str, fids: Iterable[str]) -> list[str]:
        pattern = self.pattern(stage)
        return [pattern.format(fid=fid) for fid in fids]

    def fid_of(self, stage: str, path: str) -> str:
        """The feature whose file of `stage` is `path` (`path`'s inverse); ValueError for a
        path that is not one."""
        head, tail = self.pattern(stage).split("{fid}")
        if len(path) <= len(head) + len(tail) or not (
            path.startswith(head) and path.endswith(tail)
        ):
            raise ValueError(f"{path} is not a {stage} file ({self.pattern(stage)})")
        return path[len(head) : len(path) - len(tail)]

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
