"""Number formatting shared by the tools: one rounding rule for every figure they report."""

from __future__ import annotations

import math


def sig(value: float, digits: int = 3, *, keep_whole: bool = False) -> float:
    """``value`` rounded to ``digits`` significant figures, as a float.

    Large numbers are rounded too (12345 -> 12300.0 at 3 digits): a measured area or length
    carries no more precision than its method. With ``keep_whole`` the whole-number part is
    never rounded (12345 stays 12345.0): for figures a person checks against a count or a
    pixel total. Zero and non-finite values come back as they are, so a missing figure stays
    visibly missing (NaN) instead of turning into zero.
    """
    if value == 0 or not math.isfinite(value):
        return float(value)
    places = digits - 1 - math.floor(math.log10(abs(value)))
    return float(round(value, max(0, places) if keep_whole else places))
