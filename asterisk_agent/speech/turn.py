"""Has the caller finished their turn?  An audio model's answer at a pause.

Silence alone cannot tell "I'd like to book an appointment for... (thinking)"
from "What time do you open on Monday?": both stop, and a fixed silence window
long enough for the first makes every answer to the second wait.  The
Smart Turn v3 model (an ONNX classifier over Whisper features of the last 8 s
of the caller's audio, from intonation and words alike; BSD-2-Clause; in the
``pipecat-ai`` wheel, see models.turn_model_file) gives the probability that
the turn is complete.  At a pause the listener asks it, and a confident "yes"
ends the turn after a shorter silence ([vad] complete_ms) instead of the
whole window.  It never
decides a turn is *not* over: without it, or when it is unsure, the silence
window still ends the turn.

Pure inference (no I/O beyond loading the file); TurnPool runs it in a worker
thread, about 50 ms a pause on one core.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import ModelError
from .audio import RATE_16K, resample, to_float
from .pool import WorkerPool

log = logging.getLogger(__name__)

# The model hears the last 8 s of the turn at 16 kHz, as Whisper's 80 log-mel
# bins in 10 ms hops (800 frames); shorter turns are padded at the front.
WINDOW_S = 8
N_MELS = 80
FRAMES = WINDOW_S * 100
# the waveform is normalized to zero mean and unit variance before the
# features are taken, as in the model's training
_NORM_EPS = 1e-7


class TurnModel:
    """The Smart Turn classifier, loaded from its ONNX file."""

    def __init__(self, path: str | Path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such turn model file")
        try:
            import onnxruntime as ort
            # Whisper's log-mel front end from faster-whisper (already the STT
            # engine's dependency): the features the model was trained on
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise ModelError(f"the turn model needs onnxruntime and faster-whisper ({exc}); "
                             "pip install faster-whisper") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # its warnings are about graph rewrites, not the caller
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        inputs = self._session.get_inputs()
        if (len(inputs) != 1 or inputs[0].name != "input_features"
                or list(inputs[0].shape[1:]) != [N_MELS, FRAMES]):
            shapes = [(i.name, i.shape) for i in inputs]
            raise ModelError(f"{path}: not a Smart Turn v3 model (inputs {shapes}; expected "
                             f"input_features of [batch, {N_MELS}, {FRAMES}])")
        self._features = FeatureExtractor(feature_size=N_MELS, chunk_length=WINDOW_S)
        self.path = path
        self.name = path.stem

    def features(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        """The model's input for a turn: [80, 800] log-mel of its last 8 s."""
        x = to_float(resample(pcm, rate, RATE_16K) if rate != RATE_16K else pcm)
        n = WINDOW_S * RATE_16K
        x = x[-n:]
        x = np.pad(x, (n - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
        mel = self._features(x.astype(np.float32), padding=0)
        if mel.shape != (N_MELS, FRAMES):  # the extractor's framing changed under us
            raise ModelError(f"turn model features of shape {mel.shape}, "
                             f"expected ({N_MELS}, {FRAMES})")
        return mel.astype(np.float32)

    def complete(self, pcm: np.ndarray, rate: int) -> float:
        """Probability (0 to 1) that the turn in pcm is over.  Blocking."""
        if len(pcm) == 0:
            return 0.0
        out = self._session.run(None, {"input_features": self.features(pcm, rate)[None]})
        return float(np.asarray(out[0]).reshape(-1)[0])


class TurnPool(WorkerPool):
    """The turn model in one worker thread, with the config's ``threshold``
    and ``complete_ms`` (the silence that ends a turn it judged complete)."""

    def __init__(self, model: TurnModel, threshold: float, complete_ms: int = 300,
                 workers: int = 1):
        super().__init__(workers, "turn")
        self.model = model
        self.threshold = threshold
        self.complete_ms = complete_ms

    async def complete(self, pcm: np.ndarray, rate: int) -> float:
        return await self._run(self.model.complete, pcm, rate)


def load_turn_pool(spec: str, threshold: float, complete_ms: int = 300) -> TurnPool | None:
    """[vad] turn_model: ``smart-turn`` (the packaged model), a path to an
    .onnx file, or ``none`` (turns end on silence alone)."""
    if spec == "none":
        return None
    return TurnPool(load_turn_model(spec), threshold, complete_ms)


def load_turn_model(spec: str) -> TurnModel:
    """``smart-turn`` (the packaged model) or the path of an .onnx file."""
    from .models import turn_model_file

    return TurnModel(turn_model_file() if spec == "smart-turn" else Path(spec).expanduser())
