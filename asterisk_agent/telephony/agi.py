"""FastAGI: the agent for dialplans that hand calls over with AGI() instead of Stasis().

`AGI(agi://127.0.0.1:4573/ai-agent)` reaches this server, which runs inside
the agent's worker process ([agi] listen).  While the agent's ARI application
is connected, the call is handed to it by running Stasis through AGI (EXEC
Stasis), so it goes on exactly like a call the dialplan sent to Stasis()
itself.  When the agent is not connected, or Stasis fails, the caller gets
the keypad menu (dialog/keypad.py) in the agent's voice: the practice's hours
and address, or the front desk.  Whatever this server leaves unfinished, the
dialplan after AGI() sends to the operator: never dead air.

panoramisk's fast_agi.Application routes a request by its script path and
sends the commands.  What a peer sends is checked here before panoramisk
reads it, because panoramisk 1.4 falls over on garbage:

- a peer that closes the connection before the blank line that ends the AGI
  environment sends its handler into a loop of empty reads that never yields,
  which freezes the whole event loop, the agent's calls included;
- it waits for the environment with no time limit and no size limit;
- bytes that are not UTF-8 escape its handler as an exception;
- an empty reply (the connection closed) or a line that is not "NNN ..."
  raises ValueError from inside its reply parser.

So each connection's environment is read here, with a deadline and a size
limit, and checked; panoramisk's handler then gets a reader (_CheckedReader)
that hands it that environment and, after it, only reply lines already
checked.  Garbage costs its own connection only: it is logged (never the
caller ID), counted in the errors metric ("agi") and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from panoramisk.fast_agi import Application, Request

from ..compliance import redact
from ..conversation import sound_seconds
from ..dialog import phrases
from ..dialog.keypad import KEYS, WAIT_S, Keypad, Prompt, Then
from .leg import CallerGone

if TYPE_CHECKING:  # the worker passes its Services in: no import of the agent here
    from ..agent import Services

log = logging.getLogger("asterisk_agent.agi")

# panoramisk logs each request's whole AGI environment at debug level, caller
# ID included: its logger stays at info whatever [general] log_level says
logging.getLogger("panoramisk.fast_agi").setLevel(logging.INFO)

# the script path of AGI(agi://HOST:PORT/ai-agent)
ROUTE = "ai-agent"
# Asterisk sends the whole environment at once, a few hundred bytes
ENVIRONMENT_TIMEOUT_S = 10.0
# the longest environment, and the longest reply line, read from a peer
LINE_LIMIT = 64 * 1024
# seconds Asterisk has to answer a command that does not wait on the caller
COMMAND_TIMEOUT_S = 10.0
# what every AGI environment from Asterisk names
REQUIRED = ("agi_network_script", "agi_channel", "agi_uniqueid")

_ENV_LINE = re.compile(r"(agi_[A-Za-z0-9_]+):(?: (.*))?")
# an AGI reply line: a status code (200, 100 Trying, 510, 511, 520 and 520-...) or HANGUP
_REPLY = re.compile(r"(?:\d{3}(?:[ -].*)?|HANGUP)\n")


class AgiError(Exception):
    """The peer broke the AGI protocol, or Asterisk refused a command."""


class PlaybackFailed(Exception):
    """STREAM FILE answered -1: the caller hung up, or Asterisk cannot read the file."""


class PromptUnavailable(Exception):
    """The voice could not make a prompt's sound file."""


def _clip(text: str, n: int = 24) -> str:
    text = text.rstrip("\n")
    return repr(text[:n] + ("..." if len(text) > n else ""))


def parse_environment(block: bytes) -> dict[str, str]:
    """The AGI environment ("agi_name: value" lines up to a blank line) as a dict.

    Raises AgiError saying what is wrong; an error names a line's key, never
    its value (values include the caller ID).  Bytes that are not UTF-8 (a
    caller name in another encoding) are replaced, not refused.
    """
    text = block.decode("utf-8", "replace").rstrip("\n")
    if not text:
        raise AgiError("no AGI environment (a blank line first)")
    env: dict[str, str] = {}
    for n, line in enumerate(text.split("\n"), 1):
        m = _ENV_LINE.fullmatch(line)
        if m is None:
            raise AgiError(f"line {n} of the AGI environment is not 'agi_name: value' "
                           f"(it starts {_clip(line.split(':', 1)[0])})")
        env[m.group(1)] = m.group(2) or ""
    missing = [key for key in REQUIRED if not env.get(key)]
    if missing:
        raise AgiError(f"no {', '.join(missing)} in the AGI environment")
    return env


