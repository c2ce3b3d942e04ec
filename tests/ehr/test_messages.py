"""HL7 messages as data: every message the agent builds passes hl7apy strict (v2.5.1)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from asterisk_agent.ehr import messages as m

FACILITY = m.Facility("AGENT-APP", "NORTH CLINIC", "EPIC-IE", "NORTH HOSP")
NASTY = 'Smith|Jones^Jr&Co~x\\y "quoted"\r\nnext'
PATIENT = m.Patient("MRN1001", "Rivera", "Ana", date(1984, 3, 12), "555-0101")
APPOINTMENT = m.Appointment("A-1", PATIENT, "DRLEE", datetime(2030, 1, 7, 9, 0), 20,
                            reason="knee pain | ^ & ~ \\")


def h() -> m.Header:
    return m.header(FACILITY)


def strict(text: str):
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    return message


BUILDERS = {
    "QBP^Q22": lambda: m.find_patient(h(), NASTY, "Ana", date(1984, 3, 12)),
    "QBP^Q22 by MRN": lambda: m.find_patient(h(), patient_id="MRN1001"),
    "SQM^S25": lambda: m.open_slots(h(), "DRLEE", datetime(2030, 1, 7), datetime(2030, 1, 8)),
    "SQM^S25 any provider": lambda: m.open_slots(h(), None, datetime(2030, 1, 7),
                                                 datetime(2030, 1, 8), kind="checkup"),
    "SQM^S25 booked": lambda: m.booked(h(), "MRN1001", datetime(2030, 1, 7), datetime(2031, 1, 7)),
    "QBP^Q31": lambda: m.medications(h(), "MRN1001"),
    "SIU^S12": lambda: m.siu(h(), "S12", APPOINTMENT),
    "SIU^S15": lambda: m.siu(h(), "S15", APPOINTMENT),
    "SRM^S01": lambda: m.book(h(), APPOINTMENT),
    "SRM^S03": lambda: m.reschedule(h(), APPOINTMENT),
    "SRM^S04": lambda: m.cancel(h(), APPOINTMENT),
    "OMP^O09": lambda: m.refill(h(), m.Refill("R-1", PATIENT, "DRLEE", "Lisinopril 10 mg", NASTY)),
    "MDM^T02": lambda: m.chart_note(h(), PATIENT, "Caller message", NASTY),
    "ORU^R01": lambda: m.check_in(h(), PATIENT, [m.Answer("PAIN", "Pain score 0-10", "7", True),
                                                 m.Answer("NOTE", "Anything else", NASTY)]),
}


@pytest.mark.parametrize("kind", BUILDERS)
def test_every_request_passes_hl7apy_strict(kind):
    text = BUILDERS[kind]()
    parsed = strict(text)
    kind = kind.split()[0]
    assert parsed.msh.msh_9.to_er7().startswith(kind)
    assert m.message_type(m.parse(text)) == kind


@pytest.mark.parametrize("kind", BUILDERS)
def test_facility_names_come_from_config(kind):
    msh = m.parse(BUILDERS[kind]()).segment("MSH")
    assert [str(msh(i)) for i in (3, 4, 5, 6)] == ["AGENT-APP", "NORTH CLINIC", "EPIC-IE",
                                                   "NORTH HOSP"]


def test_answers_the_engine_sends_pass_hl7apy_strict():
    back = m.header(FACILITY.reply())
    srm = m.parse(BUILDERS["SRM^S01"]())
    strict(m.srr(srm, back, APPOINTMENT))
    strict(m.srr(srm, back, None, m.REJECT, NASTY))
    strict(m.sqr_s25(m.parse(BUILDERS["SQM^S25"]()), back,
                     [m.Slot(datetime(2030, 1, 7, 9), 20, "DRLEE")]))
    strict(m.orp_o10(m.parse(BUILDERS["OMP^O09"]()), back))
    strict(m.ack(m.parse(BUILDERS["MDM^T02"]()), back, m.ERROR, "busy"))
    strict(m.sqr_booked(m.parse(BUILDERS["SQM^S25 booked"]()), back, [APPOINTMENT]))
    strict(m.rsp_k31(m.parse(BUILDERS["QBP^Q31"]()), back, PATIENT, ["Lisinopril 10 mg"]))


def test_appointments_medications_and_siu_read_back():
    back = m.header(FACILITY.reply())
    booked = replace(APPOINTMENT, filler_id="F000001")
    answer = m.parse(m.sqr_booked(m.parse(BUILDERS["SQM^S25 booked"]()), back, [booked, booked]))
    assert m.read_appointments(answer) == [booked, booked]
    meds = m.parse(m.rsp_k31(m.parse(BUILDERS["QBP^Q31"]()), back, PATIENT,
                             ["Lisinopril 10 mg", "Odd | name ^ here"]))
    assert [x.name for x in m.read_medications(meds)] == ["Lisinopril 10 mg", "Odd | name ^ here"]
    assert m.read_siu(m.parse(m.siu(h(), "S13", booked))) == ("S13", booked)
    with pytest.raises(m.MessageError):
        m.read_siu(m.parse(m.book(h(), APPOINTMENT)))
    with pytest.raises(m.MessageError):
        m.siu(h(), "S99", APPOINTMENT)


@pytest.mark.parametrize("ch", list("|^&~\\"))
def test_caller_text_with_a_delimiter_cannot_change_the_structure(ch):
    note = f"I said {ch} twice {ch}{ch} ok"
    patient = m.Patient("MRN1001", f"O{ch}Brien", f"A{ch}", date(1990, 1, 1))
    text = m.chart_note(h(), patient, "Caller message", note)
    strict(text)
    parsed = m.parse(text)
    assert [str(s(0)) for s in parsed] == ["MSH", "EVN", "PID", "PV1", "TXA", "OBX"]
    # the values read back exactly as spoken
    assert parsed.unescape(str(parsed.segment("OBX")(5))) == note
    read = m.read_patient(parsed, parsed.segment("PID"))
    assert (read.family, read.given) == (f"O{ch}Brien", f"A{ch}")


def test_escape_covers_every_delimiter_and_line_breaks():
    assert m.escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert "\r" not in m.escape("one\rtwo\nthree") and "\n" not in m.escape("x\ny")


def test_multi_line_text_is_sent_as_repetitions():
    parsed = m.parse(m.chart_note(h(), PATIENT, "Summary", "first | line\nsecond ^ line"))
    lines = [parsed.unescape(str(r)) for r in parsed.segment("OBX")(5)]
    assert lines == ["first | line", "second ^ line"]


def test_non_ascii_names_survive():
    patient = m.Patient("MRN9", "Muñoz", "José", date(1970, 2, 3))
    parsed = m.parse(m.book(h(), m.Appointment("A", patient, "DRLEE",
                                              datetime(2030, 1, 7, 9), 20)))
    assert m.read_booking(parsed).patient.family == "Muñoz"
    assert str(parsed.segment("MSH")(18)) == "UNICODE UTF-8"


def test_control_ids_are_unique_and_fit_msh10():
    ids = {m.new_control_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) <= 20 for i in ids)


def test_the_same_header_gives_the_same_control_id_on_a_rebuild():
    header = h()
    assert m.control_id(m.parse(m.book(header, APPOINTMENT))) == header.control_id
    assert m.book(header, APPOINTMENT) == m.book(header, APPOINTMENT)


def test_booking_reads_back():
    a = m.read_booking(m.parse(m.book(h(), APPOINTMENT)))
    assert (a.placer_id, a.patient.id, a.provider_id, a.start, a.minutes, a.reason) == (
        "A-1", "MRN1001", "DRLEE", datetime(2030, 1, 7, 9, 0), 20, "knee pain | ^ & ~ \\")


def test_query_reads_back_in_both_forms():
    ours = m.read_query(m.parse(m.find_patient(h(), "Ri|vera", "Ana", date(1984, 3, 12))))
    assert ours == {"@PID.5.1": "Ri|vera", "@PID.5.2": "Ana", "@PID.7": "19840312"}
    standard = m.parse("MSH|^~\\&|A|B|C|D|20300101||QBP^Q22^QBP_Q21|1|P|2.5.1\r"
                       "QPD|Q22^Find Candidates^HL70471|t|@PID.5.1^Rivera~@PID.7^19840312")
    assert m.read_query(standard) == {"@PID.5.1": "Rivera", "@PID.7": "19840312"}


def test_ack_reading():
    back = m.header(FACILITY.reply())
    srm = m.parse(BUILDERS["SRM^S01"]())
    ack = m.read_ack(m.parse(m.srr(srm, back, None, m.REJECT, "slot | taken")))
    assert (ack.code, ack.control_id, ack.error) == ("AR", m.control_id(srm), "slot | taken")
    assert not ack.accepted


@pytest.mark.parametrize("bad", ["", "garbage", "PID|1||x", "MSH", "\x00\x01\x02MSH|"])
def test_unreadable_text_is_a_message_error(bad):
    with pytest.raises(m.MessageError):
        m.parse(bad)


def test_unknown_booking_event_is_refused():
    with pytest.raises(m.MessageError):
        m.booking(h(), "S99", APPOINTMENT)
