"""The languages the agent speaks: [general] language(s), and each one's models."""

import pytest

from asterisk_agent import config


def test_default_speaks_english_and_spanish():
    cfg = config.parse("")
    assert cfg.general.languages == ("en", "es") and cfg.general.language == "en"
    # English calls: whisper.cpp, greedy, a context that fits the turn
    assert (cfg.stt.engine, cfg.stt.model, cfg.stt.beam_size, cfg.stt.audio_ctx) == \
        ("whisper.cpp", "tiny.en", 1, 128)
    # Spanish calls: the multilingual model told the language, on faster-whisper
    # with beam search, and espeak-ng's voice
    es = cfg.stt.for_language("es")
    assert (es.engine, es.model, es.language, es.beam_size) == ("faster-whisper", "base", "es", 5)
    assert cfg.tts.for_language("es") == config.Tts(engine="espeak-ng", voice="es-419+klatt4")
    # English calls keep [stt] and [tts] as written
    assert cfg.stt.for_language("en") is cfg.stt and cfg.tts.for_language("en") is cfg.tts


def test_languages_and_their_models_are_read():
    cfg = config.parse("[general]\nlanguages = es\nlanguage = es\n"
                       "[stt]\nmodel_es = /srv/models/whisper-small\nengine_es = whisper.cpp\n"
                       "beam_size_es = 2\n"
                       "[tts]\nvoice_es = es\n")
    assert cfg.general.languages == ("es",) and cfg.general.language == "es"
    es = cfg.stt.for_language("es")
    assert (es.model, es.engine, es.beam_size) == ("/srv/models/whisper-small", "whisper.cpp", 2)
    assert cfg.tts.for_language("es").voice == "es"
    assert config.parse("[general]\nlanguages = en es en\n").general.languages == ("en", "es")


@pytest.mark.parametrize("text, message", [
    ("[general]\nlanguages = en, fr\n", r"<text>:2: \[general\] languages = 'fr': choose from en, es"),
    ("[general]\nlanguage = de\n", r"<text>:2: \[general\] language = 'de': choose one of en, es"),
    ("[general]\nlanguages = ,\n", r"<text>:2: \[general\] languages: expected at least one"),
    ("[general]\nlanguages = es\n", r"\[general\] language = en: not one of \[general\] languages"),
    # hibari's one voice is English
    ("[tts]\nengine_es = hibari\n", r"<text>:2: \[tts\] engine_es = 'hibari': choose one of espeak-ng"),
    ("[stt]\nmodel_fr = base\n", r"<text>:2: unknown setting 'model_fr' in \[stt\]"),
])
def test_bad_language_settings_are_refused_with_the_line(text, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse(text)
