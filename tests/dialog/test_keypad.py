"""The keypad-only menu: 1 the hours and address, 0 or no key twice a person."""

import dataclasses
import itertools
from pathlib import Path

import pytest

from asterisk_agent.dialog import phrases, practice
from asterisk_agent.dialog.keypad import MAX_MISSES, Keypad, Then

ROOT = Path(__file__).resolve().parents[2]
FACTS = practice.load(ROOT / "etc" / "practice.conf")


def test_the_menu_greets_with_the_practice_and_offers_both_keys():
    first = Keypad(FACTS, "en").start()
    assert first.then is Then.KEYS
    assert FACTS.name in first.text
    assert "Press 1" in first.text and "Press 0 for the front desk" in first.text


def test_one_plays_the_hours_and_the_address_then_waits_again():
    pad = Keypad(FACTS, "en")
    pad.start()
    heard = pad.press("1")
    assert heard.then is Then.KEYS
    # the hours as the agent says them, the address from the practice file
    assert "Monday 8 AM to 5 PM" in heard.text and "Sunday closed" in heard.text
    assert FACTS.address in heard.text
    assert heard.text.endswith("For the front desk, press 0.")


def test_zero_hands_the_caller_to_a_person():
    pad = Keypad(FACTS, "en")
    pad.start()
    out = pad.press("0")
    assert out.then is Then.OPERATOR
    assert out.text == phrases.of("en").transfer


@pytest.mark.parametrize("keys", [[None, None], ["7", "7"], [None, "#"], ["*", None]])
def test_no_usable_key_twice_in_a_row_hands_the_caller_to_a_person(keys):
    pad = Keypad(FACTS, "en")
    pad.start()
    first = pad.press(keys[0])
    assert first.then is Then.KEYS and "Press 1" in first.text
    last = pad.press(keys[1])
    assert last.then is Then.OPERATOR
    assert last.text.endswith(phrases.of("en").transfer)
    assert MAX_MISSES == 2


def test_a_wrong_key_and_silence_are_told_apart():
    pad = Keypad(FACTS, "en")
    pad.start()
    assert pad.press(None).text.startswith("Sorry, I did not get a choice.")
    pad = Keypad(FACTS, "en")
    pad.start()
    assert pad.press("9").text.startswith("Sorry, that is not one of the choices.")


def test_hearing_the_hours_starts_the_count_again():
    pad = Keypad(FACTS, "en")
    pad.start()
    assert pad.press(None).then is Then.KEYS
    assert pad.press("1").then is Then.KEYS
    # one miss after the hours is not yet two in a row
    assert pad.press(None).then is Then.KEYS
    assert pad.press(None).then is Then.OPERATOR


def test_spanish_menu():
    pad = Keypad(FACTS, "es")
    assert "oprima el uno" in pad.start().text and FACTS.name in pad.start().text
    heard = pad.press("1")
    assert "lunes de las 8 de la mañana a las 5 de la tarde" in heard.text
    assert f"Estamos en {FACTS.address}" in heard.text
    assert pad.press("0").text == phrases.of("es").transfer


def test_a_closed_day_and_new_hours_come_from_the_practice_file():
    hours = dict(FACTS.hours, monday=None)
    facts = dataclasses.replace(FACTS, hours=hours)
    pad = Keypad(facts, "en")
    assert "Monday closed" in pad.press("1").text


@pytest.mark.parametrize("language", sorted(phrases.PHRASES))
def test_every_prompt_it_can_say_is_in_its_list(language):
    """prompts() is what is made ahead of the first caller: nothing said is missing."""
    said = set()
    for keys in itertools.product(["1", "0", "5", None], repeat=3):
        pad = Keypad(FACTS, language)
        said.add(pad.start().text)
        for key in keys:
            prompt = pad.press(key)
            said.add(prompt.text)
            if prompt.then is Then.OPERATOR:
                break
    assert said == set(Keypad(FACTS, language).prompts())


@pytest.mark.parametrize("language", sorted(phrases.PHRASES))
def test_every_keypad_phrase_is_written(language):
    keypad = phrases.of(language).keypad
    assert keypad is not None
    for f in dataclasses.fields(keypad):
        assert getattr(keypad, f.name).strip(), f"{language}: keypad {f.name} is empty"
