"""Rule `quicklooks`: every feature's quicklook PNG (thumbnails and time series) from its cube."""

from pathlib import Path

from sitsflow.core.logs import job_logging
from sitsflow.workflow.stages import render_quicklook_files

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "quicklooks") as log:
    render_quicklook_files(list(zip(smk.input, smk.output, strict=True)), smk.threads)
    log.info("wrote %d quicklooks in %s", len(smk.output), Path(smk.output[0]).parent)
