"""Text-to-speech: each engine writes 8 kHz mono WAV files Asterisk can play."""

import asyncio
import wave

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.speech import ModelError, audio, tts


def test_split_sentences():
    text = ("Thank you for calling. Dr. Lee sees patients at 9 a.m. on Mondays! "
            "Is that all right? \"Yes,\" she said.\n\nGoodbye")
    assert tts.split_sentences(text) == [
        "Thank you for calling.",
        "Dr. Lee sees patients at 9 a.m. on Mondays!",
        "Is that all right?",
        "\"Yes,\" she said.",
        "Goodbye",
    ]


def test_split_sentences_keeps_initials_and_lowercase_continuations():
    assert tts.split_sentences("J. Smith called. e.g. about the bill.") == [
        "J. Smith called. e.g. about the bill."]
    assert tts.split_sentences("") == []
    assert tts.split_sentences("   \n  ") == []


@pytest.mark.parametrize("engine", ["hibari", "espeak-ng"])
async def test_to_file_writes_8k_mono_wav_of_sane_length(engine, request, tmp_path):
    synth = request.getfixturevalue("hibari" if engine == "hibari" else "espeak")
    pool = tts.TtsPool(synth)
    try:
        path = await pool.to_file("Thank you for calling the practice.", tmp_path / "sounds", "greet-1")
    finally:
        pool.close()
    assert path == tmp_path / "sounds" / "greet-1.wav"
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    pcm, rate = audio.read_wav(path)
    # six words: between one and four seconds of audio, and not silence
    assert 1.0 < len(pcm) / rate < 4.0
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500


@pytest.mark.parametrize("engine", ["hibari", "espeak-ng"])
def test_synthesizer_native_rate(engine, request):
    synth = request.getfixturevalue("hibari" if engine == "hibari" else "espeak")
    pcm, rate = synth.synthesize("Hello.")
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert rate == {"hibari": 24000, "espeak-ng": 22050}[engine]
    assert synth.name == engine


async def test_pool_runs_sentences_concurrently_into_distinct_files(hibari, tmp_path):
    pool = tts.TtsPool(hibari, workers=2)
    sentences = tts.split_sentences("Good morning. Your appointment is on Tuesday. Goodbye.")
    try:
        paths = await asyncio.gather(*(pool.to_file(s, tmp_path, f"s{i}")
                                       for i, s in enumerate(sentences)))
        pcm, rate = await pool.synthesize("Goodbye.")
    finally:
        pool.close()
    assert [p.name for p in paths] == ["s0.wav", "s1.wav", "s2.wav"]
    lengths = [len(audio.read_wav(p)[0]) for p in paths]
    assert lengths[1] > lengths[0] and lengths[1] > lengths[2]
    assert rate == 8000
    # same sentence, same sound: the voice is deterministic
    assert np.array_equal(pcm, audio.read_wav(paths[2])[0])


async def test_bad_requests_are_value_errors(espeak, tmp_path):
    pool = tts.TtsPool(espeak)
    try:
        with pytest.raises(ValueError):
            await pool.to_file("   ", tmp_path, "empty")
        with pytest.raises(ValueError, match="stem"):
            await pool.to_file("Hello.", tmp_path, "../escape")
        with pytest.raises(ValueError):
            await pool.synthesize("")
    finally:
        pool.close()
    assert list(tmp_path.iterdir()) == []


def test_text_that_looks_like_an_option_is_spoken_not_obeyed(espeak):
    pcm, _ = espeak.synthesize("--help -v xx")
    assert len(pcm) > 0


def test_missing_espeak_program_names_the_package():
    with pytest.raises(ModelError, match="espeak-ng"):
        tts.EspeakSynthesizer(program="no-such-espeak-program")


def test_unknown_espeak_voice_is_a_model_error():
    with pytest.raises(ModelError, match="nosuchvoice"):
        tts.load_synthesizer(config.Tts(engine="espeak-ng", voice="nosuchvoice"))


def test_missing_hibari_voice_file_is_named(tmp_path):
    missing = tmp_path / "voice.onnx"
    with pytest.raises(ModelError, match=str(missing)):
        tts.load_synthesizer(config.Tts(engine="hibari", voice=str(missing)))


def test_corrupt_hibari_voice_file_is_named(tmp_path):
    corrupt = tmp_path / "voice.onnx"
    corrupt.write_bytes(b"\x00not an onnx model" * 100)
    with pytest.raises(ModelError, match=str(corrupt)):
        tts.load_synthesizer(config.Tts(engine="hibari", voice=str(corrupt)))


def test_hibari_voice_that_would_need_a_download_is_refused(tmp_path, monkeypatch):
    """Voices other than the bundled one are fetched from a model hub by
    hibari; the agent never does that (it needs no network)."""
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))  # an empty voice cache
    with pytest.raises(ModelError, match="not in the hibari-tts wheel"):
        tts.HibariSynthesizer(voice="fable")


@pytest.mark.parametrize("engine", ["hibari", "espeak-ng"])
def test_control_characters_do_not_cut_the_sentence(engine, request):
    synth = request.getfixturevalue("hibari" if engine == "hibari" else "espeak")
    clean, _ = synth.synthesize("Please hold the line.")
    dirty, _ = synth.synthesize("Please\x00 hold\x1b the\u200b line.")
    assert abs(len(dirty) - len(clean)) < 0.1 * len(clean)
