"""HL7 v2.5.1 messages for the EHR link, built and read as plain data.

Every builder takes a Header (facility names from config, a control ID chosen
once when the message is queued, so a retry carries the same ID and the
receiver can de-duplicate) and returns the message as ER7 text, segments
separated by CR.  Every value that came from a caller or a record goes
through escape(), so a caller saying "|" or "^" cannot change the structure.

Reading uses python-hl7's parser; a message that cannot be read raises
MessageError with the reason, never anything else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime

import hl7

VERSION = "2.5.1"
# Caller-provided names and free text are not ASCII-only; UTF-8 on the wire.
CHARSET = "UNICODE UTF-8"
ENCODING = "utf-8"

FIELD, COMPONENT, REPETITION, ESCAPE, SUBCOMPONENT = "|", "^", "~", "\\", "&"
ENCODING_CHARACTERS = COMPONENT + REPETITION + ESCAPE + SUBCOMPONENT

# ACK codes (HL7 table 0008)
ACCEPT, ERROR, REJECT = "AA", "AE", "AR"


class MessageError(ValueError):
    """A message that cannot be built or read, with the reason."""


# --------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Facility:
    """Who sends and who receives (MSH-3..6), from the [ehr] config section."""

    sending_application: str = "ASTERISK-AGENT"
    sending_facility: str = "PRACTICE"
    receiving_application: str = "EHR"
    receiving_facility: str = "PRACTICE"

    def reply(self) -> Facility:
        """The same link seen from the other end."""
        return Facility(self.receiving_application, self.receiving_facility,
                        self.sending_application, self.sending_facility)


@dataclass(frozen=True)
class Header:
    facility: Facility
    control_id: str
    timestamp: datetime


def new_control_id() -> str:
    """A unique MSH-10 (ST, at most 20 characters), chosen once per message."""
    return datetime.utcnow().strftime("%y%m%d%H%M%S") + secrets.token_hex(4)


def header(facility: Facility, control_id: str | None = None,
           timestamp: datetime | None = None) -> Header:
    return Header(facility, control_id or new_control_id(), timestamp or datetime.now())


@dataclass(frozen=True)
class Patient:
    id: str
    family: str
    given: str
    birth_date: date | None = None
    phone: str = ""


@dataclass(frozen=True)
class Provider:
    id: str
    family: str
    given: str = ""


@dataclass(frozen=True)
class Slot:
    start: datetime
    minutes: int
    provider_id: str


@dataclass(frozen=True)
class Appointment:
    """A booking as the agent asks for it; filler_id is the EHR's own ID once known."""

    placer_id: str
    patient: Patient
    provider_id: str
    start: datetime
    minutes: int
    reason: str = ""
    filler_id: str = ""


@dataclass(frozen=True)
class Refill:
    placer_id: str
    patient: Patient
    provider_id: str
    medication: str
    note: str = ""


@dataclass(frozen=True)
class Answer:
    """One check-in answer: a question code, its text, the caller's answer."""

    code: str
    question: str
    value: str
    numeric: bool = False


