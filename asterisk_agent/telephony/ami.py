"""The Asterisk Manager Interface (AMI), through panoramisk: can a person take
the call, and which calls does the agent have.

Two questions, each answered from the replies to the agent's own actions (it
asks Asterisk for no events):

- Before a caller who asked for a person is put through, can anybody take the
  call?  [ami] names a queue (QueueStatus: its members, paused or not, and
  each one's device state) or phones (the DEVICE_STATE() dialplan function,
  read with Getvar).  The answer is True, False, or None when it cannot be
  told: AMI not configured, down, refusing, or slower than [ami] timeout.
  Only False changes anything (the caller is offered a message); None puts
  the caller through as before.
- The agent's live calls (CoreShowChannels), for `asterisk-agent calls`: ids,
  states, durations and where each channel is, never a caller's number or
  name (those are PHI).

Phones are asked with Getvar DEVICE_STATE(), not DeviceStateList: it asks the
channel driver about exactly the phones configured, also one whose state has
not changed since Asterisk started (DeviceStateList lists only the states
Asterisk has cached), and nothing has to be filtered out of a list of every
device on the PBX.

A dropped connection never raises into a call: the check says None, the
outage is logged once (without PHI), and the next check connects again.
panoramisk's own reconnect loop and logging are not used: its log lines carry
whole AMI messages, caller IDs among them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from asterisk_agent.config import Ami, Config, ConfigError

log = logging.getLogger("asterisk_agent.ami")

# who may take a call the agent hands over, and the [ami] settings naming them
WHO = {"operator": ("operator_queue", "operator_devices"),
       "on-call": ("oncall_queue", "oncall_devices")}

# Asterisk's device states, at the numbers QueueMember events carry in Status
# (AST_DEVICE_UNKNOWN = 0 ... AST_DEVICE_ONHOLD = 8, documented with the event);
# DEVICE_STATE() answers with the same names
DEVICE_STATES = ("UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE",
                 "RINGING", "RINGINUSE", "ONHOLD")

# The write classes of manager.conf each action the agent sends needs: an action
# is allowed when the user may write any one of its classes (none: any user).
ACTION_CLASSES = {
    "Getvar": ("call", "reporting"),             # DEVICE_STATE() of a phone
    "CoreShowChannels": ("system", "reporting"),  # asterisk-agent calls
    "QueueStatus": (),                           # the members of a queue
}

# seconds between the keep-alive pings panoramisk sends on an idle connection
PING_S = 10


class AmiError(Exception):
    """AMI could not answer: not reachable, login refused, an action refused,
    the connection lost, or a reply that makes no sense.  Free of PHI."""


# --- pure logic: states, members, channels ---------------------------------------


def state_name(status: str | int) -> str:
    """A QueueMember's numeric Status as Asterisk names the device state
    ("1" -> "NOT_INUSE"); "UNKNOWN" for a number outside the documented ones."""
    try:
        number = int(str(status).strip())
    except ValueError:
        return "UNKNOWN"
    return DEVICE_STATES[number] if 0 <= number < len(DEVICE_STATES) else "UNKNOWN"


def can_take(state: str) -> bool | None:
    """Whether a phone in this device state can take a call now.

    NOT_INUSE: yes.  In use, busy, ringing, on hold, unavailable (not
    registered) or invalid (no such phone): no.  UNKNOWN or anything else:
    cannot tell.
    """
    state = str(state).strip().upper()
    if state == "NOT_INUSE":
        return True
    if state in DEVICE_STATES and state != "UNKNOWN":
        return False
    return None


def member_can_take(member: Mapping) -> bool | None:
    """Whether a queue member (a QueueMember event) can take a call: not paused,
    not in a queue call, and its device not in use (see can_take)."""
    paused, in_call = str(member.get("Paused", "")).strip(), str(member.get("InCall", "0")).strip()
    if paused == "1" or in_call == "1":
        return False
    if paused != "0":
        return None
    return can_take(state_name(member.get("Status", "")))


def anyone(answers: Iterable[bool | None]) -> bool | None:
    """One answer from several people or phones: True when any of them can take
    the call, None when none can for sure but some cannot be told, else False
    (nobody at all is False too)."""
    answers = list(answers)
    if any(a is True for a in answers):
        return True
    return None if any(a is None for a in answers) else False


def queue_members(replies: Iterable[Mapping], queue: str) -> list[Mapping] | None:
    """The QueueMember events of `queue` in a QueueStatus reply; None when the
    reply has no such queue (no QueueParams for it: not in queues.conf)."""
    replies = list(replies)
    if not any(_event(r) == "queueparams" and r.get("Queue") == queue for r in replies):
        return None
    return [r for r in replies if _event(r) == "queuemember" and r.get("Queue") == queue]


def seconds(duration: str) -> int | None:
    """CoreShowChannel's Duration ("HH:MM:SS") in seconds; None if it is not one."""
    m = re.fullmatch(r"\s*(\d+):([0-5]\d):([0-5]\d)\s*", str(duration))
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) if m else None


