"""A real Asterisk for development and tests: Debian sid's packages in a cached chroot.

Asterisk is not packaged for Debian 12, so the sandbox debootstraps a minimal sid
system once (about 90 s, then cached) and runs `asterisk -f` inside it.  The
project's own `etc/asterisk/*.conf` snippets and `dialplan/*.conf` files are copied
into the sandbox's config directory verbatim, so tests exercise exactly what an
administrator installs; only the base files Asterisk needs to start and a little
sandbox-only glue (a stand-in front desk) are generated here.

Asterisk runs in a private mount namespace with /proc, /dev and the agent's sounds
directory mounted inside it: when Asterisk exits the mounts vanish with it, so a
test that dies leaves nothing mounted on the host.  Everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import functools

import base64
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from asterisk_agent.config import Config

log = logging.getLogger(__name__)

PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-wav")
SUITE = "sid"
READY_MARKER = ".asterisk-agent-ready"
# the sandbox's config directory, as a path inside the chroot
CONF_DIR_IN = "/etc/asterisk-agent-sandbox"
# where the sandbox writes its generated prompts, inside the chroot
PROMPTS_DIR_IN = "/usr/share/asterisk/sounds/en/ai-agent"
# contexts the project's dialplan must define
CONTEXTS = ("ai-agent", "ai-agent-operator", "ai-agent-urgent", "ai-agent-ivr", "ai-agent-demo",
            "ai-agent-outbound", "ai-agent-agi")
FRONT_DESK_CONTEXT = "sandbox-front-desk"
ON_CALL_CONTEXT = "sandbox-on-call"
# the stand-in patients that outbound calls reach (etc/sandbox.conf [outbound] dial)
PATIENTS_CONTEXT = "ai-agent-sandbox-patients"
# the last digit of a stand-in patient's number: what answers (the seed phone's
# digits alone answer as 2 does)
PATIENT_BEHAVIOURS = {
    "1": "a person who confirms who they are (results, or any type)",
    "2": "a person who confirms, gives pain 2 on the keypad and has no concerns (post-op)",
    "3": "a person who confirms and does not need the instructions again (pre-op)",
    "4": "somebody else: a wrong number",
    "5": "busy",
    "6": "rings and rings: nobody answers",
    "7": "an answering machine, which records the message left on it",
    "8": "a person who confirms and gives pain 5 on the keypad (post-op): the on-call",
}
# where the answering machine keeps its messages, inside the chroot
MACHINE_DIR_IN = "/var/spool/asterisk/sandbox-machine"

# The words callers hear.  In production the administrator records their own
# prompts under the same names (sounds/en/ai-agent/ivr-menu.wav); the sandbox
# synthesizes these so that a test caller can check them by ear (STT).
IVR_MENU_TEXT = "Press 1 for the assistant. Press 0 for the operator."
IVR_MENU_ES_TEXT = "Para español, oprima el dos."
FRONT_DESK_TEXT = "You have reached the front desk. Please hold."
ON_CALL_TEXT = "This is the nurse on call."
# what the stand-in patients of outbound calls say (PATIENTS_CONTEXT)
PATIENT_WORDS = {
    "patient-hello": "Hello?",
    "patient-yes": "Yes, speaking.",
    "patient-fine": "No, I'm fine, thank you.",
    "patient-no-thanks": "No, thank you.",
    "patient-wrong": "No, you have the wrong number.",
    "machine-greeting": "Hi, you have reached the family phone. We cannot come to the "
                        "phone right now. Please leave your name and number after the tone, "
                        "and we will call you back.",
}
PROMPTS = {"ivr-menu": IVR_MENU_TEXT, "ivr-menu-es": IVR_MENU_ES_TEXT,
           "front-desk": FRONT_DESK_TEXT, "on-call": ON_CALL_TEXT, **PATIENT_WORDS}
# the voice of each prompt not in English: (engine, voice), as in [tts]
PROMPT_VOICES = {"ivr-menu-es": ("espeak-ng", "es-419+klatt4")}

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0
# Asterisk's runtime directories; there is no init in the chroot to create them
RUNTIME_DIRS_IN = ("/run/asterisk", "/var/log/asterisk", "/var/spool/asterisk",
                   "/var/lib/asterisk", "/var/cache/asterisk")
# where the sandbox's dialplan records calls (AI_AGENT_RECORDINGS); etc/sandbox.conf
# [recording] dir is the same directory seen from outside the chroot
RECORDINGS_DIR_IN = "/var/spool/asterisk/monitor/ai-agent"

# Runs a command inside the chroot with /proc, /dev (and optionally one more
# directory) mounted in the private mount namespace that `unshare` made: the
# mounts die with the command.  `exec` keeps the command's PID that of unshare.
_IN_CHROOT_SH = """set -e
root=$1; src=$2; target=$3; shift 3
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
if [ -n "$src" ]; then mount --bind "$src" "$target"; fi
exec chroot "$root" "$@"
"""


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message says why and what to do."""


# --- pure helpers: apt sources, Asterisk config files ------------------------


def mirror_from_apt_sources(deb822: list[str], one_line: list[str]) -> str | None:
    """The first non-security Debian mirror URI in the host's apt sources.

    `deb822` are the texts of /etc/apt/sources.list.d/*.sources, `one_line` those
    of sources.list and *.list.  The sandbox must use the mirror the machine is
    allowed to reach, so it never names a host itself.
    """
    for text in deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in fields.get("types", "").split():
                continue
            uris = fields.get("uris", "").split()
            if not uris or "security" in fields.get("suites", "") or "security" in uris[0]:
                continue
            return uris[0]
    for text in one_line:
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2 and "security" not in words[0] and "security" not in words[1]:
                return words[0]
    return None


