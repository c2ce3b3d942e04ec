"""Configuration, loaded once from an Asterisk-style INI file into typed objects.

No other module reads files or the environment for settings: they receive the
objects built here.  A typo (an unknown section or key, a value of the wrong
kind) is a ConfigError that names the file and line, raised before anything
starts, so the agent never runs half-configured.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_PATHS = (Path("/etc/asterisk-agent/asterisk-agent.conf"),)

# The languages the dialog can speak (dialog/phrases.py has every phrase in each).
LANGUAGES = ("en", "es")


class ConfigError(Exception):
    """A configuration problem, with the file and line where it was found."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None):
        self.path, self.line = path, line
        where = f"{path or '<text>'}:{line}: " if line else f"{path}: " if path else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class General:
    # where the agent keeps its state (databases, caches)
    state_dir: Path = Path("/var/lib/asterisk-agent")
    # practice facts: hours, address, phone, parking (relative to the config file)
    practice_file: Path = Path("practice.conf")
    log_level: str = "info"
    # the language of a call when the dialplan passes none (AI_AGENT_LANGUAGE),
    # or one the agent does not speak
    language: str = "en"
    # the languages the agent speaks; each one's models load at start-up
    languages: tuple[str, ...] = LANGUAGES
    # the urgent-symptom protocol files, one YAML file a specialty (relative to
    # the config file), and the practice's own: a file name there without .yaml
    protocols_dir: Path = Path("protocols")
    specialty: str = "general"


@dataclass(frozen=True)
class Ari:
    url: str = "http://127.0.0.1:8088/ari"
    username: str = "asterisk-agent"
    password: str = ""
    app: str = "ai-agent"
    # seconds; the wait between reconnect attempts doubles up to reconnect_max
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    # seconds to wait for one REST answer
    request_timeout: float = 5.0
    # for an https:// url (ARI over TLS, events over wss://): the CA that signed
    # Asterisk's certificate (http.conf tlscertfile), e.g. a practice's own CA;
    # empty: the system's trusted CAs.  An absolute path.
    tls_ca_file: str = ""


@dataclass(frozen=True)
class Ami:
    # the Asterisk Manager Interface (manager.conf): whether anybody can take a
    # call before a caller is put through to a person, and the live calls of
    # `asterisk-agent calls`.  Empty username: AMI is not used.
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    # a file holding the user's secret (manager.conf secret) on one line, owned
    # by root or the agent's user, mode 0600 (relative to this file)
    secret_file: Path = Path("/etc/asterisk-agent/ami.secret")
    # seconds a check may take, connecting included; past it the caller is put
    # through as if AMI were not there
    timeout: float = 1.0
    # who takes calls handed to the front desk: the members of this queue
    # (queues.conf), or these phones (PJSIP/desk1, PJSIP/desk2); neither: not asked
    operator_queue: str = ""
    operator_devices: tuple[str, ...] = ()
    # the same for the on-call clinician
    oncall_queue: str = ""
    oncall_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Media:
    # where the agent's RTP listener binds; Asterisk sends the caller's audio here
    rtp_host: str = "127.0.0.1"
    rtp_port_start: int = 40000
    rtp_port_end: int = 40999
    # externalMedia format: ulaw or slin (8 kHz).  Never slin16 (see README).
    format: str = "ulaw"
    # "mixing,video_sfu" forces Asterisk's softmix bridge (see README)
    bridge_type: str = "mixing,video_sfu"


@dataclass(frozen=True)
class Dialplan:
    # where a caller goes for a person; the context must exist in the dialplan
    operator_context: str = "ai-agent-operator"
    operator_extension: str = "s"
    operator_priority: int = 1
    # where a caller with an urgent symptom goes at once: the on-call clinician
    # (the context must exist in the dialplan)
    urgent_context: str = "ai-agent-urgent"
    urgent_extension: str = "s"
    urgent_priority: int = 1


@dataclass(frozen=True)
class Sounds:
    # where the agent writes synthesized sentences
    dir: Path = Path("/var/lib/asterisk-agent/sounds")
    # the same directory as Asterisk sees it (differs for a chroot or a remote PBX)
    asterisk_dir: str = ""


