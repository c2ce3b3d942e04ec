"""`asterisk-agent ehr check | outbox | send`, for the lead to wire into cli.py.

check   connect, send a harmless query (a patient search that matches no one),
        print the round-trip time and the engine's answer
outbox  list pending and failed messages: type, control ID, attempts, error;
        never the message text (PHI)
send    deliver everything pending, then exit
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from asterisk_agent.ehr import messages
from asterisk_agent.ehr.mllp import LinkError, LinkSettings, MllpClient, client_tls
from asterisk_agent.ehr.outbox import Outbox, drain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "outbox", "send"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2575)
    parser.add_argument("--outbox", type=Path, default=Path("ehr-outbox.sqlite3"),
                        help="the outbox file")
    parser.add_argument("--tls-ca", help="verify the engine against this CA (enables TLS)")
    parser.add_argument("--tls-cert", help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument("--timeout", type=float, default=5.0)


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
    outbox = Outbox(args.outbox)
    try:
        if args.action == "outbox":
            entries = outbox.entries()
            for e in entries:
                print(f"{e.state:8} {e.kind:8} {e.control_id:20} attempts={e.attempts}"
                      f"{'  ' + e.error if e.error else ''}")
            print(f"{sum(e.state == 'pending' for e in entries)} pending, "
                  f"{sum(e.state == 'failed' for e in entries)} failed")
            return 0
        asyncio.run(drain(outbox, MllpClient(settings_from(args))))
        return 0
    finally:
        outbox.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asterisk-agent ehr", description=__doc__)
    add_arguments(parser)
    return cmd_ehr(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
