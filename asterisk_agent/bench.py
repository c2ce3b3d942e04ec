"""The benchmark: the agent measured on real calls through the sandbox PBX.

    python -m asterisk_agent.bench [-c etc/sandbox.conf] [--calls N] [--json]

What it measures, and how:

- Voice-to-voice latency per turn, at 1, 4 and 8 concurrent calls: real SIP
  calls from the scripted caller (asterisk_agent.caller) into extension 200,
  each a few turns (hours, address, parking, goodbye).  A turn's latency is
  the caller's `latency_ms` of a say step: the end of the caller's speech to
  the first agent audio at the caller, on the wire.  A level of c calls runs
  batches of c simultaneous calls until at least N calls were placed; the
  calls of a batch start a few seconds apart, so that their turns do not all
  end at the same instant (--stagger 0: the worst case).  Each answer, as
  the caller transcribed it, is checked against the question; the latency
  of a turn counts only when its answer was right.  One unmeasured warm-up
  call goes first.
- Barge-in: calls where the caller talks during the greeting.  From the
  call's recordings: the caller's speech onset to the end of the agent's last
  audio at the caller while the caller was still talking (the agent stops its
  ARI playback).
- Speech-to-text real-time factor and word error rate on a fixed set: the
  sentences below, synthesized with each caller voice and passed through
  8 kHz u-law, for each engine configuration.
- Text-to-speech time to first audio: the first sentence of a typical reply
  synthesized into the 8 kHz WAV the agent plays, per voice.
- Memory: the agent worker's resident set, idle and at its peak during each
  level; per call: (peak - idle) / c at the highest level c.  The worker is
  found as the child of the agent's supervisor (or, for an agent already
  running, by its command line and configuration file).

It brings up the sandbox PBX and the agent only when they are not already
running, and stops only what it started.  Results go to OUT/bench.json and
OUT/latency.png (OUT defaults to docs/); `--json` prints the same object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from asterisk_agent import config

DEFAULT_CONFIG = Path("etc/sandbox.conf")
DEFAULT_OUT = Path("docs")
DEFAULT_CALLS = 5
LEVELS = (1, 4, 8)
PARTS = ("calls", "barge-in", "red-flag", "stt", "tts", "ehr", "audit", "metrics")
# the extension that goes straight to the agent (no IVR menu first)
DIAL = "200"
# seconds one call may take in all before it is abandoned (its steps time out sooner)
CALL_TIMEOUT_S = 180.0
# seconds one say step waits for the agent's reply
REPLY_TIMEOUT_S = 30.0
# the caller's first words wait this long, then for a pause in the greeting
# (the scenario's polite caller waits at most 10 s for it; the greeting is ~11 s)
GREETING_WAIT_S = 4.0
# The calls of a batch start spread over one turn's cycle (say, answer, next say:
# about 7 s): a script in lockstep would end every call's turn in the same 20 ms,
# a worst case real callers never produce.  Calls still overlap fully.
TURN_CYCLE_S = 7.0
# seconds an agent that is running but not registered has to come back before
# the bench starts one of its own
AGENT_COMEBACK_S = 60.0
# seconds the agent is left alone before its idle memory is read
SETTLE_S = 2.0
# how often the agent worker's resident set is sampled during a level
RSS_SAMPLE_S = 0.1

# Targets the project set itself (reported, never enforced).
TARGETS = (
    ("latency p50, 1 call", ("latency_ms", "calls_1", "p50"), 600.0),
    ("latency p95, 1 call", ("latency_ms", "calls_1", "p95"), 1000.0),
    ("latency p95, 4 calls", ("latency_ms", "calls_4", "p95"), 1500.0),
    ("barge-in p50", ("barge_in_ms", "p50"), 300.0),
    ("red flag to transfer, max", ("red_flag_ms", "max"), 1500.0),
    ("WER, default engine", ("stt", "@default", "wer"), 0.15),
    ("EHR booking p95", ("ehr_booking_ms", "p95"), 50.0),
    ("audit verify, 1M records, s", ("audit", "verify_s"), 30.0),
    ("audit export, a day of 2000 calls, s", ("export", "export_s"), 10.0),
    ("metrics scrape, 8 live calls, p95 ms", ("metrics", "scrape_ms", "p95"), 10.0),
)
# audit records chained into a fresh encrypted store, then verified
AUDIT_RECORDS = 1_000_000
# calls in the day that `audit export` writes out, and turns in each call
EXPORT_CALLS = 2000
EXPORT_TURNS = 16
# GET /metrics timed while the agent holds this many calls, this many times
METRICS_CALLS = 8
METRICS_SCRAPES = 200
# bookings (SRM^S01 -> SRR^S01) timed against the simulated interface engine
EHR_BOOKINGS = 300


@dataclass(frozen=True)
class Turn:
    """One thing the caller says, and what the agent's answer must contain."""

    say: str
    answer: str   # a regex, matched like a scenario's expect


TURNS = (
    Turn("What time do you open on Monday?", r"8|eight"),
    Turn("What is your address?", r"river road"),
    Turn("Where can I park my car?", r"park|lot|behind|elm"),
    Turn("Goodbye.", r"goodbye|thank you"),
)
BARGE_IN_SAY = "Sorry to interrupt, what is your address please?"
# red flags (one each of three kinds): from the end of the sentence to the
# transfer starting, heard by the caller as the first sound of the safety
# message, which the dialplan plays on the way to the on-call
RED_FLAG_SAYS = (
    "I have crushing chest pain and my left arm is numb.",
    "My husband's face is drooping and his speech is slurred.",
    "I can't breathe and my lips are turning blue.",
)
# when the barge-in caller starts talking, seconds after the answer: spread over
# the greeting's sentences (a moment between two sentences is not a barge-in
# and is left out of the figures)
BARGE_IN_AT_S = (2.0, 2.7, 5.0, 8.0, 9.5)
# the agent counts as speaking at the caller's onset if its audio was heard this recently
SPEAKING_WINDOW_S = 0.3

# The fixed STT set: what callers of a practice say.  Written without digits,
# abbreviations or contractions so that the reference has one spelling.
SENTENCES = (
    "What time do you open on Monday?",
    "Where can I park my car?",
    "What is your address?",
    "I would like to make an appointment with Doctor Miller.",
    "Can I get a refill of my blood pressure medication?",
    "Are you open on Saturday morning?",
    "I need to cancel my appointment for tomorrow.",
    "My daughter has a fever and a sore throat.",
    "Can you send my test results to my pharmacy?",
    "Do you accept new patients with Medicare?",
    "Is there parking behind the building?",
    "Please let me speak to the front desk.",
)
VOICES = ("hibari", "espeak-ng")
# engine configurations: (label, engine, model, audio_ctx, beam_size); the first is
# the default
STT_ENGINES = (
    ("whisper.cpp tiny.en", "whisper.cpp", "tiny.en", 128, 1),
    ("whisper.cpp tiny.en beam 5", "whisper.cpp", "tiny.en", 128, 5),
    ("whisper.cpp tiny.en full context", "whisper.cpp", "tiny.en", 0, 1),
    ("faster-whisper tiny.en", "faster-whisper", "tiny.en", 0, 5),
    ("faster-whisper tiny.en greedy", "faster-whisper", "tiny.en", 0, 1),
)
# an utterance as the agent's endpointer hands it over: some lead-in and tail kept
UTTERANCE_LEAD_MS = 200
UTTERANCE_TAIL_MS = 300
# the synthesis is timed this many times after one warm-up; the median is reported
TTS_RUNS = 5


class BenchError(Exception):
    """Something the benchmark needs is missing or broken; the message says what to do."""


# --- figures (pure) -------------------------------------------------------------------

