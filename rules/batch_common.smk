# Batch mode planning and input functions (rules: rules/batch.smk, logic: sitsflow/workflow/batch.py).
import os

from snakemake.logging import logger

from sitsflow.workflow.batch import (
    FeaturePaths,
    STAGES,
    manifest_paths,
    plan_batches,
    resolve_batch_size,
    timeseries_table_paths,
)

BATCH_SIZE = resolve_batch_size(config["batch_size"], len(FEATURES))
BATCHES = plan_batches(list(FEATURES), BATCH_SIZE)


def unless_batched(paths_of_features):
    """The files `paths_of_features()` lists with per-feature jobs; none in batch mode (the
    batch jobs make them). A function, so that 10 000 paths are not listed for nothing.
    """
    return [] if BATCHES else paths_of_features()


def batch_members(wildcards):
    """Feature id -> geometry (WKT) of the batch: adding or editing one reruns its batch."""
    return {fid: FEATURES[fid].wkt for fid in BATCHES[wildcards.batch]}


def batch_settings():
    """Every stage's config values: a change reruns the batches, which redo affected stages."""
    return {
        "grid": grid_params(),
        "search": search_params(),
        "cube": cube_params(),
        "timeseries_method": config["timeseries"]["method"],
        "cube_extension": CUBE_EXTENSION,
    }


def batch_runtime(wildcards):
    """SLURM time limit (minutes): generous per feature, as one job runs them one by one."""
    return 10 + 2 * len(BATCHES[wildcards.batch])


def batch_is_incomplete(members):
    """True if a member's file is missing (deleted by hand): the batch must run again."""
    return any(
        not os.path.exists(FeaturePaths(fid, CUBE_EXTENSION).output(stage))
        for fid in members
        for stage in STAGES
    )


def invalidate_incomplete_batches():
    """Remove the manifest of each batch that lost a member's file, so that it is redone.

    Snakemake only sees the manifests; the batch job then redoes just the missing files.
    """
    for batch, manifest in zip(BATCHES, manifest_paths(BATCHES)):
        if os.path.exists(manifest) and batch_is_incomplete(BATCHES[batch]):
            logger.warning(
                f"batch {batch}: a feature's file is missing, the batch is redone"
            )
            os.remove(manifest)
