"""The supervisor, run as a real process with real worker processes.

The workers here are tiny Python scripts standing in for the ARI worker: the
supervisor only sees a process that exits or dies, so nothing is lost by not
running the real one.  No Asterisk is needed: [ari] points at a closed port,
so each rescue is attempted and fails (logged); the rescue itself against a
real Asterisk is tested in telephony/test_ari_live.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CONFIG = """
[ari]
url = http://127.0.0.1:9/ari
request_timeout = 1
"""

RUNNER = textwrap.dedent("""
    import logging, sys
    from asterisk_agent import config, supervisor
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    supervisor.RESTART_MIN_S = 0.05
    supervisor.RESTART_MAX_S = 0.2
    supervisor.STOP_GRACE_S = 1.0
    print("SUPERVISOR READY", flush=True)
    sys.exit(supervisor.supervise(sys.argv[2:], config.load(sys.argv[1])))
""")


def start(tmp_path: Path, worker_code: str, conf: Path | None = None) -> subprocess.Popen:
    """The supervisor in its own process, with a worker running `worker_code`.

    The worker appends a line to starts.txt each time it starts, so a test can
    count restarts.  `conf` is the configuration (default: no Asterisk).
    """
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        here = Path(sys.argv[1])
        with open(here / "starts.txt", "a") as f:
            f.write(f"{os.getpid()}\\n")
        runs = len((here / "starts.txt").read_text().split())
    """) + textwrap.dedent(worker_code))
    if conf is None:
        conf = tmp_path / "agent.conf"
        conf.write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(conf), sys.executable, str(worker), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "SUPERVISOR READY"
    return proc


def finish(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"supervisor did not finish; its log:\n{err}")
    return proc.returncode, err


def starts(tmp_path: Path) -> list[str]:
    path = tmp_path / "starts.txt"
    return path.read_text().split() if path.exists() else []


def wait_for_starts(tmp_path: Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(starts(tmp_path)) < n:
        assert time.monotonic() < deadline, f"worker started {len(starts(tmp_path))} times, not {n}"
        time.sleep(0.02)


def test_crashed_worker_is_restarted_and_its_callers_rescued(tmp_path):
    proc = start(tmp_path, """
        if runs == 1:
            sys.exit(3)                                 # an ordinary crash
        if runs == 2:
            os.kill(os.getpid(), signal.SIGSEGV)        # what native model code does
        sys.exit(0)                                     # then a deliberate stop
    """)
    code, log = finish(proc)
    assert code == 0, log
    assert len(starts(tmp_path)) == 3
    assert "exited with status 3" in log and "killed by SIGSEGV" in log
    # a rescue was attempted after each crash (and failed: no Asterisk on port 9)
    assert log.count("could not hand over the worker's callers") == 2
    assert "worker stopped on purpose" in log


def test_sigterm_is_forwarded_and_ends_the_supervisor(tmp_path):
    proc = start(tmp_path, """
        def stop(signum, frame):
            (here / "stopped.txt").write_text(signal.Signals(signum).name)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        while True:
            time.sleep(0.05)
    """)
    wait_for_starts(tmp_path, 1)
    time.sleep(0.2)  # let the worker install its handler
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc)
    assert code == 0, log
    assert (tmp_path / "stopped.txt").read_text() == "SIGTERM"
    assert len(starts(tmp_path)) == 1  # not restarted
    assert "could not hand over" not in log  # a clean stop needs no rescue


def test_sigint_reaches_the_worker_once(tmp_path):
    proc = start(tmp_path, """
        def stop(signum, frame):
            with open(here / "signals.txt", "a") as f:
                f.write(signal.Signals(signum).name + "\\n")
        signal.signal(signal.SIGINT, stop)
        time.sleep(0.6)
        sys.exit(0)
    """)
    wait_for_starts(tmp_path, 1)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code, log = finish(proc)
    assert code == 0, log
    assert (tmp_path / "signals.txt").read_text().split() == ["SIGINT"]


def test_worker_that_ignores_sigterm_is_killed_after_the_grace_time(tmp_path):
    proc = start(tmp_path, """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    """)
    wait_for_starts(tmp_path, 1)
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc)
    assert 0.9 <= time.monotonic() - t0 < 5
    assert code == 128 + signal.SIGKILL, log
    assert "did not stop within" in log
    # killed means its callers may be stranded: a rescue is attempted
    assert "could not hand over" in log


def test_configuration_error_is_not_restarted(tmp_path):
    proc = start(tmp_path, "sys.exit(78)\n")
    code, log = finish(proc)
    assert code == 78, log
    assert len(starts(tmp_path)) == 1
    assert "not restarting" in log


def test_backoff_grows_while_the_worker_keeps_crashing(tmp_path):
    proc = start(tmp_path, """
        if runs < 5:
            sys.exit(1)
        sys.exit(0)
    """)
    code, log = finish(proc)
    assert code == 0, log
    delays = [float(line.split("restarting the worker in ")[1].split()[0])
              for line in log.splitlines() if "restarting the worker in" in line]
    assert delays == [0.05, 0.1, 0.2, 0.2]


def test_worker_that_cannot_start_is_an_error(tmp_path):
    from asterisk_agent import config, supervisor

    code = supervisor.supervise([str(tmp_path / "no-such-program")], config.parse(CONFIG))
    assert code == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_callers_of_a_crashed_worker_reach_the_operator(pbx, sandbox_cfg, tmp_path):
    """Against the real sandbox Asterisk: the worker takes a call into Stasis and
    dies by SIGKILL mid-call; the supervisor sends the caller to the operator."""
    proc = start(tmp_path, f"""
        import asyncio, contextlib
        from asterisk_agent import config
        from asterisk_agent.telephony.ari import AriClient, make_id
        if runs > 1:
            sys.exit(0)
        cfg = config.load({str(sandbox_cfg.path)!r})
        caller = "test-caller-" + os.urandom(8).hex()

        async def main():
            async with AriClient(cfg.ari) as ari:
                async with contextlib.aclosing(ari.events()) as events:
                    async for event in events:
                        if event["type"] == "AgentConnected":
                            await ari.request("POST", "/channels/" + caller, {{
                                "endpoint": "Local/s@ai-agent", "context": "sandbox-front-desk",
                                "extension": "s", "otherChannelId": caller + "-2"}})
                        elif event["type"] == "StasisStart" \
                                and event["channel"]["id"] == caller + "-2":
                            await ari.answer(caller + "-2")
                            (here / "caller.txt").write_text(caller + "-2")
                            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """, conf=sandbox_cfg.path)
    code, log = finish(proc, timeout=60)
    assert code == 0, log
    assert "killed by SIGKILL" in log
    assert "'continued': 1" in log, log
    caller = (tmp_path / "caller.txt").read_text()

    async def where() -> dict:
        from asterisk_agent.telephony.ari import AriClient

        async with AriClient(sandbox_cfg.ari) as ari:
            channel = await ari.channel(caller)
            await ari.hangup(caller)
            return channel

    import asyncio

    channel = asyncio.run(where())
    assert channel["dialplan"]["context"] == sandbox_cfg.dialplan.operator_context, channel
