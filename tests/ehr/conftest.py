"""The simulated interface engine (tools/ehr-sim) as a real process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EHR_SIM = ROOT / "tools" / "ehr-sim"
SEED = ROOT / "etc" / "ehr-seed.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcess:
    """tools/ehr-sim on a fixed port, so a restarted engine is found where it was."""

    def __init__(self, log: Path, *args: str, port: int | None = None):
        self.port = port or free_port()
        self.args, self.log = list(args), log
        self.proc: subprocess.Popen | None = None

    def start(self) -> SimProcess:
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [str(EHR_SIM), "--seed", str(SEED), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=out, text=True, start_new_session=True)
        line = self.proc.stdout.readline()  # printed once it accepts connections
        assert "listening on" in line, f"ehr-sim did not start: {line!r}; see {self.log}"
        return self

    def kill(self) -> None:
        """SIGKILL: the engine dies without any clean-up, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def start_sim(tmp_path):
    started: list[SimProcess] = []

    def start(*args: str, port: int | None = None) -> SimProcess:
        sim = SimProcess(tmp_path / f"ehr-sim{len(started)}.log", *args, port=port)
        started.append(sim)
        return sim.start()

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def ehr_sim(start_sim, tmp_path):
    return start_sim("--journal", str(tmp_path / "journal.jsonl"))
