"""The urgent-symptom screen: deterministic red-flag rules, run on every utterance first.

The rules live in protocol files the practice can read and edit (etc/protocols/,
one YAML file per specialty; every specialty also applies general.yaml).  Each
red flag has phrasings in English and Spanish and an action: ``emergency`` (tell
the caller to call 911, then transfer) or ``urgent`` (transfer to the on-call
clinician now).  The language model never takes part: a patient-safety rule must
give the same answer every time and be auditable word by word.

Matching works on what a speech model writes, not on what a person types: case,
punctuation and accents are folded, words are reduced to a rough stem ("bleeding",
"bleeds" -> "bleed"), and up to two words may stand between the words of a phrasing
("my chest really hurts").  A match is set aside only when the caller clearly says
otherwise:

* negated: a negation word right before it, with nothing but filler words between
  ("no chest pain", "I don't have any trouble breathing"); a lone "No." or a
  correction ("no... actually my chest hurts") is not a negation;
* long past: a marker of months or years ago in the same clause ("chest pain last
  year, fine now", "my father had a stroke years ago"); "this morning" is not;
* excused: inside one of the flag's routine phrases ("stroke of luck", "chest x-ray").

Anything else escalates: recall comes first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import yaml

from ..config import LANGUAGES
from .phrases import fold

ACTIONS = ("emergency", "urgent")
# emergency outranks urgent when one utterance raises both
_RANK = {"emergency": 0, "urgent": 1}

# words allowed between the words of a phrasing ("my chest really hurts")
MAX_GAP = 2
# a phrasing with alternatives ("chest pain/pressure") may expand to this many at most:
# more is almost surely a typo that would slow every screen down
MAX_EXPANSIONS = 256


class ProtocolError(Exception):
    """A protocol file problem, with the file and line where it was found."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        self.path, self.line = path, line
        where = f"{path or '<protocol>'}:{line}: " if line else f"{path}: " if path else ""
        super().__init__(where + message)


class UnknownSpecialty(LookupError):
    """A specialty no protocol file defines."""

    def __init__(self, name: str, known: tuple[str, ...]):
        self.name, self.known = name, known
        super().__init__(f"unknown specialty {name!r} (known: {', '.join(known)})")

    def __str__(self) -> str:  # LookupError would quote the whole message
        return self.args[0]


@dataclass(frozen=True)
class Finding:
    """What the screen found in one utterance (also the audit record's reason)."""

    urgent: bool
    flag: str = ""      # the red flag's id, "" when none
    action: str = ""    # "", "emergency" or "urgent"
    matched: str = ""   # the caller's words that matched (folded)
    message: str = ""   # what to say, in the call's language
    language: str = ""  # the language of the message
    name: str = ""      # the red flag's plain-language name


NOT_URGENT = Finding(urgent=False)


@dataclass(frozen=True)
class Flag:
    id: str
    name: str
    action: str
    specialty: str
    where: str                              # "file:line", for review
    phrasings: dict[str, tuple[str, ...]]   # language -> as written in the file
    excuses: dict[str, tuple[str, ...]]     # language -> routine phrases ("stroke of luck")
    messages: dict[str, str]                # language -> what to say


# --- words --------------------------------------------------------------------
# Clause breaks that fold() would erase: a negation or a time does not reach across them.
_HARD_PUNCT = re.compile(r"[.;:!?¡¿…()\[\]\"]+|\s[-–—]+\s|[–—]+")
_SOFT = ","     # a comma: a list goes on across it ("no fever, chills or chest pain")
_BREAK = "|"    # a full stop: nothing reaches across it
# words that turn a sentence: a negation or a time before them does not carry over
_TURNS = frozenset("""but actually although though however except now and then since after
    anyway wait pero aunque ahora sino y e luego despues desde bueno""".split())
