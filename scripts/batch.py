"""Rule `batch`: every stage of a batch of features, one file set each (sitsflow/batch.py)."""

from sitsflow.batch import BatchSettings, run_batch

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_batch(
    smk.wildcards.batch,
    smk.params.members,
    BatchSettings.from_params(smk.params.settings),
    smk.output[0],
    smk.log[0],
)
