"""The scenario suite: every call in tests/scenarios/ through the real call path.

Each YAML file is one call in the `asterisk-agent call` format (real SIP, real
RTP audio, the real Asterisk, the running agent with its default models),
plus an `ehr` block: what the interface engine (tools/ehr-sim) holds before
the call, set up through the EHR itself, and what it must hold after.  A
scenario passes when the caller heard what it expected AND the engine ends in
the stated state: the messages it accepted during the call (by type, patient
and content, from its journal) and the patient's upcoming appointments.

    ehr:
      before:
        - {clear: MRN1002}      # cancel the patient's upcoming appointments
        - {book: MRN1002}       # book their next open slot with Dr Lee
      after:
        - {sent: "SRM^S03", patient: MRN1002, count: 1, contains: DRLEE}
        - {sent: any, count: 0}               # the call changed nothing
        - {appointments: MRN1002, count: 1}
      must_pass: "why"          # optional: this call may never go astray

The issue's target is that 90% of the calls reach their end state, since the
caller here is synthetic speech heard by a small Whisper model: a call whose
dialogue goes astray (the agent mishears a name twice and hands the caller to
a person) is reported as an expected failure with what went wrong, and the
last test holds the share of calls that went right to the target.  Two things
are held for every call, without exception: the engine never accepts a change
the end state does not name (a wrong patient, an unconfirmed booking), and a
call marked `must_pass` (red flags, injection attempts) goes exactly as
written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml

from e2e import agent_files, call, explain, phi_leaks
from asterisk_agent.caller.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("*.yaml"))
SEED = yaml.safe_load((ROOT / "etc" / "ehr-seed.yaml").read_text())
# how long a change may take to reach the engine after the caller heard about it
DELIVERY_WAIT_S = 15.0


def test_the_suite_has_at_least_30_scenarios_and_every_one_states_its_end():
    assert len(SCENARIOS) >= 30, [p.name for p in SCENARIOS]
    for path in SCENARIOS:
        data = yaml.safe_load(path.read_text())
        assert data.get("ehr", {}).get("after"), f"{path.name}: no ehr.after end state"


# the share of calls that must reach their end state (the target)
TARGET = 0.90
# scenario -> what went wrong ("" when the call reached its end state)
OUTCOMES: dict[str, str] = {}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path, agent, ehr_engine, sandbox_cfg, tmp_path):
    data = yaml.safe_load(path.read_text())
    ehr = data.get("ehr", {})
    asyncio.run(prepare(sandbox_cfg, ehr.get("before", []), tmp_path))
    seen = len(accepted(ehr_engine))
    before = len(agent.log())
    result = call(sandbox_cfg, load_scenario(path), tmp_path)
    problems = end_state(sandbox_cfg, ehr_engine, ehr["after"], seen, tmp_path)
    log_tail = "\nagent log:\n" + agent.log()[before:][-3000:]
    wrong = unnamed_changes(accepted(ehr_engine)[seen:], ehr["after"])
    assert not wrong, ("the engine accepted changes the end state does not name:\n"
                       + "\n".join(wrong) + "\n" + explain(result) + log_tail)
    went_wrong = "\n".join(([] if result["passed"] else [explain(result)]) + problems)
    OUTCOMES[path.stem] = went_wrong
    if data.get("must_pass"):
        assert not went_wrong, f"must pass ({data['must_pass']}):\n{went_wrong}{log_tail}"
    elif went_wrong:
        print(went_wrong + log_tail)
        pytest.xfail(f"went astray (counted against the {TARGET:.0%} target): "
                     + went_wrong.splitlines()[0])


def test_at_least_90_percent_of_the_calls_reach_their_end_state():
    missing = [p.stem for p in SCENARIOS if p.stem not in OUTCOMES]
    assert not missing, f"run the whole scenario suite first; not run: {missing}"
    astray = {name: why.splitlines()[0] for name, why in OUTCOMES.items() if why}
    share = 1 - len(astray) / len(OUTCOMES)
    print(f"{len(OUTCOMES) - len(astray)} of {len(OUTCOMES)} calls reached their end state "
          f"({share:.0%}); astray: {astray}")
    assert share >= TARGET, (f"{share:.0%} of the calls reached their end state "
                             f"(target {TARGET:.0%}); astray:\n"
                             + "\n".join(f"  {k}: {v}" for k, v in astray.items()))


def test_no_patient_data_in_any_file_the_agent_wrote_during_the_suite(agent, sandbox_cfg):
    """After the whole suite: the agent's log and every file it keeps outside the
    encrypted store hold no patient's name, date of birth, phone number or MRN,
    and no plaintext recording is left in the recordings directory."""
    missing = [p.stem for p in SCENARIOS if p.stem not in OUTCOMES]
    assert not missing, f"run the whole scenario suite first; not run: {missing}"
    words = []
    for p in SEED["patients"]:
        born = p["birth_date"]
        words += [p["given"], p["family"], p["phone"], p["id"], born.isoformat(),
                  born.strftime("%m%d%Y"), born.strftime("%Y%m%d")]
    # and the names as the speech model writes them
    words += ["Anna", "Maya", "Lindquist"]
    leaks = phi_leaks(agent_files(agent, sandbox_cfg), words)
    assert not leaks, f"PHI in {len(leaks)} place(s):\n" + "\n".join(leaks[:30])
    # a call's recording is taken in a few seconds after it ends
    deadline = time.monotonic() + 3 * sandbox_cfg.recording.sweep_interval + 10
    while (left := sorted(sandbox_cfg.recordings_path.glob("*.wav"))) \
            and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not left, f"plaintext recordings left behind: {[p.name for p in left]}"


# ---- the engine's side


def patient(mrn: str):
    from asterisk_agent.ehr.messages import Patient

    for p in SEED["patients"]:
        if p["id"] == mrn:
            return Patient(p["id"], p["family"], p["given"], p["birth_date"])
    raise AssertionError(f"{mrn} is not in etc/ehr-seed.yaml")


def link_for(cfg, tmp_path):
    """An EhrLink of the test's own (its own outbox), to the same engine."""
    from asterisk_agent.ehr.link import EhrLink

    return EhrLink(dataclasses.replace(cfg, ehr=dataclasses.replace(
        cfg.ehr, outbox_file=tmp_path / "test-outbox.sqlite3")))


