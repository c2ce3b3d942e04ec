"""The sandbox's pure parts: apt sources, Asterisk config files, the project's dialplan.

No Asterisk runs here; these read the project's own etc/asterisk and dialplan
files and check that they agree with the agent's configuration.
"""

from __future__ import annotations

import dataclasses
import os
import wave
from pathlib import Path

import pytest

from asterisk_agent import config
from asterisk_agent.pbx.sandbox import (
    CONTEXTS,
    FRONT_DESK_CONTEXT,
    IVR_MENU_TEXT,
    SandboxError,
    check_project_files,
    chroot_path,
    manager_conf_problems,
    mirror_from_apt_sources,
    mounts_under,
    parse_asterisk_conf,
    project_root,
    render_extensions_conf,
    sandbox_ami_secret,
    write_prompt,
)
from asterisk_agent.telephony.ami import refused_actions

ROOT = Path(__file__).resolve().parents[2]

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def project_texts() -> dict[str, str]:
    files = sorted((ROOT / "etc" / "asterisk").glob("*.conf")) + \
        sorted((ROOT / "dialplan").glob("*.conf"))
    return {p.name: p.read_text() for p in files}


def extensions(text: str, context: str) -> list[str]:
    """The extension names of one dialplan context, in file order."""
    for section in parse_asterisk_conf(text):
        if section.name == context:
            return [v.split(",", 1)[0].strip() for k, v in section.settings if k == "exten"]
    raise AssertionError(f"no context [{context}]")


