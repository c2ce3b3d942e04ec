"""Understanding the flows' answers as speech models write them: days, times, birth dates, drugs."""

import datetime as dt
import zoneinfo

import pytest

from asterisk_agent.dialog.slots import (choose, same_family, match_drug, parse_birth_date, parse_kind,
                                         parse_name, parse_provider, parse_time, parse_window,
                                         yes_no)

TZ = zoneinfo.ZoneInfo("America/New_York")
NOW = dt.datetime(2030, 1, 7, 10, 0, tzinfo=TZ)  # a Monday morning
TODAY = NOW.date()


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2030, 1, day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize("text, language, start, end", [
    ("next Tuesday afternoon", "en", at(8, 12), at(8, 17)),
    ("Tuesday in the afternoon please", "en", at(8, 12), at(8, 17)),
    ("tomorrow morning", "en", at(8, 7), at(8, 12)),
    ("the day after tomorrow", "en", at(9, 0), at(9, 23, 59)),
    ("at 2 PM on Wednesday", "en", at(9, 13, 30), at(9, 15, 30)),
    ("Wednesday at two", "en", at(9, 13, 30), at(9, 15, 30)),
    ("January 24th at nine thirty", "en", at(24, 9), at(24, 11)),
    ("the 24th", "en", at(24, 0), at(24, 23, 59)),
    ("Friday after 3", "en", at(11, 15), at(11, 23, 59)),
    ("next week", "en", at(14, 0), at(20, 23, 59)),
    ("as soon as possible", "en", NOW, at(21, 23, 59)),
    ("this afternoon", "en", at(7, 12), at(7, 17)),
    ("el próximo martes por la tarde", "es", at(8, 12), at(8, 17)),
    ("mañana por la mañana", "es", at(8, 7), at(8, 12)),
    ("el 24 de enero a las nueve y media", "es", at(24, 9), at(24, 11)),
    ("el miércoles a las dos de la tarde", "es", at(9, 13, 30), at(9, 15, 30)),
    ("lo antes posible", "es", NOW, at(21, 23, 59)),
    ("la semana que viene", "es", at(14, 0), at(20, 23, 59)),
])
def test_windows(text, language, start, end):
    window = parse_window(text, NOW, language)
    assert window is not None, text
    assert (window.start, window.end) == (start, end)


@pytest.mark.parametrize("text, language", [
    ("what time do you close", "en"), ("my name is Ana Rivera", "en"), ("yes", "en"),
    ("", "en"), ("me llamo Ana Rivera", "es"), ("yesterday at 9", "en"),
])
def test_no_window(text, language):
    window = parse_window(text, NOW, language)
    assert window is None or window.start >= NOW


def test_a_window_already_past_is_none_and_a_time_alone_moves_to_tomorrow():
    assert parse_window("this morning", NOW.replace(hour=13), "en") is None
    window = parse_window("at 9", NOW, "en")
    assert window.start.date() == TODAY + dt.timedelta(days=1) and window.at == dt.time(9, 0)


@pytest.mark.parametrize("text, language, expected", [
    ("at 2 PM", "en", dt.time(14)), ("nine thirty", "en", dt.time(9, 30)), ("at nine thirty", "en",
                                                                   dt.time(9, 30)),
    ("10:15 a.m.", "en", dt.time(10, 15)), ("around noon", "en", dt.time(12)),
    ("a las dos y media", "es", dt.time(14, 30)), ("a las 9 de la mañana", "es", dt.time(9)),
    ("I was born in 1980", "en", None),
])
def test_times(text, language, expected):
    assert parse_time(text, language) == expected


@pytest.mark.parametrize("text, language", [
    ("March 3rd 1980", "en"), ("march third nineteen eighty", "en"), ("3 3 1980", "en"),
    ("03031980", "en"), ("0 3 0 3 1 9 8 0", "en"), ("03/03/1980", "en"),
    ("the third of March, 1980", "en"), ("zero three zero three nineteen eighty", "en"),
    ("It's March 3, 1980.", "en"),
    ("tres de marzo de mil novecientos ochenta", "es"), ("3 de marzo de 1980", "es"),
    ("el tres del tres de 1980", "es"), ("03031980", "es"),
])
def test_birth_dates(text, language):
    assert parse_birth_date(text, language, TODAY) == dt.date(1980, 3, 3)


def test_day_first_in_spanish_month_first_in_english():
    assert parse_birth_date("12 3 1984", "en", TODAY) == dt.date(1984, 12, 3)
    assert parse_birth_date("12 3 1984", "es", TODAY) == dt.date(1984, 3, 12)


@pytest.mark.parametrize("text", ["February 30th 1980", "13 13 1980", "1234", "yesterday",
                                  "March 3rd 2090", ""])
