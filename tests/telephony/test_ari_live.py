"""The ARI client and RTP receiver against the real sandbox Asterisk.

Calls are placed without a SIP phone: ARI originates a Local channel whose
one half runs the project's dialplan into Stasis(ai-agent) (the "caller" the
agent sees) and whose other half sits at the sandbox front desk, which plays
a prompt in a loop, so real audio flows through the bridge to our externalMedia
RTP receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid

import numpy as np
import pytest

from asterisk_agent.telephony.ari import (
    AriClient,
    AriError,
    hand_over_orphans,
    make_id,
)
from asterisk_agent.telephony.rtp import FRAME_SAMPLES, RtpReceiver

FRONT_DESK = "sandbox-front-desk"
# ids of what these tests create (make_id("test-...")), so cleanup touches nothing else
TEST_PREFIX = make_id("test").rsplit("-", 1)[0]
TEST_CALLER_PREFIX = "test-caller-"


class EventPump:
    """Reads client.events() in the background so a test can wait for one event."""

    def __init__(self, client: AriClient):
        self.client = client
        self.seen: list[dict] = []
        self._new = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> EventPump:
        self._task = asyncio.create_task(self._run())
        await self.wait(lambda e: e["type"] == "AgentConnected", 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        async with contextlib.aclosing(self.client.events()) as events:
            async for event in events:
                async with self._new:
                    self.seen.append(event)
                    self._new.notify_all()

    async def wait(self, match, timeout: float, after: int = 0) -> dict:
        """The first event (at index >= after) for which match(event) is true."""
        async def find():
            async with self._new:
                index = after
                while True:
                    for i in range(index, len(self.seen)):
                        if match(self.seen[i]):
                            return self.seen[i]
                    index = len(self.seen)
                    await self._new.wait()
        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            kinds = [e["type"] for e in self.seen[after:]]
            if "ApplicationReplaced" in kinds:
                raise AssertionError(
                    f"another ARI client took over application {self.client.cfg.app!r} "
                    "(is an agent running against the sandbox? stop it)") from None
            raise AssertionError(f"no matching event within {timeout} s; saw {kinds}") from None


def stasis_start(channel_id: str):
    return lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == channel_id


async def place_call(client: AriClient, pump: EventPump) -> dict:
    """A channel that enters Stasis(ai-agent) through the project's dialplan."""
    # a caller's id is Asterisk's, never one with our prefix (those are the agent's own)
    caller_id = f"{TEST_CALLER_PREFIX}{uuid.uuid4().hex[:16]}"
    await client.request("POST", f"/channels/{caller_id}", {
        "endpoint": "Local/s@ai-agent", "context": FRONT_DESK, "extension": "s",
        "priority": 1, "otherChannelId": caller_id + "-2", "callerId": "Test <5551234>"})
    # the half of the Local channel that ran the dialplan is the one in Stasis
    event = await pump.wait(stasis_start(caller_id + "-2"), 10)
    return event


