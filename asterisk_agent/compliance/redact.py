"""PHI redaction for the operational logs: a structlog processor and its helpers.

Patient data must never reach a plain log.  The first layer is at the source:
log lines carry facts about a call (ids, lengths, outcomes), never what the
caller said, and a value that must be named goes in as `Phi(value)`, which
renders as "[redacted]" wherever it is formatted.  This module is the second
layer, a safety net run on every event before it is rendered: it scrubs from
the message and every field anything that looks like a date, a phone number or
a medical record number, and every value registered for the calls in progress
(`remember`: the caller ID, the name once heard, the date of birth).

Asterisk channel ids (`1795316401.6`), HL7 control ids, IP addresses, ports and
durations are kept: a log without them cannot be used to find a call.
"""

from __future__ import annotations

import collections
import re
import threading
from datetime import date, datetime
from typing import Any, Iterable

REDACTED = "[redacted]"
# what a medical record number looks like when [logging] mrn_pattern is not set
DEFAULT_MRN_PATTERN = r"MRN\d+"
# values remembered at a time, over all calls: the oldest are forgotten first, so
# a call whose end was never seen cannot grow the registry without bound
MAX_REMEMBERED = 512
# shorter values are not remembered: "Al" or "12" would blank half of every line
MIN_REMEMBERED_LEN = 3


class Phi:
    """A value that is patient data: it formats as "[redacted]" in any log line.

    `log.info("call %s: patient %s", call_id, Phi(name))`.  The processor also
    remembers the value (bounded), so that it is scrubbed where it shows up later
    without the marker.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __str__(self) -> str:
        return REDACTED

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return REDACTED


# --- what looks like PHI ---------------------------------------------------------

_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
           r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DAY_OR_MONTH = r"(?:0?[1-9]|[12]\d|3[01])"
_DATES = re.compile("|".join(f"(?:{p})" for p in (
    # 1984-03-12, 1984/3/12, 1984.03.12, and timestamps that start with one
    rf"(?<![\w.])(?:19|20)\d\d[-/.]{_DAY_OR_MONTH}[-/.]{_DAY_OR_MONTH}(?!\d)",
    # 03/12/1984, 12.03.84, 3-12-1984 (day and month in either order)
    rf"(?<![\w.]){_DAY_OR_MONTH}[-/.]{_DAY_OR_MONTH}[-/.](?:\d{{4}}|\d\d)(?!\w|\.\d)",
    # March 12, 1984 / March 12th 1984 / Mar 12
    rf"(?<!\w){_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?(?!\w)",
    # 12 March 1984 / 12th of March
    rf"(?<!\w)\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?(?:,?\s+\d{{4}})?(?!\w)",
)), re.IGNORECASE)
# A run of digits with phone punctuation and at least 7 digits: caller ids,
# 555-123-4567, (555) 123 4567, +1 555 123 4567, also a date of birth typed on
# the keypad (03121984).  Not inside a word, a dotted number or a dashed id
# (the tail of a uuid); the candidates are checked again by _is_phone, which
# spares call ids, decimals and IPv4 addresses.
_PHONE = re.compile(r"(?<![\w.\-/:])\+?\(?\d[\d ().\-]{5,}\d(?![\w\-/]|\.\d)")
# a call id (1795316401.6), a decimal (12.5), an IPv4 address: kept
_SPARED = re.compile(r"\d+\.\d+|\d{1,3}(?:\.\d{1,3}){3}")


def _is_phone(text: str) -> bool:
    return not _SPARED.fullmatch(text) and sum(c.isdigit() for c in text) >= 7


# a count with its unit after it is a size or a duration, not a phone number
_UNIT_AFTER = re.compile(r"\s*(?:bytes|B|KiB|MiB|kB|MB|ms|frames|samples|records|rows)\b")


def _phone(m: re.Match) -> str:
    if not _is_phone(m.group(0)) or _UNIT_AFTER.match(m.string, m.end()):
        return m.group(0)
    return REDACTED


class _Registry:
    """Values known to be one caller's data, kept per call, bounded over all calls."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self.limit = limit
        self._lock = threading.Lock()
        # value (casefolded) -> the call that registered it (None: no call)
        self._values: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._pattern: re.Pattern | None = None

    def add(self, values: Iterable[Any], call: str | None) -> None:
        with self._lock:
            for value in values:
                for form in _forms(value):
                    self._values[form] = call
                    self._values.move_to_end(form)
            while len(self._values) > self.limit:
                self._values.popitem(last=False)
            self._pattern = None

    def forget(self, call: str | None) -> None:
        with self._lock:
            for value in [v for v, c in self._values.items() if c == call or call is None]:
                del self._values[value]
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def pattern(self) -> re.Pattern | None:
        with self._lock:
            if self._pattern is None and self._values:
                # longest first, so "Ana Rivera" goes whole before "Ana" is tried
                alternatives = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile(
                    r"(?<!\w)(?:" + "|".join(re.escape(v) for v in alternatives) + r")(?!\w)",
                    re.IGNORECASE)
            return self._pattern


