"""Figures in the units the user asked for (hectares, acres, square miles, miles, ...).

Conversions are added to the evidence itself (``water_area_ha`` beside ``water_area_km2``),
so the answer states a number its cited evidence holds and the output guard can check it.
The factors are the exact definitions (international acre and mile).
"""

from __future__ import annotations

from agents.intent import Intent
from agents.schemas import Evidence
from tools.base import Quantity
from tools.numbers import sig

AREA_PER_KM2 = {"ha": 100.0, "acre": 247.10538146717, "mi2": 0.38610215854245, "m2": 1e6}
LENGTH_PER_KM = {"mi": 0.62137119223733, "m": 1000.0}
UNIT_LABEL = {"ha": "ha", "acre": "acres", "mi2": "square miles", "m2": "m²", "mi": "miles",
              "m": "m", "km2": "km²", "km": "km"}  # fmt: skip


def to_km2(value: float, unit: str) -> float:
    """``value`` in ``unit`` (km2, ha, acre, mi2, m2) as km²."""
    return value if unit == "km2" else value / AREA_PER_KM2[unit]


def to_km(value: float, unit: str) -> float:
    """``value`` in ``unit`` (km, mi, m) as km."""
    return value if unit == "km" else value / LENGTH_PER_KM[unit]


def add_requested_units(ledger: list[Evidence], intent: Intent | None) -> None:
    """Add the asked-for unit beside every km² / km value of the ledger (in place)."""
    if intent is None:
        return
    for ev in ledger:
        extra: dict[str, Quantity] = {}
        for key, qv in ev.values.items():
            unit = (
                intent.area_unit
                if qv.unit == "km2"
                else intent.length_unit
                if qv.unit == "km"
                else None
            )
            if unit is None or unit in ("km2", "km"):
                continue
            factor = AREA_PER_KM2.get(unit) if qv.unit == "km2" else LENGTH_PER_KM.get(unit)
            if factor is None:
                continue
            base = (
                key[: -len("_km2")]
                if key.endswith("_km2")
                else key[: -len("_km")]
                if key.endswith("_km")
                else key
            )
            extra[f"{base}_{unit}"] = Quantity(
                value=sig(qv.value * factor, keep_whole=True),
                unit=unit,
                uncertainty=sig(qv.uncertainty * factor, keep_whole=True)
                if qv.uncertainty
                else None,
                note=f"converted from {key} ({qv.unit}) at 1 {qv.unit} = {factor:g} {unit}",
            )
        ev.values.update(extra)


def requested_key(ev: Evidence, key: str, intent: Intent | None) -> str:
    """The key holding ``key``'s value in the asked-for unit, when it was added."""
    if intent is None:
        return key
    for suffix, unit in (("_km2", intent.area_unit), ("_km", intent.length_unit)):
        if unit and key.endswith(suffix):
            alt = f"{key[: -len(suffix)]}_{unit}"
            if alt in ev.values:
                return alt
    return key
