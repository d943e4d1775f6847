from snakemake.logging import logger

from sitsflow.atomic import sweep_temporaries
from sitsflow.outputs.summary import summarise_failed_run


rule summary:
    input:
        cube_paths(),
    output:
        "results/summary.csv",
    log:
        "logs/summary.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/summary.py"
