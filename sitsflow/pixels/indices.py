"""Spectral indices (Awesome Spectral Indices, via `spyndex`) as extra variables of a cube.

spyndex names its inputs with letters (`B` blue, `G` green, `R` red, `N` nir, `RE1`..`RE3`,
`N2` narrow nir, `S1`/`S2` swir, `A` aerosols, `WV` water vapour) and constants (`L`, `g`,
`C1`, ...). The letters are mapped to Sentinel-2 bands with spyndex's own Sentinel-2A band
table (`N` -> `B8` -> `B08`); constants take spyndex's defaults, and the `lambda*` constants
(central wavelengths) the Sentinel-2A wavelength of the matching band. Indices that need
anything else (radar or thermal bands, kernel values, constants without a default) are refused
when the config is checked, before any job runs.

Everything runs offline: spyndex ships its index catalogue and is never asked to fetch it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import spyndex
import xarray as xr

from sitsflow.core.bands import CLASSIFICATION_BANDS, LANDSAT_RUN_BAND, canonical_band
from sitsflow.core.errors import InputError

CONFIG_KEY = "indices"
CATALOGUE_URL = "https://github.com/awesome-spectral-indices/awesome-spectral-indices"
WAVELENGTH_PREFIX = "lambda"


@cache
def spyndex_band_map() -> dict[str, str]:
    """spyndex band letter -> Sentinel-2 band name (`N` -> `B08`), from spyndex's band table."""
    mapping = {}
    for letter in spyndex.bands:
        platform_band = getattr(spyndex.bands[letter], "sentinel2a", None)
        if platform_band is None:
            continue
        mapping[letter] = canonical_band(_zero_padded(platform_band.band))
    return mapping


def _zero_padded(band: str) -> str:
    """spyndex writes `B8`, `B8A`, `B11`; sitsflow writes `B08`, `B8A`, `B11`."""
    digits = band[1:]
    return f"B{digits.zfill(2)}" if digits.isdigit() else band


@dataclass(frozen=True)
class IndexRecipe:
    """What computing one index takes: which bands for which letters, which constant values."""

    name: str
    long_name: str
    formula: str
    reference: str
    bands: dict[str, str]  # spyndex letter -> Sentinel-2 band
    constants: dict[str, float]
    unsupported: list[str]  # inputs sitsflow cannot provide


@cache
def index_recipe(name: str) -> IndexRecipe:
    """The recipe of the spyndex index `name` (exact spelling, e.g. `NDVI`, `kNDVI`)."""
    if name not in spyndex.indices:
        raise InputError(_unknown_index_message(name), key=CONFIG_KEY)
    index = spyndex.indices[name]
    band_map = spyndex_band_map()
    bands: dict[str, str] = {}
    constants: dict[str, float] = {}
    unsupported: list[str] = []
    for parameter in index.bands:
        if parameter in band_map:
            bands[parameter] = band_map[parameter]
        elif (value := _constant_value(parameter, band_map)) is not None:
            constants[parameter] = value
        else:
            unsupported.append(parameter)
    return IndexRecipe(
        name=name,
        long_name=index.long_name,
        formula=index.formula,
        reference=index.reference,
        bands=bands,
        constants=constants,
        unsupported=unsupported,
    )


def _constant_value(parameter: str, band_map: Mapping[str, str]) -> float | None:
    """spyndex's default for a constant; a `lambdaX` constant is band X's S2A wavelength (nm)."""
    if parameter in spyndex.constants:
        default = spyndex.constants[parameter].default
        if default is not None:
            return float(default)
    if parameter.startswith(WAVELENGTH_PREFIX):
        letter = parameter.removeprefix(WAVELENGTH_PREFIX)
        if letter in band_map:
            return float(spyndex.bands[letter].sentinel2a.wavelength)
    return None


