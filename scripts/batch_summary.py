"""Rule `batch_summary`: results/summary.csv in batch mode, from the batches' summary rows."""

import pandas as pd

from sitsflow.logs import job_logging
from sitsflow.outputs.summary import COLUMNS, write_summary
from sitsflow.workflow.batch import read_summary_rows

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "summary") as log:
    table = pd.DataFrame(read_summary_rows(smk.input), columns=COLUMNS)
    write_summary(table, smk.output[0])
    log.info("%d features: %s", len(table), table["status"].value_counts().to_dict())
