"""The caller's SIP dialog against a scripted SIP peer on loopback.

The peer is a stand-in, not Asterisk: these tests need a far end that loses
packets on purpose, refuses calls, sends re-INVITEs, OPTIONS and garbage on
command, which the real Asterisk does not do on demand.  Every message still
goes over a real UDP socket.  Real calls through the real Asterisk are in
test_real_calls.py.
"""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from asterisk_agent.caller.sip import (
    T1, Call, CallEnded, CallFailed, CallState, SipMessage, header_params, parse_message,
    parse_sdp, response_to, sdp_offer)


class Peer(asyncio.DatagramProtocol):
    """A far end that records what it gets and answers as each test scripts."""

    def __init__(self):
        self.got: asyncio.Queue = asyncio.Queue()
        self.transport = None
        self.addr = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.addr = addr
        self.got.put_nowait((parse_message(data), time.monotonic()))

    async def next(self, method: str | None = None, timeout: float = 5.0) -> SipMessage:
        while True:
            msg, _ = await asyncio.wait_for(self.got.get(), timeout)
            if method is None or msg.method == method or (
                    not msg.is_request and msg.cseq[1] == method):
                return msg

    def send(self, msg: SipMessage | bytes, addr=None):
        self.transport.sendto(msg if isinstance(msg, bytes) else msg.to_bytes(), addr or self.addr)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]


@pytest.fixture
async def peer():
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    # a real socket where the peer "receives RTP", so the caller has somewhere to send
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    proto.media = media
    yield proto
    transport.close()
    media.close()


def answer(peer: Peer, invite: SipMessage, status=200, reason="OK", tag="srv1") -> SipMessage:
    headers = [("Contact", f"<sip:asterisk@127.0.0.1:{peer.port};ob>")]
    body = b""
    if status == 200:
        headers.append(("Content-Type", "application/sdp"))
        body = sdp_offer("127.0.0.1", peer.media.getsockname()[1], 99)
    resp = response_to(invite, status, reason, to_tag=tag, headers=headers, body=body)
    peer.send(resp)
    return resp


