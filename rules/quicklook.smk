# Each feature's quicklook from its own cube (per-feature mode; in batch mode each batch job
# draws its own features' quicklooks): a new or changed feature redraws its quicklook only.
if not BATCHES:

    rule quicklook:
        input:
            cube=cube_of,
        output:
            quicklook=report(
                LAYOUT.pattern("quicklook"),
                caption="../report/quicklook.rst",
                category="Quicklooks",
                subcategory=feature_kind,
                labels=feature_label,
            ),
        log:
            LAYOUT.log_pattern("quicklook"),
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/quicklook.py"
