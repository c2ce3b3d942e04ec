"""Fixtures for tests that need the real parts: the sandbox PBX and a running agent.

The sandbox is a real Asterisk 22 (Debian sid chroot, loopback only), brought up
once per test session.  The agent runs as its own process, exactly as
`asterisk-agent serve` runs in production, so a test can kill it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asterisk_agent import config

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_CONF = ROOT / "etc" / "sandbox.conf"


@pytest.fixture(scope="session")
def sandbox_conf() -> Path:
    return SANDBOX_CONF


@pytest.fixture(scope="session")
def ehr_engine(sandbox_cfg, tmp_path_factory):
    """tools/ehr-sim, the interface-engine peer, on the sandbox config's [ehr]
    port for the whole session: the agents of the call tests book into it."""
    from ehr.conftest import SimProcess

    port = sandbox_cfg.ehr.port
    import socket
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} ([ehr] port of etc/sandbox.conf) is taken: stop what "
                        "listens there (an ehr-sim left from tools/demo?)")
    d = tmp_path_factory.mktemp("ehr-engine")
    sim = SimProcess(d / "ehr-sim.log", "--journal", str(d / "journal.jsonl"), port=port).start()
    yield sim
    sim.stop()


@pytest.fixture
def start_agent(pbx, ehr_engine, tmp_path):
    """Start an agent of the test's own (which the test may kill), on etc/sandbox.conf or
    a config of the test's; stopped afterwards."""
    started = []

    def start(cfg_path: Path = SANDBOX_CONF) -> AgentProcess:
        proc = AgentProcess(cfg_path, tmp_path / f"agent{len(started)}.log")
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def sandbox_cfg() -> config.Config:
    cfg = config.load(SANDBOX_CONF)
    # `serve` takes no call without the encrypted store's key (tools/demo makes it too)
    if not cfg.store_key_path.exists():
        from asterisk_agent.compliance.store import write_key_file

        write_key_file(cfg.store_key_path)
    return cfg


@pytest.fixture(scope="session")
def pbx(sandbox_cfg):
    """The sandbox Asterisk, up for the whole session (built on first use, ~2 min)."""
    if os.geteuid() != 0:
        pytest.fail("the sandbox PBX needs root (debootstrap, chroot, mount namespaces)")
    missing = [b for b in ("debootstrap", "espeak-ng") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"missing {' '.join(missing)}: apt-get install {' '.join(missing)} "
                    "(tools/test installs them)")
    from asterisk_agent.pbx.sandbox import Sandbox

    box = Sandbox(sandbox_cfg)
    was_running = box.status().get("running")
    if was_running:
        box.restart()  # pick up this checkout's etc/ and dialplan/ files
    else:
        box.up()
    yield box
    if not was_running:  # leave a sandbox someone else started as it was
        box.down()


class AgentProcess:
    """`asterisk-agent serve` (supervisor + worker) in the background, logging to a file."""

    def __init__(self, cfg_path: Path, log_path: Path, supervised: bool = True):
        self.cfg_path = cfg_path
        self.log_path = log_path
        self.supervised = supervised
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 180) -> "AgentProcess":
        cmd = [sys.executable, "-m", "asterisk_agent", "serve", "-c", str(self.cfg_path),
               "--log-level", "info"]
        if not self.supervised:
            cmd.append("--worker")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_registered(wait)
        # registered may still mean an agent stopped a moment ago (Asterisk lists
        # its application a little longer): wait for this one's own connection
        deadline = time.monotonic() + wait
        while "ARI events: connected to" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the agent did not connect to ARI:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        return self

    def wait_registered(self, wait: float = 60) -> None:
        status = subprocess.run(
            [sys.executable, "-m", "asterisk_agent", "status", "-c", str(self.cfg_path),
             "--wait", str(wait)], capture_output=True, text=True)
        if status.returncode != 0:
            pytest.fail(f"the agent did not register with Asterisk: {status.stdout}\n"
                        f"agent log:\n{self.log()[-3000:]}")

    def worker_pid(self) -> int:
        """The call-handling child of the supervisor."""
        assert self.proc is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.1)
        raise AssertionError("the supervisor has no worker process")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc is not None:
            self._log.close()


@pytest.fixture(scope="module")
def agent(pbx, ehr_engine, tmp_path_factory):
    """A running agent connected to the sandbox PBX, shared by a test module."""
    proc = AgentProcess(SANDBOX_CONF, tmp_path_factory.mktemp("agent") / "agent.log").start()
    yield proc
    proc.stop()
