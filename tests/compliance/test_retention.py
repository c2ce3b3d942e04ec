"""Retention: transcripts and recordings older than retention_days leave the store in
one audited transaction; the audit trail stays whole; a dry run changes nothing."""

from __future__ import annotations

import argparse
import time

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from asterisk_agent import config
from asterisk_agent.compliance import cli, retention
from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import open_store, read_key_file, write_key_file
from asterisk_agent.compliance.users import LoginPolicy, Users

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY = 86400.0
SECRET = "my chest hurts since Tuesday"


def add_call(store, audit, call_id: str, at: float) -> None:
    audit.append("call.start", "agent", call_id=call_id, detail={"note": "no content here"})
    with store.transaction() as db:
        db.execute("INSERT INTO calls (id, started) VALUES (?, ?)", (call_id, at))
        db.execute("INSERT INTO turns (call_id, at, speaker, transcript) VALUES (?, ?, ?, ?)",
                   (call_id, at + 5, "caller", f"{SECRET} ({call_id})"))
        db.execute("INSERT INTO recordings (call_id, created, format, audio) VALUES (?, ?, ?, ?)",
                   (call_id, at + 60, "wav", b"RIFF" + call_id.encode() * 1000))


@pytest.fixture
def site(tmp_path):
    """Calls 400, 100 and 1 days old."""
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    path = tmp_path / "store.db"
    store = open_store(path, key_file)
    audit = AuditLog(store)
    for call_id, age in (("old", 400), ("middle", 100), ("new", 1)):
        add_call(store, audit, call_id, NOW - age * DAY)
    yield store, audit, tmp_path
    store.close()


def counts(store) -> tuple[int, int, int]:
    return tuple(store.query(f"SELECT count(*) FROM {t}")[0][0]
                 for t in ("calls", "turns", "recordings"))


def test_a_dry_run_counts_and_changes_nothing(site):
    store, audit, _ = site
    head = audit.head()
    plan = retention.purge(store, audit, 365, "carol", dry_run=True, now=NOW)
    assert (plan.turns, plan.recordings, plan.calls) == (1, 1, ("old",))
    assert plan.summary().startswith("would remove 1 transcript turns and 1 recordings of 1 calls")
    assert counts(store) == (3, 3, 3) and audit.head() == head


def test_a_purge_removes_old_transcripts_and_recordings_and_keeps_the_audit_trail(site):
    store, audit, tmp = site
    records = audit.head()[0]
    done = retention.purge(store, audit, 90, "carol", now=NOW)
    assert (done.turns, done.recordings, done.calls) == (2, 2, ("middle", "old"))
    assert counts(store) == (3, 1, 1)  # the calls themselves stay
    assert store.query("SELECT call_id FROM turns") == [("new",)]
    assert store.query("SELECT call_id FROM recordings") == [("new",)]
    record = audit.records(last=1)[0]
    assert record.event == "purge" and record.actor == "carol" and record.seq == records + 1
    assert record.detail == {"cutoff": "2025-10-03T00:00:00.000000Z", "retention_days": 90,
                             "turns": 2, "recordings": 2, "calls": ["middle", "old"]}
    assert len(audit.records(call_id="old")) == 1  # audit records are never purged
    assert audit.verify() is None
    again = retention.purge(store, audit, 90, "carol", now=NOW)
    assert (again.turns, again.recordings, again.calls) == (0, 0, ())


def decrypted_pages(path, key: bytes, size: int = 4096, reserve: int = 80) -> bytes:
    """Every page of a SQLCipher 4 file decrypted, free pages included: its default
    layout is AES-256-CBC under the raw key, the page's IV in its reserved tail, and
    the file's salt in the first 16 bytes of page 1."""
    data, out = path.read_bytes(), []
    for n in range(len(data) // size):
        page = data[n * size:(n + 1) * size]
        iv = page[size - reserve:size - reserve + 16]
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out.append(decryptor.update(page[16 if n == 0 else 0:size - reserve]) + decryptor.finalize())
    return b"".join(out)


def test_the_purged_content_is_gone_from_the_database_file(site):
    store, audit, tmp = site
    key = read_key_file(tmp / "store.key")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = decrypted_pages(tmp / "store.db", key)
    assert f"{SECRET} (old)".encode() in before  # the scan sees what the store holds
    store.db.execute("PRAGMA secure_delete = OFF")  # the purge must not rely on the default
    retention.purge(store, audit, 90, "carol", now=NOW)
    assert store.query("PRAGMA secure_delete")[0][0] == 0  # the connection's setting is back
    after = decrypted_pages(tmp / "store.db", key)
    assert f"{SECRET} (new)".encode() in after
    assert f"{SECRET} (old)".encode() not in after and b"oldoldold" not in after
    assert f"{SECRET} (middle)".encode() not in after
    wal = tmp / "store.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_zero_or_negative_retention_is_refused(site):
    store, audit, _ = site
    for days in (0, -5):
        with pytest.raises(ValueError, match="at least 1"):
            retention.purge(store, audit, days, "carol", now=NOW)
    assert counts(store) == (3, 3, 3)
    with pytest.raises(config.ConfigError, match="retention_days must be at least 1"):
        config.parse("[compliance]\nretention_days = 0\n")


def test_retention_purge_command_needs_the_compliance_role(site, capsys):
    store, audit, tmp = site
    users = Users(store, audit, LoginPolicy(), hasher=PasswordHasher(
        time_cost=1, memory_cost=8192, parallelism=1))
    users.add("admin", "admin", "admin password 1", "os:test")
    users.add("carol", "compliance", "carol password 2", "admin")
    creds = tmp / "creds"
    creds.write_text("admin:admin password 1\n")
    creds.chmod(0o600)
    # the command purges by the real clock: keep the calls of the last 50 days before NOW
    days = int((time.time() - (NOW - 50 * DAY)) / DAY)
    cfg = config.parse(f"[general]\nstate_dir = {tmp}\n[compliance]\nkey_file = {tmp}/store.key\n"
                       f"credentials_file = {creds}\nretention_days = {days}\n")
    parser = argparse.ArgumentParser()
    cli.add_retention_arguments(parser)
    assert cli.cmd_retention(parser.parse_args(["purge"]), cfg) == cli.EX_REFUSED
    assert "needs the role compliance" in capsys.readouterr().err
    creds.write_text("carol:carol password 2\n")
    assert cli.cmd_retention(parser.parse_args(["purge", "--dry-run"]), cfg) == 0
    out = capsys.readouterr().out
    assert "would remove 2 transcript turns and 2 recordings of 2 calls" in out
    assert "calls: middle old" in out and SECRET not in out
    assert cli.cmd_retention(parser.parse_args(["purge"]), cfg) == 0
    assert capsys.readouterr().out.startswith("removed 2 transcript turns")
    assert counts(store) == (3, 1, 1)
    events = [r.event for r in audit.records()]
    assert events[-5:] == ["login", "access.denied", "login", "login", "purge"]
