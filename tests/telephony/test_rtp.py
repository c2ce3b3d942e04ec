"""RTP parsing and the per-call RTP receiver, over real UDP on loopback."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import numpy as np
import pytest

from asterisk_agent.speech.audio import slin_encode, ulaw_encode
from asterisk_agent.telephony.rtp import (
    FRAME_SAMPLES,
    RtpError,
    RtpReceiver,
    build_rtp,
    parse_rtp,
    seq_delta,
)

SSRC = 0x1234ABCD


# -- parse_rtp ----------------------------------------------------------------------

def test_parse_plain_packet():
    raw = build_rtp(b"\xff" * 160, payload_type=0, sequence=7, timestamp=1120, ssrc=SSRC,
                    marker=True)
    pkt = parse_rtp(raw)
    assert (pkt.version, pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.ssrc) == \
        (2, 0, 7, 1120, SSRC)
    assert pkt.marker and not pkt.padding and not pkt.extension and pkt.csrc_count == 0
    assert pkt.payload == b"\xff" * 160


def test_parse_csrc_extension_and_padding_together():
    raw = build_rtp(b"audio", payload_type=10, sequence=65535, timestamp=0xFFFFFFFF,
                    ssrc=1, csrcs=(11, 22, 33), extension=(0xBEDE, b"\x01\x02\x03\x04" * 2),
                    padding=3)
    pkt = parse_rtp(raw)
    assert pkt.csrc_count == 3 and pkt.csrcs == (11, 22, 33)
    assert pkt.extension and pkt.extension_profile == 0xBEDE
    assert pkt.extension_data == b"\x01\x02\x03\x04" * 2
    assert pkt.padding and pkt.payload == b"audio"
    assert (pkt.sequence, pkt.timestamp, pkt.payload_type) == (65535, 0xFFFFFFFF, 10)


def test_parse_accepts_memoryview_and_empty_payload():
    raw = build_rtp(b"", payload_type=0, sequence=1, timestamp=0, ssrc=1)
    assert parse_rtp(memoryview(raw)).payload == b""


@pytest.mark.parametrize("raw, why", [
    (b"", "too short"),
    (b"\x80\x00\x00", "too short"),
    (bytes([0x40]) + bytes(11), "version 1"),
    (bytes([0x00]) + bytes(15), "version 0"),
    (bytes([0xC0]) + bytes(15), "version 3"),
    (bytes([0x80, 200]) + bytes(10), "RTCP sender report"),
    (bytes([0x81, 201]) + bytes(30), "RTCP receiver report"),
    (bytes([0x83]) + bytes(11) + bytes(8), "3 CSRCs, room for 2"),
    (bytes([0x90]) + bytes(11) + b"\x00\x01", "extension header cut short"),
    (bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "extension longer than packet"),
    (bytes([0xA0]) + bytes(11) + b"ab\x00", "padding count 0"),
    (bytes([0xA0]) + bytes(11) + b"ab\x04", "padding larger than payload"),
])
def test_parse_refuses_garbage(raw, why):
    with pytest.raises(RtpError):
        parse_rtp(raw)


def test_parse_refuses_non_bytes():
    with pytest.raises(RtpError):
        parse_rtp("not bytes")  # type: ignore[arg-type]


def test_fuzz_only_rtp_error_or_a_consistent_packet():
    rng = random.Random(20240601)
    refused = 0
    for n in range(20000):
        size = rng.randrange(0, 80)
        raw = bytes(rng.randrange(256) for _ in range(size))
        if n % 2:  # half of them look like RTP version 2, to reach the deeper checks
            raw = bytes([0x80 | (raw[0] & 0x3F)]) + raw[1:] if raw else raw
        try:
            pkt = parse_rtp(raw)
        except RtpError:
            refused += 1
            continue
        assert pkt.version == 2
        assert len(pkt.payload) <= len(raw) - 12 - 4 * pkt.csrc_count
        assert pkt.payload in raw
    assert 0 < refused < 20000


def test_build_rejects_what_it_cannot_encode():
    with pytest.raises(ValueError):
        build_rtp(b"", payload_type=128, sequence=0, timestamp=0, ssrc=0)
    with pytest.raises(ValueError):
        build_rtp(b"", payload_type=0, sequence=0, timestamp=0, ssrc=0, extension=(1, b"abc"))


def test_sequence_arithmetic_wraps():
    assert seq_delta(0, 65535) == 1
    assert seq_delta(65535, 0) == -1
    assert seq_delta(5, 5) == 0
    assert seq_delta(100, 65500) == 136
    assert seq_delta(32767, 0) == 32767


# -- the receiver, over real UDP -----------------------------------------------------

def tone(n: int, start: int = 0) -> np.ndarray:
    """Distinct, recognisable samples: a ramp, so a frame's origin can be checked."""
    return ((np.arange(start, start + n) * 37) % 16000 - 8000).astype(np.int16)


