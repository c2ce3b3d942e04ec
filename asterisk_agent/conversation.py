"""One call, top to bottom: greet, listen, understand, answer, transfer or hang up.

Reads like a dialplan; the details live in the modules it calls.  The
caller's audio is listened to the whole time, so speaking over the agent
stops it (barge-in), except for the sentences that must be heard whole; the
call's history keeps what the caller actually heard.

The answer is got ready while the caller may still go on: at a pause the
words so far are transcribed, the reply to them worked out and its first
sentence synthesized.  If the pause ends the turn, the agent speaks at once;
if the caller goes on, that work is thrown away.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from .dialog import first, phrases
from .dialog.first import Action, Reply
from .dialog.receptionist import Receptionist
from .dialog.screen import Finding
from .speech.tts import split_sentences
from .speech.vad import (Endpointer, SpeechDismissed, SpeechOnset, SpeechPaused,
                         SpeechStarted, Utterance)
from .telephony.leg import CallerGone, CallLeg, Dtmf, Playback

if TYPE_CHECKING:  # agent.py runs the conversation: no import cycle at run time
    from .agent import Services

log = logging.getLogger("asterisk_agent.call")


async def converse(call: CallLeg, s: Services) -> None:
    language = call_language(call, s)
    say = phrases.of(language)
    voice = Voice(call, s, language)
    d = s.cfg.dialog
    desk = Receptionist(s.ehr, s.practice, language, s.practice.now, providers=s.providers,
                        llm=s.llm, refill_provider=d.refill_provider,
                        max_id_failures=d.max_id_failures, max_misses=d.max_misses,
                        call_id=call.channel_id)
    ears = Listener(call, s, language,
                    anticipate=lambda words: anticipate(s, desk, voice, words, language),
                    urgent=lambda words: screen(s, words, language).urgent)
    ears.start()
    try:
        await speak(call, voice, ears, first.greeting(s.practice, language))
        misses = 0
        offered_message = False
        while True:
            heard = await ears.next_turn(s.cfg.vad.no_input_s)
            reply = await understand(call, s, desk, heard, language)
            misses = misses + 1 if reply.intent in ("unknown", "silence") else 0
            # silence counts too, which the receptionist never sees
            if misses >= d.max_misses:
                reply = Reply(say.transfer, Action.OPERATOR, "too many misses")
            # once per call: a caller who asks for a person again is put through
            if not offered_message:
                instead = await message_if_nobody_free(call, s, desk, reply)
                if instead is not None:
                    offered_message, reply = True, instead
            log.info("call %s: turn -> %s", call.channel_id, reply.intent)
            s.metrics.turns.labels(reply.intent).inc()
            if await answer(call, s, voice, ears, reply, language, rewording(s, language)):
                return
    finally:
        ears.stop()
        voice.drop()


async def answer(call: CallLeg, s: Services, voice: Voice, ears: Listener, reply: Reply,
                 language: str, reword: Reword | None = None) -> bool:
    """Say the reply and do what it says; True once the call has left the agent
    (to the on-call, to a person, or hung up)."""
    if reply.action is Action.URGENT:
        # the dialplan plays the safety message on the way to the on-call
        note(call, s, Line("agent", reply.text))
        await call.transfer_urgent(await safety_sound(s, reply.text, language))
        return True
    going_on = reply.action is Action.CONTINUE
    await speak(call, voice, ears, reply.text, interruptible=going_on,
                reword=reword if going_on else None)
    if reply.action is Action.OPERATOR:
        await call.transfer_to_operator()
        return True
    if reply.action is Action.HANGUP:
        await call.hangup()
        return True
    return False


async def message_if_nobody_free(call: CallLeg, s: Services, desk: Receptionist,
                                 reply: Reply) -> Reply | None:
    """A caller who asked for a person, when AMI says nobody can take the call:
    an apology and a message instead of ringing into the void.  None: put the
    caller through as asked (somebody can, AMI cannot tell or is not used, or no
    message can be taken).  Urgent calls never come here: they go to the
    on-call at once."""
    if reply.action is not Action.OPERATOR or reply.intent != "operator" or s.ami is None:
        return None
    if await s.ami.can_take_call("operator") is not False:
        return None
    instead = desk.take_message_instead()
    if instead is not None:
        log.info("call %s: nobody can take the call at the front desk: a message instead",
                 call.channel_id)
    return instead


def rewording(s: Services, language: str) -> Reword | None:
    """The language model's rewording of replies, when [llm] phrase has it on."""
    llm = s.llm
    if llm is None or not llm.phrases_replies:
        return None
    return lambda text, budget: llm.phrase(text, language, timeout=budget)


