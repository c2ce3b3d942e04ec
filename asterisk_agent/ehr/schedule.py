"""A local schedule kept from the engine's SIU feed, for engines that only push.

Some interface engines answer no slot queries: they push every schedule
change (SIU^S12 new, S13 moved, S14 changed, S15 cancelled, S17 deleted) to
a listener.  FeedListener is that listener: an MLLP server that checks each
message with hl7apy (strict), applies it to a Schedule and answers AA; AR
for what is not a valid SIU, AE when it could not be stored (the engine
retries).  A control ID seen before is answered AA and not applied again,
so the engine's retries are harmless.

The feed carries bookings, not the providers' working hours, so open slots
are those hours (from a YAML file shaped like the simulator's seed) minus
the booked appointments.  The schedule is a SQLite file: a restarted agent
keeps what the feed told it.  Only IDs, times and the appointment reason
(which tells procedures apart, for outbound campaigns) are kept, no names.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time as clock
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

import yaml
from hl7.mllp import start_hl7_server

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.mllp import MAX_MESSAGE, serve_connection
from asterisk_agent.ehr.outbox import open_durable

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# SIU events that take the appointment off the schedule
REMOVING = ("S15", "S17")


class ScheduleError(ValueError):
    """A provider-hours file that cannot be read, with the file and reason."""


@dataclass(frozen=True)
class Hours:
    """One provider's working template: weekdays (0 = Monday), from start to end."""

    days: tuple[int, ...]
    start: time
    end: time
    slot_minutes: int
    # appointment types the provider sees; empty: any
    kinds: tuple[str, ...] = ()


def read_hours(providers: list[dict]) -> dict[str, Hours]:
    """{provider ID: Hours} from the seed's providers list (KeyError/ValueError when bad)."""
    out = {}
    for d in providers:
        h = d.get("hours", {})
        out[str(d["id"])] = Hours(
            tuple(DAYS.index(x) for x in h.get("days", DAYS[:5])),
            time.fromisoformat(str(h.get("start", "09:00"))),
            time.fromisoformat(str(h.get("end", "17:00"))),
            int(h.get("slot_minutes", 20)),
            tuple(str(k) for k in d.get("kinds", ())))
    return out


def load_hours(path: Path | str) -> dict[str, Hours]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return read_hours(data.get("providers", []))
    except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise ScheduleError(f"{path}: {e}") from e


def free_slots(hours: dict[str, Hours], booked: Iterable[m.Appointment], start: datetime,
               end: datetime, provider_id: str | None = None, kind: str | None = None,
               limit: int = 10) -> list[m.Slot]:
    """Slots cut from the providers' hours that no booked appointment overlaps.

    Earliest first (then by provider), at most `limit`; kind keeps the
    providers who see that appointment type.
    """
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for a in booked:
        busy[a.provider_id].append((a.start, a.start + timedelta(minutes=a.minutes)))
    found: list[m.Slot] = []
    for pid in ([provider_id] if provider_id else sorted(hours)):
        h = hours.get(pid)
        if h is None or (kind and h.kinds and kind not in h.kinds):
            continue
        mine, day = [], start.date()
        while day <= end.date() and len(mine) < limit:
            if day.weekday() in h.days:
                t, close = datetime.combine(day, h.start), datetime.combine(day, h.end)
                while t + timedelta(minutes=h.slot_minutes) <= close and len(mine) < limit:
                    t_end = t + timedelta(minutes=h.slot_minutes)
                    if start <= t < end and not any(b < t_end and t < e for b, e in busy[pid]):
                        mine.append(m.Slot(t, h.slot_minutes, pid))
                    t = t_end
            day += timedelta(days=1)
        found += mine
    found.sort(key=lambda s: (s.start, s.provider_id))
    return found[:limit]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS appointment (
    placer_id   TEXT PRIMARY KEY,
    filler_id   TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    start       TEXT NOT NULL,
    minutes     INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS seen (
    control_id  TEXT PRIMARY KEY,
    received    REAL NOT NULL
);
"""


class Schedule:
    """Booked appointments from the feed, on disk (thread-safe; blocking calls)."""

    def __init__(self, path: Path | str, hours: dict[str, Hours]):
        self.path, self.hours = Path(path), hours
        self._db, self._lock = open_durable(self.path, _SCHEMA)
        with self._lock:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(appointment)")}
            if "reason" not in columns:  # a schedule file from before reasons were kept
                self._db.execute("ALTER TABLE appointment ADD COLUMN reason TEXT NOT NULL "
                                 "DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def apply(self, control_id: str, event: str, a: m.Appointment) -> bool:
        """Apply one SIU; False (nothing changed) when its control ID was seen before.

        The change and the control ID are stored in one transaction, so a
        kill between them cannot apply a message twice or lose it.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if self._db.execute("SELECT 1 FROM seen WHERE control_id = ?",
                                    (control_id,)).fetchone():
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute("INSERT INTO seen VALUES (?, ?)", (control_id, clock.time()))
                if event in REMOVING:
                    self._db.execute("DELETE FROM appointment WHERE placer_id = ?",
                                     (a.placer_id,))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO appointment (placer_id, filler_id, patient_id,"
                        " provider_id, start, minutes, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (a.placer_id, a.filler_id, a.patient.id, a.provider_id,
                         a.start.isoformat(), a.minutes, a.reason))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return True

    def seen(self, control_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen WHERE control_id = ?",
                                    (control_id,)).fetchone() is not None

    def appointments(self, provider_id: str | None = None) -> list[m.Appointment]:
        with self._lock:
            rows = self._db.execute(
                "SELECT placer_id, filler_id, patient_id, provider_id, start, minutes, reason"
                " FROM appointment" + (" WHERE provider_id = ?" if provider_id else "")
                + " ORDER BY start", (provider_id,) if provider_id else ()).fetchall()
        return [m.Appointment(placer, m.Patient(patient, "", ""), provider,
                              datetime.fromisoformat(start), minutes, reason, filler)
                for placer, filler, patient, provider, start, minutes, reason in rows]

    def open_slots(self, start: datetime, end: datetime, provider_id: str | None = None,
                   kind: str | None = None, limit: int = 10) -> list[m.Slot]:
        return free_slots(self.hours, self.appointments(provider_id), start, end,
                          provider_id, kind, limit)


