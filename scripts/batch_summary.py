"""Rule `batch_summary`: results/summary.csv in batch mode, one row per feature of every batch."""

from sitsflow.logs import job_logging
from sitsflow.summary import summarise_run, write_summary

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary") as log:
    table = summarise_run(dict(smk.params.cubes))
    write_summary(table, smk.output[0])
    log.info("%d features: %s", len(table), table["status"].value_counts().to_dict())
