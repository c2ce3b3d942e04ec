"""The outbound check-in dialog: identity first, then only what the call is for."""

from __future__ import annotations

import datetime as dt

import pytest

from asterisk_agent.dialog.checkin import CheckIn, pain_score
from asterisk_agent.dialog.first import Action, Reply
from asterisk_agent.ehr.messages import Patient

ANA = Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12), "2015550101")
TODAY = dt.date(2026, 11, 23)


def checkin(kind: str, language: str = "en", **kw) -> CheckIn:
    return CheckIn(kind, ANA, "Riverside Family Practice", "201 555 0100", language,
                   today=TODAY, **kw)


def confirmed(kind: str, **kw) -> tuple[CheckIn, Reply]:
    c = checkin(kind, **kw)
    assert "Am I speaking with Ana?" in c.opening().text
    assert "date of birth" in c.turn("Yes, speaking.").text
    return c, c.turn("March 12th, 1984")


def test_nothing_about_the_care_is_said_before_the_birth_date_matches():
    c = checkin("post-op")
    said = [c.opening().text, c.turn("yes").text, c.turn("January 1st 1990").text]
    assert not any(w in " ".join(said).lower() for w in ("pain", "procedure", "result"))
    assert not c.confirmed and c.state == "birth"
    reply = c.turn("March 12 1984")
    assert c.confirmed and "pain" in reply.text


def test_two_wrong_birth_dates_end_the_call_with_the_practice_number():
    c = checkin("results")
    c.turn("yes")
    assert c.turn("January 1 1990").action is Action.CONTINUE
    reply = c.turn("February 2 1991")
    assert reply.action is Action.HANGUP and "201 555 0100" in reply.text
    assert "result" not in reply.text.lower() and c.outcome == "not-confirmed"


def test_someone_else_on_the_line_gets_only_a_call_back_request():
    c = checkin("post-op")
    reply = c.turn("No, this is her husband.")
    assert reply.action is Action.HANGUP and "ask Ana to call" in reply.text
    assert c.outcome == "not-confirmed" and c.answers() == []


def test_an_unclear_answer_to_who_is_asked_once_more():
    c = checkin("results")
    assert "say yes or no" in c.turn("Hmm?").text
    assert c.turn("what?").action is Action.HANGUP


def test_the_birth_date_can_be_typed():
    c = checkin("results")
    c.turn("This is Ana.")
    assert c.typing_birth_date
    assert [c.typed(d) for d in "0312198"] == [None] * 7
    reply = c.typed("4")
    assert "patient portal" in reply.text and reply.action is Action.HANGUP
    assert c.outcome == "answered"


def test_results_say_the_portal_and_nothing_more():
    c, reply = confirmed("results")
    assert reply == Reply(
        "Thank you. Your recent test results are available in your patient portal. If you "
        "have questions about them, please call us at 201 555 0100. Goodbye.",
        Action.HANGUP, "results")


def test_pre_op_instructions_are_repeated_on_request():
    c, reply = confirmed("pre-op", instructions="Nothing to eat after midnight.")
    assert "Nothing to eat after midnight." in reply.text and "repeat" in reply.text
    again = c.turn("Yes please.")
    assert again.text.startswith("Nothing to eat after midnight.")
    done = c.turn("No, I've got it.")
    assert done.action is Action.HANGUP and c.outcome == "answered"


def test_a_post_op_check_in_goes_to_the_chart_as_observations():
    c, _ = confirmed("post-op")
    assert "concerns" in c.turn("I'd say about a two.").text
    reply = c.turn("No, but the wound is a bit red.")
    assert reply.action is Action.HANGUP and c.outcome == "answered"
    assert [(a.code, a.value, a.numeric) for a in c.answers()] == [
        ("PAIN", "2", True), ("CONCERN", "No, but the wound is a bit red.", False)]


def test_no_concern_is_recorded_as_none():
    c, _ = confirmed("post-op")
    c.typed("3")
    c.turn("Nothing, thanks, I'm fine.")
    assert [(a.code, a.value) for a in c.answers()] == [("PAIN", "3"), ("CONCERN", "none")]


def test_severe_pain_goes_to_the_on_call_at_once():
    c, _ = confirmed("post-op")
    reply = c.turn("Five. It's really bad.")
    assert reply.action is Action.URGENT and c.outcome == "transferred"
    assert c.answers()[0].value == "5"


def test_a_pain_answer_that_is_no_number_is_asked_again_then_left_out():
    c, _ = confirmed("post-op")
    assert "1 to 5" in c.turn("It hurts.").text
    assert "concerns" in c.turn("three or four").text
    c.turn("no")
    assert [a.code for a in c.answers()] == ["CONCERN"]


@pytest.mark.parametrize("said, score", [
    ("about a three", 3), ("4 out of 5", 4), ("Five.", 5), ("to", 2), ("ten", None),
    ("three or four", None), ("I would say two out of five", 2), ("zero", None)])
def test_pain_scores_from_words(said, score):
    assert pain_score(said) == score


def test_the_check_in_speaks_spanish():
    c = checkin("post-op", "es")
    assert "¿Hablo con Ana?" in c.opening().text
    c.turn("Sí.")
    assert "dolor" in c.turn("12 de marzo de 1984").text
    assert pain_score("cuatro de cinco", "es") == 4


def test_bad_set_up_is_refused():
    with pytest.raises(ValueError, match="call type"):
        checkin("follow-up")
    with pytest.raises(ValueError, match="language"):
        checkin("results", "fr")
    with pytest.raises(ValueError, match="no date of birth"):
        CheckIn("results", Patient("MRN9", "X", "Y"), "P", "1")


def test_an_answering_machine_hears_who_should_call_back_and_nothing_else():
    for language in ("en", "es"):
        text = checkin("post-op", language).machine()
        assert "201 555 0100" in text and "Riverside Family Practice" in text
        assert "Ana" in text and "Rivera" not in text  # the given name only
        assert not any(w in text.lower() for w in ("pain", "procedure", "result", "dolor",
                                                    "procedimiento", "resultado"))


def test_silence_ends_the_call_as_answered_only_after_identity():
    c = checkin("post-op")
    c.turn("yes")
    reply = c.silent()
    assert reply.action is Action.HANGUP and c.outcome == "not-confirmed"
    c, _ = confirmed("post-op")
    assert c.silent().action is Action.HANGUP and c.outcome == "answered"
