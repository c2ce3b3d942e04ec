"""ARI over HTTPS and its events over WSS, against the real sandbox Asterisk.

The test makes a CA and a certificate for 127.0.0.1, turns on Asterisk's TLS
listener with them (http.conf tlsenable, then `module reload http`), and
talks to it as the agent does: with [ari] tls_ca_file set, REST answers and
the event WebSocket connects; without the CA the certificate is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time

import aiohttp
import pytest

from asterisk_agent.pbx.sandbox import CONF_DIR_IN, chroot_path
from asterisk_agent.telephony.ari import AriClient, AriError
from certs import make_ca


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ari_tls(pbx, sandbox_cfg, tmp_path):
    """Asterisk's HTTPS listener on a free port, with a certificate from a CA made here."""
    certs = make_ca(tmp_path)
    conf_dir = chroot_path(pbx.root, CONF_DIR_IN)
    http_conf = conf_dir / "http.conf"
    original = http_conf.read_text()
    # Asterisk runs as the chroot's asterisk user, and must read the key
    uid, gid = next((int(f[2]), int(f[3])) for f in (
        line.split(":") for line in (pbx.root / "etc" / "passwd").read_text().splitlines())
        if f[0] == "asterisk")
    for name in ("server.pem", "server.key"):
        target = conf_dir / f"test-ari-{name}"
        target.write_bytes((certs / name).read_bytes())
        os.chown(target, uid, gid)
        target.chmod(0o640)
    port = _free_port()
    tls = (f"tlsenable = yes\ntlsbindaddr = 127.0.0.1:{port}\n"
           f"tlscertfile = {CONF_DIR_IN}/test-ari-server.pem\n"
           f"tlsprivatekey = {CONF_DIR_IN}/test-ari-server.key\n")
    http_conf.write_text(original.replace("[general]\n", "[general]\n" + tls, 1))
    try:
        pbx.cli("module reload http")
        deadline = time.monotonic() + 10
        while "HTTPS Server Enabled" not in pbx.cli("http show status") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        status = pbx.cli("http show status")
        assert "HTTPS Server Enabled" in status, status
        yield dataclasses.replace(sandbox_cfg.ari, url=f"https://127.0.0.1:{port}/ari",
                                  tls_ca_file=str(certs / "ca.pem")), certs
    finally:
        http_conf.write_text(original)
        pbx.cli("module reload http")


def test_ari_over_https_and_events_over_wss(ari_tls):
    ari_cfg, _ = ari_tls

    async def talk():
        async with AriClient(ari_cfg) as ari:
            info = await ari.info()
            events = ari.events()
            async with contextlib.aclosing(events):
                first = await asyncio.wait_for(anext(events), 10)
            return info, first
    info, first = asyncio.run(talk())
    assert info.get("system", {}).get("version"), info
    assert first["type"] == "AgentConnected", first


def test_a_certificate_from_another_ca_is_refused(ari_tls):
    ari_cfg, certs = ari_tls
    stranger = dataclasses.replace(ari_cfg, tls_ca_file=str(certs / "other.pem"))

    async def talk():
        async with AriClient(stranger) as ari:
            return await ari.info()
    with pytest.raises((AriError, aiohttp.ClientConnectorCertificateError)) as err:
        asyncio.run(talk())
    assert "certificate" in str(err.value).lower(), err.value