def cpu_times(stat: str | None = None) -> tuple[int, int]:
    """(all CPU time, time stolen by the hypervisor) from /proc/stat, in ticks."""
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return 0, 0
    fields = [int(x) for x in stat.split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return sum(fields[:8]), (fields[7] if len(fields) > 7 else 0)


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of CPU time a virtual machine's host took away in between: a
    figure measured while it was high is the host's, not the agent's."""
    total = after[0] - before[0]
    return round(100.0 * (after[1] - before[1]) / total, 1) if total > 0 else None


def summarize(values: Iterable[float | None]) -> dict:
    """p50, p95, max and n of the values (None and NaN are left out).

    Percentiles by nearest rank: always a value that was measured, and with
    few samples a high percentile is the worst one, not an interpolation
    below it.
    """
    v = sorted(float(x) for x in values if x is not None and math.isfinite(x))
    if not v:
        return {"p50": None, "p95": None, "max": None, "n": 0}

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p / 100 * len(v)) - 1)]
    return {"p50": round(rank(50), 1), "p95": round(rank(95), 1), "max": round(v[-1], 1), "n": len(v)}


def loud_frames(pcm: np.ndarray, threshold: float, frame: int) -> np.ndarray:
    """Indices of the frames whose RMS is above threshold."""
    n = len(pcm) // frame
    if n == 0:
        return np.zeros(0, dtype=int)
    frames = pcm[:n * frame].astype(np.float64).reshape(n, frame)
    return np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > threshold)


def barge_in_stop(said: np.ndarray, heard: np.ndarray, rate: int = 8000, frame: int = 160,
                  threshold: float = 100.0, speaking_window_s: float = SPEAKING_WINDOW_S,
                  max_gap_s: float = 0.6) -> dict:
    """How long the agent kept talking once the caller started (both tracks on one timeline).

    said: what the caller sent, heard: what the caller received.  The
    caller's first utterance (voiced frames, pauses under max_gap_s bridged)
    is the barge-in.  Returns {"ms": ..., "verdict": ...}: "stopped" with the
    ms from its onset to the end of the agent's last audio heard before the
    utterance ended; "not stopped" when the agent was still audible at the
    utterance's end (ms is then a lower bound); "not speaking" when the agent
    was silent at the onset (no barge-in to measure, ms None); "no speech"
    when the caller said nothing.
    """
    said_loud = loud_frames(said, threshold, frame)
    if said_loud.size == 0:
        return {"ms": None, "verdict": "no speech", "onset_s": None}
    max_gap = max(1, int(round(max_gap_s * rate / frame)))
    start = end = int(said_loud[0])
    for f in said_loud[1:]:
        if f - end > max_gap:
            break
        end = int(f)
    onset_s = start * frame / rate
    heard_loud = loud_frames(heard, threshold, frame)
    window = int(round(speaking_window_s * rate / frame))
    before = heard_loud[(heard_loud >= start - window) & (heard_loud <= start)]
    if before.size == 0:
        return {"ms": None, "verdict": "not speaking", "onset_s": onset_s}
    during = heard_loud[(heard_loud >= start - window) & (heard_loud <= end)]
    last = int(during[-1])
    ms = max(0.0, (last + 1 - start) * frame / rate * 1000)
    verdict = "not stopped" if last >= end - 1 else "stopped"
    return {"ms": round(ms, 1), "verdict": verdict, "onset_s": onset_s}


def turn_replies(result: dict, turns: Sequence[Turn]) -> list[bool | None]:
    """Per turn: did the agent's answer (as the caller transcribed it) fit? None: no answer heard.

    The caller's lines in the call's conversation are its say steps in order;
    an answer is every far-end line between one caller line and the next.
    """
    from asterisk_agent.caller.scenario import matches

    lines = result.get("conversation") or []
    caller = [i for i, line in enumerate(lines) if line.get("who") == "caller"]
    out: list[bool | None] = []
    for k, turn in enumerate(turns):
        if k >= len(caller):
            out.append(None)
            continue
        stop = caller[k + 1] if k + 1 < len(caller) else len(lines)
        answer = " ".join(line["text"] for line in lines[caller[k] + 1:stop]
                          if line.get("who") != "caller")
        out.append(matches(re.compile(turn.answer, re.IGNORECASE), answer) if answer else None)
    return out


def say_latencies(result: dict) -> list[float | None]:
    """The reply latency of each of a call's say steps, in order.

    None where there is none to take: no reply, or the agent talked over the
    caller (its earlier answer still going), which makes a reply latency
    meaningless.
    """
    out: list[float | None] = []
    for step in result.get("steps", []):
        if "say" not in step.get("step", {}):
            continue
        latency = step.get("latency_ms")
        ok = isinstance(latency, (int, float)) and not step.get("overlap")
        out.append(float(latency) if ok else None)
    return out


def turn_samples(result: dict, turns: Sequence[Turn]) -> tuple[list[float], dict]:
    """The latencies of the turns the agent answered right, and counts of the rest.

    A wrong answer's latency is left out: it may not be the agent's at all
    (the operator fallback after an agent died plays its own prompt).
    """
    latencies = say_latencies(result)
    checks = turn_replies(result, turns)
    overlapped = sum(1 for step in result.get("steps", [])
                     if "say" in step.get("step", {}) and step.get("overlap"))
    samples = [lat for lat, ok in zip(latencies, checks) if lat is not None and ok]
    return samples, {"answers": len(checks), "answers_right": sum(1 for c in checks if c),
                     "overlapped": overlapped}


# Whisper writes these as abbreviations; the reference spells them out
_SPELLED_OUT = {"dr": "doctor", "mr": "mister", "appt": "appointment"}


def normalize_text(text: str) -> str:
    """For word error rates: lower case, no punctuation, numbers as words ("8" -> "eight")."""
    from asterisk_agent.caller.scenario import clean, digits_to_words

    words = digits_to_words(clean(text)).replace(":", " ").split()
    return " ".join(_SPELLED_OUT.get(w, w) for w in words)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate of normalized transcripts (jiwer)."""
    try:
        import jiwer
    except ImportError:
        raise BenchError("jiwer is not installed: .venv/bin/pip install jiwer "
                         "(tools/bench installs it)") from None
    if len(references) != len(hypotheses) or not references:
        raise ValueError("word_error_rate needs as many hypotheses as references, at least one")
    refs = [normalize_text(r) for r in references]
    if not all(refs):
        raise ValueError("a reference has no words")
    return float(jiwer.wer(refs, [normalize_text(h) for h in hypotheses]))


_AGENT_STT = (
    # "2.1 s of speech, transcript ready 133 ms after the end of the turn"
    re.compile(r"(\d+(?:\.\d+)?) s of speech, transcript ready (\d+) ms after the end of the turn"),
    # "2.1 s of speech transcribed in 380 ms"
    re.compile(r"(\d+(?:\.\d+)?) s of speech transcribed in (\d+) ms"),
)


# "...; the turn ended 190 ms after its last voiced frame (turn model)"
_TURN_END = re.compile(r"the turn ended (\d+) ms after its last voiced frame( \(turn model\))?")


def agent_turn_ends(log_text: str) -> list[tuple[float, bool]]:
    """(ms from the last voiced frame to the end of the turn, whether the turn
    model ended it) from the agent's log lines."""
    return [(float(m.group(1)), m.group(2) is not None)
            for m in map(_TURN_END.search, log_text.splitlines()) if m]


# agent.py: "call 1795302865.0 from caller: start"
_CALL_START = re.compile(r"\bcall \S+ from .*: start\b")


def agent_stt_times(log_text: str) -> list[tuple[float, float]]:
    """(seconds of speech, ms the turn waited for its transcript) from the agent's log lines."""
    out = []
    for line in log_text.splitlines():
        for pattern in _AGENT_STT:
            m = pattern.search(line)
            if m:
                out.append((float(m.group(1)), float(m.group(2))))
                break
    return out


def _dig(report: dict, path: Sequence[str]) -> Any:
    value: Any = report
    for key in path:
        if key == "@default":  # the engine the agent is configured with
            key = report.get("config", {}).get("stt", STT_ENGINES[0][0])
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_targets(report: dict) -> list[dict]:
    out = []
    for name, path, limit in TARGETS:
        value = _dig(report, path)
        met = None if not isinstance(value, (int, float)) else value <= limit
        out.append({"target": name, "limit": limit, "value": value, "met": met})
    return out


def latency_breakdown(report: dict) -> dict | None:
    """What the median turn at the lowest concurrency is made of, as far as it is known.

    The caller's latency = the silence that ends the turn (from the agent's
    log: the end-of-turn model's verdict at a pause, or the configured window)
    + the wait for the transcript after it (agent log) + the first sentence's
    synthesis (TTS bench) + the rest (the reply logic, ARI play, RTP, 20 ms
    frame granularity).
    """
    levels = report.get("latency_ms") or {}
    if not levels:
        return None
    key = min(levels, key=lambda k: int(k.removeprefix("calls_")))
    total = levels[key].get("p50")
    agent = (report.get("agent_stt_ms") or {}).get(key) or {}
    # the measured end of the turn when the agent logged it, else the window
    measured = (agent.get("turn_end_ms") or {}).get("p50")
    silence = measured or (report.get("config") or {}).get("vad_silence_ms")
    stt = agent.get("p50")
    tts = (report.get("tts_first_audio_ms") or {}).get((report.get("config") or {}).get("tts"))
    if None in (total, silence, stt, tts) or total < silence + stt + tts:
        return None  # a part not measured, or taken from other calls than the bench's
    return {"level": key, "latency_p50": total, "end_of_turn_silence": silence,
            "end_of_turn_from": "agent log" if measured else "config", "stt_wait_p50": stt,
            "tts_first_sentence": tts, "rest": round(total - silence - stt - tts, 1)}


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _latency_lines(report: dict) -> list[str]:
    lat = report.get("latency_ms") or {}
    if not lat:
        return []
    out = ["", "Voice-to-voice latency per turn, ms "
               "(caller's end of speech -> first agent audio at the caller)",
           f"  {'calls at once':>13} {'p50':>6} {'p95':>6} {'max':>6} {'n':>4}"
           f"  {'answers right':>13}  {'agent STT wait p50/p95':>22}"]
    for key, s in lat.items():
        stt = (report.get("agent_stt_ms") or {}).get(key) or {}
        right = f"{s.get('answers_right', 0)}/{s.get('answers', 0)}"
        wait = f"{_fmt(stt.get('p50'))} / {_fmt(stt.get('p95'))}"
        out.append(f"  {key.removeprefix('calls_'):>13} {_fmt(s['p50']):>6} {_fmt(s['p95']):>6}"
                   f" {_fmt(s['max']):>6} {s['n']:>4}  {right:>13}  {wait:>22}")
        if s.get("calls_failed"):
            out.append(f"  {'':>13} {s['calls_failed']} of {s['calls']} call(s) failed: "
                       + "; ".join(s.get("failures", [])[:3]))
        if stt.get("note"):
            out.append(f"  {'':>13} agent STT wait: {stt['note']}")
    parts = report.get("latency_breakdown_ms")
    if parts:
        out.append(f"  the p50 turn at {parts['level'].removeprefix('calls_')} call(s), "
                   f"{_fmt(parts['latency_p50'])} ms ~ "
                   f"{_fmt(parts['end_of_turn_silence'])} end-of-turn silence "
                   f"({parts.get('end_of_turn_from', 'config')})"
                   f" + {_fmt(parts['stt_wait_p50'])} waiting for the transcript (agent log)"
                   f" + {_fmt(parts['tts_first_sentence'])} first sentence TTS"
                   f" + {_fmt(parts['rest'])} the rest")
    return out


def _speech_lines(report: dict) -> list[str]:
    out = []
    stt = report.get("stt") or {}
    if stt:
        out += ["", f"Speech-to-text on {len(SENTENCES)} sentences x {len(VOICES)} voices, 8 kHz u-law",
                f"  {'engine':<34} {'RTF':>6} {'WER':>6} "
                + " ".join(f"{'WER ' + v:>14}" for v in VOICES)]
        for name, s in stt.items():
            if "error" in s:
                out.append(f"  {name:<34} {s['error']}")
                continue
            by_voice = " ".join(f"{_fmt(s['wer_by_voice'].get(v), 3):>14}" for v in VOICES)
            out.append(f"  {name:<34} {_fmt(s['rtf'], 3):>6} {_fmt(s['wer'], 3):>6} {by_voice}")
    tts = report.get("tts_first_audio_ms") or {}
    if tts:
        out += ["", "Text-to-speech, first sentence of a reply to 8 kHz WAV, ms: "
                + ", ".join(f"{v} {_fmt(ms)}" for v, ms in tts.items())]
    return out


def format_report(report: dict) -> str:
    """The report as a readable table."""
    machine = report.get("machine", {})
    head = f"asterisk-agent benchmark, {report.get('when', '')}: {machine.get('cpus', '?')} CPUs"
    if "agent" in report:
        head += ", agent " + ("started by the bench" if report["agent"].get("started_by_bench")
                              else "already running")
    out = [head]
    loads = report.get("load_average") or {}
    if loads:
        out.append("Load average (1 min) at the start of each part, other work included: "
                   + ", ".join(f"{k} {v}" for k, v in loads.items()))
    steal = report.get("cpu_steal_pct") or {}
    if steal:
        out.append("CPU time taken by the virtual machine's host (steal) during each part: "
                   + ", ".join(f"{k} {v}%" for k, v in steal.items()))
    out += _latency_lines(report)
    b = report.get("barge_in_ms")
    if b:
        out += ["", "Barge-in, ms (caller's speech onset -> agent audio stops at the caller): "
                    f"p50 {_fmt(b['p50'])}  p95 {_fmt(b['p95'])}  max {_fmt(b['max'])}  n {b['n']}",
                f"  not stopped while the caller talked: {b.get('not_stopped', 0)}; "
                f"left out: agent silent at the onset {b.get('not_speaking', 0)}, "
                f"question not answered {b.get('not_answered', 0)}"]
    r = report.get("red_flag_ms")
    if r:
        out += ["", "Red flag to transfer, ms (end of the caller's sentence -> the safety "
                    f"message starts on the way to the on-call): p50 {_fmt(r['p50'])}  "
                    f"max {_fmt(r['max'])}  n {r['n']}, not transferred {r['not_transferred']}"]
    out += _speech_lines(report)
    a = report.get("audit")
    if a:
        out += ["", f"Audit trail: {a['records']} records written in {_fmt(a['write_s'], 1)} s, "
                    f"verified in {_fmt(a['verify_s'], 1)} s "
                    f"({'intact' if a['intact'] else 'BROKEN'}); store {_fmt(a['store_mb'], 1)} MB"]
    x = report.get("export")
    if x:
        out += ["", f"Audit export: a day of {x['calls']} calls "
                    f"({sum(x['records'].values())} records, {_fmt(x['export_mb'], 1)} MB) in "
                    f"{_fmt(x['export_s'], 2)} s ({_fmt(x['cpu_s'], 2)} s of CPU)"]
    mt = report.get("metrics")
    if mt:
        s = mt["scrape_ms"]
        out += ["", f"Metrics: GET /metrics with {mt['live_calls']} live calls, ms: "
                    f"p50 {_fmt(s['p50'], 1)}  p95 {_fmt(s['p95'], 1)}  max {_fmt(s['max'], 1)}  "
                    f"n {s['n']}"]
    mem = report.get("memory") or {}
    if mem:
        out += ["", f"Agent worker memory: idle {_fmt(mem.get('idle_rss_mb'))} MB, peak "
                    f"{_fmt(mem.get('peak_rss_mb'))} MB at {mem.get('level')} calls -> "
                    f"{_fmt(report.get('peak_rss_mb_per_call'), 1)} MB per call"]
    targets = report.get("targets") or []
    if targets:
        out += ["", "Targets"]
        for t in targets:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            value = _fmt(t["value"], 3 if t["limit"] < 1 else 0)
            out.append(f"  {t['target']:<32} <= {t['limit']:g}: {value} {verdict}")
    for e in report.get("errors") or []:
        out.append(f"ERROR: {e}")
    return "\n".join(out)


def draw_latency_histogram(samples: dict[str, list[float]], barge_in: list[float], path: Path) -> None:
    """Latency histograms (one outline per concurrency level) and barge-in, into a PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise BenchError("matplotlib is not installed: .venv/bin/pip install matplotlib "
                         "(tools/bench installs it)") from None
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 1.2]})
    everything = [v for values in samples.values() for v in values] + list(barge_in)
    top = max(everything, default=1000.0)
    bins = np.arange(0, top + 100, 50)
    for key, values in samples.items():
        if not values:
            continue
        s = summarize(values)
        label = (f"{key.removeprefix('calls_')} at once: p50 {s['p50']:.0f}, "
                 f"p95 {s['p95']:.0f} ms (n {s['n']})")
        ax.hist(values, bins=bins, histtype="step", linewidth=1.8, label=label)
    ax.axvline(600, color="grey", linestyle=":", linewidth=1)
    ax.axvline(1000, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("end of caller speech -> first agent audio (ms)")
    ax.set_ylabel("turns")
    ax.set_title("Voice-to-voice latency per turn (targets: dotted p50, dashed p95)")
    ax.legend(fontsize=8)
    if barge_in:
        bx.hist(barge_in, bins=np.arange(0, max(barge_in) + 50, 25), color="tab:red")
        bx.axvline(300, color="grey", linestyle=":", linewidth=1)
    for axis in (ax, bx):
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    bx.set_xlabel("caller onset -> agent audio stops (ms)")
    bx.set_title(f"Barge-in (n {len(barge_in)})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the agent's process (I/O) ------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB (empty if it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux clear_refs, value 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _start_time(pid: int) -> int:
    try:
        # field 22 of stat; the command name (field 2) may hold spaces, so split after ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def is_agent(args: Sequence[str]) -> bool:
    """An `asterisk-agent serve` command line, supervisor or worker (however it was started)."""
    return any(a == "asterisk_agent" or Path(a).name == "asterisk-agent" for a in args) \
        and "serve" in args


def is_agent_worker(args: Sequence[str]) -> bool:
    """An `asterisk-agent serve --worker` command line (however it was started)."""
    return is_agent(args) and "--worker" in args


def agent_processes(config_path: Path | None) -> list[int]:
    """Agent processes (supervisors and workers) started with this configuration file."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and is_agent(_cmdline(int(p)))]
    if config_path is None:
        return pids
    return [p for p in pids if config_of(p, _cmdline(p)) == config_path.resolve()]


def config_of(pid: int, args: Sequence[str]) -> Path | None:
    """The configuration file an agent process was started with (-c/--config), resolved."""
    # only the agent's own arguments: the interpreter's "-c" is not a config file
    start = next((i for i, a in enumerate(args)
                  if a == "asterisk_agent" or Path(a).name == "asterisk-agent"), None)
    if start is None:
        return None
    for i, a in enumerate(args):
        if i <= start:
            continue
        value = None
        if a in ("-c", "--config") and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("--config="):
            value = a.partition("=")[2]
        if value:
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                return None
            return (cwd / value).resolve()
    return None


def find_agent_worker(supervisor_pid: int | None = None, config_path: Path | None = None) -> int | None:
    """The agent's call-handling process.

    Our own supervisor's child if we started it; else, among the workers
    running, the newest started with our configuration file (other
    checkouts may run agents of their own), or the newest of all.
    """
    if supervisor_pid is not None:
        kids = [p for p in _children(supervisor_pid) if is_agent_worker(_cmdline(p))]
        return kids[0] if kids else None
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and is_agent_worker(_cmdline(int(p)))]
    if config_path is not None:
        ours = [p for p in workers if config_of(p, _cmdline(p)) == config_path.resolve()]
        workers = ours or workers
    return max(workers, key=_start_time) if workers else None


