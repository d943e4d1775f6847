import json

import pytest

from sitsflow.core.errors import InputError
from sitsflow.core.features import load_features
from tests.conftest import REPO


def write_geojson(path, features, crs="urn:ogc:def:crs:OGC:1.3:CRS84"):
    document = {"type": "FeatureCollection", "features": features}
    if crs:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(document))
    return path


def point(fid, lon, lat, key="id"):
    return {
        "type": "Feature",
        "properties": {key: fid},
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
    }


def test_reads_rand_pts_with_string_ids():
    features = load_features(REPO / "data" / "rand_pts.geojson", "id")
    assert len(features) == 24
    assert features[0].fid == "1" and features[1].fid == "3"
    assert features[0].geometry.x == pytest.approx(8.4913834)


def test_reads_polygon_and_csv(tmp_path):
    (poly,) = load_features(REPO / "data" / "banc_arguin.geojson", "id")
    assert poly.geometry.geom_type == "MultiPolygon"
    csv = tmp_path / "pts.csv"
    csv.write_text("plot,Longitude,Latitude\nA1,5.0,45.0\nA2,6.0,46.0\n")
    features = load_features(csv, "plot")
    assert [f.fid for f in features] == ["A1", "A2"] and features[1].geometry.y == 46.0


def test_projected_input_is_reprojected(tmp_path):
    path = write_geojson(
        tmp_path / "p.geojson", [point("a", 4321000.0, 3210000.0)], crs="urn:ogc:def:crs:EPSG::3035"
    )
    (feature,) = load_features(path, "id")
    assert feature.geometry.x == pytest.approx(10.0, abs=0.01)
    assert feature.geometry.y == pytest.approx(52.0, abs=0.01)


@pytest.mark.parametrize(
    "features,id_column,match",
    [
        ([point("a", 1, 2, key="name")], "id", "column 'id' not found.*name"),
        ([point("a", 1, 2), point("a", 3, 4)], "id", "duplicate.*'a'"),
        ([point(None, 1, 2)], "id", "no 'id' value"),
        ([point("../x", 1, 2), point("a b", 1, 2)], "id", r"unusable as file names.*\.\./x.*a b"),
        ([point("a", 45.0, 120.0)], "id", "outside longitude/latitude.*swapped"),
    ],
)
def test_bad_input_named(tmp_path, features, id_column, match):
    path = write_geojson(tmp_path / "v.geojson", features)
    with pytest.raises(InputError, match=match):
        load_features(path, id_column)


def test_missing_file_names_key(tmp_path):
    with pytest.raises(InputError, match="config key 'vector'.*not found"):
        load_features(tmp_path / "nope.geojson")


def test_the_array_check_flags_every_geometry_the_one_by_one_check_refuses():
    from shapely import wkt

    from sitsflow.core.features import _suspect_geometries, geometry_problem

    texts = [
        "POINT (8.5 49.8)",
        "MULTIPOINT ((1 2), (3 4))",
        "LINESTRING (0 0, 1 1)",
        "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))",
        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))",
        "POINT EMPTY",
        "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))",  # a bow tie: invalid
        "GEOMETRYCOLLECTION (POINT (0 0))",
        "LINEARRING (0 0, 1 0, 1 1, 0 0)",
        "POINT (45 120)",  # lat/lon swapped
        "LINESTRING (-179 0, 179 0)",  # across the antimeridian
        "POINT (NaN 1)",
    ]
    geometries = [wkt.loads(text) for text in texts] + [None]
    refused = [i for i, geom in enumerate(geometries) if geometry_problem(geom)]
    assert refused == list(range(5, len(geometries)))
    assert _suspect_geometries(geometries) == refused
