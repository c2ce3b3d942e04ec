"""Guardrails around the language model: its input is screened, its output never trusted.

Pure functions on text, English and Spanish.  `injection()` flags a caller's
words that try to steer the model (new instructions, a new role, the system
prompt, another patient's records).  `reject_reason()` checks a reply before a
caller hears it: no medical advice or diagnosis, no talk about a patient, no
number, time, price, policy or name that the practice facts do not hold, nothing
that echoes an injection.  `ungrounded()` finds extracted slot values the
caller never said, `dropped_facts()` what a rephrasing lost and
`meaning_changed()` whether it says something else.  A rejected reply
is dropped and the caller hears the fixed phrasing instead, so every check here
errs on the side of rejecting.  Known limit: a number is checked against all
the facts, not the day it belongs to ("open at 8 on Saturday" passes when any
day opens at 8).
"""

from __future__ import annotations

import re
from typing import Any

from .phrases import fold

# --- the caller's words ----------------------------------------------------------

# Patterns on folded text (lower case, no accents, punctuation but apostrophes
# gone): reason -> patterns.
_RECORDS_EN = (r"appointments?|records?|charts?|medications?|meds|prescriptions?|results?|"
               r"diagnos[ie]s|history|informations?|info|files?|details|address|phone number|"
               r"date of birth|birthday|visits?|notes|labs?|data")
_RECORDS_ES = (r"citas?|historial|historia clinica|expediente|medicamentos?|medicinas?|"
               r"recetas?|resultados?|diagnosticos?|datos|informacion|direccion|telefono|"
               r"fecha de nacimiento|visitas?|notas|analisis")
# possessives that are not another person: "today's appointments", "the doctor's office"
_NOT_A_PERSON = (r"my|your|our|what|that|it|let|there|here|who|where|when|he|she|today|"
                 r"tomorrow|yesterday|doctor|doctors|practice|office|clinic|week|year|month|"
                 r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                 # family: the flows identify whom a proxy caller asks for
                 r"child|son|daughter|kid|kids|baby|wife|husband|mother|father|mom|dad")
# after "de" in Spanish: a time or the caller's own, not a person
_NOT_A_PERSON_ES = (r"mi|mis|su|sus|hoy|manana|ayer|la manana|la tarde|la noche|esta|este|"
                    r"la semana|el mes|lunes|martes|miercoles|jueves|viernes|sabado|domingo|"
                    r"seguimiento|control|revision|urgencia|emergencia|rutina|nuevo|nueva|"
                    r"clinica|consultorio|oficina|practica|doctor|doctora|medico|medica|centro|"
                    r"hospital|estacionamiento|recepcion|farmacia|laboratorio|edificio")

