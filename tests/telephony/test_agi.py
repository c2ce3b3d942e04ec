"""The FastAGI entry over a real TCP socket on loopback: AGI(agi://.../ai-agent).

The peer in these tests is a scripted AGI client written here: it stands in
for Asterisk at the protocol level only (it sends the agi_ environment, reads
each command and answers "200 result=..." as Asterisk would).  The test
against a real Asterisk, with a real SIP call into the dialplan's
[ai-agent-agi], is the other one: test_agi_live.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from asterisk_agent import cli, config
from asterisk_agent.agent import Services
from asterisk_agent.compliance import egress
from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.journal import CallJournal
from asterisk_agent.compliance.store import open_store, write_key_file
from asterisk_agent.config import Config
from asterisk_agent.dialog import phrases, practice
from asterisk_agent.dialog.keypad import Keypad
from asterisk_agent.speech.tts import TtsPool
from asterisk_agent.telephony import agi
from asterisk_agent.telephony.agi import AgiError, AgiServer, parse_environment

ROOT = Path(__file__).resolve().parents[2]
FACTS = practice.load(ROOT / "etc" / "practice.conf")
KEYS = '"0123456789*#"'
# the caller ID of every test call: it must never reach a log line
NUMBER, NAME = "5550107788", "Jane Doe"


def environment(**changes: str | None) -> bytes:
    """An AGI environment as Asterisk 22 sends it for AGI(agi://127.0.0.1:4573/ai-agent,en)."""
    env = {
        "agi_network": "yes", "agi_network_script": "ai-agent",
        "agi_request": "agi://127.0.0.1:4573/ai-agent", "agi_channel": "PJSIP/caller-00000007",
        "agi_language": "en", "agi_type": "PJSIP", "agi_uniqueid": "1795316401.6",
        "agi_version": "22.10.0", "agi_callerid": NUMBER, "agi_calleridname": NAME,
        "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0",
        "agi_callingtns": "0", "agi_dnid": "300", "agi_rdnis": "unknown",
        "agi_context": "ai-agent-agi", "agi_extension": "s", "agi_priority": "4",
        "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "140089",
        "agi_arg_1": "en",
    }
    env.update(changes)
    lines = [f"{k}: {v}" for k, v in env.items() if v is not None]
    return ("\n".join(lines) + "\n\n").encode()


class Tone:
    """A voice that says everything as a short tone, and remembers what it said."""

    name = "tone"

    def __init__(self):
        self.said: list[str] = []

    def synthesize(self, text):
        self.said.append(text)
        t = np.arange(1600) / 8000
        return (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000


class Mute:
    def synthesize(self, text):
        raise RuntimeError("voice model missing")


class Asterisk:
    """A scripted FastAGI peer, standing in for Asterisk at the protocol level."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def dial(cls, server: AgiServer, env: bytes = b"") -> "Asterisk":
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        peer = cls(reader, writer)
        if env:
            await peer.send(env)
        return peer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), 5)
        assert line.endswith(b"\n"), f"expected a command, got {line!r}"
        return line.decode().rstrip("\n")

    async def reply(self, line: str) -> None:
        await self.send(line.encode() + b"\n")

    async def expect(self, command: str, reply: str) -> None:
        assert await self.command() == command
        await self.reply(reply)

    async def closed(self) -> bool:
        """True once the server has closed the connection, with nothing more sent."""
        rest = await asyncio.wait_for(self.reader.read(), 5)
        self.close()
        return rest == b""

    def reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashed peer does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def start(tmp_path):
    """start(ari_up=...) -> a listening AgiServer with a tone for a voice."""
    servers: list[AgiServer] = []

    async def start(ari_up: bool = False, voice=None, journal=None) -> AgiServer:
        cfg = Config()
        cfg = dataclasses.replace(cfg, sounds=dataclasses.replace(
            cfg.sounds, dir=tmp_path, asterisk_dir="/srv/sounds"))
        # the keypad menu screens nothing: no protocols
        s = Services(cfg=cfg, practice=FACTS, protocols=None, stt={},
                     tts={language: TtsPool(voice or Tone()) for language in ("en", "es")},
                     journal=journal)
        server = AgiServer(s, ari_connected=lambda: ari_up)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
        for pool in server.s.tts.values():
            pool.close()


def sound(server: AgiServer, text: str, language: str = "en") -> str:
    """The file Asterisk is told to play for `text` (its path as Asterisk sees it)."""
    return f"/srv/sounds/{server.prompts.path_of(text, language).stem}"


def counted(server: AgiServer, name: str, **labels: str) -> float:
    value = server.s.metrics.registry.get_sample_value(f"asterisk_agent_{name}_total", labels)
    return value or 0.0


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def handed_to_the_agent(server: AgiServer) -> None:
    """A good call while the agent is connected: Stasis through AGI, then done."""
    peer = await Asterisk.dial(server, environment())
    await peer.expect('EXEC "Stasis" "ai-agent,agi,en"', "200 result=0")
    await peer.expect('GET VARIABLE "STASISSTATUS"', "200 result=1 (SUCCESS)")
    assert await peer.closed()
    peer.close()


# --- the agent connected: the call goes to it -------------------------------------

async def test_with_the_agent_connected_the_call_runs_its_stasis_application(start):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server, environment())
    assert await peer.command() == 'EXEC "Stasis" "ai-agent,agi,en"'
    # Asterisk may say "Trying" before the result
    await peer.reply("100 result=0 Trying...")
    await peer.reply("200 result=0")
    await peer.expect('GET VARIABLE "STASISSTATUS"', "200 result=1 (SUCCESS)")
    # the agent let the call go: the session ends, the dialplan goes on from
    # wherever the agent sent the call
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 0
    # the agent counts the calls it takes itself
    assert server.s.metrics.registry.get_sample_value(
        "asterisk_agent_calls_total", {"outcome": "keypad, operator"}) is None


@pytest.mark.parametrize("changes, language", [
    ({"agi_arg_1": "es"}, "es"),
    ({"agi_arg_1": "es-MX"}, "es"),
    ({"agi_arg_1": None, "agi_language": "es"}, "es"),
    ({"agi_arg_1": "", "agi_language": "es_419"}, "es"),
    ({"agi_arg_1": "fr"}, "en"),  # not spoken here: [general] language
])
async def test_the_language_is_the_argument_else_the_channels(start, changes, language):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server, environment(**changes))
    assert await peer.command() == f'EXEC "Stasis" "ai-agent,agi,{language}"'
    peer.close()


async def test_stasis_failing_falls_through_to_the_keypad_menu(start):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server, environment())
    await peer.expect('EXEC "Stasis" "ai-agent,agi,en"', "200 result=0")
    await peer.expect('GET VARIABLE "STASISSTATUS"', "200 result=1 (FAILED)")
    await peer.expect("ANSWER", "200 result=0")
    greeting = Keypad(FACTS, "en").start().text
    assert await peer.command() == f'STREAM FILE "{sound(server, greeting)}" {KEYS}'
    peer.close()


async def test_a_caller_who_leaves_the_agent_by_hanging_up_ends_the_session(start):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server, environment())
    await peer.expect('EXEC "Stasis" "ai-agent,agi,en"', "200 result=-1")
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 0


# --- the agent not connected: the keypad menu ---------------------------------------

async def test_keypad_menu_zero_puts_the_caller_through_to_the_operator(start):
    server = await start()
    say = phrases.of("en")
    menu = Keypad(FACTS, "en").start().text
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    await peer.expect(f'STREAM FILE "{sound(server, menu)}" {KEYS}', "200 result=0 endpos=1600")
    await peer.expect('WAIT FOR DIGIT "5000"', "200 result=48")  # "0"
    # the transfer message plays whole: no key cuts it short
    await peer.expect(f'STREAM FILE "{sound(server, say.transfer)}" ""', "200 result=0 endpos=1600")
    await peer.expect('SET CONTEXT "ai-agent-operator"', "200 result=0")
    await peer.expect('SET EXTENSION "s"', "200 result=0")
    await peer.expect('SET PRIORITY "1"', "200 result=0")
    # the session ends there: the dialplan goes on at ai-agent-operator,s,1
    assert await peer.closed()
    assert counted(server, "calls", outcome="keypad, operator") == 1
    assert counted(server, "errors", where="agi") == 0


async def hours_after_a_key(server: AgiServer):
    """A keypad call to where the caller, having pressed 1 over the menu, has
    heard the hours and address: (the peer, the keypad, the menu, the facts)."""
    pad = Keypad(FACTS, "en")
    menu = pad.start().text
    facts = pad.press("1").text
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    # "1" pressed while the menu plays cuts it short
    await peer.expect(f'STREAM FILE "{sound(server, menu)}" {KEYS}', "200 result=49 endpos=800")
    await peer.expect(f'STREAM FILE "{sound(server, facts)}" {KEYS}', "200 result=0 endpos=1600")
    return peer, pad, menu, facts


async def test_a_keypad_call_is_kept_in_the_store_like_a_spoken_one(start, tmp_path):
    """A real SQLCipher store: the call, the prompts as heard, the keys, its end."""
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    store = open_store(tmp_path / "store.db", key_file)
    journal = CallJournal(store)
    server = await start(journal=journal)
    peer, _, menu, facts = await hours_after_a_key(server)
    await peer.expect('WAIT FOR DIGIT "5000"', "200 result=48")  # "0"
    transfer = phrases.of("en").transfer
    await peer.expect(f'STREAM FILE "{sound(server, transfer)}" ""', "200 result=0 endpos=1600")
    for command in ('SET CONTEXT "ai-agent-operator"', 'SET EXTENSION "s"', 'SET PRIORITY "1"'):
        await peer.expect(command, "200 result=0")
    assert await peer.closed()
    await until(lambda: counted(server, "calls", outcome="keypad, operator") == 1)
    await journal.stop()
    try:
        (call,) = store.query("SELECT id, caller, language, outcome, ended >= started FROM calls")
        assert call == ("1795316401.6", NUMBER, "en", "keypad, operator", 1)
        turns = store.query("SELECT speaker, transcript FROM turns ORDER BY id")
        assert turns == [("agent", f"{menu} [interrupted]"), ("caller", "[key 1]"),
                         ("agent", facts), ("caller", "[key 0]"), ("agent", transfer)]
        assert [r.event for r in AuditLog(store).records()] == ["call.start", "call.end"]
    finally:
        store.close()


async def test_keypad_menu_one_plays_the_hours_and_address(start):
    server = await start()
    peer, pad, _, facts = await hours_after_a_key(server)
    # nothing twice: a person takes over
    await peer.expect('WAIT FOR DIGIT "5000"', "200 result=0")
    no_key = pad.press(None).text
    await peer.expect(f'STREAM FILE "{sound(server, no_key)}" {KEYS}', "200 result=0 endpos=1600")
    await peer.expect('WAIT FOR DIGIT "5000"', "200 result=0")
    last = pad.press(None).text
    await peer.expect(f'STREAM FILE "{sound(server, last)}" ""', "200 result=0 endpos=1600")
    for command in ('SET CONTEXT "ai-agent-operator"', 'SET EXTENSION "s"', 'SET PRIORITY "1"'):
        await peer.expect(command, "200 result=0")
    assert await peer.closed()
    # every prompt is a file the voice made, named by its text
    made = server.prompts.path_of(facts, "en")
    assert made.is_file() and FACTS.address in facts
    assert counted(server, "calls", outcome="keypad, operator") == 1


async def test_keypad_menu_in_spanish(start):
    server = await start()
    menu = Keypad(FACTS, "es").start().text
    peer = await Asterisk.dial(server, environment(agi_arg_1="es"))
    await peer.expect("ANSWER", "200 result=0")
    assert await peer.command() == f'STREAM FILE "{sound(server, menu, "es")}" {KEYS}'
    assert "oprima el cero" in menu
    peer.close()


async def test_a_voice_that_fails_sends_the_caller_straight_to_the_operator(start):
    server = await start(voice=Mute())
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    for command in ('SET CONTEXT "ai-agent-operator"', 'SET EXTENSION "s"', 'SET PRIORITY "1"'):
        await peer.expect(command, "200 result=0")
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 1


async def test_a_prompt_asterisk_cannot_play_sends_the_caller_to_the_operator(start):
    server = await start()
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    assert (await peer.command()).startswith("STREAM FILE")
    await peer.reply("200 result=-1 endpos=0")  # no such file, as Asterisk sees it
    for command in ('SET CONTEXT "ai-agent-operator"', 'SET EXTENSION "s"', 'SET PRIORITY "1"'):
        await peer.expect(command, "200 result=0")
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 1


# --- hang-ups mid-flow: the caller's right, not an error ------------------------------

@pytest.mark.parametrize("script", [
    # HANGUP instead of a result
    [("ANSWER", "200 result=0"), ("STREAM FILE", "HANGUP")],
    # a hang-up while waiting for a key
    [("ANSWER", "200 result=0"), ("STREAM FILE", "200 result=0 endpos=1600"),
     ("WAIT FOR DIGIT", "200 result=-1")],
    # the prompt cut by the hang-up, then HANGUP when the caller is put through
    [("ANSWER", "200 result=0"), ("STREAM FILE", "200 result=-1 endpos=400"),
     ("SET CONTEXT", "HANGUP")],
    # a dead channel refuses the transfer
    [("ANSWER", "200 result=0"), ("STREAM FILE", "200 result=-1 endpos=400"),
     ("SET CONTEXT", "511 Command Not Permitted on a dead channel or intercept routine")],
    [("ANSWER", "200 result=-1")],
], ids=["HANGUP", "wait-1", "stream-1-then-HANGUP", "511", "answer-1"])
async def test_a_hangup_mid_flow_ends_the_session_quietly(start, script):
    server = await start()
    peer = await Asterisk.dial(server, environment())
    for verb, reply in script:
        assert (await peer.command()).startswith(verb)
        await peer.reply(reply)
    assert await peer.closed()
    assert counted(server, "calls", outcome="keypad, caller hung up") == 1
    assert counted(server, "errors", where="agi") == 0
    await handed_to_the_agent(await start(ari_up=True))


# --- garbage: each costs its own connection, counted; the server goes on -------------

GARBAGE = {
    "closes at once": b"",
    "closes mid-environment": environment()[:120],
    "a blank line first": b"\n\n",
    "not AGI": b"GET / HTTP/1.1\nHost: 127.0.0.1:4573\n\n",
    "a line without a colon": environment().replace(b"agi_type: PJSIP\n", b"agi_type PJSIP\n"),
    "no uniqueid": environment(agi_uniqueid=None),
    "an empty uniqueid": environment(agi_uniqueid=""),
    "an unknown script": environment(agi_network_script="something-else"),
    "no script": environment(agi_network_script=None),
    "binary": bytes(range(256)) + b"\n\n",
}


@pytest.mark.parametrize("sent", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_bad_environment_is_refused_and_the_next_call_served(start, sent, caplog):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server)
    if sent:
        await peer.send(sent)
    if sent in (b"", GARBAGE["closes mid-environment"]):
        peer.writer.write_eof()  # the peer is done sending
    # no command is ever sent for it
    assert await peer.closed()
    await until(lambda: counted(server, "errors", where="agi") == 1)
    assert "AGI connection from 127.0.0.1:" in caplog.text
    await handed_to_the_agent(server)
    assert counted(server, "errors", where="agi") == 1


async def test_an_environment_that_never_ends_is_refused_at_the_size_limit(start):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server)
    try:
        await peer.send(b"agi_network: yes\nagi_x: " + b"a" * (agi.LINE_LIMIT + 10))
    except ConnectionError:
        pass  # refused while still sending
    await until(lambda: counted(server, "errors", where="agi") == 1)
    peer.close()
    await handed_to_the_agent(server)


async def test_a_silent_peer_is_dropped_and_blocks_nobody_meanwhile(start, monkeypatch):
    monkeypatch.setattr(agi, "ENVIRONMENT_TIMEOUT_S", 0.5)
    server = await start(ari_up=True)
    silent = await Asterisk.dial(server)
    # the server serves others while it waits
    await handed_to_the_agent(server)
    assert await silent.closed()
    assert counted(server, "errors", where="agi") == 1


async def test_a_caller_name_in_another_encoding_is_no_reason_to_refuse(start):
    server = await start(ari_up=True)
    # "Muñoz" in Latin-1
    peer = await Asterisk.dial(server, environment(agi_calleridname="Munoz").replace(
        b"Munoz", b"Mu\xf1oz"))
    assert await peer.command() == 'EXEC "Stasis" "ai-agent,agi,en"'
    peer.close()


@pytest.mark.parametrize("reply", [
    "hello",                             # not an AGI reply
    "",                                  # an empty line
    "200 result=",                       # no value
    "200 ok",                            # no result at all
    "510 Invalid or unknown command",    # refused
    "520 Invalid command syntax.  Proper usage not available.",
    "200 result=99999",                  # no key has that code
    "\xff\xfe",                          # not text
])
async def test_a_reply_that_is_not_200_result_is_refused(start, reply):
    server = await start()
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    assert (await peer.command()).startswith("STREAM FILE")
    await peer.reply("200 result=0 endpos=1600")
    assert (await peer.command()).startswith("WAIT FOR DIGIT")
    await peer.reply(reply)
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 1
    assert counted(server, "calls", outcome="keypad, error") == 1
    await handed_to_the_agent(await start(ari_up=True))


async def test_a_connection_reset_mid_flow_is_counted_and_the_server_goes_on(start):
    server = await start()
    peer = await Asterisk.dial(server, environment())
    assert await peer.command() == "ANSWER"
    peer.reset()
    await until(lambda: counted(server, "errors", where="agi") == 1)
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    assert (await peer.command()).startswith("STREAM FILE")
    peer.close()


async def test_the_peer_closing_without_hangup_mid_flow_is_counted(start):
    server = await start()
    peer = await Asterisk.dial(server, environment())
    assert await peer.command() == "ANSWER"
    peer.writer.write_eof()
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 1


async def test_a_peer_that_stops_answering_is_dropped(start, monkeypatch):
    monkeypatch.setattr(agi, "COMMAND_TIMEOUT_S", 0.3)
    server = await start()
    peer = await Asterisk.dial(server, environment())
    assert await peer.command() == "ANSWER"
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 1


# --- what the logs never hold; closing ----------------------------------------------

async def test_the_caller_id_never_reaches_a_log_line(start, caplog):
    caplog.set_level(logging.DEBUG)
    server = await start()
    peer = await Asterisk.dial(server, environment())
    await peer.expect("ANSWER", "200 result=0")
    await peer.expect(f'STREAM FILE "{sound(server, Keypad(FACTS, "en").start().text)}" {KEYS}',
                      "200 result=48 endpos=100")
    assert (await peer.command()).startswith("STREAM FILE")
    await peer.reply("HANGUP")
    assert await peer.closed()
    assert "1795316401.6" in caplog.text  # the call is named by its channel's uniqueid
    assert NUMBER not in caplog.text and "Jane" not in caplog.text


async def test_closing_the_server_ends_live_sessions_without_errors(start):
    server = await start(ari_up=True)
    peer = await Asterisk.dial(server, environment())
    assert (await peer.command()).startswith('EXEC "Stasis"')  # the call is with the agent
    await asyncio.wait_for(server.close(), 5)
    assert await peer.closed()
    assert counted(server, "errors", where="agi") == 0


# --- the pure parts -------------------------------------------------------------------

def test_parse_environment_reads_what_asterisk_sends():
    env = parse_environment(environment(agi_accountcode=""))
    assert env["agi_network_script"] == "ai-agent" and env["agi_uniqueid"] == "1795316401.6"
    assert env["agi_accountcode"] == ""


@pytest.mark.parametrize("block, words", [
    (b"\n\n", "no AGI environment"),
    (b"agi_channel: x\nagi_uniqueid: 1.2\n\n", "no agi_network_script"),
    (b"agi_network_script: ai-agent\ncaller: " + NUMBER.encode() + b"\n\n", "line 2"),
])
def test_parse_environment_says_what_is_wrong_without_values(block, words):
    with pytest.raises(AgiError, match=words) as refused:
        parse_environment(block)
    assert NUMBER not in str(refused.value)


def test_a_listen_address_off_loopback_may_be_bound_under_the_egress_guard():
    # the agent refuses to look up hosts outside its allowlist, a bind's included
    assert "10.0.0.5" in egress.allowed_hosts(config.parse("[agi]\nlisten = 10.0.0.5:4573\n"))
    assert "10.0.0.5" not in egress.allowed_hosts(config.parse("[agi]\nlisten =\n"))


def test_arguments_are_quoted_as_asterisk_reads_them():
    assert agi._quote('say "hi" \\ now') == '"say \\"hi\\" \\\\ now"'
    with pytest.raises(ValueError):
        agi._quote("two\nlines")


# --- the worker starts it ----------------------------------------------------------

class _Agent:
    def __init__(self, services):
        self.services, self.connected = services, asyncio.Event()


async def test_the_worker_starts_it_from_the_config_and_a_port_in_use_costs_only_it(tmp_path):
    def agent(listen: str) -> _Agent:
        cfg = dataclasses.replace(Config(), agi=dataclasses.replace(Config().agi, listen=listen),
                                  sounds=dataclasses.replace(Config().sounds, dir=tmp_path))
        return _Agent(Services(cfg=cfg, practice=FACTS, protocols=None, stt={}, tts={}))

    assert await cli._start_agi(agent("").services.cfg, agent("")) is None
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = agent(f"127.0.0.1:{port}")
    server = await cli._start_agi(first.services.cfg, first)
    try:
        assert server is not None and server.port == port
        # the agent's own readiness is asked at each call
        first.connected.set()
        assert server.ari_connected()
        taken = agent(f"127.0.0.1:{server.port}")
        assert await cli._start_agi(taken.services.cfg, taken) is None
    finally:
        await server.close()
