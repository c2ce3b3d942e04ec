"""Users and roles: argon2 hashes, rate-limited logins persisted in the store, and an
audit record for every login, failure and change."""

from __future__ import annotations

import os

import pytest
from argon2 import PasswordHasher

from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import open_store, write_key_file
from asterisk_agent.compliance.users import (AuthError, LockedOut, LoginPolicy, Users,
                                             read_credentials, require)

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self):
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path):
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    store = open_store(tmp_path / "store.db", key_file)
    clock = Clock()
    audit = AuditLog(store, clock=clock)
    # argon2 itself, at lower costs than production's so the suite stays quick
    users = Users(store, audit, LoginPolicy(max_failures=3, window=600, min_length=12),
                  clock=clock, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    users.add("alice", "admin", PASSWORD, "os:root")
    yield users, audit, clock, tmp_path
    store.close()


def events(audit: AuditLog) -> list[tuple[str, str]]:
    return [(r.event, r.actor) for r in audit.records()]


def test_a_user_logs_in_with_the_right_password_only(env):
    users, audit, _, _ = env
    user = users.authenticate("alice", PASSWORD, "audit show")
    assert (user.name, user.role) == ("alice", "admin")
    with pytest.raises(AuthError, match="wrong user name or password"):
        users.authenticate("alice", "wrong horse battery")
    with pytest.raises(AuthError, match="wrong user name or password"):
        users.authenticate("nobody", PASSWORD)
    assert events(audit) == [("user.add", "os:root"), ("login", "alice"),
                             ("login.failed", "alice"), ("login.failed", "nobody")]
    assert audit.records()[1].detail == {"command": "audit show"}
    assert audit.verify() is None


def test_passwords_are_stored_as_argon2_hashes(env):
    users, _, _, _ = env
    [(stored,)] = users.store.query("SELECT password FROM users")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_wrong_passwords_lock_the_name_until_the_window_passes(env):
    users, audit, clock, _ = env
    for _ in range(3):
        with pytest.raises(AuthError):
            users.authenticate("alice", "guess guess guess")
        clock.now += 10
    with pytest.raises(LockedOut) as err:
        users.authenticate("alice", PASSWORD)  # even the right one, while locked
    assert err.value.retry_after == pytest.approx(600 - 30)
    assert "try again in 570 s" in str(err.value)
    assert audit.records()[-1].detail == {"reason": "locked"}
    clock.now += 571
    assert users.authenticate("alice", PASSWORD).name == "alice"
    [(left,)] = users.store.query("SELECT count(*) FROM login_failures")
    assert left == 0  # a good login clears the count


def test_failures_are_kept_in_the_store_across_instances(env):
    users, audit, clock, _ = env
    for _ in range(3):
        with pytest.raises(AuthError):
            users.authenticate("alice", "guess guess guess")
    again = Users(users.store, audit, users.policy, clock=clock, hasher=users.hasher)
    with pytest.raises(LockedOut):
        again.authenticate("alice", PASSWORD)


def test_unknown_names_are_locked_too(env):
    users, _, _, _ = env
    for _ in range(3):
        with pytest.raises(AuthError):
            users.authenticate("bob", "guess guess guess")
    with pytest.raises(LockedOut):
        users.authenticate("bob", "guess guess guess")


def test_user_changes_are_checked_and_audited(env):
    users, audit, _, _ = env
    with pytest.raises(AuthError, match="at least 12"):
        users.add("bob", "auditor", "short", "alice")
    with pytest.raises(AuthError, match="role 'root'"):
        users.add("bob", "root", PASSWORD, "alice")
    with pytest.raises(AuthError, match="user name"):
        users.add("Bob Smith", "auditor", PASSWORD, "alice")
    users.add("bob", "auditor", PASSWORD, "alice")
    with pytest.raises(AuthError, match="exists already"):
        users.add("bob", "compliance", PASSWORD, "alice")
    users.passwd("bob", "another long password", "alice")
    assert users.authenticate("bob", "another long password").role == "auditor"
    users.remove("bob", "alice")
    assert users.get("bob") is None
    with pytest.raises(AuthError, match="no user bob"):
        users.passwd("bob", PASSWORD, "alice")
    assert [e for e in events(audit) if e[0].startswith("user.")] == [
        ("user.add", "os:root"), ("user.add", "alice"), ("user.passwd", "alice"),
        ("user.remove", "alice")]
    assert audit.verify() is None


def test_the_last_admin_cannot_be_removed(env):
    users, _, _, _ = env
    with pytest.raises(AuthError, match="last admin"):
        users.remove("alice", "alice")
    users.add("carol", "admin", PASSWORD, "alice")
    users.remove("alice", "carol")
    assert [u.name for u in users.list()] == ["carol"]


def test_roles_allow_only_their_commands(env):
    users, _, _, _ = env
    users.add("aud", "auditor", PASSWORD, "alice")
    users.add("comp", "compliance", PASSWORD, "alice")
    admin, auditor, compliance = users.get("alice"), users.get("aud"), users.get("comp")
    require(admin, "users.manage")
    require(auditor, "audit.verify")
    require(compliance, "audit.export")
    with pytest.raises(AuthError, match=r"aud \(role auditor\) may not users.manage: .*admin"):
        require(auditor, "users.manage")
    with pytest.raises(AuthError, match="may not audit.show"):
        require(admin, "audit.show")  # an admin reads no patient data
    with pytest.raises(AuthError, match="may not audit.export"):
        require(auditor, "audit.export")


def test_a_credentials_file_must_be_private(env):
    _, _, _, tmp_path = env
    creds = tmp_path / "creds"
    creds.write_text(f"# for the nightly export\nalice:{PASSWORD}\n")
    creds.chmod(0o600)
    assert read_credentials(creds) == ("alice", PASSWORD)
    creds.chmod(0o644)
    with pytest.raises(AuthError, match=f"chmod 600 {creds}"):
        read_credentials(creds)
    creds.chmod(0o600)
    creds.write_text("alice\n")
    with pytest.raises(AuthError, match="NAME:PASSWORD"):
        read_credentials(creds)
    with pytest.raises(AuthError, match="no credentials file"):
        read_credentials(tmp_path / "missing")
    assert os.path.exists(creds)
