"""Rule `cube`: the feature's items from its group's search result, then its cube: load, mask,
gap-fill and write (netCDF or Zarr)."""

from sitsflow.core.logs import job_logging
from sitsflow.core.settings import CubeSettings, SearchSettings
from sitsflow.workflow.stages import build_cube, feature_items

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"cube {smk.wildcards.fid}"):
    search = SearchSettings.from_config(smk.params.search)
    feature_items(smk.input.group, smk.input.bbox, search, smk.output.stac_items)
    settings = CubeSettings.from_config(smk.params.cube)
    # netCDF or Zarr, by the output path (config `format`)
    build_cube(
        smk.input.bbox,
        smk.output.stac_items,
        settings,
        smk.output.cube,
        attributes=smk.params.attributes,
    )
