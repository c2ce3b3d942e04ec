"""One caller's channel, as the conversation sees it.

A CallLeg owns what the agent created for the call (the bridge, the
externalMedia channel, the RTP receiver, the sentence files) and gives the
conversation a small vocabulary: answer, play, stop, transfer, hang up, and
the events of the call (DTMF digits, finished playbacks, the caller leaving).
Everything it creates it also removes, however the call ends.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from .ari import AriClient, AriError
from .rtp import RtpReceiver

log = logging.getLogger("asterisk_agent.call")


class CallerGone(Exception):
    """The caller hung up (or the channel vanished) while we were working."""


@dataclass(frozen=True)
class Dtmf:
    digit: str
    at: float


@dataclass
class Playback:
    id: str
    path: Path | None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "queued"  # queued, playing, done, failed, stopped
    # it began to play: the caller heard at least part of it (a caller who hangs
    # up mid-sentence fails it afterwards)
    started: bool = False


class CallLeg:
    def __init__(self, cfg: Config, ari: AriClient, channel: dict, args: list[str]):
        self.cfg = cfg
        self.ari = ari
        self.channel_id: str = channel["id"]
        self.caller_number: str = channel.get("caller", {}).get("number", "")
        self.caller_name: str = channel.get("caller", {}).get("name", "")
        self.args = args
        # ids we create start with the app name so orphans can be found after a crash
        self.tag = f"{cfg.ari.app}-{uuid.uuid4().hex[:12]}"
        self.bridge_id = self.tag
        self.media_channel_id = f"{self.tag}-media"
        self.snoop_channel_id = f"{self.tag}-snoop"
        self.rtp: RtpReceiver | None = None
        self.dtmf: asyncio.Queue[Dtmf] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.playbacks: dict[str, Playback] = {}
        self.files: list[Path] = []
        self._ready: dict[str, asyncio.Future] = {}
        self._n = 0
        self.outcome = "unknown"
        # what was said on the call, as the caller heard it (conversation.Line)
        self.history: list = []

    # --- set-up and tear-down -------------------------------------------------
    def owns(self, channel_id: str) -> bool:
        return channel_id in (self.channel_id, self.media_channel_id, self.snoop_channel_id)

    @property
    def created_ids(self) -> set[str]:
        return {self.channel_id, self.media_channel_id, self.snoop_channel_id, self.bridge_id}

    async def connect_media(self) -> None:
        """Answer, then bring the caller's voice to our RTP port.

        The caller's channel itself stays out of any bridge, so playbacks go to
        it directly.  A snoop channel (spy=in: only what the caller says, never
        our own playback) is bridged with an externalMedia channel whose RTP
        comes to us.  The caller is heard while the agent speaks, which
        barge-in needs: a bridged channel that is playing a file sends nothing
        into its bridge.
        """
        m = self.cfg.media
        loop = asyncio.get_running_loop()
        self.rtp = await RtpReceiver.open(m.rtp_host, m.rtp_port_start, m.rtp_port_end, m.format)
        await self._call(self.ari.answer(self.channel_id))
        await self._call(self.ari.create_bridge(self.bridge_id, m.bridge_type, self.tag))
        # choose channel ids up front and wait for their StasisStart before
        # bridging them, or addChannel fails with 422 (NOTES)
        self._ready = {cid: loop.create_future()
                       for cid in (self.media_channel_id, self.snoop_channel_id)}
        await self._call(self.ari.external_media(
            self.media_channel_id, self.cfg.ari.app, f"{m.rtp_host}:{self.rtp.port}", m.format))
        await self._call(self.ari.snoop(self.channel_id, self.snoop_channel_id, self.cfg.ari.app))
        await asyncio.wait_for(asyncio.gather(*map(asyncio.shield, self._ready.values())), 5)
        await self._call(self.ari.add_channel(
            self.bridge_id, [self.snoop_channel_id, self.media_channel_id]))

    def media_started(self, channel_id: str) -> None:
        fut = self._ready.get(channel_id)
        if fut is not None and not fut.done():
            fut.set_result(True)

    async def cleanup(self) -> None:
        """Remove everything this call created; safe to run twice, never raises."""
        for coro in (self.ari.hangup(self.snoop_channel_id),
                     self.ari.hangup(self.media_channel_id),
                     self.ari.destroy_bridge(self.bridge_id)):
            try:
                await coro
            except Exception as exc:  # Asterisk gone: nothing is left to remove there
                log.info("call %s: cleanup: %s", self.channel_id, exc)
        if self.rtp is not None:
            self.rtp.close()
        for path in self.files:
            path.unlink(missing_ok=True)

    # --- what the conversation does --------------------------------------------
    async def _call(self, coro):
        """An ARI request for this call; a 404 on our channel means the caller left."""
        if self.gone.is_set():
            coro.close()
            raise CallerGone()
        try:
            return await coro
        except AriError as exc:
            if exc.status in (404, 409, 422) or self.gone.is_set():
                self.gone.set()
                raise CallerGone() from exc
            raise

    def sentence_path(self) -> tuple[Path, str]:
        """A fresh sound file name for this call: (our path, the stem)."""
        self._n += 1
        stem = f"{self.tag}-{self._n:03d}"
        path = self.cfg.sounds.dir / f"{stem}.wav"
        self.files.append(path)
        return path, stem

    async def play(self, path: Path) -> Playback:
        """Queue a sound file on the caller's channel (Asterisk plays them in order)."""
        stem = path.stem
        media = f"sound:{self.cfg.asterisk_sounds_dir.rstrip('/')}/{stem}"
        playback = Playback(id=f"{self.tag}-pb-{stem.rsplit('-', 1)[-1]}", path=path)
        self.playbacks[playback.id] = playback
        await self._call(self.ari.play(self.channel_id, media, playback.id))
        return playback

    async def stop(self, playback: Playback) -> None:
        if playback.done.is_set():
            return
        try:
            await self.ari.stop_playback(playback.id)
        except AriError:
            pass  # it finished on its own meanwhile
        playback.state = "stopped"
        playback.done.set()

    async def hold(self, playback: Playback, on: bool) -> bool:
        """Pause a playing playback (on) or go on with it; True if Asterisk did."""
        if playback.done.is_set() or (on and playback.state != "playing"):
            return False
        try:
            return await self.ari.control_playback(playback.id, "pause" if on else "unpause")
        except AriError:
            return False  # a hold is only a courtesy: the stop or the end still comes

    def playback_event(self, event: dict) -> None:
        pb = self.playbacks.get(event.get("playback", {}).get("id", ""))
        if pb is None:
            return
        state = event.get("playback", {}).get("state", "")
        if event["type"] == "PlaybackStarted":
            pb.state, pb.started = "playing", True
        elif event["type"] == "PlaybackFinished":
            pb.state = "failed" if state == "failed" else "done"
            if pb.state == "failed":
                # a caller who hangs up fails the queued playbacks just before the
                # hangup event arrives: only a failure on a live call is a setup fault
                asyncio.get_running_loop().call_later(1.0, self._report_failed, pb)
            pb.done.set()

    def _report_failed(self, pb: Playback) -> None:
        if not self.gone.is_set():
            log.error("call %s: Asterisk could not play %s: is [sounds] asterisk_dir "
                      "right and readable by Asterisk?", self.channel_id, pb.path)

    async def transfer_to_operator(self) -> None:
        d = self.cfg.dialplan
        self.outcome = "operator"
        await self._call(self.ari.continue_in_dialplan(
            self.channel_id, d.operator_context, d.operator_extension, d.operator_priority))

    async def transfer_urgent(self, safety: Path | None = None) -> None:
        """To the on-call clinician: a caller described an urgent symptom.

        The safety message (a sound file) is played by the dialplan, on the
        way to the on-call: the transfer starts at once, and nothing the
        caller says can cut the message short.
        """
        d = self.cfg.dialplan
        self.outcome = "urgent"
        if safety is not None:
            sound = f"{self.cfg.asterisk_sounds_dir.rstrip('/')}/{safety.stem}"
            await self._call(self.ari.set_variable(self.channel_id, "AI_AGENT_SAFETY", sound))
        await self._call(self.ari.continue_in_dialplan(
            self.channel_id, d.urgent_context, d.urgent_extension, d.urgent_priority))

    async def hangup(self) -> None:
        self.outcome = "hangup"
        await self._call(self.ari.hangup(self.channel_id))

    def caller_left(self) -> None:
        self.gone.set()
        for pb in self.playbacks.values():
            pb.done.set()
