"""One call, top to bottom: greet, listen, understand, answer, transfer or hang up.

Reads like a dialplan; the details live in the modules it calls.  The
caller's audio is listened to the whole time, so speaking over the agent
stops it (barge-in), except for the sentences that must be heard whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass


from .agent import Services
from .dialog import first
from .dialog.first import Action, Reply
from .speech.vad import Endpointer, SpeechStarted, Utterance
from .telephony.leg import CallerGone, CallLeg, Dtmf, Playback

log = logging.getLogger("asterisk_agent.call")

# consecutive turns the agent did not understand (or silences) before a person takes over
MAX_MISSES = 3


async def converse(call: CallLeg, s: Services) -> None:
    ears = Listener(call, s)
    ears.start()
    try:
        await speak(call, s, ears, first.greeting(s.practice))
        misses = 0
        while True:
            heard = await ears.next_turn(s.cfg.vad.no_input_s)
            reply = await understand(call, s, heard)
            misses = misses + 1 if reply.intent in ("unknown", "silence") else 0
            if misses >= MAX_MISSES:
                reply = Reply(first.TRANSFER, Action.OPERATOR, "too many misses")
            log.info("call %s: turn -> %s", call.channel_id, reply.intent)
            await speak(call, s, ears, reply.text, interruptible=reply.action is Action.CONTINUE)
            if reply.action is Action.OPERATOR:
                await call.transfer_to_operator()
                return
            if reply.action is Action.HANGUP:
                await call.hangup()
                return
    finally:
        ears.stop()


async def understand(call: CallLeg, s: Services, heard: Utterance | Dtmf | None) -> Reply:
    if heard is None:
        return Reply(first.NO_INPUT, intent="silence")
    if isinstance(heard, Dtmf):
        if heard.digit == "0":
            return Reply(first.TRANSFER, Action.OPERATOR, "operator")
        return Reply(first.NOT_UNDERSTOOD, intent="unknown")
    t0 = time.perf_counter()
    transcript = await s.stt.transcribe(heard.pcm, 8000)
    log.info("call %s: %.1f s of speech transcribed in %d ms", call.channel_id,
             len(heard.pcm) / 8000, (time.perf_counter() - t0) * 1000)
    if not transcript.strip():
        return Reply(first.NOT_UNDERSTOOD, intent="unknown")
    reply = first.respond(transcript, s.practice, s.practice.now())
    if heard.truncated:
        reply = Reply(first.TOO_LONG + " " + reply.text, reply.action, reply.intent)
    return reply


async def speak(call: CallLeg, s: Services, ears: "Listener", text: str,
                interruptible: bool = True) -> None:
    """Say text sentence by sentence: each plays while the next is synthesized."""
    from .speech.tts import split_sentences

    queued: list[Playback] = []
    ears.speaking(queued if interruptible else None)
    try:
        for sentence in split_sentences(text):
            if ears.barged_in:
                break
            path, stem = call.sentence_path()
            await s.tts.to_file(sentence, path.parent, stem)
            if ears.barged_in:
                break
            queued.append(await call.play(path))
        for pb in queued:
            await pb.done.wait()
        if call.gone.is_set():
            raise CallerGone()
    finally:
        ears.speaking(None)


@dataclass
class _Turn:
    item: Utterance | Dtmf


class Listener:
    """Feeds the caller's audio to the endpointer; turns (speech or DTMF) queue up."""

    def __init__(self, call: CallLeg, s: Services):
        self.call = call
        self.endpointer = Endpointer(s.cfg.vad)
        self.turns: asyncio.Queue[_Turn] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._dtmf_task: asyncio.Task | None = None
        self._playing: list[Playback] | None = None
        self.barged_in = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._hear())
        self._dtmf_task = loop.create_task(self._keys())

    def stop(self) -> None:
        for task in (self._task, self._dtmf_task):
            if task:
                task.cancel()

    def speaking(self, playbacks: list[Playback] | None) -> None:
        """Mark what is playing now and may be interrupted (None: nothing)."""
        self._playing = playbacks
        self.barged_in = False

    async def _barge_in(self) -> None:
        if self._playing is None:
            return
        self.barged_in = True
        for pb in list(self._playing):
            await self.call.stop(pb)

    async def _hear(self) -> None:
        assert self.call.rtp is not None
        async for frame, at in self.call.rtp.frames():
            try:
                events = self.endpointer.feed(frame, at)
            except ValueError as exc:
                log.warning("call %s: audio frame skipped: %s", self.call.channel_id, exc)
                continue
            for ev in events:
                if isinstance(ev, SpeechStarted):
                    await self._barge_in()
                elif isinstance(ev, Utterance):
                    self.turns.put_nowait(_Turn(ev))

    async def _keys(self) -> None:
        while True:
            key = await self.call.dtmf.get()
            await self._barge_in()
            self.turns.put_nowait(_Turn(key))

    async def next_turn(self, timeout: float) -> Utterance | Dtmf | None:
        """The caller's next turn; None after timeout seconds of nothing."""
        get = asyncio.ensure_future(self.turns.get())
        gone = asyncio.ensure_future(self.call.gone.wait())
        try:
            done, _ = await asyncio.wait({get, gone}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (get, gone):
                f.cancel()
        if gone in done or self.call.gone.is_set():
            raise CallerGone()
        if get in done:
            return get.result().item
        if self.endpointer.in_speech:  # still talking: wait for the end of the turn
            return await self.next_turn(timeout)
        return None