def log_file_of(pid: int) -> Path | None:
    """Where a process writes its stderr, if that is a regular file (its log)."""
    try:
        target = Path(os.readlink(f"/proc/{pid}/fd/2"))
    except OSError:
        return None
    return target if target.is_absolute() and target.is_file() else None


class RssSampler:
    """The highest VmRSS of a process, read every RSS_SAMPLE_S on a thread.

    Backs up VmHWM where the peak cannot be reset (another user's process).
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, proc_status(self.pid).get("VmRSS", 0))
            self._stop.wait(RSS_SAMPLE_S)


async def agent_registered(cfg: config.Config) -> bool:
    from asterisk_agent.telephony.ari import AriClient, AriError

    try:
        async with AriClient(cfg.ari) as ari:
            return any(a.get("name") == cfg.ari.app for a in await ari.applications())
    except (AriError, OSError, asyncio.TimeoutError):
        return False


@dataclass
class Harness:
    """The sandbox PBX and the agent: used if running, else started (and stopped at the end)."""

    cfg: config.Config
    started_pbx: bool = False
    agent: subprocess.Popen | None = None
    agent_log: Path | None = None
    worker_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def up(self, wait_s: float = 180.0) -> None:
        from asterisk_agent.pbx.sandbox import Sandbox

        box = Sandbox(self.cfg)
        if not box.status().get("running"):
            if os.geteuid() != 0:
                raise BenchError("the sandbox PBX is not running, and starting it needs root "
                                 "(debootstrap, chroot, mount namespaces): run tools/bench as root")
            _progress("starting the sandbox PBX (the first time builds it, ~2 min)")
            box.up()
            self.started_pbx = True
        registered = asyncio.run(agent_registered(self.cfg))
        if not registered and agent_processes(self.cfg.path):
            # an agent between two workers, or reconnecting to a restarted Asterisk, is not
            # missing: a second one would take its application away (or lose it to it)
            _progress("an agent is running but not registered with Asterisk: waiting for it")
            registered = self._wait_registered(AGENT_COMEBACK_S, None)
        if registered:
            _progress("using the agent that is already running")
        else:
            self._start_agent(wait_s)
        self.find_worker()

    def find_worker(self) -> None:
        """The worker serving calls now (a supervisor restarts it with a new pid), and its log."""
        self.worker_pid = find_agent_worker(self.agent.pid if self.agent else None, self.cfg.path)
        if self.worker_pid is None:
            self._note("the agent's worker process was not found: no memory figures")
        elif self.agent is None:
            self.agent_log = log_file_of(self.worker_pid)
            if self.agent_log is None:
                self._note("the running agent logs to no file: no STT timings from its log")

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def _wait_registered(self, wait_s: float, proc: subprocess.Popen | None) -> bool:
        deadline = time.monotonic() + wait_s
        while not asyncio.run(agent_registered(self.cfg)):
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"the agent exited with status {proc.returncode} before it "
                                 f"registered with Asterisk; its log:\n{_tail(self.agent_log)}")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def _start_agent(self, wait_s: float) -> None:
        logdir = Path(tempfile.mkdtemp(prefix="asterisk-agent-bench."))
        self.agent_log = logdir / "agent.log"
        _progress(f"starting the agent (log: {self.agent_log})")
        cmd = [sys.executable, "-m", "asterisk_agent", "serve", "--log-level", "info"]
        if self.cfg.path is not None:
            cmd += ["-c", str(self.cfg.path)]
        with open(self.agent_log, "ab") as log:
            # its own session: a Ctrl-C at the terminal reaches the bench, which stops it in order
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        if not self._wait_registered(wait_s, self.agent):
            raise BenchError(f"the agent did not register with Asterisk within {wait_s:g} s; "
                             f"its log:\n{_tail(self.agent_log)}")
        # the worker may be replaced once the supervisor settles: look again after a moment
        for _ in range(50):
            if find_agent_worker(self.agent.pid) is not None:
                break
            time.sleep(0.1)

    def down(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            _progress("stopping the agent the bench started")
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)
                self.agent.wait(5)
        if self.started_pbx:
            from asterisk_agent.pbx.sandbox import Sandbox

            _progress("stopping the sandbox PBX the bench started")
            Sandbox(self.cfg).down()
            self.started_pbx = False

    def log_size(self) -> int:
        try:
            return self.agent_log.stat().st_size if self.agent_log else 0
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        if self.agent_log is None:
            return ""
        try:
            with open(self.agent_log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _tail(path: Path | None, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path else ""
    except OSError:
        return ""


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- calls (I/O) --------------------------------------------------------------------

def turns_scenario(name: str) -> dict:
    steps: list[dict] = [{"wait": GREETING_WAIT_S}]
    steps += [{"say": t.say, "timeout": REPLY_TIMEOUT_S} for t in TURNS]
    steps.append({"expect_hangup": True, "timeout": 20})
    return {"name": name, "dial": DIAL, "steps": steps}


def warm_up_scenario() -> dict:
    return {"name": "bench-warm-up", "dial": DIAL, "steps": [
        {"wait": GREETING_WAIT_S},
        {"say": TURNS[0].say, "timeout": REPLY_TIMEOUT_S},
        {"say": TURNS[-1].say, "timeout": REPLY_TIMEOUT_S},
        {"expect_hangup": True, "timeout": 20},
    ]}


def barge_in_scenario(name: str, at_s: float) -> dict:
    return {"name": name, "dial": DIAL, "steps": [
        {"wait": at_s},
        {"say": BARGE_IN_SAY, "barge_in": True, "timeout": REPLY_TIMEOUT_S},
        {"say": "Goodbye.", "timeout": REPLY_TIMEOUT_S},
        {"expect_hangup": True, "timeout": 20},
    ]}


def red_flag_scenario(name: str, say: str) -> dict:
    return {"name": name, "dial": DIAL, "steps": [
        {"expect": "front desk", "timeout": 30},   # the whole greeting, then a quiet line
        {"say": say, "timeout": REPLY_TIMEOUT_S},
        {"expect": "911|emergency", "timeout": 20},
        {"hangup": True},
    ]}


async def _one_call(scenario: dict, cfg: config.Config, ears, record_dir: Path | None,
                    delay_s: float = 0.0) -> dict:
    from asterisk_agent.caller.scenario import play_scenario

    await asyncio.sleep(delay_s)
    try:
        return await asyncio.wait_for(play_scenario(scenario, cfg, record_dir, ears=ears),
                                      CALL_TIMEOUT_S)
    except asyncio.TimeoutError:
        error = f"the call took over {CALL_TIMEOUT_S:g} s"
    except Exception as exc:  # one broken call is a figure, not the end of the run
        error = f"{type(exc).__name__}: {exc}"
    return {"name": scenario["name"], "passed": False, "error": error, "steps": [], "conversation": []}


@dataclass
class LevelResult:
    level: int
    results: list[dict]
    agent_log: str = ""
    idle_kb: int | None = None
    peak_kb: int | None = None
    peak_method: str = ""
    # whether the worker measured (and its log) handled calls in this level, and how many
    served: bool = False
    agent_calls: int = 0


async def run_level(cfg: config.Config, ears, harness: Harness, level: int, calls: int,
                    stagger_s: float, deadline: float) -> LevelResult:
    """Batches of `level` simultaneous calls until at least `calls` were placed.

    The calls of a batch start spread over stagger_s seconds (0: all at once).
    """
    await asyncio.sleep(SETTLE_S)
    harness.find_worker()
    out = LevelResult(level, [])
    pid = harness.worker_pid
    reset = False
    if pid is not None:
        out.idle_kb = proc_status(pid).get("VmRSS")
        reset = reset_peak_rss(pid)
    offset = harness.log_size()
    batches = math.ceil(calls / level)
    sampler = RssSampler(pid or 0)
    with sampler if pid is not None else contextlib.nullcontext():
        for batch in range(batches):
            if time.monotonic() > deadline:
                _progress(f"time is up: level {level} stopped after {len(out.results)} call(s)")
                break
            _progress(f"{level} call(s) at once: batch {batch + 1} of {batches}")
            names = [f"bench-{level}x-{batch}-{i}" for i in range(level)]
            out.results += await asyncio.gather(
                *(_one_call(turns_scenario(n), cfg, ears, None, i * stagger_s / level)
                  for i, n in enumerate(names)))
            await asyncio.sleep(1.0)
    if pid is not None:
        hwm = proc_status(pid).get("VmHWM") if reset else None
        out.peak_kb = max(hwm or 0, sampler.peak_kb) or None
        out.peak_method = "VmHWM after reset" if reset else f"VmRSS sampled every {RSS_SAMPLE_S:g} s"
    out.agent_log = harness.log_since(offset)
    out.agent_calls = len(_CALL_START.findall(out.agent_log))
    out.served = out.agent_calls > 0
    return out


async def run_barge_in(cfg: config.Config, ears, calls: int, deadline: float) -> list[dict]:
    """Barge-in calls one at a time; each measured from its recordings."""
    from asterisk_agent.speech.audio import read_wav

    out = []
    with tempfile.TemporaryDirectory(prefix="asterisk-agent-bench-rec.") as tmp:
        for i in range(calls):
            if time.monotonic() > deadline:
                _progress(f"time is up: barge-in stopped after {i} call(s)")
                break
            at_s = BARGE_IN_AT_S[i % len(BARGE_IN_AT_S)]
            _progress(f"barge-in call {i + 1} of {calls} (caller talks at {at_s:g} s)")
            result = await _one_call(barge_in_scenario(f"barge-in-{i}", at_s), cfg, ears, Path(tmp))
            measure: dict[str, Any] = {"ms": None, "verdict": "no recording"}
            rec = result.get("recordings")
            if rec:
                try:
                    said, rate = read_wav(rec["said"])
                    heard, _ = read_wav(rec["heard"])
                    measure = barge_in_stop(said, heard, rate)
                except (OSError, ValueError) as exc:
                    measure = {"ms": None, "verdict": f"recording unreadable: {exc}"}
            out.append({"at_s": at_s, "passed": result["passed"], "error": result["error"],
                        "reply": turn_replies(result, [Turn(BARGE_IN_SAY, TURNS[1].answer)])[0],
                        **measure})
            await asyncio.sleep(1.0)
    return out


async def run_red_flags(cfg: config.Config, ears, harness: Harness, calls: int,
                        deadline: float) -> list[dict]:
    """Red-flag calls one at a time: the caller's wait for the transfer to start."""
    out = []
    for i in range(calls):
        if time.monotonic() > deadline:
            _progress(f"time is up: red flags stopped after {i} call(s)")
            break
        say = RED_FLAG_SAYS[i % len(RED_FLAG_SAYS)]
        _progress(f"red-flag call {i + 1} of {calls}")
        offset = harness.log_size()
        result = await _one_call(red_flag_scenario(f"red-flag-{i}", say), cfg, ears, None)
        await asyncio.sleep(1.0)
        out.append({"say": say, "passed": result["passed"], "error": result["error"],
                    "ms": (say_latencies(result) or [None])[0],
                    "transferred": "end (urgent)" in harness.log_since(offset)})
    return out


