"""The ARI application: one place where every Asterisk event is handled.

Events arrive on one WebSocket; each call runs as its own task (the
conversation in conversation.py) and gets its events routed to its CallLeg.
A failing call is logged and handed to a person; it never takes down another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .compliance import recordings, redact
from .compliance.journal import CallJournal
from .config import Config
from .conversation import converse
from .dialog.llm import LanguageModel
from .dialog.practice import Practice
from .dialog.screen import Protocols
from .ehr.link import EhrLink
from .ehr.messages import Provider
from .metrics import Metrics
from .speech.stt import SttPool
from .speech.tts import TtsPool
from .speech.turn import TurnPool
from .telephony.ari import AriClient, hand_over_orphans
from .telephony.leg import CallerGone, CallLeg, Dtmf

log = logging.getLogger("asterisk_agent.agent")

# the channel IDs of the calls the agent places (outbound), and so the names
# of their recordings
OUTBOUND_PREFIX = "outbound-"


@dataclass
class Services:
    """What a conversation needs besides its call: loaded once, shared by all calls.

    One transcription pool and one voice per language of [general] languages,
    all loaded at start-up: a missing model stops the agent before its first
    call rather than failing a caller.  The language model is the exception:
    without it (engine = none, or it failed to load) calls go on with the
    fixed phrasing.
    """

    cfg: Config
    practice: Practice
    protocols: Protocols      # the urgent-symptom screen
    stt: dict[str, SttPool]   # language -> pool
    tts: dict[str, TtsPool]   # language -> pool
    # the end-of-turn model asked at pauses (None: turns end on silence alone)
    turn: TurnPool | None = None
    ehr: EhrLink | None = None                  # started by the worker
    providers: dict[str, Provider] = field(default_factory=dict)  # names to speak
    llm: LanguageModel | None = None            # practice questions; None: fixed phrasing
    # calls, what was said, screen results: the encrypted store (None: kept nowhere,
    # for tests of the call path alone; `serve` always opens it)
    journal: CallJournal | None = None
    # safety messages being synthesized (stem -> its task), made once per process
    safety_sounds: dict[str, asyncio.Future] = field(default_factory=dict)
    # counters and histograms for /metrics (asterisk_agent/metrics.py)
    metrics: Metrics = field(default_factory=Metrics)
    ami: object | None = None  # telephony/ami.py AmiClient: can a person take a call? ([ami])

    async def close(self) -> None:
        # async for the model: its worker thread is joined, or its server session closed
        if self.llm is not None:
            await self.llm.close()
            self.llm = None
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        for pool in (*self.stt.values(), *self.tts.values()):
            pool.close()


class Placed(Protocol):
    """A call the agent places (outbound/dialer.py), as the event dispatch sees it."""

    number: str

    async def converse(self, leg: CallLeg, services: Services) -> None: ...

    def dialed(self, status: str) -> None: ...

    def ended(self, event: dict) -> None: ...


class Agent:
    def __init__(self, services: Services):
        self.services = services
        self.cfg = services.cfg
        self.calls: dict[str, CallLeg] = {}  # caller channel id -> leg
        self.tasks: set[asyncio.Task] = set()
        self.ari: AriClient | None = None
        self.connected = asyncio.Event()
        # calls we place (outbound), by channel id: see expect()
        self.placed: dict[str, Placed] = {}

    def expect(self, channel_id: str, placed: Placed) -> None:
        """A call we are placing: once answered its StasisStart runs placed.converse
        instead of the receptionist; placed.dialed hears how the ringing went
        (Dial events), placed.ended the channel's end (ChannelDestroyed)."""
        self.placed[channel_id] = placed

    async def run(self, subscribe_all: bool = False) -> None:
        """Take calls until cancelled; `subscribe_all` also brings the events of
        channels not (yet) in our application: how a placed call's ringing,
        busy or unanswered end is heard of."""
        async with AriClient(self.cfg.ari) as ari:
            self.ari = ari
            if self.services.journal is not None and self.cfg.recordings_path is not None:
                self._spawn(self._take_recordings(self.cfg.recordings_path), "recordings")
            try:
                async for event in ari.events(subscribe_all):
                    try:
                        self.dispatch(event)
                    except Exception:  # one bad event never stops the others
                        log.exception("event %s could not be handled", event.get("type"))
                        self.services.metrics.errors.labels("event").inc()
            finally:
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- events -----------------------------------------------------------------
    def _leg_of(self, channel_id: str) -> CallLeg | None:
        leg = self.calls.get(channel_id)
        if leg is None:
            leg = next((c for c in self.calls.values() if c.owns(channel_id)), None)
        return leg

    def dispatch(self, event: dict) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        cid = channel.get("id", "")
        if kind == "AgentConnected":
            self.connected.set()
            self._spawn(self._resync(), "resync")
        elif kind == "AgentDisconnected":
            self.connected.clear()
            log.warning("ARI connection lost (%s); %d call(s) live", event.get("reason"),
                        len(self.calls))
        elif kind == "StasisStart":
            leg = self._leg_of(cid)
            if cid in self.placed and leg is None:
                self._start_call(channel, event.get("args") or [])
            elif leg is not None and cid != leg.channel_id:
                leg.media_started(cid)
            elif cid.startswith(self.cfg.ari.app + "-"):
                log.info("StasisStart for a leftover media channel %s", cid)
            elif cid and cid not in self.calls:
                self._start_call(channel, event.get("args") or [])
        elif kind in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
            placed = self.placed.get(cid)
            if placed is not None and kind == "ChannelDestroyed":
                placed.ended(event)
            leg = self._leg_of(cid)
            if leg is not None and cid == leg.channel_id:
                leg.caller_left()
        elif kind == "ChannelDtmfReceived":
            leg = self._leg_of(cid)
            if leg is not None:
                leg.dtmf.put_nowait(Dtmf(str(event.get("digit", "")), asyncio.get_running_loop().time()))
        elif kind == "Dial":
            # how the ringing of a call we placed went: BUSY, NOANSWER, ...
            placed = self.placed.get((event.get("peer") or {}).get("id", ""))
            if placed is not None and event.get("dialstatus"):
                placed.dialed(str(event["dialstatus"]))
        elif kind in ("PlaybackStarted", "PlaybackFinished"):
            target = event.get("playback", {}).get("target_uri", "")
            leg = self._leg_of(target.partition(":")[2])
            if leg is not None:
                leg.playback_event(event)
        else:
            log.debug("event %s ignored", kind)

    # --- calls ------------------------------------------------------------------
    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _start_call(self, channel: dict, args: list[str]) -> None:
        assert self.ari is not None
        leg = CallLeg(self.cfg, self.ari, channel, list(args))
        placed = self.placed.get(leg.channel_id)
        if placed is not None:
            # the far party of a call we placed is the patient we rang
            leg.caller_number, leg.caller_name = placed.number, ""
        self.calls[leg.channel_id] = leg
        self._spawn(self._run_call(leg, placed), f"call-{leg.channel_id}")

    async def _run_call(self, leg: CallLeg, placed: Placed | None = None) -> None:
        log.info("call %s %s: start", leg.channel_id,
                 "placed by us" if placed else "from caller" if leg.caller_number else "from ?")
        # the caller ID is PHI: kept out of every log line until the call ends
        redact.remember(leg.caller_number, leg.caller_name, call=leg.channel_id)
        journal = self.services.journal
        if journal is not None:
            journal.call_started(leg.channel_id, leg.caller_number)
        try:
            await leg.connect_media()
            await (placed.converse(leg, self.services) if placed is not None
                   else converse(leg, self.services))
        except CallerGone:
            leg.outcome = leg.outcome if leg.outcome != "unknown" else "caller hung up"
        except asyncio.CancelledError:
            leg.outcome = "agent stopped"
            raise
        except Exception:
            log.exception("call %s failed; handing it to a person", leg.channel_id)
            self.services.metrics.errors.labels("call").inc()
            leg.outcome = "error, sent to operator"
            try:
                await leg.transfer_to_operator()
            except Exception as exc:
                log.error("call %s: could not reach the operator either: %s", leg.channel_id, exc)
        finally:
            await leg.cleanup()
            self.calls.pop(leg.channel_id, None)
            log.info("call %s: end (%s)", leg.channel_id, leg.outcome)
            self.services.metrics.calls.labels(leg.outcome).inc()
            if journal is not None:
                journal.call_ended(leg.channel_id, leg.outcome)
            redact.forget(leg.channel_id)

    async def _take_recordings(self, directory) -> None:
        """Now and then, move the recordings of finished calls into the store."""
        while True:
            try:
                await self._sweep(directory)
            except FileNotFoundError:
                log.warning("recordings: no directory %s ([recording] dir); looking again "
                            "in %g s", directory, self.cfg.recording.sweep_interval)
            except Exception:  # the next look tries again; a file is never lost
                log.exception("recordings: the look into %s failed", directory)
            await asyncio.sleep(self.cfg.recording.sweep_interval)

    async def _sweep(self, directory: Path) -> None:
        done = await self.services.journal.take_recordings(directory, live=set(self.calls))
        for r in done.imported:
            log.info("call %s: recording (%.0f s) moved into the store", r.call_id, r.seconds)
        for path, why in done.failed:
            log.error("recording %s left in place: %s", path.name, why)

    async def last_recordings(self) -> None:
        """Before a run that places calls ends: the recordings of its calls
        that have ended into the store (the sweep leaves a file alone until it
        has not changed for a few seconds).  A call put through to a person
        goes on after the run: its recording is left to the agent's sweep."""
        directory = self.cfg.recordings_path
        if self.services.journal is None or directory is None:
            return

        def ours() -> list[Path]:
            try:
                return [p for p in directory.iterdir() if p.stem.startswith(OUTBOUND_PREFIX)]
            except OSError:
                return []
        try:
            newest = max((p.stat().st_mtime for p in ours()), default=None)
        except OSError:  # taken meanwhile by the agent's sweep
            newest = time.time()
        if newest is None:
            return
        await asyncio.sleep(max(0.0, newest + recordings.SETTLE_SECONDS + 0.5 - time.time()))
        try:
            await self._sweep(directory)
        except Exception:  # the agent's next look takes them; a file is never lost
            log.exception("recordings: the last look into %s failed", directory)
        if left := ours():
            log.info("recordings: %d of calls still going on (put through to a person) "
                     "left to the agent's next look", len(left))

    async def _resync(self) -> None:
        """After every (re)connect: end calls whose channel is gone, hand strays to a person."""
        assert self.ari is not None
        try:
            live = {c["id"] for c in await self.ari.channels()}
        except Exception as exc:
            log.warning("resync: cannot list channels: %s", exc)
            return
        for leg in list(self.calls.values()):
            if leg.channel_id not in live:
                log.info("call %s: channel gone while disconnected", leg.channel_id)
                leg.caller_left()
        keep = set().union(*(leg.created_ids for leg in self.calls.values()))
        d = self.cfg.dialplan
        try:
            counts = await hand_over_orphans(self.ari, self.cfg.ari.app, d.operator_context,
                                             d.operator_extension, d.operator_priority, keep)
            if any(counts.values()):
                log.warning("handed over calls left by an earlier agent: %s", counts)
        except Exception as exc:
            log.warning("resync: %s", exc)
