"""EhrLink, the facade the call flows use, against the real simulated engine (tools/ehr-sim)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import replace

import pytest

from asterisk_agent import config
from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.link import EhrLink, LinkError, new_placer_id
from asterisk_agent.ehr.outbox import Outbox

from .conftest import free_port

ANA = m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12))
DANIEL = m.Patient("MRN1002", "Okafor", "Daniel", dt.date(1979, 11, 30))
MONDAY = dt.datetime(2030, 1, 7, 9, 0)   # DRLEE 09-17, DRPATEL 08-12
TUESDAY = dt.datetime(2030, 1, 8, 9, 0)  # DRLEE 09-17, NPGARCIA 10-16


def make_config(tmp_path, port: int, **ehr) -> config.Config:
    settings = {"port": port, "connect_timeout": 1, "ack_timeout": 2, "query_timeout": 2,
                "confirm_wait": 3, **ehr}
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return config.parse(f"[general]\nstate_dir = {tmp_path / 'state'}\n[ehr]\n{lines}\n",
                        tmp_path / "asterisk-agent.conf")


def appointment(patient: m.Patient = ANA, start: dt.datetime = MONDAY,
                provider: str = "DRLEE") -> m.Appointment:
    return m.Appointment(new_placer_id(), patient, provider, start, 20, "check-up")


def journal_kinds(path) -> list[str]:
    return [m.message_type(m.parse(json.loads(line)["message"]))
            for line in path.read_text().splitlines()]


async def eventually(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_lookups_find_the_patient_slots_and_medications(ehr_sim, tmp_path):
    async with EhrLink(make_config(tmp_path, ehr_sim.port)) as link:
        found = await link.find_patient("Rivera", "Ana", dt.date(1984, 3, 12))
        assert [p.id for p in found] == ["MRN1001"]
        assert {p.id for p in await link.find_patient("rivera", "ana", None)} == {"MRN1001",
                                                                                  "MRN1003"}
        assert await link.find_patient("Nobody", "Here", dt.date(2000, 1, 1)) == []
        # by medical record number (an outbound call's patient)
        chart = await link.patient("MRN1003")
        assert (chart.given, chart.family, chart.birth_date) == ("Ana", "Rivera",
                                                                 dt.date(1991, 7, 4))
        assert await link.patient("MRN9999") is None

        one = await link.open_slots(MONDAY, MONDAY + dt.timedelta(hours=1), "DRLEE")
        assert [(s.start.time(), s.provider_id) for s in one] == [
            (dt.time(9, 0), "DRLEE"), (dt.time(9, 20), "DRLEE"), (dt.time(9, 40), "DRLEE")]
        every = await link.open_slots(TUESDAY.replace(hour=10), TUESDAY.replace(hour=11))
        assert {s.provider_id for s in every} == {"DRLEE", "NPGARCIA"}
        assert [s.start for s in every] == sorted(s.start for s in every)
        checkup = await link.open_slots(TUESDAY.replace(hour=10), TUESDAY.replace(hour=11),
                                        kind="checkup")
        assert {s.provider_id for s in checkup} == {"DRLEE"}  # NPGARCIA sees no check-ups

        meds = await link.active_medications("MRN1001")
        assert [x.name for x in meds] == ["Lisinopril 10 mg tablet", "Atorvastatin 20 mg tablet"]
        assert await link.active_medications("MRN1003") == []
        assert await link.upcoming_appointments("MRN1001", now=MONDAY) == []


async def test_book_move_cancel_refill_and_message_are_confirmed(ehr_sim, tmp_path):
    async with EhrLink(make_config(tmp_path, ehr_sim.port)) as link:
        a = appointment()
        booked = await link.book(a)
        assert booked.confirmed and booked.error == "" and booked.control_id
        upcoming = await link.upcoming_appointments("MRN1001", now=MONDAY - dt.timedelta(days=1))
        assert [(x.placer_id, x.start, x.provider_id) for x in upcoming] == [
            (a.placer_id, MONDAY, "DRLEE")]
        assert upcoming[0].filler_id  # the EHR's own ID, for the flow to quote
        slots = await link.open_slots(MONDAY, MONDAY + dt.timedelta(hours=1), "DRLEE")
        assert MONDAY not in [s.start for s in slots]

        moved = replace(upcoming[0], start=MONDAY.replace(hour=11))
        assert (await link.reschedule(moved)).confirmed
        assert [x.start for x in await link.upcoming_appointments("MRN1001", now=MONDAY)] == [
            moved.start]
        assert (await link.cancel(moved)).confirmed
        assert await link.upcoming_appointments("MRN1001", now=MONDAY) == []

        refill = m.Refill(new_placer_id(), ANA, "DRLEE", "Lisinopril 10 mg tablet", "out in 2 days")
        assert (await link.request_refill(refill)).confirmed
        assert (await link.leave_message(ANA, "Please call me back | after 5 ^ pm")).confirmed
        answers = [m.Answer("PAIN", "Pain score 1-5", "2", numeric=True),
                   m.Answer("CONCERN", "Concerns or questions", "the dressing | itches")]
        assert (await link.check_in(ANA, answers)).confirmed
        assert await asyncio.to_thread(link.outbox.entries) == []
    assert journal_kinds(tmp_path / "journal.jsonl") == [
        "SRM^S01", "SRM^S03", "SRM^S04", "OMP^O09", "MDM^T02", "ORU^R01"]


async def test_a_taken_slot_comes_back_with_the_engine_reason(ehr_sim, tmp_path):
    async with EhrLink(make_config(tmp_path, ehr_sim.port)) as link:
        assert (await link.book(appointment(ANA))).confirmed
        taken = await link.book(appointment(DANIEL))
        assert not taken.confirmed and not taken.recorded
        assert "not available" in taken.error
        failed = await asyncio.to_thread(link.outbox.entries, "failed")
        assert [e.control_id for e in failed] == [taken.control_id]
        # the flow offers another slot, and that one books
        assert (await link.book(appointment(DANIEL, MONDAY.replace(hour=10)))).confirmed


async def test_engine_down_the_booking_is_recorded_then_delivered(start_sim, tmp_path):
    journal = str(tmp_path / "journal.jsonl")
    sim = start_sim("--journal", journal)
    cfg = make_config(tmp_path, sim.port, confirm_wait=1)
    link = EhrLink(cfg)
    await link.start()
    try:
        sim.kill()
        started = time.monotonic()
        outcome = await link.book(appointment())
        assert time.monotonic() - started < 2.5  # at most confirm_wait, not the ACK timeout
        assert (outcome.confirmed, outcome.error, outcome.recorded) == (False, "", True)
        pending = await asyncio.to_thread(link.outbox.entries, "pending")
        assert [e.control_id for e in pending] == [outcome.control_id]
    finally:
        await link.close()  # the agent stops with the message still queued
    assert [e.control_id for e in Outbox(cfg.ehr_outbox_path).entries()] == [outcome.control_id]

    start_sim("--journal", journal, port=sim.port)
    async with EhrLink(cfg) as again:  # a restarted agent delivers what was queued
        await eventually(lambda: again.outbox.entries() == [])
    assert journal_kinds(tmp_path / "journal.jsonl") == ["SRM^S01"]


async def test_a_stalled_patient_does_not_hold_back_another(start_sim, tmp_path):
    """The engine never answers about MRN1002; MRN1001's booking still confirms at once."""
    sim = start_sim("--journal", str(tmp_path / "journal.jsonl"), "--stall-patient", "MRN1002")
    cfg = make_config(tmp_path, sim.port, confirm_wait=1, ack_timeout=1)
    async with EhrLink(cfg) as link:
        stalled = await link.book(appointment(DANIEL, MONDAY.replace(hour=12)))
        assert stalled.recorded
        # a second message for the stalled patient waits behind the first (order per patient)
        second = await link.leave_message(DANIEL, "running late")
        assert second.recorded
        started = time.monotonic()
        ok = await link.book(appointment(ANA))
        assert ok.confirmed and time.monotonic() - started < 1.0
        assert (await link.request_refill(m.Refill(new_placer_id(), ANA, "DRLEE",
                                                   "Lisinopril 10 mg tablet"))).confirmed
        pending = await asyncio.to_thread(link.outbox.entries, "pending")
        assert [e.control_id for e in pending] == [stalled.control_id, second.control_id]
        assert pending[0].attempts >= 1 and pending[1].attempts == 0


async def test_a_lookup_without_an_engine_is_a_link_error(tmp_path):
    async with EhrLink(make_config(tmp_path, free_port())) as link:
        started = time.monotonic()
        with pytest.raises(LinkError, match="cannot connect"):
            await link.find_patient("Rivera", "Ana", None)
        with pytest.raises(LinkError):
            await link.open_slots(MONDAY, MONDAY + dt.timedelta(hours=1))
        assert time.monotonic() - started < 3.0


async def test_a_lookup_survives_the_engine_restarting(start_sim, tmp_path):
    sim = start_sim()
    async with EhrLink(make_config(tmp_path, sim.port)) as link:
        assert await link.find_patient("Okafor", "Daniel", None)
        sim.stop()
        start_sim(port=sim.port)
        # the idle connection is dead; the lookup reconnects once on its own
        assert [p.id for p in await link.find_patient("Okafor", "Daniel", None)] == ["MRN1002"]


def test_feed_mode_needs_provider_hours(tmp_path):
    cfg = make_config(tmp_path, free_port(), slots_from="feed")

    async def start():
        link = EhrLink(cfg)
        try:
            await link.start()
        finally:
            await link.close()

    with pytest.raises(ValueError, match="provider_hours_file"):
        asyncio.run(start())