async def run_calls(cfg: config.Config, harness: Harness, opts: "Options",
                    deadline: float) -> tuple[list[LevelResult], list[dict], list[dict]]:
    """The latency levels, then the barge-in and red-flag calls, with one caller
    (its models loaded once)."""
    from asterisk_agent.caller.scenario import Ears

    loop = asyncio.get_running_loop()
    _progress("loading the caller's speech models")
    # the caller's Whisper at the lowest priority: the instrument, not the load
    ears = await loop.run_in_executor(None, Ears.load, cfg, True)
    levels = opts.levels if "calls" in opts.parts else ()
    barge_in_calls = opts.barge_in_calls if "barge-in" in opts.parts else 0
    red_flag_calls = opts.barge_in_calls if "red-flag" in opts.parts else 0
    try:
        if levels or barge_in_calls or red_flag_calls:
            # a freshly started agent pays one-time costs on its first call (first
            # inference allocations, model pages read in); the bench may have found one
            # that just started, so one call always goes first, unmeasured
            _progress("warm-up call (not measured)")
            await _one_call(warm_up_scenario(), cfg, ears, None)
        levels_out = []
        for level in levels:
            levels_out.append(await run_level(cfg, ears, harness, level, max(opts.calls, level),
                                              opts.stagger_s, deadline))
        barge = await run_barge_in(cfg, ears, barge_in_calls, deadline) if barge_in_calls else []
        red = (await run_red_flags(cfg, ears, harness, red_flag_calls, deadline)
               if red_flag_calls else [])
    finally:
        ears.close()
    return levels_out, barge, red


