"""A campaign from the EHR's SIU feed: the patients with a procedure on one day.

`outbound run --from-schedule pre-op` calls the patients whose procedure is
tomorrow, `--from-schedule post-op` those whose procedure was yesterday (or
on --day).  The appointments come from the local schedule the agent keeps from
the feed ([ehr] feed_port); a procedure is an appointment whose reason (SCH-7)
names one of [outbound] procedure_reasons.  The number to call is the one on
the patient's chart (PID-13), and every row is checked like a campaign file's:
a number outside the allowed dial patterns is a bad row, one on the
do-not-call list is kept out.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Awaitable, Callable, Iterable

from ..ehr.messages import Appointment, Patient
from .campaign import Campaign, RowError, Rules, add_row

# the day of the procedure, counted from the day the calls are made
DAY_OFFSET = {"pre-op": 1, "post-op": -1}


def procedure_day(call_type: str, today: dt.date) -> dt.date:
    """Pre-op calls are about tomorrow's procedures, post-op ones about yesterday's."""
    return today + dt.timedelta(days=DAY_OFFSET[call_type])


def is_procedure(reason: str, reasons: Iterable[str]) -> bool:
    words = set(re.findall(r"\w+", reason.casefold()))
    return any(set(re.findall(r"\w+", r.casefold())) <= words for r in reasons if r.strip())


async def from_schedule(appointments: Iterable[Appointment], call_type: str, day: dt.date,
                        today: dt.date, chart: Callable[[str], Awaitable[Patient | None]],
                        rules: Rules, reasons: Iterable[str]) -> Campaign:
    """The campaign of `call_type` calls, made on `today`, for the procedures on `day`.

    A row's "line" is its place in the day's list of procedures (by start time).
    """
    if call_type not in DAY_OFFSET:
        raise ValueError(f"call type {call_type!r}: the schedule gives pre-op or post-op calls")
    reasons = tuple(reasons)
    campaign = Campaign(f"{call_type} {day.isoformat()}")
    todays = sorted((a for a in appointments
                     if a.start.date() == day and is_procedure(a.reason, reasons)),
                    key=lambda a: a.start)
    for line, a in enumerate(todays, 1):
        patient = await chart(a.patient.id)
        if patient is None:
            campaign.errors.append(RowError(line, f"{a.patient.id}: not found in the EHR"))
            continue
        if not patient.phone:
            campaign.errors.append(RowError(line, f"{a.patient.id}: no phone number on the chart"))
            continue
        add_row(campaign, line, {"patient": patient.id, "number": patient.phone,
                                 "type": call_type, "date": today.isoformat()}, {}, rules)
    return campaign
