"""Understanding a caller's words in the flows: days, times, names, birth dates, drugs, choices.

Pure functions on a transcript (and the time of the call), English and
Spanish, tolerant of what speech models make of telephone audio: numbers
spoken or written ("nine thirty", "9:30"), a year in two halves ("19 80"),
a drug name split into words ("listen opera" for lisinopril).  Each returns
None when it is not sure; the flow then asks again rather than guess.

Spelled-out numbers go to digits with text2num (alpha2digit, both
languages); drug names are matched with rapidfuzz on the spelling and on a
metaphone key (jellyfish).  Dates are small rules plus dateutil's
relativedelta: dateparser was measured here at 0.19 s to import, 0.4 s for
its first relative phrase, and it understood neither "el próximo martes por
la tarde" nor a year spoken in Spanish words.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import jellyfish
from dateutil.relativedelta import relativedelta
from rapidfuzz import fuzz
from text_to_num import alpha2digit

from .phrases import fold

# ---- vocabulary (folded: lower case, no accents)

WEEKDAYS = {
    "en": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "es": ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo"),
}
MONTHS = {
    "en": ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
}
# speech models also write short month names ("Sept", "Dec") and "setiembre"
_MONTH_ALIASES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8,
                  "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12, "setiembre": 9}

# parts of the day, as a clinic's schedule sees them
MORNING = (dt.time(7, 0), dt.time(12, 0))
AFTERNOON = (dt.time(12, 0), dt.time(17, 0))
EVENING = (dt.time(17, 0), dt.time(21, 0))
_PARTS = {
    "en": ((r"morning|a ?m\b", MORNING), (r"afternoon|after lunch", AFTERNOON),
           (r"evening|after work|tonight", EVENING)),
    "es": ((r"(?:por|en|de) la manana|temprano", MORNING),
           (r"(?:por|en|de) la tarde|despues de (?:la )?comida|despues del almuerzo", AFTERNOON),
           (r"(?:por|en|de) la noche", EVENING)),
}
_SOON = {"en": r"as soon as possible|asap|earliest|soonest|first available|next available|"
               r"any ?time|whenever|any day|as early as",
         "es": r"lo antes posible|cuanto antes|lo mas pronto|lo mas rapido|primera cita|"
               r"cualquier dia|cuando sea|lo que haya"}
# how far ahead "as soon as possible" (or a part of the day alone) looks
SOON_DAYS = 14

# ordinal words, matched on the words as spoken ("the second one" must not read as "1")
_ORDINALS = {
    "en": ((r"first|1st", 0), (r"second|2nd", 1), (r"third|3rd", 2),
           (r"last|latter|later one", -1)),
    "es": ((r"primer[oa]?|1[oa]", 0), (r"segund[oa]|2[oa]", 1), (r"tercer[oa]?|3[oa]", 2),
           (r"ultim[oa]", -1)),
}
# a number alone picks by position: "2", "number 2", "option 2", "la 2"

_YES = {"en": r"yes|yeah|yep|yup|ya|sure|correct|right|ok|okay|please do|go ahead|do it|"
              r"sounds good|that works|perfect|absolutely|definitely|of course|please|great|"
              r"book it|that one|fine|affirmative|uh huh",
        "es": r"si|claro|correcto|vale|de acuerdo|esta bien|por favor|adelante|perfecto|exacto|"
              r"eso es|asi es|okay|ok|bueno|hagalo|me parece bien|desde luego"}
_NO = {"en": r"no|nope|nah|not|don't|dont|wrong|incorrect|negative|never ?mind|cancel that|"
             r"wait|other",
       "es": r"no|incorrecto|para nada|mejor no|otr[oa]|espere"}


def words(transcript: str, language: str = "en") -> str:
    """Folded text with spelled-out numbers as digits: "nine thirty" -> "9 30"."""
    try:
        # threshold 0: a lone "two" is an hour or a choice here, not a word
        text = alpha2digit(transcript, language, threshold=0)
    except Exception:  # a text2num failure must not lose the turn: keep the words
        text = transcript
    text = fold(text)
    # "nineteen eighty" -> "19 80": join the two halves of a spoken year
    text = re.sub(r"\b(19|20) ([0-9]{2})\b", r"\1\2", text)
    # "1st", "24th" -> "1", "24" (the suffix carries nothing here)
    return re.sub(r"\b(\d+)(?:st|nd|rd|th|[oa]|er)\b", r"\1", text)


# ---- yes / no


def yes_no(transcript: str, language: str = "en") -> bool | None:
    """True for yes, False for no, None when neither (or both: "yes, no, wait")."""
    text = fold(transcript)
    yes = bool(re.search(rf"\b(?:{_YES[language]})\b", text))
    no = bool(re.search(rf"\b(?:{_NO[language]})\b", text))
    # "no, that's right" is rare; "not right" and "that's not correct" are common
    if no and yes and re.search(r"\bnot? (?:right|correct|correcto)\b", text):
        return False
    return yes if yes != no else None


# ---- times and windows


@dataclass(frozen=True)
class Window:
    """When the caller would like to come: start..end, and the exact time if they said one."""

    start: dt.datetime
    end: dt.datetime
    at: dt.time | None = None


def _clock(hour: int, minute: int, meridiem: str) -> dt.time | None:
    if not (0 <= minute < 60) or not (0 <= hour <= 23):
        return None
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    elif not meridiem and 1 <= hour <= 6:
        # no AM or PM said: a clinic's "at 2" is in the afternoon, "at 9" in the morning
        hour += 12
    return dt.time(hour, minute)


_TIME = {
    "en": re.compile(r"\b(?:at|around|about|by|after|before|from|for|to)? ?(\d{1,2})(?!\d)"
                     r"(?: (\d{2})| (?:o ?clock))?(?: ?([ap]) ?m\b)?"),
    "es": re.compile(r"\b(?:a las?|sobre las?|hacia las?|despues de las?|antes de las?|"
                     r"desde las?|las?) (\d{1,2})(?: (?:y )?(\d{2}|media|cuarto))?"),
}


def parse_time(transcript: str, language: str = "en") -> dt.time | None:
    """A clock time said in the turn: "at 2 PM", "nine thirty", "a las 2 y media"; noon."""
    text = words(transcript, language)
    return _time_in(text, language)


def _time_in(text: str, language: str) -> dt.time | None:
    if re.search(r"\b(?:noon|midday|mediodia)\b", text):
        return dt.time(12, 0)
    if language == "es":
        m = _TIME["es"].search(text)
        if not m:
            return None
        minute = {"media": 30, "cuarto": 15, None: 0}.get(m.group(2))
        minute = int(m.group(2)) if minute is None else minute
        meridiem = "pm" if re.search(r"\b(?:tarde|noche)\b", text) else \
            "am" if re.search(r"\b(?:de|por) la manana\b", text) else ""
        return _clock(int(m.group(1)), minute, meridiem)
    for m in _TIME["en"].finditer(text):
        # a bare number is a time only with a cue: "at 2", "2 30", "2 PM", "2 o'clock"
        cue = m.group(0).split()[0] in ("at", "around", "about", "by", "after", "before",
                                        "from")
        if not (cue or m.group(2) or m.group(3) or "clock" in m.group(0)):
            continue
        t = _clock(int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "") + "m"
                   if m.group(3) else "")
        if t is not None:
            return t
    return None


def _day_in(text: str, now: dt.datetime, language: str) -> dt.date | None:
    today = now.date()
    if language == "en":
        if re.search(r"\bday after tomorrow\b", text):
            return today + dt.timedelta(days=2)
        if re.search(r"\btomorrow\b", text):
            return today + dt.timedelta(days=1)
        if re.search(r"\btoday|this (?:morning|afternoon|evening)|tonight\b", text):
            return today
    else:
        if re.search(r"\bpasado manana\b", text):
            return today + dt.timedelta(days=2)
        # "mañana" alone is tomorrow; "por la mañana" is a part of the day
        if re.search(r"(?<!la )\bmanana\b", text):
            return today + dt.timedelta(days=1)
        if re.search(r"\bhoy|esta (?:manana|tarde|noche)\b", text):
            return today
    months = MONTHS[language]
    month_names = "|".join(list(months) + list(_MONTH_ALIASES))
    # "January 24", "24 January", "24 de enero", "the 24th of January"
    m = (re.search(rf"\b({month_names}) (\d{{1,2}})\b", text)
         or re.search(rf"\b(\d{{1,2}}) (?:of |de )?({month_names})\b", text))
    if m:
        a, b = m.group(1), m.group(2)
        name, day = (a, int(b)) if not a.isdigit() else (b, int(a))
        month = months.index(name) + 1 if name in months else _MONTH_ALIASES[name]
        for year in (today.year, today.year + 1):
            try:
                d = dt.date(year, month, day)
            except ValueError:
                return None
            if d >= today:
                return d
        return None
    for i, name in enumerate(WEEKDAYS[language]):
        if re.search(rf"\b{name}\b", text):
            # the coming one, not today: the confirmation says the date, so a
            # caller who meant the week after hears it and says so
            ahead = (i - today.weekday()) % 7 or 7
            week_after = re.search(r"\b(?:week after|not this|semana que viene|proxima semana)"
                                   r"\b", text) and ahead < 7
            return today + dt.timedelta(days=ahead + (7 if week_after else 0))
    # "the 24th", "el 24": a day of this month, or next month once it is past
    m = re.search(r"\b(?:the|on the|el|dia) (\d{1,2})\b(?! (?:[ap] m|o ?clock|\d{2}))", text)
    if m and 1 <= int(m.group(1)) <= 31:
        first = today.replace(day=1)
        for months_ahead in (0, 1, 2):
            try:
                d = (first + relativedelta(months=months_ahead)).replace(day=int(m.group(1)))
            except ValueError:
                continue
            if d >= today:
                return d
    return None


def _week_in(text: str, now: dt.datetime, language: str) -> tuple[dt.date, dt.date] | None:
    today = now.date()
    pattern = (r"\bnext week\b" if language == "en"
               else r"\b(?:la )?(?:semana que viene|proxima semana)\b")
    if re.search(pattern, text):
        monday = today + relativedelta(weekday=0, days=1)
        return monday, monday + dt.timedelta(days=6)
    pattern = r"\bthis week\b" if language == "en" else r"\besta semana\b"
    if re.search(pattern, text):
        return today, today + relativedelta(weekday=6)
    return None


_WINDOW_WORDS_ES = {"monday": "el lunes", "tuesday": "el martes", "wednesday": "el miércoles",
                    "thursday": "el jueves", "friday": "el viernes", "today": "hoy",
                    "tomorrow": "mañana", "morning": "por la mañana",
                    "afternoon": "por la tarde"}


def window_words(day: str | None, part_of_day: str | None, language: str = "en") -> str:
    """A day ("thursday", "tomorrow") and a part of the day ("afternoon"), chosen in
    English from a fixed list, said as a caller of the language would say them, for
    parse_window: "el jueves por la tarde"."""
    chosen = [w for w in (day, part_of_day) if w]
    if language == "es":
        chosen = [_WINDOW_WORDS_ES.get(w, w) for w in chosen]
    return " ".join(chosen)


def parse_window(transcript: str, now: dt.datetime, language: str = "en") -> Window | None:
    """The day and time window the caller wants: "next Tuesday afternoon", "el 24 a las 9".

    None when the turn names no day, time or part of day.  Never in the past:
    a window that began before `now` starts at `now`.
    """
    text = words(transcript, language)
    day = _day_in(text, now, language)
    week = _week_in(text, now, language) if day is None else None
    part = next((span for pattern, span in _PARTS[language] if re.search(rf"\b(?:{pattern})",
                                                                          text)), None)
    at = _time_in(text, language)
    soon = re.search(rf"\b(?:{_SOON[language]})\b", text)
    if day is None and week is None and part is None and at is None and not soon:
        return None
    tz = now.tzinfo

    def on(d: dt.date, t: dt.time) -> dt.datetime:
        return dt.datetime.combine(d, t, tz)

    if week is not None:
        first, last = week
    elif day is not None:
        first = last = day
    elif at is not None or part is not None:
        # a time alone: today if it is still ahead, else from tomorrow on
        first = now.date()
        last = first + dt.timedelta(days=SOON_DAYS)
    else:
        first, last = now.date(), now.date() + dt.timedelta(days=SOON_DAYS)
    if at is not None:
        after = re.search(r"\b(?:after|despues de)\b", text)
        before = re.search(r"\b(?:before|antes de)\b", text)
        lo = dt.time(0, 0) if before else (dt.datetime.combine(first, at)
                                           - dt.timedelta(minutes=0 if after else 30)).time()
        hi = dt.time(23, 59) if after else (dt.datetime.combine(first, at)
                                            + dt.timedelta(minutes=0 if before else 90)).time()
        if hi <= lo:
            hi = dt.time(23, 59)
    elif part is not None:
        lo, hi = part
    else:
        lo, hi = dt.time(0, 0), dt.time(23, 59)
    start, end = on(first, lo), on(last, hi)
    if day is None and week is None and (at is not None or part is not None):
        # the first day on which that hour is still ahead
        if on(first, at or hi) <= now:
            first = first + dt.timedelta(days=1)
        start, end = on(first, lo), on(first, hi)
    if end <= now:
        return None
    return Window(max(start, now), end, at)


# ---- choices among what was offered


def choose(transcript: str, offered: list[dt.datetime], language: str = "en") -> int | None:
    """Which of the offered times the caller picks: "the second one", "Tuesday", "the 9:30".

    The index into `offered`, or None when the turn picks none or several.
    """
    if not offered:
        return None
    said = _ordinal(transcript, len(offered), language)
    if said is not None:
        return said if said >= 0 else None
    text = words(transcript, language)
    at = _time_in(text, language) or _bare_time(text, offered)
    days = [i for i, name in enumerate(WEEKDAYS[language]) if re.search(rf"\b{name}\b", text)]
    matches = [i for i, when in enumerate(offered)
               if (at is None or when.time() == at) and (not days or when.weekday() in days)]
    if at is not None or days:
        return matches[0] if len(matches) == 1 else None
    numbers = re.findall(r"\d+", text)
    if len(numbers) == 1 and 1 <= int(numbers[0]) <= len(offered):
        return int(numbers[0]) - 1
    return None


def _ordinal(transcript: str, count: int, language: str) -> int | None:
    """The position an ordinal word names ("the second", "la última"); -1 when it
    names one past the end; None when the turn has no ordinal."""
    spoken = fold(transcript)
    for pattern, index in _ORDINALS[language]:
        if re.search(rf"\b(?:{pattern})\b", spoken):
            return index % count if -count <= index < count else -1
    return None


def choose_position(transcript: str, count: int, language: str = "en") -> int | None:
    """Which of `count` things read out the caller picks by position only: "the
    first", "la segunda", "number 2", "2"; None when none or not one of them."""
    if count <= 0:
        return None
    said = _ordinal(transcript, count, language)
    if said is not None:
        return said if said >= 0 else None
    numbers = re.findall(r"\d+", words(transcript, language))
    if len(numbers) == 1 and 1 <= int(numbers[0]) <= count:
        return int(numbers[0]) - 1
    return None


