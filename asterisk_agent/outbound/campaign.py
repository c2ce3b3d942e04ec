"""Campaign files: who to call, at which number, for what, and when.

A campaign is a CSV file with a header row, or a YAML file:

    patient,number,type,window,timezone,date,language
    MRN1001,2015550134,post-op,10:00-18:00,America/Chicago,2026-11-24,
    MRN1002,(201) 555-0178,pre-op,,,,es

    name: post-op check-ins, Tuesday
    type: post-op                 # defaults for every row below
    window: "10:00-18:00"
    calls:
      - {patient: MRN1001, number: "2015550134", timezone: America/Chicago}
      - {patient: MRN1002, number: "2015550178", type: pre-op}

`patient` (the MRN) and `number` are required; `type` is pre-op, post-op or
results; `window` narrows the configured calling hours ([outbound]
calling_hours), in the patient's `timezone` (default: the practice's);
`date` is the day to call (default: any day the campaign runs); `language`
is the one the agent speaks to the patient (default: [general] language).

A bad row is reported with its line and left out; the good rows still run.
A number on the do-not-call list is not an error: the row is kept out and the
report says why.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CALL_TYPES = ("pre-op", "post-op", "results")
# how people write the types in a spreadsheet
_TYPE_NAMES = {"preop": "pre-op", "postop": "post-op", "testresults": "results",
               "result": "results", "normalresults": "results"}
COLUMNS = ("patient", "number", "type", "window", "timezone", "date", "language")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REQUIRED = ("patient", "number")


class CampaignError(ValueError):
    """A campaign file that cannot be read at all (not one bad row)."""


@dataclass(frozen=True)
class Window:
    """Times of day, start included, end excluded."""

    start: dt.time
    end: dt.time

    def __contains__(self, t: dt.time) -> bool:
        return self.start <= t < self.end

    def __and__(self, other: "Window") -> "Window | None":
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Window(start, end) if start < end else None

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(text: str) -> Window:
    """"09:00-17:30" as a Window; ValueError says what is wrong."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", str(text))
    if not m:
        raise ValueError(f"time window {text!r}: write it as HH:MM-HH:MM, e.g. 09:00-17:00")
    h1, m1, h2, m2 = map(int, m.groups())
    try:
        start = dt.time(h1, m1)
        end = dt.time(23, 59, 59) if (h2, m2) == (24, 0) else dt.time(h2, m2)
    except ValueError:
        raise ValueError(f"time window {text!r}: not a time of day") from None
    if not start < end:
        raise ValueError(f"time window {text!r}: the end must come after the start")
    return Window(start, end)


class DialRules:
    """Which numbers a campaign may dial: Asterisk extension patterns.

    `_NXXNXXXXXX` style patterns (X any digit, Z 1-9, N 2-9, [1-5] a range,
    `.` one or more of anything, `!` zero or more), or plain numbers.  The
    translation to a regular expression is written here because no library
    reads Asterisk's pattern syntax, and administrators already write their
    outbound routes in it.
    """

    def __init__(self, patterns: tuple[str, ...] | list[str]):
        if not patterns:
            raise ValueError("no dial patterns: a campaign could dial nothing")
        self.patterns = tuple(patterns)
        self._compiled = [re.compile(self.to_regex(p)) for p in self.patterns]

    @staticmethod
    def to_regex(pattern: str) -> str:
        if not pattern.startswith("_"):
            if not re.fullmatch(r"\+?[0-9*#]+", pattern):
                raise ValueError(f"dial pattern {pattern!r}: a number, or _ and a pattern")
            return re.escape(pattern) + r"\Z"
        out, i, body = [], 0, pattern[1:]
        if not body:
            raise ValueError(f"dial pattern {pattern!r} is empty")
        classes = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
        while i < len(body):
            c = body[i]
            if c.upper() in classes:
                out.append(classes[c.upper()])
            elif c == "[":
                end = body.find("]", i)
                inner = body[i + 1:end] if end > i else ""
                if end < 0 or not re.fullmatch(r"[0-9](?:-[0-9])?(?:[0-9](?:-[0-9])?)*", inner):
                    raise ValueError(f"dial pattern {pattern!r}: a [ ] holds digits and ranges like [1-5]")
                out.append(f"[{inner}]")
                i = end
            elif c in "0123456789*#+":
                out.append(re.escape(c))
            else:
                raise ValueError(f"dial pattern {pattern!r}: {c!r} is not part of a dial pattern")
            i += 1
        return "".join(out) + r"\Z"

    def allows(self, number: str) -> bool:
        return any(r.match(number) for r in self._compiled)


