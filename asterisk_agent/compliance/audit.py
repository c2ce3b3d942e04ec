"""The tamper-evident audit trail: append-only records chained by SHA-256.

Each record's hash is SHA-256 over the previous record's hash and the record's
own canonical content (JSON, sorted keys, no spaces; its sequence number
included), so an edited, deleted, inserted or reordered record breaks the chain
from that record on.  The chain's head (its length and last hash) is kept in its
own row, written in the same transaction as each record: removing records from
the end leaves a chain shorter than its head says.

The chaining and its verification are pure functions over Record values;
AuditLog puts them on the store.  Triggers refuse UPDATE and DELETE of audit
rows from the application; whoever holds the key can drop them, and that is
what verify() is for.  (Someone holding the key can also rewrite the whole
chain and its head: an export's manifest carries the head hash so that a copy
kept elsewhere pins it.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from asterisk_agent.compliance.store import Store

GENESIS = "0" * 64

# What is recorded.  A new kind of event is added here, never renamed: exports
# and verifications of old records read the old names.
EVENTS = frozenset({
    "call.start", "call.end",
    "transcript.access",
    "ehr.message", "ehr.outbox.read",
    "config.change",
    "login", "login.failed", "access.denied",
    "export", "purge",
    "user.add", "user.remove", "user.passwd",
    "keys.rotate",
    "audit.show", "audit.verify",
    "recording.import", "recording.export",
})

_COLUMNS = "seq, at, event, actor, call_id, patient, detail, prev, hash"


def timestamp(seconds: float) -> str:
    """ISO 8601 UTC with microseconds: fixed width, so text order is time order."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Record:
    seq: int
    at: str
    event: str
    actor: str
    call_id: str | None
    patient: str | None
    detail: dict[str, Any] | None
    prev: str
    hash: str

    def content(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "event": self.event, "actor": self.actor,
                "call_id": self.call_id, "patient": self.patient, "detail": self.detail}

    @classmethod
    def from_row(cls, row: tuple) -> Record:
        seq, at, event, actor, call_id, patient, detail, prev, hash_ = row
        return cls(seq, at, event, actor, call_id, patient,
                   None if detail is None else json.loads(detail), prev, hash_)

    def to_json(self) -> dict[str, Any]:
        return {**self.content(), "prev": self.prev, "hash": self.hash}


def canonical(content: dict[str, Any]) -> bytes:
    """One byte string per content: sorted keys, no whitespace, UTF-8."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def chain_hash(prev: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev) + canonical(content)).hexdigest()


def next_record(prev_seq: int, prev_hash: str, at: str, event: str, actor: str,
                call_id: str | None = None, patient: str | None = None,
                detail: dict[str, Any] | None = None) -> Record:
    """The record that follows (prev_seq, prev_hash) in the chain."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r} (known: {', '.join(sorted(EVENTS))})")
    if not actor:
        raise ValueError("an audit record needs an actor")
    if detail is not None:
        detail = json.loads(canonical(detail))  # refused here if not plain JSON data
    content = {"seq": prev_seq + 1, "at": at, "event": event, "actor": actor,
               "call_id": call_id, "patient": patient, "detail": detail}
    return Record(**content, prev=prev_hash, hash=chain_hash(prev_hash, content))


