"""A caller asks for a person and nobody can take the call: a message instead.

A real agent whose [ami] operator_queue is the sandbox's queue with nobody
free (sandbox-nobody: one member, on a phone Asterisk does not have), a real
SIP call, and the message sent to the chart.  With the sandbox's own config (a
free front desk) callers are put through: the operator scenarios show that.
"""

from __future__ import annotations

from asterisk_agent.caller.scenario import play_scenario
from e2e import sandbox_conf_variant


async def test_nobody_free_the_caller_leaves_a_message(start_agent, sandbox_cfg, tmp_path):
    # the front desk's queue swapped for one nobody answers
    conf = sandbox_conf_variant(tmp_path, {"operator_queue = sandbox-front-desk\n":
                                           "operator_queue = sandbox-nobody\n"})
    agent = start_agent(conf)
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
