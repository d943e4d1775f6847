"""Rule `cube`: load, mask, gap-fill and write the feature's cube (netCDF or Zarr)."""

from sitsflow.logs import job_logging
from sitsflow.workflow.settings import CubeSettings
from sitsflow.workflow.stages import build_cube

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"cube {smk.wildcards.fid}"):
    # netCDF or Zarr, by the output path (config `format`)
    settings = CubeSettings.from_config(smk.params.cube)
    build_cube(smk.input.bbox, smk.input.stac_items, settings, smk.output[0])
