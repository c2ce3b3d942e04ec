"""The receptionist's call flows: identify, book, cancel, reschedule, refill, message.

One Receptionist per call: a small state machine fed one screened caller
turn (or DTMF digits) at a time, answering with a Reply.  Understanding is
slots.py's; the EHR is reached only through EhrLink, and only for the
verified caller's own patient ID, so nothing about anyone else can be said.

Rules every flow keeps:
- no patient data before the caller's name and date of birth match exactly
  one patient; a failed match says nothing about whether such a person
  exists, and after [dialog] max_id_failures the caller goes to a person;
- every change is confirmed back before it is made, and its outcome told
  truthfully after (booked only on the engine's AA; "recorded" while the
  outbox is still delivering);
- "operator" at any point is a person; a practice question mid-flow is
  answered and the flow's question asked again; max_misses turns not
  understood in a row is a person; the EHR down is an apology and a person.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import yaml

from ..compliance import redact
from ..config import Dialog
from ..ehr.link import EhrLink, LinkError, new_placer_id
from ..ehr.messages import Appointment, Patient, Provider, Refill, Slot
from . import first, guard, phrases, slots
from .first import Action, Reply
from .llm import LanguageModel, practice_facts
from .practice import DAYS, Practice

log = logging.getLogger(__name__)

# open slots offered at once: more is too much to hold in mind on the phone
OFFERS = 3
# offered slots are at least this far apart, so the choice means something
OFFER_SPREAD = dt.timedelta(minutes=90)
# practice questions a caller may ask in the middle of a flow
SIDE_QUESTIONS = ("hours", "address", "phone", "parking")
# Words the rules did not understand may be mapped by the language model onto
# the choice the flow waits on ([llm] extract): state -> the kind of choice.
# ask_drug maps before "not on your list"; identity, yes/no and messages never.
MAPPED_STATES = {"idle": "request", "ask_when": "when", "offer": "time",
                 "which_appointment": "time", "ask_drug": "medication"}
# what a caller may want, as the model chooses it -> the flow
MAPPED_FLOWS = {"book a new appointment": "book", "cancel an appointment": "cancel",
                "move an appointment to another time": "reschedule",
                "refill a prescription": "refill", "leave a message for the office": "message"}
# the practice's weekdays, and the two a caller names relative to today
_WHEN_DAYS = [*DAYS[:5], "today", "tomorrow"]


def choice_schema(kind: str, options: list[str] = ()) -> dict:
    """The JSON schema the model fills for a kind of choice: one enum a field (null
    for none), so it can only pick among real options."""
    def one_of(values) -> dict:
        return {"enum": [*values, None]}
    if kind == "request":
        properties = {"request": one_of(MAPPED_FLOWS)}
    elif kind == "when":
        properties = {"day": one_of(_WHEN_DAYS), "part_of_day": one_of(["morning", "afternoon"])}
    elif kind in ("time", "medication"):
        properties = {"choice": one_of(options)}
    else:
        raise ValueError(f"no such kind of choice: {kind!r}")
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_TIMES = ["Tuesday the 8th at 9 AM with Doctor Lee", "Wednesday the 9th at 2 PM with Doctor Ortiz",
          "Thursday the 10th at 10 AM with Doctor Lee"]
_MEDS = ["Lisinopril 10 mg tablet", "Atorvastatin 20 mg tablet", "Metformin 500 mg tablet"]
# each kind of choice is mapped only once the model got these right in time
# ([llm] extract = auto): words the rules miss, and what they mean
MAPPING_TRIALS = {
    "request": [("I'm running out of my blood pressure pills",
                 choice_schema("request"), {"request": "refill a prescription"}),
                ("I was hoping to get in to see somebody next week",
                 choice_schema("request"), {"request": "book a new appointment"})],
    "when": [("Thursdays work best, in the PM",
              choice_schema("when"), {"day": "thursday", "part_of_day": "afternoon"}),
             ("first thing Friday",
              choice_schema("when"), {"day": "friday", "part_of_day": "morning"})],
    "time": [("the afternoon one with Ortiz", choice_schema("time", _TIMES),
              {"choice": _TIMES[1]})],
    "medication": [("the one for my cholesterol", choice_schema("medication", _MEDS),
                    {"choice": _MEDS[1]})],
}


def load_providers(path: Path) -> dict[str, Provider]:
    """Provider IDs and names from a seed-shaped YAML file (its `providers` list)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return {str(p["id"]): Provider(str(p["id"]), str(p["family"]), str(p.get("given", "")))
            for p in data.get("providers", [])}


