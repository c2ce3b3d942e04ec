"""Users, roles and logins for the compliance commands.

Three roles, least privilege: an admin manages users but reads no patient data;
compliance reads, exports and purges; an auditor reads the audit trail and
verifies it.  Passwords are argon2id hashes (argon2-cffi, its default costs).
Wrong passwords are counted in the store per user name (known or not, so a
lockout says nothing about who exists): login_max_failures within
login_window seconds lock the name until the oldest leaves the window.  Every
login, failure and user change is an audit record, written in the same
transaction as the change it records.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.store import Store, StoreError, read_private

ROLES = ("admin", "compliance", "auditor")

PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"users.manage", "audit.verify"}),
    "compliance": frozenset({"audit.show", "audit.verify", "audit.export", "retention.purge",
                             "transcripts.read", "outbox.read"}),
    "auditor": frozenset({"audit.show", "audit.verify"}),
}

# verified against when the name is unknown, so that a wrong name costs the same
# time as a wrong password (argon2-cffi's default costs; its password is random
# and forgotten)
_NOBODY = "$argon2id$v=19$m=65536,t=3,p=4$1J6is09G6EFEt6DtgwGvDg$bYf64XeLOstoqFCMY82VoC4nEWYFhuF+pQwZFY3qh0c"

_NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")


class AuthError(Exception):
    """A refused login or command: the message is safe to show."""


class LockedOut(AuthError):
    def __init__(self, name: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(f"too many wrong passwords for {name}: try again in "
                         f"{max(1, round(retry_after))} s")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created: float
    changed: float

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    window: float = 900.0
    min_length: int = 12


def read_credentials(path: Path) -> tuple[str, str]:
    """(name, password) from a protected credentials file: one line NAME:PASSWORD."""
    try:
        text = read_private(Path(path), "credentials file")
    except StoreError as exc:
        raise AuthError(str(exc)) from None
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, password = line.strip().partition(":")
            if sep and name and password:
                return name, password
            break
    raise AuthError(f"credentials file {path} must hold one line NAME:PASSWORD")


class Users:
    """The users table with its audit trail (thread-safe; blocking calls)."""

    def __init__(self, store: Store, audit: AuditLog, policy: LoginPolicy = LoginPolicy(),
                 clock: Callable[[], float] = time.time, hasher: PasswordHasher | None = None):
        self.store, self.audit, self.policy, self.clock = store, audit, policy, clock
        self.hasher = hasher or PasswordHasher()

    # --- reading ---
    def list(self) -> list[User]:
        return [User(*r) for r in self.store.query(
            "SELECT name, role, created, changed FROM users ORDER BY name")]

    def get(self, name: str) -> User | None:
        rows = self.store.query("SELECT name, role, created, changed FROM users WHERE name = ?",
                                (name,))
        return User(*rows[0]) if rows else None

    def count(self) -> int:
        return self.store.query("SELECT count(*) FROM users")[0][0]

    # --- changing ---
    def _check_password(self, password: str) -> None:
        if len(password) < self.policy.min_length:
            raise AuthError(f"a password needs at least {self.policy.min_length} characters")

    def add(self, name: str, role: str, password: str, actor: str) -> User:
        if not _NAME.fullmatch(name):
            raise AuthError(f"user name {name!r}: lower-case letters, digits, '.', '_' or '-', "
                            "starting with a letter, at most 32")
        if role not in ROLES:
            raise AuthError(f"role {role!r}: choose one of {', '.join(ROLES)}")
        self._check_password(password)
        hashed, now = self.hasher.hash(password), self.clock()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AuthError(f"user {name} exists already")
            db.execute("INSERT INTO users (name, role, password, created, changed) "
                       "VALUES (?, ?, ?, ?, ?)", (name, role, hashed, now, now))
            self.audit.write(db, "user.add", actor, detail={"user": name, "role": role})
        return User(name, role, now, now)

    def remove(self, name: str, actor: str) -> None:
        with self.store.transaction() as db:
            row = db.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise AuthError(f"no user {name}")
            admins = db.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0]
            if row[0] == "admin" and admins == 1:
                raise AuthError(f"{name} is the last admin: add another admin first")
            db.execute("DELETE FROM users WHERE name = ?", (name,))
            db.execute("DELETE FROM login_failures WHERE name = ?", (name,))
            self.audit.write(db, "user.remove", actor, detail={"user": name, "role": row[0]})

    def passwd(self, name: str, password: str, actor: str) -> None:
        self._check_password(password)
        hashed = self.hasher.hash(password)
        with self.store.transaction() as db:
            changed = db.execute("UPDATE users SET password = ?, changed = ? WHERE name = ?",
                                 (hashed, self.clock(), name)).rowcount
            if not changed:
                raise AuthError(f"no user {name}")
            self.audit.write(db, "user.passwd", actor, detail={"user": name})

    # --- logging in ---
    def _recent_failures(self, name: str, now: float) -> list[float]:
        return [r[0] for r in self.store.query(
            "SELECT at FROM login_failures WHERE name = ? AND at > ? ORDER BY at",
            (name, now - self.policy.window))]

    def authenticate(self, name: str, password: str, command: str = "") -> User:
        """The user, when the password is theirs; AuthError (or LockedOut) if not.

        Either way an audit record says who tried, for which command.
        """
        now = self.clock()
        detail = {"command": command} if command else None
        failures = self._recent_failures(name, now)
        if len(failures) >= self.policy.max_failures:
            retry_after = failures[0] + self.policy.window - now
            self.audit.append("login.failed", name, detail={**(detail or {}), "reason": "locked"})
            raise LockedOut(name, retry_after)
        rows = self.store.query("SELECT password, role FROM users WHERE name = ?", (name,))
        stored = rows[0][0] if rows else _NOBODY
        try:
            self.hasher.verify(stored, password)
            ok = bool(rows)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            with self.store.transaction() as db:
                db.execute("INSERT INTO login_failures (name, at) VALUES (?, ?)", (name, now))
                self.audit.write(db, "login.failed", name,
                                 detail={**(detail or {}), "reason": "wrong name or password"})
            raise AuthError("wrong user name or password")
        with self.store.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE name = ?", (name,))
            if self.hasher.check_needs_rehash(stored):
                db.execute("UPDATE users SET password = ? WHERE name = ?",
                           (self.hasher.hash(password), name))
            self.audit.write(db, "login", name, detail=detail)
        return self.get(name)


def require(user: User, permission: str) -> None:
    """Refuse a command the user's role does not allow."""
    if not user.may(permission):
        allowed = [r for r in ROLES if permission in PERMISSIONS[r]]
        raise AuthError(f"{user.name} (role {user.role}) may not {permission}: it needs the "
                        f"role {' or '.join(allowed)}")


__all__ = ["Users", "User", "LoginPolicy", "AuthError", "LockedOut", "ROLES", "PERMISSIONS",
           "read_credentials", "require"]