_UNITS = {"en": {"mg": "milligrams", "mcg": "micrograms", "ml": "milliliters"},
          "es": {"mg": "miligramos", "mcg": "microgramos", "ml": "mililitros"}}


def spoken_drug(name: str, language: str = "en") -> str:
    """A medication as the EHR names it, as it should be read out:
    "Lisinopril 10 mg tablet" -> "Lisinopril 10 milligrams tablet"."""
    units = _UNITS.get(language, _UNITS["en"])
    return " ".join(units.get(w.lower(), w) for w in name.split())


def _bare_time(text: str, offered: list[dt.datetime]) -> dt.time | None:
    """ "the 9 30 one": hour and minute without a cue word, as offered."""
    for m in re.finditer(r"\b(\d{1,2}) (\d{2})\b", text):
        for when in offered:
            if when.hour % 12 == int(m.group(1)) % 12 and when.minute == int(m.group(2)):
                return when.time()
    return None


# ---- birth dates


def parse_birth_date(transcript: str, language: str = "en",
                     today: dt.date | None = None) -> dt.date | None:
    """A date of birth: "March 3rd 1980", "3 3 1980", "03031980", "tres de marzo de 1980".

    Digits alone are month, day, year (as the keypad prompt asks, in both
    languages); spoken numbers alone are month-day-year in English and
    day-month-year in Spanish, as people say them.
    """
    today = today or dt.date.today()
    text = words(transcript, language)
    digits = re.sub(r"\D", "", text)
    months = MONTHS[language]
    month_names = "|".join(list(months) + list(_MONTH_ALIASES) + list(MONTHS["en"]))
    m = (re.search(rf"\b({month_names}) (?:the )?(\d{{1,2}}) (?:of )?(\d{{4}})\b", text)
         or re.search(rf"\b(?:the )?(\d{{1,2}}) (?:of |de )?({month_names}) (?:of |de |del )?"
                      rf"(\d{{4}})\b", text))
    if m:
        a, b, year = m.groups()
        name, day = (a, b) if not a.isdigit() else (b, a)
        month = (months.index(name) + 1 if name in months
                 else MONTHS["en"].index(name) + 1 if name in MONTHS["en"]
                 else _MONTH_ALIASES[name])
        return _valid_birth(int(year), month, int(day), today)
    numbers = re.findall(r"\d+", text)
    if len(numbers) == 3 and len(numbers[2]) == 4:
        first, second = int(numbers[0]), int(numbers[1])
        month, day = (second, first) if language == "es" else (first, second)
        return _valid_birth(int(numbers[2]), month, day, today)
    if len(digits) == 8:
        return _valid_birth(int(digits[4:]), int(digits[:2]), int(digits[2:4]), today)
    return None


