"""The supervisor: keeps the ARI worker process running and rescues its callers.

The worker runs the models (Whisper, an LLM, TTS) whose native code could
crash the process.  When it dies, Asterisk keeps its callers parked in Stasis
with nobody talking to them (Asterisk only drops the application's handler
when the WebSocket goes).  So the supervisor, which does no model work and is
very unlikely to crash itself, at once sends those callers to the operator
(`ari.hand_over_orphans`), then restarts the worker with backoff.

Exit codes of the worker: 0 means it stopped on purpose (not restarted);
78 (EX_CONFIG) means it cannot run with this configuration (not restarted,
restarting would only repeat the error); anything else, or death by a
signal, is a crash.  SIGTERM and SIGINT are forwarded to the worker, which
runs in its own process group so that a Ctrl-C in a terminal reaches it once,
through us; if it has not stopped after STOP_GRACE_S it is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time

from asterisk_agent import config
from asterisk_agent.telephony import ari

log = logging.getLogger("asterisk_agent.supervisor")

# seconds between restarts: doubles after each quick crash, up to the maximum
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
# a worker that ran this long was healthy: its crash restarts at the minimum delay
HEALTHY_RUN_S = 60.0
# seconds a worker has to stop after SIGTERM/SIGINT before it is killed
STOP_GRACE_S = 15.0
# seconds the whole hand-over may take (Asterisk may be the thing that is down)
HAND_OVER_TIMEOUT_S = 15.0
EX_CONFIG = getattr(os, "EX_CONFIG", 78)


def supervise(argv_for_worker: list[str], cfg: config.Config) -> int:
    """Run the worker until asked to stop; returns the exit status for this process.

    Call from the main thread (it installs signal handlers, restored on return).
    """
    state = _State()
    previous = {sig: signal.signal(sig, state.on_stop_signal)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, state.on_grace_over)
    try:
        crashes = 0
        while True:
            started = time.monotonic()
            try:
                state.worker = subprocess.Popen(argv_for_worker, process_group=0)
            except OSError as exc:
                log.error("cannot start the worker %s: %s", argv_for_worker, exc)
                return 1
            log.info("worker started (pid %d)", state.worker.pid)
            if state.stop_signal is not None:  # a signal came while it was starting
                state.forward()
            code = state.worker.wait()
            signal.alarm(0)
            ran = time.monotonic() - started
            log.log(logging.INFO if code == 0 else logging.ERROR,
                    "worker (pid %d) %s after %.1f s", state.worker.pid, _describe(code), ran)
            if code != 0:
                rescue_callers(cfg)
            if state.stop_signal is not None:
                return 0 if code in (0, -state.stop_signal) else _exit_status(code)
            if code == 0:
                log.info("worker stopped on purpose; the supervisor stops too")
                return 0
            if code == EX_CONFIG:
                log.error("worker cannot run with this configuration; not restarting")
                return EX_CONFIG
            crashes = 1 if ran >= HEALTHY_RUN_S else crashes + 1
            delay = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** min(crashes - 1, 30))
            log.warning("restarting the worker in %.2f s (crash %d in a row)", delay, crashes)
            if state.sleep(delay):
                return 0
    finally:
        signal.alarm(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker = state.worker
        if worker is not None and worker.poll() is None:  # only on an unexpected error here
            worker.kill()
            worker.wait()


class _State:
    """What the signal handlers share with the loop."""

    def __init__(self) -> None:
        self.worker: subprocess.Popen | None = None
        self.stop_signal: int | None = None

    def on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            log.info("%s received: stopping the worker", signal.Signals(signum).name)
            signal.alarm(max(1, round(STOP_GRACE_S)))
        self.stop_signal = signum
        self.forward()

    def forward(self) -> None:
        worker = self.worker
        if worker is not None and worker.poll() is None and self.stop_signal is not None:
            worker.send_signal(self.stop_signal)

    def on_grace_over(self, signum: int, frame: object) -> None:
        worker = self.worker
        if worker is not None and worker.poll() is None:
            log.error("worker (pid %d) did not stop within %.0f s: killing it",
                      worker.pid, STOP_GRACE_S)
            worker.kill()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless a stop signal comes; True if one did."""
        end = time.monotonic() + seconds
        while self.stop_signal is None and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        return self.stop_signal is not None


def rescue_callers(cfg: config.Config) -> dict | None:
    """Hand the callers a dead worker left in Stasis over to the operator."""
    async def hand_over() -> dict:
        async with ari.AriClient(cfg.ari) as client:
            return await ari.hand_over_orphans(
                client, cfg.ari.app, cfg.dialplan.operator_context,
                cfg.dialplan.operator_extension, cfg.dialplan.operator_priority)

    try:
        counts = asyncio.run(asyncio.wait_for(hand_over(), HAND_OVER_TIMEOUT_S))
    except ari.AriError as exc:
        log.error("could not hand over the worker's callers: %s", exc)
        return None
    except TimeoutError:
        log.error("could not hand over the worker's callers: no end after %.0f s",
                  HAND_OVER_TIMEOUT_S)
        return None
    log.warning("callers handed over after the worker died: %s", counts)
    return counts


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _exit_status(code: int) -> int:
    """A worker's return code as a shell exit status (128 + N for signal N)."""
    return 128 - code if code < 0 else code
