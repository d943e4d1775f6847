# Every feature's quicklook, in one job over all the cubes (per-feature mode; in batch mode each
# batch job draws its own features' quicklooks, when config `quicklooks` asks for them). The job
# draws only the stale ones (missing or older than their cube) and links them all into one
# directory for the report. The PNGs are not outputs of this job: Snakemake would remove every
# one before it runs.
if per_feature("quicklook"):

    rule quicklooks:
        input:
            cubes=per_feature("cube"),
        output:
            report=quicklook_report(),
        log:
            layout.RUN_LOG.format(rule="quicklooks"),
        conda:
            "../envs/sitsflow.yaml"
        # the last job of a run: it draws in as many processes as the run has cores
        threads: workflow.cores
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            quicklooks=per_feature("quicklook"),
            kinds=feature_kinds(),
            # grows when a quicklook was deleted by hand (rules/common.smk)
            generation=QUICKLOOK_GENERATION,
        script:
            "../scripts/quicklooks.py"
