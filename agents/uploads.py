"""Rasters people upload in the app: checked before any tool sees them.

Only GeoTIFF (Cloud-Optimized or not) is accepted, opened with GDAL's GTiff driver alone so
that no other format driver parses an untrusted file; size, header bytes, georeference and
pixel count are checked, and every refusal says what to do instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tools.access import AccessPolicy
from tools.base import GeoScoutToolError

MAX_UPLOAD_MB = 200
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF and BigTIFF
_SUFFIXES = (".tif", ".tiff")


def default_upload_dir(settings: Any) -> Path:
    """Where the app stores uploads (beside the cache: ``.geoscout/uploads``)."""
    # Absolute: a relative path would later be read against the data folders (the upload
    # then "does not exist" while the app shows it).
    return (Path(settings.cache_dir).parent / "uploads").resolve()


def access_policy(settings: Any, upload_dirs: Iterable[str | Path] = ()) -> AccessPolicy:
    """The access policy of the agents layer (map drawing, the web map, exports), from
    settings: the same folders, profile, endpoints and timeout as the tools get."""
    return AccessPolicy.build(
        data_dirs=settings.existing_data_dirs(),
        upload_dirs=[default_upload_dir(settings), *upload_dirs],
        profile=settings.profile,
        endpoints=[
            settings.stac_url,
            settings.nominatim_url,
            settings.overpass_url,
            settings.vlm_base_url,
        ],
        http_timeout_s=settings.http_timeout_s,
    )


def default_access_policy() -> AccessPolicy:
    """The policy for callers that pass none (the app's map): from the current settings;
    when they cannot be read, the sample data only."""
    from pydantic import ValidationError

    from agents.settings import load_settings

    try:
        return access_policy(load_settings())
    except (ValidationError, OSError, ValueError):
        return AccessPolicy.build()


class UploadError(ValueError):
    """A file the app will not analyse; the message is for the person who sent it."""


class UploadedRaster(BaseModel):
    path: str
    name: str
    size_bytes: int
    width: int
    height: int
    bands: int
    dtype: str
    crs: str
    bounds_lonlat: tuple[float, float, float, float]
    cloud_optimized: bool

    def describe(self) -> str:
        cog = "Cloud-Optimized GeoTIFF" if self.cloud_optimized else "GeoTIFF"
        w, s, e, n = self.bounds_lonlat
        return (
            f"{self.name}: {cog}, {self.width:,} x {self.height:,} pixels, {self.bands} band(s) "
            f"of {self.dtype}, {self.crs}, {s:.4f}..{n:.4f} N, {w:.4f}..{e:.4f} E"
        )


def save_upload(
    name: str,
    data: bytes,
    upload_dir: Path,
    *,
    max_mb: float = MAX_UPLOAD_MB,
    max_pixels: int | None = None,
) -> UploadedRaster:
    """Check an uploaded file and store it under ``upload_dir``; raise UploadError if unfit."""
    shown = re.sub(r"[^\w.\- ]", "_", Path(name or "upload").name)[:80] or "upload"
    if not data:
        raise UploadError(f"{shown} is empty.")
    if len(data) > max_mb * 1024 * 1024:
        raise UploadError(
            f"{shown} is {len(data) / 1e6:,.0f} MB; the limit is {max_mb:g} MB. "
            "Crop it to the area you are asking about first."
        )
    if not shown.lower().endswith(_SUFFIXES):
        raise UploadError(
            f"{shown} is not a GeoTIFF. Upload a .tif or .tiff file (GeoTIFF or "
            "Cloud-Optimized GeoTIFF); convert other formats with gdal_translate."
        )
    if not data.startswith(_TIFF_MAGIC):
        raise UploadError(f"{shown} is named .tif but is not a TIFF file.")

    upload_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    # The stored name is ours (hash): nothing of the sent name reaches a path.
    path = upload_dir.resolve() / f"upload-{digest}.tif"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    try:
        info = _inspect(path, shown, len(data), max_pixels)
    except UploadError:
        path.unlink(missing_ok=True)
        raise
    return info


def _inspect(path: Path, shown: str, size: int, max_pixels: int | None) -> UploadedRaster:
    from rasterio.errors import RasterioError
    from rasterio.warp import transform_bounds

    policy = AccessPolicy.build(upload_dirs=[path.parent])
    try:
        # Through the access policy: GTiff only (the TIFF magic was checked), inside the
        # upload folder, so a crafted file cannot route itself to another GDAL driver.
        with policy.open_raster(str(path), budget=False) as ds:
            if ds.crs is None or ds.transform.is_identity:
                raise UploadError(
                    f"{shown} has no georeference (no coordinate system or no position), so "
                    "GeoScout cannot tell where it is. Upload a georeferenced GeoTIFF."
                )
            if max_pixels and ds.width * ds.height > max_pixels * 25:
                raise UploadError(
                    f"{shown} has {ds.width * ds.height:,} pixels, too many to analyse here. "
                    "Crop it to the area you are asking about first."
                )
            # A small decimated read: a truncated or badly compressed file fails here, now.
            ds.read(1, out_shape=(min(ds.height, 16), min(ds.width, 16)))
            w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
            overviews = ds.overviews(1) if ds.count else []
            tiled = bool(ds.profile.get("tiled", False))
            return UploadedRaster(
                path=str(path),
                name=shown,
                size_bytes=size,
                width=ds.width,
                height=ds.height,
                bands=ds.count,
                dtype=str(ds.dtypes[0]) if ds.count else "none",
                crs=ds.crs.to_string(),
                bounds_lonlat=(float(w), float(s), float(e), float(n)),
                cloud_optimized=tiled and bool(overviews),
            )
    except UploadError:
        raise
    except (RasterioError, ValueError, OSError, GeoScoutToolError) as exc:
        raise UploadError(
            f"{shown} could not be read as a GeoTIFF ({type(exc).__name__}). "
            "It may be damaged or use an unsupported compression."
        ) from None
