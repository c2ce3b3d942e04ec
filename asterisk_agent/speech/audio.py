"""Audio helpers: G.711 u-law, RTP linear audio, resampling and WAV files.

All audio is numpy int16 mono.  G.711 is done with lookup tables rather than
the standard library's ``audioop``: that module is deprecated and gone in
Python 3.13, and a table lookup over a whole RTP payload is also faster.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

FRAME_MS = 20
RATE_8K = 8000
RATE_16K = 16000

# G.711 u-law constants (ITU-T G.711; the values of Sun's reference g711.c)
_BIAS = 0x84


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_ulaw_encode() -> np.ndarray:
    """A table over all 65536 int16 values, indexed by the value's uint16 bit pattern.

    Works on the top 14 bits as g711.c does, so the bytes match other
    implementations (audioop, Asterisk) exactly.
    """
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (_BIAS >> 2)
    # the segment is the position of the highest set bit above bit 5
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), mag)
    # past the last segment: the loudest code
    ulaw = np.where(seg > 7, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return (ulaw ^ mask).astype(np.uint8)


_ULAW_DECODE = _build_ulaw_decode()
_ULAW_ENCODE = _build_ulaw_encode()


def _as_int16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm
    if np.issubdtype(pcm.dtype, np.floating):
        return from_float(pcm)
    raise ValueError(f"expected int16 or float audio, got {pcm.dtype}")


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 u-law bytes (one byte a sample) to int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to G.711 u-law bytes."""
    return _ULAW_ENCODE[_as_int16(pcm).view(np.uint16)].tobytes()


def through_ulaw(pcm: np.ndarray) -> np.ndarray:
    """The audio as it arrives from a u-law (G.711) phone line."""
    return ulaw_decode(ulaw_encode(pcm))


def slin_decode(data: bytes) -> np.ndarray:
    """RTP L16 ("slin" in Asterisk) payload to int16 samples.

    RTP linear audio is big-endian (RFC 3551), unlike WAV or AudioSocket.
    """
    if len(data) % 2:
        raise ValueError(f"slin payload has an odd length ({len(data)} bytes)")
    return np.frombuffer(data, dtype=">i2").astype(np.int16)


def slin_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to a big-endian RTP L16 payload."""
    return _as_int16(pcm).astype(">i2").tobytes()


def to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [-1, 1] (what the models take)."""
    pcm = np.asarray(pcm)
    if np.issubdtype(pcm.dtype, np.floating):
        return pcm.astype(np.float32, copy=False)
    return pcm.astype(np.float32) / 32768.0


def from_float(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] to int16, clipping anything outside."""
    x = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample mono audio with soxr; int16 in gives int16 out, float in gives float32 out."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {pcm.shape}")
    if pcm.dtype != np.int16:
        pcm = to_float(pcm)
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.copy()
    return soxr.resample(pcm, src_rate, dst_rate, quality="HQ")


def duration(pcm: np.ndarray, rate: int) -> float:
    """Seconds of audio."""
    return len(pcm) / float(rate)


def trim_silence(pcm: np.ndarray, rate: int, threshold: float = 100.0,
                 lead_ms: int = 10, tail_ms: int = 10) -> np.ndarray:
    """Cut silence (10 ms frames whose RMS is under `threshold`) from both ends.

    Keeps `lead_ms` before the first loud frame and `tail_ms` after the last.
    A voice model's padding is latency on a phone line: hibari starts every
    sentence with about 300 ms of silence and ends it with about 500 ms.
    Audio with nothing loud in it is returned whole.
    """
    frame = max(1, rate // 100)
    n = len(pcm) // frame
    if n == 0:
        return pcm
    frames = pcm[:n * frame].astype(np.float64).reshape(n, frame)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > threshold)
    if loud.size == 0:
        return pcm
    start = max(0, loud[0] * frame - lead_ms * rate // 1000)
    end = min(len(pcm), (loud[-1] + 1) * frame + tail_ms * rate // 1000)
    return pcm[start:end]


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file as (int16 mono samples, rate); stereo is mixed down."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from None
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; only 16-bit PCM is read")
    pcm = np.frombuffer(frames[: len(frames) - len(frames) % (2 * channels)], dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).round()
    return pcm.astype(np.int16), rate


def write_wav(path: str | os.PathLike, pcm: np.ndarray, rate: int) -> None:
    """Write 16-bit mono WAV atomically (a temp file renamed into place).

    Asterisk may open the file the moment it appears; the rename means it only
    ever sees a complete file.
    """
    path = Path(path)
    pcm = _as_int16(pcm)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with wave.open(f, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(pcm.astype("<i2").tobytes())
        # mkstemp makes the file private; Asterisk runs as its own user and must read it
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV held in memory, tolerating the unknown-length header a
    program writes when it streams WAV to a pipe."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV stream (no RIFF/WAVE header)")
    pos, rate, channels, width = 12, None, 1, 2
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if tag == b"fmt ":
            fmt = int.from_bytes(data[body:body + 2], "little")
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            rate = int.from_bytes(data[body + 4:body + 8], "little")
            width = int.from_bytes(data[body + 14:body + 16], "little") // 8
            if fmt != 1 or width != 2 or channels < 1:
                raise ValueError(f"WAV stream is not 16-bit PCM (format {fmt}, {8 * width}-bit)")
        elif tag == b"data":
            if rate is None:
                raise ValueError("WAV stream has data before its fmt chunk")
            # a streamed header carries a placeholder size: take what is there
            raw = data[body:min(len(data), body + size)]
            raw = raw[: len(raw) - len(raw) % (2 * channels)]
            pcm = np.frombuffer(raw, dtype="<i2")
            if channels > 1:
                pcm = pcm.reshape(-1, channels).mean(axis=1).round()
            return pcm.astype(np.int16), rate
        pos = body + size + (size & 1)
    raise ValueError("WAV stream has no data chunk")
