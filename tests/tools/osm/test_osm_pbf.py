"""OSM PBF extracts (tools.osm.sources / tools.osm.reading): the same extract as XML and as
PBF gives the same source extent and timestamp, and the same figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import osmium
import pytest

from tools.base import ToolContext
from tools.osm.sources import local_sources
from tools.osm.tool import SPEC


def _as_pbf(xml: Path, pbf: Path) -> None:
    """The extract re-encoded as PBF with pyosmium, its <bounds> kept as the header box."""
    reader = osmium.io.Reader(str(xml), osmium.osm.osm_entity_bits.NOTHING)
    box = reader.header().box()
    reader.close()
    header = osmium.io.Header()
    header.add_box(box)
    with osmium.SimpleWriter(str(pbf), header=header) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)


@pytest.fixture
def pair(data_dir: Path, tmp_path: Path) -> tuple[ToolContext, ToolContext]:
    src = data_dir / "osm" / "memmingen.osm"
    xml_dir, pbf_dir = tmp_path / "xml", tmp_path / "pbf"
    xml_dir.mkdir()
    pbf_dir.mkdir()
    shutil.copy(src, xml_dir / src.name)
    _as_pbf(src, pbf_dir / "memmingen.osm.pbf")
    return (
        ToolContext(data_dirs=(xml_dir,), cache_dir=tmp_path / "cache-xml"),
        ToolContext(data_dirs=(pbf_dir,), cache_dir=tmp_path / "cache-pbf"),
    )


def test_pbf_source_has_the_extent_and_timestamp_of_the_xml(
    pair: tuple[ToolContext, ToolContext],
) -> None:
    (xml,), (pbf,) = local_sources(pair[0]), local_sources(pair[1])
    assert (xml.fmt, pbf.fmt) == ("osm_xml", "osm_pbf")
    assert pbf.extent.bounds == pytest.approx(xml.extent.bounds, abs=1e-7)
    assert pbf.timestamp == xml.timestamp and pbf.timestamp
    assert pbf.attribution == xml.attribution


def test_pbf_gives_the_figures_of_the_xml(pair: tuple[ToolContext, ToolContext]) -> None:
    (src,) = local_sources(pair[0])
    w, s, e, n = src.extent.bounds
    for aoi in ([w, s, e, n], [w, s, (w + e) / 2, (s + n) / 2]):
        args = {"aoi": aoi, "features": ["buildings", "roads", "amenity"]}
        a, b = SPEC.invoke(args, pair[0]), SPEC.invoke(args, pair[1])
        assert a.status == b.status == "ok", (a.error, b.error)
        assert [e.values for e in a.evidence] == [e.values for e in b.evidence]
        assert b.evidence[0].values["building_count"].value > 0
        assert b.evidence[0].provenance.sources[0].format == "osm_pbf"