def caller_id(env: dict[str, str]) -> list[str]:
    """The caller ID in an AGI environment (PHI: to be kept out of the logs)."""
    return [v for v in (env.get("agi_callerid", ""), env.get("agi_calleridname", ""))
            if v and v.lower() != "unknown"]


def _quote(value: str) -> str:
    """One argument of an AGI command, as Asterisk's parser reads it back."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"an AGI argument cannot hold a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(result: int) -> str | None:
    """A key from a result (its character code); None for 0, no key."""
    if result == 0:
        return None
    if not 32 < result < 127:
        raise AgiError(f"result {result} is not a key")
    return chr(result)


class _CheckedReader:
    """The connection as panoramisk's handler reads it: first the AGI environment,
    read and checked here, then reply lines, each checked before it is parsed."""

    def __init__(self, reader: asyncio.StreamReader, environment: bytes):
        self._reader = reader
        self._environment = environment

    async def read(self, n: int = -1) -> bytes:
        # panoramisk reads the environment with read() up to its blank line:
        # here it is, whole, at once
        environment, self._environment = self._environment, b""
        if not environment:
            raise AgiError("the AGI environment was asked for twice")
        return environment

    async def readline(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:  # asyncio's stream limit
            raise AgiError(f"a reply line longer than {LINE_LIMIT} bytes") from None
        except ConnectionError as exc:
            raise AgiError(f"the connection was lost ({type(exc).__name__})") from None
        if not line:
            raise AgiError("the peer closed the connection without HANGUP")
        if not line.endswith(b"\n"):
            raise AgiError("the connection closed in the middle of a reply")
        text = line.decode("utf-8", "replace")
        if not _REPLY.fullmatch(text):
            raise AgiError(f"not an AGI reply: {_clip(text)}")
        if text.startswith("520"):
            # a usage error: panoramisk would wait for one more line, which a
            # one-line 520 never sends
            raise AgiError(f"Asterisk refused the command's syntax: {_clip(text, 60)}")
        return text.encode("utf-8")


class AgiChannel:
    """A caller's channel as AGI commands see it: one FastAGI connection."""

    def __init__(self, request: Request):
        self.request = request
        self.id = request.headers.get("agi_uniqueid") or "?"

    async def command(self, verb: str, *args: str,
                      waits: float | None = 0.0) -> tuple[int, str]:
        """Send one command; its result and the text in brackets after it.

        CallerGone when Asterisk says the caller hung up (HANGUP, a "(hangup)"
        result, 511 on a dead channel); a result of -1 is returned, it means
        different things to different commands.  AgiError for any other reply
        than "200 result=N", and for no reply within COMMAND_TIMEOUT_S seconds
        more than the command `waits` on the caller (None: as long as it takes).
        """
        line = " ".join((verb, *map(_quote, args)))
        timeout = None if waits is None else waits + COMMAND_TIMEOUT_S
        try:
            reply = await asyncio.wait_for(self.request.send_command(line), timeout)
        except asyncio.TimeoutError:
            raise AgiError(f"{verb}: no reply within {timeout:g} s") from None
        except ConnectionError as exc:
            raise AgiError(f"{verb}: the connection was lost ({type(exc).__name__})") from None
        error = reply.get("error")
        if error == "AGIResultHangup" or reply.get("status_code") == 511:
            raise CallerGone()
        if error == "AGIAppError":  # panoramisk's name for result=-1
            return -1, ""
        if error:
            raise AgiError(f"{verb}: Asterisk answered {error} {_clip(reply.get('msg', ''), 60)}")
        value, data = reply.get("result", ("", ""))
        try:
            return int(value), data or ""
        except ValueError:
            raise AgiError(f"{verb}: no result in the reply") from None

    async def answer(self) -> None:
        if (await self.command("ANSWER"))[0] < 0:
            raise CallerGone()

    async def execute(self, application: str, data: str) -> int:
        """Run a dialplan application and wait, however long it runs (Stasis:
        the whole call with the agent); its result, -1 when the caller hung up."""
        return (await self.command("EXEC", application, data, waits=None))[0]

    async def variable(self, name: str) -> str | None:
        """A channel variable's value; None when it is not set."""
        result, data = await self.command("GET VARIABLE", name)
        return data if result == 1 else None

    async def stream_file(self, sound: str, keys: str, seconds: float) -> str | None:
        """Play a sound file (a path as Asterisk sees it, without .wav); the key that
        cut it short, None when it played to the end.  PlaybackFailed for -1."""
        result, _ = await self.command("STREAM FILE", sound, keys, waits=seconds)
        if result < 0:
            raise PlaybackFailed(sound)
        return _key(result)

    async def wait_for_digit(self, seconds: float) -> str | None:
        """The caller's next key; None when none comes within `seconds`."""
        result, _ = await self.command("WAIT FOR DIGIT", str(round(seconds * 1000)),
                                       waits=seconds)
        if result < 0:
            raise CallerGone()
        return _key(result)

    async def continue_at(self, context: str, extension: str, priority: int) -> None:
        """Where the dialplan goes on when this AGI session ends."""
        for verb, value in (("SET CONTEXT", context), ("SET EXTENSION", extension),
                            ("SET PRIORITY", str(priority))):
            result, _ = await self.command(verb, value)
            if result != 0:
                raise AgiError(f"{verb} {value}: result {result}")