def call_row(event: Mapping, app: str) -> dict | None:
    """One channel of a CoreShowChannels reply as a row of `asterisk-agent calls`,
    or None when the channel is not the agent's.

    The agent's channels are those in Stasis(`app`) and those in a context of
    its dialplan (ai-agent...).  Only the fields below are copied: caller ID and
    connected line (numbers and names), the extension dialled, the channel name
    (it may hold a number) and the application's arguments never are.
    """
    if _event(event) != "coreshowchannel":
        return None
    application = str(event.get("Application", ""))
    context = str(event.get("Context", ""))
    stasis_app = str(event.get("ApplicationData", "")).split(",", 1)[0].strip()
    if not ((application == "Stasis" and stasis_app == app) or context.startswith("ai-agent")):
        return None
    return {
        "id": str(event.get("Uniqueid", "")),
        "call": str(event.get("Linkedid", "")),
        "tech": str(event.get("Channel", "")).split("/", 1)[0],
        "state": str(event.get("ChannelStateDesc", "")),
        "seconds": seconds(str(event.get("Duration", ""))),
        "application": application,
        "context": context,
        "bridged": bool(str(event.get("BridgeId", "")).strip()),
    }


def refused_actions(write: str) -> list[str]:
    """The actions the agent sends that a manager.conf user with this `write`
    line may not send (empty: it may send them all)."""
    classes = {c.strip().lower() for c in str(write).split(",") if c.strip()}
    if "all" in classes:
        return []
    return [action for action, needs in ACTION_CLASSES.items()
            if needs and not classes & set(needs)]


def read_secret(path: Path, config_path: Path | None = None) -> str:
    """The secret of the AMI user from [ami] secret_file: one line, in a file
    that only its owner (root or the agent's user) can read.  ConfigError when
    it is missing, open to others, or holds no usable secret."""
    from asterisk_agent.compliance.store import StoreError, read_private

    try:
        text = read_private(path, "AMI secret file")
    except StoreError as exc:
        raise ConfigError(f"[ami] secret_file: {exc}", config_path) from None
    secret = text.strip()
    if not secret or any(c in secret for c in "\r\n\0"):
        raise ConfigError(f"[ami] secret_file: {path} must hold the secret of the manager.conf "
                          "user on one line", config_path)
    return secret


def _event(message: Mapping) -> str:
    return str(message.get("Event", "")).strip().lower()


# --- the client -------------------------------------------------------------------


class _Quiet:
    """panoramisk's logger, silenced: its lines carry whole AMI messages (caller
    IDs among them) and repeat at every reconnect.  The client logs outages."""

    def _nothing(self, *args, **kwargs) -> None:
        pass

    debug = info = warning = error = exception = critical = _nothing


class _Protocol(AMIProtocol):
    """panoramisk's reader, except that a message it cannot read ends the
    connection (the client logs that once, as an outage) rather than raising
    out of the event loop's reader."""

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Exception:  # noqa: BLE001 - whatever the bytes were, the session is over
            self.transport.close()


