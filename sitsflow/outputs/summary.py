"""`results/summary.csv`: one row per feature, what was found, how much was clear, what failed.

Two writers produce the same columns:

* the `summary` rule, after every cube exists (`summarise`): rows from the cubes' attributes;
* the Snakefile's `onerror` handler, when some job failed (`write_failure_summary`): Snakemake
  never runs the `summary` rule if one of its inputs is missing, so the handler (in the main
  Snakemake process, after every other job has finished) writes the rows of the cubes that exist
  plus one `failed` row per feature without a cube, with the last error line of the failed
  job's log. That file is back-dated to just before the oldest cube, so the next run always
  rebuilds it with the `summary` rule.

Statuses: `ok` (a cube with time steps), `no_items` (a valid cube with an empty time axis: the
search found nothing), `failed` (no cube; `error` and `log` say why).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sitsflow.core.atomic import atomic_path, sweep_temporaries
from sitsflow.core.batch_manifest import read_summary_rows
from sitsflow.core.layout import SUMMARY, Layout
from sitsflow.core.pipeline import chain_to
from sitsflow.pixels.cube_model import CubeArrays, cube_crs

if TYPE_CHECKING:
    from rasterio.crs import CRS as RasterioCRS

    from sitsflow.outputs.timeseries import Cube

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
    "error",
    "log",
]

# A feature's stages up to its cube, in order: the first whose output is missing failed.
CHAIN = chain_to("cube")
# The last line of a Python traceback: `package.module.SomeError: message`.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception))(?::|$)"
)


def summarise_cube(path: str | Path) -> dict[str, Any]:
    """The summary row of one cube, from its attributes and dimensions."""
    import xarray as xr

    with xr.open_dataset(path, decode_coords="all") as cube:
        return cube_summary_row(cube, path)


def cube_summary_row(cube: Cube, path: str | Path) -> dict[str, Any]:
    """The summary row of the cube written at `path`, opened (with `decode_coords="all"`)."""
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
        "crs": _crs_text(cube),
        "cube": str(path),
        "error": "",
        "log": "",
    }


def _crs_text(cube: Cube) -> str:
    """The cube's CRS as rioxarray gives it (`EPSG:32632`), empty when it has none."""
    crs = cube_crs(cube)
    if crs is None and not isinstance(cube, CubeArrays):
        import rioxarray  # noqa: F401 (registers the .rio accessor)

        crs = cube.rio.crs
    return _crs_string(crs) if crs else ""


@functools.cache
def _crs_string(crs: RasterioCRS) -> str:
    return str(crs.to_string())


def summarise(
    cube_paths: Iterable[str | Path], manifests: Iterable[str | Path] = ()
) -> pd.DataFrame:
    """The summary table when every feature has its cube (the `summary` rule): a row per cube,
    then the rows the batch manifests carry (batch mode)."""
    rows = [summarise_cube(path) for path in cube_paths] + read_summary_rows(manifests)
    return pd.DataFrame(rows, columns=COLUMNS)


def last_error(log_path: str | Path) -> str | None:
    """The error a failed job logged: its final exception line(s), without the module path.

    sitsflow's job logs end with the traceback of the error that stopped the job, whose last
    line is `module.SomeError: message` (message lines may follow). None if the log has none.
    """
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for index in range(len(lines) - 1, -1, -1):
        match = _EXCEPTION_LINE.match(lines[index])
        if match:
            message = lines[index][match.start("name") :]
            continuation = [line.strip() for line in lines[index + 1 :] if line.strip()]
            return " ".join([message, *continuation])
    return None


def failed_stage(fid: str, layout: Layout, root: str | Path = ".") -> str | None:
    """The first job of the feature whose output is missing (None: all outputs exist).

    Snakemake deletes the outputs of a failed job, so this is the job that failed. A cube left
    from an earlier run whose bbox or search job failed now is out of date: the feature failed.
    """
    return next(
        (stage for stage in CHAIN if not (Path(root) / layout.path(stage, fid)).exists()), None
    )