class PromptSounds:
    """The keypad menu's prompts as sound files, made once and kept.

    Named by a hash of the voice, the language and the text, like the safety
    messages (conversation.safety_sound): a new process finds them on disk,
    and a change of voice or of the practice's hours makes new ones.
    """

    def __init__(self, s: Services):
        self.s = s
        self._making: dict[str, asyncio.Future] = {}

    def path_of(self, text: str, language: str) -> Path:
        key = hashlib.sha1(f"{self.s.cfg.tts!r}\n{language}\n{text}".encode()).hexdigest()[:16]
        return self.s.cfg.sounds.dir / f"ai-agent-keypad-{key}.wav"

    async def get(self, text: str, language: str) -> Path:
        path = self.path_of(text, language)
        if path.exists():
            return path
        made = self._making.get(path.stem)
        if made is None:
            made = self._making[path.stem] = asyncio.ensure_future(
                self._make(text, language, path))
            # its failure is told to whoever waits; none may be left to ask
            made.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.shield(made)
        finally:
            if made.done():  # made, or failed: a later caller tries again
                self._making.pop(path.stem, None)

    async def _make(self, text: str, language: str, path: Path) -> Path:
        # made under another name and renamed: Asterisk never plays half a file
        made = await self.s.tts[language].to_file(text, path.parent, f"{path.stem}-new")
        os.replace(made, path)
        return path

    async def warm(self) -> None:
        """Every prompt of the menu, in each language, before the first caller."""
        for language in self.s.tts:
            for text in Keypad(self.s.practice, language).prompts():
                try:
                    await self.get(text, language)
                except Exception as exc:  # the caller who needs it tries again
                    log.warning("keypad menu (%s): a prompt could not be made: %s", language, exc)
                    break


