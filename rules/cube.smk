# The feature's items from its group's search result, then its cube.
rule cube:
    input:
        bbox=LAYOUT.pattern("bbox"),
        group=group_search_of,
    output:
        stac_items=LAYOUT.pattern("items"),
        # a netCDF file, or a Zarr store (a directory), by config `format`
        cube=(
            directory(LAYOUT.pattern("cube"))
            if SETTINGS.format == "zarr"
            else LAYOUT.pattern("cube")
        ),
    log:
        LAYOUT.log_pattern("cube"),
    retries: 1
    conda:
        "../envs/sitsflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        # the items' and the cube's settings (`search`, `cube`), as batch fingerprints see them
        **STAGE_SETTINGS.rule_params("items", "cube"),
        attributes=feature_attributes,
    script:
        "../scripts/cube.py"
