"""A caller asks for a person and nobody can take the call: a message instead.

A real agent whose [ami] operator_queue is the sandbox's queue with nobody
free (sandbox-nobody: only the unregistered test phone), a real SIP call, and
the message sent to the chart.  With the sandbox's own config (a free front
desk) callers are put through: the operator scenarios show that.
"""

from __future__ import annotations

from pathlib import Path

from asterisk_agent.caller.scenario import play_scenario
from conftest import AgentProcess

ROOT = Path(__file__).resolve().parents[2]


def nobody_free_config(tmp_path: Path) -> Path:
    """etc/sandbox.conf with the front desk's queue swapped for one nobody answers;
    the files it names beside itself are linked in."""
    for name in ("practice.conf", "protocols", "ehr-seed.yaml"):
        (tmp_path / name).symlink_to(ROOT / "etc" / name)
    text = (ROOT / "etc" / "sandbox.conf").read_text()
    assert "operator_queue = sandbox-front-desk\n" in text
    conf = tmp_path / "nobody.conf"
    conf.write_text(text.replace("operator_queue = sandbox-front-desk\n",
                                 "operator_queue = sandbox-nobody\n"))
    return conf


async def test_nobody_free_the_caller_leaves_a_message(pbx, ehr_engine, sandbox_cfg, tmp_path):
    agent = AgentProcess(nobody_free_config(tmp_path), tmp_path / "agent.log").start()
    try:
        result = await play_scenario({
            "name": "nobody-free",
            "dial": "200",
            "steps": [
                {"expect": "front desk", "timeout": 30},
                {"say": "I would like to talk to a person, please."},
                {"expect": "nobody at the front desk can take your call"},
                {"expect": "first and last name"},
                {"say": "My name is Maya Lindquist."},
                {"expect": "date of birth"},
                {"dtmf": "01211958"},
                {"expect": "your message"},
                {"say": "Please call me back about my blood test."},
                {"expect": "shall i send it"},
                {"say": "Yes."},
                {"expect": "message is sent"},
            ],
            "ehr": {"after": [{"sent": "MDM^T02", "patient": "MRN1004", "count": 1,
                               "contains": "blood test"}]},
        }, sandbox_cfg, tmp_path)
        steps = "\n".join(f"  {'ok ' if s['ok'] else 'BAD'} {s['step']} heard={s['heard']!r}"
                          for s in result["steps"])
        assert result["passed"], f"{result['error']}\n{steps}\n{agent.log()[-3000:]}"
        assert "nobody can take the call at the front desk" in agent.log()
    finally:
        agent.stop()
