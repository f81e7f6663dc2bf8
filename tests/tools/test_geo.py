"""Liberal-in, strict-out argument types."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import shape

from tools.geo import AOI, DateRange, parse_bbox, parse_date_range, to_rfc7946


@pytest.mark.parametrize(
    "value",
    [
        [-94.5, 37.06, -94.48, 37.08],
        "-94.5,37.06,-94.48,37.08",
        "[-94.5 37.06 -94.48 37.08]",
        {"bbox": (-94.5, 37.06, -94.48, 37.08)},
    ],
)
def test_bbox_forms(value: object) -> None:
    assert parse_bbox(value) == (-94.5, 37.06, -94.48, 37.08)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0, 95, 1, 96], "latitude"),
        ([10, 0, 5, 1], "west"),
        ([0, 0, 0, 1], "zero"),
        ([0, 1, 2], "four"),
        (["a", 0, 1, 1], "numbers"),
        ([0, 5, 1, 2], "south"),
        ([200, 0, 201, 1], "longitude"),
    ],
)
def test_bad_bboxes_explain_themselves(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bbox(value)


@given(st.floats(-180, 179), st.floats(-90, 89), st.floats(0.001, 1), st.floats(0.001, 1))
def test_valid_bboxes_round_trip(w: float, s: float, dw: float, dh: float) -> None:
    e, n = min(w + dw, 180.0), min(s + dh, 90.0)
    if e <= w or n <= s:
        return
    aoi = AOI.model_validate([w, s, e, n])
    assert aoi.bbox == (w, s, e, n)
    assert aoi.area_km2() > 0


def test_aoi_from_geojson_is_ccw_and_has_bbox() -> None:
    cw = {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]}
    aoi = AOI.model_validate({"type": "Feature", "geometry": cw, "properties": {"name": "x"}})
    assert aoi.bbox == (0, 0, 1, 1) and aoi.name == "x"
    assert aoi.geometry is not None and shape(aoi.geometry).exterior.is_ccw


def test_aoi_around_scales_with_radius() -> None:
    small, big = AOI.around(-94.5, 37.08, 2), AOI.around(-94.5, 37.08, 20)
    assert (
        14 < small.area_km2() < 18
        and 95 * small.area_km2() < big.area_km2() < 105 * small.area_km2()
    )


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2020", "2020-01-01", "2020-12-31"),
        ("summer 2019", "2019-06-01", "2019-08-31"),
        ("May 2011", "2011-05-01", "2011-05-31"),
        ("2019-06-01/2019-08-31", "2019-06-01", "2019-08-31"),
        ("2009 to 2020", "2009-01-01", "2020-12-31"),
        ("from may 2011", "2011-05-01", None),
        ("after 2011-05-22", "2011-05-23", None),
        ("before 2011", None, "2010-12-31"),
        ("2019-06", "2019-06-01", "2019-06-30"),
        ("24 May 2011", "2011-05-24", "2011-05-24"),
        ("winter 2019", "2019-12-01", "2020-02-29"),
    ],
)
def test_date_forms(text: str, start: str | None, end: str | None) -> None:
    r = parse_date_range(text)
    assert (r.start.isoformat() if r.start else None) == start
    assert (r.end.isoformat() if r.end else None) == end


def test_bad_dates() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_date_range("the day after tomorrow")
    with pytest.raises(ValueError):
        DateRange.model_validate("2020-02-30")
    with pytest.raises(ValueError, match="starts"):
        DateRange(start=dt.date(2020, 1, 2), end=dt.date(2020, 1, 1))


def test_stac_interval() -> None:
    assert DateRange.model_validate("2020").to_stac() == "2020-01-01T00:00:00Z/2020-12-31T23:59:59Z"
    assert DateRange.model_validate("from may 2011").to_stac().endswith("/..")


def test_rfc7946_orients_multipolygons() -> None:
    from shapely.geometry import MultiPolygon, Polygon

    mp = MultiPolygon([Polygon([(0, 0), (0, 1), (1, 1)]), Polygon([(2, 2), (2, 3), (3, 3)])])
    out = to_rfc7946(mp)
    assert all(p.exterior.is_ccw for p in shape(out).geoms)


def test_utm_crs_matches_the_six_degree_grid() -> None:
    from pyproj import CRS
    from shapely.geometry import Point

    from tools.geo import utm_crs

    def grid(lon: float, lat: float) -> int:
        if not -80.0 <= lat <= 84.0:
            return 6933
        zone = min(int((lon + 180.0) // 6.0) + 1, 60)
        return (32600 if lat >= 0 else 32700) + zone

    points = [(-94.51, 37.07), (32.59, 0.35), (-122.3, 37.8), (10.07, 48.14), (151.2, -33.9)]
    edges = [(0.0, 0.0), (6.0, -10.0), (12.0, 50.0), (180.0, 10.0), (0.0, -80.0), (3.0, 84.5)]
    for lon, lat in points + edges:
        assert utm_crs(Point(lon, lat)) == CRS.from_epsg(grid(lon, lat)), (lon, lat)