@dataclass(frozen=True)
class Problem:
    """The first bad record of a chain, and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}"


# how far verify looks around a broken link to tell an insertion or a reordering
# from an edit; a bound keeps a million-record verification in constant memory
_WINDOW = 64


def verify_chain(records: Iterable[Record], head_seq: int, head_hash: str) -> Problem | None:
    """The first bad record of `records` (in stored order) and why; None when intact."""
    expected, prev_hash = 1, GENESIS
    recent: deque[tuple[int, str]] = deque(maxlen=_WINDOW)
    it = iter(records)
    for r in it:
        if r.seq != expected:
            gap = f"records {expected} to {r.seq - 1} are" if r.seq - 1 > expected else \
                f"record {expected} is"
            return Problem(expected, f"{gap} missing (deleted): record {r.seq} comes after "
                                     f"record {expected - 1}")
        try:
            own_ok = chain_hash(r.prev, r.content()) == r.hash
        except (ValueError, TypeError) as exc:
            return Problem(r.seq, f"cannot be read ({exc})")
        if r.prev != prev_hash:
            earlier = next((seq for seq, h in recent if h == r.prev), None)
            if earlier is not None:
                return Problem(earlier + 1, f"inserted: record {r.seq} was chained right after "
                                            f"record {earlier}")
            ahead = list(itertools.islice(it, _WINDOW))
            later = next((a.seq for a in ahead if a.hash == r.prev), None)
            if later is not None:
                return Problem(r.seq, f"out of order (reordered): it was chained after the "
                                      f"record now stored as {later}")
            if own_ok and expected > 1:
                return Problem(expected - 1, f"edited (its hash recomputed): record {r.seq} "
                                             f"was chained to a different record {expected - 1}")
            return Problem(r.seq, "edited: it does not chain to the record before it")
        if not own_ok:
            return Problem(r.seq, "edited: its content does not match its hash")
        recent.append((r.seq, r.hash))
        prev_hash, expected = r.hash, expected + 1
    last = expected - 1
    if last < head_seq:
        gap = f"records {last + 1} to {head_seq} are" if head_seq > last + 1 else \
            f"record {head_seq} is"
        return Problem(last + 1, f"{gap} missing (deleted): the chain head counts "
                                 f"{head_seq} records, the last one present is {last}")
    if last > head_seq:
        return Problem(head_seq + 1, f"inserted: the chain head counts {head_seq} records, "
                                     f"this one is beyond it")
    if last and prev_hash != head_hash:
        return Problem(last, "the chain head's hash is not this record's: it was edited "
                              "(its hash recomputed), or records after it deleted")
    return None


class AuditLog:
    """The audit trail in the store (thread-safe; blocking calls).

    `clock` gives seconds since the epoch (injectable for tests).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store, self.clock = store, clock

    def append(self, event: str, actor: str, call_id: str | None = None,
               patient: str | None = None, detail: dict[str, Any] | None = None) -> Record:
        """Add a record; it is on disk when this returns."""
        with self.store.transaction() as db:
            return self.write(db, event, actor, call_id, patient, detail)

    def write(self, db, event: str, actor: str, call_id: str | None = None,
              patient: str | None = None, detail: dict[str, Any] | None = None) -> Record:
        """append() inside a transaction the caller holds: the record commits, or
        rolls back, with what it records."""
        head_seq, head_hash = db.execute("SELECT seq, hash FROM audit_head").fetchone()
        record = next_record(head_seq, head_hash, timestamp(self.clock()), event, actor,
                             call_id, patient, detail)
        db.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (record.seq, record.at, record.event, record.actor, record.call_id,
                    record.patient, None if detail is None else canonical(record.detail).decode(),
                    record.prev, record.hash))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (record.seq, record.hash))
        return record

    def head(self) -> tuple[int, str]:
        """(number of records, hash of the last one)."""
        return tuple(self.store.query("SELECT seq, hash FROM audit_head")[0])

    def verify(self) -> Problem | None:
        """The first bad record and why, None when the chain is whole."""
        with self.store.lock:
            db = self.store.db
            db.execute("BEGIN")  # one snapshot: the head and the records agree
            try:
                head_seq, head_hash = db.execute("SELECT seq, hash FROM audit_head").fetchone()
                rows = db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
                return verify_chain(_records(rows), head_seq, head_hash)
            finally:
                db.execute("COMMIT")

    def records(self, since: float | None = None, until: float | None = None,
                call_id: str | None = None, patient: str | None = None,
                last: int | None = None) -> list[Record]:
        """Records in chain order: from `since` (inclusive) to `until` (exclusive),
        seconds since the epoch; of one call or one patient; the last `last` of them."""
        return list(self.iter_records(since, until, call_id, patient, last))

    def iter_records(self, since: float | None = None, until: float | None = None,
                     call_id: str | None = None, patient: str | None = None,
                     last: int | None = None) -> Iterator[Record]:
        where, params = [], []
        if since is not None:
            where.append("at >= ?")
            params.append(timestamp(since))
        if until is not None:
            where.append("at < ?")
            params.append(timestamp(until))
        if call_id is not None:
            where.append("call_id = ?")
            params.append(call_id)
        if patient is not None:
            where.append("patient = ?")
            params.append(patient)
        sql = f"SELECT {_COLUMNS} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if last is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params.append(max(last, 0))
        else:
            sql += " ORDER BY seq"
        yield from _records(self.store.query(sql, params))


def _records(rows: Iterable[tuple]) -> Iterator[Record]:
    """Rows as Records; a row whose detail is not JSON still comes, marked, so that
    verify names it instead of stopping with an exception."""
    for row in rows:
        try:
            yield Record.from_row(row)
        except (ValueError, TypeError):
            seq, at, event, actor, call_id, patient, detail, prev, hash_ = row
            yield Record(seq, at, event, actor, call_id, patient, {"unreadable": str(detail)},
                         prev, hash_)


__all__ = ["AuditLog", "Record", "Problem", "EVENTS", "GENESIS", "canonical", "chain_hash",
           "next_record", "verify_chain", "timestamp"]
