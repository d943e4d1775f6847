# sitsflow: one analysis-ready Sentinel-2 time-series cube per feature of a vector file.
#   vector -> results/bbox/{fid}.geojson -> results/items/{fid}.json -> results/cubes/{fid}.nc
#          -> results/summary.csv
#   per feature also results/quicklooks/{fid}.png and results/timeseries/{fid}.csv; report:
#   snakemake --report results/report.html
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/bbox.smk"
include: "rules/search.smk"
include: "rules/cube.smk"
include: "rules/summary.smk"
include: "rules/quicklook.smk"
include: "rules/timeseries.smk"
include: "rules/report.smk"
include: "rules/batch.smk"


rule all:
    default_target: True
    input:
        # Per-feature files: per-feature jobs make them; in batch mode (config `batch_size`,
        # rules/batch.smk) the `batch` jobs do, and `all` asks for the batches instead.
        cubes=unless_batched(cube_paths),
        summary="results/summary.csv",
        quicklooks=unless_batched(quicklook_paths),
        timeseries=unless_batched(timeseries_paths),
        batches=manifest_paths(BATCHES),
        timeseries_table="results/timeseries.parquet",
        overview="results/overview.png",
        summary_table="results/summary.html",
    localrule: True


# Once every job has finished: remove temporary files that killed jobs left in results/.
onsuccess:
    sweep_temporaries()


# A failed job (keep-going lets the other features finish) stops the `summary` rule; write
# results/summary.csv anyway, with each failed feature's error (sitsflow/outputs/summary.py).
onerror:
    logger.error(summarise_failed_run(dict(zip(FEATURES, cube_paths()))))
