"""A thin asyncio client for the Asterisk REST Interface (ARI), on aiohttp.

Why hand-written: the ARI libraries for Python are abandoned (`ari-py`, and
`aioari` on a 2018 swagger loader), built on anyio/trio (`asyncari`), or young
and untested against Asterisk (`ari-client`).  ARI itself is plain REST plus
one WebSocket of JSON events, so a small client on aiohttp (well kept) does
the job and stays fully under our control: every call the agent makes is a
method here, and every error is an `AriError` that names the request.

Events come from `AriClient.events()`, which reconnects forever and tells the
application when it did (``AgentConnected`` / ``AgentDisconnected``), so the
application can resynchronise; at each connect it should call
`hand_over_orphans` for callers left in Stasis by a previous connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import aiohttp

from asterisk_agent import config

log = logging.getLogger("asterisk_agent.ari")

# names of the channels externalMedia creates, by encapsulation
MEDIA_CHANNEL_PREFIXES = ("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/")
# seconds between WebSocket pings: a dead Asterisk (or network) is noticed
# within about twice this, not at the next TCP timeout minutes later
HEARTBEAT_S = 10.0


class AriError(Exception):
    """Asterisk refused a request (4xx/5xx); `message` is Asterisk's own words."""

    def __init__(self, status: int, method: str, path: str, message: str):
        self.status, self.method, self.path, self.message = status, method, path, message
        super().__init__(f"ARI {method} {path}: {status} {message}".rstrip())


class AriUnavailable(AriError):
    """Asterisk could not be reached (connection refused, reset, timed out)."""

    def __init__(self, method: str, path: str, message: str):
        super().__init__(0, method, path, message)


class AriEventError(ValueError):
    """A WebSocket message that is not a usable ARI event."""


def own_prefix(app: str) -> str:
    """Every channel, bridge and playback id the agent creates starts with its
    application's name and a dash, so what is ours can be told apart from what
    belongs to the PBX, even after a crash."""
    return f"{app}-"


def make_id(kind: str, app: str = config.Ari.app) -> str:
    """A fresh id for something the agent creates: ``<app>-<kind>-<hex>``."""
    return f"{own_prefix(app)}{kind}-{uuid.uuid4().hex[:16]}"