class FeedListener:
    """The MLLP server the engine pushes its SIU feed to."""

    def __init__(self, schedule: Schedule, host: str = "127.0.0.1", port: int = 0,
                 facility: m.Facility | None = None):
        self.schedule, self.host, self.port = schedule, host, port
        # as seen from here: we send the ACKs
        self.facility = facility or m.Facility("ASTERISK-AGENT", "PRACTICE", "EHR", "PRACTICE")
        self._server = None
        self._connections: set = set()

    async def start(self) -> None:
        self._server = await start_hl7_server(self._serve, self.host, self.port,
                                              limit=MAX_MESSAGE)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SIU feed listener on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # open connections outlive Server.close(); they must not reach a
            # schedule about to be closed
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def handle(self, text: str) -> str | None:
        """The ACK for one received message; None when it cannot be answered (no MSH)."""
        try:
            message = m.parse(text)
        except m.MessageError as e:
            log.warning("feed: unreadable message, no answer possible: %s", e)
            return None
        h = m.header(self.facility)
        control_id, kind = m.control_id(message), m.message_type(message)
        if not kind.startswith("SIU^"):
            return m.ack(message, h, m.REJECT, f"unsupported message type {kind}")
        # hl7apy is CPU work of a few ms: off the event loop
        reason = await asyncio.to_thread(m.validate, text)
        if reason:
            log.warning("feed: %s %s rejected: %s", kind, control_id, reason)
            return m.ack(message, h, m.REJECT, reason)
        try:
            event, appointment = m.read_siu(message)
        except m.MessageError as e:
            return m.ack(message, h, m.REJECT, str(e))
        try:
            applied = await asyncio.to_thread(self.schedule.apply, control_id, event,
                                              appointment)
        except sqlite3.Error as e:
            log.error("feed: %s %s not stored: %s", kind, control_id, e)
            return m.ack(message, h, m.ERROR, "schedule not stored; retry")
        if not applied:
            log.info("feed: %s again (retry): not applied twice", control_id)
        return m.ack(message, h)

    async def _serve(self, reader, writer) -> None:
        self._connections.add(writer)
        try:
            await serve_connection(reader, writer, self.handle, self._encoding_nak, "feed")
        finally:
            self._connections.discard(writer)

    def _encoding_nak(self, text: str) -> str | None:
        try:
            message = m.parse(text)
        except m.MessageError:
            return None
        return m.ack(message, m.header(self.facility), m.REJECT, f"message is not {m.ENCODING}")
