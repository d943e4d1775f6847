rule timeseries:
    input:
        cube_of,
    output:
        "results/timeseries/{fid}.csv",
    log:
        "logs/timeseries/{fid}.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        method=config["timeseries"]["method"],
    script:
        "../scripts/timeseries.py"


rule timeseries_table:
    input:
        timeseries_paths(),
    output:
        "results/timeseries.parquet",
    log:
        "logs/timeseries_table.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/timeseries_table.py"
