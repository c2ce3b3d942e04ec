"""No egress: the agent process refuses network connections outside its allowlist.

Patient audio, transcripts and records must not leave the practice's network,
even through a library that phones home (a model hub, telemetry).  A firewall
is the site's job; this is the agent's own guarantee, enforced in-process with
an audit hook (PEP 578) on the socket events: a connection, a datagram sent or
a name looked up for any host not in the allowlist raises EgressRefused (an
OSError, so callers treat it as the network failure it is) and is logged once
per host.  Unix sockets and sockets of other families are local and pass.

The allowlist comes from the configuration (`allowed_hosts`): Asterisk (ARI,
RTP, and AMI when configured), the EHR engine, the language-model server when
one is configured, and loopback.  Audit hooks cannot be removed: `install` is for a process's entry
point (`asterisk-agent serve`), and tests run it in a subprocess.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

log = logging.getLogger("asterisk_agent.egress")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# environment that keeps model libraries from looking anything up on the network
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
}
# seconds between look-ups of the allowed names again, when a connection goes to
# an address none of them had (their DNS entry may have changed)
RESOLVE_AGAIN_S = 30.0


class EgressRefused(PermissionError):
    """A connection to a host outside the allowlist, refused before it was made."""


def set_offline() -> None:
    """Tell model libraries (Hugging Face hub, transformers) to stay offline.

    Call at the process entry, before they are imported: they read it then.
    Child processes (the worker) inherit it.
    """
    os.environ.update(OFFLINE_ENV)


def allowed_hosts(cfg: Any) -> frozenset[str]:
    """The hosts the agent may reach under `cfg`: names or addresses, lower case."""
    hosts = set(LOOPBACK_NAMES)
    hosts.add(_host_of(cfg.ari.url))
    hosts.add(cfg.media.rtp_host)
    hosts.add(cfg.ehr.host)
    if cfg.ehr.feed_port:
        # the SIU feed listener binds there: an address of this machine
        hosts.add(cfg.ehr.feed_host)
    if cfg.llm.engine == "openai" and cfg.llm.url:
        hosts.add(_host_of(cfg.llm.url))
    if cfg.ami.username:
        # the Asterisk Manager Interface, when the agent uses it
        hosts.add(cfg.ami.host)
    agi = cfg.agi.listen.strip().rpartition(":")[0]
    if agi:
        # the FastAGI listener binds there: an address of this machine
        hosts.add(agi)
    return frozenset(h.strip("[]").lower() for h in hosts if h and h not in ("0.0.0.0", "::"))


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class Policy:
    """Which destinations are allowed; the decision part of the hook, testable alone."""

    def __init__(self, hosts: Iterable[str], resolve: bool = True):
        self.names: set[str] = set()
        self.addresses: set[str] = set()
        self.loopback = False
        for host in hosts:
            host = str(host).strip().strip("[]").lower()
            if not host:
                continue
            address = _address(host)
            if address is None:
                self.names.add(host)
            else:
                self.addresses.add(str(address))
                self.loopback |= address.is_loopback
        if "localhost" in self.names:
            self.loopback = True
        self._resolve = resolve
        self._resolved_at = -RESOLVE_AGAIN_S
        if resolve:
            self.resolve()

    def resolve(self) -> None:
        """Add the addresses the allowed names have now (before the hook runs, or
        from inside it under its guard)."""
        self._resolved_at = time.monotonic()
        for name in list(self.names):
            try:
                infos = socket.getaddrinfo(name, None)
            except (OSError, UnicodeError):
                continue  # a name that does not resolve now allows nothing more
            for info in infos:
                self.addresses.add(str(ipaddress.ip_address(info[4][0].split("%")[0])))

    def allows(self, host: Any) -> bool:
        if host is None or host == "":
            return True  # getaddrinfo for a local bind
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        host = str(host).strip("[]").lower()
        address = _address(host)
        if address is None:
            return host in self.names or (self.loopback and host == "localhost")
        if self.loopback and address.is_loopback:
            return True
        if address.is_unspecified:
            return True  # 0.0.0.0 or ::, looked up to bind a listener: nothing leaves
        if str(address) in self.addresses:
            return True
        if self._resolve and self.names and \
                time.monotonic() - self._resolved_at >= RESOLVE_AGAIN_S:
            self.resolve()
            return str(address) in self.addresses
        return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    # an IPv4 address written as IPv6 (::ffff:1.2.3.4) is judged as itself
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


_POLICED_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_installed: list["_Hook"] = []


class _Hook:
    """The audit hook: refuses what the policy does not allow, logs each host once."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.refused: set[str] = set()
        self.seen: set[tuple[str, Any]] = set()
        self.hosts_seen: set[str] = set()
        self._busy = threading.local()  # the hook's own look-ups and logging pass

    def __call__(self, event: str, args: tuple) -> None:
        if not event.startswith("socket.") or getattr(self._busy, "on", False):
            return
        if event in ("socket.connect", "socket.sendto"):
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) not in _POLICED_FAMILIES:
                return
            if not isinstance(address, tuple) or not address:
                return
            host, port = address[0], address[1] if len(address) > 1 else None
        elif event == "socket.getaddrinfo":
            host, port = args[0], args[1]
        elif event in ("socket.gethostbyname", "socket.gethostbyname_ex"):
            host, port = args[0], None
        else:
            return
        self._busy.on = True
        try:
            allowed = self.policy.allows(host)
            self._note(event, host, port, allowed)
        finally:
            self._busy.on = False
        if not allowed:
            # errno and strerror both set: clients (aiohttp) print strerror
            raise EgressRefused(
                errno.EACCES, f"network egress refused: {host}" + (f" port {port}" if port else "") +
                " is not in the agent's allowlist (Asterisk, the EHR engine, the "
                "language-model server, loopback)")

    def _note(self, event: str, host: Any, port: Any, allowed: bool) -> None:
        host = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        if not allowed:
            if host not in self.refused:
                self.refused.add(host)
                log.warning("egress refused: %s (%s, port %s): not in the allowlist",
                            host, event, port)
            return
        if (host, port) not in self.seen and len(self.seen) < 10_000:
            self.seen.add((host, port))
            log.debug("egress allowed: %s port %s (%s)", host, port, event)
        if host not in self.hosts_seen:
            self.hosts_seen.add(host)
            log.info("egress: first use of allowed host %s (%s)", host, event)


def install(allowed: Iterable[str]) -> None:
    """Refuse, for the rest of this process, connections to hosts not in `allowed`.

    Names in `allowed` are resolved now, before the hook runs.  A second call
    adds nothing (a hook cannot be removed or replaced: the first allowlist holds).
    """
    if _installed:
        log.warning("egress: allowlist already installed; the first one holds")
        return
    hook = _Hook(Policy(allowed))
    _installed.append(hook)
    sys.addaudithook(hook)
    log.info("egress allowlist installed: %s",
             ", ".join(sorted(hook.policy.names | hook.policy.addresses)))


def refused_hosts() -> frozenset[str]:
    """The hosts refused so far in this process (empty before `install`)."""
    return frozenset(_installed[0].refused) if _installed else frozenset()