class AgiServer:
    """The FastAGI listener: each connection is one call, on its own task."""

    def __init__(self, services: Services, ari_connected: Callable[[], bool]):
        self.s = services
        self.cfg = services.cfg
        # whether the agent's ARI application is connected now
        self.ari_connected = ari_connected
        self.prompts = PromptSounds(services)
        self.port = 0
        self._app: Application | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> None:
        app = Application(loop=asyncio.get_running_loop())
        # an async def route: panoramisk 1.4 wraps a plain function with
        # asyncio.coroutine, which Python 3.11 no longer has
        app.add_route(ROUTE, self._ai_agent)
        self._app = app
        self._server = await asyncio.start_server(self._connection, host, port,
                                                  limit=LINE_LIMIT)
        # the port asked for, or the one the system gave for 0
        self.port = self._server.sockets[0].getsockname()[1]
        self._track(asyncio.ensure_future(self.prompts.warm()))

    async def close(self) -> None:
        """Stop listening and end every session; callers in them go on in the
        dialplan (to the operator)."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refused(self, peer: str, why: object) -> None:
        log.warning("AGI connection from %s closed: %s", peer, why)
        self.s.metrics.errors.labels("agi").inc()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """One FastAGI connection: its environment read and checked, then routed."""
        self._track(asyncio.current_task())
        where = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{where[0]}:{where[1]}"
        try:
            try:
                block = await asyncio.wait_for(reader.readuntil(b"\n\n"),
                                               ENVIRONMENT_TIMEOUT_S)
            except asyncio.IncompleteReadError:
                raise AgiError("the connection closed before the AGI environment ended") \
                    from None
            except asyncio.LimitOverrunError:
                raise AgiError(f"an AGI environment longer than {LINE_LIMIT} bytes") from None
            except asyncio.TimeoutError:
                raise AgiError(f"no AGI environment within {ENVIRONMENT_TIMEOUT_S:g} s") \
                    from None
            except ConnectionError as exc:
                raise AgiError(f"the connection was lost ({type(exc).__name__})") from None
            env = parse_environment(block)
            script = env["agi_network_script"]
            if script != ROUTE:
                raise AgiError(f"unknown script path {_clip(script, 40)} "
                               f"(AGI(agi://HOST:PORT/{ROUTE}) is the one served)")
            # panoramisk decodes strictly: it gets the environment as checked, in UTF-8
            clean = block.decode("utf-8", "replace").encode("utf-8")
            assert self._app is not None
            await self._app.handler(_CheckedReader(reader, clean), writer)
        except AgiError as exc:
            self._refused(peer, exc)
        except asyncio.CancelledError:
            pass  # the server is closing
        except Exception as exc:  # one connection never takes the server down
            log.exception("AGI connection from %s failed", peer)
            self._refused(peer, type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --- the ai-agent route ----------------------------------------------------
    def _language(self, env: dict[str, str]) -> str:
        """The call's language: AGI's argument (AI_AGENT_LANGUAGE), else the channel's."""
        requested = env.get("agi_arg_1", "").strip() or env.get("agi_language", "")
        g = self.cfg.general
        return phrases.choose_language(requested, g.languages, g.language)

    async def _ai_agent(self, request: Request) -> None:
        """AGI(agi://HOST:PORT/ai-agent): to the agent, else the keypad menu."""
        call = AgiChannel(request)
        language = self._language(request.headers)
        # the caller ID is PHI: kept out of every log line until the session ends
        redact.remember(*caller_id(request.headers), call=call.id)
        stage, outcome = "agent", "caller hung up"
        try:
            if self.ari_connected():
                log.info("call %s: AGI %s, language %s: to the agent", call.id, ROUTE, language)
                if await self._to_agent(call, language):
                    outcome = "with the agent"
                    return
            else:
                log.warning("call %s: AGI %s: the agent's ARI side is not connected; "
                            "keypad menu", call.id, ROUTE)
            stage = "keypad"
            if self.s.journal is not None:
                # the agent's ARI side keeps the calls it takes; this one is ours
                number = request.headers.get("agi_callerid", "")
                self.s.journal.call_started(call.id, "" if number.lower() == "unknown" else number,
                                            language)
            outcome = await self._keypad(call, language)
        except CallerGone:
            outcome = "call ended with the agent" if stage == "agent" else "caller hung up"
        except AgiError as exc:
            outcome = "error"
            log.warning("call %s: AGI: %s; the dialplan takes the call on", call.id, exc)
            self.s.metrics.errors.labels("agi").inc()
        except asyncio.CancelledError:
            # The agent is stopping: the call goes on in the dialplan (to the
            # operator).  Not raised on: panoramisk's handler catches every
            # BaseException and would only log it as a failure.
            outcome = "agent stopped"
        except Exception:
            outcome = "error"
            log.exception("call %s: AGI session failed; the dialplan takes the call on", call.id)
            self.s.metrics.errors.labels("agi").inc()
        finally:
            redact.forget(call.id)
            log.info("call %s: AGI end (%s)", call.id, outcome)
            if stage == "keypad":  # the agent counts the calls it takes itself
                self.s.metrics.calls.labels(f"keypad, {outcome}").inc()
                if self.s.journal is not None:
                    self.s.journal.call_ended(call.id, f"keypad, {outcome}")

    async def _to_agent(self, call: AgiChannel, language: str) -> bool:
        """The call to the agent's Stasis application, as Stasis() in [ai-agent]
        does (arguments: how it came in, its language).  False when Stasis
        failed (the agent went away meanwhile)."""
        app = self.cfg.ari.app
        if await call.execute("Stasis", f"{app},agi,{language}") < 0:
            raise CallerGone()
        if await call.variable("STASISSTATUS") == "FAILED":
            log.warning("call %s: Stasis(%s) failed: the agent is not connected; keypad menu",
                        call.id, app)
            return False
        # the agent let the call go: it is where the agent sent it, or, if
        # nowhere, the dialplan after AGI() goes on (to the operator)
        return True

    async def _keypad(self, call: AgiChannel, language: str) -> str:
        """The keypad menu, prompt by prompt, until a person takes the call."""
        pad = Keypad(self.s.practice, language)
        d = self.cfg.dialplan
        await call.answer()
        prompt = pad.start()
        while True:
            try:
                key = await self._say(call, prompt, language)
            except PromptUnavailable as exc:
                log.error("call %s: keypad menu: %s; to the operator", call.id, exc)
                self.s.metrics.errors.labels("agi").inc()
                prompt, key = Prompt("", Then.OPERATOR), None
            except PlaybackFailed as exc:
                # the caller hung up, or Asterisk cannot read the file: putting the
                # caller through tells which (a channel that is gone refuses it)
                await call.continue_at(d.operator_context, d.operator_extension,
                                       d.operator_priority)
                log.error("call %s: Asterisk could not play %s: is [sounds] asterisk_dir "
                          "right and readable by Asterisk?  Caller sent to the operator",
                          call.id, exc)
                self.s.metrics.errors.labels("agi").inc()
                return "operator"
            self._said(call, "agent", prompt.text, interrupted=key is not None)
            if prompt.then is Then.OPERATOR:
                await call.continue_at(d.operator_context, d.operator_extension,
                                       d.operator_priority)
                log.info("call %s: keypad menu: to %s,%s,%d", call.id, d.operator_context,
                         d.operator_extension, d.operator_priority)
                return "operator"
            if key is None:
                key = await call.wait_for_digit(WAIT_S)
            log.info("call %s: keypad menu: %s", call.id,
                     "no key" if key is None else f"key {key}")
            self._said(call, "caller", "[no key]" if key is None else f"[key {key}]")
            prompt = pad.press(key)

    def _said(self, call: AgiChannel, speaker: str, text: str, interrupted: bool = False) -> None:
        """A turn of a keypad call, kept in the store like a spoken call's: the
        prompts as the caller heard them, the caller's keys in brackets."""
        if self.s.journal is not None and text:
            self.s.journal.turn(call.id, speaker, text, interrupted)

    async def _say(self, call: AgiChannel, prompt: Prompt, language: str) -> str | None:
        """Play a prompt; the key that cut it short (any key, while a menu plays)."""
        try:
            path = await self.prompts.get(prompt.text, language)
        except Exception as exc:
            raise PromptUnavailable(f"the voice could not make a prompt "
                                    f"({type(exc).__name__}: {exc})") from exc
        sound = f"{self.cfg.asterisk_sounds_dir.rstrip('/')}/{path.stem}"
        keys = KEYS if prompt.then is Then.KEYS else ""
        return await call.stream_file(sound, keys, sound_seconds(path))
