"""Health and metrics on localhost: `/metrics` (Prometheus text format) and `/health`.

Counters and histograms are kept by the call path as things happen (calls by
outcome, turns by what the agent understood, red flags, the wait for a
transcript, errors); the depths are read when scraped (live calls, work
waiting in the STT, TTS and language-model pools, HL7 messages not yet
accepted by the EHR).  Nothing here names a caller or a patient: labels are
outcomes, intents and stages only.  prometheus_client renders the format.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import exposition, generate_latest

# The classic text format (0.0.4), which every Prometheus reads; our names and
# labels are plain ASCII, so its text is the same as the newer format's.
# (prometheus_client before 0.22 had no separate name: its latest was 0.0.4.)
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", CONTENT_TYPE_LATEST)

# seconds from the end of a caller's turn to its transcript
TRANSCRIPT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("asterisk_agent_calls", "Calls the agent has finished, by outcome",
                             ["outcome"], registry=r)
        self.turns = Counter("asterisk_agent_turns",
                             "Caller turns answered, by what the agent understood",
                             ["intent"], registry=r)
        self.red_flags = Counter("asterisk_agent_red_flags",
                                 "Caller turns the urgent-symptom screen flagged", registry=r)
        self.errors = Counter("asterisk_agent_errors", "Errors, by where they happened",
                              ["where"], registry=r)
        self.transcript_wait = Histogram(
            "asterisk_agent_transcript_wait_seconds",
            "From the end of a caller's turn to its transcript", ["language"],
            buckets=TRANSCRIPT_BUCKETS, registry=r)
        self.live_calls = Gauge("asterisk_agent_live_calls", "Calls the agent is in now",
                                registry=r)
        # read from the agent when scraped (set_function), like the depths below
        self.ari_connected = Gauge("asterisk_agent_ari_connected",
                                   "1 while the agent's ARI application is connected", registry=r)
        self.queue_depth = Gauge("asterisk_agent_queue_depth",
                                 "Work waiting for or running in a model's pool",
                                 ["stage", "language"], registry=r)
        self.outbox_depth = Gauge("asterisk_agent_ehr_outbox_depth",
                                  "HL7 messages the EHR has not accepted yet", ["state"],
                                  registry=r)

    def watch_calls(self, live: Callable[[], int]) -> None:
        self.live_calls.set_function(live)

    def watch_queue(self, stage: str, language: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(stage, language).set_function(depth)

    def watch_outbox(self, state: str, depth: Callable[[], int]) -> None:
        self.outbox_depth.labels(state).set_function(depth)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (reads the depths now)."""
        return generate_latest(self.registry)


def parse_listen(text: str, example: str = "127.0.0.1:9465") -> tuple[str, int] | None:
    """"127.0.0.1:9465" as (host, port); "" (the listener off) as None.

    For every `listen` setting ([metrics], [agi]); `example` is the one its
    error message shows.
    """
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen {text!r}: write HOST:PORT, e.g. {example}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """The HTTP side: GET /metrics and GET /health, nothing else."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict]):
        self.metrics = metrics
        self.health = health
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        # rendering reads the outbox count from the store: off the event loop
        body = await asyncio.to_thread(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        state = self.health()
        return web.Response(text=json.dumps(state) + "\n", content_type="application/json",
                            status=200 if state.get("ok") else 503)

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # the port asked for, or the one the system gave for 0
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