_INJECTION: dict[str, tuple[str, ...]] = {
    "ignore-instructions": (
        r"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\b.{0,40}?"
        r"\b(?:instructions?|rules|prompts?|guidelines|programming|directions|orders|"
        r"restrictions|guardrails|everything (?:above|before|else))\b",
        r"\bnew (?:instructions|rules|task|orders)\b",
        r"\b(?:ignora|ignore|olvida|olvide|descarta|descarte|omite|omita|salta|salte)\b.{0,40}?"
        r"\b(?:instrucciones|reglas|indicaciones|prompt|ordenes|restricciones)\b",
        r"\b(?:nuevas|nuevas) (?:instrucciones|reglas|ordenes)\b",
    ),
    "role-change": (
        r"\byou are (?:now|no longer)\b",
        r"\bfrom now on\b.{0,30}\b(?:you|act|answer|respond|say|reply)\b",
        r"\b(?:act|behave|respond|answer) (?:as if|like|as an?|as the|as my)\b",
        r"\bpretend (?:to be|that you|you)\b",
        r"\brole ?play\b",
        r"\b(?:developer|admin|administrator|debug|god|unrestricted) mode\b",
        r"\bjailbreak\b",
        r"\bahora (?:eres|seras|vas a ser|actuas|actua)\b",
        r"\ba partir de ahora\b.{0,30}"
        r"\b(?:eres|seras|actua\w*|respond\w*|di|dices|dira|contest\w*)\b",
        r"\b(?:actua|actue|finge|finja|haz de cuenta|haga de cuenta|simula|simule)\b"
        r".{0,15}\b(?:como|que eres|que es|ser)\b",
        r"\bmodo (?:desarrollador|administrador|sin restricciones|dios)\b",
    ),
    "system-prompt": (
        r"\bsystem (?:prompt|message|instructions?)\b",
        r"\b(?:reveal|show|print|repeat|tell|give|read|say|recite)\b( me)? (?:your|the) "
        r"(?:prompt|instructions|rules|initial|original|hidden|secret|text above|words above)",
        r"\bwhat (?:are|were) your (?:instructions|rules)\b",
        r"\b(?:prompt|mensaje|instrucciones) del sistema\b",
        r"\b(?:tus|sus) instrucciones\b",
        r"\b(?:repite|repita|muestra|muestrame|dime|digame|revela|revele|lee|leeme)\b"
        r".{0,10}\b(?:el prompt|las instrucciones|tus reglas|sus reglas|el texto anterior)\b",
    ),
    "other-patient": (
        # "read me John Smith's appointments", "when is Mary's next appointment"
        rf"\b(?!(?:{_NOT_A_PERSON})')[a-z]+'s? (?:next |last |upcoming |recent |medical |"
        rf"lab |test )?(?:{_RECORDS_EN})\b",
        rf"\b(?:{_RECORDS_EN}) (?:of|for|about) (?:another|other|a different|someone else|"
        r"somebody else|all|every|the other)\b",
        r"\b(?:all|every|other|another|list of|list all|list the) (?:the )?patients?\b",
        r"\b(?:patient|patients) (?:list|names|records|files|database)\b",
        rf"\b(?:lee|leeme|lea|leame|dime|digame|dame|deme|muestrame|muestreme|ensename|"
        rf"enseneme|lista|busca|busque|dicta|dicte)\b.{{0,30}}\b(?:{_RECORDS_ES})\b"
        rf" (?:del?|de la|de los|de las) (?!(?:{_NOT_A_PERSON_ES})\b)"
        r"(?:paciente |senor |senora |sr |sra |senorita )?[a-z]+",
        r"\b(?:otros?|otras?|todos los|todas las|lista de) pacientes?\b",
        rf"\b(?:{_RECORDS_ES}) de (?:otro|otra|otras|otros|otra persona|alguien mas)\b",
    ),
}
_INJECTION_RE = {reason: re.compile("|".join(f"(?:{p})" for p in patterns))
                 for reason, patterns in _INJECTION.items()}


def _fold(text: str) -> str:
    # the typographic apostrophe that speech models and keyboards write
    return fold(text.replace("\u2019", "'"))


def injection(text: str) -> str | None:
    """Why the caller's words look like an attempt to steer the model, or None.

    The reason is one of: ignore-instructions, role-change, system-prompt,
    other-patient.  Flagged words never reach the model.
    """
    words = _fold(text)
    for reason, pattern in _INJECTION_RE.items():
        if pattern.search(words):
            return reason
    return None


# --- the model's reply -------------------------------------------------------------

