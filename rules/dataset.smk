# `dataset: true` (sitsflow/outputs/dataset.py): every cube stacked along `feature` in
# results/dataset.zarr, rewriting only the features whose cube changed and appending new ones.
# The store is updated in place, so it is not a declared output (Snakemake deletes outputs
# before a job runs, and `update()` would copy the whole store as a backup every run): the job
# declares its manifest, results/dataset.json, and the store's own record says what it holds.
if SETTINGS.dataset:

    rule dataset:
        input:
            unpack(dataset_input),
        output:
            layout.DATASET_MANIFEST,
        log:
            layout.RUN_LOG.format(rule="dataset"),
        conda:
            "../envs/sitsflow.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            # in the order of the vector file, whichever way the cubes were made
            features=list(FEATURES),
            cube_extension=LAYOUT.cube_extension,
            # grows when the store was deleted by hand: the job then rebuilds it
            generation=DATASET_GENERATION,
        script:
            "../scripts/dataset.py"
