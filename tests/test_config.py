import datetime as dt

import pytest

from sitsflow.core.errors import InputError
from sitsflow.workflow.config import check_config, normalise_config
from tests.conftest import default_config


def test_default_config_passes():
    check_config(normalise_config(default_config()))


def test_yaml_dates_become_strings():
    config = default_config()
    config["start"] = dt.date(2024, 3, 1)
    assert normalise_config(config)["start"] == "2024-03-01"


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("start", "2025-01-01", "start.*after end"),
        ("end", "2024-02-30", "'end'.*not a date"),
        ("bands", ["B04", "NDVI"], "'bands'.*unknown band 'NDVI'"),
        ("crs", "EPSG:4326", "'crs'.*not projected"),
        ("crs", "EPSG:99999", "'crs'.*unknown CRS"),
        ("filter", "eo:cloud_cover < 10 junk", "(?s)'filter'.*invalid cql2-text filter.*expected"),
        ("filter", {"op": "<", "args": [{"property": "a"}]}, "'filter'.*invalid cql2-json"),
    ],
)
def test_bad_values_name_the_key(key, value, match):
    config = default_config()
    config[key] = value
    with pytest.raises(InputError, match=match):
        check_config(config)


def test_patch_larger_than_max_pixels():
    config = default_config()
    config.update(mode="patch", patch_size=[5000, 5000], max_pixels=1000)
    with pytest.raises(InputError, match="patch_size"):
        check_config(config)


def test_zstd_is_refused_when_the_netcdf_library_cannot_write_it(monkeypatch):
    import netCDF4

    config = default_config()
    config["compression"] = "zstd"
    check_config(config)  # this environment's netCDF4 writes zstd
    monkeypatch.setattr(netCDF4, "__has_zstandard_support__", 0)
    with pytest.raises(InputError, match="'compression'.*built without zstd; use compression zlib"):
        check_config(config)
    config["format"] = "zarr"  # Zarr stores keep Zarr's own codec
    check_config(config)


def test_zstd_is_refused_when_hdf5_does_not_find_its_plugin():
    """An `HDF5_PLUGIN_PATH` set elsewhere (as cluster modules do) hides the plugin netCDF4's
    wheels bring: the parse says so, instead of every cube failing."""
    import os
    import subprocess
    import sys

    script = """
from sitsflow.core.errors import InputError
from sitsflow.workflow.config import check_config
from tests.conftest import default_config
config = default_config()
config["compression"] = "zstd"
try:
    check_config(config)
except InputError as exc:
    print(exc)
"""
    env = {**os.environ, "HDF5_PLUGIN_PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert "'compression'" in done.stdout
    assert "HDF5_PLUGIN_PATH (now '/nonexistent')" in done.stdout, done.stdout


@pytest.mark.parametrize(
    "cql2_filter",
    [
        None,
        "eo:cloud_cover < 10 AND s2:mgrs_tile = '31UFS'",
        {"op": "=", "args": [{"property": "s2:mgrs_tile"}, "31UFS"]},
    ],
)
def test_cql2_filters_pass(cql2_filter):
    config = default_config()
    config["filter"] = cql2_filter
    check_config(config)


def test_training_config_is_the_demo_run_with_the_training_keys():
    """config/training.yaml (README "Training data") holds only what differs: over
    config/config.yaml, as Snakemake reads it, it makes a stackable run of the demo's features
    whose demo archive is the default run's."""
    import runpy
    from pathlib import Path

    import yaml
    from snakemake.utils import update_config

    from sitsflow.core.features import load_features
    from sitsflow.core.settings import Settings
    from sitsflow.workflow.config import load_config

    repo = Path(__file__).parents[1]
    config = default_config()
    update_config(config, yaml.safe_load((repo / "config" / "training.yaml").read_text()))
    settings = Settings.from_config(load_config(config))
    assert settings.dataset and settings.cube.time_step == "P10D"
    assert settings.grid.mode == "patch" and settings.timeseries.layout == "wide"
    features = load_features(repo / settings.vector, settings.id_column, settings.attributes)
    assert all(isinstance(feature.labels["pt_id"], int) for feature in features)
    demo = runpy.run_path(str(repo / "tools" / "make_demo_archive.py"), run_name="demo")
    archive = demo["settings_from_config"]
    assert archive(repo / "config" / "training.yaml") == archive(repo / "config" / "config.yaml")
