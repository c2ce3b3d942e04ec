"""Text-to-speech: engines that turn a sentence into audio, and a pool that writes
the 8 kHz WAV files Asterisk plays.

Two engines: "hibari" (a small neural voice shipped inside the ``hibari-tts``
wheel, the default) and "espeak-ng" (Debian's formant synthesizer: robotic, but
always there and very fast).  Synthesis blocks, so TtsPool runs it in worker
threads and the event loop never waits on a model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import unicodedata
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import config
from . import ModelError
from .audio import RATE_8K, from_float, parse_wav_bytes, resample, trim_silence, write_wav
from .pool import WorkerPool


# silence kept before a sentence, and after it (the pause before the next one)
LEAD_MS = 10
GAP_MS = 200


class Synthesizer(Protocol):
    name: str

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Text to (int16 mono samples, the engine's native rate).  Blocking."""
        ...


# Abbreviations whose period does not end a sentence ("Dr. Lee", "St. Mary's").
_ABBREVIATIONS = {
    "dr", "mr", "mrs", "ms", "mx", "prof", "st", "sr", "jr", "no", "vs", "etc",
    "e.g", "i.e", "a.m", "p.m", "approx", "dept", "ave", "rd", "apt", "mt", "ft",
}
_SENTENCE_END = re.compile(r"([.!?…]+)([\"'”’)\]]*)\s+")


def split_sentences(text: str) -> list[str]:
    """Split a reply into sentences, so the first can play while the rest synthesize.

    A period after a title or an initial ("Dr. Lee", "J. Smith"), or one
    followed by a lower-case word, does not end a sentence.
    """
    out: list[str] = []
    for para in re.split(r"\s*\n\s*\n\s*|\s*\n\s*", text.strip()):
        start = 0
        for m in _SENTENCE_END.finditer(para):
            end = m.end(2)
            rest = para[m.end():]
            if m.group(1) == "." and not m.group(2):
                word = para[:m.start()].rsplit(None, 1)[-1] if para[:m.start()].strip() else ""
                word = word.lstrip("(\"'“‘").lower()
                if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                    continue
            if rest[:1].islower():
                continue
            out.append(para[start:end].strip())
            start = m.end()
        out.append(para[start:].strip())
    return [s for s in out if s]


def _clean(text: str) -> str:
    """Control characters become spaces (espeak-ng stops reading at a NUL)."""
    return " ".join("".join(
        " " if unicodedata.category(c) in ("Cc", "Cf") else c for c in text).split())


