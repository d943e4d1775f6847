"""Rule `timeseries`: every feature's time series in one Parquet table, from the cubes
(per-feature mode: each CSV rewritten only when stale) or the batches' tables (batch mode)."""

import pandas as pd

from sitsflow.core.atomic import atomic_path
from sitsflow.core.layout import Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.core.settings import TimeseriesSettings
from sitsflow.outputs.timeseries import combine_tables
from sitsflow.workflow.batch import record_job_stages
from sitsflow.workflow.stages import refresh_timeseries

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "timeseries") as log:
    settings = TimeseriesSettings.from_config(smk.params.timeseries)
    pairs = list(zip(smk.input.cubes, smk.params.tables, strict=True))
    tables = refresh_timeseries(pairs, settings, smk.params.generation) if pairs else []
    # per-feature mode: each CSV is current now; recorded as a batch would record it
    for csv in smk.params.tables:
        fid = Layout().fid_of("timeseries", csv)
        record_job_stages(fid, ["timeseries"], {"timeseries": smk.params.timeseries})
    tables += [pd.read_parquet(path) for path in smk.input.batch_tables]
    table = combine_tables(tables)
    with atomic_path(smk.output.table) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    log.info("wrote %s: %d rows, %d features", smk.output.table, len(table), table["id"].nunique())

exit_job()
