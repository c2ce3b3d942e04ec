"""Campaign files: every good row kept, every bad row named by its line."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from asterisk_agent import config
from asterisk_agent.outbound.campaign import (
    CampaignError, DialRules, Rules, load_campaign, normalize_number, parse_csv, parse_window,
    parse_yaml, read_do_not_call)

NY = zoneinfo.ZoneInfo("America/New_York")


def rules(**kw) -> Rules:
    base = dict(dial=DialRules(("_NXXNXXXXXX", "_1NXXNXXXXXX", "_2XX")),
                calling_hours=parse_window("09:00-20:00"), timezone=NY)
    base.update(kw)
    return Rules(**base)


def test_a_csv_campaign_reads_every_column():
    c = parse_csv("patient,number,type,window,timezone,date\n"
                  "MRN1001,(201) 555-0134,post-op,10:00-18:00,America/Chicago,2026-11-24\n"
                  "MRN1002,201,pre-op,,,\n", rules())
    assert not c.errors
    first, second = c.calls
    assert (first.line, first.patient, first.number, first.type) == (2, "MRN1001", "2015550134", "post-op")
    assert str(first.window) == "10:00-18:00" and first.timezone.key == "America/Chicago"
    assert first.date == dt.date(2026, 11, 24)
    # blanks take the practice's defaults
    assert str(second.window) == "09:00-20:00" and second.timezone is NY and second.date is None


def test_bad_csv_rows_are_named_by_line_and_the_good_rows_still_run():
    text = ("patient,number,type\n"
            "MRN1001,2015550134,post-op\n"        # 2 good
            ",2015550135,post-op\n"               # 3 no patient
            "MRN1003,9115550136,post-op\n"        # 4 N: 9 is fine, 911... is 10 digits: good
            "MRN1004,911,results\n"               # 5 outside the patterns
            "MRN1005,2015550137,colonoscopy\n"    # 6 unknown type
            "MRN1006,call me,pre-op\n"            # 7 not a number
            "\n"                                  # blank: skipped
            "MRN1001,2015550134,post-op\n"        # 9 the same patient and type again
            "MRN1007,2015550138,pre op,extra\n"   # 10 a value too many
            "MRN1008,1-201-555-0139,Pre_Op\n")    # 11 good: spelt loosely
    c = parse_csv(text, rules())
    assert [(e.line, e.message.split()[0]) for e in c.errors] == [
        (3, "no"), (5, "number"), (6, "type"), (7, "number"), (9, "MRN1001"), (10, "1")]
    assert "outside the allowed dial patterns" in c.errors[1].message
    assert "already on line 2" in c.errors[4].message
    assert [(k.line, k.type) for k in c.calls] == [(2, "post-op"), (4, "post-op"), (11, "pre-op")]


def test_a_csv_line_number_counts_quoted_line_breaks():
    c = parse_csv('patient,number,type\nMRN1001,"201\n555 0134",post-op\nMRN1002,x,post-op\n', rules())
    assert [e.line for e in c.errors] == [4]


@pytest.mark.parametrize("header, problem", [
    ("patient,phone,type", r"unknown column\(s\) phone; no number column"),
    ("number,type", "no patient column"),
    ("", "empty"),
])
def test_a_csv_header_that_cannot_work_stops_the_campaign(header, problem):
    with pytest.raises(CampaignError, match=problem):
        parse_csv(header + ("\nMRN1,2015550134,post-op\n" if header else ""), rules())


def test_a_yaml_campaign_has_defaults_and_lines():
    text = """\
name: post-op check-ins
type: post-op
window: "10:00-18:00"
calls:
  - {patient: MRN1001, number: 2015550134, timezone: America/Chicago}
  - patient: MRN1002
    number: "201 555 0178"
    type: results
    window: "19:00-21:00"
  - {patient: MRN1003, number: 0201555017}
  - {patient: MRN1004, numbr: 2015550179}
  - just a line