def level_report(lr: LevelResult) -> tuple[dict, dict, list[float]]:
    """(latency summary, agent STT summary, latency samples) of one level."""
    samples: list[float] = []
    counts = {"answers": 0, "answers_right": 0, "overlapped": 0}
    failures = []
    for r in lr.results:
        values, n = turn_samples(r, TURNS)
        samples += values
        counts = {k: counts[k] + n[k] for k in counts}
        if not r["passed"]:
            failures.append(r.get("error") or "failed")
    summary = summarize(samples) | counts | {
        "calls": len(lr.results), "calls_failed": len(failures), "failures": failures,
        "samples": [round(v, 1) for v in samples]}
    stt = summarize(ms for _, ms in agent_stt_times(lr.agent_log)) | {"agent_calls": lr.agent_calls}
    ends = agent_turn_ends(lr.agent_log)
    if ends:
        # from the last voiced frame to the end of the turn, and how many turns
        # the end-of-turn model ended at a pause (the rest waited out the window)
        stt["turn_end_ms"] = summarize(ms for ms, _ in ends)
        stt["ended_by_turn_model"] = sum(1 for _, by_model in ends if by_model)
    if lr.agent_calls > len(lr.results) + 1:  # the warm-up call may fall in the first window
        stt["note"] = (f"the agent took {lr.agent_calls} calls while the bench placed "
                       f"{len(lr.results)}: these figures include other calls")
    return summary, stt, samples


