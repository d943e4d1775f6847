"""Rule `summary`: one CSV row per feature, from the cubes' attributes or the batch manifests
(sitsflow/outputs/summary.py); the same rows as an HTML table for the Snakemake report; the
overview map of all features."""

from sitsflow.core.atomic import atomic_path, atomic_write_text
from sitsflow.core.layout import Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.outputs.overview import overview_table, render_overview
from sitsflow.outputs.report import summary_html
from sitsflow.outputs.summary import read_summary, summarise, write_summary

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary") as log:
    table = summarise(list(smk.input.cubes), list(smk.input.manifests))
    write_summary(table, smk.output.table)
    log.info("%d features: %s", len(table), table["status"].value_counts().to_dict())
    # the HTML table shows the CSV as a user opens it (ids as text, empty cells empty)
    atomic_write_text(smk.output.html, summary_html(read_summary(smk.output.table)))
    features = overview_table(smk.output.table, Layout(smk.params.cube_extension))
    with atomic_path(smk.output.overview) as temporary:
        render_overview(features, temporary)
    log.info("wrote %s and %s: %d features", smk.output.html, smk.output.overview, len(features))

exit_job()
