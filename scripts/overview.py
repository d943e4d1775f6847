"""Rule `overview`: a lon/lat map of all features coloured by their valid fraction."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.outputs.quicklook import overview_table, render_overview
from sitsflow.workflow.layout import Layout

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "overview") as log:
    features = overview_table(smk.input.summary, Layout(smk.params.cube_extension))
    with atomic_path(smk.output[0]) as temporary:
        render_overview(features, temporary)
    log.info("wrote %s: %d features", smk.output[0], len(features))
