# Batch mode (config `batch_size`; sitsflow/workflow/batch.py): one `batch` job runs up to
# `batch_size` features of one search group through bbox, items, cube, quicklook and time series
# and writes the same per-feature files and logs as the per-feature jobs. Snakemake tracks each batch's
# manifest (with its features' summary rows) and time-series table; the batch job skips
# features that are up to date. The run-wide rules then read the batches (rules/common.smk).


rule batch:
    input:
        batch_group_search,
    output:
        manifest=layout.BATCH_MANIFEST,
        timeseries=layout.BATCH_TIMESERIES,
    log:
        layout.BATCH_LOG,
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
        attributes=batch_attributes,
        settings=STAGE_SETTINGS.to_params(),
        generation=batch_generation,
    script:
        "../scripts/batch.py"
