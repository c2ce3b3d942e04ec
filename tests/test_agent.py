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
    {"type": "Dial", "dialstatus": "BUSY"},
    {"type": "Dial", "peer": {"id": "not-ours"}, "dialstatus": "BUSY"},
    {"type": "ChannelDestroyed", "channel": {"id": "not-ours"}, "cause": 17},
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


class Placing:
    """A call being placed, as the dialer registers it (outbound/dialer.py Attempt)."""

    number = "5550101001"

    def __init__(self):
        self.dialstatus, self.endings = [], []

    def dialed(self, status):
        self.dialstatus.append(status)

    def ended(self, event):
        self.endings.append(event)


async def test_a_placed_call_hears_its_ringing_and_its_end():
    agent = make_agent()
    placing = Placing()
    agent.expect("outbound-1", placing)
    agent.dispatch({"type": "Dial", "peer": {"id": "outbound-1"}, "dialstatus": "RINGING"})
    agent.dispatch({"type": "Dial", "peer": {"id": "outbound-1"}, "dialstatus": "BUSY"})
    agent.dispatch({"type": "ChannelHangupRequest", "channel": {"id": "outbound-1"}})
    agent.dispatch({"type": "ChannelDestroyed", "channel": {"id": "outbound-1"}, "cause": 0})
    assert placing.dialstatus == ["RINGING", "BUSY"]
    assert [e["cause"] for e in placing.endings] == [0]
    assert agent.calls == {}
