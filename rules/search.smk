rule search:
    input:
        "results/bbox/{fid}.geojson",
    output:
        "results/items/{fid}.json",
    log:
        "logs/search/{fid}.log",
    retries: 2
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=15,
    params:
        search=search_params(),
    script:
        "../scripts/search.py"
