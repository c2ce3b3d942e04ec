"""The urgent-symptom screen: red flags escalate, routine calls go through, rules load strictly.

The test sets in redflags/ are callers' words written apart from the protocol files
(paraphrases, not copies of the phrasings).  Recall on the red-flag set must be
100%; false escalation on the routine set at most 5%.
"""

import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asterisk_agent.dialog.screen import (
    NOT_URGENT, Finding, ProtocolError, UnknownSpecialty, load_protocols,
)

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ROOT / "etc" / "protocols"
SETS = Path(__file__).parent / "redflags"
SPECIALTIES = ("general", "dermatology", "dental", "ophthalmology", "surgery")


@pytest.fixture(scope="module")
def protocols():
    return load_protocols(PROTOCOLS)


def _lines(name: str) -> list[tuple[str, str, str]]:
    """(specialty, language, utterance) of each "[specialty language] words" line."""
    out = []
    for n, raw in enumerate((SETS / name).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+) (en|es)\] (.+)", raw)
        assert m, f"{name}:{n}: write [specialty language] words"
        assert m.group(1) in SPECIALTIES, f"{name}:{n}: unknown specialty {m.group(1)}"
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


# --- the test sets ----------------------------------------------------------------
def test_sets_are_sizable_and_cover_every_specialty_in_both_languages():
    urgent, routine = _lines("urgent.txt"), _lines("routine.txt")
    assert len(urgent) >= 120 and len(routine) >= 150
    for lines in (urgent, routine):
        assert {(s, lang) for s, lang, _ in lines} == \
            {(s, lang) for s in SPECIALTIES for lang in ("en", "es")}


def test_red_flag_recall_is_total(protocols):
    lines = _lines("urgent.txt")
    missed = [(s, lang, text) for s, lang, text in lines
              if not protocols.screen(text, s, lang).urgent]
    recall = 1 - len(missed) / len(lines)
    print(f"red-flag recall {recall:.1%} on {len(lines)} utterances")
    assert not missed, f"recall {recall:.1%}; missed: {missed}"


def test_general_red_flags_escalate_in_every_specialty(protocols):
    general = [(lang, text) for s, lang, text in _lines("urgent.txt") if s == "general"]
    for specialty in SPECIALTIES:
        missed = [text for lang, text in general
                  if not protocols.screen(text, specialty, lang).urgent]
        assert not missed, f"{specialty} does not apply the general red flags: {missed}"


def test_routine_false_escalation_at_most_5_percent(protocols):
    lines = _lines("routine.txt")
    escalated = [(s, text, protocols.screen(text, s, lang)) for s, lang, text in lines]
    escalated = [(s, text, f.flag, f.matched) for s, text, f in escalated if f.urgent]
    rate = len(escalated) / len(lines)
    print(f"false escalation {rate:.1%} on {len(lines)} routine utterances")
    assert rate <= 0.05, f"false escalation {rate:.1%}: {escalated}"


def test_a_screen_takes_well_under_5_ms(protocols):
    texts = [text for name in ("urgent.txt", "routine.txt") for _, _, text in _lines(name)]
    times = []
    for text in texts:
        start = time.perf_counter()
        protocols.screen(text, "surgery")  # the most flags: general + surgery
        times.append(time.perf_counter() - start)
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    print(f"screen: median {median:.2f} ms, worst {worst:.2f} ms per utterance")
    assert median < 2.0 and worst < 5.0 * 4  # a shared 2-core machine may stall once


# --- negation, time and doubt ----------------------------------------------------
@pytest.mark.parametrize("text", [
    "no chest pain",
    "I don't have any trouble breathing",
    "chest pain last year, fine now",
    "my father had a stroke years ago",
    "I do not have chest pain or trouble breathing",
    "no fever, chest pain or trouble breathing",
    "No tengo dolor de pecho",
    "Mi papá tuvo un derrame hace años",
    "dolor de pecho el año pasado, ya estoy bien",
])
def test_denied_or_long_past_is_not_urgent(protocols, text):
    assert protocols.screen(text) == NOT_URGENT