_MEDICAL: tuple[str, ...] = (
    # dosages and drug instructions
    r"\b\d+(?:[.,]\d+)? ?(?:mg|mcg|milligrams?|micrograms?|ml|milliliters?|cc|units?|"
    r"tablets?|pills?|capsules?|doses?|puffs?|drops?|miligramos?|mililitros?|tabletas?|"
    r"pastillas?|capsulas?|dosis|gotas?|comprimidos?)\b",
    r"\b(?:one|two|three|four|half|a|una|un|dos|tres|media) (?:tablet|pill|capsule|dose|"
    r"pastilla|tableta|capsula|dosis)s?\b",
    r"\b(?:you|u) (?:should|must|need to|ought to|could|can|may want to|might want to) "
    r"(?:take|stop taking|start taking|increase|decrease|double|skip|apply|rest|ice)\b",
    r"\b(?:take|try|use) (?:some|an?|two|one|your) ?(?:ibuprofen|aspirin|tylenol|advil|"
    r"acetaminophen|paracetamol|antibiotics?|medication|medicine|painkillers?|antihistamines?)\b",
    r"\b(?:ibuprofen|aspirin|tylenol|advil|acetaminophen|paracetamol|antibiotics?|"
    r"painkillers?|antihistamines?|ibuprofeno|aspirina|antibioticos?|analgesicos?)\b",
    r"\b(?:i|we) (?:recommend|suggest|advise) (?:that you )?(?:take|taking|you take|using|"
    r"trying|stopping|starting|rest|resting)\b",
    r"\b(?:increase|decrease|lower|raise|double|halve|stop|change) (?:your|the) "
    r"(?:dose|dosage|medication|medicine|prescription)\b",
    # diagnosis
    r"\b(?:it )?(?:sounds|seems|looks) (?:like|as if) (?:you|it|this)\b",
    r"\byou (?:probably|likely|might|may|could|must|seem to|appear to) (?:have|be suffering|"
    r"be having)\b",
    r"\byou (?:have|got) (?:an?|the) (?:infection|virus|flu|cold|fever|condition|disease|"
    r"allergy|fracture|sprain|migraine)\b",
    r"\b(?:diagnos[ie]s|diagnosed|diagnose|symptoms? (?:of|suggest|indicate|point))\b",
    r"\b(?:probably|likely) (?:just |only )?(?:a|an) (?:infection|virus|cold|flu|allergy|"
    r"sprain|migraine|strain)\b",
    r"\bnothing (?:to worry|serious)\b",
    r"\b(?:deberia|debe|tiene que|puede) (?:tomar|dejar de tomar|aumentar|disminuir|"
    r"reducir|duplicar|aplicar(?:se)?|descansar)\b",
    r"\b(?:tome|tomese|aplique|apliquese|deje de tomar|descanse)\b",
    r"\b(?:le )?recomiendo (?:que )?(?:tome|tomar|use|usar|deje|descanse|descansar)\b",
    r"\b(?:parece|suena|creo) (?:que )?(?:usted |tu )?(?:tiene|tienes|sufre|es)\b",
    r"\b(?:usted|tu) (?:probablemente|seguramente|quiza|quizas)? ?(?:tiene|tienes) "
    r"(?:una?|el|la) (?:infeccion|virus|gripe|resfriado|fiebre|alergia|fractura|"
    r"enfermedad|condicion|migrana)\b",
    r"\b(?:diagnostico|diagnosticar|sintomas? de)\b",
    r"\bno (?:es|parece) (?:nada )?(?:grave|serio|preocupante)\b",
)
_MEDICAL_RE = re.compile("|".join(f"(?:{p})" for p in _MEDICAL))

# A patient's data in a reply to a practice question: the model has none to give,
# so any of it is invented or leaked.
_PATIENT_RE = re.compile(
    r"\b(?:your|his|her|their|the patient's|[a-z]+'s) (?:next |last |upcoming )?"
    r"(?:appointments?|prescriptions?|medications?|records?|results?|chart|diagnosis|visit)"
    r" (?:is|are|was|were|on|at|for|with|shows?)\b"
    r"|\b(?:patient|patients|paciente|pacientes)\b"
    r"|\b(?:has|have|had) (?:an?|the|his|her|their) (?:appointment|visit|prescription)\b"
    r"|\b(?:su|sus|tu|tus) (?:proxima |ultima )?(?:citas?|recetas?|medicamentos?|resultados?|"
    r"historial|expediente) (?:es|son|esta|estan|fue|era|para|con)\b"
    r"|\b(?:tiene|tenia) (?:una|la) cita\b")

# Words that claim a price or a policy: allowed only when the facts use them too.
_CLAIMS = (
    "price", "prices", "cost", "costs", "fee", "fees", "charge", "charges", "copay",
    "co-pay", "dollar", "dollars", "cash", "payment", "pay", "insurance", "medicare",
    "medicaid", "policy", "policies", "refund", "discount", "free", "deposit", "penalty",
    "walk-in", "walk-ins", "telehealth", "video", "same-day", "guarantee", "guaranteed",
    "precio", "precios", "costo", "cuesta", "cuestan", "tarifa", "cobro", "cobramos",
    "copago", "dolar", "dolares", "efectivo", "pago", "pagar", "seguro", "seguros",
    "politica", "reembolso", "descuento", "gratis", "gratuito", "deposito", "multa",
    "garantia", "garantizado",
)
_CLAIMS_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in _CLAIMS) + r")\b")

# What the model says when it steps out of its role, or leaks its instructions.
_META_RE = re.compile(
    r"\b(?:system prompt|my instructions|my prompt|i was instructed|i am programmed|"
    r"as an ai|language model|i am now|i'm now|developer mode|jailbreak|"
    r"mis instrucciones|modelo de lenguaje|como ia|como una ia|ahora soy)\b")

