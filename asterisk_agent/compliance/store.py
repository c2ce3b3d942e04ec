"""The encrypted store: one SQLCipher file for calls, transcripts, screen results,
the EHR outbox, the audit trail, users, login failures and recordings.

The key is 32 random bytes written as 64 hex digits in a key file (`asterisk-agent
keys init`), never on a command line or in an environment.  SQLCipher gets it as
a raw key (x'...'): it is random already, so no password KDF has to run.

open_store() refuses with a StoreError, and touches nothing, when the key file
is missing, readable by group or others, owned by another user, or holds the
wrong key.  The schema is versioned (PRAGMA user_version): MIGRATIONS is an
ordered list of steps, each applied in one transaction; a store written by a
newer version is refused.

rotate_key() re-keys in place and survives a crash at any step: the data is
exported under the new key into a new file beside the store, then a marker
file says "committed" and the new file and new key file are renamed over the
old ones.  Every open first finishes a committed rotation or rolls back an
uncommitted one, so the store always opens with exactly one key, the one in the
key file.  Nothing is ever written unencrypted (temp_store is memory).

SQLite calls block: the agent calls the store from worker threads.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlcipher

KEY_BYTES = 32

DatabaseError = sqlcipher.DatabaseError


class StoreError(Exception):
    """The store cannot be opened or changed; the message says why and what to do."""


# --- schema ----------------------------------------------------------------------
# Each step is a list of statements applied in one transaction; a step, once
# released, never changes: a new need is a new step at the end.
MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls, turns, screen results, EHR outbox, audit trail, users, recordings", (
        """CREATE TABLE calls (
            id          TEXT PRIMARY KEY,       -- the caller's channel ID
            started     REAL NOT NULL,
            ended       REAL,
            caller      TEXT NOT NULL DEFAULT '',  -- caller ID number (PHI)
            language    TEXT NOT NULL DEFAULT '',
            outcome     TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE turns (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id     TEXT NOT NULL REFERENCES calls (id),
            at          REAL NOT NULL,
            speaker     TEXT NOT NULL CHECK (speaker IN ('caller', 'agent')),
            transcript  TEXT NOT NULL
        )""",
        "CREATE INDEX turns_call ON turns (call_id, id)",
        """CREATE TABLE screen_results (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id     TEXT NOT NULL REFERENCES calls (id),
            at          REAL NOT NULL,
            specialty   TEXT NOT NULL,
            urgent      INTEGER NOT NULL,
            result      TEXT NOT NULL           -- JSON: what matched and why
        )""",
        "CREATE INDEX screen_results_call ON screen_results (call_id)",
        # the same columns as asterisk_agent/ehr/outbox.py, so it can move here
        """CREATE TABLE outbox (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            control_id  TEXT NOT NULL UNIQUE,
            patient_id  TEXT NOT NULL,
            kind        TEXT NOT NULL,
            message     TEXT NOT NULL,
            state       TEXT NOT NULL DEFAULT 'pending',
            attempts    INTEGER NOT NULL DEFAULT 0,
            error       TEXT NOT NULL DEFAULT '',
            created     REAL NOT NULL
        )""",
        "CREATE INDEX outbox_patient ON outbox (patient_id, id)",
        # audit.py chains these; seq has no gaps and `at` is ISO 8601 UTC
        """CREATE TABLE audit (
            seq         INTEGER PRIMARY KEY,
            at          TEXT NOT NULL,
            event       TEXT NOT NULL,
            actor       TEXT NOT NULL,
            call_id     TEXT,
            patient     TEXT,
            detail      TEXT,                   -- canonical JSON, or NULL
            prev        TEXT NOT NULL,
            hash        TEXT NOT NULL
        )""",
        "CREATE INDEX audit_at ON audit (at)",
        "CREATE INDEX audit_call ON audit (call_id) WHERE call_id IS NOT NULL",
        "CREATE INDEX audit_patient ON audit (patient) WHERE patient IS NOT NULL",
        # the chain's head and length, updated in the same transaction as each
        # append: deleting the last records cannot leave a chain that looks whole
        """CREATE TABLE audit_head (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            seq         INTEGER NOT NULL,
            hash        TEXT NOT NULL
        )""",
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')",
        # append-only from the application; an attacker with the key can drop
        # these, which is what the chain is for
        """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
        """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
           BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
        """CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
           BEGIN SELECT RAISE(ABORT, 'the audit chain head cannot be deleted'); END""",
        """CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
           WHEN NEW.seq <> OLD.seq + 1
           BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward'); END""",
        """CREATE TABLE users (
            name        TEXT PRIMARY KEY,
            role        TEXT NOT NULL CHECK (role IN ('admin', 'compliance', 'auditor')),
            password    TEXT NOT NULL,          -- argon2 hash
            created     REAL NOT NULL,
            changed     REAL NOT NULL
        )""",
        """CREATE TABLE login_failures (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            name        TEXT NOT NULL,
            at          REAL NOT NULL
        )""",
        "CREATE INDEX login_failures_name ON login_failures (name, at)",
        """CREATE TABLE recordings (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id     TEXT NOT NULL REFERENCES calls (id),
            created     REAL NOT NULL,
            format      TEXT NOT NULL,          -- 'wav' for example
            audio       BLOB NOT NULL
        )""",
        "CREATE INDEX recordings_call ON recordings (call_id)",
    )),
)

