"""The ARI client's pure parts: event parsing, query encoding, errors, backoff.

The client against a real Asterisk is in test_ari_live.py.
"""

from __future__ import annotations

import json

import pytest

from asterisk_agent import config
from asterisk_agent.telephony import ari
from asterisk_agent.telephony.ari import (
    AriClient,
    AriError,
    AriEventError,
    AriUnavailable,
    make_id,
    parse_event,
)


def test_parse_event_text_and_bytes():
    raw = '{"type": "StasisStart", "channel": {"id": "1.2"}, "args": ["direct"]}'
    assert parse_event(raw)["channel"]["id"] == "1.2"
    assert parse_event(raw.encode())["args"] == ["direct"]


@pytest.mark.parametrize("raw, words", [
    ("", "not JSON"),
    ("{", "not JSON"),
    ("StasisStart", "not JSON"),
    ("[1, 2]", "not an object"),
    ("null", "not an object"),
    ('"text"', "not an object"),
    ("42", "not an object"),
    ("{}", "no \"type\""),
    ('{"type": ""}', "no \"type\""),
    ('{"type": 5}', "no \"type\""),
    ('{"channel": {}}', "no \"type\""),
    (b"\xff\xfe{", "not UTF-8"),
    (None, "must be text"),
])
def test_parse_event_refuses_malformed(raw, words):
    with pytest.raises(AriEventError, match=words):
        parse_event(raw)


def test_parse_event_clips_huge_garbage_in_its_message():
    with pytest.raises(AriEventError) as err:
        parse_event("[" + "1," * 10000 + "1]")
    assert len(str(err.value)) < 400


def test_query_encoding():
    q = ari._query({"media": ["sound:a", "sound:b"], "lang": None, "flag": True, "n": 3})
    assert q == {"media": "sound:a,sound:b", "flag": "true", "n": "3"}


def test_ids_cannot_escape_their_path_segment():
    assert ari._seg("../asterisk/info") == "..%2Fasterisk%2Finfo"
    assert ari._seg("1700000000.12") == "1700000000.12"


def test_error_carries_asterisk_message():
    message = ari._error_message('{"message": "Channel not found"}')
    err = AriError(404, "GET", "/channels/x", message)
    assert (err.status, err.message) == (404, "Channel not found")
    assert "GET /channels/x: 404 Channel not found" in str(err)
    assert ari._error_message("<html>oops</html>") == "<html>oops</html>"
    assert isinstance(AriUnavailable("GET", "/", "refused"), AriError)


def test_make_id_is_ours_and_unique():
    ids = {make_id("bridge") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("ai-agent-bridge-") for i in ids)
    assert make_id("media", app="clinic").startswith(ari.own_prefix("clinic") + "media-")


def test_backoff_grows_to_the_maximum_with_jitter():
    client = AriClient(config.Ari(reconnect_min=0.5, reconnect_max=8.0))
    assert client._backoff(1) == 0.5
    for failures, top in ((2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (50, 8.0)):
        delays = [client._backoff(failures) for _ in range(200)]
        assert all(top / 2 <= d <= top for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_events_url_follows_the_rest_url():
    assert AriClient(config.Ari(url="http://h:8088/ari/"))._events_url() == "ws://h:8088/ari/events"
    assert AriClient(config.Ari(url="https://h/ari"))._events_url() == "wss://h/ari/events"


async def test_unreachable_asterisk_is_ari_unavailable():
    # port 9 on loopback: nothing listens there, the connection is refused at once
    cfg = config.Ari(url="http://127.0.0.1:9/ari", request_timeout=2.0)
    async with AriClient(cfg) as client:
        with pytest.raises(AriUnavailable) as err:
            await client.info()
    assert err.value.status == 0 and err.value.path == "/asterisk/info"


async def test_events_keeps_retrying_an_unreachable_asterisk(caplog):
    import asyncio
    import contextlib

    cfg = config.Ari(url="http://127.0.0.1:9/ari", reconnect_min=0.05, reconnect_max=0.1)
    async with AriClient(cfg) as client:
        async def consume():
            async with contextlib.aclosing(client.events()) as events:
                async for _ in events:
                    pytest.fail("nothing can be yielded without a connection")

        with caplog.at_level("WARNING", logger="asterisk_agent.ari"):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(consume(), 0.6)
    attempts = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(attempts) >= 3


def test_request_without_open_session_says_how_to_use_it():
    with pytest.raises(RuntimeError, match="async with"):
        _ = AriClient(config.Ari()).session


def test_orphan_selection_rules():
    ours = {"id": "1.1", "name": "PJSIP/alice-0001",
            "dialplan": {"app_name": "Stasis", "app_data": "ai-agent,direct"}}
    other_app = {"id": "1.2", "name": "PJSIP/bob-0002",
                 "dialplan": {"app_name": "Stasis", "app_data": "ai-agent2"}}
    not_stasis = {"id": "1.3", "name": "PJSIP/carol-0003",
                  "dialplan": {"app_name": "Dial", "app_data": "PJSIP/x"}}
    assert ari._in_our_stasis(ours, "ai-agent")
    assert not ari._in_our_stasis(other_app, "ai-agent")
    assert not ari._in_our_stasis(not_stasis, "ai-agent")
    assert not ari._in_our_stasis({"id": "x"}, "ai-agent")
    assert not ari._in_our_stasis({"dialplan": "garbage"}, "ai-agent")
    assert ari._is_own_media({"id": "ai-agent-media-1", "name": "Local/x"}, "ai-agent")
    assert not ari._is_own_media({"id": "ai-agent-media-1", "name": "Local/x"}, "clinic")
    assert ari._is_own_media({"id": "1.9", "name": "UnicastRTP/127.0.0.1:4-0"}, "ai-agent")
    assert not ari._is_own_media(ours, "ai-agent")
    json.dumps(ours)  # plain data, as Asterisk sends it
