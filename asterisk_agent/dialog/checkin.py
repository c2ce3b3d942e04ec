"""An outbound call's dialog once a person answers: who, then what the call is for.

Pure logic, like the receptionist: each caller turn (words or a key) in, one
Reply out.  Identity comes first: the person says they are the patient, then
gives the date of birth (said or typed); nothing about the patient's care is
said before both match.  Then, by the campaign's type:

- results: the results are in the patient portal, nothing more;
- pre-op: the practice's instructions, repeated on request;
- post-op: pain from 1 to 5 (said or pressed), then any concerns in the
  patient's own words.  Pain 5 is put through to the on-call at once; the
  words of every turn also pass the urgent-symptom screen in the call path,
  which never asks a model.

`answers()` are the check-in's results for the chart (ORU^R01 OBX rows).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..ehr.messages import Answer, Patient
from . import slots
from .phrases import fold
from .first import Action, Reply

CALL_TYPES = ("pre-op", "post-op", "results")
# the pain answer that goes to the on-call rather than into the chart only
SEVERE_PAIN = 5
# tries at a question before the call ends politely (identity) or moves on
TRIES = 2


@dataclass(frozen=True)
class _Say:
    opening: str
    who_again: str
    not_them: str
    ask_birth: str
    birth_again: str
    not_confirmed: str
    results: str
    pre_op: str
    repeat_offer: str
    pain: str
    pain_again: str
    concerns: str
    severe: str
    goodbye: str
    no_instructions: str
    machine: str
    no_answer: str


SAY = {
    "en": _Say(
        opening="Hello, this is the automated assistant of {practice}, calling for {given} "
                "{family}. Am I speaking with {given}?",
        who_again="Sorry, I did not catch that. Am I speaking with {given} {family}? "
                  "Please say yes or no.",
        not_them="Thank you. Please ask {given} to call {practice} at {phone}. Goodbye.",
        ask_birth="Thank you. To protect your privacy, please say or type your date of birth, "
                  "month, day and year.",
        birth_again="That does not match our records. Please say or type your date of birth "
                    "once more: month, day and year.",
        not_confirmed="I'm sorry, I could not confirm your details. Please call {practice} at "
                      "{phone}. Goodbye.",
        results="Thank you. Your recent test results are available in your patient portal. "
                "If you have questions about them, please call us at {phone}. Goodbye.",
        pre_op="Thank you. Here are your instructions before your procedure. {instructions}",
        repeat_offer="Would you like me to repeat the instructions?",
        pain="Thank you. We are checking on you after your procedure. On a scale from 1 to "
             "5, where 1 is no pain and 5 is the worst pain, how is your pain today? "
             "You can say the number or press it on your keypad.",
        pain_again="Please say or press a number from 1 to 5.",
        concerns="Thank you. Do you have any concerns or questions for your care team? "
                 "Please tell me now, or say no.",
        severe="I'm sorry you are in so much pain. I am connecting you to the on-call "
               "clinician now. Please stay on the line.",
        goodbye="Thank you. Your answers go to your care team. If anything gets worse, call us "
                "at {phone}, or 911 in an emergency. Goodbye.",
        no_instructions="Your care team will call you with your instructions.",
        # an answering machine: who should call whom back, and nothing else (no
        # health information: anyone in the household may play it)
        machine="Hello, this is a message for {given} from {practice}. Please call us back "
                "at {phone}. Thank you.",
        no_answer="I did not hear an answer. We will call you again, or please call us at "
                  "{phone}. Goodbye.",
    ),
    "es": _Say(
        opening="Hola, le llama el asistente automático de {practice}, para {given} {family}. "
                "¿Hablo con {given}?",
        who_again="Perdone, no le entendí. ¿Hablo con {given} {family}? Diga sí o no, por favor.",
        not_them="Gracias. Por favor, pida a {given} que llame a {practice} al {phone}. Adiós.",
        ask_birth="Gracias. Para proteger su privacidad, diga o marque su fecha de nacimiento: "
                  "mes, día y año.",
        birth_again="No coincide con nuestros registros. Diga o marque su fecha de nacimiento "
                    "una vez más: mes, día y año.",
        not_confirmed="Lo siento, no pude confirmar sus datos. Llame a {practice} al {phone}. "
                      "Adiós.",
        results="Gracias. Los resultados de sus análisis recientes están en su portal de "
                "pacientes. Si tiene preguntas, llámenos al {phone}. Adiós.",
        pre_op="Gracias. Estas son sus instrucciones antes del procedimiento. {instructions}",
        repeat_offer="¿Quiere que le repita las instrucciones?",
        pain="Gracias. Le llamamos para saber cómo está después de su procedimiento. Del 1 al "
             "5, donde 1 es sin dolor y 5 el peor dolor, ¿cuánto dolor tiene hoy? Puede decir "
             "el número o marcarlo en el teclado.",
        pain_again="Diga o marque un número del 1 al 5, por favor.",
        concerns="Gracias. ¿Tiene alguna duda o preocupación para su equipo médico? "
                 "Dígamela ahora, o diga no.",
        severe="Siento que tenga tanto dolor. Le comunico ahora con el médico de guardia. "
               "No cuelgue, por favor.",
        goodbye="Gracias. Sus respuestas llegan a su equipo médico. Si algo empeora, llámenos "
                "al {phone}, o al 911 en una emergencia. Adiós.",
        no_instructions="Su equipo médico le llamará con sus instrucciones.",
        machine="Hola, este es un mensaje para {given} de {practice}. Por favor, devuélvanos "
                "la llamada al {phone}. Gracias.",
        no_answer="No escuché ninguna respuesta. Le volveremos a llamar, o llámenos al "
                  "{phone}. Adiós.",
    ),
}


class CheckIn:
    """The dialog of one answered outbound call."""

    def __init__(self, call_type: str, patient: Patient, practice_name: str, phone: str,
                 language: str = "en", instructions: str = "", today: dt.date | None = None):
        if call_type not in CALL_TYPES:
            raise ValueError(f"call type {call_type!r}: one of {', '.join(CALL_TYPES)}")
        if language not in SAY:
            raise ValueError(f"language {language!r}: one of {', '.join(SAY)}")
        if patient.birth_date is None:
            raise ValueError(f"{patient.id}: no date of birth on the chart to confirm against")
        self.type = call_type
        self.patient = patient
        self.language = language
        self.say = SAY[language]
        self.instructions = instructions.strip() or self.say.no_instructions
        self.today = today
        self._facts = {"practice": practice_name, "phone": phone, "given": patient.given,
                       "family": patient.family}
        self.state = "who"
        self._tries = 0
        self._keys = ""
        self.confirmed = False
        self.pain: int | None = None
        self.concerns: str | None = None
        # what the call reached, for the campaign report
        self.outcome = "started"

    def _text(self, template: str, **more) -> str:
        return template.format(**self._facts, **more)

    def opening(self) -> Reply:
        return Reply(self._text(self.say.opening), intent="who")

    def machine(self) -> str:
        """The message for an answering machine: a call-back number, no health details."""
        return self._text(self.say.machine)

    def silent(self) -> Reply:
        """Nobody answers the questions any more: end the call politely.  The call
        counts as answered once identity was confirmed, else as not confirmed."""
        if self.outcome == "started":
            self.outcome = "answered" if self.confirmed else "not-confirmed"
        return Reply(self._text(self.say.no_answer), Action.HANGUP, "no answer")

    @property
    def typing_birth_date(self) -> bool:
        return self.state == "birth"

    # --- the caller's turns -------------------------------------------------------
    def turn(self, transcript: str) -> Reply:
        return getattr(self, f"_{self.state.replace('-', '_')}")(transcript)

    def typed(self, digit: str) -> Reply | None:
        """A key: digits of the date of birth (None until 8 are in), or the pain score."""
        if self.state == "birth":
            self._keys += digit if digit.isdigit() else ""
            if len(self._keys) < 8:
                return None
            keys, self._keys = self._keys, ""
            return self._birth(keys)
        if self.state == "pain":
            return self._pain(digit)
        return self.turn(digit)

    def _who(self, text: str) -> Reply:
        answer = slots.yes_no(text, self.language)
        if answer is None and any(slots.same_name(w, self.patient.given)
                                  for w in fold(text).split()):
            answer = True  # "this is Ana"
        if answer:
            self.state, self._tries = "birth", 0
            return Reply(self._text(self.say.ask_birth), intent="ask birth")
        if answer is False:
            self.outcome = "not-confirmed"
            return Reply(self._text(self.say.not_them), Action.HANGUP, "not the patient")
        return self._again(self.say.who_again, "who")

    def _birth(self, text: str) -> Reply:
        heard = slots.parse_birth_date(text, self.language, self.today)
        if heard == self.patient.birth_date:
            self.confirmed = True
            self._tries = 0
            return self._purpose()
        return self._again(self.say.birth_again, "birth")

    def _again(self, template: str, intent: str) -> Reply:
        self._tries += 1
        if self._tries >= TRIES:
            self.outcome = "not-confirmed"
            return Reply(self._text(self.say.not_confirmed), Action.HANGUP, "not confirmed")
        return Reply(self._text(template), intent=f"{intent} again")

    def _purpose(self) -> Reply:
        if self.type == "results":
            self.outcome = "answered"
            return Reply(self._text(self.say.results), Action.HANGUP, "results")
        if self.type == "pre-op":
            self.state = "repeat"
            return Reply(self._text(self.say.pre_op, instructions=self.instructions) + " "
                         + self.say.repeat_offer, intent="instructions")
        self.state = "pain"
        return Reply(self._text(self.say.pain), intent="ask pain")

    def _repeat(self, text: str) -> Reply:
        if slots.yes_no(text, self.language):
            return Reply(self.instructions + " " + self.say.repeat_offer, intent="instructions")
        self.outcome = "answered"
        return Reply(self._text(self.say.goodbye), Action.HANGUP, "instructions given")

    def _pain(self, text: str) -> Reply:
        score = pain_score(text, self.language)
        if score is None:
            self._tries += 1
            if self._tries < TRIES:
                return Reply(self.say.pain_again, intent="ask pain again")
            # no number after two tries: on to the concerns, the score left out
        self.pain = score
        if score is not None and score >= SEVERE_PAIN:
            self.outcome = "transferred"
            return Reply(self.say.severe, Action.URGENT, "severe pain")
        self.state = "concerns"
        return Reply(self.say.concerns, intent="ask concerns")

    def _concerns(self, text: str) -> Reply:
        # "no", "nothing", "I'm fine": no concern; anything else is kept in the caller's
        # words ("no, but the wound is red" is a concern, not a no)
        said = text.strip()
        self.concerns = "" if _nothing(said) else said
        self.outcome = "answered"
        return Reply(self._text(self.say.goodbye), Action.HANGUP, "checked in")

    # --- for the chart -------------------------------------------------------------
    def answers(self) -> list[Answer]:
        """The check-in's answers as ORU^R01 observations (empty before identity)."""
        if not self.confirmed or self.type != "post-op":
            return []
        out = []
        if self.pain is not None:
            out.append(Answer("PAIN", "Pain score 1-5", str(self.pain), numeric=True))
        if self.concerns is not None:
            out.append(Answer("CONCERN", "Concerns or questions", self.concerns or "none"))
        return out


