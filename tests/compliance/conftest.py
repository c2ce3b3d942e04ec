"""What the compliance tests share: a real SQLCipher store, a real WAV file."""

from __future__ import annotations

import os
import time
import wave

import numpy as np
import pytest

from asterisk_agent.compliance.store import open_store, write_key_file


@pytest.fixture
def store(tmp_path):
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    s = open_store(tmp_path / "store.db", key_file)
    yield s
    s.close()


def make_wav(path, seconds: float = 2.0, rate: int = 8000, hz: float = 440.0):
    """A real 8 kHz mono 16-bit WAV, as MixMonitor writes by default."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    old = time.time() - 60  # the call ended a minute ago
    os.utime(path, (old, old))
    return path
