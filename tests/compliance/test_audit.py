"""The audit trail: pure chaining, append-only rows, and a verification that names
the first edited, deleted, inserted or reordered record."""

from __future__ import annotations

import dataclasses

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from asterisk_agent.compliance import audit as au
from asterisk_agent.compliance.audit import AuditLog, Record, next_record, verify_chain
from asterisk_agent.compliance.store import open_store, read_key_file, write_key_file

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


# --- pure chaining ----------------------------------------------------------------
def chain(n: int) -> list[Record]:
    records, seq, prev = [], 0, au.GENESIS
    for i in range(n):
        r = next_record(seq, prev, au.timestamp(T0 + i), "call.start", "agent",
                        call_id=f"c{i}", detail={"n": i})
        records.append(r)
        seq, prev = r.seq, r.hash
    return records


def test_canonical_content_is_sorted_compact_utf8():
    assert au.canonical({"b": 1, "a": {"d": "é", "c": None}}) == \
        '{"a":{"c":null,"d":"é"},"b":1}'.encode()
    assert au.canonical({"a": 1, "b": 2}) == au.canonical({"b": 2, "a": 1})


def test_each_hash_covers_the_previous_hash_and_the_content():
    first, second = chain(2)
    assert first.prev == au.GENESIS and second.prev == first.hash and second.seq == 2
    assert au.chain_hash(first.hash, second.content()) == second.hash
    assert au.chain_hash(au.GENESIS, second.content()) != second.hash
    assert au.chain_hash(first.hash, {**second.content(), "actor": "x"}) != second.hash


def test_a_record_needs_a_known_event_an_actor_and_plain_json():
    with pytest.raises(ValueError, match="unknown audit event 'call.begin'"):
        next_record(0, au.GENESIS, au.timestamp(T0), "call.begin", "agent")
    with pytest.raises(ValueError, match="actor"):
        next_record(0, au.GENESIS, au.timestamp(T0), "call.start", "")
    with pytest.raises(TypeError):
        next_record(0, au.GENESIS, au.timestamp(T0), "call.start", "agent", detail={"x": object()})


def test_an_intact_chain_verifies():
    records = chain(5)
    assert verify_chain(records, 5, records[-1].hash) is None
    assert verify_chain([], 0, au.GENESIS) is None


def test_pure_verification_names_the_first_bad_record():
    r = chain(6)
    edited = r[:2] + [dataclasses.replace(r[2], actor="mallory")] + r[3:]
    assert verify_chain(edited, 6, r[-1].hash).seq == 3
    assert verify_chain(r[:3] + r[4:], 6, r[-1].hash).seq == 4
    assert verify_chain(r[:5], 6, r[-1].hash).seq == 6
    assert verify_chain(r, 5, r[4].hash).seq == 6


# --- on the store ---------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> float:
        self.now += 60
        return self.now


@pytest.fixture
def log(tmp_path):
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    store = open_store(tmp_path / "store.db", key_file)
    log = AuditLog(store, clock=Clock())
    for i in range(1, 11):
        log.append("call.start" if i % 2 else "call.end", "agent", call_id=f"call-{(i + 1) // 2}",
                   patient="MRN1001" if i <= 4 else None, detail={"i": i})
    yield log
    store.close()


def attacker(log: AuditLog) -> sqlcipher.Connection:
    """Someone with the key and the file, who drops the triggers first."""
    db = sqlcipher.connect(str(log.store.path), isolation_level=None)
    db.execute(f"PRAGMA key = \"x'{read_key_file(log.store.path.parent / 'store.key').hex()}'\"")
    for trigger in ("audit_no_update", "audit_no_delete", "audit_head_no_delete",
                    "audit_head_forward"):
        db.execute(f"DROP TRIGGER {trigger}")
    return db


def row(db, seq: int) -> list:
    return list(db.execute("SELECT seq, at, event, actor, call_id, patient, detail, prev, hash "
                           "FROM audit WHERE seq = ?", (seq,)).fetchone())


def forge(db, after: Record | list, seq: int, **content) -> list:
    """A record correctly chained after `after`: the best an attacker can make."""
    prev_hash = after.hash if isinstance(after, Record) else after[8]
    r = next_record(seq - 1, prev_hash, au.timestamp(T0), "login", "mallory", **content)
    return [r.seq, r.at, r.event, r.actor, r.call_id, r.patient, None, r.prev, r.hash]


