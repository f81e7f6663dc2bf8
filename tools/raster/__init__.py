"""Raster reading for tools: scene assets onto one grid, radiometry, path safety, quicklooks.

* :mod:`tools.raster.radiometry`: how a product's file values become reflectance;
* :mod:`tools.raster.grid`: ground metres per CRS unit, north-up grids, reprojection;
* :mod:`tools.raster.files`: opening files under the access policy, a scene for a raster
  given by path;
* :mod:`tools.raster.read`: bands onto one grid over the AOI (windowed, within the pixel
  budget), display reads for maps, AOI masks;
* :mod:`tools.raster.quicklook`: an 8-bit true-colour picture in EPSG:4326 for maps.

The names below are the package's public API (tools, the render layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.lazy import lazy_getattr

if TYPE_CHECKING:
    from tools.raster.files import (
        is_remote,
        open_asset,
        resolve_local_path,
        scene_from_raster,
    )
    from tools.raster.grid import (
        WGS84,
        Bounds,
        Grid,
        geometry_to_4326,
        geometry_to_crs,
        metres_per_unit,
    )
    from tools.raster.quicklook import Quicklook, read_quicklook
    from tools.raster.radiometry import Radiometry, RadiometryKind, radiometry_for
    from tools.raster.read import (
        MAX_COARSEN,
        BandStack,
        aoi_mask,
        band_location,
        read_bands,
        read_for_display,
    )

# Name -> the module defining it. Imported on first use (PEP 562): checking a scene's
# radiometry or whether an href is remote must not load the band readers and quicklooks.
_WHERE = {
    "is_remote": "files",
    "open_asset": "files",
    "resolve_local_path": "files",
    "scene_from_raster": "files",
    "WGS84": "grid",
    "Bounds": "grid",
    "Grid": "grid",
    "geometry_to_4326": "grid",
    "geometry_to_crs": "grid",
    "metres_per_unit": "grid",
    "Quicklook": "quicklook",
    "read_quicklook": "quicklook",
    "Radiometry": "radiometry",
    "RadiometryKind": "radiometry",
    "radiometry_for": "radiometry",
    "MAX_COARSEN": "read",
    "BandStack": "read",
    "aoi_mask": "read",
    "band_location": "read",
    "read_bands": "read",
    "read_for_display": "read",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = [
    "MAX_COARSEN",
    "WGS84",
    "BandStack",
    "Bounds",
    "Grid",
    "Quicklook",
    "Radiometry",
    "RadiometryKind",
    "aoi_mask",
    "band_location",
    "geometry_to_4326",
    "geometry_to_crs",
    "is_remote",
    "metres_per_unit",
    "open_asset",
    "radiometry_for",
    "read_bands",
    "read_for_display",
    "read_quicklook",
    "resolve_local_path",
    "scene_from_raster",
]
