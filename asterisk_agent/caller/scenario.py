"""Scripted test calls: a YAML scenario in, a verdict with timings out.

    name: ivr-hours                 # optional; defaults to the file name
    dial: "100"                     # the extension to call (a string: YAML reads 0100 as 64)
    timeout: 20                     # optional: seconds each expect / reply may take
    language: en                    # optional: the language the caller speaks and listens for
    voice: hibari                   # optional: the caller's TTS, hibari or espeak-ng
    steps:
      - expect: "press (1|one)"     # a regex (case-insensitive) that must be heard
      - dtmf: "1"                   # keys, sent as RFC 4733 events
      - say: "What time do you open on Monday?"
      - expect: "8|eight"
        within: 10                  # fail if not heard within 10 s
      - wait: 1.5                   # seconds of silence from the caller
      - cough: 0.12                 # a sound this short (s), at once: not a turn
      - say: "Goodbye"
      - expect_hangup: true         # the far end must hang up
      - hangup: true                # or: the caller hangs up
    ehr:                            # optional, read by the project's scenario suite only:
      before: [{book: MRN1002}]     #   the EHR set up before the call,
      after: [{sent: any, count: 0}]  # and what it must hold after (tests/test_scenarios.py)
    must_pass: "a red flag"         # optional, for the suite too: no call-went-astray allowance

Step options: `timeout` (expect, say, expect_hangup: how long to wait),
`within` (expect and expect_hangup: the wait is also the limit; say: the reply
must start within this many seconds), `reply: false` (say: do not wait for an
answer), `barge_in: true` (say: speak at once, even while the far end talks;
by default the caller waits for a pause, as a polite person would, so that a
reply latency is measured from a quiet line).  A `cough` (the start of the
caller's "Hm", cut to the given length) goes out at once too; its step records
`far_end_gap`: the far end's first pause of 100 ms or more that began within
half a second of the cough, {"from_ms", "ms"} (an agent that holds its sentence
at a possible onset, then goes on), or None.

How the caller listens: `expect` transcribes what was heard since the previous
step ended, again every time new speech has been heard (at a pause, or each
second of continuous speech), and passes as soon as the regex matches the
transcript, or a normalized form of it with number words as digits, or with
digits as words ("8" <-> "eight"), so "8|eight" and "press (1|one)" both work.

How the caller speaks: the sentence is synthesized before the call starts
(nothing is synthesized on the clock), trimmed of leading and trailing
silence, and sent as 20 ms u-law packets.  `latency_ms` of a say step is the
first far-end audio at the caller after the caller's last speech packet left,
minus that departure: what a caller waits between finishing a sentence and
hearing the answer start, measured on the wire at the caller.

The caller's voice is hibari by default, not espeak-ng: the agent's STT
(Whisper tiny.en) misheard espeak-ng's "What time do you open on Monday?" as
"Well, time to open on Monday." (round-trip WER 0.23-0.29 in the field notes,
0.01 for hibari), and a scenario must test the agent's dialog, not espeak's
diction.  `voice: espeak-ng` is there for a harder listener test.  The
caller's own STT (the configured [stt] model) runs in a worker process on one
thread, so it neither delays the caller's packets nor takes both cores from
the agent under test.

A scenario in another language (`language: es`) speaks with espeak-ng's voice
for it (hibari speaks English only) and listens with that language's model
([stt] model_es for Spanish: the multilingual Whisper base), told the language.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import wave
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from asterisk_agent import config
from asterisk_agent.caller.sip import (
    DTMF_EVENTS, FRAME_SAMPLES, RATE, SILENCE_RMS, Call, CallEnded, CallFailed)
from asterisk_agent.speech import ModelError
from asterisk_agent.speech.audio import trim_silence

DEFAULT_TIMEOUT = 20.0
VOICES = ("hibari", "espeak-ng")
# a far-end pause this long lets a polite caller start talking
PAUSE_S = 0.5
# longest a polite caller waits for that pause before talking anyway
PAUSE_WAIT_S = 10.0
# how often an expect looks at what it heard
POLL_S = 0.1
# transcribe again at a pause this long, or after this much continuous speech
PHRASE_PAUSE_S = 0.3
RETRANSCRIBE_S = 1.0
# Whisper sees 30 s at most: an expect transcribes the latest this-many seconds
MAX_WINDOW_S = 28.0
# far-end silences shorter than this are pauses between sentences, not the end of a talk
BARGE_IN_GAP_S = 0.3
# a cough step: what it is cut from, and the longest it may be
COUGH_FROM = "Hm."
COUGH_MAX_S = 0.5
# the far end's pause after a cough: this long at least, starting this soon
COUGH_GAP_S = 0.1
COUGH_WINDOW_S = 0.5
# speech before the first voiced packet kept in a transcription window
LEAD_IN_S = 0.2

_TOP_KEYS = {"name", "dial", "steps", "timeout", "language", "voice", "description", "ehr",
             "must_pass"}
_ACTIONS = ("expect", "say", "dtmf", "wait", "cough", "expect_hangup", "hangup")
_OPTIONS = {
    "expect": {"within", "timeout"},
    "say": {"within", "timeout", "reply", "barge_in"},
    "dtmf": set(),
    "wait": set(),
    "cough": set(),
    "expect_hangup": {"within", "timeout"},
    "hangup": set(),
}


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


# --- the scenario (pure) -------------------------------------------------------

@dataclass(frozen=True)
class Step:
    number: int          # 1-based, as people count steps in a file
    action: str
    value: Any
    raw: dict
    within: float | None = None
    timeout: float | None = None
    reply: bool = True
    barge_in: bool = False
    pattern: re.Pattern | None = None

    def describe(self) -> str:
        if self.action == "expect":
            return f"expect /{self.value}/"
        if self.action == "say":
            return f"say {self.value!r}"
        if self.action == "dtmf":
            return f"dtmf {self.value}"
        if self.action == "wait":
            return f"wait {self.value:g} s"
        if self.action == "cough":
            return f"cough {self.value:g} s"
        return self.action.replace("_", " ")


@dataclass(frozen=True)
class Scenario:
    name: str
    dial: str
    steps: tuple[Step, ...]
    timeout: float = DEFAULT_TIMEOUT
    language: str | None = None
    voice: str = "hibari"
    source: str = "<scenario>"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a scenario must not."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ScenarioError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=str(path), default_name=path.stem)


def _number(value: Any, what: str, minimum: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{what} must be a number of seconds, got {value!r}")
    if positive and value <= 0 or value < minimum:
        raise ScenarioError(f"{what} must be {'above' if positive else 'at least'} {minimum:g}, got {value!r}")
    return float(value)


def parse_scenario(data: Any, source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    """Validate a scenario already read from YAML (or written as a dict)."""
    where = source

    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"{where}: {message}")

    if not isinstance(data, dict):
        raise fail(f"a scenario is a mapping with dial and steps, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise fail(f"unknown key {sorted(map(str, unknown))[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    for key in ("dial", "steps"):
        if key not in data:
            raise fail(f"missing {key!r}")
    dial = data["dial"]
    if not isinstance(dial, str):
        raise fail(f"dial must be a quoted string such as \"100\" (YAML reads 0100 as a number), got {dial!r}")
    if not re.fullmatch(r"[A-Za-z0-9*#+._-]+", dial):
        raise fail(f"dial {dial!r} is not an extension (letters, digits, * # + . _ -)")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise fail(f"name must be a non-empty string, got {name!r}")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in data:
        try:
            timeout = _number(data["timeout"], "timeout", positive=True)
        except ScenarioError as exc:
            raise fail(str(exc)) from None
    language = data.get("language")
    if language is not None and (not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}", language)):
        raise fail(f"language must be a language code such as \"en\", got {language!r}")
    english = language in (None, "en")
    voice = data.get("voice", "hibari" if english else "espeak-ng")
    if voice not in VOICES:
        raise fail(f"voice must be one of {', '.join(VOICES)}, got {voice!r}")
    if voice == "hibari" and not english:
        raise fail(f"voice hibari speaks English only; language {language} needs voice: espeak-ng")
    for key in ("description",):
        if key in data and not isinstance(data[key], str):
            raise fail(f"{key} must be a string")
    ehr = data.get("ehr", {})
    if not isinstance(ehr, dict) or set(ehr) - {"before", "after"} or not all(
            isinstance(v, list) and all(isinstance(x, dict) for x in v) for v in ehr.values()):
        raise fail("ehr must be a mapping of before and after, each a list of mappings")
    raw_steps = data["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("steps must be a non-empty list")
    steps = tuple(_parse_step(i, raw, where) for i, raw in enumerate(raw_steps, 1))
    return Scenario(name=name.strip(), dial=dial, steps=steps, timeout=timeout,
                    language=language, voice=voice, source=source)


def _parse_step(number: int, raw: Any, where: str) -> Step:
    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"{where}: step {number}: {message}")

    if not isinstance(raw, dict):
        raise fail(f"a step is a mapping such as {{say: \"hello\"}}, got {raw!r}")
    actions = [k for k in raw if k in _ACTIONS]
    if len(actions) != 1:
        found = f"several ({', '.join(actions)})" if actions else "none"
        raise fail(f"a step has exactly one action of {', '.join(_ACTIONS)}; found {found}")
    action = actions[0]
    allowed = _OPTIONS[action]
    for key in raw:
        if key != action and key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            if key in set().union(*_OPTIONS.values()):
                raise fail(f"{key!r} does not go with {action} (its options: {known})")
            raise fail(f"unknown key {key!r} (actions: {', '.join(_ACTIONS)}; {action} options: {known})")
    value = raw[action]
    kwargs: dict[str, Any] = {}
    try:
        for key in ("within", "timeout"):
            if key in raw:
                kwargs[key] = _number(raw[key], key, positive=True)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    for key in ("reply", "barge_in"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise fail(f"{key} must be true or false, got {raw[key]!r}")
            kwargs[key] = raw[key]
    if action == "expect":
        if not isinstance(value, str) or not value.strip():
            raise fail(f"expect takes a regex as a string, got {value!r}")
        try:
            kwargs["pattern"] = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise fail(f"expect {value!r} is not a valid regex: {exc}") from None
    elif action == "say":
        if not isinstance(value, str) or not re.search(r"\w", value):
            raise fail(f"say takes the words to speak, got {value!r}")
    elif action == "dtmf":
        if not isinstance(value, str):
            raise fail(f"dtmf takes keys as a quoted string such as \"1\", got {value!r}")
        bad = [d for d in value if d.upper() not in DTMF_EVENTS]
        if not value or bad:
            raise fail(f"dtmf {value!r}: keys are 0-9, *, #, A-D")
    elif action == "wait":
        try:
            value = _number(value, "wait")
        except ScenarioError as exc:
            raise fail(str(exc)) from None
    elif action == "cough":
        try:
            value = _number(value, "cough", positive=True)
        except ScenarioError as exc:
            raise fail(str(exc)) from None
        if value > COUGH_MAX_S:
            raise fail(f"cough {value:g}: at most {COUGH_MAX_S:g} s (longer is speech)")
    elif value is not True:
        raise fail(f"write {action}: true, got {value!r}")
    return Step(number=number, action=action, value=value, raw=dict(raw), **kwargs)


# --- matching transcripts (pure) ------------------------------------------------

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}


def number_words(n: int) -> str:
    """0-999 in words ("forty two"); larger numbers digit by digit, as read out."""
    if n < 20:
        return _UNITS[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _UNITS[n % 10])
    if n < 1000:
        rest = n % 100
        return _UNITS[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    return " ".join(_UNITS[int(d)] for d in str(n))


def clean(text: str) -> str:
    """Lower case, punctuation to spaces ("a.m." -> "am"), digit groups like 8:30 kept."""
    text = text.lower()
    text = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", text)          # a.m. -> am.
    text = re.sub(r"(?<=\d)[:.,](?=\d)", "\0", text)                # keep 8:30, 1,200
    text = re.sub(r"[^\w\s'\0]|_", " ", text).replace("\0", ":")
    return " ".join(text.split())


def words_to_digits(text: str) -> str:
    """"twenty one" -> "21", "eight" -> "8" in cleaned text."""
    words, out, i = text.split(), [], 0
    while i < len(words):
        w = words[i]
        if w in _WORD_VALUE:
            value = _WORD_VALUE[w]
            if value >= 20 and value % 10 == 0 and i + 1 < len(words) \
                    and words[i + 1] in _WORD_VALUE and 0 < _WORD_VALUE[words[i + 1]] < 10:
                value += _WORD_VALUE[words[i + 1]]
                i += 1
            out.append(str(value))
        else:
            out.append(w)
        i += 1
    return " ".join(out)


def digits_to_words(text: str) -> str:
    """"8" -> "eight", "8:30" -> "eight thirty" in cleaned text."""
    def spell(m: re.Match) -> str:
        return " ".join(number_words(int(part)) for part in re.split(r"[:,]", m.group()) if part)
    return re.sub(r"\d+(?:[:,]\d+)*", spell, text)


def transcript_forms(text: str) -> list[str]:
    """The transcript as heard, cleaned, with numbers as digits, and with numbers as words."""
    cleaned = clean(text)
    forms = [text, cleaned, words_to_digits(cleaned), digits_to_words(cleaned)]
    return list(dict.fromkeys(forms))


def matches(pattern: re.Pattern, text: str) -> bool:
    return any(pattern.search(form) for form in transcript_forms(text))


def voiced_segments(pcm: np.ndarray, threshold: float = SILENCE_RMS,
                    max_gap_s: float = 0.6, min_s: float = 0.1) -> list[tuple[int, int]]:
    """Sample ranges of far-end speech: 20 ms frames above `threshold`, short gaps bridged."""
    n = len(pcm) // FRAME_SAMPLES
    if n == 0:
        return []
    frames = pcm[:n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > threshold)
    segments: list[list[int]] = []
    max_gap = int(max_gap_s / 0.02)
    for f in loud:
        if segments and f - segments[-1][1] <= max_gap:
            segments[-1][1] = f
        else:
            segments.append([f, f])
    return [(int(a) * FRAME_SAMPLES, (int(b) + 1) * FRAME_SAMPLES) for a, b in segments
            if (b + 1 - a) * 0.02 >= min_s]


# --- running a call ------------------------------------------------------------

# The caller's Whisper models, inside its worker process (see Ears), by settings.
_TRANSCRIBERS: dict[config.Stt, Any] = {}


def _transcribe_in_worker(stt_cfg: config.Stt, pcm: np.ndarray, rate: int, language: str | None) -> str:
    if stt_cfg not in _TRANSCRIBERS:
        from asterisk_agent.speech import stt

        _TRANSCRIBERS[stt_cfg] = stt.load_transcriber(stt_cfg)
    return _TRANSCRIBERS[stt_cfg].transcribe(pcm, rate, language)


# espeak-ng's voice for the caller's lines in each language (the agent's
# Spanish voice is Latin American: the caller speaks the Spanish of Spain, with
# the Klatt variant, which Whisper base understands best)
ESPEAK_VOICES = {None: "en-us", "en": "en-us", "es": "es+klatt4"}


@dataclass
class Ears:
    """The caller's models, loaded once and shared by every scenario of a run.

    The caller's STT runs in a worker process, not a thread: Whisper's Python
    parts hold the GIL long enough to delay the caller's RTP packets by 20 ms
    and more (measured), and the send clock is what makes the timings true.
    One process on one thread.  The benchmark runs it at the lowest CPU
    priority (``background``): there the caller is the measuring instrument,
    and on a 2-core machine its Whisper competing with the agent's (whose
    threads wait on each other) doubled the agent's transcription time,
    something no real caller does to the agent.  The scenario suite does not:
    on a host that takes CPU away, a caller at the lowest priority hears the
    agent too late for its expects.
    """

    stt: config.Stt
    pool: Executor
    synthesizers: dict[str, Any] = field(default_factory=dict)
    tts_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="caller-tts"))

    @classmethod
    def load(cls, cfg: config.Config, background: bool = False) -> "Ears":
        """Start the STT worker (at the lowest CPU priority if ``background``)
        and load its model now; ModelError says what is missing."""
        stt_cfg = dataclasses.replace(cfg.stt, threads=1, workers=1)
        # spawn, not fork: the parent may already run threads (an RTP stream, a loop)
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=os.nice, initargs=(19 if background else 0,))
        try:
            pool.submit(_transcribe_in_worker, stt_cfg, np.zeros(RATE // 2, np.int16), RATE, None).result()
        except BrokenProcessPool:
            pool.shutdown(wait=True, cancel_futures=True)
            raise RuntimeError(
                "the caller's STT worker process died while starting.  From a script, call "
                "under `if __name__ == \"__main__\":` (the worker is spawned, which imports "
                "the main script again)") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return cls(stt_cfg, pool)

    def synthesizer(self, voice: str, language: str | None = None):
        key = (voice, language)
        if key not in self.synthesizers:
            from asterisk_agent.speech import tts

            name = ESPEAK_VOICES.get(language, language or "") if voice == "espeak-ng" else ""
            self.synthesizers[key] = tts.load_synthesizer(config.Tts(engine=voice, voice=name))
        return self.synthesizers[key]

    async def listen_for(self, language: str | None) -> None:
        """Load the model that transcribes `language` now, not during the call."""
        await self.transcribe(np.zeros(RATE // 2, np.int16), language)

    async def transcribe(self, pcm: np.ndarray, language: str | None) -> str:
        if pcm.size == 0:
            return ""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, _transcribe_in_worker,
                                          self.stt.for_language(language), pcm, RATE, language)

    async def speak(self, text: str, voice: str, language: str | None = None) -> np.ndarray:
        """The caller's line as 8 kHz audio, silence trimmed (done before the call starts)."""
        from asterisk_agent.speech.audio import resample

        def work() -> np.ndarray:
            pcm, rate = self.synthesizer(voice, language).synthesize(text)
            return trim_silence(resample(pcm, rate, RATE), RATE, SILENCE_RMS)
        return await asyncio.get_running_loop().run_in_executor(self.tts_pool, work)

    def close(self) -> None:
        self.tts_pool.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Run:
    """One scenario on one call: the steps in order, each with what was heard."""

    def __init__(self, scenario: Scenario, call: Call, ears: Ears, speech: dict[int, np.ndarray]):
        self.scenario = scenario
        self.call = call
        self.ears = ears
        self.speech = speech
        self.mark = 0.0  # where the next expect starts listening (monotonic)
        self.said: list[tuple[float, str]] = []

    def at(self, t: float) -> float:
        return round(t - self.call.answered_at, 3)

    async def step(self, step: Step) -> dict:
        started = time.monotonic()
        entry = {"step": step.raw, "heard": "", "ok": False, "latency_ms": None,
                 "at_s": self.at(started), "error": None}
        try:
            handler = getattr(self, "_" + step.action)
            await handler(step, entry)
        except CallEnded as exc:
            entry["ok"] = False
            entry["error"] = f"the call ended ({self.call.reason or exc})"
        entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        return entry

    async def _expect(self, step: Step, entry: dict) -> None:
        limit = step.within or step.timeout or self.scenario.timeout
        deadline = time.monotonic() + limit
        since = self.mark
        last_tx, text = since, ""
        while True:
            now = time.monotonic()
            voice = self.call.last_audio()
            new_voice = voice is not None and voice > last_tx
            ended = self.call.state.value in ("ended", "failed")
            quiet = voice is not None and now - voice >= PHRASE_PAUSE_S
            if new_voice and (quiet or now - last_tx >= RETRANSCRIBE_S or ended or now >= deadline):
                last_tx = now
                text = await self.ears.transcribe(self._window(since, now), self.scenario.language)
                if matches(step.pattern, text):
                    entry.update(ok=True, heard=text)
                    entry["matched_after_ms"] = round((time.monotonic() - since) * 1000, 1)
                    self.mark = now
                    return
                continue
            if ended or now >= deadline:
                entry["heard"] = text
                why = f"the call ended ({self.call.reason})" if ended else f"not heard within {limit:g} s"
                entry["error"] = f"{why}; heard: {text!r}" if text else f"{why}; heard nothing"
                self.mark = now
                return
            await asyncio.sleep(POLL_S)

    def _window(self, since: float, now: float) -> np.ndarray:
        """What to transcribe: from the first speech after `since` (less a lead-in) to now."""
        start = max(since, now - MAX_WINDOW_S)
        first = self.call.first_audio_after(start)
        if first is not None:
            # the packet's audio began 20 ms before it arrived
            start = max(start, first - 0.020 - LEAD_IN_S)
        return self.call.heard(start, now + 1.0)

    async def _say(self, step: Step, entry: dict) -> None:
        pcm = self.speech[step.number]
        if not step.barge_in:
            await self._wait_for_pause()
        start, end = await self.call.say(pcm)
        self.said.append((start, step.value))
        entry["speech_ms"] = round((end - start) * 1000 + 20, 1)
        self.mark = end
        # the far end talked over the caller: a "reply" latency would mean nothing
        heard_last = self.call.last_audio()
        entry["overlap"] = heard_last is not None and heard_last > start
        try:
            await self._await_reply(step, entry, end)
        finally:
            if step.barge_in:
                entry["barge_in_ms"] = self._barge_in_ms(start)

    def _barge_in_ms(self, start: float) -> float | None:
        """From the caller's speech onset to the end of the far end's talk it cut into.

        None when the far end was not talking when the caller started.  The far
        end's talk is its voiced audio with short gaps (between sentences)
        bridged; a barge-in that worked ends it within a few hundred ms.
        """
        # the heard timeline starts when the media did: never look before that
        since = max(self.call.rtp.t0, start - MAX_WINDOW_S)
        heard = self.call.heard(since, time.monotonic())
        at = int((start - since) * RATE)
        gap = int(BARGE_IN_GAP_S * RATE)
        for a, b in voiced_segments(heard, self.call.silence_rms, max_gap_s=BARGE_IN_GAP_S):
            # a caller who starts between two sentences cuts into that talk too;
            # if the far end then says nothing more, it stopped at once (0 ms)
            if a <= at < b + gap:
                return round(max(0, b - at) / RATE * 1000, 1)
        return None

    async def _await_reply(self, step: Step, entry: dict, end: float) -> None:
        if not step.reply:
            entry["ok"] = True
            return
        # wait past `within` for a late reply, so its latency is still reported
        limit = step.timeout or max(step.within or 0.0, self.scenario.timeout)
        deadline = end + limit
        while True:
            first = self.call.first_audio_after(end)
            if first is not None:
                latency = (first - end) * 1000
                entry["latency_ms"] = round(latency, 1)
                if step.within is not None and latency > step.within * 1000:
                    entry["error"] = f"the reply started after {latency:.0f} ms (within: {step.within:g} s)"
                else:
                    entry["ok"] = True
                return
            if self.call.state.value in ("ended", "failed"):
                # a far end that hangs up instead of answering: expect_hangup judges that
                entry["ok"] = True
                entry["error"] = None
                return
            if time.monotonic() >= deadline:
                entry["error"] = f"no reply within {limit:g} s"
                return
            # the arrival time is the kernel's, so polling late costs no accuracy
            await asyncio.sleep(0.01)

    async def _wait_for_pause(self) -> None:
        give_up = time.monotonic() + PAUSE_WAIT_S
        while time.monotonic() < give_up and self.call.state.value == "answered":
            voice = self.call.last_audio()
            if voice is None or time.monotonic() - voice >= PAUSE_S:
                return
            await asyncio.sleep(0.02)

    async def _dtmf(self, step: Step, entry: dict) -> None:
        start, end = await self.call.dtmf(step.value)
        self.said.append((start, f"[DTMF {step.value}]"))
        entry["ok"] = True
        self.mark = end

    async def _cough(self, step: Step, entry: dict) -> None:
        start, end = await self.call.say(self.speech[step.number])
        entry["speech_ms"] = round((end - start) * 1000 + 20, 1)
        # long enough for an agent's hold to be let go, and the far end to go on
        await asyncio.sleep(1.5)
        entry["far_end_gap"] = self._gap_after(start)
        entry["ok"] = True
        self.mark = end

    def _gap_after(self, start: float) -> dict | None:
        """The far end's first pause (COUGH_GAP_S or more, between two stretches
        of its audio) that began within COUGH_WINDOW_S of `start`."""
        since = max(self.call.rtp.t0, start - 3.0)
        heard = self.call.heard(since, time.monotonic())
        at = int((start - since) * RATE)
        segments = voiced_segments(heard, self.call.silence_rms, max_gap_s=0.02, min_s=0.02)
        for (a, b), (c, _) in zip(segments, segments[1:]):
            if at <= b <= at + COUGH_WINDOW_S * RATE and c - b >= COUGH_GAP_S * RATE:
                return {"from_ms": round((b - at) / RATE * 1000, 1),
                        "ms": round((c - b) / RATE * 1000, 1)}
        return None

    async def _wait(self, step: Step, entry: dict) -> None:
        await self.call.wait_hangup(step.value)
        entry["ok"] = True

    async def _expect_hangup(self, step: Step, entry: dict) -> None:
        limit = step.within or step.timeout or self.scenario.timeout
        ended = await self.call.wait_hangup(limit)
        now = time.monotonic()
        heard = self.call.heard(self.mark, now)
        if voiced_segments(heard, self.call.silence_rms):
            entry["heard"] = await self.ears.transcribe(self._window(self.mark, now), self.scenario.language)
        self.mark = now
        if ended and self.call.hangup_by == "far end":
            entry["ok"] = True
        elif ended:
            entry["error"] = f"the call ended, but not by the far end ({self.call.reason})"
        else:
            entry["error"] = f"the far end did not hang up within {limit:g} s"

    async def _hangup(self, step: Step, entry: dict) -> None:
        if self.call.state.value != "answered":
            raise CallEnded(self.call.reason)
        await self.call.hangup()
        entry["ok"] = True