@dataclass(frozen=True)
class ConfSection:
    """One [section] of an Asterisk config file, settings in file order."""

    name: str
    settings: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in reversed(self.settings):
            if k == key:
                return v
        return default


def strip_comments(text: str) -> str:
    """Asterisk config text without its comments (`;` to line end, `;-- --;` blocks)."""
    text = re.sub(r";--.*?--;", "", text, flags=re.S)
    return "\n".join(re.split(r"(?<!\\);", line, maxsplit=1)[0] for line in text.splitlines())


def parse_asterisk_conf(text: str) -> list[ConfSection]:
    """Sections of an Asterisk config file, repeated names kept apart.

    Hand-written because configparser cannot read Asterisk's dialect: a name may
    head several sections (pjsip's endpoint, aor and identify), `=>` assigns,
    `[name](template)` follows a header, and `;` comments may end any line.
    """
    sections: list[ConfSection] = []
    name: str | None = None
    settings: list[tuple[str, str]] = []
    for raw in strip_comments(text).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"\[([^\]]+)\]", line)
        if m:
            if name is not None:
                sections.append(ConfSection(name, tuple(settings)))
            name, settings = m.group(1).strip(), []
            continue
        m = re.match(r"([^=]+?)\s*=>?\s*(.*)$", line)
        if m and name is not None:
            settings.append((m.group(1).strip().lower(), m.group(2).strip()))
    if name is not None:
        sections.append(ConfSection(name, tuple(settings)))
    return sections