# "can not" and "cannot" are one word to the rules, as "can't" is
_JOIN = {("can", "not"): "cant", ("could", "not"): "couldnt", ("do", "not"): "dont",
         ("does", "not"): "doesnt", ("did", "not"): "didnt", ("is", "not"): "isnt",
         ("are", "not"): "arent", ("was", "not"): "wasnt", ("have", "not"): "havent",
         ("has", "not"): "hasnt", ("will", "not"): "wont", ("would", "not"): "wouldnt"}
_SINGLE = {"cannot": "cant"}

_NEGATIONS = frozenset("""no not never without dont doesnt didnt isnt wasnt arent werent havent
    hasnt hadnt aint none nor deny denies denied
    sin nunca ni jamas tampoco ningun ninguna ninguno""".split())
# words that may stand between a negation and what it negates
_FILLERS = frozenset("""have has had having any a an the get gets getting got feel feels
    feeling felt experience experiencing experienced really some much more been signs sign
    symptoms symptom of my his her their its is am are was were be being there that this
    other kind type real longer currently
    tengo tiene tienen tenia tuve tuvo he ha han hemos tenido hay habido siento siente sentido
    senti sentia un una unos unas el la los las de del mas ningun ninguna ninguno nada ya me
    se le les te lo mi su sus algun alguna ningunos sintomas signos""".split())
# words that join a list of denied symptoms ("no fever or chest pain")
_LIST = frozenset("or nor ni o u".split())
# a negation may not be further back than this many filler words: far away, escalate
_MAX_FILLERS = 5

# Long past, said in the same clause as the symptom: not an emergency now.
_LONG_AGO = re.compile(r"""\b(?:
      (?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|many|several
        |few|couple\ of|some)\s+(?:years?|months?)\s+(?:ago|back)
    | years\s+(?:ago|back) | months\s+ago
    | last\s+(?:year|month|summer|winter|spring|fall|autumn|christmas)
    | in\s+(?:19|20)\d\d | when\s+i\s+was\s+(?:a\s+)?(?:kid|child|baby|little|young|younger|teenager|teen)
    | as\s+a\s+(?:kid|child|baby|teenager) | long\s+time\s+ago
    | hace\s+(?:\w+\s+)?(?:anos?|meses?) | hace\s+mucho(?:\s+tiempo)?
    | el\s+ano\s+pasado | el\s+mes\s+pasado | los\s+anos\s+pasados
    | en\s+(?:19|20)\d\d | cuando\s+(?:yo\s+)?era\s+(?:nino|nina|chico|chica|joven|bebe|pequeno|pequena)
    )\b""", re.X)