def _new_result(name: str, source: str, dial: str | None, error: str | None = None) -> dict:
    return {"name": name, "file": source, "dial": dial, "passed": False, "steps": [],
            "heard_transcript": "", "error": error, "setup_ms": None, "hangup_by": None,
            "duration_s": None, "conversation": []}


async def play_scenario(scenario: Scenario | dict | str | Path, cfg: config.Config,
                        record_dir: Path | None = None, *, ears: Ears | None = None) -> dict:
    """Place the scenario's call and run its steps; the verdict as a JSON-ready dict.

    Never raises for what happens on the call: a call that fails, a step that
    fails, the far end hanging up early all land in "error".  A scenario that
    is not valid raises ScenarioError before anything is dialed.
    """
    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    elif isinstance(scenario, dict):
        scenario = parse_scenario(scenario)
    own_ears = ears is None
    if own_ears:
        ears = await asyncio.get_running_loop().run_in_executor(None, Ears.load, cfg)
    result = _new_result(scenario.name, scenario.source, scenario.dial)
    try:
        # everything the caller will say, before the clock starts
        speech = {s.number: await ears.speak(s.value, scenario.voice, scenario.language)
                  for s in scenario.steps if s.action == "say"}
        for s in scenario.steps:
            if s.action == "cough":
                hm = await ears.speak(COUGH_FROM, scenario.voice, scenario.language)
                speech[s.number] = hm[:int(s.value * RATE)]
        await ears.listen_for(scenario.language)
        call = Call("127.0.0.1", cfg.sandbox.sip_port)
        run = _Run(scenario, call, ears, speech)
        try:
            await _play(run, result)
        finally:
            await _finish(call, result)
            call.close()
        if record_dir is not None and call.rtp is not None:
            result["recordings"] = _write_recordings(Path(record_dir), scenario.name, call)
        if call.answered_at is not None:
            await _transcribe_call(run, result)
    finally:
        if own_ears:
            ears.close()
    result["passed"] = result["error"] is None and all(s["ok"] for s in result["steps"]) \
        and len(result["steps"]) == len(scenario.steps)
    return result


