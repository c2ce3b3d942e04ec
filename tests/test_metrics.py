"""/metrics and /health: what the agent counts, what a scrape reads, and the HTTP side."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession

from asterisk_agent import config
from asterisk_agent.metrics import Metrics, MetricsServer, parse_listen


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one series in Prometheus text, None when it is absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_counters_and_histograms_show_in_the_text_format():
    m = Metrics()
    m.calls.labels("caller hung up").inc()
    m.calls.labels("operator").inc(2)
    m.turns.labels("book").inc()
    m.red_flags.inc()
    m.errors.labels("call").inc()
    for wait in (0.04, 0.25, 4.0):
        m.transcript_wait.labels("en").observe(wait)
    text = m.render().decode()
    assert sample(text, "asterisk_agent_calls_total", outcome="operator") == 2.0
    assert sample(text, "asterisk_agent_turns_total", intent="book") == 1.0
    assert sample(text, "asterisk_agent_red_flags_total") == 1.0
    assert sample(text, "asterisk_agent_errors_total", where="call") == 1.0
    assert sample(text, "asterisk_agent_transcript_wait_seconds_count", language="en") == 3.0
    assert sample(text, "asterisk_agent_transcript_wait_seconds_bucket", language="en", le="0.3") == 2.0
    assert "# TYPE asterisk_agent_transcript_wait_seconds histogram" in text


def test_depths_are_read_at_each_scrape():
    m = Metrics()
    live, queued = [3], {"stt": 0}
    m.watch_calls(lambda: live[0])
    m.watch_queue("stt", "en", lambda: queued["stt"])
    m.watch_outbox("pending", lambda: 7)
    text = m.render().decode()
    assert sample(text, "asterisk_agent_live_calls") == 3.0
    assert sample(text, "asterisk_agent_queue_depth", language="en", stage="stt") == 0.0
    assert sample(text, "asterisk_agent_ehr_outbox_depth", state="pending") == 7.0
    live[0], queued["stt"] = 1, 2
    text = m.render().decode()
    assert sample(text, "asterisk_agent_live_calls") == 1.0
    assert sample(text, "asterisk_agent_queue_depth", language="en", stage="stt") == 2.0


def test_the_endpoint_serves_metrics_and_health_and_nothing_else():
    async def scenario():
        m = Metrics()
        m.turns.labels("hours").inc()
        state = {"ok": True, "live_calls": 0}
        server = MetricsServer(m, lambda: dict(state))
        await server.start("127.0.0.1", 0)
        try:
            async with ClientSession() as http:
                base = f"http://127.0.0.1:{server.port}"
                async with http.get(base + "/metrics") as r:
                    metrics = (r.status, r.headers["Content-Type"], await r.text())
                async with http.get(base + "/health") as r:
                    healthy = (r.status, await r.json())
                state["ok"] = False
                async with http.get(base + "/health") as r:
                    unhealthy = r.status
                async with http.get(base + "/calls") as r:
                    missing = r.status
                async with http.post(base + "/metrics") as r:
                    posted = r.status
        finally:
            await server.close()
        return metrics, healthy, unhealthy, missing, posted

    (status, ctype, text), healthy, unhealthy, missing, posted = asyncio.run(scenario())
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert sample(text, "asterisk_agent_turns_total", intent="hours") == 1.0
    assert healthy == (200, {"ok": True, "live_calls": 0})
    assert (unhealthy, missing, posted) == (503, 404, 405)


def test_a_port_in_use_is_an_error_the_caller_can_catch():
    async def scenario():
        first = MetricsServer(Metrics(), lambda: {"ok": True})
        await first.start("127.0.0.1", 0)
        try:
            second = MetricsServer(Metrics(), lambda: {"ok": True})
            with pytest.raises(OSError):
                await second.start("127.0.0.1", first.port)
            await second.close()
        finally:
            await first.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9465", ("127.0.0.1", 9465)), ("[::1]:9000", ("::1", 9000)),
    (":9465", ("127.0.0.1", 9465)), ("", None)])
def test_listen_is_host_and_port_or_nothing(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9465", "localhost:http", "127.0.0.1:70000"])
def test_a_bad_listen_setting_is_refused_at_load(text):
    with pytest.raises(config.ConfigError, match=r"\[metrics\] listen"):
        config.parse(f"[metrics]\nlisten = {text}\n")