def call_language(call: CallLeg, s: Services) -> str:
    """The dialplan's choice (the second Stasis argument, AI_AGENT_LANGUAGE), if spoken here."""
    requested = call.args[1] if len(call.args) > 1 else ""
    g = s.cfg.general
    language = phrases.choose_language(requested, g.languages, g.language)
    if requested and phrases.primary(requested) != language:
        log.info("call %s: language %r is not one of [general] languages (%s); speaking %s",
                 call.channel_id, requested, ", ".join(g.languages), language)
    else:
        log.info("call %s: language %s", call.channel_id, language)
    if s.journal is not None:
        s.journal.language(call.channel_id, language)
    return language


def note(call: CallLeg, s: Services, line: Line) -> None:
    """A line of the call's history, kept in the encrypted store too."""
    call.history.append(line)
    if s.journal is not None:
        s.journal.turn(call.channel_id, line.speaker, line.text, line.interrupted)


@dataclass
class Heard:
    """A caller's turn: what they said, and its transcript if it was started early."""

    utterance: Utterance
    transcript: asyncio.Future | None = None
    # how long after its last voiced frame the turn was known to be over
    ended_after_ms: float = 0.0


@dataclass(frozen=True)
class Line:
    """One line of the call's history, as the caller experienced it."""

    speaker: str          # "caller" or "agent"
    text: str
    interrupted: bool = False


async def understand(call: CallLeg, s: Services, desk: Receptionist,
                     heard: Heard | Dtmf | None, language: str) -> Reply:
    say = phrases.of(language)
    if heard is None:
        return Reply(say.no_input, intent="silence")
    if isinstance(heard, Dtmf):
        note(call, s, Line("caller", f"[DTMF {heard.digit}]"))
        # 0 is the operator, except inside a date of birth being typed
        if heard.digit == "0" and not desk.typing_birth_date:
            return Reply(say.transfer, Action.OPERATOR, "operator")
        return await typed(desk, heard.digit)
    t0 = time.perf_counter()
    early = heard.transcript is not None
    transcript = await (heard.transcript if early
                        else s.stt[language].transcribe(heard.utterance.pcm, 8000))
    waited = time.perf_counter() - t0
    log.info("call %s: %.1f s of speech, transcript ready %d ms after the end of the turn%s; "
             "the turn ended %d ms after its last voiced frame%s",
             call.channel_id, heard.utterance.duration, waited * 1000,
             " (started at a pause)" if early else "", heard.ended_after_ms,
             " (turn model)" if heard.utterance.shortened else "")
    s.metrics.transcript_wait.labels(language).observe(waited)
    note(call, s, Line("caller", transcript))
    if not transcript.strip():
        return Reply(say.not_understood, intent="unknown")
    # the urgent-symptom screen comes first, every turn, and never asks a model
    finding = screen(s, transcript, language)
    if s.journal is not None:
        s.journal.screened(call.channel_id, s.cfg.general.specialty, finding)
    if finding.urgent:
        s.metrics.red_flags.inc()
        # the flag, not the caller's words: those are PHI (compliance/redact.py)
        log.warning("call %s: red flag %s (%s): safety message, then %s",
                    call.channel_id, finding.flag, finding.action,
                    s.cfg.dialplan.urgent_context)
        return urgent_reply(finding)
    reply = await desk.turn(transcript)
    if heard.utterance.truncated:
        reply = Reply(say.too_long + " " + reply.text, reply.action, reply.intent)
    return reply


def screen(s: Services, transcript: str, language: str) -> Finding:
    return s.protocols.screen(transcript, s.cfg.general.specialty, language)


def urgent_reply(finding: Finding) -> Reply:
    return Reply(finding.message, Action.URGENT, f"red flag {finding.flag}")


async def typed(desk: Receptionist, digit: str) -> Reply:
    """A key pressed: a date of birth is typed as 8 digits (MMDDYYYY), gathered
    here key by key; any other key is a choice (1, 2, ...) on its own."""
    if not desk.typing_birth_date:
        return await desk.key(digit)
    desk.typed += digit
    if len(desk.typed) < 8:
        return Reply("", intent="typing")
    digits, desk.typed = desk.typed, ""
    return await desk.key(digits)


