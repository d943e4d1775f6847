# sitsflow: one analysis-ready Sentinel-2 time-series cube per feature of a vector file.
#   vector -> results/bbox/{fid}.geojson -> results/items/{fid}.json -> results/cubes/{fid}.nc
#          -> results/summary.csv
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/bbox.smk"
include: "rules/search.smk"
include: "rules/cube.smk"
include: "rules/summary.smk"


rule all:
    default_target: True
    input:
        cubes=cube_paths(),
        summary="results/summary.csv",
    localrule: True
