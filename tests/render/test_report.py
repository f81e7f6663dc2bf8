"""The bundle export: bundle.json, layers.geojson, map.png, report.md (render/report.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping, shape

import render.report as report
from agents.schemas import (
    Answer,
    AnswerBundle,
    Clarification,
    Cost,
    Evidence,
    GuardResult,
    LLMUsage,
    PlanStep,
    TraceEntry,
)
from render.report import md_answer, md_escape, report_markdown, write_bundle
from tools.base import Quantity
from tools.provenance import AssetSource, ModelSource, Provenance, SceneSource, VectorSource

OSM = "© OpenStreetMap contributors, ODbL 1.0"
SCRIPT = "<script>alert('x')</script>"
JS_LINK = "[click me](javascript:alert(1))"
IMG = "![pixel](https://evil.example/p.png)"


def _unescaped_link(text: str) -> bool:
    """A Markdown inline link or image: '](' not preceded by a backslash-escaped ']'."""
    return re.search(r"(?<!\\)\]\(", text) is not None


@pytest.fixture(scope="module")
def joplin_bundle(data_dir: Path) -> AnswerBundle:
    tile = data_dir / "joplin" / "post_tile_31500-5137.tif"
    footprints = data_dir / "joplin" / "buildings_microsoft.geojson"
    if not tile.is_file() or not footprints.is_file():
        pytest.skip("the Joplin sample data is missing")
    with rasterio.open(tile) as ds:
        bounds = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    area = box(*bounds)
    scene = SceneSource(
        stac_item_id="post_tile_31500-5137",
        collection="joplin-post-event",
        datetime="2011-05-24T00:00:00Z",
        gsd=0.6,
        assets={"data": AssetSource(href=str(tile), bands=["red", "green", "blue"])},
    )
    geoms = [
        f["geometry"]
        for f in json.loads(footprints.read_text())["features"]
        if area.contains(shape(f["geometry"]))
    ][:12]
    evidence = [
        Evidence(
            id="E1",
            kind="place",
            title="Joplin, Missouri",
            geometry=mapping(area),
            provenance=Provenance(tool="geocode", source="GeoNames", license="CC-BY-4.0"),
        ),
        Evidence(
            id="E2",
            kind="scene",
            title="Scene post_tile_31500-5137 (joplin-post-event, 2011-05-24, 0.6 m)",
            geometry=mapping(area),
            values={"gsd_m": Quantity(value=0.6, unit="m")},
            provenance=Provenance(tool="stac_search", scene=scene, license="other"),
        ),
        Evidence(
            id="E3",
            kind="features",
            title=f"{SCRIPT} buildings {JS_LINK}",
            values={
                "feature_count": Quantity(value=len(geoms), unit="count"),
                "footprint_area_km2": Quantity(value=0.0123, unit="km2", uncertainty=0.001),
            },
            facts={"data_timestamp": "unknown", "feature_type": "buildings"},
            provenance=Provenance(
                tool="osm_overlay",
                sources=[VectorSource(name="buildings_microsoft.geojson", timestamp="unknown")],
                attribution="Microsoft Building Footprints (ODbL 1.0); " + OSM,
            ),
            caveats=["Footprints date from 2020, nine years after the tornado."],
        ),
        Evidence(
            id="E4",
            kind="mask",
            title="Debris mask of post_tile_31500-5137",
            values={"debris_area_km2": Quantity(value=0.0345, unit="km2", uncertainty=0.004)},
            provenance=Provenance(
                tool="segment",
                scene=scene,
                model=ModelSource(
                    name="tiny-segformer",
                    version="1.0",
                    license="Apache-2.0",
                    weights_sha256="ab" * 32,
                ),
            ),
        ),
    ]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": g,
            "properties": {"evidence_id": "E3", "kind": "features", "label": "buildings"},
        }
        for g in geoms
    ]
    features.append(
        {
            "type": "Feature",
            "geometry": mapping(box(*shape(geoms[0]).buffer(0.0002).bounds)),
            "properties": {
                "evidence_id": "E4",
                "kind": "mask",
                "label": "debris",
                "class": "debris",
            },
        }
    )
    return AnswerBundle(
        question="Which buildings in Joplin were damaged by the 2011 tornado?",
        answer=Answer(
            text=(
                f"There are {len(geoms)} building footprints in the tile [E3], seen on a "
                "2011-05-24 image [E2]; debris covers 0.0345 km² [E4].\n"
                f"- a bullet with {SCRIPT} and {IMG}"
            ),
            citations=["E2", "E3", "E4"],
            caveats=["The damage mask is a model's output, not a survey."],
        ),
        evidence=evidence,
        plan=[
            PlanStep(id="s1", tool="geocode", args={"place": "Joplin"}, why="find the town"),
            PlanStep(
                id="s2", tool="stac_search", args={"aoi": "@s1.aoi"}, needs=["s1"], why="imagery"
            ),
        ],
        trace=[
            TraceEntry(step="s1", tool="geocode", status="ok", seconds=0.12, summary="found"),
            TraceEntry(
                step="s2",
                tool="ground",
                status="unavailable",
                seconds=0.01,
                error=f"no VLM {SCRIPT}",
                error_code="unavailable",
                hint="configure GEOSCOUT_VLM_URL",
            ),
        ],
        layers={"type": "FeatureCollection", "features": features},
        cost=Cost(
            seconds=4.25,
            steps={"plan": 0.5, "s1": 0.12},
            llm=LLMUsage(prompt_tokens=1234, completion_tokens=56, model="qwen2.5-coder-1.5b"),
            energy_wh=0.071,
            co2e_g=0.0284,
            method="CPU package power x wall time; grid 400 g CO2e/kWh",
        ),
        guardrails=[
            GuardResult(name="input.scope", passed=True, detail="geospatial question"),
            GuardResult(name="output.numbers", passed=False, detail="revised once"),
        ],
        created="2026-11-24T12:00:00Z",
    )


def test_write_bundle_writes_all_four_files(joplin_bundle: AnswerBundle, tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    written = write_bundle(joplin_bundle, out)
    assert set(written) == {"bundle", "layers", "map", "report"}
    assert sorted(p.name for p in out.iterdir()) == [
        "bundle.json",
        "layers.geojson",
        "map.png",
        "report.md",
    ], "no temporary files are left behind"

    again = AnswerBundle.model_validate_json(written["bundle"].read_text())
    assert again.model_dump(mode="json") == joplin_bundle.model_dump(mode="json")

    fc = json.loads(written["layers"].read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc and len(fc["bbox"]) == 4
    for feat in fc["features"]:
        geom = shape(feat["geometry"])
        for poly in getattr(geom, "geoms", [geom]):
            assert poly.exterior.is_ccw

    with Image.open(written["map"]) as png:
        assert png.format == "PNG" and png.size[0] >= 800
        assert png.convert("L").getextrema()[1] - png.convert("L").getextrema()[0] > 100


def test_report_cites_and_escapes(joplin_bundle: AnswerBundle, tmp_path: Path) -> None:
    md = write_bundle(joplin_bundle, tmp_path)["report"].read_text()
    for cite in ("[E2]", "[E3]", "[E4]"):
        assert cite in md
    # Tool text never becomes HTML, a link or an image.
    assert "<script" not in md.lower() and "<" not in md.replace("&lt;", "")
    assert "&lt;script&gt;" in md
    assert not _unescaped_link(
        md.replace("![Map of the evidence layers](map.png)", "")
        .replace("[layers.geojson](layers.geojson)", "")
        .replace("[bundle.json](bundle.json)", "")
    )
    assert "![pixel]" not in md
    assert "javascript:" not in md.lower()
    assert "![Map of the evidence layers](map.png)" in md
    # The evidence table: values with units, sources with dates, models with licenses.
    assert "feature\\_count: 12" in md
    assert "0.0123 ± 0.001 km²" in md
    assert "post\\_tile\\_31500-5137 (joplin-post-event), 2011-05-24, 0.6 m GSD" in md
    assert "tiny-segformer 1.0, license Apache-2.0, weights sha256 abababababab" in md
    assert OSM in md and "Microsoft Building Footprints (ODbL 1.0)" in md
    # Caveats, plan, trace, cost and guardrails.
    assert "The damage mask is a model's output" in md
    assert "E3: Footprints date from 2020" in md
    assert "| s2 | stac\\_search | s1 |" in md
    assert "| s2 | ground | unavailable | 0.01 |" in md
    assert "hint: configure GEOSCOUT\\_VLM\\_URL" in md
    assert "1,234 prompt tokens" in md and "56 completion tokens" in md
    assert "0.071 Wh" in md and "0.0284 g CO2e" in md
    assert "grid 400 g CO2e/kWh" in md
    assert "| output.numbers | **failed** | revised once |" in md
    # Tables stay tables: every row of the evidence table has the same number of cells.
    rows = [line for line in md.splitlines() if line.startswith("| E")]
    assert len(rows) == 4
    assert {len(re.findall(r"(?<!\\)\|", r)) for r in rows} == {8}


def test_refused_bundle_has_no_map(joplin_bundle: AnswerBundle, tmp_path: Path) -> None:
    write_bundle(joplin_bundle, tmp_path)
    assert (tmp_path / "map.png").exists()
    refused = AnswerBundle(
        question="Where does my ex live now?",
        refused=True,
        refusal_reason=f"Tracking people is out of scope {SCRIPT}",
    )
    written = write_bundle(refused, tmp_path)
    assert "map" not in written
    assert not (tmp_path / "map.png").exists(), "the map of the earlier answer is removed"
    md = written["report"].read_text()
    assert "## Declined" in md and "Tracking people is out of scope" in md
    assert "<script" not in md
    assert AnswerBundle.model_validate_json(written["bundle"].read_text()).refused
    assert json.loads(written["layers"].read_text())["features"] == []


def test_clarification_lists_candidates(tmp_path: Path) -> None:
    bundle = AnswerBundle(
        question="How much water is near Springfield?",
        clarification=Clarification(
            question="Which Springfield do you mean?",
            candidates=["Springfield, Illinois", "Springfield, *Missouri*"],
        ),
    )
    written = write_bundle(bundle, tmp_path)
    assert "map" not in written
    md = written["report"].read_text()
    assert "## A question back" in md
    assert "- Springfield, Illinois" in md and "- Springfield, \\*Missouri\\*" in md


def test_map_failure_still_writes_the_report(
    joplin_bundle: AnswerBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("drawing bug")

    monkeypatch.setattr(report, "render_map", broken)
    written = write_bundle(joplin_bundle, tmp_path)
    assert "map" not in written and not (tmp_path / "map.png").exists()
    md = written["report"].read_text()
    assert "The map could not be drawn" in md and "drawing bug" not in md


def test_no_located_evidence_says_so(tmp_path: Path) -> None:
    bundle = AnswerBundle(
        question="What is 2 + 2 in hectares?",
        answer=Answer(text="Nothing to measure."),
        evidence=[
            Evidence(id="E1", kind="figure", title="nothing", provenance=Provenance(tool="merge"))
        ],
    )
    md = write_bundle(bundle, tmp_path)["report"].read_text()
    assert "No map: no evidence item has a location." in md


def test_md_escape_neutralises_markup() -> None:
    assert md_escape(SCRIPT) == "&lt;script&gt;alert('x')&lt;/script&gt;"
    assert not _unescaped_link(md_escape(JS_LINK))
    assert "javascript:" not in md_escape(JS_LINK)
    assert not _unescaped_link(md_escape(IMG))
    assert md_escape("a | b") == "a \\| b"
    assert md_escape("# title") == "\\# title"
    assert md_escape("- item") == "\\- item"
    assert md_escape("1. first") == "1\\. first"
    assert md_escape("line\nbreak\ttab") == "line break tab"
    assert md_escape("x" * 50, limit=10) == "x" * 9 + "…"
    assert md_escape("&lt;b&gt;") == "&amp;lt;b&amp;gt;"


def test_md_answer_keeps_citations_and_bullets() -> None:
    text = "Water covers 1.2 km² [E3] and [E4, E5].\n- from *scene* [E2]\n# not a heading"
    md = md_answer(text)
    assert "[E3]" in md and "[E4, E5]" in md and "[E2]" in md
    assert "\n- from \\*scene\\* [E2]" in md
    assert "\n\\# not a heading" in md


def test_report_markdown_without_map() -> None:
    bundle = AnswerBundle(question="q", answer=Answer(text="A [E1]."))
    md = report_markdown(bundle)
    assert "## Map" not in md and "A [E1]." in md and md.endswith("\n")
