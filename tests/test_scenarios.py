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

from e2e import call, explain
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


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path, agent, ehr_engine, sandbox_cfg, tmp_path):
    data = yaml.safe_load(path.read_text())
    ehr = data.get("ehr", {})
    asyncio.run(prepare(sandbox_cfg, ehr.get("before", []), tmp_path))
    seen = len(accepted(ehr_engine))
    before = len(agent.log())
    result = call(sandbox_cfg, load_scenario(path), tmp_path)
    assert result["passed"], explain(result) + "\nagent log:\n" + agent.log()[before:][-3000:]
    problems = end_state(sandbox_cfg, ehr_engine, ehr["after"], seen, tmp_path)
    assert not problems, "\n".join(problems) + "\nagent log:\n" + agent.log()[before:][-3000:]


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
