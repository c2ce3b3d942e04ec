"""An asyncio MLLP client for the interface engine: one connection, one exchange at a time.

Framing and streams come from python-hl7's ``hl7.mllp`` (it reads whole
blocks, with a size limit, and rejects a block that does not start with
<VT>); this module adds what it lacks: connect and ACK timeouts, TLS,
reconnecting with backoff, matching the answer to the request by control ID,
and the application-ACK policy (AA done, AE retried, AR permanent).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hl7.mllp import InvalidBlockError, open_hl7_connection

from asterisk_agent.ehr import messages

log = logging.getLogger(__name__)

# the largest message a server here accepts, in bytes; a bigger frame resets the connection
MAX_MESSAGE = 1 << 20


class LinkError(Exception):
    """The engine could not be reached or did not answer in time: worth retrying."""


class Rejected(Exception):
    """The engine answered AR (or AE past the retry policy): retrying will not help."""

    def __init__(self, ack: messages.Ack):
        self.ack = ack
        super().__init__(f"{ack.code} for {ack.control_id}: {ack.error or 'no error text'}")


@dataclass(frozen=True)
class LinkSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    # seconds to open the TCP (and TLS) connection
    connect_timeout: float = 5.0
    # seconds to wait for the answer to one message
    ack_timeout: float = 10.0
    # seconds between reconnect attempts, doubling up to reconnect_max
    reconnect_min: float = 0.2
    reconnect_max: float = 30.0
    # how many times an AE (application error) is retried before it counts as rejected
    error_retries: int = 3
    # the largest answer accepted, in bytes; a bigger one resets the connection
    max_message: int = 1 << 20
    tls: ssl.SSLContext | None = None
    # the name the engine's certificate must carry (default: host)
    tls_server_name: str | None = None


def client_tls(ca_file: Path | str, cert_file: Path | str | None = None,
               key_file: Path | str | None = None) -> ssl.SSLContext:
    """TLS towards the engine: verify it against ca_file; present cert_file for mutual TLS."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


class MllpClient:
    """Sends HL7 messages and returns the engine's answers.

    send() is one exchange (LinkError on any transport trouble, the
    connection then dropped); deliver() is send() under the retry policy.
    """

    def __init__(self, settings: LinkSettings):
        self.settings = settings
        self._reader = None
        self._writer = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        s = self.settings
        kwargs = {}
        if s.tls is not None:
            kwargs = {"ssl": s.tls, "server_hostname": s.tls_server_name or s.host}
        try:
            # asyncio.timeout rather than wait_for, which on 3.11 can swallow
            # a cancellation (the delivery loop would then never stop)
            async with asyncio.timeout(s.connect_timeout):
                self._reader, self._writer = await open_hl7_connection(
                    s.host, s.port, limit=s.max_message, encoding=messages.ENCODING, **kwargs)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise LinkError(f"cannot connect to {s.host}:{s.port}: {e!r}") from e
        log.info("EHR link connected to %s:%d%s", s.host, s.port, " (TLS)" if s.tls else "")

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass

    async def send(self, text: str) -> messages.Ack:
        """Send one message; its answer (MSA-2 = its control ID) as an Ack."""
        control_id = messages.control_id(messages.parse(text))
        async with self._lock:
            if not self.connected:
                await self.connect()
            try:
                self._writer.writeblock(text.encode(messages.ENCODING))
                async with asyncio.timeout(self.settings.ack_timeout):
                    await self._writer.drain()
                async with asyncio.timeout(self.settings.ack_timeout):
                    return await self._answer(control_id)
            except asyncio.TimeoutError:
                await self.close()
                raise LinkError(f"no answer to {control_id} in {self.settings.ack_timeout} s")
            except (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError,
                    ValueError) as e:
                # ValueError: an answer over max_message (hl7.mllp's limit)
                await self.close()
                raise LinkError(f"connection lost while sending {control_id}: {e!r}") from e

    async def _answer(self, control_id: str) -> messages.Ack:
        """Read blocks until the one that answers control_id; skip what does not."""
        while True:
            try:
                block = await self._reader.readblock()
            except InvalidBlockError:
                log.warning("EHR link: bytes outside an MLLP frame, skipped")
                continue
            try:
                ack = messages.read_ack(messages.parse(block.decode(messages.ENCODING)))
            except UnicodeDecodeError:
                log.warning("EHR link: an answer that is not %s, skipped", messages.ENCODING)
                continue
            except messages.MessageError as e:
                log.warning("EHR link: unreadable answer skipped: %s", e)
                continue
            if ack.control_id != control_id:
                log.warning("EHR link: answer for unknown control ID %r skipped", ack.control_id)
                continue
            return ack

    async def deliver(self, text: str, attempts: int | None = None) -> messages.Ack:
        """Send until the engine accepts (AA); Rejected on AR or AE past the policy.

        Reconnects with backoff on LinkError, at most `attempts` times in all
        (None: until cancelled).  The same text, hence the same control ID,
        goes out each time so the engine can de-duplicate.
        """
        s = self.settings
        delay, errors, tries = s.reconnect_min, 0, 0
        while True:
            tries += 1
            try:
                ack = await self.send(text)
            except LinkError as e:
                if attempts is not None and tries >= attempts:
                    raise
                log.warning("EHR link: %s; retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, s.reconnect_max)
                continue
            delay = s.reconnect_min
            if ack.accepted:
                return ack
            if ack.code in (messages.ERROR, "CE") and errors < s.error_retries:
                errors += 1
                log.warning("EHR link: %s for %s (%s); retry %d of %d", ack.code,
                            ack.control_id, ack.error, errors, s.error_retries)
                await asyncio.sleep(delay)
                continue
            raise Rejected(ack)

    async def __aenter__(self) -> MllpClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()



async def serve_connection(reader, writer, answer: Callable[[str], Awaitable[str | None]],
                           reject_encoding: Callable[[str], str | None], name: str) -> None:
    """Serve one MLLP connection until it closes: each frame's message goes to
    `answer`, whose reply (if any) is sent back.  A message that is not in the
    HL7 encoding gets `reject_encoding`'s NAK (read as latin-1 to find its MSH);
    bytes outside a frame are skipped; an oversized frame resets the
    connection.  Nothing a peer sends ends the server."""
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                block = await reader.readblock()
            except InvalidBlockError:
                log.warning("%s %s: bytes outside an MLLP frame, skipped", name, peer)
                continue
            except ValueError:
                log.warning("%s %s: frame over %d bytes; connection reset", name, peer, MAX_MESSAGE)
                return
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    log.warning("%s %s: connection closed inside a frame (%d bytes lost)",
                                name, peer, len(e.partial))
                return
            try:
                text = block.decode(messages.ENCODING)
            except UnicodeDecodeError:
                log.warning("%s %s: a message that is not %s; rejected", name, peer,
                            messages.ENCODING)
                reply = reject_encoding(block.decode("latin-1"))
            else:
                reply = await answer(text)
            if reply is not None:
                writer.writeblock(reply.encode(messages.ENCODING))
                await writer.drain()
    except (ConnectionError, OSError) as e:  # ssl.SSLError is an OSError
        log.warning("%s %s: connection lost: %r", name, peer, e)
    except Exception:  # one bad connection must never stop the server
        log.exception("%s %s: unexpected error; connection closed", name, peer)
    finally:
        writer.close()
