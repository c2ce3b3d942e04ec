"""A small SIP user agent that places one real call: the test caller's phone.

Why our own user agent rather than Debian's baresip: a scenario must start
speaking *in response to* what it hears, and must time the agent's answer on
the wire to the millisecond.  baresip's file microphone plays one fixed file
from the start of the call, and timing anything with it needs tcpdump.  (sipp is
not packaged.)  This is still a real SIP call with real RTP audio through the
real Asterisk: INVITE/200/ACK over UDP, G.711 u-law both ways, RFC 4733 DTMF.

Layers, data in and data out:

- SIP messages and SDP are plain data: `parse_message` / `SipMessage.to_bytes`,
  `sdp_offer` / `parse_sdp` (pure, tested without a network).  Malformed input is
  a `SipError`; the network code logs and drops it.
- `RtpStream` owns the RTP socket in a thread of its own: it sends a packet every
  20 ms paced against the monotonic clock (a tick a little late is caught up;
  after a longer stall the missed ticks are skipped, the RTP timestamp jumping
  as for lost packets, while the speech resumes where it stopped) and receives
  what Asterisk sends, with
  the kernel's receive timestamp of each packet.  A thread rather than the event
  loop because a busy loop (a transcript arriving, JSON being written) must not
  delay a packet or smear an arrival time.
- `Call` is the SIP dialog on asyncio: dial, answer, ACK, BYE/CANCEL, and the
  in-dialog requests Asterisk may send (BYE, OPTIONS, re-INVITE).

Times are `time.monotonic()` seconds throughout.  What the caller hears is kept
as a timeline: an 8 kHz int16 buffer whose sample index is the time since the
call was answered, with silence written in for gaps, so an offset in it is a
wall-clock offset.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import enum
import logging
import os
import re
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from asterisk_agent.speech.audio import ulaw_decode, ulaw_encode
from asterisk_agent.telephony.rtp import RtpError, build_rtp, parse_rtp, seq_delta

log = logging.getLogger("asterisk_agent.caller")

RATE = 8000
PTIME = 0.020
# A sender held back longer than this (a busy or paused virtual machine) skips
# the ticks it missed instead of sending them back to back: Asterisk's mixing
# bridge throws away what a channel has queued beyond 80 ms, so a burst would
# cut the caller's words, while a gap only delays them.  Up to two late
# ticks are still caught up (a burst of three stays under 80 ms).
MAX_CATCH_UP_S = 2 * PTIME
FRAME_SAMPLES = 160
# lateness (samples) at a sound onset after which the heard timeline re-anchors
ONSET_SLACK = FRAME_SAMPLES // 2
PT_PCMU = 0
PT_CN = 13
PT_EVENT = 101
ULAW_SILENCE = 0xFF
# A 20 ms packet with RMS above this (int16 units; 100 is about -50 dBFS) is
# audio; below it is the silence Asterisk streams continuously in a bridge.
SILENCE_RMS = 100.0

# RFC 3261 timers, seconds
T1 = 0.5
T2 = 4.0
TIMER_B = 64 * T1
# a BYE or CANCEL on loopback that gets no answer in this long never will
NON_INVITE_TIMEOUT = 8.0

USER_AGENT = "asterisk-agent-caller"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY"


class SipError(ValueError):
    """Bytes that are not a SIP message we can use."""


class CallFailed(Exception):
    """The call could not be set up: a 4xx/5xx/6xx answer, no answer, or a socket problem."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason, self.status = reason, status


class CallEnded(Exception):
    """The call ended while something still waited to be sent."""


# --- SIP messages (pure) ----------------------------------------------------

# RFC 3261 section 7.3.3 (and the RFCs that added more)
COMPACT_FORMS = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
    "e": "content-encoding", "o": "event", "r": "refer-to", "b": "referred-by",
    "u": "allow-events", "x": "session-expires", "a": "accept-contact",
}
_CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq",
}
# headers whose value may be a comma-separated list of several entries; others
# (Date, User-Agent, Subject...) may contain commas that are not separators
_LIST_HEADERS = {"via", "route", "record-route", "contact", "allow", "supported",
                 "require", "accept", "proxy-require", "unsupported", "allow-events"}
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


def canonical_name(name: str) -> str:
    """A header name in its usual spelling, compact forms expanded ("i" -> "Call-ID")."""
    key = name.strip().lower()
    key = COMPACT_FORMS.get(key, key)
    return _CANONICAL.get(key) or "-".join(p.capitalize() for p in key.split("-"))


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are not inside quotes or <...>."""
    out, start, quoted, angle, i = [], 0, False, False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `main;a=1;b` into ("main", {"a": "1", "b": ""}); names lower-cased.

    A name-addr's own URI parameters inside <...> stay with the main part.
    """
    end = value.rfind(">")
    cut = value.find(";", end + 1 if end >= 0 else 0)
    if cut < 0:
        return value.strip(), {}
    params: dict[str, str] = {}
    for part in value[cut + 1:].split(";"):
        name, _, val = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = val.strip().strip('"')
    return value[:cut].strip(), params


def name_addr_uri(value: str) -> str:
    """The URI inside a From/To/Contact value: `"Bob" <sip:b@h>;tag=x` -> `sip:b@h`."""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1).strip()
    return header_params(value)[0]


