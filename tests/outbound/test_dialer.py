"""The dialer's reading of Asterisk's answers: busy, unanswered, a machine, a person."""

from __future__ import annotations

import datetime as dt

from asterisk_agent.dialog.checkin import CheckIn
from asterisk_agent.ehr.messages import Patient
from asterisk_agent.outbound import plan
from asterisk_agent.outbound.dialer import (Attempt, attempt_result, hangup_result,
                                            machine_answered)

ANA = Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12))


def dialog(kind: str = "post-op") -> CheckIn:
    return CheckIn(kind, ANA, "Riverside Family Practice", "555 010 2030")


def test_the_dial_status_wins_over_the_hangup_cause():
    assert hangup_result(0, "BUSY") == plan.BUSY  # a Local channel passes on cause 0
    assert hangup_result(19, "NOANSWER") == plan.NO_ANSWER
    assert hangup_result(None, "CHANUNAVAIL") == plan.FAILED
    assert hangup_result(17) == plan.BUSY and hangup_result(21) == plan.BUSY
    assert hangup_result(19) == plan.NO_ANSWER and hangup_result(16) == plan.NO_ANSWER
    assert hangup_result(1) == plan.FAILED and hangup_result(None) == plan.FAILED


def test_only_a_machine_that_spoke_is_left_a_message():
    assert machine_answered(["outbound", "MACHINE", "MAXWORDS-3-2"])
    assert machine_answered(["outbound", "machine", "LONGGREETING-2000-1500"])
    # a silent start may be a person waiting to hear who calls: the check-in runs
    assert not machine_answered(["outbound", "MACHINE", "INITIALSILENCE-2500-2500"])
    assert not machine_answered(["outbound", "HUMAN", "HUMAN-1-1"])
    assert not machine_answered(["outbound", "NOTSURE", "TOOLONG-5000"])
    assert not machine_answered([]) and not machine_answered(["outbound"])


def test_an_answered_call_is_reported_by_what_the_dialog_reached():
    d = dialog()
    assert attempt_result(d, "hangup", machine=True) == (plan.MACHINE, "message left")
    assert attempt_result(d, "caller hung up", machine=True)[0] == plan.MACHINE
    assert attempt_result(d, "urgent", False) == (plan.TRANSFERRED, "to the on-call (urgent)")
    assert attempt_result(d, "operator", False) == (plan.TRANSFERRED, "to a person")
    assert attempt_result(d, "caller hung up", False) == (
        plan.NOT_CONFIRMED, "hung up before confirming who they are")
    d.turn("yes")
    d.turn("March 12 1984")
    assert attempt_result(d, "caller hung up", False) == (plan.ANSWERED, "hung up before the end")
    d.turn("two")
    d.turn("no")
    assert attempt_result(d, "hangup", False) == (plan.ANSWERED, "")


async def test_an_unanswered_end_settles_the_attempt_and_a_later_one_does_not():
    busy = Attempt(None, dialog(), "5550101005", "outbound-1")
    busy.dialed("BUSY")
    busy.ended({"type": "ChannelDestroyed", "cause": 0, "cause_txt": "Unknown",
                "channel": {"id": "outbound-1", "state": "Down"}})
    assert busy.settled.result() is False and busy.result.result() == (plan.BUSY, "busy")
    # answered, then gone during the answering-machine detection
    gone = Attempt(None, dialog(), "5550101001", "outbound-2")
    gone.ended({"type": "ChannelDestroyed", "cause": 16,
                "channel": {"id": "outbound-2", "state": "Up"}})
    assert gone.result.result()[0] == plan.NOT_CONFIRMED
    # once in our application the call's own end decides: the destroy is ignored
    talked = Attempt(None, dialog(), "5550101001", "outbound-3")
    talked.answered = True
    talked.ended({"type": "ChannelDestroyed", "cause": 16, "channel": {"state": "Up"}})
    assert not talked.result.done()
