"""Placing a campaign's calls through ARI, and what became of each.

The planner (plan.py) says which calls may ring now; the dialer looks each
patient up in the EHR (the name and date of birth the call confirms), asks
Asterisk to ring the number ([outbound] dial) and waits for one of two ends:

- the channel is destroyed before it reaches our application: the hangup
  cause says busy, not answered or failed;
- somebody answers: the dialplan ([outbound] context) runs answering-machine
  detection and hands the call to our application with what it found; the
  call then runs as one coroutine (call.py) and its dialog says the outcome.

Each attempt's result goes back to the planner, which retries busy and
unanswered calls within the calling hours.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..agent import OUTBOUND_PREFIX
from ..compliance import redact
from ..dialog.checkin import CheckIn
from ..ehr.link import LinkError
from ..ehr.messages import Patient
from ..telephony.ari import AriError
from ..telephony.leg import CallLeg
from . import plan as outcomes
from .call import check_in
from .plan import CallPlan, Planner

if TYPE_CHECKING:
    from ..agent import Agent, Services

log = logging.getLogger("asterisk_agent.outbound")

# Q.850 hangup causes of a call that never reached our application
BUSY_CAUSES = frozenset({17, 21})            # user busy, call rejected
NO_ANSWER_CAUSES = frozenset({16, 18, 19, 20})  # cleared while ringing, no answer
# the longest a call may ring and run through the dialplan before it is given up
SETUP_GRACE_S = 30.0


# the Dial event's DIALSTATUS of a call that rang: the surest word on a busy line
# (a Local channel passes on no hangup cause)
DIAL_RESULTS = {"BUSY": outcomes.BUSY, "NOANSWER": outcomes.NO_ANSWER,
                "CONGESTION": outcomes.FAILED, "CHANUNAVAIL": outcomes.FAILED}


def hangup_result(cause: int | None, dialstatus: str = "") -> str:
    """What the end of a call nobody answered means: the dial status, else the
    hangup cause."""
    if dialstatus in DIAL_RESULTS:
        return DIAL_RESULTS[dialstatus]
    if cause in BUSY_CAUSES:
        return outcomes.BUSY
    if cause in NO_ANSWER_CAUSES:
        return outcomes.NO_ANSWER
    return outcomes.FAILED


def machine_answered(args: list[str]) -> bool:
    """AMD's verdict from the Stasis arguments: outbound, AMDSTATUS, AMDCAUSE.

    A long silence at first is AMD's MACHINE too (INITIALSILENCE), but a
    person who answers and waits is as likely: such a call gets the check-in,
    whose opening says nothing about the patient's health either.
    """
    status = args[1].upper() if len(args) > 1 else ""
    cause = args[2].upper() if len(args) > 2 else ""
    return status == "MACHINE" and not cause.startswith("INITIALSILENCE")


def attempt_result(dialog: CheckIn, leg_outcome: str, machine: bool) -> tuple[str, str]:
    """An answered call's result and a detail for the report (never an answer)."""
    if machine:
        return outcomes.MACHINE, ("message left" if leg_outcome == "hangup"
                                  else "hung up during the message")
    if leg_outcome == "urgent":
        return outcomes.TRANSFERRED, "to the on-call (urgent)"
    if leg_outcome == "operator":
        return outcomes.TRANSFERRED, "to a person"
    if dialog.outcome == "answered":
        return outcomes.ANSWERED, "" if leg_outcome == "hangup" else "hung up at the goodbye"
    if dialog.outcome == "not-confirmed":
        return outcomes.NOT_CONFIRMED, ""
    if dialog.confirmed:
        return outcomes.ANSWERED, "hung up before the end"
    return outcomes.NOT_CONFIRMED, "hung up before confirming who they are"


@dataclass
class Attempt:
    """One call being placed: what the event dispatch tells it, and its result."""

    plan: CallPlan
    dialog: CheckIn
    number: str
    channel_id: str

    def __post_init__(self):
        loop = asyncio.get_running_loop()
        self.answered = False
        self.dialstatus = ""
        self.settled = loop.create_future()   # set once answered or ended unanswered
        self.result = loop.create_future()    # (result, detail)

    async def converse(self, leg: CallLeg, services: Services) -> None:
        self.answered = True
        if not self.settled.done():
            self.settled.set_result(True)
        machine = machine_answered(leg.args)
        log.info("call %s: answered (%s)", leg.channel_id,
                 "an answering machine" if machine else "a person, or not sure")
        try:
            await check_in(leg, services, self.dialog, machine)
        finally:
            if not self.result.done():
                self.result.set_result(attempt_result(self.dialog, leg.outcome, machine))

    def dialed(self, status: str) -> None:
        self.dialstatus = status.upper()

    def ended(self, event: dict) -> None:
        """The channel is gone; before it was answered the cause says why."""
        if self.answered:
            return
        cause = event.get("cause")
        channel = event.get("channel") or {}
        if channel.get("state") == "Up":
            # answered, then hung up during answering-machine detection
            result = (outcomes.NOT_CONFIRMED, "hung up before the agent spoke")
        else:
            result = (hangup_result(cause if isinstance(cause, int) else None, self.dialstatus),
                      self.dialstatus.lower() or str(event.get("cause_txt") or ""))
        if not self.result.done():
            self.result.set_result(result)
        if not self.settled.done():
            self.settled.set_result(False)


