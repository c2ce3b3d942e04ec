"""Helpers for the end-to-end call tests (imported by them; holds no tests)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from asterisk_agent.caller.scenario import run_scenario
from asterisk_agent.telephony.ari import AriClient

ROOT = Path(__file__).resolve().parents[1]


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


def agent_files(agent, cfg) -> list[Path]:
    """The agent's log and every file it keeps in its state directory, but the
    encrypted store and its key (Asterisk's own logs are the site's)."""
    state = Path(cfg.general.state_dir).expanduser()
    store = cfg.store_path.name
    return [agent.log_path] + sorted(
        p for p in state.rglob("*") if p.is_file()
        and not p.name.startswith(store) and p != cfg.store_key_path)


def phi_leaks(files: list[Path], words: list[str], exact: tuple[str, ...] = ()) -> list[str]:
    """Where any of `words` (whole words or numbers only: "banana" or a
    timestamp's digits are no leak) or `exact` strings occur, with the line."""
    patterns = ([rf"(?<!\w){re.escape(w)}(?!\w)" for w in words]
                + [re.escape(c) for c in exact])
    leaks = []
    for path in files:
        text = path.read_bytes().decode("latin-1")
        for pattern in patterns:
            for m in re.finditer(pattern, text, re.IGNORECASE):
                line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end())]
                leaks.append(f"{path.name}: {m.group(0)!r} in: {line[:300]}")
    return leaks


def sandbox_conf_variant(folder: Path, edits: dict[str, str]) -> Path:
    """etc/sandbox.conf with each `old` text replaced by `new` (every one must be
    there), written into `folder` beside links to the files it names by
    relative path (practice.conf, protocols/, ehr-seed.yaml)."""
    for name in ("practice.conf", "protocols", "ehr-seed.yaml"):
        (folder / name).symlink_to(ROOT / "etc" / name)
    text = (ROOT / "etc" / "sandbox.conf").read_text()
    for old, new in edits.items():
        assert old in text, f"etc/sandbox.conf has no {old!r}"
        text = text.replace(old, new, 1)
    path = folder / "variant.conf"
    path.write_text(text)
    return path
