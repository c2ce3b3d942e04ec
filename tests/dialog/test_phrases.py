"""The agent's words in each language, and how a call's language is chosen."""

import dataclasses
import datetime as dt

import pytest

from asterisk_agent import config
from asterisk_agent.dialog import phrases
from asterisk_agent.dialog.practice import DAYS


def test_every_configurable_language_has_phrases():
    # [general] languages accepts exactly what the dialog can speak
    assert set(phrases.PHRASES) == set(config.LANGUAGES)


@pytest.mark.parametrize("language", sorted(phrases.PHRASES))
def test_every_phrase_is_written(language):
    say = phrases.of(language)
    for f in dataclasses.fields(say):
        value = getattr(say, f.name)
        if isinstance(value, str):
            assert value.strip(), f"{language}: {f.name} is empty"
    assert len(say.days) == len(DAYS)
    assert {name for name, _ in say.intents} == \
        {"operator", "goodbye", "parking", "address", "phone", "hours"}


@pytest.mark.parametrize("t, spoken", [
    (dt.time(8, 0), "las 8 de la mañana"),
    (dt.time(17, 0), "las 5 de la tarde"),
    (dt.time(12, 0), "las 12 del mediodía"),
    (dt.time(13, 0), "la una de la tarde"),
    (dt.time(8, 30), "las 8 y media de la mañana"),
    (dt.time(9, 15), "las 9 y cuarto de la mañana"),
    (dt.time(19, 45), "las 7 y 45 de la tarde"),
    (dt.time(21, 0), "las 9 de la noche"),
    (dt.time(0, 0), "las 12 de la madrugada"),
])
def test_spanish_times(t, spoken):
    assert phrases.say_time_es(t) == spoken


def test_fold_drops_accents_and_punctuation():
    assert phrases.fold("¿Miércoles? ¡Sí, MAÑANA!") == "miercoles si manana"
    assert phrases.fold("What's up?") == "what's up"


@pytest.mark.parametrize("requested, chosen", [
    ("es", "es"),
    ("ES", "es"),
    ("es_MX", "es"),        # Asterisk's CHANNEL(language) style
    ("es-419", "es"),
    ("en", "en"),
    ("fr", "en"),           # not spoken here: the default
    ("", "en"),             # the dialplan passed none
    ("  ", "en"),
])
def test_choose_language(requested, chosen):
    assert phrases.choose_language(requested, ("en", "es"), "en") == chosen


def test_choose_language_only_from_the_configured_ones():
    assert phrases.choose_language("es", ("en",), "en") == "en"
    assert phrases.choose_language("en", ("es",), "es") == "es"
