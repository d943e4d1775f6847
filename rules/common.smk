import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir)))

from sitsflow.workflow.config import check_config, normalise_config
from sitsflow.workflow.features import load_features

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


CUBE_EXTENSION = {"netcdf": "nc", "zarr": "zarr"}[config["format"]]


def cube_output():
    """The cube rule's output: a netCDF file, or a Zarr store (a directory), by `format`."""
    pattern = f"results/cubes/{{fid}}.{CUBE_EXTENSION}"
    return directory(pattern) if CUBE_EXTENSION == "zarr" else pattern


def cube_paths():
    return expand("results/cubes/{fid}.{ext}", fid=FEATURES, ext=CUBE_EXTENSION)


def cube_of(wildcards):
    """The cube of the feature `{fid}` (input of the quicklook and timeseries rules)."""
    return f"results/cubes/{wildcards.fid}.{CUBE_EXTENSION}"


def quicklook_paths():
    return expand("results/quicklooks/{fid}.png", fid=FEATURES)


def timeseries_paths():
    return expand("results/timeseries/{fid}.csv", fid=FEATURES)


def bbox_paths():
    return expand("results/bbox/{fid}.geojson", fid=FEATURES)


def feature_kind(wildcards):
    """Report subcategory of a feature: `Points` or `Polygons` (by its geometry type)."""
    geometry_type = FEATURES[wildcards.fid].geometry.geom_type
    return "Points" if geometry_type in ("Point", "MultiPoint") else "Polygons"


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
        "filter": config["filter"],
    }


def cube_params():
    return {
        "bands": config["bands"],
        "mask": config["mask"],
        "gapfill": config["gapfill"],
        "provider": config["provider"],
        "assets": config["assets"],
        "on_missing_asset": config["on_missing_asset"],
        "s3_access": config["s3_access"],
        "s3_endpoint": config["s3_endpoint"],
        "read_overviews": config["read_overviews"],
        "indices": config["indices"],
    }
