"""Safety messages as sound files of their own: made once, kept, never half-written.

Uses the real espeak-ng voice (fast) and a real protocols directory; no PBX.
"""

from __future__ import annotations

import asyncio
import dataclasses
import wave
from pathlib import Path

from asterisk_agent.agent import Services
from asterisk_agent.config import Config
from asterisk_agent.conversation import safety_sound, warm_safety_sounds
from asterisk_agent.dialog.screen import load_protocols
from asterisk_agent.speech.tts import EspeakSynthesizer, TtsPool

ROOT = Path(__file__).resolve().parents[1]


class Counting(EspeakSynthesizer):
    def __init__(self):
        self.made = 0
        super().__init__()  # says "Ready." once to check the voice
        self.made = 0

    def synthesize(self, text):
        self.made += 1
        return super().synthesize(text)


class Broken:
    def synthesize(self, text):
        raise RuntimeError("voice model missing")


def services(tmp_path, synth) -> Services:
    cfg = Config()
    cfg = dataclasses.replace(cfg, sounds=dataclasses.replace(cfg.sounds, dir=tmp_path))
    return Services(cfg=cfg, practice=None, protocols=load_protocols(ROOT / "etc" / "protocols"),
                    stt={}, tts={"en": TtsPool(synth)})


async def test_a_safety_message_is_made_once_and_kept_whole(tmp_path):
    synth = Counting()
    s = services(tmp_path, synth)
    text = "This may be a medical emergency. Please hang up and call 911 now."
    # two red flags at once: one synthesis, one file
    first, second = await asyncio.gather(safety_sound(s, text, "en"),
                                         safety_sound(s, text, "en"))
    assert first == second and first.name.startswith("ai-agent-safety-")
    assert synth.made == 1
    with wave.open(str(first)) as w:
        assert w.getframerate() == 8000 and w.getnframes() > 8000
    assert [p.name for p in tmp_path.iterdir()] == [first.name], "a half-made file was left"
    # a new process finds it on disk and makes nothing
    again = services(tmp_path, synth)
    assert await safety_sound(again, text, "en") == first and synth.made == 1


async def test_warm_up_makes_every_message_of_the_specialty(tmp_path):
    s = services(tmp_path, Counting())
    await warm_safety_sounds(s)
    wanted = s.protocols.messages("general", "en")
    assert len(list(tmp_path.glob("ai-agent-safety-*.wav"))) == len(wanted) >= 3


async def test_a_broken_voice_gives_no_file_and_the_transfer_goes_on(tmp_path):
    s = services(tmp_path, Broken())
    assert await safety_sound(s, "Call 911 now.", "en") is None
    assert s.safety_sounds == {}, "a failed synthesis must be tried again next time"
