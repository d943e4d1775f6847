"""Rule `search`: the STAC items covering the feature's grid, as an ItemCollection."""

from sitsflow.logs import job_logging
from sitsflow.workflow.settings import SearchSettings
from sitsflow.workflow.stages import search_items

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], f"search {smk.wildcards.fid}"):
    search_items(smk.input[0], SearchSettings.from_config(smk.params.search), smk.output[0])