def _valid_birth(year: int, month: int, day: int, today: dt.date) -> dt.date | None:
    try:
        d = dt.date(year, month, day)
    except ValueError:
        return None
    return d if dt.date(1900, 1, 1) <= d <= today else None


# ---- names

_NAME_LEADS = {
    "en": r"^(?:(?:hi|hello|yes|yeah|ok|okay|sure|well|um|uh)\s+)*(?:my name is|my name's|"
          r"name is|this is|it's|it is|i am|i'm|the name is|patient is|the patient is)\s+",
    "es": r"^(?:(?:hola|si|bueno|pues|eh)\s+)*(?:me llamo|mi nombre es|soy|habla|"
          r"el nombre es|es)\s+",
}
_NAME_TAILS = r"\s+(?:please|thanks|thank you|por favor|gracias)$"
# words that are never part of a name: the turn is about something else
_NOT_NAMES = {"appointment", "appointments", "book", "cancel", "refill", "doctor", "what",
              "when", "where", "why", "how", "time", "open", "close", "need", "want", "like",
              "cita", "citas", "quiero", "necesito", "cuando", "donde", "que", "hora", "the",
              "a", "to", "for", "my", "your", "is", "of", "de", "la", "el", "and", "y",
              "read", "tell", "give", "ignore", "can", "could", "would", "i", "you", "me",
              # a goodbye or a bare yes or no is not a name ("Good bye" is two words)
              "good", "bye", "goodbye", "thanks", "thank", "hello", "hi", "yes", "no", "okay",
              "ok", "sorry", "adios", "gracias", "hola", "si"}


