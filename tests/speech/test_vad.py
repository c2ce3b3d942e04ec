"""Endpointing on real speech (espeak-ng at 8 kHz): when a caller's turn starts and ends."""

import numpy as np
import pytest

from asterisk_agent import config
from asterisk_agent.speech import vad
from asterisk_agent.speech.audio import RATE_8K

FRAME = 160  # 20 ms at 8 kHz
CFG = config.Vad(aggressiveness=2, silence_ms=700, min_speech_ms=200, max_utterance_s=20.0)


def silence(seconds):
    return np.zeros(int(RATE_8K * seconds), np.int16)


def run(pcm, cfg=CFG, t0=100.0, **endpointer):
    """Feed pcm frame by frame as if it arrived live; return (time, event) pairs."""
    ep = vad.Endpointer(cfg, **endpointer)
    events = []
    for i in range(len(pcm) // FRAME):
        at = t0 + i * 0.02
        events += [(at, e) for e in ep.feed(pcm[i * FRAME:(i + 1) * FRAME], at)]
    return events


def utterances(events):
    return [e for _, e in events if isinstance(e, vad.Utterance)]


def test_one_sentence_is_one_turn(say):
    speech = say("I would like to book an appointment for next week.")
    events = run(np.concatenate([silence(1), speech, silence(1.5)]))
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechStarted", "Utterance"]
    started, utt = events[0][1], events[1][1]
    # onset within a few frames of the real start (t0 + 1 s)
    assert 100.95 <= started.at <= 101.1
    # confirmed only once min_speech_ms of speech has been heard
    assert started.detected_at - started.at >= 0.18
    # the turn ends silence_ms after the speech itself ended (webrtcvad's own
    # hangover counts as part of the silence)
    end_time = events[1][0]
    speech_end = 101.0 + len(speech) / RATE_8K
    assert end_time - speech_end == pytest.approx(0.7, abs=0.06)
    assert not utt.truncated
    # the utterance holds the whole sentence plus ~200 ms before and a short tail
    assert len(speech) / RATE_8K < utt.duration < len(speech) / RATE_8K + 0.5


def test_pause_shorter_than_the_window_does_not_split_the_turn(say):
    first = say("I would like to book an appointment.")
    second = say("My name is Jane Doe.")
    events = run(np.concatenate([silence(1), first, silence(0.45), second, silence(1.5)]))
    [utt] = utterances(events)
    assert utt.duration > (len(first) + len(second)) / RATE_8K + 0.4


def test_pause_longer_than_the_window_ends_the_turn(say):
    first = say("I would like to book an appointment.")
    second = say("My name is Jane Doe.")
    events = run(np.concatenate([silence(1), first, silence(1.0), second, silence(1.5)]))
    first_utt, second_utt = utterances(events)
    assert first_utt.ended_at < second_utt.started_at
    # each holds its sentence, ~200 ms before it and a short tail
    for utt, speech in ((first_utt, first), (second_utt, second)):
        assert 0.2 < utt.duration - len(speech) / RATE_8K < 0.7


def test_the_window_follows_the_config(say):
    first = say("I would like to book an appointment.")
    second = say("My name is Jane Doe.")
    pcm = np.concatenate([silence(1), first, silence(0.45), second, silence(1.5)])
    quick = config.Vad(aggressiveness=2, silence_ms=300, min_speech_ms=200)
    assert len(utterances(run(pcm, quick))) == 2


def test_a_short_blip_is_not_a_turn(say):
    word = say("Appointment.")
    blip = word[int(0.1 * RATE_8K):int(0.22 * RATE_8K)]  # 120 ms of speech
    assert run(np.concatenate([silence(1), blip, silence(1.5)])) == []


def test_a_short_word_longer_than_min_speech_is_a_turn(say):
    word = say("Yes.")
    assert len(word) / RATE_8K > 0.25
    [utt] = utterances(run(np.concatenate([silence(1), word, silence(1.5)])))
    assert not utt.truncated


def test_long_speech_is_truncated_at_max_utterance(say):
    sentence = say("I would like to book an appointment for next week with the doctor.")
    speech = np.concatenate([sentence] * 8)  # ~25 s without a pause
    cfg = config.Vad(aggressiveness=2, silence_ms=700, min_speech_ms=200, max_utterance_s=10.0)
    utts = utterances(run(np.concatenate([silence(1), speech, silence(1.5)]), cfg))
    assert utts[0].truncated
    assert utts[0].duration == pytest.approx(10.0 + 0.2, abs=0.1)
    # nothing is lost: the rest of the speech comes as further turns
    assert sum(u.duration for u in utts) >= len(speech) / RATE_8K
    assert not utts[-1].truncated


def test_noise_and_silence_are_not_speech():
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(RATE_8K * 3) * 200).astype(np.int16)
    assert run(np.concatenate([silence(2), hiss])) == []


