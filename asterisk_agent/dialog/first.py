"""The first conversation: practice questions, a person on request, goodbye.

Pure logic: a transcript (and the time of the call) in, a Reply out.  Words are
matched as whole words against a few phrasings each, tolerant of what small
speech models make of telephone audio ("operator" heard as "opera tour").
The full receptionist (booking, refills, screening, the LLM) builds on this.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from .practice import DAYS, Hours, Practice


class Action(enum.Enum):
    CONTINUE = "continue"   # keep listening
    OPERATOR = "operator"   # hand the caller to a person
    HANGUP = "hangup"       # say goodbye and end the call


@dataclass(frozen=True)
class Reply:
    text: str
    action: Action = Action.CONTINUE
    intent: str = "unknown"


GREETING = (
    "Hello, this is the automated assistant of {name}. "
    "How can I help you today? You can ask about our hours, address or parking, "
    "or say operator at any time to reach the front desk."
)
NOT_UNDERSTOOD = (
    "Sorry, I can help with our opening hours, our address, our phone number or parking. "
    "To speak with someone, say operator."
)
NO_INPUT = "Are you still there? You can ask about our hours, or say operator."
ANYTHING_ELSE = "Is there anything else I can help you with?"
TRANSFER = "Connecting you to the front desk now. Please hold."
GOODBYE = "Thank you for calling {name}. Goodbye."
TOO_LONG = "Sorry, I could only catch part of that."

# each intent: word patterns, matched against the normalized transcript
_INTENTS: list[tuple[str, list[str]]] = [
    ("operator", [r"operator", r"opera ?tou?r", r"representative", r"receptionist",
                  r"front desk", r"real person", r"a person", r"human", r"somebody", r"someone",
                  r"speak (?:to|with) (?:a|the|an|someone)", r"talk (?:to|with) (?:a|the|an|someone)"]),
    ("goodbye", [r"good ?bye", r"bye", r"that'?s all", r"that is all", r"nothing else",
                 r"no thanks?", r"no thank you", r"hang up", r"see you"]),
    ("parking", [r"park", r"parking", r"car", r"garage", r"lot"]),
    ("address", [r"address", r"where", r"located", r"location", r"directions", r"find you",
                 r"street"]),
    ("phone", [r"phone", r"number", r"call back", r"callback", r"fax"]),
    ("hours", [r"hours?", r"open", r"opening", r"close", r"closing", r"closed", r"what time",
               r"when", r"today", r"tomorrow", r"weekend"] + list(DAYS)),
]
_COMPILED = [(name, re.compile(r"\b(?:" + "|".join(p) + r")\b")) for name, p in _INTENTS]


def normalize(transcript: str) -> str:
    text = transcript.lower()
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def intent_of(transcript: str) -> str:
    text = normalize(transcript)
    for name, pattern in _COMPILED:
        if pattern.search(text):
            return name
    return "unknown"


def say_time(t: dt.time) -> str:
    """8:00 -> "8 AM", 17:30 -> "5:30 PM": how a receptionist says it."""
    hour = t.hour % 12 or 12
    suffix = "AM" if t.hour < 12 else "PM"
    return f"{hour} {suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d} {suffix}"


def _day_hours(day: str, hours: Hours | None) -> str:
    if hours is None:
        return f"On {day.capitalize()} we are closed."
    return f"On {day.capitalize()} we are open from {say_time(hours.opens)} to {say_time(hours.closes)}."


def _week_summary(practice: Practice) -> str:
    parts = []
    for day in DAYS:
        h = practice.hours[day]
        parts.append(f"{day.capitalize()} {say_time(h.opens)} to {say_time(h.closes)}"
                     if h else f"{day.capitalize()} closed")
    return "Our hours are: " + ", ".join(parts) + "."


def answer_hours(text: str, practice: Practice, now: dt.datetime) -> str:
    words = normalize(text)
    asked = [d for d in DAYS if re.search(rf"\b{d}\b", words)]
    if not asked and re.search(r"\btoday\b", words):
        asked = [DAYS[now.weekday()]]
    if not asked and re.search(r"\btomorrow\b", words):
        asked = [DAYS[(now.weekday() + 1) % 7]]
    if asked:
        return " ".join(_day_hours(d, practice.hours[d]) for d in asked)
    return _week_summary(practice)


def respond(transcript: str, practice: Practice, now: dt.datetime) -> Reply:
    """What the agent says to one caller turn."""
    intent = intent_of(transcript)
    if intent == "operator":
        return Reply(TRANSFER, Action.OPERATOR, intent)
    if intent == "goodbye":
        return Reply(GOODBYE.format(name=practice.name), Action.HANGUP, intent)
    if intent == "hours":
        return Reply(answer_hours(transcript, practice, now) + " " + ANYTHING_ELSE, intent=intent)
    if intent == "address":
        return Reply(f"We are at {practice.address}. {ANYTHING_ELSE}", intent=intent)
    if intent == "phone":
        return Reply(f"Our phone number is {practice.phone}. {ANYTHING_ELSE}", intent=intent)
    if intent == "parking":
        return Reply(f"{practice.parking} {ANYTHING_ELSE}", intent=intent)
    return Reply(NOT_UNDERSTOOD, intent=intent)


def greeting(practice: Practice) -> str:
    return GREETING.format(name=practice.name)
