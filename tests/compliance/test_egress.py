"""No egress: connections outside the allowlist are refused in-process and logged.

An audit hook cannot be removed, so every test that installs one runs in a
subprocess of its own; the policy (the decision alone) is tested in-process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace

import pytest

from asterisk_agent import config
from asterisk_agent.compliance import egress
from asterisk_agent.compliance.egress import Policy


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def local_server():
    """A TCP server on loopback that answers each connection with b"hello"."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_allowlist_comes_from_the_config():
    cfg = config.parse(textwrap.dedent("""
        [ari]
        url = https://pbx.example.internal:8089/ari
        [media]
        rtp_host = 10.0.0.7
        [ehr]
        host = 10.0.0.9
        [llm]
        engine = openai
        url = http://[fd00::5]:8000/v1
        [ami]
        host = 10.0.0.11
        username = asterisk-agent
    """))
    hosts = egress.allowed_hosts(cfg)
    assert {"pbx.example.internal", "10.0.0.7", "10.0.0.9", "fd00::5", "10.0.0.11",
            "localhost"} <= hosts
    # the language-model server is only allowed when it is the engine
    local = replace(cfg, llm=replace(cfg.llm, engine="llama.cpp"))
    assert "fd00::5" not in egress.allowed_hosts(local)
    # and the AMI host only when the agent logs in to AMI
    no_ami = replace(cfg, ami=replace(cfg.ami, username=""))
    assert "10.0.0.11" not in egress.allowed_hosts(no_ami)


def test_the_sandbox_config_allows_only_loopback():
    cfg = config.load(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "sandbox.conf"))
    hosts = egress.allowed_hosts(cfg)
    assert all(h in ("localhost", "::1") or h.startswith("127.") for h in hosts), hosts


def test_policy_decisions():
    policy = Policy(["10.0.0.9", "localhost"], resolve=False)
    assert policy.allows("10.0.0.9") and policy.allows(b"10.0.0.9")
    assert policy.allows("127.0.0.1") and policy.allows("127.8.9.10") and policy.allows("::1")
    assert policy.allows("::ffff:10.0.0.9")  # IPv4 written as IPv6 is judged as itself
    assert policy.allows("localhost") and policy.allows(None) and policy.allows("")
    assert policy.allows("0.0.0.0") and policy.allows("::")  # a listener's bind address
    assert not policy.allows("192.0.2.1") and not policy.allows("10.0.0.8")
    assert not policy.allows("example.com") and not policy.allows("2001:db8::1")
    # without a loopback entry, loopback is not allowed either
    assert not Policy(["10.0.0.9"], resolve=False).allows("127.0.0.1")


def test_allowed_names_are_resolved_before_the_hook():
    policy = Policy(["localhost"])
    assert "127.0.0.1" in policy.addresses or "::1" in policy.addresses


HOOKED = """
    import json, logging, socket, sys
    from asterisk_agent import logs
    from asterisk_agent.compliance import egress
    logs.setup("debug", "json")
    egress.install(["localhost", "127.0.0.1"])
    port = int(sys.argv[1])
    result = {}
    def attempt(name, fn):
        try:
            result[name] = fn()
        except OSError as exc:
            result[name] = f"{type(exc).__name__}: {exc}"
"""


def test_a_connection_outside_the_allowlist_is_refused_and_logged(local_server):
    proc = run_python(HOOKED + """
    def forbidden():
        with socket.socket() as s:
            s.settimeout(2)
            s.connect(("192.0.2.1", 80))
    def forbidden_again():
        with socket.socket() as s:
            s.connect(("192.0.2.1", 443))
    def public_name():
        return socket.create_connection(("example.com", 80), timeout=2)
    def lookup():
        return socket.getaddrinfo("example.com", 443)
    def datagram():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return s.sendto(b"x", ("198.51.100.7", 53))
    def allowed():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(5).decode()
    def allowed_by_name():
        with socket.create_connection(("localhost", port), timeout=2) as s:
            return s.recv(5).decode()
    def unix():
        a, b = socket.socketpair()
        a.sendall(b"ok"); r = b.recv(2).decode(); a.close(); b.close()
        return r
    for fn in (forbidden, forbidden_again, public_name, lookup, datagram, allowed,
               allowed_by_name, unix):
        attempt(fn.__name__, fn)
    print(json.dumps({"result": result, "refused": sorted(egress.refused_hosts())}))
    """, str(local_server))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    result = out["result"]
    for name in ("forbidden", "forbidden_again", "public_name", "lookup", "datagram"):
        assert result[name].startswith("EgressRefused: [Errno 13] network egress refused"), \
            (name, result)
        assert "allowlist" in result[name]
    assert "192.0.2.1 port 80" in result["forbidden"]
    assert result["allowed"] == result["allowed_by_name"] == "hello"
    assert result["unix"] == "ok"
    assert out["refused"] == ["192.0.2.1", "198.51.100.7", "example.com"]
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    refusals = [r["event"] for r in records if r["event"].startswith("egress refused")]
    # once per host, not per attempt
    assert len(refusals) == 3 and sum("192.0.2.1" in r for r in refusals) == 1, refusals
    assert any(r["event"].startswith("egress allowlist installed") for r in records)
    allowed = [r["event"] for r in records if r["event"].startswith("egress allowed")]
    assert any(f"127.0.0.1 port {local_server}" in e for e in allowed), allowed


def test_asyncio_and_aiohttp_see_the_refusal_as_a_connection_error(local_server):
    """The agent's own clients (aiohttp for ARI) fail as on a dead network."""
    proc = run_python(HOOKED + """
    import asyncio, aiohttp
    async def main():
        async with aiohttp.ClientSession() as http:
            try:
                await http.get("http://192.0.2.1:8088/ari", timeout=aiohttp.ClientTimeout(total=3))
            except aiohttp.ClientConnectionError as exc:
                result["aiohttp"] = type(exc).__name__ + ": " + str(exc)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        result["asyncio"] = (await r.read(5)).decode()
        w.close()
    asyncio.run(main())
    print(json.dumps(result))
    """, str(local_server))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "egress refused" in result["aiohttp"], result
    assert result["asyncio"] == "hello"


def test_a_second_install_does_not_widen_the_allowlist():
    proc = run_python(HOOKED + """
    egress.install(["192.0.2.1"])
    attempt("after", lambda: socket.create_connection(("192.0.2.1", 80), timeout=1))
    print(json.dumps(result))
    """, "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["after"].startswith("EgressRefused")
    assert "the first one holds" in proc.stderr


def test_offline_environment_for_model_libraries():
    proc = run_python("""
        import json, os
        from asterisk_agent.compliance import egress
        egress.set_offline()
        print(json.dumps({k: os.environ.get(k) for k in egress.OFFLINE_ENV}))
    """)
    assert json.loads(proc.stdout) == egress.OFFLINE_ENV
    assert egress.OFFLINE_ENV["HF_HUB_OFFLINE"] == "1"


def test_the_cli_entry_sets_offline_before_anything_runs(tmp_path):
    """`asterisk-agent` itself: the environment its subcommands (and the worker) see."""
    proc = run_python("""
        import os, sys
        from asterisk_agent import cli
        try:
            cli.main(["screen", "--help"])
        except SystemExit:
            pass
        sys.stderr.write("HF_HUB_OFFLINE=" + str(os.environ.get("HF_HUB_OFFLINE")))
    """)
    assert "HF_HUB_OFFLINE=1" in proc.stderr, proc.stderr
