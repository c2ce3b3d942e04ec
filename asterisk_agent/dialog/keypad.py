"""The keypad-only menu: what a caller gets when the agent cannot listen.

When a call comes in over AGI while the agent's ARI side is down, there is
no speech recognition to be had, only keys.  The menu is small and never
leaves the caller in silence: 1 plays the practice's hours and address, 0
(or no usable key twice in a row) hands the call to a person.

Pure logic: a key, or None for no key in time, goes in; a Prompt (what to
say, then whether to wait for a key or hand the call over) comes out.  The
AGI side (telephony/agi.py) plays the prompts and reads the keys.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import first, phrases
from .practice import Practice

# keys that cut a prompt short: any key is an answer (one that is no choice is
# said to be so), as with Background() in a dialplan menu
KEYS = "0123456789*#"
# seconds to wait for a key after a prompt, as the example menu's WaitExten(5)
WAIT_S = 5.0
# no key, or a key that is no choice, this many times in a row: a person takes over
MAX_MISSES = 2


class Then(enum.Enum):
    KEYS = "keys"           # wait for the caller's key
    OPERATOR = "operator"   # hand the caller to a person


@dataclass(frozen=True)
class Prompt:
    text: str
    then: Then = Then.KEYS


class Keypad:
    """One caller's way through the menu."""

    def __init__(self, practice: Practice, language: str):
        self.practice = practice
        self.say = phrases.of(language)
        self.keys = self.say.keypad
        self.language = language
        self.misses = 0

    def start(self) -> Prompt:
        return Prompt(f"{self.keys.greeting.format(name=self.practice.name)} {self.keys.menu}")

    def press(self, key: str | None) -> Prompt:
        """The caller pressed `key` (None: nothing within WAIT_S)."""
        if key == "0":
            return Prompt(self.say.transfer, Then.OPERATOR)
        if key == "1":
            self.misses = 0
            return Prompt(self._facts())
        self.misses += 1
        why = self.keys.no_key if key is None else self.keys.not_a_choice
        if self.misses >= MAX_MISSES:
            return Prompt(f"{why} {self.say.transfer}", Then.OPERATOR)
        return Prompt(f"{why} {self.keys.menu}")

    def _facts(self) -> str:
        return " ".join((first.week_hours(self.practice, self.language),
                         self.say.address.format(address=self.practice.address),
                         self.keys.again))

    def prompts(self) -> list[str]:
        """Every text this menu can say, to make its sound files ahead of the first caller."""
        k, transfer = self.keys, self.say.transfer
        return [self.start().text, self._facts(), transfer,
                *(f"{why} {then}" for why in (k.no_key, k.not_a_choice)
                  for then in (k.menu, transfer))]
