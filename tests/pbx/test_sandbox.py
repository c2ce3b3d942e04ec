"""The sandbox PBX, for real: Asterisk 22 from Debian sid in a chroot, on loopback only.

These tests start and stop the real sandbox (built once and cached; the first run
takes a minute or two) and leave it as they found it, running or not.  They need
root, debootstrap and espeak-ng.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest

from asterisk_agent.pbx.sandbox import (
    CONTEXTS,
    FRONT_DESK_CONTEXT,
    PROMPTS_DIR_IN,
    Sandbox,
    SandboxError,
    chroot_path,
    mounts_under,
    write_prompt,
)

# bounds for one start and one stop; measured ~0.6 s each on 2 cores
START_BOUND_S = 15.0
STOP_BOUND_S = 16.0


@pytest.fixture(scope="module")
def box(sandbox_cfg):
    if os.geteuid() != 0:
        pytest.fail("the sandbox PBX needs root (debootstrap, chroot, mount namespaces)")
    missing = [b for b in ("debootstrap", "espeak-ng", "unshare") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"missing {' '.join(missing)}: apt-get install debootstrap espeak-ng "
                    "util-linux")
    sandbox = Sandbox(sandbox_cfg)
    was_running = sandbox.status()["running"]
    sandbox.build()
    yield sandbox
    # leave it as found: other tests of the session may share it
    if was_running:
        sandbox.up()
    else:
        sandbox.down()


def ari_get(cfg, path: str, password: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(cfg.ari.url.rstrip("/") + path)
    secret = cfg.ari.password if password is None else password
    token = base64.b64encode(f"{cfg.ari.username}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def bound_addresses(port: int, proto: str) -> set[str]:
    """Local addresses with a socket on `port` (TCP: listening only), from /proc/net."""
    found = set()
    for family in (proto, proto + "6"):
        for line in Path(f"/proc/net/{family}").read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) != port or (proto == "tcp" and fields[3] != "0A"):
                continue
            if family == proto:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def wait_for_log(box: Sandbox, offset: int, pattern: str, timeout: float) -> str:
    """The log written since `offset` once it matches `pattern` (regex); fails on timeout."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        with open(box.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} in the Asterisk log within {timeout} s; it says:\n{text[-3000:]}")


def log_size(box: Sandbox) -> int:
    return box.log_path.stat().st_size if box.log_path.exists() else 0


def test_up_serves_ari_sip_and_the_dialplan_on_loopback_only(box, sandbox_cfg):
    box.down()
    t0 = time.monotonic()
    pid = box.up()
    assert time.monotonic() - t0 < START_BOUND_S

    status = box.status()
    assert status["running"] and status["pid"] == pid
    assert status["version"].startswith("22."), status["version"]
    assert status["ari"]
    assert status["contexts"] == {name: True for name in CONTEXTS}
    for context in ("ai-agent", "ai-agent-ivr", "ai-agent-demo", FRONT_DESK_CONTEXT):
        assert f"[ Context '{context}' created by 'pbx_config' ]" in \
            box.cli(f"dialplan show {context}")

    # ARI answers the agent's credentials, and only those
    code, info = ari_get(sandbox_cfg, "/asterisk/info")
    assert code == 200 and info["system"]["version"] == status["version"]
    assert ari_get(sandbox_cfg, "/asterisk/info", password="wrong")[0] == 401

    # SIP and HTTP listen on loopback only
    assert bound_addresses(sandbox_cfg.sandbox.sip_port, "udp") == {"127.0.0.1"}
    assert bound_addresses(int(sandbox_cfg.ari.url.split(":")[2].split("/")[0]), "tcp") \
        == {"127.0.0.1"}
    assert f"127.0.0.1:{sandbox_cfg.sandbox.sip_port}" in box.cli("pjsip show transports")

    # the mounts live in Asterisk's own namespace: the host sees none of them
    assert mounts_under(box.root) == []
    # ...yet Asterisk sees the agent's sounds directory at the path the agent plays from
    probe = Path(sandbox_cfg.sounds.dir) / "sandbox-probe.txt"
    probe.write_text("probe")
    try:
        inside = Path(f"/proc/{pid}/root") / sandbox_cfg.asterisk_sounds_dir.lstrip("/")
        assert (inside / probe.name).read_text() == "probe"
    finally:
        probe.unlink()


def test_up_when_running_returns_the_same_asterisk(box):
    pid = box.up()
    assert box.up() == pid
    assert box.status()["pid"] == pid


