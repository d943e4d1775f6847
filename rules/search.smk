rule search:
    input:
        "results/bbox/{fid}.geojson",
    output:
        "results/items/{fid}.json",
    params:
        search=search_params(),
    log:
        "logs/search/{fid}.log",
    retries: 2
    threads: 1
    resources:
        mem_mb=500,
        runtime=15,
    conda:
        "../envs/sitsflow.yaml"
    script:
        "../scripts/search.py"
