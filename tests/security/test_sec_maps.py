"""Family B: map drawing (the PNG map, the web map, the exported bundle) reads nothing the
tools refuse. Each bundle names its imagery the way a poisoned catalog item would."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.schemas import AnswerBundle, Evidence
from render.imagery import ImagerySource, compose_quicklook, imagery_sources
from render.mapping import render_map
from render.report import write_bundle
from render.webmap import build_webmap, imagery_overlays
from tests.security.servers import RecordingServer, Route, geotiff
from tools.access import AccessDenied, AccessPolicy
from tools.base import Quantity
from tools.provenance import AssetSource, Provenance, SceneSource

BOX = (-99.15, 47.01, -99.14, 47.02)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    data, outside = tmp_path / "data", tmp_path / "outside"
    geotiff(data / "good.tif", BOX, value=40)
    geotiff(outside / "secret.tif", BOX, value=250)
    return data, outside


def _bundle(href: str) -> AnswerBundle:
    w, s, e, n = BOX
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    scene = Evidence(
        id="E1",
        kind="scene",
        title="Scene poisoned",
        values={"gsd_m": Quantity(value=1.0, unit="m")},
        geometry={"type": "Polygon", "coordinates": [ring]},
        provenance=Provenance(
            tool="stac_search",
            scene=SceneSource(
                stac_item_id="poisoned",
                collection="poisoned",
                assets={"data": AssetSource(href=href, bands=["red", "green", "blue"])},
            ),
        ),
        facts={"datetime": "unknown"},
    )
    return AnswerBundle(question="water?", evidence=[scene])


def _policy(data: Path, profile: str = "offline") -> AccessPolicy:
    return AccessPolicy.build(data_dirs=[data], profile=profile)  # type: ignore[arg-type]


def _hrefs(outside: Path, srv: RecordingServer, data: Path) -> list[str]:
    with zipfile.ZipFile(data / "pack.zip", "w") as zf:
        zf.write(outside / "secret.tif", "secret.tif")
    (data / "link.tif").symlink_to(outside / "secret.tif")
    return [
        f"{srv.url}/secret.tif",
        f"/vsicurl/{srv.url}/secret.tif",
        str(outside / "secret.tif"),
        str(data / "link.tif"),
        f"/vsizip/{data / 'pack.zip'}/secret.tif",
        f"file://{outside / 'secret.tif'}",
    ]


def test_b01_b06_png_map_draws_no_poisoned_imagery(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """Six hrefs (http loopback, /vsicurl/, outside path, link out, /vsizip/, file://)."""
    data, outside = folders
    with RecordingServer({"/secret.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        for i, href in enumerate(_hrefs(outside, srv, data)):
            out = render_map(_bundle(href), tmp_path / f"m{i}.png", policy=_policy(data))
            assert out is not None, href
            assert out.imagery == [], href  # the map is drawn, without the poisoned pixels
        assert srv.requests == []


def test_b07_online_profile_still_refuses_loopback_imagery(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    data, outside = folders
    with RecordingServer({"/secret.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        out = render_map(
            _bundle(f"{srv.url}/secret.tif"), tmp_path / "m.png", policy=_policy(data, "online")
        )
        assert out is not None and out.imagery == []
        assert srv.requests == []


def test_b08_web_map_overlays_read_nothing_refused(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    with RecordingServer({"/secret.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        for href in _hrefs(outside, srv, data):
            overlays, _notes = imagery_overlays(_bundle(href), policy=_policy(data))
            assert overlays == [], href
            _m, info = build_webmap(_bundle(href), policy=_policy(data), draw=False)
            assert not any(e.style == "image" for e in info.legend), href
        assert srv.requests == []


def test_b09_web_map_uploaded_raster_outside_is_not_drawn(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    bundle = AnswerBundle(question="this image?")
    overlays, notes = imagery_overlays(
        bundle, rasters=[str(outside / "secret.tif")], policy=_policy(data)
    )
    assert overlays == [] and notes


def test_b10_exported_bundle_draws_nothing_refused(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    data, outside = folders
    written = write_bundle(
        _bundle(str(outside / "secret.tif")), tmp_path / "out", policy=_policy(data)
    )
    assert "map" in written  # the map is still drawn (its vectors), with no imagery
    # The same map as for a bundle whose href names nothing readable at all.
    blank = write_bundle(_bundle(str(data / "missing.tif")), tmp_path / "b", policy=_policy(data))
    drawn = np.asarray(Image.open(written["map"]).convert("RGB"))
    empty = np.asarray(Image.open(blank["map"]).convert("RGB"))
    assert drawn.shape == empty.shape and np.array_equal(drawn, empty)


def test_b11_scene_hrefs_override_is_checked(folders: tuple[Path, Path], tmp_path: Path) -> None:
    data, outside = folders
    out = render_map(
        _bundle(str(data / "good.tif")),
        tmp_path / "m.png",
        scene_hrefs=[str(outside / "secret.tif")],
        policy=_policy(data),
    )
    assert out is not None and out.imagery == []
    assert any("could not be read" in n for n in out.notes)


def test_b12_imagery_source_from_href_refuses(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    with pytest.raises(AccessDenied):
        ImagerySource.from_href(outside / "secret.tif", policy=_policy(data))
    # compose_quicklook on a hand-made source: the policy is applied at the read too.
    src = ImagerySource.model_validate(
        {"channels": [{"href": str(outside / "secret.tif"), "band": 1}]}
    )
    look = compose_quicklook([src], (-99.15, 47.01, -99.14, 47.02), "EPSG:4326", 64,
                             policy=_policy(data))  # fmt: skip
    assert look.used == [] and look.notes


def test_b13_control_the_allowed_image_is_drawn(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """The safe outcome is not "draw nothing": the allowed scene is drawn."""
    data, _ = folders
    assert imagery_sources(_bundle(str(data / "good.tif")), policy=_policy(data))
    out = render_map(_bundle(str(data / "good.tif")), tmp_path / "ok.png", policy=_policy(data))
    assert out is not None and out.imagery
