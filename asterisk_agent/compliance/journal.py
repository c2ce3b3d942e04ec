"""What the agent keeps of each call, in the encrypted store.

A call is a row in `calls`; what was said both ways are rows in `turns`
(the caller's words as transcribed, the agent's as the caller heard them);
every screening of a caller turn is a row in `screen_results`; the start and
the end of the call are audit records; the call's recording, once Asterisk
has finished it, a row in `recordings` (compliance/recordings.py).  Nothing
of this goes to the plain logs (compliance/redact.py keeps it out of them).

Writes happen on one thread of their own, in the order they were asked for:
a commit waits for the disk (synchronous = FULL), and the call's coroutine
must not.  A write that fails (a full disk) is logged with the call ID and
what was lost, never with the words, and the call goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from asterisk_agent.compliance import recordings
from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import Store

log = logging.getLogger("asterisk_agent.journal")

ACTOR = "agent"


class CallJournal:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store, self.clock = store, clock
        self.audit = AuditLog(store, clock)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._pending: set[asyncio.Future] = set()

    # --- the agent's own configuration ----------------------------------------------
    def config_files(self, files: dict[str, Path]) -> list[str]:
        """At start-up: a `config.change` audit record when any of these files
        (config, practice file, protocols) differs from when the agent last
        started, naming which; the names of the changed ones.  Blocking."""
        now = {name: hashlib.sha256(path.read_bytes()).hexdigest()
               for name, path in sorted(files.items())}
        with self.store.transaction() as db:
            row = db.execute("SELECT detail FROM audit WHERE event = 'config.change' "
                             "ORDER BY seq DESC LIMIT 1").fetchone()
            before = json.loads(row[0]).get("files", {}) if row and row[0] else {}
            changed = sorted(n for n in now.keys() | before.keys()
                             if now.get(n) != before.get(n))
            if changed:
                self.audit.write(db, "config.change", ACTOR,
                                 detail={"files": now, "changed": changed})
        return changed

    # --- what a call reports ------------------------------------------------------
    def call_started(self, call_id: str, caller: str, language: str = "") -> None:
        at = self.clock()

        def write(db) -> None:
            db.execute("INSERT OR IGNORE INTO calls (id, started, caller, language) "
                       "VALUES (?, ?, ?, ?)", (call_id, at, caller, language))
            self.audit.write(db, "call.start", ACTOR, call_id=call_id)
        self._submit(write, call_id, "the call's start")

    def language(self, call_id: str, language: str) -> None:
        self._submit(lambda db: db.execute("UPDATE calls SET language = ? WHERE id = ?",
                                           (language, call_id)), call_id, "the call's language")

    def turn(self, call_id: str, speaker: str, text: str, interrupted: bool = False) -> None:
        at = self.clock()
        # an agent turn cut short by the caller is kept as far as it was heard
        text = f"{text} [interrupted]" if interrupted else text
        self._submit(lambda db: db.execute(
            "INSERT INTO turns (call_id, at, speaker, transcript) VALUES (?, ?, ?, ?)",
            (call_id, at, speaker, text)), call_id, f"a {speaker} turn")

    def screened(self, call_id: str, specialty: str, finding: Any) -> None:
        """One caller turn through the urgent-symptom screen (a dialog.screen.Finding)."""
        at = self.clock()
        result = json.dumps({"flag": finding.flag, "action": finding.action,
                             "name": finding.name, "matched": finding.matched},
                            sort_keys=True)
        self._submit(lambda db: db.execute(
            "INSERT INTO screen_results (call_id, at, specialty, urgent, result) "
            "VALUES (?, ?, ?, ?, ?)", (call_id, at, specialty, int(finding.urgent), result)),
            call_id, "a screen result")

    def call_ended(self, call_id: str, outcome: str) -> None:
        at = self.clock()

        def write(db) -> None:
            db.execute("UPDATE calls SET ended = ?, outcome = ? WHERE id = ?",
                       (at, outcome, call_id))
            self.audit.write(db, "call.end", ACTOR, call_id=call_id,
                             detail={"outcome": outcome})
        self._submit(write, call_id, "the call's end")

    async def take_recordings(self, directory: Path, live: Collection[str] = ()
                              ) -> recordings.Sweep:
        """Move the finished recordings in `directory` into the store (recordings.sweep)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, lambda: recordings.sweep(self.store, directory, live, audit=self.audit))

    # --- the writer -----------------------------------------------------------------
    def _submit(self, write: Callable, call_id: str, what: str) -> None:
        def run() -> None:
            try:
                with self.store.transaction() as db:
                    write(db)
            except Exception as exc:  # the call goes on; what was lost is said
                # (SQLite's messages name the failure, never the values bound)
                log.error("call %s: %s not written to the store: %s", call_id, what, exc)
        future = asyncio.wrap_future(self._writer.submit(run))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until everything asked for so far is on disk."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def stop(self) -> None:
        """Write what is asked for and end the writer; the store stays open."""
        await self.flush()
        self._writer.shutdown(wait=True)

    async def close(self) -> None:
        await self.stop()
        self.store.close()


__all__ = ["CallJournal"]