class Sender:
    """Plays Asterisk's part: a UDP socket that sends RTP to the receiver."""

    def __init__(self, receiver: RtpReceiver, fmt: str = "ulaw", pt: int | None = None,
                 ssrc: int = SSRC):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.dest = (receiver.host, receiver.port)
        self.fmt, self.ssrc = fmt, ssrc
        self.pt = pt if pt is not None else (0 if fmt == "ulaw" else 10)

    def payload(self, pcm: np.ndarray) -> bytes:
        return ulaw_encode(pcm) if self.fmt == "ulaw" else slin_encode(pcm)

    def send(self, seq: int, pcm: np.ndarray | None = None, *, raw: bytes | None = None,
             pt: int | None = None, ssrc: int | None = None) -> None:
        if raw is None:
            raw = build_rtp(self.payload(pcm), payload_type=self.pt if pt is None else pt,
                            sequence=seq, timestamp=seq * 160,
                            ssrc=self.ssrc if ssrc is None else ssrc)
        self.sock.sendto(raw, self.dest)

    def close(self) -> None:
        self.sock.close()


async def collect(rx: RtpReceiver, settle: float = 0.15) -> list[np.ndarray]:
    """Every frame delivered so far (after giving loopback time to deliver)."""
    await asyncio.sleep(settle)
    out = []
    while not rx.queue.empty():
        item = rx.queue.get_nowait()
        assert item is not None
        out.append(item[0])
    return out


@pytest.fixture
async def ulaw_rx():
    rx = await RtpReceiver.open("127.0.0.1", 41000, 41099, "ulaw")
    yield rx
    rx.close()


@pytest.fixture
async def slin_rx():
    rx = await RtpReceiver.open("127.0.0.1", 41000, 41099, "slin")
    yield rx
    rx.close()


async def test_in_order_ulaw_frames_arrive_decoded(ulaw_rx):
    tx = Sender(ulaw_rx, "ulaw")
    pcm = tone(160 * 5)
    for i in range(5):
        tx.send(100 + i, pcm[i * 160:(i + 1) * 160])
    frames = await collect(ulaw_rx)
    sender_address = tx.sock.getsockname()
    tx.close()
    assert len(frames) == 5
    assert all(f.dtype == np.int16 and f.shape == (FRAME_SAMPLES,) for f in frames)
    # u-law is lossy: within one quantisation step of the original
    err = np.abs(np.concatenate(frames).astype(int) - pcm.astype(int))
    assert err.max() <= 256
    assert ulaw_rx.remote == sender_address
    assert ulaw_rx.ssrc == SSRC and ulaw_rx.payload_type == 0
    assert ulaw_rx.stats["packets"] == 5 and ulaw_rx.stats["frames"] == 5


async def test_slin_is_exact_and_learns_the_payload_type(slin_rx):
    tx = Sender(slin_rx, "slin", pt=10)
    pcm = tone(160 * 3)
    tx.send(1, raw=build_rtp(b"\x00\x01\x02\x03", payload_type=101, sequence=1, timestamp=0,
                             ssrc=SSRC))  # a DTMF event first: must not be learned as slin
    for i in range(3):
        tx.send(2 + i, pcm[i * 160:(i + 1) * 160])
    tx.send(5, pcm[:160], pt=0)  # another payload type once learned
    frames = await collect(slin_rx)
    tx.close()
    assert slin_rx.payload_type == 10
    assert np.array_equal(np.concatenate(frames), pcm)
    assert slin_rx.stats["wrong_payload_type"] == 2


