"""The PHI redaction processor, alone: what it removes, what it keeps, how it fails."""

from __future__ import annotations

import sys
from datetime import date

import pytest
import structlog

from asterisk_agent.compliance import redact
from asterisk_agent.compliance.redact import REDACTED, Phi, Redactor, _Registry


@pytest.fixture
def registry():
    return _Registry(limit=64)


@pytest.fixture
def redactor(registry):
    return Redactor(registry=registry)


def run(redactor, **event) -> dict:
    return redactor(None, "info", dict(event))


@pytest.mark.parametrize("text", [
    # caller ids and phone numbers, in the ways Asterisk and people write them
    "call 1795316401.6 from 5551234567: start",
    "from +15551234567",
    "caller +1 (555) 123-4567 hung up",
    "number 555-123-4567.",
    "number 555.123.4567",
    "number 555 123 4567",
    "local 5551234",
    # dates of birth: written, ISO, HL7, spoken, typed on the keypad
    "dob 1984-03-12",
    "dob 1984/3/12",
    "dob 03/12/1984",
    "dob 12.03.1984",
    "dob 3-12-84",
    "PID|1||MRN1001||Rivera^Ana||19840312|F",
    "born March 12th, 1984",
    "born on 12 March 1984",
    "born Mar. 12 1984",
    "dtmf 03121984 received",
    # medical record numbers
    "patient MRN1001 looked up",
    "patients MRN1001,MRN1002",
])
def test_phi_patterns_are_removed(redactor, text):
    out = run(redactor, event=text)["event"]
    assert REDACTED in out, out
    for secret in ("5551234", "555-123", "555.123", "555 123", "1984", "03121984", "MRN100",
                   "March 12", "12 March", "Mar. 12", "3-12-84", "12.03"):
        assert secret not in out, (text, out)


@pytest.mark.parametrize("text", [
    "call 1795316401.6: start",
    "call 1795316401.6: end (caller hung up)",
    "StasisStart for a leftover media channel ai-agent-123456789012-media",
    "connecting to http://127.0.0.1:8088/ari as app ai-agent",
    "RTP on port 40000 from 192.168.100.200:20000, SSRC 0a0b0c0d, PT 0",
    "EHR 2601011200004f3a9b1c: confirmed",
    "asterisk-agent 0.3.36: models loaded",
    "call 1795316401.6: 2.4 s of speech, transcript ready 183 ms after the end of the turn",
    "worker started (pid 41234)",
    "restarting the worker in 1.00 s (crash 3 in a row)",
    "language model: 950 ms",
    "EHR link to 10.0.0.5:2575 started; 12 messages pending in the outbox",
    "bridge 5f0c2a1e-9b7d-4c3e-8a1f-426614174000 destroyed",
    "recording imported: 1234567 bytes",
    "audit: 1000000 records verified in 15321 ms",
])
def test_operational_facts_and_call_ids_survive(redactor, text):
    assert run(redactor, event=text)["event"] == text


def test_fields_nested_values_and_keys_are_scrubbed(redactor):
    out = run(redactor, event="booking", call_id="1795316401.6",
              patient={"mrn": "MRN1001", "dob": "1984-03-12", "phones": ["5551234567"]},
              attempts=3, ok=True, ratio=0.5, missing=None, when=date(1984, 3, 12))
    assert out["call_id"] == "1795316401.6"
    assert out["patient"] == {"mrn": REDACTED, "dob": REDACTED, "phones": [REDACTED]}
    assert (out["attempts"], out["ok"], out["ratio"], out["missing"]) == (3, True, 0.5, None)
    assert out["when"] == REDACTED


def test_structlog_private_keys_are_left_alone(redactor):
    record = object()
    out = run(redactor, event="x 5551234567", _record=record, _from_structlog=False)
    assert out["_record"] is record and out["event"] == f"x {REDACTED}"


def test_phi_marker_renders_redacted_everywhere():
    value = Phi("Ana Rivera")
    assert str(value) == repr(value) == f"{value}" == f"{value:>20}" == REDACTED
    assert "call %s: %s" % ("1.2", value) == f"call 1.2: {REDACTED}"
    assert value.value == "Ana Rivera"


