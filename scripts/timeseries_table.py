"""Rule `timeseries_table`: every feature's time series in one Parquet file."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.outputs.timeseries import combine_timeseries

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "timeseries_table") as log:
    table = combine_timeseries(list(smk.input))
    with atomic_path(smk.output[0]) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    log.info("wrote %s: %d rows from %d CSVs", smk.output[0], len(table), len(smk.input))