Migration = tuple[str, Sequence[str]]


# --- the key file ----------------------------------------------------------------
def _check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a secret file that others may read, or that another user owns."""
    if st.st_mode & 0o077:
        raise StoreError(f"{what} {path} is open to group or others (mode "
                         f"{st.st_mode & 0o777:04o}): run `chmod 600 {path}`")
    if st.st_uid not in (0, os.geteuid()):
        raise StoreError(f"{what} {path} belongs to uid {st.st_uid}, not to root or to this "
                         f"user (uid {os.geteuid()}): run `chown {os.geteuid()} {path}`")


def read_private(path: Path, what: str) -> str:
    """The text of a secret file, refused when group/other can read it or another
    user owns it (checked on the open file: no window between check and read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StoreError(f"no {what} {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(fd), what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(4096)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{what} {path} is not text") from None


def read_key_file(path: Path) -> bytes:
    path = Path(path)
    try:
        text = read_private(path, "key file")
    except StoreError as exc:
        if str(exc).startswith("no key file"):
            raise StoreError(f"{exc}: make one with `asterisk-agent keys init`, or set "
                             "[compliance] key_file to where it is") from None
        raise
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreError(f"key file {path} does not hold {2 * KEY_BYTES} hex digits "
                         "(make one with `asterisk-agent keys init`)")
    return key


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_private(path: Path, data: bytes) -> None:
    """A new file, mode 0600 from its creation, on disk when this returns.
    FileExistsError if the path is taken: nothing is ever written over."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_file(path: Path, key: bytes | None = None) -> bytes:
    """Write a new key file, mode 0600 from its creation; never overwrites one."""
    path = Path(path)
    key = secrets.token_bytes(KEY_BYTES) if key is None else key
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_new_private(path, key.hex().encode("ascii") + b"\n")
    except FileExistsError:
        raise StoreError(f"key file {path} exists already: it is not replaced (the store "
                         "would be lost); `asterisk-agent keys rotate` changes the key") from None
    fsync_dir(path.parent)
    return key


# --- the store --------------------------------------------------------------------
def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".rotating")


def _rekeyed_path(path: Path) -> Path:
    return path.with_name(path.name + ".rekeyed")


def _new_key_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".new")


def _connect(path: Path, key: bytes, create: bool = False) -> sqlcipher.Connection:
    """A keyed connection, the key checked before anything is written."""
    uri = path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    try:
        db = sqlcipher.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlcipher.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    try:
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        db.execute("PRAGMA cipher_log_level = NONE")  # the caller says it better
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher.DatabaseError as exc:
        db.close()
        raise StoreError(f"cannot open store {path}: wrong key, or not a store ({exc}); "
                         "nothing was changed") from None
    # temp tables and sorts stay in memory: SQLCipher's temp files would be
    # encrypted too, but nothing about them is worth a disk write
    db.execute("PRAGMA temp_store = MEMORY")
    return db


class _FileLock:
    """flock on <store>.lock: shared while the store is open, exclusive to re-key."""

    def __init__(self, path: Path):
        self.path = _lock_path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def take(self, exclusive: bool) -> bool:
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)  # releases the flock


class Store:
    """One open store: a keyed connection shared between threads behind a lock.

    transaction() is the way to write: BEGIN IMMEDIATE, so two processes
    appending to the audit trail take turns instead of failing half-way.
    """

    def __init__(self, path: Path, db: sqlcipher.Connection, lock: _FileLock):
        self.path, self.db, self._file_lock = path, db, lock
        self.lock = threading.RLock()

    @property
    def schema_version(self) -> int:
        with self.lock:
            return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlcipher.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            if self._file_lock is None:  # closed already
                return
            self.db.close()
            self._file_lock.close()
            self._file_lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def migrate(db: sqlcipher.Connection, path: Path,
            migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the steps the store lacks, each in one transaction; its new version."""
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise StoreError(
                    f"store {path} has schema version {version}, newer than this "
                    f"asterisk-agent knows ({len(migrations)}): upgrade asterisk-agent")
            if version == len(migrations):
                db.execute("COMMIT")
                return version
            description, statements = migrations[version]
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException as exc:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlcipher.Error):
                raise StoreError(f"store {path}: schema step {version + 1} ({description}) "
                                 f"failed and was rolled back: {exc}") from None
            raise
        db.execute("COMMIT")


