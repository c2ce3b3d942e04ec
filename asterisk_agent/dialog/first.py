"""The first conversation: practice questions, a person on request, goodbye.

Pure logic: a transcript (and the time and language of the call) in, a Reply
out.  Words are matched as whole words against a few phrasings each (in
phrases.py, per language), tolerant of what small speech models make of
telephone audio ("operator" heard as "opera tour").
The full receptionist (booking, refills, screening, the LLM) builds on this.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from dataclasses import dataclass

from . import phrases
from .practice import DAYS, Hours, Practice


class Action(enum.Enum):
    CONTINUE = "continue"   # keep listening
    OPERATOR = "operator"   # hand the caller to a person
    HANGUP = "hangup"       # say goodbye and end the call
    URGENT = "urgent"       # a red flag: the safety message, then on-call at once


@dataclass(frozen=True)
class Reply:
    text: str
    action: Action = Action.CONTINUE
    intent: str = "unknown"


say_time = phrases.say_time_en  # the English way; phrases.py has each language's


@functools.lru_cache(maxsize=None)
def _compiled(language: str) -> list[tuple[str, re.Pattern]]:
    return [(name, re.compile(r"\b(?:" + "|".join(p) + r")\b"))
            for name, p in phrases.of(language).intents]


def normalize(transcript: str) -> str:
    return phrases.fold(transcript)


def intent_of(transcript: str, language: str = "en") -> str:
    text = normalize(transcript)
    for name, pattern in _compiled(language):
        if pattern.search(text):
            return name
    return "unknown"


def _day_hours(day: str, hours: Hours | None, say: phrases.Phrases) -> str:
    if hours is None:
        return say.day_closed.format(day=say.day(day))
    return say.day_open.format(day=say.day(day), opens=say.say_time(hours.opens),
                               closes=say.say_time(hours.closes))


def _week_summary(practice: Practice, say: phrases.Phrases) -> str:
    parts = []
    for day in DAYS:
        h = practice.hours[day]
        parts.append(say.week_open.format(day=say.day(day), opens=say.say_time(h.opens),
                                          closes=say.say_time(h.closes))
                     if h else say.week_closed.format(day=say.day(day)))
    return say.week.format(days=", ".join(parts))


def week_hours(practice: Practice, language: str = "en") -> str:
    """The practice's hours for the whole week, as the agent says them."""
    return _week_summary(practice, phrases.of(language))


def answer_hours(text: str, practice: Practice, now: dt.datetime, language: str = "en") -> str:
    say = phrases.of(language)
    words = normalize(text)
    asked = [d for d in DAYS if re.search(rf"\b{say.day_pattern(d)}\b", words)]
    if not asked and re.search(rf"\b{say.today}\b", words):
        asked = [DAYS[now.weekday()]]
    if not asked and re.search(rf"\b{say.tomorrow}\b", words):
        asked = [DAYS[(now.weekday() + 1) % 7]]
    if asked:
        return " ".join(_day_hours(d, practice.hours[d], say) for d in asked)
    return _week_summary(practice, say)


def respond(transcript: str, practice: Practice, now: dt.datetime, language: str = "en") -> Reply:
    """What the agent says to one caller turn, in the call's language."""
    say = phrases.of(language)
    intent = intent_of(transcript, language)
    if intent == "operator":
        return Reply(say.transfer, Action.OPERATOR, intent)
    if intent == "goodbye":
        return Reply(say.goodbye.format(name=practice.name), Action.HANGUP, intent)
    if intent == "hours":
        text = answer_hours(transcript, practice, now, language)
    elif intent == "address":
        text = say.address.format(address=practice.address)
    elif intent == "phone":
        text = say.phone.format(phone=say.say_phone(practice.phone))
    elif intent == "parking":
        text = practice.parking_in(language)
    else:
        return Reply(say.not_understood, intent=intent)
    return Reply(f"{text} {say.anything_else}", intent=intent)


def greeting(practice: Practice, language: str = "en") -> str:
    return phrases.of(language).greeting.format(name=practice.name)