class Receptionist:
    """One call's flows.  `turn()` for speech, `key()` for DTMF digits."""

    def __init__(self, link: EhrLink | None, practice: Practice, language: str,
                 now: Callable[[], dt.datetime], *,
                 providers: dict[str, Provider] | None = None,
                 refill_provider: str = "",
                 max_id_failures: int = Dialog.max_id_failures,
                 max_misses: int = Dialog.max_misses,
                 call_id: str | None = None,
                 llm: LanguageModel | None = None):
        self.link, self.practice, self.language, self._clock = link, practice, language, now
        # answers practice questions the practice file's lookup cannot (None: fixed
        # phrasing only); it sees the question and the practice facts, nothing else
        self.llm = llm
        self._facts = practice_facts(practice, language) if llm is not None else ""
        # the last practice question found no answer: the miss offers a message or a person
        self._unsure = False
        self.say = phrases.of(language)
        self.flow_say = self.say.flow
        self.providers = providers or {}
        # the queue a refill goes to when the EHR names no prescriber ("" = the practice's)
        self.refill_provider = refill_provider
        self.max_id_failures, self.max_misses = max_id_failures, max_misses
        # the call whose log lines must never show what the caller says about themselves
        self.call_id = call_id
        self.state = "idle"
        # keys typed so far for a date of birth (MMDDYYYY comes key by key)
        self.typed = ""
        self.flow: str | None = None      # book, cancel, reschedule, refill, message
        self.first_words = ""             # the turn that started the flow
        self.patient: Patient | None = None
        self.names: list[tuple[str, str]] = []
        self.id_failures = 0
        self.misses = 0
        self.told_after_hours = False
        self.kind: str | None = None
        self.provider_id: str | None = None
        self.window: slots.Window | None = None
        self.offers: list[Slot] = []
        self.slot: Slot | None = None
        self.appointments: list[Appointment] = []
        self.appointment: Appointment | None = None
        self.medications: list[str] = []
        self._prescribers: dict[str, str] = {}   # medication -> prescribing provider ID
        self.drug = ""
        self.message = ""

    # ---- entry points

    @property
    def typing_birth_date(self) -> bool:
        """Waiting for a date of birth, which may come as keys (0 is then a digit)."""
        return self.state == "ask_birth_date"

    async def turn(self, transcript: str) -> Reply:
        """One caller utterance (already screened for red flags)."""
        text = transcript.strip()
        if not text:
            return self._miss()
        intent = first.intent_of(text, self.language)
        if intent == "operator":
            return Reply(self.say.transfer, Action.OPERATOR, "operator")
        if self.state != "ask_message" and guard.injection(text):
            log.warning("receptionist: refused a request about someone else's records")
            return self._ask(self.flow_say.own_only, "refused")
        if intent in SIDE_QUESTIONS and self.state not in ("idle", "ask_message") and re.search(
                rf"\b(?:{self.flow_say.asks_practice})\b", phrases.fold(text)):
            return self._side_answer(text, intent)
        try:
            reply = await getattr(self, f"_on_{self.state}")(text)
            if reply is None and intent == "unknown" and self.state != "ask_drug":
                reply = await self._mapped(text)
        except LinkError as exc:
            log.warning("receptionist: EHR unreachable (%s): to a person", exc)
            return Reply(self.flow_say.ehr_down, Action.OPERATOR, "ehr down")
        if reply is not None:
            self.misses = 0
            return reply
        if intent in SIDE_QUESTIONS:
            return self._side_answer(text, intent)
        if intent == "goodbye" and self.state not in ("confirm", "offer_message"):
            return Reply(self.say.goodbye.format(name=self.practice.name), Action.HANGUP,
                         "goodbye")
        return self._miss()

    async def key(self, digits: str) -> Reply:
        """DTMF digits: a date of birth (MMDDYYYY), a choice ("1", "2"), yes (1) or no (2)."""
        digits = re.sub(r"[^0-9]", "", digits)
        if not digits:
            return self._miss()
        if self.state == "ask_birth_date":
            return await self.turn(digits) if len(digits) == 8 else self._miss()
        if self.state in ("confirm", "offer_message") and digits in ("1", "2"):
            return await self.turn(self._yes_word(digits == "1"))
        if self.state in ("offer", "which_appointment", "ask_drug") and len(digits) == 1:
            return await self.turn({"1": "first", "2": "second", "3": "third"}.get(digits, "?")
                                   if self.language == "en" else
                                   {"1": "primera", "2": "segunda", "3": "tercera"}.get(digits,
                                                                                      "?"))
        return self._miss()

    def peek(self, transcript: str) -> str | None:
        """The likely reply, without changing state (None: unsure).  Its first
        sentence is made ahead, so it must be the very text the turn will say."""
        intent = first.intent_of(transcript, self.language)
        if intent == "operator":
            return self.say.transfer
        if self.state == "idle" and self._flow_of(transcript) is None and intent != "unknown":
            return first.respond(transcript, self.practice, self._local(), self.language).text
        if self.state == "idle" and self._flow_of(transcript) and self.patient is None:
            return self.flow_say.ask_name
        return None

    def take_message_instead(self) -> Reply | None:
        """The caller asked for a person and nobody can take the call: say so and
        take a message (the caller's identity first, as for any message).  None
        when no message can be taken here (no EHR link): put the caller through."""
        if self.link is None:
            return None
        f = self.flow_say
        self.flow, self.first_words, self.typed = "message", "", ""
        if self.patient is None:
            self.state, self.names = "ask_name", []
            # ask_name without its "I can help with that."
            then = f.ask_name.split(". ", 1)[-1]
        else:
            self.state, then = "ask_message", f.ask_message
        return Reply(f"{f.nobody_free} {then}", Action.CONTINUE, "message instead")

    # ---- helpers

    def _local(self) -> dt.datetime:
        now = self._clock()
        return now.astimezone(self.practice.timezone) if now.tzinfo else now

    def _now(self) -> dt.datetime:
        """The practice's wall-clock time, naive, as the EHR's times are."""
        return self._local().replace(tzinfo=None)

    def _yes_word(self, yes: bool) -> str:
        return ("yes" if yes else "no") if self.language == "en" else ("sí" if yes else "no")

    def _ask(self, text: str, intent: str) -> Reply:
        return Reply(f"{text} {self.question()}".strip(), Action.CONTINUE, intent)

    def _side_answer(self, text: str, intent: str) -> Reply:
        """A practice question mid-flow: the answer, then the flow's question again."""
        answer = first.respond(text, self.practice, self._local(), self.language)
        return Reply(answer.text.replace(self.say.anything_else, "").strip() + " "
                     + self.question(), Action.CONTINUE, intent)

    def _miss(self) -> Reply:
        self.misses += 1
        unsure, self._unsure = self._unsure, False
        if self.misses >= self.max_misses:
            return Reply(self.say.transfer, Action.OPERATOR, "too many misses")
        if unsure and self.state == "idle":
            # a question neither the practice file nor the model could answer
            return Reply(self.say.not_sure, Action.CONTINUE, "unknown")
        again = {"ask_name": self.flow_say.name_again,
                 "ask_birth_date": self.flow_say.birth_date_again,
                 "ask_when": self.flow_say.when_again, "offer": self.flow_say.pick_again,
                 "which_appointment": self.flow_say.pick_again,
                 "confirm": self.flow_say.yes_or_no, "offer_message": self.flow_say.yes_or_no,
                 "ask_drug": self.flow_say.drug_again,
                 "idle": self.flow_say.not_understood}.get(self.state)
        if self.state in ("offer", "which_appointment", "confirm", "ask_drug"):
            again = f"{again} {self.question()}"
        return Reply(again or self.question(), Action.CONTINUE, "unknown")

    def question(self) -> str:
        """The question the flow is waiting on (asked again after a side question)."""
        f = self.flow_say
        if self.state == "ask_name":
            return f.ask_name.split(". ")[-1]
        if self.state == "ask_birth_date":
            return f.ask_birth_date.split(". ", 1)[-1]
        if self.state == "ask_when":
            return f.ask_when
        if self.state == "offer":
            return f.offer.format(options=f.join_or([self._slot_text(s) for s in self.offers]))
        if self.state == "which_appointment":
            return f.which_appointment.format(
                options=f.join_or([self._appointment_text(a) for a in self.appointments]))
        if self.state == "ask_drug":
            return f.ask_drug.format(options=f.join_or(
                [slots.spoken_drug(m, self.language) for m in self.medications]))
        if self.state == "ask_message":
            return f.ask_message
        if self.state == "offer_message":
            return f.not_on_list.split(". ")[-1]
        if self.state == "confirm":
            return self._confirm_question()
        return self.say.anything_else

    def _provider_name(self, provider_id: str) -> str:
        p = self.providers.get(provider_id)
        return f"{p.given} {p.family}".strip() if p else ""

    def _when(self, at: dt.datetime, provider_id: str) -> str:
        when = self.flow_say.say_when(at, self._now().date())
        name = self._provider_name(provider_id)
        return self.flow_say.with_provider.format(when=when, provider=name) if name else when

    def _slot_text(self, s: Slot) -> str:
        return self._when(s.start, s.provider_id)

    def _appointment_text(self, a: Appointment) -> str:
        return self._when(a.start, a.provider_id)

    def _flow_of(self, text: str) -> str | None:
        folded = phrases.fold(text)
        for name, pattern in self.flow_say.flows:
            if re.search(rf"\b(?:{pattern})\b", folded):
                return name
        return None

    def _done(self, text: str, intent: str) -> Reply:
        """A flow finished: back to idle, offering more help."""
        self.state, self.flow = "idle", None
        return Reply(f"{text} {self.say.anything_else}", Action.CONTINUE, intent)

    def _need_link(self) -> EhrLink:
        if self.link is None:
            raise LinkError("no EHR link configured")
        return self.link

    # ---- idle: practice questions, or the start of a flow

    async def _on_idle(self, text: str) -> Reply | None:
        flow = self._flow_of(text)
        if flow is None:
            reply = first.respond(text, self.practice, self._local(), self.language)
            if reply.intent == "unknown":
                return await self._open_question(text)
            if self.llm is not None and reply.action is Action.CONTINUE and vague(
                    text, reply.text, self._facts):
                # the lookup gave its general answer; the facts may say more
                better = await self._open_question(text, fallback=reply)
                if better is not None:
                    return better
            return reply
        return await self._begin(flow, text)

    async def _begin(self, flow: str, text: str) -> Reply:
        self.flow, self.first_words = flow, text
        self._need_link()
        if self.patient is None:
            self.state = "ask_name"
            return Reply(self.flow_say.ask_name, Action.CONTINUE, flow)
        return await self._start_flow("")

    async def _open_question(self, text: str, fallback: Reply | None = None) -> Reply | None:
        """A practice question the lookup cannot answer (or answers only in general),
        asked of the language model: its answer from the practice facts, `fallback`
        when it has none, or None (a miss, offering a message or a person).

        Only the question and the practice facts reach the model, never the
        caller's identity or appointments; the urgent screen has run before.
        """
        self._unsure = False
        if self.llm is None:
            return fallback
        answer = await self.llm.consult(text, self._facts, self.language)
        # the path only: the question may hold anything the caller said
        log.info("receptionist: practice question answered by %s",
                 answer.path if answer.text else f"{answer.path} (fixed phrasing)")
        if answer.text:
            return Reply(f"{answer.text} {self.say.anything_else}", Action.CONTINUE, "question")
        if fallback is None:
            self._unsure = True
        return fallback

    async def _start_flow(self, lead: str) -> Reply:
        """The verified caller's flow begins (lead: what to say first)."""
        f, flow, text = self.flow_say, self.flow, self.first_words
        if flow in ("book", "reschedule") and not self.told_after_hours \
                and not self.practice.is_open(self._local()):
            self.told_after_hours = True
            lead = f"{lead} {f.after_hours}".strip()
        if flow == "book":
            self.kind = slots.parse_kind(text, self.language)
            self.provider_id = slots.parse_provider(text, self._provider_names())
            window = slots.parse_window(text, self._now(), self.language)
            if window is not None:
                return await self._offer(window, lead)
            self.state = "ask_when"
            return Reply(f"{lead} {f.ask_when}".strip(), Action.CONTINUE, flow)
        if flow in ("cancel", "reschedule"):
            link = self._need_link()
            self.appointments = (await link.upcoming_appointments(self.patient.id,
                                                                  now=self._now()))[:OFFERS]
            if not self.appointments:
                return self._done(f"{lead} {f.no_appointments}".strip(), flow)
            if len(self.appointments) == 1:
                return self._appointment_chosen(self.appointments[0], lead)
            self.state = "which_appointment"
            return Reply(f"{lead} {self.question()}".strip(), Action.CONTINUE, flow)
        if flow == "refill":
            meds = await self._need_link().active_medications(self.patient.id)
            self.medications = [m.name for m in meds]
            self._prescribers = {m.name: getattr(m, "provider_id", "") for m in meds}
            if not self.medications:
                self.state = "offer_message"
                return Reply(f"{lead} {f.no_medications}".strip(), Action.CONTINUE, flow)
            found = slots.match_drug(text, self.medications)
            if found is not None:
                return self._confirm_refill(found.name, lead)
            # the verified caller hears their own list: a drug name the speech
            # model cannot spell is then picked by its place, or by a key
            self.state = "ask_drug"
            return Reply(f"{lead} {self.question()}".strip(), Action.CONTINUE, flow)
        # message
        self.state = "ask_message"
        return Reply(f"{lead} {f.ask_message}".strip(), Action.CONTINUE, flow)

    def _provider_names(self) -> dict[str, tuple[str, str]]:
        return {pid: (p.given, p.family) for pid, p in self.providers.items()}

    # ---- identification

    async def _on_ask_name(self, text: str) -> Reply | None:
        names = slots.parse_name(text, self.language)
        if not names:
            return None
        redact.remember(*(f"{given} {family}" for given, family in names[:1]), call=self.call_id)
        self.names, self.state = names, "ask_birth_date"
        return Reply(self.flow_say.ask_birth_date, Action.CONTINUE, "name")

    async def _on_ask_birth_date(self, text: str) -> Reply | None:
        born = slots.parse_birth_date(text, self.language, self._now().date())
        if born is None:
            return None
        redact.remember(born, call=self.call_id)
        link = self._need_link()
        found: dict[str, Patient] = {}
        # the engine is asked by family name and date of birth; the first name is
        # then compared here, as it sounds ("Anna" for "Ana"), since speech
        # recognition rarely spells a first name the way the chart does
        for given, family in self.names:
            for p in await link.find_patient(family, "", born):
                if slots.same_name(given, p.given):
                    found[p.id] = p
            if found:
                break
        if not found:
            # a family name spelt as heard, not as charted ("Lindquist" for
            # "Lindqvist"), finds no one: ask by the date of birth alone and
            # compare both names by sound here
            for p in await link.find_patient("", "", born):
                if any(slots.same_name(given, p.given) and slots.same_family(family, p.family)
                       for given, family in self.names):
                    found[p.id] = p
        if len(found) == 1:
            self.patient = next(iter(found.values()))
            p = self.patient
            redact.remember(f"{p.given} {p.family}", p.birth_date, p.id, p.phone,
                            call=self.call_id)
            log.info("receptionist: caller verified")
            return await self._start_flow(self.flow_say.verified)
        self.id_failures += 1
        # the same words whether no one or several matched: nothing is revealed
        log.info("receptionist: identity not confirmed (%d of %d)", self.id_failures,
                 self.max_id_failures)
        if self.id_failures >= self.max_id_failures:
            return Reply(self.flow_say.verify_failed, Action.OPERATOR, "not verified")
        self.state, self.names = "ask_name", []
        return Reply(self.flow_say.not_verified, Action.CONTINUE, "not verified")

    # ---- booking and rescheduling: a window, real slots, a choice

    async def _on_ask_when(self, text: str) -> Reply | None:
        self.kind = slots.parse_kind(text, self.language) or self.kind
        self.provider_id = slots.parse_provider(text, self._provider_names()) or self.provider_id
        window = slots.parse_window(text, self._now(), self.language)
        if window is None:
            return None
        return await self._offer(window, "")

    async def _open_slots(self, start: dt.datetime, end: dt.datetime) -> list[Slot]:
        link = self._need_link()
        if self.flow == "reschedule" and self.appointment is not None:
            # a move keeps the provider; the visit's kind is already set
            return await link.open_slots(start, end, self.appointment.provider_id)
        return await link.open_slots(start, end, self.provider_id, self.kind)

    async def _offer(self, window: slots.Window, lead: str) -> Reply:
        f = self.flow_say
        self.window = window
        start = window.start.replace(tzinfo=None)
        end = window.end.replace(tzinfo=None)
        found = [s for s in await self._open_slots(start, end) if s.start > self._now()]
        if not found:
            lead = f"{lead} {f.nothing_then}".strip()
            later = start + dt.timedelta(days=slots.SOON_DAYS)
            found = [s for s in await self._open_slots(start, later) if s.start > self._now()]
        if not found:
            self.state = "ask_when"
            return Reply(f"{lead} {f.nothing_soon}".strip(), Action.CONTINUE, "no slots")
        self.offers = pick_offers(found, window.at)
        self.state = "offer"
        return Reply(f"{lead} {self.question()}".strip(), Action.CONTINUE, "offer")

    async def _on_offer(self, text: str) -> Reply | None:
        index = slots.choose(text, [s.start for s in self.offers], self.language)
        if index is None and len(self.offers) == 1 and slots.yes_no(text, self.language):
            index = 0
        if index is None:
            # "no, something later": a new window in the same turn
            window = slots.parse_window(text, self._now(), self.language)
            if window is not None:
                return await self._offer(window, "")
            return None
        return self._slot_chosen(index)

    def _slot_chosen(self, index: int) -> Reply:
        self.slot, self.state = self.offers[index], "confirm"
        return Reply(self._confirm_question(), Action.CONTINUE, "chosen")

    # ---- cancel and reschedule: which appointment

    def _appointment_chosen(self, a: Appointment, lead: str) -> Reply:
        self.appointment = a
        if self.flow == "cancel":
            self.state = "confirm"
            text = self._confirm_question()
        else:
            self.state = "ask_when"
            text = self.flow_say.ask_new_time.format(appointment=self._appointment_text(a))
        return Reply(f"{lead} {text}".strip(), Action.CONTINUE, self.flow or "")

    async def _on_which_appointment(self, text: str) -> Reply | None:
        index = slots.choose(text, [a.start for a in self.appointments], self.language)
        if index is None:
            return None
        return self._appointment_chosen(self.appointments[index], "")

    # ---- words the rules did not understand, mapped by the language model

    def _options(self) -> list[str]:
        """The spoken options of a choice among times or medications."""
        if self.state == "offer":
            return [self._slot_text(x) for x in self.offers]
        if self.state == "which_appointment":
            return [self._appointment_text(a) for a in self.appointments]
        return list(self.medications) if self.state == "ask_drug" else []

    async def _mapped(self, text: str) -> Reply | None:
        """The caller's words mapped by the language model onto the choice the flow
        waits on ([llm] extract), then acted on as spoken words are: the model picks
        among real options only (a JSON grammar over an enum), and every change it
        leads to is confirmed back before it is made.  None: not mapped (no model,
        this kind of choice not trusted to it, or it found none)."""
        kind = MAPPED_STATES.get(self.state)
        if self.llm is None or kind not in self.llm.maps:
            return None
        options = self._options()
        value = await self.llm.extract(text, choice_schema(kind, options))
        if not value or all(v is None for v in value.values()):
            return None
        # which state, never the words: they may be anything the caller said
        log.info("receptionist: the language model mapped a turn onto a %s", kind)
        if kind == "request":
            self._unsure = False
            return await self._begin(MAPPED_FLOWS[value["request"]], text)
        if kind == "when":
            spoken = slots.window_words(value.get("day"), value.get("part_of_day"), self.language)
            window = slots.parse_window(spoken, self._now(), self.language) if spoken else None
            return await self._offer(window, "") if window is not None else None
        index = options.index(value["choice"])
        if self.state == "offer":
            return self._slot_chosen(index)
        if self.state == "which_appointment":
            return self._appointment_chosen(self.appointments[index], "")
        return self._confirm_refill(self.medications[index], "")

    # ---- refill and message

    async def _on_ask_drug(self, text: str) -> Reply | None:
        found = slots.match_drug(text, self.medications)
        if found is not None:
            return self._confirm_refill(found.name, "")
        index = slots.choose_position(text, len(self.medications), self.language)
        if index is not None:
            return self._confirm_refill(self.medications[index], "")
        if first.intent_of(text, self.language) != "unknown":
            return None  # a practice question or goodbye, not a drug
        if (mapped := await self._mapped(text)) is not None:
            return mapped
        # a drug was named but is not on the active list: offer a message instead
        self.state = "offer_message"
        return Reply(self.flow_say.not_on_list, Action.CONTINUE, "not on list")

    def _confirm_refill(self, name: str, lead: str) -> Reply:
        self.drug, self.state = name, "confirm"
        return Reply(f"{lead} {self._confirm_question()}".strip(), Action.CONTINUE, "refill")

    async def _on_offer_message(self, text: str) -> Reply | None:
        answer = slots.yes_no(text, self.language)
        if answer is None:
            return None
        if not answer:
            return self._done(self.flow_say.not_done, "no message")
        self.flow, self.state = "message", "ask_message"
        return Reply(self.flow_say.ask_message, Action.CONTINUE, "message")

    async def _on_ask_message(self, text: str) -> Reply | None:
        self.message, self.state = text, "confirm"
        return Reply(self._confirm_question(), Action.CONTINUE, "message")

    # ---- confirm, act, tell the outcome

    def _confirm_question(self) -> str:
        f = self.flow_say
        if self.flow == "book" and self.slot is not None:
            return f.confirm_book.format(slot=self._slot_text(self.slot))
        if self.flow == "cancel" and self.appointment is not None:
            return f.confirm_cancel.format(appointment=self._appointment_text(self.appointment))
        if self.flow == "reschedule" and self.appointment is not None and self.slot is not None:
            return f.confirm_move.format(appointment=self._appointment_text(self.appointment),
                                         slot=self._slot_text(self.slot))
        if self.flow == "refill":
            return f.confirm_refill.format(drug=slots.spoken_drug(self.drug, self.language))
        return f.confirm_message.format(message=self.message)

    async def _on_confirm(self, text: str) -> Reply | None:
        answer = slots.yes_no(text, self.language)
        if answer is None:
            return None
        if not answer:
            if self.flow in ("book", "reschedule") and self.slot is not None:
                self.state, self.slot = "ask_when", None
                return Reply(f"{self.flow_say.not_done} {self.flow_say.ask_when}",
                             Action.CONTINUE, "declined")
            return self._done(self.flow_say.not_done, "declined")
        return await self._act()

    async def _act(self) -> Reply:
        f, link, flow = self.flow_say, self._need_link(), self.flow
        if flow == "book":
            slot = self.slot
            outcome = await link.book(Appointment(new_placer_id(), self.patient,
                                                  slot.provider_id, slot.start, slot.minutes,
                                                  self.kind or ""))
            done = f.booked.format(slot=self._slot_text(slot))
        elif flow == "reschedule":
            slot = self.slot
            outcome = await link.reschedule(replace(self.appointment, start=slot.start,
                                                    minutes=slot.minutes,
                                                    provider_id=slot.provider_id))
            done = f.moved.format(slot=self._slot_text(slot))
        elif flow == "cancel":
            outcome = await link.cancel(self.appointment)
            done = f.cancelled.format(appointment=self._appointment_text(self.appointment))
        elif flow == "refill":
            provider = self._prescribers.get(self.drug) or self.refill_provider
            outcome = await link.request_refill(Refill(new_placer_id(), self.patient, provider,
                                                       self.drug))
            done = f.refill_sent.format(drug=slots.spoken_drug(self.drug, self.language))
        else:
            outcome = await link.leave_message(self.patient, self.message)
            done = f.message_sent
        log.info("receptionist: %s -> %s", flow,
                 "confirmed" if outcome.confirmed else outcome.error or "recorded")
        if outcome.confirmed:
            return self._done(done, f"{flow} confirmed")
        if not outcome.error:
            return self._done(f.recorded, f"{flow} recorded")
        if flow in ("book", "reschedule") and self.window is not None:
            # most likely the slot was just taken: offer what is free now
            self.offers = [s for s in self.offers if s != self.slot]
            self.slot = None
            return await self._offer(self.window, f.taken)
        return Reply(f.refused, Action.OPERATOR, f"{flow} refused")


