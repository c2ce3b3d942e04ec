"""Rewording a reply's later sentences while its first plays ([llm] phrase).

`reworded` is given the rewording as a function: here plain functions that
answer at once, late, or not at all, to pin down what the caller then hears.
The language model's own rewording and its guard are tested in
tests/dialog/test_llm.py and test_guard.py.
"""

from __future__ import annotations

import wave

from asterisk_agent.conversation import reworded, sound_seconds

REST = ["I have Tuesday at 9 AM or Thursday at 2 PM.", "Which one would you like?"]


async def test_a_rewording_in_time_replaces_the_later_sentences():
    asked = []

    async def reword(text, budget):
        asked.append((text, budget))
        return "Tuesday at 9 AM or Thursday at 2 PM are open. Which suits you?"

    out = await reworded(list(REST), reword, 1.2)
    assert out == ["Tuesday at 9 AM or Thursday at 2 PM are open.", "Which suits you?"]
    assert asked == [(" ".join(REST), 1.2)]


async def test_a_refused_or_late_rewording_leaves_the_fixed_sentences():
    async def refused(text, budget):
        return None

    async def never(text, budget):
        raise AssertionError("not asked: no time for it")

    assert await reworded(list(REST), refused, 1.2) == REST
    # a first sentence too short to hide a rewording behind: the model is not asked
    assert await reworded(list(REST), never, 0.05) == REST


def test_sound_seconds_reads_the_wav_header(tmp_path):
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 12000)
    assert sound_seconds(path) == 1.5