# Number words per language.  "one"/"uno"/"un"/"una" are left out: far more often a
# pronoun or an article than a number; English "once" is not eleven.
_NUMBER_WORDS = {
    "en": {
        "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
        "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
        "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
        "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
        "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
        "noon": 12, "midnight": 0, "half": 30, "quarter": 15,
    },
    "es": {
        "cero": 0, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
        "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13,
        "catorce": 14, "quince": 15, "dieciseis": 16, "diecisiete": 17, "dieciocho": 18,
        "diecinueve": 19, "veinte": 20, "treinta": 30, "cuarenta": 40, "cincuenta": 50,
        "sesenta": 60, "setenta": 70, "ochenta": 80, "noventa": 90, "cien": 100,
        "ciento": 100, "mil": 1000, "mediodia": 12, "medianoche": 0, "media": 30,
        "cuarto": 15,
    },
}
_NUMBER_RE = {language: re.compile(r"\d+|\b(?:" + "|".join(words) + r")\b")
              for language, words in _NUMBER_WORDS.items()}
_CLOCK_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")

# Capitalized words that are not names.
_NOT_NAMES = {
    "i", "am", "pm", "a.m", "p.m", "ok", "okay", "yes", "no", "sorry", "hello", "thank",
    "thanks", "please", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december", "english", "spanish", "sr", "sra",
    "usted", "lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo",
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
    "octubre", "noviembre", "diciembre", "si", "hola", "gracias", "perdon", "lo", "siento",
    # titles: the name after one is what counts (see _TITLE_RE)
    "dr", "dra", "doctor", "doctora", "mr", "mrs", "ms", "miss", "srta", "senor", "senora",
}
# a title names a person whatever follows it, even at the start of a sentence
_TITLE_RE = re.compile(r"\b(?:dr|dra|doctor|doctora|mr|mrs|ms|miss|nurse|sr|sra|srta|"
                       r"senor|senora)\.? ([a-z]+)")
_SENTENCE_END = re.compile(r"[.!?¡¿:;]\s*$")


def numbers(text: str, language: str = "en") -> set[int]:
    """Every number in the text, written in digits or in the language's words."""
    words = _NUMBER_WORDS.get(language, {})
    pattern = _NUMBER_RE.get(language, _NUMBER_RE["en"])
    return {int(t) if t.isdigit() else words.get(t, 0) for t in pattern.findall(_fold(text))}


def _fact_numbers(facts: str) -> set[int]:
    # digits only: the facts are written data, not speech
    allowed = {int(n) for n in re.findall(r"\d+", facts)}
    # a 24-hour time in the facts may be said on a 12-hour clock ("17:00" -> "5 PM")
    for hour, _minute in _CLOCK_RE.findall(facts):
        h = int(hour)
        allowed |= {h % 12, h % 12 or 12}
        if h == 12:
            allowed.add(12)
    return allowed


def _names(text: str) -> set[str]:
    """Words that look like a person's name: capitalized where a sentence does not
    start, or after a title (Dr., Mrs., Sr.)."""
    found = set()
    for m in re.finditer(r"[A-ZÁÉÍÓÚÑ][\w'’-]*", text):
        before = text[:m.start()]
        if not before.strip() or _SENTENCE_END.search(before) or before.rstrip()[-1] in "\"(":
            continue
        found.add(_fold(m.group()).split("'")[0])
    found |= {m.group(1) for m in _TITLE_RE.finditer(_fold(text))}
    return {n for n in found if n and n not in _NOT_NAMES}


def reject_reason(reply: str, facts: str, question: str = "", language: str = "en") -> str | None:
    """Why the model's reply must not be spoken, or None when it may be.

    `facts` is what the model was given to answer from; everything the reply
    states (numbers, times, prices, policies, names) must come from it.
    """
    text = reply.strip()
    if not text:
        return "empty reply"
    if len(text) > 400:
        return "too long"
    if question and (reason := injection(question)):
        return f"the question is an injection attempt ({reason})"
    words = _fold(text)
    known = _fold(facts)
    if reason := injection(text):
        return f"the reply carries an injection ({reason})"
    if m := _META_RE.search(words):
        return f"the reply steps out of its role ({m.group()!r})"
    if m := _MEDICAL_RE.search(words):
        return f"medical advice or diagnosis ({m.group()!r})"
    if m := _PATIENT_RE.search(words):
        if m.group() not in known:
            return f"talks about a patient ({m.group()!r})"
    invented = numbers(text, language) - _fact_numbers(facts)
    if invented:
        return f"numbers not in the facts: {sorted(invented)}"
    if "$" in text and "$" not in facts:
        return "a price not in the facts ('$')"
    for m in _CLAIMS_RE.finditer(words):
        if not re.search(rf"(?<!\w){re.escape(m.group())}(?!\w)", known):
            return f"a price or policy not in the facts ({m.group()!r})"
    strangers = {n for n in _names(text) if not re.search(rf"\b{re.escape(n)}\b", known)}
    if strangers:
        return f"names not in the facts: {sorted(strangers)}"
    return None


