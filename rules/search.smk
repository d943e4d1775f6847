rule search:
    input:
        LAYOUT.pattern("bbox"),
    output:
        LAYOUT.pattern("search"),
    log:
        LAYOUT.log_pattern("search"),
    retries: 2
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=15,
    params:
        search=SETTINGS.search.to_params(),
    script:
        "../scripts/search.py"
