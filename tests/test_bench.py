"""The benchmark's figures, and its report on a tiny real run.

The pure parts (percentiles, the barge-in measurement from two tracks,
answer checks, word error rates, log parsing, targets, the table) are tested
on made-up data.  The last test places real calls through the sandbox PBX,
like tools/bench does with fewer calls, and checks the report's shape.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asterisk_agent import bench

RATE = 8000


def tone(seconds: float, amplitude: int = 3000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


# --- percentiles ------------------------------------------------------------------

def test_summarize_takes_nearest_rank_percentiles():
    values = [100.0 * i for i in range(20, 0, -1)]  # 100 .. 2000, unsorted
    assert bench.summarize(values) == {"p50": 1000.0, "p95": 1900.0, "max": 2000.0, "n": 20}


def test_summarize_with_few_values_reports_the_worst_as_p95():
    assert bench.summarize([700, 650, 1200]) == {"p50": 700.0, "p95": 1200.0, "max": 1200.0, "n": 3}


def test_summarize_leaves_out_missing_values_and_handles_none_at_all():
    assert bench.summarize([None, math.nan, 500.0])["n"] == 1
    assert bench.summarize([]) == {"p50": None, "p95": None, "max": None, "n": 0}


# --- barge-in from the two tracks ------------------------------------------------------

def test_barge_in_is_onset_to_the_end_of_the_agents_audio():
    # the caller talks from 1.0 s to 2.5 s; the agent stops 0.3 s after that onset
    said = np.concatenate([silence(1.0), tone(1.5), silence(1.0)])
    heard = np.concatenate([tone(1.3), silence(2.2)])
    m = bench.barge_in_stop(said, heard, RATE)
    assert m["verdict"] == "stopped"
    assert m["onset_s"] == pytest.approx(1.0)
    assert m["ms"] == pytest.approx(300, abs=20)


def test_barge_in_bridges_short_pauses_in_the_callers_sentence():
    # a 0.3 s pause inside the caller's sentence, and the agent talks through all of it
    said = np.concatenate([silence(1.0), tone(0.6), silence(0.3), tone(0.6), silence(1.0)])
    heard = tone(3.5)
    m = bench.barge_in_stop(said, heard, RATE)
    assert m["verdict"] == "not stopped"
    assert m["ms"] >= 1400


def test_barge_in_needs_the_agent_to_be_speaking_at_the_onset():
    said = np.concatenate([silence(1.0), tone(1.0)])
    heard = np.concatenate([tone(0.5), silence(1.5)])
    assert bench.barge_in_stop(said, heard, RATE)["verdict"] == "not speaking"
    assert bench.barge_in_stop(silence(2.0), tone(2.0), RATE) == {
        "ms": None, "verdict": "no speech", "onset_s": None}


# --- what a call's result says -------------------------------------------------------

CALL = {
    "passed": True,
    "steps": [
        {"step": {"wait": 4}, "latency_ms": None},
        {"step": {"say": "What time do you open on Monday?"}, "latency_ms": 640.2, "overlap": False},
        {"step": {"say": "What is your address?"}, "latency_ms": 15.0, "overlap": True},
        {"step": {"say": "Where can I park my car?"}, "latency_ms": 810.0, "overlap": False},
        {"step": {"say": "Goodbye."}, "latency_ms": None, "overlap": False},
    ],
    "conversation": [
        {"at_s": 0.0, "who": "far end", "text": "Hello, this is the automated assistant."},
        {"at_s": 11.9, "who": "caller", "text": "What time do you open on Monday?"},
        {"at_s": 14.1, "who": "far end", "text": "On Monday we are open from 8am to 5pm."},
        {"at_s": 16.0, "who": "far end", "text": "Is there anything else I can help you with?"},
        {"at_s": 19.4, "who": "caller", "text": "What is your address?"},
        {"at_s": 21.2, "who": "far end", "text": "Sorry, I can help with our opening hours."},
        {"at_s": 26.5, "who": "caller", "text": "Where can I park my car?"},
        {"at_s": 28.5, "who": "far end", "text": "Free parking is in the lot behind the building."},
        {"at_s": 34.9, "who": "caller", "text": "Goodbye."},
    ],
}


def test_say_latencies_leave_out_turns_the_agent_talked_over():
    assert bench.say_latencies(CALL) == [640.2, None, 810.0, None]


def test_turn_samples_keep_only_turns_answered_right():
    samples, counts = bench.turn_samples(CALL, bench.TURNS)
    assert samples == [640.2, 810.0]
    assert counts == {"answers": 4, "answers_right": 2, "overlapped": 1}
    # the address turn's answer was wrong: its latency is not the agent answering the question
    call = dict(CALL, steps=[dict(s, overlap=False) for s in CALL["steps"]])
    assert bench.turn_samples(call, bench.TURNS)[0] == [640.2, 810.0]


def test_turn_replies_check_each_answer_against_its_turn():
    # hours right, address answered wrongly, parking right, goodbye never answered
    assert bench.turn_replies(CALL, bench.TURNS) == [True, False, True, None]


def test_turn_replies_of_a_call_that_never_connected():
    assert bench.turn_replies({"conversation": []}, bench.TURNS) == [None] * len(bench.TURNS)


# --- word error rate -----------------------------------------------------------------

def test_word_error_rate_ignores_spelling_of_numbers_titles_and_punctuation():
    assert bench.word_error_rate(["I would like to see Doctor Miller at eight."],
                                 ["I would like to see Dr. Miller at 8"]) == 0.0


def test_word_error_rate_counts_word_errors_over_the_whole_set():
    refs = ["please let me speak to the front desk", "where can I park"]
    hyps = ["please let me speak to the front neck", ""]
    assert bench.word_error_rate(refs, hyps) == pytest.approx(5 / 12)


def test_word_error_rate_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        bench.word_error_rate(["a b"], [])


def test_the_fixed_sentence_set_is_twelve_sentences_with_one_spelling():
    assert len(bench.SENTENCES) == 12
    assert all(bench.normalize_text(s) and not any(c.isdigit() for c in s) for s in bench.SENTENCES)


# --- the agent's log ----------------------------------------------------------------------

def test_agent_stt_times_read_both_log_formats():
    log = "\n".join([
        "2026-11-21 23:14:39,612 INFO asterisk_agent.call: call 1.0: 2.1 s of speech, transcript "
        "ready 133 ms after the end of the turn (started at a pause)",
        "2026-11-21 23:14:40,000 INFO asterisk_agent.call: call 1.0: turn -> hours",
        "2026-11-21 23:14:41,000 INFO asterisk_agent.call: call 2.0: 3.0 s of speech transcribed in 380 ms",
        "garbage line with 12 s of speech but nothing else",
    ])
    assert bench.agent_stt_times(log) == [(2.1, 133.0), (3.0, 380.0)]


def test_agent_turn_ends_tell_the_model_from_the_window():
    log = "\n".join([
        "call 1.0: 2.1 s of speech, transcript ready 133 ms after the end of the turn (started "
        "at a pause); the turn ended 190 ms after its last voiced frame (turn model)",
        "call 1.0: 1.0 s of speech, transcript ready 0 ms after the end of the turn (started "
        "at a pause); the turn ended 431 ms after its last voiced frame",
        "call 1.0: turn -> hours",
    ])
    assert bench.agent_turn_ends(log) == [(190.0, True), (431.0, False)]
    assert bench.agent_stt_times(log) == [(2.1, 133.0), (1.0, 0.0)]


def test_latency_breakdown_takes_the_measured_end_of_turn():
    report = dict(REPORT, agent_stt_ms={"calls_1": {
        "p50": 86.0, "turn_end_ms": {"p50": 200.0, "p95": 420.0, "max": 440.0, "n": 20}}})
    parts = bench.latency_breakdown(report)
    assert parts["end_of_turn_silence"] == 200.0
    assert parts["rest"] == pytest.approx(650.0 - 200.0 - 86.0 - parts["tts_first_sentence"])


def test_is_agent_worker_recognizes_the_worker_however_started():
    assert bench.is_agent_worker(["/x/python", "-m", "asterisk_agent", "serve", "--worker", "-c", "a.conf"])
    assert bench.is_agent_worker([".venv/bin/asterisk-agent", "-c", "a.conf", "serve", "--worker"])
    assert not bench.is_agent_worker([".venv/bin/asterisk-agent", "-c", "a.conf", "serve"])
    assert not bench.is_agent_worker(["python", "-m", "asterisk_agent.bench", "--calls", "1"])


def test_find_agent_worker_finds_a_worker_by_its_configuration(tmp_path):
    """A stand-in process with a worker's command line (a real agent needs the PBX: see below)."""
    conf = tmp_path / "mine.conf"
    conf.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "asterisk_agent", "serve", "--worker", "--config", str(conf)])
    try:
        deadline = time.monotonic() + 5
        while bench.find_agent_worker(None, conf) != proc.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bench.find_agent_worker(None, conf) == proc.pid
        assert bench.config_of(proc.pid, bench._cmdline(proc.pid)) == conf.resolve()
    finally:
        proc.kill()
        proc.wait()


