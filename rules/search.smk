# One search per group of nearby features (sitsflow/catalog/groups.py), in one job: the job
# keeps the run's requests to the STAC API under `stac.max_requests_per_s`.
# A checkpoint: Snakemake judges the jobs downstream after the search ran (rules/common.smk,
# `group_search_of`), so a rerun of the search reruns only the cubes that need it.
checkpoint search:
    input:
        SETTINGS.vector,
    output:
        groups=LAYOUT.group_searches(GROUPS),
        index=layout.SEARCH_INDEX,
    log:
        layout.RUN_LOG.format(rule="search"),
    # a failed group's search does not fail the job (its features fail); anything else might
    # be transient, and a retry searches only what the cache lacks
    retries: 1
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        grid=SETTINGS.grid.to_params(),
        search=SETTINGS.search.to_params(),
        stac=SETTINGS.stac.to_params(),
        id_column=SETTINGS.id_column,
        # grows when a group's search failed: the next run searches it again
        generation=SEARCH_GENERATION,
    script:
        "../scripts/search.py"
