"""The test harness: demo archives, working directories and the Snakemake runner, as fixtures.

Every test that runs the workflow does it through the `snakemake` fixture, and every test that
needs a demo archive gets it from `make_archive` (or `demo_archive`), which generates each
archive once per session and arguments. A test that requests `snakemake`, directly or through
its fixtures, is marked `integration` at collection. docs/testing.md describes the fixtures,
the markers and the make targets.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from shapely.geometry.base import BaseGeometry

from sitsflow.demo import generate_archive
from tests.helpers import (
    ARCHIVE_FEATURES,
    ARCHIVE_OPTIONS,
    BANDS,
    EMPTY_FEATURE,
    END,
    INDICES,
    START,
    FeatureGeometry,
    write_features,
)

TESTS = Path(__file__).parent
REPO = TESTS.parent
STAC_FIXTURES = TESTS / "fixtures" / "stac"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
VECTOR_FILE = "features.geojson"  # the name of the vector file in a working directory

ArchiveFeatures = Mapping[str, BaseGeometry] | Sequence[tuple[str, BaseGeometry]]
SnakemakeRunner = Callable[..., subprocess.CompletedProcess]


@pytest.hookimpl(tryfirst=True)  # before pytest deselects by `-m` in the same hook
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test that runs Snakemake (it requests the `snakemake` fixture,
    itself or through its fixtures), so that no workflow run goes unmarked."""
    for item in items:
        if "snakemake" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def load_items(relative: str) -> list[dict]:
    """Items of a recorded STAC response / item collection / single item under fixtures/stac."""
    data = json.loads((STAC_FIXTURES / relative).read_text())
    if isinstance(data, list):
        return data
    if data.get("type") == "Feature":
        return [data]
    return data["features"]


@pytest.fixture
def fixture_items() -> Callable[[str], list[dict]]:
    """`load_items`, as a fixture."""
    return load_items


# ---- the Snakemake runner -------------------------------------------------------------------


