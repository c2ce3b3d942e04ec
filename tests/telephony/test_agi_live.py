"""The FastAGI entry with the real sandbox Asterisk and a real SIP call.

The sandbox runs the project's dialplan unchanged: the test caller dials 300
in [ai-agent-demo], which goes to [ai-agent-agi] and its
AGI(agi://127.0.0.1:4573/ai-agent).  The FastAGI server runs in the test,
with the agent's own voice, and is told that the agent's ARI side is down:
the caller must hear the keypad menu, press 0, and reach the sandbox's front
desk through the operator context.  (test_agi.py checks the protocol against
a scripted peer; this is the test with Asterisk itself.)
"""

from __future__ import annotations

import socket

import pytest

from asterisk_agent.agent import Services
from asterisk_agent.caller.scenario import play_scenario
from asterisk_agent.dialog import practice
from asterisk_agent.metrics import parse_listen
from asterisk_agent.speech.tts import TtsPool, load_synthesizer
from asterisk_agent.telephony.agi import AgiServer


@pytest.fixture
async def keypad_only(pbx, sandbox_cfg):
    """The FastAGI server at [agi] listen, with the agent's ARI side down."""
    host, port = parse_listen(sandbox_cfg.agi.listen)
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            pytest.fail(f"{host}:{port} ([agi] listen of etc/sandbox.conf) is taken: an agent "
                        "of the sandbox config is running; this test needs the port")
    voice = TtsPool(load_synthesizer(sandbox_cfg.tts.for_language("en")))
    # the keypad menu screens nothing and transcribes nothing
    s = Services(cfg=sandbox_cfg, practice=practice.load(sandbox_cfg.practice_path),
                 protocols=None, stt={}, tts={"en": voice})
    server = AgiServer(s, ari_connected=lambda: False)
    await server.start(host, port)
    yield server
    await server.close()
    voice.close()


def explain(result: dict) -> str:
    lines = [f"error: {result['error']}"]
    lines += [f"  {'ok ' if s['ok'] else 'BAD'} {s['step']} heard={s['heard']!r} "
              f"{s.get('error') or ''}" for s in result["steps"]]
    lines.append(f"  whole call: {result['heard_transcript']!r}")
    return "\n".join(lines)


def counted(server: AgiServer, name: str, **labels: str) -> float:
    return server.s.metrics.registry.get_sample_value(f"asterisk_agent_{name}_total",
                                                      labels) or 0.0


async def test_agent_down_keypad_menu_zero_reaches_the_front_desk(pbx, sandbox_cfg, keypad_only,
                                                                  tmp_path):
    offset = pbx.log_path.stat().st_size if pbx.log_path.exists() else 0
    result = await play_scenario({
        "name": "agi-keypad-operator",
        "dial": "300",
        "steps": [
            # "... Press 1 to hear our opening hours and address.  Press 0 for the front desk."
            {"expect": "press (1|one)", "within": 20},
            {"dtmf": "0"},
            # the sandbox's stand-in front desk answers
            {"expect": "reached the front desk", "within": 20},
        ]}, sandbox_cfg, tmp_path)
    assert result["passed"], explain(result)
    # Asterisk's own account, in the order the caller lived through it: the AGI
    # session, then the operator context the menu set, then a person answering
    with open(pbx.log_path, "rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    steps = [text.find(s) for s in (
        "AGI(\"",
        "[s@ai-agent-operator:1]",
        "sandbox front desk answered",
    )]
    assert -1 not in steps and steps == sorted(steps), text[-3000:]
    # and the server's: the keypad menu ended at the operator, with no error
    assert counted(keypad_only, "calls", outcome="keypad, operator") == 1
    assert counted(keypad_only, "errors", where="agi") == 0
