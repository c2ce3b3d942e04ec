"""Store and forward: every outgoing HL7 message is written down before it is sent.

A message enters the outbox with its control ID fixed, is delivered in order
per patient, and leaves only after the engine's AA.  A message the engine
rejects (AR, or AE past the retry policy) stays, marked failed with the
engine's error text, for a person to look at; it does not hold back the
patient's later messages.

The agent keeps its outbox in the encrypted store (compliance/store.py, the
same table), where each message queued and each one the engine accepted or
refused is an audit record too.  Tools and tests may keep one in a plain
SQLite file instead.  Either way a row is on disk before put() returns (WAL,
synchronous=FULL).  SQLite calls block, so the Forwarder runs them in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import Store
from asterisk_agent.ehr import messages
from asterisk_agent.ehr.mllp import LinkError, LinkSettings, MllpClient, Rejected

log = logging.getLogger(__name__)

PENDING, FAILED = "pending", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    control_id  TEXT NOT NULL UNIQUE,
    patient_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_patient ON outbox (patient_id, id);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    control_id: str
    patient_id: str
    kind: str  # 'SRM^S01' for example
    message: str
    state: str
    attempts: int
    error: str
    created: float


def open_durable(path: Path, schema: str) -> tuple[sqlite3.Connection, threading.Lock]:
    """A SQLite file whose every commit is on disk before it returns (WAL, full
    sync), shared between threads behind the lock returned with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    lock = threading.Lock()
    with lock:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    return db, lock


