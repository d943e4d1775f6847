"""Rule `cube`: the feature's items from its group's search result, then its cube: load, mask,
gap-fill and write (netCDF or Zarr)."""

from pathlib import Path

from sitsflow.core.layout import Layout
from sitsflow.core.logs import job_logging
from sitsflow.core.settings import CubeSettings, RangeCacheSettings, SearchSettings
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
        # the run's disk cache of byte ranges: from the config, not params (it changes no value)
        range_cache=RangeCacheSettings.from_config(smk.config),
    )
    # its quicklook showed the old cube: the `quicklooks` job draws it again, if it is drawn
    # at all (config `quicklooks`)
    Path(Layout().path("quicklook", smk.wildcards.fid)).unlink(missing_ok=True)