# --- models (I/O) ---------------------------------------------------------------------

def make_utterances() -> list[tuple[str, str, np.ndarray]]:
    """(voice, sentence, 8 kHz audio through u-law) for every sentence in every voice."""
    from asterisk_agent.speech import audio, tts

    out = []
    for voice in VOICES:
        synth = tts.load_synthesizer(config.Tts(engine=voice))
        for sentence in SENTENCES:
            pcm, rate = synth.synthesize(sentence)
            pcm = audio.resample(pcm, rate, 8000)
            pcm = audio.trim_silence(pcm, 8000, lead_ms=UTTERANCE_LEAD_MS, tail_ms=UTTERANCE_TAIL_MS)
            out.append((voice, sentence, audio.through_ulaw(pcm)))
    return out


def bench_stt(cfg: config.Config, utterances: list[tuple[str, str, np.ndarray]]) -> dict:
    from asterisk_agent.speech import ModelError, stt

    out: dict[str, dict] = {}
    audio_s = sum(len(pcm) for _, _, pcm in utterances) / 8000
    for label, engine, model, audio_ctx, beam_size in STT_ENGINES:
        _progress(f"STT: {label}")
        stt_cfg = dataclasses.replace(cfg.stt, engine=engine, model=model, audio_ctx=audio_ctx,
                                      beam_size=beam_size, workers=1)
        try:
            transcriber = stt.load_transcriber(stt_cfg)
        except ModelError as exc:
            out[label] = {"error": str(exc)}
            continue
        hyps, spent = [], 0.0
        for _, _, pcm in utterances:
            t0 = time.perf_counter()
            hyps.append(transcriber.transcribe(pcm, 8000))
            spent += time.perf_counter() - t0
        refs = [s for _, s, _ in utterances]
        voices = [v for v, _, _ in utterances]

        def wer_of(voice: str) -> float:
            pairs = [(r, h) for v, r, h in zip(voices, refs, hyps) if v == voice]
            return round(word_error_rate([r for r, _ in pairs], [h for _, h in pairs]), 3)
        out[label] = {"rtf": round(spent / audio_s, 3), "wer": round(word_error_rate(refs, hyps), 3),
                      "wer_by_voice": {v: wer_of(v) for v in VOICES},
                      "utterances": len(utterances), "audio_s": round(audio_s, 1),
                      "threads": stt_cfg.threads, "beam_size": stt_cfg.beam_size,
                      "misheard": [{"voice": v, "said": r, "heard": h}
                                   for v, r, h in zip(voices, refs, hyps)
                                   if normalize_text(r) != normalize_text(h)]}
        del transcriber
    return out


def typical_first_sentence(cfg: config.Config) -> str:
    """The first sentence of the agent's answer to the first bench turn."""
    from asterisk_agent.dialog import first, practice
    from asterisk_agent.speech.tts import split_sentences

    facts = practice.load(cfg.practice_path)
    return split_sentences(first.respond(TURNS[0].say, facts, facts.now()).text)[0]


def bench_audit(records: int) -> dict:
    """`audit verify` over a chain of `records` call events in a fresh encrypted
    store (written in batches as the agent would over months): seconds to write,
    seconds to verify."""
    from asterisk_agent.compliance.audit import AuditLog
    from asterisk_agent.compliance.store import open_store, write_key_file

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        key = Path(tmp) / "store.key"
        write_key_file(key)
        with open_store(Path(tmp) / "store.db", key) as store:
            audit = AuditLog(store)
            t0 = time.perf_counter()
            for start in range(0, records, 10_000):
                with store.transaction() as db:
                    for i in range(start, min(start + 10_000, records)):
                        call = f"{1_700_000_000 + i // 2}.{i % 97}"
                        if i % 2:
                            audit.write(db, "call.end", "agent", call_id=call,
                                        detail={"outcome": "hangup"})
                        else:
                            audit.write(db, "call.start", "agent", call_id=call)
            written = time.perf_counter() - t0
            t0 = time.perf_counter()
            problem = audit.verify()
            verified = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in Path(tmp).glob("store.db*"))
    return {"records": records, "write_s": round(written, 1), "verify_s": round(verified, 1),
            "intact": problem is None, "store_mb": round(size / 2**20, 1)}