# What phones and PBXs put in a caller-ID name when there is no name, and words
# of the agent's own log lines: registered as a caller's name they would blank
# every line that says "caller" or "unknown", and hide nobody
_NOT_NAMES = frozenset({
    "anonymous", "unknown", "unavailable", "private", "restricted", "withheld", "caller",
    "asterisk", "agent", "operator", "wireless caller", "out of area", "no caller id",
    "desconocido", "privado", "anonimo", "anónimo",
})


def _forms(value: Any) -> list[str]:
    """The ways a remembered value may be written: a name also word by word, a
    date in the forms people and keypads use, a number with its punctuation."""
    if isinstance(value, Phi):
        value = value.value
    if value is None:
        return []
    if isinstance(value, (date, datetime)):
        d = value.date() if isinstance(value, datetime) else value
        return [d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%m%d%Y"),
                d.strftime("%d%m%Y"), d.strftime("%m/%d/%Y"), d.strftime("%d/%m/%Y"),
                d.strftime("%Y")]
    text = " ".join(str(value).split()).casefold()
    if len(text) < MIN_REMEMBERED_LEN:
        return []
    if text in _NOT_NAMES:
        return []
    forms = [text]
    words = [w for w in re.split(r"[\s,]+", text)
             if len(w) >= MIN_REMEMBERED_LEN and w not in _NOT_NAMES]
    if len(words) > 1:
        forms += words
    digits = re.sub(r"\D", "", text)
    if len(digits) >= MIN_REMEMBERED_LEN + 2 and digits != text:
        forms.append(digits)
    return forms


_registry = _Registry()


def remember(*values: Any, call: str | None = None) -> None:
    """Scrub these values from every log line until `forget(call)`.

    For the caller ID number and name when a call starts, a name once heard, a
    date of birth (a date also in its keypad and written forms).  A name is also
    scrubbed word by word.  Bounded: the oldest values go first past
    MAX_REMEMBERED.
    """
    _registry.add(values, call)


def forget(call: str | None) -> None:
    """Drop what was remembered for `call` (at its end); None drops everything."""
    _registry.forget(call)


def remembered() -> int:
    """How many forms of values are remembered now (for tests and health checks)."""
    return len(_registry)


# --- the processor ----------------------------------------------------------------

class Redactor:
    """The structlog processor `(logger, method_name, event_dict) -> event_dict`.

    Scrubs every string in the event, its fields and the rendered exception
    (put format_exc_info before it).  Fields whose name starts with "_" are
    structlog's own and are left alone, except the stdlib record's positional
    arguments, from which Phi values are learned.  It never raises: an event it
    cannot clean is replaced rather than logged as it was.
    """

    def __init__(self, mrn_pattern: str = DEFAULT_MRN_PATTERN, registry: _Registry | None = None):
        try:
            mrn = re.compile(mrn_pattern)
        except re.error as exc:
            raise ValueError(f"MRN pattern {mrn_pattern!r}: {exc}") from None
        self._mrn = mrn
        self._registry = registry if registry is not None else _registry

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        try:
            args = event_dict.pop("positional_args", None)
            if args:
                self._learn(args)
            for key, value in list(event_dict.items()):
                if key.startswith("_"):
                    continue
                event_dict[key] = self._clean(value, 0)
            return event_dict
        except Exception as exc:  # a log line must never take the call down
            kept = {k: v for k, v in event_dict.items() if k.startswith("_")}
            kept.update(event=f"{REDACTED} (log event could not be redacted: "
                              f"{type(exc).__name__})")
            return kept

    def _learn(self, args: Any) -> None:
        values = args.values() if isinstance(args, dict) else args
        found = [a for a in values if isinstance(a, Phi)]
        if found:
            self._registry.add(found, None)

    def _clean(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Phi):
            self._registry.add([value], None)
            return REDACTED
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if depth > 4:
            return REDACTED
        if isinstance(value, dict):
            return {self.scrub(str(k)): self._clean(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._clean(v, depth + 1) for v in value]
        if isinstance(value, (date, datetime)):
            return REDACTED
        # anything else (an exception, an object) is rendered as text, then scrubbed
        return self.scrub(str(value))

    def scrub(self, text: str) -> str:
        """`text` with every MRN, date, phone number and remembered value replaced."""
        text = self._mrn.sub(REDACTED, text)
        text = _DATES.sub(REDACTED, text)
        text = _PHONE.sub(_phone, text)
        remembered = self._registry.pattern()
        if remembered is not None:
            text = remembered.sub(REDACTED, text)
        return text


def processor(mrn_pattern: str = DEFAULT_MRN_PATTERN) -> Redactor:
    """A redaction processor for the process-wide registry."""
    return Redactor(mrn_pattern)
