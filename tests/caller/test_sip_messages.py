"""SIP messages, SDP and RFC 4733 payloads as the test caller writes and reads them."""

from __future__ import annotations

import struct

import pytest

from asterisk_agent.caller.sip import (
    SipError, SipMessage, canonical_name, dtmf_payloads, header_params, name_addr_uri,
    new_branch, parse_message, parse_sdp, response_to, sdp_offer, split_list)

INVITE = (
    "INVITE sip:100@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKdef, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKghi\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Test, Caller" <sip:caller@127.0.0.1>;tag=1234\r\n'
    "To: <sip:100@127.0.0.1:5060>\r\n"
    "Call-ID: abc@127.0.0.1\r\n"
    "CSeq: 7 INVITE\r\n"
    "Contact: <sip:caller@127.0.0.1:40000;transport=udp>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\r\n"
).encode()


def test_parses_a_request_with_several_vias_in_order():
    msg = parse_message(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:100@127.0.0.1:5060"
    vias = msg.get_all("Via")
    assert [header_params(v)[1]["branch"] for v in vias] == ["z9hG4bKabc", "z9hG4bKdef", "z9hG4bKghi"]
    assert msg.branch == "z9hG4bKabc"
    assert msg.cseq == (7, "INVITE")
    # the comma inside the quoted display name is no list separator
    assert msg.get("From") == '"Test, Caller" <sip:caller@127.0.0.1>;tag=1234'
    assert msg.body == b"v=0\r"  # Content-Length counts 4 bytes, the rest is ignored


def test_compact_header_names_and_folded_lines():
    data = (
        "SIP/2.0 180 Ringing\r\n"
        "v: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx\r\n"
        "f: <sip:caller@127.0.0.1>;tag=a\r\n"
        "t: <sip:100@127.0.0.1>\r\n"
        " ;tag=b\r\n"
        "i: id@host\r\n"
        "CSeq: 1\r\n"
        "\tINVITE\r\n"
        "l: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert msg.status == 180 and msg.reason == "Ringing"
    assert msg.get("Call-ID") == "id@host"
    assert msg.get("To") == "<sip:100@127.0.0.1> ;tag=b"
    assert header_params(msg.get("To"))[1]["tag"] == "b"
    assert msg.cseq == (1, "INVITE")


def test_bare_line_feeds_are_accepted():
    msg = parse_message(INVITE.replace(b"\r\n", b"\n"))
    assert msg.method == "INVITE" and msg.get("Call-ID") == "abc@127.0.0.1"


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (b"\r\n\r\n", "empty"),
    (b"\x00\xff\xfe garbage", "UTF-8"),
    (b"HELLO WORLD\r\n\r\n", "start line"),
    (b"SIP/2.0 abc OK\r\n\r\n", "status code"),
    (b"SIP/2.0 999 Weird\r\n\r\n", "status code"),
    (INVITE.replace(b"Call-ID: abc@127.0.0.1\r\n", b""), "Call-ID"),
    (INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE"), "CSeq"),
    (INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"), "does not match"),
    (INVITE.replace(b"Content-Length: 4", b"Content-Length: 400"), "Content-Length"),
    (INVITE.replace(b"Max-Forwards: 70", b"Max Forwards 70"), "header line"),
    (b" folded first\r\n" + INVITE, "start line"),
])
def test_garbage_is_a_clear_sip_error(data, why):
    with pytest.raises(SipError, match=why):
        parse_message(data)


def test_not_bytes_is_an_error():
    with pytest.raises(SipError):
        parse_message("INVITE")  # type: ignore[arg-type]


def test_serializes_with_a_correct_content_length():
    msg = SipMessage(method="BYE", uri="sip:x@127.0.0.1")
    msg.add("via", "SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK1").add("i", "c@h")
    msg.add("from", "<sip:a@h>;tag=1").add("to", "<sip:b@h>;tag=2").add("cseq", "2 BYE")
    msg.add("Content-Length", "999")  # ignored: the real length is always written
    msg.body = b"hello"
    data = msg.to_bytes()
    assert data.startswith(b"BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: ")
    assert b"Call-ID: c@h\r\n" in data and b"CSeq: 2 BYE\r\n" in data
    assert data.count(b"Content-Length") == 1
    assert data.endswith(b"Content-Length: 5\r\n\r\nhello")
    again = parse_message(data)
    assert again.body == b"hello" and again.get("CSeq") == "2 BYE"


def test_response_copies_vias_and_adds_our_tag():
    req = parse_message(INVITE)
    resp = response_to(req, 200, "OK", to_tag="xyz", headers=[("Contact", "<sip:me@h>")])
    assert resp.get_all("Via") == req.get_all("Via")
    assert resp.get("To") == "<sip:100@127.0.0.1:5060>;tag=xyz"
    assert resp.get("CSeq") == "7 INVITE" and resp.get("Call-ID") == "abc@127.0.0.1"
    parsed = parse_message(resp.to_bytes())
    assert parsed.status == 200 and len(parsed.get_all("Via")) == 3
    # a To that already has a tag keeps it
    req.headers = [(n, v + ";tag=old" if n == "To" else v) for n, v in req.headers]
    assert response_to(req, 200, "OK", to_tag="new").get("To").endswith("tag=old")


def test_header_helpers():
    assert canonical_name("i") == "Call-ID" and canonical_name("CSEQ") == "CSeq"
    assert canonical_name("max-forwards") == "Max-Forwards"
    assert split_list('"a, b" <sip:x@h;p=1,2>, <sip:y@h>') == ['"a, b" <sip:x@h;p=1,2>', "<sip:y@h>"]
    assert header_params("<sip:a@h;transport=udp>;tag=9;lr") == (
        "<sip:a@h;transport=udp>", {"tag": "9", "lr": ""})
    assert name_addr_uri('"Bob" <sip:bob@10.0.0.1:5070;ob>;expires=60') == "sip:bob@10.0.0.1:5070;ob"
    assert name_addr_uri("sip:bob@h;tag=1") == "sip:bob@h"
    b1, b2 = new_branch(), new_branch()
    assert b1.startswith("z9hG4bK") and b1 != b2


def test_sdp_offer_says_pcmu_and_telephone_event():
    sdp = sdp_offer("127.0.0.1", 30000, session_id=42).decode()
    lines = sdp.split("\r\n")
    assert "m=audio 30000 RTP/AVP 0 101" in lines
    assert "c=IN IP4 127.0.0.1" in lines
    assert {"a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
            "a=ptime:20", "a=sendrecv"} <= set(lines)
    assert sdp.endswith("\r\n")


def test_parses_asterisks_sdp_answer():
    answer = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 20056 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()
    media = parse_sdp(answer)
    assert (media.host, media.port, media.payload_types, media.event_pt) == (
        "127.0.0.1", 20056, (0, 101), 101)


def test_media_level_connection_wins_and_video_is_ignored():
    sdp = (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 96\r\nc=IN IP4 127.0.0.2\r\n"
           b"a=rtpmap:96 telephone-event/8000\r\nm=video 5000 RTP/AVP 31\r\nc=IN IP4 10.9.9.9\r\n")
    media = parse_sdp(sdp)
    assert (media.host, media.port, media.event_pt) == ("127.0.0.2", 4000, 96)


@pytest.mark.parametrize("sdp, why", [
    (b"v=0\r\nc=IN IP4 1.2.3.4\r\n", "no audio"),
    (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "connection"),
    (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n", "rejected"),
    (b"v=0\r\nc=IN IP6 ::1\r\nm=audio 4000 RTP/AVP 0\r\n", "connection line"),
    (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "port"),
    (b"\xff\xfe", "UTF-8"),
])
def test_bad_sdp_is_a_clear_error(sdp, why):
    with pytest.raises(SipError, match=why):
        parse_sdp(sdp)


def test_dtmf_payloads_follow_rfc_4733():
    payloads = dtmf_payloads("5", duration_ms=160)
    events = [struct.unpack("!BBH", p) + (first,) for p, first in payloads]
    # 7 updates, then the end packet three times (RFC 4733 2.5.1.4)
    assert len(events) == 10
    assert [e[0] for e in events] == [5] * 10
    assert [e[2] for e in events] == [160, 320, 480, 640, 800, 960, 1120, 1280, 1280, 1280]
    assert [bool(e[1] & 0x80) for e in events] == [False] * 7 + [True] * 3
    assert all(e[1] & 0x3F == 10 for e in events)        # volume -10 dBm0
    assert [e[3] for e in events] == [True] + [False] * 9  # marker on the first only
    assert struct.unpack("!BBH", dtmf_payloads("#")[0][0])[0] == 11
    assert struct.unpack("!BBH", dtmf_payloads("*")[0][0])[0] == 10
    with pytest.raises(ValueError, match="DTMF"):
        dtmf_payloads("x")
