"""Retention: transcripts and recordings older than [compliance] retention_days
leave the store; the audit trail never does.

A purge is one transaction: the turns (each with its transcript) and the
recordings older than the cut-off are deleted, and a `purge` audit record with
the cut-off, the counts and the call IDs (never any content) is written with
them, so a purge is either recorded and done or neither.  A dry run counts the
same rows and changes nothing.

Calls, screen results and the EHR outbox stay: they are the practice's record
of what happened, not what was said.  Deleted pages are overwritten
(secure_delete) and the WAL is truncated afterwards, so the purged text is gone
from the file even for someone who holds the key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from asterisk_agent.compliance.audit import AuditLog, timestamp
from asterisk_agent.compliance.store import Store

DAY = 86400.0


@dataclass(frozen=True)
class Purge:
    """What a purge removed, or (dry run) would remove."""

    cutoff: float               # seconds since the epoch: older than this goes
    turns: int
    recordings: int
    calls: tuple[str, ...]      # the calls that lose transcripts or recordings
    dry_run: bool

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (f"{verb} {self.turns} transcript turns and {self.recordings} recordings of "
                f"{len(self.calls)} calls older than {timestamp(self.cutoff)}")


def cutoff(retention_days: int, now: float) -> float:
    if retention_days < 1:
        raise ValueError(f"retention_days = {retention_days}: it must be at least 1 "
                         "(a purge would remove every transcript and recording)")
    return now - retention_days * DAY


def _count(db, before: float) -> tuple[int, int, tuple[str, ...]]:
    turns = db.execute("SELECT count(*) FROM turns WHERE at < ?", (before,)).fetchone()[0]
    recordings = db.execute("SELECT count(*) FROM recordings WHERE created < ?",
                            (before,)).fetchone()[0]
    calls = tuple(r[0] for r in db.execute(
        "SELECT call_id FROM turns WHERE at < ? UNION "
        "SELECT call_id FROM recordings WHERE created < ? ORDER BY 1", (before, before)))
    return turns, recordings, calls


def purge(store: Store, audit: AuditLog, retention_days: int, actor: str,
          dry_run: bool = False, now: float | None = None) -> Purge:
    """Remove (or with dry_run, only count) what is older than retention_days."""
    before = cutoff(retention_days, time.time() if now is None else now)
    if dry_run:
        with store.lock:
            store.db.execute("BEGIN")  # one snapshot for the three counts
            try:
                return Purge(before, *_count(store.db, before), dry_run=True)
            finally:
                store.db.execute("COMMIT")
    with store.lock:
        secure = store.db.execute("PRAGMA secure_delete").fetchone()[0]
        store.db.execute("PRAGMA secure_delete = ON")
        try:
            with store.transaction() as db:
                turns, recordings, calls = _count(db, before)
                db.execute("DELETE FROM turns WHERE at < ?", (before,))
                db.execute("DELETE FROM recordings WHERE created < ?", (before,))
                audit.write(db, "purge", actor, detail={
                    "cutoff": timestamp(before), "retention_days": retention_days,
                    "turns": turns, "recordings": recordings, "calls": list(calls)})
        finally:
            store.db.execute(f"PRAGMA secure_delete = {int(secure)}")
        # the deleted pages' old images live on in the WAL until a checkpoint
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Purge(before, turns, recordings, calls, dry_run=False)


__all__ = ["purge", "cutoff", "Purge"]
