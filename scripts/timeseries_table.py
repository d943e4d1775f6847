"""Rule `timeseries_table`: every feature's time series in one Parquet file, from the
per-feature CSVs or the batches' tables."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.outputs.timeseries import combine_timeseries

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "timeseries_table") as log:
    tables, batch_tables = list(smk.input.tables), list(smk.input.batch_tables)
    table = combine_timeseries(tables, batch_tables)
    with atomic_path(smk.output[0]) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    log.info(
        "wrote %s: %d rows from %d CSVs and %d batch tables",
        smk.output[0],
        len(table),
        len(tables),
        len(batch_tables),
    )
