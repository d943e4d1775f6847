"""Rule `search`: one STAC search per group of nearby features (sitsflow/catalog/groups.py)."""

from sitsflow.catalog.groups import plan_groups
from sitsflow.core.features import load_features
from sitsflow.core.layout import Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.core.settings import GridSettings, SearchSettings, StacSettings
from sitsflow.workflow.stages import search_groups

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "search"):
    stac = StacSettings.from_config(smk.params.stac)
    features = {f.fid: f for f in load_features(smk.input[0], smk.params.id_column)}
    search_groups(
        features,
        plan_groups(features.values(), stac.group_degrees),
        GridSettings.from_config(smk.params.grid),
        SearchSettings.from_config(smk.params.search),
        stac,
        smk.params.generation,
        Layout(),
    )

exit_job()
