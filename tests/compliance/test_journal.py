"""What the agent keeps of a call in the encrypted store, and the EHR outbox there.

A real SQLCipher store in a temporary directory; the call's side is driven
through CallJournal as the agent drives it (agent.py, conversation.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess

import pytest


from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.journal import CallJournal
from asterisk_agent.dialog.screen import Finding
from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.outbox import Outbox

from .conftest import make_wav


def test_a_call_is_kept_with_its_turns_screen_results_and_audit_records(store):
    async def a_call():
        journal = CallJournal(store)
        journal.call_started("1700000000.1", "5550101")
        journal.language("1700000000.1", "en")
        journal.turn("1700000000.1", "agent", "Hello, how can I help?")
        journal.turn("1700000000.1", "caller", "I have chest pain")
        journal.screened("1700000000.1", "general",
                         Finding(True, "chest_pain", "emergency", "chest pain", name="chest pain"))
        journal.turn("1700000000.1", "agent", "Please hang up and", interrupted=True)
        journal.call_ended("1700000000.1", "urgent, sent to the on-call")
        await journal.stop()  # the store stays open for the checks
    asyncio.run(a_call())

    (call,) = store.query("SELECT id, caller, language, outcome, ended > started FROM calls")
    assert call == ("1700000000.1", "5550101", "en", "urgent, sent to the on-call", 1)
    turns = store.query("SELECT speaker, transcript FROM turns WHERE call_id = ? ORDER BY id",
                        ("1700000000.1",))
    assert turns == [("agent", "Hello, how can I help?"), ("caller", "I have chest pain"),
                     ("agent", "Please hang up and [interrupted]")]
    ((specialty, urgent, result),) = store.query(
        "SELECT specialty, urgent, result FROM screen_results")
    assert (specialty, urgent, json.loads(result)["flag"]) == ("general", 1, "chest_pain")
    audit = AuditLog(store)
    assert [(r.event, r.call_id) for r in audit.records()] == [
        ("call.start", "1700000000.1"), ("call.end", "1700000000.1")]
    assert audit.records()[-1].detail == {"outcome": "urgent, sent to the on-call"}
    assert audit.verify() is None


def test_the_store_holds_no_plaintext(store):
    async def a_call():
        journal = CallJournal(store)
        journal.call_started("c1", "5550199")
        journal.turn("c1", "caller", "My name is Zebulon Quartermaine")
        await journal.close()
    asyncio.run(a_call())
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob("store.db*"))
    assert b"Zebulon" not in raw and b"5550199" not in raw


def test_a_failed_write_is_logged_and_the_call_goes_on(store, caplog):
    async def a_call():
        journal = CallJournal(store)
        # a turn for a call the store never heard of: the foreign key refuses it
        journal.turn("no-such-call", "caller", "Zebulon")
        journal.call_started("c2", "")
        await journal.stop()
    asyncio.run(a_call())
    assert "no-such-call: a caller turn not written to the store" in caplog.text
    assert "Zebulon" not in caplog.text
    assert store.query("SELECT id FROM calls") == [("c2",)]


def _booking(i: int) -> str:
    a = m.Appointment(f"P-{i}", m.Patient("MRN1001", "Rivera", "Ana"), "DRLEE",
                      dt.datetime(2030, 1, 7, 9) + dt.timedelta(minutes=20 * i), 20)
    return m.book(m.header(m.Facility()), a)


def test_the_outbox_in_the_store_audits_each_message(store):
    box = Outbox(store=store)
    a = box.put(_booking(0), "MRN1001")
    b = box.put(_booking(1), "MRN1001")
    box.delivered(a)
    box.failed(b, "slot taken")
    assert [(e.control_id, e.state) for e in box.entries()] == [(b.control_id, "failed")]
    records = AuditLog(store).records()
    assert [(r.event, r.patient, r.detail["event"]) for r in records] == [
        ("ehr.message", "MRN1001", "queued"), ("ehr.message", "MRN1001", "queued"),
        ("ehr.message", "MRN1001", "accepted"), ("ehr.message", "MRN1001", "refused")]
    assert records[2].detail["control_id"] == a.control_id
    box.close()  # the store is not the outbox's to close
    assert store.query("SELECT count(*) FROM outbox") == [(1,)]


def test_a_plain_outbox_file_is_moved_into_the_store_and_removed(store, tmp_path):
    plain = Outbox(tmp_path / "ehr-outbox.sqlite3")
    kept = [plain.put(_booking(i), "MRN1001") for i in range(3)]
    plain.failed(kept[0], "slot taken")
    plain.close()
    box = Outbox(store=store)
    assert box.adopt(tmp_path / "ehr-outbox.sqlite3") == 3
    assert not list(tmp_path.glob("ehr-outbox.sqlite3*"))
    assert [(e.control_id, e.state, e.error) for e in box.entries()] == [
        (kept[0].control_id, "failed", "slot taken"),
        (kept[1].control_id, "pending", ""), (kept[2].control_id, "pending", "")]
    assert AuditLog(store).records()[-1].detail["count"] == 3


def test_a_finished_recording_is_taken_in_and_the_live_one_left(store, tmp_path):
    spool = tmp_path / "monitor"
    spool.mkdir()
    for call_id in ("c-done", "c-live"):
        make_wav(spool / f"{call_id}.wav", seconds=3.0)

    async def look():
        journal = CallJournal(store)
        journal.call_started("c-done", "")
        done = await journal.take_recordings(spool, live={"c-live"})
        await journal.stop()
        return done
    done = asyncio.run(look())
    assert [(r.call_id, round(r.seconds)) for r in done.imported] == [("c-done", 3)]
    assert sorted(p.name for p in spool.iterdir()) == ["c-live.wav"]
    assert store.query("SELECT call_id FROM recordings") == [("c-done",)]
    assert [r.event for r in AuditLog(store).records()] == ["call.start", "recording.import"]


def test_a_changed_config_file_is_an_audit_record_at_start(store, tmp_path):
    conf, practice = tmp_path / "agent.conf", tmp_path / "practice.conf"
    conf.write_text("[general]\n")
    practice.write_text("[practice]\nname = A\n")
    journal = CallJournal(store)
    files = {"config": conf, "practice": practice}
    assert journal.config_files(files) == ["config", "practice"]  # the first start
    assert journal.config_files(files) == []                      # nothing changed
    practice.write_text("[practice]\nname = B\n")
    assert journal.config_files(files) == ["practice"]
    records = [r for r in AuditLog(store).records() if r.event == "config.change"]
    assert [r.detail["changed"] for r in records] == [["config", "practice"], ["practice"]]
    asyncio.run(journal.stop())


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 2 MiB (tmpfs, mounted here), to fill up."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small file system needs root (tools/test runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_loses_no_record_already_written_and_says_so(small_disk, tmp_path, caplog):
    from asterisk_agent.compliance.store import open_store, write_key_file

    key = tmp_path / "store.key"
    write_key_file(key)
    store = open_store(small_disk / "store.db", key)

    async def calls():
        journal = CallJournal(store)
        journal.call_started("kept", "")
        journal.turn("kept", "caller", "before the disk filled")
        await journal.flush()
        # then turns until the file system is full: each failure is logged, the call goes on
        for i in range(4000):
            journal.turn("kept", "caller", os.urandom(512).hex())
        journal.call_ended("kept", "hangup")
        await journal.stop()
    asyncio.run(calls())
    assert "not written to the store: database or disk is full" in caplog.text
    store.close()
    # opened again on the still-full disk: everything written before is there,
    # and each failed write was rolled back whole, its audit record with it
    with open_store(small_disk / "store.db", key) as again:
        assert again.query("SELECT transcript FROM turns WHERE call_id = 'kept' ORDER BY id "
                           "LIMIT 1") == [("before the disk filled",)]
        assert AuditLog(again).verify() is None