@dataclass(frozen=True)
class Stt:
    engine: str = "whisper.cpp"
    # a model name the engine knows (from installed model packages) or a path
    model: str = "tiny.en"
    language: str = "en"
    threads: int = 2
    workers: int = 1
    # Whisper beam width; 1 is greedy: in whisper.cpp about half the time of 5
    # on a short turn, with no more word errors on telephone audio (measured)
    beam_size: int = 1
    # whisper.cpp only: encoder context in 20 ms frames, grown to fit each
    # utterance; 0 = the full 30 s window.  A short turn at 128 costs a fraction
    # of the full window.
    audio_ctx: int = 128
    # Spanish calls: a multilingual model (tiny.en is English only), always told
    # the language (Whisper's own guess is weak), on its own engine: whisper.cpp
    # with base loops on short Spanish turns where faster-whisper does not
    engine_es: str = "faster-whisper"
    model_es: str = "base"
    beam_size_es: int = 5

    def for_language(self, language: str | None) -> Stt:
        """The settings that transcribe calls in `language` (Spanish: the _es ones)."""
        if language == "es":
            return replace(self, engine=self.engine_es, model=self.model_es, language="es",
                           beam_size=self.beam_size_es)
        return self


@dataclass(frozen=True)
class Tts:
    engine: str = "hibari"
    voice: str = ""
    workers: int = 1
    # the voice of Spanish calls: no neural Spanish voice ships in a package, so
    # espeak-ng's Latin American Spanish with its Klatt variant, which Whisper
    # understood best of espeak-ng's Spanish voices (measured)
    engine_es: str = "espeak-ng"
    voice_es: str = "es-419+klatt4"

    def for_language(self, language: str | None) -> Tts:
        """The voice of calls in `language` (Spanish: engine_es, voice_es)."""
        if language == "es":
            return replace(self, engine=self.engine_es, voice=self.voice_es)
        return self


@dataclass(frozen=True)
class Vad:
    # webrtcvad aggressiveness, 0 (least) to 3 (most)
    aggressiveness: int = 2
    # silence that ends the caller's turn
    silence_ms: int = 500
    # silence after which transcription starts, before the turn is known to be
    # over (0: wait for the end of the turn); hides most of the transcription time
    pause_ms: int = 150
    # the end-of-turn model asked at that pause: smart-turn, an .onnx path, or
    # none; when it is turn_threshold sure the turn is over, the turn ends
    # after complete_ms of silence instead of silence_ms
    turn_model: str = "smart-turn"
    turn_threshold: float = 0.7
    complete_ms: int = 300
    # speech shorter than this is a cough or a click, not a turn; also how long
    # a caller speaks over the agent to stop it
    min_speech_ms: int = 150
    # speech this long over the agent pauses its sentence until the endpointer
    # is sure: stopped as a barge-in, or going on after a cough (0: no pause)
    hold_ms: int = 80
    # a turn is cut here and the caller is told so
    max_utterance_s: float = 20.0
    # seconds of silence before the agent prompts again
    no_input_s: float = 8.0


@dataclass(frozen=True)
class Ehr:
    # the HL7 interface engine (MLLP)
    host: str = "127.0.0.1"
    port: int = 2575
    # MSH-3 to MSH-6 of every message the agent sends
    sending_application: str = "ASTERISK-AGENT"
    sending_facility: str = "PRACTICE"
    receiving_application: str = "EHR"
    receiving_facility: str = "PRACTICE"
    # seconds
    connect_timeout: float = 5.0
    ack_timeout: float = 10.0
    # TLS: the CA that signed the engine's certificate (empty: plain TCP), and for
    # mutual TLS the agent's own certificate and key
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # the plain outbox file of earlier versions: moved into the encrypted store at
    # start, then removed (relative to [general] state_dir)
    outbox_file: Path = Path("ehr-outbox.sqlite3")
    # seconds a call waits for the engine's AA before telling the caller that the
    # request is recorded and the office will confirm (it is delivered later)
    confirm_wait: float = 3.0
    # seconds a lookup (patient, slots, medications) may take before the call
    # goes to a person
    query_timeout: float = 3.0
    # connections delivering the outbox: patients served in parallel
    delivery_connections: int = 4
    # where open slots come from: "query" (SQM^S25 to the engine) or "feed" (a
    # local schedule kept from the engine's SIU feed, for engines that only push)
    slots_from: str = "query"
    # the MLLP listener for the SIU feed (port 0: no listener)
    feed_host: str = "127.0.0.1"
    feed_port: int = 0
    # the local schedule (relative to [general] state_dir)
    schedule_file: Path = Path("ehr-schedule.sqlite3")
    # providers' working hours for the local schedule (the feed carries bookings,
    # not templates): YAML with a providers list, as in etc/ehr-seed.yaml
    # (relative to this file)
    provider_hours_file: Path = Path("")


