rule cube:
    input:
        bbox="results/bbox/{fid}.geojson",
        stac_items="results/items/{fid}.json",
    output:
        "results/cubes/{fid}.nc",
    params:
        cube=cube_params(),
    log:
        "logs/cube/{fid}.log",
    retries: 1
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/sitsflow.yaml"
    script:
        "../scripts/cube.py"
