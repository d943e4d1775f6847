# sitsflow: one analysis-ready Sentinel-2 time-series cube per feature of a vector file.
#   vector -> results/bbox/{fid}.geojson; results/searches/{group}.json (one search per group
#   of nearby features) -> results/items/{fid}.json + results/cubes/{fid}.nc
#   -> results/quicklooks/{fid}.png, results/timeseries/{fid}.csv, results/summary.csv; report:
#   snakemake --report results/report.html
# Stages: sitsflow/core/pipeline.py; paths: sitsflow/core/layout.py.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/bbox.smk"
include: "rules/search.smk"
include: "rules/cube.smk"
include: "rules/quicklook.smk"
include: "rules/timeseries.smk"
include: "rules/batch.smk"
include: "rules/summary.smk"
include: "rules/dataset.smk"
include: "rules/plan.smk"


rule all:
    default_target: True
    input:
        # Per-feature mode: a `bbox` and a `cube` job (items and cube) per feature, then one
        # `quicklooks` job and one `timeseries` job (each feature's CSV when stale, and the
        # Parquet table) over all features. In batch mode (config
        # `batch_size`) the `batch` jobs make every per-feature file, and `all` asks for the
        # batches instead.
        cubes=per_feature("cube"),
        quicklooks=[layout.REPORT_QUICKLOOKS] if per_feature("quicklook") else [],
        batches=LAYOUT.manifests(BATCHES),
        summary=layout.SUMMARY,
        timeseries_table=layout.TIMESERIES_TABLE,
        # with the summary: its HTML table and the overview map (rules/summary.smk)
        summary_table=layout.SUMMARY_HTML,
        overview=layout.OVERVIEW,
        # `dataset: true`: every cube stacked in results/dataset.zarr (rules/dataset.smk)
        dataset=[layout.DATASET_MANIFEST] if SETTINGS.dataset else [],
    localrule: True


# The run-wide cache of fetched byte ranges (config `range_cache`) holds only what this run
# fetched: one left by an interrupted run goes first.
onstart:
    remove_range_cache(SETTINGS.range_cache.directory)


# Once every job has finished: remove temporary files that killed jobs left in results/, and
# the range cache.
onsuccess:
    sweep_temporaries()
    remove_range_cache(SETTINGS.range_cache.directory)


# A failed job (keep-going lets the other features finish) stops the `summary` rule; write
# results/summary.csv anyway, with each failed feature's error (sitsflow/outputs/summary.py).
onerror:
    # imported here: xarray, rioxarray and dask would otherwise load with every parse (0.3 s)
    from sitsflow.outputs.summary import summarise_failed_run

    remove_range_cache(SETTINGS.range_cache.directory)
    logger.error(summarise_failed_run(list(FEATURES), LAYOUT))
