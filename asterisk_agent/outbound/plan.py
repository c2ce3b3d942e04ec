"""Which campaign calls may ring now, and what became of each one.

Pure logic over the clock: the runner asks `due(now, live)` for the calls to
place, reports each attempt's result with `record`, and sleeps until
`next_opening(now)`.  A call rings only inside its window in the patient's
own time zone, on a calling day, on its date when it has one, never more
often than `attempts` times and never sooner than `retry_after` after the
last try.  Busy, no answer and a failed dial are tried again; anything a
person or a machine answered is final.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from .campaign import WEEKDAYS, Campaign, CampaignCall

# an attempt's result
ANSWERED = "answered"            # a person, identity confirmed, the call's purpose done
NOT_CONFIRMED = "not-confirmed"  # a person whose identity was not confirmed: nothing said
TRANSFERRED = "transferred"      # handed to a person (asked for, or an urgent answer)
MACHINE = "machine"              # an answering machine: the message without health details
BUSY = "busy"
NO_ANSWER = "no-answer"
FAILED = "failed"                # the number could not be reached (congestion, unallocated)
RESULTS = (ANSWERED, NOT_CONFIRMED, TRANSFERRED, MACHINE, BUSY, NO_ANSWER, FAILED)
RETRIED = frozenset({BUSY, NO_ANSWER, FAILED})
# outcomes without an attempt
DO_NOT_CALL = "do-not-call"
MISSED = "window-missed"         # its date passed before it could ring
NOT_IN_EHR = "not-in-ehr"        # no such patient in the EHR (or no date of birth to confirm)


@dataclass(frozen=True)
class Attempt:
    at: dt.datetime
    result: str
    # what the dialog reached, for the report (never the patient's answers)
    detail: str = ""


@dataclass
class CallPlan:
    call: CampaignCall
    attempts: list[Attempt] = field(default_factory=list)
    # set once nothing more will be tried
    outcome: str | None = None
    # a call being placed now
    live: bool = False

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


class Planner:
    def __init__(self, campaign: Campaign, *, max_concurrent: int = 2, attempts: int = 3,
                 retry_after: dt.timedelta = dt.timedelta(minutes=30),
                 calling_days: tuple[str, ...] = WEEKDAYS[:6]):
        if max_concurrent < 1 or attempts < 1:
            raise ValueError("max_concurrent and attempts must be at least 1")
        unknown = [d for d in calling_days if d not in WEEKDAYS]
        if unknown or not calling_days:
            raise ValueError(f"calling days {calling_days}: use {', '.join(WEEKDAYS)}")
        self.campaign = campaign
        self.max_concurrent = max_concurrent
        self.max_attempts = attempts
        self.retry_after = retry_after
        self.days = frozenset(WEEKDAYS.index(d) for d in calling_days)
        self.plans = [CallPlan(c) for c in campaign.calls]
        self.kept_out = [CallPlan(c, outcome=DO_NOT_CALL) for c, _ in campaign.kept_out]

    def may_ring(self, call: CampaignCall, now: dt.datetime) -> bool:
        """Inside the call's window, on a calling day (and its date), in its time zone."""
        local = now.astimezone(call.timezone)
        return (local.weekday() in self.days and local.time() in call.window
                and (call.date is None or local.date() == call.date))

    def _missed(self, call: CampaignCall, now: dt.datetime) -> bool:
        if call.date is None:
            return False
        local = now.astimezone(call.timezone)
        return local.date() > call.date or (local.date() == call.date
                                            and local.time() >= call.window.end)

    def due(self, now: dt.datetime) -> list[CallPlan]:
        """The calls to place now, marked live (at most the room under max_concurrent)."""
        if now.tzinfo is None:
            raise ValueError("the planner's clock must carry a time zone")
        room = self.max_concurrent - sum(p.live for p in self.plans)
        out = []
        for plan in self.plans:
            if plan.outcome is not None or plan.live:
                continue
            if self._missed(plan.call, now):
                plan.outcome = plan.last.result if plan.last else MISSED
                continue
            if plan.last and now - plan.last.at < self.retry_after:
                continue
            if room > 0 and self.may_ring(plan.call, now):
                plan.live = True
                out.append(plan)
                room -= 1
        return out

    def record(self, plan: CallPlan, at: dt.datetime, result: str, detail: str = "") -> None:
        """One attempt's result; the call is final unless it may be tried again."""
        if result not in RESULTS:
            raise ValueError(f"attempt result {result!r}: one of {', '.join(RESULTS)}")
        plan.attempts.append(Attempt(at, result, detail))
        plan.live = False
        if result not in RETRIED or len(plan.attempts) >= self.max_attempts:
            plan.outcome = result

    @property
    def done(self) -> bool:
        return all(p.outcome is not None for p in self.plans)

    def next_opening(self, now: dt.datetime, horizon_days: int = 8) -> dt.datetime | None:
        """The earliest moment after `now` at which a pending call could ring."""
        best = None
        for plan in self.plans:
            if plan.outcome is not None or plan.live:
                continue
            earliest = now if plan.last is None else max(now, plan.last.at + self.retry_after)
            t = self.opening(plan.call, earliest, horizon_days)
            if t is not None and (best is None or t < best):
                best = t
        return best

    def opening(self, call: CampaignCall, earliest: dt.datetime,
                horizon_days: int = 8) -> dt.datetime | None:
        """The first moment from `earliest` at which this call may ring."""
        if self.may_ring(call, earliest):
            return earliest
        day = earliest.astimezone(call.timezone).date()
        for i in range(horizon_days + 1):
            d = day + dt.timedelta(days=i)
            if d.weekday() not in self.days or (call.date is not None and d != call.date):
                continue
            start = dt.datetime.combine(d, call.window.start, tzinfo=call.timezone)
            if start >= earliest:
                return start.astimezone(earliest.tzinfo)
        return None

    def report(self) -> list[dict[str, str]]:
        """One row a patient: the outcome, the attempts and when the last one was."""
        rows = []
        for plan in self.plans + self.kept_out:
            c, last = plan.call, plan.last
            rows.append({
                "line": str(c.line), "patient": c.patient, "type": c.type,
                "outcome": plan.outcome or ("calling" if plan.live else "pending"),
                "attempts": str(len(plan.attempts)),
                "last_attempt": last.at.astimezone(c.timezone).isoformat(timespec="minutes") if last else "",
                "results": " ".join(a.result for a in plan.attempts),
                "detail": last.detail if last else "",
            })
        return sorted(rows, key=lambda r: int(r["line"]))


REPORT_COLUMNS = ("line", "patient", "type", "outcome", "attempts", "last_attempt",
                  "results", "detail")


def report_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, REPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()
