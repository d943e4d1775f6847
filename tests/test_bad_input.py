"""Bad input: one clear message each, naming the feature and the config key, nothing written.

Three levels, as a user meets them:

* vector file and config: rejected when the workflow is parsed (`snakemake -n` fails, nothing
  is written); tested on the functions the workflow calls and, for a sample, through Snakemake;
* per feature (a buffer too large for `max_pixels`, a buffer across the antimeridian) and per
  catalog (unreachable, not a STAC API, unknown collection): the feature's job fails with the
  message, the other features go on, `results/summary.csv` lists the failures;
* docs/how-it-works.md ("Every bad input") lists every case below.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import LineString, MultiPolygon, Point, box, mapping
from snakemake.cli import parse_config as parse_command_line
from snakemake.cli import update_config
from snakemake.common.configfile import load_configfile
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sitsflow.catalog.search import search
from sitsflow.core.bbox import make_aoi_record
from sitsflow.core.errors import CatalogError, InputError
from sitsflow.core.features import Feature, load_features, search_geometry
from sitsflow.core.settings import Settings
from sitsflow.testing.settings import grid_settings
from sitsflow.testing.stac_server import StacServer
from sitsflow.workflow.config import check_config, load_config, normalise_config
from tests.conftest import REPO, VECTOR_FILE, default_config
from tests.helpers import local_http_server

SCHEMA = REPO / "schemas" / "config.schema.yaml"
SEARCH = {
    "collection": "sentinel-2-l2a",
    "bbox": [8.4, 49.8, 8.5, 49.9],
    "start": "2022-01-10",
    "end": "2022-01-31",
}


# ---- vector files -------------------------------------------------------------------------


def feature(fid: object, geometry: dict | None, key: str = "id") -> dict:
    return {"type": "Feature", "properties": {key: fid}, "geometry": geometry}


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def geojson(*features: dict) -> Callable[[Path], Path]:
    """A writer of a GeoJSON FeatureCollection (EPSG:4326) with `features`."""

    def write(directory: Path) -> Path:
        path = directory / "features.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
        return path

    return write


def raw(name: str, content: bytes) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content)
        return path

    return write


def shapefile_without_crs(directory: Path) -> Path:
    path = directory / "nocrs.shp"
    frame = gpd.GeoDataFrame({"id": ["a"]}, geometry=[Point(8.5, 49.8)], crs=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": the point
        frame.to_file(path)
    return path


def missing(directory: Path) -> Path:
    return directory / "does-not-exist.geojson"


BOWTIE = {"type": "Polygon", "coordinates": [[[8, 49], [9, 50], [9, 49], [8, 50], [8, 49]]]}
ACROSS_ANTIMERIDIAN = {
    "type": "Polygon",
    "coordinates": [[[179.9, 10], [-179.9, 10], [-179.9, 10.1], [179.9, 10.1], [179.9, 10]]],
}
LONG_ID = "x" * 200

VECTOR_CASES = {
    "missing vector file": (missing, r"config key 'vector'.*not found.*fix the path"),
    "corrupt vector file": (
        raw("features.geojson", b"\x00\x01 this is not GeoJSON {"),
        r"config key 'vector'.*cannot read vector file",
    ),
    "truncated GeoJSON": (
        raw("features.geojson", b'{"type": "FeatureCollection", "features": [{"type": "Fea'),
        r"config key 'vector'.*cannot read vector file",
    ),
    "CSV with an open quote": (raw("features.csv", b'id,lon,lat\n"a,1,2\n'), r"cannot read CSV"),
    "CSV not in UTF-8": (raw("features.csv", b"id,lon,lat\n\xff\xfe,1,2\n"), r"cannot read CSV"),
    "empty CSV": (raw("features.csv", b""), r"'vector'.*cannot read CSV.*No columns"),
    "CSV without coordinates": (raw("features.csv", b"id,a,b\n1,2,3\n"), r"'vector'.*lon/lat"),
    "empty vector file": (geojson(), r"config key 'vector'.*has no features"),
    "missing id_column": (
        geojson(feature("a", point(8.5, 49.8), key="name")),
        r"config key 'id_column'.*column 'id' not found.*'name'.*Set `id_column`",
    ),
    "duplicate ids": (
        geojson(feature("a", point(8.5, 49.8)), feature("a", point(8.6, 49.8))),
        r"config key 'id_column'.*duplicate feature ids.*\['a'\]",
    ),
    "null id": (
        geojson(feature("a", point(8.5, 49.8)), feature(None, point(8.6, 49.8))),
        r"config key 'id_column'.*1 feature\(s\) have no 'id' value.*\[1\]",
    ),
    "blank id": (geojson(feature("  ", point(8.5, 49.8))), r"'id_column'.*no 'id' value"),
    "id ../x": (geojson(feature("../x", point(8.5, 49.8))), r"unusable as file names.*'\.\./x'"),
    "id a/b": (geojson(feature("a/b", point(8.5, 49.8))), r"unusable as file names.*'a/b'"),
    "id with space": (geojson(feature("a b", point(8.5, 49.8))), r"file names.*'a b'"),
    "non-ASCII id": (geojson(feature("café", point(8.5, 49.8))), r"file names.*'café'"),
    "very long id": (
        geojson(feature(LONG_ID, point(8.5, 49.8))),
        r"file names.*'x{40}'\.\.\. \(200 characters\)",
    ),
    "self-intersecting polygon": (
        geojson(feature("bow", BOWTIE)),
        r"config key 'vector'.*feature 'bow': invalid geometry \(Self-intersection.*make_valid",
    ),
    "null geometry": (geojson(feature("n", None)), r"feature 'n': empty or missing geometry"),
    "empty geometry": (
        geojson(feature("e", {"type": "Polygon", "coordinates": []})),
        r"feature 'e': empty or missing geometry",
    ),
    "geometry collection": (
        geojson(feature("g", {"type": "GeometryCollection", "geometries": [point(8.5, 49.8)]})),
        r"feature 'g': geometry type GeometryCollection is not supported",
    ),
    "polygon across the antimeridian": (
        geojson(feature("dl", ACROSS_ANTIMERIDIAN)),
        r"feature 'dl': spans 359\.8 degrees of longitude.*antimeridian.*split it",
    ),
    "lat/lon swapped": (
        geojson(feature("s", point(49.8, 120.5))),
        r"feature 's': coordinates .* outside longitude/latitude range.*lat/lon swapped",
    ),
    "no CRS": (shapefile_without_crs, r"config key 'vector'.*has no CRS; set one"),
}


@pytest.mark.parametrize("case", VECTOR_CASES)
def test_bad_vector_file_is_refused_with_one_clear_message(tmp_path, case):
    writer, message = VECTOR_CASES[case]
    path = writer(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError, match=f"(?s){message}"):
        load_features(path, "id")
    assert sorted(tmp_path.rglob("*")) == before, "reading a vector file must write nothing"


def test_many_bad_ids_are_listed_together(tmp_path):
    """All offending ids in one message (the first ten, and how many more)."""
    bad = [feature(f"bad id {n}", point(8.5, 49.8)) for n in range(12)]
    path = geojson(*bad, feature("ok", point(8.5, 49.8)))(tmp_path)
    with pytest.raises(InputError, match=r"12 feature id\(s\).*'bad id 9', and 2 more") as error:
        load_features(path, "id")
    assert "'ok'" not in str(error.value)


def test_mixed_geometry_types_are_allowed(tmp_path):
    """Points and lines are buffered by buffer_m, polygons (and multipolygons) used as they are."""
    square = box(8.50, 49.80, 8.51, 49.81)
    multi = MultiPolygon([box(8.6, 49.8, 8.61, 49.81), box(8.62, 49.8, 8.63, 49.81)])
    line = LineString([(8.7, 49.8), (8.71, 49.8)])
    path = geojson(
        feature("pt", point(8.5, 49.8)),
        feature("sq", mapping(square)),
        feature("mp", mapping(multi)),
        feature("ln", mapping(line)),
    )(tmp_path)
    features = {f.fid: f for f in load_features(path, "id")}
    assert [features[k].geometry.geom_type for k in ("pt", "sq", "mp", "ln")] == [
        "Point",
        "Polygon",
        "MultiPolygon",
        "LineString",
    ]
    assert search_geometry(features["sq"], 500).equals(square)
    assert search_geometry(features["mp"], 500).equals(multi)
    buffered_point = search_geometry(features["pt"], 500)
    assert buffered_point.geom_type == "Polygon" and buffered_point.contains(Point(8.5, 49.8))
    assert search_geometry(features["ln"], 500).contains(line)
    for fid in features:  # every type gets a grid
        record = make_aoi_record(
            features[fid], grid_settings(buffer_m=500, crs="utm", resolution=20)
        )
        assert record["properties"]["grid"]["width"] > 0


def test_projected_input_is_reprojected(tmp_path):
    path = tmp_path / "laea.gpkg"
    gpd.GeoDataFrame(
        {"id": ["a"]}, geometry=[Point(4321000.0, 3210000.0)], crs="EPSG:3035"
    ).to_file(path)
    (reprojected,) = load_features(path, "id")
    assert reprojected.geometry.x == pytest.approx(10.0, abs=0.01)
    assert reprojected.geometry.y == pytest.approx(52.0, abs=0.01)


def test_point_buffer_across_the_antimeridian_names_feature_and_key():
    near_dateline = Feature("fiji-east", Point(179.9995, -17.0))
    with pytest.raises(InputError, match=r"feature 'fiji-east', config key 'buffer_m'.*antimer"):
        search_geometry(near_dateline, 1000)


def test_buffer_too_large_for_max_pixels_gives_the_estimated_size():
    with pytest.raises(
        InputError,
        match=r"feature 'p', config key 'max_pixels'.* (\d+) x \1 = \d+ pixels.*max_pixels = 1000",
    ):
        make_aoi_record(
            Feature("p", Point(8.5, 49.8)),
            grid_settings(buffer_m=50_000, crs="utm", resolution=20, max_pixels=1000),
        )


# ---- config ---------------------------------------------------------------------------------


def parse_config(config: dict) -> None:
    """What `rules/common.smk` does with the config when the workflow is parsed."""
    normalise_config(config)
    validate(config, schema=str(SCHEMA))
    check_config(config)


CONFIG_CASES = {
    "start after end": ({"start": "2024-06-01", "end": "2024-01-01"}, r"'start'.*after end"),
    "impossible date": ({"end": "2024-02-30"}, r"config key 'end'.*not a date.*YYYY-MM-DD"),
    "malformed date": ({"start": "2024/01/01"}, r"'2024/01/01' does not match.*\['start'\]"),
    "unknown band": ({"bands": ["B04", "NDVI"]}, r"config key 'bands'.*unknown band 'NDVI'"),
    "unknown mask band": (
        {"mask": {"band": "CLOUDS", "classes": [3]}},
        r"config key 'mask.band'.*unknown band 'CLOUDS'",
    ),
    "unknown mask class": (
        {"mask": {"band": "SCL", "classes": [3, 12]}},
        r"12 is greater than the maximum of 11.*\['classes'\]",
    ),
    "negative mask class": (
        {"mask": {"band": "SCL", "classes": [-1]}},
        r"-1 is less than the minimum of 0",
    ),
    "resolution zero": ({"resolution": 0}, r"0 is less than or equal to the minimum.*resolution"),
    "resolution negative": ({"resolution": -10}, r"-10 is less than or equal.*resolution"),
    "patch size zero": (
        {"mode": "patch", "patch_size": [0, 64]},
        r"0 is less than the minimum of 1.*\['patch_size'\]",
    ),
    "patch size absurd": (
        {"mode": "patch", "patch_size": [10**6, 10**6]},
        r"1000000 is greater than the maximum of 10000.*\['patch_size'\]",
    ),
    "patch above max_pixels": (
        {"mode": "patch", "patch_size": [5000, 5000]},
        r"config key 'patch_size'.*25000000 pixels exceeds max_pixels 4000000",
    ),
    "geographic crs": ({"crs": "EPSG:4326"}, r"config key 'crs'.*not projected"),
    "unparsable filter": (
        {"filter": "eo:cloud_cover <"},
        r"config key 'filter'.*invalid cql2-text filter.*1:17.*expected",
    ),
    "filter of another type": ({"filter": 10}, r"10 is not of type.*\['filter'\]"),
    "time step of years": ({"time_step": "P1Y"}, r"config key 'time_step'.*'P1Y' is not a supp"),
    "time step of hours": ({"time_step": "PT6H"}, r"'time_step'.*PnD \(days\), PnW"),
    "unknown composite": ({"composite": "mean"}, r"'mean' is not one of.*\['composite'\]"),
    "max_ndvi without B08": (
        {"time_step": "P10D", "composite": "max_ndvi", "bands": ["B03", "B04"]},
        r"config key 'composite'.*add \['B08'\] to bands",
    ),
    "dataset in image mode": (
        {"dataset": True, "time_step": "P10D", "mode": "image"},
        r"config key 'dataset'.*set mode: patch",
    ),
    "dataset without a time step": (
        {"dataset": True, "mode": "patch", "time_step": None},
        r"config key 'dataset'.*own acquisition dates.*set time_step",
    ),
    "attribute named like a column": (
        {"attributes": ["label", "time"]},
        r"config key 'attributes'.*\['time'\] clash",
    ),
    "attribute named like a band": ({"attributes": ["B04"]}, r"'attributes'.*\['B04'\] clash"),
    "id column as attribute": ({"attributes": ["id"]}, r"'attributes'.*'id' is the id_column"),
    "unknown layout": ({"timeseries": {"layout": "tall"}}, r"'tall' is not one of.*long"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_value_is_refused_when_parsed(case):
    overrides, message = CONFIG_CASES[case]
    config = {**default_config(), **overrides}
    with pytest.raises((InputError, WorkflowError), match=f"(?s){message}"):
        parse_config(config)


def parse_as_the_workflow(workdir: Path, *command_line: str) -> dict[str, Feature]:
    """What rules/common.smk reads when Snakemake parses the workflow in `workdir` with
    `--config *command_line`: the config file, the command-line values merged in as Snakemake
    merges them, the checked config, the features."""
    given = parse_command_line(list(command_line))
    config = load_configfile(workdir / "config.yaml")
    update_config(config, given)
    settings = Settings.from_config(load_config(config, given))
    features = load_features(workdir / settings.vector, settings.id_column, settings.attributes)
    return {item.fid: item for item in features}


# Parse-time errors: each case as the workflow parses it (in this process), and a sample through
# Snakemake: the message reaches the user, the exit code is non-zero, nothing is written.
PARSE_CASES = {
    "missing vector file": ({"vector": "nope.geojson"}, "nope.geojson", r"not found"),
    "unsafe ids": ({}, "../x", r"unusable as file names: \['\.\./x'\]"),
    "start after end": ({"start": "2024-06-01", "end": "2024-01-01"}, None, r"after end"),
    "unknown band": ({"bands": ["B04", "NDVI"]}, None, r"unknown band 'NDVI'"),
    "unknown mask class": ({"mask": {"band": "SCL", "classes": [12]}}, None, r"maximum of 11"),
    "resolution zero": ({"resolution": 0}, None, r"resolution"),
    "patch too large": ({"mode": "patch", "patch_size": [5000, 5000]}, None, r"max_pixels"),
    "unparsable filter": ({"filter": "cloud <"}, None, r"(?s)config key 'filter'.*expected"),
    "unstackable dataset": ({"dataset": True, "time_step": "P10D"}, None, r"set mode: patch"),
    "dataset of acquisition dates": (
        {"dataset": True, "mode": "patch"},
        None,
        r"(?s)time_step: null.*set time_step",
    ),
    "missing attribute column": (
        {"attributes": ["label"]},
        None,
        r"attribute column\(s\) \['label'\] not found.*available columns: \['id'\]",
    ),
}
THROUGH_SNAKEMAKE = ["unsafe ids", "unparsable filter"]


@pytest.mark.parametrize("case", PARSE_CASES)
def test_parse_time_errors_are_raised_when_the_workflow_reads_its_input(make_workdir, case):
    overrides, fid, message = PARSE_CASES[case]
    workdir = make_workdir("parse-error", {fid or "ok": Point(8.5, 49.8)}, **overrides)
    with pytest.raises((InputError, WorkflowError), match=message):
        parse_as_the_workflow(workdir)


@pytest.mark.parametrize("case", THROUGH_SNAKEMAKE)
def test_parse_time_errors_stop_snakemake_before_anything_is_written(make_workdir, snakemake, case):
    overrides, fid, message = PARSE_CASES[case]
    workdir = make_workdir("parse-error", {fid or "ok": Point(8.5, 49.8)}, **overrides)
    before = {p for p in workdir.rglob("*") if ".snakemake" not in p.parts}
    assert {p.name for p in before} == {"config.yaml", VECTOR_FILE}

    result = snakemake(workdir, "--dry-run", check=False)

    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stderr
    written = {p for p in workdir.rglob("*") if ".snakemake" not in p.parts} - before
    assert written == set()


# `--config` values typed by the schema: what the config file would mean by the same spelling
# (Snakemake reads them as strings, which the schema refused: "'32' is not of type 'integer'").
COMMAND_LINE_CASES = {
    "null query": ["query=null"],
    "integers in a list": ["mode=patch", "patch_size=[32, 16]"],
    "nested number": ["gapfill={max_gap_days: 20}"],
    "null endpoint": ["s3_endpoint=null"],
    "a time step": ["time_step=P16D", "composite=first"],
    "null time step": ["time_step=null"],
    "attributes and a layout": ["attributes=[]", "timeseries={layout: wide}"],
}


@pytest.mark.parametrize("case", COMMAND_LINE_CASES)
def test_command_line_values_take_the_schema_types(make_workdir, case):
    workdir = make_workdir("command-line", {"ok": Point(8.5, 49.8)})
    assert set(parse_as_the_workflow(workdir, *COMMAND_LINE_CASES[case])) == {"ok"}


@pytest.mark.integration
def test_snakemake_takes_command_line_values_by_the_schema_types(make_workdir, snakemake):
    workdir = make_workdir("command-line", {"ok": Point(8.5, 49.8)})
    values = [value for case in COMMAND_LINE_CASES.values() for value in case]
    values.remove("time_step=null")
    result = snakemake(workdir, "--dry-run", "--config", *values, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not of type" not in result.stderr


# ---- catalogs -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NotStac(http.server.BaseHTTPRequestHandler):
    """A web server that is not a STAC API: HTML at `/`, 404 under `/missing`."""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        status = 404 if self.path.startswith("/missing") else 200
        body = b"<html><body>Welcome to nginx</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def not_stac() -> Iterator[str]:
    with local_http_server(_NotStac) as url:
        yield url


@pytest.fixture(scope="module")
def small_archive(make_archive) -> Path:
    return make_archive({"a": Point(8.45, 49.85)}, "2022-01-10", "2022-01-20", seed=2)


def test_unreachable_catalog_fails_fast_with_a_clear_message():
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(CatalogError, match=r"config key 'catalog'.*Connection refused.*`catalog`"):
        search(url, **SEARCH)


@pytest.mark.parametrize("path,reason", [("/", r"JSONDecodeError"), ("/missing/api", r"HTTP 404")])
def test_catalog_that_is_not_a_stac_api(not_stac, path, reason):
    with pytest.raises(
        CatalogError, match=rf"config key 'catalog'.*is not a STAC API root \({reason}.*landing"
    ):
        search(not_stac + path, **SEARCH)


def test_unknown_collection_of_a_stac_api_lists_the_available_ones(small_archive):
    with (
        StacServer(small_archive) as server,
        pytest.raises(
            CatalogError,
            match=r"config key 'collection'.*'sentinel-2-l1c' not found in catalog .*"
            r"available: \['sentinel-2-l2a'\]",
        ),
    ):
        search(server.url, **{**SEARCH, "collection": "sentinel-2-l1c"})


def test_unknown_collection_of_a_local_catalog(small_archive):
    with pytest.raises(CatalogError, match=r"'collection'.*'s2' not found.*\['sentinel-2-l2a'\]"):
        search(str(small_archive / "items.json"), **{**SEARCH, "collection": "s2"})


def test_known_collection_with_no_match_is_just_empty(small_archive):
    with StacServer(small_archive) as server:
        assert search(server.url, **{**SEARCH, "bbox": [100.0, 10.0, 100.1, 10.1]}) == []


# ---- per-feature failures through Snakemake -------------------------------------------------


def test_feature_and_catalog_errors_reach_the_summary(make_workdir, snakemake):
    """Job-time errors: each feature fails with its own message, the run exits non-zero."""
    features = {
        "huge": box(8.0, 49.0, 9.0, 50.0),
        "dateline": Point(179.9995, -17.0),
        "ok": Point(8.5, 49.8),
    }
    catalog = f"http://127.0.0.1:{free_port()}/api"
    workdir = make_workdir("job-errors", features, catalog=catalog, crs="utm")

    result = snakemake(workdir, check=False)

    assert result.returncode != 0
    assert "3 of 3 feature(s) failed" in result.stderr
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index("feature_id")
    assert (summary["status"] == "failed").all()
    assert summary.loc["huge", "error"].startswith("bbox: InputError: [feature 'huge', config")
    assert (
        "would be" in summary.loc["huge", "error"] and "max_pixels" in summary.loc["huge", "error"]
    )
    assert "[feature 'dateline', config key 'buffer_m']" in summary.loc["dateline", "error"]
    # the search job failed for the feature's group; the feature's cube job says why
    assert summary.loc["ok", "error"].startswith(
        "cube: CatalogError: [config key 'catalog'] the search of its group e008n48 failed"
    )
    assert "Connection refused" in summary.loc["ok", "error"]
    assert summary.loc["ok", "log"] == "logs/cube/ok.log"
    top_level = {p.name for p in workdir.iterdir()}
    assert top_level <= {"config.yaml", VECTOR_FILE, "results", "logs", ".snakemake"}
