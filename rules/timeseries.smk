# Each feature's time-series CSV from its own cube (per-feature mode; in batch mode the batch
# jobs write them), then every feature's rows in one Parquet table, rebuilt from the per-feature
# CSVs or the batches' tables: a new or changed feature rewrites its own CSV only.
if not BATCHES:

    rule timeseries:
        input:
            cube=cube_of,
        output:
            table=LAYOUT.pattern("timeseries"),
        log:
            LAYOUT.log_pattern("timeseries"),
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            **STAGE_SETTINGS.rule_params("timeseries"),
        script:
            "../scripts/timeseries.py"


rule timeseries_table:
    input:
        unpack(timeseries_input),
    output:
        table=layout.TIMESERIES_TABLE,
    log:
        layout.RUN_LOG.format(rule="timeseries_table"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/timeseries_table.py"
