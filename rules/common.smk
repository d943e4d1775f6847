import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir)))

from sitsflow.config import check_config, normalise_config
from sitsflow.features import load_features

normalise_config(config)


validate(config, schema="../schemas/config.schema.yaml")


check_config(config)

# Feature ids are read when the workflow is parsed, so the DAG is known up front (no checkpoint).
FEATURES = {
    feature.fid: feature
    for feature in load_features(config["vector"], config["id_column"])
}


wildcard_constraints:
    fid=r"[A-Za-z0-9][A-Za-z0-9._-]*",


def cube_paths():
    return expand("results/cubes/{fid}.nc", fid=FEATURES)


def feature_wkt(wildcards):
    """The feature's own geometry: editing one feature reruns only that feature."""
    return FEATURES[wildcards.fid].wkt


def grid_params():
    return {
        "buffer_m": config["buffer_m"],
        "crs": config["crs"],
        "resolution": config["resolution"],
        "mode": config["mode"],
        "patch_size": config["patch_size"] if config["mode"] == "patch" else None,
        "max_pixels": config["max_pixels"],
    }


def search_params():
    return {
        "catalog": config["catalog"],
        "collection": config["collection"],
        "start": config["start"],
        "end": config["end"],
        "query": config["query"],
    }


def cube_params():
    return {
        "bands": config["bands"],
        "mask": config["mask"],
        "gapfill": config["gapfill"],
    }
