"""The encrypted store: its key file, refusals that touch nothing, schema steps, and
a key rotation that survives a crash at every step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from asterisk_agent.compliance import store as st
from asterisk_agent.compliance.store import StoreError, open_store

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Ana Rivera born 1984-03-12 says her knee hurts"


@pytest.fixture
def paths(tmp_path):
    key_dir, data = tmp_path / "etc", tmp_path / "state"
    key_dir.mkdir()
    return data / "store.db", key_dir / "store.key"


def snapshot(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs if d.exists() for p in sorted(d.rglob("*"))
            if p.is_file()}


def make_store(path: Path, key_file: Path) -> None:
    st.write_key_file(key_file)
    with open_store(path, key_file) as store, store.transaction() as db:
        db.execute("INSERT INTO calls (id, started, caller) VALUES ('c1', 1.0, '555-0101')")
        db.execute("INSERT INTO turns (call_id, at, speaker, transcript) "
                   "VALUES ('c1', 1.0, 'caller', ?)", (SECRET,))


def readable_with(path: Path, key: bytes) -> bool:
    db = sqlcipher.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        db.execute("PRAGMA cipher_log_level = NONE")
        return db.execute("SELECT transcript FROM turns").fetchone() == (SECRET,)
    except sqlcipher.DatabaseError:
        return False
    finally:
        db.close()


def assert_no_plaintext(*dirs: Path) -> None:
    for name, data in snapshot(*dirs).items():
        assert b"knee hurts" not in data and b"555-0101" not in data, f"plaintext in {name}"


# --- the key file ---------------------------------------------------------------
def test_a_new_key_file_is_private_random_and_never_overwritten(paths):
    _, key_file = paths
    key = st.write_key_file(key_file)
    assert len(key) == 32 and key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text() == key.hex() + "\n"
    assert st.read_key_file(key_file) == key
    with pytest.raises(StoreError, match="exists already"):
        st.write_key_file(key_file)
    assert st.read_key_file(key_file) == key


def test_a_missing_key_file_is_refused_and_creates_nothing(paths):
    path, key_file = paths
    with pytest.raises(StoreError) as err:
        open_store(path, key_file)
    assert str(key_file) in str(err.value) and "keys init" in str(err.value)
    assert not path.parent.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_others_may_read_is_refused_with_the_fix(paths, mode):
    path, key_file = paths
    st.write_key_file(key_file)
    key_file.chmod(mode)
    with pytest.raises(StoreError) as err:
        open_store(path, key_file)
    assert str(key_file) in str(err.value) and f"chmod 600 {key_file}" in str(err.value)
    assert not path.parent.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_key_file_of_another_user_is_refused(paths):
    path, key_file = paths
    st.write_key_file(key_file)
    os.chown(key_file, 65534, 65534)
    with pytest.raises(StoreError, match=r"belongs to uid 65534.*chown"):
        open_store(path, key_file)


def test_a_key_file_that_is_not_a_key_is_refused(paths):
    path, key_file = paths
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"correct horse battery staple\n")
    os.close(fd)
    with pytest.raises(StoreError, match="64 hex digits"):
        open_store(path, key_file)


# --- opening ----------------------------------------------------------------------
def test_the_store_is_encrypted_and_has_every_table(paths):
    path, key_file = paths
    make_store(path, key_file)
    with open_store(path, key_file) as store:
        assert store.schema_version == len(st.MIGRATIONS)
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"calls", "turns", "screen_results", "outbox", "audit", "audit_head", "users",
                "login_failures", "recordings"} <= tables
        assert store.query("SELECT transcript FROM turns") == [(SECRET,)]
    assert_no_plaintext(path.parent, key_file.parent)
    with pytest.raises(Exception, match="not a database"):
        import sqlite3
        sqlite3.connect(path).execute("SELECT * FROM turns")


def test_the_outbox_table_has_the_ehr_outbox_columns(paths):
    import sqlite3

    from asterisk_agent.ehr import outbox

    path, key_file = paths
    make_store(path, key_file)
    plain = sqlite3.connect(":memory:")
    plain.executescript(outbox._SCHEMA)
    want = plain.execute("PRAGMA table_info(outbox)").fetchall()
    with open_store(path, key_file) as store:
        assert store.query("PRAGMA table_info(outbox)") == want


def test_a_wrong_key_is_refused_and_touches_nothing(paths, tmp_path):
    path, key_file = paths
    make_store(path, key_file)
    other = tmp_path / "etc" / "other.key"
    st.write_key_file(other)
    before = snapshot(path.parent)
    with pytest.raises(StoreError, match="wrong key") as err:
        open_store(path, other)
    assert str(path) in str(err.value)
    assert snapshot(path.parent) == before


def test_a_corrupt_file_is_refused_and_kept(paths):
    path, key_file = paths
    st.write_key_file(key_file)
    path.parent.mkdir()
    path.write_bytes(os.urandom(8192))
    before = snapshot(path.parent)
    with pytest.raises(StoreError, match="not a store"):
        open_store(path, key_file)
    assert snapshot(path.parent) == before


def test_no_store_is_made_when_asked_not_to(paths):
    path, key_file = paths
    st.write_key_file(key_file)
    with pytest.raises(StoreError, match="no store"):
        open_store(path, key_file, create=False)
    assert not path.exists()


# --- schema steps -------------------------------------------------------------------
def test_a_failing_schema_step_is_rolled_back_whole(paths):
    path, key_file = paths
    make_store(path, key_file)
    broken = st.MIGRATIONS + (("half a step", ("CREATE TABLE extra (x)", "NOT SQL AT ALL")),)
    with pytest.raises(StoreError, match=r"schema step 2 \(half a step\) failed and was rolled back"):
        open_store(path, key_file, migrations=broken)
    with open_store(path, key_file) as store:
        assert store.schema_version == 1
        assert not store.query("SELECT name FROM sqlite_master WHERE name = 'extra'")
    good = st.MIGRATIONS + (("a new table", ("CREATE TABLE extra (x)",)),)
    with open_store(path, key_file, migrations=good) as store:
        assert store.schema_version == 2
        assert store.query("SELECT transcript FROM turns") == [(SECRET,)]


def test_a_store_newer_than_the_code_is_refused(paths):
    path, key_file = paths
    make_store(path, key_file)
    with open_store(path, key_file) as store:
        store.db.execute("PRAGMA user_version = 7")
    with pytest.raises(StoreError, match="schema version 7, newer .* upgrade asterisk-agent"):
        open_store(path, key_file)


# --- key rotation ---------------------------------------------------------------
class Crash(Exception):
    pass


def test_rotation_changes_the_key_and_keeps_the_data(paths):
    path, key_file = paths
    make_store(path, key_file)
    old = st.read_key_file(key_file)
    st.rotate_key(path, key_file)
    new = st.read_key_file(key_file)
    assert new != old and readable_with(path, new) and not readable_with(path, old)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.db", "store.db.lock"]
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["store.key"]
    with open_store(path, key_file) as store:
        assert store.schema_version == len(st.MIGRATIONS)


def test_rotation_waits_for_the_store_to_be_closed(paths):
    path, key_file = paths
    make_store(path, key_file)
    old = st.read_key_file(key_file)
    with open_store(path, key_file):
        with pytest.raises(StoreError, match="open in another process: stop the agent"):
            st.rotate_key(path, key_file)
    assert st.read_key_file(key_file) == old and readable_with(path, old)


def _after_crash(path: Path, key_file: Path, old: bytes, new: bytes | None, step: str) -> None:
    """The store opens with the key file's key, which is exactly one of the two."""
    with open_store(path, key_file) as store:
        assert store.query("SELECT transcript FROM turns") == [(SECRET,)]
    current = st.read_key_file(key_file)
    committed = st.ROTATION_STEPS.index(step) >= st.ROTATION_STEPS.index("committed")
    assert current == (new if committed else old), step
    other = old if committed else new
    assert readable_with(path, current)
    if other is not None:
        assert not readable_with(path, other)
    leftovers = {p.name for p in path.parent.iterdir()} | {p.name for p in key_file.parent.iterdir()}
    assert not {n for n in leftovers if n.endswith((".rotating", ".rekeyed", ".new", ".tmp"))}
    assert_no_plaintext(path.parent, key_file.parent)


