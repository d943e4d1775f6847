rule summary:
    input:
        cube_paths(),
    output:
        "results/summary.csv",
    log:
        "logs/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/sitsflow.yaml"
    script:
        "../scripts/summary.py"
