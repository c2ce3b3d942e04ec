"""The first conversation: what the agent answers to a caller's turn."""

import datetime as dt
from pathlib import Path

import pytest

from asterisk_agent.dialog import practice
from asterisk_agent.dialog.first import Action, intent_of, respond, say_time

ROOT = Path(__file__).resolve().parents[2]
FACTS = practice.load(ROOT / "etc" / "practice.conf")
# a Saturday morning in the practice's time zone
NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=FACTS.timezone)


@pytest.mark.parametrize("text, intent", [
    ("What time do you open on Monday?", "hours"),
    ("are you open tomorrow", "hours"),
    ("Where are you located?", "address"),
    ("Where can I park my car?", "parking"),
    ("what's your phone number", "phone"),
    ("Operator.", "operator"),
    ("opera tour", "operator"),
    ("I'd like to talk to a real person please", "operator"),
    ("representative", "operator"),
    ("Goodbye.", "goodbye"),
    ("okay bye", "goodbye"),
    ("the weather is nice", "unknown"),
    ("", "unknown"),
])
def test_intents(text, intent):
    assert intent_of(text) == intent


def test_hours_for_a_named_day():
    reply = respond("What time do you open on Monday?", FACTS, NOW)
    assert "Monday we are open from 8 AM to 5 PM" in reply.text
    assert reply.action is Action.CONTINUE


def test_hours_today_and_closed_day():
    assert "Saturday we are open from 9 AM to 12 PM" in respond("are you open today", FACTS, NOW).text
    assert "Sunday we are closed" in respond("and tomorrow?", FACTS, NOW).text


def test_facts_come_from_the_practice_file():
    assert FACTS.address in respond("what is your address", FACTS, NOW).text
    assert FACTS.parking in respond("is there parking", FACTS, NOW).text
    assert FACTS.phone in respond("your phone number?", FACTS, NOW).text


def test_operator_and_goodbye_end_the_conversation():
    assert respond("operator", FACTS, NOW).action is Action.OPERATOR
    bye = respond("goodbye", FACTS, NOW)
    assert bye.action is Action.HANGUP and "Goodbye" in bye.text


def test_say_time():
    assert say_time(dt.time(8, 0)) == "8 AM"
    assert say_time(dt.time(17, 30)) == "5:30 PM"
    assert say_time(dt.time(0, 15)) == "12:15 AM"
