"""Rule `search`: the STAC items covering the feature's grid, as an ItemCollection."""

import json

from sitsflow.logs import job_logging
from sitsflow.search import search, write_item_collection

smk = snakemake  # noqa: F821 (injected by Snakemake)
fid = smk.wildcards.fid
with job_logging(smk.log[0], f"search {fid}") as log:
    with open(smk.input[0]) as handle:
        record = json.load(handle)
    options = smk.params.search
    bbox = record["properties"]["search_bbox_wgs84"]
    items = search(
        options["catalog"],
        collection=options["collection"],
        bbox=bbox,
        start=options["start"],
        end=options["end"],
        query=options["query"],
    )
    log.info("%d items in %s for bbox %s", len(items), options["collection"], bbox)
    info = {
        "catalog": options["catalog"],
        "collection": options["collection"],
        "bbox": bbox,
        "datetime": f"{options['start']}/{options['end']}",
        "query": options["query"],
    }
    write_item_collection(items, smk.output[0], info)
