"""Rule `timeseries`: every feature's time-series CSV from its cube (per-feature mode), and all
of them in one Parquet table, from the CSVs or from the batches' tables (batch mode)."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.outputs.timeseries import combine_timeseries
from sitsflow.workflow.settings import TimeseriesSettings
from sitsflow.workflow.stages import write_timeseries_file

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "timeseries") as log:
    settings = TimeseriesSettings.from_config(smk.params.timeseries)
    csvs = list(smk.output.tables)
    for cube, csv in zip(smk.input.cubes, csvs, strict=True):
        write_timeseries_file(cube, settings, csv)
    table = combine_timeseries(csvs, list(smk.input.batch_tables))
    with atomic_path(smk.output.table) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    log.info("wrote %s: %d rows, %d features", smk.output.table, len(table), table["id"].nunique())