def test_asterisk_runs_at_realtime_priority(box):
    """highpriority in asterisk.conf: its media threads are not held back by the
    agent's models, which would make the mixing bridge drop the caller's audio."""
    pid = box.up()
    threads = list((Path("/proc") / str(pid) / "task").iterdir())
    policies = set()
    for t in threads:
        try:
            policies.add(os.sched_getscheduler(int(t.name)))
        except ProcessLookupError:
            pass  # a thread that ended meanwhile
    assert policies == {os.SCHED_RR}, (
        f"{len(threads)} Asterisk threads with scheduling policies {policies}")


def test_call_to_200_without_agent_reaches_the_front_desk(box, sandbox_cfg):
    box.up()
    code, apps = ari_get(sandbox_cfg, "/applications")
    assert code == 200
    if any(app["name"] == sandbox_cfg.ari.app for app in apps):
        pytest.fail(f"an ARI application {sandbox_cfg.ari.app!r} is connected to the sandbox "
                    "(an agent is running); this test needs none")
    offset = log_size(box)
    box.cli("channel originate Local/200@ai-agent-demo application Wait 5")
    text = wait_for_log(box, offset, r"Playing 'ai-agent/front-desk\.", timeout=10)
    # the order a caller lives through: Stasis fails, the dialplan says why, a person answers
    steps = [text.find(s) for s in (
        "Stasis(\"Local/200@ai-agent-demo",
        "AI agent is not connected",
        "[s@ai-agent-operator:1]",
        "Dial(\"Local/200@ai-agent-demo",
        f"[s@{FRONT_DESK_CONTEXT}:1] Answer",
        "sandbox front desk answered",
    )]
    assert -1 not in steps and steps == sorted(steps), text[-3000:]
    box.cli("channel request hangup all")


def test_with_no_operator_set_the_caller_hears_that_nobody_is_free(box):
    box.up()
    box.cli('dialplan set global AI_AGENT_OPERATOR ""')
    try:
        offset = log_size(box)
        box.cli("channel originate Local/s@ai-agent-operator application Wait 3")
        text = wait_for_log(box, offset, r"Playing 'all-circuits-busy-now\.", timeout=10)
        assert "AI_AGENT_OPERATOR is not set" in text
    finally:
        box.cli(f"dialplan set global AI_AGENT_OPERATOR Local/s@{FRONT_DESK_CONTEXT}")
        box.cli("channel request hangup all")


def test_asterisk_plays_what_the_agent_writes(box, sandbox_cfg, tmp_path):
    """A file written to [sounds] dir plays in Asterisk at [sounds] asterisk_dir."""
    box.up()
    wav = Path(sandbox_cfg.sounds.dir) / "sandbox-probe.wav"
    write_prompt("This is a test of the sounds directory.", wav)
    try:
        offset = log_size(box)
        path_in = f"{sandbox_cfg.asterisk_sounds_dir}/sandbox-probe"
        box.cli(f"channel originate Local/s@{FRONT_DESK_CONTEXT} application Playback {path_in}")
        text = wait_for_log(box, offset, rf"Playing '{re.escape(path_in)}\.", timeout=10)
        assert "does not exist" not in text
    finally:
        box.cli("channel request hangup all")
        wav.unlink()


def test_generated_prompts_are_8khz_mono_speech(box):
    box.up()
    folder = chroot_path(box.root, PROMPTS_DIR_IN)
    for name in ("ivr-menu", "front-desk"):
        with wave.open(str(folder / f"{name}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000  # over a second of speech


def test_down_stops_asterisk_and_leaves_nothing_behind(box, sandbox_cfg):
    pid = box.up()
    t0 = time.monotonic()
    assert box.down() is True
    assert time.monotonic() - t0 < STOP_BOUND_S
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    status = box.status()
    assert not status["running"] and status["pid"] is None and not status["ari"]
    assert mounts_under(box.root) == []
    assert bound_addresses(sandbox_cfg.sandbox.sip_port, "udp") == set()
    with pytest.raises(SandboxError, match="not running"):
        box.cli("core show version")
    assert box.down() is False


def test_a_second_cycle_starts_a_fresh_asterisk(box):
    box.down()
    first = box.up()
    box.down()
    second = box.up()
    assert second != first
    status = box.status()
    assert status["running"] and all(status["contexts"].values())
    box.down()
    assert mounts_under(box.root) == []


def test_restart_gives_a_new_asterisk(box):
    first = box.up()
    second = box.restart()
    assert second != first and box.status()["pid"] == second


def test_refuses_to_start_when_the_sip_port_is_taken(box, sandbox_cfg):
    box.down()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", sandbox_cfg.sandbox.sip_port))
        with pytest.raises(SandboxError, match=f"udp {sandbox_cfg.sandbox.sip_port}.*in use"):
            box.up()
    assert not box.status()["running"]


def test_build_is_cached(box):
    t0 = time.monotonic()
    info = box.build()
    assert time.monotonic() - t0 < 1.0
    assert info["asterisk"].split(":")[-1].startswith("22.")