def test_memory_figures_come_from_proc():
    status = bench.proc_status(os.getpid())
    assert status["VmRSS"] > 0 and status["VmHWM"] >= status["VmRSS"]
    assert bench.reset_peak_rss(os.getpid())
    assert bench.proc_status(2 ** 22 + 7) == {}


# --- the report ----------------------------------------------------------------------------

REPORT = {
    "when": "2026-11-21T23:00:00+00:00", "machine": {"cpus": 2},
    "config": {"stt": "faster-whisper tiny.en", "tts": "hibari", "vad_silence_ms": 500},
    "latency_ms": {"calls_1": {"p50": 650.0, "p95": 900.0, "max": 950.0, "n": 20,
                               "answers": 20, "answers_right": 20},
                   "calls_4": {"p50": 800.0, "p95": 1600.0, "max": 2100.0, "n": 32,
                               "answers": 32, "answers_right": 31}},
    "agent_stt_ms": {"calls_1": {"p50": 86.0, "p95": 160.0, "max": 420.0, "n": 20}},
    "barge_in_ms": {"p50": 240.0, "p95": 260.0, "max": 260.0, "n": 5, "not_stopped": 0, "not_speaking": 0},
    "stt": {"faster-whisper tiny.en": {"rtf": 0.1, "wer": 0.12, "wer_by_voice": {"hibari": 0.0, "espeak-ng": 0.24}},
            "whisper.cpp tiny.en": {"error": "pywhispercpp is not installed"}},
    "tts_first_audio_ms": {"hibari": 44.0, "espeak-ng": 16.0},
    "memory": {"idle_rss_mb": 450.0, "peak_rss_mb": 530.0, "level": 8},
    "peak_rss_mb_per_call": 10.0,
}