def test_records_chain_and_the_head_follows(log):
    seq, head = log.head()
    records = log.records()
    assert seq == 10 and [r.seq for r in records] == list(range(1, 11))
    assert head == records[-1].hash and log.verify() is None
    assert records[0].at == "2026-01-01T00:01:00.000000Z"


def test_the_application_cannot_update_or_delete_records(log):
    for sql in ("UPDATE audit SET actor = 'x' WHERE seq = 3", "DELETE FROM audit WHERE seq = 10",
                "DELETE FROM audit_head", "UPDATE audit_head SET seq = 9"):
        with pytest.raises(sqlcipher.IntegrityError, match="append-only|cannot be deleted|forward"):
            log.store.db.execute(sql)
    assert log.verify() is None


def test_an_edited_record_is_named(log):
    db = attacker(log)
    db.execute("UPDATE audit SET patient = 'MRN2002' WHERE seq = 4")
    problem = log.verify()
    assert problem.seq == 4 and "edited" in problem.reason, problem


def test_an_edited_record_with_its_hash_recomputed_is_named(log):
    db = attacker(log)
    r = log.records()[3]
    forged = dataclasses.replace(r, patient="MRN2002")
    db.execute("UPDATE audit SET patient = ?, hash = ? WHERE seq = 4",
               (forged.patient, au.chain_hash(forged.prev, forged.content())))
    problem = log.verify()
    assert problem.seq == 4 and "edited" in problem.reason, problem


def test_a_deleted_record_is_named(log):
    attacker(log).execute("DELETE FROM audit WHERE seq = 6")
    problem = log.verify()
    assert problem.seq == 6 and "missing (deleted)" in problem.reason, problem


def test_deleting_the_last_records_is_seen_through_the_head(log):
    attacker(log).execute("DELETE FROM audit WHERE seq >= 9")
    problem = log.verify()
    assert problem.seq == 9 and "records 9 to 10 are missing" in problem.reason, problem


def test_a_deleted_tail_with_the_head_rewound_is_still_seen(log):
    db = attacker(log)
    db.execute("DELETE FROM audit WHERE seq = 10")
    db.execute("UPDATE audit_head SET seq = 9")  # the hash still names record 10
    problem = log.verify()
    assert problem.seq == 9 and "chain head" in problem.reason, problem


def test_an_inserted_record_is_named(log):
    db = attacker(log)
    # renumber 5..10 to 6..11, then put a forged record 5 chained right after 4
    for seq in range(10, 4, -1):
        db.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (seq,))
    db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", forge(db, row(db, 4), 5))
    db.execute("UPDATE audit_head SET seq = 11")
    problem = log.verify()
    assert problem.seq == 5 and "inserted" in problem.reason, problem


def test_a_record_appended_past_the_head_is_named(log):
    db = attacker(log)
    db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", forge(db, row(db, 10), 11))
    problem = log.verify()
    assert problem.seq == 11 and "inserted" in problem.reason, problem


def test_reordered_records_are_named(log):
    db = attacker(log)
    db.execute("UPDATE audit SET seq = -1 WHERE seq = 7")
    db.execute("UPDATE audit SET seq = 7 WHERE seq = 8")
    db.execute("UPDATE audit SET seq = 8 WHERE seq = -1")
    problem = log.verify()
    assert problem.seq == 7 and "reordered" in problem.reason, problem


def test_a_record_whose_detail_is_not_json_is_named_not_a_crash(log):
    attacker(log).execute("UPDATE audit SET detail = '{broken' WHERE seq = 2")
    problem = log.verify()
    assert problem.seq == 2 and "edited" in problem.reason, problem


def test_records_by_call_patient_time_and_count(log):
    assert [r.seq for r in log.records(call_id="call-2")] == [3, 4]
    assert [r.seq for r in log.records(patient="MRN1001")] == [1, 2, 3, 4]
    assert [r.seq for r in log.records(last=3)] == [8, 9, 10]
    assert [r.seq for r in log.records(since=T0 + 180, until=T0 + 360)] == [3, 4, 5]
    assert [r.seq for r in log.records(call_id="call-5", last=1)] == [10]
    assert log.records(call_id="nobody") == []
