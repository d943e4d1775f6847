# Config, settings, features and batches, read once when the workflow is parsed; the input
# functions the rules share. Paths come from sitsflow/core/layout.py.
import sys
from pathlib import Path

from snakemake.io import report as in_report  # `report` itself reads as the directive
from snakemake.logging import logger

sys.path.insert(0, str(Path(workflow.basedir)))

from sitsflow.core.atomic import sweep_temporaries
from sitsflow.catalog.groups import plan_groups
from sitsflow.catalog.range_cache import remove_range_cache
from sitsflow.core import layout
from sitsflow.workflow.batch import (
    batch_generations,
    batch_group,
    plan_batches,
    resolve_batch_size,
)
from sitsflow.workflow.context import BatchSettings
from sitsflow.workflow.config import load_config
from sitsflow.core.features import (
    area_of_use_warning,
    load_features,
    outside_area_of_use,
)
from sitsflow.core.layout import Layout
from sitsflow.core.settings import Settings
from sitsflow.workflow.stages import (
    dataset_generation,
    search_generation,
    side_files_generation,
)

# `--config` values arrive as strings: typed by the schema, then validated (the schema's
# defaults filled in) and checked.
config.update(load_config(config, workflow.config_settings.config))
SETTINGS = Settings.from_config(config)
LAYOUT = Layout(SETTINGS.cube_extension)
# Feature ids are read when the workflow is parsed: the jobs are known before anything runs.
FEATURES = {
    feature.fid: feature
    for feature in load_features(
        SETTINGS.vector, SETTINGS.id_column, SETTINGS.attributes
    )
}
if workflow.is_main_process and (
    far := outside_area_of_use(FEATURES.values(), SETTINGS.grid.crs)
):
    logger.warning(area_of_use_warning(far, SETTINGS.grid.crs))
# Shared searches (sitsflow/catalog/groups.py): group -> member ids, searched by one job.
GROUPS = plan_groups(FEATURES.values(), SETTINGS.stac.group_degrees)
GROUP_OF = {fid: group for group, members in GROUPS.items() for fid in members}
SEARCH_GENERATION = search_generation()
# Batch mode (config `batch_size`, rules/batch.smk): batch id -> member ids, the features of
# one group cut by where they lie into cells of at most `batch_size` (sitsflow.workflow.batch);
# empty when every feature runs as its own jobs.
BATCHES = plan_batches(
    GROUPS,
    resolve_batch_size(SETTINGS.batch_size, len(FEATURES)),
    FEATURES,
    SETTINGS.stac.group_degrees,
)
# Every per-feature stage's settings: the rules' params and the batch fingerprints alike; and
# the stages the run makes (the quicklook only when drawn: config `quicklooks`).
STAGE_SETTINGS = BatchSettings.from_settings(SETTINGS, batch_mode=bool(BATCHES))
BATCH_GENERATIONS = batch_generations(
    BATCHES,
    LAYOUT,
    warn=logger.warning if workflow.is_main_process else None,
    stages=STAGE_SETTINGS.stages,
)
# `dataset: true` (rules/dataset.smk): grows when results/dataset.zarr was deleted by hand.
DATASET_GENERATION = dataset_generation(layout.DATASET_MANIFEST, layout.DATASET)


wildcard_constraints:
    fid=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    batch=r"[a-z0-9.-]+-q[0-3]*r?(-c\d\d\d\d)?",


def per_feature(stage):
    """Every feature's file of `stage` when features run as their own jobs; none in batch mode,
    where the batch jobs make them and the run-wide rules read the batches instead, nor for a
    stage the run does not make."""
    if BATCHES or stage not in STAGE_SETTINGS.stages:
        return []
    return LAYOUT.paths(stage, FEATURES)


# Per-feature mode: grows when a time-series CSV or a quicklook was deleted by hand
# (rules/timeseries.smk, rules/quicklook.smk).
TIMESERIES_GENERATION = side_files_generation(
    per_feature("cube"), per_feature("timeseries"), layout.TIMESERIES_STATE
)
QUICKLOOK_GENERATION = side_files_generation(
    per_feature("cube"), per_feature("quicklook"), layout.QUICKLOOK_STATE
)


def group_search_of(wildcards):
    """The search result of the feature's group. Ancient: another feature joining the group
    reruns the search job, which rewrites every group's file, but reruns no other cube.

    Through the checkpoint: were the search an ordinary upstream job, Snakemake would not ask
    a job downstream of a search that reruns whether its own params changed when its input is
    ancient (snakemake 9 `DAG.update_needrun` masks it), and a changed `search.end` or a
    batch's new member would go unnoticed. After the checkpoint the search is done, and each
    job is judged on its own: missing output, changed params or code.
    """
    checkpoints.search.get()
    return ancient(LAYOUT.group_search(GROUP_OF[wildcards.fid]))


def batch_group_search(wildcards):
    """The search result of the batch's group (ancient, as `group_search_of`)."""
    checkpoints.search.get()
    return ancient(LAYOUT.group_search(batch_group(wildcards.batch)))


def feature_kind(fid):
    """Report subcategory of a feature: `Points` or `Polygons` (by its geometry type)."""
    geometry_type = FEATURES[fid].geometry.geom_type
    return "Points" if geometry_type in ("Point", "MultiPoint") else "Polygons"


def quicklook_report():
    """The `quicklooks` job's output: a directory with a link to every feature's quicklook under
    its kind (`Points/p1.png`), each shown in the report with its feature's label."""
    return in_report(
        directory(layout.REPORT_QUICKLOOKS),
        patterns=["{kind}/{fid}.png"],
        caption="../report/quicklook.rst",
        category="Quicklooks",
        subcategory="{kind}",
        labels={"feature": "{fid}"},
    )


def feature_kinds():
    """Each feature's report subcategory (`feature_kind`), in the order of FEATURES."""
    return [feature_kind(fid) for fid in FEATURES]


def feature_wkt(wildcards):
    """The feature's own geometry: editing one feature reruns only that feature."""
    return FEATURES[wildcards.fid].wkt


def feature_attributes(wildcards):
    """The feature's `attributes` columns, which its cube records: editing one feature's
    label reruns only that feature's cube."""
    return FEATURES[wildcards.fid].labels


def batch_members(wildcards):
    """Feature id -> geometry (WKT) of the batch: adding or editing one reruns its batch."""
    return {fid: FEATURES[fid].wkt for fid in BATCHES[wildcards.batch]}


def batch_attributes(wildcards):
    """Feature id -> its `attributes` columns, for the batch's members."""
    return {fid: FEATURES[fid].labels for fid in BATCHES[wildcards.batch]}


def batch_generation(wildcards):
    """Grows by one when a member's file went missing after the batch ran, which reruns it."""
    return BATCH_GENERATIONS[wildcards.batch]


def batch_runtime(wildcards):
    """SLURM time limit (minutes): generous per feature, as one job runs them one by one."""
    return 10 + 2 * len(BATCHES[wildcards.batch])


def summary_input(wildcards):
    """The cubes (one job per feature) or the batch manifests holding their summary rows."""
    return {"cubes": per_feature("cube"), "manifests": LAYOUT.manifests(BATCHES)}


def timeseries_input(wildcards):
    """The cubes (one job per feature) or the batches' time-series tables."""
    return {
        "cubes": per_feature("cube"),
        "batch_tables": LAYOUT.batch_timeseries(BATCHES),
    }


def dataset_input(wildcards):
    """The cubes (one job per feature) or the batch manifests (their cubes are not outputs)."""
    return {"cubes": per_feature("cube"), "manifests": LAYOUT.manifests(BATCHES)}
