"""Write the synthetic Sentinel-2 L2A demo archive (`sitsflow.demo`) for a vector's features.

    python tools/make_demo_archive.py --vector data/rand_pts.geojson --id-column id \\
        --out resources/demo/sentinel-2-l2a --start 2024-01-01 --end 2024-12-31 --workers 2

or take the inputs from the workflow configuration (what `make demo` does):

    python tools/make_demo_archive.py --configfile config/config.yaml --workers 2

reads `vector`, `id_column`, `start`, `end`, `collection`, `demo.layout`, `demo.seed`, and
writes the archive into the directory of `catalog` (its `items.json`); with a Landsat
collection (`landsat-c2-l2`) among `collection` the archive also has Landsat scenes. Options
given explicitly win over the config. Rerunning only generates what changed (see
`sitsflow.demo.generate_archive`).

Options for archives that differ from the kind default where real archives do (issue 12), all
off by default: --overview-resampling, --scl-overview-resampling, --scl-pattern,
--overlapping-tiles, --no-nodata-tag, --swath-edge, --saturated-fraction.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# This checkout's package and schema, whatever else is installed (as rules/common.smk does):
# the config below is this checkout's config/config.yaml.
sys.path.insert(0, str(REPO))

from sitsflow.core.settings import Settings  # noqa: E402
from sitsflow.demo import LAYOUTS, archive_size, features_from_vector, generate_archive  # noqa: E402
from sitsflow.demo.options import RESAMPLINGS, SCL_PATTERNS, ArchiveOptions  # noqa: E402
from sitsflow.workflow.config import load_config, load_schema  # noqa: E402

log = logging.getLogger("make_demo_archive")
# The config the Snakefile reads first; `--configfile` values go over it, as in Snakemake.
WORKFLOW_CONFIG = REPO / "config" / "config.yaml"

DEFAULTS = {
    "revisit_days": 5,
    "margin_m": 1920.0,
    "clear_fraction": 0.45,
    "workers": 1,
    **asdict(ArchiveOptions()),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, help="workflow config to take defaults from")
    parser.add_argument("--vector", help="vector file of the features (GeoJSON, GPKG, CSV...)")
    parser.add_argument("--id-column", help="column holding the feature ids (default: id)")
    parser.add_argument("--out", type=Path, help="archive directory (items.json goes there)")
    parser.add_argument("--start", help="first acquisition day, YYYY-MM-DD")
    parser.add_argument("--end", help="last acquisition day (included), YYYY-MM-DD")
    parser.add_argument("--layout", choices=LAYOUTS)
    parser.add_argument(
        "--collection",
        dest="collections",
        action="append",
        help="collection to write (repeat; landsat-c2-l2 adds Landsat scenes)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--revisit-days", type=int)
    parser.add_argument("--margin-m", type=float, help="tile margin around each feature (m)")
    parser.add_argument("--clear-fraction", type=float, help="share of dates with < 10 %% cloud")
    parser.add_argument("--workers", type=int, help="processes writing COGs (default: 1)")
    realism = parser.add_argument_group("realistic archives (issue 12), off by default")
    realism.add_argument(
        "--overview-resampling", choices=RESAMPLINGS, help="reflectance bands' overviews"
    )
    realism.add_argument("--scl-overview-resampling", choices=RESAMPLINGS, help="SCL overviews")
    realism.add_argument(
        "--scl-pattern", choices=SCL_PATTERNS, help="checkerboard: SCL 5/9 per pixel on clear dates"
    )
    # Boolean flags default to None so that an absent flag leaves the default (or config) value.
    realism.add_argument(
        "--overlapping-tiles",
        action="store_true",
        default=None,
        help="two overlapping items of neighbouring tiles per feature and date",
    )
    realism.add_argument(
        "--no-nodata-tag",
        dest="nodata_tag",
        action="store_false",
        default=None,
        help="COGs without a GeoTIFF nodata tag (items still declare 0)",
    )
    realism.add_argument(
        "--swath-edge",
        action="store_true",
        default=None,
        help="DN 0 east of a swath edge across the tile on every other date",
    )
    realism.add_argument(
        "--saturated-fraction", type=float, help="share of data pixels at DN 65535 per band"
    )
    return parser.parse_args(argv)


def schema_defaults() -> dict:
    """The defaults of the config keys the archive also uses (the schema holds them)."""
    properties = load_schema()["properties"]
    demo = properties["demo"]["properties"]
    return {
        "id_column": properties["id_column"]["default"],
        "layout": demo["layout"]["default"],
        "seed": demo["seed"]["default"],
        "collections": [properties["collection"]["default"]],
    }


def settings_from_config(path: Path) -> dict:
    """The archive settings a workflow config implies (the demo archive is its `catalog`),
    read as the workflow reads it: config/config.yaml (the Snakefile's `configfile:`) with
    `path` over it, validated, with the schema's defaults. A config of a few keys (as
    config/training.yaml) names the same archive as the run it configures."""
    from snakemake.utils import update_config

    config = yaml.safe_load(WORKFLOW_CONFIG.read_text()) or {}
    update_config(config, yaml.safe_load(path.read_text()) or {})
    settings = Settings.from_config(load_config(config))
    found = {
        "vector": settings.vector,
        "id_column": settings.id_column,
        "start": settings.search.start,
        "end": settings.search.end,
        "layout": settings.demo.layout,
        "seed": settings.demo.seed,
        "collections": list(settings.search.collections),
    }
    catalog = settings.search.catalog
    if "://" not in catalog:
        location = Path(catalog)
        found["out"] = location.parent if location.suffix == ".json" else location
    return found


def resolve_settings(args: argparse.Namespace) -> dict:
    """Defaults, overridden by the config file, overridden by explicit options."""
    settings = {**DEFAULTS, **schema_defaults()}
    if args.configfile:
        settings.update(settings_from_config(args.configfile))
    settings.update({key: value for key, value in vars(args).items() if value is not None})
    missing = [key for key in ("vector", "out", "start", "end") if not settings.get(key)]
    if missing:
        options = ", ".join("--" + key.replace("_", "-") for key in missing)
        raise SystemExit(f"missing {options} (give them, or a --configfile that has them)")
    return settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = resolve_settings(parse_args(argv))
    features = features_from_vector(settings["vector"], str(settings["id_column"]))
    log.info("%d features from %s", len(features), settings["vector"])
    started = time.perf_counter()
    items_path = generate_archive(
        features,
        settings["out"],
        str(settings["start"]),
        str(settings["end"]),
        revisit_days=int(settings["revisit_days"]),
        margin_m=float(settings["margin_m"]),
        layout=settings["layout"],
        seed=int(settings["seed"]),
        workers=int(settings["workers"]),
        clear_fraction=float(settings["clear_fraction"]),
        overview_resampling=settings["overview_resampling"],
        scl_overview_resampling=settings["scl_overview_resampling"],
        scl_pattern=settings["scl_pattern"],
        overlapping_tiles=bool(settings["overlapping_tiles"]),
        nodata_tag=bool(settings["nodata_tag"]),
        swath_edge=bool(settings["swath_edge"]),
        saturated_fraction=float(settings["saturated_fraction"]),
        collections=list(settings["collections"]),
    )
    seconds = time.perf_counter() - started
    items = json.loads(items_path.read_text())["features"]
    clear = sum(item["properties"]["eo:cloud_cover"] < 10 for item in items)
    files, size = archive_size(settings["out"])
    print(
        f"{items_path}: {len(items)} items ({clear} with eo:cloud_cover < 10) for "
        f"{len(features)} features; archive {files} files, {size / 1e6:.1f} MB; {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
