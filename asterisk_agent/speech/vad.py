"""Voice activity detection and endpointing: when the caller starts and stops talking.

Pure logic over audio frames (no I/O, no clock of its own: every frame comes
with its arrival time).  webrtcvad classifies each frame as voiced or not;
the Endpointer turns that flicker into turn events:

- SpeechOnset (only when asked for with ``onset_ms``) as soon as a possible
  onset has lasted onset_ms, and SpeechDismissed if it then proves a blip:
  enough to hold the agent's playback while the endpointer makes sure;
- SpeechStarted once the caller has spoken for min_speech_ms, so a cough or
  "mhm" does not count as a turn (or as barge-in);
- Utterance once silence_ms of silence follows the speech (shorter pauses,
  between words or to breathe, do not end the turn), or when the turn
  reaches max_utterance_s (then ``truncated`` is set);
- SpeechPaused (only when asked for with ``pause_ms``) early in a pause, so
  transcription can start while the endpoint window still runs.

``shorten`` gives a paused turn a shorter window, when something that knows
more than silence (the end-of-turn model, speech/turn.py) says the turn is
over: it then ends at that much silence, unless the caller speaks first.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from .. import config
from .audio import RATE_8K

# Audio kept from before the first voiced frame: webrtcvad reacts a little
# late, and Whisper hears a clipped first syllable otherwise.
PREROLL_MS = 200
# Silence kept after the last voiced frame: a word's quiet tail.
TAIL_MS = 200
# webrtcvad keeps calling frames voiced for a while after speech stops
# (measured 60-120 ms at 8 kHz, aggressiveness 0-2; a 120 ms blip reads as
# 240 ms of voiced frames).  Both thresholds below are corrected by it, so
# min_speech_ms and silence_ms mean real speech and real silence.
HANGOVER_MS = 80
# A candidate onset that falls silent this long before reaching min_speech_ms
# was a blip, not speech.
BLIP_GAP_MS = 120
# A blip followed this soon by speech was that speech's first syllable ("Good-"
# of a "Good... bye" said with a catch): the turn starts with it, not after it.
BLIP_JOIN_MS = 500

_VAD_RATES = (8000, 16000, 32000, 48000)
_FRAME_MS = (10, 20, 30)


@dataclass(frozen=True)
class SpeechStarted:
    """The caller began a turn; ``at`` is the arrival time of its first voiced frame."""

    at: float
    # when the endpointer became sure (about min_speech_ms later)
    detected_at: float = 0.0


@dataclass(frozen=True)
class SpeechOnset:
    """Speech may be starting: onset_ms of it so far (a SpeechStarted or a
    SpeechDismissed follows)."""

    at: float


@dataclass(frozen=True)
class SpeechDismissed:
    """The onset announced by SpeechOnset was a blip (a cough, a click), not a turn."""

    at: float


@dataclass(frozen=True)
class Utterance:
    """One caller turn, with ~PREROLL_MS of audio before the speech began.

    ``started_at`` is the arrival time of the first voiced frame, ``ended_at``
    that of the last voiced frame (the endpoint is declared silence_ms later).
    """

    pcm: np.ndarray
    started_at: float
    ended_at: float
    truncated: bool
    # the rate of pcm
    rate: int = RATE_8K
    # ended by a window ``shorten`` set, not the configured one
    shortened: bool = False

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate


@dataclass(frozen=True)
class SpeechPaused:
    """The caller has been silent pause_ms, mid-turn: the turn may be over.

    ``utterance`` is the turn so far.  If the Utterance that ends the turn has
    the same ``ended_at``, nothing was said since and a transcript made from
    this snapshot is the transcript of the turn.
    """

    at: float
    utterance: Utterance


class Endpointer:
    """Feeds on 10, 20 or 30 ms frames of int16 mono audio; yields turn events.

    pause_ms: when set, a SpeechPaused comes once per pause after this much
    silence (it should be well under cfg.silence_ms to gain anything).
    onset_ms: when set, a SpeechOnset comes once a possible onset has this much
    voiced audio (well under min_speech_ms to gain anything).
    """

    def __init__(self, cfg: config.Vad, rate: int = RATE_8K, pause_ms: int | None = None,
                 onset_ms: int | None = None):
        if pause_ms is not None and pause_ms <= 0:
            raise ValueError(f"pause_ms {pause_ms}: must be positive")
        if onset_ms is not None and onset_ms <= 0:
            raise ValueError(f"onset_ms {onset_ms}: must be positive")
        self.pause_ms = pause_ms
        self.onset_ms = onset_ms
        if rate not in _VAD_RATES:
            raise ValueError(f"VAD sample rate {rate}: use one of {_VAD_RATES}")
        if not 0 <= cfg.aggressiveness <= 3:
            raise ValueError(f"VAD aggressiveness {cfg.aggressiveness}: use 0 to 3")
        self.cfg = cfg
        self.rate = rate
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self._lengths = {rate * ms // 1000 for ms in _FRAME_MS}
        self.reset()

    def reset(self) -> None:
        """Forget any turn in progress (e.g. when the agent starts listening afresh)."""
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_samples = 0
        self._frames: list[np.ndarray] = []  # the turn or candidate, preroll first
        self._started_at = 0.0
        self._last_voiced_at = 0.0
        self._last_voiced_index = 0  # frames up to here end the speech
        self._voiced_ms = 0.0
        self._silence_ms = 0.0
        self._speech_ms = 0.0  # from onset, for the max_utterance_s cut
        self._candidate = False
        self._window_ms = float(self.cfg.silence_ms)  # this pause's, see shorten()
        self._announced = False  # a SpeechOnset went out for the candidate
        self._in_speech = False
        self._paused = False
        self._blip: list[np.ndarray] = []  # the last blip, while speech may still follow
        self._blip_until = 0.0

    @property
    def in_speech(self) -> bool:
        """True from SpeechStarted until the Utterance that ends the turn."""
        return self._in_speech

    def _check(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 1 or len(frame) not in self._lengths:
            raise ValueError(
                f"VAD frame of shape {frame.shape}: expected 10, 20 or 30 ms of mono "
                f"audio at {self.rate} Hz ({sorted(self._lengths)} samples)")
        if frame.dtype != np.int16:
            raise ValueError(f"VAD frame of dtype {frame.dtype}: expected int16")
        return frame

    def is_speech(self, frame: np.ndarray) -> bool:
        """webrtcvad's verdict on one frame."""
        frame = self._check(frame)
        return self._vad.is_speech(frame.astype("<i2").tobytes(), self.rate)

    def feed(self, frame: np.ndarray, at: float) -> list[SpeechStarted | SpeechPaused | Utterance]:
        """Take one frame that arrived at ``at`` (seconds); return the events it causes."""
        frame = self._check(frame)
        voiced = self._vad.is_speech(frame.astype("<i2").tobytes(), self.rate)
        ms = 1000.0 * len(frame) / self.rate
        if self._in_speech:
            return self._during_speech(frame, at, voiced, ms)
        if self._candidate:
            return self._during_candidate(frame, at, voiced, ms)
        if voiced:
            # a possible onset: keep the preroll and watch whether it lasts
            self._candidate = True
            blip = self._blip if at <= self._blip_until else []
            self._blip = []
            self._frames = blip + list(self._preroll)
            self._frames.append(frame)
            self._started_at = self._last_voiced_at = at
            self._last_voiced_index = len(self._frames)
            self._voiced_ms, self._silence_ms, self._speech_ms = ms, 0.0, ms
            return self._confirm(at)
        self._remember(frame)
        return []

    def _remember(self, frame: np.ndarray) -> None:
        self._preroll.append(frame)
        self._preroll_samples += len(frame)
        limit = self.rate * PREROLL_MS // 1000
        while self._preroll_samples - len(self._preroll[0]) >= limit:
            self._preroll_samples -= len(self._preroll.popleft())

    def _during_candidate(self, frame, at, voiced, ms) -> list:
        self._frames.append(frame)
        self._speech_ms += ms
        if voiced:
            self._voiced_ms += ms
            self._silence_ms = 0.0
            self._last_voiced_at, self._last_voiced_index = at, len(self._frames)
            return self._confirm(at)
        self._silence_ms += ms
        if self._silence_ms >= BLIP_GAP_MS:
            # too short to be a turn: back to listening, holding the blip for a
            # moment in case it was the first syllable of what follows
            self._blip, self._blip_until = self._frames, at + BLIP_JOIN_MS / 1000
            self._candidate = False
            self._frames = []
            self._preroll.clear()
            self._preroll_samples = 0
            if self._announced:
                self._announced = False
                return [SpeechDismissed(at=at)]
        return []

    def _confirm(self, at: float) -> list:
        if self._voiced_ms < self.cfg.min_speech_ms + HANGOVER_MS:
            if (self.onset_ms is not None and not self._announced
                    and self._voiced_ms >= self.onset_ms):
                self._announced = True
                return [SpeechOnset(at=at)]
            return []
        self._candidate = False
        self._announced = False
        self._in_speech = True
        self._preroll.clear()
        self._preroll_samples = 0
        events: list = [SpeechStarted(at=self._started_at, detected_at=at)]
        if self._speech_ms >= 1000.0 * self.cfg.max_utterance_s:
            events.append(self._finish(truncated=True, keep_all=True))
        return events

    def _during_speech(self, frame, at, voiced, ms) -> list:
        self._frames.append(frame)
        self._speech_ms += ms
        if voiced:
            self._silence_ms = 0.0
            self._paused = False
            self._window_ms = float(self.cfg.silence_ms)
            self._last_voiced_at, self._last_voiced_index = at, len(self._frames)
        else:
            self._silence_ms += ms
            if self._silence_ms >= max(self._window_ms - HANGOVER_MS, 2 * ms):
                return [self._finish(truncated=False, keep_all=False)]
        if self._speech_ms >= 1000.0 * self.cfg.max_utterance_s:
            return [self._finish(truncated=True, keep_all=True)]
        if (not voiced and self.pause_ms is not None and not self._paused
                and self._silence_ms >= max(self.pause_ms - HANGOVER_MS, ms)):
            self._paused = True
            return [SpeechPaused(at=at, utterance=self._snapshot(truncated=False, keep_all=False))]
        return []

    def shorten(self, ended_at: float, window_ms: float) -> bool:
        """Let the turn that paused after the voiced frame of ``ended_at`` end
        at ``window_ms`` of silence instead of silence_ms; False if that turn
        is not paused any more (the caller went on, or it ended).

        The Utterance comes from the next silent frame fed, never from here:
        frames still waiting to be fed (a stalled event loop) may hold the
        caller going on, and only the frames in order can tell."""
        if not (self._in_speech and self._paused and self._last_voiced_at == ended_at):
            return False
        self._window_ms = min(self._window_ms, float(window_ms))
        return True

    def _finish(self, truncated: bool, keep_all: bool) -> Utterance:
        utterance = self._snapshot(truncated, keep_all)
        if self._window_ms < self.cfg.silence_ms and not truncated:
            utterance = dataclasses.replace(utterance, shortened=True)
        # a truncated turn may go on: the next voiced frame starts a new one
        self.reset()
        return utterance

    def _snapshot(self, truncated: bool, keep_all: bool) -> Utterance:
        frames = self._frames
        if not keep_all:
            # drop the silence that ended the turn, keeping a short tail
            tail = self.rate * TAIL_MS // 1000
            end, kept = self._last_voiced_index, 0
            while end < len(frames) and kept < tail:
                kept += len(frames[end])
                end += 1
            frames = frames[:end]
        pcm = np.concatenate(frames) if frames else np.zeros(0, np.int16)
        return Utterance(pcm=pcm, started_at=self._started_at,
                         ended_at=self._last_voiced_at, truncated=truncated, rate=self.rate)
