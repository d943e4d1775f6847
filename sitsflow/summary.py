"""One row per feature from the cubes' own attributes: what was found and how much was clear."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import rioxarray  # noqa: F401 (registers the .rio accessor)
import xarray as xr

COLUMNS = [
    "feature_id",
    "status",
    "n_items",
    "n_time_steps",
    "valid_fraction",
    "first_date",
    "last_date",
    "width",
    "height",
    "crs",
    "cube",
]


def summarise_cube(path: str | Path) -> dict:
    with xr.open_dataset(path, decode_coords="all") as cube:
        times = cube["time"].values
        return {
            "feature_id": cube.attrs["feature_id"],
            "status": cube.attrs.get("status", "ok"),
            "n_items": int(cube.attrs.get("n_items", 0)),
            "n_time_steps": int(cube.sizes["time"]),
            "valid_fraction": float(cube.attrs.get("valid_fraction", 0.0)),
            "first_date": str(times.min())[:10] if len(times) else "",
            "last_date": str(times.max())[:10] if len(times) else "",
            "width": int(cube.sizes["x"]),
            "height": int(cube.sizes["y"]),
            "crs": cube.rio.crs.to_string() if cube.rio.crs else "",
            "cube": str(path),
        }


def summarise(cube_paths: list[str | Path]) -> pd.DataFrame:
    return pd.DataFrame([summarise_cube(p) for p in cube_paths], columns=COLUMNS)
