"""The AMI client against the real sandbox Asterisk, configured by the project's
own etc/asterisk/manager.conf and etc/sandbox.conf [ami].

Calls come from the scripted SIP caller (asterisk_agent/caller) with a caller
ID of its own, which must never show in the rows of `asterisk-agent calls`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time

import pytest

from asterisk_agent.caller.sip import Call
from asterisk_agent.telephony.ami import AmiClient, AmiError, read_secret

# the test caller's caller ID: PHI as far as these tests are concerned
CALLER_NUMBER, CALLER_NAME = "5550142", "Jane Testpatient"
IVR = "100"      # ai-agent-demo: the project's menu (ai-agent-ivr), no agent needed
AGENT = "200"    # ai-agent-demo: straight to Stasis(ai-agent)


async def rows_until(ami: AmiClient, wanted, timeout: float = 10.0) -> list[dict]:
    """live_calls() until one row is `wanted` (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await ami.live_calls(timeout=5)
        if any(wanted(r) for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"no such row within {timeout:g} s: {rows}")
        await asyncio.sleep(0.2)


def assert_no_phi(text: str) -> None:
    assert CALLER_NUMBER not in text and CALLER_NAME not in text


async def test_the_agent_logs_in_with_the_projects_manager_conf(pbx, sandbox_cfg):
    async with AmiClient.from_config(sandbox_cfg) as ami:
        await asyncio.wait_for(ami.connect(), 10)
        assert isinstance(await ami.live_calls(timeout=5), list)
    # a wrong secret is refused (Asterisk answers a failed login after a second)
    async with AmiClient(sandbox_cfg.ami, "not-the-secret", app=sandbox_cfg.ari.app) as wrong:
        with pytest.raises(AmiError, match="refused the login"):
            await asyncio.wait_for(wrong.connect(), 10)


async def test_phones_asterisk_does_not_have_cannot_take_a_call(pbx, sandbox_cfg):
    """DEVICE_STATE() through Getvar: a phone Asterisk does not have is INVALID,
    nobody; the sandbox's stand-in front desk (a Local channel to an extension
    that exists) is NOT_INUSE, free."""
    settings = dataclasses.replace(sandbox_cfg.ami, timeout=5.0,
                                   operator_devices=("Local/s@sandbox-front-desk",),
                                   oncall_devices=("PJSIP/no-such-phone",))
    secret = read_secret(sandbox_cfg.ami_secret_path)
    async with AmiClient(settings, secret, app=sandbox_cfg.ari.app) as ami:
        assert await ami.device_state("PJSIP/no-such-phone") == "INVALID"
        assert await ami.can_take_call("on-call") is False
        assert await ami.device_state("Local/s@sandbox-front-desk") == "NOT_INUSE"
        assert await ami.can_take_call("operator") is True


async def test_queue_members_say_whether_a_person_can_take_the_call(pbx, sandbox_cfg):
    """The sandbox's queues (sandbox.py, queues.conf): the front desk has a free
    member, sandbox-nobody one whose state is a phone Asterisk does not have.  QueueStatus is
    allowed to the agent's user: a missing queue is None, not "Permission denied"."""
    settings = dataclasses.replace(sandbox_cfg.ami, timeout=5.0,
                                   operator_queue="sandbox-front-desk",
                                   oncall_queue="sandbox-nobody")
    secret = read_secret(sandbox_cfg.ami_secret_path)
    async with AmiClient(settings, secret, app=sandbox_cfg.ari.app) as ami:
        members = await asyncio.wait_for(ami.queue_status("sandbox-front-desk"), 10)
        assert [m.get("Paused") for m in members] == ["0"], members
        assert await ami.can_take_call("operator") is True
        assert await ami.can_take_call("on-call") is False
        assert await asyncio.wait_for(ami.queue_status("no-such-queue"), 10) is None


async def test_live_calls_list_a_real_call_without_its_caller_id(pbx, sandbox_cfg):
    async with Call("127.0.0.1", sandbox_cfg.sandbox.sip_port, user=CALLER_NUMBER,
                    display_name=CALLER_NAME) as call:
        await call.dial(IVR, timeout=5)
        try:
            async with AmiClient.from_config(sandbox_cfg) as ami:
                rows = await rows_until(ami, lambda r: r["context"] == "ai-agent-ivr")
            row = next(r for r in rows if r["context"] == "ai-agent-ivr")
            assert row["tech"] == "PJSIP" and row["state"] == "Up" and not row["bridged"]
            assert row["id"] and row["call"] and row["seconds"] is not None
            assert_no_phi(json.dumps(rows))
            # the same through the command, as an administrator runs it
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "asterisk_agent", "calls", "-c",
                str(sandbox_cfg.path), "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            assert row["id"] in [r["id"] for r in json.loads(out)]
            assert_no_phi(out.decode() + err.decode())
        finally:
            await call.hangup()


async def test_live_calls_list_a_call_in_the_agents_stasis_app(agent, sandbox_cfg):
    async with Call("127.0.0.1", sandbox_cfg.sandbox.sip_port, user=CALLER_NUMBER,
                    display_name=CALLER_NAME) as call:
        await call.dial(AGENT, timeout=10)
        try:
            async with AmiClient.from_config(sandbox_cfg) as ami:
                def in_stasis(r: dict) -> bool:
                    return (r["tech"], r["application"], r["context"]) == \
                        ("PJSIP", "Stasis", "ai-agent")
                rows = await rows_until(ami, in_stasis)
            # the agent hears the caller through a Snoop channel, bridged to its
            # externalMedia (UnicastRTP) channel; the caller's own channel stays out
            # of the bridge
            rows = await rows_until(ami, lambda r: r["tech"] == "UnicastRTP" and r["bridged"])
            techs = {r["tech"]: r for r in rows}
            assert techs["Snoop"]["bridged"] and not techs["PJSIP"]["bridged"], rows
            assert_no_phi(json.dumps(rows))
        finally:
            await call.hangup()
