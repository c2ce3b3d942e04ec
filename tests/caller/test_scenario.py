"""Scenario files: what is valid, what each error says, and how transcripts are matched."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from asterisk_agent.caller.scenario import (
    DEFAULT_TIMEOUT, ScenarioError, clean, digits_to_words, load_scenario, matches,
    number_words, parse_scenario, transcript_forms, voiced_segments,
    words_to_digits)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_a_full_scenario_parses():
    sc = parse_scenario({
        "name": "hours", "dial": "100", "timeout": 12, "language": "en", "voice": "espeak-ng",
        "steps": [
            {"expect": "press (1|one)", "within": 5},
            {"dtmf": "1#"},
            {"say": "What time do you open?", "within": 2.5, "reply": True},
            {"say": "Sorry", "barge_in": True, "reply": False},
            {"wait": 1},
            {"expect_hangup": True, "timeout": 3},
            {"hangup": True},
        ]})
    assert (sc.name, sc.dial, sc.timeout, sc.language, sc.voice) == ("hours", "100", 12.0, "en", "espeak-ng")
    actions = [s.action for s in sc.steps]
    assert actions == ["expect", "dtmf", "say", "say", "wait", "expect_hangup", "hangup"]
    assert [s.number for s in sc.steps] == list(range(1, 8))
    assert sc.steps[0].pattern.search("PRESS ONE") and sc.steps[0].within == 5.0
    assert sc.steps[2].within == 2.5 and sc.steps[3].barge_in and not sc.steps[3].reply
    assert sc.steps[4].value == 1.0 and sc.steps[5].timeout == 3.0
    # the step is reported back as written
    assert sc.steps[1].raw == {"dtmf": "1#"}


def test_defaults():
    sc = parse_scenario({"dial": "200", "steps": [{"say": "hi"}]}, default_name="x")
    assert (sc.name, sc.timeout, sc.language, sc.voice) == ("x", DEFAULT_TIMEOUT, None, "hibari")
    assert sc.steps[0].reply and not sc.steps[0].barge_in


@pytest.mark.parametrize("data, message", [
    ([], "a scenario is a mapping"),
    ({"steps": [{"say": "hi"}]}, "missing 'dial'"),
    ({"dial": "100"}, "missing 'steps'"),
    ({"dial": 100, "steps": [{"say": "hi"}]}, "dial must be a quoted string"),
    ({"dial": "1 00", "steps": [{"say": "hi"}]}, "not an extension"),
    ({"dial": "100", "steps": []}, "steps must be a non-empty list"),
    ({"dial": "100", "steps": {"say": "hi"}}, "steps must be a non-empty list"),
    ({"dial": "100", "steps": [{"say": "hi"}], "timout": 5}, "unknown key 'timout'"),
    ({"dial": "100", "steps": [{"say": "hi"}], "timeout": 0}, "timeout must be above 0"),
    ({"dial": "100", "steps": [{"say": "hi"}], "timeout": "5"}, "timeout must be a number"),
    ({"dial": "100", "steps": [{"say": "hi"}], "voice": "piper"}, "voice must be one of"),
    ({"dial": "100", "steps": [{"say": "hi"}], "language": "English"}, "language must be"),
    ({"dial": "100", "steps": [{"say": "hi"}], "name": ""}, "name must be"),
])
def test_scenario_errors(data, message):
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(data, source="calls.yaml")


@pytest.mark.parametrize("step, message", [
    ("say hi", "step 2: a step is a mapping"),
    ({}, "step 2: a step has exactly one action"),
    ({"say": "hi", "dtmf": "1"}, "step 2: a step has exactly one action of expect, say, dtmf, wait, "
                                 "cough, expect_hangup, hangup; found several (say, dtmf)"),
    ({"sya": "hi"}, "step 2: a step has exactly one action"),
    ({"say": "hi", "timeuot": 3}, "step 2: unknown key 'timeuot'"),
    ({"dtmf": "1", "within": 3}, "step 2: 'within' does not go with dtmf"),
    ({"expect": "x", "reply": False}, "step 2: 'reply' does not go with expect"),
    ({"expect": "(unclosed"}, "step 2: expect '(unclosed' is not a valid regex"),
    ({"expect": ""}, "step 2: expect takes a regex as a string"),
    ({"expect": 8}, "step 2: expect takes a regex as a string"),
    ({"say": ""}, "step 2: say takes the words to speak"),
    ({"say": ["a"]}, "step 2: say takes the words to speak"),
    ({"dtmf": 1}, "step 2: dtmf takes keys as a quoted string"),
    ({"dtmf": "12x"}, "step 2: dtmf '12x': keys are 0-9, *, #, A-D"),
    ({"dtmf": ""}, "step 2: dtmf '': keys are"),
    ({"wait": "2"}, "step 2: wait must be a number of seconds"),
    ({"wait": -1}, "step 2: wait must be at least 0"),
    ({"wait": True}, "step 2: wait must be a number"),
    ({"cough": 0}, "step 2: cough must be above 0"),
    ({"cough": 0.8}, "step 2: cough 0.8: at most 0.5 s"),
    ({"cough": 0.1, "reply": False}, "step 2: 'reply' does not go with cough"),
    ({"expect_hangup": False}, "step 2: write expect_hangup: true"),
    ({"hangup": "yes"}, "step 2: write hangup: true"),
    ({"say": "hi", "within": 0}, "step 2: within must be above 0"),
    ({"say": "hi", "reply": "no"}, "step 2: reply must be true or false"),
])
def test_step_errors_name_the_step(step, message):
    with pytest.raises(ScenarioError, match=re.escape(f"calls.yaml: {message}")):
        parse_scenario({"dial": "100", "steps": [{"wait": 1}, step]}, source="calls.yaml")


def test_files_are_read_strictly(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text('dial: "100"\nsteps:\n  - say: hi\n    say: again\n')
    with pytest.raises(ScenarioError, match=r"dup.yaml: line 4: duplicate key 'say'"):
        load_scenario(path)
    path.write_text('dial: "100"\nsteps: [\n')
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(path)
    path.write_text("dial: 0100\nsteps:\n  - say: hi\n")
    with pytest.raises(ScenarioError, match=r"dial must be a quoted string.*got 64"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    path.write_text('dial: "100"\nsteps:\n  - dtmf: "1"\n')
    assert load_scenario(path).name == "dup"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenarios_are_valid(path):
    sc = load_scenario(path)
    assert sc.steps and sc.name == path.stem


def test_example_scenarios_exist():
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert {"ivr-hours", "operator"} <= names


@pytest.mark.parametrize("text, pattern", [
    ("We open at eight a.m. on Monday.", "8|eight"),
    ("We open at 8 a.m. on Monday.", "8|eight"),
    ("We open at 8 a.m.", r"\beight\b"),
    ("We open at eight AM.", r"8 ?am"),
    ("Press 1 for the assistant.", "press (1|one)"),
    ("Press one for the assistant.", r"press 1\b"),
    ("We close at 5:30.", "five thirty"),
    ("We close at five thirty.", "5 30"),
    ("Twenty-one days.", r"\b21\b"),
    ("You have reached the front-desk.", "front desk"),
    ("How can I help you today?", "how can i help"),
])
def test_numbers_match_as_words_or_digits(text, pattern):
    assert matches(re.compile(pattern, re.I), text)


@pytest.mark.parametrize("text, pattern", [
    ("We open at nine.", "8|eight"),
    ("Press 10 for more.", r"press (1|one)\b"),
    ("weighty matters", r"\beight\b"),
])
def test_near_misses_do_not_match(text, pattern):
    assert not matches(re.compile(pattern, re.I), text)


def test_normal_forms():
    assert clean("Hello, World!  It's 8:30 a.m.") == "hello world it's 8:30 am"
    assert words_to_digits("twenty one and eight and ninety") == "21 and 8 and 90"
    assert digits_to_words("at 8:30 or 1200") == "at eight thirty or one two zero zero"
    assert [number_words(n) for n in (0, 13, 40, 42, 105, 999)] == [
        "zero", "thirteen", "forty", "forty two", "one hundred five",
        "nine hundred ninety nine"]
    assert transcript_forms("Eight.")[0] == "Eight."


def test_voiced_segments_bridge_short_gaps():
    loud = np.full(1600, 3000, np.int16)      # 200 ms
    quiet = np.zeros(1600, np.int16)          # 200 ms: a pause inside a sentence
    long_quiet = np.zeros(8000, np.int16)     # 1 s: between sentences
    pcm = np.concatenate([quiet, loud, quiet, loud, long_quiet, loud])
    segs = voiced_segments(pcm)
    assert segs == [(1600, 6400), (14400, 16000)]
    assert voiced_segments(np.zeros(100, np.int16)) == []


def test_main_call_reports_an_invalid_file_and_fails(tmp_path, capsys):
    from asterisk_agent import config
    from asterisk_agent.caller.scenario import main_call

    bad = tmp_path / "bad.yaml"
    bad.write_text('dial: "100"\nsteps:\n  - dtmf: 1\n')
    assert main_call([str(bad)], config.Config(), as_json=True) == 1
    import json
    line = json.loads(capsys.readouterr().out.strip())
    assert line["passed"] is False and line["name"] == "bad"
    assert "step 1: dtmf takes keys as a quoted string" in line["error"]
    assert main_call([str(bad)], config.Config(), as_json=False) == 1
    assert "INVALID" in capsys.readouterr().out
