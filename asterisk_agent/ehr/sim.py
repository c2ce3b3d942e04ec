"""An interface-engine peer for demos and tests: an MLLP server holding an EHR's data.

It holds patients, providers, schedules and medications from a seed file,
answers patient, slot, appointment and medication queries, applies bookings
and refill requests, and validates every message it receives with hl7apy in strict mode (an
implementation of the standard independent of ours), answering AR with an
ERR segment for anything invalid.  Garbage, truncated frames, huge frames
and wrong encodings are logged and never stop the server.

Accepted changes go to a journal file (one JSON line each, flushed to disk
before the ACK leaves), so a killed and restarted engine keeps its bookings
and still recognises a retried control ID: it answers the retry with its
first answer instead of applying the message twice.

With --feed HOST:PORT every change it applies (a booking through SRM, or a
change injected as an SIU sent to it, as a front desk would make) goes out
as SIU^S12/S13/S15/S17 to that listener, through a durable queue of its own
(the agent's outbox, reused): the feed survives the listener being down and
the engine being killed.  A feed message's control ID is derived from the
change's own, so a change applied again after a kill is announced with the
same ID and the listener drops the repeat.

    python -m asterisk_agent.ehr.sim --seed etc/ehr-seed.yaml --port 2575
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import ssl
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml
from hl7.mllp import start_hl7_server

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.mllp import MAX_MESSAGE, LinkSettings, serve_connection
from asterisk_agent.ehr.outbox import Forwarder, Outbox
from asterisk_agent.ehr.schedule import Hours, free_slots, read_hours

log = logging.getLogger("ehr-sim")



class SeedError(ValueError):
    pass


@dataclass
class EhrState:
    """The engine's data: what the seed file gives and what messages changed."""

    patients: dict[str, m.Patient] = field(default_factory=dict)
    providers: dict[str, m.Provider] = field(default_factory=dict)
    hours: dict[str, Hours] = field(default_factory=dict)
    medications: dict[str, list[str]] = field(default_factory=dict)
    appointments: dict[str, m.Appointment] = field(default_factory=dict)  # by placer ID
    refills: list[m.Refill] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    observations: list[dict] = field(default_factory=list)
    # control ID -> the answer first given, so a retry is answered, not re-applied
    answered: dict[str, str] = field(default_factory=dict)


def load_seed(path: Path) -> EhrState:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        state = EhrState()
        for p in data.get("patients", []):
            birth = p.get("birth_date")
            state.patients[str(p["id"])] = m.Patient(
                str(p["id"]), str(p["family"]), str(p["given"]),
                birth if isinstance(birth, date) else date.fromisoformat(str(birth)),
                str(p.get("phone", "")))
            state.medications[str(p["id"])] = [str(x) for x in p.get("medications", [])]
        for d in data.get("providers", []):
            state.providers[str(d["id"])] = m.Provider(str(d["id"]), str(d["family"]),
                                                      str(d.get("given", "")))
        state.hours = read_hours(data.get("providers", []))
    except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise SeedError(f"{path}: {e}") from e
    return state


validate = m.validate

# the SIU that announces each change the engine applies
_FEED_EVENTS = {"SRM^S01": "S12", "SRM^S03": "S13", "SRM^S04": "S15"}


def feed_control_id(control_id: str) -> str:
    """The feed message's MSH-10, derived from the change's own (fits 20 characters)."""
    return "F" + hashlib.sha1(control_id.encode()).hexdigest()[:19]