def open_store(path: Path | str, key_file: Path | str, create: bool = True,
               migrations: Sequence[Migration] = MIGRATIONS) -> Store:
    """Open (or create) the store; any problem is a StoreError that changed nothing."""
    path, key_file = Path(path), Path(key_file)
    key = read_key_file(key_file)
    if not _marker_path(path).exists():
        if path.exists():
            # the key is checked before the lock file is made: a wrong key or a
            # file that is not a store leaves the directory as it was
            _connect(path, key).close()
        elif not create:
            raise StoreError(f"no store {path}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
    lock = _FileLock(path)
    try:
        if _marker_path(path).exists():
            # an interrupted rotation: finish or undo it before reading anything
            if not lock.take(exclusive=True):
                raise StoreError(f"store {path} is being re-keyed by another process: "
                                 "try again when `keys rotate` has ended")
            recover_rotation(path)
            key = read_key_file(key_file)
        if not lock.take(exclusive=False):
            raise StoreError(f"store {path} is being re-keyed by another process: "
                             "try again when `keys rotate` has ended")
        db = _connect(path, key, create=not path.exists())
    except BaseException:
        lock.close()
        raise
    try:
        db.execute("PRAGMA journal_mode = WAL")
        # a commit is on disk before it returns: an audit record is never lost
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 5000")
        migrate(db, path, migrations)
    except BaseException as exc:
        db.close()
        lock.close()
        if isinstance(exc, sqlcipher.Error):
            raise StoreError(f"cannot open store {path}: {exc}") from None
        raise
    return Store(path, db, lock)


# --- key rotation ------------------------------------------------------------------
# The steps of rotate_key(), in order; a hook is called after each (tests crash there).
ROTATION_STEPS = ("prepared", "new key written", "exported", "verified", "committed",
                  "store replaced", "key replaced", "done")


def _write_marker(path: Path, state: str, key_file: Path) -> None:
    """The rotation marker, replaced atomically (never seen half-written)."""
    marker = _marker_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"state": state, "key_file": str(key_file.resolve())}))
    _fsync_file(tmp)
    os.replace(tmp, marker)
    fsync_dir(marker.parent)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _finish(path: Path, key_file: Path) -> None:
    """Roll a committed rotation forward; every step may already have been done."""
    rekeyed, new_key = _rekeyed_path(path), _new_key_path(key_file)
    if rekeyed.exists():
        # the old file's WAL must not be applied to the new one; the export read
        # through it, so nothing in it is lost
        for suffix in ("-wal", "-shm"):
            _unlink(path.with_name(path.name + suffix))
        os.replace(rekeyed, path)
        fsync_dir(path.parent)
    if new_key.exists():
        os.replace(new_key, key_file)
        fsync_dir(key_file.parent)
    _unlink(_marker_path(path))
    fsync_dir(path.parent)