@dataclass(frozen=True)
class Llm:
    # llama.cpp (a GGUF file run in the agent), openai (an OpenAI-compatible server
    # on the practice's network: llama.cpp server, vLLM) or none (fixed phrasing only)
    engine: str = "llama.cpp"
    # llama.cpp: a GGUF file; empty = the embedded default (Qwen2.5 0.5B instruct,
    # from its registry packages). openai: the model name (empty: the server's own)
    model: str = ""
    # openai: the server's base URL, e.g. http://10.0.0.5:8000/v1
    url: str = ""
    # openai: the server's API key, when it asks for one
    api_key: str = ""
    # llama.cpp: CPU threads, and the context window in tokens.  One thread: when
    # another process preempts one of two, llama.cpp's per-layer barrier stalls and
    # a 1 s answer took 20 s on a busy 2-core machine (measured)
    threads: int = 1
    context: int = 2048
    # tokens in one reply
    max_tokens: int = 64
    # seconds a caller waits for the model before hearing the fixed phrasing
    timeout: float = 3.0
    # requests that may wait for the model; more get the fixed phrasing at once
    queue: int = 4
    # the model rewords the fixed replies (yes, no, or auto: when a trial at
    # start-up keeps the facts within the timeout).  Only the sentences after the
    # first, while the first plays, so it never adds silence
    phrase: str = "auto"
    # the model maps words the rules did not understand onto the flow's choices
    # (which visit, which day, which medication) through a JSON grammar (yes, no,
    # or auto: when a trial at start-up answers right within the timeout)
    extract: str = "auto"


@dataclass(frozen=True)
class Dialog:
    # failed identity checks (name and date of birth) before a person takes over
    max_id_failures: int = 2
    # turns not understood in a row before a person takes over
    max_misses: int = 3
    # the provider queue a refill request goes to when the EHR names no prescriber
    # (a provider ID from the EHR; empty: the practice's general queue)
    refill_provider: str = ""


@dataclass(frozen=True)
class Compliance:
    # the encrypted store: calls, transcripts, audit trail, users (relative to
    # [general] state_dir)
    store: Path = Path("store.db")
    # the store's key: 64 hex digits (32 random bytes) made by `asterisk-agent keys
    # init`, owned by root or the agent's user, mode 0600 (relative to this file)
    key_file: Path = Path("/etc/asterisk-agent/store.key")
    # the key as a systemd credential of this name (LoadCredential= in the unit):
    # when the agent runs under systemd, the key is read from the credential,
    # which only the service can read; commands run from a shell use key_file
    key_credential: str = ""
    # for automation: a file with one line NAME:PASSWORD that compliance commands
    # log in with instead of prompting, mode 0600 (empty: always prompt)
    credentials_file: Path = Path("")
    # wrong passwords: this many within login_window seconds lock the user name
    # until the oldest of them is older than the window
    login_max_failures: int = 5
    login_window: float = 900.0
    # the shortest password a user may be given
    password_min_length: int = 12
    # transcripts and recordings older than this many days are removed by
    # `asterisk-agent retention purge` (the audit trail is kept): set it to your
    # practice's retention policy and the law that applies to it (2190 = 6 years)
    retention_days: int = 2190


@dataclass(frozen=True)
class Recording:
    # where the dialplan's MixMonitor leaves call recordings (CALLID.wav), as the
    # agent sees that directory: each finished one is moved into the encrypted
    # store and the plaintext file removed.  Empty: the agent takes none in.  The
    # dialplan records when its global AI_AGENT_RECORDINGS names the directory
    # (as Asterisk sees it; see dialplan/ai-agent.conf).
    dir: Path = Path("")
    # seconds between looks for finished recordings (a call handed to a person
    # ends after the agent let it go; its recording is taken in then)
    sweep_interval: float = 30.0


