"""The practice facts the agent answers from: name, phone, address, hours, parking.

Read once at start-up from an INI file (etc/practice.conf).  A mistake in the
file is a PracticeError naming the file and line, so the agent never starts
with hours it cannot read.
"""

from __future__ import annotations

import configparser
import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from ..config import _describe

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class PracticeError(Exception):
    def __init__(self, message: str, path: Path | None = None, line: int | None = None):
        where = f"{path or '<text>'}:{line}: " if line else f"{path}: " if path else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class Hours:
    opens: dt.time
    closes: dt.time


@dataclass(frozen=True)
class Practice:
    name: str
    phone: str
    address: str
    timezone: zoneinfo.ZoneInfo
    hours: dict[str, Hours | None]  # day name -> hours, None when closed
    parking: str
    # [parking] text_es: the parking text for Spanish calls ("" when not written)
    parking_es: str = ""
    # [pre-op] text / text_es: what a pre-op call tells the patient (outbound
    # campaigns; "" when not written: the call asks the patient to call the office)
    pre_op: str = ""
    pre_op_es: str = ""

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.timezone)

    def parking_in(self, language: str) -> str:
        """The parking text for a call in `language` (the English one if not translated)."""
        return self.parking_es if language == "es" and self.parking_es else self.parking

    def pre_op_in(self, language: str) -> str:
        """The pre-op instructions for a call in `language` ("" when there are none)."""
        return self.pre_op_es if language == "es" and self.pre_op_es else self.pre_op

    def is_open(self, at: dt.datetime) -> bool:
        h = self.hours[DAYS[at.weekday()]]
        return h is not None and h.opens <= at.time() < h.closes


def _line(text: str, key: str) -> int | None:
    for n, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*[=:]", raw, re.I):
            return n
    return None


_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def parse(text: str, path: Path | None = None) -> Practice:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read_string(text, source=str(path or "<practice>"))
    except configparser.Error as exc:
        message, line = _describe(exc)
        raise PracticeError(message, path, line) from None

    def need(section: str, key: str) -> str:
        if not parser.has_option(section, key) or not parser.get(section, key).strip():
            raise PracticeError(f"[{section}] {key} is missing", path)
        return parser.get(section, key).strip()

    for section in parser.sections():
        if section not in ("practice", "hours", "parking", "pre-op"):
            raise PracticeError(f"unknown section [{section}]", path, _line(text, f"[{section}]"))
    hours: dict[str, Hours | None] = {}
    for day in DAYS:
        value = need("hours", day).lower()
        if value == "closed":
            hours[day] = None
            continue
        m = _RANGE.match(value)
        try:
            if not m:
                raise ValueError
            opens = dt.time(int(m.group(1)), int(m.group(2)))
            closes = dt.time(int(m.group(3)), int(m.group(4)))
            if closes <= opens:
                raise ValueError
        except ValueError:
            raise PracticeError(
                f"[hours] {day} = {value!r}: write HH:MM-HH:MM (closing after opening) or closed",
                path, _line(text, day),
            ) from None
        hours[day] = Hours(opens, closes)
    unknown = set(parser.options("hours")) - set(DAYS)
    if unknown:
        key = sorted(unknown)[0]
        raise PracticeError(f"[hours] {key}: not a day of the week", path, _line(text, key))
    tz_name = need("practice", "timezone")
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PracticeError(f"[practice] timezone {tz_name!r} is not a known time zone",
                            path, _line(text, "timezone")) from None
    return Practice(
        name=need("practice", "name"),
        phone=need("practice", "phone"),
        address=need("practice", "address"),
        timezone=tz,
        hours=hours,
        parking=need("parking", "text"),
        parking_es=parser.get("parking", "text_es", fallback="").strip(),
        pre_op=parser.get("pre-op", "text", fallback="").strip(),
        pre_op_es=parser.get("pre-op", "text_es", fallback="").strip(),
    )


def load(path: Path) -> Practice:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PracticeError(f"cannot read the practice file: {exc}", path) from None
    return parse(text, path)