def _tokens(text: str) -> list[str]:
    """Folded words with clause marks: "No... actually, my chest" -> [no, |, actually, ",", my, chest]."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    out: list[str] = []
    for n, sentence in enumerate(_HARD_PUNCT.split(text)):
        if n:
            out.append(_BREAK)
        for m, part in enumerate(sentence.split(",")):
            if m:
                out.append(_SOFT)
            for word in fold(part).replace("'", "").split():
                word = _SINGLE.get(word, word)
                if out and (out[-1], word) in _JOIN:
                    out[-1] = _JOIN[out[-1], word]
                else:
                    out.append(word)
    return out


def _stem_en(word: str) -> str:
    """A rough English stem, the same for phrasing and caller: bleeding/bleeds -> bleed."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, put in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            word = word[: -len(suffix)] + put
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _stem_es(word: str) -> str:
    """A rough Spanish stem: plural and gender endings off (hinchados/hinchada -> hinchad)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("es") and len(word) > 5:
        word = word[:-2]
    elif word.endswith("s"):
        word = word[:-1]
    return word[:-1] if len(word) > 3 and word[-1] in "aoe" else word


_STEMMERS = {"en": _stem_en, "es": _stem_es}
_PUNCT_TOKENS = (_BREAK, _SOFT)


def _stems(tokens: list[str], language: str) -> list[str]:
    stem = _STEMMERS[language]
    return [t if t in _PUNCT_TOKENS else stem(t) for t in tokens]


def _expand(phrasing: str) -> list[str]:
    """Alternatives: "can't/cannot breathe", "bleeding (a lot/heavily)" -> every plain phrasing.

    A slash separates single words; parentheses group alternatives of several words.
    """
    if phrasing.count("(") != phrasing.count(")"):
        raise ValueError("a ( without its ) or the other way round")
    choices = []
    for piece in re.findall(r"\([^()]*\)|[^\s()]+", phrasing):
        options = piece[1:-1] if piece.startswith("(") else piece
        choices.append([o.strip() for o in options.split("/") if o.strip()])
    if any(not c for c in choices):
        raise ValueError("an empty alternative")
    return [" ".join(words) for words in product(*choices)]


# --- matching -----------------------------------------------------------------
@dataclass(frozen=True)
class _Pattern:
    words: tuple[str, ...]  # stems


@dataclass
class _Rule:
    """One phrasing of a flag in one language: every part must match ("rash + fever")."""

    flag: Flag
    language: str
    parts: tuple[_Pattern, ...]


@dataclass
class _Matcher:
    """The compiled red flags of one specialty (general flags included)."""

    flags: tuple[Flag, ...]
    # language -> first stem -> patterns that start with it
    index: dict[str, dict[str, list[_Pattern]]] = field(default_factory=dict)
    # (language, first part) -> the rules that start with it, in file order
    rules: dict[tuple[str, _Pattern], list[_Rule]] = field(default_factory=dict)
    excuses: dict[str, dict[str, list[_Pattern]]] = field(default_factory=dict)  # flag id -> language -> patterns

    def add(self, language: str, words: tuple[str, ...]) -> _Pattern:
        pattern = _Pattern(words)
        bucket = self.index.setdefault(language, {}).setdefault(words[0], [])
        if pattern not in bucket:
            bucket.append(pattern)
        return pattern


def _compile_words(text: str, language: str) -> tuple[str, ...]:
    return tuple(s for s in _stems(_tokens(text), language) if s not in _PUNCT_TOKENS)


def _compile(flags: tuple[Flag, ...]) -> _Matcher:
    matcher = _Matcher(flags)
    for flag in flags:
        for language, phrasings in flag.phrasings.items():
            for phrasing in phrasings:
                for variant in _expand(phrasing):
                    parts = tuple(matcher.add(language, _compile_words(p, language))
                                  for p in variant.split("+"))
                    matcher.rules.setdefault((language, parts[0]), []).append(
                        _Rule(flag, language, parts))
        for language, excuses in flag.excuses.items():
            for excuse in excuses:
                for variant in _expand(excuse):
                    pattern = matcher.add(language, _compile_words(variant, language))
                    matcher.excuses.setdefault(flag.id, {}).setdefault(language, []).append(pattern)
    return matcher


def _find(words: tuple[str, ...], stems: list[str], start: int) -> tuple[int, ...] | None:
    """Where `words` occur from stems[start] on, up to MAX_GAP other words between each."""
    at = [start]
    for word in words[1:]:
        for j in range(at[-1] + 1, min(at[-1] + 2 + MAX_GAP, len(stems))):
            if stems[j] == word:
                at.append(j)
                break
        else:
            return None
    return tuple(at)


def _negated(tokens: list[str], start: int, covered: set[int]) -> bool:
    """Is the match at `start` negated ("no chest pain", "don't have any trouble breathing")?"""
    fillers = 0
    i = start - 1
    while i >= 0:
        t = tokens[i]
        if t in _NEGATIONS:
            # "No, ..." and "No. ..." answer a question; they do not negate what follows
            return not (i + 1 < len(tokens) and tokens[i + 1] in _PUNCT_TOKENS)
        if t == _SOFT:
            # a comma continues a list of other red flags only ("no fever, chest pain")
            if i - 1 in covered:
                i -= 1
                continue
            return False
        if i in covered or t in _LIST:
            i -= 1
            continue
        if t in _FILLERS:
            fillers += 1
            if fillers > _MAX_FILLERS:
                return False
            i -= 1
            continue
        return False
    return False


def _clause(tokens: list[str], start: int, end: int) -> str:
    """The words of the clause around tokens[start:end], for the time markers."""
    lo = start
    while lo > 0 and tokens[lo - 1] != _BREAK and tokens[lo - 1] not in _TURNS:
        lo -= 1
    hi = end
    while hi < len(tokens) and tokens[hi] != _BREAK and tokens[hi] not in _TURNS:
        hi += 1
    return " ".join(t for t in tokens[lo:hi] if t not in _PUNCT_TOKENS)


def _screen(matcher: _Matcher, text: str) -> tuple[_Rule, tuple[tuple[int, ...], ...]] | None:
    """The most serious red flag in `text` and where its parts matched, or None."""
    tokens = _tokens(text)
    if not tokens:
        return None
    found: dict[tuple[str, _Pattern], list[tuple[int, ...]]] = {}
    for language, index in matcher.index.items():
        stems = _stems(tokens, language)
        for i, stem in enumerate(stems):
            for pattern in index.get(stem, ()):
                at = _find(pattern.words, stems, i)
                if at:
                    found.setdefault((language, pattern), []).append(at)
    if not found:
        return None
    covered = {i for spans in found.values() for at in spans for i in range(at[0], at[-1] + 1)}
    best: tuple[tuple[int, int], _Rule, tuple[tuple[int, ...], ...]] | None = None
    candidates = [rule for key in found for rule in matcher.rules.get(key, ())]
    for rule in candidates:
        # a routine phrase in any language excuses the words: callers mix languages
        excused = {i for language, patterns in matcher.excuses.get(rule.flag.id, {}).items()
                   for pattern in patterns for at in found.get((language, pattern), ())
                   for i in range(at[0], at[-1] + 1)}
        where: list[tuple[int, ...]] = []
        used: set[int] = set()
        for part in rule.parts:
            # each part of "a + b" needs words of its own
            live = [at for at in found.get((rule.language, part), ())
                    if not excused.intersection(at) and not used.intersection(at)
                    and not _negated(tokens, at[0], covered)
                    and not _LONG_AGO.search(_clause(tokens, at[0], at[-1] + 1))]
            if not live:
                break
            where.append(live[0])
            used.update(live[0])
        else:
            key = (_RANK[rule.flag.action], min(at[0] for at in where))
            if best is None or key < best[0]:
                best = (key, rule, tuple(where))
    if best is None:
        return None
    return best[1], best[2]


# --- protocols ----------------------------------------------------------------
@dataclass(frozen=True)
class Specialty:
    name: str      # the file's stem: "dental"
    title: str     # plain language: "Dental practice"
    flags: tuple[Flag, ...]  # the general flags first


class Protocols:
    """Every specialty's red flags, loaded and checked once at start-up."""

    def __init__(self, specialties: dict[str, Specialty]):
        self.specialties = dict(specialties)
        self._matchers = {name: _compile(s.flags) for name, s in self.specialties.items()}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.specialties))

    def messages(self, specialty: str, language: str) -> set[str]:
        """Every safety message a call in this specialty and language may need."""
        if specialty not in self.specialties:
            raise UnknownSpecialty(specialty, self.names)
        return {f.messages[language] for f in self.specialties[specialty].flags
                if language in f.messages}

    def screen(self, text: str, specialty: str = "general", language: str | None = None) -> Finding:
        """Screen one utterance; `language` picks the message (None: the language that matched).

        Phrasings of every language are tried whatever the call's language: callers
        mix languages, and recall comes first.
        """
        if not isinstance(text, str):
            raise TypeError(f"screen() takes the transcript as str, not {type(text).__name__}")
        matcher = self._matchers.get(specialty)
        if matcher is None:
            raise UnknownSpecialty(specialty, self.names)
        if language is not None and language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
        hit = _screen(matcher, text)
        if hit is None:
            return NOT_URGENT
        rule, where = hit
        tokens = _tokens(text)
        matched = " + ".join(" ".join(t for t in tokens[at[0]: at[-1] + 1] if t not in _PUNCT_TOKENS)
                             for at in where)
        speak = language or rule.language
        flag = rule.flag
        return Finding(urgent=True, flag=flag.id, action=flag.action, matched=matched,
                       message=flag.messages[speak], language=speak, name=flag.name)


