"""Speech-to-text on whisper.cpp: the ggml file made from the shipped
CTranslate2 model must transcribe telephone speech like faster-whisper does."""

import asyncio
import logging
import re
import sys
import time

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.bench import word_error_rate
from asterisk_agent.speech import ModelError, audio, ggml, models, stt
from asterisk_agent.speech.whisper_cpp import WhisperCppTranscriber, context_frames

# plain words, as in test_stt.py: Whisper writes numbers and titles its own way
SENTENCES = [
    "I would like to book an appointment with the doctor next week.",
    "Can you tell me if the office is open on Saturday morning?",
    "I need a refill of my blood pressure medication.",
    "My daughter has a fever and a sore throat since yesterday.",
    "Could you please move my appointment to Thursday afternoon?",
    "I am calling to ask about the results of my blood test.",
    "Where can I park when I come to the practice?",
    "Please ask the nurse to call me back this evening.",
]

# one word error rate for the project: the benchmark's (numbers and titles normalized)
wer = word_error_rate
phone_line = audio.through_ulaw


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def cpp_tiny(cache):
    return WhisperCppTranscriber("tiny.en", cache_dir=cache)


@pytest.fixture(scope="module")
def calls(say_neural):
    """The eight sentences as a caller's utterances over a u-law line."""
    return [phone_line(say_neural(s)) for s in SENTENCES]


# --- pure parts -------------------------------------------------------------------------

def test_context_grows_to_fit_a_long_utterance():
    assert context_frames(3 * 16000, 0, 1500) == 0            # 0: the model's full context
    assert context_frames(3 * 16000, 256, 1500) == 256        # 3 s fits in 5.12 s
    assert context_frames(12 * 16000, 256, 1500) == 600 + 32  # 12 s needs 600 frames + slack
    assert context_frames(40 * 16000, 512, 1500) == 1500      # never past the model's own


# --- the engine on phone audio --------------------------------------------------------------

def test_phone_line_sentences_like_faster_whisper(cpp_tiny, tiny_en, calls):
    ours = [cpp_tiny.transcribe(pcm, 8000) for pcm in calls]
    theirs = [tiny_en.transcribe(pcm, 8000) for pcm in calls]
    assert wer(SENTENCES, ours) <= 0.05, ours
    assert wer(SENTENCES, ours) <= wer(SENTENCES, theirs) + 0.02, (ours, theirs)


def test_reduced_audio_context_still_transcribes(cache, calls):
    fast = WhisperCppTranscriber("tiny.en", audio_ctx=512, cache_dir=cache)
    hypotheses = [fast.transcribe(pcm, 8000) for pcm in calls]
    assert wer(SENTENCES, hypotheses) <= 0.1, hypotheses


def test_smallest_context_never_loops(cache, calls):
    """audio_ctx 256 sends tiny.en into loops on some sentences; the token
    bound and drop_repeats keep the transcript to what was said."""
    fastest = WhisperCppTranscriber("tiny.en", audio_ctx=256, cache_dir=cache)
    hypotheses = [fastest.transcribe(pcm, 8000) for pcm in calls]
    for sentence, heard in zip(SENTENCES, hypotheses):
        assert len(heard.split()) <= len(sentence.split()) + 3, heard
    assert wer(SENTENCES, hypotheses) <= 0.25, hypotheses


def test_long_utterance_is_heard_to_the_end_with_a_small_context(cache, calls):
    """Three sentences (about 9 s) do not fit in audio_ctx 256 (5.12 s): the
    context grows instead of the end being cut off."""
    fastest = WhisperCppTranscriber("tiny.en", audio_ctx=256, cache_dir=cache)
    pause = np.zeros(4000, np.int16)
    long_turn = np.concatenate([calls[0], pause, calls[2], pause, calls[7]])
    assert len(long_turn) / 8000 > 6
    heard = fastest.transcribe(long_turn, 8000)
    assert "evening" in heard.lower(), heard
    assert wer([" ".join(SENTENCES[i] for i in (0, 2, 7))], [heard]) <= 0.15, heard


def test_wideband_and_float_input_are_accepted(cpp_tiny, hibari):
    pcm, rate = hibari.synthesize(SENTENCES[2])
    wide = audio.resample(pcm, rate, 16000)
    assert wer([SENTENCES[2]], [cpp_tiny.transcribe(wide, 16000)]) <= 0.1
    assert wer([SENTENCES[2]], [cpp_tiny.transcribe(audio.to_float(wide), 16000)]) <= 0.1


def test_silence_noise_and_empty_audio_give_no_annotations(cpp_tiny):
    assert cpp_tiny.transcribe(np.zeros(0, np.int16), 8000) == ""
    assert cpp_tiny.transcribe(np.zeros(400, np.int16), 8000) == ""   # 50 ms
    noise = (np.random.default_rng(1).standard_normal(16000) * 300).astype(np.int16)
    for pcm in (np.zeros(8000, np.int16), noise):
        heard = cpp_tiny.transcribe(pcm, 8000)
        assert not re.search(r"[\[\]()]", heard), heard   # no "[BLANK_AUDIO]"
        assert len(heard.split()) <= 2, heard
    with_nan = np.full(8000, np.nan, np.float32)
    assert isinstance(cpp_tiny.transcribe(with_nan, 8000), str)


