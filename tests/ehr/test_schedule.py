"""The local schedule from the SIU feed: the real simulator pushing to the real listener."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.link import EhrLink, new_placer_id
from asterisk_agent.ehr.mllp import LinkSettings, MllpClient
from asterisk_agent.ehr.schedule import FeedListener, Schedule, free_slots, load_hours

from .conftest import SEED, free_port
from .test_link import ANA, MONDAY, make_config

HOURS = load_hours(SEED)
NINE_TO_TEN = (MONDAY, MONDAY + dt.timedelta(hours=1))
EHR = m.Facility("EHR", "PRACTICE", "ASTERISK-AGENT", "PRACTICE")


def siu(event: str, a: m.Appointment, control_id: str | None = None) -> str:
    return m.siu(m.header(EHR, control_id), event, a)


def appointment(start: dt.datetime = MONDAY) -> m.Appointment:
    return m.Appointment(new_placer_id(), ANA, "DRLEE", start, 20, "", "F1")


async def eventually(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def starts(schedule: Schedule) -> list[dt.datetime]:
    return [s.start for s in schedule.open_slots(*NINE_TO_TEN, "DRLEE")]


def test_free_slots_are_hours_minus_bookings():
    booked = [m.Appointment("A", ANA, "DRLEE", MONDAY.replace(hour=9, minute=20), 20)]
    assert [s.start.minute for s in free_slots(HOURS, booked, *NINE_TO_TEN, "DRLEE")] == [0, 40]
    monday_all = free_slots(HOURS, [], MONDAY.replace(hour=8), MONDAY.replace(hour=9))
    assert {s.provider_id for s in monday_all} == {"DRPATEL"}  # DRLEE starts at 9
    tuesday = MONDAY + dt.timedelta(days=1, hours=1)
    assert {s.provider_id for s in free_slots(HOURS, [], tuesday, tuesday.replace(hour=11),
                                              kind="sick")} == {"DRLEE", "NPGARCIA"}


def test_a_repeated_control_id_is_applied_once_and_state_survives(tmp_path):
    schedule = Schedule(tmp_path / "s.db", HOURS)
    a = appointment()
    assert schedule.apply("C1", "S12", a)
    assert not schedule.apply("C1", "S12", a)
    assert MONDAY not in starts(schedule)
    schedule.close()
    again = Schedule(tmp_path / "s.db", HOURS)
    assert again.seen("C1") and MONDAY not in starts(again)
    assert again.apply("C2", "S15", a) and MONDAY in starts(again)


async def test_the_listener_acks_dedups_and_rejects_bad_input(tmp_path):
    schedule = Schedule(tmp_path / "s.db", HOURS)
    listener = FeedListener(schedule)
    a = appointment()
    text = siu("S12", a)
    assert m.read_ack(m.parse(await listener.handle(text))).code == "AA"
    assert m.read_ack(m.parse(await listener.handle(text))).code == "AA"  # a retry
    assert len(schedule.appointments()) == 1
    not_siu = m.book(m.header(EHR), a)
    assert m.read_ack(m.parse(await listener.handle(not_siu))).code == "AR"
    broken = text.replace("\rRGS|1", "")  # no resources group: hl7apy refuses it
    ack = m.read_ack(m.parse(await listener.handle(broken.replace(m.control_id(m.parse(text)),
                                                                  "X1"))))
    assert ack.code == "AR" and ack.error
    assert await listener.handle("garbage") is None
    assert len(schedule.appointments()) == 1 and not schedule.seen("X1")


async def test_bookings_through_the_sim_reach_the_local_schedule(start_sim, tmp_path):
    feed_port = free_port()
    sim = start_sim("--journal", str(tmp_path / "journal.jsonl"),
                    "--feed", f"127.0.0.1:{feed_port}")
    cfg = make_config(tmp_path, sim.port, slots_from="feed", feed_port=feed_port,
                      provider_hours_file=SEED)
    link = EhrLink(cfg)
    await link.start()
    try:
        assert MONDAY in [s.start for s in await link.open_slots(*NINE_TO_TEN, "DRLEE")]
        booked = m.Appointment(new_placer_id(), ANA, "DRLEE", MONDAY, 20)
        assert (await link.book(booked)).confirmed
        await eventually(lambda: MONDAY not in starts(link.schedule))
        assert MONDAY not in [s.start for s in await link.open_slots(*NINE_TO_TEN, "DRLEE")]
        [kept] = link.schedule.appointments()
        assert (kept.placer_id, kept.patient.id, kept.patient.family) == (booked.placer_id,
                                                                          "MRN1001", "")
    finally:
        await link.close()

    # the listener is down: the engine keeps the feed and sends it when it is back
    moved = m.Appointment(booked.placer_id, ANA, "DRLEE", MONDAY.replace(minute=40), 20)
    async with EhrLink(make_config(tmp_path, sim.port)) as plain:  # no listener
        assert (await plain.reschedule(moved)).confirmed
    schedule = Schedule(cfg.general.state_dir / cfg.ehr.schedule_file, HOURS)
    assert MONDAY not in starts(schedule)  # restarted: the state was kept
    listener = FeedListener(schedule, port=feed_port)
    await listener.start()
    try:
        await eventually(lambda: starts(schedule) == [MONDAY, MONDAY.replace(minute=20)])
        # a change made at the engine (injected as an SIU) reaches the schedule too
        async with MllpClient(LinkSettings("127.0.0.1", sim.port)) as client:
            assert (await client.send(siu("S15", moved))).code == "AA"
        await eventually(lambda: schedule.appointments() == [])
        assert MONDAY.replace(minute=40) in starts(schedule)
    finally:
        await listener.close()
        schedule.close()