def run_snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Run this repository's workflow in `workdir` with its `config.yaml`, as a user would.

    `args` go to Snakemake after the working directory and config (targets, `--dry-run`, a
    profile...); `--cores 2` (the machine's) unless they give `--cores`. `env` is added to this
    process's environment, whose PATH starts with this interpreter's bin directory (so that jobs
    find the same Python and Snakemake). With `check`, a non-zero exit raises AssertionError
    with the end of Snakemake's output.
    """
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        *([] if "--cores" in args else ["--cores", "2"]), *args,
    ]  # fmt: skip
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed in {workdir} (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


@pytest.fixture(scope="session")
def snakemake() -> SnakemakeRunner:
    """The runner of the workflow: `snakemake(workdir, *args, check=True, env=None)` (see
    `run_snakemake`). Requesting it marks the test `integration`."""
    return run_snakemake


# ---- demo archives --------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` -> (size, modification time), to see whether it was changed."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


def shared_directory(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """A directory made once for the whole test session by `build(directory)`, also when
    pytest-xdist runs the tests in several worker processes (`make test-fast`): the first
    worker to ask builds it under a lock, the others wait for it and use it as it is. Shared
    directories must not be changed by a test (archives and runs: see their fixtures)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (target / ".complete").touch()
    return target


class ArchiveFactory:
    """Demo archives (sitsflow.demo.generate_archive), each generated once per session.

    `make_archive(features, start, end, **options)` returns the archive's directory (its
    `items.json` inside); `options` are generate_archive's (seed, revisit_days, clear_fraction,
    layout, ...). Calls with the same arguments share one archive, so it must not be changed:
    with `private=True` the caller gets its own copy, to delete or truncate files in. At the end
    of the session every shared archive is checked to be as generated.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._archives: dict[tuple, tuple[Path, dict[str, tuple[int, int]]]] = {}

    def __call__(
        self,
        features: ArchiveFeatures,
        start: str,
        end: str,
        *,
        private: bool = False,
        **options: object,
    ) -> Path:
        pairs = list(features.items() if isinstance(features, Mapping) else features)
        key = (
            tuple((str(fid), geometry.wkb_hex) for fid, geometry in pairs),
            start,
            end,
            tuple(sorted(options.items())),
        )
        if key not in self._archives:
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            root = shared_directory(
                self._tmp,
                f"archive-{digest}",
                lambda directory: generate_archive(pairs, directory, start, end, **options),
            )
            self._archives[key] = (root, _snapshot(root))
        root = self._archives[key][0]
        if not private:
            return root
        copy = self._tmp.mktemp("archive-copy") / "archive"
        shutil.copytree(root, copy)
        return copy

    def check_unchanged(self) -> None:
        """Fail if a test changed a shared archive (it should have asked for a private one)."""
        changed = [
            str(root) for root, snapshot in self._archives.values() if _snapshot(root) != snapshot
        ]
        assert not changed, f"shared demo archives changed by a test: {changed}"


@pytest.fixture(scope="session")
def make_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveFactory]:
    """The factory of demo archives, shared by the whole session and its workers (see
    ArchiveFactory)."""
    factory = ArchiveFactory(tmp_path_factory)
    yield factory
    factory.check_unchanged()


@pytest.fixture(scope="session")
def demo_archive(make_archive: ArchiveFactory) -> Path:
    """The `items.json` of the shared small archive (tests/helpers.py: ARCHIVE_FEATURES, START
    to END, ARCHIVE_OPTIONS), which the shared runs read."""
    return make_archive(ARCHIVE_FEATURES, START, END, **ARCHIVE_OPTIONS) / "items.json"


# ---- working directories --------------------------------------------------------------------


def default_config() -> dict:
    """The workflow's default configuration, config/config.yaml."""
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


class WorkdirFactory:
    """Working directories for a workflow run, each a new directory of the session's tmp.

    `make_workdir(name, features, **overrides)` writes `features` (id -> geometry or (lon, lat))
    as `features.geojson` and `config.yaml`: config/config.yaml with `vector: features.geojson`
    and `overrides`. With `features=None` no vector file is written (give `vector=`).
    `make_workdir.like(reference, name, **overrides)` copies the vector file and config of the
    working directory `reference` (not its results), then applies `overrides`.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def __call__(
        self, name: str, features: Mapping[str, FeatureGeometry] | None, **overrides: object
    ) -> Path:
        workdir = self._tmp.mktemp(name)
        if features is not None:
            write_features(workdir / VECTOR_FILE, features)
        self.write_config(workdir, {**default_config(), "vector": VECTOR_FILE, **overrides})
        return workdir

    def like(self, reference: Path, name: str, **overrides: object) -> Path:
        workdir = self._tmp.mktemp(name)
        shutil.copy(reference / VECTOR_FILE, workdir / VECTOR_FILE)
        config = yaml.safe_load((reference / "config.yaml").read_text())
        self.write_config(workdir, {**config, **overrides})
        return workdir

    @staticmethod
    def write_config(workdir: Path, config: Mapping[str, object]) -> None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(dict(config)))


@pytest.fixture(scope="session")
def make_workdir(tmp_path_factory: pytest.TempPathFactory) -> WorkdirFactory:
    """The factory of working directories (see WorkdirFactory)."""
    return WorkdirFactory(tmp_path_factory)


# ---- the shared runs ------------------------------------------------------------------------


def shared_run_config(items_json: Path) -> dict[str, object]:
    """The config overrides of the shared runs on the shared small archive."""
    return {
        "catalog": str(items_json), "start": START, "end": END, "crs": "utm", "resolution": 10,
        "bands": BANDS, "indices": INDICES, "buffer_m": 300,
        "query": {"eo:cloud_cover": {"lt": 30}},
    }  # fmt: skip


def shared_run(
    tmp_path_factory: pytest.TempPathFactory,
    snakemake: SnakemakeRunner,
    name: str,
    features: Mapping[str, FeatureGeometry],
    **overrides: object,
) -> Path:
    """A completed run in a working directory shared by the session and its workers."""

    def run(workdir: Path) -> None:
        write_features(workdir / VECTOR_FILE, features)
        config = {**default_config(), "vector": VECTOR_FILE, **overrides}
        WorkdirFactory.write_config(workdir, config)
        snakemake(workdir)

    return shared_directory(tmp_path_factory, name, run)


@pytest.fixture(scope="session")
def netcdf_run(
    tmp_path_factory: pytest.TempPathFactory, snakemake: SnakemakeRunner, demo_archive: Path
) -> Path:
    """Working directory of a completed run on the shared archive, made once per session: the
    point, the polygon and the empty feature; netCDF cubes; pixel time series for points. The
    runs read the archive's local `items.json` (tests/test_workflow.py covers the HTTP API).
    Read-only: copy it (or `make_workdir.like` it) to change anything."""
    features = {**ARCHIVE_FEATURES, EMPTY_FEATURE[0]: EMPTY_FEATURE[1]}
    return shared_run(
        tmp_path_factory, snakemake, "results-netcdf", features, **shared_run_config(demo_archive)
    )


@pytest.fixture(scope="session")
def zarr_run(
    tmp_path_factory: pytest.TempPathFactory, snakemake: SnakemakeRunner, demo_archive: Path
) -> Path:
    """Like `netcdf_run` with the point only, Zarr cubes and median time series (same archive
    and grid)."""
    return shared_run(
        tmp_path_factory,
        snakemake,
        "results-zarr",
        {"p1": ARCHIVE_FEATURES["p1"]},
        **shared_run_config(demo_archive),
        format="zarr",
        timeseries={"method": "median"},
    )