async def safety_sound(s: Services, text: str, language: str) -> Path | None:
    """A safety message as a sound file of its own, made once and kept: the
    dialplan plays it after the call has left the agent, so it is no call's
    file.  None if it cannot be made: the caller is put through regardless."""
    key = hashlib.sha1(f"{s.cfg.tts!r}\n{language}\n{text}".encode()).hexdigest()[:16]
    stem = f"ai-agent-safety-{key}"
    path = s.cfg.sounds.dir / f"{stem}.wav"
    if path.exists():
        return path
    made = s.safety_sounds.get(stem)
    if made is None:
        made = s.safety_sounds[stem] = asyncio.ensure_future(
            _make_safety_sound(s.tts[language], text, path))
    try:
        return await asyncio.shield(made)
    except Exception as exc:  # noqa: BLE001 - the transfer must not wait on a voice
        s.safety_sounds.pop(stem, None)
        log.error("safety message could not be synthesized (%s): transferring without it", exc)
        return None


async def _make_safety_sound(tts, text: str, path: Path) -> Path:
    # made under another name and renamed: Asterisk never plays half a file
    made = await tts.to_file(text, path.parent, f"{path.stem}-new")
    os.replace(made, path)
    return path


async def warm_safety_sounds(s: Services) -> None:
    """Make every safety message of the practice's specialty before the first
    caller needs one (at start-up, in the background)."""
    for language in s.tts:
        for text in sorted(s.protocols.messages(s.cfg.general.specialty, language)):
            await safety_sound(s, text, language)


def anticipate(s: Services, desk: Receptionist, voice: Voice, transcript: str,
               language: str) -> None:
    """At a pause: start synthesizing the first sentence of the likely reply."""
    if not transcript.strip():
        return
    finding = screen(s, transcript, language)
    if finding.urgent:
        asyncio.ensure_future(safety_sound(s, finding.message, language))
        return
    text = desk.peek(transcript)
    sentences = split_sentences(text or "")
    if sentences:
        voice.prepare(sentences[0])


class Voice:
    """The call's text-to-speech, with sentences that may be made ahead of time."""

    # sentences made ahead and not (yet) spoken; older ones are dropped
    KEEP = 4

    def __init__(self, call: CallLeg, s: Services, language: str):
        self.call, self.tts, self.services = call, s.tts[language], s
        self._ahead: dict[str, asyncio.Task[Path]] = {}

    async def _make(self, sentence: str) -> Path:
        path, stem = self.call.sentence_path()
        return await self.tts.to_file(sentence, path.parent, stem)

    def prepare(self, sentence: str) -> None:
        if sentence in self._ahead:
            return
        while len(self._ahead) >= self.KEEP:
            self._ahead.pop(next(iter(self._ahead))).cancel()
        self._ahead[sentence] = asyncio.ensure_future(self._make(sentence))

    async def sound_file(self, sentence: str) -> Path:
        """The sentence as a sound file: the one made ahead, or one made now."""
        ready = self._ahead.pop(sentence, None)
        if ready is not None:
            try:
                return await ready
            except Exception as exc:  # made again below; a TTS error then surfaces
                log.warning("call %s: a sentence made ahead failed: %s", self.call.channel_id, exc)
        return await self._make(sentence)

    def drop(self) -> None:
        for task in self._ahead.values():
            task.cancel()
        self._ahead.clear()


# A reworded rest of a reply must be back this long before the first sentence
# ends, so its own first sentence is synthesized in time (hibari: ~60 ms)
REWORD_LEAD_S = 0.3

# (the text after a reply's first sentence, seconds left) -> the model's rewording or None
Reword = Callable[[str, float], Awaitable["str | None"]]