_WORDS_1_TO_5 = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "uno": 1, "dos": 2,
                 "tres": 3, "cuatro": 4, "cinco": 5, "won": 1, "to": 2, "too": 2, "for": 4}


def pain_score(text: str, language: str = "en") -> int | None:
    """A pain score 1 to 5 from words or a key: "about a three", "4 out of 5", "5".

    "out of five" is the scale, not the answer; a number outside 1-5, or two
    different numbers ("three or four"), is no answer: the question is asked again.
    """
    folded = slots.words(text, language)
    folded = re.sub(r"\b(?:out of|of|de|sobre) (?:5|five|cinco)\b", " ", folded)
    found = {int(n) for n in re.findall(r"\b\d+\b", folded)}
    if not found:
        # a lone homophone Whisper writes for a number ("to", "for") only when it is all
        # that was said
        bare = re.fullmatch(r"\s*(\w+)\s*\.?\s*", folded)
        if bare and bare.group(1) in _WORDS_1_TO_5:
            found = {_WORDS_1_TO_5[bare.group(1)]}
    if len(found) != 1:
        return None
    (n,) = found
    return n if 1 <= n <= 5 else None


def _nothing(text: str) -> bool:
    """"No", "nothing, thanks", "I'm fine", "nada, estoy bien": no concern to pass on."""
    return bool(re.fullmatch(r"(?:(?:no|nope|nothing|none|nada|i'?m (?:fine|good|ok(?:ay)?)|"
                             r"that'?s all|estoy bien|thanks?|thank you|gracias)[ ,.!]*)+",
                             fold(text)))