@pytest.mark.parametrize("text, flag", [
    ("not sure if it's chest pain", "chest-pain"),
    ("I don't think it's chest pain, but it squeezes", "chest-pain"),
    ("I don't know if it's a stroke", "stroke"),
    ("no... actually my chest hurts", "chest-pain"),
    ("No, I have chest pain", "chest-pain"),
    ("no I have chest pain", "chest-pain"),
    ("I had chest pain this morning", "chest-pain"),
    ("my father is having a stroke", "stroke"),
    ("I had a stroke last year and now my face is drooping", "stroke"),
    ("I don't have a fever, but I have chest pain", "chest-pain"),
    ("I am not having chest pain. Just kidding, I am having chest pain.", "chest-pain"),
    # a negation far back, behind other words, does not reach the symptom
    ("I don't know what to do, my wife says she has chest pain", "chest-pain"),
    ("No sé si es dolor de pecho", "chest-pain"),
])
def test_doubt_escalates(protocols, text, flag):
    assert protocols.screen(text).flag == flag


@pytest.mark.parametrize("text", [
    "my chest x-ray results", "a pain medication refill", "that was a stroke of luck",
    "I need a refill of my seizure medication", "my baby tooth fell out",
])
def test_routine_words_that_look_like_red_flags(protocols, text):
    assert not protocols.screen(text, "dental").urgent


def test_time_in_another_clause_does_not_excuse_a_new_symptom(protocols):
    f = protocols.screen("I had surgery two weeks ago and now my calf is swollen", "surgery")
    assert f.flag == "calf-pain-swelling" and f.action == "urgent"


# --- what a finding says ------------------------------------------------------------
def test_finding_names_the_flag_the_words_and_the_message(protocols):
    f = protocols.screen("I think he's having a STROKE, his face is drooping!", language="en")
    assert isinstance(f, Finding)
    assert (f.urgent, f.flag, f.action) == (True, "stroke", "emergency")
    assert f.matched == "stroke"
    assert "911" in f.message and f.language == "en"


def test_message_is_in_the_call_language(protocols):
    assert "911" in protocols.screen("chest pain", language="es").message
    assert "cuelgue" in protocols.screen("chest pain", language="es").message
    # without a call language, the language the caller used
    f = protocols.screen("me duele el pecho")
    assert f.language == "es" and "cuelgue" in f.message


def test_suicide_has_its_own_message_with_988(protocols):
    for language in ("en", "es"):
        f = protocols.screen("I want to kill myself", language=language)
        assert f.flag == "suicide" and "988" in f.message


def test_specialty_message_and_flags(protocols):
    f = protocols.screen("my son knocked out his front tooth", "dental", "en")
    assert (f.flag, f.action) == ("tooth-knocked-out", "urgent")
    assert "dentist" in f.message
    # a specialty's own red flags apply to it alone
    assert not protocols.screen("my son knocked out his front tooth", "general").urgent


def test_emergency_outranks_urgent(protocols):
    f = protocols.screen("I have a fever after my surgery and now I can't breathe", "surgery")
    assert (f.flag, f.action) == ("breathing", "emergency")


def test_unknown_specialty_lists_the_known_ones(protocols):
    with pytest.raises(UnknownSpecialty) as err:
        protocols.screen("chest pain", "cardiology")
    assert "cardiology" in str(err.value)
    for name in SPECIALTIES:
        assert name in str(err.value)


@pytest.mark.parametrize("text", [
    "", "   ", "...", "\x00\x01\x02", "?" * 10_000, "chest " * 2_000, "ñ̃̃̃̃̃", "\ud800 chest pain",
])
def test_odd_text_never_crashes(protocols, text):
    assert isinstance(protocols.screen(text), Finding)


def test_a_transcript_must_be_text(protocols):
    with pytest.raises(TypeError):
        protocols.screen(b"chest pain")


# --- protocol files ---------------------------------------------------------------
def test_every_specialty_of_the_issue_has_a_file(protocols):
    assert set(SPECIALTIES) <= set(protocols.names)
    general_ids = {f.id for f in protocols.specialties["general"].flags}
    for name in SPECIALTIES:
        ids = [f.id for f in protocols.specialties[name].flags]
        assert general_ids <= set(ids) and len(ids) == len(set(ids))
        for flag in protocols.specialties[name].flags:
            assert set(flag.messages) == {"en", "es"}
            assert set(flag.phrasings) == {"en", "es"}, f"{flag.id}: phrasings in both languages"


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(PROTOCOLS, tmp_path / "protocols")
    return tmp_path / "protocols"


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first `old`; the line number where it was."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


