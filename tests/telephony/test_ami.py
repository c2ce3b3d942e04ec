"""The AMI client: whether anybody can take a call, and the agent's live calls.

The pure parts (device states, queue members, the rows of `calls`) first; then
the client over real TCP on loopback against FakeAsterisk, which stands in for
Asterisk at the AMI protocol level only (the banner, Login, and the replies to
the actions the agent sends, as Asterisk frames them).  It knows nothing of
calls or phones beyond what a test tells it; the client against the real
sandbox Asterisk is in test_ami_live.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest

from asterisk_agent.config import Ami
from asterisk_agent.telephony.ami import (
    ACTION_CLASSES,
    AmiClient,
    AmiError,
    anyone,
    call_row,
    can_take,
    member_can_take,
    queue_members,
    refused_actions,
    seconds,
    state_name,
)
from asterisk_agent.telephony.calls_cli import table

SECRET = "s3cret-for-tests"
# caller IDs of the fake channels: none of these may reach a row of `calls`
CALLER_NUMBER, CALLER_NAME = "5550142", "Jane Testpatient"
CONNECTED_NUMBER, CONNECTED_NAME = "5550199", "John Relative"


# --- pure logic ------------------------------------------------------------------


@pytest.mark.parametrize("status, name", [
    ("0", "UNKNOWN"), ("1", "NOT_INUSE"), ("2", "INUSE"), ("3", "BUSY"), ("4", "INVALID"),
    ("5", "UNAVAILABLE"), ("6", "RINGING"), ("7", "RINGINUSE"), ("8", "ONHOLD"),
    (1, "NOT_INUSE"), (" 2 ", "INUSE"), ("9", "UNKNOWN"), ("-1", "UNKNOWN"), ("", "UNKNOWN"),
    ("free", "UNKNOWN"),
])
def test_queue_member_status_numbers_are_asterisk_device_states(status, name):
    assert state_name(status) == name


@pytest.mark.parametrize("state, free", [
    ("NOT_INUSE", True), ("not_inuse", True),
    ("INUSE", False), ("BUSY", False), ("INVALID", False), ("UNAVAILABLE", False),
    ("RINGING", False), ("RINGINUSE", False), ("ONHOLD", False),
    ("UNKNOWN", None), ("", None), ("SOMETHING_NEW", None),
])
def test_only_a_phone_not_in_use_can_take_a_call(state, free):
    assert can_take(state) is free


@pytest.mark.parametrize("member, free", [
    ({"Status": "1", "Paused": "0", "InCall": "0"}, True),
    ({"Status": "1", "Paused": "1", "InCall": "0"}, False),   # on a break
    ({"Status": "1", "Paused": "0", "InCall": "1"}, False),   # on a queue call
    ({"Status": "2", "Paused": "0"}, False),                  # on another call
    ({"Status": "5", "Paused": "0"}, False),                  # phone not registered
    ({"Status": "6", "Paused": "0"}, False),                  # ringing already
    ({"Status": "0", "Paused": "0"}, None),                   # Asterisk does not know
    ({"Status": "1"}, None),                                  # no Paused: cannot tell
    ({"Status": "1", "Paused": "maybe"}, None),
])
def test_a_queue_member_can_take_a_call_when_free_and_not_paused(member, free):
    assert member_can_take(member) is free


@pytest.mark.parametrize("answers, answer", [
    ([True], True), ([False, True], True), ([None, True], True),
    ([False, False], False), ([], False),
    ([False, None], None), ([None], None),
])
def test_anyone_free_is_enough_and_unknown_is_not_nobody(answers, answer):
    assert anyone(answers) is answer


def test_queue_members_of_a_queue_status_reply():
    reply = [{"Response": "Success", "EventList": "start"},
             {"Event": "QueueParams", "Queue": "front-desk"},
             {"Event": "QueueMember", "Queue": "front-desk", "Name": "Desk 1", "Status": "1"},
             {"Event": "QueueParams", "Queue": "billing"},
             {"Event": "QueueMember", "Queue": "billing", "Name": "Billing", "Status": "1"},
             {"Event": "QueueStatusComplete", "EventList": "Complete"}]
    assert [m["Name"] for m in queue_members(reply, "front-desk")] == ["Desk 1"]
    assert queue_members(reply[:1] + reply[-1:], "front-desk") is None  # no such queue
    assert queue_members(reply[:2] + reply[-1:], "front-desk") == []    # nobody in it


def test_durations_are_seconds():
    assert seconds("00:01:05") == 65 and seconds("12:00:00") == 43200
    assert seconds("") is None and seconds("1:2:3") is None and seconds("00:99:00") is None


def channel(**fields) -> dict:
    """A CoreShowChannel event as Asterisk 22 sends it, caller IDs included."""
    event = {"Event": "CoreShowChannel", "Channel": "PJSIP/test-phone-00000001",
             "ChannelState": "6", "ChannelStateDesc": "Up",
             "CallerIDNum": CALLER_NUMBER, "CallerIDName": CALLER_NAME,
             "ConnectedLineNum": CONNECTED_NUMBER, "ConnectedLineName": CONNECTED_NAME,
             "Language": "en", "AccountCode": "", "Context": "ai-agent", "Exten": "s",
             "Priority": "5", "Uniqueid": "1795316401.6", "Linkedid": "1795316401.6",
             "Application": "Stasis", "ApplicationData": "ai-agent,direct,en",
             "Duration": "00:00:42", "BridgeId": "b1c2"}
    event.update(fields)
    return event


def test_a_row_of_calls_keeps_ids_and_states_and_drops_phi():
    row = call_row(channel(), "ai-agent")
    assert row == {"id": "1795316401.6", "call": "1795316401.6", "tech": "PJSIP", "state": "Up",
                   "seconds": 42, "application": "Stasis", "context": "ai-agent",
                   "bridged": True}
    # a dialled number (outbound: the patient's) and the application's arguments stay out too
    dialled = call_row(channel(Context="ai-agent-operator", Application="Dial",
                               ApplicationData=f"PJSIP/{CALLER_NUMBER}@trunk,30",
                               Exten=CALLER_NUMBER, Channel=f"Local/{CALLER_NUMBER}@x-0001;1",
                               BridgeId=""), "ai-agent")
    assert dialled["bridged"] is False and dialled["tech"] == "Local"
    for r in (row, dialled):
        text = json.dumps(r)
        for phi in (CALLER_NUMBER, CALLER_NAME, CONNECTED_NUMBER, CONNECTED_NAME):
            assert phi not in text


@pytest.mark.parametrize("fields, ours", [
    ({}, True),                                                           # Stasis(ai-agent)
    ({"ApplicationData": "ai-agent"}, True),
    ({"Context": "ai-agent-ivr", "Application": "WaitExten", "ApplicationData": "5"}, True),
    ({"Context": "ai-agent-outbound", "Application": "AMD", "ApplicationData": ""}, True),
    ({"Context": "from-trunk", "ApplicationData": "other-app,x"}, False),  # another ARI app
    ({"Context": "sandbox-front-desk", "Application": "Playback"}, False),
    ({"Event": "CoreShowChannelsComplete"}, False),
])
def test_only_the_agents_channels_are_rows(fields, ours):
    assert (call_row(channel(**fields), "ai-agent") is not None) is ours


def test_the_write_classes_each_action_needs():
    assert refused_actions("reporting") == []
    assert refused_actions("system, call") == []
    assert refused_actions("all") == []
    assert refused_actions("call") == ["CoreShowChannels"]
    assert refused_actions("system") == ["Getvar"]
    assert refused_actions("") == ["Getvar", "CoreShowChannels"]
    assert ACTION_CLASSES["QueueStatus"] == ()  # any logged-in user


# --- against a stand-in for Asterisk over TCP -------------------------------------


def frame(*pairs: tuple[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n"


class FakeAsterisk:
    """Stands in for Asterisk at the AMI protocol level only, over real TCP on
    loopback: the banner, Login, and replies to Getvar DEVICE_STATE(),
    QueueStatus, CoreShowChannels and Ping framed as Asterisk frames them.

    `devices`, `queues` and `channels` are what it answers from; `misbehave`
    maps an action name to what to do at its next occurrences instead:
    "drop" (close the connection), "silent" (never answer), "garbage" (bytes
    that are no AMI), "unreadable" (a message panoramisk fails on), "hollow"
    (a bare Success, none of the fields or events that should come with it) or
    "nonsense" (well framed, meaningless values).
    """

    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.devices: dict[str, str] = {}
        self.queues: dict[str, list[dict]] = {}
        self.channels: list[dict] = []
        self.misbehave: dict[str, list[str]] = {}
        self.banner = b"Asterisk Call Manager/9.0.0\r\n"
        self.logins = 0
        self.actions: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._sessions: set[asyncio.Task] = set()

    async def start(self) -> FakeAsterisk:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        # each session ends on its own once its connection is closed
        await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._sessions.add(asyncio.current_task())
        writer.write(self.banner)
        try:
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
                name = headers.get("Action", "")
                self.actions.append(name)
                todo = self.misbehave.get(name)
                if todo:
                    how = todo.pop(0)
                    if how == "drop":
                        return
                    if how == "silent":
                        continue
                    if how == "garbage":
                        writer.write(b"\x00\xff\xfe<html>502 Bad Gateway</html>\n\n\r\n\r\n")
                        continue
                    if how == "unreadable":
                        # an event with two names: panoramisk's reader fails on it
                        writer.write(frame(("Event", "QueueMember"), ("Event", "Hangup")))
                        continue
                    if how == "hollow":
                        writer.write(frame(("Response", "Success"),
                                           ("ActionID", headers["ActionID"])))
                        continue
                    if how == "nonsense":
                        self._reply(writer, headers, nonsense=True)
                        continue
                if not self._reply(writer, headers):
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._sessions.discard(asyncio.current_task())
            writer.close()

    def _reply(self, writer, headers: dict, nonsense: bool = False) -> bool:
        """Answer one action as Asterisk would; False: close the connection."""
        name, aid = headers.get("Action", ""), headers.get("ActionID", "")
        ok = (("Response", "Success"), ("ActionID", aid))
        if name == "Login":
            if headers.get("Username") != "asterisk-agent" or headers.get("Secret") != self.secret:
                writer.write(frame(("Response", "Error"), ("ActionID", aid),
                                   ("Message", "Authentication failed")))
                return False
            self.logins += 1
            writer.write(frame(*ok, ("Message", "Authentication accepted")))
            writer.write(frame(("Event", "FullyBooted"), ("Privilege", "system,all"),
                               ("Status", "Fully Booted")))
        elif name == "Getvar":
            device = headers.get("Variable", "")[len("DEVICE_STATE("):-1]
            value = "LUNCH_BREAK" if nonsense else self.devices.get(device, "INVALID")
            writer.write(frame(*ok, ("Variable", headers.get("Variable", "")), ("Value", value)))
        elif name == "QueueStatus":
            queue = headers.get("Queue", "")
            writer.write(frame(*ok, ("EventList", "start"),
                               ("Message", "Queue status will follow")))
            if queue in self.queues:
                writer.write(frame(("Event", "QueueParams"), ("Queue", queue), ("Max", "0"),
                                   ("ActionID", aid)))
                for m in self.queues[queue]:
                    fields = {"Status": "?", "Paused": "perhaps"} if nonsense else m
                    writer.write(frame(("Event", "QueueMember"), ("Queue", queue),
                                       *fields.items(), ("ActionID", aid)))
            writer.write(frame(("Event", "QueueStatusComplete"), ("ActionID", aid),
                               ("EventList", "Complete"), ("ListItems", "1")))
        elif name == "CoreShowChannels":
            writer.write(frame(*ok, ("EventList", "start"), ("Message", "Channels will follow")))
            for c in self.channels:
                writer.write(frame(*c.items(), ("ActionID", aid)))
            writer.write(frame(("Event", "CoreShowChannelsComplete"), ("ActionID", aid),
                               ("EventList", "Complete"), ("ListItems", str(len(self.channels)))))
        elif name == "Ping":
            writer.write(frame(*ok, ("Ping", "Pong")))
        else:
            writer.write(frame(("Response", "Error"), ("ActionID", aid),
                               ("Message", "Invalid/unknown command")))
        return True


@pytest.fixture
async def asterisk():
    fake = await FakeAsterisk().start()
    yield fake
    await fake.stop()


def settings(port: int, **kw) -> Ami:
    kw.setdefault("timeout", 1.0)
    return Ami(host="127.0.0.1", port=port, username="asterisk-agent",
               secret_file=Path("/nonexistent/ami.secret"), **kw)


def client(port: int, secret: str = SECRET, **kw) -> AmiClient:
    return AmiClient(settings(port, **kw), secret, app="ai-agent")


def ami_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "asterisk_agent.ami" and r.levelno == logging.WARNING]


async def test_a_free_phone_can_take_the_call(asterisk):
    asterisk.devices = {"PJSIP/desk1": "INUSE", "PJSIP/desk2": "NOT_INUSE"}
    async with client(asterisk.port, operator_devices=("PJSIP/desk1", "PJSIP/desk2")) as ami:
        assert await ami.can_take_call("operator") is True
        assert await ami.device_state("PJSIP/desk1") == "INUSE"
    assert asterisk.logins == 1  # one login for all the questions


async def test_busy_or_unregistered_phones_cannot(asterisk):
    asterisk.devices = {"PJSIP/desk1": "INUSE", "PJSIP/desk2": "UNAVAILABLE"}
    async with client(asterisk.port, operator_devices=("PJSIP/desk1", "PJSIP/desk2")) as ami:
        assert await ami.can_take_call("operator") is False
        # a phone Asterisk does not know (INVALID) is nobody either
        asterisk.devices = {"PJSIP/desk1": "INUSE"}
        assert await ami.can_take_call("operator") is False
        # a state Asterisk cannot tell is not "nobody": the caller is put through
        asterisk.devices = {"PJSIP/desk1": "INUSE", "PJSIP/desk2": "UNKNOWN"}
        assert await ami.can_take_call("operator") is None


async def test_a_queue_member_not_paused_and_free_can_take_the_call(asterisk):
    asterisk.queues = {"front-desk": [
        {"Name": "Desk 1", "Location": "PJSIP/desk1", "Status": "1", "Paused": "1",
         "InCall": "0"},
        {"Name": "Desk 2", "Location": "PJSIP/desk2", "Status": "1", "Paused": "0",
         "InCall": "0"}]}
    async with client(asterisk.port, operator_queue="front-desk") as ami:
        assert await ami.can_take_call("operator") is True
        asterisk.queues["front-desk"][1]["Status"] = "2"   # desk 2 takes another call
        assert await ami.can_take_call("operator") is False
        asterisk.queues["front-desk"] = []                  # everybody logged out
        assert await ami.can_take_call("operator") is False
        # on-call is asked about its own queue, which Asterisk does not have
        assert await ami.can_take_call("on-call") is None  # nothing configured for it


async def test_a_queue_asterisk_does_not_have_cannot_be_told(asterisk, caplog):
    async with client(asterisk.port, oncall_queue="no-such-queue") as ami:
        assert await ami.can_take_call("on-call") is None
    assert any("no queue 'no-such-queue'" in w for w in ami_warnings(caplog))


async def test_nothing_to_ask_about_asks_nothing(asterisk):
    async with client(asterisk.port) as ami:
        assert await ami.can_take_call("operator") is None
        assert await ami.can_take_call("on-call") is None
        with pytest.raises(ValueError):
            await ami.can_take_call("janitor")
    assert asterisk.logins == 0 and asterisk.actions == []


async def test_a_wrong_secret_is_none_and_says_why_once(asterisk, caplog):
    async with client(asterisk.port, secret="wrong", operator_devices=("PJSIP/desk1",)) as ami:
        assert await ami.can_take_call("operator") is None
        assert await ami.can_take_call("operator") is None
        with pytest.raises(AmiError, match="refused the login of 'asterisk-agent'"):
            await ami.connect()
    warnings = ami_warnings(caplog)
    assert len(warnings) == 1 and "Authentication failed" in warnings[0]
    assert "wrong" not in warnings[0]  # never the secret


async def test_ami_down_is_none_at_once_and_logged_once_per_outage(caplog):
    fake = await FakeAsterisk().start()
    port = fake.port
    await fake.stop()   # nothing listens there now
    async with client(port, operator_devices=("PJSIP/desk1",)) as ami:
        started = time.monotonic()
        assert await ami.can_take_call("operator") is None
        assert await ami.can_take_call("operator") is None
        assert time.monotonic() - started < 1.0, "a refused connection must not wait"
    assert len(ami_warnings(caplog)) == 1


async def test_ami_dropping_mid_check_is_none_then_the_next_check_reconnects(asterisk, caplog):
    caplog.set_level(logging.INFO, logger="asterisk_agent.ami")
    asterisk.devices = {"PJSIP/desk1": "NOT_INUSE"}
    asterisk.misbehave = {"Getvar": ["drop"]}
    async with client(asterisk.port, operator_devices=("PJSIP/desk1",), timeout=5.0) as ami:
        started = time.monotonic()
        assert await ami.can_take_call("operator") is None
        assert time.monotonic() - started < 2.0, "a lost connection is noticed, not waited out"
        assert await ami.can_take_call("operator") is True
    assert asterisk.logins == 2
    assert len(ami_warnings(caplog)) == 1
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_asterisk_restarting_between_checks(asterisk):
    """The connection goes while nobody is asking: the next check logs in again."""
    asterisk.devices = {"PJSIP/desk1": "NOT_INUSE"}
    async with client(asterisk.port, operator_devices=("PJSIP/desk1",)) as ami:
        assert await ami.can_take_call("operator") is True
        for w in list(asterisk._writers):
            w.close()
        await asyncio.sleep(0.1)
        assert await ami.can_take_call("operator") is True
    assert asterisk.logins == 2


async def test_a_silent_ami_times_out_to_none(asterisk, caplog):
    asterisk.misbehave = {"Getvar": ["silent"]}
    asterisk.devices = {"PJSIP/desk1": "NOT_INUSE"}
    async with client(asterisk.port, operator_devices=("PJSIP/desk1",), timeout=0.3) as ami:
        started = time.monotonic()
        assert await ami.can_take_call("operator") is None
        assert time.monotonic() - started < 1.0
        assert await ami.can_take_call("operator") is True  # a fresh connection
    assert "no answer within 0.3 s" in ami_warnings(caplog)[0]


async def test_garbage_instead_of_ami_is_none(caplog):
    """A server that speaks something else (a web server on the AMI port)."""
    async def web(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff garbage \r\n\r\n")
        await writer.drain()
        await reader.read()   # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(web, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        async with client(port, operator_devices=("PJSIP/desk1",), timeout=0.3) as ami:
            assert await ami.can_take_call("operator") is None
    finally:
        server.close()
    assert len(ami_warnings(caplog)) == 1


@pytest.mark.parametrize("how", ["garbage", "unreadable", "hollow", "nonsense"])
async def test_garbage_in_a_reply_is_none_and_the_next_check_works(asterisk, how):
    asterisk.queues = {"front-desk": [{"Name": "Desk 1", "Status": "1", "Paused": "0",
                                       "InCall": "0"}]}
    asterisk.devices = {"PJSIP/desk1": "INUSE"}
    asterisk.misbehave = {"QueueStatus": [how], "Getvar": [how]}
    async with client(asterisk.port, operator_queue="front-desk",
                      operator_devices=("PJSIP/desk1",), timeout=0.5) as ami:
        assert await ami.can_take_call("operator") is None
        assert await ami.can_take_call("operator") is True


async def test_live_calls_are_the_agents_channels_without_phi(asterisk):
    asterisk.channels = [
        channel(),
        channel(Channel="UnicastRTP/127.0.0.1:40002-0x7f", Uniqueid="1795316401.7",
                CallerIDNum="", CallerIDName="", Exten="", BridgeId="b1c2"),
        channel(Channel="PJSIP/desk1-00000002", Uniqueid="1795316401.9",
                Context="sandbox-front-desk", Application="Playback", ApplicationData="x"),
    ]
    async with client(asterisk.port) as ami:
        rows = await ami.live_calls()
    assert [r["id"] for r in rows] == ["1795316401.6", "1795316401.7"]
    assert [r["tech"] for r in rows] == ["PJSIP", "UnicastRTP"]
    text = json.dumps(rows)
    for phi in (CALLER_NUMBER, CALLER_NAME, CONNECTED_NUMBER, CONNECTED_NAME):
        assert phi not in text


async def test_live_calls_say_why_when_ami_cannot(asterisk):
    asterisk.misbehave = {"CoreShowChannels": ["drop"]}
    async with client(asterisk.port) as ami:
        with pytest.raises(AmiError, match="lost"):
            await ami.live_calls()
        assert await ami.live_calls() == []   # connected again
    async with client(asterisk.port, secret="wrong") as ami:
        with pytest.raises(AmiError, match="refused the login"):
            await ami.live_calls()


async def test_start_logs_in_before_the_first_check(asterisk, caplog):
    asterisk.devices = {"PJSIP/desk1": "NOT_INUSE"}
    ami = client(asterisk.port, operator_devices=("PJSIP/desk1",))
    ami.start()
    for _ in range(50):
        if asterisk.logins:
            break
        await asyncio.sleep(0.02)
    assert asterisk.logins == 1
    assert await ami.can_take_call("operator") is True
    await ami.close()
    assert asterisk.logins == 1


# --- asterisk-agent calls ---------------------------------------------------------


def agent_conf(tmp_path: Path, port: int, secret: str = SECRET, mode: int = 0o600,
               username: str = "asterisk-agent") -> Path:
    """A config with [ami] only, its secret file beside it."""
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(mode)
    conf = tmp_path / "asterisk-agent.conf"
    conf.write_text(f"[ami]\nport = {port}\nusername = {username}\nsecret_file = ami.secret\n")
    return conf


async def calls(*args: str) -> tuple[int, str, str]:
    """`asterisk-agent calls ...` as its own process (the fake keeps answering here)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asterisk_agent", "calls", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def test_the_table_of_calls():
    rows = [call_row(channel(), "ai-agent"),
            call_row(channel(Uniqueid="1795316401.7", BridgeId="", Duration="01:02:03"),
                     "ai-agent")]
    lines = table(rows).splitlines()
    assert lines[0].split() == ["ID", "CALL", "TECH", "STATE", "TIME", "CONTEXT",
                                "APPLICATION", "BRIDGED"]
    assert lines[1].split() == ["1795316401.6", "1795316401.6", "PJSIP", "Up", "0:42",
                                "ai-agent", "Stasis", "yes"]
    assert lines[2].split()[4] == "62:03" and lines[2].split()[-1] == "no"
    assert table([]) == "no live calls"


