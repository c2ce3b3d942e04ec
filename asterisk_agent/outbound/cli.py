"""`asterisk-agent outbound check|run CAMPAIGN`.

check reads a campaign as a run would: it prints each bad row with its line,
the rows kept out (the do-not-call list) and, for every good row, the first
moment it may ring under the calling hours, in the patient's time.

run places the calls (dialer.py) until each has its outcome, then writes the
report, one row a patient (CSV, to --report or standard output).  It runs
beside `asterisk-agent serve` as an ARI application of its own ([outbound]
app); Ctrl-C lets the live calls finish and reports.

Exit 0 when every row is good, 1 when some are bad (the good ones are still
called), 2 when the file or the set-up cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import signal
import sys
from pathlib import Path

from .. import config
from ..dialog import practice
from .campaign import (Campaign, CampaignError, DialRules, Rules, load_campaign, parse_window,
                       read_do_not_call)
from .procedures import DAY_OFFSET, from_schedule, procedure_day
from ..ehr.link import LinkError
from .plan import Planner, report_csv

EX_BAD_ROWS = 1
EX_UNUSABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "run"),
                        help="check: read the campaign and say when each call would ring; "
                             "run: place the calls and report each one's outcome")
    parser.add_argument("campaign", type=Path, nargs="?",
                        help="the campaign file (.csv or .yaml)")
    parser.add_argument("--from-schedule", choices=tuple(DAY_OFFSET),
                        help="run: instead of a file, the patients with a procedure on --day "
                             "in the EHR's SIU feed ([ehr] feed_port): pre-op calls about "
                             "tomorrow's, post-op calls about yesterday's")
    parser.add_argument("--day", type=dt.date.fromisoformat,
                        help="--from-schedule: the day of the procedures (YYYY-MM-DD)")
    parser.add_argument("--at", help="check: plan as if it were this moment (ISO 8601; "
                                     "default: now)")
    parser.add_argument("--report", type=Path,
                        help="run: write the outcome report (CSV) here (default: standard output)")
    parser.add_argument("--log-level", help="run: debug, info, warning or error")


def rules_from(cfg: config.Config) -> Rules:
    """The campaign rules of the config ([outbound]) and the practice's time zone."""
    o = cfg.outbound
    dnc = read_do_not_call(cfg.do_not_call_path) if cfg.do_not_call_path else frozenset()
    return Rules(DialRules(o.allowed_numbers), parse_window(o.calling_hours),
                 practice.load(cfg.practice_path).timezone, dnc, cfg.general.languages)


def planner_for(cfg: config.Config, campaign) -> Planner:
    o = cfg.outbound
    return Planner(campaign, max_concurrent=o.max_concurrent, attempts=o.attempts,
                   retry_after=dt.timedelta(seconds=o.retry_after), calling_days=o.calling_days)


def cmd_outbound(args: argparse.Namespace, cfg: config.Config) -> int:
    if (args.campaign is None) == (args.from_schedule is None) or (
            args.from_schedule and args.action != "run"):
        print("outbound: give a campaign file, or (outbound run) --from-schedule pre-op|post-op",
              file=sys.stderr)
        return EX_UNUSABLE
    try:
        rules = rules_from(cfg)
        if args.from_schedule:
            return _run(args, cfg, None, rules)
        campaign = load_campaign(args.campaign, rules)
    except (CampaignError, practice.PracticeError) as exc:
        print(f"outbound: {exc}", file=sys.stderr)
        return EX_UNUSABLE
    if args.action == "run":
        return _run(args, cfg, campaign, rules)
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


def outbound_config(cfg: config.Config) -> config.Config:
    """The config as `outbound run` uses it: ARI as its own application, and no
    SIU feed listener (`serve` has it; the schedule it keeps is read from its file)."""
    return dataclasses.replace(cfg, ari=dataclasses.replace(cfg.ari, app=cfg.outbound.app),
                               ehr=dataclasses.replace(cfg.ehr, feed_port=0))


def _run(args: argparse.Namespace, cfg: config.Config, campaign, rules: Rules) -> int:
    if not cfg.outbound.dial:
        print("outbound: set [outbound] dial, how Asterisk reaches a patient "
              "(e.g. PJSIP/{number}@my-trunk)", file=sys.stderr)
        return EX_UNUSABLE
    built: list = []
    if campaign is None:
        source = functools.partial(schedule_campaign, args.from_schedule, args.day, cfg, rules,
                                   built)
    else:
        source = campaign
        built.append(campaign)
        for error in campaign.errors:
            print(f"{args.campaign}, {error}", file=sys.stderr)
    try:
        rows = asyncio.run(run_campaign(outbound_config(cfg), source))
    except (LinkError, TimeoutError, CampaignError) as exc:
        print(f"outbound: {exc or 'Asterisk did not answer on ARI'}", file=sys.stderr)
        return EX_UNUSABLE
    text = report_csv(rows)
    if args.report:
        args.report.write_text(text)
    else:
        sys.stdout.write(text)
    return EX_BAD_ROWS if built and built[0].errors else 0


async def schedule_campaign(call_type: str, day: dt.date | None, cfg: config.Config,
                            rules: Rules, built: list, ehr) -> Campaign:
    """The campaign of the procedures on `day` in the schedule kept from the SIU feed."""
    from ..ehr.schedule import Schedule

    path = cfg.in_state_dir(cfg.ehr.schedule_file)
    if not cfg.ehr.feed_port or not path.is_file():
        raise CampaignError(
            "--from-schedule reads the schedule the agent keeps from the EHR's SIU feed: set "
            f"[ehr] feed_port and let `asterisk-agent serve` receive the feed (no {path} yet)")
    schedule = await asyncio.to_thread(Schedule, path, {})
    try:
        appointments = await asyncio.to_thread(schedule.appointments)
    finally:
        await asyncio.to_thread(schedule.close)
    today = dt.datetime.now(rules.timezone).date()
    day = day or procedure_day(call_type, today)
    campaign = await from_schedule(appointments, call_type, day, today, ehr.patient, rules,
                                   cfg.outbound.procedure_reasons)
    built.append(campaign)
    print(f"outbound: {len(campaign.calls)} {call_type} call(s) for the procedures of {day}",
          file=sys.stderr)
    for error in campaign.errors:
        print(f"schedule of {day}, {error}", file=sys.stderr)
    return campaign


async def run_campaign(cfg: config.Config, campaign, clock=None) -> list[dict[str, str]]:
    """Load the voices and the EHR link, connect to ARI, place every call; the report.

    `campaign` is a Campaign, or an async function that makes one from the EHR link."""
    from ..agent import Agent
    from ..cli import open_services
    from .dialer import Dialer

    services = await open_services(cfg, llm=False)
    if not isinstance(campaign, Campaign):
        try:
            campaign = await campaign(services.ehr)
        except BaseException:
            await services.ehr.close()
            await services.close()
            raise
    agent = Agent(services)
    taking = asyncio.ensure_future(agent.run(subscribe_all=True))
    try:
        dialer = Dialer(agent, planner_for(cfg, campaign), clock=clock)
        # Ctrl-C, or systemd stopping the run: the live calls finish, the report is written
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, dialer.stop)
        report = await dialer.run()
        await agent.last_recordings()
        return report
    finally:
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        await services.ehr.close()
        await services.close()