# words too common in questions to show what a question is about
_COMMON = frozenset((
    "what", "which", "where", "when", "there", "here", "your", "have", "does", "that", "this",
    "with", "from", "about", "tell", "know", "please", "could", "would", "should", "open",
    "close", "closed", "hours", "name", "phone", "address", "parking", "practice", "office",
    "clinic", "want", "need", "today", "tomorrow", "donde", "cual", "cuando", "para", "tienen",
    "tiene", "ustedes", "usted", "esta", "estan", "como", "puedo", "quiero", "necesito",
    "consulta", "clinica", "oficina", "horario", "abierto", "abiertos", "cerrado", "cerrados",
))


def vague(question: str, answer: str, facts: str) -> bool:
    """Whether the lookup's answer misses what the question asks and the facts hold.

    "Which street is the entrance on?" is an address question to the lookup, whose
    answer is the street address; the parking text says the entrance is on Elm
    Street.  A word of the question that the facts hold and the answer lacks shows it.
    """
    folded_facts, said = phrases.fold(facts), set(phrases.fold(answer).split())
    days = {phrases.fold(d) for p in phrases.PHRASES.values() for d in p.days}
    for word in set(re.findall(r"[a-z]{4,}", phrases.fold(question))):
        if word in _COMMON or word in days or word in said:
            continue
        if re.search(rf"\b{word}\b", folded_facts):
            return True
    return False


def pick_offers(found: list[Slot], at: dt.time | None, count: int = OFFERS) -> list[Slot]:
    """Up to `count` of the open slots, spread apart (or nearest the time asked for)."""
    if at is not None:
        def distance(s: Slot) -> float:
            wanted = dt.datetime.combine(s.start.date(), at)
            return abs((s.start - wanted).total_seconds())
        ordered = sorted(found, key=lambda s: (s.start.date(), distance(s)))
    else:
        ordered = sorted(found, key=lambda s: s.start)
    chosen: list[Slot] = []
    for s in ordered:
        if all(abs(s.start - c.start) >= OFFER_SPREAD for c in chosen):
            chosen.append(s)
        if len(chosen) == count:
            break
    if at is None and len(chosen) < min(count, 2):
        chosen += [s for s in ordered if s not in chosen][:min(count, 2) - len(chosen)]
    return sorted(chosen, key=lambda s: s.start)
