rule cube:
    input:
        bbox="results/bbox/{fid}.geojson",
        stac_items="results/items/{fid}.json",
    output:
        cube_output(),
    log:
        "logs/cube/{fid}.log",
    retries: 1
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cube=cube_params(),
    script:
        "../scripts/cube.py"