def bench_metrics(live_calls: int, scrapes: int) -> dict:
    """GET /metrics over HTTP, as Prometheus scrapes it, while `live_calls` calls
    are live: every series the agent keeps filled as a busy day leaves them (each
    outcome and intent, transcript waits in two languages), depths read at each
    scrape, the outbox count from a real outbox with messages pending."""
    from aiohttp import ClientSession

    from asterisk_agent.ehr import messages as m
    from asterisk_agent.ehr.outbox import Outbox
    from asterisk_agent.metrics import Metrics, MetricsServer

    intents = ("book", "name", "typing", "offer", "chosen", "book confirmed", "cancel",
               "reschedule", "refill", "message", "hours", "address", "goodbye", "operator",
               "unknown", "silence", "too many misses", "not on list", "declined", "parking")

    async def run(outbox: Outbox) -> list[float]:
        metrics = Metrics()
        calls = {f"call-{i}": object() for i in range(live_calls)}
        metrics.watch_calls(lambda: len(calls))
        for stage in ("stt", "tts"):
            for language in ("en", "es"):
                metrics.watch_queue(stage, language, lambda: 1)
        metrics.watch_queue("llm", "", lambda: 0)
        for state in ("pending", "failed"):
            metrics.watch_outbox(state, lambda state=state: outbox.count(state))
        for i in range(5000):
            metrics.turns.labels(intents[i % len(intents)]).inc()
            metrics.transcript_wait.labels(("en", "es")[i % 2]).observe((i % 40) / 20)
        for outcome in ("caller hung up", "operator", "urgent", "hangup", "agent stopped"):
            metrics.calls.labels(outcome).inc(300)
        metrics.ari_connected.set(1)
        server = MetricsServer(metrics, lambda: {"ok": True})
        await server.start("127.0.0.1", 0)
        times = []
        try:
            async with ClientSession() as http:
                url = f"http://127.0.0.1:{server.port}/metrics"
                for _ in range(scrapes):
                    t0 = time.perf_counter()
                    async with http.get(url) as r:
                        body = await r.text()
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status == 200 and "asterisk_agent_live_calls" in body
        finally:
            await server.close()
        return times

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db")
        for i in range(50):
            patient = m.Patient(f"MRN{i}", "Bench", "Pat", dt.date(1980, 1, 1), "")
            outbox.put(m.chart_note(m.header(m.Facility()), patient, "Caller message",
                                    "please call back"), patient.id)
        try:
            times = asyncio.run(run(outbox))
        finally:
            outbox.close()
    return {"live_calls": live_calls, "scrapes": scrapes, "scrape_ms": summarize(times)}


def bench_export(calls: int) -> dict:
    """`audit export` of one day holding `calls` calls (each with its turns, screen
    results and audit records, as the agent writes them) from a fresh encrypted
    store: seconds to export, and what the export holds."""
    import datetime as dt

    from asterisk_agent.compliance import export as export_mod
    from asterisk_agent.compliance.audit import AuditLog
    from asterisk_agent.compliance.store import open_store, write_key_file

    day = dt.datetime(2030, 1, 7, tzinfo=dt.timezone.utc).timestamp()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        key = Path(tmp) / "store.key"
        write_key_file(key)
        with open_store(Path(tmp) / "store.db", key) as store:
            clock = [day]
            audit = AuditLog(store, lambda: clock[0])
            for start in range(0, calls, 200):
                with store.transaction() as db:
                    for i in range(start, min(start + 200, calls)):
                        at = day + 8 * 3600 + i * (10 * 3600 / calls)  # 08:00 to 18:00
                        call = f"{int(at)}.{i}"
                        clock[0] = at
                        db.execute("INSERT INTO calls (id, started, ended, caller, language, "
                                   "outcome) VALUES (?, ?, ?, ?, 'en', 'hangup')",
                                   (call, at, at + 120, f"555{i:07d}"))
                        audit.write(db, "call.start", "agent", call_id=call)
                        for t in range(EXPORT_TURNS):
                            speaker = "caller" if t % 2 else "agent"
                            db.execute("INSERT INTO turns (call_id, at, speaker, transcript) "
                                       "VALUES (?, ?, ?, ?)",
                                       (call, at + 5 * t, speaker,
                                        f"turn {t} of call {i}: I'd like to book a checkup "
                                        "next Tuesday morning, please."))
                            if speaker == "caller":
                                db.execute("INSERT INTO screen_results (call_id, at, specialty, "
                                           "urgent, result) VALUES (?, ?, 'general', 0, ?)",
                                           (call, at + 5 * t, '{"flag": null}'))
                        audit.write(db, "ehr.message", "agent", call_id=call,
                                    patient=f"MRN{1000 + i % 300}",
                                    detail={"type": "SRM^S01", "state": "accepted"})
                        clock[0] = at + 120
                        audit.write(db, "call.end", "agent", call_id=call,
                                    detail={"outcome": "hangup"})
            selection = export_mod.Selection(day, day + 86400)
            t0, c0 = time.perf_counter(), time.process_time()
            result = export_mod.export(store, audit, selection, "jsonl", Path(tmp) / "out",
                                       "bench")
            exported, cpu = time.perf_counter() - t0, time.process_time() - c0
            size = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir())
    # the CPU time too: on a shared machine the wall time is the neighbours' as well
    return {"calls": calls, "export_s": round(exported, 2), "cpu_s": round(cpu, 2),
            "records": result.counts,
            "export_mb": round(size / 2**20, 1)}


