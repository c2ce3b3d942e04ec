"""Campaigns from the EHR's SIU feed: who has a procedure tomorrow, or had one yesterday."""

from __future__ import annotations

import datetime as dt
import sqlite3
import zoneinfo

import pytest

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.schedule import Schedule
from asterisk_agent.outbound.campaign import DialRules, Rules, parse_window
from asterisk_agent.outbound.procedures import from_schedule, is_procedure, procedure_day

NY = zoneinfo.ZoneInfo("America/New_York")
RULES = Rules(DialRules(("_555XXXX", "_NXXNXXXXXX")), parse_window("09:00-20:00"), NY,
              frozenset({"5550199"}))
TODAY = dt.date(2026, 11, 23)
TOMORROW = dt.datetime(2026, 11, 24, 8, 0)
CHARTS = {
    "MRN1001": m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12), "555-0101"),
    "MRN1002": m.Patient("MRN1002", "Okafor", "Daniel", dt.date(1979, 11, 30), "555-0102"),
    "MRN1003": m.Patient("MRN1003", "Rivera", "Ana", dt.date(1991, 7, 4), ""),
    "MRN1004": m.Patient("MRN1004", "Lindqvist", "Maja", dt.date(1958, 1, 21), "555-0199"),
    "MRN1005": m.Patient("MRN1005", "Nguyen", "Thanh", dt.date(2001, 5, 17), "911"),
}


def visit(mrn: str, start: dt.datetime, reason: str) -> m.Appointment:
    return m.Appointment(f"P-{mrn}-{start:%d%H%M}", m.Patient(mrn, "", ""), "DRLEE", start, 60,
                         reason)


async def chart(mrn: str) -> m.Patient | None:
    return CHARTS.get(mrn)


def test_reasons_name_procedures_as_words_in_any_case():
    reasons = ("procedure", "surgery")
    assert is_procedure("Knee SURGERY", reasons) and is_procedure("procedure: colonoscopy", reasons)
    assert not is_procedure("checkup", reasons) and not is_procedure("surgeryfollowup", reasons)
    assert is_procedure("minor skin procedure", ("skin procedure",))
    assert not is_procedure("", reasons) and not is_procedure("surgery", ("", " "))


def test_pre_op_is_about_tomorrow_and_post_op_about_yesterday():
    assert procedure_day("pre-op", TODAY) == dt.date(2026, 11, 24)
    assert procedure_day("post-op", TODAY) == dt.date(2026, 11, 22)


async def test_the_days_procedures_become_rows_checked_like_a_files():
    appointments = [
        visit("MRN1002", TOMORROW.replace(hour=11), "Knee surgery"),
        visit("MRN1001", TOMORROW, "Colonoscopy procedure"),
        visit("MRN1001", TOMORROW.replace(hour=15), "checkup"),          # no procedure
        visit("MRN1002", TOMORROW + dt.timedelta(days=1), "surgery"),    # another day
        visit("MRN1003", TOMORROW.replace(hour=12), "surgery"),          # no phone
        visit("MRN1004", TOMORROW.replace(hour=13), "surgery"),          # do not call
        visit("MRN1005", TOMORROW.replace(hour=14), "surgery"),          # not dialable
        visit("MRN9999", TOMORROW.replace(hour=16), "surgery"),          # not in the EHR
    ]
    c = await from_schedule(appointments, "pre-op", TOMORROW.date(), TODAY, chart, RULES,
                            ("procedure", "surgery"))
    assert [(x.line, x.patient, x.number, x.type, x.date) for x in c.calls] == [
        (1, "MRN1001", "5550101", "pre-op", TODAY), (2, "MRN1002", "5550102", "pre-op", TODAY)]
    assert [(k.patient, why) for k, why in c.kept_out] == [("MRN1004", "on the do-not-call list")]
    assert [str(e) for e in c.errors] == [
        "line 3: MRN1003: no phone number on the chart",
        "line 5: number 911 is outside the allowed dial patterns (_555XXXX, _NXXNXXXXXX)",
        "line 6: MRN9999: not found in the EHR"]
    with pytest.raises(ValueError, match="pre-op or post-op"):
        await from_schedule(appointments, "results", TOMORROW.date(), TODAY, chart, RULES, ())


def test_the_schedule_keeps_the_reason_and_an_older_file_gains_it(tmp_path):
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript("CREATE TABLE appointment (placer_id TEXT PRIMARY KEY, filler_id TEXT NOT "
                     "NULL, patient_id TEXT NOT NULL, provider_id TEXT NOT NULL, start TEXT NOT "
                     "NULL, minutes INTEGER NOT NULL);"
                     "INSERT INTO appointment VALUES ('P1', 'F1', 'MRN1001', 'DRLEE', "
                     "'2026-11-24T08:00:00', 60);")
    db.close()
    schedule = Schedule(old, {})
    try:
        assert [a.reason for a in schedule.appointments()] == [""]
        a = visit("MRN1002", TOMORROW, "Knee surgery")
        # as the feed brings it: an SIU, read back
        h = m.header(m.Facility("EHR", "PRACTICE", "ASTERISK-AGENT", "PRACTICE"))
        fed = m.read_booking(m.parse(m.siu(h, "S12", a)))
        assert fed.reason == "Knee surgery"
        assert schedule.apply("C1", "S12", fed)
        assert {x.patient.id: x.reason for x in schedule.appointments()} == {
            "MRN1001": "", "MRN1002": "Knee surgery"}
    finally:
        schedule.close()
