"""Rule `batch`: every stage of a batch of features, one file set each
(sitsflow/workflow/batch.py)."""

import gc

from sitsflow.core.logs import exit_job
from sitsflow.core.settings import RangeCacheSettings
from sitsflow.workflow.batch import run_batch, write_batch_results
from sitsflow.workflow.context import BatchContext, BatchSettings

# What the job imported lives as long as the job: full collections need not scan it again
# (0.34 against 0.21 s of collections in a held-out batch of 194 features).
gc.freeze()
smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = BatchSettings.from_params(smk.params.settings)
batch = smk.wildcards.batch
# the run's disk cache of byte ranges: from the config, not params (it changes no value)
range_cache = RangeCacheSettings.from_config(smk.config)
context = BatchContext(settings, group_search=smk.input[0], range_cache=range_cache)
# (run_batch closes the loader it used)
outcomes = run_batch(
    batch, smk.params.members, context, smk.log[0], attributes=smk.params.attributes
)
write_batch_results(
    batch,
    smk.params.generation,
    outcomes,
    settings,
    smk.output.manifest,
    smk.output.timeseries,
    written=context.tables,
)

exit_job()
