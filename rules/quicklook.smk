rule quicklook:
    input:
        cube_of,
    output:
        report(
            LAYOUT.pattern("quicklook"),
            caption="../report/quicklook.rst",
            category="Quicklooks",
            subcategory=feature_kind,
            labels={"feature": "{fid}"},
        ),
    log:
        LAYOUT.log_pattern("quicklook"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/quicklook.py"
