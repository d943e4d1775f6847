"""Rule `bbox`: the feature's buffered geometry, search bbox and cube grid."""

from shapely import wkt

from sitsflow.core.features import Feature
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.core.settings import GridSettings
from sitsflow.workflow.batch import forget_job_stages, record_job_stages
from sitsflow.workflow.stages import make_bbox

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"bbox {fid}"):
    forget_job_stages(fid, ["bbox"])
    grid = GridSettings.from_config(smk.params.grid)
    make_bbox(Feature(fid, wkt.loads(smk.params.wkt)), grid, smk.output[0])
    # as a batch records it: a run grown into batch mode finds the bbox current
    record_job_stages(fid, ["bbox"], {"grid": smk.params.grid}, wkt=smk.params.wkt)

exit_job()
