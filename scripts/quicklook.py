"""Rule `quicklook`: the feature's quicklook PNG (thumbnails and window time series)."""

from sitsflow.atomic import atomic_path
from sitsflow.logs import job_logging
from sitsflow.quicklook import render_quicklook
from sitsflow.write import open_cube

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"quicklook {fid}") as log:
    with open_cube(smk.input[0]) as cube, atomic_path(smk.output[0]) as temporary:
        render_quicklook(cube.load(), temporary)
    log.info("wrote %s from %s (%d time steps)", smk.output[0], smk.input[0], cube.sizes["time"])
