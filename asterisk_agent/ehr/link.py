"""The EHR link as the call flows use it: one EhrLink per agent process.

Lookups (find_patient, open_slots, upcoming_appointments,
active_medications) are read-only queries: they go straight to the engine
on a small pool of connections, never into the outbox, and any failure is a
LinkError the flow turns into a transfer to a person.

Changes (book, reschedule, cancel, request_refill, leave_message) go into
the durable outbox first; the call then waits at most [ehr] confirm_wait
seconds for the engine's answer and gets an Outcome: confirmed after an AA
only; an AR with the engine's reason (a slot just taken); or, on a timeout,
recorded, while the background delivery goes on (in order per patient,
patients in parallel) until the engine accepts it, across restarts.

With [ehr] slots_from = feed, open slots come from the local schedule that
the SIU feed listener keeps (schedule.py) instead of SQM^S25.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

from asterisk_agent import config
from asterisk_agent.ehr import messages
from asterisk_agent.ehr.messages import (Appointment, Medication, MessageError, Patient, Refill,
                                         Slot)
from asterisk_agent.ehr.mllp import LinkError, LinkSettings, MllpClient, client_tls
from asterisk_agent.compliance.store import Store
from asterisk_agent.ehr.outbox import Forwarder, Outbox, Outcome
from asterisk_agent.ehr.schedule import FeedListener, Schedule, load_hours

log = logging.getLogger(__name__)

# connections kept for lookups: a few calls may look things up at once
QUERY_CONNECTIONS = 2
# how far ahead "upcoming" appointments are looked for
UPCOMING_DAYS = 366


def new_placer_id() -> str:
    """A new appointment or order ID of ours (ARQ-1 / ORC-2), unique like a control ID."""
    return messages.new_control_id()


class EhrLink:
    """Lookups and changes against the practice's EHR, through its interface engine."""

    def __init__(self, cfg: config.Config, store: Store | None = None):
        """store: keep the outbox in the encrypted store (the agent does); without
        one it is the plain [ehr] outbox_file (tools, tests)."""
        e = cfg.ehr
        self.store = store
        if e.slots_from not in ("query", "feed"):
            raise ValueError(f"[ehr] slots_from = {e.slots_from!r}: choose query or feed")
        self.cfg = cfg
        self.facility = messages.Facility(e.sending_application, e.sending_facility,
                                          e.receiving_application, e.receiving_facility)
        tls = client_tls(e.tls_ca_file, e.tls_cert_file or None,
                         e.tls_key_file or None) if e.tls_ca_file else None
        self.settings = LinkSettings(e.host, e.port, connect_timeout=e.connect_timeout,
                                     ack_timeout=e.ack_timeout, tls=tls)
        # a lookup must answer while the caller waits: its own, shorter timeouts
        self.query_settings = LinkSettings(
            e.host, e.port, connect_timeout=min(e.connect_timeout, e.query_timeout),
            ack_timeout=e.query_timeout, tls=tls)
        self.confirm_wait = e.confirm_wait
        self.outbox: Outbox | None = None
        self.forwarder: Forwarder | None = None
        self.schedule: Schedule | None = None
        self.feed: FeedListener | None = None
        self._delivery: asyncio.Task | None = None
        self._queries: asyncio.Queue[MllpClient] | None = None

    # ---- life cycle

    async def start(self) -> None:
        cfg, e = self.cfg, self.cfg.ehr
        if self.store is not None:
            self.outbox = Outbox(store=self.store)
            plain = cfg.ehr_outbox_path
            if plain.exists():  # left by a version that kept the outbox in a plain file
                moved = await asyncio.to_thread(self.outbox.adopt, plain)
                log.info("EHR outbox: %d message(s) moved from %s into the encrypted store",
                         moved, plain)
        else:
            self.outbox = await asyncio.to_thread(Outbox, cfg.ehr_outbox_path)
        self.forwarder = Forwarder(self.outbox, self.settings, e.delivery_connections)
        self._delivery = asyncio.create_task(self._deliver(), name="ehr-delivery")
        self._queries = asyncio.Queue()
        for _ in range(QUERY_CONNECTIONS):
            self._queries.put_nowait(MllpClient(self.query_settings))
        if e.slots_from == "feed" or e.feed_port:
            hours = await asyncio.to_thread(load_hours, self._hours_path())
            self.schedule = await asyncio.to_thread(Schedule, cfg.in_state_dir(e.schedule_file),
                                                    hours)
            if e.feed_port:
                self.feed = FeedListener(self.schedule, e.feed_host, e.feed_port,
                                         self.facility)
                await self.feed.start()
        pending = len(await asyncio.to_thread(self.outbox.entries, "pending"))
        log.info("EHR link to %s:%d started; %d messages pending in the outbox",
                 e.host, e.port, pending)

    def _hours_path(self) -> Path:
        if self.cfg.provider_hours_path is None:
            raise ValueError("[ehr] slots_from = feed needs provider_hours_file")
        return self.cfg.provider_hours_path

    async def _deliver(self) -> None:
        """The background delivery; it never ends on an error, only when cancelled."""
        while True:
            try:
                await self.forwarder.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the outbox file briefly unreadable: log, go on
                log.exception("EHR delivery stopped; restarting in 1 s")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._delivery is not None:
            self._delivery.cancel()
            await asyncio.gather(self._delivery, return_exceptions=True)
            self._delivery = None
        if self._queries is not None:
            while not self._queries.empty():
                await self._queries.get_nowait().close()
        if self.feed is not None:
            await self.feed.close()
        if self.schedule is not None:
            self.schedule.close()
        if self.outbox is not None:
            self.outbox.close()

    async def __aenter__(self) -> EhrLink:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- lookups

    def _header(self) -> messages.Header:
        return messages.header(self.facility)

    async def _query(self, text: str):
        """Send one query; its answer as a parsed message, or LinkError."""
        if self._queries is None:
            raise LinkError("EHR link not started")
        client = await self._queries.get()
        try:
            for attempt in (1, 2):
                was_connected = client.connected
                try:
                    ack = await client.send(text)
                    break
                except LinkError:
                    # a connection left open while the engine restarted fails
                    # once; one fresh connection before giving up
                    if attempt == 2 or not was_connected:
                        raise
        finally:
            self._queries.put_nowait(client)
        if not ack.accepted:
            raise LinkError(f"the engine answered {ack.code}: {ack.error or 'no reason given'}")
        return ack.message

    async def find_patient(self, family: str, given: str,
                           birth_date: date | None) -> list[Patient]:
        """QBP^Q22 -> RSP^K22: the patients with this name (and date of birth)."""
        answer = await self._query(messages.find_patient(self._header(), family, given,
                                                         birth_date))
        return self._read(messages.read_candidates, answer)

    async def patient(self, patient_id: str) -> Patient | None:
        """QBP^Q22 by medical record number: the chart's name and date of birth."""
        answer = await self._query(messages.find_patient(self._header(), patient_id=patient_id))
        found = [p for p in self._read(messages.read_candidates, answer) if p.id == patient_id]
        return found[0] if found else None

    async def open_slots(self, start: datetime, end: datetime, provider_id: str | None = None,
                         kind: str | None = None) -> list[Slot]:
        """Free slots between start and end, earliest first (SQM^S25, or the local schedule)."""
        if self.cfg.ehr.slots_from == "feed":
            return await asyncio.to_thread(self.schedule.open_slots, start, end, provider_id,
                                           kind)
        answer = await self._query(messages.open_slots(self._header(), provider_id, start, end,
                                                       kind=kind))
        return self._read(messages.read_slots, answer)

    async def upcoming_appointments(self, patient_id: str,
                                    now: datetime | None = None) -> list[Appointment]:
        """SQM^S25 (booked slots, by patient) -> SQR^S25: the patient's next appointments."""
        start = now or datetime.now()
        answer = await self._query(messages.booked(self._header(), patient_id, start,
                                                   start + timedelta(days=UPCOMING_DAYS)))
        return self._read(messages.read_appointments, answer)

    async def active_medications(self, patient_id: str) -> list[Medication]:
        """QBP^Q31 -> RSP^K31: what the patient takes (what a refill may name)."""
        answer = await self._query(messages.medications(self._header(), patient_id))
        return self._read(messages.read_medications, answer)

    @staticmethod
    def _read(reader, answer):
        try:
            return reader(answer)
        except MessageError as e:
            raise LinkError(f"unreadable answer from the engine: {e}") from e

    # ---- changes (through the outbox)

    async def _submit(self, text: str, patient_id: str) -> Outcome:
        if self.forwarder is None:
            raise LinkError("EHR link not started")
        outcome = await self.forwarder.submit(text, patient_id, self.confirm_wait)
        log.info("EHR %s: %s", outcome.control_id,
                 "confirmed" if outcome.confirmed else outcome.error or "recorded, pending")
        return outcome

    async def book(self, appointment: Appointment) -> Outcome:
        return await self._submit(messages.book(self._header(), appointment),
                                  appointment.patient.id)

    async def reschedule(self, appointment: Appointment) -> Outcome:
        """Move the appointment (same placer ID) to appointment.start."""
        return await self._submit(messages.reschedule(self._header(), appointment),
                                  appointment.patient.id)

    async def cancel(self, appointment: Appointment) -> Outcome:
        return await self._submit(messages.cancel(self._header(), appointment),
                                  appointment.patient.id)

    async def request_refill(self, refill: Refill) -> Outcome:
        return await self._submit(messages.refill(self._header(), refill), refill.patient.id)

    async def check_in(self, patient: Patient, answers: list[messages.Answer]) -> Outcome:
        """ORU^R01: an outbound check-in's answers (pain score, concerns) for the chart."""
        return await self._submit(messages.check_in(self._header(), patient, answers), patient.id)

    async def leave_message(self, patient: Patient, text: str) -> Outcome:
        """MDM^T02: the caller's message for the chart."""
        return await self._submit(messages.chart_note(self._header(), patient,
                                                      "Caller message", text), patient.id)


__all__ = ["EhrLink", "LinkError", "Outcome", "Patient", "Appointment", "Slot", "Medication",
           "Refill", "new_placer_id"]
