"""Speech-to-text: a caller's utterance in, its transcript out.

Two engines behind one interface: faster-whisper (Whisper on CTranslate2, int8
on the CPU) and whisper.cpp (through pywhispercpp, with ggml files converted
once from the same models: see ggml.py).  The models ship inside PyPI packages
(see models.py).  Transcription blocks
for hundreds of milliseconds, so SttPool runs it in worker threads.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from .. import config
from . import ModelError
from .audio import RATE_16K, resample, to_float
from .pool import WorkerPool
from .models import whisper_model
from .transcript import clean, max_tokens

log = logging.getLogger(__name__)

# Beam search width.  On a 3 s telephone utterance beam 5 costs about the same
# as greedy decoding on 2 cores and gets more names right.
BEAM_SIZE = 5


class Transcriber(Protocol):
    name: str

    def transcribe(self, pcm: np.ndarray, rate: int, language: str | None = None) -> str:
        """Audio (int16 or float mono at any rate) to text.  Blocking."""
        ...


class FasterWhisperTranscriber:
    """Whisper through faster-whisper, fully offline.

    Whisper was trained on 16 kHz audio: telephone audio is resampled up to it.
    """

    def __init__(self, model: str = "tiny.en", language: str = "en", threads: int = 2,
                 workers: int = 1, beam_size: int = BEAM_SIZE):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelError(f"faster-whisper is not installed ({exc}); "
                             "pip install faster-whisper") from None
        found = whisper_model(model)
        self.name = f"faster-whisper {found.name}"
        self.language = language or None
        self.beam_size = beam_size
        try:
            if found.directory is not None:
                self._model = WhisperModel(
                    str(found.directory), device="cpu", compute_type="int8",
                    cpu_threads=threads, num_workers=workers, local_files_only=True)
            else:
                # with files given, the first argument is only a label
                self._model = WhisperModel(
                    f"whisper-{found.name}", device="cpu", compute_type="int8",
                    cpu_threads=threads, num_workers=workers, files=found.files)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"{found.model_file}: cannot load Whisper model ({exc})") from None
        self.multilingual = self._model.model.is_multilingual
        if not self.multilingual and self.language not in (None, "en"):
            raise ModelError(f"{found.model_file}: Whisper {found.name} is English-only, "
                             f"language {self.language!r} needs a multilingual model (base)")
        # the first run is slow (allocations); take that cost at startup and
        # prove the model actually runs
        try:
            self.transcribe(np.zeros(RATE_16K // 2, np.int16), RATE_16K)
        except Exception as exc:
            raise ModelError(f"{found.model_file}: Whisper model does not run ({exc})") from None

    def transcribe(self, pcm: np.ndarray, rate: int, language: str | None = None) -> str:
        samples = to_float(resample(pcm, rate, RATE_16K))
        if samples.size == 0:
            return ""
        language = language or self.language
        if not self.multilingual:
            language = "en"
        segments, _info = self._model.transcribe(
            samples,
            language=language,
            beam_size=self.beam_size,
            # one short turn at a time: no carried context, no timestamps, and
            # no temperature fallback (it re-decodes and doubles the latency)
            condition_on_previous_text=False,
            without_timestamps=True,
            temperature=0.0,
            # a loop stops near the longest text the turn can hold, not at
            # Whisper's 448 tokens: seconds of both cores on a 3 s turn
            max_new_tokens=max_tokens(samples.size),
            # our own endpointer already cut the utterance
            vad_filter=False,
        )
        return clean(" ".join(s.text.strip() for s in segments))


def load_transcriber(cfg: config.Stt) -> Transcriber:
    """Build the configured engine and check that its model loads and runs."""
    if cfg.engine == "faster-whisper":
        transcriber = FasterWhisperTranscriber(cfg.model, cfg.language, cfg.threads, cfg.workers,
                                                cfg.beam_size)
        log.info("speech-to-text: %s, language %s", transcriber.name, cfg.language or "auto")
        return transcriber
    if cfg.engine == "whisper.cpp":
        from .whisper_cpp import WhisperCppTranscriber

        transcriber = WhisperCppTranscriber(
            cfg.model, cfg.language, cfg.threads, cfg.beam_size,
            cfg.audio_ctx, workers=cfg.workers)
        log.info("speech-to-text: %s, language %s", transcriber.name, cfg.language or "auto")
        return transcriber
    raise ModelError(f"unknown STT engine {cfg.engine!r} (choose faster-whisper or whisper.cpp)")


class SttPool(WorkerPool):
    """Transcription in a bounded pool of worker threads."""

    def __init__(self, transcriber: Transcriber, workers: int = 1):
        super().__init__(workers, "stt")
        self.transcriber = transcriber

    async def transcribe(self, pcm: np.ndarray, rate: int, language: str | None = None) -> str:
        return await self._run(self.transcriber.transcribe, pcm, rate, language)
