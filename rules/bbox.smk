rule bbox:
    output:
        "results/bbox/{fid}.geojson",
    log:
        "logs/bbox/{fid}.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        wkt=feature_wkt,
        grid=grid_params(),
    script:
        "../scripts/bbox.py"