# --- loading, with the line of every mistake ----------------------------------
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TOP_KEYS = {"name", "messages", "flags"}
_FLAG_KEYS = {"id", "name", "action", "phrasings", "not", "message"}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, what: str, known: set[str], path: Path) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise ProtocolError(f"{what} must be a mapping (key: value)", path, _line(node))
    out: dict[str, yaml.Node] = {}
    for key_node, value in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in known:
            raise ProtocolError(f"{what}: unknown key {key!r} (known: {', '.join(sorted(known))})",
                                path, _line(key_node))
        if key in out:
            raise ProtocolError(f"{what}: {key!r} is written twice", path, _line(key_node))
        out[key] = value
    return out


def _text(node: yaml.Node, what: str, path: Path) -> str:
    if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
        raise ProtocolError(f"{what} must be a non-empty text", path, _line(node))
    return node.value.strip()


def _phrasings(node: yaml.Node, what: str, path: Path,
               both: bool = True) -> dict[str, tuple[str, ...]]:
    """{en: [...], es: [...]}: each phrasing checked to mean some words; `both`: allow "a + b"."""
    out = {}
    for language, seq in _mapping(node, what, set(LANGUAGES), path).items():
        if not isinstance(seq, yaml.SequenceNode) or not seq.value:
            raise ProtocolError(f"{what} {language} must be a list of phrasings (- words)",
                                path, _line(seq))
        items = []
        for item in seq.value:
            phrase = _text(item, f"{what} {language}: a phrasing", path)
            try:
                variants = _expand(phrase)
            except ValueError as exc:
                raise ProtocolError(f"{what} {language}: {phrase!r}: {exc}", path,
                                    _line(item)) from None
            if len(variants) > MAX_EXPANSIONS:
                raise ProtocolError(f"{what} {language}: {phrase!r} has {len(variants)} variants "
                                    f"(at most {MAX_EXPANSIONS}: split it)", path, _line(item))
            if "+" in phrase and not both:
                raise ProtocolError(f"{what} {language}: {phrase!r}: a routine phrase is one run "
                                    "of words, without +", path, _line(item))
            for variant in variants:
                for part in variant.split("+"):
                    if not _compile_words(part, language):
                        raise ProtocolError(f"{what} {language}: {phrase!r} has an empty part",
                                            path, _line(item))
            items.append(phrase)
        out[language] = tuple(items)
    return out


