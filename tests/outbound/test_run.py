"""`asterisk-agent outbound run`: a campaign's calls placed through the sandbox PBX.

The patients are the sandbox's stand-ins (asterisk_agent/pbx/sandbox.py,
PATIENT_BEHAVIOURS): a number's last digit says what answers, a person who
confirms and answers by voice and keypad, somebody else, an answering
machine that records what it is told, a busy line or one that rings out.
Asterisk's own answering-machine detection (AMD) tells people from machines.
The EHR is tools/ehr-sim; what it received is read back from its journal.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

from asterisk_agent import config
from asterisk_agent.compliance.store import open_store
from asterisk_agent.dialog import practice
from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.mllp import LinkSettings, MllpClient
from asterisk_agent.ehr.schedule import FeedListener, Schedule
from asterisk_agent.pbx.sandbox import MACHINE_DIR_IN, Sandbox, chroot_path, patient_number
from asterisk_agent.speech.stt import SttPool, load_transcriber
from e2e import sandbox_conf_variant
from ehr.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]

# (patient, type, the stand-in's behaviour digit, the outcome, attempts)
CALLS = [
    ("MRN1001", "results", "1", "answered", 1),
    ("MRN1002", "post-op", "2", "answered", 1),
    ("MRN1003", "pre-op", "3", "answered", 1),
    ("MRN1005", "results", "1", "answered", 1),
    ("MRN1004", "post-op", "2", "answered", 1),
    ("MRN1001", "post-op", "4", "not-confirmed", 1),
    ("MRN1005", "post-op", "8", "transferred", 1),
    ("MRN1002", "results", "7", "machine", 1),
    ("MRN1003", "post-op", "7", "machine", 1),
    ("MRN1004", "results", "5", "busy", 3),
    ("MRN1005", "pre-op", "5", "busy", 3),
    ("MRN1001", "pre-op", "6", "no-answer", 3),
    ("MRN1002", "pre-op", "6", "no-answer", 3),
]
PHONES = {"MRN1001": "555-0101", "MRN1002": "555-0102", "MRN1003": "555-0103",
          "MRN1004": "555-0104", "MRN1005": "555-0105"}


def campaign_text() -> str:
    rows = ["patient,number,type"]
    rows += [f"{mrn},{patient_number(PHONES[mrn], digit)},{kind}" for mrn, kind, digit, _, _ in CALLS]
    # a bad row and a patient the EHR does not know: reported, the rest still run
    rows += ["MRN1003,911,results", "MRN9999,5550101001,results"]
    return "\n".join(rows) + "\n"


def sim_journal(ehr_engine) -> list[dict]:
    path = Path(ehr_engine.args[ehr_engine.args.index("--journal") + 1])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_a_campaign_of_21_calls_gets_an_outcome_for_each_patient(pbx, ehr_engine,
                                                                     sandbox_cfg, tmp_path):
    campaign = tmp_path / "post-op.csv"
    campaign.write_text(campaign_text())
    report = tmp_path / "report.csv"
    machine_dir = chroot_path(Sandbox(sandbox_cfg).root, MACHINE_DIR_IN)
    before_machine = set(machine_dir.glob("*.wav"))
    before_ehr = len(sim_journal(ehr_engine))
    since = time.time()
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "asterisk_agent", "outbound", "run", str(campaign),
         "--config", str(ROOT / "etc" / "sandbox.conf"), "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    log = run.stderr[-6000:]
    # 1: the bad row is named with its line, the good ones still ran
    assert run.returncode == 1, log
    assert "line 15: number 911 is outside the allowed dial patterns" in run.stderr
    rows = {int(r["line"]): r for r in csv.DictReader(io.StringIO(report.read_text()))}
    got = {line: (rows[line]["outcome"], int(rows[line]["attempts"])) for line in rows}
    want = {i: (outcome, attempts) for i, (_, _, _, outcome, attempts) in enumerate(CALLS, 2)}
    want[16] = ("not-in-ehr", 0)
    assert got == want, f"{got}\n{log}"
    calls = sum(n for _, n in got.values())
    assert calls == 21
    print(f"{calls} calls in {took:.0f} s")
    # pain 5: the safety message, then the on-call
    assert rows[8]["detail"] == "to the on-call (urgent)"

    # the post-op answers reached the chart: ORU^R01, pain 2, no concern
    oru = [m.parse(e["message"]) for e in sim_journal(ehr_engine)[before_ehr:]
           if "ORU^R01" in e["message"]]
    charted = {m._get(x, "PID", 3, 1, 1): [str(s(5)) for s in x.segments("OBX")] for x in oru}
    # (the patient put through with pain 5 has it charted too)
    assert charted == {"MRN1002": ["2", "none"], "MRN1004": ["2", "none"],
                       "MRN1005": ["5"]}, charted

    # every answered call was recorded; the recordings of the calls that had
    # ended went into the store before the run ended; the call put through to
    # the on-call goes on after it (the stand-in holds it a minute), so its
    # recording is still being written and is left to the agent's sweep
    with open_store(sandbox_cfg.store_path, sandbox_cfg.store_key_path, create=False) as store:
        recorded = store.query("SELECT call_id, length(audio) FROM recordings "
                               "WHERE call_id LIKE 'outbound-%' AND created >= ?", (since,))
    left = sorted(p for p in sandbox_cfg.recordings_path.glob("outbound-*"))
    ended = sum(1 for outcome, _ in got.values()
                if outcome in ("answered", "not-confirmed", "machine"))
    assert len(recorded) == ended == 8, (recorded, left, log)
    assert all(size > 8000 for _, size in recorded), recorded
    assert len(left) == 1 and time.time() - left[0].stat().st_mtime < 3, \
        f"left behind, and not a call still going on: {left}"
    assert "recordings: 1 of calls still going on" in run.stderr, log

    # the machines recorded a call-back request, with no health details
    messages = sorted(set(machine_dir.glob("*.wav")) - before_machine)
    assert len(messages) == 2, messages
    stt = SttPool(load_transcriber(sandbox_cfg.stt.for_language("en")), workers=1)
    try:
        for path in messages:
            said = asyncio.run(stt.transcribe(read_wav(path), 8000)).lower()
            assert "call us back" in said and "riverside" in said, said
            assert not any(w in said for w in ("pain", "procedure", "result", "surgery")), said
    finally:
        stt.close()


async def test_yesterdays_procedures_from_the_siu_feed_get_their_post_op_calls(
        pbx, ehr_engine, sandbox_cfg, tmp_path):
    """The engine pushes its SIU feed to the agent's listener ([ehr] feed_port),
    which keeps the local schedule; `outbound run --from-schedule post-op` calls
    the patients whose procedure was yesterday, at the phone on their chart."""
    feed_port = free_port()
    conf = sandbox_conf_variant(tmp_path, {
        "[ehr]\n": f"[ehr]\nfeed_port = {feed_port}\n"
                   f"schedule_file = {tmp_path / 'schedule.sqlite3'}\n"})
    cfg = config.load(conf)
    practice_now = dt.datetime.now(practice.load(cfg.practice_path).timezone)
    yesterday = (practice_now - dt.timedelta(days=1)).replace(hour=9, minute=0, second=0,
                                                              microsecond=0, tzinfo=None)
    visits = [("MRN1002", yesterday, "Knee surgery"),
              ("MRN1004", yesterday.replace(hour=11), "Cataract procedure"),
              ("MRN1001", yesterday.replace(hour=10), "checkup"),            # no procedure
              ("MRN1005", yesterday + dt.timedelta(days=1), "surgery")]      # today
    engine = m.Facility("EHR", "PRACTICE", "ASTERISK-AGENT", "PRACTICE")
    schedule = Schedule(cfg.in_state_dir(cfg.ehr.schedule_file), {})
    listener = FeedListener(schedule, port=feed_port)
    await listener.start()
    try:
        async with MllpClient(LinkSettings("127.0.0.1", feed_port)) as feed:
            for mrn, start, reason in visits:
                # the engine's SIU names the patient; the schedule keeps the MRN only
                a = m.Appointment(f"P-{mrn}", m.Patient(mrn, "Doe", "Pat"), "DRLEE", start, 60,
                                  reason)
                assert (await feed.send(m.siu(m.header(engine), "S12", a))).code == "AA"
    finally:
        await listener.close()
        schedule.close()
    before_ehr = len(sim_journal(ehr_engine))
    report = tmp_path / "report.csv"
    run = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "asterisk_agent", "outbound", "run", "--from-schedule", "post-op",
        "--config", str(conf), "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-6000:]
    assert f"2 post-op call(s) for the procedures of {yesterday.date()}" in run.stderr
    rows = [(r["line"], r["patient"], r["outcome"]) for r in
            csv.DictReader(io.StringIO(report.read_text()))]
    assert rows == [("1", "MRN1002", "answered"), ("2", "MRN1004", "answered")], (
        f"{rows}\n{run.stderr[-6000:]}")
    oru = [m.parse(e["message"]) for e in sim_journal(ehr_engine)[before_ehr:]
           if "ORU^R01" in e["message"]]
    assert sorted(m._get(x, "PID", 3, 1, 1) for x in oru) == ["MRN1002", "MRN1004"]
