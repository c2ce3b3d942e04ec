"""The call planner: calling hours in the patient's time, retries, concurrency, the report."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from asterisk_agent.outbound.campaign import DialRules, Rules, parse_csv, parse_window
from asterisk_agent.outbound.plan import (
    ANSWERED, BUSY, DO_NOT_CALL, MACHINE, MISSED, NO_ANSWER, Planner, report_csv)

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.timezone.utc
RULES = Rules(DialRules(("_NXXNXXXXXX",)), parse_window("09:00-20:00"), NY,
              do_not_call=frozenset({"2015550199"}))


def campaign(rows: str):
    c = parse_csv("patient,number,type,window,timezone,date\n" + rows, RULES)
    assert not c.errors, c.errors
    return c


def ny(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment in November 2026, New York time (the 23rd is a Monday)."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=NY)


def test_a_call_rings_only_inside_its_window_in_the_patients_own_time():
    p = Planner(campaign("MRN1,2015550134,post-op,09:00-12:00,America/Los_Angeles,\n"))
    # 11:00 in New York is 08:00 in Los Angeles: too early there
    assert p.due(ny(23, 11)) == []
    assert p.next_opening(ny(23, 11)) == ny(23, 12)  # 09:00 Pacific
    (plan,) = p.due(ny(23, 12))
    assert plan.live and plan.call.patient == "MRN1"
    # 15:00 New York is noon in Los Angeles: the window has closed
    p2 = Planner(campaign("MRN1,2015550134,post-op,09:00-12:00,America/Los_Angeles,\n"))
    assert p2.due(ny(23, 15)) == []


def test_no_call_rings_on_a_day_off_and_the_next_opening_skips_it():
    p = Planner(campaign("MRN1,2015550134,results,,,\n"), calling_days=("mon", "tue"))
    sunday = ny(22, 10)
    assert p.due(sunday) == []
    assert p.next_opening(sunday) == ny(23, 9)


def test_no_more_than_max_concurrent_ring_at_once():
    rows = "".join(f"MRN{i},201555010{i},post-op,,,\n" for i in range(5))
    p = Planner(campaign(rows), max_concurrent=2)
    now = ny(23, 10)
    first = p.due(now)
    assert len(first) == 2 and p.due(now) == []
    p.record(first[0], now, ANSWERED)
    assert [x.call.patient for x in p.due(now)] == ["MRN2"]


def test_busy_and_no_answer_are_tried_again_after_the_wait_and_then_given_up():
    p = Planner(campaign("MRN1,2015550134,post-op,,,\n"), attempts=3,
                retry_after=dt.timedelta(minutes=30))
    t = ny(23, 10)
    (plan,) = p.due(t)
    p.record(plan, t, BUSY)
    assert plan.outcome is None and p.due(t + dt.timedelta(minutes=29)) == []
    assert p.next_opening(t) == t + dt.timedelta(minutes=30)
    (plan,) = p.due(t + dt.timedelta(minutes=30))
    p.record(plan, t + dt.timedelta(minutes=30), NO_ANSWER)
    (plan,) = p.due(t + dt.timedelta(hours=1))
    p.record(plan, t + dt.timedelta(hours=1), BUSY)
    assert plan.outcome == BUSY and p.done
    assert p.due(t + dt.timedelta(hours=2)) == [] and p.next_opening(t + dt.timedelta(hours=2)) is None


def test_a_machine_or_a_person_ends_the_tries():
    p = Planner(campaign("MRN1,2015550134,post-op,,,\nMRN2,2015550135,pre-op,,,\n"))
    a, b = p.due(ny(23, 10))
    p.record(a, ny(23, 10, 1), MACHINE, "message left")
    p.record(b, ny(23, 10, 2), ANSWERED)
    assert (a.outcome, b.outcome) == (MACHINE, ANSWERED) and p.done


def test_a_dated_call_not_reached_on_its_day_is_reported_missed_or_as_last_tried():
    p = Planner(campaign("MRN1,2015550134,post-op,,,2026-11-23\n"
                         "MRN2,2015550135,post-op,,,2026-11-23\n"))
    a, b = p.due(ny(23, 19, 50))
    p.record(a, ny(23, 19, 51), NO_ANSWER)
    b.live = False  # never dialled (the runner stopped)
    assert p.due(ny(24, 9)) == []
    assert (a.outcome, b.outcome) == (NO_ANSWER, MISSED) and p.done
    # a dated call waits for its day
    p3 = Planner(campaign("MRN3,2015550136,pre-op,,,2026-11-25\n"))
    assert p3.due(ny(23, 10)) == [] and p3.next_opening(ny(23, 10)) == ny(25, 9)


def test_the_report_has_a_row_a_patient_with_the_do_not_call_ones():
    p = Planner(campaign("MRN1,2015550134,post-op,,,\nMRN9,2015550199,post-op,,,\n"
                         "MRN2,2015550135,results,,,\n"))
    a, b = p.due(ny(23, 10))
    p.record(a, ny(23, 10, 5), BUSY)
    rows = p.report()
    assert [(r["line"], r["patient"], r["outcome"]) for r in rows] == [
        ("2", "MRN1", "pending"), ("3", "MRN9", DO_NOT_CALL), ("4", "MRN2", "calling")]
    assert rows[0]["attempts"] == "1" and rows[0]["results"] == "busy"
    assert rows[0]["last_attempt"] == "2026-11-23T10:05-05:00"
    text = report_csv(rows)
    assert text.splitlines()[0] == "line,patient,type,outcome,attempts,last_attempt,results,detail"
    assert len(text.splitlines()) == 4


def test_bad_planner_input_is_refused():
    c = campaign("MRN1,2015550134,post-op,,,\n")
    with pytest.raises(ValueError, match="calling days"):
        Planner(c, calling_days=("mon", "someday"))
    with pytest.raises(ValueError, match="at least 1"):
        Planner(c, max_concurrent=0)
    p = Planner(c)
    with pytest.raises(ValueError, match="time zone"):
        p.due(dt.datetime(2026, 11, 23, 10))
    (plan,) = p.due(ny(23, 10))
    with pytest.raises(ValueError, match="attempt result"):
        p.record(plan, ny(23, 10), "hung-up-angrily")


def test_the_window_follows_daylight_saving_time():
    # 2027-03-14: New York moves to EDT; 09:00 local is 13:00 UTC, not 14:00
    p = Planner(campaign("MRN1,2015550134,post-op,,,2027-03-15\n"))
    assert p.next_opening(dt.datetime(2027, 3, 14, 12, tzinfo=UTC)) == dt.datetime(
        2027, 3, 15, 13, tzinfo=UTC)
