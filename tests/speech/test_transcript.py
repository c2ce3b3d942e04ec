"""What every STT engine does to Whisper's text before the dialog sees it:
decoding bounded by the turn's length, loops collapsed, annotations dropped."""

import pytest

from asterisk_agent.speech.transcript import clean, drop_repeats, max_tokens


def test_token_bound_scales_with_the_utterance():
    assert max_tokens(16000) == 30
    assert max_tokens(10 * 16000) == 120


@pytest.mark.parametrize("heard, kept", [
    ("Call me back. Call me back. Call me back. Call me", "Call me back."),
    ("I need a refill. Please call. Please call me back. Please call me back.",
     "I need a refill. Please call. Please call me back."),
    ("I need a refill of my blood pressure medication. I need a refill of my "
     "blood-pressure medication. I need a refill",
     "I need a refill of my blood pressure medication."),
    ("you you you you you", "you"),
    ("No, no.", "No, no."),
    # a name said once, decoded twice
    ("Anna Rivera. Anna Rivera.", "Anna Rivera."),
    # loops of a short name, cut off mid-word by the token bound (heard on calls)
    ("Myelin Quest Myelin Quest Myelin Quest Myel", "Myelin Quest"),
    ("My name is Anna Rivera. My name is Anna River", "My name is Anna Rivera."),
    ("Daniel Akafir. Daniel Ak", "Daniel Akafir."),
    ("Yes. Yes.", "Yes. Yes."),
    ("Yes yes yes", "Yes yes yes"),
    ("I would like to book an appointment.", "I would like to book an appointment."),
    ("", ""),
])
def test_decoding_loops_are_collapsed(heard, kept):
    assert drop_repeats(heard) == kept


@pytest.mark.parametrize("heard, kept", [
    ("[BLANK_AUDIO]", ""),
    ("(water running) I need a refill.", "I need a refill."),
    ("Yes. [MUSIC] Yes. Yes. Yes. Yes.", "Yes."),
])
def test_annotations_go_before_loops_are_looked_for(heard, kept):
    assert clean(heard) == kept
