rule bbox:
    output:
        "results/bbox/{fid}.geojson",
    params:
        wkt=feature_wkt,
        grid=grid_params(),
    log:
        "logs/bbox/{fid}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/sitsflow.yaml"
    script:
        "../scripts/bbox.py"
