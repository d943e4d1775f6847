"""Spectral indices: band mapping, config errors, values in the cubes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from sitsflow.core.errors import InputError
from sitsflow.outputs.write import open_cube
from sitsflow.pixels.indices import (
    add_indices,
    check_indices,
    compute_index,
    index_recipe,
    spyndex_band_map,
)
from sitsflow.workflow.config import check_config
from tests.conftest import REPO, default_config
from tests.helpers import BANDS, INDICES


def test_spyndex_letters_map_to_sentinel2_bands():
    mapping = spyndex_band_map()
    expected = {"B": "B02", "G": "B03", "R": "B04", "N": "B08", "N2": "B8A", "RE1": "B05"}
    assert {letter: mapping[letter] for letter in expected} == expected
    assert mapping["S1"] == "B11" and mapping["S2"] == "B12"


@pytest.mark.parametrize(
    "indices,bands,match",
    [
        (["NDRE"], BANDS, r"unknown spectral index 'NDRE' \(did you mean 'NDREI'"),
        (["ndvi"], BANDS, r"unknown spectral index 'ndvi' \(did you mean 'NDVI'"),
        (["NDREI"], BANDS, r"index 'NDREI' needs bands \['RE1'\] \(B05\) not in bands: add B05"),
        (["EVI"], ["B03", "B04", "B08"], r"'EVI' needs bands \['B'\] \(B02\).*add B02 to bands"),
        (["NBR"], ["red", "nir"], r"'NBR' needs bands \['S2'\] \(B12\)"),
        (["kNDVI"], BANDS, r"'kNDVI' needs \['kNN', 'kNR'\].*cannot provide"),
        (["DPDD"], BANDS, r"'DPDD' needs \['VV', 'VH'\].*radar"),
    ],
)
def test_bad_indices_say_what_is_missing(indices, bands, match):
    with pytest.raises(InputError, match=match):
        check_indices(indices, bands)


def test_common_band_names_satisfy_an_index():
    check_indices(["NDVI", "NDWI"], ["green", "red", "nir"])


def test_check_config_checks_indices():
    config = default_config()
    config["indices"] = ["NDVI", "SAVI"]
    check_config(config)  # default bands B03 B04 B08 are enough
    config["indices"] = ["EVI"]
    with pytest.raises(InputError, match=r"config key 'indices'.*add B02 to bands"):
        check_config(config)


def test_values_follow_the_formulas_with_spyndex_constants():
    blue, red, nir = (np.array(v, dtype=np.float32) for v in ([0.05, 0.0], [0.1, 0.0], [0.4, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 must give NaN quietly, not a RuntimeWarning
        ndvi = compute_index("NDVI", {"B04": red, "B08": nir})
        evi = compute_index("EVI", {"B02": blue, "B04": red, "B08": nir})
        savi = compute_index("SAVI", {"B04": red, "B08": nir})
    assert ndvi.dtype == np.float32
    np.testing.assert_allclose(ndvi[0], (0.4 - 0.1) / (0.4 + 0.1), rtol=1e-6)
    assert np.isnan(ndvi[1])
    # EVI with spyndex's defaults g = 2.5, C1 = 6, C2 = 7.5, L = 1
    np.testing.assert_allclose(
        evi[0], 2.5 * (0.4 - 0.1) / (0.4 + 6 * 0.1 - 7.5 * 0.05 + 1), rtol=1e-6
    )
    np.testing.assert_allclose(savi[0], (1 + 1.0) * (0.4 - 0.1) / (0.4 + 0.1 + 1.0), rtol=1e-6)


def test_spyndex_works_offline(monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("spyndex tried to reach the network")

    monkeypatch.setattr(requests.Session, "request", no_network)
    index_recipe.cache_clear()
    check_indices(["NDVI", "EVI"], ["B02", "B04", "B08"])
    assert compute_index("NDWI", {"B03": np.ones(1), "B08": np.zeros(1)})[0] == 1.0


def test_add_indices_without_indices_returns_the_cube_unchanged():
    dataset = xr.Dataset({"B04": (("time", "y", "x"), np.zeros((1, 2, 2), np.float32))})
    assert add_indices(dataset, []) is dataset


@pytest.fixture(scope="module")
def cube(netcdf_run):
    with open_cube(netcdf_run / "results" / "cubes" / "p1.nc") as opened:
        return opened.load()


def test_cube_has_the_indices_of_its_own_reflectance(cube):
    assert json.loads(cube.attrs["indices"]) == INDICES
    red, nir = cube["B04"].values.astype(np.float64), cube["B08"].values.astype(np.float64)
    green, blue = cube["B03"].values.astype(np.float64), cube["B02"].values.astype(np.float64)
    expected = {
        "NDVI": (nir - red) / (nir + red),
        "NDWI": (green - nir) / (green + nir),
        "EVI": 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1),
    }
    for name, values in expected.items():
        variable = cube[name]
        assert variable.dtype == np.float32 and variable.dims == ("time", "y", "x")
        np.testing.assert_allclose(variable.values, values, rtol=0, atol=1e-6)
        assert np.isfinite(variable.values).mean() > 0.99
        assert variable.attrs["units"] == "1" and "spyndex" in variable.attrs["source"]
        assert variable.rio.crs == cube.rio.crs


def test_gap_filled_pixels_have_indices_too(cube):
    filled = cube["observed"].values == 0
    assert filled.any(), "the demo archive should have masked pixels"
    assert np.isfinite(cube["NDVI"].values[filled]).all()


def test_unknown_index_stops_the_workflow_before_any_job(make_workdir, snakemake):
    vector = str(REPO / "data" / "rand_pts.geojson")
    workdir = make_workdir("unknown-index", None, indices=["NDVI", "NDRE"], vector=vector)
    result = snakemake(workdir, "--dry-run", check=False)
    assert result.returncode != 0
    assert "unknown spectral index 'NDRE'" in result.stdout + result.stderr