async def test_duplicates_and_late_packets_are_dropped_and_counted(ulaw_rx):
    tx = Sender(ulaw_rx)
    pcm = tone(160 * 6)
    f = [pcm[i * 160:(i + 1) * 160] for i in range(6)]
    tx.send(10, f[0])
    tx.send(11, f[1])
    tx.send(11, f[1])          # duplicate
    tx.send(13, f[3])          # 12 is overtaken
    tx.send(12, f[2])          # late: already past it
    tx.send(14, f[4])
    tx.send(10, f[0])          # duplicate of an old one
    frames = await collect(ulaw_rx)
    tx.close()
    assert len(frames) == 4
    s = ulaw_rx.stats
    assert (s["duplicate"], s["late"], s["lost"], s["packets"]) == (2, 1, 1, 4)


async def test_sequence_wraps_at_65535(ulaw_rx):
    tx = Sender(ulaw_rx)
    for seq in (65533, 65534, 65535, 0, 1, 2):
        tx.send(seq, tone(160))
    tx.send(65535, tone(160))  # after the wrap this is old, not new
    frames = await collect(ulaw_rx)
    tx.close()
    assert len(frames) == 6
    assert ulaw_rx.stats["lost"] == 0 and ulaw_rx.stats["duplicate"] == 1


async def test_wrong_payload_type_and_garbage_are_counted_not_raised(ulaw_rx):
    tx = Sender(ulaw_rx)
    tx.send(1, tone(160), pt=8)                    # PCMA, not our format
    for junk in (b"", b"hello", bytes(11), bytes([0x40]) + bytes(30),
                 bytes([0x80, 200]) + bytes(26), bytes(range(256))):
        tx.send(0, raw=junk)
    tx.send(2, tone(160))
    frames = await collect(ulaw_rx)
    tx.close()
    assert len(frames) == 1
    assert ulaw_rx.stats["wrong_payload_type"] == 1
    assert ulaw_rx.stats["garbage"] >= 5


async def test_random_datagrams_never_break_the_receiver(ulaw_rx):
    tx = Sender(ulaw_rx)
    rng = random.Random(7)
    for n in range(300):
        tx.send(0, raw=bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200))))
        if n % 25 == 24:  # let the loop drain the socket: the kernel buffer is finite
            await asyncio.sleep(0.01)
    tx.send(500, tone(160))
    await collect(ulaw_rx, settle=0.3)
    tx.close()
    s = ulaw_rx.stats
    assert s["errors"] == 0 and s["datagrams"] == 301
    # every datagram is accounted for under exactly one outcome
    outcomes = ("packets", "garbage", "wrong_payload_type", "bad_payload", "duplicate",
                "late", "wrong_ssrc", "wrong_source")
    assert sum(s[k] for k in outcomes) == 301


async def test_other_ssrc_refused_while_locked_then_accepted_after_a_gap(ulaw_rx):
    tx = Sender(ulaw_rx)
    tx.send(1, tone(160))
    tx.send(500, tone(160), ssrc=0xDEAD)   # a stranger stream while ours is live
    tx.send(2, tone(160))
    await collect(ulaw_rx)                  # 150 ms: longer than the switch gap
    tx.send(900, tone(160), ssrc=0xBEEF)   # Asterisk changed SSRC after a bridge change
    tx.send(901, tone(160), ssrc=0xBEEF)
    frames = await collect(ulaw_rx)
    tx.close()
    assert ulaw_rx.stats["wrong_ssrc"] == 1
    assert ulaw_rx.stats["ssrc_changes"] == 1 and ulaw_rx.ssrc == 0xBEEF
    assert len(frames) == 2


async def test_sequence_restart_after_a_pause_is_followed(ulaw_rx):
    tx = Sender(ulaw_rx)
    for seq in (5000, 5001, 5002):
        tx.send(seq, tone(160))
    await collect(ulaw_rx)                  # a pause longer than the switch gap
    for seq in (10, 11):                    # same SSRC, numbers start again
        tx.send(seq, tone(160))
    tx.send(9000, tone(160))                # a jump far ahead: a restart, not loss
    tx.send(9001, tone(160))
    frames = await collect(ulaw_rx)
    tx.close()
    assert len(frames) == 4
    s = ulaw_rx.stats
    assert (s["resyncs"], s["late"], s["lost"]) == (2, 0, 0)


