"""`asterisk-agent outbound check CAMPAIGN`: read a campaign as a run would.

Prints each bad row with its line, the rows kept out (the do-not-call list)
and, for every good row, the first moment it may ring under the calling
hours, in the patient's time.  Exit 0 when every row is good, 1 when some
are bad (the good ones would still be called), 2 when the file cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from .. import config
from ..dialog import practice
from .campaign import CampaignError, DialRules, Rules, load_campaign, parse_window, read_do_not_call
from .plan import Planner

EX_BAD_ROWS = 1
EX_UNUSABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check",))
    parser.add_argument("campaign", type=Path, help="the campaign file (.csv or .yaml)")
    parser.add_argument("--at", help="plan as if it were this moment (ISO 8601; default: now)")


def rules_from(cfg: config.Config) -> Rules:
    """The campaign rules of the config ([outbound]) and the practice's time zone."""
    o = cfg.outbound
    dnc = read_do_not_call(cfg.do_not_call_path) if cfg.do_not_call_path else frozenset()
    return Rules(DialRules(o.allowed_numbers), parse_window(o.calling_hours),
                 practice.load(cfg.practice_path).timezone, dnc)


def planner_for(cfg: config.Config, campaign) -> Planner:
    o = cfg.outbound
    return Planner(campaign, max_concurrent=o.max_concurrent, attempts=o.attempts,
                   retry_after=dt.timedelta(seconds=o.retry_after), calling_days=o.calling_days)


def cmd_outbound(args: argparse.Namespace, cfg: config.Config) -> int:
    try:
        rules = rules_from(cfg)
        campaign = load_campaign(args.campaign, rules)
    except (CampaignError, practice.PracticeError) as exc:
        print(f"outbound: {exc}", file=sys.stderr)
        return EX_UNUSABLE
    try:
        now = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(rules.timezone)
    except ValueError:
        print(f"outbound: --at {args.at!r} is not an ISO 8601 moment", file=sys.stderr)
        return EX_UNUSABLE
    if now.tzinfo is None:
        now = now.replace(tzinfo=rules.timezone)
    for error in campaign.errors:
        print(f"{args.campaign}, {error}", file=sys.stderr)
    plan = planner_for(cfg, campaign)
    print(f"campaign {campaign.name}: {len(campaign.calls)} call(s), "
          f"{len(campaign.kept_out)} kept out, {len(campaign.errors)} bad row(s)")
    for call, why in campaign.kept_out:
        print(f"  line {call.line}: {call.patient} {call.type}: kept out, {why}")
    for p in plan.plans:
        c = p.call
        opening = plan.opening(c, now)
        when = (opening.astimezone(c.timezone).isoformat(timespec="minutes")
                if opening else "not within the next 8 days")
        print(f"  line {c.line}: {c.patient} {c.type} {c.number}: "
              f"{'may ring now' if opening == now else 'first rings ' + when}")
    return EX_BAD_ROWS if campaign.errors else 0