def _undo(path: Path, key_file: Path) -> None:
    """Roll an uncommitted rotation back: the old file and old key never changed."""
    for p in (_rekeyed_path(path), path.with_name(_rekeyed_path(path).name + "-journal"),
              _new_key_path(key_file)):
        _unlink(p)
    _unlink(_marker_path(path))
    fsync_dir(path.parent)


def recover_rotation(path: Path) -> str | None:
    """Finish or undo an interrupted rotation (hold the exclusive lock).

    Returns "finished", "rolled back" or None when there was none.
    """
    marker = _marker_path(path)
    _unlink(marker.with_name(marker.name + ".tmp"))
    try:
        state = json.loads(marker.read_text())
        key_file = Path(state["key_file"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"rotation marker {marker} cannot be read ({exc}): the store and "
                         "its key are untouched if the marker is removed by hand") from None
    if state.get("state") == "committed":
        _finish(path, key_file)
        return "finished"
    _undo(path, key_file)
    return "rolled back"


def rotate_key(path: Path | str, key_file: Path | str,
               hook: Callable[[str], None] | None = None) -> None:
    """Re-key the store in place under a new random key (see the module docstring).

    Needs the store closed everywhere else (stop the agent); `hook(step)` runs
    after each step of ROTATION_STEPS.
    """
    path, key_file = Path(path), Path(key_file)
    hook = hook or (lambda step: None)
    old_key = read_key_file(key_file)
    if not path.exists() and not _marker_path(path).exists():
        raise StoreError(f"no store {path}")
    lock = _FileLock(path)
    try:
        if not lock.take(exclusive=True):
            raise StoreError(f"store {path} is open in another process: stop the agent "
                             "(and other asterisk-agent commands) before `keys rotate`")
        if recover_rotation(path):
            old_key = read_key_file(key_file)
        db = _connect(path, old_key)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _write_marker(path, "prepared", key_file)
            hook("prepared")
            new_key = write_key_file(_new_key_path(key_file))
            hook("new key written")
            rekeyed = _rekeyed_path(path)
            db.execute("ATTACH DATABASE ? AS rekeyed KEY ?", (str(rekeyed), f"x'{new_key.hex()}'"))
            db.execute("SELECT sqlcipher_export('rekeyed')")
            # sqlcipher_export copies tables, not the header's schema version
            db.execute(f"PRAGMA rekeyed.user_version = {version}")
            db.execute("DETACH DATABASE rekeyed")
        finally:
            db.close()
        _fsync_file(rekeyed)
        hook("exported")
        check = _connect(rekeyed, new_key)
        try:
            ok = check.execute("PRAGMA quick_check").fetchone()[0]
            copied = check.execute("PRAGMA user_version").fetchone()[0]
        finally:
            check.close()
        if ok != "ok" or copied != version:
            raise StoreError(f"re-keyed copy of {path} failed its check ({ok}); the "
                             "rotation is undone when the store is next opened")
        hook("verified")
        _write_marker(path, "committed", key_file)
        hook("committed")
        # _finish, step by step so that a crash can be tested between the renames
        for suffix in ("-wal", "-shm"):
            _unlink(path.with_name(path.name + suffix))
        os.replace(rekeyed, path)
        fsync_dir(path.parent)
        hook("store replaced")
        os.replace(_new_key_path(key_file), key_file)
        fsync_dir(key_file.parent)
        hook("key replaced")
        _unlink(_marker_path(path))
        fsync_dir(path.parent)
        hook("done")
    finally:
        lock.close()


__all__ = ["Store", "StoreError", "open_store", "rotate_key", "recover_rotation",
           "read_key_file", "write_key_file", "read_private", "migrate", "MIGRATIONS",
           "ROTATION_STEPS", "KEY_BYTES"]
