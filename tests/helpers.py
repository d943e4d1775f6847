"""Shared by the tests of the results (quicklooks, time series, indices, report): workflow runs
on a small demo archive, made once per test session and reused by every module that asks.

The runs read the archive's local `items.json` (the HTTP STAC API path is covered by
tests/test_workflow.py). Features: a point (`p1`), a polygon (`poly`) and a point far from any
tile (`nowhere`, no items: an empty time axis).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from shapely.geometry import Point, box, mapping
from shapely.geometry.base import BaseGeometry

from sitsflow.demo import generate_archive
from tests.conftest import REPO

START, END = "2022-01-10", "2022-03-10"
BANDS = ["B02", "B03", "B04", "B08"]
INDICES = ["NDVI", "NDWI", "EVI"]
ARCHIVE_FEATURES: dict[str, BaseGeometry] = {
    "p1": Point(8.491383, 49.854370),
    "poly": box(11.170, 50.010, 11.185, 50.020),
}
EMPTY_FEATURE = ("nowhere", Point(-30.0, 40.0))  # mid-Atlantic: the archive has no tile there

_cache: dict[str, Path] = {}


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow of this repository in `workdir` with its `config.yaml`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", "2", *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) in a daemon thread; yield the root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_features(path: Path, features: dict[str, BaseGeometry]) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": fid}, "geometry": mapping(geometry)}
            for fid, geometry in features.items()
        ],
    }
    path.write_text(json.dumps(collection))


def demo_archive(factory: pytest.TempPathFactory) -> Path:
    """The archive's items.json (generated once per session)."""
    if "archive" not in _cache:
        root = factory.mktemp("results-archive")
        features = list(ARCHIVE_FEATURES.items())
        _cache["archive"] = generate_archive(
            features, root, START, END, revisit_days=5, seed=11, clear_fraction=0.6
        )
    return _cache["archive"]


def workflow_run(
    factory: pytest.TempPathFactory,
    name: str,
    features: dict[str, BaseGeometry],
    **config: object,
) -> Path:
    """Working directory of a completed workflow run (made once per session and `name`)."""
    if name not in _cache:
        workdir = factory.mktemp(f"results-{name}")
        write_features(workdir / "features.geojson", features)
        settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        settings.update(
            vector="features.geojson", catalog=str(demo_archive(factory)), start=START, end=END,
            crs="utm", resolution=10, bands=BANDS, indices=INDICES, buffer_m=300,
            query={"eo:cloud_cover": {"lt": 30}},
        )  # fmt: skip
        settings.update(config)
        (workdir / "config.yaml").write_text(yaml.safe_dump(settings))
        run_snakemake(workdir)
        _cache[name] = workdir
    return _cache[name]


def netcdf_run(factory: pytest.TempPathFactory) -> Path:
    """Point, polygon and empty feature; netCDF cubes; pixel time series for points."""
    features = {**ARCHIVE_FEATURES, EMPTY_FEATURE[0]: EMPTY_FEATURE[1]}
    return workflow_run(factory, "netcdf", features)


def zarr_run(factory: pytest.TempPathFactory) -> Path:
    """The point only, with Zarr cubes and median time series (same archive and grid)."""
    return workflow_run(
        factory,
        "zarr",
        {"p1": ARCHIVE_FEATURES["p1"]},
        format="zarr",
        timeseries={"method": "median"},
    )