def test_mirror_is_the_first_non_security_deb_entry():
    assert mirror_from_apt_sources([DEB822], []) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_skips_options_and_security():
    one_line = ("deb http://mirror.example/debian-security bookworm-security main\n"
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://mirror.example/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n")
    assert mirror_from_apt_sources([], [one_line]) == "http://mirror.example/debian"


def test_no_mirror_is_none():
    assert mirror_from_apt_sources(["Types: deb-src\nURIs: http://x.example/\n"], [""]) is None


def test_asterisk_conf_keeps_repeated_sections_apart():
    text = """\
[general] ; trailing comment
enabled = yes
;-- a block
comment --;
[phone]
type = endpoint
allow => ulaw
[phone](!)
type = aor
path = a\\;b
"""
    sections = parse_asterisk_conf(text)
    assert [s.name for s in sections] == ["general", "phone", "phone"]
    assert sections[0].get("enabled") == "yes"
    assert sections[1].get("allow") == "ulaw"
    assert sections[2].get("type") == "aor" and sections[2].get("path") == "a\\;b"


def test_project_files_agree_with_the_sandbox_config(sandbox_cfg):
    assert check_project_files(sandbox_cfg, project_texts()) == []


@pytest.mark.parametrize("change, blamed", [
    (lambda c: dataclasses.replace(c, sandbox=dataclasses.replace(c.sandbox, sip_port=5070)),
     "pjsip.conf: no transport binds 127.0.0.1:5070"),
    (lambda c: dataclasses.replace(c, ari=dataclasses.replace(c.ari, password="other")),
     "ari.conf: the password of [asterisk-agent]"),
    (lambda c: dataclasses.replace(c, ari=dataclasses.replace(c.ari, url="http://127.0.0.1:8089/ari")),
     "http.conf: bindport = 8088"),
    (lambda c: dataclasses.replace(c, ari=dataclasses.replace(c.ari, app="other-app")),
     "ai-agent.conf: Stasis(ai-agent) but [ari] app = other-app"),
    (lambda c: dataclasses.replace(c, sandbox=dataclasses.replace(c.sandbox, rtp_end=20199)),
     "rtp.conf: rtpstart..rtpend = 20000..20999"),
    (lambda c: dataclasses.replace(
        c, dialplan=dataclasses.replace(c.dialplan, operator_context="front-desk")),
     "no context [front-desk]"),
    (lambda c: dataclasses.replace(c, agi=dataclasses.replace(c.agi, listen="127.0.0.1:4574")),
     "ai-agent.conf: AGI(agi://127.0.0.1:4573/...) but [agi] listen = 127.0.0.1:4574"),
    (lambda c: dataclasses.replace(c, agi=dataclasses.replace(c.agi, listen="")),
     "ai-agent.conf: AGI(agi://127.0.0.1:4573/...) but [agi] listen is empty"),
])
def test_a_disagreement_is_named(sandbox_cfg, change, blamed):
    problems = check_project_files(change(sandbox_cfg), project_texts())
    assert any(blamed in p for p in problems), problems


def test_a_transport_off_loopback_is_refused(sandbox_cfg):
    texts = project_texts()
    texts["pjsip.conf"] += "\n[wide]\ntype = transport\nprotocol = udp\nbind = 0.0.0.0:5062\n"
    assert check_project_files(sandbox_cfg, texts) == \
        ["pjsip.conf: transport [wide] binds 0.0.0.0:5062, not loopback"]


def test_missing_snippets_are_named(sandbox_cfg):
    texts = {n: t for n, t in project_texts().items() if n != "http.conf"}
    assert "http.conf is missing from etc/asterisk/" in check_project_files(sandbox_cfg, texts)


def test_dialplan_defines_every_context_and_the_operator_entry(sandbox_cfg):
    text = (ROOT / "dialplan" / "ai-agent.conf").read_text()
    names = {s.name for s in parse_asterisk_conf(text)}
    assert set(CONTEXTS) <= names
    assert sandbox_cfg.dialplan.operator_extension in \
        extensions(text, sandbox_cfg.dialplan.operator_context)
    assert extensions(text, "ai-agent-demo") == ["100", "200", "300"]


def test_ivr_choices_are_no_prefix_of_another_extension():
    text = (ROOT / "dialplan" / "ai-agent.conf").read_text()
    names = extensions(text, "ai-agent-ivr")
    for choice in ("1", "0"):
        assert choice in names
        assert [n for n in names if n.startswith(choice)] == [choice]


def test_after_stasis_the_caller_goes_to_the_operator():
    """Whatever Stasis returns, the next steps lead to the operator (never dead air)."""
    text = (ROOT / "dialplan" / "ai-agent.conf").read_text()
    section = next(s for s in parse_asterisk_conf(text) if s.name == "ai-agent")
    steps = [v for k, v in section.settings if k in ("exten", "same")]
    stasis = next(i for i, v in enumerate(steps) if "Stasis(" in v)
    after = steps[stasis + 1:]
    assert after and all("Goto" in v or "Log(" in v for v in after)
    assert after[-1].endswith("Goto(ai-agent-operator,s,1)")
    assert not any("Hangup" in v for v in after)


def test_extensions_conf_includes_the_project_dialplan_and_the_front_desk():
    text = render_extensions_conf(["ai-agent.conf"])
    assert "#include ai-agent.conf" in text
    sections = {s.name: s for s in parse_asterisk_conf(text)}
    assert sections["globals"].get("ai_agent_operator") == f"Local/s@{FRONT_DESK_CONTEXT}"
    assert FRONT_DESK_CONTEXT in sections


def test_chroot_path_keeps_absolute_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc/alternatives/prompts").mkdir(parents=True)
    (root / "usr/share/sounds").mkdir(parents=True)
    os.symlink("/etc/alternatives/prompts", root / "usr/share/sounds/en")
    assert chroot_path(root, "/usr/share/sounds/en/ai-agent") == \
        root / "etc/alternatives/prompts/ai-agent"
    with pytest.raises(SandboxError):
        chroot_path(root, "../etc")


def test_mounts_under_reads_the_mount_table():
    table = ("proc /proc proc rw 0 0\n"
             "proc /srv/box/root/proc proc rw 0 0\n"
             "/dev/vda /srv/box/root/my\\040dir ext4 rw 0 0\n"
             "/dev/vda /srv/box/rootfs ext4 rw 0 0\n")
    assert mounts_under(Path("/srv/box/root"), table) == \
        ["/srv/box/root/proc", "/srv/box/root/my dir"]


def test_project_root_is_this_checkout():
    assert project_root() == ROOT


def test_prompt_is_8khz_16bit_mono(tmp_path):
    wav = tmp_path / "menu.wav"
    write_prompt(IVR_MENU_TEXT, wav)
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        # "Press 1 for the assistant. Press 0 for the operator." takes a few seconds
        assert 2.0 < w.getnframes() / 8000 < 8.0
    assert not (tmp_path / "menu.espeak.wav").exists()


# --- AMI: manager.conf against [ami] ------------------------------------------------

SANDBOX_CONF = ROOT / "etc" / "sandbox.conf"


def ami_cfg(**ami):
    cfg = config.load(SANDBOX_CONF)
    return dataclasses.replace(cfg, ami=dataclasses.replace(cfg.ami, **ami))


def test_manager_conf_agrees_with_the_sandbox_ami():
    cfg = config.load(SANDBOX_CONF)
    manager = project_texts()["manager.conf"]
    assert manager_conf_problems(cfg, manager, secret="change-me") == []
    user = next(s for s in parse_asterisk_conf(manager) if s.name == cfg.ami.username)
    # the least the agent needs: no events, and the actions it sends (see ami.py)
    assert user.get("read") == "none" and user.get("write") == "reporting"
    assert refused_actions(user.get("write")) == []


@pytest.mark.parametrize("change, text_change, blamed", [
    ({"port": 5039}, None, "manager.conf: port = 5038, but [ami] port = 5039"),
    ({"username": "someone"}, None, "manager.conf: no user [someone]"),
    ({"host": "10.0.0.5"}, None, "the sandbox serves AMI on 127.0.0.1 only"),
    ({}, ("bindaddr = 127.0.0.1", "bindaddr = 0.0.0.0"), "bindaddr = 0.0.0.0, expected"),
    ({}, ("enabled = yes", "enabled = no"), "enabled must be yes"),
    ({}, ("write = reporting", "write = call"), "write = call does not allow CoreShowChannels"),
    ({}, ("write = reporting", "write = system"), "does not allow Getvar"),
])
def test_a_manager_conf_disagreement_is_named(change, text_change, blamed):
    manager = project_texts()["manager.conf"]
    if text_change:
        assert text_change[0] in manager
        manager = manager.replace(*text_change)
    problems = manager_conf_problems(ami_cfg(**change), manager, secret="change-me")
    assert any(blamed in p for p in problems), problems


def test_the_ami_secret_must_match_and_manager_conf_must_be_there():
    texts = project_texts()
    cfg = config.load(SANDBOX_CONF)
    assert "manager.conf: the secret of [asterisk-agent] differs from the one in " \
           "[ami] secret_file" in check_project_files(cfg, texts, ami_secret="other")
    without = {n: t for n, t in texts.items() if n != "manager.conf"}
    assert any("manager.conf is missing" in p for p in check_project_files(cfg, without))
    # without [ami] username nothing is asked of it, but it stays on loopback
    assert manager_conf_problems(ami_cfg(username=""), None) == []
    wide = texts["manager.conf"].replace("bindaddr = 127.0.0.1", "bindaddr = 0.0.0.0")
    assert manager_conf_problems(ami_cfg(username=""), wide) == \
        ["manager.conf: bindaddr = 0.0.0.0, expected 127.0.0.1"]


def test_manager_conf_sections_are_no_dialplan_contexts():
    texts = project_texts()
    # an event filter that names another application is no dialplan of the agent's
    texts["manager.conf"] += "\n[monitor]\nsecret = x\neventfilter = Data: Stasis(other-app)\n"
    assert check_project_files(config.load(SANDBOX_CONF), texts, ami_secret="change-me") == []


def test_the_sandbox_writes_the_ami_secret_file_once(tmp_path):
    cfg = ami_cfg(secret_file=tmp_path / "state" / "ami.secret")
    manager = project_texts()["manager.conf"]
    assert sandbox_ami_secret(cfg, manager) == "change-me"
    path = tmp_path / "state" / "ami.secret"
    assert path.read_text() == "change-me\n" and path.stat().st_mode & 0o777 == 0o600
    # a file already there is never written over: a mismatch is then named instead
    path.write_text("kept\n")
    assert sandbox_ami_secret(cfg, manager) == "kept"
    path.chmod(0o644)
    with pytest.raises(SandboxError, match="chmod 600"):
        sandbox_ami_secret(cfg, manager)
    # no AMI in the config: no file
    assert sandbox_ami_secret(ami_cfg(username="", secret_file=tmp_path / "none"),
                              manager) is None
    assert not (tmp_path / "none").exists()