def sound_seconds(path: Path) -> float:
    """How long a synthesized sentence plays (its WAV header)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


async def reworded(rest: list[str], reword: Reword, budget: float) -> list[str]:
    """The sentences after a reply's first, as the language model rewords them in
    `budget` seconds (while the first plays); unchanged when it is slower or its
    rewording is refused (dialog/guard.py), so a reword never adds silence."""
    if budget <= 0.1:
        return rest
    new = await reword(" ".join(rest), budget)
    return split_sentences(new) if new else rest


async def speak(call: CallLeg, voice: Voice, ears: "Listener", text: str,
                interruptible: bool = True, reword: Reword | None = None) -> None:
    """Say text sentence by sentence: each plays while the next is synthesized.

    When the caller barges in, the rest is dropped, and the history records
    only the sentences the caller heard (the cut one marked as interrupted).
    With `reword`, what follows the first sentence is said as the language
    model rewords it while the first plays ([llm] phrase).
    """
    sentences = split_sentences(text)
    queued: list[Playback] = []
    ears.speaking(queued if interruptible else None)
    try:
        i = 0
        while i < len(sentences):
            if ears.barged_in:
                break
            path = await voice.sound_file(sentences[i])
            if ears.barged_in:
                break
            queued.append(await call.play(path))
            if i == 0 and reword is not None and len(sentences) > 1:
                sentences[1:] = await reworded(sentences[1:], reword,
                                               sound_seconds(path) - REWORD_LEAD_S)
            i += 1
        for pb in queued:
            await pb.done.wait()
        if call.gone.is_set():
            raise CallerGone()
    finally:
        ears.speaking(None)
        heard = [(sentence, pb.state) for sentence, pb in zip(sentences, queued)
                 if pb.started or pb.state == "done"]
        if heard:
            cut = heard[-1][1] != "done"
            note(call, voice.services, Line("agent", " ".join(t for t, _ in heard),
                                            interrupted=cut))
            if cut and not call.gone.is_set():
                log.info("call %s: caller interrupted the agent after %d of %d sentence(s)",
                         call.channel_id, len(heard), len(sentences))


# The longest a possible onset keeps the agent's sentence paused: the
# endpointer settles it far sooner (min_speech_ms, or a blip's 120 ms gap).
HOLD_LIMIT_S = 1.0


class Listener:
    """Feeds the caller's audio to the endpointer; turns (speech or DTMF) queue up.

    At a pause in the caller's speech it starts transcribing what was said so
    far; if the pause turns out to end the turn, that transcript is the turn's
    and most of the transcription time is already behind us.
    """

    def __init__(self, call: CallLeg, s: Services, language: str,
                 anticipate: Callable[[str], None] | None = None,
                 urgent: Callable[[str], bool] | None = None):
        self.call = call
        # called with the transcript of the words before a pause
        self.anticipate = anticipate
        # the urgent-symptom screen, run on the words before each pause: a turn
        # whose first part already holds a red flag is answered with it at the
        # end of the turn, without waiting for the rest to be transcribed (a
        # qualifier after the pause, "... years ago", is not waited for: when in
        # doubt, escalate)
        self.urgent = urgent
        self._flagged: str | None = None
        # the call's language: what it is transcribed in, and spoken back in
        self.language = language
        self.stt = s.stt[language]
        self.endpointer = Endpointer(s.cfg.vad, pause_ms=s.cfg.vad.pause_ms or None,
                                     onset_ms=s.cfg.vad.hold_ms or None)
        # asked at each pause whether the turn is over (None: the silence window decides)
        self.turn_model = s.turn
        self.turns: asyncio.Queue[Heard | Dtmf] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._playing: list[Playback] | None = None
        self._early: tuple[float, asyncio.Future] | None = None
        # an early transcript the caller talked past: no longer the turn's, but
        # its words are still screened (see _transcribe_early)
        self._screening: asyncio.Future | None = None
        # turns ended so far: a transcript finishing after its turn flags nothing
        self._turn = 0
        # the early transcript handed over as a whole turn's
        self._handed: asyncio.Future | None = None
        # the end-of-turn model's verdict on the current pause, while it runs
        self._judging: asyncio.Future | None = None
        # playbacks paused at a possible onset, until it proves speech or a blip
        self._held: list[Playback] = []
        self._hold_limit: asyncio.TimerHandle | None = None
        self.barged_in = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._hear()), loop.create_task(self._keys())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._early is not None:
            self._early[1].cancel()
        if self._screening is not None:
            self._screening.cancel()
        if self._judging is not None:
            self._judging.cancel()

    def speaking(self, playbacks: list[Playback] | None) -> None:
        """Mark what is playing now and may be interrupted (None: nothing)."""
        self._playing = playbacks
        self.barged_in = False
        self._held = []

    async def _barge_in(self) -> None:
        self._unhold_later(None)
        self._held = []
        if self._playing is None:
            return
        self.barged_in = True
        for pb in list(self._playing):
            await self.call.stop(pb)

    async def _hold(self) -> None:
        """A possible onset over the agent: pause its sentence while the
        endpointer makes sure (a barge-in stops it, a blip lets it go on)."""
        if self._playing is None or self._held:
            return
        for pb in list(self._playing):
            if await self.call.hold(pb, True):
                self._held.append(pb)
        if self._held:
            # whatever the endpointer does, the agent is never left paused
            self._unhold_later(asyncio.get_running_loop().call_later(
                HOLD_LIMIT_S, lambda: asyncio.ensure_future(self._unhold())))

    async def _unhold(self) -> None:
        self._unhold_later(None)
        held, self._held = self._held, []
        for pb in held:
            await self.call.hold(pb, False)

    def _unhold_later(self, timer: asyncio.TimerHandle | None) -> None:
        if self._hold_limit is not None:
            self._hold_limit.cancel()
        self._hold_limit = timer

    async def _hear(self) -> None:
        assert self.call.rtp is not None
        async for frame, at in self.call.rtp.frames():
            try:
                events = self.endpointer.feed(frame, at)
            except ValueError as exc:
                log.warning("call %s: audio frame skipped: %s", self.call.channel_id, exc)
                continue
            for ev in events:
                if isinstance(ev, SpeechOnset):
                    await self._hold()
                elif isinstance(ev, SpeechDismissed):
                    await self._unhold()
                elif isinstance(ev, SpeechStarted):
                    await self._barge_in()
                elif isinstance(ev, SpeechPaused):
                    self._transcribe_early(ev.utterance)
                    self._judge_turn(ev.utterance)
                elif isinstance(ev, Utterance):
                    self._turn_over(ev)

    def _turn_over(self, turn: Utterance) -> None:
        after = 1000 * (time.monotonic() - turn.ended_at)
        self.turns.put_nowait(Heard(turn, self._early_transcript(turn), after))
        self._flagged = None
        self._turn += 1
        if self._screening is not None:
            self._screening.cancel()
            self._screening = None
        if self._judging is not None:
            self._judging.cancel()
            self._judging = None

    def _judge_turn(self, so_far: Utterance) -> None:
        """Ask the end-of-turn model whether the pause ends the turn."""
        if self.turn_model is None:
            return
        if self._judging is not None:  # the caller went on past the last pause
            self._judging.cancel()
        self._judging = asyncio.ensure_future(self._end_if_complete(so_far))

    async def _end_if_complete(self, so_far: Utterance) -> None:
        assert self.turn_model is not None
        try:
            p = await self.turn_model.complete(so_far.pcm, so_far.rate)
        except Exception:  # the silence window still ends the turn
            log.exception("call %s: the end-of-turn model failed", self.call.channel_id)
            return
        if asyncio.current_task() is not self._judging:
            return
        self._judging = None
        if p < self.turn_model.threshold:
            return
        # the turn ends at complete_ms of silence (at the next silent frame, if
        # the pause is that long already), unless the caller speaks first
        self.endpointer.shorten(so_far.ended_at, self.turn_model.complete_ms)

    def _transcribe_early(self, so_far: Utterance) -> None:
        if self._early is not None:
            # The caller went on: that transcript is not the turn's any more.  It
            # is not stopped: its words still go through the urgent screen, so a
            # red flag said before the pause need not wait for the whole turn on
            # a busy machine (a transcription already running finishes anyway).
            # One such at a time: an older one still waiting for the worker goes.
            if self._screening is not None:
                self._screening.cancel()
            self._screening = self._early[1]
        job = asyncio.ensure_future(self._transcribe_and_anticipate(so_far, self._turn))
        self._early = (so_far.ended_at, job)

    async def _transcribe_and_anticipate(self, so_far: Utterance, turn: int) -> str:
        transcript = await self.stt.transcribe(so_far.pcm, 8000)
        job = asyncio.current_task()
        if turn == self._turn:
            # the turn goes on: a red flag in these words is acted on at its end
            if self.urgent is not None and self.urgent(transcript):
                self._flagged = transcript
            current = self._early is not None and self._early[1] is job
        else:
            # the turn has ended; if this is its transcript, the reply may still be
            # got ready while the turn's own screen runs
            current = job is self._handed
        if self.anticipate is not None and current:
            try:
                self.anticipate(transcript)
            except Exception:  # only a head start: the turn is answered anyway
                log.exception("call %s: getting the reply ready failed", self.call.channel_id)
        return transcript

    def _early_transcript(self, turn: Utterance) -> asyncio.Future | None:
        early, self._early = self._early, None
        whole = early is not None and early[0] == turn.ended_at and not early[1].cancelled()
        if self._flagged is not None and not (whole and early[1].done()):
            # words before an earlier pause held a red flag: act on them now,
            # not after the whole turn is transcribed
            if early is not None:
                early[1].cancel()
            flagged = asyncio.get_running_loop().create_future()
            flagged.set_result(self._flagged)
            return flagged
        if whole:
            self._handed = early[1]
            return early[1]
        if early is not None:
            early[1].cancel()
        return None

    async def _keys(self) -> None:
        while True:
            key = await self.call.dtmf.get()
            await self._barge_in()
            self.turns.put_nowait(key)

    async def next_turn(self, timeout: float) -> Heard | Dtmf | None:
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
            return get.result()
        if self.endpointer.in_speech:  # still talking: wait for the end of the turn
            return await self.next_turn(timeout)
        return None