async def bench_ehr(cfg: config.Config, bookings: int) -> dict:
    """SRM^S01 -> SRR^S01 round trips on one loopback MLLP connection to the
    simulated interface engine (its own process), which validates each booking
    strictly and journals it before answering, as in the tests."""
    import socket

    from asterisk_agent.ehr import messages as m
    from asterisk_agent.ehr.mllp import LinkSettings, MllpClient

    root = Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-ehr-") as tmp:
        sim = subprocess.Popen(
            [sys.executable, "-m", "asterisk_agent.ehr.sim", "--seed", str(root / "etc" / "ehr-seed.yaml"),
             "--port", str(port), "--journal", str(Path(tmp) / "journal.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            if "listening on" not in sim.stdout.readline():
                return {"error": "tools/ehr-sim did not start"}
            facility = m.Facility(cfg.ehr.sending_application, cfg.ehr.sending_facility,
                                  cfg.ehr.receiving_application, cfg.ehr.receiving_facility)
            patient = m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12))
            times, rejected = [], 0
            async with MllpClient(LinkSettings("127.0.0.1", port)) as link:
                await link.connect()
                for i in range(bookings):
                    day = dt.datetime(2030, 1, 7) + dt.timedelta(days=7 * (i // 24))
                    start = day.replace(hour=9) + dt.timedelta(minutes=20 * (i % 24))
                    text = m.book(m.header(facility), m.Appointment(
                        f"BENCH-{i}", patient, "DRLEE", start, 20, "checkup"))
                    t0 = time.perf_counter()
                    ack = await link.send(text)
                    times.append((time.perf_counter() - t0) * 1000)
                    rejected += ack.code != "AA"
        finally:
            sim.terminate()
            sim.wait(10)
    return summarize(times) | {"rejected": rejected}


async def bench_tts(sentence: str) -> dict:
    """Median ms from text to the 8 kHz WAV the agent plays, per voice (the agent's own path)."""
    from asterisk_agent.speech import ModelError, tts

    out: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="asterisk-agent-bench-tts.") as tmp:
        for voice in VOICES:
            _progress(f"TTS: {voice}")
            try:
                pool = tts.TtsPool(tts.load_synthesizer(config.Tts(engine=voice)))
            except ModelError as exc:
                out[voice] = None
                _progress(f"TTS {voice}: {exc}")
                continue
            try:
                times = []
                for i in range(TTS_RUNS + 1):
                    t0 = time.perf_counter()
                    await pool.to_file(sentence, Path(tmp), f"{voice}-{i}")
                    times.append((time.perf_counter() - t0) * 1000)
                out[voice] = round(statistics.median(times[1:]), 1)
            finally:
                pool.close()
    return out


# --- the whole run --------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    config_path: Path = DEFAULT_CONFIG
    calls: int = DEFAULT_CALLS
    levels: tuple[int, ...] = LEVELS
    barge_in_calls: int = DEFAULT_CALLS
    parts: frozenset[str] = frozenset(PARTS)
    out_dir: Path | None = DEFAULT_OUT
    max_minutes: float = 40.0
    stagger_s: float = TURN_CYCLE_S


def run_bench(opts: Options) -> dict:
    """Run the chosen parts; the report as a JSON-ready dict (also written to out_dir)."""
    started = time.monotonic()
    deadline = started + opts.max_minutes * 60
    cfg = config.load(opts.config_path)
    report: dict[str, Any] = {
        "schema": 1,
        "when": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "config": {"stt": f"{cfg.stt.engine} {cfg.stt.model}", "tts": cfg.tts.engine,
                   "vad_silence_ms": cfg.vad.silence_ms, "vad_pause_ms": cfg.vad.pause_ms,
                   "turn_model": cfg.vad.turn_model, "turn_threshold": cfg.vad.turn_threshold},
        "calls_per_level": {f"calls_{c}": c * math.ceil(max(opts.calls, c) / c) for c in opts.levels},
        "stagger_s": opts.stagger_s,
        "load_average": {},
        "errors": [],
    }

    marks: list[tuple[str, tuple[int, int]]] = []

    def mark(part: str) -> None:
        # the machine may be shared: a figure taken under load says so
        report["load_average"][part] = round(os.getloadavg()[0], 2)
        marks.append((part, cpu_times()))
    samples: dict[str, list[float]] = {}
    barge_values: list[float] = []
    want_calls = "calls" in opts.parts
    want_barge = "barge-in" in opts.parts and opts.barge_in_calls > 0
    want_red = "red-flag" in opts.parts and opts.barge_in_calls > 0
    if want_calls or want_barge or want_red:
        mark("calls")
        harness = Harness(cfg)
        try:
            harness.up()
            report["agent"] = {"started_by_bench": harness.agent is not None,
                               "worker_pid": harness.worker_pid,
                               "log": str(harness.agent_log) if harness.agent_log else None,
                               "notes": harness.notes}
            levels, barge, red = asyncio.run(run_calls(cfg, harness, opts, deadline))
        finally:
            harness.down()
        if levels:
            report["latency_ms"], report["agent_stt_ms"] = {}, {}
            for lr in levels:
                key = f"calls_{lr.level}"
                report["latency_ms"][key], report["agent_stt_ms"][key], samples[key] = level_report(lr)
            for lr in levels:
                if not lr.served:
                    # e.g. a second agent took the ARI application over mid-run
                    report["errors"].append(
                        f"{lr.level} call(s) at once: the agent worker measured (pid "
                        f"{harness.worker_pid}, log {harness.agent_log}) handled none of the calls; "
                        "no memory or agent STT figures for this level")
                    lr.idle_kb = lr.peak_kb = None
            report["memory_by_level"] = {
                f"calls_{lr.level}": {"idle_rss_mb": round(lr.idle_kb / 1024, 1),
                                      "peak_rss_mb": round(lr.peak_kb / 1024, 1)}
                for lr in levels if lr.idle_kb and lr.peak_kb}
            top = max(levels, key=lambda lr: lr.level)
            if top.idle_kb and top.peak_kb:
                report["memory"] = {"idle_rss_mb": round(top.idle_kb / 1024, 1),
                                    "peak_rss_mb": round(top.peak_kb / 1024, 1), "level": top.level,
                                    "method": top.peak_method, "worker_pid": harness.worker_pid}
                grown_kb = max(0, top.peak_kb - top.idle_kb)
                report["peak_rss_mb_per_call"] = round(grown_kb / 1024 / top.level, 1)
            else:
                report["peak_rss_mb_per_call"] = None
        if barge:
            # a call the agent did not answer (the operator fallback, say) measures something else
            answered = [b for b in barge if b["reply"]]
            barge_values = [b["ms"] for b in answered if b["ms"] is not None]
            report["barge_in_ms"] = summarize(barge_values) | {
                "not_stopped": sum(b["verdict"] == "not stopped" for b in answered),
                "not_speaking": sum(b["verdict"] == "not speaking" for b in answered),
                "not_answered": len(barge) - len(answered),
                "calls": barge}
        if red:
            report["red_flag_ms"] = summarize(r["ms"] for r in red if r["transferred"]) | {
                "not_transferred": sum(not r["transferred"] for r in red), "calls": red}
    if "tts" in opts.parts and time.monotonic() < deadline:
        mark("tts")
        sentence = typical_first_sentence(cfg)
        report["tts_sentence"] = sentence
        report["tts_first_audio_ms"] = asyncio.run(bench_tts(sentence))
    if "stt" in opts.parts and time.monotonic() < deadline:
        mark("stt")
        _progress("STT: making the fixed utterances")
        report["stt"] = bench_stt(cfg, make_utterances())
    if "ehr" in opts.parts and time.monotonic() < deadline:
        mark("ehr")
        _progress(f"EHR: {EHR_BOOKINGS} bookings against tools/ehr-sim")
        report["ehr_booking_ms"] = asyncio.run(bench_ehr(cfg, EHR_BOOKINGS))
    if "audit" in opts.parts and time.monotonic() < deadline:
        mark("audit")
        _progress(f"audit: {AUDIT_RECORDS} records chained, then verified")
        report["audit"] = bench_audit(AUDIT_RECORDS)
        _progress(f"audit: export of a day of {EXPORT_CALLS} calls")
        report["export"] = bench_export(EXPORT_CALLS)
    if "metrics" in opts.parts and time.monotonic() < deadline:
        mark("metrics")
        _progress(f"metrics: {METRICS_SCRAPES} scrapes with {METRICS_CALLS} live calls")
        report["metrics"] = bench_metrics(METRICS_CALLS, METRICS_SCRAPES)
    marks.append(("end", cpu_times()))
    report["cpu_steal_pct"] = {part: steal_pct(t0, t1)
                               for (part, t0), (_, t1) in zip(marks, marks[1:])}
    report["latency_breakdown_ms"] = latency_breakdown(report)
    for name, s in (report.get("stt") or {}).items():
        if "error" in s:
            report["errors"].append(f"STT {name}: {s['error']}")
    if time.monotonic() >= deadline:
        report["errors"].append(
            f"the run hit its limit of {opts.max_minutes:g} min; figures are partial")
    report["targets"] = check_targets(report)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if opts.out_dir is not None:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        (opts.out_dir / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
        if samples or barge_values:
            draw_latency_histogram(samples, barge_values, opts.out_dir / "latency.png")
    return report


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write levels as 1,4,8") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive numbers of calls")
    return levels


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = parts - set(PARTS)
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}; got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"the agent's configuration (default {DEFAULT_CONFIG})")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                   help=f"calls per concurrency level, at least (default {DEFAULT_CALLS})")
    p.add_argument("--levels", type=_levels, default=LEVELS, help="concurrency levels (default 1,4,8)")
    p.add_argument("--barge-in", type=int, default=None, metavar="N",
                   help="barge-in calls, and red-flag calls (default: as many as --calls)")
    p.add_argument("--parts", type=_parts, default=frozenset(PARTS),
                   help=f"what to measure (default {','.join(PARTS)})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"where bench.json and latency.png go (default {DEFAULT_OUT}/)")
    p.add_argument("--max-minutes", type=float, default=40.0,
                   help="stop placing calls after this long (default 40)")
    p.add_argument("--stagger", type=float, default=TURN_CYCLE_S, metavar="SECONDS",
                   help=f"spread the starts of simultaneous calls over this long (default "
                        f"{TURN_CYCLE_S:g}; 0 starts them together, the worst case)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calls < 1:
        print("tools/bench: --calls must be at least 1", file=sys.stderr)
        return 2
    opts = Options(config_path=args.config, calls=args.calls, levels=args.levels,
                   barge_in_calls=args.calls if args.barge_in is None else max(0, args.barge_in),
                   parts=args.parts, out_dir=args.out, max_minutes=args.max_minutes,
                   stagger_s=max(0.0, args.stagger))

    def stop(signum, frame):  # SIGTERM tears down like Ctrl-C: what the bench started stops
        raise KeyboardInterrupt
    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from asterisk_agent.speech import ModelError

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        report = run_bench(opts)
    except (BenchError, ModelError, config.ConfigError) as exc:
        print(f"tools/bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    if not args.json and opts.out_dir is not None:
        _progress(f"wrote {opts.out_dir / 'bench.json'} and {opts.out_dir / 'latency.png'}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
