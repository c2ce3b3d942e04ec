"""Everything the agent says and listens for, in each language it speaks.

Pure data and small pure functions: the dialog (first.py) picks a Phrases by
the call's language and never holds a sentence of its own.  Keywords are
matched on normalized text (lower case, accents folded: Whisper writes
"dirección" and "direccion" alike), so the patterns here carry no accents.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from .practice import DAYS


def fold(text: str) -> str:
    """Lower case, accents dropped ("Miércoles" -> "miercoles"), punctuation to spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def primary(tag: str) -> str:
    """The language of a language tag, without region: "es-MX", "es_419", "ES" -> "es"."""
    return re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]


def choose_language(requested: str, spoken: tuple[str, ...], default: str) -> str:
    """The language a call is held in: the one the dialplan asked for, if spoken here."""
    language = primary(requested)
    return language if language in spoken else default


def say_time_en(t: dt.time) -> str:
    """8:00 -> "8 AM", 17:30 -> "5:30 PM": how a receptionist says it."""
    hour = t.hour % 12 or 12
    suffix = "AM" if t.hour < 12 else "PM"
    return f"{hour} {suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d} {suffix}"


def say_time_es(t: dt.time) -> str:
    """8:00 -> "las 8 de la mañana", 17:30 -> "las 5 y media de la tarde", 13:00 -> "la una de la tarde"."""
    hour = t.hour % 12 or 12
    # "la una", not "las uno": the hour is feminine, and one is singular
    spoken = "la una" if hour == 1 else f"las {hour}"
    minutes = {0: "", 15: " y cuarto", 30: " y media"}.get(t.minute, f" y {t.minute}")
    if t.hour < 6:
        part = "de la madrugada"
    elif t.hour < 12:
        part = "de la mañana"
    elif t.hour == 12:
        part = "del mediodía"
    elif t.hour < 20:
        part = "de la tarde"
    else:
        part = "de la noche"
    return f"{spoken}{minutes} {part}"


def _spell_digits(number: str) -> str:
    """"555 010 2030" -> "5 5 5, 0 1 0, 2 0 3 0": read digit by digit, not as "two thousand thirty"."""
    groups = [" ".join(g) for g in re.findall(r"\d+", number)]
    return ", ".join(groups) if groups else number


@dataclass(frozen=True)
class Phrases:
    """One language's sentences ({name}-style fields filled by the dialog) and keywords."""

    language: str
    greeting: str
    not_understood: str
    no_input: str
    anything_else: str
    transfer: str
    goodbye: str
    too_long: str
    address: str          # {address}
    phone: str            # {phone}
    day_open: str         # {day} {opens} {closes}
    day_closed: str       # {day}
    week: str             # {days}: the week_* parts joined
    week_open: str        # {day} {opens} {closes}
    week_closed: str      # {day}
    days: tuple[str, ...]  # as spoken, Monday first (practice.DAYS order)
    say_time: Callable[[dt.time], str]
    say_phone: Callable[[str], str]
    # intent -> word patterns (on folded text), tried in this order
    intents: tuple[tuple[str, tuple[str, ...]], ...]
    today: str            # pattern
    tomorrow: str         # pattern

    def day(self, day: str) -> str:
        """A practice.DAYS name as spoken: "monday" -> "Monday" / "lunes"."""
        return self.days[DAYS.index(day)]

    def day_pattern(self, day: str) -> str:
        return fold(self.day(day))