def failure_row(fid: str, layout: Layout, root: str | Path = ".") -> dict[str, Any]:
    """The `failed` row of a feature without a (current) cube, from the failed job's log."""
    root = Path(root)
    rule = failed_stage(fid, layout, root) or "cube"
    # one job per stage in batch mode; in per-feature mode the cube job also writes the items
    later = CHAIN[CHAIN.index(rule) :]
    logs = [layout.log(stage, fid) for stage in later]
    log_path = next((path for path in logs if (root / path).exists()), logs[0])
    rule = later[logs.index(log_path)]
    error = last_error(root / log_path) or (
        f"the {rule} job failed without an error message in its log (killed? out of memory?); "
        "see the Snakemake log in .snakemake/log/"
    )
    row = dict.fromkeys(COLUMNS, "")
    row.update(feature_id=fid, status="failed", error=f"{rule}: {error}", log=log_path)
    return row


def summarise_run(fids: Iterable[str], layout: Layout, root: str | Path = ".") -> pd.DataFrame:
    """Rows for every feature: its cube's, or a failure."""
    rows = []
    for fid in fids:
        cube_path = layout.path("cube", fid)
        if failed_stage(fid, layout, root) is None:
            try:
                rows.append({**summarise_cube(Path(root) / cube_path), "cube": cube_path})
                continue
            except Exception as exc:  # an unreadable cube is reported, not fatal to the summary
                row = failure_row(fid, layout, root)
                row["error"] = f"cube: cannot read {cube_path}: {exc}"
                rows.append(row)
                continue
        rows.append(failure_row(fid, layout, root))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_summary(table: pd.DataFrame, path: str | Path) -> None:
    """Write the table as CSV, atomically (a reader sees the old or the new file, never half)."""
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def read_summary(path: str | Path) -> pd.DataFrame:
    """A summary CSV as written: feature ids as text, empty cells empty (not NaN)."""
    return pd.read_csv(path, dtype={"feature_id": str}, keep_default_na=False)


def write_failure_summary(
    fids: Sequence[str], layout: Layout, path: str | Path = SUMMARY, root: str | Path = "."
) -> pd.DataFrame:
    """Write the summary of a run in which some jobs failed (called from `onerror`).

    The file is back-dated to just before the oldest existing cube: Snakemake then sees every
    cube as newer and reruns the `summary` rule on the next run, so this provisional table never
    outlives the failures it reports (e.g. after the failed feature is removed from the vector).
    When every feature has its cube (the failed job was downstream of the cubes) and the
    `summary` rule's file is newer than all of them, that file is kept as it is.
    """
    table = summarise_run(fids, layout, root)
    target = Path(root) / path
    cubes = [Path(root) / cube for cube in layout.paths("cube", fids)]
    cube_times = [cube.stat().st_mtime for cube in cubes if cube.exists()]
    complete = not (table["status"] == "failed").any()
    if complete and target.exists() and target.stat().st_mtime >= max(cube_times, default=0):
        return table
    write_summary(table, target)
    if cube_times:
        older = min(cube_times) - 1
        os.utime(target, (older, older))
    return table


def summarise_failed_run(fids: Sequence[str], layout: Layout, root: str | Path = ".") -> str:
    """Everything `onerror` does once the run's jobs are over; returns the message for the user.

    Writes results/summary.csv with the failures (`write_failure_summary`) and removes the
    temporary files killed jobs left (`sweep_temporaries`).
    """
    table = write_failure_summary(fids, layout, root=root)
    sweep_temporaries(Path(root) / "results")
    failed = list(table.loc[table["status"] == "failed", "feature_id"])
    if not failed:
        return (
            f"every feature's cube is complete ({len(table)} features, {SUMMARY}); "
            "the job that failed is named above and its log gives the cause"
        )
    shown = failed[:10] + ([f"and {len(failed) - 10} more"] if len(failed) > 10 else [])
    return (
        f"{len(failed)} of {len(table)} feature(s) failed: {shown}; {SUMMARY} lists "
        "every feature with its status and error (column `error`), the other features' cubes "
        "are complete. Fix the cause and rerun snakemake: only the failed features are redone."
    )