_DAY_WORDS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
              "today", "tomorrow", "lunes", "martes", "miercoles", "jueves", "viernes",
              "sabado", "domingo", "hoy", "manana")


def dropped_facts(original: str, rephrased: str, language: str = "en") -> list[str]:
    """The facts of a fixed reply (numbers, days, names) that its rephrasing lost."""
    said = set(_fold(rephrased).split())
    lost = [str(n) for n in sorted(numbers(original, language) - numbers(rephrased, language))]
    lost += [d for d in _DAY_WORDS if d in _fold(original).split() and d not in said]
    lost += sorted(n for n in _names(original) if n not in said)
    return lost


# words whose presence or absence turns what the caller is told around: a
# rephrasing may not add an outcome ("booked" for "recorded, the office will
# confirm") nor drop a "not"
_OUTCOME_RE = re.compile(
    r"\b(?:booked|scheduled|reserved|cancell?ed|moved|rescheduled|confirmed|sent|done|"
    r"approved|ready|reservad[ao]s?|programad[ao]s?|cancelad[ao]s?|confirmad[ao]s?|"
    r"enviad[ao]s?|aprobad[ao]s?|listo|lista|movid[ao]s?)\b")
_NEGATION_RE = re.compile(r"\b(?:not|no|never|cannot|can't|cant|don't|dont|didn't|didnt|"
                          r"won't|wont|isn't|isnt|aren't|arent|nothing|none|nunca|nada|ningun"
                          r"|ninguna|tampoco)\b")


def meaning_changed(original: str, rephrased: str, language: str = "en") -> str | None:
    """Why a rephrasing of a fixed reply says something else, or None.

    Facts kept (`dropped_facts`) is not enough: a question must stay a question
    (the flow waits for its answer), no outcome the original does not state may
    appear, and a negation may not go missing.
    """
    if lost := dropped_facts(original, rephrased, language):
        return f"facts dropped: {lost}"
    if original.rstrip().endswith("?") != rephrased.rstrip().endswith("?"):
        return "a question turned into a statement, or the other way round"
    before, after = _fold(original), _fold(rephrased)
    added = set(_OUTCOME_RE.findall(after)) - set(_OUTCOME_RE.findall(before))
    if added:
        return f"an outcome the original does not state: {sorted(added)}"
    if len(_NEGATION_RE.findall(after)) < len(_NEGATION_RE.findall(before)):
        return "a negation went missing"
    if len(rephrased) > 2 * len(original) + 40:
        return "much longer than the original"
    return None


_REFUSAL_RE = re.compile(
    r"\b(?:i (?:do not|don't|dont) have (?:that|this|any|the)? ?(?:information|info|details)"
    r"|(?:i'm|i am) (?:not able|unable|sorry)|i (?:can't|cannot|cant) (?:help|answer|share|give)"
    r"|no tengo (?:esa|esta|la|informacion)|no (?:puedo|dispongo)|no cuento con)")


def is_refusal(reply: str) -> bool:
    """Whether the reply declines to answer ("I don't have that information")."""
    return bool(_REFUSAL_RE.search(_fold(reply)))


# --- extracted slots ---------------------------------------------------------------

def ungrounded(value: Any, text: str, schema: dict | None = None) -> list[str]:
    """Free-text strings in an extracted value whose words the caller never said.

    A string constrained by the schema (an enum, a const, a format or a pattern)
    is a normalization, not a quote, and is left to schema validation.
    """
    said = set(_fold(text).split())
    out: list[str] = []

    def walk(v: Any, s: dict) -> None:
        if isinstance(v, dict):
            props = s.get("properties", {}) if isinstance(s, dict) else {}
            for k, item in v.items():
                walk(item, props.get(k, {}))
        elif isinstance(v, list):
            items = s.get("items", {}) if isinstance(s, dict) else {}
            for item in v:
                walk(item, items if isinstance(items, dict) else {})
        elif isinstance(v, str):
            if isinstance(s, dict) and any(k in s for k in ("enum", "const", "format", "pattern")):
                return
            words = _fold(v).split()
            if any(w not in said for w in words):
                out.append(v)

    walk(value, schema or {})
    return out
