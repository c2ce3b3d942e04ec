"""What Whisper hands back, made fit to act on: the same for every engine.

Whisper sometimes loops, repeating the utterance until its token limit
(seconds of decoding, on a reduced audio context in whisper.cpp and on a
noisy or cut-off turn in either engine), and it writes annotations for what
is not speech.  Each engine bounds its decoding with ``max_tokens`` and
passes its text through ``clean``.
"""

from __future__ import annotations

import math
import re

from .audio import RATE_16K

# People say at most ~5 tokens a second (Spanish a little more than English),
# so decoding stops well past that, and what repeats is dropped (drop_repeats).
TOKENS_PER_SECOND = 10
TOKENS_SLACK = 20

# Whisper marks non-speech as "[BLANK_AUDIO]" or "(water running)"; a caller
# never speaks brackets, so such spans are dropped from the transcript.
# (Suppressing those tokens instead makes tiny.en hallucinate "you".)
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)")


def clean(text: str) -> str:
    """A transcript without annotations and without a decoding loop."""
    return drop_repeats(_ANNOTATION.sub(" ", text))


def max_tokens(samples: int) -> int:
    """A bound on the tokens an utterance of this many 16 kHz samples can hold."""
    return math.ceil(samples / RATE_16K * TOKENS_PER_SECOND) + TOKENS_SLACK


def _loop(words: list[str]) -> tuple[int, int] | None:
    """The word range [start, end) that repeats the phrase just before it, if any."""
    for n in range(len(words) // 2, 0, -1):
        for i in range(len(words) - 2 * n + 1):
            repeats = 1
            while words[i + repeats * n:i + (repeats + 1) * n] == words[i:i + n]:
                repeats += 1
            if repeats >= {1: 4, 2: 3}.get(n, 2):
                end = i + repeats * n
                # a loop cut off by the token bound ends in part of the phrase
                if _cut_copy(words[end:], words[i:i + n]):
                    end = len(words)
                return i + n, end
    # a phrase of two words or more, then a copy of it cut off mid-word at the
    # very end ("Anna Rivera. Anna Riv"): the loop the token bound stopped
    for n in range(len(words) // 2, 1, -1):
        for i in range(max(0, len(words) - 2 * n), len(words) - n - 1):
            tail = words[i + n:]
            if _cut_copy(tail, words[i:i + n]) and tail[-1] != words[i + len(tail) - 1]:
                return i + n, len(words)
    return None


def _cut_copy(tail: list[str], phrase: list[str]) -> bool:
    """Whether tail is the start of phrase, its last word possibly cut short."""
    if not tail or len(tail) > len(phrase):
        return not tail
    return (tail[:-1] == phrase[:len(tail) - 1]
            and phrase[len(tail) - 1].startswith(tail[-1]))


def drop_repeats(text: str) -> str:
    """Collapse a phrase repeated back to back, the mark of a decoding loop.

    A phrase of three words or more said twice in a row, or anything said four
    times in a row, is kept once, with a cut-off copy at the very end.  Words
    are compared without case and punctuation ("blood-pressure" repeats
    "blood pressure").  "No, no." stays as it is, but a whole sentence of two
    words or more said twice ("Anna Rivera. Anna Rivera.") is kept once.
    """
    while True:
        spans = list(re.finditer(r"[\w']+", text))
        found = _loop([m.group().lower() for m in spans])
        if found is None:
            return " ".join(_drop_repeated_sentences(text).split())
        start, end = found
        cut_to = spans[end].start() if end < len(spans) else len(text)
        text = text[:spans[start].start()] + text[cut_to:]


def _drop_repeated_sentences(text: str) -> str:
    sentences = re.findall(r"[^.?!]+[.?!]*", text)
    kept: list[str] = []
    for sentence in sentences:
        words = re.findall(r"[\w']+", sentence.lower())
        if kept and len(words) >= 2 and words == re.findall(r"[\w']+", kept[-1].lower()):
            continue
        kept.append(sentence)
    return "".join(kept)

