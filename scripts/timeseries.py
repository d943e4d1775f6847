"""Rule `timeseries`: the feature's time series as a long CSV (id, time, band, value, observed)."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.timeseries import feature_timeseries, is_point_feature, write_timeseries_csv
from sitsflow.write import open_cube

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"timeseries {fid}") as log:
    method = smk.params.method
    with open_cube(smk.input[0]) as cube:
        table = feature_timeseries(cube.load(), method)
        used = method if is_point_feature(cube) else "median (polygon window)"
    with atomic_path(smk.output[0]) as temporary:
        write_timeseries_csv(table, temporary)
    log.info("wrote %s: %d rows, method %s", smk.output[0], len(table), used)
