# What the run will read, from its searches alone (sitsflow/workflow/plan.py): `make plan` or
# `snakemake plan`. Runs the search, not the cubes; not part of `all`.
rule plan:
    input:
        vector=SETTINGS.vector,
        searches=layout.SEARCH_INDEX,
    output:
        json=layout.PLAN,
        text=layout.PLAN_TEXT,
    log:
        layout.RUN_LOG.format(rule="plan"),
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        grid=SETTINGS.grid.to_params(),
        search=SETTINGS.search.to_params(),
        stac=SETTINGS.stac.to_params(),
        cube=SETTINGS.cube.to_params(),
        id_column=SETTINGS.id_column,
    script:
        "../scripts/plan.py"