class Dialer:
    def __init__(self, agent: Agent, planner: Planner,
                 clock: Callable[[], dt.datetime] | None = None):
        self.agent = agent
        self.services: Services = agent.services
        self.cfg = agent.cfg
        self.planner = planner
        self.practice = self.services.practice
        self.clock = clock or self.practice.now
        self.charts: dict[str, Patient] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.stopping = False

    def stop(self) -> None:
        """Place no more calls: the live ones finish, then run() returns the report."""
        if not self.stopping:
            log.warning("stopping: no more calls are placed; %d live call(s) finish first",
                        len(self._tasks))
        self.stopping = True
        self._changed.set()

    async def look_up_patients(self) -> None:
        """Every campaign patient's chart, before the first call: a patient the EHR
        does not know (or without a date of birth to confirm) is not called."""
        ehr = self.services.ehr
        for p in self.planner.plans:
            mrn = p.call.patient
            if mrn not in self.charts:
                try:
                    chart = await ehr.patient(mrn)
                except LinkError as exc:
                    raise LinkError(f"cannot look up the campaign's patients: {exc}") from exc
                if chart is not None and chart.birth_date is not None:
                    self.charts[mrn] = chart
            if mrn not in self.charts:
                p.outcome = outcomes.NOT_IN_EHR

    async def run(self, connect_timeout: float = 30.0) -> list[dict[str, str]]:
        """Place calls until each has its outcome (or none can ring in the next days,
        or stop() was called); the report, a row a patient."""
        await asyncio.wait_for(self.agent.connected.wait(), connect_timeout)
        await self.look_up_patients()
        try:
            while True:
                self._changed.clear()
                now = self.clock()
                for p in [] if self.stopping else self.planner.due(now):
                    task = asyncio.ensure_future(self._attempt(p))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                following = self.planner.next_opening(now)
                if not self._tasks and (self.stopping or self.planner.done or following is None):
                    break
                delay = 3600.0 if following is None else (following - now).total_seconds()
                try:
                    await asyncio.wait_for(self._changed.wait(), max(0.05, delay))
                except TimeoutError:
                    pass
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.planner.report()

    async def _attempt(self, p: CallPlan) -> None:
        result, detail = outcomes.FAILED, ""
        try:
            result, detail = await self._place(p)
        except asyncio.CancelledError:
            result, detail = outcomes.FAILED, "stopped"
            raise
        except Exception as exc:  # one call's failure never stops the campaign
            log.exception("line %d: the call could not be placed", p.call.line)
            result, detail = outcomes.FAILED, f"could not place the call: {type(exc).__name__}"
        finally:
            self.planner.record(p, self.clock(), result, detail)
            log.info("line %d (%s): %s%s", p.call.line, p.call.type, result,
                     f", {detail}" if detail else "")
            self._changed.set()

    async def _place(self, p: CallPlan) -> tuple[str, str]:
        c, o = p.call, self.cfg.outbound
        chart = self.charts[c.patient]
        language = c.language or self.cfg.general.language
        if language not in self.services.tts:
            language = self.cfg.general.language
        dialog = CheckIn(c.type, chart, self.practice.name, self.practice.phone, language,
                         instructions=self.practice.pre_op_in(language),
                         today=self.clock().date())
        # not starting with the app's name: those are the agent's own media channels
        channel_id = f"{OUTBOUND_PREFIX}{uuid.uuid4().hex[:16]}"
        attempt = Attempt(p, dialog, c.number, channel_id)
        self.agent.expect(channel_id, attempt)
        redact.remember(c.number, chart.given, chart.family, chart.birth_date, call=channel_id)
        try:
            try:
                await self.agent.ari.originate(
                    o.dial.format(number=c.number), channel_id, o.context,
                    caller_id=self.caller_id(), timeout=o.ring_timeout,
                    variables={"AI_AGENT_OUTBOUND_APP": o.app})
            except AriError as exc:
                log.error("line %d: Asterisk did not place the call: %s", c.line, exc)
                return outcomes.FAILED, f"Asterisk refused the call ({exc.status})"
            log.info("call %s: ringing line %d (%s)", channel_id, c.line, c.type)
            try:
                await asyncio.wait_for(asyncio.shield(attempt.settled),
                                       o.ring_timeout + SETUP_GRACE_S)
            except TimeoutError:
                await self.agent.ari.hangup(channel_id)
                return outcomes.NO_ANSWER, "no answer from Asterisk in time"
            result, detail = await attempt.result
            await self._chart(chart, dialog)
            return result, detail
        finally:
            self.agent.placed.pop(channel_id, None)
            redact.forget(channel_id)

    async def _chart(self, chart: Patient, dialog: CheckIn) -> None:
        """A post-op check-in's answers to the chart (ORU^R01, through the outbox)."""
        answers = dialog.answers()
        if not answers:
            return
        outcome = await self.services.ehr.check_in(chart, answers)
        if not (outcome.confirmed or outcome.recorded):
            log.error("check-in answers not taken by the EHR: %s", outcome.error)

    def caller_id(self) -> str:
        number = self.cfg.outbound.caller_id or re.sub(r"\D", "", self.practice.phone)
        name = self.practice.name.replace('"', "")
        return f'"{name}" <{number}>'
