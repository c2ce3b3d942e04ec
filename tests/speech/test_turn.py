"""The end-of-turn model (Smart Turn v3, from the pipecat-ai wheel) on telephone speech.

Real model, real speech (hibari at 8 kHz through G.711 u-law, as the caller's
audio arrives).  A turn cut in the middle of a sentence, where a caller
pauses to think, must read as not over; a whole sentence as over.
"""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest

from asterisk_agent.speech import ModelError, audio, models, turn

THRESHOLD = 0.7  # etc/asterisk-agent.conf [vad] turn_threshold

WHOLE = (
    "What time do you open on Monday?",
    "I need a refill of my lisinopril.",
    "I would like to book an appointment for next Tuesday.",
    "Can I cancel my appointment?",
    "Where can I park my car?",
)
# the part of a sentence a caller says before pausing to think
CUT = (
    ("I need a refill of my lisinopril.", 0.55),
    ("What time do you open on Saturday?", 0.55),
    ("My name is John Smith and my date of birth is March third nineteen eighty.", 0.55),
    ("I would like to book an appointment for next Tuesday.", 0.55),
)


def phone(pcm: np.ndarray) -> np.ndarray:
    """As the agent hears it: 200 ms before the speech, u-law, a short tail."""
    return np.concatenate([np.zeros(1600, np.int16), audio.through_ulaw(pcm),
                           np.zeros(1200, np.int16)])


def test_whole_sentences_end_the_turn(turn_model, say_neural):
    scores = {text: turn_model.complete(phone(say_neural(text)), 8000) for text in WHOLE}
    assert all(p >= 0.9 for p in scores.values()), scores


def test_a_sentence_cut_where_a_caller_pauses_does_not(turn_model, say_neural):
    scores = {}
    for text, at in CUT:
        pcm = say_neural(text)
        scores[text] = turn_model.complete(phone(pcm[:int(len(pcm) * at)]), 8000)
    assert all(p < THRESHOLD for p in scores.values()), scores


def test_only_the_last_eight_seconds_count(turn_model, say_neural):
    # a long turn: what was said 8 s before its end does not change the verdict
    # (the resampler's edge at the cut moves it a little)
    last = phone(say_neural("Where can I park my car?"))
    long = np.concatenate([phone(say_neural("I would like to book an appointment for next "
                                            "Tuesday morning with doctor Patel please."))] * 3
                          + [last])
    assert len(long) > 8 * 8000
    tail = long[-8 * 8000:]
    assert turn_model.complete(long, 8000) == pytest.approx(turn_model.complete(tail, 8000),
                                                            abs=0.05)


def test_features_are_whisper_log_mel_of_eight_seconds(turn_model, say_neural):
    mel = turn_model.features(phone(say_neural("Goodbye.")), 8000)
    assert mel.shape == (80, 800) and mel.dtype == np.float32
    # padded at the front: the start is the floor value, the end is speech
    assert np.ptp(mel[:, :100]) < 1e-3 < np.ptp(mel[:, -60:])


def test_silence_and_empty_audio_are_not_an_error(turn_model):
    assert turn_model.complete(np.zeros(0, np.int16), 8000) == 0.0
    assert 0.0 <= turn_model.complete(np.zeros(8000, np.int16), 8000) <= 1.0


def test_a_corrupt_model_file_is_named(tmp_path):
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"not an onnx model" * 10)
    with pytest.raises(ModelError, match="smart-turn.onnx: not a loadable ONNX model"):
        turn.TurnModel(bad)
    with pytest.raises(ModelError, match="no such turn model file"):
        turn.TurnModel(tmp_path / "missing.onnx")


def test_another_onnx_model_is_refused():
    import faster_whisper

    from pathlib import Path

    silero = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    assert silero.is_file(), "faster-whisper's Silero VAD asset is the stand-in wrong model"
    with pytest.raises(ModelError, match="not a Smart Turn v3 model"):
        turn.TurnModel(silero)


def test_the_cached_model_is_the_pinned_one():
    path = models.turn_model_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == models.TURN_SHA256


def test_a_missing_cached_model_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelError, match="run `asterisk-agent models`.*turn_model = none"):
        models.turn_model_file(tmp_path)


def _wheel(path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_a_wheel_with_other_bytes_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl", models.TURN_MEMBER,
                   b"tampered")
    with pytest.raises(ModelError, match="does not match its pinned SHA-256"):
        models.prepare_turn_model(tmp_path / "cache", wheel)
    assert not (tmp_path / "cache" / models.TURN_MODEL).exists()


def test_a_wheel_without_the_model_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "other.whl", "pipecat/__init__.py", b"")
    with pytest.raises(ModelError, match="no turn model in it"):
        models.prepare_turn_model(tmp_path / "cache", wheel)


def test_the_model_is_taken_from_its_wheel(tmp_path):
    data = models.turn_model_file().read_bytes()
    wheel = _wheel(tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl", models.TURN_MEMBER, data)
    out = models.prepare_turn_model(tmp_path / "cache", wheel)
    assert out == tmp_path / "cache" / models.TURN_MODEL and out.read_bytes() == data