def _messages(node: yaml.Node, what: str, path: Path) -> dict[str, dict[str, str]]:
    """{emergency: {en, es}, urgent: {en, es}} (either may be left out)."""
    out = {}
    for action, langs in _mapping(node, what, set(ACTIONS), path).items():
        out[action] = {lang: _text(v, f"{what} {action} {lang}", path)
                       for lang, v in _mapping(langs, f"{what} {action}", set(LANGUAGES), path).items()}
    return out


def _read(path: Path) -> yaml.Node:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read: {exc}", path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ProtocolError(f"not valid YAML: {exc.problem or exc.context}", path,
                            mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"not valid YAML: {exc}", path) from None
    if node is None:
        raise ProtocolError("the file is empty", path)
    return node


def _load_file(path: Path, shared: dict[str, dict[str, str]] | None,
               taken: dict[str, str]) -> tuple[str, dict[str, dict[str, str]], tuple[Flag, ...]]:
    """One protocol file: (title, its messages, its flags); `shared` = general.yaml's messages."""
    top = _mapping(_read(path), "the file", _TOP_KEYS, path)
    for key in ("name", "flags"):
        if key not in top:
            raise ProtocolError(f"missing {key!r}", path, 1)
    title = _text(top["name"], "name", path)
    own = _messages(top["messages"], "messages", path) if "messages" in top else {}
    if shared is None:  # general.yaml: every other file falls back on its messages
        for action in ACTIONS:
            for language in LANGUAGES:
                if language not in own.get(action, {}):
                    raise ProtocolError(f"messages: {action} {language} is missing (general.yaml "
                                        "holds the message of every action in every language)",
                                        path, _line(top.get("messages", top["name"])))
    seq = top["flags"]
    if not isinstance(seq, yaml.SequenceNode) or not seq.value:
        raise ProtocolError("flags must be a list of red flags (- id: ...)", path, _line(seq))
    flags = []
    for node in seq.value:
        f = _mapping(node, "a flag", _FLAG_KEYS, path)
        for key in ("id", "name", "action", "phrasings"):
            if key not in f:
                raise ProtocolError(f"a flag: missing {key!r}", path, _line(node))
        flag_id = _text(f["id"], "id", path)
        if not _ID.fullmatch(flag_id):
            raise ProtocolError(f"id {flag_id!r}: write lower-case words joined by -", path,
                                _line(f["id"]))
        if flag_id in taken:
            raise ProtocolError(f"id {flag_id!r} is already used at {taken[flag_id]}", path,
                                _line(f["id"]))
        where = f"{path.name}:{_line(node)}"
        taken[flag_id] = where
        action = _text(f["action"], f"{flag_id}: action", path)
        if action not in ACTIONS:
            raise ProtocolError(f"{flag_id}: action {action!r}: choose one of {', '.join(ACTIONS)}",
                                path, _line(f["action"]))
        phrasings = _phrasings(f["phrasings"], f"{flag_id}: phrasings", path)
        excuses = _phrasings(f["not"], f"{flag_id}: not", path, both=False) if "not" in f else {}
        override = {}
        if "message" in f:
            override = {lang: _text(v, f"{flag_id}: message {lang}", path) for lang, v in
                        _mapping(f["message"], f"{flag_id}: message", set(LANGUAGES), path).items()}
        messages = {}
        for language in LANGUAGES:
            text = (override.get(language) or own.get(action, {}).get(language)
                    or (shared or own).get(action, {}).get(language))
            if not text:
                raise ProtocolError(f"{flag_id}: no {language} message for {action}", path,
                                    _line(node))
            messages[language] = text
        flags.append(Flag(flag_id, _text(f["name"], f"{flag_id}: name", path), action,
                          path.stem, where, phrasings, excuses, messages))
    return title, own, tuple(flags)


def load_protocols(directory: Path) -> Protocols:
    """Every *.yaml in `directory`; general.yaml is required and applies to all.

    Any mistake is a ProtocolError with the file and line: the agent does not start
    with half its red flags.
    """
    directory = Path(directory)
    general = directory / "general.yaml"
    if not general.is_file():
        raise ProtocolError("general.yaml is missing (the red flags every specialty applies)",
                            directory)
    taken: dict[str, str] = {}
    title, shared, general_flags = _load_file(general, None, taken)
    specialties = {"general": Specialty("general", title, general_flags)}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "general.yaml":
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", path.stem):
            raise ProtocolError("a specialty's file name is its name: lower-case letters", path)
        title, _, flags = _load_file(path, shared, dict(taken))
        specialties[path.stem] = Specialty(path.stem, title, general_flags + flags)
    return Protocols(specialties)