def test_in_speech_and_reset(say):
    speech = say("Hello, I have a question about my bill.")
    ep = vad.Endpointer(CFG)
    for i in range(len(speech) // FRAME // 2):
        ep.feed(speech[i * FRAME:(i + 1) * FRAME], i * 0.02)
    assert ep.in_speech
    ep.reset()
    assert not ep.in_speech
    assert all(ep.feed(f, 0.0) == [] for f in np.split(silence(1), RATE_8K // FRAME))


@pytest.mark.parametrize("frame", [
    np.zeros(159, np.int16),          # wrong length
    np.zeros(0, np.int16),
    np.zeros((160, 2), np.int16),     # stereo
    np.zeros(160, np.float32),        # not int16
])
def test_bad_frames_are_value_errors(frame):
    ep = vad.Endpointer(CFG)
    with pytest.raises(ValueError):
        ep.feed(frame, 0.0)
    # and the endpointer still works afterwards
    assert ep.feed(np.zeros(160, np.int16), 0.02) == []


def test_10_and_30_ms_frames_are_accepted(say):
    speech = say("I would like to book an appointment.")
    pcm = np.concatenate([silence(0.99), speech, silence(1.5)])
    ep = vad.Endpointer(CFG)
    events = []
    for i in range(len(pcm) // 240):
        events += ep.feed(pcm[i * 240:(i + 1) * 240], i * 0.03)
    assert [type(e).__name__ for e in events] == ["SpeechStarted", "Utterance"]


def test_bad_settings_are_value_errors():
    with pytest.raises(ValueError):
        vad.Endpointer(CFG, rate=11025)


def test_speech_paused_comes_early_and_matches_the_final_utterance(say):
    speech = say("I would like to book an appointment for next week.")
    ep = vad.Endpointer(CFG, pause_ms=250)
    pcm = np.concatenate([silence(1), speech, silence(1.5)])
    events = []
    for i in range(len(pcm) // FRAME):
        at = 100.0 + i * 0.02
        events += [(at, e) for e in ep.feed(pcm[i * FRAME:(i + 1) * FRAME], at)]
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechStarted", "SpeechPaused", "Utterance"]
    (paused_at, paused), (end_at, final) = events[1], events[2]
    # the snapshot comes ~450 ms before the endpoint: time to transcribe it
    assert end_at - paused_at == pytest.approx(0.45, abs=0.03)
    assert paused.utterance.ended_at == final.ended_at
    assert paused.utterance.started_at == final.started_at
    assert abs(paused.utterance.duration - final.duration) <= 0.2


def test_speech_paused_in_a_short_pause_is_superseded(say):
    first = say("I would like to book an appointment.")
    second = say("My name is Jane Doe.")
    ep = vad.Endpointer(CFG, pause_ms=250)
    pcm = np.concatenate([silence(1), first, silence(0.45), second, silence(1.5)])
    events = []
    for i in range(len(pcm) // FRAME):
        events += ep.feed(pcm[i * FRAME:(i + 1) * FRAME], i * 0.02)
    paused = [e for e in events if isinstance(e, vad.SpeechPaused)]
    [final] = [e for e in events if isinstance(e, vad.Utterance)]
    assert len(paused) == 2
    # the first pause's snapshot is stale: the caller went on talking
    assert paused[0].utterance.ended_at < final.ended_at
    assert paused[1].utterance.ended_at == final.ended_at


def feed_until_paused(ep, pcm, t0=100.0):
    """Feed frames until the first SpeechPaused; return it and the frames' next index."""
    for i in range(len(pcm) // FRAME):
        for e in ep.feed(pcm[i * FRAME:(i + 1) * FRAME], t0 + i * 0.02):
            if isinstance(e, vad.SpeechPaused):
                return e, i + 1
    raise AssertionError("no pause")


def test_a_shortened_window_ends_the_turn_sooner_with_the_same_audio(say):
    speech = say("I would like to book an appointment for next week.")
    pcm = np.concatenate([silence(1), speech, silence(1.5)])
    ep = vad.Endpointer(CFG, pause_ms=250)
    paused, i = feed_until_paused(ep, pcm)
    # at the pause (250 ms) the window becomes 400 ms: not yet over
    assert ep.shorten(paused.utterance.ended_at, 400) and ep.in_speech
    events = []
    for j in range(i, len(pcm) // FRAME):
        events += [(100.0 + j * 0.02, e) for e in ep.feed(pcm[j * FRAME:(j + 1) * FRAME],
                                                          100.0 + j * 0.02)]
    [(end_at, early)] = events
    late = utterances(run(pcm))[0]
    assert early.shortened and not late.shortened and not early.truncated
    # 400 ms after the speech instead of 700 (both counting webrtcvad's hangover)
    assert end_at - paused.at == pytest.approx(0.15, abs=0.03)
    assert early.ended_at == late.ended_at and early.started_at == late.started_at
    assert abs(early.duration - late.duration) <= 0.2


def test_a_window_shorter_than_the_pause_so_far_ends_the_turn_at_the_next_frame(say):
    speech = say("I would like to book an appointment for next week.")
    ep = vad.Endpointer(CFG, pause_ms=250)
    paused, _ = feed_until_paused(ep, np.concatenate([silence(1), speech, silence(1.5)]))
    assert ep.shorten(paused.utterance.ended_at, 200) and ep.in_speech
    [turn] = ep.feed(np.zeros(FRAME, np.int16), 200.0)
    assert turn.shortened
    assert not ep.in_speech and not ep.shorten(paused.utterance.ended_at, 200)


def test_a_shortened_window_waits_for_the_frames_in_order(say):
    """A verdict that comes while frames wait to be fed (a stalled loop) ends
    nothing if the next of them is the caller going on."""
    _, second, _, ep, paused, _ = paused_between_sentences(say)
    assert ep.shorten(paused.utterance.ended_at, 200)
    events = []
    for j in range(len(second) // FRAME):
        events += ep.feed(second[j * FRAME:(j + 1) * FRAME], 200.0 + j * 0.02)
    assert not any(isinstance(e, vad.Utterance) for e in events) and ep.in_speech


def paused_between_sentences(say):
    """Two sentences 450 ms apart, fed up to the pause between them."""
    first = say("I would like to book an appointment.")
    second = say("My name is Jane Doe.")
    pcm = np.concatenate([silence(1), first, silence(0.45), second, silence(1.5)])
    ep = vad.Endpointer(CFG, pause_ms=250)
    paused, i = feed_until_paused(ep, pcm)
    return first, second, pcm, ep, paused, i


def test_speech_after_the_pause_restores_the_window(say):
    first, second, pcm, ep, paused, i = paused_between_sentences(say)
    assert ep.shorten(paused.utterance.ended_at, 500)
    events = []
    for j in range(i, len(pcm) // FRAME):
        events += ep.feed(pcm[j * FRAME:(j + 1) * FRAME], 100.0 + j * 0.02)
    # one turn with both sentences, ended by the configured window
    [turn] = [e for e in events if isinstance(e, vad.Utterance)]
    assert not turn.shortened
    assert turn.duration > (len(first) + len(second)) / RATE_8K + 0.4


def test_shorten_after_the_caller_went_on_does_nothing(say):
    _, _, pcm, ep, paused, i = paused_between_sentences(say)
    # the caller speaks again before the verdict on that pause comes back
    while ep._last_voiced_at == paused.utterance.ended_at:
        ep.feed(pcm[i * FRAME:(i + 1) * FRAME], 100.0 + i * 0.02)
        i += 1
    assert not ep.shorten(paused.utterance.ended_at, 200)
    assert ep.in_speech


def test_shorten_without_a_pause_does_nothing(say):
    ep = vad.Endpointer(CFG, pause_ms=250)
    speech = say("I would like to book an appointment.")
    for i in range(len(speech) // FRAME):
        ep.feed(speech[i * FRAME:(i + 1) * FRAME], i * 0.02)
    assert ep.in_speech
    assert not ep.shorten(ep._last_voiced_at, 200)


def run_with_onset(pcm, onset_ms=80):
    return run(pcm, onset_ms=onset_ms)


def test_an_onset_is_announced_before_the_turn_is_sure(say):
    speech = say("I would like to book an appointment.")
    events = run_with_onset(np.concatenate([silence(1), speech, silence(1.5)]))
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechOnset", "SpeechStarted", "Utterance"]
    (onset_at, _), (started_at, started) = events[0], events[1]
    # 80 ms of speech in, against min_speech_ms + hangover (280 ms) for the turn
    assert onset_at - started.at == pytest.approx(0.06, abs=0.03)
    assert started_at - onset_at >= 0.15


def test_a_blip_is_announced_then_dismissed(say):
    blip = say("Appointment.")[int(0.1 * RATE_8K):int(0.22 * RATE_8K)]  # 120 ms of speech
    events = run_with_onset(np.concatenate([silence(1), blip, silence(1.5)]))
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["SpeechOnset", "SpeechDismissed"]
    # let go within the blip gap (120 ms) after the sound, plus webrtcvad's hangover
    assert events[1][0] - events[0][0] < 0.4


def test_a_click_shorter_than_the_onset_is_not_announced(say):
    click = say("Appointment.")[int(0.1 * RATE_8K):int(0.14 * RATE_8K)]  # 40 ms
    assert run_with_onset(np.concatenate([silence(1), click, silence(1.5)]), onset_ms=200) == []


def test_no_onset_unless_asked(say):
    speech = say("I would like to book an appointment.")
    events = run(np.concatenate([silence(1), speech, silence(1.5)]))
    assert not any(isinstance(e, (vad.SpeechOnset, vad.SpeechDismissed)) for _, e in events)
    with pytest.raises(ValueError, match="onset_ms"):
        vad.Endpointer(CFG, onset_ms=0)


def test_no_speech_paused_unless_asked(say):
    speech = say("I would like to book an appointment for next week.")
    events = run(np.concatenate([silence(1), speech, silence(1.5)]))
    assert not any(isinstance(e, vad.SpeechPaused) for _, e in events)


def syllable(say):
    """The first 150 ms of "Good": too short to be a turn on its own."""
    good = say("Good")
    return good[: int(RATE_8K * 0.15)]


def test_a_first_syllable_cut_off_by_a_catch_stays_in_the_turn(say):
    """ "Goo... bye": a syllable too short to count alone still starts the turn."""
    goo, bye = syllable(say), say("bye, thank you")
    assert run(np.concatenate([silence(1), goo, silence(1.5)])) == [], \
        "the syllable counts as speech on its own: the test proves nothing"
    [alone] = utterances(run(np.concatenate([silence(1), bye, silence(1.5)])))
    # a 300 ms catch: long enough that the syllable alone has ended as a blip
    [joined] = utterances(run(np.concatenate([silence(1), goo, silence(0.3), bye, silence(1.5)])))
    # the turn holds the syllable and the catch after it, not only "bye"
    assert joined.duration >= alone.duration + 0.15 + 0.2


def test_a_blip_long_before_speech_is_not_kept(say):
    cough, bye = syllable(say), say("bye, thank you")
    [alone] = utterances(run(np.concatenate([silence(1), bye, silence(1.5)])))
    [later] = utterances(run(np.concatenate([silence(1), cough, silence(1.5), bye, silence(1.5)])))
    assert later.duration == pytest.approx(alone.duration, abs=0.05)