class Engine:
    """Message handling, without the network: text in, answer text out."""

    def __init__(self, state: EhrState, facility: m.Facility, journal: Path | None = None,
                 feed: Outbox | None = None):
        self.state = state
        self.facility = facility  # as the engine sees it: sending = the engine
        self.journal_path = journal
        self.feed = feed
        self._journal = None
        # messages about these patients are never answered (tests: a stalled queue)
        self.stalled: set[str] = set()
        # when > 0, every message is answered AE this many times first (for tests)
        self.errors_before_accept = 0
        self._errors_given: dict[str, int] = {}
        # what a cancellation took off the schedule, for the SIU that announces it
        self._cancelled: dict[str, m.Appointment] = {}
        if journal is not None:
            self._replay(journal)
            self._journal = open(journal, "a", encoding="utf-8")

    # ---- journal

    def _replay(self, path: Path) -> None:
        if not path.exists():
            return
        count = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                message = m.parse(entry["message"])
            except (ValueError, KeyError, m.MessageError):
                log.warning("journal: unreadable line skipped (torn write at a kill)")
                continue
            self._apply(message)
            self.state.answered[entry["control_id"]] = entry["answer"]
            count += 1
        log.info("journal: %d messages replayed from %s", count, path)

    def _record(self, control_id: str, text: str, answer: str) -> None:
        self.state.answered[control_id] = answer
        if self._journal is not None:
            self._journal.write(json.dumps({"control_id": control_id, "message": text,
                                            "answer": answer}) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # ---- handling

    def header(self, received=None) -> m.Header:
        """The head of an answer: from the engine, to whoever sent `received`."""
        f = self.facility
        if received is not None:
            msh = received.segment("MSH")
            f = replace(f, receiving_application=received.unescape(str(msh(3))),
                        receiving_facility=received.unescape(str(msh(4))))
        return m.header(f)

    def handle(self, text: str) -> str | None:
        """The answer to one received message; None when nothing can be answered."""
        try:
            message = m.parse(text)
        except m.MessageError as e:
            log.warning("unreadable message, no answer possible: %s", e)
            return None
        control_id = m.control_id(message)
        if self.stalled and m._get(message, "PID", 3) in self.stalled:
            log.info("%s for a stalled patient: not answered", control_id)
            return None
        if control_id in self.state.answered:
            log.info("%s again (retry): first answer repeated", control_id)
            return self.state.answered[control_id]
        reason = validate(text)
        if reason:
            log.warning("%s %s rejected: %s", m.message_type(message), control_id, reason)
            return m.ack(message, self.header(message), m.REJECT, reason)
        given = self._errors_given.get(control_id, 0)
        if given < self.errors_before_accept:
            self._errors_given[control_id] = given + 1
            return m.ack(message, self.header(message), m.ERROR, "engine busy, try again")
        try:
            answer = self._answer(message)
        except m.MessageError as e:
            return m.ack(message, self.header(message), m.REJECT, str(e))
        kind = m.message_type(message)
        if not kind.startswith(("QBP", "SQM")) and _accepted(answer):
            # the feed first: a kill between the two re-applies the retried
            # change and announces it again under the same feed control ID
            self._publish(message, kind)
            self._record(control_id, text, answer)
        return answer

    def _publish(self, message, kind: str) -> None:
        if self.feed is None:
            return
        event = _FEED_EVENTS.get(kind) or (kind[4:] if kind.startswith("SIU^") else None)
        if event is None:
            return
        a = m.read_booking(message)
        a = self.state.appointments.get(a.placer_id) or self._cancelled.get(a.placer_id, a)
        h = m.header(replace(self.facility, receiving_application="ASTERISK-AGENT"),
                     feed_control_id(m.control_id(message)))
        self.feed.put(m.siu(h, event, a), a.patient.id)

    def _answer(self, message) -> str:
        kind = m.message_type(message)
        h = self.header(message)
        if kind == "QBP^Q22":
            return m.rsp_k22(message, h, self.find(m.read_query(message)))
        if kind == "SQM^S25":
            if m._get(message, "QRD", 9) == "SBK":
                return m.sqr_booked(message, h, self.booked_for(message))
            return m.sqr_s25(message, h, self.open_slots_for(message))
        if kind == "QBP^Q31":
            patient = self.state.patients.get(m._get(message, "QPD", 3))
            names = self.state.medications.get(patient.id, []) if patient else []
            return m.rsp_k31(message, h, patient, names)
        if kind in ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17"):
            problem = self._check_patient(message)
            if problem:
                return m.ack(message, h, m.REJECT, problem)
            self._apply(message)
            return m.ack(message, h)
        if kind in ("SRM^S01", "SRM^S03", "SRM^S04"):
            problem = self._check_booking(message)
            if problem:
                return m.srr(message, h, None, m.REJECT, problem)
            return m.srr(message, h, self._apply(message))
        if kind == "OMP^O09":
            problem = self._check_patient(message)
            if problem:
                return m.orp_o10(message, h, m.REJECT, problem)
            self._apply(message)
            return m.orp_o10(message, h)
        if kind in ("MDM^T02", "ORU^R01"):
            problem = self._check_patient(message)
            if problem:
                return m.ack(message, h, m.REJECT, problem)
            self._apply(message)
            return m.ack(message, h)
        return m.ack(message, h, m.REJECT, f"unsupported message type {kind}")

    def _check_patient(self, message) -> str:
        try:
            pid = m.read_patient(message, message.segment("PID"))
        except KeyError:
            return "no PID segment"
        return "" if pid.id in self.state.patients else f"unknown patient {pid.id}"

    def _check_booking(self, message) -> str:
        a = m.read_booking(message)
        kind = m.message_type(message)
        if a.patient.id not in self.state.patients:
            return f"unknown patient {a.patient.id}"
        if a.provider_id not in self.state.providers:
            return f"unknown provider {a.provider_id}"
        existing = self.state.appointments.get(a.placer_id)
        if kind == "SRM^S01" and existing is not None:
            return f"appointment {a.placer_id} already exists"
        if kind in ("SRM^S03", "SRM^S04") and existing is None:
            return f"no appointment {a.placer_id}"
        if kind != "SRM^S04" and not self._is_free(a):
            return f"slot {a.start:%Y-%m-%d %H:%M} with {a.provider_id} is not available"
        return ""

    def _apply(self, message):
        """Change the state for an accepted message (also used by the journal replay)."""
        kind = m.message_type(message)
        if kind.startswith(("SRM", "SIU")):
            a = m.read_booking(message)
            if kind in ("SRM^S04", "SIU^S15", "SIU^S17"):
                gone = self.state.appointments.pop(a.placer_id, a)
                self._cancelled[a.placer_id] = gone
                return gone
            filler = (self.state.appointments.get(a.placer_id)
                      or replace(a, filler_id=f"F{len(self.state.appointments) + 1:06d}"))
            a = replace(a, filler_id=a.filler_id or filler.filler_id)
            self.state.appointments[a.placer_id] = a
            return a
        if kind == "OMP^O09":
            self.state.refills.append(m.read_refill(message))
        elif kind == "MDM^T02":
            self.state.notes.append({"control_id": m.control_id(message),
                                     "patient": m._get(message, "PID", 3, 1, 1)})
        elif kind == "ORU^R01":
            self.state.observations.append({"control_id": m.control_id(message),
                                            "patient": m._get(message, "PID", 3, 1, 1)})
        return None

    # ---- queries

    def find(self, query: dict[str, str]) -> list[m.Patient]:
        family = query.get("@PID.5.1", "").casefold()
        given = query.get("@PID.5.2", "").casefold()
        birth = query.get("@PID.7", "")
        mrn = query.get("@PID.3.1", "")
        return [p for p in self.state.patients.values()
                if (not mrn or p.id == mrn)
                and (not family or p.family.casefold() == family)
                and (not given or p.given.casefold() == given)
                and (not birth or m._dt(p.birth_date) == birth[:8])]

    def _window(self, message) -> tuple[datetime, datetime]:
        return (m._datetime(m._get(message, "ARQ", 11, 1, 1) or ""),
                m._datetime(m._get(message, "ARQ", 11, 1, 2) or ""))

    def open_slots_for(self, message) -> list[m.Slot]:
        start, end = self._window(message)
        return self.open_slots(m._get(message, "AIP", 3, 1, 1) or None, start, end,
                               m._get(message, "ARQ", 8) or None)

    def open_slots(self, provider_id: str | None, start: datetime, end: datetime,
                   kind: str | None = None, limit: int = 10) -> list[m.Slot]:
        if provider_id and provider_id not in self.state.hours:
            return []
        return free_slots(self.state.hours, self.state.appointments.values(), start, end,
                          provider_id, kind, limit)

    def booked_for(self, message) -> list[m.Appointment]:
        """A patient's appointments (QRD-8) starting inside the ARQ-11 window."""
        patient_id = m._get(message, "QRD", 8)
        start, end = self._window(message)
        return sorted((a for a in self.state.appointments.values()
                       if a.patient.id == patient_id and start <= a.start < end),
                      key=lambda a: a.start)

    def _slot_free(self, slot: m.Slot, ignore: str = "") -> bool:
        end = slot.start + timedelta(minutes=slot.minutes)
        for a in self.state.appointments.values():
            if a.provider_id == slot.provider_id and a.placer_id != ignore:
                if a.start < end and slot.start < a.start + timedelta(minutes=a.minutes):
                    return False
        return True

    def _is_free(self, a: m.Appointment) -> bool:
        hours: Hours = self.state.hours[a.provider_id]
        if a.start.weekday() not in hours.days:
            return False
        if not (hours.start <= a.start.time()
                and (a.start + timedelta(minutes=a.minutes)).time() <= hours.end):
            return False
        return self._slot_free(m.Slot(a.start, a.minutes, a.provider_id), ignore=a.placer_id)


def _accepted(answer: str) -> bool:
    return "\rMSA|AA|" in answer


# --------------------------------------------------------------------------
# The network edge


class Server:
    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 2575,
                 tls: ssl.SSLContext | None = None):
        self.engine, self.host, self.port, self.tls = engine, host, port, tls
        self._server = None

    async def start(self) -> None:
        self._server = await start_hl7_server(self._serve, self.host, self.port,
                                              limit=MAX_MESSAGE, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening on %s:%d%s", self.host, self.port, " (TLS)" if self.tls else "")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        async def answer(text: str) -> str | None:
            return self.engine.handle(text)

        await serve_connection(reader, writer, answer, self._encoding_nak, "engine")

    def _encoding_nak(self, text: str) -> str | None:
        try:
            message = m.parse(text)
        except m.MessageError:
            return None
        return m.ack(message, self.engine.header(message), m.REJECT,
                     f"message is not {m.ENCODING}")


def server_tls(cert_file: Path | str, key_file: Path | str,
               client_ca: Path | str | None = None) -> ssl.SSLContext:
    """TLS for the engine; with client_ca, clients must present a certificate (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(args) -> None:
    state = load_seed(args.seed)
    facility = m.Facility(args.application, args.facility, "", "")
    feed, feeding = None, None
    if args.feed:
        host, _, port = args.feed.rpartition(":")
        queue = args.feed_queue or (f"{args.journal}.feed.sqlite3" if args.journal else None)
        if not (host and port.isdigit() and queue):
            raise SeedError("--feed needs HOST:PORT and a queue file (--feed-queue or --journal)")
        feed = Outbox(queue)
        # reconnects stay quick: a demo's listener comes and goes
        feeding = asyncio.create_task(Forwarder(
            feed, LinkSettings(host, int(port), connect_timeout=2.0, ack_timeout=5.0,
                               reconnect_min=0.1, reconnect_max=2.0), workers=2,
            idle_poll=0.5).run())
    engine = Engine(state, facility, Path(args.journal) if args.journal else None, feed)
    engine.errors_before_accept = args.errors_before_accept
    engine.stalled = set(args.stall_patient)
    tls = server_tls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    server = Server(engine, args.host, args.port, tls)
    await server.start()
    print(f"ehr-sim listening on {args.host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    if feeding is not None:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        feed.close()
    engine.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ehr-sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=Path, required=True, help="patients, providers (YAML)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2575, help="0: any free port (printed)")
    p.add_argument("--journal", help="file that keeps accepted messages across restarts")
    p.add_argument("--application", default="EHR", help="MSH-3 of the engine's answers")
    p.add_argument("--facility", default="PRACTICE", help="MSH-4 of the engine's answers")
    p.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--tls-client-ca", help="require client certificates from this CA")
    p.add_argument("--errors-before-accept", type=int, default=0,
                   help="answer AE this many times to each message first (tests)")
    p.add_argument("--feed", metavar="HOST:PORT",
                   help="send SIU^S12/S13/S15/S17 for every applied change to this listener")
    p.add_argument("--feed-queue", help="the feed's durable queue (default: JOURNAL.feed.sqlite3)")
    p.add_argument("--stall-patient", action="append", default=[], metavar="ID",
                   help="never answer messages about this patient (tests; repeatable)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s ehr-sim %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except SeedError as e:
        print(f"ehr-sim: {e}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