async def wait_gone(client: AriClient, channel_id: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while channel_id in {c["id"] for c in await client.channels()}:
        assert time.monotonic() < deadline, f"channel {channel_id} still there after {timeout} s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def client(pbx, sandbox_cfg):
    async with AriClient(sandbox_cfg.ari) as c:
        yield c
        # leave nothing of this test's behind for the next one
        for ch in await c.channels():
            if ch["id"].startswith((TEST_PREFIX, TEST_CALLER_PREFIX)):
                await c.hangup(ch["id"])
        for br in await c.bridges():
            if br["id"].startswith(TEST_PREFIX):
                await c.destroy_bridge(br["id"])


async def test_info_and_applications(client):
    info = await client.info()
    assert info["system"]["version"].startswith("22")
    assert isinstance(await client.applications(), list)


async def test_bridge_lifecycle_and_idempotent_cleanup(client, sandbox_cfg):
    bridge_id = make_id("test-bridge")
    bridge = await client.create_bridge(bridge_id, sandbox_cfg.media.bridge_type, "test")
    assert bridge["id"] == bridge_id
    assert "softmix" in bridge["technology"] or bridge["bridge_type"] == "mixing"
    assert bridge_id in {b["id"] for b in await client.bridges()}
    assert await client.destroy_bridge(bridge_id) is True
    assert await client.destroy_bridge(bridge_id) is False  # already gone: not an error


async def test_not_found_is_an_ari_error_with_asterisk_message(client):
    with pytest.raises(AriError) as err:
        await client.channel("no-such-channel")
    assert err.value.status == 404
    assert err.value.message == "Channel not found"
    assert err.value.method == "GET" and err.value.path == "/channels/no-such-channel"
    assert await client.hangup("no-such-channel") is False
    assert await client.stop_playback("no-such-playback") is False
    with pytest.raises(AriError) as err:
        await client.request("POST", "/bridges/x/addChannel", {"channel": "nope"})
    assert err.value.status in (400, 404, 422) and err.value.message


async def test_wrong_password_is_a_401_ari_error(pbx, sandbox_cfg):
    cfg = dataclasses.replace(sandbox_cfg.ari, password="wrong")
    async with AriClient(cfg) as c:
        with pytest.raises(AriError) as err:
            await c.info()
    assert err.value.status == 401


async def test_events_connect_and_register_the_application(client, sandbox_cfg):
    async with EventPump(client) as pump:
        assert pump.seen[0] == {"type": "AgentConnected"}
        names = {a["name"] for a in await client.applications()}
        assert sandbox_cfg.ari.app in names
    # the consumer stopped: the WebSocket is closed and the application goes away
    deadline = time.monotonic() + 5
    while sandbox_cfg.ari.app in {a["name"] for a in await client.applications()}:
        assert time.monotonic() < deadline, "application still registered after close"
        await asyncio.sleep(0.1)


async def test_websocket_outlives_the_request_timeout(pbx, sandbox_cfg):
    cfg = dataclasses.replace(sandbox_cfg.ari, request_timeout=1.0)
    async with AriClient(cfg) as c, EventPump(c) as pump:
        await asyncio.sleep(2.5)  # idle longer than the session's request timeout
        event = await place_call(c, pump)
        assert not [e for e in pump.seen if e["type"] == "AgentDisconnected"]
        await c.hangup(event["channel"]["id"])


@pytest.mark.parametrize("fmt", ["ulaw", "slin"])
async def test_call_with_external_media_delivers_real_audio(client, sandbox_cfg, fmt):
    app = sandbox_cfg.ari.app
    async with EventPump(client) as pump:
        start = await place_call(client, pump)
        caller = start["channel"]
        assert start["args"] == ["direct", "en"]
        assert caller["dialplan"]["app_name"] == "Stasis"
        await client.ring(caller["id"])
        await client.answer(caller["id"])
        await client.set_variable(caller["id"], "AI_AGENT_TEST", "hello")
        assert await client.get_variable(caller["id"], "AI_AGENT_TEST") == "hello"
        assert await client.get_variable(caller["id"], "CALLERID(num)") == "5551234"

        bridge_id = make_id("test-bridge")
        await client.create_bridge(bridge_id, sandbox_cfg.media.bridge_type, "call")
        rx = await RtpReceiver.open("127.0.0.1", 41500, 41599, fmt)
        try:
            media_id = make_id("test-media")
            seen = len(pump.seen)
            media = await client.external_media(media_id, app, f"{rx.host}:{rx.port}", fmt)
            assert media["name"].startswith("UnicastRTP/")
            await pump.wait(stasis_start(media_id), 5, after=seen)
            await client.add_channel(bridge_id, [caller["id"], media_id])
            assert await rx.wait_first_packet(3.0), "no RTP from Asterisk"

            frames, t0 = [], time.monotonic()
            async for frame, _arrived in rx.frames():
                frames.append(frame)
                if len(frames) == 50:
                    break
            elapsed = time.monotonic() - t0
            assert all(f.shape == (FRAME_SAMPLES,) for f in frames)
            # 50 frames of 20 ms arrive in real time, about one second
            assert 0.7 < elapsed < 1.6, elapsed
            # the front desk's prompt is playing: there is sound, not silence
            assert np.abs(np.concatenate(frames).astype(np.int32)).max() > 1000
            assert rx.payload_type == (0 if fmt == "ulaw" else 10)
            assert rx.remote is not None and rx.remote[0] == "127.0.0.1"
            assert rx.stats["garbage"] == rx.stats["wrong_payload_type"] == 0

            playback_id = make_id("test-playback")
            seen = len(pump.seen)
            playback = await client.play(caller["id"], ["sound:beep", "sound:beep"], playback_id,
                                         lang="en")
            assert playback["id"] == playback_id
            await pump.wait(lambda e: e["type"] == "PlaybackStarted"
                            and e["playback"]["id"] == playback_id, 5, after=seen)
            finished = await pump.wait(lambda e: e["type"] == "PlaybackFinished"
                                       and e["playback"]["id"] == playback_id, 10, after=seen)
            assert finished["playback"]["state"] == "done"

            # barge-in: a playback stopped while it plays
            playback_id = make_id("test-playback")
            seen = len(pump.seen)
            await client.play(caller["id"], "sound:tt-monkeys", playback_id)
            await pump.wait(lambda e: e["type"] == "PlaybackStarted"
                            and e["playback"]["id"] == playback_id, 5, after=seen)
            assert await client.stop_playback(playback_id) is True
            await pump.wait(lambda e: e["type"] == "PlaybackFinished"
                            and e["playback"]["id"] == playback_id, 2, after=seen)
        finally:
            rx.close()
        seen = len(pump.seen)
        assert await client.hangup(media_id) is True
        assert await client.hangup(caller["id"]) is True
        # a hangup takes effect a moment after the answer; once the channel is gone,
        # hanging it up again is no error
        await pump.wait(lambda e: e["type"] == "StasisEnd"
                        and e["channel"]["id"] == caller["id"], 5, after=seen)
        await wait_gone(client, caller["id"])
        assert await client.hangup(caller["id"]) is False
        assert await client.destroy_bridge(bridge_id) is True


async def test_hand_over_orphans_sends_callers_to_the_operator(client, sandbox_cfg):
    app, plan = sandbox_cfg.ari.app, sandbox_cfg.dialplan
    # what was there before (another test's) stands for calls the agent still has
    others = {c["id"] for c in await client.channels()} | {b["id"] for b in await client.bridges()}
    async with EventPump(client) as pump:
        orphan = (await place_call(client, pump))["channel"]
        kept = (await place_call(client, pump))["channel"]
        await client.answer(orphan["id"])
        bridge_id, media_id = make_id("test-bridge"), make_id("test-media")
        await client.create_bridge(bridge_id, sandbox_cfg.media.bridge_type, "call")
        rx = await RtpReceiver.open("127.0.0.1", 41500, 41599, "ulaw")
        seen = len(pump.seen)
        await client.external_media(media_id, app, f"{rx.host}:{rx.port}", "ulaw")
        await pump.wait(stasis_start(media_id), 5, after=seen)
        await client.add_channel(bridge_id, [orphan["id"], media_id])
    # the agent is gone (WebSocket closed); Asterisk keeps the channels in Stasis
    try:
        still = await client.channel(orphan["id"])
        assert still["dialplan"]["app_name"] == "Stasis"

        counts = await hand_over_orphans(client, app, plan.operator_context,
                                         plan.operator_extension, plan.operator_priority,
                                         keep={kept["id"], *others})
        assert counts["continued"] == 1, counts
        assert counts["hung_up"] == 1 and counts["bridges_destroyed"] == 1, counts
        assert counts["failed"] == 0, counts

        deadline = time.monotonic() + 5
        while (await client.channel(orphan["id"]))["dialplan"]["context"] != \
                plan.operator_context:
            assert time.monotonic() < deadline, "the caller never reached the operator context"
            await asyncio.sleep(0.1)
        assert (await client.channel(kept["id"]))["dialplan"]["app_name"] == "Stasis"
        await wait_gone(client, media_id)
        assert bridge_id not in {b["id"] for b in await client.bridges()}

        # a second pass finds nothing more to do: it is safe to run at every connect
        again = await hand_over_orphans(client, app, plan.operator_context,
                                        plan.operator_extension, plan.operator_priority,
                                        keep={kept["id"], *others})
        assert again["continued"] == again["hung_up"] == again["bridges_destroyed"] == 0
    finally:
        rx.close()


async def test_events_reconnect_after_asterisk_restarts(pbx, sandbox_cfg):
    async with AriClient(sandbox_cfg.ari) as c, EventPump(c) as pump:
        seen = len(pump.seen)
        await asyncio.to_thread(pbx.restart)
        lost = await pump.wait(lambda e: e["type"] == "AgentDisconnected", 10, after=seen)
        assert lost["reason"]
        await pump.wait(lambda e: e["type"] == "AgentConnected", 15, after=seen)
        # and it works after the reconnect
        start = await place_call(c, pump)
        assert await c.hangup(start["channel"]["id"]) is True
