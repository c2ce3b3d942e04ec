"""Nobody can take the call: a caller who asked for a person is offered a message.

The receptionist's side (take_message_instead, then its message flow) and the
conversation's (message_if_nobody_free: only when AMI says nobody, only for a
caller who asked for a person, never for an urgent call).  The EHR link is a
stand-in that knows one patient and keeps the messages left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from asterisk_agent.agent import Services
from asterisk_agent.config import Config
from asterisk_agent.conversation import message_if_nobody_free
from asterisk_agent.dialog import phrases, practice
from asterisk_agent.dialog.first import Action, Reply
from asterisk_agent.dialog.receptionist import Receptionist
from asterisk_agent.ehr.messages import Patient
from asterisk_agent.ehr.outbox import Outcome

ROOT = Path(__file__).resolve().parents[2]
FACTS = practice.load(ROOT / "etc" / "practice.conf")
MONDAY = dt.datetime(2030, 1, 7, 10, 0, tzinfo=FACTS.timezone)
ANA = Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12), "555-0101")


class Link:
    """Stands in for the EHR link: one patient, and the messages left for the chart."""

    def __init__(self):
        self.messages: list[tuple[Patient, str]] = []

    async def find_patient(self, family: str, given: str, born: dt.date) -> list[Patient]:
        if born == ANA.birth_date and family.lower() in ("", "rivera"):
            return [ANA]
        return []

    async def leave_message(self, patient: Patient, text: str) -> Outcome:
        self.messages.append((patient, text))
        return Outcome(confirmed=True, control_id="C1")


@dataclass
class Ami:
    """Stands in for the AMI client: a fixed answer, and who was asked about."""

    answer: bool | None
    asked: list[str] | None = None

    async def can_take_call(self, who: str) -> bool | None:
        self.asked = (self.asked or []) + [who]
        return self.answer


class Leg:
    channel_id = "1795316401.6"


def desk(link=None, language="en") -> Receptionist:
    return Receptionist(link, FACTS, language, lambda: MONDAY)


def services(ami) -> Services:
    return Services(cfg=Config(), practice=FACTS, protocols=None, stt={}, tts={}, ami=ami)


ASKED_FOR_A_PERSON = Reply(phrases.ENGLISH.transfer, Action.OPERATOR, "operator")


@pytest.mark.parametrize("language", ["en", "es"])
async def test_nobody_free_then_who_is_calling_then_the_message_is_left(language):
    link = Link()
    r = desk(link, language)
    f = phrases.of(language).flow
    reply = r.take_message_instead()
    assert reply.action is Action.CONTINUE and reply.intent == "message instead"
    assert reply.text.startswith(f.nobody_free)
    # a message goes on the caller's chart: who they are comes first
    assert r.state == "ask_name" and reply.text.endswith(r.question())
    name, born, message, yes = (("Ana Rivera", "March 12th 1984", "Please call me back "
                                 "about my test results.", "yes") if language == "en" else
                                ("Ana Rivera", "12 de marzo de 1984", "Llámenme por los "
                                 "resultados, por favor.", "sí"))
    await r.turn(name)
    verified = await r.turn(born)
    assert verified.text.endswith(f.ask_message) and r.state == "ask_message"
    confirm = await r.turn(message)
    assert message in confirm.text
    sent = await r.turn(yes)
    assert f.message_sent in sent.text
    assert link.messages == [(ANA, message)]


async def test_a_caller_already_verified_is_asked_for_the_message_at_once():
    r = desk(Link())
    r.patient, r.state, r.flow = ANA, "offer", "book"   # in the middle of a booking
    reply = r.take_message_instead()
    assert reply.text == f"{phrases.ENGLISH.flow.nobody_free} {phrases.ENGLISH.flow.ask_message}"
    assert (r.state, r.flow) == ("ask_message", "message")


async def test_without_an_ehr_link_no_message_can_be_taken():
    assert desk(None).take_message_instead() is None


async def test_ami_saying_nobody_turns_the_transfer_into_a_message():
    ami = Ami(False)
    instead = await message_if_nobody_free(Leg(), services(ami), desk(Link()), ASKED_FOR_A_PERSON)
    assert instead is not None and instead.action is Action.CONTINUE
    assert ami.asked == ["operator"]


@pytest.mark.parametrize("answer", [True, None])
async def test_somebody_free_or_cannot_tell_puts_the_caller_through(answer):
    ami = Ami(answer)
    assert await message_if_nobody_free(Leg(), services(ami), desk(Link()),
                                         ASKED_FOR_A_PERSON) is None
    assert ami.asked == ["operator"]


async def test_without_ami_the_caller_is_put_through():
    assert await message_if_nobody_free(Leg(), services(None), desk(Link()),
                                        ASKED_FOR_A_PERSON) is None


async def test_without_an_ehr_link_the_caller_is_put_through_even_if_nobody_is_free():
    assert await message_if_nobody_free(Leg(), services(Ami(False)), desk(None),
                                        ASKED_FOR_A_PERSON) is None


@pytest.mark.parametrize("reply", [
    # an urgent symptom goes to the on-call at once, whoever is free
    Reply("This may be an emergency.", Action.URGENT, "red flag chest pain"),
    # not understood, or not verified: a person, not a message the agent cannot take
    Reply(phrases.ENGLISH.transfer, Action.OPERATOR, "too many misses"),
    Reply(phrases.ENGLISH.flow.verify_failed, Action.OPERATOR, "not verified"),
    Reply(phrases.ENGLISH.flow.ehr_down, Action.OPERATOR, "ehr down"),
    Reply("Our hours are ...", Action.CONTINUE, "hours"),
])
async def test_only_a_caller_who_asked_for_a_person_is_offered_a_message(reply):
    ami = Ami(False)
    assert await message_if_nobody_free(Leg(), services(ami), desk(Link()), reply) is None
    assert ami.asked is None, "AMI must not even be asked"
