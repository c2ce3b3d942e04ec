"""End to end, without a shared agent: no agent at all, or one the test kills.

Real SIP calls through the real Asterisk, as in test_calls.py; these tests
must not share a module with a running agent.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from e2e import GREETED, call, explain


def test_no_agent_means_operator_not_dead_air(pbx, sandbox_cfg, tmp_path):
    """With no ARI application connected, Stasis() fails and the dialplan reaches a person."""
    result = call(sandbox_cfg, {
        "dial": "200", "steps": [{"expect": "reached the front desk", "timeout": 15}]}, tmp_path)
    assert result["passed"], explain(result)


def test_ivr_zero_goes_to_operator(pbx, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "100",
        "steps": [{"expect": "press (1|one)"}, {"dtmf": "0"}, {"expect": "reached the front desk"}],
    }, tmp_path)
    assert result["passed"], explain(result)


def test_killing_the_agent_mid_call_leaves_caller_with_operator(start_agent, sandbox_cfg, tmp_path):
    proc = start_agent()
    killed = {}

    def kill_worker_when_greeting_starts():
        # once the agent has the call (a fixed sleep raced a slow caller start
        # on a busy machine: the worker died first and the dialplan's own
        # fallback answered), and its greeting is playing
        deadline = time.monotonic() + 60
        while ": start" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        pid = proc.worker_pid()
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    killer = threading.Thread(target=kill_worker_when_greeting_starts)
    killer.start()
    result = call(sandbox_cfg, {
        "dial": "200", "steps": [{"expect": "reached the front desk", "timeout": 30}]}, tmp_path)
    killer.join()
    assert killed, "the worker was not killed"
    assert result["passed"], explain(result) + "\nagent log:\n" + proc.log()[-3000:]
    # the supervisor, not the dialplan's own fallback, moved the caller on
    assert "orphaned caller" in proc.log() and "sent to ai-agent-operator,s,1" in proc.log()
    # the supervisor starts a new worker, which takes the next call
    proc.wait_registered(120)
    again = call(sandbox_cfg, {"dial": "200", "steps": [GREETED, {"say": "Operator."},
                                                      {"expect": "front desk"}]}, tmp_path)
    assert again["passed"], explain(again)
