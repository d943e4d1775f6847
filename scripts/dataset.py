"""Rule `dataset`: every feature's cube stacked along `feature` in results/dataset.zarr, only
the changed and new features written (sitsflow/outputs/dataset.py)."""

from sitsflow.core.layout import DATASET, Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.outputs.dataset import update_dataset, write_dataset_manifest

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "dataset") as log:
    layout = Layout(smk.params.cube_extension)
    fids = list(smk.params.features)
    update = update_dataset(list(zip(fids, layout.paths("cube", fids), strict=True)), DATASET)
    write_dataset_manifest(update, DATASET, smk.params.generation, smk.output[0])
    log.info(
        "%s: %d features x %d time steps; %s%d appended, %d rewritten, %d unchanged in %.1f s",
        DATASET,
        update.features,
        update.time_steps,
        f"rebuilt ({update.reason}), " if update.rebuilt else "",
        len(update.appended),
        len(update.rewritten),
        update.unchanged,
        update.seconds,
    )

exit_job()