def _unknown_index_message(name: str) -> str:
    names = list(spyndex.indices)
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if name.lower() in by_lower and by_lower[name.lower()] not in close:
        close.insert(0, by_lower[name.lower()])
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"unknown spectral index {name!r}{hint}. Names are case-sensitive, as in Awesome "
        f"Spectral Indices ({len(names)} indices, {CATALOGUE_URL})"
    )


def run_bands(recipe: IndexRecipe, landsat: bool) -> dict[str, str]:
    """The recipe's letter -> band, in the run's names: Sentinel-2's (`B04`), or in a run with
    Landsat the common names (`red`; `N` -> `nir08`); a band Landsat lacks keeps its name."""
    if not landsat:
        return dict(recipe.bands)
    return {letter: LANDSAT_RUN_BAND.get(band, band) for letter, band in recipe.bands.items()}


def check_indices(indices: Sequence[str], bands: Sequence[str], landsat: bool = False) -> None:
    """Raise InputError naming the index and what it lacks (bands to add, inputs unsupported)."""
    available = {canonical_band(b, landsat) for b in bands} - set(CLASSIFICATION_BANDS)
    for name in indices:
        recipe = index_recipe(name)
        if recipe.unsupported:
            raise InputError(
                f"index {name!r} needs {recipe.unsupported}, which sitsflow cannot provide from "
                "Sentinel-2 L2A reflectance (radar/thermal bands, kernel values or constants "
                "without a default); remove it from indices",
                key=CONFIG_KEY,
            )
        missing = {
            letter: band
            for letter, band in run_bands(recipe, landsat).items()
            if band not in available
        }
        if missing:
            letters = sorted(missing)
            s2_bands = sorted(set(missing.values()))
            raise InputError(
                f"index {name!r} needs bands {letters} ({', '.join(s2_bands)}) not in bands: "
                f"add {', '.join(s2_bands)} to bands",
                key=CONFIG_KEY,
            )


def compute_index(
    name: str, reflectance: Mapping[str, np.ndarray], landsat: bool = False
) -> np.ndarray:
    """Index `name` from reflectance arrays keyed by the run's band names (`run_bands`);
    float32, NaN where undefined."""
    recipe = index_recipe(name)
    params: dict[str, np.ndarray | float] = {
        letter: np.asarray(reflectance[band], dtype=np.float64)
        for letter, band in run_bands(recipe, landsat).items()
    }
    params.update(recipe.constants)
    with np.errstate(all="ignore"):  # x/0 and negative ** fractional give NaN, not warnings
        values = np.asarray(spyndex.computeIndex(name, params=params), dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    return values.astype(np.float32)


def add_indices(dataset: xr.Dataset, indices: Sequence[str], landsat: bool = False) -> xr.Dataset:
    """`dataset` with one float32 (time, y, x) variable per index, from its reflectance bands
    (named by common name in a run with Landsat: `landsat`).

    The variables share the bands' grid mapping; `observed` applies to them unchanged. The
    dataset's `indices` attribute lists them (JSON), so readers can tell indices from bands.
    """
    if not indices:
        return dataset
    dataset = dataset.copy()
    template = next(
        name for name, variable in dataset.data_vars.items() if variable.dtype == np.float32
    )
    grid_mapping = dataset[template].attrs.get("grid_mapping")
    for name in indices:
        recipe = index_recipe(name)
        inputs = run_bands(recipe, landsat)
        values = compute_index(
            name, {band: dataset[band].values for band in inputs.values()}, landsat
        )
        attrs = {
            "long_name": recipe.long_name,
            "units": "1",
            "ancillary_variables": "observed",
            "formula": recipe.formula,
            "formula_inputs": json.dumps({**inputs, **recipe.constants}),
            "reference": recipe.reference,
            "source": f"spyndex {spyndex.__version__} (Awesome Spectral Indices), from the "
            "gap-filled reflectance",
        }
        if grid_mapping:
            attrs["grid_mapping"] = grid_mapping
        dataset[name] = xr.Variable(dataset[template].dims, values, attrs)
    dataset.attrs["indices"] = json.dumps(list(indices))
    return dataset