async def test_pool_runs_it_off_the_event_loop(cpp_tiny, calls):
    """whisper.cpp releases the GIL while it works: the loop keeps running."""
    pool = stt.SttPool(cpp_tiny, workers=2)
    gaps, last, done = [], time.monotonic(), False

    async def ticker():
        nonlocal last
        while not done:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        # two at once through one whisper.cpp context: they take turns safely
        heard = await asyncio.gather(pool.transcribe(calls[1], 8000),
                                     pool.transcribe(calls[6], 8000))
        took = time.monotonic() - started
    finally:
        done = True
        await tick
        pool.close()
    assert wer([SENTENCES[1], SENTENCES[6]], heard) <= 0.1, heard
    assert max(gaps) < took / 4, (max(gaps), took)


# --- models, files and the cache ------------------------------------------------------------

def test_load_transcriber_builds_the_whisper_cpp_engine(monkeypatch, cache, hibari):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    tr = stt.load_transcriber(config.Stt(engine="whisper.cpp", model="tiny.en", beam_size=1))
    assert isinstance(tr, WhisperCppTranscriber) and tr.name == "whisper.cpp tiny.en"
    assert tr.path.parent == cache / "asterisk-agent" / "models"
    pcm, rate = hibari.synthesize(SENTENCES[0])
    assert wer([SENTENCES[0]], [tr.transcribe(pcm, rate)]) <= 0.1


def test_multilingual_base_model_from_two_packages(cache, say_neural):
    base = WhisperCppTranscriber("base", language="en", cache_dir=cache)
    assert base.multilingual
    heard = base.transcribe(phone_line(say_neural(SENTENCES[0])), 8000)
    assert wer([SENTENCES[0]], [heard]) <= 0.15, heard


def test_english_only_model_refuses_another_language(cache):
    with pytest.raises(ModelError, match="English-only"):
        WhisperCppTranscriber("tiny.en", language="es", cache_dir=cache)


def test_audio_context_outside_the_model_is_refused(cache):
    with pytest.raises(ModelError, match="audio_ctx 2000 is outside 0..1500"):
        WhisperCppTranscriber("tiny.en", audio_ctx=2000, cache_dir=cache)


def test_cached_file_is_reused(cache):
    first = models.whisper_ggml("tiny.en", cache)
    made = first.stat().st_mtime_ns
    assert models.whisper_ggml("tiny.en", cache) == first
    assert first.stat().st_mtime_ns == made
    digest = first.with_name(first.name + ".sha256").read_text()
    assert digest == f"{models._sha256(first)}  {first.name}\n"


def test_corrupt_cached_file_is_converted_again(tmp_path, caplog):
    path = models.whisper_ggml("tiny.en", tmp_path)
    good = path.read_bytes()
    with path.open("r+b") as f:          # same size, damaged weights
        f.seek(len(good) // 2)
        f.write(b"\xff" * 4096)
    with caplog.at_level(logging.WARNING):
        again = models.whisper_ggml("tiny.en", tmp_path)
    assert again == path and again.read_bytes() == good
    assert "does not match its SHA-256" in caplog.text


def test_cache_that_cannot_be_written_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelError, match=re.escape(str(blocker)) + ".*must be writable"):
        models.whisper_ggml("tiny.en", blocker / "models")


def test_default_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert models.default_cache_dir() == tmp_path / "asterisk-agent" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")    # not absolute: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.default_cache_dir() == tmp_path / "home" / ".cache" / "asterisk-agent" / "models"


def test_model_file_by_path(cache, tmp_path, hibari):
    path = tmp_path / "tiny-copy.bin"
    path.write_bytes(models.whisper_ggml("tiny.en", cache).read_bytes())
    tr = WhisperCppTranscriber(str(path), beam_size=1)
    assert tr.path == path
    pcm, rate = hibari.synthesize(SENTENCES[2])
    assert wer([SENTENCES[2]], [tr.transcribe(pcm, rate)]) <= 0.1


def test_truncated_model_file_is_named(cache, tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(models.whisper_ggml("tiny.en", cache).read_bytes()[:40_000_000])
    with pytest.raises(ModelError, match=re.escape(str(path)) + ".*truncated"):
        WhisperCppTranscriber(str(path))


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / "none.bin"))):
        WhisperCppTranscriber(str(tmp_path / "none.bin"))


def test_corrupt_model_file_is_named(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(ModelError, match=re.escape(str(path)) + ".*not a whisper.cpp"):
        WhisperCppTranscriber(str(path))


def test_model_whisper_cpp_refuses_is_reported(tmp_path, cache):
    """A file that passes the structural check but that whisper.cpp refuses
    (an ftype it does not know) is reported, not handed back as a dead context."""
    path = tmp_path / "bad-ftype.bin"
    data = bytearray(models.whisper_ggml("tiny.en", cache).read_bytes())
    data[4 + 40:4 + 44] = (9).to_bytes(4, "little")     # hparams.ftype
    path.write_bytes(bytes(data))
    assert ggml.inspect(path).hparams.ftype == 9
    with pytest.raises(ModelError, match=re.escape(str(path)) + ".*whisper.cpp cannot load"):
        WhisperCppTranscriber(str(path))


def test_missing_pywhispercpp_names_what_to_install(monkeypatch):
    """Simulates the package being absent (a None entry makes the import fail);
    the installed one cannot be uninstalled for a test."""
    monkeypatch.setitem(sys.modules, "_pywhispercpp", None)
    with pytest.raises(ModelError, match="pip install pywhispercpp"):
        WhisperCppTranscriber("tiny.en")
