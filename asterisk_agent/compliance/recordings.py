"""Call recordings into the encrypted store, and out of it for compliance.

Asterisk's MixMonitor leaves a plaintext WAV file when a call ends.
import_recording() reads it, stores its bytes in the store's recordings table
(with a `recording.import` audit record in the same transaction), reads them
back to check their SHA-256, and only then removes the plaintext file.  A crash
before the removal leaves the file where it was: the next import of it finds
the same bytes stored for the same call and only removes the file, so an import
may run any number of times and a recording is never lost or stored twice.

sweep() imports every finished recording in a directory: files whose name is
the call ID (CALLID.wav), skipping calls still live and files modified in the
last few seconds (MixMonitor may still be writing them).  A file that is not a
readable WAV stays in place and is reported.

A recording's `created` time is the file's modification time (the end of the
call), which is what retention counts from.  The whole recording is held in
memory while it is imported (a one-hour 8 kHz recording is about 58 MB); the
store keeps it in one row.  Everything here blocks: the agent calls it from a
worker thread.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import wave
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import DatabaseError, Store, StoreError, fsync_dir
from asterisk_agent.compliance.users import AuthError, User, require

# what MixMonitor writes as WAV (wav16 is its 16 kHz variant)
FORMATS = ("wav", "wav16")
# a recording this large is refused (left in place) rather than held in memory
MAX_BYTES = 1 << 30
# a file modified less than this many seconds ago may still be being written
SETTLE_SECONDS = 5.0


class RecordingError(Exception):
    """A recording that cannot be imported or exported; nothing was lost."""


@dataclass(frozen=True)
class Imported:
    call_id: str
    recording_id: int
    sha256: str
    bytes: int
    seconds: float
    already: bool               # stored by an earlier import that did not finish


def _wav_seconds(data: bytes, path: Path) -> float:
    """The length of a WAV file, which must be readable as one."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, frames = w.getframerate(), w.getnframes()
    except (wave.Error, EOFError) as exc:
        raise RecordingError(f"{path} is not a readable WAV file ({exc}): it is left in "
                             "place") from None
    return frames / rate if rate else 0.0


def import_recording(store: Store, call_id: str, wav_path: Path | str,
                     audit: AuditLog | None = None, actor: str = "agent") -> Imported:
    """Move one recording into the store (see the module docstring)."""
    path = Path(wav_path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise RecordingError(f"{path}: not a recording ({', '.join(FORMATS)} files are)")
    if not call_id:
        raise RecordingError(f"{path}: no call ID to store it under")
    try:
        st = path.stat()
        if st.st_size > MAX_BYTES:
            raise RecordingError(f"{path} is {st.st_size} bytes, more than {MAX_BYTES}: left "
                                 "in place")
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    seconds = _wav_seconds(data, path)
    digest = hashlib.sha256(data).hexdigest()
    audit = audit or AuditLog(store)
    try:
        with store.transaction() as db:
            # same call, same bytes: an earlier import stored it and stopped before
            # removing the file (only rows of the same size need hashing)
            recording_id = next((rid for rid, audio in db.execute(
                "SELECT id, audio FROM recordings WHERE call_id = ? AND length(audio) = ?",
                (call_id, len(data))) if hashlib.sha256(audio).hexdigest() == digest), None)
            already = recording_id is not None
            if not already:
                # the agent may not have stored the call (yet): the recording says when
                db.execute("INSERT OR IGNORE INTO calls (id, started, ended) VALUES (?, ?, ?)",
                           (call_id, st.st_mtime - seconds, st.st_mtime))
                recording_id = db.execute(
                    "INSERT INTO recordings (call_id, created, format, audio) VALUES (?, ?, ?, ?)",
                    (call_id, st.st_mtime, fmt, data)).lastrowid
                audit.write(db, "recording.import", actor, call_id=call_id, detail={
                    "recording": recording_id, "bytes": len(data), "sha256": digest,
                    "seconds": round(seconds, 3)})
        stored = store.query("SELECT audio FROM recordings WHERE id = ?", (recording_id,))
    except DatabaseError as exc:
        raise RecordingError(f"{path}: the store refused it ({exc}): it is left in place") \
            from None
    if not stored or hashlib.sha256(stored[0][0]).hexdigest() != digest:
        raise RecordingError(f"{path}: what the store holds is not what was read: the file "
                             "is left in place")
    try:
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        pass  # removed by a sweep beside this one: the store has it
    except OSError as exc:
        raise RecordingError(f"{path} is stored, but cannot be removed ({exc.strerror}): "
                             "the next sweep removes it") from None
    return Imported(call_id, recording_id, digest, len(data), seconds, already)


@dataclass
class Sweep:
    imported: list[Imported] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # live, or still written
    failed: list[tuple[Path, str]] = field(default_factory=list)    # left in place, and why


def sweep(store: Store, directory: Path | str, live: Collection[str] = (),
          settle: float = SETTLE_SECONDS, audit: AuditLog | None = None,
          clock: Callable[[], float] = time.time) -> Sweep:
    """Import every finished recording CALLID.wav in `directory`."""
    result, now = Sweep(), clock()
    audit = audit or AuditLog(store)
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(".") or path.suffix.lower().lstrip(".") not in FORMATS:
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if path.is_symlink() or not path.is_file():
            result.failed.append((path, "not a plain file"))
        elif path.stem in live:
            result.skipped.append((path, "the call is live"))
        elif st.st_mtime > now - settle:
            result.skipped.append((path, f"modified in the last {settle:g} s"))
        else:
            try:
                result.imported.append(import_recording(store, path.stem, path, audit))
            except (RecordingError, StoreError) as exc:
                result.failed.append((path, str(exc)))
    return result


def export_recording(store: Store, call_id: str, out_path: Path | str, user: User,
                     audit: AuditLog | None = None) -> list[Path]:
    """Write a call's recordings as files (the compliance role; audited).

    One recording goes to out_path; several to out_path with -2, -3... before
    its suffix.  An existing file is never overwritten.
    """
    audit, out = audit or AuditLog(store), Path(out_path)
    try:
        require(user, "transcripts.read")
    except AuthError:
        audit.append("access.denied", user.name, call_id=call_id,
                     detail={"needs": "transcripts.read", "role": user.role})
        raise
    rows = store.query("SELECT id, audio FROM recordings WHERE call_id = ? ORDER BY id",
                       (call_id,))
    if not rows:
        raise RecordingError(f"the store holds no recording of call {call_id}")
    paths = [out if n == 1 else out.with_name(f"{out.stem}-{n}{out.suffix}")
             for n in range(1, len(rows) + 1)]
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise RecordingError(f"{', '.join(taken)} exists already: nothing was written")
    # audited first: a copy the trail does not know of never exists
    audit.append("recording.export", user.name, call_id=call_id, detail={
        "recordings": [rid for rid, _ in rows], "out": [str(p) for p in paths],
        "sha256": [hashlib.sha256(audio).hexdigest() for _, audio in rows]})
    for p, (_, audio) in zip(paths, rows):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(audio)
                f.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
    return paths


__all__ = ["import_recording", "export_recording", "sweep", "Imported", "Sweep",
           "RecordingError", "FORMATS", "SETTLE_SECONDS"]
