"""The deterministic parser: intents from everyday wording, in four languages, with typos.

Each case states the need once and asks it in several wordings: the parser must give every
wording the same intent signature (task, targets, place, dates, units, filters). The places
come from the real GeoNames gazetteer; nothing here is special-cased in the parser.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agents.intent import Intent
from agents.parse import parse_rules
from tools.geocode import Gazetteer, load_gazetteer

TODAY = dt.date(2026, 12, 2)


@pytest.fixture(scope="module")
def gaz(tmp_path_factory: pytest.TempPathFactory) -> Gazetteer:
    cache = Path(".geoscout/cache")
    return load_gazetteer(str(cache if cache.exists() else tmp_path_factory.mktemp("gaz")))


def parse(gaz: Gazetteer, q: str, previous: Intent | None = None, **kw: bool) -> Intent:
    return parse_rules(q, gaz, TODAY, previous, **kw)[0]


NEEDS: dict[str, tuple[dict[str, object], list[str]]] = {
    "water_accomac": (
        {"task": "measure", "targets": ["water"], "place": "Accomac, Virginia, US"},
        [
            "is there much water near accomac virginia?",
            "How much open water is there around Accomac, Virginia?",
            "water around acomac va",
            "Y a-t-il beaucoup d'eau près d'Accomac en Virginie ?",
            "¿Cuánta agua hay cerca de Accomac, Virginia?",
            "Wie viel Wasser gibt es bei Accomac in Virginia?",
        ],
    ),
    "buildings_kampala": (
        {"task": "count", "targets": ["buildings"], "place": "Kampala, Uganda"},
        [
            "how many buildings are there in kampala",
            "count the houses in Kampala, Uganda",
            "buildings in kampla",
            "combien de bâtiments à kampala ?",
            "¿Cuántos edificios hay en Kampala?",
            "Wie viele Gebäude gibt es in Kampala?",
        ],
    ),
    "roads_aguascalientes": (
        {"task": "measure", "targets": ["roads"], "place": "Aguascalientes, Mexico"},
        [
            "roads in aguascalientes",
            "How long is the road network of Aguascalientes, Mexico?",
            "longueur des routes à aguascalientes",
            "longitud de las calles en Aguascalientes",
        ],
    ),
}


@pytest.mark.parametrize(("need", "wording"), [(n, w) for n, (_, ws) in NEEDS.items() for w in ws])
def test_every_wording_gives_the_same_intent(gaz: Gazetteer, need: str, wording: str) -> None:
    want, _ = NEEDS[need]
    it = parse(gaz, wording)
    assert it.task == want["task"], it
    assert it.targets == want["targets"], it
    assert it.place is not None and it.place.label == want["place"], it


def test_languages_are_detected(gaz: Gazetteer) -> None:
    assert parse(gaz, "Y a-t-il de l'eau près de Kampala ?").language == "fr"
    assert parse(gaz, "¿Hay agua cerca de Kampala?").language == "es"
    assert parse(gaz, "Gibt es Wasser bei Kampala?").language == "de"
    assert parse(gaz, "water near kampala").language == "en"


def test_verbs_and_adjectives_are_not_places(gaz: Gazetteer) -> None:
    it = parse(gaz, "Visualize the buildings in Joplin after the tornado")
    assert [p.label for p in it.places] == ["Joplin, Missouri, US"]
    assert not parse(gaz, "Brazilian forests loss after 2010").places
    it = parse(gaz, "Count the cars in the Sentinel-2 image of Accomac")
    assert [p.label for p in it.places] == ["Accomac, Virginia, US"]


def test_typos_are_corrected_and_said(gaz: Gazetteer) -> None:
    it = parse(gaz, "how much water around acomac va")
    assert it.place is not None and it.place.corrected
    assert any("Accomac" in n for n in it.notes)


def test_unknown_town_is_kept_not_widened_to_its_state(gaz: Gazetteer) -> None:
    it = parse(gaz, "did the lakes near pettibone north dakota get bigger")
    assert it.place is not None and it.place.kind == "unknown"
    assert it.place.name.lower().startswith("pettibone")


def test_change_over_dates_keeps_every_date(gaz: Gazetteer) -> None:
    for q in (
        "did the lakes at 47.02 N, 99.15 W get bigger or smaller from 2009 to 2020?",
        "How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?",
        "les lacs à 47.02 N, 99.15 W ont-ils grandi entre 2009 et 2020 ?",
    ):
        it = parse(gaz, q)
        assert it.task == "change" and it.targets == ["water"], q
        assert [d.start.year for d in it.dates] == [2009, 2020], q
    it = parse(gaz, "the change in vegetation between 2009 and 2020 at 47.02 N, 99.15 W")
    assert it.targets == ["vegetation"]
    it = parse(gaz, "has the water at 47.02 N, 99.15 W changed since 2009?")
    assert it.task == "change" and len(it.dates) == 1
    assert it.dates[0].start.year == 2009 and it.dates[0].end == TODAY


def test_units_and_filters(gaz: Gazetteer) -> None:
    assert parse(gaz, "how many hectares of water near Accomac").area_unit == "ha"
    assert parse(gaz, "water near Accomac in acres").area_unit == "acre"
    assert parse(gaz, "water near Accomac in square miles").area_unit == "mi2"
    assert parse(gaz, "road length in Aguascalientes in miles").length_unit == "mi"
    assert parse(gaz, "what percentage of Accomac is water").wants_share
    it = parse(gaz, "images with less than 10% cloud near Groningen")
    assert it.task == "list_imagery" and it.filters.max_cloud_pct == 10
    assert not it.wants_share
    it = parse(gaz, "which buildings did the tornado destroy in joplin")
    assert it.filters.condition == "destroyed"


def test_relations_between_targets(gaz: Gazetteer) -> None:
    it = parse(gaz, "roads near the lakes at 47.02 N, 99.15 W")
    assert it.targets[:2] == ["roads", "water"]
    assert it.relations and it.relations[0].other == "water"
    it = parse(gaz, "buildings within 50 m of the water near Accomac")
    assert it.relations and it.relations[0].distance_m == 50


def test_out_of_scope_and_capabilities(gaz: Gazetteer) -> None:
    it = parse(gaz, "what is the air quality in paris")
    assert it.task == "out_of_scope" and it.topic == "air quality"
    assert it.place is not None and "Paris" in (it.place.label or "")
    assert parse(gaz, "what can you do?").task == "capabilities"
    assert parse(gaz, "quelles données as-tu ?").task == "capabilities"


def test_followups_take_what_they_leave_out(gaz: Gazetteer) -> None:
    first = parse(gaz, "How much water is there around Accomac, Virginia?")
    it = parse(gaz, "and what about vegetation?", first)
    assert it.followup and it.targets == ["vegetation"] and it.place == first.place
    assert any("previous question" in n for n in it.notes)
    change = parse(gaz, "did the lakes at 47.02 N, 99.15 W grow between 2009 and 2020?")
    it = parse(gaz, "same for vegetation", change)
    assert it.task == "change" and [d.start.year for d in it.dates] == [2009, 2020]
    it = parse(gaz, "and in 2015?", change)
    assert it.task == "measure" and it.targets == ["water"] and it.dates[0].start.year == 2015
    it = parse(gaz, "et en 2020 ?", first)
    assert it.targets == ["water"] and it.dates[0].start.year == 2020
    # A question with its own place is not a follow-up.
    it = parse(gaz, "roads in aguascalientes", first)
    assert not it.followup and it.place is not None and "Aguascalientes" in (it.place.label or "")


def test_future_years_are_reported(gaz: Gazetteer) -> None:
    assert parse_rules("water in Joplin in 2031", gaz, TODAY)[1] == [2031]
