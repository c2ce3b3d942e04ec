"""Scenarios in Spanish: the caller speaks with espeak-ng's Spanish voice and
listens with the multilingual model, told the language."""

from __future__ import annotations

import pytest

from asterisk_agent import config
from asterisk_agent.caller.scenario import ESPEAK_VOICES, RATE, Ears, ScenarioError, parse_scenario
from asterisk_agent.dialog.phrases import fold


def test_spanish_scenario_speaks_with_espeak_by_default():
    sc = parse_scenario({"dial": "100", "language": "es", "steps": [{"say": "Adiós"}]})
    assert (sc.language, sc.voice) == ("es", "espeak-ng")
    assert ESPEAK_VOICES["es"].split("+")[0] == "es"


def test_english_scenarios_keep_the_neural_voice():
    assert parse_scenario({"dial": "100", "steps": [{"say": "hi"}]}).voice == "hibari"
    assert parse_scenario({"dial": "100", "language": "en", "steps": [{"say": "hi"}]}).voice == "hibari"


def test_hibari_cannot_speak_spanish():
    with pytest.raises(ScenarioError, match="hibari speaks English only"):
        parse_scenario({"dial": "100", "language": "es", "voice": "hibari",
                        "steps": [{"say": "Adiós"}]})


async def test_the_caller_speaks_and_hears_spanish():
    """The real voice and the real model (no call): a Spanish line comes back as Spanish."""
    ears = Ears.load(config.Config())
    try:
        pcm = await ears.speak("Quiero hablar con una persona.", "espeak-ng", "es")
        assert 1.0 < len(pcm) / RATE < 4.0
        heard = await ears.transcribe(pcm, "es")
    finally:
        ears.close()
    assert "hablar con una persona" in fold(heard), heard
