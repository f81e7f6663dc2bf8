"""The evidence bundle as downloadable files (the same files as `geoscout ask --out`)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from agents.schemas import AnswerBundle
from render.imagery import imagery_sources
from render.report import write_bundle


def bundle_rasters(bundle: AnswerBundle) -> list[str]:
    """Rasters a plan named directly (an uploaded GeoTIFF) that still exist on disk."""
    out = []
    for step in bundle.plan:
        value = step.args.get("raster")
        if isinstance(value, str) and not value.startswith("@") and Path(value).is_file():
            out.append(value)
    return list(dict.fromkeys(out))


def bundle_files(bundle: AnswerBundle) -> dict[str, bytes]:
    """{file name: content}: bundle.json, layers.geojson, map.png (when drawn), report.md."""
    rasters = bundle_rasters(bundle)
    # An uploaded raster is drawn only when the evidence names no imagery of its own.
    scene_hrefs = rasters if rasters and not imagery_sources(bundle) else None
    with tempfile.TemporaryDirectory(prefix="geoscout-export-") as tmp:
        written = write_bundle(bundle, Path(tmp), scene_hrefs=scene_hrefs)
        return {path.name: path.read_bytes() for path in written.values()}


def zip_files(files: dict[str, bytes]) -> bytes:
    """The files in one zip, under a folder so that unpacking does not scatter them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"geoscout-answer/{name}", data)
    return buf.getvalue()


def bundle_zip(bundle: AnswerBundle) -> bytes:
    return zip_files(bundle_files(bundle))
