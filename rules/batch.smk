# Batch mode (config `batch_size`; sitsflow/batch.py): one `batch` job runs `batch_size`
# features through bbox, search, cube, quicklook and time series and writes the same
# per-feature files and logs as the per-feature jobs. Snakemake tracks one manifest per batch,
# results/batches/{batch}.json; the batch job itself skips features that are up to date.
# In batch mode the Snakefile's `all` asks for the batches' manifests instead of the per-feature
# files (`unless_batched`), and the summary, time series table and overview are made from the
# batches (ruleorder below), so no per-feature job enters the DAG. With per-feature jobs
# (batch_size 0, or `auto` with few features) this file defines no rule.
import os

from snakemake.logging import logger

from sitsflow.batch import (
    FeaturePaths,
    STAGES,
    manifest_paths,
    plan_batches,
    resolve_batch_size,
)

BATCH_SIZE = resolve_batch_size(config["batch_size"], len(FEATURES))
BATCHES = plan_batches(list(FEATURES), BATCH_SIZE)


def unless_batched(paths):
    """`paths` with per-feature jobs; nothing in batch mode (the batch jobs make them)."""
    return [] if BATCHES else paths


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


if BATCHES:
    if workflow.is_main_process:
        invalidate_incomplete_batches()

    wildcard_constraints:
        batch=r"\d+",

    rule batch:
        output:
            "results/batches/{batch}.json",
        log:
            "logs/batch/{batch}.log",
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=batch_runtime,
        params:
            members=batch_members,
            settings=batch_settings(),
        script:
            "../scripts/batch.py"

    rule batch_summary:
        input:
            manifest_paths(BATCHES),
        output:
            "results/summary.csv",
        log:
            "logs/summary.log",
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            cubes=dict(zip(FEATURES, cube_paths())),
        script:
            "../scripts/batch_summary.py"

    rule batch_timeseries_table:
        input:
            manifest_paths(BATCHES),
        output:
            "results/timeseries.parquet",
        log:
            "logs/timeseries_table.log",
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            tables=timeseries_paths(),
        script:
            "../scripts/batch_timeseries_table.py"

    rule batch_overview:
        input:
            manifests=manifest_paths(BATCHES),
            summary="results/summary.csv",
        output:
            report(
                "results/overview.png",
                caption="../report/overview.rst",
                category="Overview",
            ),
        log:
            "logs/overview.log",
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            bboxes=bbox_paths(),
        script:
            "../scripts/batch_overview.py"

    ruleorder: batch_summary > summary
    ruleorder: batch_timeseries_table > timeseries_table
    ruleorder: batch_overview > overview
