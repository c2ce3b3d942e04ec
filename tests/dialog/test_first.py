"""The first conversation: what the agent answers to a caller's turn."""

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from asterisk_agent.dialog import practice
from asterisk_agent.dialog.first import Action, greeting, intent_of, respond, say_time

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


# --- Spanish calls (AI_AGENT_LANGUAGE=es) --------------------------------------

@pytest.mark.parametrize("text, intent", [
    ("¿A qué hora abren el lunes?", "hours"),
    ("¿Cuál es su horario?", "hours"),
    ("¿Abren mañana?", "hours"),
    ("¿A qué hora cierran hoy?", "hours"),
    ("¿Están abiertos el sábado?", "hours"),
    ("que ahora ven el lunes", "hours"),          # Whisper base on espeak-ng's voice
    ("¿Cuál es su dirección?", "address"),
    ("¿Dónde están ubicados?", "address"),
    ("¿Dónde puedo estacionar?", "parking"),      # "dónde", but about the car
    ("¿Hay estacionamiento?", "parking"),
    ("¿Dónde puedo aparcar el coche?", "parking"),
    ("¿Tienen parqueo?", "parking"),
    ("¿Cuál es su número de teléfono?", "phone"),
    ("Operador, por favor.", "operator"),
    ("Quiero hablar con una persona.", "operator"),
    ("La recepcionista, por favor", "operator"),
    ("Con un representante", "operator"),
    ("Adiós.", "goodbye"),
    ("Gracias, adiós.", "goodbye"),
    ("Hasta luego", "goodbye"),
    ("Eso es todo, gracias.", "goodbye"),
    ("Hace buen tiempo", "unknown"),
    ("", "unknown"),
])
def test_spanish_intents(text, intent):
    assert intent_of(text, "es") == intent


def test_spanish_words_are_not_english_intents():
    # an English call does not understand Spanish, and the other way round
    assert intent_of("¿Dónde puedo estacionar?", "en") == "unknown"
    assert intent_of("What time do you open on Monday?", "es") == "unknown"


def test_spanish_hours_said_naturally():
    reply = respond("¿A qué hora abren el lunes?", FACTS, NOW, "es")
    assert reply.text.startswith(
        "El lunes abrimos a las 8 de la mañana y cerramos a las 5 de la tarde.")
    assert reply.text.endswith("¿Hay algo más en que pueda ayudarle?")
    assert reply.action is Action.CONTINUE and reply.intent == "hours"


def test_spanish_today_tomorrow_and_closed_day():
    # NOW is a Saturday: 9 to 12, Sunday closed
    assert "El sábado abrimos a las 9 de la mañana y cerramos a las 12 del mediodía." in \
        respond("¿Abren hoy?", FACTS, NOW, "es").text
    assert "El domingo no abrimos." in respond("¿Y mañana?", FACTS, NOW, "es").text
    # "por la mañana" is the morning, not tomorrow: the whole week is read
    week = respond("¿Abren por la mañana?", FACTS, NOW, "es").text
    assert week.startswith("Nuestro horario es: lunes de las 8 de la mañana a las 5 de la tarde,")
    assert "jueves de las 8 de la mañana a las 7 de la tarde" in week
    assert week.endswith("domingo cerrado. ¿Hay algo más en que pueda ayudarle?")


def test_spanish_facts_and_endings():
    assert respond("¿Cuál es su dirección?", FACTS, NOW, "es").text.startswith(
        f"Estamos en {FACTS.address}.")
    # digit by digit: the Spanish voice would read "010" as "diez"
    assert "Nuestro número de teléfono es 5 5 5, 0 1 0, 2 0 3 0." in \
        respond("¿Y el teléfono?", FACTS, NOW, "es").text
    operator = respond("Operador", FACTS, NOW, "es")
    assert operator.action is Action.OPERATOR and "recepción" in operator.text
    bye = respond("Adiós", FACTS, NOW, "es")
    assert bye.action is Action.HANGUP
    assert bye.text == f"Gracias por llamar a {FACTS.name}. Adiós."
    assert "diga operador" in respond("Hace buen tiempo", FACTS, NOW, "es").text


def test_spanish_parking_text_when_the_practice_file_has_one():
    translated = dataclasses.replace(FACTS, parking_es="Hay estacionamiento gratis detrás del edificio.")
    assert respond("¿Hay estacionamiento?", translated, NOW, "es").text.startswith(
        "Hay estacionamiento gratis detrás del edificio.")
    # without it, the practice's own text: the caller still gets the facts
    untranslated = dataclasses.replace(FACTS, parking_es="")
    assert respond("¿Hay estacionamiento?", untranslated, NOW, "es").text.startswith(FACTS.parking)
    assert respond("Where can I park?", translated, NOW, "en").text.startswith(FACTS.parking)


def test_greetings():
    assert greeting(FACTS).startswith(f"Hello, this is the automated assistant of {FACTS.name}.")
    spanish = greeting(FACTS, "es")
    assert spanish.startswith(f"Hola, le atiende el asistente automático de {FACTS.name}.")
    assert "operador" in spanish
