# One row per feature, from the cubes or the batch manifests (sitsflow/outputs/summary.py).
rule summary:
    input:
        unpack(summary_input),
    output:
        layout.SUMMARY,
    log:
        layout.RUN_LOG.format(rule="summary"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/summary.py"
