# Batch mode (config `batch_size`; sitsflow/workflow/batch.py): one `batch` job runs `batch_size`
# features through bbox, search, cube, quicklook and time series and writes the same
# per-feature files and logs as the per-feature jobs. Snakemake tracks each batch's manifest
# (with its features' summary rows) and time-series table; the batch job skips features that
# are up to date.
# In batch mode the Snakefile's `all` asks for the batches' manifests instead of the per-feature
# files (`unless_batched`), and the summary, time series table and overview are made from the
# batches (ruleorder below), so no per-feature job enters the DAG. With per-feature jobs
# (batch_size 0, or `auto` with few features) this file defines no rule.


include: "batch_common.smk"


if BATCHES:
    if workflow.is_main_process:
        invalidate_incomplete_batches()

    wildcard_constraints:
        batch=r"\d+",

    rule batch:
        output:
            manifest="results/batches/{batch}.json",
            timeseries="results/batches/{batch}.timeseries.parquet",
        log:
            "logs/batch/{batch}.log",
        # Like the search and cube jobs' retries: a retry redoes only the failed features.
        retries: 2
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
        script:
            "../scripts/batch_summary.py"

    rule batch_timeseries_table:
        input:
            timeseries_table_paths(BATCHES),
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