def request(peer: Peer, method: str, invite: SipMessage, cseq: int, body=b"") -> SipMessage:
    """An in-dialog request from the far end to the caller."""
    msg = SipMessage(method=method, uri=header_params(invite.get("Contact"))[0].strip("<>"))
    msg.add("Via", f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKpeer{cseq}")
    msg.add("From", invite.get("To") + ";tag=srv1")
    msg.add("To", invite.get("From"))
    msg.add("Call-ID", invite.get("Call-ID"))
    msg.add("CSeq", f"{cseq} {method}")
    msg.body = body
    peer.send(msg)
    return msg


async def hang_up(peer: Peer, call: Call) -> None:
    """The caller hangs up; the peer answers the BYE."""
    hanging = asyncio.create_task(call.hangup())
    bye = await peer.next("BYE")
    peer.send(response_to(bye, 200, "OK"))
    await hanging
    call.close()


async def connected(peer: Peer) -> tuple[Call, SipMessage]:
    call = Call("127.0.0.1", peer.port)
    dialing = asyncio.create_task(call.dial("100", timeout=5))
    invite = await peer.next("INVITE")
    answer(peer, invite)
    await dialing
    await peer.next("ACK")
    return call, invite


async def test_invite_is_well_formed_and_the_ack_goes_to_the_contact(peer):
    call = Call("127.0.0.1", peer.port)
    dialing = asyncio.create_task(call.dial("100", timeout=5))
    invite = await peer.next("INVITE")
    assert invite.uri == f"sip:100@127.0.0.1:{peer.port}"
    via = invite.get_all("Via")
    assert len(via) == 1 and via[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{call.local_port};")
    assert invite.branch.startswith("z9hG4bK")
    assert header_params(invite.get("From"))[1]["tag"]
    assert "tag" not in header_params(invite.get("To"))[1]
    assert invite.get("Max-Forwards") == "70"
    assert invite.get("Contact") == f"<sip:caller@127.0.0.1:{call.local_port}>"
    assert invite.get("Content-Type") == "application/sdp"
    offer = parse_sdp(invite.body)
    assert (offer.port, offer.payload_types) == (call.rtp_port, (0, 101))
    assert call.state is CallState.CALLING

    peer.send(response_to(invite, 100, "Trying"))
    peer.send(response_to(invite, 180, "Ringing", to_tag="srv1"))
    await asyncio.sleep(0.05)
    assert call.state is CallState.RINGING
    answer(peer, invite)
    await dialing
    ack = await peer.next("ACK")
    assert call.state is CallState.ANSWERED
    # the ACK of a 2xx is a new transaction to the remote target (RFC 3261 13.2.2.4)
    assert ack.uri == f"sip:asterisk@127.0.0.1:{peer.port};ob"
    assert ack.branch != invite.branch
    assert ack.cseq == (invite.cseq[0], "ACK")
    assert header_params(ack.get("To"))[1]["tag"] == "srv1"
    # a retransmitted 200 (our ACK was lost) is ACKed again
    answer(peer, invite)
    again = await peer.next("ACK")
    assert again.to_bytes() == ack.to_bytes()
    await hang_up(peer, call)


async def test_invite_is_retransmitted_per_timer_a_until_a_response(peer):
    call = Call("127.0.0.1", peer.port)
    dialing = asyncio.create_task(call.dial("100", timeout=5))
    first = await peer.next("INVITE")
    t0 = time.monotonic()
    second = await peer.next("INVITE")
    t1 = time.monotonic()
    third = await peer.next("INVITE")
    t2 = time.monotonic()
    assert second.to_bytes() == first.to_bytes() == third.to_bytes()
    assert t1 - t0 == pytest.approx(T1, abs=0.1)
    assert t2 - t1 == pytest.approx(2 * T1, abs=0.1)
    peer.send(response_to(first, 100, "Trying"))
    await asyncio.sleep(2.5 * T1 * 2)
    assert peer.got.empty(), "retransmissions must stop after a provisional response"
    answer(peer, first)
    await dialing
    await hang_up(peer, call)


async def test_a_refused_call_fails_with_the_reason_and_is_acked_on_its_branch(peer):
    call = Call("127.0.0.1", peer.port)
    dialing = asyncio.create_task(call.dial("999", timeout=5))
    invite = await peer.next("INVITE")
    peer.send(response_to(invite, 404, "Not Found", to_tag="x"))
    with pytest.raises(CallFailed) as failed:
        await dialing
    assert failed.value.status == 404 and failed.value.reason == "404 Not Found"
    assert call.state is CallState.FAILED and call.reason == "404 Not Found"
    ack = await peer.next("ACK")
    assert ack.branch == invite.branch and ack.uri == invite.uri
    assert header_params(ack.get("To"))[1]["tag"] == "x"
    call.close()


async def test_no_answer_at_all_fails_cleanly(peer):
    call = Call("127.0.0.1", peer.port)
    with pytest.raises(CallFailed, match="no response to the INVITE within 0.3 s"):
        await call.dial("100", timeout=0.3)
    assert call.state is CallState.FAILED
    call.close()


async def test_hangup_while_ringing_sends_cancel(peer):
    call = Call("127.0.0.1", peer.port)
    dialing = asyncio.create_task(call.dial("100", timeout=5))
    invite = await peer.next("INVITE")
    peer.send(response_to(invite, 180, "Ringing", to_tag="srv1"))
    await asyncio.sleep(0.05)
    hanging = asyncio.create_task(call.hangup())
    cancel = await peer.next("CANCEL")
    assert cancel.branch == invite.branch and cancel.cseq == (invite.cseq[0], "CANCEL")
    assert cancel.uri == invite.uri
    peer.send(response_to(cancel, 200, "OK", to_tag="srv1"))
    peer.send(response_to(invite, 487, "Request Terminated", to_tag="srv1"))
    await hanging
    ack = await peer.next("ACK")
    assert ack.branch == invite.branch
    assert call.state is CallState.ENDED and call.hangup_by == "caller"
    with pytest.raises(CallFailed):
        await dialing
    call.close()


async def test_bye_from_far_end_is_answered_and_ends_the_call(peer):
    call, invite = await connected(peer)
    bye = request(peer, "BYE", invite, 5)
    ok = await peer.next("BYE")
    assert ok.status == 200 and ok.get("Via") == bye.get("Via")
    assert await call.wait_hangup(1.0)
    assert call.state is CallState.ENDED and call.hangup_by == "far end"
    with pytest.raises(CallEnded):
        await call.say(np.zeros(160, dtype=np.int16))
    call.close()


async def test_options_and_reinvite_get_200_with_our_sdp(peer):
    call, invite = await connected(peer)
    request(peer, "OPTIONS", invite, 6)
    ok = await peer.next("OPTIONS")
    assert ok.status == 200 and "INVITE" in ok.get("Allow")
    request(peer, "INVITE", invite, 7, body=sdp_offer("127.0.0.1", peer.media.getsockname()[1], 99, 2))
    ok = await peer.next("INVITE")
    assert ok.status == 200 and parse_sdp(ok.body).port == call.rtp_port
    assert ok.get("Contact")
    request(peer, "MESSAGE", invite, 8)
    assert (await peer.next("MESSAGE")).status == 405
    assert call.state is CallState.ANSWERED
    await hang_up(peer, call)


async def test_garbage_datagrams_do_not_disturb_the_call(peer):
    call, invite = await connected(peer)
    for junk in (b"\x00\x01\x02", b"GET / HTTP/1.1\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n",
                 b"\r\n\r\n", "INVITE ☃ SIP/2.0\r\n\r\n".encode(), bytes(range(256)) * 4):
        peer.send(junk, ("127.0.0.1", call.local_port))
    request(peer, "OPTIONS", invite, 9)
    assert (await peer.next("OPTIONS")).status == 200
    assert call.state is CallState.ANSWERED
    assert call.stats["sip_malformed"] >= 4
    await hang_up(peer, call)


async def test_caller_hangup_sends_bye_in_the_dialog(peer):
    call, invite = await connected(peer)
    hanging = asyncio.create_task(call.hangup())
    bye = await peer.next("BYE")
    assert bye.uri == f"sip:asterisk@127.0.0.1:{peer.port};ob"
    assert bye.cseq[0] > invite.cseq[0]
    assert header_params(bye.get("To"))[1]["tag"] == "srv1"
    assert bye.get("From") == invite.get("From")
    peer.send(response_to(bye, 200, "OK"))
    await hanging
    assert call.state is CallState.ENDED and call.hangup_by == "caller"
    # the sockets are closed and stay closed
    call.close()
    call.close()
    assert call._rtp_sock.fileno() == -1


async def test_nothing_listening_fails_at_once():
    # a port that was just free: the kernel answers the INVITE with "port unreachable"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    call = Call("127.0.0.1", port)
    t0 = time.monotonic()
    with pytest.raises(CallFailed, match=f"nothing answers SIP on 127.0.0.1:{port}"):
        await call.dial("100", timeout=10)
    assert time.monotonic() - t0 < 1.0
    call.close()
