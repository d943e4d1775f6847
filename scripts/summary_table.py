"""Rule `summary_table`: `results/summary.csv` as an HTML table for the Snakemake report."""

import pandas as pd

from sitsflow.atomic import atomic_write_text
from sitsflow.logs import job_logging
from sitsflow.outputs.report import summary_html

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary_table") as log:
    summary = pd.read_csv(smk.input[0], dtype={"feature_id": str}, keep_default_na=False)
    atomic_write_text(smk.output[0], summary_html(summary))
    log.info("wrote %s: %d rows", smk.output[0], len(summary))