def same_name(heard: str, charted: str) -> bool:
    """A first name as speech recognition heard it against the chart's spelling:
    the same sound (metaphone) or nearly the same letters."""
    h, c = fold(heard).strip(), fold(charted).strip()
    if not h or not c:
        return False
    if h == c or fuzz.ratio(h, c) >= 85:
        return True
    # many charted names say j as y ("Maja" is heard "Maya"): compare the
    # sounds both ways
    return any(jellyfish.metaphone(a) == jellyfish.metaphone(b)
               for a, b in ((h, c), (h.replace("j", "y"), c.replace("j", "y"))))


def same_family(heard: str, charted: str) -> bool:
    """A family name as heard against the chart's, once the date of birth has
    already matched exactly: the same name (same_name), or the same consonants
    in the same order ("Akafir" for "Okafor": vowels are what a small speech
    model gets wrong in names it has never seen)."""
    if same_name(heard, charted):
        return True
    h, c = fold(heard).strip(), fold(charted).strip()
    skeleton = [re.sub(r"[AEIOU]", "", jellyfish.metaphone(x)) for x in (h, c)]
    return len(skeleton[1]) >= 2 and skeleton[0] == skeleton[1]


def parse_name(transcript: str, language: str = "en") -> list[tuple[str, str]]:
    """(given, family) readings of a spoken full name, likeliest first; [] if not a name.

    "Ana Rivera" -> [("ana", "rivera"), ("rivera", "ana")]: the reversed order
    too, since some callers say the family name first.  Three words give the
    Spanish reading (given, first surname) as well, and the family name heard
    as two words ("Maya Lind Quist" -> ("maya", "lindquist")).
    """
    text = fold(transcript)
    text = re.sub(_NAME_LEADS[language], "", text)
    text = re.sub(_NAME_LEADS["en" if language == "es" else "es"], "", text)
    text = re.sub(_NAME_TAILS, "", text).replace("'", "")
    tokens = text.split()
    if not 2 <= len(tokens) <= 4 or any(t.isdigit() or t in _NOT_NAMES or len(t) < 2
                                        for t in tokens):
        return []
    readings = [(tokens[0], tokens[-1]), (tokens[-1], tokens[0])]
    if len(tokens) >= 3:
        readings.insert(1, (tokens[0], tokens[1]))
        readings.append((" ".join(tokens[:2]), tokens[-1]))
        readings.append((tokens[0], "".join(tokens[1:])))
    return list(dict.fromkeys(readings))


