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
    # a question the practice file and the language model could not answer
    not_sure: str
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
    # the receptionist's call flows (receptionist.py): their sentences and keywords
    flow: FlowPhrases | None = None
    # the keypad-only menu (keypad.py), for callers the agent cannot listen to
    keypad: KeypadPhrases | None = None

    def day(self, day: str) -> str:
        """A practice.DAYS name as spoken: "monday" -> "Monday" / "lunes"."""
        return self.days[DAYS.index(day)]

    def day_pattern(self, day: str) -> str:
        return fold(self.day(day))


_ORDINAL_SUFFIX = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
_MESES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
          "septiembre", "octubre", "noviembre", "diciembre")


def say_when_en(at: dt.datetime, today: dt.date) -> str:
    """ "Tuesday the 8th at 9:30 AM"; with the month when it is more than a week away."""
    day = at.strftime("%A")
    nth = f"{at.day}{_ORDINAL_SUFFIX.get(at.day, 'th')}"
    if (at.date() - today).days > 6 or at.date() < today:
        return f"{day}, {_MONTHS_EN[at.month - 1]} {nth}, at {say_time_en(at.time())}"
    return f"{day} the {nth} at {say_time_en(at.time())}"


def say_when_es(at: dt.datetime, today: dt.date) -> str:
    """ "el martes 8 a las 9 y media de la mañana"; con el mes si falta más de una semana."""
    day = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado",
           "domingo")[at.weekday()]
    month = f" de {_MESES[at.month - 1]}" if (at.date() - today).days > 6 \
        or at.date() < today else ""
    return f"el {day} {at.day}{month} a {say_time_es(at.time())}"


def join_or_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", or " + items[-1]


