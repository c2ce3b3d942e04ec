"""`asterisk-agent screen "TEXT" | -`: run the urgent-symptom screen by hand.

For practice staff reviewing their protocol files and for tests: one JSON object a
screened utterance, {"urgent", "flag", "action"} first, then what matched and the
message the agent would speak.  `-` reads one utterance a line from stdin.
Exit status 0; 78 (EX_CONFIG) when a protocol file has an error, the same status
with which the agent refuses to start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import config as config_mod
from ..supervisor import EX_CONFIG
from .screen import Finding, Protocols, ProtocolError, UnknownSpecialty, load_protocols

# the protocol files of a source checkout, when neither --protocols nor the config names them
CHECKOUT_PROTOCOLS = Path(__file__).resolve().parents[2] / "etc" / "protocols"
EX_USAGE = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", metavar="TEXT",
                        help='what the caller said, or "-" to read one utterance a line from stdin')
    parser.add_argument("--specialty",
                        help="the practice's protocol (default: [general] specialty of the "
                             "config, else general)")
    parser.add_argument("--language", choices=config_mod.LANGUAGES,
                        help="the language of the message (default: the language that matched)")
    parser.add_argument("--protocols", type=Path, metavar="DIR",
                        help="the protocol files (default: [general] protocols_dir of the config)")


def protocols_and_specialty(args: argparse.Namespace) -> tuple[Path, str]:
    """The protocol files and specialty: the options, else the config's [general]
    protocols_dir and specialty, else the checkout's etc/protocols and general."""
    directory, specialty = args.protocols, args.specialty
    path = getattr(args, "config", None)
    if path or any(p.is_file() for p in config_mod.DEFAULT_PATHS):
        cfg = config_mod.load(path)
        directory = directory or cfg.protocols_path
        specialty = specialty or cfg.general.specialty
    return directory or CHECKOUT_PROTOCOLS, specialty or "general"


def _record(finding: Finding) -> str:
    return json.dumps({"urgent": finding.urgent, "flag": finding.flag, "action": finding.action,
                       "matched": finding.matched, "language": finding.language,
                       "message": finding.message}, ensure_ascii=False)


def cmd_screen(args: argparse.Namespace) -> int:
    try:
        directory, specialty = protocols_and_specialty(args)
        protocols: Protocols = load_protocols(directory)
    except (ProtocolError, config_mod.ConfigError) as exc:
        print(f"asterisk-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    if specialty not in protocols.specialties:
        print(f"asterisk-agent: {UnknownSpecialty(specialty, protocols.names)}", file=sys.stderr)
        return EX_USAGE
    if args.text == "-":
        # a stray byte that is not UTF-8 must not end the run: it becomes U+FFFD
        sys.stdin.reconfigure(errors="replace")
    lines = sys.stdin if args.text == "-" else [args.text]
    for line in lines:
        print(_record(protocols.screen(line.rstrip("\r\n"), specialty, args.language)),
              flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asterisk-agent screen",
                                     description="Screen utterances for red flags.")
    parser.add_argument("-c", "--config", help="the configuration file")
    add_arguments(parser)
    return cmd_screen(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
