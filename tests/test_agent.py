"""The agent's event dispatch: malformed or unknown events are logged, never fatal."""

import asyncio

import pytest

from asterisk_agent.agent import Agent, Services
from asterisk_agent.config import Config
from asterisk_agent.telephony.leg import CallLeg


def make_agent() -> Agent:
    # dispatch of these events touches no model and no network: no services needed
    return Agent(Services(cfg=Config(), practice=None, protocols=None, stt=None, tts=None))


@pytest.mark.parametrize("event", [
    {},
    {"type": None},
    {"type": "SomethingNew", "channel": {"id": "x"}},
    {"type": "StasisEnd"},
    {"type": "StasisEnd", "channel": {}},
    {"type": "ChannelDtmfReceived", "channel": {"id": "unknown"}, "digit": "5"},
    {"type": "PlaybackFinished"},
    {"type": "PlaybackFinished", "playback": {"target_uri": "garbage"}},
    {"type": "ChannelHangupRequest", "channel": {"id": "nobody"}},
    {"type": "StasisStart", "channel": {"id": "ai-agent-leftover-media"}},
])
async def test_odd_events_do_not_raise(event):
    agent = make_agent()
    agent.dispatch(event)
    assert agent.calls == {}


async def test_events_reach_the_right_call():
    agent = make_agent()
    leg = CallLeg(agent.cfg, ari=None, channel={"id": "chan-1"}, args=[])
    agent.calls["chan-1"] = leg
    other = CallLeg(agent.cfg, ari=None, channel={"id": "chan-2"}, args=[])
    agent.calls["chan-2"] = other
    agent.dispatch({"type": "ChannelDtmfReceived", "channel": {"id": "chan-1"}, "digit": "0"})
    assert leg.dtmf.get_nowait().digit == "0" and other.dtmf.empty()
    # the media channels of a call are routed to it too
    loop = asyncio.get_running_loop()
    leg._ready = {leg.snoop_channel_id: loop.create_future()}
    agent.dispatch({"type": "StasisStart", "channel": {"id": leg.snoop_channel_id}})
    assert leg._ready[leg.snoop_channel_id].done()
    agent.dispatch({"type": "StasisEnd", "channel": {"id": "chan-2"}})
    assert other.gone.is_set() and not leg.gone.is_set()