class _Manager(Manager):
    """panoramisk's Manager without its reconnect loop: the client connects again
    at the next check.  `lost` is done as soon as the connection is gone."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.lost: asyncio.Future = self.loop.create_future()

    def connection_made(self, f) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the client awaits the same connection and reports why it failed
        super().connection_made(f)

    def connection_lost(self, exc) -> None:
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        super().close()
        if not self.lost.done():
            self.lost.set_result(None)


class AmiClient:
    """A connection to AMI as the [ami] user, made when a question needs it.

        async with AmiClient.from_config(cfg) as ami:
            if await ami.can_take_call("operator") is False:
                ...  # offer a message
            rows = await ami.live_calls()
    """

    def __init__(self, settings: Ami, secret: str, app: str = "ai-agent"):
        self.settings, self.app = settings, app
        self._secret = secret
        self._manager: _Manager | None = None
        self._lock = asyncio.Lock()
        self._trouble: str | None = None   # why AMI does not answer (logged once)
        self._warming: asyncio.Task | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> AmiClient:
        """The client of [ami], its secret read now from [ami] secret_file (a
        ConfigError when the file is missing or others can read it)."""
        return cls(cfg.ami, read_secret(cfg.ami_secret_path, cfg.path), app=cfg.ari.app)

    async def __aenter__(self) -> AmiClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def watched(self, who: str) -> tuple[str, tuple[str, ...]]:
        """The queue and the phones that say whether `who` can take a call."""
        if who not in WHO:
            raise ValueError(f"who is one of {', '.join(WHO)}, not {who!r}")
        queue_key, devices_key = WHO[who]
        return getattr(self.settings, queue_key), getattr(self.settings, devices_key)

    # -- the questions ----------------------------------------------------------

    async def can_take_call(self, who: str) -> bool | None:
        """Whether somebody can take the call `who` ("operator" or "on-call")
        would get now.  None when it cannot be told (nothing configured to ask,
        AMI down or slow); never raises for AMI's sake."""
        queue, devices = self.watched(who)
        if not queue and not devices:
            return None
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                asked = [self._queue_answer(queue)] if queue else []
                asked += [self._device_answer(device) for device in devices]
                answer = anyone(await asyncio.gather(*asked))
        except TimeoutError:
            self._failed(f"no answer within {timeout:g} s")
            return None
        except AmiError as exc:
            self._failed(str(exc))
            return None
        except Exception as exc:  # a reply panoramisk could not read: never the call's problem
            self._failed(f"unreadable reply ({type(exc).__name__})")
            return None
        self._answered()
        log.info("AMI: %s %s", who, {True: "can take a call", False: "cannot take a call",
                                    None: "cannot be told"}[answer])
        return answer

    async def device_state(self, device: str) -> str:
        """DEVICE_STATE() of a phone (PJSIP/desk1): NOT_INUSE, INUSE, UNAVAILABLE ..."""
        reply = (await self._request({"Action": "Getvar",
                                      "Variable": f"DEVICE_STATE({device})"}))[0]
        return str(reply.get("Value", "")).strip() or "UNKNOWN"

    async def queue_status(self, queue: str) -> list[Mapping] | None:
        """The members of a queue (QueueMember events); None if Asterisk has no such queue."""
        return queue_members(await self._request({"Action": "QueueStatus", "Queue": queue}),
                             queue)

    async def live_calls(self, timeout: float | None = None) -> list[dict]:
        """The agent's channels now, as call_row makes them (no PHI).  AmiError
        when AMI cannot say."""
        timeout = timeout or self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                replies = await self._request({"Action": "CoreShowChannels"})
        except TimeoutError:
            self._drop()
            raise AmiError(f"no answer within {timeout:g} s") from None
        except AmiError:
            self._drop()
            raise
        return [row for row in (call_row(r, self.app) for r in replies) if row is not None]

    # -- the connection ---------------------------------------------------------

    def start(self) -> None:
        """Log in in the background when there is something to watch, so that
        the first check need not wait for it (a failure is only logged)."""
        if any(any(self.watched(who)) for who in WHO) and self._warming is None:
            self._warming = asyncio.get_running_loop().create_task(self._warm(), name="ami")

    async def _warm(self) -> None:
        try:
            async with asyncio.timeout(max(self.settings.timeout, 5.0)):
                await self.connect()
        except TimeoutError:
            self._failed("no answer to the login")
        except AmiError as exc:
            self._failed(str(exc))
        else:
            log.info("AMI: logged in to %s as %s", self.where, self.settings.username)

    async def connect(self) -> None:
        """Log in, unless logged in already.  AmiError if AMI does not answer or
        refuses the user."""
        if self._live():
            return
        async with self._lock:
            if not self._live():
                self._drop()
                self._manager = await self._login()

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
            self._warming = None
        self._drop()

    def _live(self) -> bool:
        m = self._manager
        return m is not None and not m.lost.done() and m.authenticated

    def _drop(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    async def _login(self) -> _Manager:
        s = self.settings
        manager = _Manager(loop=asyncio.get_running_loop(), host=s.host, port=s.port,
                           username=s.username, secret=self._secret, events="off",
                           log=_Quiet(), ping_delay=PING_S, ping_interval=PING_S,
                           protocol_factory=_Protocol)
        try:
            try:
                await manager.connect()
            except OSError as exc:
                raise AmiError(f"cannot connect to {self.where}: {exc.strerror or exc}") from None
            if manager.authenticated_future is None:
                raise AmiError(f"no login sent to {self.where}")
            reply = await _reply(manager, manager.authenticated_future)
            if not reply.success:
                raise AmiError(f"{self.where} refused the login of {s.username!r} "
                               f"({_said(reply) or 'no reason given'}): check [ami] username "
                               "and secret_file against manager.conf")
        except BaseException:
            manager.close()
            raise
        return manager

    async def _request(self, action: dict) -> list[Mapping]:
        """Send one action; its replies (the response, then any events of its list).
        AmiError when it is refused or the connection goes."""
        await self.connect()
        manager = self._manager
        if manager is None:
            raise AmiError("the connection was lost")
        reply = await _reply(manager, manager.send_action(dict(action)))
        replies = reply if isinstance(reply, list) else [reply]
        if not replies or not replies[0].success:
            said = _said(replies[0]) if replies else ""
            raise AmiError(f"{action['Action']} refused: {said or 'no reason given'}")
        return replies

    async def _queue_answer(self, queue: str) -> bool | None:
        members = await self.queue_status(queue)
        if members is None:
            raise AmiError(f"Asterisk has no queue {queue!r} (queues.conf)")
        return anyone(member_can_take(m) for m in members)

    async def _device_answer(self, device: str) -> bool | None:
        return can_take(await self.device_state(device))

    # -- logged once per outage -------------------------------------------------

    def _failed(self, reason: str) -> None:
        self._drop()
        if self._trouble is None:
            log.warning("AMI at %s does not answer (%s): callers are put through without "
                        "knowing whether anyone can take the call, until it does",
                        self.where, reason)
        self._trouble = reason

    def _answered(self) -> None:
        if self._trouble is not None:
            log.info("AMI at %s answers again", self.where)
            self._trouble = None


async def _reply(manager: _Manager, future: asyncio.Future):
    """The reply to an action, or AmiError as soon as the connection is lost."""
    await asyncio.wait({future, manager.lost}, return_when=asyncio.FIRST_COMPLETED)
    if future.done() and not future.cancelled():
        return future.result()
    raise AmiError("the connection was lost")


def _said(reply: Mapping) -> str:
    """Asterisk's reason in a refusal (its Message header), one line."""
    said = reply.get("Message", "")
    return " ".join(str(said).split())[:200]