def parse_event(raw: str | bytes) -> dict:
    """One ARI event from its WebSocket text; anything unusable is an AriEventError."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AriEventError(f"event is not UTF-8: {exc}") from None
    if not isinstance(raw, str):
        raise AriEventError(f"event must be text, got {type(raw).__name__}")
    try:
        event = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AriEventError(f"event is not JSON ({exc}): {_clip(raw)}") from None
    if not isinstance(event, dict):
        raise AriEventError(f"event is JSON {type(event).__name__}, not an object: {_clip(raw)}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise AriEventError(f"event has no \"type\": {_clip(raw)}")
    return event


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _query(params: dict[str, Any] | None) -> dict[str, str]:
    """ARI query parameters: None dropped, booleans as true/false, lists comma-joined."""
    out = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out[key] = str(value)
    return out


def _seg(value: str) -> str:
    """One path segment: ids come from events and must not be able to change the path."""
    return quote(str(value), safe="")


class AriClient:
    """One connection to ARI: REST requests and the event WebSocket.

    Use as ``async with AriClient(cfg.ari) as ari:``; it owns one aiohttp session.
    """

    def __init__(self, cfg: config.Ari):
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AriClient:
        # The Basic auth header is built here: aiohttp deprecates its `auth=` (3.14)
        # and only its newest releases have the replacement helper.
        token = base64.b64encode(f"{self.cfg.username}:{self.cfg.password}".encode()).decode()
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Basic {token}"},
            timeout=aiohttp.ClientTimeout(total=self.cfg.request_timeout),
            connector=aiohttp.TCPConnector(ssl=self._tls()),
        )
        return self

    def _tls(self) -> ssl.SSLContext | bool:
        """TLS for an https:// url: Asterisk's certificate checked against [ari]
        tls_ca_file, or the system's CAs; the host name always checked."""
        if not self.base.startswith("https://"):
            return True  # aiohttp's default; plain http uses no TLS at all
        context = ssl.create_default_context(cafile=self.cfg.tls_ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AriClient is not open: use `async with AriClient(cfg) as ari`")
        return self._session

    # -- REST ------------------------------------------------------------------------

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: Any = None) -> Any:
        """One REST call; returns the parsed JSON body (None when there is none)."""
        url = self.base + path
        try:
            async with self.session.request(method, url, params=_query(params),
                                            json=json) as resp:
                body = await resp.text()
                status = resp.status
        except TimeoutError:
            raise AriUnavailable(method, path,
                                 f"no answer within {self.cfg.request_timeout} s") from None
        except aiohttp.ClientError as exc:
            raise AriUnavailable(method, path, str(exc) or type(exc).__name__) from None
        except OSError as exc:
            raise AriUnavailable(method, path, str(exc)) from None
        if status >= 400:
            raise AriError(status, method, path, _error_message(body))
        if not body.strip():
            return None
        try:
            return _json_loads(body)
        except ValueError:
            raise AriError(status, method, path, f"answer is not JSON: {_clip(body)}") from None

    async def _gone_is_ok(self, method: str, path: str, params: dict[str, Any] | None = None,
                          gone: tuple[int, ...] = (404,)) -> bool:
        """For cleanup: True if done now, False if it was already gone (404)."""
        try:
            await self.request(method, path, params)
        except AriError as exc:
            if exc.status in gone:
                return False
            raise
        return True

    async def info(self) -> dict:
        return await self.request("GET", "/asterisk/info")

    async def applications(self) -> list[dict]:
        return await self.request("GET", "/applications")

    async def channels(self) -> list[dict]:
        return await self.request("GET", "/channels")

    async def channel(self, channel_id: str) -> dict:
        return await self.request("GET", f"/channels/{_seg(channel_id)}")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/answer")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/ring")

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """Hang up; False if the channel was already gone."""
        return await self._gone_is_ok("DELETE", f"/channels/{_seg(channel_id)}",
                                      {"reason": reason})

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str,
                                   priority: int = 1) -> None:
        """Send the channel out of Stasis to a dialplan location (e.g. the operator)."""
        await self.request("POST", f"/channels/{_seg(channel_id)}/continue",
                           {"context": context, "extension": extension, "priority": priority})

    async def originate(self, endpoint: str, channel_id: str, context: str, extension: str = "s",
                        priority: int = 1, caller_id: str = "", timeout: float = 30,
                        variables: dict[str, str] | None = None) -> dict:
        """Ring `endpoint` (e.g. ``PJSIP/5550101@trunk``); once answered, the call runs
        the dialplan at context,extension,priority.  Returns the new channel at once:
        whether it is answered, busy or unanswered comes in its events."""
        return await self.request(
            "POST", "/channels",
            {"endpoint": endpoint, "channelId": channel_id, "context": context,
             "extension": extension, "priority": priority, "callerId": caller_id or None,
             "timeout": max(1, round(timeout))},
            json={"variables": variables} if variables else None)

    async def play(self, channel_id: str, media: str | list[str], playback_id: str,
                   lang: str | None = None) -> dict:
        """Play media URIs (``sound:...``) to a channel; returns the playback."""
        return await self.request(
            "POST", f"/channels/{_seg(channel_id)}/play/{_seg(playback_id)}",
            {"media": media, "lang": lang})

    async def stop_playback(self, playback_id: str) -> bool:
        """Stop a playback; False if it had already finished."""
        return await self._gone_is_ok("DELETE", f"/playbacks/{_seg(playback_id)}")

    async def control_playback(self, playback_id: str, operation: str) -> bool:
        """pause or unpause a playback; False if it had already finished (404)
        or was not in a state to take it (409: not started yet, say)."""
        return await self._gone_is_ok("POST", f"/playbacks/{_seg(playback_id)}/control",
                                      {"operation": operation}, gone=(404, 409))

    async def bridges(self) -> list[dict]:
        return await self.request("GET", "/bridges")

    async def create_bridge(self, bridge_id: str, type: str = "mixing",
                            name: str | None = None) -> dict:
        return await self.request("POST", f"/bridges/{_seg(bridge_id)}",
                                  {"type": type, "name": name})

    async def destroy_bridge(self, bridge_id: str) -> bool:
        """Destroy a bridge; False if it was already gone.

        A bridge being torn down can still be listed for a moment after it has
        left Stasis: Asterisk then answers 409 "not in Stasis application".
        """
        return await self._gone_is_ok("DELETE", f"/bridges/{_seg(bridge_id)}", gone=(404, 409))

    async def add_channel(self, bridge_id: str, channel_id: str | list[str]) -> None:
        await self.request("POST", f"/bridges/{_seg(bridge_id)}/addChannel",
                           {"channel": channel_id})

    async def remove_channel(self, bridge_id: str, channel_id: str | list[str]) -> None:
        await self.request("POST", f"/bridges/{_seg(bridge_id)}/removeChannel",
                           {"channel": channel_id})

    async def external_media(self, channel_id: str, app: str, external_host: str, format: str,
                             encapsulation: str = "rtp", transport: str = "udp",
                             direction: str = "both") -> dict:
        """Create the channel that streams the call's audio to ``external_host`` (host:port).

        The channel enters Stasis on its own a moment later: wait for its
        StasisStart before adding it to a bridge (Asterisk answers 422 before).
        """
        return await self.request("POST", "/channels/externalMedia", {
            "channelId": channel_id, "app": app, "external_host": external_host,
            "format": format, "encapsulation": encapsulation, "transport": transport,
            "direction": direction})

    async def snoop(self, channel_id: str, snoop_id: str, app: str, spy: str = "in",
                    whisper: str = "none") -> dict:
        """A channel that hears `channel_id` (spy=in: what its caller says) in our app."""
        return await self.request("POST", f"/channels/{_seg(channel_id)}/snoop", {
            "snoopId": snoop_id, "app": app, "spy": spy, "whisper": whisper})

    async def get_variable(self, channel_id: str, name: str) -> str:
        """A channel variable's value (or a dialplan function's, e.g. ``CALLERID(num)``)."""
        answer = await self.request("GET", f"/channels/{_seg(channel_id)}/variable",
                                    {"variable": name})
        return (answer or {}).get("value", "")

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/variable",
                           {"variable": name, "value": value})

    # -- events ------------------------------------------------------------------------

    def _events_url(self) -> str:
        base = self.base
        if base.startswith("https://"):
            base = "wss://" + base[len("https://"):]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://"):]
        return f"{base}/events"

    async def events(self, subscribe_all: bool = False) -> AsyncIterator[dict]:
        """Yield ARI events for our application, forever.

        On each connect yields ``{"type": "AgentConnected"}``; when the
        connection is lost, ``{"type": "AgentDisconnected", "reason": ...}``,
        then reconnects with exponential backoff (with jitter) between
        cfg.reconnect_min and cfg.reconnect_max seconds.  Unusable messages are
        logged and skipped.  With `subscribe_all` the events of every channel come
        too (a call we place is heard of before it reaches our application).  Consume it with ``contextlib.aclosing`` so the
        WebSocket is closed when the consumer stops.
        """
        params = {"app": self.cfg.app, "subscribeAll": "true" if subscribe_all else "false"}
        url = self._events_url()
        failures = 0
        while True:
            try:
                ws = await self.session.ws_connect(
                    url, params=params, heartbeat=HEARTBEAT_S,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self.cfg.request_timeout))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("ARI events: cannot connect to %s (attempt %d): %s; retrying in %.1f s",
                            url, failures, _describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            reason = "closed by Asterisk"
            try:
                log.info("ARI events: connected to %s as application %r", url, self.cfg.app)
                yield {"type": "AgentConnected"}
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        try:
                            event = parse_event(msg.data)
                        except AriEventError as exc:
                            log.warning("ARI events: skipped a message: %s", exc)
                            continue
                        if event["type"] == "ApplicationReplaced":
                            # Asterisk gives an application to one WebSocket only: the
                            # newest.  Reconnecting would take it back and start a tug of
                            # war with the other agent, so this one only says so.
                            log.error("ARI events: another connection took over application "
                                      "%r; no more calls come here", self.cfg.app)
                        yield event
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        log.warning("ARI events: skipped a binary message (%d bytes)",
                                    len(msg.data))
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        reason = f"error: {_describe(ws.exception())}"
                        break
                if ws.close_code not in (None, 1000) and reason == "closed by Asterisk":
                    reason = f"closed by Asterisk (code {ws.close_code})"
            finally:
                await ws.close()
            failures = 1
            delay = self._backoff(failures)
            log.warning("ARI events: connection lost (%s); reconnecting in %.1f s", reason, delay)
            yield {"type": "AgentDisconnected", "reason": reason}
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        """Exponential from reconnect_min to reconnect_max, jittered so that several
        agents do not all knock on a restarted Asterisk at the same instant."""
        lo, hi = self.cfg.reconnect_min, max(self.cfg.reconnect_min, self.cfg.reconnect_max)
        delay = min(hi, lo * 2 ** min(failures - 1, 30))
        return random.uniform(delay / 2, delay) if delay > lo else delay


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        hint = " (check [ari] username and password)" if exc.status == 401 else ""
        return f"HTTP {exc.status} {exc.message}{hint}"
    return str(exc) or type(exc).__name__


def _json_loads(body: str) -> Any:
    # AriClient.request's `json` parameter (ARI's own word for a body) hides the module there
    return json.loads(body)


def _error_message(body: str) -> str:
    """Asterisk's {"message": ...} when the body has one, else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return _clip(body.strip())
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return _clip(body.strip())


# -- after a crash or a reconnect --------------------------------------------------------

def _in_our_stasis(channel: dict, app: str) -> bool:
    plan = channel.get("dialplan") or {}
    if not isinstance(plan, dict) or plan.get("app_name") != "Stasis":
        return False
    data = plan.get("app_data") or ""
    return isinstance(data, str) and data.split(",", 1)[0].strip() == app


def _is_own_media(channel: dict, app: str) -> bool:
    return (str(channel.get("id", "")).startswith(own_prefix(app))
            or str(channel.get("name", "")).startswith(MEDIA_CHANNEL_PREFIXES))


async def hand_over_orphans(client: AriClient, app: str, context: str, extension: str,
                            priority: int, keep: Iterable[str] = frozenset()) -> dict:
    """Send callers left in our Stasis application to a person; clean up our leftovers.

    Asterisk keeps channels parked in Stasis when the application's WebSocket
    goes away, so a caller of a crashed or disconnected agent hears silence
    until someone acts.  For every channel in ``Stasis(app, ...)`` whose id is
    not in `keep` (calls the running agent still handles): our own media
    channels (ids with our prefix, or externalMedia channel names) are hung
    up, callers are sent on to ``context,extension,priority``.  Then bridges
    with our id prefix are destroyed, unless they or a channel in them are in
    `keep`.  Safe to run at every (re)connect: a second run finds nothing.
    Returns counts: continued, hung_up, bridges_destroyed, gone, failed.
    """
    keep = set(keep)
    counts = {"continued": 0, "hung_up": 0, "bridges_destroyed": 0, "gone": 0, "failed": 0}
    for channel in await client.channels() or []:
        # (externalMedia channels show as Stasis(app) too: measured on 22.10)
        if not isinstance(channel, dict) or not _in_our_stasis(channel, app):
            continue
        channel_id = str(channel.get("id", ""))
        if not channel_id or channel_id in keep:
            continue
        name = channel.get("name", channel_id)
        try:
            if _is_own_media(channel, app):
                done = await client.hangup(channel_id)
                counts["hung_up" if done else "gone"] += 1
                log.info("orphaned media channel %s hung up", name)
            else:
                await client.continue_in_dialplan(channel_id, context, extension, priority)
                counts["continued"] += 1
                log.warning("orphaned caller %s sent to %s,%s,%s",
                            name, context, extension, priority)
        except AriError as exc:
            if exc.status == 404:
                counts["gone"] += 1
                continue
            counts["failed"] += 1
            log.error("orphaned channel %s could not be handed over: %s", name, exc)
    for bridge in await client.bridges() or []:
        if not isinstance(bridge, dict):
            continue
        bridge_id = str(bridge.get("id", ""))
        members = bridge.get("channels") or []
        if (not bridge_id.startswith(own_prefix(app)) or bridge_id in keep
                or not isinstance(members, list) or keep.intersection(members)):
            continue
        try:
            done = await client.destroy_bridge(bridge_id)
            counts["bridges_destroyed" if done else "gone"] += 1
        except AriError as exc:
            counts["failed"] += 1
            log.error("orphaned bridge %s could not be destroyed: %s", bridge_id, exc)
    return counts