ENGLISH = Phrases(
    language="en",
    greeting=("Hello, this is the automated assistant of {name}. "
              "How can I help you today? You can ask about our hours, address or parking, "
              "or say operator at any time to reach the front desk."),
    not_understood=("Sorry, I can help with our opening hours, our address, our phone number "
                    "or parking. To speak with someone, say operator."),
    no_input="Are you still there? You can ask about our hours, or say operator.",
    anything_else="Is there anything else I can help you with?",
    transfer="Connecting you to the front desk now. Please hold.",
    goodbye="Thank you for calling {name}. Goodbye.",
    too_long="Sorry, I could only catch part of that.",
    address="We are at {address}.",
    phone="Our phone number is {phone}.",
    day_open="On {day} we are open from {opens} to {closes}.",
    day_closed="On {day} we are closed.",
    week="Our hours are: {days}.",
    week_open="{day} {opens} to {closes}",
    week_closed="{day} closed",
    days=tuple(d.capitalize() for d in DAYS),
    say_time=say_time_en,
    # the practice file writes the number as it is read out
    say_phone=lambda number: number,
    intents=(
        # "operator" is heard as "opera tour" by small speech models on the phone
        ("operator", (r"operator", r"opera ?tou?r", r"representative", r"receptionist",
                      r"front desk", r"real person", r"a person", r"human", r"somebody",
                      r"someone", r"speak (?:to|with) (?:a|the|an|someone)",
                      r"talk (?:to|with) (?:a|the|an|someone)")),
        ("goodbye", (r"good ?bye", r"bye", r"that'?s all", r"that is all", r"nothing else",
                     r"no thanks?", r"no thank you", r"hang up", r"see you")),
        ("parking", (r"park", r"parking", r"car", r"garage", r"lot")),
        ("address", (r"address", r"where", r"located", r"location", r"directions",
                     r"find you", r"street")),
        ("phone", (r"phone", r"number", r"call back", r"callback", r"fax")),
        ("hours", (r"hours?", r"open", r"opening", r"close", r"closing", r"closed",
                   r"what time", r"when", r"today", r"tomorrow", r"weekend", *DAYS)),
    ),
    today=r"today",
    tomorrow=r"tomorrow",
)

_DIAS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")

SPANISH = Phrases(
    language="es",
    greeting=("Hola, le atiende el asistente automático de {name}. "
              "¿En qué puedo ayudarle? Puede preguntar por nuestro horario, la dirección o el "
              "estacionamiento, o decir operador en cualquier momento para hablar con la recepción."),
    not_understood=("Perdone, puedo ayudarle con nuestro horario, la dirección, el número de "
                    "teléfono o el estacionamiento. Para hablar con una persona, diga operador."),
    no_input="¿Sigue ahí? Puede preguntar por nuestro horario, o decir operador.",
    anything_else="¿Hay algo más en que pueda ayudarle?",
    transfer="Le comunico con la recepción. Por favor, espere.",
    goodbye="Gracias por llamar a {name}. Adiós.",
    too_long="Perdone, solo pude entender una parte.",
    address="Estamos en {address}.",
    phone="Nuestro número de teléfono es {phone}.",
    # "a las 5 de la tarde" is heard right more often than "de 8 ... a 5" (measured)
    day_open="El {day} abrimos a {opens} y cerramos a {closes}.",
    day_closed="El {day} no abrimos.",
    week="Nuestro horario es: {days}.",
    week_open="{day} de {opens} a {closes}",
    week_closed="{day} cerrado",
    days=_DIAS,
    say_time=say_time_es,
    say_phone=_spell_digits,
    intents=(
        ("operator", (r"operador(?:a)?", r"recepcion(?:ista)?", r"una persona",
                      r"persona real", r"representante", r"secretaria", r"humano", r"alguien",
                      r"hablar con (?:el|la|un|una|alguien)")),
        ("goodbye", (r"adios", r"hasta luego", r"hasta pronto", r"eso es todo", r"es todo",
                     r"nada mas", r"no gracias", r"chao", r"chau", r"colgar")),
        ("parking", (r"estacionamiento", r"estacionar\w*", r"aparcar", r"aparcamiento",
                     r"parqueo", r"parquear", r"parqueadero", r"coche", r"carro")),
        ("address", (r"direccion", r"donde", r"ubicad[oa]s?", r"ubicacion", r"como llego",
                     r"calle")),
        ("phone", (r"telefono", r"numero", r"llamar", r"fax")),
        # "mañana" is also "morning": "por la mañana" asks about a time of day
        ("hours", (r"horarios?", r"horas?", r"abren", r"abiertos?", r"abre", r"cierran",
                   r"cierra", r"cerrados?", r"a que hora", r"cuando", r"hoy", r"manana",
                   r"fin de semana", *(fold(d) for d in _DIAS))),
    ),
    today=r"hoy",
    tomorrow=r"(?<!la )manana",
)

PHRASES = {p.language: p for p in (ENGLISH, SPANISH)}


def of(language: str) -> Phrases:
    """The phrases of a language the dialog speaks (KeyError for another)."""
    return PHRASES[language]
