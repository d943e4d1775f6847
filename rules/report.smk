# Figures and tables of `snakemake --report results/report.html` that span all features.


rule overview:
    input:
        summary="results/summary.csv",
        bboxes=bbox_paths(),
    output:
        report(
            "results/overview.png",
            caption="../report/overview.rst",
            category="Overview",
        ),
    log:
        "logs/overview.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/overview.py"


# The summary CSV itself is flagged for the report (a download), and shown as an HTML table.
rule summary_table:
    input:
        report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    output:
        report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "logs/summary_table.log",
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/summary_table.py"
