rule timeseries:
    input:
        cube_of,
    output:
        LAYOUT.pattern("timeseries"),
    log:
        LAYOUT.log_pattern("timeseries"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        timeseries=SETTINGS.timeseries.to_params(),
    script:
        "../scripts/timeseries.py"


# Every feature's time series in one table, from the per-feature CSVs or the batches' tables.
rule timeseries_table:
    input:
        unpack(timeseries_table_input),
    output:
        layout.TIMESERIES_TABLE,
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
