"""The call's listener: turns from a caller's audio, early transcripts, early red flags.

Real speech (the hibari voice at 8 kHz), the real endpointer, the real
whisper.cpp model and the real urgent-symptom screen; only the call leg is an
in-memory frame source paced like RTP (20 ms a frame), since what is tested is
the listener's timing of transcripts, not the network.  The red-flag call
through the real Asterisk is in tests/test_calls.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.conversation import Listener
from asterisk_agent.dialog.screen import load_protocols
from asterisk_agent.speech import stt
from asterisk_agent.speech.turn import TurnPool

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = load_protocols(ROOT / "etc" / "protocols")
FRAME = 160


class FrameSource:
    """A call leg's RTP side: 160-sample frames arriving every 20 ms."""

    def __init__(self, pcm: np.ndarray):
        self.pcm = pcm

    async def frames(self):
        for i in range(0, len(self.pcm) - FRAME + 1, FRAME):
            await asyncio.sleep(0.02)
            yield self.pcm[i:i + FRAME], time.monotonic()


@pytest.fixture(scope="module")
def pool():
    transcriber = stt.load_transcriber(config.Stt(engine="whisper.cpp", model="tiny.en"))
    yield stt.SttPool(transcriber)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(8000 * seconds), dtype=np.int16)


def listener(pool, pcm: np.ndarray, turn=None) -> Listener:
    """A started listener on a caller who says `pcm`, with the real urgent screen
    (and the end-of-turn model when given)."""
    call = SimpleNamespace(rtp=FrameSource(pcm), dtmf=asyncio.Queue(), channel_id="test.1",
                           gone=asyncio.Event())
    services = SimpleNamespace(stt={"en": pool}, cfg=config.Config(), turn=turn)
    ears = Listener(call, services, "en",
                    urgent=lambda words: PROTOCOLS.screen(words, "general", "en").urgent)
    ears.start()
    return ears


async def first_turn(pool, pcm: np.ndarray):
    ears = listener(pool, pcm)
    try:
        heard = await ears.next_turn(30)
        # how long after the end of the turn its transcript is there
        t0 = time.monotonic()
        transcript = await heard.transcript if heard.transcript is not None else None
        return transcript, (time.monotonic() - t0) * 1000
    finally:
        ears.stop()


async def test_a_red_flag_before_a_pause_is_acted_on_at_the_end_of_the_turn(pool, say_neural):
    # a pause (300 ms) longer than pause_ms but shorter than the end-of-turn
    # window, then more words: the first part is screened while the rest is said
    pcm = np.concatenate([silence(0.3), say_neural("I have crushing chest pain."), silence(0.3),
                          say_neural("It started this morning while I was walking the dog."),
                          silence(1.0)])
    transcript, wait_ms = await first_turn(pool, pcm)
    assert transcript is not None and "chest" in transcript.lower(), transcript
    assert PROTOCOLS.screen(transcript, "general", "en").urgent
    assert wait_ms < 50, f"the flagged words were ready, yet the turn waited {wait_ms:.0f} ms"


async def test_a_routine_turn_is_transcribed_whole(pool, say_neural):
    pcm = np.concatenate([silence(0.3), say_neural("I would like to book a checkup."),
                          silence(0.3), say_neural("Next Tuesday afternoon if possible."),
                          silence(1.0)])
    transcript, _ = await first_turn(pool, pcm)
    # no early answer from the first part: the whole turn's words, or a
    # transcript still to be made at the end of the turn (None)
    assert transcript is None or "tuesday" in transcript.lower(), transcript


class HeldPool:
    """An STT pool whose first transcription is held until a later one has
    begun: the caller went on talking before the first part was transcribed,
    as on a busy machine.  Scripted, not a model: what is tested is what the
    listener does with a transcript that comes late, which timing alone cannot
    produce on demand."""

    def __init__(self, first: str, release: asyncio.Event | None = None):
        self.first = first
        self.calls = 0
        self.later_started = asyncio.Event()
        # when given, the first transcription waits for this instead
        self.release = release

    async def transcribe(self, pcm, rate, language=None):
        self.calls += 1
        if self.calls == 1:
            await (self.release or self.later_started).wait()
            await asyncio.sleep(0.05)
            return self.first
        self.later_started.set()
        await asyncio.sleep(30)  # the later parts are never ready before the turn ends
        return "and then some more words"


