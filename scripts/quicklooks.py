"""Rule `quicklooks`: every feature's quicklook PNG (thumbnails and time series) from its cube,
drawn when stale, and linked into the report's directory."""

from sitsflow.core.logs import exit_job, job_logging
from sitsflow.workflow.stages import refresh_quicklooks

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "quicklooks") as log:
    pairs = list(zip(smk.input.cubes, smk.params.quicklooks, strict=True))
    drawn = refresh_quicklooks(
        pairs, smk.params.kinds, smk.output.report, smk.threads, smk.params.generation
    )
    log.info("%d quicklooks in the report (%s), %d drawn", len(pairs), smk.output.report, drawn)

exit_job()
