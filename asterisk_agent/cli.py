"""The `asterisk-agent` command and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from . import __version__
from . import config as config_mod
from .supervisor import EX_CONFIG  # a start-up error a restart cannot fix


def _setup_logging(level: str, cfg: config_mod.Config | None = None) -> None:
    # one place sets logging up: structlog renders every record, PHI removed
    from . import logs

    if cfg is None:
        logs.setup(level)
    else:
        logs.setup_from_config(cfg, level)


def _load_config(args) -> config_mod.Config:
    return config_mod.load(args.config)


# --- serve ----------------------------------------------------------------------
def cmd_serve(args) -> int:
    cfg = _load_config(args)
    _setup_logging(args.log_level or cfg.general.log_level, cfg)
    # supervisor and worker alike: no connection outside the configured hosts
    from .compliance import egress

    egress.install(egress.allowed_hosts(cfg))
    if not args.worker:
        from .supervisor import supervise

        worker = [sys.executable, "-m", "asterisk_agent", "serve", "--worker"]
        if args.config:
            worker += ["--config", str(Path(args.config).resolve())]
        if args.log_level:
            worker += ["--log-level", args.log_level]
        return supervise(worker, cfg)
    return asyncio.run(_serve_worker(cfg))


async def load_services(cfg: config_mod.Config, llm: bool = True):
    """Load the practice file and the models once; any problem is fatal and clear,
    but for the language model, without which calls go on with fixed phrasing
    (and which outbound calls, with their fixed questions, do without)."""
    from .agent import Services
    from .dialog import practice, screen
    from .speech.stt import SttPool, load_transcriber
    from .speech.tts import TtsPool, load_synthesizer
    from .speech.turn import load_turn_pool

    facts = practice.load(cfg.practice_path)
    protocols = screen.load_protocols(cfg.protocols_path)
    if cfg.general.specialty not in protocols.specialties:
        raise config_mod.ConfigError(
            f"[general] specialty = {cfg.general.specialty}: no such protocol file in "
            f"{cfg.protocols_path} (there are: {', '.join(protocols.names)})", cfg.path)
    stt, tts = {}, {}
    for language in cfg.general.languages:
        stt[language] = SttPool(load_transcriber(cfg.stt.for_language(language)),
                                workers=cfg.stt.workers)
        voice = cfg.tts.for_language(language)
        tts[language] = TtsPool(load_synthesizer(voice), workers=cfg.tts.workers)
        logging.getLogger("asterisk_agent").info(
            "language %s: speech-to-text %s, voice %s%s", language, stt[language].transcriber.name,
            voice.engine, f" {voice.voice}" if voice.voice else "")
    cfg.sounds.dir.mkdir(parents=True, exist_ok=True)
    providers = {}
    if cfg.provider_hours_path is not None:
        from .dialog.receptionist import load_providers

        providers = load_providers(cfg.provider_hours_path)
    turn = load_turn_pool(cfg.vad.turn_model, cfg.vad.turn_threshold,
                          cfg.vad.complete_ms)
    return Services(cfg=cfg, practice=facts, protocols=protocols, stt=stt, tts=tts, turn=turn,
                    providers=providers, llm=await _open_llm(cfg, facts) if llm else None)


async def open_services(cfg: config_mod.Config, llm: bool = True, audit_config: bool = False):
    """The encrypted store, the models (load_services) and the started EHR link:
    what `serve` and `outbound run` take calls with."""
    from .compliance.journal import CallJournal
    from .compliance.store import open_store
    from .ehr.link import EhrLink

    # the store first: without its key no call is taken (nothing would be kept)
    journal = CallJournal(open_store(cfg.store_path, cfg.store_key_path))
    try:
        services = await load_services(cfg, llm)
        if audit_config:
            changed = await asyncio.to_thread(journal.config_files, _config_files(cfg))
            if changed:
                logging.getLogger("asterisk_agent").info(
                    "configuration changed since the last start (audited): %s",
                    ", ".join(changed))
    except BaseException:
        await journal.close()
        raise
    services.journal = journal
    # the link connects on first use: an engine that is down now costs no call
    # but the lookups it cannot answer (those callers go to a person), and what
    # callers ask for waits in the outbox
    services.ehr = EhrLink(cfg, store=journal.store)
    await services.ehr.start()
    return services


async def _open_llm(cfg: config_mod.Config, facts):
    """The [llm] model, loaded and warmed up with the practice facts; None for
    engine = none or when it cannot run (logged: the agent still takes calls)."""
    from .dialog.llm import LlmError, open_language_model, practice_facts
    from .dialog.receptionist import MAPPING_TRIALS

    log = logging.getLogger("asterisk_agent")
    if cfg.llm.engine == "none":
        log.info("language model: none ([llm] engine = none): fixed phrasing only")
        return None
    try:
        return await open_language_model(
            cfg.llm, {language: practice_facts(facts, language)
                      for language in cfg.general.languages}, choices=MAPPING_TRIALS)
    except LlmError as exc:
        log.error("language model unavailable, answering with fixed phrasing only: %s", exc)
    except Exception as exc:  # an optional part: it never stops the agent
        log.exception("language model unavailable (%s), answering with fixed phrasing only",
                      type(exc).__name__)
    return None


def _config_files(cfg: config_mod.Config) -> dict[str, Path]:
    """The files whose every change the audit trail records (by the agent's start)."""
    files = {"practice": cfg.practice_path}
    if cfg.path is not None:
        files["config"] = cfg.path
    if cfg.provider_hours_path is not None:
        files["provider hours"] = cfg.provider_hours_path
    for protocol in sorted(cfg.protocols_path.glob("*.yaml")):
        files[f"protocols/{protocol.name}"] = protocol
    return files


async def _serve_worker(cfg: config_mod.Config) -> int:
    from .agent import Agent
    from .conversation import warm_safety_sounds
    from .telephony.ami import AmiClient

    # AMI's secret before anything opens: a missing or readable secret file is a
    # configuration error, as for the store's key
    ami = AmiClient.from_config(cfg) if cfg.ami.username else None
    services = await open_services(cfg, audit_config=True)
    if ami is not None:
        # logs in in the background: an AMI that is down costs only its checks
        services.ami = ami
        ami.start()
    log = logging.getLogger("asterisk_agent")
    # every safety message ready before the first caller: a red flag is then
    # put through to the on-call without waiting on the voice
    started = time.perf_counter()
    await warm_safety_sounds(services)
    log.info("safety messages ready in %.1f s", time.perf_counter() - started)
    log.info("asterisk-agent %s: models loaded (languages %s, default %s); "
             "connecting to %s as app %s", __version__, ", ".join(cfg.general.languages),
             cfg.general.language, cfg.ari.url, cfg.ari.app)
    agent = Agent(services)
    server = await _start_metrics(cfg, agent)
    agi = await _start_agi(cfg, agent)
    try:
        await agent.run()
    finally:
        if agi is not None:
            await agi.close()
        if server is not None:
            await server.close()
        if ami is not None:
            await ami.close()
        await services.ehr.close()
        await services.close()
    return 0


async def _start_metrics(cfg, agent):
    """The /metrics and /health endpoint ([metrics] listen); a port in use costs
    the endpoint, never the calls."""
    from .metrics import MetricsServer, parse_listen

    where = parse_listen(cfg.metrics.listen)
    if where is None:
        return None
    s = agent.services
    m = s.metrics
    m.watch_calls(lambda: len(agent.calls))
    m.ari_connected.set_function(lambda: agent.connected.is_set())
    for language, pool in s.stt.items():
        m.watch_queue("stt", language, lambda pool=pool: pool.depth)
    for language, pool in s.tts.items():
        m.watch_queue("tts", language, lambda pool=pool: pool.depth)
    m.watch_queue("llm", "", lambda: s.llm.depth if s.llm is not None else 0)
    outbox = s.ehr.outbox if s.ehr is not None else None
    if outbox is not None:
        for state in ("pending", "failed"):
            m.watch_outbox(state, lambda state=state: outbox.count(state))

    def health() -> dict:
        connected = agent.connected.is_set()
        return {"ok": connected, "ari_connected": connected, "live_calls": len(agent.calls),
                "version": __version__}

    server = MetricsServer(m, health)
    try:
        await server.start(*where)
    except OSError as exc:
        logging.getLogger("asterisk_agent").warning(
            "metrics: cannot listen on %s (%s); running without /metrics", cfg.metrics.listen, exc)
        return None
    logging.getLogger("asterisk_agent").info(
        "metrics on http://%s:%d/metrics, health on /health", where[0], server.port)
    return server


async def _start_agi(cfg, agent):
    """The FastAGI entry ([agi] listen) for dialplans that use AGI(); a port in
    use costs that entry (those callers go to the operator), never the calls
    that come through Stasis()."""
    from .metrics import parse_listen
    from .telephony.agi import ROUTE, AgiServer

    where = parse_listen(cfg.agi.listen)
    if where is None:
        return None
    server = AgiServer(agent.services, ari_connected=agent.connected.is_set)
    try:
        await server.start(*where)
    except OSError as exc:
        logging.getLogger("asterisk_agent").warning(
            "agi: cannot listen on %s (%s); running without FastAGI", cfg.agi.listen, exc)
        return None
    logging.getLogger("asterisk_agent").info(
        "FastAGI on agi://%s:%d/%s", where[0], server.port, ROUTE)
    return server


# --- pbx ------------------------------------------------------------------------
def cmd_pbx(args) -> int:
    from .pbx.sandbox import Sandbox

    cfg = _load_config(args)
    _setup_logging("info")
    box = Sandbox(cfg)
    if args.action == "up":
        box.up()
        print(json.dumps(box.status(), indent=2))
    elif args.action == "down":
        box.down()
    elif args.action == "restart":
        box.restart()
    else:
        status = box.status()
        print(json.dumps(status, indent=2))
        return 0 if status.get("running") else 3
    return 0


# --- call -----------------------------------------------------------------------
def cmd_call(args) -> int:
    from .caller.scenario import main_call

    cfg = _load_config(args)
    _setup_logging(args.log_level or "warning")
    return main_call(args.scenarios, cfg, args.json)


# --- ehr ------------------------------------------------------------------------
def cmd_ehr(args) -> int:
    from .ehr import cli as ehr_cli

    cfg = _load_config(args)
    _setup_logging("warning")
    return ehr_cli.cmd_ehr(args, ehr_cli.apply_config(args, cfg))


# --- screen -------------------------------------------------------------------
def cmd_screen(args) -> int:
    from .dialog.screen_cli import cmd_screen as screen

    return screen(args)


# --- keys, users, audit -------------------------------------------------------
def cmd_compliance(args) -> int:
    from .compliance import cli as compliance_cli

    cfg = _load_config(args)
    return getattr(compliance_cli, f"cmd_{args.command}")(args, cfg)


# --- outbound -------------------------------------------------------------------
def cmd_outbound(args) -> int:
    from .outbound import cli as outbound_cli

    cfg = _load_config(args)
    if args.action == "run":
        _setup_logging(args.log_level or cfg.general.log_level, cfg)
        from .compliance import egress

        egress.install(egress.allowed_hosts(cfg))
    else:
        _setup_logging("warning")
    return outbound_cli.cmd_outbound(args, cfg)


# --- models -------------------------------------------------------------------
def cmd_models(args) -> int:
    """Find every packaged Whisper model and make its whisper.cpp file (cached)."""
    from .speech import ModelError
    from .speech.models import (WHISPER_MODELS, prepare_turn_model, whisper_ggml,
                                whisper_model_sources)

    _setup_logging("warning")
    failed = 0
    for name in WHISPER_MODELS:
        try:
            whisper_model_sources(name)
            ggml = whisper_ggml(name)
            print(f"ok    {name}: whisper.cpp file {ggml} ({ggml.stat().st_size // 2**20} MiB)")
        except ModelError as exc:
            failed += 1
            print(f"FAIL  {name}: {exc}")
    try:
        turn = prepare_turn_model()
        print(f"ok    smart-turn: end-of-turn model {turn} ({turn.stat().st_size // 2**20} MiB)")
    except ModelError as exc:
        failed += 1
        print(f"FAIL  smart-turn: {exc}")
    return 1 if failed else 0


# --- status -------------------------------------------------------------------
def cmd_status(args) -> int:
    """Is the agent's ARI application registered with Asterisk (optionally: wait for it)?"""
    cfg = _load_config(args)
    _setup_logging("error")
    state = asyncio.run(_app_state(cfg, args.wait))
    print(json.dumps(state))
    return 0 if state["app_registered"] else 1


# --- calls ----------------------------------------------------------------------
def cmd_calls(args) -> int:
    """The agent's live calls from AMI, without caller IDs."""
    from .telephony.calls_cli import cmd_calls as calls

    cfg = _load_config(args)
    _setup_logging("error")
    return calls(args, cfg)


async def _app_state(cfg: config_mod.Config, wait: float) -> dict:
    from .telephony.ari import AriClient, AriError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    state = {"ari": cfg.ari.url, "app": cfg.ari.app, "reachable": False, "app_registered": False}
    async with AriClient(cfg.ari) as ari:
        while True:
            try:
                apps = await ari.applications()
                state["reachable"] = True
                state["app_registered"] = any(a.get("name") == cfg.ari.app for a in apps)
            except AriError as exc:
                state["error"] = str(exc)
            if state["app_registered"] or loop.time() >= deadline:
                return state
            await asyncio.sleep(0.5)


# --- doctor ---------------------------------------------------------------------
def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    _setup_logging("warning")
    return run_doctor(args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asterisk-agent", description="An on-premise AI phone agent for Asterisk.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config_help = f"the configuration file (default: {config_mod.DEFAULT_PATHS[0]})"
    parser.add_argument("-c", "--config", help=config_help)
    # also accepted after the subcommand; SUPPRESS keeps it from undoing one given before
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help=config_help, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the ARI application")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--worker", action="store_true",
                   help="run the call-handling process itself, without its supervisor")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("pbx", parents=[common], help="the sandbox Asterisk for demos and tests")
    p.add_argument("action", choices=("up", "down", "restart", "status"))
    p.set_defaults(func=cmd_pbx)

    p = sub.add_parser("call", parents=[common],
                       help="place a scripted SIP call into the sandbox PBX")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    p.add_argument("--json", action="store_true", help="print one JSON object per scenario")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("status", parents=[common],
                       help="is the agent connected to Asterisk (exit 0 when it is)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait up to this long for the agent to connect")
    p.set_defaults(func=cmd_status)

    from .telephony.calls_cli import add_arguments as calls_arguments

    p = sub.add_parser("calls", parents=[common],
                       help="the agent's live calls, from AMI (no caller IDs; exit 2 without AMI)")
    calls_arguments(p)
    p.set_defaults(func=cmd_calls)

    from .ehr.cli import add_arguments as ehr_arguments

    p = sub.add_parser("ehr", parents=[common],
                       help="the EHR link: check it, list or send the outbox")
    ehr_arguments(p)
    p.set_defaults(func=cmd_ehr)

    from .dialog.screen_cli import add_arguments as screen_arguments

    p = sub.add_parser("screen", parents=[common],
                       help="screen what a caller said for urgent symptoms (prints JSON)")
    screen_arguments(p)
    p.set_defaults(func=cmd_screen)

    from .compliance import cli as compliance_cli

    for name, help_, add in (
            ("keys", "the encrypted store's key: make it, rotate it",
             compliance_cli.add_keys_arguments),
            ("users", "compliance users and their roles", compliance_cli.add_users_arguments),
            ("audit", "show, verify or export the audit trail",
             compliance_cli.add_audit_arguments),
            ("retention", "purge transcripts and recordings past [compliance] retention_days",
             compliance_cli.add_retention_arguments)):
        p = sub.add_parser(name, parents=[common], help=help_)
        add(p)
        p.set_defaults(func=cmd_compliance)

    from .outbound.cli import add_arguments as outbound_arguments

    p = sub.add_parser("outbound", parents=[common],
                       help="outbound campaigns: check a campaign file, or place its calls")
    outbound_arguments(p)
    p.set_defaults(func=cmd_outbound)

    p = sub.add_parser("models", parents=[common],
                       help="check the packaged speech models and prepare their whisper.cpp files")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("doctor", parents=[common],
                       help="check config, models, ARI, dialplan and sounds directory")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before anything imports a model library: they read it at import
    from .compliance.egress import set_offline

    set_offline()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config_mod.ConfigError as exc:
        print(f"asterisk-agent: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .dialog.practice import PracticeError
        from .dialog.screen import ProtocolError
        from .compliance.store import StoreError
        from .speech import ModelError

        if isinstance(exc, (PracticeError, ProtocolError, ModelError, StoreError)):
            print(f"asterisk-agent: {exc}", file=sys.stderr)
            return EX_CONFIG
        raise


if __name__ == "__main__":
    sys.exit(main())
