"""Place names and coordinates -> areas of interest: the ``geocode`` tool and its parts.

* :mod:`tools.geocode.coordinates`: coordinates written in text;
* :mod:`tools.geocode.gazetteer`: the offline GeoNames gazetteer (SQLite index);
* :mod:`tools.geocode.resolve`: place text -> one place and its AOI, offline;
* :mod:`tools.geocode.nominatim`: the same online, with Nominatim;
* :mod:`tools.geocode.tool`: arguments, the run, evidence and ``SPEC``.

The names below are the package's public API: the agents layer reads the gazetteer and the
coordinate parser to understand questions before any tool runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.lazy import lazy_getattr

if TYPE_CHECKING:
    from tools.geocode.coordinates import (
        CoordinateError,
        parse_coordinates,
        parse_coordinates_strict,
    )
    from tools.geocode.gazetteer import (
        City,
        Gazetteer,
        Region,
        fits,
        load_gazetteer,
        normalize_name,
    )
    from tools.geocode.resolve import radius_for_population
    from tools.geocode.tool import SPEC, GeocodeArgs

# Name -> the module defining it. Imported on first use (PEP 562): reading the gazetteer to
# understand a question (or refusing one) must not load shapely, pyproj and the tool.
_WHERE = {
    "CoordinateError": "coordinates",
    "parse_coordinates": "coordinates",
    "parse_coordinates_strict": "coordinates",
    "City": "gazetteer",
    "Gazetteer": "gazetteer",
    "Region": "gazetteer",
    "fits": "gazetteer",
    "load_gazetteer": "gazetteer",
    "normalize_name": "gazetteer",
    "radius_for_population": "resolve",
    "SPEC": "tool",
    "GeocodeArgs": "tool",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = [
    "SPEC",
    "City",
    "CoordinateError",
    "Gazetteer",
    "GeocodeArgs",
    "Region",
    "fits",
    "load_gazetteer",
    "normalize_name",
    "parse_coordinates",
    "parse_coordinates_strict",
    "radius_for_population",
]
