"""`asterisk-agent calls`: the agent's live calls, as AMI reports them.

One row a channel of the agent (a caller in Stasis, its media channel, a
caller on the way to a person): its id (the ARI channel id the agent's log
lines use), the id of the call it belongs to, state, how long it has been up,
where it is in the dialplan and whether it is bridged.  No caller's number or
name is shown (those are PHI).  Exit status 0; 2 when AMI is not configured
([ami] username) or cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ..config import Config, ConfigError
from .ami import AmiClient, AmiError

# seconds the listing may take: a busy PBX answers a person more slowly than a call needs
LIST_TIMEOUT_S = 5.0
COLUMNS = (("id", "ID"), ("call", "CALL"), ("tech", "TECH"), ("state", "STATE"),
           ("seconds", "TIME"), ("context", "CONTEXT"), ("application", "APPLICATION"),
           ("bridged", "BRIDGED"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the calls as one JSON list")


def table(rows: list[dict]) -> str:
    """The rows as aligned text columns; a line saying so when there are none."""
    if not rows:
        return "no live calls"

    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if key == "bridged":
            return "yes" if value else "no"
        if key == "seconds":
            return "?" if value is None else f"{value // 60}:{value % 60:02d}"
        return str(value or "-")

    lines = [[title for _, title in COLUMNS]] + [[cell(r, key) for key, _ in COLUMNS]
                                                 for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()
                     for line in lines)


def cmd_calls(args: argparse.Namespace, cfg: Config) -> int:
    if not cfg.ami.username:
        print("asterisk-agent calls: AMI is not configured: set [ami] username and "
              "secret_file to a manager.conf user (see etc/asterisk/manager.conf)",
              file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_live_calls(cfg))
    except (AmiError, ConfigError) as exc:
        print(f"asterisk-agent calls: no calls from AMI at {cfg.ami.host}:{cfg.ami.port}: "
              f"{exc}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0


async def _live_calls(cfg: Config) -> list[dict]:
    async with AmiClient.from_config(cfg) as ami:
        return await ami.live_calls(timeout=max(cfg.ami.timeout, LIST_TIMEOUT_S))
