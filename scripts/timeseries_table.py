"""Rule `timeseries_table`: every feature's time series in one Parquet table, from the
per-feature CSVs (per-feature mode) or the batches' tables (batch mode)."""

from sitsflow.core.atomic import atomic_path
from sitsflow.core.logs import job_logging
from sitsflow.outputs.timeseries import combine_timeseries

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "timeseries_table") as log:
    table = combine_timeseries(smk.input.tables, smk.input.batch_tables)
    with atomic_path(smk.output.table) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    log.info("wrote %s: %d rows, %d features", smk.output.table, len(table), table["id"].nunique())