def ari_endpoint(cfg: Config) -> tuple[str, int]:
    """Host and port of the ARI URL in the config."""
    parts = urlsplit(cfg.ari.url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


def check_project_files(cfg: Config, files: dict[str, str],
                        ami_secret: str | None = None) -> list[str]:
    """What in the project's Asterisk files disagrees with the config.

    The sandbox runs the administrator's snippets verbatim rather than rewriting
    them, so ports, credentials and names in them must match the agent's config;
    each disagreement is returned as a sentence naming the file and the setting.
    `files` maps a file name (http.conf, ai-agent.conf, ...) to its text;
    `ami_secret` is what [ami] secret_file holds (None: not compared).
    """
    problems: list[str] = []
    ari_host, ari_port = ari_endpoint(cfg)
    if ari_host not in ("127.0.0.1", "localhost"):
        problems.append(f"[ari] url {cfg.ari.url}: the sandbox serves ARI on 127.0.0.1 only")

    def sections(name: str) -> list[ConfSection]:
        if name not in files:
            problems.append(f"{name} is missing from etc/asterisk/")
            return []
        return parse_asterisk_conf(files[name])

    general = [s for s in sections("http.conf") if s.name == "general"]
    if general:
        http = general[-1]
        if (http.get("enabled") or "no").lower() not in ("yes", "true", "on", "1"):
            problems.append("http.conf: [general] enabled must be yes (ARI runs on it)")
        if http.get("bindaddr") != "127.0.0.1":
            problems.append(f"http.conf: bindaddr = {http.get('bindaddr')}, expected 127.0.0.1")
        if http.get("bindport") != str(ari_port):
            problems.append(f"http.conf: bindport = {http.get('bindport')}, "
                            f"but [ari] url {cfg.ari.url} uses port {ari_port}")
    elif "http.conf" in files:
        problems.append("http.conf has no [general] section")

    if "ari.conf" in files:
        users = [s for s in sections("ari.conf")
                 if s.name == cfg.ari.username and s.get("type") == "user"]
        if not users:
            problems.append(f"ari.conf: no user [{cfg.ari.username}] (the [ari] username)")
        elif (users[-1].get("password_format") or "plain") == "plain" \
                and users[-1].get("password") != cfg.ari.password:
            problems.append(f"ari.conf: the password of [{cfg.ari.username}] differs from "
                            "[ari] password in the agent's config")
    else:
        sections("ari.conf")

    transports = [s for s in sections("pjsip.conf") if s.get("type") == "transport"]
    want = f"127.0.0.1:{cfg.sandbox.sip_port}"
    binds = [s.get("bind") for s in transports]
    if "pjsip.conf" in files and want not in binds:
        problems.append(f"pjsip.conf: no transport binds {want} ([sandbox] sip_port)")
    problems += [f"pjsip.conf: transport [{s.name}] binds {s.get('bind')}, not loopback"
                 for s in transports if not (s.get("bind") or "").startswith("127.0.0.1:")]

    rtp = [s for s in sections("rtp.conf") if s.name == "general"]
    if rtp:
        start, end = rtp[-1].get("rtpstart"), rtp[-1].get("rtpend")
        if (start, end) != (str(cfg.sandbox.rtp_start), str(cfg.sandbox.rtp_end)):
            problems.append(f"rtp.conf: rtpstart..rtpend = {start}..{end}, but [sandbox] says "
                            f"{cfg.sandbox.rtp_start}..{cfg.sandbox.rtp_end}")

    problems += manager_conf_problems(cfg, files.get("manager.conf"), ami_secret)

    dialplan = {n: t for n, t in files.items() if n not in
                ("http.conf", "ari.conf", "pjsip.conf", "rtp.conf", "manager.conf")}
    contexts = {s.name for t in dialplan.values() for s in parse_asterisk_conf(t)}
    for context in (*CONTEXTS, cfg.dialplan.operator_context, cfg.outbound.context):
        if context not in contexts:
            problems.append(f"dialplan: no context [{context}] in dialplan/*.conf")
    for name, text in dialplan.items():
        for app in re.findall(r"\bStasis\(\s*([^,)\s]+)", strip_comments(text)):
            # ${AI_AGENT_OUTBOUND_APP}: named by the agent when it places a call
            if app != cfg.ari.app and not app.startswith("${"):
                problems.append(f"{name}: Stasis({app}) but [ari] app = {cfg.ari.app}")
    # AGI(agi://HOST[:PORT]/...) must reach the agent's FastAGI server
    from asterisk_agent.metrics import parse_listen

    agi = parse_listen(cfg.agi.listen)
    listen = f"{agi[0]}:{agi[1]}" if agi else None
    for name, text in dialplan.items():
        for address in re.findall(r"\bAGI\(\s*agi://([^/,)\s]+)", strip_comments(text)):
            # FastAGI's own port when none is written
            if (address if ":" in address else f"{address}:4573") != listen:
                problems.append(f"{name}: AGI(agi://{address}/...) but [agi] listen "
                                + (f"= {cfg.agi.listen}" if listen else "is empty"))
    return problems


def manager_conf_problems(cfg: Config, text: str | None, secret: str | None = None) -> list[str]:
    """What in manager.conf disagrees with [ami]: AMI on loopback at [ami] port,
    the [ami] username as a user whose secret is the one in [ami] secret_file
    and whose write classes allow every action the agent sends."""
    from asterisk_agent.telephony.ami import refused_actions

    a = cfg.ami
    if text is None:
        return ["manager.conf is missing from etc/asterisk/ ([ami] username is set)"] \
            if a.username else []
    problems: list[str] = []
    if a.username and a.host not in ("127.0.0.1", "localhost"):
        problems.append(f"[ami] host {a.host}: the sandbox serves AMI on 127.0.0.1 only")
    sections = parse_asterisk_conf(text)
    general = [s for s in sections if s.name == "general"]
    if not general:
        return problems + ["manager.conf has no [general] section"]
    g = general[-1]
    if g.get("bindaddr") != "127.0.0.1":
        problems.append(f"manager.conf: bindaddr = {g.get('bindaddr')}, expected 127.0.0.1")
    if not a.username:
        return problems
    if (g.get("enabled") or "no").lower() not in ("yes", "true", "on", "1"):
        problems.append("manager.conf: [general] enabled must be yes ([ami] username is set)")
    if (g.get("port") or "5038") != str(a.port):
        problems.append(f"manager.conf: port = {g.get('port') or '5038 (unset)'}, "
                        f"but [ami] port = {a.port}")
    users = [s for s in sections if s.name == a.username]
    if not users:
        return problems + [f"manager.conf: no user [{a.username}] (the [ami] username)"]
    user = users[-1]
    if secret is not None and user.get("secret") != secret:
        problems.append(f"manager.conf: the secret of [{a.username}] differs from the one in "
                        "[ami] secret_file")
    refused = refused_actions(user.get("write") or "")
    if refused:
        problems.append(f"manager.conf: [{a.username}] write = {user.get('write') or ''} "
                        f"does not allow {', '.join(refused)}")
    return problems


def sandbox_ami_secret(cfg: Config, manager_conf: str | None) -> str | None:
    """The secret in [ami] secret_file, for the sandbox's agent.  When the file is
    missing, the sandbox writes it from the secret of the [ami] username in the
    project's manager.conf (mode 0600 from its creation, never over a file).
    None when the config uses no AMI or there is no secret to write."""
    from asterisk_agent.compliance.store import write_new_private
    from asterisk_agent.config import ConfigError
    from asterisk_agent.telephony.ami import read_secret

    a = cfg.ami
    if not a.username:
        return None
    path = cfg.ami_secret_path
    users = [s for s in parse_asterisk_conf(manager_conf or "") if s.name == a.username]
    secret = users[-1].get("secret") if users else None
    if not path.exists():
        if not secret:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_new_private(path, f"{secret}\n".encode())
        except FileExistsError:
            pass  # made meanwhile: read below
    try:
        return read_secret(path, cfg.path)
    except ConfigError as exc:
        raise SandboxError(str(exc)) from None


def mounts_under(path: Path, mounts_text: str | None = None) -> list[str]:
    """Mount points at or below `path` (deepest first), from /proc/self/mounts."""
    if mounts_text is None:
        mounts_text = Path("/proc/self/mounts").read_text()
    top = os.path.realpath(path)
    found = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        # the kernel writes spaces in mount points as \040
        point = fields[1].replace("\\040", " ")
        if point == top or point.startswith(top + "/"):
            found.append(point)
    return sorted(found, reverse=True)


def chroot_path(root: Path, path_in: str) -> Path:
    """The host path of `path_in` as the chroot sees it.

    Debian's tree holds absolute symlinks (/var/run -> /run); followed from the
    host they would point outside the chroot, so resolve them against `root`.
    """
    if not path_in.startswith("/") or ".." in Path(path_in).parts:
        raise SandboxError(f"{path_in!r}: expected an absolute path without '..'")
    parts = list(Path(path_in).parts[1:])
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise SandboxError(f"{path_in}: too many symlinks inside {root}")
            target = os.readlink(candidate)
            if ".." in Path(target).parts:
                target = os.path.normpath(os.path.join("/", os.path.relpath(current, root), target))
            if target.startswith("/"):
                current = root
            parts = list(Path(target).parts[1 if target.startswith("/") else 0:]) + parts
            continue
        current = candidate
    return current


def render_asterisk_conf(moddir_in: str) -> str:
    return f"""\
; Generated by asterisk-agent's sandbox on every start; edits are lost.
[directories]
astetcdir => {CONF_DIR_IN}
astmoddir => {moddir_in}
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /run/asterisk
astlogdir => /var/log/asterisk
astcachedir => /var/cache/asterisk
astsbindir => /usr/sbin

[options]
runuser = asterisk
rungroup = asterisk
verbose = 3
; realtime scheduling for Asterisk's media threads: on a server that also runs
; the agent's models, a mixing or spy thread held back 80 ms loses the caller's
; audio (the bridge flushes what it queued), and words go missing
highpriority = yes
"""


# Modules that need hardware, outside services or databases the sandbox lacks.
# autoload with a noload list: an explicit load list breaks, because the loader
# alone knows the dependencies (res_ari needs res_websocket_client in 22.x).
NOLOAD = (
    "chan_dahdi", "codec_dahdi", "res_timing_dahdi", "chan_mobile", "chan_console",
    "chan_iax2", "chan_unistim", "chan_skinny", "chan_mgcp", "chan_ooh323", "chan_motif",
    "res_xmpp", "res_corosync", "res_snmp", "res_hep", "res_hep_pjsip", "res_hep_rtcp",
    "res_calendar", "res_calendar_caldav", "res_calendar_ews", "res_calendar_exchange",
    "res_calendar_icalendar", "res_config_ldap", "res_config_pgsql", "res_config_mysql",
    "res_config_odbc", "res_odbc", "res_odbc_transaction", "func_odbc", "res_pgsql",
    "cdr_pgsql", "cel_pgsql", "cdr_tds", "cel_tds", "cdr_radius", "cel_radius",
    "cdr_sqlite3_custom", "cel_sqlite3_custom", "cdr_custom", "cel_custom", "cdr_csv",
    "cdr_manager", "res_phoneprov", "res_pjsip_phoneprov_provider", "res_smdi",
    "res_stun_monitor", "res_pjsip_stir_shaken", "res_stir_shaken", "pbx_dundi",
    "pbx_lua", "pbx_ael", "res_prometheus", "res_statsd", "app_voicemail",
    "app_voicemail_imap", "app_voicemail_odbc", "app_minivm", "app_meetme",
    "app_festival", "res_fax", "res_fax_spandsp", "app_fax", "res_mwi_devstate",
    "res_pjsip_outbound_registration", "res_pjsip_outbound_publish",
    "res_pjsip_exten_state",
)


def render_modules_conf() -> str:
    lines = ["; Generated by asterisk-agent's sandbox on every start; edits are lost.",
             "[modules]", "autoload = yes"]
    lines += [f"noload = {m}.so" for m in NOLOAD]
    return "\n".join(lines) + "\n"


AMD_CONF = """\
; Generated by asterisk-agent's sandbox on every start; edits are lost.
[general]
initial_silence = 2500
greeting = 1500
after_greeting_silence = 800
total_analysis_time = 5000
min_word_length = 100
between_words_silence = 50
maximum_number_of_words = 2
maximum_word_length = 5000
silence_threshold = 256
"""


QUEUES_CONF = f"""\
; Generated by asterisk-agent's sandbox on every start; edits are lost.
[general]
persistentmembers = no

; the stand-in front desk: a member who is free
[{FRONT_DESK_CONTEXT}]
member => Local/s@{FRONT_DESK_CONTEXT}/n

; nobody can answer: the one member's state is a phone Asterisk does not have
; (INVALID, whatever calls came before; the test phone would read NOT_INUSE
; once a call from it has ended)
[sandbox-nobody]
member => Local/s@{FRONT_DESK_CONTEXT}/n,0,Nobody here,PJSIP/sandbox-nobody
"""


LOGGER_CONF = """\
; Generated by asterisk-agent's sandbox on every start; edits are lost.
[general]
dateformat = %F %T.%3q

[logfiles]
console => notice,warning,error
; verbose keeps every dialplan step, which tests read to follow a call
full => notice,warning,error,verbose,dtmf
"""


def patient_number(phone: str, behaviour: str) -> str:
    """A stand-in patient's number: the seed's phone digits, then 00 and the behaviour
    (555-0101, a machine: 5550101007)."""
    return re.sub(r"\D", "", phone) + "00" + behaviour


def render_patients(patients: list[dict]) -> str:
    """The stand-in patients, one pattern each: its last digit picks the behaviour."""
    lines = [f"[{PATIENTS_CONTEXT}]",
             "; the seed's patients (etc/ehr-seed.yaml), each with the date of birth"
             " they type"]
    for p in patients:
        birth = p.get("birth_date")
        digits = re.sub(r"\D", "", str(p.get("phone", "")))
        if not digits or not isinstance(birth, date):
            continue
        lines += [f"exten => _{patient_number(digits, 'X')},1,"
                  f"Set(DOB={birth:%m%d%Y})",
                  " same => n,Goto(ai-agent-sandbox-patient,${EXTEN:-1},1)",
                  # the phone on the chart itself (a campaign from the EHR's
                  # schedule): a patient who confirms and answers, as 2 does
                  f"exten => {digits},1,Set(DOB={birth:%m%d%Y})",
                  " same => n,Goto(ai-agent-sandbox-patient,2,1)"]
    return "\n".join(lines) + "\n"


def render_extensions_conf(dialplan_files: list[str], patients: list[dict] | None = None) -> str:
    """The sandbox's extensions.conf: the project's dialplan plus sandbox-only glue."""
    includes = "\n".join(f"#include {name}" for name in dialplan_files)
    stand_ins = render_patients(patients or [])
    return f"""\
; Generated by asterisk-agent's sandbox on every start; edits are lost.
; The project's dialplan files are included unchanged; the rest is sandbox-only.
[general]
static = yes
writeprotect = yes

[globals]
; Sandbox only: "the operator" is a stand-in front desk.  A real site sets
; AI_AGENT_OPERATOR to a phone or queue (see dialplan/ai-agent.conf).
AI_AGENT_OPERATOR = Local/s@{FRONT_DESK_CONTEXT}
; and "on call" a stand-in nurse
AI_AGENT_ONCALL = Local/s@{ON_CALL_CONTEXT}
; every call recorded here (the sandbox's config takes them into the store)
AI_AGENT_RECORDINGS = {RECORDINGS_DIR_IN}

{includes}

; Sandbox only: a person at the front desk answers and asks the caller to hold,
; so that a test caller can hear that it reached a person.
[{FRONT_DESK_CONTEXT}]
exten => s,1,Answer()
 same => n,Log(NOTICE,sandbox front desk answered a call from ${{CALLERID(num)}})
 same => n,Set(TIMEOUT(absolute)=60)
 same => n(hold),Playback(ai-agent/front-desk)
 same => n,Wait(1)
 same => n,Goto(hold)

; Sandbox only: the nurse on call answers.
[{ON_CALL_CONTEXT}]
exten => s,1,Answer()
 same => n,Log(NOTICE,sandbox on-call nurse answered a call from ${{CALLERID(num)}})
 same => n,Set(TIMEOUT(absolute)=60)
 same => n(hold),Playback(ai-agent/on-call)
 same => n,Wait(1)
 same => n,Goto(hold)

; Sandbox only: the patients that outbound calls reach.  A number is the seed
; phone's digits, 00 and what answers (see PATIENT_BEHAVIOURS in sandbox.py).
{stand_ins}
[ai-agent-sandbox-patient]
exten => _[1-48],1,Answer()
 same => n,Set(TIMEOUT(absolute)=120)
 same => n,Wait(0.5)
 same => n,Playback(ai-agent/patient-hello)
 same => n,Gosub(ai-agent-sandbox-listen,s,1)
 same => n,GotoIf($[${{EXTEN}} = 4]?wrong)
 same => n,Playback(ai-agent/patient-yes)
 same => n,Gosub(ai-agent-sandbox-listen,s,1)
 same => n,SendDTMF(${{DOB}},150)
 same => n,GotoIf($[${{EXTEN}} = 1]?wait)
 same => n,Gosub(ai-agent-sandbox-listen,s,1)
 same => n,GotoIf($[${{EXTEN}} = 3]?done)
 same => n,SendDTMF(${{IF($[${{EXTEN}} = 8]?5:2)}},150)
 same => n,Gosub(ai-agent-sandbox-listen,s,1)
 same => n,Playback(ai-agent/patient-fine)
 same => n,Goto(wait)
 same => n(done),Playback(ai-agent/patient-no-thanks)
 same => n,Goto(wait)
 same => n(wrong),Playback(ai-agent/patient-wrong)
 ; the agent hangs up
 same => n(wait),Wait(60)
exten => 5,1,Busy(5)
exten => 6,1,Ringing()
 same => n,Wait(120)
exten => 7,1,Answer()
 same => n,Set(TIMEOUT(absolute)=120)
 same => n,Wait(0.5)
 same => n,Playback(ai-agent/machine-greeting&beep)
 same => n,Record({MACHINE_DIR_IN}/${{DOB}}-${{EPOCH}}.wav,4,60,kqx)

; the stand-in patient waits for the agent to speak and then stop: its question
[ai-agent-sandbox-listen]
exten => s,1,WaitForNoise(300,1,30)
 same => n,WaitForSilence(1500,1,30)
 same => n,Return()
"""


def _hosts_file(hostname: str) -> str:
    return (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
            f"::1\tlocalhost ip6-localhost ip6-loopback {hostname}\n")


def project_root() -> Path:
    """The source checkout this package runs from (the parent of asterisk_agent/)."""
    return Path(__file__).resolve().parent.parent.parent


# --- the sandbox -------------------------------------------------------------


class Sandbox:
    """A cached Debian sid chroot with Asterisk, configured from the project's files.

    `cfg.sandbox.dir` holds `root/` (the chroot) and `run/` (PID file, build logs,
    Asterisk's console output).
    """

    def __init__(self, cfg: Config, project: Path | None = None):
        self.cfg = cfg
        self.dir = Path(os.path.expanduser(cfg.sandbox.dir))
        self.root = self.dir / "root"
        self.run_dir = self.dir / "run"
        self.pid_file = self.run_dir / "asterisk.pid"
        self.project = project or project_root()
        self._process: subprocess.Popen | None = None

    # -- paths ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (self.root / READY_MARKER).is_file()

    @property
    def conf_dir(self) -> Path:
        return self.root / CONF_DIR_IN.lstrip("/")

    @property
    def log_path(self) -> Path:
        """Asterisk's full log (notices, warnings and every dialplan step)."""
        return chroot_path(self.root, "/var/log/asterisk/full")

    @property
    def console_path(self) -> Path:
        """What Asterisk wrote to its console (start-up errors land here)."""
        return self.run_dir / "asterisk.out"

    # -- build ---------------------------------------------------------------

    def build(self, rebuild: bool = False) -> dict:
        """Build the chroot once (debootstrap + apt); later calls reuse it.

        Returns what the ready-marker records (Asterisk version, timings).
        """
        _require_root()
        if rebuild and self.root.exists():
            if self._running_pid():
                raise SandboxError("the sandbox is running: stop it (pbx down) before a rebuild")
            self._remove_tree(self.root)
        if self.ready:
            return self.build_info()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        _ensure_debootstrap()
        mirror = host_mirror()
        partial = self.root.with_name(self.root.name + ".partial")
        if partial.exists():
            self._remove_tree(partial)
        log.info("debootstrap --variant=minbase %s into %s", SUITE, partial)
        self._run_logged(["debootstrap", "--variant=minbase", SUITE, str(partial), mirror],
                         self.run_dir / "debootstrap.log")
        t1 = time.monotonic()
        # Maintainer scripts must not start daemons: there is no init here.
        policy = partial / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # apt inside needs DNS; configure() points resolv.conf at loopback again.
        (partial / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", partial / "etc/resolv.conf")
        # sid's Release file is often past Valid-Until on a snapshot mirror.
        (partial / "etc/apt/apt.conf.d/99asterisk-agent").write_text(
            'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n')
        apt_log = self.run_dir / "chroot-apt.log"
        apt_log.write_text("")
        self._run_logged(_in_chroot(partial, ["apt-get", "update"]), apt_log, append=True)
        self._run_logged(_in_chroot(partial, ["env", "DEBIAN_FRONTEND=noninteractive",
                                              "apt-get", "install", "-y", *PACKAGES]),
                         apt_log, append=True)
        self._run_logged(_in_chroot(partial, ["apt-get", "clean"]), apt_log, append=True)
        version = subprocess.run(
            ["chroot", str(partial), "dpkg-query", "-W", "-f", "${Version}", "asterisk"],
            capture_output=True, text=True, check=True).stdout.strip()
        t2 = time.monotonic()
        info = {"asterisk": version, "built": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "debootstrap_s": round(t1 - t0, 1), "apt_s": round(t2 - t1, 1)}
        (partial / READY_MARKER).write_text(json.dumps(info, indent=1) + "\n")
        partial.rename(self.root)
        log.info("sandbox built in %.0f s: Asterisk %s", t2 - t0, version)
        return info

    def build_info(self) -> dict:
        try:
            return json.loads((self.root / READY_MARKER).read_text())
        except (OSError, ValueError) as exc:
            raise SandboxError(f"no usable sandbox at {self.root} ({exc}): "
                               "pbx up builds one") from None

    # -- configure -----------------------------------------------------------

    def project_files(self) -> dict[str, Path]:
        """The project's Asterisk files by name: etc/asterisk/*.conf, dialplan/*.conf."""
        etc, dialplan = self.project / "etc" / "asterisk", self.project / "dialplan"
        files: dict[str, Path] = {}
        for folder in (etc, dialplan):
            found = sorted(folder.glob("*.conf")) if folder.is_dir() else []
            if not found:
                raise SandboxError(
                    f"no {folder.relative_to(self.project)}/*.conf under {self.project}: "
                    "the sandbox runs from a source checkout of asterisk-agent")
            for path in found:
                if path.name in files or path.name in _GENERATED:
                    raise SandboxError(f"{path}: the name {path.name} is taken "
                                       "(by another project file or by the sandbox's own)")
                files[path.name] = path
        return files

    def configure(self) -> None:
        """Write the sandbox's config dir: generated base files plus the project's files."""
        _require_root()
        if not self.ready:
            raise SandboxError(f"no sandbox at {self.root}: pbx up builds one")
        files = self.project_files()
        texts = {name: path.read_text(encoding="utf-8") for name, path in files.items()}
        # the agent's AMI secret file, written from manager.conf on the first start
        ami_secret = sandbox_ami_secret(self.cfg, texts.get("manager.conf"))
        problems = check_project_files(self.cfg, texts, ami_secret=ami_secret)
        if problems:
            raise SandboxError("the project's Asterisk files disagree with the config:\n  "
                               + "\n  ".join(problems))
        moddirs = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not moddirs:
            raise SandboxError(f"no Asterisk modules in {self.root}: {_REBUILD_HINT}")
        moddir_in = "/" + str(moddirs[0].relative_to(self.root))
        dialplan = sorted(n for n, p in files.items() if p.parent.name == "dialplan")
        generated = {
            "asterisk.conf": render_asterisk_conf(moddir_in),
            "modules.conf": render_modules_conf(),
            "logger.conf": LOGGER_CONF,
            "extensions.conf": render_extensions_conf(dialplan, self._seed_patients()),
            # answering-machine detection (dialplan: AMD() of ai-agent-outbound): the
            # package's defaults, written out because the sandbox has its own conf dir
            "amd.conf": AMD_CONF,
            # queues for the transfer check over AMI: one a person can answer, one not
            "queues.conf": QUEUES_CONF,
            "stasis.conf": "", "cdr.conf": "", "cel.conf": "",
        }
        # Rewritten whole each time, so a file removed from the project goes too.
        if self.conf_dir.exists():
            shutil.rmtree(self.conf_dir)
        self.conf_dir.mkdir(mode=0o755, parents=True)
        for name, text in generated.items():
            (self.conf_dir / name).write_text(text)
        for name, path in files.items():
            shutil.copyfile(path, self.conf_dir / name)
        for path in self.conf_dir.iterdir():
            path.chmod(0o644)
        # pjlib resolves the machine's own host name at start: answer it from
        # /etc/hosts, and send any other lookup to loopback rather than the network.
        # (unlinked first: a symlink there would point at the host's own file)
        for name, text in (("hosts", _hosts_file(socket.gethostname())),
                           ("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")):
            (self.root / "etc" / name).unlink(missing_ok=True)
            (self.root / "etc" / name).write_text(text)
        self._write_prompts()

    def _seed_patients(self) -> list[dict]:
        """The simulated EHR's patients ([ehr] provider_hours_file, the seed), for the
        stand-in patients of outbound calls; none when the config names no seed."""
        path = self.cfg.provider_hours_path
        if path is None or not path.is_file():
            return []
        seed = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return [p for p in seed.get("patients") or [] if isinstance(p, dict)]

    def _write_prompts(self) -> None:
        """Speak the sandbox's prompts into 8 kHz WAVs, unless already done for this text."""
        folder = chroot_path(self.root, PROMPTS_DIR_IN)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in PROMPTS.items():
            wav, said = folder / f"{name}.wav", folder / f"{name}.txt"
            engine, voice = PROMPT_VOICES.get(name, (PROMPT_VOICE, ""))
            # the record names the voice too, so a change of voice remakes the file
            record = f"{engine}{' ' + voice if voice else ''}: {text}"
            if wav.is_file() and said.is_file() and said.read_text() == record:
                continue
            write_prompt(text, wav, engine, voice)
            said.write_text(record)

    # -- run -----------------------------------------------------------------

    def up(self) -> int:
        """Build if needed, configure, start Asterisk and wait until ARI answers.

        Returns Asterisk's PID.  When the sandbox already runs, says so and
        returns its PID unchanged: restart() applies edited project files.
        """
        _require_root()
        pid = self._running_pid()
        if pid:
            log.info("sandbox Asterisk already running, pid %d", pid)
            return pid
        self.build()
        self.configure()
        self._check_ports_free()
        mount_point = self._prepare_runtime()
        t0 = time.monotonic()
        command = _in_chroot(self.root, [
            "/usr/sbin/asterisk", "-f", "-C", f"{CONF_DIR_IN}/asterisk.conf",
            "-U", "asterisk", "-G", "asterisk"],
            bind=(self.cfg.sounds.dir, mount_point))
        with open(self.console_path, "wb") as console:
            # a session of its own: Asterisk outlives the command that started it
            # and a Ctrl-C meant for that command does not reach it
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, env=_clean_env())
        pid = self._process.pid
        self.pid_file.write_text(f"{pid}\n")
        try:
            self._wait_for_ari(pid, t0 + START_TIMEOUT_S)
            t1 = time.monotonic()
            self.cli("core waitfullybooted")
        except BaseException:
            self._stop(pid)
            raise
        t2 = time.monotonic()
        log.info("sandbox Asterisk pid %d: ARI answered after %.2f s, fully booted after %.2f s",
                 pid, t1 - t0, t2 - t0)
        return pid

    def down(self) -> bool:
        """Stop Asterisk by its PID (SIGKILL after 15 s).  False if it was not running."""
        pid = self._running_pid()
        if pid:
            t0 = time.monotonic()
            self._stop(pid)
            log.info("sandbox Asterisk pid %d stopped in %.2f s", pid, time.monotonic() - t0)
        else:
            log.info("sandbox Asterisk is not running")
        self.pid_file.unlink(missing_ok=True)
        left = mounts_under(self.root) if self.root.exists() else []
        if left:
            raise SandboxError(f"still mounted under the sandbox: {', '.join(left)} "
                               "(not by this sandbox: it mounts only in a private namespace)")
        return bool(pid)

    def restart(self) -> int:
        self.down()
        return self.up()

    def status(self) -> dict:
        """Whether Asterisk runs, its version, whether ARI answers and the dialplan is loaded."""
        pid = self._running_pid()
        info = self._ari_info() if pid else None
        contexts = {name: False for name in CONTEXTS}
        if pid:
            for name in CONTEXTS:
                try:
                    shown = self.cli(f"dialplan show {name}")
                except SandboxError:
                    continue
                contexts[name] = f"[ Context '{name}' created by" in shown
        version = None
        if info:
            version = info.get("system", {}).get("version")
        elif self.ready:
            version = self.build_info().get("asterisk")
        return {
            "running": bool(pid),
            "pid": pid,
            "version": version,
            "ari": info is not None,
            "ari_url": self.cfg.ari.url,
            "sip": f"udp 127.0.0.1:{self.cfg.sandbox.sip_port}",
            "contexts": contexts,
            "built": self.ready,
            "log": str(self.log_path) if self.ready else None,
        }

    def cli(self, command: str) -> str:
        """Run one Asterisk CLI command (`asterisk -rx`) in the sandbox; its output."""
        if not self._running_pid():
            raise SandboxError("the sandbox Asterisk is not running (pbx up)")
        try:
            done = subprocess.run(
                ["chroot", str(self.root), "/usr/sbin/asterisk", "-C",
                 f"{CONF_DIR_IN}/asterisk.conf", "-rx", command],
                capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=_clean_env())
        except subprocess.TimeoutExpired:
            raise SandboxError(f"asterisk -rx {command!r} gave no answer in {CLI_TIMEOUT_S:.0f} s") \
                from None
        if done.returncode != 0:
            raise SandboxError(f"asterisk -rx {command!r} failed: "
                               f"{(done.stderr or done.stdout).strip()}")
        return done.stdout

    # -- internals -----------------------------------------------------------

    def _running_pid(self) -> int | None:
        """The PID in the PID file, if that process is this sandbox's live Asterisk."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._process is not None and self._process.pid == pid:
            return pid if self._alive(pid) else None
        return pid if self._is_sandbox_asterisk(pid) else None

    def _alive(self, pid: int) -> bool:
        """Whether `pid` still runs (not gone, not a zombie)."""
        if self._process is not None and self._process.pid == pid:
            # started here: the handle is exact, and polling reaps it (no zombie)
            return self._process.poll() is None
        return _process_alive(pid)

    def _is_sandbox_asterisk(self, pid: int) -> bool:
        """Whether `pid` runs Asterisk on this sandbox's config (PIDs are reused)."""
        for _ in range(5):
            if not self._alive(pid):
                return False
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False
            if cmdline:
                return CONF_DIR_IN.encode() in cmdline
            time.sleep(0.01)  # empty while the process is between exec()s or exiting
        return False

    def _stop(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not self._wait_gone(pid, STOP_TIMEOUT_S):
            log.warning("Asterisk pid %d ignored SIGTERM for %.0f s: SIGKILL", pid, STOP_TIMEOUT_S)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_gone(pid, 5.0)
        if self._process is not None and self._process.pid == pid:
            self._process = None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _check_ports_free(self) -> None:
        """Refuse to start when another program holds the SIP or ARI port."""
        _, ari_port = ari_endpoint(self.cfg)
        taken = []
        for kind, port in ((socket.SOCK_DGRAM, self.cfg.sandbox.sip_port),
                           (socket.SOCK_STREAM, ari_port)):
            with socket.socket(socket.AF_INET, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    # a closed connection in TIME_WAIT is no reason to refuse
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken.append(f"{'udp' if kind == socket.SOCK_DGRAM else 'tcp'} {port}")
        if taken:
            holders = ""
            if shutil.which("ss"):
                ports = " or ".join(f"sport = :{p.split()[1]}" for p in taken)
                holders = subprocess.run(["ss", "-Hlnptu", ports], capture_output=True,
                                         text=True).stdout.strip()
            raise SandboxError(f"port {' and '.join(taken)} on 127.0.0.1 already in use; "
                               "stop whatever holds it or change [sandbox] sip_port / [ari] url"
                               + (f":\n{holders}" if holders else ""))

    def _prepare_runtime(self) -> Path:
        """Create Asterisk's runtime dirs and the sounds mount point; the mount point."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = _chroot_user(self.root, "asterisk")
        for path_in in (*RUNTIME_DIRS_IN, RECORDINGS_DIR_IN, MACHINE_DIR_IN):
            path = chroot_path(self.root, path_in)
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)
        for stale in ("asterisk.ctl", "asterisk.pid"):
            (chroot_path(self.root, "/run/asterisk") / stale).unlink(missing_ok=True)
        # one log per start, the previous one kept beside it
        full = self.log_path
        if full.exists():
            full.replace(full.with_name("full.1"))
        sounds = Path(self.cfg.sounds.dir)
        sounds.mkdir(parents=True, exist_ok=True)
        sounds.chmod(0o755)
        mount_point = chroot_path(self.root, self.cfg.asterisk_sounds_dir)
        mount_point.mkdir(parents=True, exist_ok=True)
        return mount_point

    def _wait_for_ari(self, pid: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self._alive(pid):
                tail = _tail(self.console_path, 20)
                raise SandboxError(f"Asterisk exited during start-up:\n{tail}")
            if self._ari_info(timeout=1.0, strict=True) is not None:
                return
            time.sleep(0.05)
        raise SandboxError(f"ARI did not answer at {self.cfg.ari.url} within "
                           f"{START_TIMEOUT_S:.0f} s; see {self.console_path}")

    def _ari_info(self, timeout: float = 2.0, strict: bool = False) -> dict | None:
        """GET /asterisk/info with the config's credentials; None if ARI does not answer."""
        request = urllib.request.Request(self.cfg.ari.url.rstrip("/") + "/asterisk/info")
        token = base64.b64encode(
            f"{self.cfg.ari.username}:{self.cfg.ari.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if strict and exc.code == 401:
                raise SandboxError(f"ARI refused user {self.cfg.ari.username!r}: "
                                   "check [ari] username/password against ari.conf") from None
            return None
        except (OSError, ValueError):
            return None

    def _remove_tree(self, path: Path) -> None:
        left = mounts_under(path)
        if left:
            raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
        shutil.rmtree(path)

    @staticmethod
    def _run_logged(command: list[str], log_file: Path, append: bool = False) -> None:
        with open(log_file, "ab" if append else "wb") as out:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, env=_clean_env())
        if done.returncode != 0:
            raise SandboxError(f"{' '.join(command[:3])}... failed (exit {done.returncode}):\n"
                               f"{_tail(log_file, 20)}\n(full log: {log_file})")


_REBUILD_HINT = "the chroot is broken: stop the sandbox, delete it and run pbx up to rebuild"
_GENERATED = ("asterisk.conf", "modules.conf", "logger.conf", "extensions.conf",
              "stasis.conf", "cdr.conf", "cel.conf", "amd.conf", "queues.conf")


def _in_chroot(root: Path, command: list[str],
               bind: tuple[Path, Path] | None = None) -> list[str]:
    src, target = (str(bind[0]), str(bind[1])) if bind else ("", "")
    return ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _IN_CHROOT_SH, "sh", str(root), src, target, *command]


def _process_alive(pid: int) -> bool:
    """Whether any thread of process `pid` still runs.

    Asterisk's main thread may exit first: then /proc shows the process as a
    zombie while its other threads still shut down and hold the ports.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return True
    return False


def _clean_env() -> dict[str, str]:
    # Asterisk and apt inside the chroot should not see the caller's environment
    # (a virtualenv's PATH, a locale the chroot lacks).
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "HOME": "/root"}


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox must run as root (it uses chroot, mount and unshare)")


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    log.info("installing debootstrap with apt-get")
    env = {**_clean_env(), "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SandboxError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")


def host_mirror() -> str:
    """The Debian mirror from this machine's apt sources."""
    apt = Path("/etc/apt")
    deb822 = [p.read_text(errors="replace") for p in sorted(apt.glob("sources.list.d/*.sources"))]
    one_line = [p.read_text(errors="replace")
                for p in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]
                if p.is_file()]
    mirror = mirror_from_apt_sources(deb822, one_line)
    if not mirror:
        raise SandboxError("no Debian mirror in /etc/apt/sources.list{,.d/}: "
                           "the sandbox uses the host's own mirror")
    return mirror


def _chroot_user(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise SandboxError(f"no user {name!r} in {root}/etc/passwd: {_REBUILD_HINT}")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def write_prompt(text: str, wav_path: Path, engine: str = "", voice: str = "") -> None:
    """Speak `text` into an 8 kHz 16-bit mono WAV, with the agent's neural voice by default.

    Not espeak-ng for English: the scripted caller must understand these
    prompts, and Whisper turns espeak-ng's "front desk" into "front neck".
    Spanish has no neural voice in a package: espeak-ng speaks it.
    """
    from ..speech import ModelError, audio

    try:
        pcm, rate = _prompt_voice(engine or PROMPT_VOICE, voice).synthesize(text)
    except ModelError as exc:
        raise SandboxError(f"cannot make the sandbox's prompts: {exc}") from None
    audio.write_wav(wav_path, audio.resample(pcm, rate, audio.RATE_8K), audio.RATE_8K)


PROMPT_VOICE = "hibari"


@functools.lru_cache(maxsize=4)
def _prompt_voice(engine: str, voice: str):
    from .. import config
    from ..speech import tts

    return tts.load_synthesizer(config.Tts(engine=engine, voice=voice))