@pytest.mark.parametrize("step", st.ROTATION_STEPS)
def test_a_crash_at_any_step_of_rotation_finishes_or_undoes_it(paths, step):
    path, key_file = paths
    make_store(path, key_file)
    old = st.read_key_file(key_file)
    seen: dict[str, bytes] = {}

    def crash(at: str) -> None:
        new_key = key_file.with_name(key_file.name + ".new")
        if new_key.exists() and "new" not in seen:
            seen["new"] = bytes.fromhex(new_key.read_text())
        if at == step:
            assert_no_plaintext(path.parent, key_file.parent)
            raise Crash(at)

    with pytest.raises(Crash):
        st.rotate_key(path, key_file, hook=crash)
    _after_crash(path, key_file, old, seen.get("new"), step)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from asterisk_agent.compliance import store
    step = sys.argv[3]
    def kill(at):
        if at == step:
            new_key = Path(sys.argv[2] + ".new")
            if new_key.exists():
                print(new_key.read_text().strip(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    store.rotate_key(Path(sys.argv[1]), Path(sys.argv[2]), hook=kill)
""")


@pytest.mark.parametrize("step", ["prepared", "new key written", "exported", "committed",
                                  "store replaced"])
def test_a_killed_rotation_finishes_or_undoes_itself_on_the_next_open(paths, step):
    path, key_file = paths
    make_store(path, key_file)
    old = st.read_key_file(key_file)
    run = subprocess.run([sys.executable, "-c", KILLER, str(path), str(key_file), step],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr
    new = bytes.fromhex(run.stdout.strip()) if run.stdout.strip() else None
    assert (path.with_name("store.db.rotating")).exists()
    _after_crash(path, key_file, old, new, step)
