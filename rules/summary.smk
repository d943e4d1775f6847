# The run's summary, in one job: one row per feature (results/summary.csv, from the cubes or
# the batch manifests: sitsflow/outputs/summary.py), the same rows as the report's HTML table,
# and the overview map of all features coloured by their valid fraction.
rule summary:
    input:
        unpack(summary_input),
    output:
        table=report(
            layout.SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
        ),
        html=report(
            layout.SUMMARY_HTML,
            caption="../report/summary.rst",
            category="Summary",
        ),
        overview=report(
            layout.OVERVIEW,
            caption="../report/overview.rst",
            category="Overview",
        ),
    log:
        layout.RUN_LOG.format(rule="summary"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cube_extension=LAYOUT.cube_extension,
    script:
        "../scripts/summary.py"