async def _play(run: _Run, result: dict) -> None:
    call, scenario = run.call, run.scenario
    try:
        await call.dial(scenario.dial, timeout=max(scenario.timeout, 10.0))
    except CallFailed as exc:
        result["error"] = f"the call to {scenario.dial} failed: {exc.reason}"
        return
    result["setup_ms"] = round((call.answered_at - call.invite_sent_at) * 1000, 1)
    run.mark = call.answered_at
    for step in scenario.steps:
        entry = await run.step(step)
        result["steps"].append(entry)
        if not entry["ok"]:
            result["error"] = f"step {step.number} ({step.describe()}): {entry['error']}"
            return


async def _finish(call: Call, result: dict) -> None:
    if call.state.value == "answered":
        await call.hangup()
    result["hangup_by"] = call.hangup_by
    if call.answered_at is not None:
        result["duration_s"] = round((call.ended_at or time.monotonic()) - call.answered_at, 3)
    if call.rtp is not None:
        result["rtp"] = {"send_lateness": call.rtp.send_jitter(),
                         **{k: v for k, v in sorted(call.rtp.stats.items())}}


async def _transcribe_call(run: _Run, result: dict) -> None:
    """The whole call as heard, segment by segment, merged with what the caller said."""
    call = run.call
    heard = call.heard()
    lines = []
    chunk = int(MAX_WINDOW_S * RATE)
    for a, b in voiced_segments(heard, call.silence_rms):
        for start in range(a, b, chunk):
            lo = max(0, start - int(LEAD_IN_S * RATE))
            hi = min(len(heard), min(b, start + chunk) + int(0.1 * RATE))
            text = await run.ears.transcribe(heard[lo:hi], run.scenario.language)
            if text:
                lines.append({"at_s": round(start / RATE, 2), "who": "far end", "text": text})
    result["heard_transcript"] = " ".join(line["text"] for line in lines)
    lines += [{"at_s": run.at(t), "who": "caller", "text": text} for t, text in run.said]
    result["conversation"] = sorted(lines, key=lambda line: line["at_s"])


