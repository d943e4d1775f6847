"""Rule `plan`: the run's items, files, bytes and requests from its searches alone."""

from sitsflow.catalog.groups import plan_groups
from sitsflow.core.features import load_features
from sitsflow.core.layout import Layout
from sitsflow.core.logs import exit_job, job_logging
from sitsflow.core.settings import CubeSettings, GridSettings, SearchSettings, StacSettings
from sitsflow.workflow.plan import plan_run, plan_text, write_plan

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0], "plan") as log:
    stac = StacSettings.from_config(smk.params.stac)
    features = {f.fid: f for f in load_features(smk.input.vector, smk.params.id_column)}
    cube = CubeSettings.from_config(smk.params.cube)
    plan = plan_run(
        features,
        plan_groups(features.values(), stac.group_degrees),
        GridSettings.from_config(smk.params.grid),
        SearchSettings.from_config(smk.params.search),
        cube,
        Layout(),
    )
    write_plan(plan, smk.output.json, smk.output.text)
    log.info("plan:\n%s", plan_text(plan))

exit_job()
