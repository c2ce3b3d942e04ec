"""Store and forward: nothing lost, nothing applied twice, in order per patient."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.mllp import LinkSettings
from asterisk_agent.ehr.outbox import Forwarder, Outbox

from .conftest import ROOT, SimProcess, free_port

FACILITY = m.Facility()
PATIENTS = ["MRN1001", "MRN1002", "MRN1003", "MRN1004", "MRN1005"]


def booking(i: int, patient: str = "MRN1001") -> str:
    week, slot = divmod(i, 24 * 5)
    day, slot = divmod(slot, 24)
    start = dt.datetime(2030, 1, 7) + dt.timedelta(weeks=week, days=day, hours=9,
                                                    minutes=20 * slot)
    a = m.Appointment(f"P-{i:04d}", m.Patient(patient, "X", "Y"), "DRLEE", start, 20)
    return m.book(m.header(FACILITY), a)


def test_a_queued_message_survives_reopening(tmp_path):
    box = Outbox(tmp_path / "o.db")
    first = box.put(booking(0), "MRN1001")
    box.put(booking(1), "MRN1001")
    box.put(booking(2), "MRN1002")
    box.close()
    box = Outbox(tmp_path / "o.db")
    assert [e.control_id for e in box.heads()] == [first.control_id,
                                                   box.entries()[2].control_id]
    assert len(box.entries("pending")) == 3


def test_putting_the_same_control_id_twice_keeps_one(tmp_path):
    box = Outbox(tmp_path / "o.db")
    text = booking(0)
    assert box.put(text, "MRN1001").id == box.put(text, "MRN1001").id
    assert len(box.entries()) == 1


def test_a_failed_message_steps_aside_for_the_next(tmp_path):
    box = Outbox(tmp_path / "o.db")
    a, b = box.put(booking(0), "MRN1001"), box.put(booking(1), "MRN1001")
    box.failed(a, "slot taken")
    assert [e.id for e in box.heads()] == [b.id]
    assert [(e.state, e.error) for e in box.entries("failed")] == [("failed", "slot taken")]


async def test_submit_says_delivered_only_after_aa(start_sim, tmp_path):
    import asyncio

    sim = start_sim("--journal", str(tmp_path / "j.jsonl"))
    box = Outbox(tmp_path / "o.db")
    link = LinkSettings("127.0.0.1", sim.port, reconnect_min=0.05, reconnect_max=0.2,
                        ack_timeout=2)
    forwarder = Forwarder(box, link, idle_poll=0.1)
    task = asyncio.create_task(forwarder.run())
    try:
        ok = await forwarder.submit(booking(0), "MRN1001", wait=5)
        assert ok.confirmed and ok.ack.code == "AA"
        taken = await forwarder.submit(booking(0).replace("P-0000", "P-9999")
                                       .replace(m.control_id(m.parse(booking(0))), "X"),
                                       "MRN1001", wait=5)
        assert not taken.confirmed and "not available" in taken.error
        sim.kill()
        queued = await forwarder.submit(booking(1), "MRN1001", wait=0.5)
        assert queued.recorded and box.heads()[0].control_id == queued.control_id
        start_sim("--journal", str(tmp_path / "j.jsonl"), port=sim.port)
        for _ in range(100):
            if not box.heads():
                break
            await asyncio.sleep(0.05)
        assert box.heads() == []
        assert [e.state for e in box.entries()] == ["failed"]
    finally:
        task.cancel()


def test_200_bookings_survive_killing_the_engine_and_the_sender(tmp_path):
    """Kills the engine and the sender (SIGKILL) at random points while 200 bookings go out."""
    rng = random.Random(4)
    box = Outbox(tmp_path / "outbox.db")
    expected = defaultdict(list)
    for i in range(200):
        patient = PATIENTS[i % len(PATIENTS)]
        box.put(booking(i, patient), patient)
        expected[patient].append(f"P-{i:04d}")
    box.close()
    journal = tmp_path / "journal.jsonl"
    port = free_port()
    sim = SimProcess(tmp_path / "sim.log", "--journal", str(journal), port=port).start()
    sender_log = open(tmp_path / "sender.log", "a")

    def start_sender():
        return subprocess.Popen(
            [sys.executable, "-m", "asterisk_agent.ehr.cli", "send", "--outbox",
             str(tmp_path / "outbox.db"), "--port", str(port), "--timeout", "2"],
            cwd=ROOT, stdout=sender_log, stderr=sender_log, start_new_session=True)

    sender, kills, deadline = start_sender(), Counter(), time.monotonic() + 75
    try:
        while sender.poll() is None or sender.returncode != 0:
            assert time.monotonic() < deadline, f"not drained; kills {dict(kills)}"
            if sender.poll() is not None:  # exited non-zero: start it again
                sender = start_sender()
            time.sleep(rng.uniform(0.2, 0.8))
            if sender.poll() is not None:
                continue
            if rng.random() < 0.5:
                os.killpg(sender.pid, signal.SIGKILL)
                sender.wait()
                kills["sender"] += 1
                sender = start_sender()
            else:
                sim.kill()
                kills["engine"] += 1
                time.sleep(rng.uniform(0, 0.3))
                sim.start()
    finally:
        if sender.poll() is None:
            os.killpg(sender.pid, signal.SIGKILL)
        sim.stop()
    assert kills["sender"] + kills["engine"] >= 4, kills
    assert Outbox(tmp_path / "outbox.db").entries() == []
    entries = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    control_ids = [e["control_id"] for e in entries]
    assert len(control_ids) == len(set(control_ids)) == 200  # each applied exactly once
    applied = defaultdict(list)
    for e in entries:
        a = m.read_booking(m.parse(e["message"]))
        applied[a.patient.id].append(a.placer_id)
    assert applied == expected  # all there, in order per patient
    print(f"fault test: kills {dict(kills)}")
