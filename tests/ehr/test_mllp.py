"""The MLLP client (mllp.py) against the real simulated engine (tools/ehr-sim) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import time

import pytest

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.mllp import LinkError, LinkSettings, MllpClient, Rejected, client_tls
from certs import make_ca

FACILITY = m.Facility()
ANA = m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12))
MONDAY = dt.datetime(2030, 1, 7, 9, 0)  # a Monday: DRLEE works 09:00-17:00


def settings(port: int, **kw) -> LinkSettings:
    return LinkSettings("127.0.0.1", port, connect_timeout=2.0, ack_timeout=3.0,
                        reconnect_min=0.05, reconnect_max=0.5, **kw)


def appt(placer: str, start: dt.datetime = MONDAY, patient: m.Patient = ANA) -> m.Appointment:
    return m.Appointment(placer, patient, "DRLEE", start, 20, "check-up")


async def test_find_book_move_cancel_and_refill(ehr_sim, tmp_path):
    async with MllpClient(settings(ehr_sim.port)) as link:
        found = await link.send(m.find_patient(m.header(FACILITY), "Rivera", "Ana",
                                               dt.date(1984, 3, 12)))
        assert found.code == "AA"
        assert [p.id for p in m.read_candidates(found.message)] == ["MRN1001"]
        both = await link.send(m.find_patient(m.header(FACILITY), "rivera", "ana", None))
        assert {p.id for p in m.read_candidates(both.message)} == {"MRN1001", "MRN1003"}

        def slots_query():
            return m.open_slots(m.header(FACILITY), "DRLEE", MONDAY, MONDAY + dt.timedelta(hours=2))

        before = m.read_slots((await link.send(slots_query())).message)
        assert MONDAY in [s.start for s in before]

        booked = await link.deliver(m.book(m.header(FACILITY), appt("A-1")))
        assert m.read_booking(booked.message).filler_id
        after = m.read_slots((await link.send(slots_query())).message)
        assert MONDAY not in [s.start for s in after]

        moved = MONDAY + dt.timedelta(hours=1)
        await link.deliver(m.reschedule(m.header(FACILITY), appt("A-1", moved)))
        now = [s.start for s in m.read_slots((await link.send(slots_query())).message)]
        assert MONDAY in now and moved not in now

        await link.deliver(m.cancel(m.header(FACILITY), appt("A-1", moved)))
        now = [s.start for s in m.read_slots((await link.send(slots_query())).message)]
        assert moved in now

        await link.deliver(m.refill(m.header(FACILITY),
                                    m.Refill("R-1", ANA, "DRLEE", "Lisinopril 10 mg tablet")))
    kinds = [m.message_type(m.parse(json.loads(line)["message"]))
             for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert kinds == ["SRM^S01", "SRM^S03", "SRM^S04", "OMP^O09"]


async def test_taken_slot_is_a_permanent_rejection_with_the_engine_text(ehr_sim):
    async with MllpClient(settings(ehr_sim.port)) as link:
        await link.deliver(m.book(m.header(FACILITY), appt("A-1")))
        with pytest.raises(Rejected) as info:
            await link.deliver(m.book(m.header(FACILITY), appt("A-2")))
        assert info.value.ack.code == "AR" and "not available" in info.value.ack.error
        with pytest.raises(Rejected, match="unknown patient"):
            await link.deliver(m.book(m.header(FACILITY),
                                      appt("A-3", patient=m.Patient("NOPE", "X", "Y"))))


async def test_a_retry_with_the_same_control_id_is_not_applied_twice(ehr_sim):
    text = m.book(m.header(FACILITY), appt("A-1"))
    async with MllpClient(settings(ehr_sim.port)) as link:
        first = await link.send(text)
        again = await link.send(text)
    assert first.code == again.code == "AA"
    assert str(first.message) == str(again.message)


async def test_ae_is_retried_per_policy(start_sim):
    sim = start_sim("--errors-before-accept", "2")
    async with MllpClient(settings(sim.port, error_retries=3)) as link:
        assert (await link.deliver(m.book(m.header(FACILITY), appt("A-1")))).code == "AA"
    async with MllpClient(settings(sim.port, error_retries=1)) as link:
        with pytest.raises(Rejected) as info:
            await link.deliver(m.book(m.header(FACILITY), appt("A-2", MONDAY.replace(hour=10))))
        assert info.value.ack.code == "AE" and "busy" in info.value.ack.error


async def test_nothing_listening_is_a_link_error_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(LinkError):
        await MllpClient(settings(port)).deliver(m.book(m.header(FACILITY), appt("A")), attempts=3)
    assert time.monotonic() - start < 2.0


async def test_silent_engine_hits_the_ack_timeout():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MllpClient(LinkSettings("127.0.0.1", port, ack_timeout=0.3))
    start = time.monotonic()
    with pytest.raises(LinkError, match="no answer"):
        await link.send(m.book(m.header(FACILITY), appt("A")))
    assert time.monotonic() - start < 1.5
    server.close()


async def test_answers_for_unknown_control_ids_and_garbage_are_skipped():
    """A tiny in-test engine, since the simulator never misbehaves this way on purpose."""
    async def misbehave(reader, writer):
        data = await reader.readuntil(b"\x1c\r")
        received = m.parse(data[1:-2].decode())
        other = m.parse(m.book(m.header(FACILITY), appt("other")))
        writer.write(b"junk before a frame\x1c\r")
        writer.write(b"\x0b" + m.ack(other, m.header(FACILITY)).encode() + b"\x1c\r")
        writer.write(b"\x0bnot hl7 at all\x1c\r")
        writer.write(b"\x0b\xff\xfe\x1c\r")
        writer.write(b"\x0b" + m.ack(received, m.header(FACILITY)).encode() + b"\x1c\r")
        await writer.drain()

    server = await asyncio.start_server(misbehave, "127.0.0.1", 0)
    async with MllpClient(settings(server.sockets[0].getsockname()[1])) as link:
        text = m.book(m.header(FACILITY), appt("A"))
        ack = await link.send(text)
    assert (ack.code, ack.control_id) == ("AA", m.control_id(m.parse(text)))
    server.close()


async def test_reconnects_after_the_engine_restarts(start_sim, tmp_path):
    journal = str(tmp_path / "j.jsonl")
    sim = start_sim("--journal", journal)
    link = MllpClient(settings(sim.port))
    await link.deliver(m.book(m.header(FACILITY), appt("A-1")))
    sim.kill()
    restarted = asyncio.create_task(link.deliver(
        m.book(m.header(FACILITY), appt("A-2", MONDAY.replace(hour=11)))))
    await asyncio.sleep(0.3)
    start_sim("--journal", journal, port=sim.port)
    assert (await asyncio.wait_for(restarted, 10)).code == "AA"
    await link.close()


async def test_bad_input_never_stops_the_engine(ehr_sim):
    def frame(payload: bytes) -> bytes:
        return b"\x0b" + payload + b"\x1c\r"

    reader, writer = await asyncio.open_connection("127.0.0.1", ehr_sim.port)
    good = m.book(m.header(FACILITY), appt("A-1"))
    writer.write(b"\x00\x01garbage\x1c\r")                         # outside any frame
    writer.write(frame(b"PID|1||no msh"))                          # no MSH
    writer.write(frame("MSH|^~\\&|A|B|C|D|x||ZZZ^Z99|c1|P|2.5.1".encode()))  # invalid
    writer.write(frame(good.replace("Rivera", "Rivéra").encode("latin-1")))  # not UTF-8
    writer.write(frame(good.encode()))
    await writer.drain()
    answers = []
    for _ in range(3):
        block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
        answers.append(m.read_ack(m.parse(block[1:-2].decode())))
    assert [a.code for a in answers] == ["AR", "AR", "AA"]
    assert "UTF-8" in answers[1].error.upper() or "utf-8" in answers[1].error
    writer.write(b"\x0bMSH|^~\\&|truncated")  # a frame cut off by the peer closing
    writer.close()
    # a huge frame resets that connection only
    r2, w2 = await asyncio.open_connection("127.0.0.1", ehr_sim.port)
    w2.write(b"\x0b" + b"X" * (2 << 20) + b"\x1c\r")
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await w2.drain()
        await asyncio.wait_for(r2.readuntil(b"\x1c\r"), 5)
    w2.close()
    async with MllpClient(settings(ehr_sim.port)) as link:
        assert (await link.send(m.find_patient(m.header(FACILITY), "Rivera", "Ana", None))).code == "AA"
    assert ehr_sim.alive()


async def test_mutual_tls(start_sim, tmp_path):
    d = make_ca(tmp_path)
    sim = start_sim("--tls-cert", str(d / "server.pem"), "--tls-key", str(d / "server.key"),
                    "--tls-client-ca", str(d / "ca.pem"))
    query = m.find_patient(m.header(FACILITY), "Rivera", "Ana", None)
    good = client_tls(d / "ca.pem", d / "client.pem", d / "client.key")
    async with MllpClient(settings(sim.port, tls=good)) as link:
        assert (await link.send(query)).code == "AA"
    # an engine whose certificate our CA did not sign is refused
    with pytest.raises(LinkError):
        await MllpClient(settings(sim.port, tls=client_tls(d / "other.pem"))).send(query)
    # without a client certificate the engine refuses us
    with pytest.raises(LinkError):
        await MllpClient(settings(sim.port, tls=client_tls(d / "ca.pem"))).send(query)
    assert sim.alive()


async def test_many_bookings_on_one_connection(ehr_sim):
    """Bookings back to back on one connection are each answered, in order.

    (Their round-trip time is measured by tools/bench, part "ehr".)"""
    async with MllpClient(settings(ehr_sim.port)) as link:
        await link.connect()
        for i in range(60):
            start = MONDAY + dt.timedelta(days=7 * (i // 24), minutes=20 * (i % 24))
            ack = await link.send(m.book(m.header(FACILITY), appt(f"B-{i}", start)))
            assert ack.code == "AA", ack.error
