"""End to end: real SIP calls through the real Asterisk to a running agent.

Each test places a call with the scripted caller (real SIP, real RTP audio),
listens to what comes back through its own speech-to-text, and checks what a
caller would hear.  Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from asterisk_agent.caller.scenario import run_scenario
from asterisk_agent.telephony.ari import AriClient

from .conftest import SANDBOX_CONF, AgentProcess


def call(cfg, scenario: dict, tmp_path=None) -> dict:
    result = run_scenario(scenario, cfg, record_dir=tmp_path)
    return result


def explain(result: dict) -> str:
    lines = [f"passed={result['passed']} error={result.get('error')}"]
    for step in result["steps"]:
        lines.append(f"  {'ok ' if step['ok'] else 'BAD'} {step['step']} heard={step['heard']!r}"
                     f" latency_ms={step.get('latency_ms')}")
    lines.append(f"  whole call: {result['heard_transcript']!r}")
    return "\n".join(lines)


def leftovers(cfg) -> tuple[list, list]:
    """Channels and bridges still in Asterisk (ours or any)."""
    async def look():
        async with AriClient(cfg.ari) as ari:
            return await ari.channels(), await ari.bridges()
    return asyncio.run(look())


def wait_clean(cfg, timeout: float = 10.0) -> tuple[list, list]:
    deadline = time.monotonic() + timeout
    while True:
        channels, bridges = leftovers(cfg)
        if (not channels and not bridges) or time.monotonic() > deadline:
            return channels, bridges
        time.sleep(0.3)


GREETED = {"expect": "front desk", "timeout": 30}


def test_ivr_to_agent_asks_hours_then_goodbye(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "100",
        "steps": [
            {"expect": "press (1|one)"},
            {"dtmf": "1"},
            GREETED,
            {"say": "What time do you open on Monday?"},
            {"expect": "8|eight"},
            {"say": "Goodbye."},
            {"expect": "goodbye|thank you"},
            {"expect_hangup": True},
        ]}, tmp_path)
    assert result["passed"], explain(result)
    says = [s for s in result["steps"] if "say" in s["step"]]
    assert all(isinstance(s["latency_ms"], (int, float)) and s["latency_ms"] > 0 for s in says)
    assert wait_clean(sandbox_cfg) == ([], []), "the agent left channels or bridges behind"


def test_operator_on_request(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [GREETED, {"say": "Operator, please."}, {"expect": "front desk.*hold|hold"}],
    }, tmp_path)
    assert result["passed"], explain(result)
    # the caller now hears the front desk stand-in, which only the dialplan reaches
    assert "you have reached the front desk" in result["heard_transcript"].lower(), explain(result)


def test_operator_on_dtmf_zero(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [GREETED, {"dtmf": "0"}, {"expect": "reached the front desk"}],
    }, tmp_path)
    assert result["passed"], explain(result)


def test_ivr_zero_goes_to_operator(pbx, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "100",
        "steps": [{"expect": "press (1|one)"}, {"dtmf": "0"}, {"expect": "reached the front desk"}],
    }, tmp_path)
    assert result["passed"], explain(result)


def test_caller_hangs_up_mid_sentence_leaves_nothing_behind(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [{"expect": "assistant|hello", "timeout": 30}, {"hangup": True}],
    }, tmp_path)
    assert result["passed"], explain(result)
    assert wait_clean(sandbox_cfg) == ([], []), "channels or bridges left after the caller hung up"
    assert "Traceback" not in agent.log()


def test_no_agent_means_operator_not_dead_air(pbx, sandbox_cfg, tmp_path):
    """With no ARI application connected, Stasis() fails and the dialplan reaches a person."""
    result = call(sandbox_cfg, {
        "dial": "200", "steps": [{"expect": "reached the front desk", "timeout": 15}]}, tmp_path)
    assert result["passed"], explain(result)


def test_killing_the_agent_mid_call_leaves_caller_with_operator(pbx, sandbox_cfg, tmp_path):
    proc = AgentProcess(SANDBOX_CONF, tmp_path / "agent.log").start()
    try:
        import threading

        killed = {}

        def kill_worker_when_greeting_starts():
            time.sleep(3.0)  # the call is set up and the greeting is playing
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
        assert "handed" in proc.log().lower() or "hand" in proc.log().lower()
        # the supervisor starts a new worker, which takes the next call
        proc.wait_registered(120)
        again = call(sandbox_cfg, {"dial": "200", "steps": [GREETED, {"say": "Operator."},
                                                          {"expect": "front desk"}]}, tmp_path)
        assert again["passed"], explain(again)
    finally:
        proc.stop()


def test_asterisk_restart_between_calls(agent, pbx, sandbox_cfg, tmp_path):
    first = call(sandbox_cfg, {"dial": "200", "steps": [GREETED, {"say": "Goodbye."},
                                                         {"expect_hangup": True}]}, tmp_path)
    assert first["passed"], explain(first)
    pbx.restart()
    agent.wait_registered(60)  # the agent reconnected by itself: no restart of the agent
    second = call(sandbox_cfg, {
        "dial": "100",
        "steps": [{"expect": "press (1|one)"}, {"dtmf": "1"}, GREETED,
                  {"say": "Where can I park?"}, {"expect": "parking|lot|behind"},
                  {"say": "Goodbye."}, {"expect_hangup": True}]}, tmp_path)
    assert second["passed"], explain(second) + "\nagent log:\n" + agent.log()[-3000:]
