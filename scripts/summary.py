"""Rule `summary`: one CSV row per feature, from the cubes' attributes or the batch manifests
(sitsflow/outputs/summary.py)."""

from sitsflow.logs import job_logging
from sitsflow.outputs.summary import summarise, write_summary

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary") as log:
    table = summarise(list(smk.input.cubes), list(smk.input.manifests))
    write_summary(table, smk.output[0])
    log.info("%d features: %s", len(table), table["status"].value_counts().to_dict())