async def test_packets_from_another_address_are_refused(ulaw_rx):
    tx, intruder = Sender(ulaw_rx), Sender(ulaw_rx)
    tx.send(1, tone(160))
    await asyncio.sleep(0.05)
    intruder.send(2, tone(160))
    tx.send(2, tone(160))
    frames = await collect(ulaw_rx)
    tx.close()
    intruder.close()
    assert len(frames) == 2
    assert ulaw_rx.stats["wrong_source"] == 1


async def test_long_payload_is_split_and_remainder_carried(slin_rx):
    tx = Sender(slin_rx, "slin")
    pcm = tone(400 + 200)
    tx.send(1, pcm[:400])        # 50 ms: two frames and 80 samples carried over
    tx.send(2, pcm[400:])        # 25 ms: completes a third frame, 120 carried over
    await asyncio.sleep(0.1)
    frames = await collect(slin_rx)
    assert len(frames) == 3
    assert np.array_equal(np.concatenate(frames), pcm[:480])
    tx.send(4, tone(160))       # 3 was lost: the remainder is padded out first
    frames = await collect(slin_rx)
    tx.close()
    assert len(frames) == 2
    assert np.array_equal(frames[0][:120], pcm[480:]) and not frames[0][120:].any()
    assert np.array_equal(frames[1], tone(160))


async def test_odd_length_slin_payload_is_bad_not_fatal(slin_rx):
    tx = Sender(slin_rx, "slin")
    tx.send(1, raw=build_rtp(bytes(321), payload_type=10, sequence=1, timestamp=0, ssrc=SSRC))
    tx.send(2, tone(160))
    frames = await collect(slin_rx)
    tx.close()
    assert len(frames) == 1 and slin_rx.stats["bad_payload"] == 1


async def test_frames_iterator_and_close(ulaw_rx):
    tx = Sender(ulaw_rx)
    assert not await ulaw_rx.wait_first_packet(0.05)
    for i in range(3):
        tx.send(i, tone(160))
    assert await ulaw_rx.wait_first_packet(1.0)
    await asyncio.sleep(0.05)
    ulaw_rx.close()
    got = [(f, t) async for f, t in ulaw_rx.frames()]
    tx.close()
    assert len(got) == 3
    assert got[0][1] <= got[1][1] <= got[2][1]
    assert ulaw_rx.closed


async def test_overflow_drops_the_oldest():
    rx = await RtpReceiver.open("127.0.0.1", 41000, 41099, "slin", queue_size=4)
    tx = Sender(rx, "slin")
    for i in range(10):
        tx.send(i, np.full(160, i, dtype=np.int16))
    await asyncio.sleep(0.15)
    rx.close()
    got = [int(f[0]) async for f, _ in rx.frames()]
    tx.close()
    assert rx.stats["overflow"] >= 6
    assert got[-1] == 9 and got == sorted(got)


async def test_concurrent_receivers_get_distinct_ports():
    rxs = await asyncio.gather(*(RtpReceiver.open("127.0.0.1", 41200, 41204, "ulaw")
                                 for _ in range(5)))
    try:
        assert len({r.port for r in rxs}) == 5
        assert all(41200 <= r.port <= 41204 for r in rxs)
        with pytest.raises(OSError, match="no free UDP port"):
            await RtpReceiver.open("127.0.0.1", 41200, 41204, "ulaw")
    finally:
        for r in rxs:
            r.close()


async def test_port_in_use_by_another_program_is_skipped():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        rx = await RtpReceiver.open("127.0.0.1", port, min(port + 1, 65535), "ulaw")
        assert rx.port == port + 1
        rx.close()
    finally:
        blocker.close()


async def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="slin16"):
        await RtpReceiver.open("127.0.0.1", 41000, 41099, "slin16")


def test_header_layout_is_network_order():
    raw = build_rtp(b"", payload_type=0, sequence=0x0102, timestamp=0x03040506, ssrc=0x0708090A)
    assert raw[:12] == struct.pack("!BBHII", 0x80, 0, 0x0102, 0x03040506, 0x0708090A)
