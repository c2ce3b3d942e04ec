"""FastAGI with the agent up: AGI(agi://127.0.0.1:4573/ai-agent) hands the caller to
the agent (EXEC Stasis), which answers as it does a call that came by Stasis().

A real agent (`serve`, whose worker runs the FastAGI server at [agi] listen) and
a real SIP call to extension 300 of [ai-agent-demo], which goes to
[ai-agent-agi].  The agent-down case is test_agi_live.py.
"""

from __future__ import annotations

from asterisk_agent.caller.scenario import play_scenario


def explain(result: dict) -> str:
    lines = [f"error: {result['error']}"]
    lines += [f"  {'ok ' if s['ok'] else 'BAD'} {s['step']} heard={s['heard']!r}"
              for s in result["steps"]]
    return "\n".join(lines)


async def test_with_the_agent_up_agi_hands_the_call_to_it(agent, pbx, sandbox_cfg, tmp_path):
    start = pbx.log_path.stat().st_size
    result = await play_scenario({
        "name": "agi",
        "dial": "300",
        "steps": [
            # the agent's own greeting: the call reached its Stasis application
            {"expect": "front desk", "timeout": 30},
            {"say": "Where are you located?"},
            {"expect": "river road"},
            {"say": "Thank you, goodbye."},
            {"expect_hangup": True},
        ]}, sandbox_cfg, tmp_path)
    assert result["passed"], explain(result)
    with open(pbx.log_path, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        log = f.read()
    assert "Executing Application: (Stasis) Options: (ai-agent,agi," in log, log[-3000:]
