"""End to end: real SIP calls through the real Asterisk to a running agent.

Each test places a call with the scripted caller (real SIP, real RTP audio),
listens to what comes back through its own speech-to-text, and checks what a
caller would hear.  Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import ipaddress
import re
import wave

import pytest

from e2e import GREETED, agent_files, call, explain, phi_leaks, wait_clean



def test_ivr_to_agent_asks_hours_then_goodbye(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "100",
        "steps": [
            {"expect": "press (1|one)"},
            {"dtmf": "1"},
            GREETED,
            {"say": "What time do you open on Monday?"},
            {"expect": "8|eight"},
            {"say": "Goodbye."},
            {"expect": "goodbye|thank you"},
            {"expect_hangup": True},
        ]}, tmp_path)
    assert result["passed"], explain(result)
    says = [s for s in result["steps"] if "say" in s["step"]]
    assert all(isinstance(s["latency_ms"], (int, float)) and s["latency_ms"] > 0 for s in says)
    assert wait_clean(sandbox_cfg) == ([], []), "the agent left channels or bridges behind"


def test_operator_on_request(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        # the agent announces the transfer, then the caller hears the front desk
        # stand-in, which only the dialplan's operator context reaches
        "steps": [GREETED, {"say": "Operator, please."}, {"expect": "connecting you"},
                  {"expect": "reached the front desk"}],
    }, tmp_path)
    assert result["passed"], explain(result)


def test_operator_on_dtmf_zero(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [GREETED, {"dtmf": "0"}, {"expect": "reached the front desk"}],
    }, tmp_path)
    assert result["passed"], explain(result)


def test_caller_hangs_up_mid_sentence_leaves_nothing_behind(agent, sandbox_cfg, tmp_path):
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [{"expect": "assistant|hello", "timeout": 30}, {"hangup": True}],
    }, tmp_path)
    assert result["passed"], explain(result)
    assert wait_clean(sandbox_cfg) == ([], []), "channels or bridges left after the caller hung up"
    assert "Traceback" not in agent.log()


def test_asterisk_restart_between_calls(agent, pbx, sandbox_cfg, tmp_path):
    first = call(sandbox_cfg, {"dial": "200", "steps": [GREETED, {"say": "Goodbye."},
                                                         {"expect_hangup": True}]}, tmp_path)
    assert first["passed"], explain(first)
    pbx.restart()
    agent.wait_registered(60)  # the agent reconnected by itself: no restart of the agent
    second = call(sandbox_cfg, {
        "dial": "100",
        "steps": [{"expect": "press (1|one)"}, {"dtmf": "1"}, GREETED,
                  {"say": "Where can I park?"}, {"expect": "parking|lot|behind"},
                  {"say": "Goodbye."}, {"expect_hangup": True}]}, tmp_path)
    assert second["passed"], explain(second) + "\nagent log:\n" + agent.log()[-3000:]


def test_barge_in_stops_the_agent_and_answers_the_question(agent, sandbox_cfg, tmp_path):
    """The caller talks over the long greeting: the greeting stops, the question is answered."""
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [
            {"expect": "automated assistant", "timeout": 30},  # the greeting is playing
            {"say": "What time do you open on Monday?", "barge_in": True},
            {"expect": "8|eight"},
        ]}, tmp_path)
    assert result["passed"], explain(result)
    said = next(s for s in result["steps"] if "say" in s["step"])
    # the rest of the greeting is several seconds long: stopping within a second
    # can only be the barge-in (the benchmark measures it against the 300 ms target)
    assert said["barge_in_ms"] is not None and said["barge_in_ms"] < 1000, explain(result)
    assert "reach the front desk" not in result["heard_transcript"], "the greeting played on"


def test_a_cough_over_the_agent_holds_its_sentence_then_it_goes_on(agent, sandbox_cfg, tmp_path):
    """A sound too short to be a turn ([vad] min_speech_ms), longer than hold_ms:
    the agent pauses at once, then finishes the greeting instead of stopping."""
    before = len(agent.log())
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [
            {"expect": "automated assistant", "timeout": 30},  # the greeting is playing
            {"cough": 0.12},
            {"expect": "front desk"},
        ]}, tmp_path)
    assert result["passed"], explain(result)
    cough = next(s for s in result["steps"] if "cough" in s["step"])
    gap = cough["far_end_gap"]
    # paused within 250 ms of the cough (measured 80 ms) and let go by the
    # endpointer at the blip's end (measured after 220 ms), well before the 1 s
    # limit that frees it otherwise.  The greeting's own pauses between words
    # are shorter than 150 ms, but one between sentences can fall in that
    # window by chance: without the hold this failed 2 runs in 3.
    assert gap is not None and gap["from_ms"] <= 250 and 150 <= gap["ms"] < 900, explain(result)
    assert "caller interrupted the agent" not in agent.log()[before:]


def test_red_flag_gets_the_safety_message_whole_then_on_call(agent, sandbox_cfg, tmp_path):
    """A caller describes chest pain: the agent says to call 911, cannot be talked
    over while it does, and hands the call to the on-call clinician."""
    before = len(agent.log())  # the module's agent has served earlier calls
    result = call(sandbox_cfg, {
        "dial": "200",
        "steps": [
            GREETED,
            {"say": "I have crushing chest pain and my left arm feels numb."},
            {"expect": "emergency"},
            # the caller talks over the safety message: it plays on regardless
            {"say": "Hello? Hello?", "barge_in": True},
            # its last sentence still comes
            {"expect": "connecting you|our staff"},
            # the sandbox's stand-in nurse, reached only through [ai-agent-urgent]
            {"expect": "nurse on call", "timeout": 30},
        ]}, tmp_path)
    assert result["passed"], explain(result) + "\nagent log:\n" + agent.log()[-3000:]
    this_call = agent.log()[before:]
    assert "red flag chest-pain" in this_call
    assert re.search(r"911|9 1 1|nine one one", result["heard_transcript"]), explain(result)
    assert "caller interrupted the agent" not in this_call, "the safety message was cut"


# the seed patient Ana Rivera (MRN1001): what the booking call reveals, as it could
# be written anywhere: the name, the date of birth as said, typed and as HL7
# writes it, the record number
PHI = ("Ana", "Rivera", "1984", "03121984", "19840312", "MRN1001")
# the scripted caller's identity as Asterisk passes it on: caller ID name (its
# From display name) and number (its From user, in URI form)
CALLER_ID = ("Test Caller", "sip:caller@")


@pytest.fixture(scope="module")
def booking_call(agent, ehr_engine, sandbox_cfg, tmp_path_factory):
    """One booking by voice through the IVR (name said, date of birth typed, a
    slot offered and taken), looked at by the three tests below."""
    before = len(agent.log())
    result = call(sandbox_cfg, {
        "dial": "100",
        "steps": [
            {"expect": "press (1|one)"},
            {"dtmf": "1"},
            GREETED,
            {"say": "I would like to book an appointment."},
            {"expect": "first and last name"},
            {"say": "My name is Ana Rivera."},
            {"expect": "date of birth"},
            {"dtmf": "03121984"},
            {"expect": "what day"},
            {"say": "Next Wednesday morning."},
            {"expect": "which one would you like"},
            {"say": "The first one."},
            {"expect": "shall i book"},
            {"say": "Yes."},
            {"expect": "you are booked"},
        ]}, tmp_path_factory.mktemp("booking"))
    assert result["passed"], explain(result) + "\nagent log:\n" + agent.log()[before:][-3000:]
    return agent.log()[before:]


def test_booking_by_voice_lands_in_the_ehr(booking_call, sandbox_cfg, tmp_path):
    booked = asyncio.run(upcoming(sandbox_cfg, "MRN1001", tmp_path))
    assert any(a.start.weekday() == 2 and a.start.hour < 12 for a in booked), booked


def test_a_booking_call_leaves_no_name_or_birth_date_in_any_log(booking_call, agent,
                                                                  sandbox_cfg):
    """Every log file the agent wrote, and every file in its state directory
    outside the encrypted store, is searched for what the caller revealed.
    Asterisk's own logs are the site's, configured by its administrator."""
    ids = re.findall(r"call (\d+\.\d+)", booking_call)
    assert ids and any(f"call {i}: end" in booking_call for i in ids), \
        "the agent logged nothing about the call by its channel id:\n" + booking_call[-3000:]
    leaks = phi_leaks(agent_files(agent, sandbox_cfg), list(PHI), CALLER_ID)
    assert not leaks, f"PHI in {len(leaks)} log line(s):\n" + "\n".join(leaks[:30])


def test_a_booking_call_is_kept_in_the_encrypted_store(booking_call, sandbox_cfg):
    """The call, what was said both ways, the screen's verdict on every caller
    turn, the booking's HL7 message, the call's recording and the audit records,
    all in the store; none of it readable in the store's files without the key,
    and no plaintext recording left behind."""
    import time

    from asterisk_agent.compliance.audit import AuditLog
    from asterisk_agent.compliance.store import open_store

    (call_id,) = re.findall(r"call (\d+\.\d+) from \S+: start", booking_call)
    with open_store(sandbox_cfg.store_path, sandbox_cfg.store_key_path, create=False) as store:
        deadline = time.monotonic() + 15  # the caller hangs up after its last step
        while not store.query("SELECT 1 FROM calls WHERE id = ? AND ended IS NOT NULL",
                              (call_id,)) and time.monotonic() < deadline:
            time.sleep(0.5)
        ((language, outcome),) = store.query(
            "SELECT language, outcome FROM calls WHERE id = ?", (call_id,))
        assert language == "en" and outcome, outcome
        turns = store.query("SELECT speaker, transcript FROM turns WHERE call_id = ? "
                            "ORDER BY id", (call_id,))
        said = " ".join(t for who, t in turns if who == "caller").lower()
        heard = " ".join(t for who, t in turns if who == "agent").lower()
        # the words the call turned on (the agent booked a Wednesday, so it
        # heard "Wednesday"), and the keys; a name is checked by the EHR, not
        # here, as the STT may spell it as it sounds ("Rifara")
        assert "wednesday" in said and "[dtmf 0]" in said, turns
        assert sum(1 for who, t in turns if who == "caller" and t.strip()) >= 13, turns
        assert "date of birth" in heard and "booked" in heard, turns
        spoken = [t for who, t in turns if who == "caller" and not t.startswith("[DTMF")]
        screened = store.query("SELECT urgent FROM screen_results WHERE call_id = ?",
                               (call_id,))
        assert len(screened) == len(spoken) and not any(u for (u,) in screened), screened
        audit = AuditLog(store)
        events = [r.event for r in audit.records() if r.call_id == call_id]
        # (the recording's import may already have followed)
        assert events[:2] == ["call.start", "call.end"], events
        assert any(r.event == "ehr.message" and r.patient == "MRN1001"
                   and r.detail.get("kind", "").startswith("SRM^S01")
                   for r in audit.records()), "no audit record of the booking's message"
        # the dialplan's MixMonitor recording, taken in once Asterisk finished it
        deadline = time.monotonic() + 40
        while not (rows := store.query("SELECT format, audio FROM recordings WHERE call_id = ?",
                                       (call_id,))) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert rows, (f"no recording of call {call_id} in the store; in "
                      f"{sandbox_cfg.recordings_path}: "
                      f"{sorted(p.name for p in sandbox_cfg.recordings_path.glob('*'))}")
        ((fmt, audio),) = rows
        with wave.open(io.BytesIO(audio)) as w:
            seconds = w.getnframes() / w.getframerate()
        assert fmt == "wav" and seconds > 20, (fmt, seconds)  # the whole booking call
        assert any(r.event == "recording.import" and r.call_id == call_id
                   for r in audit.records())
        # `serve` audits its configuration files the first time it sees them
        assert any(r.event == "config.change" and "practice" in r.detail["files"]
                   for r in audit.records())
        assert audit.verify() is None
    assert not (sandbox_cfg.recordings_path / f"{call_id}.wav").exists(), \
        "the plaintext recording was left behind"
    raw = b"".join(p.read_bytes() for p in sandbox_cfg.store_path.parent.glob(
        sandbox_cfg.store_path.name + "*"))
    assert b"Rivera" not in raw and b"RIVERA" not in raw


def test_a_full_call_connects_only_to_allowed_hosts(booking_call, agent, sandbox_cfg):
    """The egress hook is in both processes and saw only allowed hosts during
    the call (ARI, RTP, the EHR engine); a forced connection being refused is
    shown in tests/compliance/test_egress.py."""
    from asterisk_agent.compliance.egress import allowed_hosts

    log = agent.log()
    assert log.count("egress allowlist installed") >= 2, log[-3000:]
    refused = [line for line in log.splitlines() if "egress refused" in line]
    assert not refused, "connections outside the allowlist were attempted:\n" + "\n".join(refused)
    used = set(re.findall(r"egress: first use of allowed host (\S+)", log))
    assert used, "the egress hook saw no connection at all:\n" + log[-3000:]
    allowlist = allowed_hosts(sandbox_cfg)

    def allowed(host: str) -> bool:
        try:
            return host in allowlist or (ipaddress.ip_address(host).is_loopback
                                         and "localhost" in allowlist)
        except ValueError:
            return False
    outside = sorted(h for h in used if not allowed(h))
    assert not outside, f"hosts used outside the allowlist {sorted(allowlist)}: {outside}"


def test_metrics_count_the_call_and_name_no_one(booking_call, agent, sandbox_cfg):
    """GET /metrics and /health of the running agent ([metrics] listen) after the
    booking: its turns and transcript waits counted, nothing about the caller."""
    import json
    import urllib.request

    from asterisk_agent.metrics import parse_listen

    host, port = parse_listen(sandbox_cfg.metrics.listen)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as r:
            health = json.loads(r.read())
    except OSError as exc:
        pytest.fail(f"no metrics endpoint on {host}:{port} ({exc}):\n" + agent.log()[-3000:])

    def value(series: str) -> float:
        found = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith(series + " ")]
        assert found, f"no {series} in:\n{text[:3000]}"
        return found[0]

    assert value('asterisk_agent_turns_total{intent="book confirmed"}') >= 1
    assert value('asterisk_agent_transcript_wait_seconds_count{language="en"}') >= 5
    assert value("asterisk_agent_ari_connected") == 1
    assert value('asterisk_agent_queue_depth{language="en",stage="stt"}') >= 0
    assert health["ok"] is True and health["ari_connected"] is True
    for phi in ("MRN1", "Rivera", "Ana ", "03121984"):
        assert phi not in text, phi


async def upcoming(cfg, patient_id, tmp_path):
    """The patient's appointments as the interface engine has them."""
    from asterisk_agent.ehr.link import EhrLink

    own = dataclasses.replace(cfg, ehr=dataclasses.replace(
        cfg.ehr, outbox_file=tmp_path / "outbox.sqlite3"))
    async with EhrLink(own) as link:
        return await link.upcoming_appointments(patient_id)