def _write_recordings(directory: Path, name: str, call: Call) -> dict:
    """heard.wav (the far end), said.wav (the caller) and call.wav (both, in stereo)."""
    from asterisk_agent.speech.audio import write_wav

    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "call"
    heard, said = call.heard(), call.said()
    n = max(len(heard), len(said))
    heard = np.pad(heard, (0, n - len(heard)))
    said = np.pad(said, (0, n - len(said)))
    paths = {"heard": directory / f"{stem}.heard.wav", "said": directory / f"{stem}.said.wav",
             "call": directory / f"{stem}.call.wav"}
    write_wav(paths["heard"], heard, RATE)
    write_wav(paths["said"], said, RATE)
    # stereo is beyond audio.write_wav (mono by design): the standard library writes it
    with wave.open(str(paths["call"]), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.column_stack([said, heard]).astype("<i2").tobytes())
    return {k: str(v) for k, v in paths.items()}


def run_scenario(path_or_dict: Scenario | dict | str | Path, cfg: config.Config,
                 record_dir: Path | None = None, *, ears: Ears | None = None) -> dict:
    """`play_scenario` for code that is not async (tests, the CLI).

    Inside a running event loop the call runs on a thread of its own with its
    own loop, so this works from anywhere.
    """
    coro = play_scenario(path_or_dict, cfg, record_dir, ears=ears)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target():
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc
    thread = threading.Thread(target=target, name="caller-scenario")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


