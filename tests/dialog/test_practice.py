"""The practice file: read once, and a mistake names the file and line."""

import datetime as dt
from pathlib import Path

import pytest

from asterisk_agent.dialog import practice

ROOT = Path(__file__).resolve().parents[2]


def test_sample_practice_file():
    p = practice.load(ROOT / "etc" / "practice.conf")
    assert p.hours["monday"].opens == dt.time(8, 0)
    assert p.hours["sunday"] is None
    monday_noon = dt.datetime(2026, 11, 23, 12, 0, tzinfo=p.timezone)
    sunday_noon = dt.datetime(2026, 11, 22, 12, 0, tzinfo=p.timezone)
    assert p.is_open(monday_noon) and not p.is_open(sunday_noon)


def _text(**changes):
    text = (ROOT / "etc" / "practice.conf").read_text()
    for key, value in changes.items():
        lines = [f"{key} = {value}" if l.startswith(f"{key} =") else l for l in text.splitlines()]
        text = "\n".join(lines)
    return text


@pytest.mark.parametrize("key, value, message", [
    ("monday", "8am-5pm", "monday"),
    ("tuesday", "17:00-08:00", "closing after opening"),
    ("timezone", "Mars/Olympus", "not a known time zone"),
])
def test_errors_name_the_line(tmp_path, key, value, message):
    f = tmp_path / "practice.conf"
    f.write_text(_text(**{key: value}))
    with pytest.raises(practice.PracticeError) as err:
        practice.load(f)
    line = next(n for n, l in enumerate(f.read_text().splitlines(), 1) if l.startswith(f"{key} ="))
    assert f"{f}:{line}:" in str(err.value) and message in str(err.value)


def test_missing_key(tmp_path):
    f = tmp_path / "practice.conf"
    f.write_text(_text().replace("address =", "; address ="))
    with pytest.raises(practice.PracticeError, match="address is missing"):
        practice.load(f)


def test_parking_text_for_spanish_calls_is_optional():
    # the sample file has a Spanish text: take it out for the plain case
    text = "\n".join(line for line in (ROOT / "etc" / "practice.conf").read_text().splitlines()
                     if not line.startswith("text_es"))
    plain = practice.parse(text)
    assert plain.parking_in("es") == plain.parking_in("en") == plain.parking
    translated = practice.parse(text.replace(
        "[parking]\n", "[parking]\ntext_es = Hay estacionamiento gratis detrás del edificio.\n"))
    assert translated.parking_in("es") == "Hay estacionamiento gratis detrás del edificio."
    assert translated.parking_in("en") == plain.parking


def test_pre_op_instructions_are_optional_and_translated():
    sample = practice.parse((ROOT / "etc" / "practice.conf").read_text())
    assert sample.pre_op_in("en").startswith("Please do not eat or drink anything after midnight")
    assert sample.pre_op_in("es").startswith("Por favor, no coma ni beba")
    text = (ROOT / "etc" / "practice.conf").read_text().split("[pre-op]")[0]
    assert practice.parse(text).pre_op_in("en") == practice.parse(text).pre_op_in("es") == ""