async def test_a_red_flag_heard_late_still_flags_the_turn(say_neural):
    pcm = np.concatenate([silence(0.3), say_neural("I have crushing chest pain."), silence(0.3),
                          say_neural("It started this morning."), silence(0.3),
                          say_neural("I was walking the dog."), silence(1.0)])
    held = HeldPool("I have crushing chest pain.")
    transcript, wait_ms = await first_turn(held, pcm)
    assert held.calls >= 2, "the caller never went on past the first pause"
    assert transcript == "I have crushing chest pain.", transcript
    assert wait_ms < 50, f"the flagged words were ready, yet the turn waited {wait_ms:.0f} ms"


async def test_a_late_transcript_of_an_ended_turn_flags_nothing(say_neural):
    """Words transcribed after their turn ended cannot mark the next one."""
    release = asyncio.Event()
    held = HeldPool("I have crushing chest pain.", release)
    ears = listener(held, np.concatenate([
        silence(0.3), say_neural("I have crushing chest pain."), silence(1.0)]))
    try:
        heard = await ears.next_turn(30)
        # the transcript begun at the pause is the turn's, still to come
        assert heard is not None and heard.transcript is not None and held.calls == 1
        release.set()
        assert await heard.transcript == "I have crushing chest pain."
        await asyncio.sleep(0.1)
        # screened with the turn in the call path; it must not flag the next turn
        assert ears._flagged is None
    finally:
        ears.stop()


@pytest.fixture(scope="module")
def turn_pool(turn_model):
    yield TurnPool(turn_model, config.Vad().turn_threshold, config.Vad().complete_ms)


async def test_a_whole_question_ends_at_the_pause(pool, turn_pool, say_neural):
    speech = say_neural("What time do you open on Monday?")
    ears = listener(pool, np.concatenate([silence(0.3), speech, silence(1.5)]), turn_pool)
    try:
        heard = await ears.next_turn(30)
        ended = time.monotonic()
        assert heard.utterance.shortened  # the end-of-turn model's window
        # the silence window would have ended it (500 - 80) ms after the last
        # voiced frame; the model's verdict at the pause makes it (300 - 80) ms
        assert ended - heard.utterance.ended_at < 0.35, ended - heard.utterance.ended_at
        transcript = await heard.transcript
        assert "monday" in transcript.lower(), transcript
    finally:
        ears.stop()


async def test_a_pause_in_the_middle_of_a_sentence_does_not_end_the_turn(
        pool, turn_pool, say_neural):
    sentence = say_neural("I need a refill of my lisinopril.")
    cut = int(len(sentence) * 0.55)
    pcm = np.concatenate([silence(0.3), sentence[:cut], silence(0.3), sentence[cut:],
                          silence(1.5)])
    ears = listener(pool, pcm, turn_pool)
    try:
        heard = await ears.next_turn(30)
        # one turn, holding both parts (the word cut in two is not always
        # transcribed right: Whisper hears the two halves of a split word)
        assert heard.utterance.duration > (len(sentence) / 8000) + 0.3
        assert heard.utterance.ended_at - heard.utterance.started_at > len(sentence) / 8000
        words = (await heard.transcript if heard.transcript is not None
                 else await pool.transcribe(heard.utterance.pcm, 8000)).lower()
        assert "refill" in words, words
    finally:
        ears.stop()


async def test_without_the_model_the_window_ends_the_turn(pool, say_neural):
    speech = say_neural("What time do you open on Monday?")
    ears = listener(pool, np.concatenate([silence(0.3), speech, silence(1.5)]))
    try:
        heard = await ears.next_turn(30)
        ended = time.monotonic()
        assert not heard.utterance.shortened
        assert ended - heard.utterance.ended_at >= 0.4
    finally:
        ears.stop()
