"""Compare the cubes of two runs value for value: what "the cubes did not change" means.

    python -m sitsflow.testing.compare RESULTS_A RESULTS_B

compares every cube of `RESULTS_A/cubes` with the cube of the same name under `RESULTS_B`:
variables, coordinates, dtypes and attributes must be identical (NaN equal to NaN), except the
attributes that record when and with what the cube was written (`VOLATILE_ATTRS`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

VOLATILE_ATTRS = ("date_created", "software_versions")


def open_comparable(path: str | Path) -> xr.Dataset:
    """The cube loaded into memory, without its volatile attributes."""
    engine = "zarr" if Path(path).suffix == ".zarr" else None
    with xr.open_dataset(path, engine=engine, decode_coords="all") as cube:
        loaded = cube.load()
    loaded.attrs = {k: v for k, v in loaded.attrs.items() if k not in VOLATILE_ATTRS}
    return loaded


def cube_differences(a: str | Path, b: str | Path) -> list[str]:
    """What differs between two cubes (empty: identical), one line per difference."""
    first, second = open_comparable(a), open_comparable(b)
    problems = []
    if set(first.variables) != set(second.variables):
        problems.append(
            f"variables {sorted(first.variables, key=str)} != {sorted(second.variables, key=str)}"
        )
    # Variable names are Hashable to xarray, and str in every cube sitsflow writes.
    for name in sorted(set(first.variables) & set(second.variables), key=str):
        x, y = first[name], second[name]
        if x.dtype != y.dtype:
            problems.append(f"{name}: dtype {x.dtype} != {y.dtype}")
        elif not x.identical(y):
            problems.append(f"{name}: values or attributes differ")
    for key in sorted(set(first.attrs) | set(second.attrs)):
        if first.attrs.get(key) != second.attrs.get(key):
            problems.append(
                f"attribute {key}: {first.attrs.get(key)!r} != {second.attrs.get(key)!r}"
            )
    return problems


def compare_results(a: str | Path, b: str | Path) -> dict[str, list[str]]:
    """Cube name -> differences, for every cube of either results directory."""
    cubes_a = {path.name: path for path in Path(a, "cubes").iterdir()}
    cubes_b = {path.name: path for path in Path(b, "cubes").iterdir()}
    report: dict[str, list[str]] = {}
    for name in sorted(set(cubes_a) | set(cubes_b)):
        if name not in cubes_a or name not in cubes_b:
            report[name] = [f"only in {a if name in cubes_a else b}"]
        elif differences := cube_differences(cubes_a[name], cubes_b[name]):
            report[name] = differences
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="a results directory")
    parser.add_argument("second", type=Path, help="the results directory to compare it with")
    args = parser.parse_args(argv)
    report = compare_results(args.first, args.second)
    n_cubes = len(list(Path(args.first, "cubes").iterdir()))
    for name, differences in report.items():
        print(f"{name}:\n  " + "\n  ".join(differences))
    print(f"{n_cubes} cubes compared, {len(report)} differ")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