async def test_calls_prints_the_agents_calls_without_phi(asterisk, tmp_path):
    asterisk.channels = [channel(), channel(Context="from-trunk", ApplicationData="other,x",
                                            Uniqueid="1795316401.8")]
    conf = agent_conf(tmp_path, asterisk.port)
    status, out, err = await calls("-c", str(conf), "--json")
    assert status == 0, err
    assert [r["id"] for r in json.loads(out)] == ["1795316401.6"]
    status, text, err = await calls("-c", str(conf))
    assert status == 0 and "1795316401.6" in text and "1795316401.8" not in text
    for phi in (CALLER_NUMBER, CALLER_NAME, CONNECTED_NUMBER, CONNECTED_NAME):
        assert phi not in out + text + err


async def test_calls_without_ami_configured_exits_2(tmp_path):
    status, out, err = await calls("-c", str(agent_conf(tmp_path, 5038, username="")))
    assert (status, out) == (2, "") and "AMI is not configured" in err


async def test_calls_with_ami_unreachable_or_refusing_exits_2(asterisk, tmp_path):
    status, _, err = await calls("-c", str(agent_conf(tmp_path, asterisk.port, secret="wrong")))
    assert status == 2 and "refused the login" in err and "wrong" not in err
    await asterisk.stop()
    status, _, err = await calls("-c", str(agent_conf(tmp_path, asterisk.port)))
    assert status == 2 and f"cannot connect to 127.0.0.1:{asterisk.port}" in err


async def test_calls_refuses_a_secret_file_others_can_read(asterisk, tmp_path):
    status, _, err = await calls("-c", str(agent_conf(tmp_path, asterisk.port, mode=0o644)))
    assert status == 2 and "chmod 600" in err
    assert asterisk.logins == 0