class EspeakSynthesizer:
    """Debian's espeak-ng, called as a program.

    The ``espeakng`` PyPI wrapper only runs the same program (and prints every
    command), so it adds nothing.  Text goes in on stdin, never as an argument,
    so a reply that starts with "-" cannot be read as an option.
    """

    name = "espeak-ng"

    def __init__(self, voice: str = "", program: str = "espeak-ng", timeout: float = 30.0):
        path = shutil.which(program)
        if path is None:
            raise ModelError(f"{program}: program not found; install the Debian package espeak-ng")
        self.program = path
        self.voice = voice or "en-us"
        self.timeout = timeout
        # fail at startup, not on the first caller, if the voice is unknown
        self.synthesize("Ready.")

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        text = _clean(text)
        try:
            proc = subprocess.run(
                [self.program, "--stdin", "--stdout", "-v", self.voice],
                input=text.encode("utf-8"), capture_output=True, timeout=self.timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(f"{self.program}: {exc}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise ModelError(f"{self.program} (voice {self.voice!r}) failed: {err}")
        try:
            return parse_wav_bytes(proc.stdout)
        except ValueError as exc:
            raise ModelError(f"{self.program} wrote no usable audio: {exc}") from None


class HibariSynthesizer:
    """The hibari-tts neural voice: an int8 ONNX model in the wheel, 24 kHz out.

    Only the voice bundled in the wheel ("heart"), a voice file already in
    hibari's cache, or a path to a voice .onnx file are used: hibari would
    otherwise download other voices, and this agent never reaches the network.
    """

    name = "hibari"

    def __init__(self, voice: str = "", threads: int = 1):
        try:
            import hibari
            from hibari.voices import DEFAULT, VOICES, voice_path
        except ImportError as exc:
            raise ModelError(f"hibari-tts is not installed ({exc}); pip install hibari-tts") from None
        model = None
        name = voice or DEFAULT
        if name.endswith(".onnx"):
            model, name = name, DEFAULT
            if not os.path.isfile(model):
                raise ModelError(f"{model}: hibari voice file not found")
        else:
            try:
                model = voice_path(name, download_missing=False)
            except ValueError:
                raise ModelError(
                    f"hibari voice {name!r} unknown; known: {', '.join(VOICES)}") from None
            except FileNotFoundError as exc:
                raise ModelError(
                    f"{exc}: hibari voice {name!r} is not in the hibari-tts wheel and not "
                    "cached; copy the voice file there or use the bundled voice") from None
        if not os.path.isfile(model):
            raise ModelError(f"{model}: hibari voice file missing; reinstall hibari-tts")
        try:
            self._tts = hibari.Hibari(voice=name, model=model, threads=threads)
            self.rate = int(hibari.SAMPLE_RATE)
            # loads the G2P now: its lazy load is not thread-safe, and a broken
            # model should fail at startup rather than on a caller
            self._tts("Ready.", seed=0)
        except Exception as exc:  # onnxruntime raises its own types for a corrupt file
            raise ModelError(f"{model}: cannot load hibari voice ({exc}); reinstall hibari-tts") from None
        self.model_path = model
        # hibari keeps per-call state only in locals, but its G2P caches are
        # plain dicts: one synthesis at a time per instance keeps them consistent
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        with self._lock:
            # a fixed seed: the same sentence always sounds the same
            audio = self._tts(_clean(text), seed=0)
        return from_float(np.clip(audio, -1.0, 1.0)), self.rate


def load_synthesizer(cfg: config.Tts) -> Synthesizer:
    """Build the configured engine, checking its model loads; ModelError if not."""
    if cfg.engine == "hibari":
        return HibariSynthesizer(cfg.voice)
    if cfg.engine == "espeak-ng":
        return EspeakSynthesizer(cfg.voice)
    raise ModelError(f"unknown TTS engine {cfg.engine!r} (choose hibari or espeak-ng)")


_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TtsPool(WorkerPool):
    """Synthesis in a bounded pool of worker threads, delivering 8 kHz audio."""

    def __init__(self, synth: Synthesizer, workers: int = 1):
        super().__init__(workers, "tts")
        self.synth = synth

    def _synthesize_8k(self, text: str) -> tuple[np.ndarray, int]:
        pcm, rate = self.synth.synthesize(text)
        # no lead-in (it is pure latency); a short tail is the pause between sentences
        pcm = trim_silence(resample(pcm, rate, RATE_8K), RATE_8K, lead_ms=LEAD_MS, tail_ms=GAP_MS)
        return pcm, RATE_8K

    def _to_file(self, text: str, path: Path) -> Path:
        pcm, rate = self._synthesize_8k(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, pcm, rate)
        return path

    async def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Text to (int16 samples, 8000)."""
        if not text.strip():
            raise ValueError("nothing to synthesize: empty text")
        return await self._run(self._synthesize_8k, text)

    async def to_file(self, text: str, directory: Path, stem: str) -> Path:
        """Synthesize into <directory>/<stem>.wav (8 kHz 16-bit mono) and return its path.

        8 kHz slin WAV is what Asterisk plays to a phone without resampling.
        The stem becomes the name Asterisk is told to play, so it is kept to
        letters, digits, dot, dash and underscore.
        """
        if not text.strip():
            raise ValueError("nothing to synthesize: empty text")
        if not _STEM.match(stem):
            raise ValueError(f"sound file stem {stem!r}: use letters, digits, '.', '-', '_'")
        path = Path(directory) / f"{stem}.wav"
        return await self._run(self._to_file, text, path)