def test_not_birth_dates(text):
    assert parse_birth_date(text, "en", TODAY) is None


def test_names():
    assert parse_name("My name is Ana Rivera") == [("ana", "rivera"), ("rivera", "ana")]
    assert parse_name("uh, it's Daniel Okafor, please")[0] == ("daniel", "okafor")
    assert ("ana", "rivera") in parse_name("Me llamo Ana Rivera García", "es")
    assert parse_name("what time do you close") == []
    assert parse_name("read me John Smith's appointments") == []
    assert parse_name("Ana") == []
    # a family name the speech model split in two
    assert ("maya", "lindquist") in parse_name("My name is Maya Lind Quist.")


@pytest.mark.parametrize("text, language, expected", [
    ("yes please", "en", True), ("yeah that's right", "en", True), ("no", "en", False),
    ("no, that's not right", "en", False), ("hmm", "en", None), ("sí, por favor", "es", True),
    ("claro", "es", True), ("no, gracias", "es", False), ("yes no", "en", None),
])
def test_yes_no(text, language, expected):
    assert yes_no(text, language) is expected


OFFERED = [dt.datetime(2030, 1, 8, 9, 30), dt.datetime(2030, 1, 8, 14, 0),
           dt.datetime(2030, 1, 9, 9, 0)]


@pytest.mark.parametrize("text, language, expected", [
    ("the second one", "en", 1), ("the first one", "en", 0), ("the last one", "en", 2),
    ("the 9:30", "en", 0), ("Wednesday", "en", 2), ("two PM", "en", 1), ("number 3", "en", 2),
    ("2", "en", 1), ("Tuesday", "en", None), ("hmm", "en", None), ("la segunda", "es", 1),
    ("el miércoles", "es", 2), ("la primera", "es", 0), ("the fifth one", "en", None),
])
def test_choices(text, language, expected):
    assert choose(text, OFFERED, language) == expected


MEDS = ["Lisinopril 10 mg tablet", "Atorvastatin 20 mg tablet", "Metformin 500 mg tablet"]


@pytest.mark.parametrize("text, expected", [
    ("listen opera", "Lisinopril 10 mg tablet"),
    ("I need more of my lice in oh pril", "Lisinopril 10 mg tablet"),
    ("met for men", "Metformin 500 mg tablet"),
    ("the met form in please", "Metformin 500 mg tablet"),
    ("at or vast a tin", "Atorvastatin 20 mg tablet"),
    ("Lipitor", None), ("my blood pressure pill", None), ("ibuprofen", None),
    ("I need a refill please", None),
])
def test_drugs(text, expected):
    found = match_drug(text, MEDS)
    assert (found.name if found else None) == expected


def test_kinds_and_providers():
    assert parse_kind("I'd like a check-up") == "checkup"
    assert parse_kind("a follow up on my results") == "followup"
    assert parse_kind("I have a fever") == "sick"
    assert parse_kind("quiero un chequeo", "es") == "checkup"
    providers = {"DRLEE": ("Morgan", "Lee"), "DRPATEL": ("Priya", "Patel")}
    assert parse_provider("with Dr. Patel please", providers) == "DRPATEL"
    assert parse_provider("with doctor pattel", providers) == "DRPATEL"
    assert parse_provider("anyone is fine", providers) is None


@pytest.mark.parametrize("heard, charted, same", [
    ("Akafir", "Okafor", True), ("Lindquist", "Lindqvist", True), ("Rivera", "Rivera", True),
    ("Smith", "Rivera", False), ("Rivers", "Rivera", False), ("Potter", "Patel", False),
])
def test_a_family_name_is_matched_by_its_consonants_once_the_birth_date_matched(
        heard, charted, same):
    assert same_family(heard, charted) is same


@pytest.mark.parametrize("day, part, language, expected", [
    ("thursday", "afternoon", "en", "thursday afternoon"),
    ("thursday", "afternoon", "es", "el jueves por la tarde"),
    ("tomorrow", None, "es", "mañana"),
    (None, "morning", "en", "morning"),
])
def test_window_words_say_a_chosen_day_as_a_caller_would(day, part, language, expected):
    from asterisk_agent.dialog.slots import window_words
    assert window_words(day, part, language) == expected


@pytest.mark.parametrize("language", ["en", "es"])
def test_window_words_parse_back_to_the_window(language):
    from asterisk_agent.dialog.slots import parse_window, window_words
    now = dt.datetime(2030, 1, 7, 10, 0)  # a Monday
    window = parse_window(window_words("thursday", "afternoon", language), now, language)
    assert window is not None
    assert window.start.date() == dt.date(2030, 1, 10) and window.start.hour >= 12, window
