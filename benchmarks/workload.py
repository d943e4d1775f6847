"""The seed's job as the benchmarks see it: each feature's cube grid and the items it needs.

One place for what the lower bound (`benchmarks.seed_workload`), the floor
(`benchmarks.floor_reference`) and the full-size archive (`benchmarks.full_archive`) must
agree on with sitsflow: the default configuration (`config/config.yaml`), the grid sitsflow
puts a feature's cube on (`sitsflow.core.bbox`) and the items its search returns
(`sitsflow.catalog.search`, local `items.json` or a STAC API URL). The functions go through
sitsflow's own code, so that they follow it when it changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "config.yaml"


def default_config() -> dict[str, Any]:
    """The workflow's default configuration (`config/config.yaml` with the schema's defaults
    for the keys it leaves out): the seed's job."""
    from sitsflow.testing.settings import config_for

    return config_for(**yaml.safe_load(CONFIG.read_text()))


def job_bands(config: dict[str, Any]) -> list[str]:
    """The asset keys a cube reads: the bands and the mask band."""
    return [*config["bands"], config["mask"]["band"]]


@dataclass(frozen=True)
class FeatureJob:
    """One feature: its id, its search bbox (lon/lat) and its cube grid."""

    fid: str
    bbox: list[float]
    epsg: int
    transform: Any  # affine.Affine of the cube grid
    width: int
    height: int
    record: Any = None  # its bbox record (sitsflow.core.bbox.BboxRecord)
    feature: Any = None  # sitsflow.core.features.Feature

    @property
    def on_grid(self) -> tuple[Any, int, int, int]:
        """(transform, width, height, epsg): the grid arguments of `benchmarks.cogbytes`."""
        return self.transform, self.width, self.height, self.epsg


def feature_jobs(vector: Path | str, config: dict[str, Any]) -> Iterator[FeatureJob]:
    """Every feature of `vector` with the bbox and grid sitsflow's bbox stage gives it."""
    from sitsflow.core.bbox import grid_of, make_aoi_record
    from sitsflow.core.features import load_features
    from sitsflow.core.settings import GridSettings

    settings = GridSettings.from_config(config)
    for feature in load_features(vector, config["id_column"]):
        record = make_aoi_record(feature, settings)
        grid = grid_of(record)
        yield FeatureJob(
            feature.fid,
            list(record["bbox"]),
            grid.epsg,
            grid.transform,
            grid.width,
            grid.height,
            record,
            feature,
        )


def search_items(catalog: str, job: FeatureJob, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The items sitsflow's cube job reads for `job` from `catalog` (path or API URL): a
    search of the feature's bbox over the UTC days around its solar days, then sitsflow's
    selection (`sitsflow.workflow.stages.items_of_feature`); the same items its group's search
    gives it."""
    from sitsflow.catalog.search import search, search_dates
    from sitsflow.core.settings import SearchSettings
    from sitsflow.workflow.stages import items_of_feature

    first, last = search_dates(config["start"], config["end"])
    found = search(
        catalog,
        collection=config["collection"],
        bbox=job.bbox,
        start=first,
        end=last,
        query=config["query"],
        filter=config.get("filter"),
    )
    settings = SearchSettings.from_config({**config, "catalog": catalog})
    return items_of_feature(found, job.record, settings)[0]