# ---- medications


@dataclass(frozen=True)
class DrugMatch:
    name: str       # the medication as the EHR names it ("Lisinopril 10 mg tablet")
    score: float    # 0..100
    heard: str      # the words that matched


# below this, a spoken drug is not taken for one on the list (measured: drug names
# heard as words score 83-100, unrelated phrases like "my blood pressure pill" 53-67)
DRUG_SCORE = 75.0


def _drug_key(name: str) -> str:
    """ "Lisinopril 10 mg tablet" -> "lisinopril": the drug, without strength and form."""
    parts = [w for w in fold(name).split() if w.isalpha() and len(w) > 2]
    return parts[0] if parts else fold(name)


def match_drug(transcript: str, medications: list[str]) -> DrugMatch | None:
    """The medication on the list the caller named, tolerant of how ASR splits drug names.

    Every run of 1-4 words is joined ("met for men" -> "metformen") and
    compared with each drug by spelling and by metaphone key; the best match
    at DRUG_SCORE or more wins, unless two drugs tie.
    """
    tokens = fold(transcript).split()
    spans = {"".join(tokens[i:i + n]) for n in (1, 2, 3, 4) for i in range(len(tokens) - n + 1)}
    spans = {s for s in spans if len(s) >= 4}
    scored = []
    for name in medications:
        key = _drug_key(name)
        if not key:
            continue
        key_sound = jellyfish.metaphone(key)
        best = max(((max(fuzz.ratio(span, key),
                          fuzz.ratio(jellyfish.metaphone(span), key_sound)), span)
                    for span in spans), default=(0.0, ""))
        scored.append(DrugMatch(name, best[0], best[1]))
    scored.sort(key=lambda d: d.score, reverse=True)
    if not scored or scored[0].score < DRUG_SCORE:
        return None
    if len(scored) > 1 and scored[1].score == scored[0].score:
        return None
    return scored[0]