def test_phi_values_are_learned_and_scrubbed_later_without_the_marker(redactor, registry):
    out = run(redactor, event="patient [redacted] verified", positional_args=(Phi("Ana Rivera"),))
    assert "positional_args" not in out
    later = run(redactor, event="heard: my name is ana rivera, RIVERA with one r")["event"]
    assert "ana" not in later.lower() and "rivera" not in later.lower(), later
    # a field holding the marker is redacted and learned too
    assert run(redactor, event="x", who=Phi("Jane Doe"))["who"] == REDACTED
    assert run(redactor, event="Doe again")["event"] == f"{REDACTED} again"


def test_remembered_values_of_a_call_go_when_it_ends(registry, redactor):
    registry.add(["Ana Rivera", date(1984, 3, 12), "+1 555 123 4567"], "1795316401.6")
    registry.add(["Bob Stone"], "1795316402.7")
    text = "Ana RIVERA said 1984 and 15551234567; Bob Stone waits"
    out = run(redactor, event=text)["event"]
    for secret in ("Ana", "RIVERA", "1984", "1555", "Bob", "Stone"):
        assert secret not in out, out
    registry.forget("1795316401.6")
    out = run(redactor, event="Ana Rivera; Bob Stone")["event"]
    assert out == f"Ana Rivera; {REDACTED}", out
    # a remembered word is matched whole: other words that contain it stay
    registry.add(["Ana Rivera"], "c")
    assert run(redactor, event="Anastasia called about a banana")["event"] == \
        "Anastasia called about a banana"


def test_the_registry_is_bounded(registry):
    for n in range(500):
        registry.add([f"name{n:04d}"], f"call{n}")
    assert len(registry) == registry.limit == 64
    pattern = registry.pattern()
    assert pattern.search("name0499") and not pattern.search("name0000")


@pytest.mark.parametrize("caller_id_name", ["caller", "Anonymous", "UNKNOWN", "Unavailable",
                                            "private"])
def test_a_caller_id_that_names_nobody_blanks_no_log_words(registry, redactor, caller_id_name):
    registry.add([caller_id_name, "5551234567"], "c")
    text = "call c: caller interrupted the agent; turn -> unknown"
    assert run(redactor, event=text)["event"] == text
    assert run(redactor, event="from 5551234567")["event"] == f"from {REDACTED}"


def test_a_phone_number_next_to_a_unit_word_is_still_redacted_when_it_is_one(redactor):
    # the unit must follow the number itself: a phone number then "ms" elsewhere goes
    out = run(redactor, event="caller 555 123 4567 waited 900 ms")["event"]
    assert "4567" not in out and "900 ms" in out, out


def test_short_and_empty_values_are_not_remembered(registry):
    registry.add(["", None, "Al", "  ", "12"], "c")
    assert len(registry) == 0 and registry.pattern() is None


def test_module_registry_remember_and_forget():
    before = redact.remembered()
    redact.remember("Zebulon Quux", call="test-call-1")
    try:
        assert redact.remembered() > before
        out = redact.processor()(None, "info", {"event": "hello Zebulon"})["event"]
        assert out == f"hello {REDACTED}"
    finally:
        redact.forget("test-call-1")
    assert redact.remembered() == before


def test_exception_tracebacks_are_scrubbed(redactor):
    def lookup(dob):
        raise ValueError(f"no patient born {dob} with MRN1001 at 555-123-4567")

    try:
        lookup("1984-03-12")
    except ValueError:
        event = {"event": "call 1795316401.6 failed", "exc_info": sys.exc_info()}
    event = structlog.processors.format_exc_info(None, "error", event)
    out = redactor(None, "error", event)
    assert "Traceback" in out["exception"] and "ValueError" in out["exception"]
    for secret in ("1984", "MRN1001", "555-123"):
        assert secret not in out["exception"], out["exception"]
    assert out["event"] == "call 1795316401.6 failed"


def test_a_custom_mrn_pattern(registry):
    r = Redactor(r"(?i)chart-\d{6}", registry=registry)
    assert run(r, event="CHART-123456 and chart-654321")["event"] == f"{REDACTED} and {REDACTED}"


def test_a_bad_mrn_pattern_is_a_clear_error():
    with pytest.raises(ValueError, match="MRN pattern"):
        Redactor("MRN(")


def test_an_event_that_cannot_be_cleaned_is_dropped_not_logged(redactor):
    class Hostile:
        def __str__(self):
            raise RuntimeError("Ana Rivera")

    out = run(redactor, event="patient Ana", who=Hostile(), _record="kept")
    assert out["event"].startswith(REDACTED) and "RuntimeError" in out["event"]
    assert "who" not in out and out["_record"] == "kept"
