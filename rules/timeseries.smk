# Every feature's time series in one Parquet table, rebuilt from the cubes (per-feature mode,
# where this job also writes each feature's CSV when it is stale: missing, older than its cube or
# made with other settings) or from the batches' tables (batch mode, whose jobs write the CSVs).
# The CSVs are not outputs of this job: Snakemake would remove every one before it runs.
rule timeseries:
    input:
        unpack(timeseries_input),
    output:
        table=layout.TIMESERIES_TABLE,
    log:
        layout.RUN_LOG.format(rule="timeseries"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **STAGE_SETTINGS.rule_params("timeseries"),
        tables=per_feature("timeseries"),
        # grows when a CSV was deleted by hand (sitsflow.workflow.stages.side_files_generation)
        generation=TIMESERIES_GENERATION,
    script:
        "../scripts/timeseries.py"