async def prepare(cfg, steps: list[dict], tmp_path) -> None:
    from asterisk_agent.ehr.link import new_placer_id
    from asterisk_agent.ehr.messages import Appointment

    async with link_for(cfg, tmp_path) as link:
        for step in steps:
            if "clear" in step:
                for a in await link.upcoming_appointments(step["clear"]):
                    outcome = await link.cancel(a)
                    assert outcome.confirmed, f"set-up: cancelling {a} not accepted: {outcome}"
            elif "book" in step:
                start = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(8))
                slot = (await link.open_slots(start, start + dt.timedelta(days=7), "DRLEE"))[0]
                outcome = await link.book(Appointment(new_placer_id(), patient(step["book"]),
                                                      slot.provider_id, slot.start,
                                                      slot.minutes, "followup"))
                assert outcome.confirmed, f"set-up: booking not accepted: {outcome}"
            else:
                raise AssertionError(f"unknown ehr.before step {step}")


def accepted(engine) -> list[str]:
    """Every change the engine accepted, in order (its journal holds no queries)."""
    path = Path(engine.args[engine.args.index("--journal") + 1])
    return [json.loads(line)["message"] for line in path.read_text().splitlines()
            if line.strip()]


def _kind(message: str) -> str:
    return message.split("\r", 1)[0].split("|")[8]


def _patient_of(message: str) -> str:
    pid = next((s for s in message.split("\r") if s.startswith("PID|")), "")
    fields = pid.split("|")
    return fields[3].split("^")[0] if len(fields) > 3 else ""


def _matching(sent: list[str], check: dict) -> list[str]:
    kind = check["sent"]
    return [m for m in sent
            if (kind == "any" or _kind(m).startswith(kind))
            and ("patient" not in check or _patient_of(m) == check["patient"])
            and ("contains" not in check or check["contains"].casefold() in m.casefold())]


def unnamed_changes(sent: list[str], checks: list[dict]) -> list[str]:
    """Changes the engine accepted that no `sent` check of the end state expects
    (by kind and patient: what a caller's message says is the dialogue's part),
    or more of them than it expects (a second booking)."""
    kinds = {i: {k: v for k, v in c.items() if k != "contains"}
             for i, c in enumerate(checks) if "sent" in c}
    room = {i: c["count"] for i, c in kinds.items()}
    wrong = []
    for m in sent:
        fits = next((i for i in room if room[i] > 0 and _matching([m], kinds[i])), None)
        if fits is None:
            wrong.append(f"{_kind(m)} for {_patient_of(m)}")
        else:
            room[fits] -= 1
    return wrong


def end_state(cfg, engine, checks: list[dict], seen: int, tmp_path) -> list[str]:
    """What differs from the stated end state (empty: all as stated)."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while True:
        sent = accepted(engine)[seen:]
        problems = []
        for check in checks:
            if "sent" in check:
                found = _matching(sent, check)
                if len(found) != check["count"]:
                    problems.append(f"{check}: {len(found)} such message(s) accepted during "
                                    f"the call (of {len(sent)}: {[_kind(m) for m in sent]})")
            elif "appointments" in check:
                async def count():
                    async with link_for(cfg, tmp_path) as link:
                        return len(await link.upcoming_appointments(check["appointments"]))
                n = asyncio.run(count())
                if n != check["count"]:
                    problems.append(f"{check}: the engine holds {n} upcoming appointment(s)")
            else:
                problems.append(f"unknown ehr.after check {check}")
        # a change said to be "recorded" may still be on its way from the outbox
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1.0)
