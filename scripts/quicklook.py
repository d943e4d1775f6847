"""Rule `quicklook`: the feature's quicklook PNG (thumbnails and time series) from its cube."""

from sitsflow.core.logs import job_logging
from sitsflow.workflow.stages import render_quicklook_file

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"quicklook {smk.wildcards.fid}"):
    render_quicklook_file(smk.input.cube, smk.output.quicklook)
