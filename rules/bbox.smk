rule bbox:
    output:
        LAYOUT.pattern("bbox"),
    log:
        LAYOUT.log_pattern("bbox"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        wkt=feature_wkt,
        grid=SETTINGS.grid.to_params(),
    script:
        "../scripts/bbox.py"
