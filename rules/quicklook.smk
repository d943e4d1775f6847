# Every feature's quicklook, in one job over all the cubes (per-feature mode; in batch mode each
# batch job draws its own features' quicklooks, when config `quicklooks` asks for them).
if per_feature("quicklook"):

    rule quicklooks:
        input:
            per_feature("cube"),
        output:
            quicklook_outputs(),
        log:
            layout.RUN_LOG.format(rule="quicklooks"),
        conda:
            "../envs/sitsflow.yaml"
        # the last job of a run: it draws in as many processes as the run has cores
        threads: workflow.cores
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/quicklooks.py"