def test_targets_are_checked_against_the_figures():
    targets = {t["target"]: t for t in bench.check_targets(REPORT)}
    assert targets["latency p50, 1 call"]["met"] is False
    assert targets["latency p95, 1 call"]["met"] is True
    assert targets["latency p95, 4 calls"]["met"] is False
    assert targets["barge-in p50"]["met"] is True
    assert targets["WER, default engine"] == {"target": "WER, default engine", "limit": 0.15,
                                              "value": 0.12, "met": True}


def test_latency_breakdown_adds_up_to_the_median_turn():
    parts = bench.latency_breakdown(REPORT)
    assert parts["level"] == "calls_1"
    assert parts["end_of_turn_silence"] + parts["stt_wait_p50"] + parts["tts_first_sentence"] \
        + parts["rest"] == pytest.approx(650.0)


def test_latency_breakdown_is_left_out_when_its_parts_exceed_the_whole():
    # e.g. the agent's log held other, slower calls than the bench's
    report = dict(REPORT, agent_stt_ms={"calls_1": {"p50": 400.0}})
    assert bench.latency_breakdown(report) is None


def test_format_report_shows_every_part():
    report = dict(REPORT, targets=bench.check_targets(REPORT),
                  latency_breakdown_ms=bench.latency_breakdown(REPORT))
    text = bench.format_report(report)
    for piece in ("650", "1600", "31/32", "Barge-in", "240", "0.120", "pywhispercpp is not installed",
                  "hibari 44", "10.0 MB per call", "MISSED", "end-of-turn silence"):
        assert piece in text, piece


def test_latency_histogram_is_drawn(tmp_path):
    path = tmp_path / "latency.png"
    bench.draw_latency_histogram({"calls_1": [650.0, 700.0, 900.0], "calls_4": [800.0, 1300.0]},
                                 [240.0, 260.0], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_rejects_bad_levels_and_parts():
    parser = bench.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--levels", "0,4"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--parts", "calls,latency"])
    assert parser.parse_args(["--levels", "2,3"]).levels == (2, 3)


