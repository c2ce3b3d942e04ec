"""One answered outbound call, top to bottom: a machine gets its message; a
person confirms who they are, then hears what the call is for.

Reads like the inbound conversation (conversation.py), whose parts it uses:
every word the patient says passes the urgent-symptom screen before the
check-in dialog sees it, and a red flag (or pain 5) goes to the on-call with
the safety message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..conversation import Listener, Voice, anticipate, answer, screen, understand
from ..dialog.checkin import CheckIn
from ..dialog.first import Action, Reply
from ..telephony.leg import CallLeg

if TYPE_CHECKING:
    from ..agent import Services

log = logging.getLogger("asterisk_agent.call")


class CheckInDesk:
    """The check-in dialog in the shape the conversation's parts expect of a desk
    (awaitable turns, keys gathered into a typed date of birth)."""

    def __init__(self, dialog: CheckIn):
        self.dialog = dialog
        self.typed = ""

    @property
    def typing_birth_date(self) -> bool:
        return self.dialog.typing_birth_date

    async def turn(self, transcript: str) -> Reply:
        return self.dialog.turn(transcript)

    async def key(self, digits: str) -> Reply:
        reply = None
        for digit in digits:
            reply = self.dialog.typed(digit) or reply
        return reply or Reply("", intent="typing")

    def peek(self, transcript: str) -> str | None:
        # the dialog moves on with every answer: nothing to say ahead of time
        return None


async def check_in(call: CallLeg, s: Services, dialog: CheckIn, machine: bool) -> None:
    language = dialog.language
    voice = Voice(call, s, language)
    desk = CheckInDesk(dialog)
    ears = Listener(call, s, language,
                    anticipate=lambda words: anticipate(s, desk, voice, words, language),
                    urgent=lambda words: screen(s, words, language).urgent)
    ears.start()
    try:
        if machine:
            # said whole (nothing to interrupt it), then the call ends
            await answer(call, s, voice, ears, Reply(dialog.machine(), Action.HANGUP, "machine"),
                         language)
            return
        reply = dialog.opening()
        misses = 0
        while not await answer(call, s, voice, ears, reply, language):
            heard = await ears.next_turn(s.cfg.vad.no_input_s)
            reply = await understand(call, s, desk, heard, language)
            misses = misses + 1 if reply.intent in ("unknown", "silence") else 0
            if misses >= s.cfg.dialog.max_misses:
                reply = dialog.silent()
            log.info("call %s: check-in turn -> %s", call.channel_id, reply.intent)
            s.metrics.turns.labels(f"check-in {reply.intent}").inc()
    finally:
        ears.stop()
        voice.drop()
