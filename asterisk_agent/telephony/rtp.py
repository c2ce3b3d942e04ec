"""RTP: the caller's audio as Asterisk's externalMedia channel sends it.

The agent asks Asterisk for an externalMedia channel (``UnicastRTP/...``) that
sends the caller's audio as RTP over UDP to a port we listen on.  Nothing goes
back this way: the agent speaks by playing files through ARI.

Parsing (`parse_rtp`) is pure and strict: anything that is not a well-formed
RTP packet is an `RtpError`.  `RtpReceiver` sits on one UDP port for one call
and turns packets into 20 ms frames of int16 samples at 8 kHz.  It never
raises out of the network callback: every packet it refuses is counted in
``.stats`` under the reason it was refused.

What Asterisk 22 sends (measured on the sandbox, 22.10): one packet every
20 ms, 160 samples each; ``ulaw`` as payload type 0, ``slin`` (8 kHz, big-endian
L16) as payload type 10 — a number from Asterisk's own table rather than the
RFC 3551 meaning of 10 (44.1 kHz stereo), so for slin the receiver learns the
payload type from the first packet of the right size instead of hard-coding it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from asterisk_agent.speech.audio import slin_decode, ulaw_decode

log = logging.getLogger("asterisk_agent.rtp")

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = FRAME_SAMPLES / RATE

RECV_BUFFER_BYTES = 1 << 20

_HEADER = struct.Struct("!BBHII")
HEADER_SIZE = _HEADER.size  # 12


class RtpError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    csrcs: tuple[int, ...] = ()
    # the header extension (RFC 3550 5.3.1): profile-defined id and its data
    extension_profile: int | None = None
    extension_data: bytes = b""


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (RFC 3550 section 5.1); garbage raises RtpError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RtpError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise RtpError(f"too short for an RTP header: {len(data)} bytes (need {HEADER_SIZE})")
    b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    version = b0 >> 6
    if version != 2:
        raise RtpError(f"RTP version {version}, expected 2")
    # RTCP multiplexed on the same port (RFC 5761): packet types 200-204 land
    # where marker+payload type sit; they are control packets, not audio.
    if 200 <= b1 <= 204:
        raise RtpError(f"an RTCP packet (type {b1}), not RTP")
    padding, extension, csrc_count = bool(b0 & 0x20), bool(b0 & 0x10), b0 & 0x0F
    offset = HEADER_SIZE + 4 * csrc_count
    if len(data) < offset:
        raise RtpError(f"{csrc_count} CSRCs announced but the packet is only {len(data)} bytes")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, HEADER_SIZE)
    ext_profile, ext_data = None, b""
    if extension:
        if len(data) < offset + 4:
            raise RtpError("header extension announced but the packet ends before it")
        ext_profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise RtpError(f"header extension of {4 * words} bytes runs past the packet end")
        ext_data = data[offset + 4:end]
        offset = end
    end = len(data)
    if padding:
        pad = data[-1]
        if pad == 0 or offset + pad > end:
            raise RtpError(f"padding of {pad} bytes does not fit a {end - offset}-byte payload")
        end -= pad
    return RtpPacket(
        version=version, padding=padding, extension=extension, csrc_count=csrc_count,
        marker=bool(b1 & 0x80), payload_type=b1 & 0x7F, sequence=sequence,
        timestamp=timestamp, ssrc=ssrc, payload=data[offset:end], csrcs=csrcs,
        extension_profile=ext_profile, extension_data=ext_data,
    )


def build_rtp(
    payload: bytes,
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    """One RTP packet; `extension` is (profile, data) with data a multiple of 4 bytes."""
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} is outside 0-127")
    if len(csrcs) > 15:
        raise ValueError(f"at most 15 CSRCs, got {len(csrcs)}")
    if not 0 <= padding <= 255:
        raise ValueError(f"padding {padding} is outside 0-255")
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | payload_type
    out = bytearray(_HEADER.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                                 ssrc & 0xFFFFFFFF))
    out += struct.pack(f"!{len(csrcs)}I", *csrcs)
    if extension:
        profile, data = extension
        if len(data) % 4:
            raise ValueError("header extension data must be a multiple of 4 bytes")
        out += struct.pack("!HH", profile, len(data) // 4) + data
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return bytes(out)


def seq_delta(new: int, old: int) -> int:
    """How far `new` is ahead of `old` in 16-bit sequence space: -32768..32767."""
    d = (new - old) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


@dataclass(frozen=True)
class _Format:
    # the payload type to expect; None = learn it from the first packet
    payload_type: int | None
    bytes_per_sample: int
    decode: Callable[[bytes], np.ndarray]


FORMATS = {
    "ulaw": _Format(0, 1, ulaw_decode),
    "slin": _Format(None, 2, slin_decode),
}

# Payload types that never carry slin: G.711 (0, 8), G.722 (9), comfort noise
# (13), and the telephone-event types Asterisk uses for DTMF (101, 96).
# A learning slin receiver will not lock onto these.
_NOT_SLIN = frozenset({0, 8, 9, 13, 96, 101})
# a slin packet is at least 5 ms of audio; DTMF events (4 bytes) and comfort noise are shorter
_MIN_LEARN_BYTES = 80

# a forward jump larger than this (packets) is a restart of the sequence, not loss
# (the limit RFC 3550 appendix A.1 uses)
MAX_DROPOUT = 3000

_port_cursor: dict[tuple[int, int], int] = {}


class RtpReceiver(asyncio.DatagramProtocol):
    """Receives one call's RTP stream and delivers 20 ms int16 frames in order.

    Locks onto the first stream it hears (source address and SSRC).  Asterisk
    may switch to a new SSRC (or restart its sequence numbers) when the
    channel's bridge changes, so a new SSRC or an earlier sequence number is
    accepted once the stream has been silent for `ssrc_switch_gap` s; until
    then such packets are refused.  There is no jitter
    buffer: on loopback or a LAN packets arrive in order, and waiting for
    stragglers would only add latency, so a late packet is dropped.
    """

    def __init__(self, fmt: str, *, queue_size: int = 250, ssrc_switch_gap: float = 0.1,
                 payload_type: int | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"RTP format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self._format = FORMATS[fmt]
        self.payload_type: int | None = (
            payload_type if payload_type is not None else self._format.payload_type)
        self._learn_pt = self.payload_type is None
        self.ssrc: int | None = None
        self.remote: tuple[str, int] | None = None
        self.host = ""
        self.port = 0
        self.ssrc_switch_gap = ssrc_switch_gap
        self.queue: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue(queue_size)
        self.stats: dict[str, int] = collections.Counter({
            "datagrams": 0, "packets": 0, "frames": 0, "garbage": 0, "wrong_payload_type": 0,
            "bad_payload": 0, "duplicate": 0, "late": 0, "lost": 0, "wrong_ssrc": 0,
            "wrong_source": 0, "ssrc_changes": 0, "resyncs": 0, "overflow": 0, "errors": 0,
        })
        self._transport: asyncio.DatagramTransport | None = None
        self._last_seq: int | None = None
        self._last_time = 0.0
        # sequence numbers already delivered, to tell a duplicate from a late packet
        self._recent: collections.deque[int] = collections.deque(maxlen=64)
        self._pending = np.zeros(0, dtype=np.int16)
        self._first_packet = asyncio.Event()
        self._closed = False

    @classmethod
    async def open(cls, host: str, port_start: int, port_end: int, fmt: str,
                   **kwargs) -> RtpReceiver:
        """Bind a free UDP port in [port_start, port_end] and start receiving.

        The search starts just after the port this process handed out last and
        wraps round the range, so a port freed by a call that just ended is not
        reused at once (a straggling packet of the old stream would otherwise
        reach the next call).  The operating system guarantees that two
        receivers never share a port.
        """
        if not 0 < port_start <= port_end < 65536:
            raise ValueError(f"RTP port range {port_start}-{port_end} is not valid")
        loop = asyncio.get_running_loop()
        span = port_end - port_start + 1
        first = _port_cursor.get((port_start, port_end), port_start)
        last_error: OSError | None = None
        for i in range(span):
            port = port_start + (first - port_start + i) % span
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    last_error = exc
                    continue
                raise
            sock.setblocking(False)
            # room for a few seconds of packets should the event loop stall; the
            # kernel caps this at net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
            receiver = cls(fmt, **kwargs)
            await loop.create_datagram_endpoint(lambda r=receiver: r, sock=sock)
            _port_cursor[(port_start, port_end)] = port_start + (port - port_start + 1) % span
            return receiver
        raise OSError(errno.EADDRINUSE,
                      f"no free UDP port in {host}:{port_start}-{port_end} ({last_error})")

    # -- asyncio.DatagramProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.host, self.port = transport.get_extra_info("sockname")[:2]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc:
            log.warning("RTP socket %s:%s lost: %s", self.host, self.port, exc)
        self._finish()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors; we never send, so there is nothing to act on
        log.debug("RTP socket %s:%s: %s", self.host, self.port, exc)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self._receive(data, addr, time.monotonic())
        except Exception:  # one bad packet must never stop the call's audio
            self.stats["errors"] += 1
            log.exception("RTP packet from %s on port %s could not be handled", addr, self.port)

    # -- the work ----------------------------------------------------------------

    def _receive(self, data: bytes, addr: tuple, now: float) -> None:
        self.stats["datagrams"] += 1
        if self._closed:
            return
        try:
            pkt = parse_rtp(data)
        except RtpError as exc:
            self.stats["garbage"] += 1
            log.debug("not RTP from %s: %s", addr, exc)
            return
        source = (addr[0], addr[1])
        if self.remote is not None and source != self.remote:
            self.stats["wrong_source"] += 1
            return
        if not self._payload_type_ok(pkt):
            self.stats["wrong_payload_type"] += 1
            return
        if len(pkt.payload) % self._format.bytes_per_sample or not pkt.payload:
            self.stats["bad_payload"] += 1
            return
        if self.ssrc is None:
            self.remote, self.ssrc = source, pkt.ssrc
            log.debug("RTP on port %s from %s:%s, SSRC %08x, PT %s",
                      self.port, *source, pkt.ssrc, pkt.payload_type)
        elif pkt.ssrc != self.ssrc:
            if now - self._last_time < self.ssrc_switch_gap:
                self.stats["wrong_ssrc"] += 1
                return
            log.debug("RTP on port %s: SSRC %08x -> %08x", self.port, self.ssrc, pkt.ssrc)
            self.stats["ssrc_changes"] += 1
            self.ssrc, self._last_seq = pkt.ssrc, None
            self._recent.clear()
            self._flush_pending(now)
        if self._last_seq is not None:
            delta = seq_delta(pkt.sequence, self._last_seq)
            paused = now - self._last_time >= self.ssrc_switch_gap
            if delta <= 0 and not paused:
                self.stats["duplicate" if pkt.sequence in self._recent else "late"] += 1
                return
            if delta <= 0 or delta > MAX_DROPOUT:
                # the sender restarted its sequence (same SSRC) after a pause, or jumped
                # far ahead: follow it rather than drop audio until the numbers catch up
                self.stats["resyncs"] += 1
                self._recent.clear()
                self._flush_pending(now)
            elif delta > 1:
                self.stats["lost"] += delta - 1
                # the audio is not continuous: do not glue a remainder onto it
                self._flush_pending(now)
        if self._learn_pt:
            self.payload_type, self._learn_pt = pkt.payload_type, False
        self._last_seq, self._last_time = pkt.sequence, now
        self._recent.append(pkt.sequence)
        self.stats["packets"] += 1
        try:
            samples = self._format.decode(pkt.payload)
        except ValueError as exc:
            self.stats["bad_payload"] += 1
            log.debug("RTP payload not decodable: %s", exc)
            return
        self._deliver(samples, now)
        self._first_packet.set()

    def _payload_type_ok(self, pkt: RtpPacket) -> bool:
        if not self._learn_pt:
            return pkt.payload_type == self.payload_type
        # learning slin: the first packet big enough to be audio, of a type that is not
        # another codec's, sets the payload type (see the module docstring)
        return pkt.payload_type not in _NOT_SLIN and len(pkt.payload) >= _MIN_LEARN_BYTES

    def _deliver(self, samples: np.ndarray, now: float) -> None:
        # A payload may carry more or less than 20 ms; frames are cut from the
        # running stream so that timing stays exact (a short remainder waits for
        # the next packet instead of being padded with silence mid-stream).
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = len(samples) - len(samples) % FRAME_SAMPLES
        for i in range(0, whole, FRAME_SAMPLES):
            self._put((samples[i:i + FRAME_SAMPLES].copy(), now))
        self._pending = samples[whole:].copy()

    def _flush_pending(self, now: float) -> None:
        """Deliver a short remainder padded with silence to a whole frame."""
        if self._pending.size:
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            frame[:self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.int16)
            self._put((frame, now))

    def _put(self, entry: tuple[np.ndarray, float] | None) -> None:
        """Queue a frame, or None: the end of the stream."""
        if self.queue.full():
            # a stalled consumer must not grow memory without bound; the newest audio
            # matters most for barge-in, so the oldest frame goes
            self.queue.get_nowait()
            self.stats["overflow"] += 1
        self.queue.put_nowait(entry)
        if entry is not None:
            self.stats["frames"] += 1

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._flush_pending(time.monotonic())
            self._put(None)

    # -- for the call --------------------------------------------------------------

    async def frames(self) -> AsyncIterator[tuple[np.ndarray, float]]:
        """Yield (160 int16 samples, monotonic arrival time) until close()."""
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    async def wait_first_packet(self, timeout: float) -> bool:
        """True once an accepted packet arrived; False if none came within `timeout` s."""
        try:
            await asyncio.wait_for(self._first_packet.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop receiving; frames() ends after the frames already queued."""
        if self._transport is not None:
            self._transport.close()
        self._finish()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (f"<RtpReceiver {self.fmt} {self.host}:{self.port} remote={self.remote} "
                f"ssrc={self.ssrc if self.ssrc is None else f'{self.ssrc:08x}'}>")