# --- a tiny real run ---------------------------------------------------------------------------

def test_tiny_run_reports_the_json_shape(tmp_path, capsys):
    """One call, one barge-in call and the TTS figures, for real (starts the PBX and agent if needed)."""
    if os.geteuid() != 0 and not _pbx_running():
        pytest.fail("the sandbox PBX is not running and starting it needs root: run the tests as root "
                    "(tools/test)")
    conf = str(Path(__file__).resolve().parents[1] / "etc" / "sandbox.conf")
    code = bench.main(["--json", "-c", conf, "--levels", "1", "--calls", "1", "--barge-in", "1",
                       "--parts", "calls,barge-in,tts", "--out", str(tmp_path), "--max-minutes", "6"])
    out = capsys.readouterr().out.strip()
    report = json.loads(out)  # exactly one JSON object on stdout
    assert code == 0, report["errors"]
    lat = report["latency_ms"]["calls_1"]
    assert set(lat) >= {"p50", "p95", "max", "n"}
    assert lat["n"] >= 3, lat               # four turns, at most one talked over
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] < 10_000
    barge = report["barge_in_ms"]
    assert set(barge) >= {"p50", "max", "n"}
    assert set(report["tts_first_audio_ms"]) == {"hibari", "espeak-ng"}
    assert all(ms > 0 for ms in report["tts_first_audio_ms"].values())
    assert "peak_rss_mb_per_call" in report
    assert (tmp_path / "latency.png").is_file()
    assert json.loads((tmp_path / "bench.json").read_text())["latency_ms"] == report["latency_ms"]


def _pbx_running() -> bool:
    from asterisk_agent import config
    from asterisk_agent.pbx.sandbox import Sandbox

    return bool(Sandbox(config.load(Path(__file__).resolve().parents[1] / "etc" / "sandbox.conf"))
                .status().get("running"))


def test_cpu_steal_is_the_hosts_share_of_the_time_in_between():
    before = bench.cpu_times("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n")
    after = bench.cpu_times("cpu  200 0 100 1500 0 0 0 200 0 0\n")
    assert before == (1000, 50) and after == (2000, 200)
    assert bench.steal_pct(before, after) == 15.0
    assert bench.steal_pct(after, after) is None


def test_the_audit_part_chains_a_real_store_and_verifies_it():
    result = bench.bench_audit(500)
    assert result["records"] == 500 and result["intact"] is True
    assert result["write_s"] >= 0 and result["verify_s"] >= 0 and result["store_mb"] > 0
    text = bench.format_report({"audit": result, "targets": bench.check_targets(
        {"audit": dict(result, verify_s=31.0)})})
    assert "Audit trail: 500 records" in text and "intact" in text
    assert "audit verify, 1M records, s" in text and "MISSED" in text


def test_the_export_part_writes_out_a_day_of_calls_from_a_real_store():
    result = bench.bench_export(20)
    assert result["records"] == {"audit": 60, "calls": 20, "turns": 20 * bench.EXPORT_TURNS,
                                 "screen_results": 20 * bench.EXPORT_TURNS // 2}, result
    assert result["export_s"] > 0 and result["cpu_s"] > 0 and result["export_mb"] > 0
    targets = bench.check_targets({"export": dict(result, export_s=11.0)})
    [export] = [t for t in targets if t["target"].startswith("audit export")]
    assert export["met"] is False and export["value"] == 11.0
    text = bench.format_report({"export": result, "targets": targets})
    assert "Audit export: a day of 20 calls" in text and "MISSED" in text


def test_the_metrics_part_scrapes_a_real_endpoint_with_live_calls():
    result = bench.bench_metrics(8, 20)
    s = result["scrape_ms"]
    assert result["live_calls"] == 8 and s["n"] == 20 and 0 < s["p50"] <= s["p95"] <= s["max"]
    targets = bench.check_targets({"metrics": dict(result, scrape_ms=dict(s, p95=12.0))})
    [scrape] = [t for t in targets if t["target"].startswith("metrics scrape")]
    assert scrape["met"] is False and scrape["value"] == 12.0
    assert "Metrics: GET /metrics with 8 live calls" in bench.format_report({"metrics": result})