@pytest.mark.parametrize("file, old, new, message", [
    ("dental.yaml", "    action: urgent\n", "    action: soon\n", "choose one of emergency, urgent"),
    ("dental.yaml", "    action: urgent\n", "    acton: urgent\n", "unknown key 'acton'"),
    ("general.yaml", "  - id: breathing\n", "  - id: chest-pain\n", "already used"),
    ("surgery.yaml", "  - id: wound-opening\n", "  - id: Wound Opening\n", "lower-case"),
    ("general.yaml", "        - suicidal\n", "        - (suicidal\n", "without its )"),
    ("general.yaml", "        - suicidal\n", "        - ''\n", "non-empty"),
])
def test_schema_errors_name_file_and_line(copy, file, old, new, message):
    line = _edit(copy / file, old, new)
    with pytest.raises(ProtocolError) as err:
        load_protocols(copy)
    assert f"{file}:{line}:" in str(err.value) and message in str(err.value)


def test_yaml_syntax_error_names_file_and_line(copy):
    line = _edit(copy / "ophthalmology.yaml", "    action: emergency\n", "    action: [emergency\n")
    with pytest.raises(ProtocolError) as err:
        load_protocols(copy)
    assert "ophthalmology.yaml:" in str(err.value) and "not valid YAML" in str(err.value)
    assert err.value.line is not None and err.value.line >= line


def test_duplicate_key_is_an_error(copy):
    line = _edit(copy / "dental.yaml", "name: Dental practice\n",
                 "name: Dental practice\nname: Dentistry\n")
    with pytest.raises(ProtocolError, match=rf"dental.yaml:{line + 1}: .*twice"):
        load_protocols(copy)


def test_general_file_and_its_messages_are_required(copy, tmp_path):
    _edit(copy / "general.yaml", "  urgent:\n    en: >-\n", "  urgent:\n    fr: >-\n")
    with pytest.raises(ProtocolError, match="unknown key 'fr'"):
        load_protocols(copy)
    (copy / "general.yaml").unlink()
    with pytest.raises(ProtocolError, match="general.yaml is missing"):
        load_protocols(copy)


def test_too_many_alternatives_is_an_error(copy):
    words = " ".join("(a/b/c/d)" for _ in range(5))
    line = _edit(copy / "general.yaml", "        - suicidal\n", f"        - {words}\n")
    with pytest.raises(ProtocolError, match=rf"general.yaml:{line}: .*variants"):
        load_protocols(copy)


def test_a_routine_phrase_cannot_use_plus(copy):
    _edit(copy / "general.yaml", "        - breath test\n", "        - breath + test\n")
    with pytest.raises(ProtocolError, match="without \\+"):
        load_protocols(copy)


def test_a_specialty_without_messages_uses_the_general_ones(copy):
    text = (copy / "dental.yaml").read_text()
    start, end = text.index("messages:"), text.index("flags:")
    (copy / "dental.yaml").write_text(text[:start] + text[end:])
    f = load_protocols(copy).screen("my son knocked out his front tooth", "dental", "en")
    assert f.flag == "tooth-knocked-out" and "clinician on call" in f.message


def test_staff_can_add_a_phrasing(copy):
    _edit(copy / "general.yaml", "        - suicidal\n", "        - suicidal\n        - done with everything\n")
    assert load_protocols(copy).screen("I'm just done with everything").flag == "suicide"


# --- the command line -----------------------------------------------------------------
def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "asterisk_agent.dialog.screen_cli", *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_prints_one_json_object():
    run = _cli("My face is swollen and I have a fever", "--specialty", "dental")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert list(record)[:3] == ["urgent", "flag", "action"]
    assert (record["urgent"], record["flag"], record["action"]) == \
        (True, "dental-swelling-fever", "urgent")


def test_cli_reads_stdin_one_utterance_a_line():
    run = _cli("-", "--specialty", "surgery",
               stdin="When can I get my stitches out?\nMe duele el pecho\n\nmy incision opened up\n")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["urgent"], r["flag"]) for r in records] == \
        [(False, ""), (True, "chest-pain"), (False, ""), (True, "wound-opening")]
    assert records[1]["language"] == "es"


def test_cli_protocol_error_exits_78_with_file_and_line(copy):
    line = _edit(copy / "surgery.yaml", "    action: urgent\n", "    action: later\n")
    run = _cli("chest pain", "--protocols", str(copy))
    assert run.returncode == 78
    assert f"surgery.yaml:{line}:" in run.stderr and not run.stdout


def test_cli_unknown_specialty():
    run = _cli("chest pain", "--specialty", "cardiology")
    assert run.returncode != 0 and "known: dental, dermatology, general" in run.stderr
