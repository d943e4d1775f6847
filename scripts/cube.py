"""Rule `cube`: the feature's items from its group's search result, then its cube: load, mask,
gap-fill and write (netCDF or Zarr)."""

from pathlib import Path

from sitsflow.core.layout import Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.core.settings import CubeSettings, RangeCacheSettings, SearchSettings
from sitsflow.workflow.batch import forget_job_stages, record_job_stages
from sitsflow.workflow.stages import build_cube, feature_items, group_members

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"cube {fid}") as log:
    forget_job_stages(fid, ["items", "cube"])
    search = SearchSettings.from_config(smk.params.search)
    feature_items(smk.input.group, smk.input.bbox, search, smk.output.stac_items)
    settings = CubeSettings.from_config(smk.params.cube)
    # the run's disk cache of byte ranges: from the config, not params (it changes no value);
    # a feature alone in its search group keeps nothing there, as no other job reads its tiles
    # (writing them cost 24 spread points a quarter of their run's CPU)
    range_cache = RangeCacheSettings.from_config(smk.config)
    if group_members(smk.input.group) == 1:
        log.info("range cache: not used (the feature is alone in its search group)")
        range_cache = None
    # netCDF or Zarr, by the output path (config `format`)
    build_cube(
        smk.input.bbox,
        smk.output.stac_items,
        settings,
        smk.output.cube,
        attributes=smk.params.attributes,
        range_cache=range_cache,
    )
    # its quicklook showed the old cube: the `quicklooks` job draws it again, if it is drawn
    # at all (config `quicklooks`)
    Path(Layout().path("quicklook", fid)).unlink(missing_ok=True)
    # as a batch records them: a run grown into batch mode finds the items and cube current
    params = {"search": smk.params.search, "cube": smk.params.cube}
    record_job_stages(fid, ["items", "cube"], params, attributes=smk.params.attributes)

exit_job()
