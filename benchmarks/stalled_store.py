"""Stalled-store benchmark (issue 14): how long a run waits on a COG store that accepts
connections and never answers, with the default read timeouts and retries.

    python benchmarks/stalled_store.py [--features 2] [--stall-s 600]

The demo archive (`make demo`) served over 127.0.0.1 by sitsflow's test STAC server; every data
request to the tile of the first of `--features` points of data/rand_pts.geojson is held for
`--stall-s` seconds before it is answered (the API answers at once). `snakemake --cores 2` runs
with the default config otherwise (no timeout or retry changed). Prints the run's wall time,
Snakemake's exit code, which cubes were written and the failed feature's error line. Not a
test: the wall time is the sum of the configured timeouts, retries and backoffs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import snakemake  # noqa: E402
from sitsflow.testing.stac_server import StacServer  # noqa: E402

ARCHIVE = REPO / "resources" / "demo" / "sentinel-2-l2a"
POINTS = REPO / "data" / "rand_pts.geojson"


def tile_of(point: tuple[float, float]) -> str:
    """The MGRS tile of the demo item whose footprint holds `point`."""
    items = json.loads((ARCHIVE / "items.json").read_text())
    for item in items["features"]:
        west, south, east, north = item["bbox"]
        if west <= point[0] <= east and south <= point[1] <= north:
            return str(item["properties"]["s2:mgrs_tile"])
    raise SystemExit(f"no demo item holds {point}: run `make demo` first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--stall-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    vector = json.loads(POINTS.read_text())
    vector["features"] = vector["features"][: args.features]
    stalled = vector["features"][0]
    tile = tile_of(tuple(stalled["geometry"]["coordinates"][:2]))
    with tempfile.TemporaryDirectory(prefix="sitsflow-stall-") as tmp:
        workdir = Path(tmp)
        (workdir / "features.geojson").write_text(json.dumps(vector))
        with StacServer(
            ARCHIVE, stall_data_s=args.stall_s, stall_data_match=f"/T{tile}/"
        ) as server:
            config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
            config.update(vector="features.geojson", catalog=server.url)
            (workdir / "config.yaml").write_text(yaml.safe_dump(config))
            result = snakemake(workdir, "--quiet", "all", cores=2)
        cubes = sorted(path.stem for path in (workdir / "results" / "cubes").glob("*.nc"))
        fid = stalled["properties"]["id"]
        log = workdir / "logs" / "cube" / f"{fid}.log"
        errors = [line for line in log.read_text().splitlines() if "cannot read" in line]
        print(f"stalled tile T{tile} (feature {fid}), every request held {args.stall_s:.0f} s")
        print(f"run ended after {result.seconds:.1f} s, exit code {result.returncode}")
        print(f"cubes written: {cubes} of {args.features} features")
        print(f"error: {errors[-1] if errors else '(none in ' + str(log.name) + ')'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
