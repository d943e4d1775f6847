"""Rule `timeseries`: the feature's time series as a long CSV (id, time, band, value, observed)."""

from sitsflow.logs import job_logging
from sitsflow.workflow.settings import TimeseriesSettings
from sitsflow.workflow.stages import write_timeseries_file

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"timeseries {smk.wildcards.fid}"):
    settings = TimeseriesSettings.from_config(smk.params.timeseries)
    write_timeseries_file(smk.input[0], settings, smk.output[0])
