"""Speech fixtures: the real engines, loaded once per test session.

A missing engine or model makes the fixture fail with ModelError, whose
message names the package to install (no skips).
"""

from __future__ import annotations

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.speech import audio, stt, tts


@pytest.fixture(scope="session")
def espeak() -> tts.Synthesizer:
    return tts.load_synthesizer(config.Tts(engine="espeak-ng"))


@pytest.fixture(scope="session")
def hibari() -> tts.Synthesizer:
    return tts.load_synthesizer(config.Tts(engine="hibari"))


@pytest.fixture(scope="session")
def tiny_en() -> stt.Transcriber:
    return stt.load_transcriber(config.Stt(engine="faster-whisper", model="tiny.en"))


def _speech_8k(synth: tts.Synthesizer, text: str) -> np.ndarray:
    pcm, rate = synth.synthesize(text)
    pcm = audio.resample(pcm, rate, audio.RATE_8K)
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 300)[0]
    return pcm[loud[0]:loud[-1] + 1]


@pytest.fixture(scope="session")
def say(espeak):
    """text -> espeak-ng speech at 8 kHz with the engine's own leading and
    trailing silence trimmed, so a test controls every pause exactly."""
    return lambda text: _speech_8k(espeak, text)


@pytest.fixture(scope="session")
def say_neural(hibari):
    """text -> hibari speech at 8 kHz, trimmed like ``say``."""
    return lambda text: _speech_8k(hibari, text)



@pytest.fixture(scope="session")
def turn_model():
    """The Smart Turn model that `asterisk-agent models` (tools/setup) puts in the cache."""
    from asterisk_agent.speech import models, turn

    return turn.TurnModel(models.turn_model_file())