@dataclass(frozen=True)
class Outbound:
    # when calls may ring, in each patient's local time (a campaign row's
    # window can narrow it, never widen it)
    calling_hours: str = "09:00-20:00"
    # the days calls may ring (mon ... sun)
    calling_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")
    # the numbers a campaign may dial, as Asterisk dial patterns (X any digit,
    # N 2-9, Z 1-9, . one or more): a row with any other number is refused
    allowed_numbers: tuple[str, ...] = ("_NXXNXXXXXX", "_1NXXNXXXXXX")
    # numbers never to call, one a line (# comments); empty: none
    do_not_call_file: Path = Path("")
    # calls at once, and tries per patient (busy, no answer), this many seconds apart
    max_concurrent: int = 2
    attempts: int = 3
    retry_after: float = 1800.0
    # how Asterisk reaches a patient: a dial string with {number} in it, e.g.
    # PJSIP/{number}@my-trunk; empty: `outbound run` refuses to start
    dial: str = ""
    # the caller ID patients see (empty: the practice's phone from practice.conf)
    caller_id: str = ""
    # seconds a call rings before it counts as not answered
    ring_timeout: float = 30.0
    # the ARI application `outbound run` connects as (not [ari] app: the agent
    # that takes incoming calls keeps that one), and the dialplan context an
    # answered call runs first (answering-machine detection, dialplan/ai-agent.conf)
    app: str = "ai-agent-outbound"
    context: str = "ai-agent-outbound"
    # `outbound run --from-schedule`: the appointment reasons (SCH-7 of the EHR's
    # SIU feed) that mark a procedure, matched as words, any case
    procedure_reasons: tuple[str, ...] = ("procedure", "surgery")


@dataclass(frozen=True)
class Metrics:
    # where GET /metrics (Prometheus text format) and GET /health answer:
    # HOST:PORT, on this server only; empty: no endpoint
    listen: str = "127.0.0.1:9465"


@dataclass(frozen=True)
class Agi:
    # the FastAGI server that AGI(agi://HOST:PORT/ai-agent) in the dialplan
    # reaches (dialplan/ai-agent.conf, [ai-agent-agi]): HOST:PORT; empty: none
    listen: str = "127.0.0.1:4573"


@dataclass(frozen=True)
class Logging:
    # console (one readable line an event) or json (one JSON object a line, for
    # a log collector)
    format: str = "console"
    # what a medical record number looks like here (a regular expression): it
    # is removed from every log line, with dates, phone numbers and names
    mrn_pattern: str = r"MRN\d+"


@dataclass(frozen=True)
class Sandbox:
    # the cached Debian sid chroot with Asterisk (built once)
    dir: Path = Path("~/.cache/asterisk-agent/sandbox")
    sip_port: int = 5060
    rtp_start: int = 20000
    rtp_end: int = 20999


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    general: General = field(default_factory=General)
    ari: Ari = field(default_factory=Ari)
    ami: Ami = field(default_factory=Ami)
    media: Media = field(default_factory=Media)
    dialplan: Dialplan = field(default_factory=Dialplan)
    sounds: Sounds = field(default_factory=Sounds)
    stt: Stt = field(default_factory=Stt)
    tts: Tts = field(default_factory=Tts)
    vad: Vad = field(default_factory=Vad)
    ehr: Ehr = field(default_factory=Ehr)
    llm: Llm = field(default_factory=Llm)
    dialog: Dialog = field(default_factory=Dialog)
    sandbox: Sandbox = field(default_factory=Sandbox)
    compliance: Compliance = field(default_factory=Compliance)
    recording: Recording = field(default_factory=Recording)
    outbound: Outbound = field(default_factory=Outbound)
    metrics: Metrics = field(default_factory=Metrics)
    agi: Agi = field(default_factory=Agi)
    logging: Logging = field(default_factory=Logging)

    def beside_config(self, p: Path) -> Path:
        """A path the file gives relative to itself."""
        return p if p.is_absolute() or self.path is None else self.path.parent / p

    def in_state_dir(self, p: Path) -> Path:
        return p if p.is_absolute() else self.general.state_dir / p

    @property
    def practice_path(self) -> Path:
        return self.beside_config(self.general.practice_file)

    @property
    def protocols_path(self) -> Path:
        return self.beside_config(self.general.protocols_dir)

    @property
    def provider_hours_path(self) -> Path | None:
        """[ehr] provider_hours_file, None when it is not set."""
        p = self.ehr.provider_hours_file
        return None if str(p) in ("", ".") else self.beside_config(p)

    @property
    def store_path(self) -> Path:
        return self.in_state_dir(self.compliance.store)

    @property
    def recordings_path(self) -> Path | None:
        """[recording] dir, None when recordings are not taken in."""
        p = self.recording.dir
        return None if str(p) in ("", ".") else p

    @property
    def store_key_path(self) -> Path:
        """The key: the systemd credential when the service was given one
        ([compliance] key_credential, under $CREDENTIALS_DIRECTORY), else key_file."""
        name = self.compliance.key_credential
        credentials = os.environ.get("CREDENTIALS_DIRECTORY", "")
        if name and credentials:
            return Path(credentials) / name
        return self.beside_config(self.compliance.key_file)

    @property
    def credentials_path(self) -> Path | None:
        """[compliance] credentials_file, None when it is not set."""
        p = self.compliance.credentials_file
        return None if str(p) in ("", ".") else self.beside_config(p)

    @property
    def ami_secret_path(self) -> Path:
        return self.beside_config(self.ami.secret_file)

    @property
    def ehr_outbox_path(self) -> Path:
        return self.in_state_dir(self.ehr.outbox_file)

    @property
    def do_not_call_path(self) -> Path | None:
        """[outbound] do_not_call_file, None when it is not set."""
        p = self.outbound.do_not_call_file
        return None if str(p) in ("", ".") else self.beside_config(p)

    @property
    def asterisk_sounds_dir(self) -> str:
        return self.sounds.asterisk_dir or str(self.sounds.dir)



