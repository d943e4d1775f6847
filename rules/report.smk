# Figures and tables of `snakemake --report results/report.html` that span all features.


rule overview:
    input:
        summary=layout.SUMMARY,
    output:
        report(
            layout.OVERVIEW,
            caption="../report/overview.rst",
            category="Overview",
        ),
    log:
        layout.RUN_LOG.format(rule="overview"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cube_extension=LAYOUT.cube_extension,
    script:
        "../scripts/overview.py"


# The summary CSV itself is flagged for the report (a download), and shown as an HTML table.
rule summary_table:
    input:
        report(
            layout.SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
        ),
    output:
        report(
            layout.SUMMARY_HTML,
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        layout.RUN_LOG.format(rule="summary_table"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/summary_table.py"