# --- the command line ------------------------------------------------------------

def format_result(result: dict) -> str:
    """A human-readable account of one scenario's call."""
    out = [f"== {result['name']} ({result['file']}): dial {result['dial']}"]
    if result["setup_ms"] is not None:
        out.append(f"   answered after {result['setup_ms']:.0f} ms")
    for line in result.get("conversation", []):
        out.append(f"   {line['at_s']:7.2f} s  {line['who']:>8}: {line['text']}")
    for s in result["steps"]:
        step = next(iter(s["step"].items()))
        what = f"{step[0]} {step[1]!r}" if step[1] is not True else step[0]
        extra = ""
        if s["latency_ms"] is not None:
            extra = f"  reply after {s['latency_ms']:.0f} ms"
        if s["heard"]:
            extra += f"  heard {s['heard']!r}"
        if s["error"]:
            extra += f"  ({s['error']})"
        out.append(f"   {'ok ' if s['ok'] else 'BAD'} step {s['at_s']:6.2f} s  {what}{extra}")
    out.append("   PASSED" if result["passed"] else f"   FAILED: {result['error']}")
    return "\n".join(out)


def main_call(args_paths: list[str], cfg: config.Config, as_json: bool,
              record_dir: Path | None = None) -> int:
    """`asterisk-agent call SCENARIO.yaml...`: 0 when every expectation held.

    Prints each call as a conversation, or with `as_json` one JSON object per
    scenario per line.  A scenario that is not valid is reported and counts as
    failed; the others still run.
    """
    scenarios: list[Scenario | ScenarioError] = []
    for p in args_paths:
        try:
            scenarios.append(load_scenario(p))
        except ScenarioError as exc:
            scenarios.append(exc)
    failed = 0
    ears = None
    try:
        for p, sc in zip(args_paths, scenarios):
            if isinstance(sc, ScenarioError):
                failed += 1
                result = _new_result(Path(p).stem, p, None, str(sc))
                print(json.dumps(result) if as_json else f"== {p}\n   INVALID: {sc}", flush=True)
                continue
            if ears is None:
                try:
                    ears = Ears.load(cfg)
                except (ModelError, RuntimeError) as exc:
                    print(f"the caller cannot listen: {exc}", file=sys.stderr, flush=True)
                    return 1
            try:
                result = run_scenario(sc, cfg, record_dir, ears=ears)
            except ModelError as exc:
                result = _new_result(sc.name, sc.source, sc.dial, f"the caller cannot speak: {exc}")
            failed += not result["passed"]
            print(json.dumps(result) if as_json else format_result(result), flush=True)
    finally:
        if ears is not None:
            ears.close()
    return 0 if failed == 0 else 1
