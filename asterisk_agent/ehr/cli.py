"""`asterisk-agent ehr check | outbox | send`.

check   connect, send a harmless query (a patient search that matches no one),
        print the round-trip time and the engine's answer
outbox  list pending and failed messages: control ID, type, status, attempts,
        last error, age; never names, dates of birth or free text (PHI).
        --phi shows the messages themselves: it needs a user with the
        compliance role (--user NAME, or [compliance] credentials_file), and
        every such look is an audit record naming the messages shown
send    deliver everything pending, then exit
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from asterisk_agent import config
from asterisk_agent.compliance.cli import EX_REFUSED, login_for
from asterisk_agent.compliance.store import StoreError, open_store
from asterisk_agent.compliance.users import AuthError
from asterisk_agent.ehr import messages
from asterisk_agent.ehr.mllp import LinkError, LinkSettings, MllpClient, client_tls
from asterisk_agent.ehr.outbox import Entry, Outbox, drain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line; options left out take the [ehr] settings of the config."""
    parser.add_argument("action", choices=("check", "outbox", "send"))
    parser.add_argument("--host", help="the interface engine (default: [ehr] host)")
    parser.add_argument("--port", type=int, help="its MLLP port (default: [ehr] port)")
    parser.add_argument("--outbox", type=Path,
                        help="a plain outbox file (default: the agent's, in the encrypted store)")
    parser.add_argument("--tls-ca", help="verify the engine against this CA (enables TLS)")
    parser.add_argument("--tls-cert", help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument("--timeout", type=float, help="seconds (default: [ehr] connect_timeout)")
    parser.add_argument("--phi", action="store_true",
                        help="outbox: show the messages themselves; needs a user with the "
                             "compliance role, and is audited")
    parser.add_argument("--user", help="--phi: log in as this user (asks for the password)")


def apply_config(args: argparse.Namespace, cfg: config.Config) -> messages.Facility:
    """Fill what the command line left out from the config; the facility names too."""
    e = cfg.ehr
    args.host = args.host or e.host
    args.port = args.port or e.port
    args.store = (cfg.store_path, cfg.store_key_path)
    args.cfg = cfg
    args.tls_ca = args.tls_ca or e.tls_ca_file or None
    args.tls_cert = args.tls_cert or e.tls_cert_file or None
    args.tls_key = args.tls_key or e.tls_key_file or None
    args.timeout = args.timeout or e.connect_timeout
    return messages.Facility(e.sending_application, e.sending_facility,
                             e.receiving_application, e.receiving_facility)


def settings_from(args) -> LinkSettings:
    tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    return LinkSettings(args.host, args.port, connect_timeout=args.timeout,
                        ack_timeout=args.timeout, tls=tls)


async def check(settings: LinkSettings, facility: messages.Facility) -> tuple[float, messages.Ack]:
    text = messages.find_patient(messages.header(facility), "ZZCHECK", "ZZCHECK", None)
    async with MllpClient(settings) as client:
        await client.connect()
        start = time.perf_counter()
        ack = await client.send(text)
        return time.perf_counter() - start, ack


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h" if seconds < 172800 else f"{seconds / 86400:.0f}d"


def outbox_table(entries: list[Entry], now: float | None = None) -> str:
    """The outbox without PHI: never the message, the patient ID or free text.

    The engine's error text is cut short: engines echo field values in it.
    """
    now = time.time() if now is None else now
    lines = [f"{'CONTROL ID':20} {'TYPE':8} {'STATUS':8} {'TRIES':>5} {'AGE':>5}  LAST ERROR"]
    for e in entries:
        error = e.error if len(e.error) <= 60 else e.error[:57] + "..."
        lines.append(f"{e.control_id:20} {e.kind:8} {e.state:8} {e.attempts:5d} "
                     f"{_age(now - e.created):>5}  {error}")
    return "\n".join(lines)


def cmd_ehr(args, facility: messages.Facility | None = None) -> int:
    facility = facility or messages.Facility()
    if args.action == "check":
        try:
            seconds, ack = asyncio.run(check(settings_from(args), facility))
        except LinkError as e:
            print(f"EHR link: FAILED: {e}")
            return 1
        status = messages._get(ack.message, "QAK", 2) if ack.message is not None else ""
        print(f"EHR link: {args.host}:{args.port} answered {ack.code}"
              f"{' (' + status + ')' if status else ''}{' ' + ack.error if ack.error else ''}"
              f" in {seconds * 1000:.1f} ms")
        return 0 if ack.accepted else 1
    phi = getattr(args, "phi", False)
    if phi and args.action != "outbox":
        print(f"ehr {args.action}: --phi is for ehr outbox", file=sys.stderr)
        return 2
    store = None
    try:
        if args.outbox is None or phi:
            # users and the audit trail live in the store, whichever outbox is read
            store = open_store(*args.store, create=False)
    except StoreError as exc:
        print(f"asterisk-agent: {exc}", file=sys.stderr)
        return EX_REFUSED
    outbox = Outbox(args.outbox) if args.outbox is not None else Outbox(store=store)
    try:
        if phi:
            return _show_phi(args, store, outbox)
        if args.action == "outbox":
            entries = outbox.entries()
            print(outbox_table(entries))
            print(f"{sum(e.state == 'pending' for e in entries)} pending, "
                  f"{sum(e.state == 'failed' for e in entries)} failed")
            return 0
        asyncio.run(drain(outbox, settings_from(args), getattr(args, "workers", 4)))
        return 0
    finally:
        outbox.close()
        if store is not None:
            store.close()


def _show_phi(args, store, outbox: Outbox) -> int:
    """Pending and failed messages in full, for a logged-in compliance user; the
    audit trail names who looked at which messages."""
    try:
        audit, user = login_for(args.cfg, store, args, "ehr outbox --phi", "outbox.read")
    except (AuthError, StoreError) as exc:
        print(f"asterisk-agent: {exc}", file=sys.stderr)
        return EX_REFUSED
    entries = outbox.entries()
    # one record a patient, so an export of a patient's records shows who saw theirs
    shown: dict[str, list[str]] = {}
    for e in entries:
        shown.setdefault(e.patient_id, []).append(e.control_id)
    with store.transaction() as db:
        for patient, control_ids in (shown or {"": []}).items():
            audit.write(db, "ehr.outbox.read", user.name, patient=patient or None,
                        detail={"messages": control_ids})
    for e in entries:
        print(f"--- {e.control_id} {e.kind} {e.state} (tries {e.attempts})"
              f"{': ' + e.error if e.error else ''}")
        print(e.message.replace("\r", "\n").rstrip("\n"))
    print(f"{sum(e.state == 'pending' for e in entries)} pending, "
          f"{sum(e.state == 'failed' for e in entries)} failed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asterisk-agent ehr", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return cmd_ehr(args, apply_config(args, config.Config()))


if __name__ == "__main__":
    raise SystemExit(main())