@dataclass
class SipMessage:
    """One SIP request (method and uri set) or response (status and reason set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    # (canonical name, value) in wire order; list headers hold one entry each
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """The first value of a header, or None."""
        name = canonical_name(name)
        return next((v for n, v in self.headers if n == name), None)

    def get_all(self, name: str) -> list[str]:
        name = canonical_name(name)
        return [v for n, v in self.headers if n == name]

    def add(self, name: str, value: str) -> "SipMessage":
        self.headers.append((canonical_name(name), value))
        return self

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq") or "")

    @property
    def branch(self) -> str:
        """The branch of the top Via: the transaction this message belongs to."""
        vias = self.get_all("Via")
        return header_params(vias[0])[1].get("branch", "") if vias else ""

    @property
    def summary(self) -> str:
        if self.is_request:
            return f"{self.method} {self.uri}"
        return f"{self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written and always right."""
        if self.is_request:
            lines = [f"{self.method} {self.uri} SIP/2.0"]
        else:
            lines = [f"SIP/2.0 {self.status} {self.reason}"]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN.match(parts[1]):
        raise SipError(f"bad CSeq {value!r}")
    return int(parts[0]), parts[1].upper()


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message from a UDP datagram (RFC 3261 section 7).

    Lenient where the RFC asks receivers to be (bare LF line ends, header
    folding, compact names, several values in one header line); strict about
    what the dialog needs (start line, Via, From, To, Call-ID, CSeq, a body no
    longer than the datagram).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SipError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    # keep-alives (RFC 5626: CRLF) and leading blank lines are not messages
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipError("empty datagram")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("header section is not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    msg = _parse_start_line(lines[0])
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipError("continuation line before any header")
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipError(f"bad header line {line[:60]!r}")
        cname = canonical_name(name)
        value = value.strip()
        if cname.lower() in _LIST_HEADERS and value != "*":
            for v in split_list(value):
                msg.headers.append((cname, v))
        else:
            msg.headers.append((cname, value))
    for name in _REQUIRED:
        if msg.get(name) is None:
            raise SipError(f"missing {canonical_name(name)} header")
    method = msg.cseq[1]
    if msg.is_request and method != msg.method:
        raise SipError(f"CSeq method {method} does not match request {msg.method}")
    length = msg.get("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise SipError(f"bad Content-Length {length!r}")
        if int(length) > len(body):
            raise SipError(f"Content-Length {length} but only {len(body)} body bytes")
        body = body[:int(length)]
    msg.body = body
    return msg


def _parse_start_line(line: str) -> SipMessage:
    parts = line.strip().split(" ", 2)
    if len(parts) == 3 and parts[0].upper() == "SIP/2.0":
        if not (parts[1].isdigit() and len(parts[1]) == 3 and 100 <= int(parts[1]) <= 699):
            raise SipError(f"bad status code in {line[:60]!r}")
        return SipMessage(status=int(parts[1]), reason=parts[2].strip())
    if len(parts) == 3 and parts[2].upper() == "SIP/2.0" and _TOKEN.match(parts[0]):
        return SipMessage(method=parts[0].upper(), uri=parts[1])
    if len(parts) == 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        return SipMessage(status=int(parts[1]), reason="")
    raise SipError(f"not a SIP start line: {line[:60]!r}")


def new_branch() -> str:
    # the magic cookie marks an RFC 3261 branch (section 8.1.1.7)
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def response_to(request: SipMessage, status: int, reason: str, *,
                to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                body: bytes = b"") -> SipMessage:
    """A response to `request` (RFC 3261 section 8.2.6): its Vias, From, Call-ID
    and CSeq copied, our tag added to To when it has none."""
    resp = SipMessage(status=status, reason=reason)
    for v in request.get_all("Via"):
        resp.add("Via", v)
    to = request.get("To") or ""
    if to_tag and "tag" not in header_params(to)[1]:
        to = f"{to};tag={to_tag}"
    resp.add("From", request.get("From") or "")
    resp.add("To", to)
    resp.add("Call-ID", request.get("Call-ID") or "")
    resp.add("CSeq", request.get("CSeq") or "")
    for n, v in headers:
        resp.add(n, v)
    resp.body = body
    return resp


# --- SDP (pure) ---------------------------------------------------------------

@dataclass(frozen=True)
class MediaOffer:
    """What the far end's SDP says about its audio."""

    host: str
    port: int
    payload_types: tuple[int, ...]
    # the payload type it uses for telephone-event, if any
    event_pt: int | None
    direction: str = "sendrecv"


def sdp_offer(host: str, rtp_port: int, session_id: int, version: int = 1) -> bytes:
    """Our SDP (RFC 4566): PCMU/8000 and telephone-event/8000, 20 ms packets."""
    lines = [
        "v=0",
        f"o=- {session_id} {version} IN IP4 {host}",
        "s=asterisk-agent caller",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {rtp_port} RTP/AVP {PT_PCMU} {PT_EVENT}",
        f"a=rtpmap:{PT_PCMU} PCMU/8000",
        f"a=rtpmap:{PT_EVENT} telephone-event/8000",
        f"a=fmtp:{PT_EVENT} 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def parse_sdp(body: bytes) -> MediaOffer:
    """The first audio stream of an SDP answer; SipError when there is none usable."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("SDP is not UTF-8") from None
    session_host, host, port, pts = None, None, None, ()
    event_pt, direction, in_audio, seen_audio = None, "sendrecv", False, False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if seen_audio:
                in_audio = False
                continue
            parts = value.split()
            in_audio = len(parts) >= 4 and parts[0] == "audio"
            if in_audio:
                seen_audio = True
                if not parts[1].isdigit():
                    raise SipError(f"bad SDP media port {parts[1]!r}")
                port = int(parts[1])
                if not all(p.isdigit() for p in parts[3:]):
                    raise SipError(f"bad SDP payload types in {line!r}")
                pts = tuple(int(p) for p in parts[3:])
        elif kind == "c":
            parts = value.split()
            if len(parts) < 3 or parts[1] != "IP4":
                raise SipError(f"unsupported SDP connection line {line!r}")
            if in_audio:
                host = parts[2].split("/")[0]
            elif not seen_audio:
                session_host = parts[2].split("/")[0]
        elif kind == "a" and in_audio:
            m = re.match(r"rtpmap:(\d+)\s+telephone-event/8000", value, re.I)
            if m:
                event_pt = int(m.group(1))
            elif value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = value
    if not seen_audio:
        raise SipError("SDP has no audio stream")
    host = host or session_host
    if host is None:
        raise SipError("SDP has no connection address")
    if not 0 < port < 65536:
        raise SipError(f"SDP audio port {port} (rejected or invalid)")
    return MediaOffer(host, port, pts, event_pt, direction)


# --- RTP pieces (pure) -------------------------------------------------------

DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}
DTMF_FREQS = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
              "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
              "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
              "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633)}


def dtmf_payloads(digit: str, duration_ms: int = 160, volume: int = 10) -> list[tuple[bytes, bool]]:
    """The RFC 4733 event payloads for one key press, one per 20 ms tick.

    Updates with a growing duration every tick, the last one with the End bit
    and sent three times (section 2.5.1.4).  Returns (payload, is_first).  All
    packets of the event carry the RTP timestamp of its first tick.
    """
    event = DTMF_EVENTS.get(digit.upper())
    if event is None:
        raise ValueError(f"not a DTMF digit: {digit!r} (use 0-9, *, #, A-D)")
    ticks = max(1, round(duration_ms / (PTIME * 1000)))
    out = []
    for i in range(1, ticks):
        out.append((struct.pack("!BBH", event, volume & 0x3F, i * FRAME_SAMPLES), i == 1))
    end = struct.pack("!BBH", event, 0x80 | (volume & 0x3F), ticks * FRAME_SAMPLES)
    out += [(end, ticks == 1 and i == 0) for i in range(3)]
    return out


def dtmf_tone(digit: str, samples: int) -> np.ndarray:
    """The two-tone sound of a key, for the recording of what the caller sent."""
    low, high = DTMF_FREQS[digit.upper()]
    t = np.arange(samples) / RATE
    return (6000 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))).astype(np.int16)


def rms(pcm: np.ndarray) -> float:
    if pcm.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


# --- RTP stream (a thread) ----------------------------------------------------

# Linux socket options that Python does not name: a software receive timestamp
# (struct timespec, CLOCK_REALTIME) attached to each datagram.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


@dataclass
class _Speech:
    pcm: np.ndarray
    done: Callable[[float, float], None]
    fail: Callable[[BaseException], None]
    pos: int = 0
    start: float | None = None


@dataclass
class _Dtmf:
    digit: str
    done: Callable[[float, float], None]
    fail: Callable[[BaseException], None]
    payloads: list[tuple[bytes, bool]] = field(default_factory=list)
    pos: int = 0
    start: float | None = None
    timestamp: int = 0
    # the last key of a sequence: its callback answers for the whole sequence
    last: bool = False


@dataclass
class _Gap:
    ticks: int


@dataclass(frozen=True)
class Arrival:
    """One audio packet the caller received."""

    time: float        # monotonic, from the kernel's receive timestamp
    position: int      # where its first sample sits in the heard timeline
    samples: int
    rms: float


class RtpStream:
    """The caller's RTP: a 20 ms send clock and the timeline of what it hears.

    Runs one thread; `start()` / `stop()` bracket it.  Work is queued with
    `queue_speech` / `queue_dtmf` (thread-safe, callbacks run on the sender
    thread).  Reading methods are thread-safe.
    """

    def __init__(self, sock: socket.socket, remote: tuple[str, int], *,
                 event_pt: int = PT_EVENT, silence_rms: float = SILENCE_RMS,
                 gap_slack_s: float = 0.060):
        self.sock = sock
        self.remote = remote
        self.event_pt = event_pt
        self.silence_rms = silence_rms
        # a packet arriving this much later than the timeline's end opens a gap
        # filled with silence; smaller lateness is network jitter.  Where sound
        # starts after quiet, any lateness beyond ONSET_SLACK re-anchors the
        # timeline to the clock, so a short pause of the far end (or of ours,
        # echoed back) cannot leave the next onset early by up to the slack
        self._gap_slack = int(gap_slack_s * RATE)
        self._quiet = True
        self.ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts0 = secrets.randbits(32)
        self._lock = threading.Lock()
        self._work: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0
        self._heard = bytearray()           # int16 little-endian samples
        self._arrivals: list[Arrival] = []
        self._arrival_times: list[float] = []
        self._said: list[tuple[int, np.ndarray]] = []   # (position, samples)
        self._last_seq: dict[int, int] = {}
        self._last_audio: float | None = None
        self._tick = 0
        self.sending = False
        self.stats = collections.Counter()
        self.lateness: list[float] = []     # per sent packet: actual - scheduled, s
        self.received_events: list[tuple[float, int, bool]] = []
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            # arrival times then come from the clock when the thread reads the packet
            self.stats["no_kernel_timestamps"] = 1

    # -- control

    def start(self, t0: float, sending: bool = True) -> None:
        """Start the clock at `t0` (monotonic): tick n is sent at t0 + n * 20 ms."""
        self.t0 = t0
        self.sending = sending
        self._thread = threading.Thread(target=self._run, name="caller-rtp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._fail_pending(CallEnded("the call ended"))

    def queue_speech(self, pcm: np.ndarray, done, fail) -> None:
        pcm = np.asarray(pcm, dtype=np.int16)
        with self._lock:
            if self._stop.is_set():
                fail(CallEnded("the call has ended"))
                return
            self._work.append(_Speech(pcm, done, fail))

    def queue_dtmf(self, digits: str, done, fail, gap_ms: int = 100,
                   duration_ms: int = 160) -> None:
        items: list = []
        for i, d in enumerate(digits):
            if i:
                items.append(_Gap(max(1, round(gap_ms / 20))))
            items.append(_Dtmf(d, lambda s, e: None, fail, dtmf_payloads(d, duration_ms)))
        first, last = items[0], items[-1]
        last.last = True
        # one callback for the whole sequence: from the first key's start to the last key's end
        last.done = lambda s, e: done(first.start if first.start is not None else s, e)
        with self._lock:
            if self._stop.is_set():
                fail(CallEnded("the call has ended"))
                return
            self._work.extend(items)

    # -- reading

    def heard(self, start: float | None = None, end: float | None = None) -> np.ndarray:
        """What the caller heard between two monotonic times (default: all of it)."""
        a = 0 if start is None else max(0, int((start - self.t0) * RATE))
        with self._lock:
            n = len(self._heard) // 2
            b = n if end is None else min(n, max(a, int((end - self.t0) * RATE)))
            buf = bytes(self._heard[2 * a:2 * b]) if b > a else b""
        return np.frombuffer(buf, dtype="<i2").astype(np.int16)

    def said(self) -> np.ndarray:
        """What the caller sent, on the same timeline as `heard` (DTMF as tones)."""
        with self._lock:
            chunks = list(self._said)
            length = max([len(self._heard) // 2] + [p + len(c) for p, c in chunks])
        out = np.zeros(length, dtype=np.int16)
        for pos, chunk in chunks:
            out[pos:pos + len(chunk)] = chunk
        return out

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def first_audio_after(self, t: float) -> float | None:
        """Arrival time of the first non-silent packet received after `t`."""
        with self._lock:
            i = bisect.bisect_right(self._arrival_times, t)
            for a in self._arrivals[i:]:
                if a.rms > self.silence_rms:
                    return a.time
        return None

    def last_arrival(self) -> float | None:
        with self._lock:
            return self._arrival_times[-1] if self._arrival_times else None

    def last_audio(self) -> float | None:
        """Arrival time of the latest non-silent packet: when the far end last spoke."""
        return self._last_audio

    # -- the thread

    def _run(self) -> None:
        _raise_priority()
        next_tick = self.t0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - next_tick > MAX_CATCH_UP_S:
                    missed = int((now - next_tick) / PTIME)
                    self._tick += missed
                    self.stats["skipped_ticks"] += missed
                    next_tick = self.t0 + self._tick * PTIME
                if now >= next_tick:
                    if self.sending:
                        self._send_tick(next_tick)
                    self._tick += 1
                    next_tick = self.t0 + self._tick * PTIME
                    continue
                ready, _, _ = select.select([self.sock], [], [], next_tick - now)
                if ready:
                    self._drain()
        except Exception:  # the thread must never die silently mid-call
            log.exception("caller RTP thread failed")
            self.stats["thread_errors"] += 1
        finally:
            self._stop.set()
            # nothing queued may wait forever for a thread that is gone
            self._fail_pending(CallEnded("the caller's RTP stream stopped"))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _send(self, payload: bytes, pt: int, timestamp: int, marker: bool) -> float:
        packet = build_rtp(payload, payload_type=pt, sequence=self._next_seq(),
                           timestamp=timestamp, ssrc=self.ssrc, marker=marker)
        sent = time.monotonic()
        try:
            self.sock.sendto(packet, self.remote)
            self.stats["sent"] += 1
        except OSError as exc:
            self.stats["send_errors"] += 1
            log.debug("RTP send failed: %s", exc)
        return sent

    def _send_tick(self, scheduled: float) -> None:
        tick = self._tick
        timestamp = (self._ts0 + tick * FRAME_SAMPLES) & 0xFFFFFFFF
        position = int(round((scheduled - self.t0) * RATE))
        with self._lock:
            item = self._work[0] if self._work else None
        finished = None
        if isinstance(item, _Speech):
            chunk = item.pcm[item.pos:item.pos + FRAME_SAMPLES]
            item.pos += FRAME_SAMPLES
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            frame[:len(chunk)] = chunk
            sent = self._send(ulaw_encode(frame), PT_PCMU, timestamp, tick == 0)
            with self._lock:
                self._said.append((position, frame))
            if item.start is None:
                item.start = sent
            if item.pos >= len(item.pcm):
                finished = (item, item.start, sent)
        elif isinstance(item, _Dtmf):
            if item.pos == 0:
                item.timestamp = timestamp
            payload, first = item.payloads[item.pos]
            sent = self._send(payload, self.event_pt, item.timestamp, first)
            if item.start is None:
                item.start = sent
                with self._lock:
                    self._said.append((position, dtmf_tone(item.digit, 8 * FRAME_SAMPLES)))
            item.pos += 1
            if item.pos >= len(item.payloads):
                finished = (item, item.start, sent)
        else:
            sent = self._send(bytes([ULAW_SILENCE]) * FRAME_SAMPLES, PT_PCMU, timestamp, tick == 0)
            if isinstance(item, _Gap):
                item.ticks -= 1
                if item.ticks <= 0:
                    finished = (item, 0.0, 0.0)
        self.lateness.append(sent - scheduled)
        if finished:
            done_item, start, end = finished
            with self._lock:
                if self._work and self._work[0] is done_item:
                    self._work.popleft()
            if not isinstance(done_item, _Gap):
                done_item.done(start, end)

    def _drain(self) -> None:
        while True:
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(4096, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # e.g. ECONNREFUSED from an ICMP error for an earlier send
                self.stats["recv_errors"] += 1
                log.debug("RTP receive error: %s", exc)
                return
            arrival = self._arrival_time(ancdata)
            self._receive(data, addr, arrival)

    def _arrival_time(self, ancdata) -> float:
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(value)
                # kernel stamps are CLOCK_REALTIME: shift them onto the monotonic clock
                offset = time.time_ns() - time.monotonic_ns()
                return (sec * 1_000_000_000 + nsec - offset) / 1e9
        return time.monotonic()

    def _receive(self, data: bytes, addr, arrival: float) -> None:
        if addr[0] != self.remote[0]:
            self.stats["foreign"] += 1
            return
        try:
            pkt = parse_rtp(data)
        except RtpError:
            self.stats["malformed"] += 1
            return
        last = self._last_seq.get(pkt.ssrc)
        if last is not None and seq_delta(pkt.sequence, last) <= 0:
            # a duplicate or a packet overtaken by a later one: its moment has passed
            self.stats["late_or_duplicate"] += 1
            return
        self._last_seq[pkt.ssrc] = pkt.sequence
        if pkt.payload_type == self.event_pt and len(pkt.payload) >= 4:
            with self._lock:
                self.received_events.append((arrival, pkt.payload[0], bool(pkt.payload[1] & 0x80)))
            return
        if pkt.payload_type == PT_CN:
            self.stats["comfort_noise"] += 1
            return
        if pkt.payload_type != PT_PCMU or not pkt.payload:
            self.stats["unexpected_payload_type"] += 1
            return
        pcm = ulaw_decode(pkt.payload)
        self.stats["received"] += 1
        with self._lock:
            end = len(self._heard) // 2
            start = int(round((arrival - self.t0) * RATE)) - len(pcm)
            level = rms(pcm)
            onset = self._quiet and level > self.silence_rms
            if start > end + (ONSET_SLACK if onset else self._gap_slack):
                self._heard += bytes(2 * (start - end))
                end = start
            self._heard += pcm.astype("<i2").tobytes()
            self._quiet = level <= self.silence_rms
            a = Arrival(arrival, end, len(pcm), level)
            self._arrivals.append(a)
            if a.rms > self.silence_rms:
                self._last_audio = arrival
            # kernel timestamps are monotonic per socket; keep the list sorted anyway
            if self._arrival_times and arrival < self._arrival_times[-1]:
                arrival = self._arrival_times[-1]
            self._arrival_times.append(arrival)

    def _fail_pending(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._work = list(self._work), collections.deque()
        now = time.monotonic()
        for item in pending:
            if isinstance(item, _Dtmf) and item.last and item.start is not None:
                # the last key went out; the far end may well have hung up because of it
                item.done(item.start, now)
            elif not isinstance(item, _Gap):
                item.fail(exc)

    def send_jitter(self) -> dict:
        """How late packets left against their 20 ms schedule, in ms."""
        if not self.lateness:
            return {"packets": 0}
        late = np.array(self.lateness) * 1000
        return {"packets": len(late), "mean_ms": round(float(late.mean()), 3),
                "p99_ms": round(float(np.percentile(late, 99)), 3),
                "max_ms": round(float(late.max()), 3)}


# --- the SIP dialog (asyncio) -------------------------------------------------

class CallState(str, enum.Enum):
    IDLE = "idle"
    CALLING = "calling"        # INVITE sent, nothing back yet
    PROCEEDING = "proceeding"  # 100 Trying
    RINGING = "ringing"        # 18x
    ANSWERED = "answered"
    ENDED = "ended"
    FAILED = "failed"


class _SipEndpoint(asyncio.DatagramProtocol):
    def __init__(self, call: "Call"):
        self.call = call
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if data.strip(b"\r\n") == b"":
            return  # a keep-alive
        try:
            msg = parse_message(data)
        except SipError as exc:
            self.call.stats["sip_malformed"] += 1
            log.warning("dropped a malformed SIP datagram from %s: %s", addr, exc)
            return
        try:
            self.call._on_message(msg)
        except Exception:  # one bad message must not take the call down
            self.call.stats["sip_errors"] += 1
            log.exception("error handling %s", msg.summary)

    def error_received(self, exc: Exception) -> None:
        # the socket is connected to the PBX, so an ICMP "port unreachable" comes
        # back as ConnectionRefusedError: nothing listens there
        log.debug("SIP socket error: %s", exc)
        if isinstance(exc, ConnectionRefusedError):
            self.call._on_refused()


class Call:
    """One outgoing call from the test caller to Asterisk.

        async with Call("127.0.0.1", 5060) as call:
            await call.dial("100")
            start, end = await call.say(pcm8k)
            await call.dtmf("1")
            await call.hangup()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5060, *,
                 local_host: str = "127.0.0.1", user: str = "caller",
                 display_name: str = "Test Caller", silence_rms: float = SILENCE_RMS):
        self.target = (host, port)
        self.local_host = local_host
        self.user = user
        self.display_name = display_name
        self.silence_rms = silence_rms
        self.state = CallState.IDLE
        self.reason = ""
        self.status: int | None = None
        self.stats: collections.Counter = collections.Counter()
        self.call_id = new_call_id(local_host)
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self.cseq = secrets.randbelow(10000) + 1
        self.invite_sent_at: float | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_by: str | None = None  # "caller" or "far end"
        self.media: MediaOffer | None = None
        self.rtp: RtpStream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sip: _SipEndpoint | None = None
        self._rtp_sock: socket.socket | None = None
        self._invite: SipMessage | None = None
        self._invite_ack: bytes | None = None
        self._cancel_wanted = False
        self._cancelling = False
        self._session_id = secrets.randbelow(2**31)
        self._final: asyncio.Future | None = None
        self._ended = asyncio.Event()
        self._pending: dict[tuple[str, str], asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> "Call":
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.hangup()
        finally:
            self.close()

    # -- addresses

    @property
    def local_port(self) -> int:
        return self._sip.transport.get_extra_info("sockname")[1] if self._sip else 0

    @property
    def rtp_port(self) -> int:
        return self._rtp_sock.getsockname()[1] if self._rtp_sock else 0

    def _contact(self) -> str:
        return f"<sip:{self.user}@{self.local_host}:{self.local_port}>"

    def _from(self) -> str:
        return f'"{self.display_name}" <sip:{self.user}@{self.local_host}>;tag={self.local_tag}'

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.local_host}:{self.local_port};branch={branch};rport"

    # -- sockets

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        # connected to the PBX: only its datagrams come in, and a closed port
        # fails the call at once instead of after Timer B
        transport, proto = await self._loop.create_datagram_endpoint(
            lambda: _SipEndpoint(self), local_addr=(self.local_host, 0), remote_addr=self.target)
        self._sip = proto
        self._rtp_sock = _bind_even_port(self.local_host)

    def close(self) -> None:
        """Stop media and close both sockets.  Safe to call more than once."""
        for task in list(self._tasks):
            task.cancel()
        if self.rtp:
            self.rtp.stop()
        if self._sip and self._sip.transport:
            self._sip.transport.close()
        if self._rtp_sock:
            self._rtp_sock.close()
        if self.state not in (CallState.ENDED, CallState.FAILED):
            self._set_ended(CallState.ENDED, self.reason or "closed", None)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send(self, msg: SipMessage | bytes) -> None:
        """Send to the PBX (the only peer: responses go back where requests came from)."""
        data = msg if isinstance(msg, bytes) else msg.to_bytes()
        if self._sip and self._sip.transport and not self._sip.transport.is_closing():
            self._sip.transport.sendto(data)

    def _on_refused(self) -> None:
        if self.state is CallState.CALLING:
            host, port = self.target
            self._set_ended(CallState.FAILED, f"nothing answers SIP on {host}:{port} "
                            "(connection refused): is the PBX running?", None)

    # -- requests

    def _request(self, method: str, uri: str, cseq: int, branch: str,
                 to: str, body: bytes = b"") -> SipMessage:
        msg = SipMessage(method=method, uri=uri)
        msg.add("Via", self._via(branch))
        for route in self.route_set:
            msg.add("Route", route)
        msg.add("Max-Forwards", "70")
        msg.add("From", self._from())
        msg.add("To", to)
        msg.add("Call-ID", self.call_id)
        msg.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "ACK"):
            msg.add("Contact", self._contact())
        msg.add("User-Agent", USER_AGENT)
        if body:
            msg.add("Content-Type", "application/sdp")
        if method == "INVITE":
            msg.add("Allow", ALLOW)
        msg.body = body
        return msg

    def _to_remote(self) -> str:
        return f"<{self._request_uri}>;tag={self.remote_tag}" if self.remote_tag else f"<{self._request_uri}>"

    async def dial(self, extension: str, timeout: float = TIMER_B) -> None:
        """Call `extension` and return once answered; CallFailed otherwise.

        `timeout` bounds the wait for the answer (ringing included).
        """
        if self.state is not CallState.IDLE:
            raise RuntimeError(f"dial() on a call that is {self.state.value}")
        if not re.fullmatch(r"[A-Za-z0-9*#+._-]+", extension or ""):
            raise ValueError(f"not a dialable extension: {extension!r}")
        await self._open()
        self._request_uri = f"sip:{extension}@{self.target[0]}:{self.target[1]}"
        self._to_header = f"<{self._request_uri}>"
        self._final = self._loop.create_future()
        body = sdp_offer(self.local_host, self.rtp_port, self._session_id)
        self._invite = self._request("INVITE", self._request_uri, self.cseq, new_branch(),
                                     self._to_header, body)
        self.state = CallState.CALLING
        self.invite_sent_at = time.monotonic()
        self._send(self._invite)
        retransmit = self._spawn(self._retransmit_invite())
        try:
            await asyncio.wait_for(asyncio.shield(self._final), timeout)
        except asyncio.TimeoutError:
            if self.state is CallState.CALLING:
                await self._give_up_invite(f"no response to the INVITE within {timeout:g} s")
            elif self.state is not CallState.FAILED:
                await self._give_up_invite(f"not answered within {timeout:g} s")
        finally:
            retransmit.cancel()
        if self.state is not CallState.ANSWERED:
            raise CallFailed(self.reason, self.status)

    async def _retransmit_invite(self) -> None:
        """Timer A: resend the INVITE at T1, 2T1, 4T1... until anything answers (Timer B)."""
        interval = T1
        deadline = self.invite_sent_at + TIMER_B
        while self.state is CallState.CALLING:
            await asyncio.sleep(interval)
            if self.state is not CallState.CALLING:
                return
            if time.monotonic() >= deadline:
                self._set_ended(CallState.FAILED, "408 Request Timeout (no response to INVITE)", 408)
                return
            self.stats["invite_retransmits"] += 1
            self._send(self._invite)
            interval *= 2

    async def _give_up_invite(self, reason: str) -> None:
        if self.state in (CallState.PROCEEDING, CallState.RINGING):
            await self._cancel()
        if self.state is not CallState.ANSWERED:
            self._set_ended(CallState.FAILED, reason, None)

    async def _cancel(self) -> None:
        """CANCEL the pending INVITE (only after a provisional answer, RFC 3261 9.1)."""
        invite = self._invite
        self._cancelling = True
        cancel = SipMessage(method="CANCEL", uri=invite.uri)
        cancel.add("Via", invite.get("Via"))
        cancel.add("Max-Forwards", "70")
        cancel.add("From", invite.get("From"))
        cancel.add("To", invite.get("To"))
        cancel.add("Call-ID", self.call_id)
        cancel.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel.add("User-Agent", USER_AGENT)
        await self._transaction(cancel)
        try:
            # the INVITE's final answer (487) follows; we ACK it in _on_response
            await asyncio.wait_for(asyncio.shield(self._final), 4.0)
        except asyncio.TimeoutError:
            pass

    async def _transaction(self, request: SipMessage) -> SipMessage | None:
        """Send a non-INVITE request, retransmitting per Timer E, and wait for its final answer."""
        key = (request.branch, request.cseq[1])
        fut = self._loop.create_future()
        self._pending[key] = fut
        data = request.to_bytes()
        interval, deadline = T1, time.monotonic() + NON_INVITE_TIMEOUT
        try:
            while True:
                self._send(data)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(interval, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline:
                        log.warning("%s got no answer", request.method)
                        return None
                    interval = min(2 * interval, T2)
        finally:
            self._pending.pop(key, None)

    # -- media

    async def say(self, pcm8k: np.ndarray) -> tuple[float, float]:
        """Send speech (8 kHz int16) and return when it is all on the wire.

        Returns (start, end): monotonic departure times of the first and the last
        packet carrying it.  The far end cannot know the speech ended before the
        last packet arrives, so a reply latency counts from `end`.
        """
        pcm = np.asarray(pcm8k)
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise ValueError(f"say() takes 8 kHz mono int16 audio, got {pcm.dtype} {pcm.shape}")
        if pcm.size == 0:
            raise ValueError("say() got no audio")
        return await self._queue(lambda done, fail: self._media().queue_speech(pcm, done, fail))

    async def dtmf(self, digits: str, duration_ms: int = 160, gap_ms: int = 100) -> tuple[float, float]:
        """Press keys (RFC 4733 events); returns departure of the first and last packet."""
        if not digits or any(d.upper() not in DTMF_EVENTS for d in digits):
            raise ValueError(f"not DTMF digits: {digits!r} (use 0-9, *, #, A-D)")
        media = self._media()
        return await self._queue(lambda done, fail: media.queue_dtmf(
            digits, done, fail, gap_ms, duration_ms))

    def _media(self) -> RtpStream:
        if self.state is not CallState.ANSWERED or self.rtp is None:
            raise CallEnded(f"the call is {self.state.value}" + (f" ({self.reason})" if self.reason else ""))
        return self.rtp

    async def _queue(self, enqueue) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(start, end):
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result((start, end)))

        def fail(exc):
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

        enqueue(done, fail)
        return await fut

    def heard(self, start: float | None = None, end: float | None = None) -> np.ndarray:
        return self.rtp.heard(start, end) if self.rtp else np.zeros(0, dtype=np.int16)

    def said(self) -> np.ndarray:
        return self.rtp.said() if self.rtp else np.zeros(0, dtype=np.int16)

    def first_audio_after(self, t: float) -> float | None:
        """Arrival time of the first far-end audio (not silence) received after `t`."""
        return self.rtp.first_audio_after(t) if self.rtp else None

    def last_audio(self) -> float | None:
        """When far-end audio (not silence) last arrived, or None."""
        return self.rtp.last_audio() if self.rtp else None

    # -- ending

    async def hangup(self) -> None:
        """End the call: BYE when answered, CANCEL while it rings.  Idempotent."""
        if self.state is CallState.ANSWERED:
            self._stop_media()
            self._set_ended(CallState.ENDED, "caller hung up", None, by="caller")
            self.cseq += 1
            bye = self._request("BYE", self.remote_target, self.cseq, new_branch(), self._to_remote())
            answer = await self._transaction(bye)
            if answer is None:
                self.reason = "caller hung up (BYE unanswered)"
        elif self.state in (CallState.PROCEEDING, CallState.RINGING):
            await self._cancel()
            if self.state is not CallState.ANSWERED:
                self._set_ended(CallState.ENDED, "caller cancelled", None, by="caller")
            else:
                await self.hangup()
        elif self.state is CallState.CALLING:
            # no provisional answer yet: a CANCEL is not allowed; send it when one comes
            self._cancel_wanted = True
            try:
                await asyncio.wait_for(asyncio.shield(self._final), 4 * T1)
            except asyncio.TimeoutError:
                pass
            if self.state is CallState.ANSWERED:
                await self.hangup()
            elif self.state not in (CallState.ENDED, CallState.FAILED):
                self._set_ended(CallState.ENDED, "caller cancelled", None, by="caller")

    async def wait_hangup(self, timeout: float | None = None) -> bool:
        """Wait until the call has ended; False if it is still up after `timeout`."""
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _stop_media(self) -> None:
        if self.rtp:
            self.rtp.stop()

    def _set_ended(self, state: CallState, reason: str, status: int | None, by: str | None = None) -> None:
        if self.state in (CallState.ENDED, CallState.FAILED):
            return
        self.state, self.reason, self.status = state, reason, status
        self.hangup_by = by
        self.ended_at = time.monotonic()
        self._stop_media()
        self._ended.set()
        if self._final and not self._final.done():
            self._final.set_result(None)

    # -- incoming

    def _on_message(self, msg: SipMessage) -> None:
        if msg.is_request:
            self._on_request(msg)
        else:
            self._on_response(msg)

    def _on_response(self, msg: SipMessage) -> None:
        number, method = msg.cseq
        if method == "INVITE" and self._invite is not None and number == self._invite.cseq[0] \
                and msg.get("Call-ID") == self.call_id:
            self._on_invite_response(msg)
            return
        fut = self._pending.get((msg.branch, method))
        if fut is None:
            self.stats["stray_responses"] += 1
            return
        if msg.status >= 200 and not fut.done():
            fut.set_result(msg)

    def _on_invite_response(self, msg: SipMessage) -> None:
        status = msg.status
        if status < 200:
            if self.state is CallState.CALLING:
                self.state = CallState.PROCEEDING
            if status > 100:
                self.state = CallState.RINGING
                if msg.body:
                    try:
                        self._start_media(msg, early=True)
                    except SipError as exc:
                        log.warning("ignoring early media: %s", exc)
            if self._cancel_wanted and self.state in (CallState.PROCEEDING, CallState.RINGING):
                self._cancel_wanted = False
                self._spawn(self._cancel())
            return
        if 200 <= status < 300:
            if self._invite_ack is not None:
                # a retransmitted 200: the ACK got lost, send it again
                self._send(self._invite_ack)
                return
            self.remote_tag = header_params(msg.get("To") or "")[1].get("tag")
            contact = msg.get("Contact")
            self.remote_target = name_addr_uri(contact) if contact else self._request_uri
            self.route_set = list(reversed(msg.get_all("Record-Route")))
            ack = self._request("ACK", self.remote_target, self._invite.cseq[0], new_branch(),
                                self._to_remote())
            self._invite_ack = ack.to_bytes()
            self._send(self._invite_ack)
            if self.state in (CallState.ENDED, CallState.FAILED):
                # answered after we gave up: take the call down at once
                self._spawn(self._bye_late_answer())
                return
            self.answered_at = time.monotonic()
            try:
                self._start_media(msg, early=False)
            except SipError as exc:
                self.state = CallState.ANSWERED
                self._spawn(self._fail_answered(f"unusable SDP answer: {exc}"))
                return
            self.state = CallState.ANSWERED
            self.status = status
            if self._final and not self._final.done():
                self._final.set_result(None)
            if self._cancel_wanted:
                self._spawn(self.hangup())
            return
        # 3xx-6xx: the INVITE transaction ACKs it on the same branch (RFC 3261 17.1.1.3)
        ack = SipMessage(method="ACK", uri=self._invite.uri)
        ack.add("Via", self._invite.get("Via"))
        ack.add("Max-Forwards", "70")
        ack.add("From", self._invite.get("From"))
        ack.add("To", msg.get("To") or self._invite.get("To"))
        ack.add("Call-ID", self.call_id)
        ack.add("CSeq", f"{self._invite.cseq[0]} ACK")
        self._send(ack)
        reason = f"{status} {msg.reason}".strip()
        why = msg.get("Reason")
        if why:
            reason += f" ({why})"
        if status == 487 and self._cancelling:
            self._set_ended(CallState.ENDED, "caller cancelled", status, by="caller")
            return
        self._set_ended(CallState.FAILED, reason, status)

    async def _fail_answered(self, reason: str) -> None:
        await self.hangup()
        self.state, self.reason = CallState.FAILED, reason
        if self._final and not self._final.done():
            self._final.set_result(None)

    async def _bye_late_answer(self) -> None:
        self.cseq += 1
        bye = self._request("BYE", self.remote_target, self.cseq, new_branch(), self._to_remote())
        await self._transaction(bye)

    def _start_media(self, msg: SipMessage, early: bool) -> None:
        offer = parse_sdp(msg.body)
        if PT_PCMU not in offer.payload_types:
            raise SipError(f"far end did not accept PCMU (offered {offer.payload_types})")
        remote = (offer.host, offer.port)
        self.media = offer
        if self.rtp is None:
            self.rtp = RtpStream(self._rtp_sock, remote, event_pt=offer.event_pt or PT_EVENT,
                                 silence_rms=self.silence_rms)
            # the timeline starts at the answer (or at early media, if that came first)
            self.rtp.start(time.monotonic(), sending=not early)
        else:
            self.rtp.remote = remote
            if offer.event_pt:
                self.rtp.event_pt = offer.event_pt
            if not early:
                self.rtp.sending = True

    def _on_request(self, msg: SipMessage) -> None:
        method = msg.method
        if method == "ACK":
            return
        in_dialog = msg.get("Call-ID") == self.call_id
        if method == "OPTIONS":
            self._send(response_to(msg, 200, "OK", to_tag=None if in_dialog else new_tag(),
                                   headers=[("Allow", ALLOW), ("Accept", "application/sdp")]))
            return
        if not in_dialog:
            self._send(response_to(msg, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()))
            return
        if method == "BYE":
            self._send(response_to(msg, 200, "OK"))
            why = msg.get("Reason")
            self._set_ended(CallState.ENDED, "far end hung up" + (f" ({why})" if why else ""),
                            None, by="far end")
        elif method in ("INVITE", "UPDATE"):
            # a session refresh or a media change: keep our SDP, follow theirs
            if msg.body:
                try:
                    offer = parse_sdp(msg.body)
                    if self.rtp:
                        self.rtp.remote = (offer.host, offer.port)
                except SipError as exc:
                    self._send(response_to(msg, 488, "Not Acceptable Here"))
                    log.warning("refused a re-INVITE: %s", exc)
                    return
            body = sdp_offer(self.local_host, self.rtp_port, self._session_id)
            self._send(response_to(msg, 200, "OK", headers=[
                ("Contact", self._contact()), ("Allow", ALLOW),
                ("Content-Type", "application/sdp")], body=body))
        elif method in ("INFO", "NOTIFY"):
            self._send(response_to(msg, 200, "OK"))
        elif method == "CANCEL":
            self._send(response_to(msg, 481, "Call/Transaction Does Not Exist"))
        else:
            self._send(response_to(msg, 405, "Method Not Allowed", headers=[("Allow", ALLOW)]))


def _raise_priority(niceness: int = -10) -> None:
    """Give the RTP thread a better scheduling weight, where we are allowed to.

    On two busy cores (the agent's STT and TTS beside the caller) a plain
    thread woke up to 60 ms late; the thread itself needs almost no CPU, so
    favouring it costs the agent nothing measurable.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):
        pass  # not root: keep the default priority


def _bind_even_port(host: str, tries: int = 32) -> socket.socket:
    """A UDP socket on an even port (RTP convention; RTCP would take the next one)."""
    spare = []
    try:
        for _ in range(tries):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            if sock.getsockname()[1] % 2 == 0:
                return sock
            spare.append(sock)
        return spare.pop()
    finally:
        for s in spare:
            s.close()
