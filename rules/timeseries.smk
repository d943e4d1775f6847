# Every feature's time series: the CSVs from the cubes and the combined table (per-feature
# mode), or the combined table from the batches' tables (batch mode, whose jobs write the CSVs).
rule timeseries:
    input:
        unpack(timeseries_input),
    output:
        tables=per_feature("timeseries"),
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
    script:
        "../scripts/timeseries.py"
