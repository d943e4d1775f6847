"""Rule `cube`: load, mask, gap-fill and write the feature's cube (netCDF or Zarr)."""

import json

from sitsflow.cube import CubeSettings, make_cube
from sitsflow.logs import job_logging
from sitsflow.search import read_item_collection
from sitsflow.write import write_cube

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"cube {fid}") as log:
    with open(smk.input.bbox) as handle:
        record = json.load(handle)
    items, search_info = read_item_collection(smk.input.stac_items)
    settings = CubeSettings.from_config(smk.params.cube)
    cube = make_cube(record, items, search_info, settings)
    write_cube(cube, smk.output[0])  # netCDF or Zarr, by the output path (config `format`)
    log.info("wrote %s (%d time steps)", smk.output[0], cube.sizes["time"])
