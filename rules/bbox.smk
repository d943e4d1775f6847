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
        **STAGE_SETTINGS.rule_params("bbox"),
        wkt=feature_wkt,
    script:
        "../scripts/bbox.py"