class Outbox:
    """The durable queue of outgoing messages (thread-safe; blocking calls).

    Outbox(path): a plain SQLite file of its own.  Outbox(store=store): the
    encrypted store's outbox table, audited; the store stays the caller's to close.
    """

    def __init__(self, path: Path | str | None = None, *, store: Store | None = None):
        if (path is None) == (store is None):
            raise ValueError("an outbox is a file or a store's table: give one of them")
        self.store = store
        if store is not None:
            self.path, self._db, self._lock = store.path, store.db, store.lock
            self.audit: AuditLog | None = AuditLog(store)
        else:
            self.path = Path(path)
            self._db, self._lock = open_durable(self.path, _SCHEMA)
            self.audit = None

    def close(self) -> None:
        if self.store is None:
            with self._lock:
                self._db.close()

    @contextmanager
    def _change(self, event: str | None = None, patient_id: str = "", **detail):
        """One change, with its audit record when the outbox is in the store."""
        if self.store is None:
            with self._lock:
                yield self._db
            return
        with self.store.transaction() as db:
            yield db
            if event is not None:
                self.audit.write(db, "ehr.message", "agent", patient=patient_id or None,
                                 detail={"event": event, **detail})

    def put(self, message: str, patient_id: str) -> Entry:
        """Queue a built message; its control ID stays the same through every retry.

        Putting the same control ID twice keeps the first (idempotent).
        """
        parsed = messages.parse(message)
        control_id, kind = messages.control_id(parsed), messages.message_type(parsed)
        with self._change("queued", patient_id, kind=kind, control_id=control_id) as db:
            db.execute(
                "INSERT OR IGNORE INTO outbox (control_id, patient_id, kind, message, created)"
                " VALUES (?, ?, ?, ?, ?)", (control_id, patient_id, kind, message, time.time()))
            row = db.execute("SELECT * FROM outbox WHERE control_id = ?",
                             (control_id,)).fetchone()
        return Entry(*row)

    def adopt(self, path: Path) -> int:
        """Move every message of a plain outbox file into this (store) outbox, then
        remove the file: an agent upgraded to the store loses nothing queued."""
        old = Outbox(path)
        try:
            entries = old.entries()
        finally:
            old.close()
        with self._change("adopted", count=len(entries), source=str(path)) as db:
            for e in entries:
                db.execute(
                    "INSERT OR IGNORE INTO outbox (control_id, patient_id, kind, message, state,"
                    " attempts, error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.control_id, e.patient_id, e.kind, e.message, e.state, e.attempts,
                     e.error, e.created))
        # zeroed before unlinking: the plaintext HL7 is not left in the freed blocks
        # as far as the file system allows (a journaling or SSD layer may keep copies)
        for leftover in (path, path.with_name(path.name + "-wal"),
                         path.with_name(path.name + "-shm")):
            if leftover.exists():
                with open(leftover, "r+b") as f:
                    f.write(b"\0" * leftover.stat().st_size)
                    f.flush()
                    os.fsync(f.fileno())
                leftover.unlink()
        return len(entries)

    def heads(self) -> list[Entry]:
        """The oldest pending message of each patient, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE id IN (SELECT MIN(id) FROM outbox"
                " WHERE state = 'pending' GROUP BY patient_id) ORDER BY id").fetchall()
        return [Entry(*r) for r in rows]

    def entries(self, state: str | None = None) -> list[Entry]:
        with self._lock:
            if state:
                rows = self._db.execute("SELECT * FROM outbox WHERE state = ? ORDER BY id",
                                        (state,)).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        return [Entry(*r) for r in rows]

    def count(self, state: str) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = ?",
                                    (state,)).fetchone()
        return n

    def attempted(self, entry_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?",
                             (entry_id,))

    def delivered(self, entry: Entry) -> None:
        """The engine answered AA: the message leaves the outbox."""
        with self._change("accepted", entry.patient_id, kind=entry.kind,
                          control_id=entry.control_id) as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (entry.id,))

    def failed(self, entry: Entry, error: str) -> None:
        # the engine's error text names the fault (a segment, a field), not the patient
        with self._change("refused", entry.patient_id, kind=entry.kind,
                          control_id=entry.control_id, error=error) as db:
            db.execute("UPDATE outbox SET state = 'failed', error = ? WHERE id = ?",
                       (error, entry.id))


@dataclass(frozen=True)
class Outcome:
    """What the caller may be told about one message.

    confirmed: the engine answered AA ("booked").  Not confirmed and no
    error: the message is recorded in the outbox and still being delivered
    ("your request is recorded and the office will confirm").  Not
    confirmed with an error: the engine refused it (AR), with its reason
    (a slot just taken, say), so the flow can offer something else.
    """

    confirmed: bool
    control_id: str
    error: str = ""
    ack: messages.Ack | None = field(default=None, compare=False, repr=False)

    @property
    def recorded(self) -> bool:
        return not self.confirmed and not self.error


class Forwarder:
    """Sends what the outbox holds until cancelled: in order per patient, patients in parallel.

    Each patient's oldest pending message goes out on one of `workers`
    connections; the patient's next one only after it is answered, so one
    patient whose messages stall (an engine that never answers them, AEs)
    holds one connection, never the others' queues.

    submit() puts a message in the outbox and waits a bounded time for its
    AA, so the dialog says "booked" only when it is; on a timeout the
    message stays queued and is delivered later.
    """

    def __init__(self, outbox: Outbox, settings: LinkSettings, workers: int = 4,
                 idle_poll: float = 1.0):
        if workers < 1:
            raise ValueError("a forwarder needs at least one worker")
        self.outbox, self.settings = outbox, settings
        self.workers, self.idle_poll = workers, idle_poll
        self._wake = asyncio.Event()
        self._waiting: dict[str, asyncio.Future] = {}

    async def submit(self, message: str, patient_id: str, wait: float = 3.0) -> Outcome:
        entry = await asyncio.to_thread(self.outbox.put, message, patient_id)
        future = asyncio.get_running_loop().create_future()
        self._waiting[entry.control_id] = future
        self._wake.set()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a
            # cancellation that arrives as the awaited thing completes
            async with asyncio.timeout(wait):
                return await asyncio.shield(future)
        except TimeoutError:
            return Outcome(False, entry.control_id)
        finally:
            self._waiting.pop(entry.control_id, None)

    async def run(self, stop_when_empty: bool = False) -> None:
        idle = [MllpClient(self.settings) for _ in range(self.workers)]
        busy: dict[str, asyncio.Task] = {}  # patient ID -> its message in flight

        def finished(patient_id: str, client: MllpClient):
            def done(_task):
                busy.pop(patient_id, None)
                idle.append(client)
                self._wake.set()
            return done

        try:
            while True:
                # cleared before reading, so a submit() during the read is not missed
                self._wake.clear()
                heads = await asyncio.to_thread(self.outbox.heads)
                for entry in heads:
                    if entry.patient_id in busy or not idle:
                        continue
                    client = idle.pop()
                    task = asyncio.create_task(self._send(entry, client))
                    busy[entry.patient_id] = task
                    task.add_done_callback(finished(entry.patient_id, client))
                if stop_when_empty and not heads and not busy:
                    return
                try:
                    async with asyncio.timeout(self.idle_poll):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            tasks = list(busy.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in idle:
                await client.close()

    async def _send(self, entry: Entry, client: MllpClient) -> None:
        await asyncio.to_thread(self.outbox.attempted, entry.id)
        try:
            ack = await client.deliver(entry.message)
        except Rejected as e:
            error = e.ack.error or e.ack.code
            log.warning("EHR: %s %s rejected: %s", entry.kind, entry.control_id, error)
            await asyncio.to_thread(self.outbox.failed, entry, error)
            self._resolve(Outcome(False, entry.control_id, error, e.ack))
            return
        except messages.MessageError as e:  # a stored message that no longer parses
            log.error("EHR: %s %s cannot be sent: %s", entry.kind, entry.control_id, e)
            await asyncio.to_thread(self.outbox.failed, entry, str(e))
            self._resolve(Outcome(False, entry.control_id, str(e)))
            return
        await asyncio.to_thread(self.outbox.delivered, entry)
        self._resolve(Outcome(True, entry.control_id, ack=ack))

    def _resolve(self, outcome: Outcome) -> None:
        future = self._waiting.get(outcome.control_id)
        if future is not None and not future.done():
            future.set_result(outcome)


async def drain(outbox: Outbox, settings: LinkSettings, workers: int = 4) -> None:
    """Deliver everything pending, then return (LinkError retried with backoff)."""
    await Forwarder(outbox, settings, workers).run(stop_when_empty=True)


__all__ = ["Outbox", "Entry", "Forwarder", "Outcome", "drain", "LinkError", "PENDING", "FAILED"]