def join_or_es(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " o " + items[-1]


@dataclass(frozen=True)
class FlowPhrases:
    """The receptionist's sentences in one language ({name}-style fields) and flow keywords."""

    # flow -> word patterns on folded text, tried in this order
    flows: tuple[tuple[str, str], ...]
    # a question about the practice itself, answered even mid-flow ("what time do you close?")
    asks_practice: str
    not_understood: str
    ask_name: str
    name_again: str
    ask_birth_date: str
    birth_date_again: str
    not_verified: str         # says nothing about whether such a patient exists
    verify_failed: str
    verified: str
    own_only: str
    ehr_down: str
    after_hours: str
    ask_when: str
    when_again: str
    offer: str                # {options}
    nothing_then: str
    nothing_soon: str
    pick_again: str
    yes_or_no: str
    with_provider: str        # {when} {provider}
    confirm_book: str         # {slot}
    booked: str               # {slot}
    recorded: str
    taken: str
    not_done: str
    no_appointments: str
    which_appointment: str    # {options}
    confirm_cancel: str       # {appointment}
    cancelled: str            # {appointment}
    ask_new_time: str         # {appointment}
    confirm_move: str         # {appointment} {slot}
    moved: str                # {slot}
    ask_drug: str             # {options}: the caller's active medications
    drug_again: str
    no_medications: str
    not_on_list: str
    confirm_refill: str       # {drug}
    refill_sent: str          # {drug}
    ask_message: str
    confirm_message: str      # {message}
    message_sent: str
    # the caller asked for a person and nobody can take the call: a message instead
    nobody_free: str
    refused: str
    say_when: Callable[[dt.datetime, dt.date], str]
    join_or: Callable[[list[str]], str]


FLOW_EN = FlowPhrases(
    flows=(
        ("cancel", r"cancel\w*|call off|won'?t be able to (?:come|make it)|can'?t make it"),
        ("reschedule", r"reschedul\w*|move (?:my|the|it|an)|change (?:my|the) (?:appointment|"
                       r"time|day)|different (?:time|day)|push (?:it|my appointment) back|"
                       r"another (?:time|day)"),
        ("refill", r"refill\w*|re ?fill|prescriptions?|renew\w*|medications?|medicines?|"
                   r"pharmacy|run(?:ning)? out|ran out|meds|pills?"),
        ("message", r"leave (?:a )?(?:message|note)|message|take a note|tell the (?:doctor|nurse)|"
                    r"let the (?:doctor|nurse) know|pass (?:on )?(?:a|the) word"),
        ("book", r"book\w*|appointments?|schedule|make an? (?:visit|appointment)|see (?:the|a) "
                 r"(?:doctor|provider|nurse)|come in|check ?up|physical|visit"),
    ),
    asks_practice=r"do you|are you|you (?:open|close)|your (?:hours|address)|where are",
    not_understood=("Sorry, I can book, change or cancel an appointment, request a prescription "
                    "refill, take a message for the office, or tell you our hours and address. "
                    "To speak with someone, say operator."),
    ask_name=("I can help with that. First I need to confirm who you are. "
              "Please tell me your first and last name."),
    name_again="Sorry, I did not catch your name. Please say your first and last name.",
    ask_birth_date=("Thank you. What is your date of birth? You can say it, or type it on your "
                    "keypad as month, day, and year: eight digits."),
    birth_date_again=("Sorry, I did not catch that date. Please say your date of birth, like "
                      "March 3rd, 1980, or type eight digits: month, day, and year."),
    not_verified=("I'm sorry, I could not confirm those details. Let's try once more. "
                  "Please tell me your first and last name."),
    verify_failed=("I'm sorry, I could not confirm your details. "
                   "Connecting you to the front desk now. Please hold."),
    verified="Thank you, your details are confirmed.",
    own_only=("I can only help with your own appointments and prescriptions, "
              "once I have confirmed who you are."),
    ehr_down=("I'm sorry, I cannot reach our records right now. "
              "Connecting you to the front desk now. Please hold."),
    after_hours=("The office is closed right now, so the office will confirm any booking "
                 "request on the next business day."),
    ask_when=("What day and time would suit you? You can also tell me the kind of visit, "
              "or a provider you prefer."),
    when_again="Sorry, which day would suit you? For example, next Tuesday afternoon.",
    offer="I have {options}. Which one would you like?",
    nothing_then="I have nothing free then.",
    nothing_soon=("I'm sorry, I have nothing free in the next two weeks for that. "
                  "What other day would suit you?"),
    pick_again="Sorry, which one would you like? You can say the first or the second one.",
    yes_or_no="Sorry, please say yes or no.",
    with_provider="{when} with {provider}",
    confirm_book="Shall I book {slot}?",
    booked="You are booked for {slot}.",
    recorded="Your request is recorded, and the office will confirm it.",
    taken="I'm sorry, that time has just been taken.",
    not_done="All right, I have not changed anything.",
    no_appointments="I don't see any upcoming appointments for you.",
    which_appointment="You have {options}. Which one do you mean?",
    confirm_cancel="Shall I cancel your appointment on {appointment}?",
    cancelled="Your appointment on {appointment} is cancelled.",
    ask_new_time=("Your appointment is on {appointment}. "
                  "What day and time would you like instead?"),
    confirm_move="Shall I move your appointment on {appointment} to {slot}?",
    moved="Your appointment is moved to {slot}.",
    ask_drug=("Which medication would you like refilled: {options}? "
                   "You can say its name, or press 1 for the first, 2 for the second."),
    drug_again="Sorry, I did not catch which one.",
    no_medications=("I don't see any active medications on your list. "
                    "Would you like to leave a message for your provider?"),
    not_on_list=("I could not find that medication on your active list. "
                 "Would you like to leave a message for your provider about it?"),
    confirm_refill="Shall I send a refill request for {drug} to your provider?",
    refill_sent="Your refill request for {drug} is sent to your provider.",
    ask_message="Please tell me your message for the office now.",
    confirm_message="Your message is: {message}. Shall I send it?",
    message_sent="Your message is sent to the office.",
    nobody_free=("I'm sorry, nobody at the front desk can take your call right now. "
                 "I can take a message for the office instead."),
    refused=("I'm sorry, the office system did not accept that. "
             "Connecting you to the front desk now. Please hold."),
    say_when=say_when_en,
    join_or=join_or_en,
)

FLOW_ES = FlowPhrases(
    flows=(
        ("cancel", r"cancel\w*|anular|no (?:voy a )?pod(?:er|re) (?:ir|venir)"),
        ("reschedule", r"reprogram\w*|cambiar (?:mi|la) (?:cita|hora|fecha)|mover (?:mi|la) cita|"
                       r"otr[oa] (?:dia|hora|fecha)|cambiar(?:la)? de (?:dia|hora)"),
        ("refill", r"recetas?|renova\w*|medicamentos?|medicinas?|farmacia|pastillas?|"
                   r"se me (?:acab|termin)\w*|resurtir"),
        ("message", r"dejar (?:un )?(?:mensaje|recado)|mensaje|recado|avis\w+ al? (?:doctor|"
                    r"medico|enfermer)"),
        ("book", r"citas?|agendar|programar|reservar|hacer una cita|pedir hora|consulta|"
                 r"ver al? (?:doctor|medico|doctora|medica)|chequeo"),
    ),
    asks_practice=(r"abren|cierran|estan abiertos|su horario|(?:a que hora|cuando) "
                   r"(?:abre|cierra)|donde estan"),
    not_understood=("Perdone, puedo pedir, cambiar o cancelar una cita, solicitar una receta, "
                    "tomar un mensaje para la consulta, o darle nuestro horario y dirección. "
                    "Para hablar con una persona, diga operador."),
    ask_name=("Con gusto. Primero necesito confirmar su identidad. "
              "Dígame su nombre y apellido, por favor."),
    name_again="Perdone, no entendí su nombre. Dígame su nombre y apellido, por favor.",
    ask_birth_date=("Gracias. ¿Cuál es su fecha de nacimiento? Puede decirla, o marcarla en el "
                    "teclado como mes, día y año: ocho dígitos."),
    birth_date_again=("Perdone, no entendí la fecha. Diga su fecha de nacimiento, por ejemplo "
                      "tres de marzo de mil novecientos ochenta, o marque ocho dígitos: "
                      "mes, día y año."),
    not_verified=("Lo siento, no pude confirmar esos datos. Intentémoslo otra vez. "
                  "Dígame su nombre y apellido, por favor."),
    verify_failed=("Lo siento, no pude confirmar sus datos. "
                   "Le comunico con la recepción. Por favor, espere."),
    verified="Gracias, sus datos están confirmados.",
    own_only=("Solo puedo ayudarle con sus propias citas y recetas, "
              "una vez confirmada su identidad."),
    ehr_down=("Lo siento, ahora no puedo consultar nuestros registros. "
              "Le comunico con la recepción. Por favor, espere."),
    after_hours=("La consulta está cerrada ahora, así que la consulta confirmará cualquier "
                 "solicitud de cita el próximo día hábil."),
    ask_when=("¿Qué día y hora le vienen bien? También puede decirme el tipo de consulta, "
              "o el profesional que prefiere."),
    when_again="Perdone, ¿qué día le viene bien? Por ejemplo, el próximo martes por la tarde.",
    offer="Tengo {options}. ¿Cuál prefiere?",
    nothing_then="No tengo nada libre en ese momento.",
    nothing_soon=("Lo siento, no tengo nada libre para eso en las próximas dos semanas. "
                  "¿Qué otro día le viene bien?"),
    pick_again="Perdone, ¿cuál prefiere? Puede decir la primera o la segunda.",
    yes_or_no="Perdone, diga sí o no, por favor.",
    with_provider="{when} con {provider}",
    confirm_book="¿Le reservo {slot}?",
    booked="Su cita queda reservada {slot}.",
    recorded="Su solicitud queda registrada, y la consulta se la confirmará.",
    taken="Lo siento, esa hora se acaba de ocupar.",
    not_done="De acuerdo, no he cambiado nada.",
    no_appointments="No veo ninguna cita próxima a su nombre.",
    which_appointment="Tiene {options}. ¿A cuál se refiere?",
    confirm_cancel="¿Cancelo su cita del {appointment}?",
    cancelled="Su cita del {appointment} queda cancelada.",
    ask_new_time="Su cita es {appointment}. ¿Qué día y hora prefiere en su lugar?",
    confirm_move="¿Cambio su cita del {appointment} a {slot}?",
    moved="Su cita queda cambiada a {slot}.",
    ask_drug=("¿Qué medicamento necesita renovar: {options}? "
                   "Puede decir su nombre, o marcar 1 para el primero, 2 para el segundo."),
    drug_again="Perdone, no entendí cuál.",
    no_medications=("No veo medicamentos activos en su lista. "
                    "¿Quiere dejar un mensaje para su médico?"),
    not_on_list=("No encontré ese medicamento en su lista activa. "
                 "¿Quiere dejar un mensaje para su médico sobre él?"),
    confirm_refill="¿Envío una solicitud de receta de {drug} a su médico?",
    refill_sent="Su solicitud de receta de {drug} está enviada a su médico.",
    ask_message="Dígame ahora su mensaje para la consulta, por favor.",
    confirm_message="Su mensaje es: {message}. ¿Lo envío?",
    message_sent="Su mensaje está enviado a la consulta.",
    nobody_free=("Lo siento, ahora mismo no hay nadie en la recepción que pueda atenderle. "
                 "Puedo tomarle un mensaje para la consulta."),
    refused=("Lo siento, el sistema de la consulta no lo aceptó. "
             "Le comunico con la recepción. Por favor, espere."),
    say_when=say_when_es,
    join_or=join_or_es,
)


@dataclass(frozen=True)
class KeypadPhrases:
    """The keypad-only menu in one language (keypad.py): what a caller hears when
    the agent cannot listen, only take keys.  {name}-style fields."""

    greeting: str             # {name}
    menu: str
    again: str                # the menu once more, after the hours
    no_key: str
    not_a_choice: str


KEYPAD_EN = KeypadPhrases(
    greeting=("Hello, you have reached {name}. "
              "Our automated assistant is not available right now."),
    menu="Press 1 to hear our opening hours and address. Press 0 for the front desk.",
    again="To hear this again, press 1. For the front desk, press 0.",
    no_key="Sorry, I did not get a choice.",
    not_a_choice="Sorry, that is not one of the choices.",
)

KEYPAD_ES = KeypadPhrases(
    greeting=("Hola, ha llamado a {name}. "
              "Nuestro asistente automático no está disponible en este momento."),
    menu=("Para escuchar nuestro horario y dirección, oprima el uno. "
          "Para hablar con la recepción, oprima el cero."),
    again="Para escucharlo otra vez, oprima el uno. Para la recepción, oprima el cero.",
    no_key="Perdone, no recibí ninguna opción.",
    not_a_choice="Perdone, esa no es una de las opciones.",
)


ENGLISH = Phrases(
    language="en",
    greeting=("Hello, this is the automated assistant of {name}. "
              "How can I help you today? You can book, move or cancel an appointment, "
              "ask for a prescription refill, ask about our hours, "
              "or say operator at any time to reach the front desk."),
    not_understood=("Sorry, I can help with our opening hours, our address, our phone number "
                    "or parking. To speak with someone, say operator."),
    no_input="Are you still there? You can ask about our hours, or say operator.",
    anything_else="Is there anything else I can help you with?",
    transfer="Connecting you to the front desk now. Please hold.",
    goodbye="Thank you for calling {name}. Goodbye.",
    too_long="Sorry, I could only catch part of that.",
    not_sure="I'm not sure about that; I can take a message or connect you to the front desk.",
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
    flow=FLOW_EN,
    keypad=KEYPAD_EN,
)

_DIAS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")

SPANISH = Phrases(
    language="es",
    greeting=("Hola, le atiende el asistente automático de {name}. "
              "¿En qué puedo ayudarle? Puede pedir, cambiar o cancelar una cita, pedir una "
              "receta, preguntar por nuestro horario, "
              "o decir operador en cualquier momento para hablar con la recepción."),
    not_understood=("Perdone, puedo ayudarle con nuestro horario, la dirección, el número de "
                    "teléfono o el estacionamiento. Para hablar con una persona, diga operador."),
    no_input="¿Sigue ahí? Puede preguntar por nuestro horario, o decir operador.",
    anything_else="¿Hay algo más en que pueda ayudarle?",
    transfer="Le comunico con la recepción. Por favor, espere.",
    goodbye="Gracias por llamar a {name}. Adiós.",
    too_long="Perdone, solo pude entender una parte.",
    # not "no estoy seguro": "seguro" is also insurance, a common question here
    not_sure=("No lo sé con certeza; puedo tomarle un mensaje o comunicarle con la "
              "recepción."),
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
    flow=FLOW_ES,
    keypad=KEYPAD_ES,
)

PHRASES = {p.language: p for p in (ENGLISH, SPANISH)}


def of(language: str) -> Phrases:
    """The phrases of a language the dialog speaks (KeyError for another)."""
    return PHRASES[language]
