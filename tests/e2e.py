"""Helpers for the end-to-end call tests (imported by them; holds no tests)."""

from __future__ import annotations

import asyncio
import time

from asterisk_agent.caller.scenario import run_scenario
from asterisk_agent.telephony.ari import AriClient


def call(cfg, scenario: dict, tmp_path=None) -> dict:
    return run_scenario(scenario, cfg, record_dir=tmp_path)


def explain(result: dict) -> str:
    lines = [f"passed={result['passed']} error={result.get('error')}"]
    for step in result["steps"]:
        lines.append(f"  {'ok ' if step['ok'] else 'BAD'} {step['step']} heard={step['heard']!r}"
                     f" latency_ms={step.get('latency_ms')}")
    lines.append(f"  whole call: {result['heard_transcript']!r}")
    return "\n".join(lines)


def leftovers(cfg) -> tuple[list, list]:
    """Channels and bridges still in Asterisk (ours or any)."""
    async def look():
        async with AriClient(cfg.ari) as ari:
            return await ari.channels(), await ari.bridges()
    return asyncio.run(look())


def wait_clean(cfg, timeout: float = 10.0) -> tuple[list, list]:
    deadline = time.monotonic() + timeout
    while True:
        channels, bridges = leftovers(cfg)
        if (not channels and not bridges) or time.monotonic() > deadline:
            return channels, bridges
        time.sleep(0.3)


GREETED = {"expect": "front desk", "timeout": 30}
