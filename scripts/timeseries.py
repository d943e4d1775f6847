"""Rule `timeseries`: the feature's time-series CSV from its cube (per-feature mode)."""

from sitsflow.core.logs import job_logging
from sitsflow.core.settings import TimeseriesSettings
from sitsflow.workflow.stages import write_timeseries_file

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"timeseries {smk.wildcards.fid}"):
    settings = TimeseriesSettings.from_config(smk.params.timeseries)
    write_timeseries_file(smk.input.cube, settings, smk.output.table)