"""
    c = parse_yaml(text, rules())
    assert c.name == "post-op check-ins"
    assert [(k.line, k.type, str(k.window)) for k in c.calls] == [
        (5, "post-op", "10:00-18:00"), (6, "results", "19:00-20:00")]
    # an unquoted number with a leading 0 is read as written, not as an octal integer
    assert [(e.line, e.message) for e in c.errors][:2] == [
        (10, "number 0201555017 is outside the allowed dial patterns "
             "(_NXXNXXXXXX, _1NXXNXXXXXX, _2XX)"),
        (11, "unknown field(s) numbr")]
    assert "row 5 of calls is not a mapping" in c.errors[2].message


def test_a_window_outside_the_calling_hours_is_refused():
    c = parse_csv("patient,number,type,window\nMRN1,2015550134,post-op,21:00-22:00\n", rules())
    assert c.errors[0].message == "window 21:00-22:00 is outside the calling hours 09:00-20:00"


@pytest.mark.parametrize("value, problem", [
    ("9-17", "HH:MM-HH:MM"), ("17:00-09:00", "after the start"), ("25:00-26:00", "not a time")])
def test_bad_windows_say_how_to_write_one(value, problem):
    with pytest.raises(ValueError, match=problem):
        parse_window(value)


def test_a_number_on_the_do_not_call_list_is_kept_out_with_the_reason(tmp_path):
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("# asked not to be called\n(201) 555-0134\n\n")
    c = parse_csv("patient,number,type\nMRN1,2015550134,post-op\nMRN2,2015550135,post-op\n",
                  rules(do_not_call=read_do_not_call(dnc)))
    assert [k.patient for k in c.calls] == ["MRN2"] and not c.errors
    assert [(k.patient, why) for k, why in c.kept_out] == [("MRN1", "on the do-not-call list")]
    dnc.write_text("2015550134\nnot a number\n")
    with pytest.raises(CampaignError, match="line 2"):
        read_do_not_call(dnc)


@pytest.mark.parametrize("pattern, yes, no", [
    ("_NXXNXXXXXX", ["2015550134"], ["1015550134", "201555013", "20155501345"]),
    ("_1[2-9]XX.", ["1234567"], ["1134567", "123"]),
    ("_9!", ["9", "91"], ["8"]),
    ("201", ["201"], ["2011"]),
])
def test_dial_patterns_read_as_asterisk_reads_them(pattern, yes, no):
    r = DialRules([pattern])
    assert all(r.allows(n) for n in yes) and not any(r.allows(n) for n in no)


@pytest.mark.parametrize("pattern", ["_", "_2XY", "_[a-c]X", "20a"])
def test_a_pattern_asterisk_would_not_read_is_refused(pattern):
    with pytest.raises(ValueError, match="dial pattern"):
        DialRules([pattern])


def test_numbers_lose_their_punctuation_and_nothing_else():
    assert normalize_number(" +1 (201) 555-0134 ") == "+12015550134"
    with pytest.raises(ValueError):
        normalize_number("201-555-O134")


def test_files_are_read_by_their_suffix(tmp_path):
    (tmp_path / "c.csv").write_text("\ufeffpatient,number,type\nMRN1,2015550134,results\n")
    assert load_campaign(tmp_path / "c.csv", rules()).calls[0].type == "results"
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(CampaignError, match=".csv or .yaml"):
        load_campaign(tmp_path / "c.txt", rules())
    with pytest.raises(CampaignError, match="cannot read"):
        load_campaign(tmp_path / "missing.yaml", rules())
    (tmp_path / "bad.yaml").write_text("calls: [")
    with pytest.raises(CampaignError, match="not valid YAML"):
        load_campaign(tmp_path / "bad.yaml", rules())


@pytest.mark.parametrize("line, problem", [
    ("calling_hours = 9-5", "HH:MM-HH:MM"),
    ("allowed_numbers = _2XY", "dial pattern"),
    ("calling_days = mon, funday", "funday"),
    ("attempts = 0", "at least 1"),
])
def test_the_outbound_settings_are_checked_at_load(line, problem):
    with pytest.raises(config.ConfigError, match=problem):
        config.parse(f"[outbound]\n{line}\n")