@dataclass(frozen=True)
class Ack:
    code: str
    control_id: str  # the control ID of the message acknowledged (MSA-2)
    error: str = ""
    message: hl7.Message | None = field(default=None, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.code in (ACCEPT, "CA")


# --------------------------------------------------------------------------
# Escaping and composing


def escape(text: str) -> str:
    """Escape HL7 delimiters in a value (v2.5.1 section 2.7).

    Hand-written because python-hl7's escape() writes control characters
    as space-padded hex (``\\X a\\``), which receivers reject.  Line breaks
    and other control characters become spaces: a CR would end the segment,
    and free text that needs lines is sent as field repetitions instead.
    """
    out = []
    for c in text:
        if c == ESCAPE:
            out.append("\\E\\")
        elif c == FIELD:
            out.append("\\F\\")
        elif c == COMPONENT:
            out.append("\\S\\")
        elif c == SUBCOMPONENT:
            out.append("\\T\\")
        elif c == REPETITION:
            out.append("\\R\\")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def _component(value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):  # subcomponents
        return SUBCOMPONENT.join(escape(str(v)) for v in value)
    return escape(str(value))


def _field(value) -> str:
    """str: one escaped value; tuple: components; list: repetitions."""
    if value is None:
        return ""
    if isinstance(value, list):
        return REPETITION.join(_field(v) for v in value)
    if isinstance(value, tuple):
        return COMPONENT.join(_component(v) for v in value).rstrip(COMPONENT)
    return escape(str(value))


def segment(name: str, *fields) -> str:
    return FIELD.join([name, *(_field(f) for f in fields)]).rstrip(FIELD)


def _ts(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S")


def _dt(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def msh(h: Header, code: str, trigger: str, structure: str) -> str:
    f = h.facility
    fields = [
        "MSH", ENCODING_CHARACTERS, escape(f.sending_application), escape(f.sending_facility),
        escape(f.receiving_application), escape(f.receiving_facility), _ts(h.timestamp), "",
        COMPONENT.join((code, trigger, structure)), escape(h.control_id), "P", VERSION,
        "", "", "", "", "", CHARSET,
    ]
    return FIELD.join(fields)


def _join(*segments: str) -> str:
    return "\r".join(segments)


def _pid(p: Patient) -> str:
    return segment("PID", "1", None, (p.id, None, None, None, "MR"), None,
                   (p.family, p.given), None, _dt(p.birth_date), None, None, None,
                   None, None, p.phone or None)


def _agent() -> tuple:
    # ARQ-15 / ARQ-19 (placer contact, entered by) are required: the agent itself
    return ("AGENT", "Phone Agent")


# --------------------------------------------------------------------------
# Requests the agent sends


def find_patient(h: Header, family: str = "", given: str = "", birth_date: date | None = None,
                 patient_id: str = "") -> str:
    """QBP^Q22 (Find Candidates): name and date of birth, or the medical record
    number (PID-3), -> RSP^K22."""
    # The standard sends each parameter as a repetition of QPD-3 (a QIP),
    # but the generic v2.5.1 QPD allows one QPD-3 and hl7apy strict enforces
    # that; so one QIP carries the names and the values as parallel
    # subcomponent lists.  read_query() reads both forms.
    params = [("@PID.3.1", patient_id)] if patient_id else []
    if family or given or not patient_id:
        params += [("@PID.5.1", family), ("@PID.5.2", given)]
    if birth_date:
        params.append(("@PID.7", _dt(birth_date)))
    qpd = segment("QPD", ("Q22", "Find Candidates", "HL70471"), h.control_id,
                  (tuple(k for k, _ in params), tuple(v for _, v in params)))
    return _join(msh(h, "QBP", "Q22", "QBP_Q21"), qpd, segment("RCP", "I", ("10", "RD")))


def open_slots(h: Header, provider_id: str | None, start: datetime, end: datetime,
               minutes: int = 20, kind: str | None = None) -> str:
    """SQM^S25: open slots between start and end -> SQR^S25.

    QRD-9 SOP (open slots, HL7 table 0048); without a provider every
    provider's slots; kind (ARQ-8, the appointment type) narrows to the
    providers who see that kind of visit.
    """
    resources = [segment("RGS", "1", "A")]
    if provider_id:
        resources.append(segment("AIP", "1", "A", (provider_id,)))
    return _join(
        msh(h, "SQM", "S25", "SQM_S25"),
        segment("QRD", _ts(h.timestamp), "R", "I", h.control_id, None, None, ("10", "RD"),
                (provider_id or "ALL",), ("SOP", "Open slots"), ("SCH",)),
        segment("ARQ", (h.control_id,), None, None, None, None, None, None,
                (kind,) if kind else None,
                str(minutes), ("min",), [(_ts(start), _ts(end))], None, None, None,
                _agent(), None, None, None, _agent()),
        *resources,
    )


def booked(h: Header, patient_id: str, start: datetime, end: datetime) -> str:
    """SQM^S25 with QRD-9 SBK (booked slots) and the patient in QRD-8: their appointments."""
    return _join(
        msh(h, "SQM", "S25", "SQM_S25"),
        segment("QRD", _ts(h.timestamp), "R", "I", h.control_id, None, None, ("50", "RD"),
                (patient_id,), ("SBK", "Booked slots"), ("SCH",)),
        segment("ARQ", (h.control_id,), None, None, None, None, None, None, None,
                None, None, [(_ts(start), _ts(end))], None, None, None,
                _agent(), None, None, None, _agent()),
        segment("RGS", "1", "A"),
    )


def medications(h: Header, patient_id: str) -> str:
    """QBP^Q31 (dispense history, structure QBP_Q11): a patient's medications -> RSP^K31."""
    return _join(
        msh(h, "QBP", "Q31", "QBP_Q11"),
        segment("QPD", ("Q31", "Dispense History", "HL70471"), h.control_id, patient_id),
        segment("RCP", "I", ("50", "RD")),
    )


_BOOKING_EVENTS = {"S01": "book", "S03": "reschedule", "S04": "cancel"}


def booking(h: Header, event: str, a: Appointment) -> str:
    """SRM^S01 (book), ^S03 (reschedule), ^S04 (cancel) -> SRR."""
    if event not in _BOOKING_EVENTS:
        raise MessageError(f"unknown booking event {event!r}")
    return _join(
        msh(h, "SRM", event, "SRM_S01"),
        segment("ARQ", (a.placer_id,), (a.filler_id,) if a.filler_id else None, None, None,
                None, None, ("ROUTINE", a.reason) if a.reason else None, None,
                str(a.minutes), ("min",),
                [(_ts(a.start),)], None, None, None, _agent(), None, None, None, _agent()),
        _pid(a.patient),
        segment("RGS", "1", "A"),
        segment("AIP", "1", "A", (a.provider_id,), None, None, _ts(a.start), None, None,
                str(a.minutes), ("min",)),
    )


def book(h: Header, a: Appointment) -> str:
    return booking(h, "S01", a)


def reschedule(h: Header, a: Appointment) -> str:
    return booking(h, "S03", a)


def cancel(h: Header, a: Appointment) -> str:
    return booking(h, "S04", a)


def refill(h: Header, r: Refill) -> str:
    """OMP^O09: a refill request to the provider's queue -> ORP^O10."""
    segments = [
        msh(h, "OMP", "O09", "OMP_O09"),
        _pid(r.patient),
        segment("ORC", "NW", (r.placer_id,), None, None, None, None, None, None,
                _ts(h.timestamp), None, None, (r.provider_id,)),
        segment("RXO", (None, r.medication)),
    ]
    if r.note:
        segments.append(segment("NTE", "1", "P", r.note))
    segments.append(segment("RXR", ("PO", "Oral")))
    return _join(*segments)


def chart_note(h: Header, p: Patient, title: str, text: str, document_id: str = "") -> str:
    """MDM^T02: a caller's message or post-call summary for the chart.

    Each line of text is one repetition of OBX-5 (TX), since a CR cannot
    appear inside a field.
    """
    lines = [line for line in text.splitlines()] or [""]
    return _join(
        msh(h, "MDM", "T02", "MDM_T02"),
        segment("EVN", None, _ts(h.timestamp)),
        _pid(p),
        segment("PV1", "1", "O"),
        segment("TXA", "1", "CN", "TX", _ts(h.timestamp), None, None,
                None, None, None, None, None, (document_id or h.control_id,), None, None,
                None, None, "PA"),
        segment("OBX", "1", "TX", (None, title), None, lines, None, None, None, None, None,
                "F"),
    )


def check_in(h: Header, p: Patient, answers: list[Answer], order_id: str = "") -> str:
    """ORU^R01: check-in answers (e.g. a pain score), one OBX each."""
    obx = [
        segment("OBX", str(i), "NM" if a.numeric else "ST", (a.code, a.question, "L"), None,
                a.value, None, None, None, None, None, "F", None, None, _ts(h.timestamp))
        for i, a in enumerate(answers, 1)
    ]
    return _join(
        msh(h, "ORU", "R01", "ORU_R01"),
        _pid(p),
        segment("OBR", "1", (order_id or h.control_id,), None, ("CHECKIN", "Phone check-in", "L"),
                None, None, _ts(h.timestamp)),
        *obx,
    )


# --------------------------------------------------------------------------
# Answers the peer sends (used by the simulator; readers below for the agent)


def ack(received: hl7.Message, h: Header, code: str = ACCEPT, error: str = "",
        structure: str = "ACK") -> str:
    """ACK (or the MSH+MSA head of another answer) for a received message."""
    return _join(*_ack_head(received, h, code, error, structure))


def _ack_head(received: hl7.Message | None, h: Header, code: str, error: str,
              structure: str, message_code: str = "ACK", trigger: str | None = None,
              control_id: str = "") -> list[str]:
    if received is not None:
        control_id = str(received.segment("MSH")(10))
        trigger = trigger or str(received.segment("MSH")(9)(1)(2))
    head = [msh(h, message_code, trigger or "", structure),
            segment("MSA", code, control_id, error[:80] if error else None)]
    if code != ACCEPT:
        severity = "E" if code == ERROR else "E"
        head.append(segment("ERR", None, None, ("207" if code == ERROR else "100",
                                                "Application internal error" if code == ERROR
                                                else "Segment sequence error", "HL70357"),
                            severity, None, None, None, error or None))
    return head


def rsp_k22(received: hl7.Message, h: Header, candidates: list[Patient]) -> str:
    """RSP^K22 with one PID+QRI per candidate.

    The structure is RSP_K22 (a repeating candidate group, per v2.5.1);
    hl7apy knows only RSP_K21, which allows a single candidate.
    """
    qpd = received.segment("QPD")
    candidate_segments = []
    for p in candidates:
        candidate_segments += [_pid(p), segment("QRI", "1")]
    return _join(
        *_ack_head(received, h, ACCEPT, "", "RSP_K22", "RSP", "K22"),
        segment("QAK", str(qpd(2)), "OK" if candidates else "NF"),
        str(qpd),
        *candidate_segments,
    )


def sqr_s25(received: hl7.Message, h: Header, slots: list[Slot]) -> str:
    segs = _ack_head(received, h, ACCEPT, "", "SQR_S25", "SQR", "S25")
    segs.append(segment("QAK", str(received.segment("QRD")(4)), "OK" if slots else "NF"))
    for i, s in enumerate(slots, 1):
        segs += [
            segment("SCH", None, None, None, None, None, ("S25", "Open slot"), None, None,
                    str(s.minutes),
                    ("min",), (None, None, None, _ts(s.start)), None, None, None, None,
                    _agent(), None, None, None, _agent(), None, None, None, None, ("Open",)),
            segment("RGS", "1"),
            segment("AIP", "1", None, (s.provider_id,), None, None, _ts(s.start), None, None,
                    str(s.minutes), ("min",)),
        ]
    return _join(*segs)


def srr(received: hl7.Message, h: Header, a: Appointment | None, code: str = ACCEPT,
        error: str = "") -> str:
    trigger = str(received.segment("MSH")(9)(1)(2))
    segs = _ack_head(received, h, code, error, "SRR_S01", "SRR", trigger)
    if a is not None and code == ACCEPT:
        status = "Cancelled" if trigger == "S04" else "Booked"
        segs += [
            segment("SCH", (a.placer_id,), (a.filler_id,), None, None, None, ("ROUTINE",),
                    None, None, str(a.minutes), ("min",),
                    (None, None, None, _ts(a.start)), None, None, None, None, _agent(),
                    None, None, None, _agent(), None, None, None, None, (status,)),
            _pid(a.patient),
            segment("RGS", "1"),
            segment("AIP", "1", None, (a.provider_id,), None, None, _ts(a.start), None, None,
                    str(a.minutes), ("min",)),
        ]
    return _join(*segs)


def _schedule_group(a: Appointment, status: str) -> list[str]:
    """SCH, PID, RGS, AIP: one appointment as SQR^S25 and SIU carry it."""
    return [
        segment("SCH", (a.placer_id,), (a.filler_id,) if a.filler_id else None, None, None,
                None, ("ROUTINE", a.reason) if a.reason else ("ROUTINE",), None, None,
                str(a.minutes), ("min",), (None, None, None, _ts(a.start)), None, None, None,
                None, _agent(), None, None, None, _agent(), None, None, None, None, (status,)),
        _pid(a.patient),
        segment("RGS", "1"),
        segment("AIP", "1", None, (a.provider_id,), None, None, _ts(a.start), None, None,
                str(a.minutes), ("min",)),
    ]


def sqr_booked(received: hl7.Message, h: Header, appointments: list[Appointment]) -> str:
    """SQR^S25 answering a booked-slots query: one SCH group per appointment."""
    segs = _ack_head(received, h, ACCEPT, "", "SQR_S25", "SQR", "S25")
    segs.append(segment("QAK", str(received.segment("QRD")(4)),
                        "OK" if appointments else "NF"))
    for a in appointments:
        segs += _schedule_group(a, "Booked")
    return _join(*segs)


def rsp_k31(received: hl7.Message, h: Header, patient: Patient | None,
            names: list[str]) -> str:
    """RSP^K31: the patient, then one ORC+RXD+RXR+OBX per active medication.

    With none (QAK NF) the answer has no response group, as the standard
    intends; hl7apy's RSP_K31 requires one, so only a non-empty answer
    passes its strict check.
    """
    qpd = received.segment("QPD")
    segs = _ack_head(received, h, ACCEPT, "", "RSP_K31", "RSP", "K31")
    segs += [segment("QAK", str(qpd(2)), "OK" if patient and names else "NF"), str(qpd),
             segment("RCP", "I")]
    if patient is not None:
        segs.append(_pid(patient))
    for i, name in enumerate(names, 1):
        segs += [
            segment("ORC", "OK", (f"{patient.id if patient else ''}-RX{i}",)),
            # RXD-2 give code: the name as text; seeds carry no drug codes
            # RXD-3 (when dispensed) is required but not kept by the seed: the answer's time
            segment("RXD", str(i), (None, name), _ts(h.timestamp), "1", None, None, f"{i}"),
            segment("RXR", ("PO", "Oral")),
            # RSP_K31 requires an observation group: the order's status
            segment("OBX", "1", "ST", ("STATUS", "Medication status", "L"), None, "active",
                    None, None, None, None, None, "F"),
        ]
    return _join(*segs)


# SIU trigger events the feed carries and the filler status each implies
SIU_EVENTS = {"S12": "Booked", "S13": "Booked", "S14": "Booked", "S15": "Cancelled",
              "S17": "Deleted"}


def siu(h: Header, event: str, a: Appointment) -> str:
    """SIU^S12 (new), S13 (moved), S14 (changed), S15 (cancelled), S17 (deleted)."""
    if event not in SIU_EVENTS:
        raise MessageError(f"unknown SIU event {event!r}")
    return _join(msh(h, "SIU", event, "SIU_S12"), *_schedule_group(a, SIU_EVENTS[event]))


def orp_o10(received: hl7.Message, h: Header, code: str = ACCEPT, error: str = "") -> str:
    return _join(*_ack_head(received, h, code, error, "ORP_O10", "ORP", "O10"))


# --------------------------------------------------------------------------
# Reading


def parse(text: str) -> hl7.Message:
    """Parse ER7 text; MessageError (never anything else) when it is not HL7."""
    text = text.strip("\r\n")
    if not text.startswith("MSH") or len(text) < 8:
        raise MessageError("not an HL7 message: no MSH segment at the start")
    try:
        message = hl7.parse(text.replace("\n", "\r"))
        msh_segment = message.segment("MSH")
        str(msh_segment(9)), str(msh_segment(10))
    except Exception as e:  # python-hl7 raises several kinds on malformed text
        raise MessageError(f"malformed HL7 message: {e}") from e
    return message


def message_type(m: hl7.Message) -> str:
    """'SRM^S01' for example."""
    t = m.segment("MSH")(9)(1)
    return f"{t(1)}^{t(2)}"


def control_id(m: hl7.Message) -> str:
    return str(m.segment("MSH")(10))


def _value(m: hl7.Message, seg, field: int, repetition: int = 1, component: int = 1,
           subcomponent: int | None = None) -> str:
    """One value, unescaped: seg-field~repetition^component&subcomponent (1-based).

    Reads the field's text rather than python-hl7's nested containers, whose
    depth varies with what the sender put in the field.  With only a field
    number, the first component of the first repetition.
    """
    try:
        text = str(seg(field))
    except (IndexError, KeyError):
        return ""
    parts = text.split(REPETITION)
    text = parts[repetition - 1] if repetition <= len(parts) else ""
    parts = text.split(COMPONENT)
    text = parts[component - 1] if component <= len(parts) else ""
    parts = text.split(SUBCOMPONENT)
    text = parts[(subcomponent or 1) - 1] if (subcomponent or 1) <= len(parts) else ""
    return m.unescape(text)


def _get(m: hl7.Message, name: str, *index) -> str:
    try:
        return _value(m, m.segment(name), *index)
    except KeyError:
        return ""


def read_ack(m: hl7.Message) -> Ack:
    """MSA-1/MSA-2 and the error text (MSA-3, or ERR-8 when present)."""
    try:
        m.segment("MSA")
    except KeyError:
        raise MessageError("answer has no MSA segment") from None
    error = _get(m, "ERR", 8) or _get(m, "MSA", 3)
    return Ack(_get(m, "MSA", 1), _get(m, "MSA", 2), error, m)


def _date(text: str) -> date | None:
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date() if text else None
    except ValueError:
        raise MessageError(f"bad date {text!r}") from None


def _datetime(text: str) -> datetime:
    try:
        return datetime.strptime(text[:12], "%Y%m%d%H%M")
    except ValueError:
        raise MessageError(f"bad timestamp {text!r}") from None


def read_patient(m: hl7.Message, seg) -> Patient:
    return Patient(_value(m, seg, 3, 1, 1), _value(m, seg, 5, 1, 1), _value(m, seg, 5, 1, 2),
                   _date(_value(m, seg, 7)), _value(m, seg, 13))


def read_candidates(m: hl7.Message) -> list[Patient]:
    return [read_patient(m, s) for s in m.segments("PID")] if _has(m, "PID") else []


def _has(m: hl7.Message, name: str) -> bool:
    return any(str(s(0)) == name for s in m)


def read_slots(m: hl7.Message) -> list[Slot]:
    if not _has(m, "AIP"):
        return []
    return [Slot(_datetime(_value(m, s, 6)), int(_value(m, s, 9) or 0), _value(m, s, 3, 1, 1))
            for s in m.segments("AIP")]


def read_booking(m: hl7.Message) -> Appointment:
    """The appointment an SRM asks for (or an SRR confirms)."""
    head = "ARQ" if _has(m, "ARQ") else "SCH"
    if not (_has(m, head) and _has(m, "AIP")):
        raise MessageError(f"booking without {head} or AIP")
    aip = m.segment("AIP")
    start = _value(m, aip, 6)
    try:
        minutes = int(_value(m, aip, 9) or _get(m, head, 9) or 0)
    except ValueError:
        raise MessageError("appointment duration is not a number") from None
    # the appointment reason: ARQ-7 of a request; of a booking or SIU, SCH-7
    # (appointment reason) or the text of SCH-6 (event reason), where this
    # agent and many engines put it
    reason = (_get(m, "ARQ", 7, 1, 2) if head == "ARQ" else
              _get(m, "SCH", 7, 1, 2) or _get(m, "SCH", 7, 1, 1) or _get(m, "SCH", 6, 1, 2))
    patient = read_patient(m, m.segment("PID")) if _has(m, "PID") else Patient("", "", "")
    return Appointment(_get(m, head, 1, 1, 1), patient, _value(m, aip, 3, 1, 1),
                       _datetime(start), minutes, reason, _get(m, head, 2, 1, 1))


def read_refill(m: hl7.Message) -> Refill:
    if not (_has(m, "ORC") and _has(m, "RXO") and _has(m, "PID")):
        raise MessageError("refill without PID, ORC or RXO")
    return Refill(_get(m, "ORC", 2, 1, 1), read_patient(m, m.segment("PID")),
                  _get(m, "ORC", 12, 1, 1), _get(m, "RXO", 1, 1, 2), _get(m, "NTE", 3))


def read_query(m: hl7.Message) -> dict[str, str]:
    """QBP^Q22 parameters as {'@PID.5.1': 'Doe', ...}."""
    out: dict[str, str] = {}
    try:
        qip_list = m.segment("QPD")(3)
    except (IndexError, KeyError):
        return out
    for qip in qip_list:
        names, values = list(qip(1)), list(qip(2)) if len(qip) > 1 else []
        if not isinstance(qip(1), hl7.Component):  # one name, one value
            names, values = [qip(1)], [qip(2)] if len(qip) > 1 else [""]
        for name, value in zip(names, values + [""] * len(names)):
            out[m.unescape(str(name))] = m.unescape(str(value))
    return out


@dataclass(frozen=True)
class Medication:
    """An active medication as the EHR names it (what a refill request may ask for)."""

    name: str
    order_id: str = ""


def read_appointments(m: hl7.Message) -> list[Appointment]:
    """Every SCH group of an SQR^S25 (or SIU) as an Appointment, in message order."""
    out: list[Appointment] = []
    sch = pid = None
    for seg in m:
        name = str(seg(0))
        if name == "SCH":
            sch, pid = seg, None
        elif name == "PID" and sch is not None:
            pid = seg
        elif name == "AIP" and sch is not None:
            try:
                minutes = int(_value(m, seg, 9) or 0)
            except ValueError:
                raise MessageError("appointment duration is not a number") from None
            patient = read_patient(m, pid) if pid is not None else Patient("", "", "")
            out.append(Appointment(_value(m, sch, 1), patient, _value(m, seg, 3),
                                   _datetime(_value(m, seg, 6)), minutes,
                                   _value(m, sch, 6, 1, 2), _value(m, sch, 2)))
            sch = None
    return out


def read_medications(m: hl7.Message) -> list[Medication]:
    out, order = [], ""
    for seg in m:
        name = str(seg(0))
        if name == "ORC":
            order = _value(m, seg, 2)
        elif name == "RXD":
            out.append(Medication(_value(m, seg, 2, 1, 2) or _value(m, seg, 2), order))
    return out


def read_siu(m: hl7.Message) -> tuple[str, Appointment]:
    """The trigger event (S12...) and the appointment an SIU announces."""
    event = str(m.segment("MSH")(9)(1)(2))
    if not message_type(m).startswith("SIU") or event not in SIU_EVENTS:
        raise MessageError(f"not a schedule notification: {message_type(m)}")
    found = read_appointments(m)
    if not found:
        raise MessageError("SIU without SCH and AIP")
    return event, found[0]


def validate(text: str) -> str:
    """'' when hl7apy (strict, v2.5.1) accepts the message, else the reason.

    hl7apy is an implementation of the standard independent of ours; the
    simulator checks what it receives with it, and the feed listener too.
    """
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        parse_message(text, validation_level=VALIDATION_LEVEL.STRICT,
                      find_groups=True).validate()
    except Exception as e:  # hl7apy raises many kinds; each is a reason to NAK
        return f"{type(e).__name__}: {e}"[:200]
    return ""
