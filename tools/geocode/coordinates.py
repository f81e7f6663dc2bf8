"""Coordinates written in a question: "47.02 N, 99.15 W", "lat 47.02 lon -99.15", "47.02, -99.15".

They win over any place name and give a small box (see :mod:`tools.geocode.resolve`).
"""

from __future__ import annotations

import math
import re


class CoordinateError(ValueError):
    """Text that is written as coordinates but holds impossible values."""


_NUM = r"[-+−]?\d+(?:\.\d+)?"
# One angle with an optional hemisphere letter: 47.02 N, 47°01'12"N, 99.15°W.
_ANGLE = (
    rf"(?P<deg{{i}}>{_NUM})\s*[°º]?\s*"
    r"(?:(?P<min{i}>\d+(?:\.\d+)?)\s*['′]\s*)?"
    r"(?:(?P<sec{i}>\d+(?:\.\d+)?)\s*(?:\"|″|'')\s*)?"
    r"(?P<hem{i}>[NSEWOnsewo])\b"
)
_HEMI_PAIR = re.compile(_ANGLE.format(i=1) + r"\s*[,;/]?\s*" + _ANGLE.format(i=2))
_LABELLED = re.compile(
    rf"\b(?P<k1>lat(?:itude)?|lon(?:g(?:itude)?)?|lng)\s*[:=]?\s*(?P<v1>{_NUM})\s*°?\s*[,;]?\s*"
    rf"(?P<k2>lat(?:itude)?|lon(?:g(?:itude)?)?|lng)\s*[:=]?\s*(?P<v2>{_NUM})",
    re.IGNORECASE,
)
# Plain decimal pair inside a sentence ("water near 47.02, -99.15 in 2020"): decimals required
# so that "Route 66, 12 miles" is not read as coordinates.
_DECIMAL_PAIR = re.compile(
    r"(?<![\w.])(?P<a>[-+−]?\d{1,2}\.\d+)\s*[,;]\s*(?P<b>[-+−]?\d{1,3}\.\d+)(?!\w|\.\d)"
)
# The whole text is a pair of numbers, integers allowed: "47, -99", "(47.0 -99.1)".
_WHOLE_PAIR = re.compile(rf"\(?\s*(?P<a>{_NUM})\s*(?:[,;]\s*|\s+)(?P<b>{_NUM})\s*\)?")


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _angle(m: re.Match[str], i: int) -> tuple[float, str]:
    value = abs(_num(m[f"deg{i}"]))
    if m[f"min{i}"]:
        value += float(m[f"min{i}"]) / 60.0
    if m[f"sec{i}"]:
        value += float(m[f"sec{i}"]) / 3600.0
    hem = m[f"hem{i}"].upper().replace("O", "W")  # oeste / ouest / Ost is E: not read
    if hem in "SW":
        value = -value
    return value, hem


def _checked(lon: float, lat: float) -> tuple[float, float]:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise CoordinateError(f"latitude {lat:g} is outside -90..90")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise CoordinateError(f"longitude {lon:g} is outside -180..180")
    return lon, lat


def parse_coordinates_strict(text: str) -> tuple[float, float] | None:
    """(lon, lat) from text, None when it holds no coordinates; CoordinateError when invalid.

    Accepted: "47.02 N, 99.15 W" (any order, with degrees/minutes/seconds), "lat 47.02 lon
    -99.15" (any order), and plain pairs "47.02, -99.15", read as latitude, longitude (the
    order of ISO 6709 and map apps). Plain pairs are found inside sentences only when both
    numbers have decimals.
    """
    m = _HEMI_PAIR.search(text)
    if m:
        (a, ha), (b, hb) = _angle(m, 1), _angle(m, 2)
        if ha in "NS" and hb in "EW":
            return _checked(b, a)
        if ha in "EW" and hb in "NS":
            return _checked(a, b)
        raise CoordinateError("one coordinate must be N/S and the other E/W")
    m = _LABELLED.search(text)
    if m:
        vals = {m["k1"].lower()[:2]: _num(m["v1"]), m["k2"].lower()[:2]: _num(m["v2"])}
        if set(vals) == {"la", "lo"} or set(vals) == {"la", "ln"}:
            lon = vals.get("lo", vals.get("ln"))
            assert lon is not None
            return _checked(lon, vals["la"])
        raise CoordinateError("give one latitude and one longitude")
    m = _WHOLE_PAIR.fullmatch(text.strip()) or _DECIMAL_PAIR.search(text)
    if m:
        return _checked(_num(m["b"]), _num(m["a"]))
    return None


def parse_coordinates(text: str) -> tuple[float, float] | None:
    """(lon, lat) found in text, or None (also when the numbers are out of range).

    Safe to call on a whole question; see :func:`parse_coordinates_strict` for the forms.
    """
    try:
        return parse_coordinates_strict(text)
    except CoordinateError:
        return None
