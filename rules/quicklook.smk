rule quicklook:
    input:
        cube_of,
    output:
        report(
            "results/quicklooks/{fid}.png",
            caption="../report/quicklook.rst",
            category="Quicklooks",
            subcategory=feature_kind,
            labels={"feature": "{fid}"},
        ),
    log:
        "logs/quicklook/{fid}.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/quicklook.py"
