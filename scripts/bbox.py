"""Rule `bbox`: the feature's buffered geometry, search bbox and cube grid."""

import json

from shapely import wkt

from sitsflow.aoi import make_aoi_record
from sitsflow.atomic import atomic_write_text
from sitsflow.features import Feature
from sitsflow.logs import job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"bbox {fid}") as log:
    grid = smk.params.grid
    record = make_aoi_record(
        Feature(fid, wkt.loads(smk.params.wkt)),
        buffer_m=grid["buffer_m"],
        crs=grid["crs"],
        resolution=grid["resolution"],
        mode=grid["mode"],
        patch_size=grid["patch_size"],
        max_pixels=grid["max_pixels"],
    )
    log.info("grid %s", record["properties"]["grid"])
    atomic_write_text(smk.output[0], json.dumps(record, indent=1))
