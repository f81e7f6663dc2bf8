"""tools.numbers: the one significant-figure rounding of the tools."""

from __future__ import annotations

import math

import pytest

from tools.numbers import sig


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (0.0012345, 3, 0.00123),
        (1.2345, 3, 1.23),
        (12345.0, 3, 12300.0),  # large numbers are rounded too
        (-98765.0, 2, -99000.0),
        (2730.4, 3, 2730.0),
        (0.0, 3, 0.0),
    ],
)
def test_sig(value: float, digits: int, expected: float) -> None:
    assert sig(value, digits) == expected
    assert isinstance(sig(value, digits), float)


def test_sig_keeps_missing_values_missing() -> None:
    assert math.isnan(sig(math.nan))
    assert sig(math.inf) == math.inf


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12345.0, 12345.0), (-987.65, -988.0), (0.012345, 0.0123), (5.4321, 5.43)],
)
def test_sig_keep_whole_never_rounds_the_whole_part(value: float, expected: float) -> None:
    assert sig(value, keep_whole=True) == expected
