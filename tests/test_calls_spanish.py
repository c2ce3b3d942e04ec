"""End to end in Spanish: a real SIP call chooses Spanish in the IVR (2), and the
agent listens and answers in Spanish.

The caller speaks with espeak-ng's Spanish voice and transcribes what it hears
with the multilingual Whisper model told the language; the agent does the
same with its own Spanish voice.  Nothing here is mocked.
"""

from __future__ import annotations

from pathlib import Path

from e2e import call, explain, wait_clean

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def test_ivr_two_reaches_the_agent_in_spanish(agent, pbx, sandbox_cfg, tmp_path):
    from asterisk_agent.caller.scenario import load_scenario

    result = call(sandbox_cfg, load_scenario(SCENARIOS / "ivr-spanish.yaml"), tmp_path)
    assert result["passed"], explain(result) + "\nagent log:\n" + agent.log()[-3000:]
    # the menu played its Spanish prompt after the English one
    assert "Playing 'ai-agent/ivr-menu-es." in pbx.log_path.read_text(errors="replace")
    log = agent.log()
    # the dialplan asked for Spanish; the agent understood the Spanish question
    # and the Spanish goodbye (the caller's checks only prove what it heard)
    assert ": language es" in log and "turn -> hours" in log and "turn -> goodbye" in log, log[-3000:]
    assert wait_clean(sandbox_cfg) == ([], []), "the agent left channels or bridges behind"