_SECTIONS = {k: v for k, v in get_type_hints(Config).items() if k != "path"}
_CHOICES = {
    ("media", "format"): ("ulaw", "slin"),
    ("stt", "engine"): ("faster-whisper", "whisper.cpp"),
    ("stt", "engine_es"): ("faster-whisper", "whisper.cpp"),
    ("tts", "engine"): ("hibari", "espeak-ng"),
    # hibari's voice speaks English only
    ("tts", "engine_es"): ("espeak-ng",),
    ("general", "language"): LANGUAGES,
    ("general", "languages"): LANGUAGES,
    ("general", "log_level"): ("debug", "info", "warning", "error"),
    ("ehr", "slots_from"): ("query", "feed"),
    ("llm", "engine"): ("llama.cpp", "openai", "none"),
    ("llm", "phrase"): ("auto", "yes", "no"),
    ("llm", "extract"): ("auto", "yes", "no"),
    ("logging", "format"): ("console", "json"),
}


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """The line where [section] (or key inside it) is written, for error messages."""
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"\[([^\]]+)\]", line)
        if m:
            current = m.group(1).strip().lower()
            if key is None and current == section:
                return n
            continue
        if current == section and key is not None:
            k = re.split(r"[=:]", line, maxsplit=1)[0].strip().lower()
            if k == key:
                return n
    return None


def _convert(value: str, kind: Any) -> Any:
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    if kind is bool:
        v = value.lower()
        if v in ("yes", "true", "on", "1"):
            return True
        if v in ("no", "false", "off", "0"):
            return False
        raise ValueError(f"expected yes or no, got {value!r}")
    if kind is Path:
        return Path(os.path.expanduser(value))
    if kind == tuple[str, ...]:
        # "en, es" or "en es"
        items = tuple(dict.fromkeys(v for v in re.split(r"[\s,]+", value) if v))
        if not items:
            raise ValueError("expected at least one value")
        return items
    return value


