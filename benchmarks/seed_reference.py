"""Reference (s), the seed: the `sits` tutorial's own code, pointed at the benchmark's catalog.

    .venv-seed/bin/python benchmarks/seed_reference.py --catalog http://127.0.0.1:8000/api \\
        --vector data/rand_pts.geojson --out DIR [--workers 2]

Runs in its own virtual environment (`benchmarks/install_seed.sh` makes `.venv-seed/` with
`sits==0.8.0` and the versions pinned in `benchmarks/seed-constraints.txt`): sits pins
libraries (numpy < 2, pandas 3 ...) that clash with sitsflow's constraints. This file imports
nothing from sitsflow for that reason.

What runs is the "Multiprocessing" tutorial of sits (kenoz/SITS_utils,
docs/source/tutorials/colab_sits_ex04.ipynb): section 2 (load the points with `Vec2gdf`,
buffer them by 0.01 degree, take the bounding boxes in EPSG:4326 and EPSG:3035) and
section 3.2, "Producing images from the vector layer", as written there::

    multi = sits.Multiproc('image', 'nc', data_dir)
    multi.addParams_stacAttack(bands=['B03', 'B04', 'B08', 'SCL'])
    multi.addParams_searchItems(date_start=datetime(2024, 1, 1),
                                date_end=datetime(2025, 1, 1),
                                query={"eo:cloud_cover": {"lt": 10}})
    multi.addParams_loadCube(resolution=20)
    multi.addParams_mask(mask_values=[0, 1, 3, 8, 9, 10])
    for gid, i in enumerate(test_process['bbox_tuple'][:2]):
        multi.fetch_func(i[0], i[1], gid, mask=True, gapfill=True)
    multi.dask_compute();

with the tutorial's slicing `[:2]` ("remove or modify the slicing") removed, so that every
feature is processed, and `data_dir` the output directory.

The one patch: `sits.StacAttack` hard-codes its STAC API URL in the provider table its
`__init__` builds (`prov_stac['mpc']['stac']`, Planetary Computer, the tutorial's default
provider); `patch_stac_url` wraps `__init__` so that the URL of the provider in use is the
benchmark's catalog. Everything else of the provider is left as sits has it (the
`planetary_computer` signing modifier and `patch_url`, which leave URLs outside Azure Blob
Storage unchanged). `Multiproc.dask_compute` runs the features on dask's `processes`
scheduler, whose worker processes are spawned and import sits afresh: the patch is installed
in each of them by dask's `multiprocessing.initializer` hook, and `num_workers` (dask's
default: one per core) is set to `--workers`, the issue's 2 workers.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

PATCHED = "_seed_benchmark_stac_url"  # attribute marking a patched __init__ (and its URL)


def patch_stac_url(stac_attack: type, url: str) -> None:
    """Make every `stac_attack` instance search `url` instead of its hard-coded STAC API.

    `stac_attack` is `sits.sits.StacAttack`: its `__init__` builds `self.prov_stac`, a table
    of providers ({'mpc': {'stac': URL, 'modifier': ..., ...}, 'aws': {...}}), and sets
    `self.stac` to the chosen provider's entry. The wrapper lets the original `__init__` run,
    then replaces that entry's 'stac' URL and nothing else. Patching twice keeps one wrapper.
    """
    original: Callable[..., None] = getattr(stac_attack.__init__, "__wrapped__", None) or (
        stac_attack.__init__
    )

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.stac["stac"] = url  # self.stac is the provider's entry of self.prov_stac

    setattr(__init__, PATCHED, url)
    stac_attack.__init__ = __init__  # type: ignore[misc]


def install_patch(url: str) -> None:
    """Patch the installed sits (in this process): the dask worker initializer."""
    warnings.filterwarnings("ignore")  # as the tutorial does
    from sits import sits

    patch_stac_url(sits.StacAttack, url)


def tutorial_bboxes(vector: str) -> Any:
    """Section 2 of the tutorial: the points, buffered by 0.01 degree, and their bounding
    boxes in EPSG:4326 and EPSG:3035 (`test_process['bbox_tuple']`), as the notebook has it."""
    import pandas as pd
    from sits import sits

    random_pts = sits.Vec2gdf(vector)
    # buffer distance of 0.01 degree (1.11 km approx.)
    random_pts.set_buffer("gdf", 0.01)
    # bbox of buffer polygon
    random_pts.set_bbox("buffer")
    # extraction of bbox coordinates in EPSG:4326
    bbox_latlong = pd.concat([random_pts.bbox, random_pts.bbox["geometry"].bounds], axis=1)
    bbox_latlong["bbox_4326"] = bbox_latlong[["minx", "miny", "maxx", "maxy"]].values.tolist()
    # extraction of bbox coordinates in EPSG:3035
    bbox_3035 = random_pts.bbox.to_crs(3035)
    test_3035_bounds = pd.concat([bbox_3035, bbox_3035["geometry"].bounds], axis=1)
    test_3035_bounds["bbox_3035"] = test_3035_bounds[
        ["minx", "miny", "maxx", "maxy"]
    ].values.tolist()
    # concatenation of both coordinates (EPSG:4326 + EPSG:3035)
    test_process = pd.concat([bbox_latlong["bbox_4326"], test_3035_bounds["bbox_3035"]], axis=1)
    test_process["bbox_tuple"] = test_process.apply(
        lambda row: (row["bbox_4326"], row["bbox_3035"]), axis=1
    )
    return test_process


def run_tutorial(catalog: str, vector: str, data_dir: str, workers: int) -> None:
    """Section 3.2 of the tutorial on every feature, against `catalog`."""
    import dask
    from sits import sits

    install_patch(catalog)
    test_process = tutorial_bboxes(vector)
    config = {
        "num_workers": workers,
        "multiprocessing.initializer": functools.partial(install_patch, catalog),
    }
    with dask.config.set(config):
        multi = sits.Multiproc("image", "nc", data_dir)

        multi.addParams_stacAttack(bands=["B03", "B04", "B08", "SCL"])
        multi.addParams_searchItems(
            date_start=datetime(2024, 1, 1),
            date_end=datetime(2025, 1, 1),
            query={"eo:cloud_cover": {"lt": 10}},
        )
        multi.addParams_loadCube(resolution=20)
        multi.addParams_mask(mask_values=[0, 1, 3, 8, 9, 10])

        for gid, i in enumerate(test_process["bbox_tuple"]):
            multi.fetch_func(i[0], i[1], gid, mask=True, gapfill=True)
        multi.dask_compute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True, help="STAC API URL (replaces sits' own)")
    parser.add_argument("--vector", default="data/rand_pts.geojson")
    parser.add_argument("--out", type=Path, required=True, help="the tutorial's data_dir")
    parser.add_argument("--workers", type=int, default=2, help="dask processes")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_tutorial(args.catalog, os.fspath(args.vector), os.fspath(args.out), args.workers)
    written = sorted(args.out.glob("*.nc"))
    print(f"{len(written)} files in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