def normalize_number(text: Any) -> str:
    """A phone number as dialled: digits (a leading + kept), spacing and punctuation gone."""
    s = re.sub(r"[\s().\-/]", "", str(text if text is not None else ""))
    if not re.fullmatch(r"\+?[0-9]+", s):
        raise ValueError(f"number {text!r} is not a phone number")
    return s


def read_do_not_call(path: Path) -> frozenset[str]:
    """The do-not-call list: one number a line, # comments; bad lines are an error."""
    numbers = set()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(f"do-not-call list {path}: cannot read: {exc}") from None
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            numbers.add(normalize_number(line))
        except ValueError as exc:
            raise CampaignError(f"do-not-call list {path}, line {n}: {exc}") from None
    return frozenset(numbers)


@dataclass(frozen=True)
class CampaignCall:
    """One patient to call: the row of the campaign file, checked."""

    line: int
    patient: str
    number: str
    type: str
    # when the call may ring, in the patient's time zone
    window: Window
    timezone: zoneinfo.ZoneInfo
    date: dt.date | None = None
    # the language spoken on the call ("": the agent's default)
    language: str = ""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Campaign:
    name: str
    calls: list[CampaignCall] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    # rows kept out on purpose (the do-not-call list), with the reason
    kept_out: list[tuple[CampaignCall, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    """What every campaign row is checked against ([outbound] in the config)."""

    dial: DialRules
    calling_hours: Window
    timezone: zoneinfo.ZoneInfo
    do_not_call: frozenset[str] = frozenset()
    # the languages the agent speaks ([general] languages)
    languages: tuple[str, ...] = ("en",)


def load_campaign(path: str | Path, rules: Rules) -> Campaign:
    """Read a CSV or YAML campaign file (by its suffix)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(text, rules, path.stem, str(path))
    if path.suffix.lower() == ".csv":
        return parse_csv(text, rules, path.stem, str(path))
    raise CampaignError(f"{path}: a campaign is a .csv or .yaml file")


def parse_csv(text: str, rules: Rules, name: str = "campaign", source: str = "<csv>") -> Campaign:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise CampaignError(f"{source}: empty; the first line names the columns "
                            f"({', '.join(COLUMNS)})")
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        raise CampaignError(
            f"{source}, line 1: " + "; ".join(
                ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"no {', '.join(missing)} column"] if missing else []))
            + f" (columns: {', '.join(COLUMNS)})")
    reader.fieldnames = header
    campaign = Campaign(name)
    for row in reader:
        # where the row began: the reader counts the lines it has read (blank
        # ones skipped, line breaks inside quotes included)
        written = [v for k, v in row.items() if k is not None and v] + list(row.get(None) or [])
        line = reader.line_num - sum(v.count("\n") for v in written)
        if None in row:
            campaign.errors.append(RowError(line, f"{len(row[None])} value(s) more than the header's columns"))
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue
        add_row(campaign, line, values, {}, rules)
    return campaign


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping, so a bad row can be named, and reads
    numbers, dates and times as written: an unquoted 0201... must not become
    an octal integer, nor 10:30 a count of minutes."""


def _as_written(loader, node):
    return loader.construct_scalar(node)


for _tag in ("int", "float", "timestamp", "bool"):
    _LineLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _as_written)


def _mapping_with_line(loader, node, deep=False):
    data = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    data["__line__"] = node.start_mark.line + 1
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def parse_yaml(text: str, rules: Rules, name: str = "campaign", source: str = "<yaml>") -> Campaign:
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise CampaignError(f"{source}: not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"calls": data}
    if not isinstance(data, dict) or not isinstance(data.get("calls"), list):
        raise CampaignError(f"{source}: expected a `calls:` list of rows "
                            f"({', '.join(COLUMNS)})")
    top = {k: v for k, v in data.items() if k not in ("calls", "__line__")}
    unknown = [k for k in top if k != "name" and k not in COLUMNS[2:]]
    if unknown:
        raise CampaignError(f"{source}: unknown setting(s) {', '.join(map(str, unknown))} "
                            f"(name, {', '.join(COLUMNS[2:])})")
    campaign = Campaign(str(top.pop("name", name)))
    defaults = {k: "" if v is None else str(v) for k, v in top.items()}
    for i, row in enumerate(data["calls"]):
        if not isinstance(row, dict):
            campaign.errors.append(RowError(data["__line__"], f"row {i + 1} of calls is not a mapping"))
            continue
        line = row.pop("__line__")
        unknown = [k for k in row if k not in COLUMNS]
        if unknown:
            campaign.errors.append(RowError(line, f"unknown field(s) {', '.join(map(str, unknown))}"))
            continue
        values = {k: "" if v is None else str(v).strip() for k, v in row.items()}
        add_row(campaign, line, values, defaults, rules)
    return campaign


def add_row(campaign: Campaign, line: int, values: dict[str, str], defaults: dict[str, str],
             rules: Rules) -> None:
    def get(key: str) -> str:
        return values.get(key) or defaults.get(key, "")

    try:
        call = _check_row(line, get, rules)
    except ValueError as exc:
        campaign.errors.append(RowError(line, str(exc)))
        return
    for other in campaign.calls:
        if (other.patient, other.type) == (call.patient, call.type):
            campaign.errors.append(RowError(
                line, f"{call.patient} {call.type} is already on line {other.line}"))
            return
    if call.number in rules.do_not_call:
        campaign.kept_out.append((call, "on the do-not-call list"))
        return
    campaign.calls.append(call)


def _check_row(line: int, get, rules: Rules) -> CampaignCall:
    patient = get("patient")
    if not patient or any(c.isspace() for c in patient):
        raise ValueError(f"patient {patient!r}: give the medical record number" if patient
                         else "no patient (the medical record number)")
    number = normalize_number(get("number")) if get("number") else ""
    if not number:
        raise ValueError("no number")
    if not rules.dial.allows(number):
        raise ValueError(f"number {number} is outside the allowed dial patterns "
                         f"({', '.join(rules.dial.patterns)})")
    kind = re.sub(r"[\s_]+", "-", get("type").lower())
    kind = _TYPE_NAMES.get(kind.replace("-", ""), kind)
    if kind not in CALL_TYPES:
        raise ValueError(f"type {get('type')!r}: one of {', '.join(CALL_TYPES)}" if get("type")
                         else f"no type ({', '.join(CALL_TYPES)})")
    window = rules.calling_hours
    if get("window"):
        asked = parse_window(get("window"))
        window = asked & rules.calling_hours
        if window is None:
            raise ValueError(f"window {asked} is outside the calling hours {rules.calling_hours}")
    tz = rules.timezone
    if get("timezone"):
        try:
            tz = zoneinfo.ZoneInfo(get("timezone"))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {get('timezone')!r} is not a known time zone "
                             "(e.g. America/Chicago)") from None
    date = None
    if get("date"):
        try:
            date = dt.date.fromisoformat(get("date"))
        except ValueError:
            raise ValueError(f"date {get('date')!r}: write it as YYYY-MM-DD") from None
    language = get("language").lower()
    if language and language not in rules.languages:
        raise ValueError(f"language {get('language')!r}: one of {', '.join(rules.languages)}")
    return CampaignCall(line, patient, number, kind, window, tz, date, language)
