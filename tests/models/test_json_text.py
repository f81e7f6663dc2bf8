"""The one lenient JSON reader shared by the planner, the writer and the VLM parser."""

from __future__ import annotations

from typing import Any

import pytest

from models.json_text import json_values, parse_json_lenient


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure! {"a": "}"} and more {"b": 2}', {"a": "}"}),
        ('junk { not json } then {"c": true}', {"c": True}),
        ('He said "hi {" then {"a": 1}', {"a": 1}),
        ('a [list] first, then {"x": [1, {"y": 2}]}', {"x": [1, {"y": 2}]}),
    ],
)
def test_first_object(text: str, expected: Any) -> None:
    assert parse_json_lenient(text, openers="{") == expected


def test_lists_count_when_asked() -> None:
    assert parse_json_lenient("boxes: [[1, 2, 3, 4]] done") == [[1, 2, 3, 4]]
    with pytest.raises(ValueError):
        parse_json_lenient("boxes: [[1, 2, 3, 4]] done", openers="{")


def test_truncated_list_gives_its_complete_items() -> None:
    text = '[{"a": 1}, {"b": [2, 3]}, {"c": [4, '
    assert list(json_values(text)) == [{"a": 1}, {"b": [2, 3]}]


def test_values_do_not_overlap() -> None:
    assert list(json_values('x {"a": {"b": 1}} y [1] z')) == [{"a": {"b": 1}}, [1]]


@pytest.mark.parametrize("text", ["I cannot help with that.", "", "{ not json }", "[1, 2"])
def test_no_json_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json_lenient(text)


def test_deeply_unclosed_text_is_fast() -> None:
    # Every opener is scanned once, not once per opener (no quadratic blow-up).
    assert list(json_values("[" * 50_000)) == []
    assert list(json_values("{[" * 20_000 + '{"ok": 1}')) == [{"ok": 1}]