def _describe(exc: configparser.Error) -> tuple[str, int | None]:
    """configparser's error as (message, line), shown like the other config errors."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"a [section] header must come first, not {exc.line.strip()!r}", exc.lineno
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        line = line.strip().strip("'\"").removesuffix("\\n")  # configparser keeps repr()
        return f"cannot read {line!r} (write key = value)", lineno
    return str(exc).splitlines()[0], getattr(exc, "lineno", None)


def parse(text: str, path: Path | None = None) -> Config:
    """Build a Config from INI text; every problem is a ConfigError with a line."""
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";", "#"), strict=True
    )
    try:
        parser.read_string(text, source=str(path or "<config>"))
    except configparser.Error as exc:
        message, line = _describe(exc)
        raise ConfigError(message, path, line) from None
    sections: dict[str, Any] = {}
    for name in parser.sections():
        key_section = name.lower()
        if key_section not in _SECTIONS:
            raise ConfigError(
                f"unknown section [{name}] (known: {', '.join(sorted(_SECTIONS))})",
                path, _line_of(text, key_section, None),
            )
        cls = _SECTIONS[key_section]
        hints = get_type_hints(cls)
        values = {}
        for key, raw in parser.items(name):
            if key not in hints:
                raise ConfigError(
                    f"unknown setting {key!r} in [{name}] (known: {', '.join(hints)})",
                    path, _line_of(text, key_section, key),
                )
            kind = hints[key]
            if kind == (Path | None):
                kind = Path
            try:
                value = _convert(raw.strip(), kind)
            except ValueError as exc:
                raise ConfigError(
                    f"[{name}] {key}: {exc}", path, _line_of(text, key_section, key)
                ) from None
            allowed = _CHOICES.get((key_section, key))
            wrong = [v for v in (value if isinstance(value, tuple) else (value,))
                     if v not in allowed] if allowed else []
            if wrong:
                raise ConfigError(
                    f"[{name}] {key} = {wrong[0]!r}: choose {'from' if isinstance(value, tuple) else 'one of'} "
                    f"{', '.join(allowed)}",
                    path, _line_of(text, key_section, key),
                )
            values[key] = value
        sections[key_section] = cls(**values)
    cfg = Config(path=path, **sections)
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    try:
        re.compile(cfg.logging.mrn_pattern)
    except re.error as exc:
        raise ConfigError(f"[logging] mrn_pattern: not a regular expression: {exc}",
                          cfg.path, None) from None
    m = cfg.media
    if not 0 < m.rtp_port_start <= m.rtp_port_end < 65536:
        raise ConfigError(f"[media] rtp port range {m.rtp_port_start}-{m.rtp_port_end} is not valid",
                          cfg.path, None)
    if not 0 <= cfg.vad.aggressiveness <= 3:
        raise ConfigError("[vad] aggressiveness must be 0 to 3", cfg.path, None)
    if not 0.0 < cfg.vad.turn_threshold <= 1.0:
        raise ConfigError(f"[vad] turn_threshold = {cfg.vad.turn_threshold}: use a probability "
                          "above 0 and at most 1", cfg.path, None)
    for key in ("silence_ms", "pause_ms", "complete_ms", "min_speech_ms", "hold_ms"):
        if getattr(cfg.vad, key) < 0:
            raise ConfigError(f"[vad] {key} = {getattr(cfg.vad, key)}: must not be negative",
                              cfg.path, None)
    if cfg.vad.turn_model != "none" and not cfg.vad.pause_ms:
        raise ConfigError("[vad] turn_model is asked at the pause: it needs pause_ms above 0 "
                          "(or turn_model = none)", cfg.path, None)
    if cfg.vad.turn_model != "none" and not (
            cfg.vad.pause_ms <= cfg.vad.complete_ms <= cfg.vad.silence_ms):
        raise ConfigError(f"[vad] complete_ms = {cfg.vad.complete_ms}: must lie between "
                          f"pause_ms ({cfg.vad.pause_ms}) and silence_ms ({cfg.vad.silence_ms})",
                          cfg.path, None)
    g = cfg.general
    if g.language not in g.languages:
        raise ConfigError(f"[general] language = {g.language}: not one of [general] languages "
                          f"({', '.join(g.languages)})", cfg.path, None)
    c = cfg.compliance
    if c.login_max_failures < 1 or c.login_window <= 0:
        raise ConfigError("[compliance] login_max_failures must be at least 1 and "
                          "login_window above 0", cfg.path, None)
    if cfg.dialog.max_id_failures < 1 or cfg.dialog.max_misses < 1:
        raise ConfigError("[dialog] max_id_failures and max_misses must be at least 1",
                          cfg.path, None)
    if c.key_credential and (c.key_credential in (".", "..") or "/" in c.key_credential):
        raise ConfigError(f"[compliance] key_credential {c.key_credential!r}: a credential "
                          "name, as in LoadCredential=NAME:PATH (no '/')", cfg.path, None)
    if c.password_min_length < 8:
        raise ConfigError("[compliance] password_min_length must be at least 8", cfg.path, None)
    if c.retention_days < 1:
        raise ConfigError("[compliance] retention_days must be at least 1 (a purge would remove "
                          "every transcript and recording)", cfg.path, None)
    try:
        from .metrics import parse_listen

        metrics = parse_listen(cfg.metrics.listen)
    except ValueError as exc:
        raise ConfigError(f"[metrics] {exc}", cfg.path, None) from None
    try:
        agi = parse_listen(cfg.agi.listen, example="127.0.0.1:4573")
    except ValueError as exc:
        raise ConfigError(f"[agi] {exc}", cfg.path, None) from None
    if agi is not None and agi == metrics:
        raise ConfigError(f"[agi] listen = {cfg.agi.listen}: the same as [metrics] listen",
                          cfg.path, None)
    o = cfg.outbound
    try:
        from .outbound.campaign import WEEKDAYS, DialRules, parse_window

        parse_window(o.calling_hours)
        DialRules(o.allowed_numbers)
    except ValueError as exc:
        raise ConfigError(f"[outbound] {exc}", cfg.path, None) from None
    unknown_days = [d for d in o.calling_days if d not in WEEKDAYS]
    if unknown_days:
        raise ConfigError(f"[outbound] calling_days: {unknown_days[0]!r} is not one of "
                          f"{', '.join(WEEKDAYS)}", cfg.path, None)
    if o.dial and "{number}" not in o.dial:
        raise ConfigError(f"[outbound] dial = {o.dial}: write {{number}} where the patient's "
                          "number goes, e.g. PJSIP/{number}@my-trunk", cfg.path, None)
    if o.ring_timeout <= 0:
        raise ConfigError("[outbound] ring_timeout must be above 0", cfg.path, None)
    if o.app == cfg.ari.app:
        raise ConfigError(f"[outbound] app = {o.app}: the same as [ari] app; outbound calls "
                          "need an ARI application of their own", cfg.path, None)
    if o.max_concurrent < 1 or o.attempts < 1 or o.retry_after < 0:
        raise ConfigError("[outbound] max_concurrent and attempts must be at least 1, "
                          "retry_after not below 0", cfg.path, None)
    if not cfg.ari.url.startswith(("http://", "https://")):
        raise ConfigError(f"[ari] url {cfg.ari.url!r} must start with http:// or https://",
                          cfg.path, None)
    _check_ami(cfg)


# a phone as Asterisk names it for DEVICE_STATE(): TECHNOLOGY/RESOURCE
_DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*/[^\s,()]+")


def _check_ami(cfg: Config) -> None:
    a = cfg.ami
    watched = {"operator_queue": a.operator_queue, "operator_devices": a.operator_devices,
               "oncall_queue": a.oncall_queue, "oncall_devices": a.oncall_devices}
    if not a.username:
        named = [key for key, value in watched.items() if value]
        if named:
            raise ConfigError(f"[ami] {named[0]} is set but [ami] username is empty: name the "
                              "manager.conf user the agent logs in as", cfg.path, None)
        return
    if not a.host or not 0 < a.port < 65536:
        raise ConfigError(f"[ami] host {a.host!r} and port {a.port}: not a valid address",
                          cfg.path, None)
    if str(a.secret_file) in ("", "."):
        raise ConfigError("[ami] secret_file: name the file that holds the secret of "
                          f"[ami] username {a.username!r} (never the secret itself)",
                          cfg.path, None)
    if a.timeout <= 0:
        raise ConfigError("[ami] timeout must be above 0", cfg.path, None)
    for key in ("operator_devices", "oncall_devices"):
        wrong = [d for d in watched[key] if not _DEVICE.fullmatch(d)]
        if wrong:
            raise ConfigError(f"[ami] {key}: {wrong[0]!r} is not a phone as Asterisk names "
                              "it (TECHNOLOGY/RESOURCE, e.g. PJSIP/desk1)", cfg.path, None)
    for key in ("operator_queue", "oncall_queue"):
        if re.search(r"[\s,()]", watched[key]):
            raise ConfigError(f"[ami] {key}: {watched[key]!r} is not a queue name of "
                              "queues.conf", cfg.path, None)


def load(path: str | os.PathLike | None = None) -> Config:
    """Load the config file (the first of DEFAULT_PATHS when none is given)."""
    candidates = [Path(path)] if path else list(DEFAULT_PATHS)
    for p in candidates:
        if p.is_file():
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read: {exc}", p) from None
            return parse(text, p.resolve())
    raise ConfigError(
        "no configuration file: pass --config FILE (a sample is etc/asterisk-agent.conf)",
        candidates[0],
    )