# ---- visit kinds and providers

KINDS = {
    "en": (("checkup", r"check ?ups?|checkups?|physical|annual|wellness|routine|yearly"),
           ("followup", r"follow ?ups?|followups?|results|after my|see how"),
           ("sick", r"sick|ill|not feeling well|fever|cough|cold|flu|hurts?|pain|rash|"
                    r"infection|sore")),
    "es": (("checkup", r"chequeo|revision|control|rutina|anual|examen fisico"),
           ("followup", r"seguimiento|resultados|revisar como"),
           ("sick", r"enferm[oa]|malestar|fiebre|tos|gripe|resfriado|dolor|duele|infeccion")),
}


def parse_kind(transcript: str, language: str = "en") -> str | None:
    """The kind of visit, as the EHR's appointment types name it: checkup, followup, sick."""
    text = fold(transcript)
    for kind, pattern in KINDS[language]:
        if re.search(rf"\b(?:{pattern})\b", text):
            return kind
    return None


def parse_provider(transcript: str, providers: dict[str, tuple[str, str]]) -> str | None:
    """The provider the caller asks for ("with Dr. Lee"), by family name: its ID, or None.

    providers: ID -> (given, family).  Fuzzy, for "Dr. Pastel" heard for Patel.
    """
    tokens = [t for t in fold(transcript).split() if len(t) >= 3]
    best: tuple[float, str] | None = None
    for pid, (_given, family) in providers.items():
        key = fold(family)
        for t in tokens:
            score = max(fuzz.ratio(t, key), fuzz.ratio(jellyfish.metaphone(t),
                                                       jellyfish.metaphone(key)) - 5)
            if score >= 80 and (best is None or score > best[0]):
                best = (score, pid)
    return best[1] if best else None
