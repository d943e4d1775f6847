"""Rule `summary`: one CSV row per feature from the cubes' attributes."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.summary import summarise

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary") as log:
    table = summarise(list(smk.input))
    with atomic_path(smk.output[0]) as temporary:
        table.to_csv(temporary, index=False)
    log.info("%d features: %s", len(table), table["status"].value_counts().to_dict())
